//! q4_K x q8_K on 4 interleaved rows and up to 4 tokens per call, AVX-512 VNNI.
//!
//! Packed layout per (group of 4 rows, super-block), see `super::pack_k`:
//! - quants, 512 bytes: for each 32-byte chunk `j` of the row's `qs` (low nibbles: sub-block
//!   2j, high nibbles: 2j+1) and each row pair `p`, row 2p's chunk then row 2p+1's (64 bytes);
//! - meta, 80 bytes: the 6-bit scales of the 4 rows (8 bytes each, decoded), their mins (8 bytes
//!   each), `d` of the 4 rows (f16), `dmin` of the 4 rows (f16).
//!
//! One 512-bit register holds two rows of one sub-block; `maddubs` against the activation
//! sub-block broadcast to both halves, then `vpdpwssd` by the rows' scales, gives per row the 8
//! i32 lane sums the row-at-a-time AVX2 kernel builds with `maddubs` + `madd` + `add` (lane l =
//! sum over sub-blocks of scale times elements 4l..4l+4; integers, exact in any order). The
//! float steps per lane are the same (`fma(d_x * d_w, float(sumi), acc)`, the mins through
//! `fma(-d_x * dmin_w, float(madd(mins, bsum pairs)), acc_m)` on 4 lanes per row) and so is the
//! final horizontal order, so every result is bit-for-bit `vec_dot_q4_k_q8_k`'s.

use std::arch::x86_64::*;

use super::ROWS;
use super::kq::{bsum_pairs4, finish_row, y_block, y_d, y_sub};

/// Quant bytes per (group, super-block).
pub(super) const QS_BYTES: usize = 512;
/// Meta bytes per (group, super-block).
pub(super) const META_BYTES: usize = 80;

/// `vpermw` indices: for sub-block `s` and row pair `p`, lanes 0..16 take row 2p's scale `s`
/// (i16 index `8 * 2p + s`), lanes 16..32 row 2p+1's.
pub(super) static SCALE_IDX: [[[u16; 32]; 8]; 2] = {
    let mut t = [[[0u16; 32]; 8]; 2];
    let mut p = 0;
    while p < 2 {
        let mut s = 0;
        while s < 8 {
            let mut i = 0;
            while i < 32 {
                t[p][s][i] = (8 * (2 * p + i / 16) + s) as u16;
                i += 1;
            }
            s += 1;
        }
        p += 1;
    }
    t
};

/// `out[t][4 * g + k] = dot(row k of group g, token t)` for `g < n_groups`, `t < T`.
///
/// # Safety
/// The CPU has the features of [`super::available`]; `wq`/`wd` hold `n_groups * nb` blocks of
/// quants ([`QS_BYTES`] each) and meta ([`META_BYTES`] each); every `a[t].qs` holds `nb` q8_K
/// blocks; every `out[t]` is valid for writing `4 * n_groups` floats nothing else accesses.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn groups<const T: usize>(wq: *const u8, wd: *const u8, nb: usize, n_groups: usize, a: &[super::ActRow; T], out: [*mut f32; T]) {
    for g in 0..n_groups {
        let res = kernel::<T>(wq.add(g * nb * QS_BYTES), wd.add(g * nb * META_BYTES), nb, a);
        for t in 0..T {
            std::ptr::copy_nonoverlapping(res[t].as_ptr(), out[t].add(g * ROWS), ROWS);
        }
    }
}

#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn kernel<const T: usize>(wq: *const u8, wd: *const u8, nb: usize, a: &[super::ActRow; T]) -> [[f32; ROWS]; T] {
    let m4 = _mm512_set1_epi8(0xF);
    // d / dmin of row k in lanes 8k'.. of each pair register: rows 2p, 2p+1.
    let pair_idx = [_mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0), _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2)];
    let quad_idx = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    let mut acc = [[_mm512_setzero_ps(); 2]; T];
    let mut acc_m = [_mm512_setzero_ps(); T];
    for b in 0..nb {
        let q = wq.add(b * QS_BYTES);
        let m = wd.add(b * META_BYTES);
        _mm_prefetch::<_MM_HINT_T1>(q.wrapping_add(super::PREFETCH).cast());
        _mm_prefetch::<_MM_HINT_T1>(q.wrapping_add(super::PREFETCH + 64).cast());
        _mm_prefetch::<_MM_HINT_T1>(m.wrapping_add(super::PREFETCH / 6).cast());
        // SAFETY (all weight loads): block b < nb of this group, META_BYTES / QS_BYTES each.
        let sc = _mm512_cvtepu8_epi16(_mm256_loadu_si256(m.cast()));
        let mins = _mm512_cvtepu8_epi16(_mm256_loadu_si256(m.add(32).cast()));
        let dd = _mm_cvtph_ps(_mm_loadu_si128(m.add(64).cast()));
        let dw = [_mm512_permutexvar_ps(pair_idx[0], _mm512_castps128_ps512(dd)), _mm512_permutexvar_ps(pair_idx[1], _mm512_castps128_ps512(dd))];
        let dmin = _mm_cvtph_ps(_mm_unpackhi_epi64(_mm_loadu_si128(m.add(64).cast()), _mm_setzero_si128()));
        let dminw = _mm512_permutexvar_ps(quad_idx, _mm512_castps128_ps512(dmin));
        let mut sumi = [[_mm512_setzero_si512(); 2]; T];
        for j in 0..4 {
            let v0 = _mm512_loadu_si512(q.add(j * 128).cast());
            let v1 = _mm512_loadu_si512(q.add(j * 128 + 64).cast());
            let lo = [_mm512_and_si512(v0, m4), _mm512_and_si512(v1, m4)];
            let hi = [_mm512_and_si512(_mm512_srli_epi16::<4>(v0), m4), _mm512_and_si512(_mm512_srli_epi16::<4>(v1), m4)];
            let slo = [
                _mm512_permutexvar_epi16(_mm512_loadu_si512(SCALE_IDX[0][2 * j].as_ptr().cast()), sc),
                _mm512_permutexvar_epi16(_mm512_loadu_si512(SCALE_IDX[1][2 * j].as_ptr().cast()), sc),
            ];
            let shi = [
                _mm512_permutexvar_epi16(_mm512_loadu_si512(SCALE_IDX[0][2 * j + 1].as_ptr().cast()), sc),
                _mm512_permutexvar_epi16(_mm512_loadu_si512(SCALE_IDX[1][2 * j + 1].as_ptr().cast()), sc),
            ];
            for t in 0..T {
                let y = y_block(a.get_unchecked(t), b);
                // SAFETY: `y` is a whole expanded block.
                let (ylo, yhi) = (y_sub(y, 2 * j), y_sub(y, 2 * j + 1));
                for p in 0..2 {
                    sumi[t][p] = _mm512_dpwssd_epi32(sumi[t][p], _mm512_maddubs_epi16(lo[p], ylo), slo[p]);
                    sumi[t][p] = _mm512_dpwssd_epi32(sumi[t][p], _mm512_maddubs_epi16(hi[p], yhi), shi[p]);
                }
            }
        }
        for t in 0..T {
            let y = y_block(a.get_unchecked(t), b);
            let dy = y_d(y);
            // Rows' mins (i16 8k..8k+8) against the token's 8 bsum pairs in every 128-bit lane:
            // lane 4k + i = row k's `madd(mins, bsums_pairs)` lane i.
            let prod = _mm512_madd_epi16(mins, _mm512_broadcast_i32x4(bsum_pairs4(y)));
            let dmin_t = _mm512_mul_ps(_mm512_set1_ps(-dy), dminw);
            acc_m[t] = _mm512_fmadd_ps(dmin_t, _mm512_cvtepi32_ps(prod), acc_m[t]);
            for p in 0..2 {
                let d = _mm512_mul_ps(_mm512_set1_ps(dy), dw[p]);
                acc[t][p] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sumi[t][p]), acc[t][p]);
            }
        }
    }
    let mut res = [[0f32; ROWS]; T];
    for t in 0..T {
        let mut f = [[0f32; 16]; 2];
        _mm512_storeu_ps(f[0].as_mut_ptr(), acc[t][0]);
        _mm512_storeu_ps(f[1].as_mut_ptr(), acc[t][1]);
        let mut mm = [0f32; 16];
        _mm512_storeu_ps(mm.as_mut_ptr(), acc_m[t]);
        for k in 0..ROWS {
            let lanes: &[f32; 8] = f[k / 2][8 * (k % 2)..8 * (k % 2) + 8].try_into().unwrap_or(&[0.0; 8]);
            let ml: &[f32; 4] = mm[4 * k..4 * k + 4].try_into().unwrap_or(&[0.0; 4]);
            res[t][k] = finish_row(lanes, Some(ml));
        }
    }
    res
}

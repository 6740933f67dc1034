//! q5_K x q8_K on 4 interleaved rows and up to 4 tokens per call, AVX-512 VNNI.
//!
//! Packed layout per (group of 4 rows, super-block), see `super::pack_k`: the quants as q4_K's
//! (512 bytes, chunk `j` of rows 2p, 2p+1 at `(2j + p) * 64`), then the fifth bits `qh` of rows
//! 2p, 2p+1 (32 bytes each) at `512 + 64p`; the meta (80 bytes) as q4_K's.
//!
//! The integer lanes are q4_K's with 16 added where the element's high bit is set (bit `2j` of
//! `qh[l]` for chunk `j`'s low nibbles, `2j + 1` for its high ones), exactly the AVX2 kernel's
//! quants. Its mins are a scalar per row, `summs += dmin * float(sum of madd(mins, bsum
//! pairs))` (a product, then a sum: no fused step), kept here per row and token in the same
//! order; the result is `hsum_float_8(acc) + summs`: bit-for-bit `vec_dot_q5_k_q8_k`.

use std::arch::x86_64::*;

use super::kq::{bsum_pairs4, finish_row, y_block, y_d, y_sub};
use super::ROWS;

/// Quant bytes per (group, super-block).
pub(super) const QS_BYTES: usize = 640;
/// Meta bytes per (group, super-block).
pub(super) const META_BYTES: usize = super::q4_k::META_BYTES;

/// `out[t][4 * g + k] = dot(row k of group g, token t)` for `g < n_groups`, `t < T`.
///
/// # Safety
/// As `q4_k::groups`, with this module's block sizes.
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
    let m16 = _mm512_set1_epi8(16);
    let pair_idx = [_mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0), _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2)];
    let mut acc = [[_mm512_setzero_ps(); 2]; T];
    let mut summs = [[0f32; ROWS]; T];
    for b in 0..nb {
        let q = wq.add(b * QS_BYTES);
        let m = wd.add(b * META_BYTES);
        for l in 0..3 {
            _mm_prefetch::<_MM_HINT_T1>(q.wrapping_add(super::PREFETCH + 64 * l).cast());
        }
        _mm_prefetch::<_MM_HINT_T1>(m.wrapping_add(super::PREFETCH / 8).cast());
        // SAFETY (all weight loads): block b < nb of this group, META_BYTES / QS_BYTES each.
        let sc = _mm512_cvtepu8_epi16(_mm256_loadu_si256(m.cast()));
        let mins = _mm512_cvtepu8_epi16(_mm256_loadu_si256(m.add(32).cast()));
        let dd = _mm_cvtph_ps(_mm_loadu_si128(m.add(64).cast()));
        let dw = [_mm512_permutexvar_ps(pair_idx[0], _mm512_castps128_ps512(dd)), _mm512_permutexvar_ps(pair_idx[1], _mm512_castps128_ps512(dd))];
        let mut dminw = [0f32; 8];
        _mm256_storeu_ps(dminw.as_mut_ptr(), _mm256_castps128_ps256(_mm_cvtph_ps(_mm_loadl_epi64(m.add(72).cast()))));
        let qh = [_mm512_loadu_si512(q.add(512).cast()), _mm512_loadu_si512(q.add(576).cast())];
        let mut sumi = [[_mm512_setzero_si512(); 2]; T];
        for j in 0..4 {
            let (bit_lo, bit_hi) = (_mm512_set1_epi8(1 << (2 * j)), _mm512_set1_epi8((1u8 << (2 * j + 1)) as i8));
            let mut lo = [_mm512_setzero_si512(); 2];
            let mut hi = [_mm512_setzero_si512(); 2];
            for p in 0..2 {
                let v = _mm512_loadu_si512(q.add((2 * j + p) * 64).cast());
                let l = _mm512_and_si512(v, m4);
                let h = _mm512_and_si512(_mm512_srli_epi16::<4>(v), m4);
                lo[p] = _mm512_mask_add_epi8(l, _mm512_test_epi8_mask(qh[p], bit_lo), l, m16);
                hi[p] = _mm512_mask_add_epi8(h, _mm512_test_epi8_mask(qh[p], bit_hi), h, m16);
            }
            let slo = [
                _mm512_permutexvar_epi16(_mm512_loadu_si512(super::q4_k::SCALE_IDX[0][2 * j].as_ptr().cast()), sc),
                _mm512_permutexvar_epi16(_mm512_loadu_si512(super::q4_k::SCALE_IDX[1][2 * j].as_ptr().cast()), sc),
            ];
            let shi = [
                _mm512_permutexvar_epi16(_mm512_loadu_si512(super::q4_k::SCALE_IDX[0][2 * j + 1].as_ptr().cast()), sc),
                _mm512_permutexvar_epi16(_mm512_loadu_si512(super::q4_k::SCALE_IDX[1][2 * j + 1].as_ptr().cast()), sc),
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
            let prod = _mm512_madd_epi16(mins, _mm512_broadcast_i32x4(bsum_pairs4(y)));
            let mut pi = [0i32; 16];
            _mm512_storeu_si512(pi.as_mut_ptr().cast(), prod);
            for k in 0..ROWS {
                let isum = (pi[4 * k] + pi[4 * k + 1]) + (pi[4 * k + 2] + pi[4 * k + 3]);
                summs[t][k] += (-dy * dminw[k]) * isum as f32;
            }
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
        for k in 0..ROWS {
            let lanes: &[f32; 8] = f[k / 2][8 * (k % 2)..8 * (k % 2) + 8].try_into().unwrap_or(&[0.0; 8]);
            res[t][k] = finish_row(lanes, None) + summs[t][k];
        }
    }
    res
}

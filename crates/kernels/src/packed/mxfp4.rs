//! mxfp4 x q8_0 on 4 interleaved rows and up to 4 tokens per call, AVX-512 VNNI (gpt-oss's
//! experts).
//!
//! Packed layout per (group of 4 rows, block of 32), see [`pack`] (the same 68 bytes as the 4
//! GGUF blocks):
//! - quants, 64 bytes: byte `j` holds, in its low nibble, code `j % 32` of row `j / 32` and, in
//!   its high nibble, code `j % 32` of row `2 + j / 32` (codes in element order), so one mask
//!   gives rows 0 and 1 as 64 codes and one shift rows 2 and 3;
//! - meta, 4 bytes: the E8M0 exponent of each row.
//!
//! The codes go through `KVALUES_MXFP4` (`pshufb`); the activations are negated where a value is
//! negative (AVX-512 has no `vpsignb`: a masked subtract) and `vpdpbusd` with the values' magnitudes
//! leaves in lane `l` of each row's half the exact sum of elements `4l..4l + 4`, as the row
//! kernels' sign trick does. Then per block `acc = acc + (d_x * e_w) * float(sum)` in eight
//! lanes per row and token, and ggml's `hsum_float_8` at the end: the float steps of
//! `vec_dot_mxfp4_q8_0` (`quant::lanes`), so every result is its bits.

use std::arch::x86_64::*;

use super::q8_0::hsum_halves;
use super::{ActRow, ROWS};
use crate::quant::blocks::{BlockMxfp4, KVALUES_MXFP4};

/// Quant bytes per (group, block).
pub(super) const QS_BYTES: usize = 64;
/// Meta bytes per (group, block).
pub(super) const META_BYTES: usize = 4;

/// Writes row `k`'s GGUF block into its group's packed quants `q` (zeroed before the group's
/// first row) and meta `s`.
pub(super) fn pack(blk: &BlockMxfp4, k: usize, q: &mut [u8], s: &mut [u8]) {
    let (p, h) = (k / 2, k % 2);
    for i in 0..32 {
        let code = (blk.qs[i % 16] >> (4 * (i / 16))) & 0xF;
        q[32 * h + i] |= code << (4 * p);
    }
    s[k] = blk.e;
}

/// `out[t][4 * g + k] = dot(row k of group g, token t)` for `g < n_groups`, `t < T`.
///
/// # Safety
/// The CPU has the features of [`super::available`]; `wq`/`wd` hold `n_groups * nb` blocks of
/// quants ([`QS_BYTES`] each) and exponents ([`META_BYTES`] each); every `a[t]` holds `nb`
/// blocks of quants and `d`; every `out[t]` is valid for writing `4 * n_groups` floats nothing
/// else accesses meanwhile.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn groups<const T: usize>(wq: *const u8, wd: *const u8, nb: usize, n_groups: usize, a: &[ActRow; T], out: [*mut f32; T]) {
    for g in 0..n_groups {
        let mut res = [_mm_setzero_ps(); T];
        kernel::<T>(wq.add(g * nb * QS_BYTES), wd.add(g * nb * META_BYTES), nb, a, &mut res);
        for t in 0..T {
            _mm_storeu_ps(out[t].add(g * ROWS), res[t]);
        }
    }
}

/// `e8m0_to_f32_half` of the 4 exponents at `e`, row 2p's in lanes 0..8 and row 2p + 1's in
/// lanes 8..16 of pair `p`'s vector.
#[inline(always)]
unsafe fn scales(e: *const u8) -> [__m512; 2] {
    let x = _mm512_cvtepu8_epi32(_mm_cvtsi32_si128(std::ptr::read_unaligned(e.cast::<i32>())));
    let big = _mm512_slli_epi32::<23>(_mm512_sub_epi32(x, _mm512_set1_epi32(1)));
    let small = _mm512_sllv_epi32(_mm512_set1_epi32(0x0020_0000), x);
    let f = _mm512_castsi512_ps(_mm512_mask_blend_epi32(_mm512_cmplt_epu32_mask(x, _mm512_set1_epi32(2)), big, small));
    [
        _mm512_permutexvar_ps(_mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0), f),
        _mm512_permutexvar_ps(_mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2), f),
    ]
}

#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn kernel<const T: usize>(wq: *const u8, wd: *const u8, nb: usize, a: &[ActRow; T], res: &mut [__m128; T]) {
    let tab = _mm512_broadcast_i32x4(_mm_loadu_si128(KVALUES_MXFP4.as_ptr().cast()));
    let m4 = _mm512_set1_epi8(0xF);
    let mut acc = [[_mm512_setzero_ps(); 2]; T];
    for b in 0..nb {
        // SAFETY (all loads): block b < nb of this group and of every activation row.
        _mm_prefetch::<_MM_HINT_T1>(wq.wrapping_add(b * QS_BYTES + super::PREFETCH).cast());
        let v = _mm512_loadu_si512(wq.add(b * QS_BYTES).cast());
        let ew = scales(wd.add(b * META_BYTES));
        let codes = [_mm512_and_si512(v, m4), _mm512_and_si512(_mm512_srli_epi16::<4>(v), m4)];
        let mut mag = [_mm512_setzero_si512(); 2];
        let mut neg = [0u64; 2];
        for p in 0..2 {
            let val = _mm512_shuffle_epi8(tab, codes[p]);
            neg[p] = _mm512_movepi8_mask(val);
            mag[p] = _mm512_abs_epi8(val);
        }
        for t in 0..T {
            let at = a.get_unchecked(t);
            let y = _mm512_broadcast_i64x4(_mm256_loadu_si256(at.qs.as_ptr().add(b * 32).cast()));
            let dx = _mm512_set1_ps(*at.d.get_unchecked(b));
            for p in 0..2 {
                let sy = _mm512_mask_sub_epi8(y, neg[p], _mm512_setzero_si512(), y);
                let sum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), mag[p], sy);
                acc[t][p] = _mm512_add_ps(acc[t][p], _mm512_mul_ps(_mm512_mul_ps(dx, ew[p]), _mm512_cvtepi32_ps(sum)));
            }
        }
    }
    let pick = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 24, 16, 8, 0);
    for t in 0..T {
        let h01 = hsum_halves(acc[t][0]);
        let h23 = hsum_halves(acc[t][1]);
        res[t] = _mm512_castps512_ps128(_mm512_permutex2var_ps(h01, pick, h23));
    }
}

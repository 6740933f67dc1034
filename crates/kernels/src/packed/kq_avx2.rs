//! The packed q4_K/q5_K layouts (`q4_k`, `q5_k`; q6_K's is `k16`'s) on AVX2 + FMA, for CPUs without
//! AVX-512 VNNI (or `DAEHWA_KERNELS=avx2`): one row of a group at a time (row `k`'s 32-byte chunks
//! sit at `32 k` within every 128-byte span of the layout), up to 4 tokens per weight load.
//!
//! Per row these are the row-at-a-time AVX2 kernels (`quant::x86::kquants`) step for step:
//! `maddubs`, then `madd` by the sub-block's scale broadcast to 16 lanes, i32 lane sums (exact
//! in any order), then each super-block's totals folded by the K-quant float order (`k_step`),
//! so every result is bit-for-bit `vec_dot_q*_k_q8_k`'s.

use std::arch::x86_64::*;

use super::kq::{bsum_pairs4, y_block, y_d};
use super::{q4_k, q5_k, ActRow, ROWS};
use crate::quant::kquants::k_step;
use crate::quant::x86::hsum_i32_8;
use crate::quant::x86::kquants::hsum_i32_4;

/// The 4 rows' f16 values at `p` as f32.
#[inline(always)]
unsafe fn f16x4(p: *const u8) -> [f32; 4] {
    let mut o = [0f32; 4];
    _mm_storeu_ps(o.as_mut_ptr(), _mm_cvtph_ps(_mm_loadl_epi64(p.cast())));
    o
}

/// Sub-block `sb` (32 quants) of an expanded q8_K block.
#[inline(always)]
unsafe fn y_sub(y: *const u8, sb: usize) -> __m256i {
    _mm256_loadu_si256(y.add(64 * sb).cast())
}

/// q4_K (`q5`: false) or q5_K (`q5`: true) rows of one group: `[t][k]`.
///
/// # Safety
/// As `kq::groups_avx2`, for one group of this layout.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
pub(super) unsafe fn q45_k<const T: usize, const Q5: bool>(wq: *const u8, wd: *const u8, nb: usize, a: &[ActRow; T]) -> [[f32; ROWS]; T] {
    let (qs_bytes, meta_bytes) = if Q5 { (q5_k::QS_BYTES, q5_k::META_BYTES) } else { (q4_k::QS_BYTES, q4_k::META_BYTES) };
    let m4 = _mm256_set1_epi8(0xF);
    let m16 = _mm256_set1_epi8(16);
    let mut res = [[0f32; ROWS]; T];
    for k in 0..ROWS {
        let mut acc = [0f32; T];
        for b in 0..nb {
            let q = wq.add(b * qs_bytes);
            let m = wd.add(b * meta_bytes);
            _mm_prefetch::<_MM_HINT_T1>(q.wrapping_add(super::PREFETCH + 32 * k).cast());
            // SAFETY (all weight loads): block b < nb of this group.
            let (dw, dminw) = (f16x4(m.add(64))[k], f16x4(m.add(72))[k]);
            let hbits = if Q5 { _mm256_loadu_si256(q.add(512 + 32 * k).cast()) } else { _mm256_setzero_si256() };
            let mut sumi = [_mm256_setzero_si256(); T];
            for j in 0..4 {
                let bits = _mm256_loadu_si256(q.add(128 * j + 32 * k).cast());
                let mut lo = _mm256_and_si256(bits, m4);
                let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4);
                if Q5 {
                    let (bl, bh) = (_mm256_set1_epi8(1 << (2 * j)), _mm256_set1_epi8((1u8 << (2 * j + 1)) as i8));
                    lo = _mm256_add_epi8(lo, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, bl), bl), m16));
                    hi = _mm256_add_epi8(hi, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, bh), bh), m16));
                }
                let sl = _mm256_set1_epi16(*m.add(8 * k + 2 * j) as i16);
                let sh = _mm256_set1_epi16(*m.add(8 * k + 2 * j + 1) as i16);
                for t in 0..T {
                    // SAFETY: `y` is a whole expanded block.
                    let y = y_block(a.get_unchecked(t), b);
                    let pl = _mm256_madd_epi16(sl, _mm256_maddubs_epi16(lo, y_sub(y, 2 * j)));
                    let ph = _mm256_madd_epi16(sh, _mm256_maddubs_epi16(hi, y_sub(y, 2 * j + 1)));
                    sumi[t] = _mm256_add_epi32(sumi[t], _mm256_add_epi32(pl, ph));
                }
            }
            let mins = _mm_cvtepu8_epi16(_mm_loadl_epi64(m.add(32 + 8 * k).cast()));
            for t in 0..T {
                let y = y_block(a.get_unchecked(t), b);
                let dy = y_d(y);
                let msum = hsum_i32_4(_mm_madd_epi16(mins, bsum_pairs4(y)));
                acc[t] = k_step(acc[t], dy * dw, hsum_i32_8(sumi[t]), dy * dminw, msum);
            }
        }
        for t in 0..T {
            res[t][k] = acc[t];
        }
    }
    res
}

//! q6_K x q8_K on 4 interleaved rows and up to 4 tokens per call, AVX-512 VNNI.
//!
//! Packed layout per (group of 4 rows, super-block), see `super::pack_k` (the same 840 bytes as
//! the 4 GGUF blocks, reordered):
//! - quants, 768 bytes: `ql` as 32-byte chunks `2j + c` (c = 0, 1) for row pair `p`, row 2p's
//!   chunk then row 2p+1's, at `((2j + c) * 2 + p) * 64`; then `qh` chunks `j` per pair the same
//!   way at `512 + (2j + p) * 64`;
//! - meta, 72 bytes: the 16 scales (i8) of each of the 4 rows, then `d` of the 4 rows (f16).
//!
//! As in `q4_k`: two rows per register, `maddubs` then `vpdpwssd` by the scales gives per row
//! the 8 i32 lanes of the AVX2 kernel (sub-block 4j + i from `ql` chunk `2j + (i & 1)`, its low
//! nibbles for i < 2 and high ones after, with `qh` bits `2i, 2i + 1`; scale `2 sb` on its first
//! 16 elements, `2 sb + 1` on the rest), minus `32 * madd(bsums, scales)`, then the same float
//! steps: bit-for-bit `vec_dot_q6_k_q8_k`.

use std::arch::x86_64::*;

use super::kq::{coef_lanes, dot_pairs, fold_block, rows, y_block, y_d, y_sub, Layout, BSUMS_AT};
use super::{ActRow, ROWS};

/// Quant bytes per (group, super-block).
pub(super) const QS_BYTES: usize = 768;
/// Meta bytes per (group, super-block).
pub(super) const META_BYTES: usize = 72;

/// `vpermw` indices for sub-block `sb` on a pair's 32 scales (row 2p's 16, then row 2p+1's).
static SCALE_IDX: [[u16; 32]; 8] = {
    let mut t = [[0u16; 32]; 8];
    let mut s = 0;
    while s < 8 {
        let mut i = 0;
        while i < 32 {
            t[s][i] = (16 * (i / 16) + 2 * s + (i % 16) / 8) as u16;
            i += 1;
        }
        s += 1;
    }
    t
};

/// The unsigned 6-bit quants (0..64) of sub-blocks `4j + i`, `i = 0..4`, for row pair `p` of a
/// packed block at `q`: row 2p in the lower 256 bits, row 2p + 1 in the upper (shared with
/// `super::amx`).
///
/// # Safety
/// `q` points at a whole packed block ([`QS_BYTES`]); `j, p < 2`; AVX-512 BW is available.
#[inline(always)]
pub(super) unsafe fn quants(q: *const u8, j: usize, p: usize) -> [__m512i; 4] {
    let m15 = _mm512_set1_epi8(15);
    let qh = _mm512_loadu_si512(q.add(512 + (2 * j + p) * 64).cast());
    let l0 = _mm512_loadu_si512(q.add((4 * j + p) * 64).cast());
    let l1 = _mm512_loadu_si512(q.add((4 * j + 2 + p) * 64).cast());
    let h0 = _mm512_slli_epi16::<4>(_mm512_and_si512(qh, _mm512_set1_epi8(3)));
    let h1 = _mm512_slli_epi16::<2>(_mm512_and_si512(qh, _mm512_set1_epi8(12)));
    let h2 = _mm512_and_si512(qh, _mm512_set1_epi8(48));
    let h3 = _mm512_srli_epi16::<2>(_mm512_and_si512(qh, _mm512_set1_epi8(-64)));
    [
        _mm512_or_si512(_mm512_and_si512(l0, m15), h0),
        _mm512_or_si512(_mm512_and_si512(l1, m15), h1),
        _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16::<4>(l0), m15), h2),
        _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16::<4>(l1), m15), h3),
    ]
}

/// The q6_K layout (marker for [`super::kq::groups`]).
pub(super) struct Q6K;

impl Layout for Q6K {
    const QS_BYTES: usize = QS_BYTES;
    const META_BYTES: usize = META_BYTES;

    #[inline(always)]
    unsafe fn kernel_avx2<const T: usize>(wq: *const u8, wd: *const u8, nb: usize, a: &[ActRow; T]) -> [[f32; ROWS]; T] {
        super::kq_avx2::q6_k::<T>(wq, wd, nb, a)
    }

    #[inline(always)]
    #[allow(clippy::needless_range_loop)]
    unsafe fn kernel<const T: usize>(wq: *const u8, wd: *const u8, nb: usize, a: &[ActRow; T]) -> [[f32; ROWS]; T] {
        let mut acc = [_mm512_setzero_ps(); T];
        for b in 0..nb {
            let q = wq.add(b * QS_BYTES);
            let m = wd.add(b * META_BYTES);
            for l in 0..3 {
                _mm_prefetch::<_MM_HINT_T1>(q.wrapping_add(super::PREFETCH + 64 * l).cast());
            }
            _mm_prefetch::<_MM_HINT_T1>(m.wrapping_add(super::PREFETCH / 10).cast());
            // SAFETY (all weight loads): block b < nb of this group, META_BYTES / QS_BYTES each.
            let sc = [_mm512_cvtepi8_epi16(_mm256_loadu_si256(m.cast())), _mm512_cvtepi8_epi16(_mm256_loadu_si256(m.add(32).cast()))];
            let dw = coef_lanes(m.add(64), false);
            let mut sumi = [[_mm512_setzero_si512(); 2]; T];
            for j in 0..2 {
                // Sub-blocks 4j + i, i = 0..4, for both pairs.
                let mut w = [[_mm512_setzero_si512(); 2]; 4];
                for p in 0..2 {
                    for (i, wi) in quants(q, j, p).into_iter().enumerate() {
                        w[i][p] = wi;
                    }
                }
                for i in 0..4 {
                    let idx = _mm512_loadu_si512(SCALE_IDX[4 * j + i].as_ptr().cast());
                    let s = [_mm512_permutexvar_epi16(idx, sc[0]), _mm512_permutexvar_epi16(idx, sc[1])];
                    for t in 0..T {
                        // SAFETY: `y_block` is a whole expanded block.
                        dot_pairs(&mut sumi[t], &w[i], y_sub(y_block(a.get_unchecked(t), b), 4 * j + i), &s);
                    }
                }
            }
            for t in 0..T {
                let y = y_block(a.get_unchecked(t), b);
                // SAFETY: the 16 i16 block sums at BSUMS_AT.
                let bs = _mm512_broadcast_i64x4(_mm256_loadu_si256(y.add(BSUMS_AT).cast()));
                for p in 0..2 {
                    let sub = _mm512_slli_epi32::<5>(_mm512_madd_epi16(bs, sc[p]));
                    sumi[t][p] = _mm512_sub_epi32(sumi[t][p], sub);
                }
                acc[t] = fold_block(acc[t], &sumi[t], _mm512_setzero_si512(), y_d(y), dw);
            }
        }
        rows(&acc)
    }
}

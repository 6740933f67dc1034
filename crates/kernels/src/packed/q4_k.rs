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
//! sum over sub-blocks of scale times elements 4l..4l+4; integers, exact in any order). Each
//! super-block's totals are then folded by the K-quant float order (`kq::fold_block`), so
//! every result is bit-for-bit `vec_dot_q4_k_q8_k`'s.

use std::arch::x86_64::*;

use super::kq::{bsum_pairs4, coef_lanes, dot_pairs, fold_block, pshufb, rows, word_index, y_block, y_d, y_sub, Layout};
use super::{ActRow, ROWS};

/// Quant bytes per (group, super-block).
pub(super) const QS_BYTES: usize = 512;
/// Meta bytes per (group, super-block).
pub(super) const META_BYTES: usize = 80;

/// The q4_K layout (marker for [`super::kq::groups`]).
pub(super) struct Q4K;

/// A block's meta (shared with q5_K): the 4 rows' scales and mins (i16, 8 per row) and their
/// `d` and `dmin` as [`coef_lanes`].
///
/// # Safety
/// `m` points at [`META_BYTES`] readable bytes.
#[inline(always)]
pub(super) unsafe fn meta(m: *const u8) -> (__m512i, __m512i, __m512) {
    let sc = _mm512_cvtepu8_epi16(_mm256_loadu_si256(m.cast()));
    let mins = _mm512_cvtepu8_epi16(_mm256_loadu_si256(m.add(32).cast()));
    (sc, mins, coef_lanes(m.add(64), true))
}

/// The 4 rows' scales (`sc`: 8 i16 per row, row k in 128-bit lane k) per row pair, as the
/// 128-bit lanes [row 2p, row 2p, row 2p + 1, row 2p + 1], from which [`pair_scales`] takes one
/// sub-block's (shared with iq4_xs, 8 scales per row too).
#[inline(always)]
pub(super) unsafe fn pair_lanes(sc: __m512i) -> [__m512i; 2] {
    [_mm512_shuffle_i64x2::<0b01_01_00_00>(sc, sc), _mm512_shuffle_i64x2::<0b11_11_10_10>(sc, sc)]
}

/// Sub-block `s`'s scales for both row pairs from [`pair_lanes`]: row 2p's in lanes 0..16 (i16),
/// row 2p + 1's in 16..32. An in-lane `vpshufb` each (one uop), where a `vpermw` of the 4 rows'
/// 32 scales costs two on the shuffle port these kernels are bound by in decode.
#[inline(always)]
pub(super) unsafe fn pair_scales(pl: &[__m512i; 2], s: usize) -> [__m512i; 2] {
    let idx = _mm512_set1_epi16(word_index(s));
    [pshufb(pl[0], idx), pshufb(pl[1], idx)]
}

/// Chunk `j` (shared with q5_K): sub-blocks 2j (`lo`) and 2j + 1 (`hi`) of both row pairs,
/// by their scales from [`pair_lanes`] `pl`, against block `b` of every token.
///
/// # Safety
/// Every `a[t]` holds block `b`.
#[inline(always)]
pub(super) unsafe fn chunk<const T: usize>(sumi: &mut [[__m512i; 2]; T], lo: &[__m512i; 2], hi: &[__m512i; 2], pl: &[__m512i; 2], j: usize, a: &[ActRow; T], b: usize) {
    let (slo, shi) = (pair_scales(pl, 2 * j), pair_scales(pl, 2 * j + 1));
    for (t, sumi) in sumi.iter_mut().enumerate() {
        // SAFETY: `y` is a whole expanded block.
        let y = y_block(a.get_unchecked(t), b);
        dot_pairs(sumi, lo, y_sub(y, 2 * j), &slo);
        dot_pairs(sumi, hi, y_sub(y, 2 * j + 1), &shi);
    }
}

impl Layout for Q4K {
    const QS_BYTES: usize = QS_BYTES;
    const META_BYTES: usize = META_BYTES;

    #[inline(always)]
    unsafe fn kernel_avx2<const T: usize>(wq: *const u8, wd: *const u8, nb: usize, a: &[ActRow; T]) -> [[f32; ROWS]; T] {
        super::kq_avx2::q45_k::<T, false>(wq, wd, nb, a)
    }

    #[inline(always)]
    #[allow(clippy::needless_range_loop)]
    unsafe fn kernel<const T: usize>(wq: *const u8, wd: *const u8, nb: usize, a: &[ActRow; T]) -> [[f32; ROWS]; T] {
        let m4 = _mm512_set1_epi8(0xF);
        let mut acc = [_mm512_setzero_ps(); T];
        for b in 0..nb {
            let q = wq.add(b * QS_BYTES);
            let m = wd.add(b * META_BYTES);
            super::prefetch_block(q, m, QS_BYTES, META_BYTES);
            // SAFETY (all weight loads): block b < nb of this group, META_BYTES / QS_BYTES each.
            let (sc, mins, dw) = meta(m);
            let pl = pair_lanes(sc);
            let mut sumi = [[_mm512_setzero_si512(); 2]; T];
            for j in 0..4 {
                let v0 = _mm512_loadu_si512(q.add(j * 128).cast());
                let v1 = _mm512_loadu_si512(q.add(j * 128 + 64).cast());
                let lo = [_mm512_and_si512(v0, m4), _mm512_and_si512(v1, m4)];
                let hi = [_mm512_and_si512(_mm512_srli_epi16::<4>(v0), m4), _mm512_and_si512(_mm512_srli_epi16::<4>(v1), m4)];
                chunk(&mut sumi, &lo, &hi, &pl, j, a, b);
            }
            for t in 0..T {
                let y = y_block(a.get_unchecked(t), b);
                // Rows' mins (i16 8k..8k+8) against the token's 8 bsum pairs in every 128-bit
                // lane: lane 4k + i = row k's `madd(mins, bsums_pairs)` lane i.
                let prod = _mm512_madd_epi16(mins, _mm512_broadcast_i32x4(bsum_pairs4(y)));
                acc[t] = fold_block(acc[t], &sumi[t], prod, y_d(y), dw);
            }
        }
        rows(&acc)
    }
}

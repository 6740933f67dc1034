//! q5_K x q8_K on 4 interleaved rows and up to 4 tokens per call, AVX-512 VNNI.
//!
//! Packed layout per (group of 4 rows, super-block), see `super::pack_k`: the quants as q4_K's
//! (512 bytes, chunk `j` of rows 2p, 2p+1 at `(2j + p) * 64`), then the fifth bits `qh` of rows
//! 2p, 2p+1 (32 bytes each) at `512 + 64p`; the meta (80 bytes) as q4_K's.
//!
//! The integer lanes are q4_K's with 16 added where the element's high bit is set (bit `2j` of
//! `qh[l]` for chunk `j`'s low nibbles, `2j + 1` for its high ones), exactly the AVX2 kernel's
//! quants; the totals are folded as q4_K's (`kq::fold_block`): bit-for-bit `vec_dot_q5_k_q8_k`.

use std::arch::x86_64::*;

use super::kq::{bsum_pairs4, fold_block, rows, y_block, y_d, Layout};
use super::q4_k::{chunk, meta, pair_lanes};
use super::{ActRow, ROWS};

/// Quant bytes per (group, super-block).
pub(super) const QS_BYTES: usize = 640;
/// Meta bytes per (group, super-block).
pub(super) const META_BYTES: usize = super::q4_k::META_BYTES;

/// Where a block's fifth bits start (row pair `p`'s at `QH_AT + 64 p`).
pub(super) const QH_AT: usize = 512;

/// Chunk `j`'s low (`l`) and high (`h`) nibbles of a row pair plus 16 where the element's fifth
/// bit (bit `2j`, or `2j + 1` for the high ones, of the pair's `qh`) is set (shared with
/// `super::amx`).
#[inline(always)]
pub(super) unsafe fn fifth_bits(l: __m512i, h: __m512i, qh: __m512i, j: usize) -> (__m512i, __m512i) {
    let m16 = _mm512_set1_epi8(16);
    let (bit_lo, bit_hi) = (_mm512_set1_epi8(1 << (2 * j)), _mm512_set1_epi8((1u8 << (2 * j + 1)) as i8));
    (_mm512_mask_add_epi8(l, _mm512_test_epi8_mask(qh, bit_lo), l, m16), _mm512_mask_add_epi8(h, _mm512_test_epi8_mask(qh, bit_hi), h, m16))
}

/// The q5_K layout (marker for [`super::kq::groups`]).
pub(super) struct Q5K;

impl Layout for Q5K {
    const QS_BYTES: usize = QS_BYTES;
    const META_BYTES: usize = META_BYTES;

    #[inline(always)]
    unsafe fn kernel_avx2<const T: usize>(wq: *const u8, wd: *const u8, nb: usize, a: &[ActRow; T]) -> [[f32; ROWS]; T] {
        super::kq_avx2::q45_k::<T, true>(wq, wd, nb, a)
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
            let qh = [_mm512_loadu_si512(q.add(QH_AT).cast()), _mm512_loadu_si512(q.add(QH_AT + 64).cast())];
            let mut sumi = [[_mm512_setzero_si512(); 2]; T];
            for j in 0..4 {
                let mut lo = [_mm512_setzero_si512(); 2];
                let mut hi = [_mm512_setzero_si512(); 2];
                for p in 0..2 {
                    let v = _mm512_loadu_si512(q.add((2 * j + p) * 64).cast());
                    let l = _mm512_and_si512(v, m4);
                    let h = _mm512_and_si512(_mm512_srli_epi16::<4>(v), m4);
                    (lo[p], hi[p]) = fifth_bits(l, h, qh[p], j);
                }
                chunk(&mut sumi, &lo, &hi, &pl, j, a, b);
            }
            for t in 0..T {
                let y = y_block(a.get_unchecked(t), b);
                let prod = _mm512_madd_epi16(mins, _mm512_broadcast_i32x4(bsum_pairs4(y)));
                acc[t] = fold_block(acc[t], &sumi[t], prod, y_d(y), dw);
            }
        }
        rows(&acc)
    }
}

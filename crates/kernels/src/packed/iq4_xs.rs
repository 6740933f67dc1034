//! iq4_xs x q8_K on 4 interleaved rows and up to 4 tokens per call: AVX-512 VNNI, and AVX2 + FMA
//! one row at a time.
//!
//! Packed layout per (group of 4 rows, super-block), see `super::pack_k` (552 bytes: the 4 GGUF
//! blocks' 544 with the scales decoded to bytes):
//! - quants, 512 bytes: for sub-blocks `2m`, `2m + 1` and row pair `p`, a 64-byte span at
//!   `(2m + p) * 64`: row 2p's 32 bytes, then row 2p + 1's; byte `i` of a row holds element `i`
//!   of sub-block `2m` in its low nibble and element `i` of sub-block `2m + 1` in its high one
//!   (the GGUF block's nibbles re-paired at load, so one mask or shift gives a whole sub-block in
//!   element order, as the q8_K activations are);
//! - meta, 40 bytes: the 8 sub-block scales of each row (i8, `ls - 32`), then `d` of the 4 rows
//!   (f16).
//!
//! The codes go through `KVALUES_IQ4NL` with `pshufb`; `maddubs` wants one unsigned operand, so
//! the weights enter as `|v|` and the activations are negated where `v < 0` (AVX-512 has no
//! `vpsignb`: a masked subtract), then `vpdpwssd` by the sub-block scales. Pairs stay below 2^15
//! (codes and q8_K quants are at most 127 in magnitude). Per row: one exact total per
//! super-block, folded by the K-quant float order (`kq::fold_block`), so every result is
//! bit-for-bit `vec_dot_iq4_xs_q8_k`'s.

// The loops index by sub-block number as the layout comment does.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::kq::{coef_lanes, dpwssd, fold_block, rows, y_block, y_d, y_sub, Layout};
// One i8 scale per row and 32-element sub-block, 8 per row: q4_K's scale arrangement.
use super::q4_k::{pair_lanes, pair_scales};
use super::{ActRow, ROWS};
use crate::quant::blocks::KVALUES_IQ4NL;
use crate::quant::kquants::k_step;
use crate::quant::x86::hsum_i32_8;

/// Quant bytes per (group, super-block).
pub(super) const QS_BYTES: usize = 512;
/// Meta bytes per (group, super-block).
pub(super) const META_BYTES: usize = 40;
/// Where `d` of the 4 rows starts in a block's meta.
const D_AT: usize = 32;

/// Writes row `k`'s GGUF block (136 bytes) into its group's packed quants `q` and meta `s`.
pub(super) fn pack(blk: &crate::quant::blocks::BlockIQ4XS, k: usize, q: &mut [u8], s: &mut [u8]) {
    let (p, h) = (k / 2, k % 2);
    let code = |sb: usize, i: usize| (blk.qs[16 * sb + i % 16] >> (4 * (i / 16))) & 0xF;
    for m in 0..4 {
        for i in 0..32 {
            q[(2 * m + p) * 64 + 32 * h + i] = code(2 * m, i) | (code(2 * m + 1, i) << 4);
        }
    }
    for sb in 0..8 {
        s[8 * k + sb] = blk.scale(sb) as i8 as u8;
    }
    s[D_AT + 2 * k..D_AT + 2 * k + 2].copy_from_slice(&blk.d);
}

/// The iq4_xs layout (marker for [`super::kq::groups`]).
pub(super) struct IQ4XS;

impl Layout for IQ4XS {
    const QS_BYTES: usize = QS_BYTES;
    const META_BYTES: usize = META_BYTES;

    #[inline(always)]
    unsafe fn kernel<const T: usize>(wq: *const u8, wd: *const u8, nb: usize, a: &[ActRow; T]) -> [[f32; ROWS]; T] {
        let tab = _mm512_broadcast_i32x4(_mm_loadu_si128(KVALUES_IQ4NL.as_ptr().cast()));
        let m4 = _mm512_set1_epi8(0xF);
        let mut acc = [_mm512_setzero_ps(); T];
        for b in 0..nb {
            let q = wq.add(b * QS_BYTES);
            let m = wd.add(b * META_BYTES);
            super::prefetch_block(q, m, QS_BYTES, META_BYTES);
            // SAFETY (all weight loads): block b < nb of this group, META_BYTES / QS_BYTES each.
            let pl = pair_lanes(_mm512_cvtepi8_epi16(_mm256_loadu_si256(m.cast())));
            let dw = coef_lanes(m.add(D_AT), false);
            let mut sumi = [[_mm512_setzero_si512(); 2]; T];
            for mm in 0..4 {
                // |v| and the sign masks of sub-blocks 2mm (h = 0) and 2mm + 1 (h = 1), both pairs.
                let mut av = [[_mm512_setzero_si512(); 2]; 2];
                let mut neg = [[0u64; 2]; 2];
                for p in 0..2 {
                    let v = _mm512_loadu_si512(q.add((2 * mm + p) * 64).cast());
                    let codes = [_mm512_and_si512(v, m4), _mm512_and_si512(_mm512_srli_epi16::<4>(v), m4)];
                    for h in 0..2 {
                        let val = _mm512_shuffle_epi8(tab, codes[h]);
                        neg[h][p] = _mm512_movepi8_mask(val);
                        av[h][p] = _mm512_abs_epi8(val);
                    }
                }
                for h in 0..2 {
                    let sb = 2 * mm + h;
                    let s = pair_scales(&pl, sb);
                    for t in 0..T {
                        // SAFETY: `y_block` is a whole expanded block.
                        let y = y_sub(y_block(a.get_unchecked(t), b), sb);
                        for p in 0..2 {
                            let sy = _mm512_mask_sub_epi8(y, neg[h][p], _mm512_setzero_si512(), y);
                            sumi[t][p] = dpwssd(sumi[t][p], _mm512_maddubs_epi16(av[h][p], sy), s[p]);
                        }
                    }
                }
            }
            for t in 0..T {
                let y = y_block(a.get_unchecked(t), b);
                acc[t] = fold_block(acc[t], &sumi[t], _mm512_setzero_si512(), y_d(y), dw);
            }
        }
        rows(&acc)
    }

    #[inline(always)]
    unsafe fn kernel_avx2<const T: usize>(wq: *const u8, wd: *const u8, nb: usize, a: &[ActRow; T]) -> [[f32; ROWS]; T] {
        let tab = _mm256_broadcastsi128_si256(_mm_loadu_si128(KVALUES_IQ4NL.as_ptr().cast()));
        let m4 = _mm256_set1_epi8(0xF);
        let mut res = [[0f32; ROWS]; T];
        for k in 0..ROWS {
            let mut acc = [0f32; T];
            for b in 0..nb {
                let q = wq.add(b * QS_BYTES);
                let m = wd.add(b * META_BYTES);
                _mm_prefetch::<_MM_HINT_T1>(q.wrapping_add(super::PREFETCH + 32 * k).cast());
                // SAFETY (all weight loads): block b < nb of this group.
                let mut d = [0f32; 4];
                _mm_storeu_ps(d.as_mut_ptr(), _mm_cvtph_ps(_mm_loadl_epi64(m.add(D_AT).cast())));
                let mut sumi = [_mm256_setzero_si256(); T];
                for mm in 0..4 {
                    let v = _mm256_loadu_si256(q.add(128 * mm + 32 * k).cast());
                    let codes = [_mm256_and_si256(v, m4), _mm256_and_si256(_mm256_srli_epi16::<4>(v), m4)];
                    for h in 0..2 {
                        let sb = 2 * mm + h;
                        let val = _mm256_shuffle_epi8(tab, codes[h]);
                        let av = _mm256_sign_epi8(val, val);
                        let scale = _mm256_set1_epi16(*m.add(8 * k + sb) as i8 as i16);
                        for t in 0..T {
                            // SAFETY: `y_block` is a whole expanded block.
                            let y = _mm256_loadu_si256(y_block(a.get_unchecked(t), b).add(64 * sb).cast());
                            let p16 = _mm256_maddubs_epi16(av, _mm256_sign_epi8(y, val));
                            sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(p16, scale));
                        }
                    }
                }
                for t in 0..T {
                    let y = y_block(a.get_unchecked(t), b);
                    acc[t] = k_step(acc[t], d[k] * y_d(y), hsum_i32_8(sumi[t]), 0.0, 0);
                }
            }
            for t in 0..T {
                res[t][k] = acc[t];
            }
        }
        res
    }
}

//! The packed layouts whose super-blocks have 16 sub-blocks of 16 elements, one scale each:
//! q6_K (`super::q6_k`), q3_K and q2_K. One kernel body serves all three (AVX-512 VNNI, and AVX2 +
//! FMA one row at a time); a layout supplies its quants of four 32-element chunks and says how
//! its values are offset.
//!
//! Packed layouts per (group of 4 rows, super-block), see `super::pack_k` (row pair `p` = rows
//! 2p and 2p + 1, row 2p's 32 bytes first in each 64-byte span, so row `k`'s bytes sit at `32 k`
//! within every 128-byte span):
//! - q3_K, 456 bytes (the 4 GGUF blocks' 440 with the 12-byte packed scales decoded):
//!   - quants, 384 bytes: `qs[32h..32h + 32]` (chunks `4h + j` in bits `2j`) of pair `p` at
//!     `(2h + p) * 64`, then the `hmask` of pair `p` at `256 + 64 p`;
//!   - meta, 72 bytes: the 16 scales of each row (i8, -32..32), then `d` of the 4 rows (f16).
//! - q2_K, 336 bytes (the same as the 4 GGUF blocks):
//!   - quants, 256 bytes: `qs` as q3_K's;
//!   - meta, 80 bytes: the 16 scale bytes of each row (scale in the low nibble, min in the
//!     high), then `d` of the 4 rows, then `dmin` of the 4 rows (f16).
//!
//! The weights enter `maddubs` unsigned: q3_K as `q + 4` (0..8, the `hmask` bit giving the 4),
//! q6_K as `q + 32`; the offset comes back out once per super-block as `offset * sum_g scale_g *
//! bsum_g` from the q8_K block sums (16 elements each: exactly one sub-block). q2_K's quants are
//! unsigned already and its minimums give `msum = sum_g min_g * bsum_g`. Per row: the exact
//! integer totals, then the K-quant float order (`kq::fold_block`), so every result is
//! bit-for-bit the row kernels' (`vec_dot_q*_k_q8_k`).

// The loops index by chunk number as the layout comment does.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::kq::{coef_lanes, dot_pairs, fold_block, pshufb, rows, word_index, y_block, y_d, y_sub, BSUMS_AT};
use super::{ActRow, ROWS};
use crate::quant::kquants::k_step;
use crate::quant::x86::hsum_i32_8;
use crate::quant::x86::kquants::SHUF_Q6;

/// A layout with 16 scales per row and super-block.
pub(super) trait Sub16 {
    /// Quant bytes per (group, super-block).
    const QS_BYTES: usize;
    /// Meta bytes per (group, super-block): 64 scale bytes, `d` (4 x f16), `dmin` if [`Self::MINS`].
    const META_BYTES: usize;
    /// log2 of the offset of the unsigned quants (q6_K: 32, q3_K: 4), or `None`.
    const OFFSET_LOG2: Option<u32>;
    /// Whether the scale bytes carry minimums in their high nibbles (q2_K).
    const MINS: bool;
    /// The unsigned quants of chunks `4j + i`, `i < 4`, for pair `p`: row 2p in the lower 256
    /// bits, row 2p + 1 in the upper.
    ///
    /// # Safety
    /// `q` points at a whole packed block; `j, p < 2`; AVX-512 BW is available.
    unsafe fn quants(q: *const u8, j: usize, p: usize) -> [__m512i; 4];
    /// Row `k`'s unsigned quants of chunks `4j + i`.
    ///
    /// # Safety
    /// `q` points at a whole packed block; `j < 2`, `k < 4`; AVX2 is available.
    unsafe fn quants_avx2(q: *const u8, j: usize, k: usize) -> [__m256i; 4];
}

/// A pair's 32 scales (`sc`: row 2p's 16 i16 in 128-bit lanes 0-1, row 2p + 1's in lanes 2-3)
/// as the lanes [row 2p's h, row 2p's h, row 2p + 1's h, row 2p + 1's h] for h = 0 (scales
/// 0..8) and h = 1 (8..16), from which [`chunk_scales`] takes a chunk's two.
#[inline(always)]
unsafe fn scale_lanes(sc: __m512i) -> [__m512i; 2] {
    [_mm512_shuffle_i64x2::<0b10_10_00_00>(sc, sc), _mm512_shuffle_i64x2::<0b11_11_01_01>(sc, sc)]
}

/// Chunk `c`'s scales from a pair's [`scale_lanes`]: scale `2c` on the chunk's first 16
/// elements (i16 lanes 0..8 of each row's half), `2c + 1` on the rest. An in-lane `vpshufb`
/// (one uop), where a `vpermw` costs two on the shuffle port these kernels are bound by in decode.
#[inline(always)]
unsafe fn chunk_scales(sl: &[__m512i; 2], c: usize) -> __m512i {
    let word = |w: usize| _mm_set1_epi16(word_index(w % 8));
    let idx = _mm512_broadcast_i64x4(_mm256_set_m128i(word(2 * c + 1), word(2 * c)));
    pshufb(sl[c / 4], idx)
}

/// The scales (and minimums) of pair `p` as 32 i16: row 2p's 16, then row 2p + 1's.
#[inline(always)]
unsafe fn pair_meta<L: Sub16>(m: *const u8, p: usize) -> (__m512i, __m512i) {
    let raw = _mm256_loadu_si256(m.add(32 * p).cast());
    if L::MINS {
        let w = _mm512_cvtepu8_epi16(raw);
        (_mm512_and_si512(w, _mm512_set1_epi16(0xF)), _mm512_srli_epi16::<4>(w))
    } else {
        (_mm512_cvtepi8_epi16(raw), _mm512_setzero_si512())
    }
}

/// The AVX-512 kernel of every [`Sub16`] layout (see `kq::Layout::kernel`).
///
/// # Safety
/// As `kq::Layout::kernel`.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
pub(super) unsafe fn kernel<L: Sub16, const T: usize>(wq: *const u8, wd: *const u8, nb: usize, a: &[ActRow; T]) -> [[f32; ROWS]; T] {
    let mut acc = [_mm512_setzero_ps(); T];
    for b in 0..nb {
        let q = wq.add(b * L::QS_BYTES);
        let m = wd.add(b * L::META_BYTES);
        super::prefetch_block(q, m, L::QS_BYTES, L::META_BYTES);
        // SAFETY (all weight loads): block b < nb of this group, META_BYTES / QS_BYTES each.
        let (s0, m0) = pair_meta::<L>(m, 0);
        let (s1, m1) = pair_meta::<L>(m, 1);
        let sc = [s0, s1];
        let sl = [scale_lanes(s0), scale_lanes(s1)];
        let dw = coef_lanes(m.add(64), L::MINS);
        let mut sumi = [[_mm512_setzero_si512(); 2]; T];
        for j in 0..2 {
            // Chunks 4j + i, i = 0..4, for both pairs.
            let mut w = [[_mm512_setzero_si512(); 2]; 4];
            for p in 0..2 {
                for (i, wi) in L::quants(q, j, p).into_iter().enumerate() {
                    w[i][p] = wi;
                }
            }
            for i in 0..4 {
                let s = [chunk_scales(&sl[0], 4 * j + i), chunk_scales(&sl[1], 4 * j + i)];
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
            if let Some(sh) = L::OFFSET_LOG2 {
                for p in 0..2 {
                    let off = _mm512_sll_epi32(_mm512_madd_epi16(bs, sc[p]), _mm_cvtsi32_si128(sh as i32));
                    sumi[t][p] = _mm512_sub_epi32(sumi[t][p], off);
                }
            }
            let prod = if L::MINS {
                // Row 2p's 8 lanes, then row 2p + 1's, per pair -> row k's halves in quarter k.
                let (x0, x1) = (_mm512_madd_epi16(bs, m0), _mm512_madd_epi16(bs, m1));
                _mm512_add_epi32(_mm512_shuffle_i32x4::<0b10_00_10_00>(x0, x1), _mm512_shuffle_i32x4::<0b11_01_11_01>(x0, x1))
            } else {
                _mm512_setzero_si512()
            };
            acc[t] = fold_block(acc[t], &sumi[t], prod, y_d(y), dw);
        }
    }
    rows(&acc)
}

/// The 4 rows' f16 values at `p` as f32.
#[inline(always)]
unsafe fn f16x4(p: *const u8) -> [f32; 4] {
    let mut o = [0f32; 4];
    _mm_storeu_ps(o.as_mut_ptr(), _mm_cvtph_ps(_mm_loadl_epi64(p.cast())));
    o
}

/// The AVX2 kernel of every [`Sub16`] layout, one row of the group at a time (see
/// `kq::Layout::kernel_avx2`): per row the steps of the AVX2 row kernels.
///
/// # Safety
/// As `kq::Layout::kernel_avx2`.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
pub(super) unsafe fn kernel_avx2<L: Sub16, const T: usize>(wq: *const u8, wd: *const u8, nb: usize, a: &[ActRow; T]) -> [[f32; ROWS]; T] {
    let mut res = [[0f32; ROWS]; T];
    for k in 0..ROWS {
        let mut acc = [0f32; T];
        for b in 0..nb {
            let q = wq.add(b * L::QS_BYTES);
            let m = wd.add(b * L::META_BYTES);
            _mm_prefetch::<_MM_HINT_T1>(q.wrapping_add(super::PREFETCH + 32 * k).cast());
            // SAFETY (all weight loads): block b < nb of this group.
            let d = f16x4(m.add(64));
            let raw = _mm_loadu_si128(m.add(16 * k).cast());
            let (sc8, mins) = if L::MINS {
                (_mm_and_si128(raw, _mm_set1_epi8(0xF)), _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16::<4>(raw), _mm_set1_epi8(0xF))))
            } else {
                (raw, _mm256_setzero_si256())
            };
            let sc16 = _mm256_cvtepi8_epi16(sc8);
            let mut sumi = [_mm256_setzero_si256(); T];
            for j in 0..2 {
                let w = L::quants_avx2(q, j, k);
                for i in 0..4 {
                    let c = 4 * j + i;
                    // Scale 2c on the chunk's first 16 quants, 2c + 1 on the rest.
                    let scale = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, _mm_loadu_si128(SHUF_Q6[c].as_ptr().cast())));
                    for t in 0..T {
                        // SAFETY: `y_block` is a whole expanded block.
                        let y = _mm256_loadu_si256(y_block(a.get_unchecked(t), b).add(64 * c).cast());
                        sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(scale, _mm256_maddubs_epi16(w[i], y)));
                    }
                }
            }
            for t in 0..T {
                let y = y_block(a.get_unchecked(t), b);
                // SAFETY: the 16 i16 block sums at BSUMS_AT.
                let bs = _mm256_loadu_si256(y.add(BSUMS_AT).cast());
                let mut si = sumi[t];
                if let Some(sh) = L::OFFSET_LOG2 {
                    si = _mm256_sub_epi32(si, _mm256_sll_epi32(_mm256_madd_epi16(bs, sc16), _mm_cvtsi32_si128(sh as i32)));
                }
                let (dm, msum) = if L::MINS { (y_d(y) * f16x4(m.add(72))[k], hsum_i32_8(_mm256_madd_epi16(bs, mins))) } else { (0.0, 0) };
                acc[t] = k_step(acc[t], y_d(y) * d[k], hsum_i32_8(si), dm, msum);
            }
        }
        for t in 0..T {
            res[t][k] = acc[t];
        }
    }
    res
}

/// Bits `2j..2j + 2` of every byte (`j` a constant after unrolling).
#[inline(always)]
unsafe fn low2_512(v: __m512i, j: usize) -> __m512i {
    _mm512_and_si512(_mm512_srl_epi16(v, _mm_cvtsi32_si128(2 * j as i32)), _mm512_set1_epi8(3))
}

#[inline(always)]
unsafe fn low2_256(v: __m256i, j: usize) -> __m256i {
    _mm256_and_si256(_mm256_srl_epi16(v, _mm_cvtsi32_si128(2 * j as i32)), _mm256_set1_epi8(3))
}

/// Bit `c` of every byte moved to bit 2 (the value 4 where set).
#[inline(always)]
unsafe fn bit_as_4_512(hm: __m512i, c: usize) -> __m512i {
    let moved = if c >= 2 { _mm512_srl_epi16(hm, _mm_cvtsi32_si128(c as i32 - 2)) } else { _mm512_sll_epi16(hm, _mm_cvtsi32_si128(2 - c as i32)) };
    _mm512_and_si512(moved, _mm512_set1_epi8(4))
}

#[inline(always)]
unsafe fn bit_as_4_256(hm: __m256i, c: usize) -> __m256i {
    let moved = if c >= 2 { _mm256_srl_epi16(hm, _mm_cvtsi32_si128(c as i32 - 2)) } else { _mm256_sll_epi16(hm, _mm_cvtsi32_si128(2 - c as i32)) };
    _mm256_and_si256(moved, _mm256_set1_epi8(4))
}

/// Where the `hmask` bytes start in a packed q3_K block.
const Q3_HMASK_AT: usize = 256;

/// The q3_K layout (marker for [`super::kq::groups`]).
pub(super) struct Q3K;

impl Sub16 for Q3K {
    const QS_BYTES: usize = 384;
    const META_BYTES: usize = 72;
    const OFFSET_LOG2: Option<u32> = Some(2);
    const MINS: bool = false;

    #[inline(always)]
    unsafe fn quants(q: *const u8, h: usize, p: usize) -> [__m512i; 4] {
        let v = _mm512_loadu_si512(q.add((2 * h + p) * 64).cast());
        let hm = _mm512_loadu_si512(q.add(Q3_HMASK_AT + 64 * p).cast());
        let mut w = [_mm512_setzero_si512(); 4];
        for j in 0..4 {
            w[j] = _mm512_or_si512(low2_512(v, j), bit_as_4_512(hm, 4 * h + j));
        }
        w
    }

    #[inline(always)]
    unsafe fn quants_avx2(q: *const u8, h: usize, k: usize) -> [__m256i; 4] {
        let v = _mm256_loadu_si256(q.add(128 * h + 32 * k).cast());
        let hm = _mm256_loadu_si256(q.add(Q3_HMASK_AT + 32 * k).cast());
        let mut w = [_mm256_setzero_si256(); 4];
        for j in 0..4 {
            w[j] = _mm256_or_si256(low2_256(v, j), bit_as_4_256(hm, 4 * h + j));
        }
        w
    }
}

/// The q2_K layout (marker for [`super::kq::groups`]).
pub(super) struct Q2K;

impl Sub16 for Q2K {
    const QS_BYTES: usize = 256;
    const META_BYTES: usize = 80;
    const OFFSET_LOG2: Option<u32> = None;
    const MINS: bool = true;

    #[inline(always)]
    unsafe fn quants(q: *const u8, h: usize, p: usize) -> [__m512i; 4] {
        let v = _mm512_loadu_si512(q.add((2 * h + p) * 64).cast());
        [low2_512(v, 0), low2_512(v, 1), low2_512(v, 2), low2_512(v, 3)]
    }

    #[inline(always)]
    unsafe fn quants_avx2(q: *const u8, h: usize, k: usize) -> [__m256i; 4] {
        let v = _mm256_loadu_si256(q.add(128 * h + 32 * k).cast());
        [low2_256(v, 0), low2_256(v, 1), low2_256(v, 2), low2_256(v, 3)]
    }
}

macro_rules! sub16_layout {
    ($t:ty) => {
        impl super::kq::Layout for $t {
            const QS_BYTES: usize = <$t as super::k16::Sub16>::QS_BYTES;
            const META_BYTES: usize = <$t as super::k16::Sub16>::META_BYTES;

            #[inline(always)]
            unsafe fn kernel<const T: usize>(wq: *const u8, wd: *const u8, nb: usize, a: &[super::ActRow; T]) -> [[f32; super::ROWS]; T] {
                super::k16::kernel::<$t, T>(wq, wd, nb, a)
            }

            #[inline(always)]
            unsafe fn kernel_avx2<const T: usize>(wq: *const u8, wd: *const u8, nb: usize, a: &[super::ActRow; T]) -> [[f32; super::ROWS]; T] {
                super::k16::kernel_avx2::<$t, T>(wq, wd, nb, a)
            }
        }
    };
}
pub(super) use sub16_layout;

sub16_layout!(Q3K);
sub16_layout!(Q2K);

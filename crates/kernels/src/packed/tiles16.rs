//! Prefill on the packed K-quant (q2_K to q6_K) and iq4_xs matrices on AVX-512 VNNI CPUs without
//! AMX: 16 tokens in the lanes of a register.
//!
//! The 4-row kernels (`kq`, `k16`, `iq4_xs`) put two weight rows in a register and spend a
//! `maddubs` and a `vpdpwssd` (iq4_xs: and a masked negate) per 64 multiply-adds. Here, as in an
//! AMX tile, the activations of 16 tokens sit side by side (`amx::AmxActs`, 4 consecutive
//! elements of each token per 32-bit lane), each weight row's 4 bytes are broadcast, and one
//! `vpdpbusd` does 64 multiply-adds for 16 tokens at once. The weights are unpacked once per
//! 16-row tile (in L1/L2): q4_K/q5_K/q2_K as unsigned bytes (the `vpdpbusd` unsigned operand,
//! the activations the signed one); q6_K, q3_K and iq4_xs as their signed values (q6_K's `q -
//! 32`, q3_K's `q - 4`, iq4_xs's code values), which then take the signed operand while the
//! activations, flipped to `y + 128`, take the unsigned one. Each sub-block's exact sum is
//! multiplied by its scale (`vpmulld`); the `128 * sum_s scale_s * (sum of the sub-block's
//! weights)` that the flip adds is one integer per row and block, computed when the tile is
//! unpacked and subtracted once, and the mins come out as `sum_s min_s * bsum_s` from the q8_K
//! block sums (`vpdpwssd`). So every (row, token,
//! super-block) total is the exact integer the row kernels compute, folded by the K-quant float
//! order (`quant::kquants::k_step`, as `amx::fold`): bit-for-bit the other paths' results.

// The loops index rows, sub-blocks and groups as the comments do.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;
use std::cell::RefCell;

use gguf::GgmlType;

use super::amx::{self, AmxActs, Mins, GROUPS, MIN_PAIRS, TILE};
use super::k16::{Q2K, Q3K, Sub16};
use super::{grow, q5_k, q6_k, PackedMatrix, ROWS};
use crate::quant::blocks::{KVALUES_IQ4NL, QK_K};

/// Whether this process runs these tiles for prompts (AVX-512 VNNI, and AMX not in use).
pub(super) fn enabled() -> bool {
    super::available() && !amx::enabled()
}

/// Elements per scale (16 or 32).
fn sub_block(ty: GgmlType) -> usize {
    if matches!(ty, GgmlType::Q6_K | GgmlType::Q3_K | GgmlType::Q2_K) { 16 } else { 32 }
}

/// Whether the type's quants are signed: unpacked as their signed values, against activations
/// flipped to unsigned (see the module docs).
fn signed_weights(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q6_K | GgmlType::Q3_K | GgmlType::IQ4_XS)
}

/// Most scales per row and super-block.
const MAX_SB: usize = 16;

/// One 16-row tile unpacked, per block: the rows' quants `a` (see [`a_at`]), scales `sc`
/// (`[row][sub-block]`, [`MAX_SB`] per row), min pairs `minp` (`[row][pair]`, two i16 per i32),
/// the signed types' flip corrections `corr`, `d` and `dmin` (`[row]`); and the float
/// accumulators. Every part is written with whole vector stores straight from the packed
/// layout, whose registers hold a row pair's 32-element chunk in their two halves.
#[derive(Default)]
struct RawTile {
    a: Vec<u8>,
    sc: Vec<i32>,
    minp: Vec<i32>,
    corr: Vec<i32>,
    dw: Vec<f32>,
    dm: Vec<f32>,
    acc: Vec<f32>,
}

thread_local! {
    static RAW_TILE: RefCell<RawTile> = RefCell::new(RawTile::default());
}

/// Where row `r`'s (of the tile) 32-element chunk `c` starts in a block's unpacked quants: the
/// rows go in pairs, and a pair's chunk `c` is 64 bytes, the even row's 32 then the odd row's
/// (the packed registers' two halves, so one store writes both).
#[inline(always)]
fn a_at(r: usize, c: usize) -> usize {
    (r / 2) * 512 + c * 64 + (r % 2) * 32
}

/// The flip correction of a signed type for the row pair at `a` (`[chunk][row][32]`, as
/// [`a_at`]): `128 * sum_e scale(e) * w_e` for each of the two rows, where `scale(e)` is the
/// scale of element `e`'s sub-block (`SB` elements), taken from the rows' i8 scales at `sa` and
/// `sb` (at least 8 bytes each; 16 for `SB = 16`).
///
/// `vpdpbusd` needs one unsigned operand: the weights go in as `w + 128` (the top bit flipped)
/// against each element's scale (a byte shuffle of the scales), and the `128 * scale` that adds
/// is taken back out by a second `vpdpbusd` of `128` against the same scales. Exact: at most
/// 256 * 255 * 128 per row.
///
/// # Safety
/// AVX-512 BW and VNNI; `a` holds 512 bytes.
#[inline(always)]
unsafe fn flip_corr<const SB: usize>(a: *const u8, sa: *const u8, sb: *const u8) -> [i32; 2] {
    let ld = |p: *const u8| if SB == 16 { _mm_loadu_si128(p.cast()) } else { _mm_loadl_epi64(p.cast()) };
    // 128-bit lanes: row A's scales twice, then row B's twice.
    let (la, lb) = (_mm256_broadcastsi128_si256(ld(sa)), _mm256_broadcastsi128_si256(ld(sb)));
    let scales = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(la), lb);
    // Lanes 1 and 3 (the chunk's second 16 elements) take the next scale when SB is 16.
    let odd = _mm512_set_epi64(0x0101_0101_0101_0101, 0x0101_0101_0101_0101, 0, 0, 0x0101_0101_0101_0101, 0x0101_0101_0101_0101, 0, 0);
    let step = if SB == 16 { odd } else { _mm512_setzero_si512() };
    let flip = _mm512_set1_epi8(-128);
    let (mut up, mut base) = (_mm512_setzero_si512(), _mm512_setzero_si512());
    for c in 0..QK_K / 32 {
        let first = if SB == 16 { 2 * c } else { c } as i8;
        let idx = _mm512_add_epi8(_mm512_set1_epi8(first), step);
        let e_scales = super::kq::pshufb(scales, idx);
        let w = _mm512_xor_si512(_mm512_loadu_si512(a.add(c * 64).cast()), flip);
        up = _mm512_dpbusd_epi32(up, w, e_scales);
        base = _mm512_dpbusd_epi32(base, flip, e_scales);
    }
    let d = _mm512_sub_epi32(up, base);
    let h = |v: __m256i| {
        let x = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        let x = _mm_add_epi32(x, _mm_unpackhi_epi64(x, x));
        _mm_cvtsi128_si32(_mm_add_epi32(x, _mm_shuffle_epi32::<0b01>(x)))
    };
    [128 * h(_mm512_castsi512_si256(d)), 128 * h(_mm512_extracti64x4_epi64::<1>(d))]
}

/// Unpacks row tile `rt` of `w` into `out`; rows past the matrix are zeros.
///
/// # Safety
/// AVX-512 BW and VNNI are available.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn expand(w: &PackedMatrix, rt: usize, out: &mut RawTile) {
    let ty = w.ty;
    let nb = w.n_cols / QK_K;
    let (qsb, dmb) = super::group_block_bytes(ty).expect("packed K-quant");
    grow(&mut out.a, nb * TILE * QK_K);
    grow(&mut out.sc, nb * TILE * MAX_SB);
    grow(&mut out.minp, nb * TILE * MIN_PAIRS);
    grow(&mut out.corr, nb * TILE);
    grow(&mut out.dw, nb * TILE);
    grow(&mut out.dm, nb * TILE);
    let n_groups = w.n_rows.div_ceil(ROWS);
    let (qs, dm) = (w.qs.as_slice(), w.dm.as_slice());
    let m4 = _mm512_set1_epi8(0xF);
    for gi in 0..GROUPS {
        let g = rt * GROUPS + gi;
        let r0 = ROWS * gi;
        for blk in 0..nb {
            let a = out.a.as_mut_ptr().add(blk * TILE * QK_K);
            // Row pair `p` of this group, chunk `c`: one 64-byte store.
            let put = |p: usize, c: usize, v: __m512i| _mm512_storeu_si512(a.add(a_at(r0 + 2 * p, c)).cast(), v);
            // Row `k` of this group's scales and min pairs.
            let (sc_base, minp_base) = (out.sc.as_mut_ptr(), out.minp.as_mut_ptr());
            let sc_at = |k: usize| sc_base.add((blk * TILE + r0 + k) * MAX_SB);
            let minp_at = |k: usize| minp_base.add((blk * TILE + r0 + k) * MIN_PAIRS);
            if g >= n_groups {
                for p in 0..2 {
                    for c in 0..QK_K / 32 {
                        put(p, c, _mm512_setzero_si512());
                    }
                }
                for k in 0..ROWS {
                    _mm512_storeu_si512(sc_at(k).cast(), _mm512_setzero_si512());
                    _mm256_storeu_si256(minp_at(k).cast(), _mm256_setzero_si256());
                }
                _mm_storeu_si128(out.corr.as_mut_ptr().add(blk * TILE + r0).cast(), _mm_setzero_si128());
                _mm_storeu_ps(out.dw.as_mut_ptr().add(blk * TILE + r0), _mm_setzero_ps());
                _mm_storeu_ps(out.dm.as_mut_ptr().add(blk * TILE + r0), _mm_setzero_ps());
                continue;
            }
            let q = qs.as_ptr().add((g * nb + blk) * qsb);
            let m = dm.as_ptr().add((g * nb + blk) * dmb);
            // Quants, scales (i32 per sub-block), min pairs, and the d / dmin offsets of this
            // type's meta.
            let (d_at, dmin_at) = match ty {
                GgmlType::Q4_K | GgmlType::Q5_K => {
                    for j in 0..4 {
                        for p in 0..2 {
                            let v = _mm512_loadu_si512(q.add((2 * j + p) * 64).cast());
                            let mut lo = _mm512_and_si512(v, m4);
                            let mut hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), m4);
                            if ty == GgmlType::Q5_K {
                                (lo, hi) = q5_k::fifth_bits(lo, hi, _mm512_loadu_si512(q.add(q5_k::QH_AT + 64 * p).cast()), j);
                            }
                            put(p, 2 * j, lo);
                            put(p, 2 * j + 1, hi);
                        }
                    }
                    // Row k: 8 unsigned scales at 8k, 8 mins at 32 + 8k (pairs of i16).
                    for k in 0..ROWS {
                        _mm256_storeu_si256(sc_at(k).cast(), _mm256_cvtepu8_epi32(_mm_loadl_epi64(m.add(8 * k).cast())));
                        _mm_storeu_si128(minp_at(k).cast(), _mm_cvtepu8_epi16(_mm_loadl_epi64(m.add(32 + 8 * k).cast())));
                    }
                    (64, Some(72))
                }
                GgmlType::Q6_K | GgmlType::Q3_K | GgmlType::Q2_K => {
                    // q6_K's and q3_K's signed values: the unsigned quants less 32 or 4.
                    let off = _mm512_set1_epi8(if ty == GgmlType::Q6_K { 32 } else if ty == GgmlType::Q3_K { 4 } else { 0 });
                    for j in 0..2 {
                        for p in 0..2 {
                            let v = match ty {
                                GgmlType::Q6_K => q6_k::quants(q, j, p),
                                GgmlType::Q3_K => <Q3K as Sub16>::quants(q, j, p),
                                _ => <Q2K as Sub16>::quants(q, j, p),
                            };
                            for (i, vi) in v.into_iter().enumerate() {
                                put(p, 4 * j + i, _mm512_sub_epi8(vi, off));
                            }
                        }
                    }
                    // Row k: 16 scale bytes at 16k (q6_K, q3_K: signed; q2_K: the low nibble,
                    // its min the high one).
                    let q2 = ty == GgmlType::Q2_K;
                    for k in 0..ROWS {
                        let raw = _mm_loadu_si128(m.add(16 * k).cast());
                        let sc = if q2 { _mm512_cvtepu8_epi32(_mm_and_si128(raw, _mm_set1_epi8(0xF))) } else { _mm512_cvtepi8_epi32(raw) };
                        _mm512_storeu_si512(sc_at(k).cast(), sc);
                        if q2 {
                            _mm256_storeu_si256(minp_at(k).cast(), _mm256_srli_epi16::<4>(_mm256_cvtepu8_epi16(raw)));
                        }
                    }
                    (64, q2.then_some(72))
                }
                GgmlType::IQ4_XS => {
                    let tab = _mm512_broadcast_i32x4(_mm_loadu_si128(KVALUES_IQ4NL.as_ptr().cast()));
                    for mm in 0..4 {
                        for p in 0..2 {
                            let v = _mm512_loadu_si512(q.add((2 * mm + p) * 64).cast());
                            let codes = [_mm512_and_si512(v, m4), _mm512_and_si512(_mm512_srli_epi16::<4>(v), m4)];
                            for hs in 0..2 {
                                put(p, 2 * mm + hs, _mm512_shuffle_epi8(tab, codes[hs]));
                            }
                        }
                    }
                    // Row k: 8 signed scales at 8k.
                    for k in 0..ROWS {
                        _mm256_storeu_si256(sc_at(k).cast(), _mm256_cvtepi8_epi32(_mm_loadl_epi64(m.add(8 * k).cast())));
                    }
                    (32, None)
                }
                _ => unreachable!("tiles16 handles only the K-quants and iq4_xs"),
            };
            if signed_weights(ty) {
                // What the activations' flip to `y + 128` adds: 128 * sum_s scale_s * sum(w_s),
                // from the signed scale bytes still in the packed meta.
                let stride = if sub_block(ty) == 16 { 16 } else { 8 };
                for p in 0..2 {
                    let pa = a.add(a_at(r0 + 2 * p, 0));
                    let (sa, sb) = (m.add(stride * 2 * p), m.add(stride * (2 * p + 1)));
                    let c = if stride == 16 { flip_corr::<16>(pa, sa, sb) } else { flip_corr::<32>(pa, sa, sb) };
                    out.corr[blk * TILE + r0 + 2 * p] = c[0];
                    out.corr[blk * TILE + r0 + 2 * p + 1] = c[1];
                }
            }
            let d = _mm_cvtph_ps(_mm_loadl_epi64(m.add(d_at).cast()));
            _mm_storeu_ps(out.dw.as_mut_ptr().add(blk * TILE + r0), d);
            let dmin = match dmin_at {
                Some(o) => _mm_cvtph_ps(_mm_loadl_epi64(m.add(o).cast())),
                None => _mm_setzero_ps(),
            };
            _mm_storeu_ps(out.dm.as_mut_ptr().add(blk * TILE + r0), dmin);
        }
    }
}

/// Rows `rt * 16 ..` of the tiles `tiles` of `w` against every token: `out[t * n_rows + r]`.
///
/// # Safety
/// [`enabled`] returned true; `acts` was prepared for `n_tokens` tokens of `w`'s columns;
/// `out` holds `n_tokens * w.n_rows` floats and this call alone writes these tiles' rows.
pub(super) unsafe fn run_tiles(w: &PackedMatrix, tiles: std::ops::Range<usize>, acts: &AmxActs, n_tokens: usize, out: &crate::disjoint::DisjointMut<'_, f32>) {
    RAW_TILE.with(|cell| {
        let mut rt_buf = cell.borrow_mut();
        let n_tt = n_tokens.div_ceil(TILE);
        let mut accs = std::mem::take(&mut rt_buf.acc);
        amx::for_each_row_tile(w, tiles.clone(), n_tokens, &mut accs, out, |rt, accs| {
            expand(w, rt, &mut rt_buf);
            // Block by block, every token tile: one block's unpacked rows (4 KiB) stay in L1
            // while the token tiles stream past them.
            for blk in 0..w.n_cols / QK_K {
                if rt + 1 < tiles.end {
                    amx::prefetch_tile_block(w, rt + 1, blk);
                }
                for tt in 0..n_tt {
                    let acc = &mut accs[tt * TILE * TILE..][..TILE * TILE];
                    for band in 0..2 {
                        match (sub_block(w.ty), signed_weights(w.ty)) {
                            (16, false) => band_fold::<16, false>(w, &rt_buf, acts, tt, blk, band, acc),
                            (16, true) => band_fold::<16, true>(w, &rt_buf, acts, tt, blk, band, acc),
                            (_, false) => band_fold::<32, false>(w, &rt_buf, acts, tt, blk, band, acc),
                            (_, true) => band_fold::<32, true>(w, &rt_buf, acts, tt, blk, band, acc),
                        }
                    }
                }
            }
        });
        rt_buf.acc = accs;
    })
}

/// Rows per band: their 8 sub-block sums and 8 totals stay in registers.
const BAND: usize = 8;

/// Rows `8 band ..` of the tile, block `blk`, token tile `tt`: the exact totals, folded into
/// `acc_mem` (`[row][token]`) by the K-quant float order. `SW`: signed weights against flipped
/// activations (see the module docs).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn band_fold<const SB: usize, const SW: bool>(w: &PackedMatrix, rows: &RawTile, acts: &AmxActs, tt: usize, blk: usize, band: usize, acc_mem: &mut [f32]) {
    let nb = w.n_cols / QK_K;
    let r0 = BAND * band;
    let b = acts.b.as_ptr().add((tt * nb + blk) * TILE * QK_K);
    // Rows r0.. (r0 even): their pairs start at a_at(r0, 0).
    let a = rows.a.as_ptr().add(blk * TILE * QK_K + a_at(r0, 0));
    let flip = _mm512_set1_epi8(-128);
    let mut isum = [_mm512_setzero_si512(); BAND];
    for s in 0..QK_K / SB {
        let mut sum = [_mm512_setzero_si512(); BAND];
        for g in s * SB / 4..(s + 1) * SB / 4 {
            // 4 elements of each of the 16 tokens.
            let mut y = _mm512_loadu_si512(b.add(g * 64).cast());
            if SW {
                y = _mm512_xor_si512(y, flip);
            }
            for r in 0..BAND {
                let x = _mm512_set1_epi32(std::ptr::read_unaligned(a.add(a_at(r, g / 8) + 4 * (g % 8)).cast::<i32>()));
                sum[r] = if SW { _mm512_dpbusd_epi32(sum[r], y, x) } else { _mm512_dpbusd_epi32(sum[r], x, y) };
            }
        }
        let sc = rows.sc.as_ptr().add((blk * TILE + r0) * MAX_SB + s);
        for r in 0..BAND {
            isum[r] = _mm512_add_epi32(isum[r], _mm512_mullo_epi32(sum[r], _mm512_set1_epi32(*sc.add(r * MAX_SB))));
        }
    }
    let mins = amx::mins(w.ty);
    let (m_pairs, m_sums) = if mins == Mins::Per32 {
        (4, acts.bp.as_ptr().add((tt * nb + blk) * 4 * TILE))
    } else {
        (MIN_PAIRS, acts.bq.as_ptr().add((tt * nb + blk) * MIN_PAIRS * TILE))
    };
    let dx = _mm512_loadu_ps(acts.d.as_ptr().add((tt * nb + blk) * TILE));
    for r in 0..BAND {
        let row = r0 + r;
        let mut isum = isum[r];
        if SW {
            isum = _mm512_sub_epi32(isum, _mm512_set1_epi32(*rows.corr.get_unchecked(blk * TILE + row)));
        }
        let acc = acc_mem.as_mut_ptr().add(row * TILE);
        let d = _mm512_mul_ps(dx, _mm512_set1_ps(*rows.dw.get_unchecked(blk * TILE + row)));
        let mut v = _mm512_add_ps(_mm512_loadu_ps(acc), _mm512_mul_ps(d, _mm512_cvtepi32_ps(isum)));
        if mins != Mins::None {
            let mut msum = _mm512_setzero_si512();
            for pp in 0..m_pairs {
                let mp = _mm512_set1_epi32(*rows.minp.get_unchecked((blk * TILE + row) * MIN_PAIRS + pp));
                msum = super::kq::dpwssd(msum, mp, _mm512_loadu_si512(m_sums.add(pp * TILE).cast()));
            }
            let dm = _mm512_mul_ps(dx, _mm512_set1_ps(*rows.dm.get_unchecked(blk * TILE + row)));
            v = _mm512_sub_ps(v, _mm512_mul_ps(dm, _mm512_cvtepi32_ps(msum)));
        }
        _mm512_storeu_ps(acc, v);
    }
}

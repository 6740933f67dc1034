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

use super::amx::{self, AmxActs, Mins, GROUPS, MIN_PAIRS, TILE, WRITE_GROUP};
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

/// The sum of `n` (a multiple of 16) signed bytes at `p`.
///
/// # Safety
/// `p` is readable for `n` bytes; SSE2 (every x86_64).
#[inline(always)]
unsafe fn signed_sum(p: *const u8, n: usize) -> i32 {
    let flip = _mm_set1_epi8(-128);
    let mut t = 0i64;
    for c in (0..n).step_by(16) {
        // |v + 128| summed 8 bytes at a time, then the 128s taken back out.
        let s = _mm_sad_epu8(_mm_xor_si128(_mm_loadu_si128(p.add(c).cast()), flip), _mm_setzero_si128());
        t += _mm_cvtsi128_si64(s) + _mm_cvtsi128_si64(_mm_unpackhi_epi64(s, s));
    }
    (t - 128 * n as i64) as i32
}

/// Most scales per row and super-block.
const MAX_SB: usize = 16;

/// One 16-row tile unpacked, per block: the rows' quants `a` (`[row][256]`), scales `sc`
/// (`[sub-block][row]`), min pairs `minp` (`[pair][row]`, two i16 per i32), the signed types'
/// flip corrections `corr`, `d` and `dmin` (`[row]`); and the float accumulators.
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

/// Two i16 in one i32 lane (`vpdpwssd` operand order: `a` low).
fn pair(a: i32, b: i32) -> i32 {
    (a as i16 as u16 as u32 | ((b as i16 as u16 as u32) << 16)) as i32
}

/// Stores the two 256-bit halves of `v` (rows `r`, `r + 1`) at `dst(r)` and `dst(r + 1)`.
#[inline(always)]
unsafe fn store_pair(v: __m512i, lo: *mut u8, hi: *mut u8) {
    _mm256_storeu_si256(lo.cast(), _mm512_castsi512_si256(v));
    _mm256_storeu_si256(hi.cast(), _mm512_extracti64x4_epi64::<1>(v));
}

/// Unpacks row tile `rt` of `w` into `out`; rows past the matrix are zeros.
///
/// # Safety
/// AVX-512 BW is available.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
unsafe fn expand(w: &PackedMatrix, rt: usize, out: &mut RawTile) {
    let ty = w.ty;
    let nb = w.n_cols / QK_K;
    let (qsb, dmb) = super::group_block_bytes(ty).expect("packed K-quant");
    grow(&mut out.a, nb * TILE * QK_K);
    grow(&mut out.sc, nb * MAX_SB * TILE);
    grow(&mut out.minp, nb * MIN_PAIRS * TILE);
    grow(&mut out.corr, nb * TILE);
    grow(&mut out.dw, nb * TILE);
    grow(&mut out.dm, nb * TILE);
    let n_groups = w.n_rows.div_ceil(ROWS);
    let (qs, dm) = (w.qs.as_slice(), w.dm.as_slice());
    let m4 = _mm512_set1_epi8(0xF);
    for gi in 0..GROUPS {
        let g = rt * GROUPS + gi;
        for blk in 0..nb {
            let a = out.a.as_mut_ptr().add(blk * TILE * QK_K);
            // Row `r` of the tile, element `e`.
            let at = |r: usize, e: usize| a.add(r * QK_K + e);
            let meta = |v: &mut Vec<i32>, i: usize, r: usize, x: i32| v[(blk * MAX_SB + i) * TILE + r] = x;
            if g >= n_groups {
                for k in 0..ROWS {
                    let r = ROWS * gi + k;
                    std::ptr::write_bytes(at(r, 0), 0, QK_K);
                    for i in 0..MAX_SB {
                        meta(&mut out.sc, i, r, 0);
                    }
                    for i in 0..MIN_PAIRS {
                        out.minp[(blk * MIN_PAIRS + i) * TILE + r] = 0;
                    }
                    out.corr[blk * TILE + r] = 0;
                    out.dw[blk * TILE + r] = 0.0;
                    out.dm[blk * TILE + r] = 0.0;
                }
                continue;
            }
            let q = qs.as_ptr().add((g * nb + blk) * qsb);
            let m = dm.as_ptr().add((g * nb + blk) * dmb);
            let r0 = ROWS * gi;
            // Scales (i32 per sub-block) and the d / dmin offsets of this type's meta.
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
                            let (ra, rb) = (r0 + 2 * p, r0 + 2 * p + 1);
                            store_pair(lo, at(ra, 64 * j), at(rb, 64 * j));
                            store_pair(hi, at(ra, 64 * j + 32), at(rb, 64 * j + 32));
                        }
                    }
                    for k in 0..ROWS {
                        let (sc, mn) = (|s: usize| *m.add(8 * k + s) as i32, |s: usize| *m.add(32 + 8 * k + s) as i32);
                        for s in 0..8 {
                            meta(&mut out.sc, s, r0 + k, sc(s));
                        }
                        for pp in 0..4 {
                            out.minp[(blk * MIN_PAIRS + pp) * TILE + r0 + k] = pair(mn(2 * pp), mn(2 * pp + 1));
                        }
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
                                let c = 4 * j + i;
                                store_pair(_mm512_sub_epi8(vi, off), at(r0 + 2 * p, 32 * c), at(r0 + 2 * p + 1, 32 * c));
                            }
                        }
                    }
                    let q2 = ty == GgmlType::Q2_K;
                    for k in 0..ROWS {
                        let raw = |s: usize| *m.add(16 * k + s);
                        let sc = |s: usize| if q2 { (raw(s) & 0xF) as i32 } else { raw(s) as i8 as i32 };
                        for s in 0..16 {
                            meta(&mut out.sc, s, r0 + k, sc(s));
                        }
                        if q2 {
                            for pp in 0..8 {
                                out.minp[(blk * MIN_PAIRS + pp) * TILE + r0 + k] = pair((raw(2 * pp) >> 4) as i32, (raw(2 * pp + 1) >> 4) as i32);
                            }
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
                                let sb = 2 * mm + hs;
                                let v = _mm512_shuffle_epi8(tab, codes[hs]);
                                store_pair(v, at(r0 + 2 * p, 32 * sb), at(r0 + 2 * p + 1, 32 * sb));
                            }
                        }
                    }
                    for k in 0..ROWS {
                        let sc = |s: usize| *m.add(8 * k + s) as i8 as i32;
                        for s in 0..8 {
                            meta(&mut out.sc, s, r0 + k, sc(s));
                        }
                    }
                    (32, None)
                }
                _ => unreachable!("tiles16 handles only the K-quants and iq4_xs"),
            };
            if signed_weights(ty) {
                // What the activations' flip to `y + 128` adds: 128 * sum_s scale_s * sum(w_s).
                let sb = sub_block(ty);
                for k in 0..ROWS {
                    let r = r0 + k;
                    let mut c = 0i32;
                    for s in 0..QK_K / sb {
                        c += out.sc[(blk * MAX_SB + s) * TILE + r] * signed_sum(at(r, s * sb), sb);
                    }
                    out.corr[blk * TILE + r] = 128 * c;
                }
            }
            let mut f = [0f32; 4];
            _mm_storeu_ps(f.as_mut_ptr(), _mm_cvtph_ps(_mm_loadl_epi64(m.add(d_at).cast())));
            let mut fm = [0f32; 4];
            if let Some(o) = dmin_at {
                _mm_storeu_ps(fm.as_mut_ptr(), _mm_cvtph_ps(_mm_loadl_epi64(m.add(o).cast())));
            }
            for k in 0..ROWS {
                out.dw[blk * TILE + r0 + k] = f[k];
                out.dm[blk * TILE + r0 + k] = fm[k];
            }
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
        let tile_accs = n_tt * TILE * TILE;
        let mut accs = std::mem::take(&mut rt_buf.acc);
        accs.clear();
        accs.resize(WRITE_GROUP * tile_accs, 0.0);
        let mut g0 = tiles.start;
        while g0 < tiles.end {
            let g1 = (g0 + WRITE_GROUP).min(tiles.end);
            for rt in g0..g1 {
                expand(w, rt, &mut rt_buf);
                let accs = &mut accs[(rt - g0) * tile_accs..][..tile_accs];
                accs.fill(0.0);
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
            }
            amx::write_rows(w, g0..g1, &accs, n_tokens, out);
            g0 = g1;
        }
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
    let a = rows.a.as_ptr().add((blk * TILE + r0) * QK_K);
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
                let x = _mm512_set1_epi32(std::ptr::read_unaligned(a.add(r * QK_K + 4 * g).cast::<i32>()));
                sum[r] = if SW { _mm512_dpbusd_epi32(sum[r], y, x) } else { _mm512_dpbusd_epi32(sum[r], x, y) };
            }
        }
        let sc = rows.sc.as_ptr().add((blk * MAX_SB + s) * TILE + r0);
        for r in 0..BAND {
            isum[r] = _mm512_add_epi32(isum[r], _mm512_mullo_epi32(sum[r], _mm512_set1_epi32(*sc.add(r))));
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
                let mp = _mm512_set1_epi32(*rows.minp.get_unchecked((blk * MIN_PAIRS + pp) * TILE + row));
                msum = super::kq::dpwssd(msum, mp, _mm512_loadu_si512(m_sums.add(pp * TILE).cast()));
            }
            let dm = _mm512_mul_ps(dx, _mm512_set1_ps(*rows.dm.get_unchecked(blk * TILE + row)));
            v = _mm512_sub_ps(v, _mm512_mul_ps(dm, _mm512_cvtepi32_ps(msum)));
        }
        _mm512_storeu_ps(acc, v);
    }
}

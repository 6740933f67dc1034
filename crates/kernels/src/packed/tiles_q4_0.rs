//! Prefill on packed q4_0 matrices, AVX-512 VNNI (with or without AMX): 16 tokens in the lanes
//! of a register, as `tiles16` does for the K-quants.
//!
//! q4_0 follows its scalar reference's float order everywhere (`q4_0`): per block the exact
//! integer sum, then `sum += (float(isum) * d_w) * d_x`. With the 16 tokens of a tile side by
//! side (`Q8Tiles`: 4 consecutive elements of each token per 32-bit lane, flipped to the
//! unsigned `y + 128`), a weight row's 4 signed values `q - 8` are broadcast straight from
//! memory into `vpdpbusd` (its signed operand, the only one that can be a broadcast, which costs
//! nothing beside the multiply: a separate `vpbroadcastd` per instruction slowed it) and one
//! instruction does 64 multiply-adds. The 8 that cover a block give the row's 16 exact block
//! sums once `128 * sum(q - 8)`, the flip's share, computed per row and block when the tile is
//! unpacked, is taken off; two multiplies and an add fold them in: 10 multiply-pipe instructions
//! per row and block for 16 tokens, where the 4-row kernels spend 20.
//!
//! A 16-row tile is unpacked once (512 bytes per block, in L1), then every token tile streams
//! past it, 8 rows at a time with their running sums in registers.

// The loops index rows, groups and blocks as the comments do.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;
use std::cell::RefCell;

use gguf::GgmlType;

use super::amx::{for_each_row_tile, TILE};
use super::{grow, PackedMatrix, ROWS};
use crate::quant::blocks::QK;

/// Whether q4_0 prompts run on these tiles (AVX-512 VNNI; AMX has no q4_0 tiles).
pub(super) fn enabled() -> bool {
    super::available()
}

/// Tokens that the tiles take out of `n_tokens` (the first ones; the 4-row kernels take the
/// rest): whole tiles of 16, and a last partial tile only when it holds at least
/// [`MIN_PARTIAL`] tokens, since its empty lanes cost as much as full ones.
pub(super) fn tiled_tokens(n_tokens: usize) -> usize {
    let rem = n_tokens % TILE;
    if rem >= MIN_PARTIAL { n_tokens } else { n_tokens - rem }
}

/// Where a tile starts to beat the 4-row kernels. In `cargo bench -p kernels -- "qwen3moe
/// expert"` (768 x 2048, one thread, AMD Zen 5) a 16-token tile took 131-165 us whether it held
/// 12, 15 or 16 tokens, and the 4-row kernels 12 us per token (96 us for 8, 143 for 12).
const MIN_PARTIAL: usize = 11;

/// Whether every matrix of a call can take these tiles.
pub(super) fn handles(ty: GgmlType) -> bool {
    ty == GgmlType::Q4_0
}

/// Row groups of 4 per tile.
const GROUPS: usize = TILE / ROWS;
/// Unpacked bytes per tile and block: 16 rows of 32.
const TILE_BLOCK: usize = TILE * QK;

/// The q8_0 activations of every token tile: `qs` `[tile][block][group of 4 elements][token][4]`
/// as `y + 128` (512 bytes per tile and block), `d` `[tile][block][token]`. Tokens past the last
/// have zero quants and scales.
#[derive(Default)]
pub(crate) struct Q8Tiles {
    qs: Vec<u8>,
    d: Vec<f32>,
}

impl Q8Tiles {
    /// Transposes `n_tokens` tokens' split q8_0 blocks (`qs` 32 bytes and `d` per block, `nb`
    /// blocks per token) into tiles.
    pub(super) fn prepare(&mut self, qs: &[u8], d: &[f32], n_tokens: usize, nb: usize) {
        let n_tt = n_tokens.div_ceil(TILE);
        grow(&mut self.qs, n_tt * nb * TILE_BLOCK);
        grow(&mut self.d, n_tt * nb * TILE);
        for tt in 0..n_tt {
            for blk in 0..nb {
                let at = (tt * nb + blk) * TILE;
                let dst = &mut self.qs[at * QK..(at + TILE) * QK];
                for t in 0..TILE {
                    let tok = tt * TILE + t;
                    if tok >= n_tokens {
                        for g in 0..QK / 4 {
                            dst[(g * TILE + t) * 4..][..4].fill(0x80);
                        }
                        self.d[at + t] = 0.0;
                        continue;
                    }
                    let src = &qs[(tok * nb + blk) * QK..][..QK];
                    for g in 0..QK / 4 {
                        let v = u32::from_le_bytes([src[4 * g], src[4 * g + 1], src[4 * g + 2], src[4 * g + 3]]) ^ 0x8080_8080;
                        dst[(g * TILE + t) * 4..][..4].copy_from_slice(&v.to_le_bytes());
                    }
                    self.d[at + t] = d[tok * nb + blk];
                }
            }
        }
    }
}

/// One unpacked 16-row tile: per block, per group of 4 rows, the 64 signed bytes `q - 8` of
/// elements 0..16 (row k at 16k) then the 64 of elements 16..32; the row scales `dw` and the
/// flip's share `corr` (`128 * sum(q - 8)`) `[block][row]`; and the float results `acc`.
#[derive(Default)]
struct RawTile {
    a: Vec<u8>,
    dw: Vec<f32>,
    corr: Vec<i32>,
    acc: Vec<f32>,
}

thread_local! {
    static RAW_TILE: RefCell<RawTile> = RefCell::new(RawTile::default());
}

/// Where row `r`'s elements `4g..4g + 4` sit in a block of [`RawTile::a`].
#[inline(always)]
fn a_at(r: usize, g: usize) -> usize {
    (r / ROWS) * 128 + (g / 4) * 64 + (r % ROWS) * 16 + (g % 4) * 4
}

/// Unpacks row tile `rt` of `w`; rows past the matrix are zeros.
///
/// # Safety
/// AVX-512 BW is available.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn expand(w: &PackedMatrix, rt: usize, out: &mut RawTile) {
    let nb = w.n_cols / QK;
    grow(&mut out.a, nb * TILE_BLOCK);
    grow(&mut out.dw, nb * TILE);
    grow(&mut out.corr, nb * TILE);
    let n_groups = w.n_rows.div_ceil(ROWS);
    let (qs, dm) = (w.qs.as_slice().as_ptr(), w.dm.as_slice().as_ptr());
    let (nib, eight, ones) = (_mm512_set1_epi8(0x0F), _mm512_set1_epi8(8), _mm512_set1_epi8(1));
    let pick = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 8, 4, 0);
    for gi in 0..GROUPS {
        let g = rt * GROUPS + gi;
        for blk in 0..nb {
            let a = out.a.as_mut_ptr().add(blk * TILE_BLOCK + gi * 128);
            let dw = out.dw.as_mut_ptr().add(blk * TILE + gi * ROWS);
            let corr = out.corr.as_mut_ptr().add(blk * TILE + gi * ROWS);
            if g >= n_groups {
                _mm512_storeu_si512(a.cast(), _mm512_setzero_si512());
                _mm512_storeu_si512(a.add(64).cast(), _mm512_setzero_si512());
                _mm_storeu_ps(dw, _mm_setzero_ps());
                _mm_storeu_si128(corr.cast(), _mm_setzero_si128());
                continue;
            }
            // SAFETY: group g < n_groups holds nb blocks of 64 quant bytes and 8 scale bytes.
            let v = _mm512_loadu_si512(qs.add((g * nb + blk) * 64).cast());
            let lo = _mm512_sub_epi8(_mm512_and_si512(v, nib), eight);
            let hi = _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16::<4>(v), nib), eight);
            _mm512_storeu_si512(a.cast(), lo);
            _mm512_storeu_si512(a.add(64).cast(), hi);
            _mm_storeu_ps(dw, _mm_cvtph_ps(_mm_loadl_epi64(dm.add((g * nb + blk) * 8).cast())));
            // Each row's sum of q - 8 (row k in the 128-bit lane k), times 128.
            let t = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, lo), ones, hi);
            let t = _mm512_add_epi32(t, _mm512_shuffle_epi32::<0b01_00_11_10>(t));
            let t = _mm512_add_epi32(t, _mm512_shuffle_epi32::<0b10_11_00_01>(t));
            let t = _mm512_castsi512_si128(_mm512_permutexvar_epi32(pick, t));
            _mm_storeu_si128(corr.cast(), _mm_slli_epi32::<7>(t));
        }
    }
}

/// Rows `rt * 16 ..` of the tiles `tiles` of `w` against every token: `out[t * n_rows + r]`.
///
/// # Safety
/// [`enabled`] returned true; `acts` was prepared for `n_tokens` tokens of `w`'s columns;
/// `out` holds `n_tokens * w.n_rows` floats and this call alone writes these tiles' rows.
pub(super) unsafe fn run_tiles(w: &PackedMatrix, tiles: std::ops::Range<usize>, acts: &Q8Tiles, n_tokens: usize, out: &crate::disjoint::DisjointMut<'_, f32>) {
    RAW_TILE.with(|cell| {
        let mut raw = cell.borrow_mut();
        let n_tt = n_tokens.div_ceil(TILE);
        let mut accs = std::mem::take(&mut raw.acc);
        for_each_row_tile(w, tiles.clone(), n_tokens, &mut accs, out, |rt, accs| {
            expand(w, rt, &mut raw);
            let next = (rt + 1 < tiles.end).then_some(rt + 1);
            for tt in 0..n_tt {
                let acc = &mut accs[tt * TILE * TILE..][..TILE * TILE];
                for band in 0..TILE / BAND {
                    band_rows(w, &raw, acts, tt, band, if tt == 0 && band == 0 { next } else { None }, acc);
                }
            }
        });
        raw.acc = accs;
    })
}

/// Rows per band: their 8 block sums and 8 running sums stay in registers.
const BAND: usize = 8;

/// Rows `8 band ..` of the tile against token tile `tt`, every block: `acc_mem` `[row][token]`.
/// `next`: a row tile whose packed bytes to prefetch meanwhile.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn band_rows(w: &PackedMatrix, rows: &RawTile, acts: &Q8Tiles, tt: usize, band: usize, next: Option<usize>, acc_mem: &mut [f32]) {
    let nb = w.n_cols / QK;
    let r0 = BAND * band;
    let n_groups = w.n_rows.div_ceil(ROWS);
    let mut acc = [_mm512_setzero_ps(); BAND];
    for blk in 0..nb {
        if let Some(rt) = next {
            // The next tile's 4 groups: one line of quants each, and their scales.
            for g in rt * GROUPS..(rt * GROUPS + GROUPS).min(n_groups) {
                _mm_prefetch::<_MM_HINT_T0>(w.qs.as_slice().as_ptr().add((g * nb + blk) * 64).cast());
                if blk % 8 == 0 {
                    _mm_prefetch::<_MM_HINT_T0>(w.dm.as_slice().as_ptr().add((g * nb + blk) * 8).cast());
                }
            }
        }
        let at = (tt * nb + blk) * TILE;
        let y = acts.qs.as_ptr().add(at * QK);
        let a = rows.a.as_ptr().add(blk * TILE_BLOCK);
        let mut s = [_mm512_setzero_si512(); BAND];
        for g in 0..QK / 4 {
            let yg = _mm512_loadu_si512(y.add(g * 64).cast());
            for r in 0..BAND {
                let x = _mm512_set1_epi32(std::ptr::read_unaligned(a.add(a_at(r0 + r, g)).cast::<i32>()));
                s[r] = _mm512_dpbusd_epi32(s[r], yg, x);
            }
        }
        let dx = _mm512_loadu_ps(acts.d.as_ptr().add(at));
        let (dw, corr) = (rows.dw.as_ptr().add(blk * TILE + r0), rows.corr.as_ptr().add(blk * TILE + r0));
        for r in 0..BAND {
            let isum = _mm512_sub_epi32(s[r], _mm512_set1_epi32(*corr.add(r)));
            let v = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(*dw.add(r))), dx);
            acc[r] = _mm512_add_ps(acc[r], v);
        }
    }
    for r in 0..BAND {
        _mm512_storeu_ps(acc_mem.as_mut_ptr().add((r0 + r) * TILE), acc[r]);
    }
}

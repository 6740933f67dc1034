//! AMX int8 tiles for prefill on the packed K-quant (q2_K to q6_K) and iq4_xs matrices.
//!
//! One tile multiply (`tdpbusd` / `tdpbssd`) adds, for 16 weight rows and 16 tokens, the dot
//! products over 64 elements: 16 384 multiply-adds, where one AVX-512 VNNI instruction does 64.
//! The catch is the K-quant scales: a tile sums over 64 elements (two q4_K sub-blocks with their
//! own 6-bit scales), and `q * scale` (up to 945) does not fit a byte. So each weight row is
//! expanded, once per row tile and in L2, into byte *parts* whose weighted sum is `q * scale`:
//! - q4_K / q5_K: `q * (scale & 7)` and `q * (scale >> 3)` (at most 31 * 7 = 217, unsigned),
//!   and `isum = C0 + 8 * C1`;
//! - q6_K: the product `w = (q - 32) * scale` (within -4096..4096) split as `(w & 127) + 128 *
//!   (w >> 7)`, both parts bytes (0..128 and -32..32), and `isum = C0 + 128 C1`;
//! - q3_K: `q * (scale & 7)` and `q * (scale >> 3)` with `q` in -4..4 and the signed 6-bit
//!   scale's top digit in -4..4 (products within -28..28), `isum = C0 + 8 C1`;
//! - q2_K: as q4_K (`q` in 0..4, 4-bit scales), its 16 mins per super-block against the q8_K
//!   block sums one by one;
//! - iq4_xs: as q6_K, the product of the code's value (-127..113) and the 6-bit scale split in
//!   two, `isum = C0 + 128 C1`.
//!
//! The parts' tiles run over a whole super-block (256 elements, 4 tile steps) into 2 or 4 i32
//! accumulator tiles, so `isum` per (row, token, super-block) is the exact integer total. The
//! q4_K/q5_K mins are `sum min_s * bsum_s` by `vpdpwssd` on the q8_K block sums, and both are
//! folded by the K-quant float order (`quant::kquants::k_step`): every result is bit-for-bit
//! the AVX-512 packed kernels' and the row-at-a-time `vec_dot`'s, so the path a matmul takes
//! (AMX for prompts, AVX-512 for decode steps) never changes a logit.
//!
//! AMX is used when the CPU reports AMX-TILE and AMX-INT8, the kernel grants the process the
//! tile data state (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`), AVX-512 VNNI is the
//! chosen level, and `DAEHWA_KERNELS` is not `avx512` (which forces the AVX-512 kernels; `avx2`
//! and `scalar` cap lower still). Rust's AMX intrinsics are unstable, so the tile instructions
//! are inline assembly on fixed tile registers, which nothing else in the program uses.

use std::arch::asm;
use std::arch::x86_64::*;
use std::cell::RefCell;
use std::sync::OnceLock;

use gguf::GgmlType;

use super::{grow, q5_k, q6_k, PackedMatrix, ROWS};
use crate::quant::blocks::QK_K;

/// Weight rows per row tile and tokens per token tile (the tiles' 16 rows / 16 columns).
pub(super) const TILE: usize = 16;
/// Prompts of at least this many tokens take the 16-row tiles (AMX, or `tiles16` without it);
/// shorter ones (decode steps) the AVX-512 kernels, whose results are the same bits.
pub(super) const MIN_TOKENS: usize = 16;
/// Elements per tile step (a tile row is 64 bytes).
const STEP: usize = 64;
/// Tile steps per super-block.
pub(super) const STEPS: usize = QK_K / STEP;
/// Bytes of one 16 x 64-byte tile.
pub(super) const TILE_BYTES: usize = TILE * STEP;
/// Bytes of a q8_K block: `d` (f32), 256 quants, 16 i16 block sums.
const Q8K_BYTES: usize = 292;
/// Row tiles whose results are written out together (see [`write_rows`]).
pub(super) const WRITE_GROUP: usize = 8;
/// Row groups (of [`ROWS`]) per row tile.
pub(super) const GROUPS: usize = TILE / ROWS;

/// Whether this process runs the AMX path (see the module docs); decided once.
pub fn enabled() -> bool {
    static E: OnceLock<bool> = OnceLock::new();
    *E.get_or_init(|| {
        super::available() && !matches!(std::env::var("DAEHWA_KERNELS").as_deref(), Ok("avx512")) && cpu_has_amx_int8() && request_tile_data()
    })
}

/// Whether CPUID reports AMX-TILE and AMX-INT8 (leaf 7, EDX bits 24 and 25).
fn cpu_has_amx_int8() -> bool {
    #[allow(unused_unsafe)]
    // SAFETY: CPUID leaf 7 exists on every x86_64 CPU with AVX-512 (checked by the caller).
    let r = unsafe { __cpuid_count(7, 0) };
    r.edx & (1 << 24) != 0 && r.edx & (1 << 25) != 0
}

/// Asks Linux for the AMX tile data state for this process (all its threads).
fn request_tile_data() -> bool {
    #[cfg(target_os = "linux")]
    {
        const SYS_ARCH_PRCTL: i64 = 158;
        const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
        const XFEATURE_XTILEDATA: i64 = 18;
        let ret: i64;
        // SAFETY: arch_prctl(ARCH_REQ_XCOMP_PERM) only changes which xsave features this process
        // may use; it reads no memory. The syscall clobbers rcx and r11, declared below.
        unsafe {
            asm!("syscall", inlateout("rax") SYS_ARCH_PRCTL => ret, in("rdi") ARCH_REQ_XCOMP_PERM, in("rsi") XFEATURE_XTILEDATA,
                 lateout("rcx") _, lateout("r11") _, options(nostack));
        }
        ret == 0
    }
    #[cfg(not(target_os = "linux"))]
    false
}

/// Whether `ty` has an AMX path.
pub(super) fn handles(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K | GgmlType::Q3_K | GgmlType::Q2_K | GgmlType::IQ4_XS)
}

/// Byte parts per weight (see the module docs).
const PARTS: usize = 2;

/// Whether the parts are signed (`tdpbssd`) rather than unsigned (`tdpbusd`).
fn signed(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q6_K | GgmlType::Q3_K | GgmlType::IQ4_XS)
}

/// log2 of the second part's weight in `isum` (see the module docs).
fn hi_shift(ty: GgmlType) -> u32 {
    if matches!(ty, GgmlType::Q6_K | GgmlType::IQ4_XS) { 7 } else { 3 }
}

/// How a type's minimums enter: none, one per 32 elements (q4_K/q5_K: against the block-sum
/// pairs added), or one per 16 (q2_K: against the block sums one by one).
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Mins {
    None,
    Per32,
    Per16,
}

pub(super) fn mins(ty: GgmlType) -> Mins {
    match ty {
        GgmlType::Q4_K | GgmlType::Q5_K => Mins::Per32,
        GgmlType::Q2_K => Mins::Per16,
        _ => Mins::None,
    }
}

/// i32 words of min pairs per row and block (two i16 mins each).
pub(super) const MIN_PAIRS: usize = 8;

/// The activations of a call as B tiles: per token tile and block, 4 tiles of 16 rows (4
/// elements each) x 16 tokens x 4 bytes (`b`), the tokens' `d` (`d`, 16 per tile and block), and
/// their block sums for the mins, two i16 per i32 `[pair][token]`: of 32-element sub-blocks
/// (`bp`, 4 pairs) and of the q8_K 16-element ones (`bq`, 8 pairs).
#[derive(Default)]
pub(crate) struct AmxActs {
    pub(super) b: Vec<u8>,
    pub(super) d: Vec<f32>,
    pub(super) bp: Vec<i32>,
    pub(super) bq: Vec<i32>,
}

impl AmxActs {
    /// Lays out `n_tokens` q8_K rows (`q8`, `xrb` bytes apart, `nb` blocks each); tokens past
    /// the last (to a whole tile) are zeros.
    pub(super) fn prepare(&mut self, pool: &crate::pool::ThreadPool, q8: &[u8], xrb: usize, n_tokens: usize, nb: usize) {
        let n_tt = n_tokens.div_ceil(TILE);
        grow(&mut self.b, n_tt * nb * STEPS * TILE_BYTES);
        grow(&mut self.d, n_tt * nb * TILE);
        grow(&mut self.bp, n_tt * nb * 4 * TILE);
        grow(&mut self.bq, n_tt * nb * MIN_PAIRS * TILE);
        let (b, d, bp, bq) = (
            crate::disjoint::DisjointMut::new(&mut self.b[..]),
            crate::disjoint::DisjointMut::new(&mut self.d[..]),
            crate::disjoint::DisjointMut::new(&mut self.bp[..]),
            crate::disjoint::DisjointMut::new(&mut self.bq[..]),
        );
        let task = |tt: usize| {
            // SAFETY: token tile `tt` owns these disjoint ranges.
            let (b, d, bp, bq) = unsafe {
                (
                    b.slice(tt * nb * STEPS * TILE_BYTES, nb * STEPS * TILE_BYTES),
                    d.slice(tt * nb * TILE, nb * TILE),
                    bp.slice(tt * nb * 4 * TILE, nb * 4 * TILE),
                    bq.slice(tt * nb * MIN_PAIRS * TILE, nb * MIN_PAIRS * TILE),
                )
            };
            for i in 0..TILE {
                let t = tt * TILE + i;
                for blk in 0..nb {
                    let src = (t < n_tokens).then(|| &q8[t * xrb + blk * Q8K_BYTES..][..Q8K_BYTES]);
                    d[blk * TILE + i] = src.map_or(0.0, |s| f32::from_le_bytes([s[0], s[1], s[2], s[3]]));
                    let bs = |j: usize| src.map_or(0, |q| i16::from_le_bytes([q[260 + 2 * j], q[261 + 2 * j]]));
                    let word = |a: i16, b: i16| (a as u16 as u32 | ((b as u16 as u32) << 16)) as i32;
                    for pp in 0..4 {
                        let pair = |s: usize| bs(2 * s).wrapping_add(bs(2 * s + 1));
                        bp[(blk * 4 + pp) * TILE + i] = word(pair(2 * pp), pair(2 * pp + 1));
                    }
                    for pp in 0..MIN_PAIRS {
                        bq[(blk * MIN_PAIRS + pp) * TILE + i] = word(bs(2 * pp), bs(2 * pp + 1));
                    }
                    for st in 0..STEPS {
                        let tile = &mut b[(blk * STEPS + st) * TILE_BYTES..][..TILE_BYTES];
                        for kk in 0..TILE {
                            let dst = &mut tile[kk * STEP + 4 * i..][..4];
                            match src {
                                Some(s) => dst.copy_from_slice(&s[4 + st * STEP + 4 * kk..][..4]),
                                None => dst.fill(0),
                            }
                        }
                    }
                }
            }
        };
        if n_tt == 1 || pool.n_threads() == 1 {
            (0..n_tt).for_each(task);
        } else {
            pool.run(n_tt, &task);
        }
    }
}

/// One row tile expanded: A tiles `[block][step][part]` (16 rows x 64 bytes each), and per
/// block the rows' `d`, `dmin` and min pairs (`[pair][row]`, two i16 per i32).
#[derive(Default)]
struct RowTile {
    a: Vec<u8>,
    /// Float accumulators, per token tile `[row][token]` (kept here to be reused).
    acc: Vec<f32>,
    dw: Vec<f32>,
    dm: Vec<f32>,
    minp: Vec<i32>,
}

thread_local! {
    static ROW_TILE: RefCell<RowTile> = RefCell::new(RowTile::default());
}

/// 32 quant values (u8 in 0..64, or for q6_K i8 in -32..32) times `part`, a 16-lane word
/// vector per half (first 16 elements, last 16), stored as bytes at `dst`.
#[inline(always)]
unsafe fn store_part(dst: *mut u8, v16: __m512i, part: __m512i) {
    _mm256_storeu_si256(dst.cast(), _mm512_cvtepi16_epi8(_mm512_mullo_epi16(v16, part)));
}

/// The low 256 bits of `v` at `lo`, the high at `hi`.
#[inline(always)]
unsafe fn store_halves(v: __m512i, lo: *mut u8, hi: *mut u8) {
    _mm256_storeu_si256(lo.cast(), _mm512_castsi512_si256(v));
    _mm256_storeu_si256(hi.cast(), _mm512_extracti64x4_epi64::<1>(v));
}

/// 32 products `w` (i16, within -4096..4096) as two byte parts: `w & 127` at `lo` and `w >> 7`
/// (-32..32) at `hi`, so `w = lo + 128 hi`.
#[inline(always)]
unsafe fn store_split(lo: *mut u8, hi: *mut u8, w: __m512i) {
    _mm256_storeu_si256(lo.cast(), _mm512_cvtepi16_epi8(_mm512_and_si512(w, _mm512_set1_epi16(127))));
    _mm256_storeu_si256(hi.cast(), _mm512_cvtepi16_epi8(_mm512_srai_epi16::<7>(w)));
}

/// Expands row tile `rt` of `w` into `out` (see [`RowTile`]); rows past the matrix are zeros.
///
/// # Safety
/// AVX-512 BW is available.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
#[allow(clippy::needless_range_loop)]
unsafe fn expand(w: &PackedMatrix, rt: usize, out: &mut RowTile) {
    let ty = w.ty;
    let nb = w.n_cols / QK_K;
    let np = PARTS;
    let (qsb, dmb) = super::group_block_bytes(ty).expect("packed K-quant");
    grow(&mut out.a, nb * STEPS * np * TILE_BYTES);
    grow(&mut out.dw, nb * TILE);
    grow(&mut out.dm, nb * TILE);
    grow(&mut out.minp, nb * MIN_PAIRS * TILE);
    let n_groups = w.n_rows.div_ceil(ROWS);
    let (qs, dm) = (w.qs.as_slice(), w.dm.as_slice());
    let a = out.a.as_mut_ptr();
    let m4 = _mm512_set1_epi8(0xF);
    for gi in 0..GROUPS {
        let g = rt * GROUPS + gi;
        for blk in 0..nb {
            // A tile bytes of row r (of the tile), step st, part p, half h (32 elements).
            let at = |r: usize, st: usize, p: usize, h: usize| a.add(((blk * STEPS + st) * np + p) * TILE_BYTES + r * STEP + 32 * h);
            if g >= n_groups {
                for k in 0..ROWS {
                    let r = ROWS * gi + k;
                    for st in 0..STEPS {
                        for p in 0..np {
                            std::ptr::write_bytes(at(r, st, p, 0), 0, STEP);
                        }
                    }
                    out.dw[blk * TILE + r] = 0.0;
                    out.dm[blk * TILE + r] = 0.0;
                    for pp in 0..MIN_PAIRS {
                        out.minp[(blk * MIN_PAIRS + pp) * TILE + r] = 0;
                    }
                }
                continue;
            }
            let q = qs.as_ptr().add((g * nb + blk) * qsb);
            let m = dm.as_ptr().add((g * nb + blk) * dmb);
            match ty {
                GgmlType::Q4_K | GgmlType::Q5_K => {
                    // Scales and mins decoded at m[8k + s] and m[32 + 8k + s]; the 4 rows' 32
                    // scales as words.
                    let scales = _mm512_cvtepu8_epi16(_mm256_loadu_si256(m.cast()));
                    // Word lanes 0-15 pick row 2p's scale, 16-31 row 2p + 1's.
                    let pick = _mm512_inserti64x4::<1>(_mm512_setzero_si512(), _mm256_set1_epi16(8));
                    for j in 0..4 {
                        for p in 0..2 {
                            let v = _mm512_loadu_si512(q.add((2 * j + p) * 64).cast());
                            let mut lo = _mm512_and_si512(v, m4);
                            let mut hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), m4);
                            if ty == GgmlType::Q5_K {
                                (lo, hi) = q5_k::fifth_bits(lo, hi, _mm512_loadu_si512(q.add(q5_k::QH_AT + 64 * p).cast()), j);
                            }
                            for (sb, v) in [(2 * j, lo), (2 * j + 1, hi)] {
                                let idx = _mm512_add_epi16(pick, _mm512_set1_epi16((16 * p + sb) as i16));
                                let s = _mm512_permutexvar_epi16(idx, scales);
                                // A quant (< 32) times a 3-bit digit (< 8) fits its byte, so one
                                // 16-bit multiply of the packed bytes gives both bytes' products.
                                let p0 = _mm512_mullo_epi16(v, _mm512_and_si512(s, _mm512_set1_epi16(7)));
                                let p1 = _mm512_mullo_epi16(v, _mm512_srli_epi16::<3>(s));
                                let (ra, rb) = (ROWS * gi + 2 * p, ROWS * gi + 2 * p + 1);
                                store_halves(p0, at(ra, sb / 2, 0, sb % 2), at(rb, sb / 2, 0, sb % 2));
                                store_halves(p1, at(ra, sb / 2, 1, sb % 2), at(rb, sb / 2, 1, sb % 2));
                            }
                        }
                    }
                    let d = _mm_cvtph_ps(_mm_loadu_si128(m.add(64).cast()));
                    let mut f = [0f32; 4 * 2];
                    _mm_storeu_ps(f.as_mut_ptr(), d);
                    _mm_storeu_ps(f.as_mut_ptr().add(4), _mm_cvtph_ps(_mm_unpackhi_epi64(_mm_loadu_si128(m.add(64).cast()), _mm_setzero_si128())));
                    for k in 0..ROWS {
                        let r = ROWS * gi + k;
                        out.dw[blk * TILE + r] = f[k];
                        out.dm[blk * TILE + r] = f[4 + k];
                        for pp in 0..4 {
                            let (m0, m1) = (*m.add(32 + 8 * k + 2 * pp) as u32, *m.add(32 + 8 * k + 2 * pp + 1) as u32);
                            out.minp[(blk * MIN_PAIRS + pp) * TILE + r] = (m0 | (m1 << 16)) as i32;
                        }
                    }
                }
                GgmlType::Q6_K => {
                    // q6_K: scales (i8) at m[16k + s16], d at m[64 + 2k].
                    let off = _mm512_set1_epi8(32);
                    for j in 0..2 {
                        for p in 0..2 {
                            let w = q6_k::quants(q, j, p);
                            for (i, wi) in w.into_iter().enumerate() {
                                let sb = 4 * j + i;
                                let v = _mm512_sub_epi8(wi, off);
                                for h in 0..2 {
                                    let k = 2 * p + h;
                                    let v16 = _mm512_cvtepi8_epi16(if h == 0 { _mm512_castsi512_si256(v) } else { _mm512_extracti64x4_epi64::<1>(v) });
                                    let (s0, s1) = (*(m.add(16 * k + 2 * sb) as *const i8), *(m.add(16 * k + 2 * sb + 1) as *const i8));
                                    // Scale 2 sb on the first 16 elements, 2 sb + 1 on the rest.
                                    let sv = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(_mm256_set1_epi16(s0 as i16)), _mm256_set1_epi16(s1 as i16));
                                    store_split(at(ROWS * gi + k, sb / 2, 0, sb % 2), at(ROWS * gi + k, sb / 2, 1, sb % 2), _mm512_mullo_epi16(v16, sv));
                                }
                            }
                        }
                    }
                    let mut f = [0f32; 4];
                    _mm_storeu_ps(f.as_mut_ptr(), _mm_cvtph_ps(_mm_loadl_epi64(m.add(64).cast())));
                    for k in 0..ROWS {
                        out.dw[blk * TILE + ROWS * gi + k] = f[k];
                    }
                }
                GgmlType::Q3_K | GgmlType::Q2_K => {
                    // `k16`'s layout: scale bytes at m[16k + s16] (q3_K: i8; q2_K: scale | min << 4),
                    // d at m[64 + 2k], q2_K's dmin at m[72 + 2k].
                    let q3 = ty == GgmlType::Q3_K;
                    for h in 0..2 {
                        for p in 0..2 {
                            let w = if q3 { <super::k16::Q3K as super::k16::Sub16>::quants(q, h, p) } else { <super::k16::Q2K as super::k16::Sub16>::quants(q, h, p) };
                            for (j, wj) in w.into_iter().enumerate() {
                                let c = 4 * h + j;
                                // q3_K's quants come offset by 4.
                                let v = if q3 { _mm512_sub_epi8(wj, _mm512_set1_epi8(4)) } else { wj };
                                for hh in 0..2 {
                                    let k = 2 * p + hh;
                                    let v16 = _mm512_cvtepi8_epi16(if hh == 0 { _mm512_castsi512_si256(v) } else { _mm512_extracti64x4_epi64::<1>(v) });
                                    let scale = |i: usize| if q3 { *(m.add(16 * k + i) as *const i8) as i16 } else { (*m.add(16 * k + i) & 0xF) as i16 };
                                    let (s0, s1) = (scale(2 * c), scale(2 * c + 1));
                                    for part in 0..2 {
                                        let digit = |s: i16| if part == 0 { s & 7 } else { s >> 3 };
                                        // Scale 2c on the chunk's first 16 elements, 2c + 1 on the rest.
                                        let sv = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(_mm256_set1_epi16(digit(s0))), _mm256_set1_epi16(digit(s1)));
                                        store_part(at(ROWS * gi + k, c / 2, part, c % 2), v16, sv);
                                    }
                                }
                            }
                        }
                    }
                    // d (and q2_K's dmin after it; q3_K's meta ends after d).
                    let mut f = [0f32; 8];
                    let h16 = if q3 { _mm_loadl_epi64(m.add(64).cast()) } else { _mm_loadu_si128(m.add(64).cast()) };
                    _mm256_storeu_ps(f.as_mut_ptr(), _mm256_cvtph_ps(h16));
                    for k in 0..ROWS {
                        let r = ROWS * gi + k;
                        out.dw[blk * TILE + r] = f[k];
                        if !q3 {
                            out.dm[blk * TILE + r] = f[4 + k];
                            for pp in 0..MIN_PAIRS {
                                let (m0, m1) = ((*m.add(16 * k + 2 * pp) >> 4) as u32, (*m.add(16 * k + 2 * pp + 1) >> 4) as u32);
                                out.minp[(blk * MIN_PAIRS + pp) * TILE + r] = (m0 | (m1 << 16)) as i32;
                            }
                        }
                    }
                }
                GgmlType::IQ4_XS => {
                    // `iq4_xs`'s layout: scales (i8) at m[8k + sb], d at m[32 + 2k].
                    let tab = _mm512_broadcast_i32x4(_mm_loadu_si128(crate::quant::blocks::KVALUES_IQ4NL.as_ptr().cast()));
                    for mm in 0..4 {
                        for p in 0..2 {
                            let v = _mm512_loadu_si512(q.add((2 * mm + p) * 64).cast());
                            let codes = [_mm512_and_si512(v, m4), _mm512_and_si512(_mm512_srli_epi16::<4>(v), m4)];
                            for hs in 0..2 {
                                let sb = 2 * mm + hs;
                                let val = _mm512_shuffle_epi8(tab, codes[hs]);
                                for hh in 0..2 {
                                    let k = 2 * p + hh;
                                    let v16 = _mm512_cvtepi8_epi16(if hh == 0 { _mm512_castsi512_si256(val) } else { _mm512_extracti64x4_epi64::<1>(val) });
                                    let s = *(m.add(8 * k + sb) as *const i8) as i16;
                                    let r = ROWS * gi + k;
                                    store_split(at(r, sb / 2, 0, sb % 2), at(r, sb / 2, 1, sb % 2), _mm512_mullo_epi16(v16, _mm512_set1_epi16(s)));
                                }
                            }
                        }
                    }
                    let mut f = [0f32; 4];
                    _mm_storeu_ps(f.as_mut_ptr(), _mm_cvtph_ps(_mm_loadl_epi64(m.add(32).cast())));
                    for k in 0..ROWS {
                        out.dw[blk * TILE + ROWS * gi + k] = f[k];
                    }
                }
                _ => unreachable!("amx::handles admits only the K-quants and iq4_xs"),
            }
        }
    }
}

/// The tile configuration: palette 1, tiles 0-7 all 16 rows x 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

const CONFIG: TileConfig = {
    let mut c = [0u8; 64];
    c[0] = 1;
    let mut t = 0;
    while t < 8 {
        c[16 + 2 * t] = STEP as u8;
        c[48 + t] = TILE as u8;
        t += 1;
    }
    TileConfig(c)
};

/// Tile register use: accumulators 0-3 (one per part), A (weights) 4 and 6 (and 2, 3 with two
/// parts), B (tokens) 5 and 7.
macro_rules! tile_load {
    ($t:literal, $p:expr) => {
        asm!(concat!("tileloadd tmm", $t, ", [{0} + {1}]"), in(reg) $p, in(reg) STEP, options(nostack, readonly))
    };
}
macro_rules! tile_dp {
    ($signed:expr, $c:literal, $a:literal, $b:literal) => {
        if $signed {
            asm!(concat!("tdpbssd tmm", $c, ", tmm", $a, ", tmm", $b), options(nostack, nomem))
        } else {
            asm!(concat!("tdpbusd tmm", $c, ", tmm", $a, ", tmm", $b), options(nostack, nomem))
        }
    };
}

/// Asks for row tile `rt`'s packed bytes of block `blk` (its groups' quants and meta) ahead of
/// its expansion. The tile loops call it for the next tile, block by block, while they multiply
/// the current one: with few token tiles (batched decode) expanding a tile is otherwise a
/// stall on memory with the multiply units idle, and it took half the time of a 16-sequence
/// decode step.
///
/// # Safety
/// SSE (every x86_64); `blk` is a block of `w`'s columns.
#[inline(always)]
pub(super) unsafe fn prefetch_tile_block(w: &PackedMatrix, rt: usize, blk: usize) {
    let Some((qsb, dmb)) = super::group_block_bytes(w.ty) else { return };
    let nb = w.n_cols / QK_K;
    let g_end = (rt * GROUPS + GROUPS).min(w.n_rows.div_ceil(ROWS));
    for g in rt * GROUPS..g_end {
        let q = w.qs.as_slice().as_ptr().add((g * nb + blk) * qsb);
        for off in (0..qsb).step_by(64) {
            _mm_prefetch::<_MM_HINT_T0>(q.add(off).cast());
        }
        let m = w.dm.as_slice().as_ptr().add((g * nb + blk) * dmb);
        for off in (0..dmb).step_by(64) {
            _mm_prefetch::<_MM_HINT_T0>(m.add(off).cast());
        }
    }
}

/// Rows `rt * 16 ..` of `w` against every token: `out[t * n_rows + r]`.
///
/// # Safety
/// [`enabled`] returned true; `acts` was prepared for `n_tokens` tokens of `w`'s columns;
/// `out` holds `n_tokens * w.n_rows` floats and this call alone writes this tile's rows.
pub(super) unsafe fn run_tiles(w: &PackedMatrix, tiles: std::ops::Range<usize>, acts: &AmxActs, n_tokens: usize, out: &crate::disjoint::DisjointMut<'_, f32>) {
    ROW_TILE.with(|cell| {
        let mut rt_buf = cell.borrow_mut();
        // SAFETY: the configuration is 64 valid bytes; AMX is enabled (caller).
        asm!("ldtilecfg [{0}]", in(reg) CONFIG.0.as_ptr(), options(nostack, readonly));
        let n_tt = n_tokens.div_ceil(TILE);
        let mut c = std::mem::MaybeUninit::<[[[i32; TILE * TILE]; 4]; 2]>::uninit();
        let c0 = c.as_mut_ptr().cast::<[i32; TILE * TILE]>();
        let c1 = c0.add(4);
        let mut accs = std::mem::take(&mut rt_buf.acc);
        for_each_row_tile(w, tiles.clone(), n_tokens, &mut accs, out, |rt, accs| {
            expand(w, rt, &mut rt_buf);
            // Block by block, every token tile: one block's A tiles (8 or 16 KiB) stay in L1
            // while the token tiles' B tiles stream past them.
            for blk in 0..w.n_cols / QK_K {
                if rt + 1 < tiles.end {
                    prefetch_tile_block(w, rt + 1, blk);
                }
                let mut tt = 0;
                while tt < n_tt {
                    if tt + 1 < n_tt {
                        ints_pair(w, &rt_buf, acts, tt, blk, c0, c1);
                        fold(w, &rt_buf, acts, tt, blk, c0, &mut accs[tt * TILE * TILE..][..TILE * TILE]);
                        fold(w, &rt_buf, acts, tt + 1, blk, c1, &mut accs[(tt + 1) * TILE * TILE..][..TILE * TILE]);
                        tt += 2;
                    } else {
                        ints_one(w, &rt_buf, acts, tt, blk, c0);
                        fold(w, &rt_buf, acts, tt, blk, c0, &mut accs[tt * TILE * TILE..][..TILE * TILE]);
                        tt += 1;
                    }
                }
            }
        });
        rt_buf.acc = accs;
        asm!("tilerelease", options(nostack, nomem));
    })
}

/// The integer tiles (`[part][row][token]`) of block `blk` against token tile `tt`, into `c`.
///
/// # Safety
/// Inside [`run_tiles`] (tiles configured); `c` is writable for `PARTS` tiles.
#[inline(always)]
unsafe fn ints_one(w: &PackedMatrix, rows: &RowTile, acts: &AmxActs, tt: usize, blk: usize, c: *mut [i32; TILE * TILE]) {
    let nb = w.n_cols / QK_K;
    let np = PARTS;
    let signed = signed(w.ty);
    asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
    let a = rows.a.as_ptr().add(blk * STEPS * np * TILE_BYTES);
    let b = acts.b.as_ptr().add((tt * nb + blk) * STEPS * TILE_BYTES);
    for st in 0..STEPS {
        let (bp, ap) = (b.add(st * TILE_BYTES), a.add(st * np * TILE_BYTES));
        if st % 2 == 0 {
            tile_load!("5", bp);
        } else {
            tile_load!("7", bp);
        }
        // Two parts leave accumulators 2 and 3 free: odd steps load their A tiles there, so a
        // load need not wait for the previous step's multiply to release its tile register.
        if st % 2 == 0 {
            tile_load!("4", ap);
            tile_dp!(signed, "0", "4", "5");
            tile_load!("6", ap.add(TILE_BYTES));
            tile_dp!(signed, "1", "6", "5");
        } else {
            tile_load!("2", ap);
            tile_dp!(signed, "0", "2", "7");
            tile_load!("3", ap.add(TILE_BYTES));
            tile_dp!(signed, "1", "3", "7");
        }
    }
    asm!("tilestored [{0} + {1}], tmm0", in(reg) (*c).as_mut_ptr(), in(reg) STEP, options(nostack));
    asm!("tilestored [{0} + {1}], tmm1", in(reg) (*c.add(1)).as_mut_ptr(), in(reg) STEP, options(nostack));
}

/// Two-part types: the integer tiles of block `blk` against token tiles `tt` and `tt + 1` at once
/// (`c0`, `c1`): each weight tile loaded feeds two multiplies, each token tile two (tile loads,
/// not multiplies, are what bounds this loop).
///
/// Tile registers are not renamed: a load into a register waits for the multiplies that read
/// it. So each step's multiplies are ordered to free a register early and the next step's loads
/// go right after its last reader, while the other multiplies run: part 0 against both token
/// tiles (then A tile 4 is free), part 1 against token tile `tt` (then B tile 5), part 1 against
/// `tt + 1` (then 6 and 7). In a C microbenchmark on this VM's AMX, when its tile throughput is
/// low (dependent loads and multiplies ~25-30 ns per multiply instead of ~6) this order was ~9%
/// faster than loading each register just before its multiply; when it is high both run at the
/// multiply's throughput.
///
/// # Safety
/// As [`ints_one`]; token tile `tt + 1` exists in `acts`.
#[inline(always)]
unsafe fn ints_pair(w: &PackedMatrix, rows: &RowTile, acts: &AmxActs, tt: usize, blk: usize, c0: *mut [i32; TILE * TILE], c1: *mut [i32; TILE * TILE]) {
    let nb = w.n_cols / QK_K;
    let signed = signed(w.ty);
    asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
    let a = rows.a.as_ptr().add(blk * STEPS * 2 * TILE_BYTES);
    let b0 = acts.b.as_ptr().add((tt * nb + blk) * STEPS * TILE_BYTES);
    let b1 = acts.b.as_ptr().add(((tt + 1) * nb + blk) * STEPS * TILE_BYTES);
    let ap = |st: usize| a.add(st * 2 * TILE_BYTES);
    tile_load!("4", ap(0));
    tile_load!("5", b0);
    tile_load!("6", ap(0).add(TILE_BYTES));
    tile_load!("7", b1);
    for st in 0..STEPS {
        let next = st + 1 < STEPS;
        tile_dp!(signed, "0", "4", "5");
        tile_dp!(signed, "2", "4", "7");
        if next {
            tile_load!("4", ap(st + 1));
        }
        tile_dp!(signed, "1", "6", "5");
        if next {
            tile_load!("5", b0.add((st + 1) * TILE_BYTES));
        }
        tile_dp!(signed, "3", "6", "7");
        if next {
            tile_load!("6", ap(st + 1).add(TILE_BYTES));
            tile_load!("7", b1.add((st + 1) * TILE_BYTES));
        }
    }
    asm!("tilestored [{0} + {1}], tmm0", in(reg) (*c0).as_mut_ptr(), in(reg) STEP, options(nostack));
    asm!("tilestored [{0} + {1}], tmm1", in(reg) (*c0.add(1)).as_mut_ptr(), in(reg) STEP, options(nostack));
    asm!("tilestored [{0} + {1}], tmm2", in(reg) (*c1).as_mut_ptr(), in(reg) STEP, options(nostack));
    asm!("tilestored [{0} + {1}], tmm3", in(reg) (*c1.add(1)).as_mut_ptr(), in(reg) STEP, options(nostack));
}

/// Folds block `blk`'s integer tiles `c` for token tile `tt` into its accumulators `acc_mem`
/// (`[row][token]`) by the K-quant float order.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[allow(clippy::needless_range_loop)]
unsafe fn fold(w: &PackedMatrix, rows: &RowTile, acts: &AmxActs, tt: usize, blk: usize, c: *const [i32; TILE * TILE], acc_mem: &mut [f32]) {
    let nb = w.n_cols / QK_K;
    let mins = mins(w.ty);
    let sh = _mm_cvtsi32_si128(hi_shift(w.ty) as i32);
    let mut acc = [_mm512_setzero_ps(); TILE];
    for r in 0..TILE {
        acc[r] = _mm512_loadu_ps(acc_mem.as_ptr().add(r * TILE));
    }
    let dx = _mm512_loadu_ps(acts.d.as_ptr().add((tt * nb + blk) * TILE));
    let bpair = acts.bp.as_ptr().add((tt * nb + blk) * 4 * TILE);
    let bquad = acts.bq.as_ptr().add((tt * nb + blk) * MIN_PAIRS * TILE);
    for r in 0..TILE {
        let row = |p: usize| _mm512_loadu_si512((*c.add(p)).as_ptr().add(r * TILE).cast());
        let isum = _mm512_add_epi32(row(0), _mm512_sll_epi32(row(1), sh));
        let d = _mm512_mul_ps(dx, _mm512_set1_ps(*rows.dw.get_unchecked(blk * TILE + r)));
        acc[r] = _mm512_add_ps(acc[r], _mm512_mul_ps(d, _mm512_cvtepi32_ps(isum)));
        if mins != Mins::None {
            let mut msum = _mm512_setzero_si512();
            let (n, sums) = if mins == Mins::Per32 { (4, bpair) } else { (MIN_PAIRS, bquad) };
            for pp in 0..n {
                let mp = _mm512_set1_epi32(*rows.minp.get_unchecked((blk * MIN_PAIRS + pp) * TILE + r));
                msum = super::kq::dpwssd(msum, mp, _mm512_loadu_si512(sums.add(pp * TILE).cast()));
            }
            let dm = _mm512_mul_ps(dx, _mm512_set1_ps(*rows.dm.get_unchecked(blk * TILE + r)));
            acc[r] = _mm512_sub_ps(acc[r], _mm512_mul_ps(dm, _mm512_cvtepi32_ps(msum)));
        }
    }
    for r in 0..TILE {
        _mm512_storeu_ps(acc_mem.as_mut_ptr().add(r * TILE), acc[r]);
    }
}

/// A 16 x 16 f32 transpose in registers: `r[i]` lane `j` becomes `r[j]` lane `i`.
#[inline(always)]
unsafe fn transpose16(r: &mut [__m512; TILE]) {
    let mut t = [_mm512_setzero_ps(); TILE];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    let pd = |x: __m512| _mm512_castps_pd(x);
    for i in 0..4 {
        let (a, b, c, d) = (t[4 * i], t[4 * i + 1], t[4 * i + 2], t[4 * i + 3]);
        r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(pd(a), pd(c)));
        r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(pd(a), pd(c)));
        r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(pd(b), pd(d)));
        r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(pd(b), pd(d)));
    }
    for i in 0..2 {
        for j in 0..4 {
            t[8 * i + j] = _mm512_shuffle_f32x4::<0x88>(r[8 * i + j], r[8 * i + 4 + j]);
            t[8 * i + 4 + j] = _mm512_shuffle_f32x4::<0xDD>(r[8 * i + j], r[8 * i + 4 + j]);
        }
    }
    for j in 0..8 {
        r[j] = _mm512_shuffle_f32x4::<0x88>(t[j], t[8 + j]);
        r[8 + j] = _mm512_shuffle_f32x4::<0xDD>(t[j], t[8 + j]);
    }
}

/// The driver every tile kernel shares (AMX here, `tiles16`, `tiles_q4_0`): the row tiles
/// `tiles` in groups of [`WRITE_GROUP`], each computed by `tile(rt, accs)` into its own zeroed
/// accumulators (per token tile, `[row][token]`), then each group written into `out` by
/// [`write_rows`]. `accs` is the caller's buffer, reused across calls.
///
/// # Safety
/// AVX-512 F and BW are available; `out` holds `n_tokens * w.n_rows` floats and this call alone
/// writes these tiles' rows.
pub(super) unsafe fn for_each_row_tile(
    w: &PackedMatrix,
    tiles: std::ops::Range<usize>,
    n_tokens: usize,
    accs: &mut Vec<f32>,
    out: &crate::disjoint::DisjointMut<'_, f32>,
    mut tile: impl FnMut(usize, &mut [f32]),
) {
    let tile_accs = n_tokens.div_ceil(TILE) * TILE * TILE;
    accs.clear();
    accs.resize(WRITE_GROUP * tile_accs, 0.0);
    let mut g0 = tiles.start;
    while g0 < tiles.end {
        let g1 = (g0 + WRITE_GROUP).min(tiles.end);
        for rt in g0..g1 {
            let a = &mut accs[(rt - g0) * tile_accs..][..tile_accs];
            a.fill(0.0);
            tile(rt, a);
        }
        write_rows(w, g0..g1, accs, n_tokens, out);
        g0 = g1;
    }
}

/// Row tiles `rts`' results (`accs`: per row tile, per token tile, `[row][token]`) into `out`,
/// transposed in registers. Token tile by token tile, the group's row tiles write each token's
/// neighbouring 16-row spans one after another (whole lines, one page walk per token).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn write_rows(w: &PackedMatrix, rts: std::ops::Range<usize>, accs: &[f32], n_tokens: usize, out: &crate::disjoint::DisjointMut<'_, f32>) {
    let n_tt = n_tokens.div_ceil(TILE);
    for tt in 0..n_tt {
        for rt in rts.clone() {
            let f = &accs[((rt - rts.start) * n_tt + tt) * TILE * TILE..][..TILE * TILE];
            let r0 = rt * TILE;
            let nr = w.n_rows.saturating_sub(r0).min(TILE);
            let mask: __mmask16 = ((1u32 << nr) - 1) as u16;
            let mut r: [__m512; TILE] = std::array::from_fn(|i| _mm512_loadu_ps(f.as_ptr().add(i * TILE)));
            transpose16(&mut r);
            for (t, v) in r.iter().enumerate().take(n_tokens - tt * TILE) {
                // SAFETY: this task alone writes rows r0..r0 + nr (caller of `run_tiles`); the
                // masked store touches only those.
                _mm512_mask_storeu_ps(out.slice((tt * TILE + t) * w.n_rows + r0, nr).as_mut_ptr(), mask, *v);
            }
        }
    }
}


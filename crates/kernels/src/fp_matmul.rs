//! Float weights (f32, f16, bf16) times f32 activations on AVX-512: several rows and tokens per
//! pass, each result bit-for-bit the AVX2 `vec_dot` (`quant::x86::fp`).
//!
//! That dot keeps 32 running sums (four 8-lane accumulators; element `e` of a 32-element step
//! goes to sum `e % 32`), then adds 8 elements at a time into the first accumulator, reduces
//! the four as `(acc0 + acc1) + (acc2 + acc3)` and `hsum_float_8`, and ends with a scalar
//! tail. Here two 16-lane registers hold the same 32 sums (accumulators 0|1 and 2|3) and take
//! the same fused multiply-adds in the same order, so every result is the same bits, and a
//! prompt and a decode step (or an AVX2 machine and an AVX-512 one) agree exactly. What
//! changes is the reuse: one converted weight vector serves up to [`TOKENS`] tokens and one
//! activation vector up to [`ROWS`] rows, where the row-at-a-time dot loaded and converted both
//! for every multiply-add.
//!
//! Why not AMX-BF16 (`tdpbf16ps`) for prompts: it takes bf16 activations (ours are f32, more
//! precise than llama.cpp's f16/bf16 ones) and f16 weights would lose 3 mantissa bits as bf16;
//! and its sums run in another order, so a prompt's logits would differ from the same tokens
//! decoded one by one (`batch_invariance`). The FMA tiles keep every path exact.
//!
//! Layout: the matrix as the file stores it (rows contiguous), read in place from the mapping:
//! no repacked copy. Work: output rows in chunks claimed by the pool; in a chunk, tokens in
//! tiles of [`TOKEN_TILE`] (their activations stay in L2 while the chunk sweeps its rows), and
//! per pass [`ROWS`] rows x [`TOKENS`] tokens (24 accumulators); a single token (decode) takes
//! [`DECODE_ROWS`] rows per pass, with the next rows prefetched, to keep several weight streams
//! in flight.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use gguf::GgmlType;

use crate::disjoint::DisjointMut;
use crate::matmul::QMatrix;
use crate::pool::ThreadPool;
use crate::quant::x86::hsum_float_8;
use crate::quant::Level;

/// Rows per pass when there are several tokens.
const ROWS: usize = 3;
/// Tokens per pass.
const TOKENS: usize = 4;
/// Rows per pass for a single token.
const DECODE_ROWS: usize = 8;
/// Tokens per tile (16 x 8 KiB of activations at 2048 columns: in L2).
const TOKEN_TILE: usize = 16;
/// Weight bytes per row block (see `chunk`).
const ROW_BLOCK_BYTES: usize = 256 << 10;

/// Whether [`matmul`] runs `ty` here: a float type, and the AVX-512 level chosen.
pub(crate) fn handles(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16) && crate::quant::chosen_level() >= Level::Avx512Vnni
}

/// A weight element type: its size and how 16 (or 8, in the low lanes) of them become f32.
trait Elem {
    const BYTES: usize;
    /// # Safety
    /// `p` points at 16 readable elements; AVX-512F is available.
    unsafe fn load16(p: *const u8) -> __m512;
    /// Lanes 0..8 (the rest undefined).
    ///
    /// # Safety
    /// `p` points at 8 readable elements; AVX-512F is available.
    unsafe fn load8(p: *const u8) -> __m512;
    /// # Safety
    /// `p` points at one readable element.
    unsafe fn scalar(p: *const u8) -> f32;
}

struct F32;
struct F16;
struct Bf16;

impl Elem for F32 {
    const BYTES: usize = 4;
    #[inline(always)]
    unsafe fn load16(p: *const u8) -> __m512 {
        _mm512_loadu_ps(p.cast())
    }
    #[inline(always)]
    unsafe fn load8(p: *const u8) -> __m512 {
        _mm512_castps256_ps512(_mm256_loadu_ps(p.cast()))
    }
    #[inline(always)]
    unsafe fn scalar(p: *const u8) -> f32 {
        std::ptr::read_unaligned(p.cast::<f32>())
    }
}

impl Elem for F16 {
    const BYTES: usize = 2;
    #[inline(always)]
    unsafe fn load16(p: *const u8) -> __m512 {
        _mm512_cvtph_ps(_mm256_loadu_si256(p.cast()))
    }
    #[inline(always)]
    unsafe fn load8(p: *const u8) -> __m512 {
        _mm512_castps256_ps512(_mm256_cvtph_ps(_mm_loadu_si128(p.cast())))
    }
    #[inline(always)]
    unsafe fn scalar(p: *const u8) -> f32 {
        crate::quant::fp::f16_to_f32(std::ptr::read_unaligned(p.cast::<u16>()))
    }
}

impl Elem for Bf16 {
    const BYTES: usize = 2;
    #[inline(always)]
    unsafe fn load16(p: *const u8) -> __m512 {
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(_mm256_loadu_si256(p.cast()))))
    }
    #[inline(always)]
    unsafe fn load8(p: *const u8) -> __m512 {
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_castsi256_si512(_mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast())))))
    }
    #[inline(always)]
    unsafe fn scalar(p: *const u8) -> f32 {
        crate::quant::fp::bf16_to_f32(std::ptr::read_unaligned(p.cast::<u16>()))
    }
}

/// `res[t][r] = dot(row r, token t)` for `R` rows at `w` (`ws` bytes apart) and `T` tokens at
/// `x` (`xs` floats apart), `n` elements each, in the AVX2 `vec_dot`'s order (module docs).
/// With one token, each 32-element step also prefetches the same bytes of the next `R` rows.
///
/// # Safety
/// AVX-512F, AVX2, FMA and F16C are available; the `R` rows and `T` activation rows are
/// readable for `n` elements.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn pass<E: Elem, const R: usize, const T: usize>(n: usize, w: *const u8, ws: usize, x: *const f32, xs: usize) -> [[f32; R]; T] {
    let mut a = [[[_mm512_setzero_ps(); 2]; R]; T];
    let mut i = 0;
    while i + 32 <= n {
        if T == 1 {
            for r in 0..R {
                let p = w.wrapping_add((r + R) * ws + i * E::BYTES);
                _mm_prefetch::<_MM_HINT_T0>(p.cast());
                if E::BYTES == 4 {
                    _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(64).cast());
                }
            }
        }
        for h in 0..2 {
            let j = i + 16 * h;
            let wv: [__m512; R] = std::array::from_fn(|r| E::load16(w.add(r * ws + j * E::BYTES)));
            for t in 0..T {
                let xv = _mm512_loadu_ps(x.add(t * xs + j));
                for r in 0..R {
                    a[t][r][h] = _mm512_fmadd_ps(wv[r], xv, a[t][r][h]);
                }
            }
        }
        i += 32;
    }
    while i + 8 <= n {
        let wv: [__m512; R] = std::array::from_fn(|r| E::load8(w.add(r * ws + i * E::BYTES)));
        for t in 0..T {
            let xv = _mm512_castps256_ps512(_mm256_loadu_ps(x.add(t * xs + i)));
            for r in 0..R {
                a[t][r][0] = _mm512_mask3_fmadd_ps(wv[r], xv, a[t][r][0], 0xFF);
            }
        }
        i += 8;
    }
    let mut res = [[0f32; R]; T];
    for t in 0..T {
        for r in 0..R {
            let [lo, hi] = a[t][r];
            let s01 = _mm256_add_ps(_mm512_castps512_ps256(lo), _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(lo))));
            let s23 = _mm256_add_ps(_mm512_castps512_ps256(hi), _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(hi))));
            let mut s = hsum_float_8(_mm256_add_ps(s01, s23));
            for k in i..n {
                s += E::scalar(w.add(r * ws + k * E::BYTES)) * *x.add(t * xs + k);
            }
            res[t][r] = s;
        }
    }
    res
}

/// Where a chunk's results go: `out[t * n_rows + r]`.
struct Out<'a> {
    out: &'a DisjointMut<'a, f32>,
    n_rows: usize,
}

impl Out<'_> {
    /// # Safety
    /// The caller's task alone writes rows `r..r + R` (for every token).
    #[inline(always)]
    unsafe fn put<const R: usize, const T: usize>(&self, res: [[f32; R]; T], r: usize, t: usize) {
        for (dt, row) in res.iter().enumerate() {
            for (dr, &v) in row.iter().enumerate() {
                self.out.write((t + dt) * self.n_rows + r + dr, v);
            }
        }
    }
}

/// One chunk: rows `r0..r1` for every token.
///
/// # Safety
/// As [`pass`] for every row of the chunk and token; the task alone writes these rows.
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn chunk<E: Elem>(w: &QMatrix, x: &[f32], n_tokens: usize, r0: usize, r1: usize, out: &Out) {
    let n = w.n_cols;
    let ws = n * E::BYTES;
    let row = |r: usize| w.data.as_ptr().add(r * ws);
    let xp = |t: usize| x.as_ptr().add(t * n);
    macro_rules! run {
        ($r:expr, $t:expr, $R:literal, $T:literal) => {
            out.put::<$R, $T>(pass::<E, $R, $T>(n, row($r), ws, xp($t), n), $r, $t)
        };
    }
    if n_tokens == 1 {
        let mut r = r0;
        while r < r1 {
            match r1 - r {
                1 => run!(r, 0, 1, 1),
                2 => run!(r, 0, 2, 1),
                3 => run!(r, 0, 3, 1),
                4 => run!(r, 0, 4, 1),
                5 => run!(r, 0, 5, 1),
                6 => run!(r, 0, 6, 1),
                7 => run!(r, 0, 7, 1),
                _ => run!(r, 0, 8, 1),
            }
            r += (r1 - r).min(DECODE_ROWS);
        }
        return;
    }
    // Rows per block: their weights stay in L2 while every token group of the tile passes
    // over them; a token group's activations stay in L1 across the block's rows.
    let block = (ROW_BLOCK_BYTES / ws).max(1).next_multiple_of(ROWS);
    for t0 in (0..n_tokens).step_by(TOKEN_TILE) {
        let t1 = (t0 + TOKEN_TILE).min(n_tokens);
        for b0 in (r0..r1).step_by(block) {
        let b1 = (b0 + block).min(r1);
        let mut t = t0;
        while t < t1 {
            let nt = (t1 - t).min(TOKENS);
            let mut r = b0;
            while r < b1 {
                let nr = (b1 - r).min(ROWS);
                match (nr, nt) {
                    (1, 1) => run!(r, t, 1, 1),
                    (1, 2) => run!(r, t, 1, 2),
                    (1, 3) => run!(r, t, 1, 3),
                    (1, _) => run!(r, t, 1, 4),
                    (2, 1) => run!(r, t, 2, 1),
                    (2, 2) => run!(r, t, 2, 2),
                    (2, 3) => run!(r, t, 2, 3),
                    (2, _) => run!(r, t, 2, 4),
                    (_, 1) => run!(r, t, 3, 1),
                    (_, 2) => run!(r, t, 3, 2),
                    (_, 3) => run!(r, t, 3, 3),
                    (_, _) => run!(r, t, 3, 4),
                }
                r += nr;
            }
            t += nt;
        }
        }
    }
}

/// `out[t * n_rows + r] = dot(w.row(r), x[t * n_cols..][..n_cols])`, bit-for-bit the AVX2
/// `vec_dot` of the weight type. The caller (`matmul::matmul`) checked the shapes and that
/// [`handles`] the type.
pub(crate) fn matmul(pool: &ThreadPool, w: &QMatrix, x: &[f32], n_tokens: usize, out: &mut [f32]) {
    let n_rows = w.n_rows;
    let rows_per_chunk = crate::matmul::rows_per_chunk(pool, n_tokens, n_rows, w.n_cols, if n_tokens == 1 { DECODE_ROWS } else { ROWS });
    let n_chunks = n_rows.div_ceil(rows_per_chunk);
    let shared = DisjointMut::new(out);
    let out = Out { out: &shared, n_rows };
    pool.run(n_chunks, &|c| {
        let r0 = c * rows_per_chunk;
        let r1 = (r0 + rows_per_chunk).min(n_rows);
        // SAFETY: `handles` found the AVX-512 level (AVX-512F, AVX2, FMA, F16C present); the
        // caller checked that `w.data` holds `n_rows` rows of `n_cols` elements and `x`
        // `n_tokens` rows of `n_cols` floats; chunk `c` alone writes rows r0..r1.
        unsafe {
            match w.ty {
                GgmlType::F16 => chunk::<F16>(w, x, n_tokens, r0, r1, &out),
                GgmlType::BF16 => chunk::<Bf16>(w, x, n_tokens, r0, r1, &out),
                _ => chunk::<F32>(w, x, n_tokens, r0, r1, &out),
            }
        }
    });
}

//! Weights repacked at load into 4-row interleaved layouts, and the matmul that runs on them.
//!
//! A GGUF row keeps each 32-element block's scale next to its quants (`[d][m][qs:16]`, 20 bytes
//! for q4_1). The AVX-512 VNNI kernels here want the same block of four neighbouring rows in one
//! 64-byte register, so [`PackedMatrix::pack`] rewrites the matrix once, at load, into
//!
//! ```text
//! q4_1, per group of 4 rows g, per block b:
//!   qs[g][b] = 64 bytes: row 4g's 16 nibble bytes, then rows 4g+1, 4g+2, 4g+3
//!   dm[g][b] = 16 bytes: d of the 4 rows (f16), then m of the 4 rows (f16)
//! q8_0, per group g, per block b:
//!   qs[g][b] = 128 bytes: the 4 rows' 32 quants, each stored as q ^ 0x80 (= q + 128, unsigned)
//!   dm[g][b] = 8 bytes: d of the 4 rows (f16)
//! q5_0 and q4_0, per group g, per block b:
//!   qs[g][b] = 64 bytes of nibbles as q4_1's, then (q5_0 only) 16 bytes of fifth bits: a u64
//!              with row k's qh bits 0..16 at bits 16k.., then one with its bits 16..32
//!   dm[g][b] = 8 bytes: d of the 4 rows (f16)
//! ```
//!
//! (the same bytes as the GGUF rows: packing reorders, it does not grow the model), in a 64-byte
//! aligned buffer (`aligned`; a transparent-huge-page hint with `DAEHWA_HUGE_PAGES=1`). One weight
//! load then feeds four rows, and each activation block is loaded once per four rows instead of once per row. mxfp4 (`mxfp4`)
//! and the 256-element types have layouts of their own: q4_K (`q4_k`), q5_K (`q5_k`), q6_K,
//! q3_K and q2_K (`k16`), iq4_xs (`iq4_xs`), the K-quants' float order in `kq`. Prompts of 16
//! tokens or more on the 256-element types run on 16-row tiles: AMX (`amx`) where the CPU has
//! it, else 16 tokens per AVX-512 register (`tiles16`); q4_0 prompts on 16-token tiles of their
//! own (`tiles_q4_0`); every path returns the same bits.
//!
//! **Exactness.** Every (row, token) result is bit-for-bit what the row-at-a-time `vec_dot`
//! kernels (`quant::kernel`) return: each block's integer dot is exact whatever instruction
//! computes it, and the float work is the same per 8-lane partial sum: `fma(d_w * d_x,
//! float(isum), acc)` with even and odd blocks in two accumulators, the same horizontal sum order,
//! then `+ sum(m * s)` block by block. q4_0 (`q4_0`) and the K-quants (`kq`) follow their own
//! single float orders instead, made for tiles. So packing changes speed, never logits, and a token's
//! result does not depend on how many tokens share the call (batch invariance).
//!
//! Only types and CPUs with a packed kernel are packed ([`PackedMatrix::pack`] returns `None`
//! otherwise, and callers keep using [`crate::matmul::matmul`] on the GGUF bytes).

#[cfg(target_arch = "x86_64")]
mod q4_1;
#[cfg(target_arch = "x86_64")]
mod q4_0;
#[cfg(target_arch = "x86_64")]
mod q5_0;
#[cfg(target_arch = "x86_64")]
mod q8_0;
#[cfg(target_arch = "x86_64")]
mod kq;
#[cfg(target_arch = "x86_64")]
mod kq_avx2;
#[cfg(target_arch = "x86_64")]
mod q4_k;
#[cfg(target_arch = "x86_64")]
mod q5_k;
#[cfg(target_arch = "x86_64")]
mod q6_k;
#[cfg(target_arch = "x86_64")]
mod k16;
#[cfg(target_arch = "x86_64")]
mod iq4_xs;
#[cfg(target_arch = "x86_64")]
mod mxfp4;
#[cfg(target_arch = "x86_64")]
pub mod amx;
#[cfg(target_arch = "x86_64")]
mod tiles16;
#[cfg(target_arch = "x86_64")]
mod tiles_q4_0;
mod aligned;
mod pack;
mod pack_k;

use aligned::AlignedBytes;
pub use pack::load_threads;

use std::ops::Range;

use gguf::GgmlType;

use crate::disjoint::DisjointMut;
use crate::matmul::MatmulScratch;
use crate::pool::ThreadPool;
use crate::quant::blocks::{as_blocks, BlockQ8_0, BlockQ8_1, QK, QK_K};
use crate::quant::{self, Level};
use crate::{Error, Result};

/// Rows interleaved per group.
pub(crate) const ROWS: usize = 4;
/// Tokens per kernel call (accumulators live in registers: 4 or 2 per token and row group).
const TOKENS: usize = 4;
/// Tokens per tile: their activations stay in L1/L2 while a chunk sweeps its row groups.
const TOKEN_TILE: usize = 16;
/// How far ahead (bytes of quants) the kernels prefetch the weight stream, into L2
/// (`_MM_HINT_T1`). A decode step reads every weight once from DRAM, and one core's bandwidth
/// is bounded by how many lines it has in flight: asking 4 KiB ahead keeps enough of them
/// outstanding, where 1 KiB into L1 (`T0`, tried first) left the core waiting. Measured on
/// the 2-vCPU Sapphire Rapids VM, old and new binaries alternated: Gemma-3-270M tg about +25%
/// at 1 thread and +20% at 2 (the 178 MB q8_0 output matrix went from ~10.5 to ~13.5 GB/s at 1
/// thread, above the plain streaming read), SmolLM2 tg at 1 thread +60%; prefill unchanged (its weights are
/// reused from cache across a tile's tokens). 6-8 KiB measured the same as 4 KiB.
pub(crate) const PREFETCH: usize = 4096;

/// Prefetches (into L2) every cache line of the K-quant block [`PREFETCH`] bytes of quants
/// ahead of `q` (quants `qs` bytes per block) and the matching meta ahead of `m` (`meta` bytes
/// per block), so a decode step has all of its weight lines in flight rather than a few per
/// block left to the hardware prefetcher: in `cargo bench -p kernels -- dram` (1.1 GiB of
/// 8B-shaped q4_K, past the L3) two per 512-byte block moved 16-17 GB/s at 2 threads, every
/// line 20-28 GB/s, alternating runs. Addresses past the end are never dereferenced.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn prefetch_block(q: *const u8, m: *const u8, qs: usize, meta: usize) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
    for l in 0..qs / 64 {
        _mm_prefetch::<_MM_HINT_T1>(q.wrapping_add(PREFETCH + 64 * l).cast());
    }
    // The meta runs `meta` bytes per block, as far ahead in proportion: one line per block
    // misses a line now and then when `meta` > 64, so two.
    let ahead = m.wrapping_add(PREFETCH * meta / qs);
    _mm_prefetch::<_MM_HINT_T1>(ahead.cast());
    if meta > 64 {
        _mm_prefetch::<_MM_HINT_T1>(ahead.wrapping_add(64).cast());
    }
}

/// Row groups per kernel call in prefill: their weights (about 1.5 KiB each for q4_1 at
/// 576 columns) stay in L1 across the tile's 4-token calls.
const GROUP_BATCH: usize = 4;
/// Minimum multiply-adds per task; smaller work is not worth waking threads for.
const MIN_WORK_PER_TASK: usize = 1 << 15;
/// Chunks per thread, so a thread slowed by another process does not hold up the others.
const CHUNKS_PER_THREAD: usize = 4;

/// A weight matrix repacked for the AVX-512 VNNI kernels (see the module docs).
pub struct PackedMatrix {
    ty: GgmlType,
    n_rows: usize,
    n_cols: usize,
    /// Quants: `[group][block][qs_bytes]`.
    qs: AlignedBytes,
    /// Scales (and minimums): `[group][block][dm_bytes]`.
    dm: AlignedBytes,
}

impl std::fmt::Debug for PackedMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedMatrix({} x {} {})", self.n_rows, self.n_cols, self.ty.name())
    }
}

/// Bytes per (group, block) of quants and of scales for a packed type.
fn group_block_bytes(ty: GgmlType) -> Option<(usize, usize)> {
    match ty {
        GgmlType::Q4_1 => Some((ROWS * QK / 2, ROWS * 4)),
        GgmlType::Q8_0 => Some((ROWS * QK, ROWS * 2)),
        GgmlType::Q5_0 => Some((ROWS * QK / 2 + ROWS * 4, ROWS * 2)),
        GgmlType::Q4_0 => Some((ROWS * QK / 2, ROWS * 2)),
        #[cfg(target_arch = "x86_64")]
        GgmlType::MXFP4 => Some((mxfp4::QS_BYTES, mxfp4::META_BYTES)),
        // K-quants: per 256-element super-block (see `q4_k`, `q6_k`).
        #[cfg(target_arch = "x86_64")]
        GgmlType::Q4_K => Some((q4_k::QS_BYTES, q4_k::META_BYTES)),
        #[cfg(target_arch = "x86_64")]
        GgmlType::Q5_K => Some((q5_k::QS_BYTES, q5_k::META_BYTES)),
        #[cfg(target_arch = "x86_64")]
        GgmlType::Q6_K => Some((q6_k::QS_BYTES, q6_k::META_BYTES)),
        #[cfg(target_arch = "x86_64")]
        GgmlType::Q3_K => Some((<k16::Q3K as k16::Sub16>::QS_BYTES, <k16::Q3K as k16::Sub16>::META_BYTES)),
        #[cfg(target_arch = "x86_64")]
        GgmlType::Q2_K => Some((<k16::Q2K as k16::Sub16>::QS_BYTES, <k16::Q2K as k16::Sub16>::META_BYTES)),
        #[cfg(target_arch = "x86_64")]
        GgmlType::IQ4_XS => Some((iq4_xs::QS_BYTES, iq4_xs::META_BYTES)),
        _ => None,
    }
}

/// Bytes of one expanded q8_K activation block (`kq::expand`).
const KQ_Y_BYTES: usize = 576;

/// Elements per block of a packed type: 32, or 256 for the K-quants' super-blocks.
fn block_elems(ty: GgmlType) -> usize {
    if is_k(ty) { QK_K } else { QK }
}

/// Whether `ty` is a K-quant or iq4_xs (256-element super-blocks: its kernels read the expanded
/// q8_K activation rows).
fn is_k(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K | GgmlType::Q3_K | GgmlType::Q2_K | GgmlType::IQ4_XS)
}

/// Whether this process runs the packed kernels (AVX-512 VNNI detected and not capped by
/// `DAEHWA_KERNELS`).
pub fn available() -> bool {
    cfg!(target_arch = "x86_64") && quant::chosen_level() >= Level::Avx512Vnni
}

/// Which kernels prompts (16 tokens or more) on packed K-quant and iq4_xs matrices take here:
/// `"amx"` (int8 tiles), `"avx512-tiles"` (`tiles16`: 16 tokens per register), or `"rows"` (the
/// 4-row kernels, as decode steps).
pub fn prompt_kernels() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if amx::enabled() {
            return "amx";
        }
        if tiles16::enabled() {
            return "avx512-tiles";
        }
    }
    "rows"
}

/// Whether the packed K-quant layouts run on AVX2 + FMA here instead (no AVX-512 VNNI, or
/// `DAEHWA_KERNELS=avx2`; the legacy layouts have AVX-512 kernels only).
fn k_on_avx2() -> bool {
    cfg!(target_arch = "x86_64") && !available() && quant::chosen_level() >= Level::Avx2
}

/// Whether [`PackedMatrix::pack`] makes a copy of a matrix of type `ty` in this process (for
/// memory estimates: a packed matrix is held twice, the mapped GGUF bytes and the packed copy).
pub fn packs(ty: GgmlType) -> bool {
    group_block_bytes(ty).is_some() && (available() || (is_k(ty) && k_on_avx2()))
}

/// Bytes the packed copy of an `n_rows x n_cols` matrix of `ty` holds (it replaces the matrix's
/// GGUF bytes at load), or `None` where this process does not pack `ty` (for memory estimates).
pub fn packed_bytes(ty: GgmlType, n_rows: usize, n_cols: usize) -> Option<usize> {
    if !packs(ty) {
        return None;
    }
    let (qsb, dmb) = group_block_bytes(ty)?;
    let be = block_elems(ty);
    n_cols.is_multiple_of(be).then(|| n_rows.div_ceil(ROWS) * (n_cols / be) * (qsb + dmb))
}

impl PackedMatrix {
    pub fn ty(&self) -> GgmlType {
        self.ty
    }
    /// Bytes the packed matrix holds beyond the GGUF bytes it replaces (decoded scales: q4_K 16
    /// bytes per 4 rows and super-block, 2.8%; q5_K 2.3%; q3_K 3.6%; iq4_xs 1.5%; 0 for the
    /// other types).
    pub fn extra_bytes(&self) -> usize {
        let (qsb, dmb) = group_block_bytes(self.ty).unwrap_or((0, 0));
        let gguf = quant::row_bytes(self.ty, self.n_cols).unwrap_or(0) * self.n_rows;
        (self.n_rows.div_ceil(ROWS) * (self.n_cols / block_elems(self.ty)) * (qsb + dmb)).saturating_sub(gguf)
    }
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }
    pub fn n_cols(&self) -> usize {
        self.n_cols
    }
    /// Bytes of weights a matmul streams (for bandwidth figures).
    pub fn bytes(&self) -> usize {
        self.qs.as_slice().len() + self.dm.as_slice().len()
    }
}

/// One token's activations in the form the packed kernels read: the quants of every block
/// contiguous, the block scales (and `s = d * sum`) decoded to f32, and for q8_0 activations
/// the per-lane corrections that undo the weights' unsigned offsets, [`CORR`] values per block:
/// `-128 * (sum of 4 quants)` for q8_0's `q + 128`, then `-16 * (sum of 4 quants)` for q5_0's
/// `q + 16` (halved by the q4_0 kernel for `q + 8`). Both are stored so that neither hot kernel
/// (q8_0: Gemma's 262k-row output matrix; q5_0: its attention and FFN) spends a shift per block.
#[derive(Clone, Copy)]
pub(crate) struct ActRow<'a> {
    pub qs: &'a [u8],
    pub d: &'a [f32],
    pub s: &'a [f32],
    pub corr: &'a [i32],
    /// q8_0 activations: `-8 * (sum of the block's 32 quants)` per block (q4_0's offset).
    pub c8: &'a [i32],
}

/// i32 corrections per activation block in [`ActRow::corr`]: 8 lanes for q8_0, 8 for q5_0/q4_0.
pub(crate) const CORR: usize = 16;

/// Activation buffers of the packed path (inside [`MatmulScratch`]).
#[derive(Default)]
pub(crate) struct PackedScratch {
    #[cfg(target_arch = "x86_64")]
    amx: amx::AmxActs,
    #[cfg(target_arch = "x86_64")]
    q4_tiles: tiles_q4_0::Q8Tiles,
    q8: Vec<u8>,
    qs: Vec<u8>,
    d: Vec<f32>,
    s: Vec<f32>,
    corr: Vec<i32>,
    c8: Vec<i32>,
}

fn grow<T: Copy + Default>(v: &mut Vec<T>, n: usize) {
    if v.len() < n {
        v.resize(n, T::default());
    }
}

/// Quantizes `n_tokens` rows of `x` (exactly as the row-at-a-time path does, through
/// `quantize_row_fast`) and splits each block into the [`ActRow`] arrays.
fn prepare_activations(pool: &ThreadPool, ty: GgmlType, x: &[f32], n_tokens: usize, n_cols: usize, expand_k: bool, sc: &mut PackedScratch) -> Result<()> {
    let vdt = quant::vec_dot_type(ty)?;
    let nb = n_cols / QK;
    let xrb = quant::row_bytes(vdt, n_cols)?;
    grow(&mut sc.q8, xrb * n_tokens);
    // K-quants: each q8_K block expanded to `kq::Y_BYTES` (see `kq::expand`).
    let qs_stride = if vdt == GgmlType::Q8_K { n_cols / QK_K * kq::Y_BYTES } else { nb * QK };
    grow(&mut sc.qs, qs_stride * n_tokens);
    grow(&mut sc.d, nb * n_tokens);
    grow(&mut sc.s, nb * n_tokens);
    grow(&mut sc.corr, nb * CORR * n_tokens);
    grow(&mut sc.c8, nb * n_tokens);
    let first_error = std::sync::Mutex::new(None);
    let (q8, qs, d, s, corr, c8) = (
        DisjointMut::new(&mut sc.q8[..]),
        DisjointMut::new(&mut sc.qs[..]),
        DisjointMut::new(&mut sc.d[..]),
        DisjointMut::new(&mut sc.s[..]),
        DisjointMut::new(&mut sc.corr[..]),
        DisjointMut::new(&mut sc.c8[..]),
    );
    const TOKENS_PER_TASK: usize = 8;
    let n_tasks = n_tokens.div_ceil(TOKENS_PER_TASK);
    let task = |i: usize| {
        for t in i * TOKENS_PER_TASK..((i + 1) * TOKENS_PER_TASK).min(n_tokens) {
            // SAFETY: token t's ranges of every buffer belong to this task alone.
            let (q8, qs, d, s, corr, c8) = unsafe {
                (
                    q8.slice(t * xrb, xrb),
                    qs.slice(t * qs_stride, qs_stride),
                    d.slice(t * nb, nb),
                    s.slice(t * nb, nb),
                    corr.slice(t * nb * CORR, nb * CORR),
                    c8.slice(t * nb, nb),
                )
            };
            if let Err(e) = quant::quantize_row_fast(vdt, &x[t * n_cols..(t + 1) * n_cols], q8) {
                first_error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                return;
            }
            if vdt == GgmlType::Q8_K {
                #[cfg(target_arch = "x86_64")]
                if expand_k {
                    kq::expand(q8, qs);
                }
            } else {
                split_blocks(vdt, q8, qs, d, s, corr, c8);
            }
        }
    };
    if n_tasks == 1 || pool.n_threads() == 1 {
        (0..n_tasks).for_each(task);
    } else {
        pool.run(n_tasks, &task);
    }
    match first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn split_blocks(vdt: GgmlType, q8: &[u8], qs: &mut [u8], d: &mut [f32], s: &mut [f32], corr: &mut [i32], c8: &mut [i32]) {
    use crate::quant::blocks::f16_le;
    let out = qs.chunks_exact_mut(QK).zip(d.iter_mut()).zip(s.iter_mut()).zip(corr.chunks_exact_mut(CORR)).zip(c8.iter_mut());
    match vdt {
        GgmlType::Q8_1 => {
            let blocks: &[BlockQ8_1] = as_blocks(q8).expect("whole blocks");
            for (b, ((((q, d), s), c), c8)) in blocks.iter().zip(out) {
                for (o, &v) in q.iter_mut().zip(&b.qs) {
                    *o = v as u8;
                }
                *d = f16_le(b.d);
                *s = f16_le(b.s);
                c.iter_mut().for_each(|c| *c = 0);
                *c8 = 0;
            }
        }
        _ => {
            let blocks: &[BlockQ8_0] = as_blocks(q8).expect("whole blocks");
            for (b, ((((q, d), s), c), c8)) in blocks.iter().zip(out) {
                for (o, &v) in q.iter_mut().zip(&b.qs) {
                    *o = v as u8;
                }
                *d = f16_le(b.d);
                *s = 0.0;
                let mut total = 0;
                for l in 0..8 {
                    let sum = b.qs[4 * l..4 * l + 4].iter().map(|&v| v as i32).sum::<i32>();
                    c[l] = -128 * sum;
                    c[8 + l] = -16 * sum;
                    total += sum;
                }
                *c8 = -8 * total;
            }
        }
    }
}

/// `out[t * n_rows + r] = dot(row r, x[t])` for `t in 0..n_tokens`, bit-for-bit what
/// [`crate::matmul::matmul`] computes on the unpacked matrix.
///
/// Errors: [`Error::Shape`] if `x` is not `n_tokens * n_cols` values or `out` not
/// `n_tokens * n_rows`.
pub fn matmul_packed(pool: &ThreadPool, w: &PackedMatrix, x: &[f32], n_tokens: usize, out: &mut [f32], scratch: &mut MatmulScratch) -> Result<()> {
    matmul_packed_many(pool, &mut [(w, out)], x, n_tokens, scratch)
}

/// Several matrices applied to the same activations (q, k and v; gate and up): the activations
/// are quantized once and all the matrices' row groups share one parallel run, so the threads
/// meet once instead of once per matrix. Each `(w, out)` gets `out = x w^T` as in
/// [`matmul_packed`]; all matrices must have the same `n_cols` and types that share the
/// activations ([`same_activations`]: q5_0 beside q8_0 is fine, q4_1 beside q8_0 is not).
pub fn matmul_packed_many(pool: &ThreadPool, jobs: &mut [(&PackedMatrix, &mut [f32])], x: &[f32], n_tokens: usize, scratch: &mut MatmulScratch) -> Result<()> {
    if jobs.len() > MAX_JOBS {
        return Err(Error::Shape(format!("matmul_packed_many: {} matrices, at most {MAX_JOBS}", jobs.len())));
    }
    let mut mats: [Option<&PackedMatrix>; MAX_JOBS] = [None; MAX_JOBS];
    let mut outs: [Option<&mut [f32]>; MAX_JOBS] = Default::default();
    for ((m, o), (w, out)) in mats.iter_mut().zip(outs.iter_mut()).zip(jobs.iter_mut()) {
        *m = Some(*w);
        *o = Some(&mut **out);
    }
    run_many(pool, mats, outs, x, n_tokens, scratch)
}

/// Whether packed matrices of types `a` and `b` read the same prepared activations (the same
/// `vec_dot_type`: q4_0, q5_0 and q8_0 all pair with q8_0), so one call can run them together.
pub fn same_activations(a: GgmlType, b: GgmlType) -> bool {
    a == b || matches!((quant::vec_dot_type(a), quant::vec_dot_type(b)), (Ok(x), Ok(y)) if x == y)
}

/// Most matrices one [`matmul_packed_many`] call takes (kept in fixed arrays: no allocation).
pub const MAX_JOBS: usize = 8;

/// The body of [`matmul_packed_many`]: the leading `Some` entries are the jobs.
pub(crate) fn run_many(
    pool: &ThreadPool,
    mats: [Option<&PackedMatrix>; MAX_JOBS],
    mut outs: [Option<&mut [f32]>; MAX_JOBS],
    x: &[f32],
    n_tokens: usize,
    scratch: &mut MatmulScratch,
) -> Result<()> {
    let n_jobs = mats.iter().take_while(|m| m.is_some()).count();
    let Some(first) = mats[0] else { return Ok(()) };
    let (ty, n_cols) = (first.ty, first.n_cols);
    for (w, out) in mats.iter().zip(outs.iter()).take(n_jobs) {
        let (Some(w), Some(out)) = (w, out) else { return Err(Error::Shape("matmul_packed_many: a matrix without its output".into())) };
        if !same_activations(w.ty, ty) || w.n_cols != n_cols {
            return Err(Error::Shape(format!("matmul_packed_many: {w:?} next to a {} x {} matrix", n_cols, ty.name())));
        }
        if out.len() != n_tokens * w.n_rows {
            return Err(Error::Shape(format!("matmul_packed: out has {} values, expected {n_tokens} tokens x {}", out.len(), w.n_rows)));
        }
    }
    if x.len() != n_tokens * n_cols {
        return Err(Error::Shape(format!("matmul_packed: x has {} values, expected {n_tokens} tokens x {n_cols}", x.len())));
    }
    if n_tokens == 0 {
        return Ok(());
    }
    // Prompts on K-quants and iq4_xs take 16-row tiles (AMX, else `tiles16` on AVX-512 VNNI):
    // the unit of work is a 16-row tile, else a 4-row group.
    #[cfg(target_arch = "x86_64")]
    let tiles = n_tokens >= amx::MIN_TOKENS && mats.iter().flatten().all(|w| amx::handles(w.ty));
    #[cfg(target_arch = "x86_64")]
    let (use_amx, use_t16) = (tiles && amx::enabled(), tiles && tiles16::enabled());
    // q4_0 prompts take their own 16-token tiles (AVX-512 VNNI, with or without AMX) for the
    // first `q4_tiled` tokens, the 4-row kernels for the rest.
    #[cfg(target_arch = "x86_64")]
    let q4_tiled = if tiles_q4_0::enabled() && mats.iter().flatten().all(|w| tiles_q4_0::handles(w.ty)) { tiles_q4_0::tiled_tokens(n_tokens) } else { 0 };
    #[cfg(not(target_arch = "x86_64"))]
    let (use_amx, use_t16, q4_tiled) = (false, false, 0);
    let use_q4 = q4_tiled > 0;
    let use_tiles = use_amx || use_t16;
    let sc = &mut scratch.packed;
    // The tiles read the q8_K rows themselves: no expanded copy for them.
    prepare_activations(pool, ty, x, n_tokens, n_cols, !use_tiles, sc)?;
    #[cfg(target_arch = "x86_64")]
    if use_q4 {
        let nb = n_cols / QK;
        sc.q4_tiles.prepare(&sc.qs, &sc.d, q4_tiled, nb);
    }
    let nb = n_cols / QK;
    // K-quants read each token's expanded q8_K row; the others the split blocks.
    let k = is_k(ty);
    let kst = n_cols / QK_K * KQ_Y_BYTES;
    let acts = |t: usize| if k {
        ActRow { qs: &sc.qs[t * kst..(t + 1) * kst], d: &[], s: &[], corr: &[], c8: &[] }
    } else {
        ActRow {
            qs: &sc.qs[t * nb * QK..(t + 1) * nb * QK],
            d: &sc.d[t * nb..(t + 1) * nb],
            s: &sc.s[t * nb..(t + 1) * nb],
            corr: &sc.corr[t * nb * CORR..(t + 1) * nb * CORR],
            c8: &sc.c8[t * nb..(t + 1) * nb],
        }
    };

    // Split every matrix's row groups into chunks (never straddling two matrices); one pool
    // run claims them all.
    #[cfg(target_arch = "x86_64")]
    if use_tiles {
        sc.amx.prepare(pool, &sc.q8, quant::row_bytes(GgmlType::Q8_K, n_cols)?, n_tokens, n_cols / QK_K);
    }
    let any_tiles = use_tiles || use_q4;
    let groups = |w: &PackedMatrix| if any_tiles { w.n_rows.div_ceil(16) } else { w.n_rows.div_ceil(ROWS) };
    let total_groups: usize = mats.iter().flatten().map(|w| groups(w)).sum();
    let work = n_tokens * total_groups * if any_tiles { 16 } else { ROWS } * n_cols;
    let max_tasks = (work / MIN_WORK_PER_TASK).max(1);
    let n_chunks = (pool.n_threads() * CHUNKS_PER_THREAD).min(max_tasks).min(total_groups).max(1);
    let groups_per_chunk = total_groups.div_ceil(n_chunks);
    let mut chunk_starts = [0usize; MAX_JOBS];
    let mut n_total_chunks = 0;
    for (start, w) in chunk_starts.iter_mut().zip(mats.iter().flatten()) {
        *start = n_total_chunks;
        n_total_chunks += groups(w).div_ceil(groups_per_chunk);
    }
    let mut disjoint: [Option<DisjointMut<'_, f32>>; MAX_JOBS] = Default::default();
    for (d, o) in disjoint.iter_mut().zip(outs.iter_mut()) {
        *d = o.take().map(DisjointMut::new);
    }
    let run_chunk = |c: usize| {
        let j = (0..n_jobs).rev().find(|&j| chunk_starts[j] <= c).expect("chunk 0 belongs to job 0");
        let w = mats[j].expect("job exists");
        let out = disjoint[j].as_ref().expect("job exists");
        let g0 = (c - chunk_starts[j]) * groups_per_chunk;
        let g1 = (g0 + groups_per_chunk).min(groups(w));
        #[cfg(target_arch = "x86_64")]
        if use_amx {
            // SAFETY: AMX is enabled; the activations were prepared above for these tokens;
            // chunks own disjoint row tiles.
            unsafe { amx::run_tiles(w, g0..g1, &sc.amx, n_tokens, out) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if use_q4 {
            // SAFETY: AVX-512 VNNI is available (`tiles_q4_0::enabled`); the tiles' activations
            // were prepared above for the first `q4_tiled` tokens; chunks own disjoint row tiles.
            unsafe { tiles_q4_0::run_tiles(w, g0..g1, &sc.q4_tiles, q4_tiled, out) };
            if q4_tiled < n_tokens {
                // The same rows, in 4-row groups, for the tokens past the tiles.
                let n_groups = w.n_rows.div_ceil(ROWS);
                run_groups(w, (g0 * 4).min(n_groups)..(g1 * 4).min(n_groups), q4_tiled..n_tokens, &acts, out);
            }
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if use_t16 {
            // SAFETY: AVX-512 VNNI is available (`tiles16::enabled`); as above otherwise.
            unsafe { tiles16::run_tiles(w, g0..g1, &sc.amx, n_tokens, out) };
            return;
        }
        run_groups(w, g0..g1, 0..n_tokens, &acts, out);
    };
    if n_total_chunks == 1 || pool.n_threads() == 1 {
        (0..n_total_chunks).for_each(run_chunk);
    } else {
        pool.run(n_total_chunks, &run_chunk);
    }
    Ok(())
}

/// Row groups `groups` of `w` for every token. Tokens go in tiles of [`TOKEN_TILE`] whose
/// activations stay in L1/L2, and within a tile [`GROUP_BATCH`] groups at a time so their
/// weights are reused from L1 by every 4-token kernel call of the tile.
fn run_groups<'a>(w: &PackedMatrix, groups: Range<usize>, tokens: Range<usize>, acts: &(dyn Fn(usize) -> ActRow<'a> + Sync), out: &DisjointMut<'_, f32>) {
    let n_tokens = tokens.end;
    let nb = w.n_cols / block_elems(w.ty);
    let (qsb, dmb) = group_block_bytes(w.ty).expect("packed type");
    let (qs, dm) = (w.qs.as_slice(), w.dm.as_slice());
    assert!(groups.end * nb * qsb <= qs.len() && groups.end * nb * dmb <= dm.len(), "row groups {groups:?} of {w:?}");
    // Only the last group of a matrix can have fewer than 4 real rows.
    let n_full = w.n_rows / ROWS;
    let full = groups.start.min(n_full)..groups.end.min(n_full);
    let partial = (groups.end > n_full && !w.n_rows.is_multiple_of(ROWS)).then_some(n_full);
    let batch = if tokens.len() <= TOKENS { full.len().max(1) } else { GROUP_BATCH };
    for t0 in tokens.step_by(TOKEN_TILE) {
        let t1 = (t0 + TOKEN_TILE).min(n_tokens);
        let tile: [ActRow<'a>; TOKEN_TILE] = std::array::from_fn(|i| acts((t0 + i).min(t1 - 1)));
        for a in &tile {
            if is_k(w.ty) {
                assert!(a.qs.len() >= nb * KQ_Y_BYTES, "activation row too short");
            } else {
                assert!(a.qs.len() >= nb * QK && a.d.len() >= nb && a.s.len() >= nb && a.corr.len() >= nb * CORR && a.c8.len() >= nb, "activation row too short");
            }
        }
        let mut g0 = full.start;
        while g0 < full.end {
            let g1 = (g0 + batch).min(full.end);
            let mut t = t0;
            while t < t1 {
                let n = (t1 - t).min(TOKENS);
                let outs: [*mut f32; TOKENS] = std::array::from_fn(|i| {
                    if i >= n {
                        return std::ptr::null_mut(); // not passed to the kernel
                    }
                    // SAFETY: this chunk alone owns row groups g0..g1 (rows 4*g0..4*g1) for every
                    // token; nothing reads `out` until the run returns.
                    unsafe { out.slice((t + i) * w.n_rows + g0 * ROWS, (g1 - g0) * ROWS) }.as_mut_ptr()
                });
                // SAFETY: features by `packs()` (a precondition of every PackedMatrix);
                // the weight range was checked above, the activations per tile, and each
                // output pointer covers (g1 - g0) * 4 floats this chunk owns.
                unsafe { run_kernel(w.ty, qs.as_ptr().add(g0 * nb * qsb), dm.as_ptr().add(g0 * nb * dmb), nb, g1 - g0, &tile[t - t0..], n, outs) };
                t += n;
            }
            g0 = g1;
        }
        if let Some(g) = partial {
            let rows = w.n_rows - g * ROWS;
            for t in t0..t1 {
                let mut res = [0f32; ROWS];
                // SAFETY: as above, into a local buffer of one group.
                unsafe { run_kernel(w.ty, qs.as_ptr().add(g * nb * qsb), dm.as_ptr().add(g * nb * dmb), nb, 1, &tile[t - t0..], 1, [res.as_mut_ptr(); TOKENS]) };
                // SAFETY: this chunk owns the partial group's rows for every token.
                unsafe { out.slice(t * w.n_rows + g * ROWS, rows) }.copy_from_slice(&res[..rows]);
            }
        }
    }
}

/// Calls the type's kernel for `n` (1..=4) tokens (`a[..n]`, `outs[..n]`).
///
/// # Safety
/// As the kernels' `groups` functions.
#[allow(unused_variables, clippy::too_many_arguments)]
unsafe fn run_kernel(ty: GgmlType, wq: *const u8, wd: *const u8, nb: usize, n_groups: usize, a: &[ActRow], n: usize, outs: [*mut f32; TOKENS]) {
    // `packs(ty)` held at packing: AVX-512 VNNI, or AVX2 for the K-quants.
    #[cfg(target_arch = "x86_64")]
    let k_avx2 = k_on_avx2();
    macro_rules! call {
        ($m:ident) => {
            match n {
                1 => $m::groups::<1>(wq, wd, nb, n_groups, &[a[0]], [outs[0]]),
                2 => $m::groups::<2>(wq, wd, nb, n_groups, &[a[0], a[1]], [outs[0], outs[1]]),
                3 => $m::groups::<3>(wq, wd, nb, n_groups, &[a[0], a[1], a[2]], [outs[0], outs[1], outs[2]]),
                _ => $m::groups::<4>(wq, wd, nb, n_groups, &[a[0], a[1], a[2], a[3]], outs),
            }
        };
    }
    // The K-quant layouts share `kq::groups`.
    macro_rules! call_k {
        ($l:ty) => {
            match (k_avx2, n) {
                (false, 1) => kq::groups::<$l, 1>(wq, wd, nb, n_groups, &[a[0]], [outs[0]]),
                (false, 2) => kq::groups::<$l, 2>(wq, wd, nb, n_groups, &[a[0], a[1]], [outs[0], outs[1]]),
                (false, 3) => kq::groups::<$l, 3>(wq, wd, nb, n_groups, &[a[0], a[1], a[2]], [outs[0], outs[1], outs[2]]),
                (false, _) => kq::groups::<$l, 4>(wq, wd, nb, n_groups, &[a[0], a[1], a[2], a[3]], outs),
                (true, 1) => kq::groups_avx2::<$l, 1>(wq, wd, nb, n_groups, &[a[0]], [outs[0]]),
                (true, 2) => kq::groups_avx2::<$l, 2>(wq, wd, nb, n_groups, &[a[0], a[1]], [outs[0], outs[1]]),
                (true, 3) => kq::groups_avx2::<$l, 3>(wq, wd, nb, n_groups, &[a[0], a[1], a[2]], [outs[0], outs[1], outs[2]]),
                (true, _) => kq::groups_avx2::<$l, 4>(wq, wd, nb, n_groups, &[a[0], a[1], a[2], a[3]], outs),
            }
        };
    }
    match ty {
        #[cfg(target_arch = "x86_64")]
        GgmlType::Q4_1 => call!(q4_1),
        #[cfg(target_arch = "x86_64")]
        GgmlType::Q8_0 => call!(q8_0),
        #[cfg(target_arch = "x86_64")]
        GgmlType::MXFP4 => call!(mxfp4),
        #[cfg(target_arch = "x86_64")]
        GgmlType::Q4_K => call_k!(q4_k::Q4K),
        #[cfg(target_arch = "x86_64")]
        GgmlType::Q5_K => call_k!(q5_k::Q5K),
        #[cfg(target_arch = "x86_64")]
        GgmlType::Q6_K => call_k!(q6_k::Q6K),
        #[cfg(target_arch = "x86_64")]
        GgmlType::Q3_K => call_k!(k16::Q3K),
        #[cfg(target_arch = "x86_64")]
        GgmlType::Q2_K => call_k!(k16::Q2K),
        #[cfg(target_arch = "x86_64")]
        GgmlType::IQ4_XS => call_k!(iq4_xs::IQ4XS),
        #[cfg(target_arch = "x86_64")]
        GgmlType::Q5_0 => call!(q5_0),
        #[cfg(target_arch = "x86_64")]
        GgmlType::Q4_0 => call!(q4_0),
        _ => unreachable!("only packed types reach run_kernel (x86_64 only)"),
    }
}

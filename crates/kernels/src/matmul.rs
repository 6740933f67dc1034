//! Quantized matrix times activations: `out = x W^T`, the workhorse of every projection.
//!
//! Following ggml's `mul_mat`, each activation row is quantized once per call to the weight
//! type's `vec_dot_type` (q8_0 / q8_1 / q8_K, or kept f32), into a reusable scratch; then output
//! rows are split into chunks claimed dynamically by the [`ThreadPool`]. A chunk computes its rows
//! for every token, tokens innermost in small tiles, so each weight row (the large operand,
//! streamed from the mmap) is read from memory once per call and reused from cache per token:
//!
//! ```text
//!            n_cols                         n_rows
//!        +-----------+                 +--------------+
//!  x     | token 0   |   W (n_rows x   | out[t][r] =  |
//! (n_tok | token 1   |   n_cols, one   | dot(W[r],    |
//!  rows) | ...       |   row/feature)  |     x[t])    |
//!        +-----------+                 +--------------+
//!                         chunk c = rows r0..r1, all tokens
//! ```
//!
//! Cost: `n_tokens * n_rows` dot products of length `n_cols`; no allocation once the scratch
//! has grown to the largest `n_tokens` seen.
//!
//! ```
//! use gguf::GgmlType;
//! use kernels::matmul::{matmul, MatmulScratch, QMatrix};
//! use kernels::pool::ThreadPool;
//! // W = [[1, 2], [3, 4], [5, 6]] (3 outputs, 2 inputs), stored as f32 bytes.
//! let w: Vec<u8> = [1f32, 2., 3., 4., 5., 6.].iter().flat_map(|v| v.to_le_bytes()).collect();
//! let w = QMatrix::new(GgmlType::F32, &w, 3, 2)?;
//! let mut out = [0f32; 3];
//! matmul(&ThreadPool::new(2), &w, &[1.0, -1.0], 1, &mut out, &mut MatmulScratch::default())?;
//! assert_eq!(out, [-1.0, -1.0, -1.0]);
//! # Ok::<(), kernels::Error>(())
//! ```

use std::sync::Mutex;

use gguf::{GgmlType, GgufFile, TensorInfo};

use crate::disjoint::DisjointMut;
use crate::packed::{matmul_packed, PackedMatrix};
use crate::pool::ThreadPool;
use crate::quant;
use crate::{Error, Result};

/// A weight matrix in its GGUF encoding: `n_rows` rows (output features) of `n_cols` elements
/// (input features), each row `quant::row_bytes(ty, n_cols)` bytes, rows contiguous.
#[derive(Clone, Copy, Debug)]
pub struct QMatrix<'a> {
    pub ty: GgmlType,
    /// (n_rows, row_bytes(ty, n_cols))
    pub data: &'a [u8],
    /// Output features.
    pub n_rows: usize,
    /// Input features (the contiguous dimension, GGUF `dims[0]`).
    pub n_cols: usize,
    /// The same matrix repacked at load ([`PackedMatrix::pack`]); [`matmul`] then runs the
    /// packed kernels, which give bit-for-bit the same results faster.
    pub packed: Option<&'a PackedMatrix>,
}

impl<'a> QMatrix<'a> {
    /// Checks that `data` holds exactly `n_rows` rows of `n_cols` elements of `ty`.
    pub fn new(ty: GgmlType, data: &'a [u8], n_rows: usize, n_cols: usize) -> Result<Self> {
        let m = QMatrix { ty, data, n_rows, n_cols, packed: None };
        m.check()?;
        Ok(m)
    }

    /// Attaches the packed form of this same matrix (checked to have its type and shape).
    pub fn with_packed(mut self, p: &'a PackedMatrix) -> Result<Self> {
        if (p.ty(), p.n_rows(), p.n_cols()) != (self.ty, self.n_rows, self.n_cols) {
            return Err(Error::Shape(format!("{p:?} attached to a {} x {} {} matrix", self.n_rows, self.n_cols, self.ty.name())));
        }
        self.packed = Some(p);
        Ok(self)
    }

    /// A 2-D (or higher, flattened to rows) tensor of a GGUF file: `dims[0]` is `n_cols`, the
    /// product of the other dims is `n_rows`.
    pub fn from_tensor(file: &'a GgufFile, info: &TensorInfo) -> Result<Self> {
        Self::new(info.ggml_type, file.tensor_data(info), info.n_rows(), info.row_len())
            .map_err(|e| Error::Shape(format!("tensor {}: {e}", info.name)))
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> Result<usize> {
        quant::row_bytes(self.ty, self.n_cols)
    }

    /// Row `r` in its encoding.
    pub fn row(&self, r: usize) -> Result<&'a [u8]> {
        let rb = self.row_bytes()?;
        if r >= self.n_rows {
            return Err(Error::Shape(format!("row {r} of a {}-row matrix", self.n_rows)));
        }
        Ok(&self.data[r * rb..(r + 1) * rb])
    }

    /// Dequantizes row `r` into `out` (`n_cols` values), e.g. for a token-embedding lookup.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) -> Result<()> {
        if out.len() != self.n_cols {
            return Err(Error::Shape(format!("dequantize_row: out has {} values, the matrix {} columns", out.len(), self.n_cols)));
        }
        quant::dequantize_row(self.ty, self.row(r)?, out)
    }

    fn check(&self) -> Result<usize> {
        let rb = self.row_bytes()?;
        let need = rb.checked_mul(self.n_rows).ok_or_else(|| Error::Shape("matrix size overflows".into()))?;
        if self.data.len() != need {
            return Err(Error::Shape(format!(
                "{} x {} {} matrix needs {need} bytes, got {}",
                self.n_rows,
                self.n_cols,
                self.ty.name(),
                self.data.len()
            )));
        }
        Ok(rb)
    }
}

/// Buffers reused across [`matmul`] calls: the activations quantized to `vec_dot_type`.
/// Grows to the largest call seen and never shrinks; one per thread of control (the engine
/// thread), not shared.
#[derive(Default)]
pub struct MatmulScratch {
    xq: Vec<u8>,
    pub(crate) packed: crate::packed::PackedScratch,
}

impl MatmulScratch {
    /// Pre-grows the buffer for `n_tokens` rows of `n_cols` activations quantized for
    /// `weight_ty`, so the first forward pass does not allocate either.
    pub fn reserve(&mut self, weight_ty: GgmlType, n_cols: usize, n_tokens: usize) -> Result<()> {
        let vdt = quant::kernel(weight_ty)?.vec_dot_type;
        let need = quant::row_bytes(vdt, n_cols)? * n_tokens;
        if self.xq.len() < need {
            self.xq.resize(need, 0);
        }
        Ok(())
    }
}

/// Tokens per inner tile: their quantized rows (a few KiB each) stay in L1/L2 while a chunk
/// sweeps its weight rows.
const TOKEN_TILE: usize = 16;
/// Tokens per `vec_dot_multi` call.
const MULTI_TOKENS: usize = 4;
/// Minimum multiply-adds per task; smaller work is not worth waking threads for.
const MIN_WORK_PER_TASK: usize = 1 << 15;
/// Chunks per thread: more than one so that a thread slowed by another process (or a slower
/// core) does not hold up the others; dynamic claiming balances the rest.
const CHUNKS_PER_THREAD: usize = 4;

/// `out[t * n_rows + r] = dot(w.row(r), x[t * n_cols..][..n_cols])` for `t in 0..n_tokens`.
///
/// Errors: [`Error::Shape`] if `x` is not `n_tokens * w.n_cols` values, `out` not
/// `n_tokens * w.n_rows`, or `w.data` not the matrix's size; [`Error::UnsupportedType`] for a
/// weight type without a dot product.
pub fn matmul(
    pool: &ThreadPool,
    w: &QMatrix,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
    scratch: &mut MatmulScratch,
) -> Result<()> {
    let (n_rows, n_cols) = (w.n_rows, w.n_cols);
    let w_row_bytes = w.check()?;
    if x.len() != n_tokens * n_cols {
        return Err(Error::Shape(format!("matmul: x has {} values, expected {n_tokens} tokens x {n_cols}", x.len())));
    }
    if out.len() != n_tokens * n_rows {
        return Err(Error::Shape(format!("matmul: out has {} values, expected {n_tokens} tokens x {n_rows}", out.len())));
    }
    if n_tokens == 0 || n_rows == 0 {
        return Ok(());
    }
    if let Some(p) = w.packed {
        return matmul_packed(pool, p, x, n_tokens, out, scratch);
    }
    #[cfg(target_arch = "x86_64")]
    if crate::fp_matmul::handles(w.ty) {
        crate::fp_matmul::matmul(pool, w, x, n_tokens, out);
        return Ok(());
    }
    let kernel = quant::kernel(w.ty)?;
    let vdt = kernel.vec_dot_type;
    let x_row_bytes = quant::row_bytes(vdt, n_cols)?;

    let xq: &[u8] = if vdt == GgmlType::F32 {
        f32_bytes(x)
    } else {
        quantize_activations(pool, vdt, x, n_tokens, n_cols, x_row_bytes, scratch)?
    };

    let rows_per_chunk = rows_per_chunk(pool, n_tokens, n_rows, n_cols, 1);
    let n_chunks = n_rows.div_ceil(rows_per_chunk);

    let vec_dot = kernel.vec_dot;
    let out = DisjointMut::new(out);
    pool.run(n_chunks, &|c| {
        let r0 = c * rows_per_chunk;
        let r1 = (r0 + rows_per_chunk).min(n_rows);
        for t0 in (0..n_tokens).step_by(TOKEN_TILE) {
            let t1 = (t0 + TOKEN_TILE).min(n_tokens);
            for r in r0..r1 {
                let wrow = &w.data[r * w_row_bytes..(r + 1) * w_row_bytes];
                if let (Some(multi), true) = (kernel.vec_dot_multi, t1 - t0 > 1) {
                    // Up to 4 tokens per call: the row is unpacked once for all of them (each
                    // result is bit-for-bit `vec_dot`'s).
                    let mut t = t0;
                    while t < t1 {
                        let m = (t1 - t).min(MULTI_TOKENS);
                        let xs: [&[u8]; MULTI_TOKENS] = std::array::from_fn(|i| {
                            let ti = t + i.min(m - 1);
                            &xq[ti * x_row_bytes..(ti + 1) * x_row_bytes]
                        });
                        let mut res = [0f32; MULTI_TOKENS];
                        multi(n_cols, wrow, &xs[..m], &mut res[..m]);
                        for (i, &v) in res[..m].iter().enumerate() {
                            // SAFETY: as below, index (t + i, r) belongs to this chunk alone.
                            unsafe { out.write((t + i) * n_rows + r, v) };
                        }
                        t += m;
                    }
                    continue;
                }
                for t in t0..t1 {
                    let xrow = &xq[t * x_row_bytes..(t + 1) * x_row_bytes];
                    let v = vec_dot(n_cols, wrow, xrow);
                    // SAFETY: chunk `c` alone owns rows r0..r1, so index (t, r) is written by
                    // exactly one task, once; nothing reads `out` until `run` returns.
                    unsafe { out.write(t * n_rows + r, v) };
                }
            }
        }
    });
    Ok(())
}

/// Output rows per pool task for `n_tokens` tokens through `n_rows x n_cols` weights: about
/// [`CHUNKS_PER_THREAD`] tasks per thread, none under [`MIN_WORK_PER_TASK`] multiply-adds (and
/// never more tasks than rows), rounded up to a multiple of `multiple` (a kernel's row group).
pub(crate) fn rows_per_chunk(pool: &ThreadPool, n_tokens: usize, n_rows: usize, n_cols: usize, multiple: usize) -> usize {
    let max_tasks = (n_tokens * n_rows * n_cols / MIN_WORK_PER_TASK).max(1);
    let n_chunks = (pool.n_threads() * CHUNKS_PER_THREAD).min(max_tasks).min(n_rows).max(1);
    n_rows.div_ceil(n_chunks).next_multiple_of(multiple)
}

/// Several matrices applied to the same activations (q, k and v; gate and up): each
/// `(w, out)` gets `out = x w^T` exactly as [`matmul`] computes it. When all of them are packed
/// with types sharing one activation format (e.g. q5_0 q and k beside a q8_0 v) the activations are quantized once and a single parallel run covers all their
/// rows (the threads meet once, not once per matrix); otherwise they run one by one.
pub fn matmul_many(pool: &ThreadPool, jobs: &mut [(&QMatrix, &mut [f32])], x: &[f32], n_tokens: usize, scratch: &mut MatmulScratch) -> Result<()> {
    const MAX: usize = 8;
    let same_packed = jobs.len() <= MAX
        && jobs.iter().all(|(w, _)| {
            w.packed.is_some_and(|p| crate::packed::same_activations(p.ty(), jobs[0].0.ty) && p.n_cols() == jobs[0].0.n_cols)
        });
    if !same_packed || jobs.len() < 2 {
        for (w, out) in jobs.iter_mut() {
            matmul(pool, w, x, n_tokens, out, scratch)?;
        }
        return Ok(());
    }
    let mut mats: [Option<&PackedMatrix>; MAX] = [None; MAX];
    let mut outs: [Option<&mut [f32]>; MAX] = Default::default();
    for ((m, o), (w, out)) in mats.iter_mut().zip(outs.iter_mut()).zip(jobs.iter_mut()) {
        w.check()?;
        *m = w.packed;
        *o = Some(&mut **out);
    }
    crate::packed::run_many(pool, mats, outs, x, n_tokens, scratch)
}

/// The bytes of an f32 slice (what an f32 `vec_dot` reads: native little-endian f32s).
fn f32_bytes(x: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding and every byte is initialized; u8 has alignment 1; the length
    // is the same memory's size in bytes and the lifetime is that of `x`.
    unsafe { std::slice::from_raw_parts(x.as_ptr().cast::<u8>(), std::mem::size_of_val(x)) }
}

/// Quantizes every token's row of `x` into the scratch, in parallel for prompt-sized batches.
fn quantize_activations<'s>(
    pool: &ThreadPool,
    vdt: GgmlType,
    x: &[f32],
    n_tokens: usize,
    n_cols: usize,
    x_row_bytes: usize,
    scratch: &'s mut MatmulScratch,
) -> Result<&'s [u8]> {
    let need = n_tokens * x_row_bytes;
    if scratch.xq.len() < need {
        scratch.xq.resize(need, 0);
    }
    let buf = &mut scratch.xq[..need];
    const TOKENS_PER_TASK: usize = 8;
    if n_tokens < 2 * TOKENS_PER_TASK || pool.n_threads() == 1 {
        for (src, dst) in x.chunks_exact(n_cols).zip(buf.chunks_exact_mut(x_row_bytes)) {
            quant::quantize_row_fast(vdt, src, dst)?;
        }
    } else {
        let first_error: Mutex<Option<Error>> = Mutex::new(None);
        let n_tasks = n_tokens.div_ceil(TOKENS_PER_TASK);
        let shared = DisjointMut::new(&mut *buf);
        pool.run(n_tasks, &|i| {
            let t0 = i * TOKENS_PER_TASK;
            let t1 = (t0 + TOKENS_PER_TASK).min(n_tokens);
            // SAFETY: task i alone owns tokens t0..t1, i.e. this byte range.
            let dst = unsafe { shared.slice(t0 * x_row_bytes, (t1 - t0) * x_row_bytes) };
            let src = &x[t0 * n_cols..t1 * n_cols];
            for (s, d) in src.chunks_exact(n_cols).zip(dst.chunks_exact_mut(x_row_bytes)) {
                if let Err(e) = quant::quantize_row_fast(vdt, s, d) {
                    let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
                    slot.get_or_insert(e);
                    return;
                }
            }
        });
        if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
    }
    Ok(&scratch.xq[..need])
}

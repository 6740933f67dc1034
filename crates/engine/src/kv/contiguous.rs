//! A contiguous KV cache for one or a few conversations (the CLI, benchmarks, tests).
//!
//! `KvCache` holds, per sequence slot, per layer, one contiguous run of positions:
//!
//! ```text
//!   k[slot][layer][pos][kv_dim]   (f16)      v likewise
//! ```
//!
//! Memory is reserved with zeroed pages (the OS commits them only when a position is first
//! written), so a long context costs only what is used.

use half::f16;
use kernels::attention::KvChunk;

use super::KvStore;

/// A contiguous f16 KV cache for `n_seq` sequences of up to `n_ctx` positions each.
pub struct KvCache {
    n_layer: usize,
    n_ctx: usize,
    kv_dim: usize,
    n_seq: usize,
    k: Vec<f16>,
    v: Vec<f16>,
    /// Positions filled per sequence.
    len: Vec<usize>,
}

fn zeroed_f16(n: usize) -> Vec<f16> {
    // `vec![0u16; n]` is allocated zeroed (calloc), so untouched pages stay uncommitted.
    let raw = vec![0u16; n];
    let mut raw = std::mem::ManuallyDrop::new(raw);
    let (ptr, len, cap) = (raw.as_mut_ptr(), raw.len(), raw.capacity());
    // SAFETY: f16 is `repr(transparent)` over u16 (same size and alignment), so the allocation
    // and every bit pattern are valid for it; ownership moves from `raw` (not dropped).
    unsafe { Vec::from_raw_parts(ptr.cast::<f16>(), len, cap) }
}

impl KvCache {
    pub fn new(n_layer: usize, n_ctx: usize, kv_dim: usize, n_seq: usize) -> Self {
        let n = n_seq * n_layer * n_ctx * kv_dim;
        KvCache { n_layer, n_ctx, kv_dim, n_seq, k: zeroed_f16(n), v: zeroed_f16(n), len: vec![0; n_seq] }
    }

    /// Positions currently held for `seq`.
    pub fn seq_len(&self, seq: usize) -> usize {
        self.len[seq]
    }
    /// Forgets positions `>= len` of `seq` (e.g. to restart or to rewind after a shared prefix).
    pub fn truncate(&mut self, seq: usize, len: usize) {
        self.len[seq] = self.len[seq].min(len);
    }
    /// Bytes of KV memory per position, all layers.
    pub fn bytes_per_token(&self) -> usize {
        2 * self.n_layer * self.kv_dim * std::mem::size_of::<f16>()
    }

    fn base(&self, seq: usize, il: usize) -> usize {
        ((seq * self.n_layer) + il) * self.n_ctx * self.kv_dim
    }

    fn write_row(&mut self, il: usize, seq: usize, pos: usize, k: &[f32], v: &[f32]) {
        let at = self.base(seq, il) + pos * self.kv_dim;
        for (d, s) in self.k[at..at + self.kv_dim].iter_mut().zip(k) {
            *d = f16::from_f32(*s);
        }
        for (d, s) in self.v[at..at + self.kv_dim].iter_mut().zip(v) {
            *d = f16::from_f32(*s);
        }
        if il + 1 == self.n_layer {
            self.len[seq] = self.len[seq].max(pos + 1);
        }
    }

    /// Positions `start..end` of `seq` at layer `il`, for attention.
    fn chunk(&self, il: usize, seq: usize, start: usize, end: usize) -> KvChunk<'_> {
        let b = self.base(seq, il);
        let (lo, hi) = (b + start * self.kv_dim, b + end * self.kv_dim);
        KvChunk { k: &self.k[lo..hi], v: &self.v[lo..hi], n_rows: end - start }
    }
}

impl KvStore for KvCache {
    fn n_ctx(&self) -> usize {
        self.n_ctx
    }
    fn n_seq(&self) -> usize {
        self.n_seq
    }
    fn write(&mut self, il: usize, seq: usize, pos: usize, k: &[f32], v: &[f32]) {
        self.write_row(il, seq, pos, k, v);
    }
    fn with_chunks(&self, il: usize, seq: usize, start: usize, end: usize, f: &mut dyn FnMut(&[KvChunk<'_>])) {
        f(&[self.chunk(il, seq, start, end)]);
    }
}

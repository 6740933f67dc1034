//! The paged K/V data: [`PagedBuffers`] holds the physical blocks, and [`PagedKv`] (the buffers
//! plus the [`KvManager`]'s block tables) is the [`KvStore`] the model runs on.
//!
//! Layout, per layer, for K and for V (f16):
//!
//! ```text
//!   k[layer][block][block_size][kv_dim]
//! ```
//!
//! A sequence's position `p` lives in block `table[p / block_size]`, row `p % block_size`; the
//! attention kernel reads one [`KvChunk`] per block, in position order. Its online softmax walks
//! the rows one by one, so results do not depend on where the chunk boundaries fall: a paged
//! sequence computes exactly what it would in the contiguous cache.

use std::cell::RefCell;

use half::f16;

use super::manager::KvManager;
use crate::kv::{KvChunk, KvStore};

/// Physical K/V blocks for every layer.
pub struct PagedBuffers {
    n_layer: usize,
    kv_dim: usize,
    block_size: usize,
    n_blocks: usize,
    k: Vec<f16>,
    v: Vec<f16>,
}

/// A zeroed f16 buffer; `vec![0u16; n]` comes from the zeroing allocator (calloc), so pages are
/// committed by the OS only when first written and an oversized budget costs nothing until used.
fn zeroed_f16(n: usize) -> Vec<f16> {
    let raw = std::mem::ManuallyDrop::new(vec![0u16; n]);
    let mut raw = raw;
    let (ptr, len, cap) = (raw.as_mut_ptr(), raw.len(), raw.capacity());
    // SAFETY: f16 is `repr(transparent)` over u16 (same size and alignment), so the allocation
    // and every bit pattern are valid for it; ownership moves from `raw`, which is not dropped.
    unsafe { Vec::from_raw_parts(ptr.cast::<f16>(), len, cap) }
}

impl PagedBuffers {
    pub fn new(n_layer: usize, kv_dim: usize, block_size: usize, n_blocks: usize) -> Self {
        let n = n_layer * n_blocks * block_size * kv_dim;
        PagedBuffers { n_layer, kv_dim, block_size, n_blocks, k: zeroed_f16(n), v: zeroed_f16(n) }
    }

    /// Bytes of K plus V for one block across all layers.
    pub fn bytes_per_block(n_layer: usize, kv_dim: usize, block_size: usize) -> usize {
        2 * n_layer * block_size * kv_dim * std::mem::size_of::<f16>()
    }

    /// How many blocks fit in `bytes` (at least one).
    pub fn blocks_for_bytes(bytes: usize, n_layer: usize, kv_dim: usize, block_size: usize) -> usize {
        (bytes / Self::bytes_per_block(n_layer, kv_dim, block_size).max(1)).max(1)
    }

    pub fn n_blocks(&self) -> usize {
        self.n_blocks
    }
    pub fn block_size(&self) -> usize {
        self.block_size
    }
    pub fn n_layer(&self) -> usize {
        self.n_layer
    }
    pub fn kv_dim(&self) -> usize {
        self.kv_dim
    }
    pub fn bytes(&self) -> usize {
        (self.k.len() + self.v.len()) * std::mem::size_of::<f16>()
    }

    /// Offset of row `row` of block `block` at layer `il`.
    fn offset(&self, il: usize, block: usize, row: usize) -> usize {
        ((il * self.n_blocks + block) * self.block_size + row) * self.kv_dim
    }
}

/// The paged cache as the model sees it for one forward pass: `seq` is a [`KvManager`] slot.
pub struct PagedKv<'a> {
    pub buffers: &'a mut PagedBuffers,
    pub tables: &'a KvManager,
    /// Positions one sequence may use.
    pub n_ctx: usize,
}

thread_local! {
    /// Chunk lists are built here, one per thread, so `with_chunks` does not allocate once
    /// warm. Stored empty with the `'static` lifetime between calls (see `with_chunk_scratch`).
    static CHUNKS: RefCell<Vec<KvChunk<'static>>> = const { RefCell::new(Vec::new()) };
}

/// Lends the thread's chunk scratch, empty, with the caller's lifetime.
fn with_chunk_scratch<'a, R>(f: impl FnOnce(&mut Vec<KvChunk<'a>>) -> R) -> R {
    let mut stored = CHUNKS.with(|c| std::mem::take(&mut *c.borrow_mut()));
    stored.clear();
    let mut stored = std::mem::ManuallyDrop::new(stored);
    let (ptr, cap) = (stored.as_mut_ptr(), stored.capacity());
    // SAFETY: `KvChunk<'static>` and `KvChunk<'a>` differ only in lifetime (same layout), and
    // the vector is empty, so no reference of either lifetime is reinterpreted; ownership of
    // the allocation moves here from `stored`, which is not dropped.
    let mut local: Vec<KvChunk<'a>> = unsafe { Vec::from_raw_parts(ptr.cast(), 0, cap) };
    let r = f(&mut local);
    local.clear();
    let mut local = std::mem::ManuallyDrop::new(local);
    let (ptr, cap) = (local.as_mut_ptr(), local.capacity());
    // SAFETY: as above, in the other direction: the vector is empty again, so no `'a`
    // reference outlives this call.
    let back: Vec<KvChunk<'static>> = unsafe { Vec::from_raw_parts(ptr.cast(), 0, cap) };
    CHUNKS.with(|c| *c.borrow_mut() = back);
    r
}

impl KvStore for PagedKv<'_> {
    fn n_ctx(&self) -> usize {
        self.n_ctx
    }
    fn n_seq(&self) -> usize {
        self.tables.n_slots()
    }

    fn write(&mut self, il: usize, seq: usize, pos: usize, k: &[f32], v: &[f32]) {
        let b = &mut *self.buffers;
        let block = *self
            .tables
            .table(seq)
            .get(pos / b.block_size)
            .expect("invariant: the scheduler reserves blocks for every position it schedules");
        debug_assert_eq!(self.tables.pool().refcount(block), 1, "write into a shared block");
        let at = b.offset(il, block.index(), pos % b.block_size);
        let kv_dim = b.kv_dim;
        for (d, s) in b.k[at..at + kv_dim].iter_mut().zip(k) {
            *d = f16::from_f32(*s);
        }
        for (d, s) in b.v[at..at + kv_dim].iter_mut().zip(v) {
            *d = f16::from_f32(*s);
        }
    }

    fn with_chunks(&self, il: usize, seq: usize, start: usize, end: usize, f: &mut dyn FnMut(&[KvChunk<'_>])) {
        let b = &*self.buffers;
        let bs = b.block_size;
        let table = self.tables.table(seq);
        assert!(end <= table.len() * bs, "reading positions {start}..{end} of slot {seq} beyond its {} blocks", table.len());
        with_chunk_scratch(|chunks| {
            let mut pos = start;
            while pos < end {
                let (bi, row) = (pos / bs, pos % bs);
                let n_rows = (bs - row).min(end - pos);
                let lo = b.offset(il, table[bi].index(), row);
                let hi = lo + n_rows * b.kv_dim;
                chunks.push(KvChunk { k: &b.k[lo..hi], v: &b.v[lo..hi], n_rows });
                pos += n_rows;
            }
            f(chunks);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_land_in_their_blocks_and_come_back_in_order() {
        let (n_layer, kv_dim, bs) = (2, 3, 4);
        let mut m = KvManager::new(6, bs, 2);
        let mut buf = PagedBuffers::new(n_layer, kv_dim, bs, 6);
        let a = m.admit(&[0; 6], 0).expect("fits");
        let b = m.admit(&[1; 9], 0).expect("fits");
        let mut kv = PagedKv { buffers: &mut buf, tables: &m, n_ctx: 64 };
        let row = |seq: usize, il: usize, pos: usize| -> Vec<f32> { (0..kv_dim).map(|d| (seq * 1000 + il * 100 + pos * 3 + d) as f32).collect() };
        for il in 0..n_layer {
            for pos in 0..6 {
                let r = row(a.slot, il, pos);
                kv.write(il, a.slot, pos, &r, &r.iter().map(|x| -x).collect::<Vec<_>>());
            }
            for pos in 0..9 {
                let r = row(b.slot, il, pos);
                kv.write(il, b.slot, pos, &r, &r.iter().map(|x| -x).collect::<Vec<_>>());
            }
        }
        for (slot, len) in [(a.slot, 6), (b.slot, 9)] {
            for il in 0..n_layer {
                for (start, end) in [(0, len), (1, len), (3, 5), (4, 8.min(len)), (2, 2)] {
                    let mut seen = Vec::new();
                    let mut n_chunks = 0;
                    kv.with_chunks(il, slot, start, end, &mut |chunks| {
                        n_chunks = chunks.len();
                        for c in chunks {
                            assert_eq!(c.k.len(), c.n_rows * kv_dim);
                            for r in 0..c.n_rows {
                                let k: Vec<f32> = c.k[r * kv_dim..(r + 1) * kv_dim].iter().map(|x| x.to_f32()).collect();
                                let v: Vec<f32> = c.v[r * kv_dim..(r + 1) * kv_dim].iter().map(|x| -x.to_f32()).collect();
                                assert_eq!(k, v);
                                seen.push(k);
                            }
                        }
                    });
                    let want: Vec<Vec<f32>> = (start..end).map(|p| row(slot, il, p)).collect();
                    assert_eq!(seen, want, "slot {slot} layer {il} positions {start}..{end}");
                    let blocks_touched = if end > start { (end - 1) / bs - start / bs + 1 } else { 0 };
                    assert_eq!(n_chunks, blocks_touched);
                }
            }
        }
    }

    #[test]
    fn sizing_from_a_byte_budget() {
        // SmolLM2-135M: 30 layers, kv_dim 192, 16-token blocks: 368,640 bytes per block.
        assert_eq!(PagedBuffers::bytes_per_block(30, 192, 16), 368_640);
        assert_eq!(PagedBuffers::blocks_for_bytes(64 << 20, 30, 192, 16), 182);
        assert_eq!(PagedBuffers::blocks_for_bytes(1, 30, 192, 16), 1);
    }
}

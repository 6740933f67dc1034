//! The paged K/V data: [`PagedBuffers`] holds the physical blocks, and [`PagedKv`] (the buffers
//! plus the [`KvManager`]'s block tables) is the [`KvStore`] the model runs on.
//!
//! One buffer per layer group (see [`super::layout`]), each sized for its own layer count and
//! block count; per layer of the group, for K and for V (f16):
//!
//! ```text
//!   k[group][layer in group][block][block_size][kv_dim]
//! ```
//!
//! A sequence's position `p` of layer `il` lives in block `table[group(il)][p / block_size]`,
//! row `p % block_size`; the attention kernel reads one [`KvChunk`] per block, in position order.
//! Its online softmax walks the rows one by one, so results do not depend on where the chunk
//! boundaries fall: a paged sequence computes exactly what it would in the contiguous cache.
//! A sliding-window layer never asks for positions older than its window, so the released
//! blocks (holes) of its group are never read.

use std::cell::RefCell;

use half::f16;

use super::layout::KvLayout;
use super::manager::KvManager;
use crate::kv::{KvChunk, KvStore};

/// The blocks of one group.
struct GroupBuffers {
    n_blocks: usize,
    k: Vec<f16>,
    v: Vec<f16>,
}

/// Physical K/V blocks for every layer.
pub struct PagedBuffers {
    layout: KvLayout,
    kv_dim: usize,
    block_size: usize,
    groups: Vec<GroupBuffers>,
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
    /// One group of `n_blocks` blocks holding all `n_layer` layers (no sliding windows).
    pub fn new(n_layer: usize, kv_dim: usize, block_size: usize, n_blocks: usize) -> Self {
        PagedBuffers::with_layout(KvLayout::uniform(n_layer), kv_dim, block_size, &[n_blocks])
    }

    /// `n_blocks[g]` blocks for each group `g` of `layout`.
    pub fn with_layout(layout: KvLayout, kv_dim: usize, block_size: usize, n_blocks: &[usize]) -> Self {
        assert_eq!(n_blocks.len(), layout.n_groups(), "one block count per group");
        let groups = n_blocks
            .iter()
            .enumerate()
            .map(|(g, &nb)| {
                let n = layout.n_layers_in(g) * nb * block_size * kv_dim;
                GroupBuffers { n_blocks: nb, k: zeroed_f16(n), v: zeroed_f16(n) }
            })
            .collect();
        PagedBuffers { layout, kv_dim, block_size, groups }
    }

    /// Bytes of K plus V for one block across `n_layer` layers.
    pub fn bytes_per_block(n_layer: usize, kv_dim: usize, block_size: usize) -> usize {
        2 * n_layer * block_size * kv_dim * std::mem::size_of::<f16>()
    }

    /// How many blocks of `n_layer` layers fit in `bytes` (at least one).
    pub fn blocks_for_bytes(bytes: usize, n_layer: usize, kv_dim: usize, block_size: usize) -> usize {
        (bytes / Self::bytes_per_block(n_layer, kv_dim, block_size).max(1)).max(1)
    }

    pub fn layout(&self) -> &KvLayout {
        &self.layout
    }
    /// Blocks in all groups together.
    pub fn n_blocks(&self) -> usize {
        self.groups.iter().map(|g| g.n_blocks).sum()
    }
    /// Blocks of `group`.
    pub fn n_blocks_in(&self, group: usize) -> usize {
        self.groups[group].n_blocks
    }
    pub fn block_size(&self) -> usize {
        self.block_size
    }
    pub fn n_layer(&self) -> usize {
        self.layout.n_layer()
    }
    pub fn kv_dim(&self) -> usize {
        self.kv_dim
    }
    pub fn bytes(&self) -> usize {
        self.groups.iter().map(|g| (g.k.len() + g.v.len()) * std::mem::size_of::<f16>()).sum()
    }

    /// Appends the values of block `block` of `group` to `out`: per layer of the group, its
    /// `block_size` K rows then its V rows (the disk tier's payload order).
    pub fn copy_block_out(&self, group: usize, block: usize, out: &mut Vec<f16>) {
        let buf = &self.groups[group];
        let n = self.block_size * self.kv_dim;
        for li in 0..self.layout.n_layers_in(group) {
            let at = (li * buf.n_blocks + block) * n;
            out.extend_from_slice(&buf.k[at..at + n]);
            out.extend_from_slice(&buf.v[at..at + n]);
        }
    }

    /// Fills block `block` of `group` from `data`, in [`copy_block_out`](Self::copy_block_out)'s
    /// order (`2 * layers * block_size * kv_dim` values).
    pub fn copy_block_in(&mut self, group: usize, block: usize, data: &[f16]) {
        let n = self.block_size * self.kv_dim;
        let n_layers = self.layout.n_layers_in(group);
        assert_eq!(data.len(), 2 * n_layers * n, "block data of another geometry");
        let buf = &mut self.groups[group];
        for (li, d) in data.chunks_exact(2 * n).enumerate() {
            let at = (li * buf.n_blocks + block) * n;
            buf.k[at..at + n].copy_from_slice(&d[..n]);
            buf.v[at..at + n].copy_from_slice(&d[n..]);
        }
    }

    /// The group of layer `il` and the offset of row `row` of block `block` in its buffers.
    fn locate(&self, il: usize, block: usize, row: usize) -> (usize, usize) {
        let (g, li) = self.layout.layer(il);
        let at = ((li * self.groups[g].n_blocks + block) * self.block_size + row) * self.kv_dim;
        (g, at)
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
        debug_assert_eq!(b.layout.n_groups(), self.tables.n_groups(), "buffers and tables of different layouts");
        let g = b.layout.layer(il).0;
        let block = self
            .tables
            .table(g, seq)
            .get(pos / b.block_size)
            .copied()
            .flatten()
            .expect("invariant: the scheduler reserves blocks for every position it schedules");
        debug_assert_eq!(self.tables.pool(g).refcount(block), 1, "write into a shared block");
        let (g, at) = b.locate(il, block.index(), pos % b.block_size);
        let kv_dim = b.kv_dim;
        let buf = &mut b.groups[g];
        for (d, s) in buf.k[at..at + kv_dim].iter_mut().zip(k) {
            *d = f16::from_f32(*s);
        }
        for (d, s) in buf.v[at..at + kv_dim].iter_mut().zip(v) {
            *d = f16::from_f32(*s);
        }
    }

    fn with_chunks(&self, il: usize, seq: usize, start: usize, end: usize, f: &mut dyn FnMut(&[KvChunk<'_>])) {
        let b = &*self.buffers;
        let bs = b.block_size;
        let g = b.layout.layer(il).0;
        let table = self.tables.table(g, seq);
        assert!(end <= table.len() * bs, "reading positions {start}..{end} of slot {seq} beyond its {} blocks", table.len());
        let buf = &b.groups[g];
        with_chunk_scratch(|chunks| {
            let mut pos = start;
            while pos < end {
                let (bi, row) = (pos / bs, pos % bs);
                let n_rows = (bs - row).min(end - pos);
                let block = table[bi].unwrap_or_else(|| panic!("reading position {pos} of slot {seq}, released as outside layer {il}'s window"));
                let (_, lo) = b.locate(il, block.index(), row);
                let hi = lo + n_rows * b.kv_dim;
                chunks.push(KvChunk { k: &buf.k[lo..hi], v: &buf.v[lo..hi], n_rows });
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

    #[test]
    fn layers_of_two_groups_live_in_their_own_buffers() {
        use crate::kv::paged::GroupSpec;
        // Layers 0 and 2 windowed (w = 3), layer 1 global; blocks of 2.
        let (kv_dim, bs, w) = (2, 2, 3);
        let layout = KvLayout::from_windows(&[Some(w), None, Some(w)]);
        let mut m = KvManager::with_groups(&[GroupSpec { window: None, n_blocks: 8 }, GroupSpec { window: Some(w), n_blocks: 3 }], bs, 1);
        let mut buf = PagedBuffers::with_layout(layout, kv_dim, bs, &[8, 3]);
        assert_eq!(buf.bytes(), (8 + 3 * 2) * bs * kv_dim * 2 * 2, "8 blocks of 1 layer, 3 of 2");
        assert_eq!((buf.n_blocks(), buf.n_blocks_in(0), buf.n_blocks_in(1)), (11, 8, 3));
        let row = |il: usize, pos: usize| -> Vec<f32> { (0..kv_dim).map(|d| (il * 100 + pos * 3 + d) as f32).collect() };
        let toks: Vec<u32> = (0..12).collect();
        let a = m.admit_chunked(&toks, 1, 0).expect("fits");
        // One token per step, like decoding: the window group never holds more than 3 blocks.
        for pos in 0..12 {
            assert!(m.reserve_step(a.slot, pos + 1, pos + 1));
            let mut kv = PagedKv { buffers: &mut buf, tables: &m, n_ctx: 64 };
            for il in 0..3 {
                let r = row(il, pos);
                kv.write(il, a.slot, pos, &r, &r);
            }
            for il in 0..3 {
                let start = if il == 1 { 0 } else { (pos + 1).saturating_sub(w) };
                let mut seen = Vec::new();
                kv.with_chunks(il, a.slot, start, pos + 1, &mut |chunks| {
                    for c in chunks {
                        seen.extend(c.k.iter().map(|x| x.to_f32()));
                    }
                });
                let want: Vec<f32> = (start..=pos).flat_map(|p| row(il, p)).collect();
                assert_eq!(seen, want, "layer {il} at position {pos}");
            }
            m.commit(a.slot, &toks[pos..pos + 1]);
        }
        assert_eq!(m.n_live_blocks(0, a.slot), 6);
        // The next query (at 12) sees 10..=12: only block 5 (10..12) is left of the window group.
        assert_eq!(m.n_live_blocks(1, a.slot), 1);
    }

    #[test]
    #[should_panic(expected = "outside layer 0's window")]
    fn reading_a_released_window_block_is_an_invariant_failure() {
        use crate::kv::paged::GroupSpec;
        let layout = KvLayout::from_windows(&[Some(2), None]);
        let mut m = KvManager::with_groups(&[GroupSpec { window: None, n_blocks: 4 }, GroupSpec { window: Some(2), n_blocks: 4 }], 2, 1);
        let mut buf = PagedBuffers::with_layout(layout, 1, 2, &[4, 4]);
        let a = m.admit(&[1, 2, 3, 4, 5], 0).expect("fits");
        m.commit(a.slot, &[1, 2, 3, 4, 5]);
        assert_eq!(m.table(1, a.slot)[0], None);
        let kv = PagedKv { buffers: &mut buf, tables: &m, n_ctx: 8 };
        // The global layer reads everything; the window layer may not read position 0.
        kv.with_chunks(1, a.slot, 0, 5, &mut |_| {});
        kv.with_chunks(0, a.slot, 0, 5, &mut |_| {});
    }
}

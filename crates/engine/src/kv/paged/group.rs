//! [`BlockGroup`]: the block tables of one layer group (see [`super::layout`]) over the group's
//! own [`BlockPool`]; vLLM's `SingleTypeKVCacheManager`. The [`super::KvManager`] keeps one per
//! group and moves them together.
//!
//! A full-attention group keeps a block for every position. A sliding-window group of window
//! `w` drops (releases, leaving a hole) every block whose positions are all older than
//! `n + 1 - w`, where `n` is the next position to compute: the earliest query of any later step
//! sits at `n` or after and sees only keys at `p > q - w`. With chunked prefill the rule holds
//! at every chunk: the chunk starting at `n` keeps what its first query needs.
//!
//! ```text
//!   w = 6, block size 4, n = 14 (positions 0..14 computed; the next query sees 9..=14)
//!   positions   0..4   4..8   8..12  12..16
//!   full        [b0]   [b1]   [b2]   [b3]
//!   window      hole   hole   [c2]   [c3]      c0, c1 released: no query can see 0..8 again
//! ```
//!
//! Holes only ever form a prefix of a table, so a table is a run of live blocks after
//! `first_live` holes.

use std::ops::Range;

use super::block_pool::{BlockHash, BlockId, BlockPool, PoolStats};
use super::layout::GroupSpec;

/// One slot's block table in one group.
#[derive(Debug, Default)]
struct Table {
    /// `blocks[i]` holds positions `i * block_size..(i + 1) * block_size`; `None` once released.
    blocks: Vec<Option<BlockId>>,
    /// Entries before this are holes.
    first_live: usize,
}

#[derive(Debug)]
pub(super) struct BlockGroup {
    window: Option<usize>,
    pool: BlockPool,
    tables: Vec<Table>,
}

impl BlockGroup {
    pub fn new(spec: GroupSpec, block_size: usize, n_slots: usize) -> Self {
        BlockGroup { window: spec.window, pool: BlockPool::new(spec.n_blocks, block_size), tables: (0..n_slots).map(|_| Table::default()).collect() }
    }

    pub fn window(&self) -> Option<usize> {
        self.window
    }
    pub fn pool(&self) -> &BlockPool {
        &self.pool
    }
    pub fn pool_mut(&mut self) -> &mut BlockPool {
        &mut self.pool
    }
    pub fn stats(&self) -> PoolStats {
        self.pool.stats()
    }
    pub fn table(&self, slot: usize) -> &[Option<BlockId>] {
        self.tables.get(slot).map_or(&[], |t| &t.blocks)
    }
    /// Live (referenced) blocks of `slot`.
    pub fn n_live(&self, slot: usize) -> usize {
        self.tables.get(slot).map_or(0, |t| t.blocks.len() - t.first_live)
    }

    fn block_size(&self) -> usize {
        self.pool.block_size()
    }

    /// First block that a query at position `pos` or later can read (0 for full attention).
    pub fn first_needed(&self, pos: usize) -> usize {
        match self.window {
            Some(w) => (pos + 1).saturating_sub(w) / self.block_size(),
            None => 0,
        }
    }

    /// The blocks a sequence resuming after `k` cached blocks needs from the cache: all of them
    /// for full attention, the last `ceil((w - 1) / block_size)` for a window.
    pub fn hit_range(&self, k: usize) -> Range<usize> {
        self.first_needed(k * self.block_size()).min(k)..k
    }

    /// The largest `k <= cap` for which every block of `hit_range(k)` is cached under
    /// `hashes[i]` (0 always qualifies: it needs nothing). One right-to-left scan for windows
    /// (vLLM's sliding-window `find_longest_cache_hit`); the leading run for full attention.
    pub fn longest_hit(&self, hashes: &[BlockHash], cap: usize) -> usize {
        let cap = cap.min(hashes.len());
        let hit = |i: usize| self.pool.lookup(hashes[i]).is_some();
        if self.window.is_none() {
            return (0..cap).take_while(|&i| hit(i)).count();
        }
        let mut end = cap;
        let mut run = 0;
        if self.hit_range(end).is_empty() {
            return end;
        }
        for i in (0..cap).rev() {
            if hit(i) {
                run += 1;
                if run >= self.hit_range(end).len() {
                    return end;
                }
            } else {
                end = i;
                run = 0;
                if self.hit_range(end).is_empty() {
                    return end;
                }
            }
        }
        0
    }

    /// Cached blocks of `hit_range(k)` that sit unreferenced in the LRU: acquiring them takes
    /// them out of what allocations can use.
    pub fn hits_evictable(&self, hashes: &[BlockHash], k: usize) -> usize {
        self.hit_range(k)
            .filter(|&i| self.pool.lookup(hashes[i]).is_some_and(|b| self.pool.is_evictable(b)))
            .count()
    }

    /// Blocks allocations can take (free or evictable).
    pub fn n_available(&self) -> usize {
        self.pool.n_available()
    }

    /// New blocks `slot` needs for its table to reach `n_entries`.
    pub fn need(&self, slot: usize, n_entries: usize) -> usize {
        n_entries.saturating_sub(self.table(slot).len())
    }

    /// Fills the (empty) table of a newly admitted `slot`: holes, the cached blocks of
    /// `hit_range(k)`, then new blocks up to `n_entries`. The caller checked availability.
    pub fn admit(&mut self, slot: usize, hashes: &[BlockHash], k: usize, n_entries: usize) {
        let range = self.hit_range(k);
        let t = &mut self.tables[slot];
        debug_assert!(t.blocks.is_empty(), "admitting into a used slot");
        t.blocks.clear();
        t.first_live = range.start;
        t.blocks.resize(range.start, None);
        for i in range {
            let b = self.pool.lookup(hashes[i]).expect("invariant: longest_hit found every block of the range");
            self.pool.acquire(b);
            t.blocks.push(Some(b));
        }
        while t.blocks.len() < n_entries {
            t.blocks.push(Some(self.pool.allocate().expect("invariant: availability checked by the caller")));
        }
    }

    /// Appends new blocks until `slot`'s table has `n_entries`. The caller checked availability.
    pub fn grow(&mut self, slot: usize, n_entries: usize) {
        let t = &mut self.tables[slot];
        while t.blocks.len() < n_entries {
            t.blocks.push(Some(self.pool.allocate().expect("invariant: availability checked by the caller")));
        }
    }

    /// Registers block `i` of `slot` (full and computed) in the prefix cache under `hash`.
    pub fn register(&mut self, slot: usize, i: usize, hash: BlockHash) {
        if let Some(Some(b)) = self.tables[slot].blocks.get(i) {
            self.pool.register(*b, hash);
        }
    }

    /// After `slot` computed positions `0..n_computed`: releases (oldest first, so they are
    /// evicted first) the blocks no later query can see. Nothing for full attention.
    pub fn release_unseen(&mut self, slot: usize, n_computed: usize) {
        let first = self.first_needed(n_computed);
        let t = &mut self.tables[slot];
        let first = first.min(t.blocks.len());
        while t.first_live < first {
            if let Some(b) = t.blocks[t.first_live].take() {
                self.pool.release(b);
            }
            t.first_live += 1;
        }
    }

    /// Releases every block of `slot`, the last first: a later turn of the conversation needs
    /// the leading blocks most (vLLM frees in the same order).
    pub fn free(&mut self, slot: usize) {
        let t = &mut self.tables[slot];
        for b in t.blocks.drain(..).rev().flatten() {
            self.pool.release(b);
        }
        t.first_live = 0;
    }

    pub fn clear_cache(&mut self) {
        self.pool.clear_cache();
    }
}

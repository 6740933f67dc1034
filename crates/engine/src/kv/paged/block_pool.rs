//! [`BlockPool`]: fixed-size KV blocks with reference counts, an O(1) free list and a prefix cache.
//!
//! The design follows vLLM's automatic prefix caching (the V1 `KVCacheManager` / `BlockPool`,
//! docs "Automatic Prefix Caching"): every *full* block is keyed by a hash of its whole token
//! prefix, built as a chain
//!
//! ```text
//!   h(block 0) = H(root,      tokens[0..B])
//!   h(block i) = H(h(i - 1),  tokens[i*B..(i+1)*B])
//! ```
//!
//! so equal hashes mean equal prefixes (up to hash collisions: the key is 128 bits wide). A new
//! request whose prompt starts with the same tokens finds its leading blocks by walking the chain
//! and shares them instead of recomputing them.
//!
//! Block states:
//!
//! ```text
//!   free list  --allocate-->  in use (refcount >= 1) --release to 0--> free list   (not cached)
//!                              |  ^                        \--------> LRU list    (cached)
//!                              |  +--- acquire (prefix hit) ------------/
//!   LRU head  --evicted by allocate when the free list is empty (hash forgotten)
//! ```
//!
//! Unreferenced cached blocks stay reusable until memory is needed; then the least recently
//! released one is evicted. All operations are O(1) (the LRU is an intrusive doubly linked list
//! over block indices), except the hash-map lookups, which are O(1) expected.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use crate::TokenId;

/// Index of a physical KV block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockId(pub u32);

impl BlockId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Hash of a full block's whole token prefix (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockHash(pub u128);

impl BlockHash {
    /// Chains `tokens` (one full block) onto the hash of the preceding blocks (`None` for the
    /// first block). Two differently seeded SipHash passes give 128 bits, so an accidental match
    /// between different prefixes is not a practical concern.
    pub fn chain(prev: Option<BlockHash>, tokens: &[TokenId]) -> BlockHash {
        let half = |seed: u8| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            seed.hash(&mut h);
            prev.map(|p| p.0).hash(&mut h);
            tokens.hash(&mut h);
            h.finish()
        };
        BlockHash(((half(0xA5) as u128) << 64) | half(0x5A) as u128)
    }

    /// What a tenant's first block chains onto: `None` (shared, unsalted) for salt 0, else a
    /// hash of the salt, so equal prefixes of different tenants never share a block.
    pub fn root(salt: u64) -> Option<BlockHash> {
        (salt != 0).then(|| BlockHash::chain(None, &[(salt >> 32) as TokenId, salt as TokenId, u32::MAX, 0x5A17]))
    }
}

const NIL: u32 = u32::MAX;

#[derive(Clone, Debug)]
struct Meta {
    refcount: u32,
    /// Set once the block is full, computed and registered in the prefix cache.
    hash: Option<BlockHash>,
    /// LRU links (valid only while the block is unreferenced and cached).
    prev: u32,
    next: u32,
    in_lru: bool,
}

/// Counts for monitoring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub total: usize,
    /// Blocks referenced by at least one sequence.
    pub used: usize,
    /// Unreferenced blocks that still hold a reusable prefix (evictable).
    pub cached: usize,
    /// Blocks holding nothing.
    pub free: usize,
}

/// A pool of `n_blocks` KV blocks of `block_size` token positions each (the data lives in
/// [`super::PagedBuffers`]; this is only the bookkeeping).
#[derive(Debug)]
pub struct BlockPool {
    block_size: usize,
    meta: Vec<Meta>,
    /// Blocks that hold nothing, used as a stack.
    free: Vec<BlockId>,
    /// Prefix hash -> the block holding it.
    cached: HashMap<BlockHash, BlockId>,
    /// Unreferenced cached blocks, least recently released at the head.
    lru_head: u32,
    lru_tail: u32,
    lru_len: usize,
    n_used: usize,
}

impl BlockPool {
    pub fn new(n_blocks: usize, block_size: usize) -> Self {
        assert!(block_size > 0, "block size must be positive");
        assert!(n_blocks < NIL as usize, "too many blocks");
        let meta = vec![Meta { refcount: 0, hash: None, prev: NIL, next: NIL, in_lru: false }; n_blocks];
        // Reversed so that allocation hands out block 0 first (easier to read in tests and dumps).
        let free = (0..n_blocks as u32).rev().map(BlockId).collect();
        BlockPool { block_size, meta, free, cached: HashMap::new(), lru_head: NIL, lru_tail: NIL, lru_len: 0, n_used: 0 }
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }
    pub fn n_blocks(&self) -> usize {
        self.meta.len()
    }
    /// Blocks an `allocate` can still hand out (free plus evictable cached ones).
    pub fn n_available(&self) -> usize {
        self.free.len() + self.lru_len
    }
    pub fn refcount(&self, id: BlockId) -> u32 {
        self.meta[id.index()].refcount
    }
    pub fn hash_of(&self, id: BlockId) -> Option<BlockHash> {
        self.meta[id.index()].hash
    }
    /// Whether `id` is unreferenced and would be taken by an allocation (counts against
    /// [`n_available`](Self::n_available) until acquired).
    pub fn is_evictable(&self, id: BlockId) -> bool {
        self.meta[id.index()].in_lru
    }

    pub fn stats(&self) -> PoolStats {
        PoolStats { total: self.meta.len(), used: self.n_used, cached: self.lru_len, free: self.free.len() }
    }

    /// Takes a block with nothing in it (refcount 1), evicting the least recently used cached
    /// block when the free list is empty. `None` when every block is referenced.
    pub fn allocate(&mut self) -> Option<BlockId> {
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                let id = BlockId(self.lru_head);
                if id.0 == NIL {
                    return None;
                }
                self.lru_remove(id);
                let hash = self.meta[id.index()].hash.take().expect("invariant: LRU blocks are cached");
                self.cached.remove(&hash);
                id
            }
        };
        let m = &mut self.meta[id.index()];
        debug_assert_eq!(m.refcount, 0);
        m.refcount = 1;
        self.n_used += 1;
        Some(id)
    }

    /// Finds the block holding the prefix `hash`, without taking a reference.
    pub fn lookup(&self, hash: BlockHash) -> Option<BlockId> {
        self.cached.get(&hash).copied()
    }

    /// Takes one more reference to `id` (a prefix hit or a fork); a cached unreferenced block
    /// leaves the LRU list, so it can no longer be evicted.
    pub fn acquire(&mut self, id: BlockId) {
        if self.meta[id.index()].refcount == 0 {
            debug_assert!(self.meta[id.index()].in_lru, "acquiring a free block: use allocate");
            self.lru_remove(id);
            self.n_used += 1;
        }
        self.meta[id.index()].refcount += 1;
    }

    /// Drops one reference. At zero a cached block goes to the most-recent end of the LRU list
    /// (still reusable), an uncached one back to the free list.
    pub fn release(&mut self, id: BlockId) {
        let m = &mut self.meta[id.index()];
        assert!(m.refcount > 0, "releasing an unreferenced block {id:?}");
        m.refcount -= 1;
        if m.refcount > 0 {
            return;
        }
        self.n_used -= 1;
        if m.hash.is_some() {
            self.lru_push_back(id);
        } else {
            self.free.push(id);
        }
    }

    /// Registers the full, computed block `id` under its prefix hash so later requests can reuse
    /// it. If another block already holds the same prefix (two sequences computed it at the same
    /// time), that one stays the cached copy and `id` is left unregistered (it returns to the
    /// free list when released). Returns whether `id` was registered.
    pub fn register(&mut self, id: BlockId, hash: BlockHash) -> bool {
        if self.meta[id.index()].hash.is_some() {
            return self.meta[id.index()].hash == Some(hash);
        }
        if self.cached.contains_key(&hash) {
            return false;
        }
        self.cached.insert(hash, id);
        self.meta[id.index()].hash = Some(hash);
        true
    }

    /// Forgets every cached prefix that no sequence references (e.g. after a model change or
    /// to measure cold performance).
    pub fn clear_cache(&mut self) {
        while self.lru_head != NIL {
            let id = BlockId(self.lru_head);
            self.lru_remove(id);
            let hash = self.meta[id.index()].hash.take().expect("invariant: LRU blocks are cached");
            self.cached.remove(&hash);
            self.free.push(id);
        }
    }

    fn lru_push_back(&mut self, id: BlockId) {
        let i = id.0;
        let tail = self.lru_tail;
        {
            let m = &mut self.meta[i as usize];
            m.prev = tail;
            m.next = NIL;
            m.in_lru = true;
        }
        if tail == NIL {
            self.lru_head = i;
        } else {
            self.meta[tail as usize].next = i;
        }
        self.lru_tail = i;
        self.lru_len += 1;
    }

    fn lru_remove(&mut self, id: BlockId) {
        let (prev, next) = {
            let m = &mut self.meta[id.index()];
            debug_assert!(m.in_lru);
            m.in_lru = false;
            let pn = (m.prev, m.next);
            m.prev = NIL;
            m.next = NIL;
            pn
        };
        if prev == NIL {
            self.lru_head = next;
        } else {
            self.meta[prev as usize].next = next;
        }
        if next == NIL {
            self.lru_tail = prev;
        } else {
            self.meta[next as usize].prev = prev;
        }
        self.lru_len -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(tokens: &[TokenId]) -> BlockHash {
        BlockHash::chain(None, tokens)
    }

    #[test]
    fn hash_chain_depends_on_the_whole_prefix() {
        let a = h(&[1, 2, 3, 4]);
        assert_eq!(a, h(&[1, 2, 3, 4]));
        assert_ne!(a, h(&[1, 2, 3, 5]));
        let b1 = BlockHash::chain(Some(a), &[9, 9, 9, 9]);
        let b2 = BlockHash::chain(Some(h(&[0, 2, 3, 4])), &[9, 9, 9, 9]);
        assert_ne!(b1, b2, "same block tokens after different prefixes must differ");
        assert_ne!(BlockHash::chain(None, &[9, 9, 9, 9]), b1);
    }

    #[test]
    fn allocate_until_exhausted_then_release() {
        let mut p = BlockPool::new(3, 4);
        let ids: Vec<_> = (0..3).map(|_| p.allocate().expect("free block")).collect();
        assert_eq!(ids, vec![BlockId(0), BlockId(1), BlockId(2)]);
        assert_eq!(p.allocate(), None);
        assert_eq!(p.stats(), PoolStats { total: 3, used: 3, cached: 0, free: 0 });
        p.release(ids[1]);
        assert_eq!(p.stats().free, 1);
        assert_eq!(p.allocate(), Some(BlockId(1)));
    }

    #[test]
    fn released_cached_blocks_stay_reusable() {
        let mut p = BlockPool::new(2, 4);
        let b = p.allocate().expect("free block");
        assert!(p.register(b, h(&[1, 2, 3, 4])));
        p.release(b);
        assert_eq!(p.stats(), PoolStats { total: 2, used: 0, cached: 1, free: 1 });
        assert_eq!(p.n_available(), 2);
        let hit = p.lookup(h(&[1, 2, 3, 4])).expect("cached");
        assert_eq!(hit, b);
        p.acquire(hit);
        assert_eq!(p.refcount(b), 1);
        assert_eq!(p.stats(), PoolStats { total: 2, used: 1, cached: 0, free: 1 });
        // Shared by a second sequence.
        p.acquire(hit);
        p.release(hit);
        assert_eq!(p.stats().used, 1);
        p.release(hit);
        assert_eq!(p.stats().cached, 1);
    }

    #[test]
    fn eviction_takes_the_least_recently_released_block_first() {
        let mut p = BlockPool::new(3, 2);
        let blocks: Vec<_> = (0..3).map(|_| p.allocate().expect("free")).collect();
        for (i, &b) in blocks.iter().enumerate() {
            assert!(p.register(b, h(&[i as u32, 0])));
        }
        // Release order 2, 0, 1: block 2 is the least recently used.
        for i in [2, 0, 1] {
            p.release(blocks[i]);
        }
        // A hit on block 0 moves it out of the LRU; it comes back as the most recent.
        p.acquire(blocks[0]);
        p.release(blocks[0]);
        assert_eq!(p.allocate(), Some(blocks[2]));
        assert_eq!(p.lookup(h(&[2, 0])), None, "evicted prefix is forgotten");
        assert_eq!(p.allocate(), Some(blocks[1]));
        assert_eq!(p.allocate(), Some(blocks[0]));
        assert_eq!(p.allocate(), None);
        assert_eq!(p.stats(), PoolStats { total: 3, used: 3, cached: 0, free: 0 });
        // Evicted blocks come back clean: released, they go to the free list, not the cache.
        p.release(blocks[1]);
        assert_eq!(p.stats().free, 1);
    }

    #[test]
    fn the_free_list_is_used_before_evicting() {
        let mut p = BlockPool::new(2, 2);
        let a = p.allocate().expect("free");
        p.register(a, h(&[1, 1]));
        p.release(a);
        let b = p.allocate().expect("free");
        assert_ne!(a, b, "a free block must be preferred over evicting a cached one");
        assert_eq!(p.lookup(h(&[1, 1])), Some(a));
    }

    #[test]
    fn duplicate_registration_keeps_the_first_copy() {
        let mut p = BlockPool::new(2, 2);
        let a = p.allocate().expect("free");
        let b = p.allocate().expect("free");
        assert!(p.register(a, h(&[5, 6])));
        assert!(!p.register(b, h(&[5, 6])));
        p.release(b);
        p.release(a);
        assert_eq!(p.stats(), PoolStats { total: 2, used: 0, cached: 1, free: 1 });
        assert_eq!(p.lookup(h(&[5, 6])), Some(a));
    }

    #[test]
    fn clear_cache_frees_unreferenced_blocks_only() {
        let mut p = BlockPool::new(3, 2);
        let a = p.allocate().expect("free");
        let b = p.allocate().expect("free");
        p.register(a, h(&[1, 1]));
        p.register(b, h(&[2, 2]));
        p.release(a);
        p.clear_cache();
        assert_eq!(p.lookup(h(&[1, 1])), None);
        assert_eq!(p.lookup(h(&[2, 2])), Some(b));
        assert_eq!(p.stats(), PoolStats { total: 3, used: 1, cached: 0, free: 2 });
    }

    #[test]
    fn long_random_workload_keeps_counts_consistent() {
        // A deterministic pseudo-random mix of operations, checking the invariants after each.
        let mut p = BlockPool::new(8, 2);
        let mut held: Vec<BlockId> = Vec::new();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for step in 0..5000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match x % 4 {
                0 | 1 => {
                    if let Some(b) = p.allocate() {
                        if x.is_multiple_of(3) {
                            p.register(b, h(&[step % 13, 7]));
                        }
                        held.push(b);
                    } else {
                        assert_eq!(p.n_available(), 0);
                    }
                }
                2 if !held.is_empty() => {
                    let b = held.swap_remove((x as usize / 4) % held.len());
                    p.release(b);
                }
                _ => {
                    if let Some(b) = p.lookup(h(&[step % 13, 7])) {
                        p.acquire(b);
                        held.push(b);
                    }
                }
            }
            let s = p.stats();
            assert_eq!(s.used + s.cached + s.free, s.total);
            let mut distinct = held.clone();
            distinct.sort();
            distinct.dedup();
            assert_eq!(s.used, distinct.len());
        }
    }
}

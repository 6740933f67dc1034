//! [`KvManager`]: per-sequence block tables over a [`BlockPool`], with prefix reuse.
//!
//! Each running sequence has a slot (its `seq` index in [`crate::kv::KvStore`]) and a block
//! table mapping its logical blocks to physical ones:
//!
//! ```text
//!   positions   0..16      16..32     32..48     48..
//!   slot 0      [ b7 ]     [ b2 ]     [ b9 ]               b7, b2 shared with slot 1
//!   slot 1      [ b7 ]     [ b2 ]     [ b4 ]     [ b5 ]    (same first 32 prompt tokens)
//! ```
//!
//! Only full blocks whose K/V have been computed are shared (registered in the pool's prefix
//! cache by [`KvManager::commit`]); the partial last block of a sequence is always its own, so
//! writes never touch a shared block. Pure bookkeeping: no tensors here.

use super::block_pool::{BlockHash, BlockId, BlockPool, PoolStats};
use crate::TokenId;

/// Why a sequence could not be admitted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    #[error("no free sequence slot")]
    NoSlot,
    #[error("needs {need} KV blocks but only {available} are available")]
    NoBlocks { need: usize, available: usize },
}

/// A sequence placed in the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admitted {
    pub slot: usize,
    /// Leading tokens whose K/V were found in the prefix cache (a multiple of the block size).
    pub cached_tokens: usize,
}

#[derive(Debug, Default)]
struct SeqKv {
    blocks: Vec<BlockId>,
    /// Tokens whose K/V are computed, in order.
    tokens: Vec<TokenId>,
    /// Prefix hash of each full computed block (`tokens.len() / block_size` of them).
    hashes: Vec<BlockHash>,
}

/// Block tables of up to `n_slots` sequences over one pool.
#[derive(Debug)]
pub struct KvManager {
    pool: BlockPool,
    slots: Vec<Option<SeqKv>>,
    /// Free slot indices, used as a stack (lowest first).
    free_slots: Vec<usize>,
}

impl KvManager {
    pub fn new(n_blocks: usize, block_size: usize, n_slots: usize) -> Self {
        KvManager {
            pool: BlockPool::new(n_blocks, block_size),
            slots: (0..n_slots).map(|_| None).collect(),
            free_slots: (0..n_slots).rev().collect(),
        }
    }

    pub fn block_size(&self) -> usize {
        self.pool.block_size()
    }
    pub fn n_blocks(&self) -> usize {
        self.pool.n_blocks()
    }
    pub fn n_slots(&self) -> usize {
        self.slots.len()
    }
    pub fn n_free_slots(&self) -> usize {
        self.free_slots.len()
    }
    /// Blocks that allocations can still take (free or evictable).
    pub fn n_available(&self) -> usize {
        self.pool.n_available()
    }
    pub fn stats(&self) -> PoolStats {
        self.pool.stats()
    }
    pub fn pool(&self) -> &BlockPool {
        &self.pool
    }
    /// Blocks needed to hold `n_tokens` positions.
    pub fn blocks_for(&self, n_tokens: usize) -> usize {
        n_tokens.div_ceil(self.block_size())
    }

    /// The block table of `slot` (empty for an unused slot).
    pub fn table(&self, slot: usize) -> &[BlockId] {
        self.slots.get(slot).and_then(|s| s.as_ref()).map_or(&[], |s| &s.blocks)
    }
    /// Positions `slot` has blocks for.
    pub fn capacity(&self, slot: usize) -> usize {
        self.table(slot).len() * self.block_size()
    }
    /// Tokens of `slot` whose K/V are committed.
    pub fn committed(&self, slot: usize) -> &[TokenId] {
        self.slots.get(slot).and_then(|s| s.as_ref()).map_or(&[], |s| &s.tokens)
    }

    /// Walks the prefix cache along `tokens`: the blocks holding its leading full blocks. At
    /// most `(len - 1) / block_size` blocks match, so the last token is always computed again
    /// (its logits are needed) and it never lands in a shared block.
    fn matching_prefix(&self, tokens: &[TokenId]) -> (Vec<BlockId>, Vec<BlockHash>) {
        let bs = self.block_size();
        let max_blocks = tokens.len().saturating_sub(1) / bs;
        let (mut ids, mut hashes) = (Vec::new(), Vec::new());
        let mut prev = None;
        for chunk in tokens.chunks_exact(bs).take(max_blocks) {
            let h = BlockHash::chain(prev, chunk);
            match self.pool.lookup(h) {
                Some(id) => {
                    ids.push(id);
                    hashes.push(h);
                    prev = Some(h);
                }
                None => break,
            }
        }
        (ids, hashes)
    }

    /// Tokens of `tokens` that a fresh admission would find in the prefix cache.
    pub fn cached_prefix_len(&self, tokens: &[TokenId]) -> usize {
        self.matching_prefix(tokens).0.len() * self.block_size()
    }

    /// Places a sequence whose (not yet computed) tokens are `tokens`: reuses the cached blocks
    /// of its prefix and allocates blocks for the rest, all or nothing. `headroom` blocks must
    /// stay available afterwards (for the growth of sequences already running).
    pub fn admit(&mut self, tokens: &[TokenId], headroom: usize) -> Result<Admitted, AdmitError> {
        if self.free_slots.is_empty() {
            return Err(AdmitError::NoSlot);
        }
        let (hits, hashes) = self.matching_prefix(tokens);
        let need_new = self.blocks_for(tokens.len()).max(1) - hits.len();
        // Hits sitting in the LRU list stop being evictable once acquired.
        let hits_evictable = hits.iter().filter(|&&b| self.pool.is_evictable(b)).count();
        let available = self.pool.n_available() - hits_evictable;
        if need_new + headroom > available {
            return Err(AdmitError::NoBlocks { need: need_new + headroom, available });
        }
        let mut blocks = Vec::with_capacity(hits.len() + need_new);
        for &b in &hits {
            self.pool.acquire(b);
            blocks.push(b);
        }
        for _ in 0..need_new {
            blocks.push(self.pool.allocate().expect("invariant: availability checked above"));
        }
        let cached_tokens = hits.len() * self.block_size();
        let slot = self.free_slots.pop().expect("invariant: checked non-empty");
        self.slots[slot] = Some(SeqKv { blocks, tokens: tokens[..cached_tokens].to_vec(), hashes });
        Ok(Admitted { slot, cached_tokens })
    }

    /// Makes `slot` hold at least `n_tokens` positions, allocating blocks as needed (one per
    /// `block_size` decode steps). Returns false, changing nothing, when the pool is exhausted.
    pub fn reserve(&mut self, slot: usize, n_tokens: usize) -> bool {
        let need = self.blocks_for(n_tokens).saturating_sub(self.table(slot).len());
        if need > self.pool.n_available() {
            return false;
        }
        let seq = self.slots[slot].as_mut().expect("reserve on an unused slot");
        for _ in 0..need {
            seq.blocks.push(self.pool.allocate().expect("invariant: availability checked above"));
        }
        true
    }

    /// Records that the K/V of `tokens` (the next positions of `slot`) are now computed, and
    /// registers every block this fills in the prefix cache.
    pub fn commit(&mut self, slot: usize, tokens: &[TokenId]) {
        let bs = self.block_size();
        let seq = self.slots[slot].as_mut().expect("commit on an unused slot");
        assert!(seq.tokens.len() + tokens.len() <= seq.blocks.len() * bs, "commit beyond the reserved blocks");
        seq.tokens.extend_from_slice(tokens);
        while (seq.hashes.len() + 1) * bs <= seq.tokens.len() {
            let i = seq.hashes.len();
            let h = BlockHash::chain(seq.hashes.last().copied(), &seq.tokens[i * bs..(i + 1) * bs]);
            self.pool.register(seq.blocks[i], h);
            seq.hashes.push(h);
        }
    }

    /// Ends `slot` (finished, cancelled or preempted): its blocks are released, the full ones
    /// staying in the prefix cache. Tail blocks are released first so that they are evicted
    /// before the prefix blocks (vLLM does the same): a later turn of the conversation needs
    /// the prefix most.
    pub fn free(&mut self, slot: usize) {
        let Some(seq) = self.slots.get_mut(slot).and_then(|s| s.take()) else { return };
        for &b in seq.blocks.iter().rev() {
            self.pool.release(b);
        }
        self.free_slots.push(slot);
    }

    /// Forgets every unreferenced cached prefix.
    pub fn clear_cache(&mut self) {
        self.pool.clear_cache();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(n: usize, seed: u32) -> Vec<TokenId> {
        (0..n as u32).map(|i| i * 7 + seed).collect()
    }

    #[test]
    fn admit_allocates_the_prompt_and_commit_registers_full_blocks() {
        let mut m = KvManager::new(8, 4, 2);
        let p = toks(10, 0);
        let a = m.admit(&p, 0).expect("fits");
        assert_eq!(a, Admitted { slot: 0, cached_tokens: 0 });
        assert_eq!(m.table(0).len(), 3);
        assert_eq!(m.capacity(0), 12);
        m.commit(0, &p[..6]);
        assert_eq!(m.stats().used, 3);
        // One full block so far: freeing keeps it cached, the two others go back free.
        m.free(0);
        assert_eq!(m.stats(), PoolStats { total: 8, used: 0, cached: 1, free: 7 });
        assert_eq!(m.n_free_slots(), 2);
    }

    #[test]
    fn a_follow_up_prompt_reuses_the_cached_prefix() {
        let mut m = KvManager::new(16, 4, 2);
        let turn1 = toks(11, 3);
        let a = m.admit(&turn1, 0).expect("fits");
        m.commit(a.slot, &turn1);
        let t1_table = m.table(a.slot).to_vec();
        // The generated tokens are committed too, as decode feeds them.
        assert!(m.reserve(a.slot, 14));
        m.commit(a.slot, &[100, 101, 102]);
        m.free(a.slot);
        let mut turn2 = turn1.clone();
        turn2.extend([100, 101, 102, 200, 201, 202, 203]);
        assert_eq!(m.cached_prefix_len(&turn2), 12);
        let b = m.admit(&turn2, 0).expect("fits");
        assert_eq!(b.cached_tokens, 12);
        assert_eq!(&m.table(b.slot)[..2], &t1_table[..2]);
        assert_eq!(m.committed(b.slot), &turn2[..12]);
        assert_eq!(m.table(b.slot).len(), 5);
    }

    #[test]
    fn the_last_prompt_token_is_never_served_from_the_cache() {
        let mut m = KvManager::new(8, 4, 2);
        let p = toks(8, 1);
        let a = m.admit(&p, 0).expect("fits");
        m.commit(a.slot, &p);
        m.free(a.slot);
        assert_eq!(m.stats().cached, 2);
        // Exactly the same 8 tokens: only the first block may be reused.
        let b = m.admit(&p, 0).expect("fits");
        assert_eq!(b.cached_tokens, 4);
        assert_eq!(m.stats().cached, 1, "the second cached block is still in the LRU");
    }

    #[test]
    fn concurrent_sequences_share_prefix_blocks_by_reference() {
        let mut m = KvManager::new(8, 4, 3);
        let sys = toks(8, 5);
        let a = m.admit(&sys, 0).expect("fits");
        m.commit(a.slot, &sys);
        let mut q1 = sys.clone();
        q1.extend([1, 2, 3]);
        let mut q2 = sys.clone();
        q2.extend([4, 5, 6, 7, 8]);
        let b = m.admit(&q1, 0).expect("fits");
        let c = m.admit(&q2, 0).expect("fits");
        assert_eq!((b.cached_tokens, c.cached_tokens), (8, 8));
        let shared = m.table(a.slot)[0];
        assert_eq!(m.pool().refcount(shared), 3);
        assert_eq!(m.table(b.slot)[..2], m.table(c.slot)[..2]);
        m.free(a.slot);
        m.free(b.slot);
        assert_eq!(m.pool().refcount(shared), 1);
        m.free(c.slot);
        assert_eq!(m.stats().used, 0);
    }

    #[test]
    fn admission_is_all_or_nothing_and_respects_headroom() {
        let mut m = KvManager::new(4, 4, 4);
        let a = m.admit(&toks(9, 0), 0).expect("3 blocks fit");
        assert_eq!(m.admit(&toks(5, 9), 0), Err(AdmitError::NoBlocks { need: 2, available: 1 }));
        assert_eq!(m.stats().used, 3, "a failed admission holds nothing");
        assert_eq!(m.admit(&toks(3, 9), 1), Err(AdmitError::NoBlocks { need: 2, available: 1 }));
        let b = m.admit(&toks(3, 9), 0).expect("1 block fits");
        assert!(!m.reserve(a.slot, 13), "pool exhausted");
        assert_eq!(m.table(a.slot).len(), 3, "a failed reserve changes nothing");
        m.free(b.slot);
        assert!(m.reserve(a.slot, 13));
    }

    #[test]
    fn prefix_hits_in_the_lru_do_not_count_as_available() {
        let mut m = KvManager::new(3, 2, 2);
        let p = toks(5, 0);
        let a = m.admit(&p, 0).expect("fits");
        m.commit(a.slot, &p[..4]);
        m.free(a.slot);
        // 2 cached + 1 free. The same prompt reuses both cached blocks and needs 1 more: fits.
        let b = m.admit(&p, 0).expect("fits");
        assert_eq!(b.cached_tokens, 4);
        m.free(b.slot);
        // A prompt sharing the 2 cached blocks and needing 2 more does not fit in 3.
        let mut long = p[..4].to_vec();
        long.extend([50, 51, 52]);
        assert_eq!(m.admit(&long, 0), Err(AdmitError::NoBlocks { need: 2, available: 1 }));
    }

    #[test]
    fn slots_run_out_before_blocks() {
        let mut m = KvManager::new(16, 4, 1);
        m.admit(&toks(2, 0), 0).expect("fits");
        assert_eq!(m.admit(&toks(2, 1), 0), Err(AdmitError::NoSlot));
    }

    #[test]
    fn freed_prefix_outlives_its_tail_under_pressure() {
        let mut m = KvManager::new(3, 2, 2);
        let p = toks(6, 0);
        let a = m.admit(&p, 0).expect("fits");
        m.commit(a.slot, &p);
        m.free(a.slot);
        // Allocating one block evicts the tail block (released first), not the first one.
        let b = m.admit(&[99], 0).expect("fits");
        let mut longer = p.clone();
        longer.push(1);
        assert_eq!(m.cached_prefix_len(&longer), 4, "blocks 0 and 1 survive, block 2 was evicted");
        m.free(b.slot);
    }
}

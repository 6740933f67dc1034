//! [`KvManager`]: per-sequence block tables over one [`BlockPool`] per layer group, with prefix
//! reuse.
//!
//! Each running sequence has a slot (its `seq` index in [`crate::kv::KvStore`]) and, in every
//! group (see [`super::layout`]), a block table mapping its logical blocks to physical ones:
//!
//! ```text
//!   positions   0..16      16..32     32..48     48..
//!   slot 0      [ b7 ]     [ b2 ]     [ b9 ]               b7, b2 shared with slot 1
//!   slot 1      [ b7 ]     [ b2 ]     [ b4 ]     [ b5 ]    (same first 32 prompt tokens)
//! ```
//!
//! Only full blocks whose K/V have been computed are shared (registered in the pool's prefix
//! cache by [`KvManager::commit`]); the partial last block of a sequence is always its own, so
//! writes never touch a shared block. Sliding-window groups release the blocks no future query
//! can see as the sequence advances (see [`super::group`]). Pure bookkeeping: no tensors here.
//!
//! Prefix reuse with several groups (vLLM's hybrid coordinator): every group keys its cached
//! blocks by the same hash chain, and a cached prefix of `k` blocks is usable only if every
//! group has the blocks the next query needs: a full-attention group all `k`, a window group
//! the last `ceil((w - 1) / block_size)` before the prefix's end. The longest `k` all groups
//! agree on is used (possibly 0).

use super::block_pool::{BlockHash, BlockId, BlockPool, PoolStats};
use super::group::BlockGroup;
use super::layout::{window_footprint, GroupSpec, GroupStats};
use crate::TokenId;

/// Why a sequence could not be admitted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    #[error("no free sequence slot")]
    NoSlot,
    #[error("needs {need} KV blocks but only {available} are available")]
    NoBlocks { need: usize, available: usize },
}

/// Why a sequence can never run, even alone in the cache.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TooLarge {
    #[error("the prompt has {n_tokens} tokens but the KV cache holds {capacity} ({n_blocks} blocks of {block_size})")]
    Context { n_tokens: usize, capacity: usize, n_blocks: usize, block_size: usize },
    #[error(
        "the prompt has {n_tokens} tokens, and a step of it needs {need} KV blocks of the sliding-window layers \
         but the cache has {n_blocks}"
    )]
    Window { n_tokens: usize, need: usize, n_blocks: usize },
}

/// A sequence placed in the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admitted {
    pub slot: usize,
    /// Leading tokens whose K/V were found in the prefix cache, in every group (a multiple of
    /// the block size).
    pub cached_tokens: usize,
}

#[derive(Debug, Default)]
struct SeqKv {
    /// Tokens whose K/V are computed, in order.
    tokens: Vec<TokenId>,
    /// Prefix hash of each full computed block (`tokens.len() / block_size` of them).
    hashes: Vec<BlockHash>,
    /// What the first block's hash chains onto (the tenant's salt, see [`BlockHash::root`]).
    root: Option<BlockHash>,
}

/// Table entries a group keeps for a sequence of `n_tokens` positions whose current step ends at
/// `step_end`: full attention holds the whole sequence, a window only what this step writes.
fn entries(window: Option<usize>, block_size: usize, n_tokens: usize, step_end: usize) -> usize {
    match window {
        None => n_tokens.div_ceil(block_size),
        Some(_) => step_end.div_ceil(block_size),
    }
}

/// Block tables of up to `n_slots` sequences over one pool per layer group.
#[derive(Debug)]
pub struct KvManager {
    block_size: usize,
    groups: Vec<BlockGroup>,
    /// Indices of the sliding-window groups (empty for a plain model: no per-step work).
    window_groups: Vec<usize>,
    slots: Vec<Option<SeqKv>>,
    /// Free slot indices, used as a stack (lowest first).
    free_slots: Vec<usize>,
    /// Whether [`commit`](Self::commit) records the blocks it fills (for the disk tier).
    record_full: bool,
    /// `(slot, block index, hash)` of the blocks filled since the last
    /// [`take_newly_full`](Self::take_newly_full).
    newly_full: Vec<(usize, usize, BlockHash)>,
}

impl KvManager {
    /// One full-attention group of `n_blocks` blocks (a model without sliding windows).
    pub fn new(n_blocks: usize, block_size: usize, n_slots: usize) -> Self {
        KvManager::with_groups(&[GroupSpec { window: None, n_blocks }], block_size, n_slots)
    }

    /// One pool per group, in the order of the layout's groups.
    pub fn with_groups(groups: &[GroupSpec], block_size: usize, n_slots: usize) -> Self {
        assert!(!groups.is_empty(), "a KV cache needs at least one group");
        assert!(groups.iter().all(|g| g.window != Some(0)), "a sliding window must be positive");
        KvManager {
            block_size,
            groups: groups.iter().map(|&g| BlockGroup::new(g, block_size, n_slots)).collect(),
            window_groups: (0..groups.len()).filter(|&g| groups[g].window.is_some()).collect(),
            slots: (0..n_slots).map(|_| None).collect(),
            free_slots: (0..n_slots).rev().collect(),
            record_full: false,
            newly_full: Vec::new(),
        }
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }
    pub fn n_groups(&self) -> usize {
        self.groups.len()
    }
    /// The sliding window of `group`'s layers (`None`: full attention).
    pub fn window(&self, group: usize) -> Option<usize> {
        self.groups[group].window()
    }
    /// Blocks in all groups together.
    pub fn n_blocks(&self) -> usize {
        self.groups.iter().map(|g| g.pool().n_blocks()).sum()
    }
    pub fn n_slots(&self) -> usize {
        self.slots.len()
    }
    pub fn n_free_slots(&self) -> usize {
        self.free_slots.len()
    }
    /// Counts summed over the groups.
    pub fn stats(&self) -> PoolStats {
        self.groups.iter().map(|g| g.stats()).fold(PoolStats::default(), |a, s| PoolStats {
            total: a.total + s.total,
            used: a.used + s.used,
            cached: a.cached + s.cached,
            free: a.free + s.free,
        })
    }
    pub fn group_stats(&self, group: usize) -> GroupStats {
        GroupStats { window: self.window(group), pool: self.groups[group].stats() }
    }
    pub fn pool(&self, group: usize) -> &BlockPool {
        self.groups[group].pool()
    }
    /// Blocks needed to hold `n_tokens` positions.
    pub fn blocks_for(&self, n_tokens: usize) -> usize {
        n_tokens.div_ceil(self.block_size)
    }
    /// Positions a sequence can reach in the full-attention groups (`None` without any: a
    /// sliding-window-only model runs in bounded memory).
    pub fn token_capacity(&self) -> Option<usize> {
        self.groups.iter().filter(|g| g.window().is_none()).map(|g| g.pool().n_blocks() * self.block_size).min()
    }

    /// The block table of `slot` in `group` (empty for an unused slot); `None` entries are
    /// blocks a sliding-window group released.
    pub fn table(&self, group: usize, slot: usize) -> &[Option<BlockId>] {
        self.groups[group].table(slot)
    }
    /// Blocks `slot` holds in `group`.
    pub fn n_live_blocks(&self, group: usize, slot: usize) -> usize {
        self.groups[group].n_live(slot)
    }
    /// Tokens of `slot` whose K/V are committed.
    pub fn committed(&self, slot: usize) -> &[TokenId] {
        self.slots.get(slot).and_then(|s| s.as_ref()).map_or(&[], |s| &s.tokens)
    }

    /// Whether a sequence of `n_tokens` positions, run in steps of at most `chunk` tokens,
    /// fits in the cache when it runs alone.
    pub fn fits_alone(&self, n_tokens: usize, chunk: usize) -> Result<(), TooLarge> {
        for g in &self.groups {
            let n_blocks = g.pool().n_blocks();
            match g.window() {
                None if self.blocks_for(n_tokens) > n_blocks => {
                    let block_size = self.block_size;
                    return Err(TooLarge::Context { n_tokens, capacity: n_blocks * block_size, n_blocks, block_size });
                }
                Some(w) => {
                    let need = window_footprint(w, n_tokens, chunk, self.block_size);
                    if need > n_blocks {
                        return Err(TooLarge::Window { n_tokens, need, n_blocks });
                    }
                }
                None => {}
            }
        }
        Ok(())
    }

    /// The longest cached prefix of `tokens` usable in every group: its block count and the
    /// hashes of its blocks. At most `(len - 1) / block_size` blocks match, so the last token is
    /// always computed again (its logits are needed) and it never lands in a shared block.
    fn prefix_hit(&self, tokens: &[TokenId], root: Option<BlockHash>) -> (usize, Vec<BlockHash>) {
        let bs = self.block_size;
        let max_blocks = tokens.len().saturating_sub(1) / bs;
        let mut hashes = Vec::new();
        let mut prev = root;
        for chunk in tokens.chunks_exact(bs).take(max_blocks) {
            let h = BlockHash::chain(prev, chunk);
            // Full-attention groups need every block: their first miss ends the walk.
            if !self.groups.iter().filter(|g| g.window().is_none()).all(|g| g.pool().lookup(h).is_some()) {
                break;
            }
            hashes.push(h);
            prev = Some(h);
        }
        // Window groups each shorten `k` to their own longest hit within it, until all agree.
        let mut k = hashes.len();
        loop {
            let before = k;
            for &g in &self.window_groups {
                k = self.groups[g].longest_hit(&hashes, k);
            }
            if k == before {
                break;
            }
        }
        hashes.truncate(k);
        (k, hashes)
    }

    /// Tokens of `tokens` that a fresh admission would find in the prefix cache.
    pub fn cached_prefix_len(&self, tokens: &[TokenId]) -> usize {
        self.cached_prefix_len_salted(tokens, 0)
    }

    /// [`cached_prefix_len`](Self::cached_prefix_len) for the tenant of `salt`.
    pub fn cached_prefix_len_salted(&self, tokens: &[TokenId], salt: u64) -> usize {
        self.prefix_hit(tokens, BlockHash::root(salt)).0 * self.block_size
    }

    /// Places a sequence whose (not yet computed) tokens are `tokens`: reuses the cached blocks
    /// of its prefix and allocates blocks for the rest, all or nothing. `headroom` blocks must
    /// stay available afterwards in every group (for the growth of sequences already running).
    pub fn admit(&mut self, tokens: &[TokenId], headroom: usize) -> Result<Admitted, AdmitError> {
        self.admit_chunked(tokens, tokens.len(), headroom)
    }

    /// [`admit`](Self::admit) for a sequence whose first step runs at most `first_chunk`
    /// tokens after its cached prefix: sliding-window groups allocate blocks for that step
    /// only ([`reserve_step`](Self::reserve_step) adds the rest step by step), full-attention
    /// groups for the whole of `tokens`.
    pub fn admit_chunked(&mut self, tokens: &[TokenId], first_chunk: usize, headroom: usize) -> Result<Admitted, AdmitError> {
        self.admit_salted(tokens, first_chunk, headroom, 0)
    }

    /// [`admit_chunked`](Self::admit_chunked) for the tenant of `salt`: its blocks are keyed by
    /// hashes chained onto the salt, so only sequences with the same salt share them (0: the
    /// shared, unsalted cache).
    pub fn admit_salted(&mut self, tokens: &[TokenId], first_chunk: usize, headroom: usize, salt: u64) -> Result<Admitted, AdmitError> {
        if self.free_slots.is_empty() {
            return Err(AdmitError::NoSlot);
        }
        let root = BlockHash::root(salt);
        let (k, hashes) = self.prefix_hit(tokens, root);
        let cached_tokens = k * self.block_size;
        let chunk_end = cached_tokens + (tokens.len() - cached_tokens).min(first_chunk.max(1));
        let bs = self.block_size;
        for g in &self.groups {
            let need_new = entries(g.window(), bs, tokens.len(), chunk_end).max(1) - k;
            // Hits sitting in the LRU list stop being evictable once acquired.
            let available = g.n_available() - g.hits_evictable(&hashes, k);
            if need_new + headroom > available {
                return Err(AdmitError::NoBlocks { need: need_new + headroom, available });
            }
        }
        let slot = self.free_slots.pop().expect("invariant: checked non-empty");
        for g in &mut self.groups {
            let n = entries(g.window(), bs, tokens.len(), chunk_end).max(1);
            g.admit(slot, &hashes, k, n);
        }
        self.slots[slot] = Some(SeqKv { tokens: tokens[..cached_tokens].to_vec(), hashes, root });
        Ok(Admitted { slot, cached_tokens })
    }

    /// Makes `slot` hold at least `n_tokens` positions in every group, allocating blocks as
    /// needed (one per `block_size` decode steps). Returns false, changing nothing, when a
    /// pool is exhausted.
    pub fn reserve(&mut self, slot: usize, n_tokens: usize) -> bool {
        self.reserve_step(slot, n_tokens, n_tokens)
    }

    /// Before a step of `slot` that writes positions up to `step_end`: full-attention groups
    /// get blocks for `n_tokens` positions (the whole sequence so far), sliding-window groups
    /// for `step_end` (their blocks for later chunks come at those steps, after older ones have
    /// been released). All or nothing: false, changing nothing, when a pool is exhausted.
    pub fn reserve_step(&mut self, slot: usize, n_tokens: usize, step_end: usize) -> bool {
        assert!(self.slots.get(slot).is_some_and(|s| s.is_some()), "reserve on an unused slot");
        let bs = self.block_size;
        if self.groups.iter().any(|g| g.need(slot, entries(g.window(), bs, n_tokens, step_end)) > g.n_available()) {
            return false;
        }
        for g in &mut self.groups {
            g.grow(slot, entries(g.window(), bs, n_tokens, step_end));
        }
        true
    }

    /// Records that the K/V of `tokens` (the next positions of `slot`) are now computed,
    /// registers every block this fills in the prefix cache, and releases the sliding-window
    /// blocks no later query can see.
    pub fn commit(&mut self, slot: usize, tokens: &[TokenId]) {
        let bs = self.block_size;
        let seq = self.slots[slot].as_mut().expect("commit on an unused slot");
        seq.tokens.extend_from_slice(tokens);
        for g in &self.groups {
            assert!(seq.tokens.len() <= g.table(slot).len() * bs, "commit beyond the reserved blocks");
        }
        while (seq.hashes.len() + 1) * bs <= seq.tokens.len() {
            let i = seq.hashes.len();
            let h = BlockHash::chain(seq.hashes.last().copied().or(seq.root), &seq.tokens[i * bs..(i + 1) * bs]);
            for g in &mut self.groups {
                g.register(slot, i, h);
            }
            if self.record_full {
                self.newly_full.push((slot, i, h));
            }
            seq.hashes.push(h);
        }
        let n = seq.tokens.len();
        for &g in &self.window_groups {
            self.groups[g].release_unseen(slot, n);
        }
    }

    /// Ends `slot` (finished, cancelled or preempted): its blocks are released, the full ones
    /// staying in the prefix cache. Tail blocks are released first so that they are evicted
    /// before the prefix blocks (vLLM does the same): a later turn of the conversation needs
    /// the prefix most.
    pub fn free(&mut self, slot: usize) {
        if self.slots.get_mut(slot).and_then(|s| s.take()).is_none() {
            return;
        }
        for g in &mut self.groups {
            g.free(slot);
        }
        self.free_slots.push(slot);
    }

    /// Forgets every unreferenced cached prefix.
    pub fn clear_cache(&mut self) {
        for g in &mut self.groups {
            g.clear_cache();
        }
    }
}

/// The disk tier's side (see [`crate::kv::disk`]): the blocks that filled, and importing blocks
/// read from disk as cached ones. A block file holds the block of every group (all layers), so
/// one read serves the full-attention groups and the sliding-window ones alike; a window group
/// imports only the blocks its hit needs (the last ones before the hit's end).
impl KvManager {
    /// Makes [`commit`](Self::commit) record the blocks it fills.
    pub fn set_record_full(&mut self, on: bool) {
        self.record_full = on;
        self.newly_full.clear();
    }

    /// Moves the `(slot, block index, hash)` of every block filled since the last call into
    /// `out` (cleared first).
    pub fn take_newly_full(&mut self, out: &mut Vec<(usize, usize, BlockHash)>) {
        out.clear();
        std::mem::swap(out, &mut self.newly_full);
    }

    /// The block of `hash` in every group, in group order (`None` when a group no longer has
    /// it). Right after a commit every block it filled is there: a window group's released
    /// blocks stay cached until the next allocation.
    pub fn cached_blocks(&self, hash: BlockHash) -> Option<Vec<BlockId>> {
        self.groups.iter().map(|g| g.pool().lookup(hash)).collect()
    }

    /// The hashes of the blocks of `tokens` a prefix hit may cover (at most `(len - 1) /
    /// block_size`, see `prefix_hit`) for the tenant of `salt`, and how many lead ones the RAM
    /// cache serves in every group (the hit an admission would get now).
    pub fn prefix_plan(&self, tokens: &[TokenId], salt: u64) -> (Vec<BlockHash>, usize) {
        let bs = self.block_size;
        let max_blocks = tokens.len().saturating_sub(1) / bs;
        let mut hashes = Vec::with_capacity(max_blocks);
        let mut prev = BlockHash::root(salt);
        for chunk in tokens.chunks_exact(bs).take(max_blocks) {
            let h = BlockHash::chain(prev, chunk);
            hashes.push(h);
            prev = Some(h);
        }
        let k = self.prefix_hit(tokens, BlockHash::root(salt)).0;
        (hashes, k)
    }

    /// The longest hit the full-attention groups could have if the blocks `on_disk` says are
    /// on disk were imported: `k` (cached in all of them) extended while each next block is
    /// cached in all of them or on disk (every block, for a model without full attention).
    pub fn full_groups_reach(&self, hashes: &[BlockHash], k: usize, on_disk: &impl Fn(usize) -> bool) -> usize {
        let mut full = self.groups.iter().filter(|g| g.window().is_none()).peekable();
        if full.peek().is_none() {
            return hashes.len();
        }
        let full: Vec<&BlockGroup> = full.collect();
        k + (k..hashes.len()).take_while(|&i| on_disk(i) || full.iter().all(|g| g.pool().lookup(hashes[i]).is_some())).count()
    }

    /// Whether a hit of `m` blocks could be had if the blocks `on_disk` says are on disk were
    /// imported: every group finds each block of its `hit_range(m)` cached or on disk.
    pub fn hit_possible(&self, hashes: &[BlockHash], m: usize, on_disk: &impl Fn(usize) -> bool) -> bool {
        m <= hashes.len() && self.groups.iter().all(|g| g.hit_range(m).all(|i| g.pool().lookup(hashes[i]).is_some() || on_disk(i)))
    }

    /// Whether importing what a hit of `m` blocks needs, then admitting a sequence of
    /// `n_tokens` whose first step runs at most `first_chunk` tokens with `headroom` blocks
    /// left in every group, fits now (a free slot included). With `m` = the current hit it is
    /// whether the admission itself fits.
    pub fn import_fits(&self, n_tokens: usize, first_chunk: usize, hashes: &[BlockHash], m: usize, headroom: usize) -> bool {
        if self.free_slots.is_empty() {
            return false;
        }
        let bs = self.block_size;
        let cached = m * bs;
        let chunk_end = cached + n_tokens.saturating_sub(cached).min(first_chunk.max(1));
        self.groups.iter().all(|g| {
            let imports = g.hit_range(m).filter(|&i| g.pool().lookup(hashes[i]).is_none()).count();
            let need_new = entries(g.window(), bs, n_tokens, chunk_end).max(1).saturating_sub(m);
            imports + need_new + headroom <= g.n_available() - g.hits_evictable(hashes, m)
        })
    }

    /// Imports what a hit of `m` blocks of `hashes` needs: for each block index, in order, the
    /// groups whose `hit_range(m)` holds it and that do not have it cached each get a fresh block;
    /// `fill(i, blocks)` writes them (`blocks`: `(group, block)` pairs; false: its data could not
    /// be had, the import stops there). They are registered under their hash and left
    /// unreferenced in the cache, the most recently used, so that the admission that follows
    /// finds them. Returns how many block indices were imported. The caller checked
    /// [`import_fits`](Self::import_fits).
    pub fn import(&mut self, hashes: &[BlockHash], m: usize, mut fill: impl FnMut(usize, &[(usize, BlockId)]) -> bool) -> usize {
        let m = m.min(hashes.len());
        // Held while allocating, so that the blocks already cached for the hit are not evicted
        // for the new ones.
        let mut held: Vec<(usize, BlockId)> = Vec::new();
        for (gi, g) in self.groups.iter_mut().enumerate() {
            for i in g.hit_range(m) {
                if let Some(b) = g.pool().lookup(hashes[i]) {
                    g.pool_mut().acquire(b);
                    held.push((gi, b));
                }
            }
        }
        let first = self.groups.iter().map(|g| g.hit_range(m).start).min().unwrap_or(m);
        let mut done = 0;
        let mut fresh: Vec<(usize, BlockId)> = Vec::with_capacity(self.groups.len());
        'blocks: for (i, &h) in hashes.iter().enumerate().take(m).skip(first) {
            fresh.clear();
            for (gi, g) in self.groups.iter_mut().enumerate() {
                if !g.hit_range(m).contains(&i) || g.pool().lookup(h).is_some() {
                    continue;
                }
                match g.pool_mut().allocate() {
                    Some(b) => fresh.push((gi, b)),
                    None => {
                        for &(gj, b) in &fresh {
                            self.groups[gj].pool_mut().release(b);
                        }
                        break 'blocks;
                    }
                }
            }
            if fresh.is_empty() {
                continue;
            }
            if !fill(i, &fresh) {
                for &(gj, b) in &fresh {
                    self.groups[gj].pool_mut().release(b);
                }
                break;
            }
            for &(gj, b) in &fresh {
                self.groups[gj].pool_mut().register(b, h);
                held.push((gj, b));
            }
            done += 1;
        }
        for (gi, b) in held {
            self.groups[gi].pool_mut().release(b);
        }
        done
    }
}

#[cfg(test)]
mod tests;

//! [`KvLayout`]: which layers share block tables, and how a byte budget is split between them.
//!
//! Layers are grouped by the attention they use, after vLLM's hybrid KV cache manager
//! (`KVCacheGroupSpec` / `SlidingWindowManager`): the full-attention ("global") layers form one
//! group whose blocks cover every position of a sequence; the sliding-window ("local") layers of
//! one window size form another, whose leading blocks are released once no future query can see
//! them. Each group has its own block pool and physical buffers sized for its layer count.
//! Gemma-3-270M (18 layers, window 512, every 6th layer global):
//!
//! ```text
//!   layer     0  1  2  3  4 [5] 6  7  8  9 10 [11] 12 13 14 15 16 [17]
//!   group     1  1  1  1  1  0  1  1  1  1  1   0   1  1  1  1  1   0
//!   group 0 (3 layers, full)    blocks for positions 0..len            grows with the sequence
//!   group 1 (15 layers, w=512)  blocks for positions len-512..len only  bounded per sequence
//! ```
//!
//! A model without windowed layers has one group, and everything behaves as a plain paged cache.

use super::block_pool::PoolStats;

/// The attention layers of one group have in common.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupSpec {
    /// `Some(w)`: the layers see only the last `w` positions; `None`: full attention.
    pub window: Option<usize>,
    /// Blocks in the group's pool.
    pub n_blocks: usize,
}

/// Block counts of one group, for monitoring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupStats {
    pub window: Option<usize>,
    pub pool: PoolStats,
}

/// The grouping of a model's layers (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvLayout {
    /// The window of each group: the full-attention group first (if any), then windows ascending.
    windows: Vec<Option<usize>>,
    /// Per layer: (group, index of the layer within its group's buffers).
    layers: Vec<(usize, usize)>,
    /// Layers per group.
    n_layers: Vec<usize>,
}

impl KvLayout {
    /// Every layer in one full-attention group.
    pub fn uniform(n_layer: usize) -> Self {
        KvLayout::from_windows(&vec![None; n_layer])
    }

    /// Groups layers by their window (`windows[il]`, `None` for full attention).
    pub fn from_windows(windows: &[Option<usize>]) -> Self {
        let mut groups: Vec<Option<usize>> = windows.to_vec();
        // `None` sorts first: the full-attention group is group 0.
        groups.sort_unstable();
        groups.dedup();
        let mut n_layers = vec![0; groups.len()];
        let layers = windows
            .iter()
            .map(|w| {
                let g = groups.binary_search(w).expect("invariant: every window has a group");
                n_layers[g] += 1;
                (g, n_layers[g] - 1)
            })
            .collect();
        KvLayout { windows: groups, layers, n_layers }
    }

    /// The layout of a model with `n_ctx` positions per sequence: layers whose window is `None`
    /// or reaches the whole context (it would never drop anything) count as full attention.
    pub fn for_model(hp: &crate::model::HParams, n_ctx: usize) -> Self {
        let windows: Vec<Option<usize>> = (0..hp.n_layer).map(|il| hp.window_of(il).filter(|&w| w < n_ctx)).collect();
        KvLayout::from_windows(&windows)
    }

    pub fn n_layer(&self) -> usize {
        self.layers.len()
    }
    pub fn n_groups(&self) -> usize {
        self.windows.len()
    }
    pub fn window(&self, group: usize) -> Option<usize> {
        self.windows[group]
    }
    /// Layers in `group`.
    pub fn n_layers_in(&self, group: usize) -> usize {
        self.n_layers[group]
    }
    /// The group of layer `il` and the layer's index within that group.
    pub fn layer(&self, il: usize) -> (usize, usize) {
        self.layers[il]
    }
    /// Whether some layer uses a sliding window (more than one group only then).
    pub fn has_windows(&self) -> bool {
        self.windows.iter().any(Option::is_some)
    }
}

/// What the cache must hold, for sizing it.
#[derive(Clone, Copy, Debug)]
pub struct Sizing {
    /// Positions one sequence may use.
    pub n_ctx: usize,
    pub max_seqs: usize,
    /// Most tokens one step runs (all sequences together).
    pub step_token_budget: usize,
    pub block_size: usize,
    /// Width of one K (or V) row.
    pub kv_dim: usize,
}

/// Most blocks an interval of `n` consecutive positions can touch (when it starts on the last
/// row of a block).
pub fn max_blocks_touched(n: usize, block_size: usize) -> usize {
    if n == 0 {
        0
    } else {
        (n - 1).div_ceil(block_size) + 1
    }
}

/// Most blocks one sequence of up to `n_tokens` positions holds at once in a group of window `w`
/// when its steps run at most `chunk` tokens: a step starting at `s` reads from `s + 1 - w` and
/// writes `s..s + chunk`, and older blocks are released (see `KvManager::commit`).
pub fn window_footprint(w: usize, n_tokens: usize, chunk: usize, block_size: usize) -> usize {
    n_tokens.div_ceil(block_size).min(max_blocks_touched(w.saturating_sub(1) + chunk.clamp(1, n_tokens.max(1)), block_size))
}

impl Sizing {
    /// Blocks of a window-`w` group that `max_seqs` sequences can hold at most at once: each
    /// holds the blocks of its last `w - 1` positions plus those its step writes, and the steps
    /// of all sequences together run at most `step_token_budget` tokens. One more block per
    /// sequence covers the scheduler's growth headroom, so this group never forces a preemption.
    pub fn window_blocks_at_most(&self, w: usize) -> usize {
        let (bs, n) = (self.block_size, self.max_seqs);
        let per_seq = max_blocks_touched(w.saturating_sub(1), bs);
        // Each sequence's step of len_i adds at most ceil(len_i / bs) blocks, and
        // sum(ceil(len_i / bs)) <= (budget + n * (bs - 1)) / bs.
        let steps = (self.step_token_budget + n * (bs - 1)) / bs;
        (n * (per_seq + 1) + steps).min(n * self.n_ctx.div_ceil(bs))
    }

    /// Blocks of a window-`w` group that one sequence needs to run alone with full-budget steps.
    pub fn window_blocks_at_least(&self, w: usize) -> usize {
        window_footprint(w, self.n_ctx, self.step_token_budget, self.block_size)
    }

    /// Bytes of K plus V for one block of a group of `n_layers` layers.
    pub fn bytes_per_block(&self, n_layers: usize) -> usize {
        2 * n_layers * self.block_size * self.kv_dim * std::mem::size_of::<half::f16>()
    }

    /// Blocks per group of `layout` for a budget of `bytes` (`None`: room for `max_seqs` full
    /// contexts).
    ///
    /// Without a budget, the full-attention group gets `max_seqs` full contexts and each window
    /// group [`window_blocks_at_most`](Self::window_blocks_at_most). With one, a window group
    /// gets the share of the bytes it has in that default layout, capped at what it can ever use
    /// and raised to what one sequence needs to run; the full-attention group gets the rest
    /// (so a budget above the default goes to the global layers and their prefix cache, and one
    /// below it shrinks both groups alike: they still hold as many full-context sequences).
    /// Every group gets at least one block, so a tiny budget may be exceeded (as a plain cache
    /// gets at least one block).
    pub fn blocks_per_group(&self, layout: &KvLayout, bytes: Option<usize>) -> Vec<usize> {
        let bs = self.block_size;
        let full_default = self.max_seqs * self.n_ctx.div_ceil(bs);
        let default: Vec<usize> = (0..layout.n_groups())
            .map(|g| match layout.window(g) {
                Some(w) => self.window_blocks_at_most(w),
                None => full_default,
            })
            .collect();
        let Some(bytes) = bytes else { return default };
        let bpb: Vec<usize> = (0..layout.n_groups()).map(|g| self.bytes_per_block(layout.n_layers_in(g)).max(1)).collect();
        let default_bytes: usize = default.iter().zip(&bpb).map(|(n, b)| n * b).sum();
        let has_full = layout.window(0).is_none();
        let mut blocks = vec![0; layout.n_groups()];
        let mut left = bytes;
        for g in 0..layout.n_groups() {
            let Some(w) = layout.window(g) else { continue };
            // The share in f64: bytes * default_bytes can overflow usize on large budgets.
            let share = (bytes as f64 * (default[g] * bpb[g]) as f64 / default_bytes.max(1) as f64 / bpb[g] as f64) as usize;
            let share = if has_full { share.min(default[g]) } else { share };
            blocks[g] = share.max(self.window_blocks_at_least(w)).max(1);
            left = left.saturating_sub(blocks[g] * bpb[g]);
        }
        if has_full {
            blocks[0] = (left / bpb[0]).max(1);
        }
        blocks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gemma() -> KvLayout {
        KvLayout::from_windows(&(0..18).map(|il| if il % 6 == 5 { None } else { Some(512) }).collect::<Vec<_>>())
    }

    #[test]
    fn layers_are_grouped_by_window_with_the_global_group_first() {
        let l = gemma();
        assert_eq!(l.n_groups(), 2);
        assert_eq!((l.window(0), l.window(1)), (None, Some(512)));
        assert_eq!((l.n_layers_in(0), l.n_layers_in(1)), (3, 15));
        assert_eq!(l.layer(0), (1, 0));
        assert_eq!(l.layer(5), (0, 0));
        assert_eq!(l.layer(6), (1, 5));
        assert_eq!(l.layer(17), (0, 2));
        assert!(l.has_windows());
        let u = KvLayout::uniform(30);
        assert_eq!((u.n_groups(), u.window(0), u.n_layers_in(0), u.layer(29)), (1, None, 30, (0, 29)));
        assert!(!u.has_windows());
        // Only windowed layers (Mistral-style): one window group, no global one.
        let w = KvLayout::from_windows(&[Some(64); 4]);
        assert_eq!((w.n_groups(), w.window(0)), (1, Some(64)));
    }

    #[test]
    fn block_counts_of_intervals() {
        assert_eq!(max_blocks_touched(0, 16), 0);
        assert_eq!(max_blocks_touched(1, 16), 1);
        assert_eq!(max_blocks_touched(2, 16), 2);
        assert_eq!(max_blocks_touched(17, 16), 2);
        assert_eq!(max_blocks_touched(18, 16), 3);
        // Brute force: every start row, every length.
        for bs in [1, 3, 4, 16] {
            for n in 1..60 {
                let most = (0..bs).map(|a| (a + n - 1) / bs - a / bs + 1).max().expect("rows");
                assert_eq!(max_blocks_touched(n, bs), most, "n {n} bs {bs}");
            }
        }
        // Decoding at window 512: 511 older positions plus the new one.
        assert_eq!(window_footprint(512, 4096, 1, 16), 33);
        assert_eq!(window_footprint(512, 4096, 512, 16), 65);
        assert_eq!(window_footprint(512, 100, 512, 16), 7, "a short sequence holds all its blocks");
    }

    fn sizing() -> Sizing {
        Sizing { n_ctx: 4096, max_seqs: 8, step_token_budget: 512, block_size: 16, kv_dim: 256 }
    }

    #[test]
    fn default_sizes_give_the_window_group_what_max_seqs_sequences_can_use() {
        let s = sizing();
        // 8 sequences x (32 blocks for 511 positions + 1 + 1 headroom) + (512 + 8 * 15) / 16 = 39.
        assert_eq!(s.window_blocks_at_most(512), 8 * 34 + 39);
        assert_eq!(s.blocks_per_group(&gemma(), None), vec![8 * 256, 311]);
        assert_eq!(s.blocks_per_group(&KvLayout::uniform(18), None), vec![8 * 256]);
        // A tiny context: the cap is the whole context.
        let short = Sizing { n_ctx: 600, ..s };
        assert_eq!(short.window_blocks_at_most(512), 8 * 38);
    }

    #[test]
    fn a_byte_budget_is_split_between_the_groups() {
        let s = sizing();
        let (g, w) = (s.bytes_per_block(3), s.bytes_per_block(15));
        assert_eq!((g, w), (49_152, 245_760));
        // A plain model: the same count as before the split existed.
        let u = KvLayout::uniform(18);
        assert_eq!(s.blocks_per_group(&u, Some(64 << 20)), vec![(64 << 20) / s.bytes_per_block(18)]);
        // Twice the default: the window group stays at what it can use, the rest goes global.
        let default = 8 * 256 * g + 311 * w;
        let big = s.blocks_per_group(&gemma(), Some(2 * default));
        assert_eq!(big[1], 311);
        assert_eq!(big[0], (2 * default - 311 * w) / g);
        // Half the default: both shrink alike.
        let half = s.blocks_per_group(&gemma(), Some(default / 2));
        assert!((155..=156).contains(&half[1]), "{half:?}");
        assert!((1024..=1027).contains(&half[0]), "{half:?}");
        assert!(half[0] * g + half[1] * w <= default / 2);
        // Tiny: the window group still lets one sequence run, the global group has one block.
        let tiny = s.blocks_per_group(&gemma(), Some(1000));
        assert_eq!(tiny, vec![1, s.window_blocks_at_least(512)]);
        assert_eq!(tiny[1], 65);
    }
}

//! Many query tokens over a long context, in tiles of KV rows (the AVX-512 prefill path).
//!
//! Run a token at a time, every (token, KV head) pair streams all its visible K and V rows: at a
//! depth of 4096 one Llama-3.2-1B KV head holds 1 MiB of f16 rows, more than a Zen 5 core's L2,
//! so a 512-token prompt read them from L3 512 times per layer. Here a task takes one group of
//! query heads (one KV head) for a stripe of tokens and walks the rows in tiles that fit in L1
//! (see [`tile_rows`]); every token of the stripe goes on with its own online-softmax state over
//! a tile before the next tile is read. The state after rows `a..b` then `b..c` is the state
//! after `a..c` bit for bit (`avx512::heads_resume`), so a token's result is the same as a token
//! run alone, and as a decode step (the batch-invariance tests).

use std::ops::Range;

use super::{avx512, kv_of, Ctx, HeadGroups};
use crate::disjoint::DisjointMut;
use crate::pool::ThreadPool;

/// KV rows per tile for a head size: one KV head's K and V rows of a tile take 32 KiB in f16
/// (128 rows of 64, 64 of 128, 32 of 256), two thirds of Zen 5's 48 KiB L1 data cache; a
/// multiple of 16 so that tiles start where a paged cache's blocks do.
pub(super) fn tile_rows(hd: usize) -> usize {
    (8192 / hd.max(1)).max(16) / 16 * 16
}

/// Whether [`rows_tiled`] runs this call: the AVX-512 kernels have the shape, and there are
/// enough tokens to share a tile (a decode step or a short chunk runs a token at a time).
pub(super) fn applies(cx: Ctx, n_tokens: usize, groups: &HeadGroups) -> bool {
    const MIN_TOKENS: usize = 16;
    cx.path == super::Path::Avx512 && n_tokens >= MIN_TOKENS && avx512::supported(cx.p.head_dim, groups.size)
}

/// [`super::attention_rows_parallel`] in tiles: tasks are (query-head group, token stripe);
/// tokens are dealt to stripes round-robin (a later token sees more rows under a causal mask).
///
/// # Panics
/// If a visible range goes past the chunks' rows.
pub(super) fn rows_tiled(
    pool: &ThreadPool,
    cx: Ctx,
    q: &[f32],
    n_tokens: usize,
    visible: &(dyn Fn(usize) -> Range<usize> + Sync),
    groups: &HeadGroups,
    out: &mut [f32],
) {
    let p = cx.p;
    let hd = p.head_dim;
    let row = p.n_head * hd;
    let n_kv: usize = cx.chunks.iter().map(|c| c.n_rows).sum();
    let per_token = p.n_head_kv * groups.subs;
    let n_stripes = (pool.n_threads() * 4).div_ceil(per_token).clamp(1, n_tokens);
    let tile = tile_rows(hd);
    let out = DisjointMut::new(out);
    pool.run(per_token * n_stripes, &|task| {
        let (unit, stripe) = (task % per_token, task / per_token);
        let (h0, n) = groups.heads(unit / groups.subs, unit % groups.subs);
        let len = n * hd + 2 * n;
        // The stripe's tokens and the rows each sees.
        let toks: Vec<(usize, Range<usize>)> = (stripe..n_tokens)
            .step_by(n_stripes)
            .map(|t| {
                let r = visible(t);
                assert!(r.start <= r.end && r.end <= n_kv, "token {t}: visible rows {r:?} of {n_kv}");
                (t, r)
            })
            .collect();
        let mut st = vec![0f32; toks.len() * len];
        for s in st.chunks_exact_mut(len) {
            avx512::init_state(s, n * hd);
        }
        let kv = kv_of(cx, h0);
        let lo = toks.iter().map(|(_, r)| r.start).min().unwrap_or(0);
        let hi = toks.iter().map(|(_, r)| r.end).max().unwrap_or(0);
        // The first chunk a tile touches, and the row it starts at.
        let (mut ci, mut base) = (0, 0);
        let mut t0 = lo / tile * tile;
        while t0 < hi {
            let t1 = (t0 + tile).min(hi);
            while ci < cx.chunks.len() && base + cx.chunks[ci].n_rows <= t0 {
                base += cx.chunks[ci].n_rows;
                ci += 1;
            }
            let sub = avx512::Kv { chunks: &cx.chunks[ci..], ..kv };
            for (i, (t, r)) in toks.iter().enumerate() {
                let (a, b) = (r.start.max(t0), r.end.min(t1));
                if a < b {
                    let off = t * row + h0 * hd;
                    // SAFETY: the tiled path runs only where `avx512::available()` and
                    // `supported(hd, n)`; `check` verified the chunks' lengths and kvh <
                    // n_head_kv; `a - base..b - base` lies within `chunks[ci..]` (asserted
                    // `b <= n_kv` above); q's slice and the state are `n * hd` and `len` long.
                    unsafe { avx512::heads_resume(sub, hd, n, &q[off..off + n * hd], a - base..b - base, &mut st[i * len..(i + 1) * len]) };
                }
            }
            t0 = t1;
        }
        let sinks = p.sinks.map(|s| &s[h0..h0 + n]);
        for (i, &(t, _)) in toks.iter().enumerate() {
            let off = t * row + h0 * hd;
            // SAFETY: (token, head group) is handled by exactly one task and owns these heads'
            // slice; the kernel preconditions as above.
            unsafe {
                let orow = out.slice(off, n * hd);
                avx512::heads_finish(hd, n, &st[i * len..(i + 1) * len], sinks, orow);
            }
        }
    });
}

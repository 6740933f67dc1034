//! KvManager tests: one full-attention group (a plain model) first, then a full group beside a
//! sliding-window group (Gemma 3's layout, scaled down).

use super::*;
use crate::kv::paged::max_blocks_touched;

fn toks(n: usize, seed: u32) -> Vec<TokenId> {
    (0..n as u32).map(|i| i * 7 + seed).collect()
}

fn live(table: &[Option<BlockId>]) -> Vec<BlockId> {
    table.iter().flatten().copied().collect()
}

#[test]
fn admit_allocates_the_prompt_and_commit_registers_full_blocks() {
    let mut m = KvManager::new(8, 4, 2);
    let p = toks(10, 0);
    let a = m.admit(&p, 0).expect("fits");
    assert_eq!(a, Admitted { slot: 0, cached_tokens: 0 });
    assert_eq!(m.table(0, 0).len(), 3);
    assert_eq!(m.n_live_blocks(0, 0), 3);
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
    let t1_table = m.table(0, a.slot).to_vec();
    // The generated tokens are committed too, as decode feeds them.
    assert!(m.reserve(a.slot, 14));
    m.commit(a.slot, &[100, 101, 102]);
    m.free(a.slot);
    let mut turn2 = turn1.clone();
    turn2.extend([100, 101, 102, 200, 201, 202, 203]);
    assert_eq!(m.cached_prefix_len(&turn2), 12);
    let b = m.admit(&turn2, 0).expect("fits");
    assert_eq!(b.cached_tokens, 12);
    assert_eq!(&m.table(0, b.slot)[..2], &t1_table[..2]);
    assert_eq!(m.committed(b.slot), &turn2[..12]);
    assert_eq!(m.table(0, b.slot).len(), 5);
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
    let shared = m.table(0, a.slot)[0].expect("live");
    assert_eq!(m.pool(0).refcount(shared), 3);
    assert_eq!(m.table(0, b.slot)[..2], m.table(0, c.slot)[..2]);
    m.free(a.slot);
    m.free(b.slot);
    assert_eq!(m.pool(0).refcount(shared), 1);
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
    assert_eq!(m.table(0, a.slot).len(), 3, "a failed reserve changes nothing");
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

#[test]
fn a_plain_cache_reports_its_context_limit() {
    let m = KvManager::new(4, 4, 1);
    assert_eq!(m.token_capacity(), Some(16));
    assert_eq!(m.fits_alone(16, 512), Ok(()));
    let err = m.fits_alone(17, 512).expect_err("too long");
    assert_eq!(err, TooLarge::Context { n_tokens: 17, capacity: 16, n_blocks: 4, block_size: 4 });
    assert_eq!(err.to_string(), "the prompt has 17 tokens but the KV cache holds 16 (4 blocks of 4)");
}

// ---- a full-attention group (0) beside a sliding-window group (1): window 6, blocks of 4 ----

const W: usize = 6;
const BS: usize = 4;

fn hybrid(n_full: usize, n_window: usize, n_slots: usize) -> KvManager {
    KvManager::with_groups(&[GroupSpec { window: None, n_blocks: n_full }, GroupSpec { window: Some(W), n_blocks: n_window }], BS, n_slots)
}

#[test]
fn window_blocks_are_released_once_no_query_can_see_them() {
    let mut m = hybrid(32, 8, 1);
    let p = toks(10, 0);
    let a = m.admit(&p, 0).expect("fits");
    assert_eq!((m.table(0, a.slot).len(), m.table(1, a.slot).len()), (3, 3));
    m.commit(a.slot, &p);
    // Next query at 10 sees 5..=10: block 0 (positions 0..4) is released, block 1 (4..8) stays.
    assert_eq!(m.table(1, a.slot)[0], None);
    assert!(m.table(1, a.slot)[1].is_some());
    assert_eq!(m.n_live_blocks(1, a.slot), 2);
    assert_eq!(m.n_live_blocks(0, a.slot), 3, "the full-attention group keeps everything");
    // The released block was full: it stays cached for prefix reuse, evictable.
    assert_eq!(m.group_stats(1).pool, PoolStats { total: 8, used: 2, cached: 1, free: 5 });
    assert_eq!(m.stats(), PoolStats { total: 40, used: 5, cached: 1, free: 34 });
}

#[test]
fn a_growing_sequence_holds_a_bounded_number_of_window_blocks() {
    let mut m = hybrid(64, 3, 1);
    let p = toks(3, 1);
    let a = m.admit(&p, 0).expect("fits");
    m.commit(a.slot, &p);
    let mut most = 0;
    for n in 3..200 {
        assert!(m.reserve_step(a.slot, n + 1, n + 1), "position {n}: the window group must not run dry");
        most = most.max(m.n_live_blocks(1, a.slot));
        m.commit(a.slot, &[n as TokenId]);
        // What the next query (at n + 1) sees is still held.
        let first = (n + 2).saturating_sub(W) / BS;
        assert!(m.table(1, a.slot)[first..].iter().all(Option::is_some), "position {n}");
        assert!(m.table(1, a.slot)[..first].iter().all(Option::is_none), "position {n}");
    }
    // 5 older positions + the new one span at most 3 blocks of 4.
    assert_eq!(most, max_blocks_touched(W, BS));
    assert_eq!(most, 3);
    assert_eq!(m.n_live_blocks(0, a.slot), 50);
    assert_eq!(m.fits_alone(200, 1), Ok(()));
    assert!(m.fits_alone(257, 1).is_err(), "the full-attention group still bounds the context");
}

#[test]
fn chunked_prefill_keeps_what_the_first_query_of_the_next_chunk_needs() {
    let mut m = hybrid(32, 16, 1);
    let p = toks(30, 2);
    // First chunk 0..11: the window group gets blocks for the chunk only, the full group for all.
    let a = m.admit_chunked(&p, 11, 0).expect("fits");
    assert_eq!((m.table(0, a.slot).len(), m.table(1, a.slot).len()), (8, 3));
    m.commit(a.slot, &p[..11]);
    // The next chunk starts at 11, sees 6..: block 0 goes, block 1 (4..8) stays.
    assert_eq!(live(m.table(1, a.slot)).len(), 2);
    assert_eq!(m.table(1, a.slot)[0], None);
    // Second chunk 11..25 (the window group grows to 7 entries).
    assert!(m.reserve_step(a.slot, 30, 25));
    assert_eq!(m.table(1, a.slot).len(), 7);
    assert_eq!(m.n_live_blocks(1, a.slot), 6);
    m.commit(a.slot, &p[11..25]);
    // Next query at 25 sees 20..: blocks 0..5 are released.
    assert_eq!(m.table(1, a.slot).iter().position(Option::is_some), Some(5));
    assert_eq!(m.fits_alone(30, 14), Ok(()));
    let err = m.fits_alone(100, 100).expect_err("a 100-token prompt in one chunk needs all its 25 blocks");
    assert_eq!(err, TooLarge::Window { n_tokens: 100, need: 25, n_blocks: 16 });
    assert_eq!(m.fits_alone(100, 40), Ok(()), "5 older positions + 40 span at most 12 blocks");
}

#[test]
fn a_prefix_hit_needs_only_the_window_blocks_before_its_end() {
    let mut m = hybrid(32, 12, 3);
    let p = toks(41, 3);
    let a = m.admit(&p, 0).expect("fits");
    m.commit(a.slot, &p);
    m.free(a.slot);
    // Window LRU, oldest first: blocks 0..9 (released while running, then the tail at free).
    let mut follow = p.clone();
    follow.extend([900, 901, 902, 903, 904, 905, 906]);
    assert_eq!(m.cached_prefix_len(&follow), 40);
    // An unrelated sequence evicts the oldest window blocks: the hit still needs only 8 and 9.
    let other = m.admit(&toks(12, 50), 0).expect("fits");
    assert_eq!(m.cached_prefix_len(&follow), 40);
    let b = m.admit(&follow, 0).expect("fits");
    assert_eq!(b.cached_tokens, 40);
    // The window table starts with holes up to what the query at 40 needs (35..): blocks 8, 9.
    let t = m.table(1, b.slot);
    assert_eq!(t.iter().position(Option::is_some), Some(8));
    assert_eq!(t.len(), 12);
    assert_eq!(m.pool(1).refcount(t[8].expect("hit")), 1);
    m.free(b.slot);
    m.free(other.slot);
}

#[test]
fn a_prefix_hit_is_limited_by_missing_window_blocks() {
    let mut m = hybrid(32, 12, 3);
    let p = toks(41, 3);
    let a = m.admit(&p, 0).expect("fits");
    m.commit(a.slot, &p);
    m.free(a.slot);
    // A sequence sharing the first 20 tokens holds window blocks 3 and 4 (what its query at 20
    // needs), so pressure cannot evict them.
    let mut short = p[..21].to_vec();
    short.extend([700, 701, 702]);
    let f = m.admit(&short, 0).expect("fits");
    assert_eq!(f.cached_tokens, 20);
    let held: Vec<BlockId> = live(m.table(1, f.slot))[..2].to_vec();
    // Pressure: 8 window blocks for an unrelated prompt evict 1 free + 7 LRU blocks
    // (0, 1, 2, 5, 6, 7, 8: oldest first); only block 9 stays cached.
    let g = m.admit(&toks(32, 60), 0).expect("fits");
    assert_eq!(m.group_stats(1).pool.cached, 1);
    // The full-attention group lost nothing: blocks 0..5 are held by `f`, 5..10 cached.
    assert_eq!(m.group_stats(0).pool.cached, 5);
    assert_eq!(m.group_stats(0).pool.used, 5 + 1 + 8);
    let mut follow = p.clone();
    follow.extend([900, 901, 902, 903, 904, 905, 906]);
    // All 10 full blocks of `p` are in group 0, but the query at 40 would need window blocks 8
    // and 9; the longest prefix whose last two window blocks exist is 5 blocks (3 and 4).
    assert_eq!(m.cached_prefix_len(&follow), 20);
    // `g` ends (its blocks held no full computed block: they go back free, not cached).
    m.free(g.slot);
    assert_eq!(m.cached_prefix_len(&follow), 20);
    let b = m.admit(&follow, 0).expect("fits");
    assert_eq!(b.cached_tokens, 20);
    assert_eq!(live(m.table(1, b.slot))[..2], held[..]);
    assert_eq!(m.pool(1).refcount(held[0]), 2, "shared with the sequence that kept them");
    m.free(f.slot);
    m.free(b.slot);
    // With nothing left in the window group at all, no prefix is usable however long the
    // full-attention group's hit.
    m.clear_cache();
    let c = m.admit(&p, 0).expect("fits");
    m.commit(c.slot, &p);
    m.free(c.slot);
    let pressure = m.admit(&toks(48, 70), 0).expect("all 12 window blocks");
    assert_eq!(m.group_stats(1).pool.cached, 0);
    assert_eq!(m.cached_prefix_len(&follow), 0);
    m.free(pressure.slot);
}

#[test]
fn a_window_only_layout_reuses_a_prefix_without_its_first_blocks() {
    // No full-attention group: hits need not start at block 0 in the cache at all.
    let mut m = KvManager::with_groups(&[GroupSpec { window: Some(W), n_blocks: 12 }], BS, 2);
    assert_eq!(m.token_capacity(), None);
    let p = toks(41, 4);
    let a = m.admit(&p, 0).expect("fits");
    m.commit(a.slot, &p);
    m.free(a.slot);
    // LRU, oldest first: blocks 0..=9 (0..=8 released while running, 9 at free), plus 2 free.
    let mut follow = p.clone();
    follow.push(1);
    let x = m.admit(&toks(4, 80), 0).expect("fits");
    // One free block taken: 0..=9 are all still cached.
    assert_eq!(m.cached_prefix_len(&follow), 40);
    let y = m.admit_chunked(&toks(28, 81), 28, 0).expect("fits");
    // 7 more: the last free one and 6 evicted (blocks 0..=5); the query at 40 needs only 8, 9.
    assert_eq!(m.group_stats(0).pool.cached, 4);
    assert_eq!(m.cached_prefix_len(&follow), 40);
    m.free(x.slot);
    m.free(y.slot);
    let b = m.admit(&follow, 0).expect("fits");
    assert_eq!(b.cached_tokens, 40);
    assert_eq!(m.table(0, b.slot).iter().position(Option::is_some), Some(8));
}

#[test]
fn two_groups_are_reserved_all_or_nothing() {
    let mut m = hybrid(32, 4, 3);
    let p = toks(20, 0);
    let a = m.admit_chunked(&p, 8, 0).expect("fits");
    assert_eq!((m.table(0, a.slot).len(), m.table(1, a.slot).len()), (5, 2));
    let b = m.admit_chunked(&toks(20, 1), 8, 0).expect("fits");
    // The window group is full (2 + 2): growing `a` (a block in each group) fails as a whole.
    assert!(!m.reserve_step(a.slot, 24, 12));
    assert_eq!((m.table(0, a.slot).len(), m.table(1, a.slot).len()), (5, 2), "nothing changed");
    // Admission fails on the window group although the full group has room.
    assert_eq!(m.admit_chunked(&toks(4, 2), 4, 0), Err(AdmitError::NoBlocks { need: 1, available: 0 }));
    assert_eq!(m.stats().used, 14);
    m.free(b.slot);
    assert!(m.reserve_step(a.slot, 24, 12));
    assert_eq!((m.table(0, a.slot).len(), m.table(1, a.slot).len()), (6, 3));
    // Once `a` has computed 12 positions, block 0 (0..4) is out of its window: released, kept
    // cached, and taken by the next admission that needs it.
    m.commit(a.slot, &p[..12]);
    assert_eq!(m.group_stats(1).pool, PoolStats { total: 4, used: 2, cached: 1, free: 1 });
    let c = m.admit_chunked(&toks(6, 2), 6, 0).expect("fits");
    assert_eq!(m.group_stats(1).pool, PoolStats { total: 4, used: 4, cached: 0, free: 0 });
    m.free(c.slot);
    m.free(a.slot);
    assert_eq!(m.stats().used, 0);
}

#[test]
fn salted_prefixes_are_shared_only_within_one_tenant() {
    let mut m = KvManager::new(32, 4, 2);
    let p = toks(13, 9);
    let a = m.admit_salted(&p, p.len(), 0, 41).expect("fits");
    m.commit(a.slot, &p);
    m.free(a.slot);
    // Tenant 41 finds its three full blocks; tenant 42 and the shared cache find nothing.
    assert_eq!(m.cached_prefix_len_salted(&p, 41), 12);
    assert_eq!(m.cached_prefix_len_salted(&p, 42), 0);
    assert_eq!(m.cached_prefix_len(&p), 0);
    let b = m.admit_salted(&p, p.len(), 0, 42).expect("fits");
    assert_eq!(b.cached_tokens, 0);
    m.commit(b.slot, &p);
    m.free(b.slot);
    let c = m.admit_salted(&p, p.len(), 0, 41).expect("fits");
    assert_eq!(c.cached_tokens, 12);
    m.free(c.slot);
    // Salt 0 is the shared cache of unsalted admissions.
    let d = m.admit(&p, 0).expect("fits");
    assert_eq!(d.cached_tokens, 0);
    m.commit(d.slot, &p);
    m.free(d.slot);
    assert_eq!(m.cached_prefix_len_salted(&p, 0), 12);
    assert_eq!(m.stats().cached, 9);
}

#[test]
fn a_disk_import_fills_every_full_block_and_only_the_window_blocks_the_hit_needs() {
    // A fresh (restarted) cache: nothing cached, every block of the prefix "on disk".
    let mut m = hybrid(32, 8, 2);
    let mut follow = toks(40, 5);
    follow.push(1);
    let (hashes, k) = m.prefix_plan(&follow, 0);
    assert_eq!((hashes.len(), k), (10, 0));
    let on_disk = |_: usize| true;
    assert_eq!(m.full_groups_reach(&hashes, k, &on_disk), 10);
    assert!(m.hit_possible(&hashes, 10, &on_disk));
    assert!(!m.hit_possible(&hashes, 10, &|i| i != 8), "the window layers at 40 need block 8");
    assert!(m.hit_possible(&hashes, 8, &|i| i != 8));
    assert!(m.import_fits(follow.len(), 8, &hashes, 10, 0));
    let mut filled = Vec::new();
    let n = m.import(&hashes, 10, |i, blocks| {
        filled.push((i, blocks.iter().map(|&(g, _)| g).collect::<Vec<_>>()));
        true
    });
    assert_eq!(n, 10);
    // Blocks 0..8 go to the full group only; 8 and 9 (positions 32..40, the window before 40)
    // to both.
    let expect: Vec<(usize, Vec<usize>)> = (0..10).map(|i| (i, if i >= 8 { vec![0, 1] } else { vec![0] })).collect();
    assert_eq!(filled, expect);
    assert_eq!((m.group_stats(0).pool.cached, m.group_stats(1).pool.cached), (10, 2));
    let b = m.admit_chunked(&follow, 8, 0).expect("fits");
    assert_eq!(b.cached_tokens, 40);
    // A fill that fails stops the import there; nothing half-imported is registered.
    let mut m = hybrid(32, 8, 2);
    let n = m.import(&hashes, 10, |i, _| i < 3);
    assert_eq!(n, 3);
    assert_eq!(m.cached_prefix_len(&follow), 0, "the window blocks before 40 never came");
    assert_eq!(m.group_stats(0).pool.cached, 3);
    // Too little room in the window group: the import (and admission) does not fit.
    let small = hybrid(32, 2, 2);
    assert!(!small.import_fits(follow.len(), 8, &hashes, 10, 0));
}

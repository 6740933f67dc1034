//! Scheduler tests with fake sequences: no tensors, but a fake block store that records which
//! token each physical (block, row) holds, so every "forward pass" can check that a sequence
//! would attend to exactly its own history through its block table.

use std::collections::HashMap;

use super::*;

fn sched(max_seqs: usize, budget: usize) -> Scheduler {
    Scheduler::new(SchedConfig { max_seqs, step_token_budget: budget })
}

fn prompt(n: usize, seed: u32) -> Vec<TokenId> {
    (0..n as u32).map(|i| (i * 31 + seed * 7919) % 5000).collect()
}

/// The fake model: the next token is a function of the whole history.
fn next_token(history: &[TokenId]) -> TokenId {
    history.iter().fold(17u32, |h, &t| h.wrapping_mul(31).wrapping_add(t)) % 5000
}

/// Stands in for the K/V data: `cells[group][block][row]` is the token whose K/V that row holds.
struct FakeStore {
    cells: Vec<Vec<Vec<Option<TokenId>>>>,
}

impl FakeStore {
    fn new(kv: &KvManager) -> Self {
        FakeStore { cells: (0..kv.n_groups()).map(|g| vec![vec![None; kv.block_size()]; kv.pool(g).n_blocks()]).collect() }
    }

    /// Runs `plan` like a forward pass: writes each item's tokens through its block tables, then
    /// checks that every query of every item would see exactly its sequence's tokens where its
    /// layers look (everything for full attention, the last `w` positions for a window `w`),
    /// and returns the samples.
    fn forward(&mut self, s: &Scheduler, kv: &KvManager, plan: &Plan) -> Vec<(SeqId, TokenId)> {
        let bs = kv.block_size();
        for it in &plan.items {
            let toks = s.tokens(it.id).expect("planned sequence is live");
            for g in 0..kv.n_groups() {
                let table = kv.table(g, it.slot);
                for p in it.start..it.start + it.len {
                    let b = table[p / bs].unwrap_or_else(|| panic!("{:?} writes position {p} into a released block", it.id));
                    assert_eq!(kv.pool(g).refcount(b), 1, "{:?} writes position {p} into shared block {b:?}", it.id);
                    self.cells[g][b.index()][p % bs] = Some(toks[p]);
                }
            }
        }
        for it in &plan.items {
            let toks = s.tokens(it.id).expect("planned sequence is live");
            let end = it.start + it.len;
            for g in 0..kv.n_groups() {
                // The chunk's first query sees the earliest positions.
                let first = kv.window(g).map_or(0, |w| (it.start + 1).saturating_sub(w));
                let table = kv.table(g, it.slot);
                let seen: Vec<Option<TokenId>> = (first..end).map(|p| table[p / bs].and_then(|b| self.cells[g][b.index()][p % bs])).collect();
                let want: Vec<Option<TokenId>> = toks[first..end].iter().map(|&t| Some(t)).collect();
                assert_eq!(seen, want, "{:?} would attend to a wrong history in group {g}", it.id);
            }
        }
        plan.items.iter().filter(|i| i.sample).map(|it| (it.id, next_token(s.tokens(it.id).expect("live")))).collect()
    }
}

/// Runs every sequence to `max_new` generated tokens; returns the generated tokens, the plans
/// and the number of steps.
struct Sim {
    s: Scheduler,
    kv: KvManager,
    store: FakeStore,
    max_new: HashMap<SeqId, usize>,
    generated: HashMap<SeqId, Vec<TokenId>>,
    plans: Vec<Plan>,
    cached: HashMap<SeqId, usize>,
    /// Per group, the most blocks in use after any step's reservations.
    most_used: Vec<usize>,
}

impl Sim {
    fn new(s: Scheduler, kv: KvManager) -> Self {
        let store = FakeStore::new(&kv);
        let most_used = vec![0; kv.n_groups()];
        Sim { s, kv, store, max_new: HashMap::new(), generated: HashMap::new(), plans: Vec::new(), cached: HashMap::new(), most_used }
    }

    fn add(&mut self, id: u64, prompt: Vec<TokenId>, max_new: usize) {
        self.s.add(SeqId(id), prompt);
        self.max_new.insert(SeqId(id), max_new);
    }

    fn step(&mut self) {
        let plan = self.s.step(&mut self.kv);
        for g in 0..self.kv.n_groups() {
            self.most_used[g] = self.most_used[g].max(self.kv.group_stats(g).pool.used);
        }
        assert!(plan.n_tokens() <= self.s.config().step_token_budget);
        for a in &plan.admitted {
            if !a.resumed {
                self.cached.insert(a.id, a.cached_tokens);
            }
        }
        let samples = self.store.forward(&self.s, &self.kv, &plan);
        self.s.complete(&mut self.kv, &plan);
        for (id, t) in samples {
            let g = self.generated.entry(id).or_default();
            g.push(t);
            if g.len() >= self.max_new[&id] {
                assert!(self.s.remove(&mut self.kv, id));
            } else {
                self.s.push_token(id, t);
            }
        }
        self.plans.push(plan);
    }

    fn run(&mut self, max_steps: usize) {
        let mut n = 0;
        while !self.s.is_idle() {
            self.step();
            n += 1;
            assert!(n <= max_steps, "no progress after {max_steps} steps");
        }
        assert_eq!(self.kv.stats().used, 0, "finished sequences hold no blocks");
    }
}

/// What a sequence generates alone (the fake model is deterministic).
fn solo(prompt: &[TokenId], max_new: usize) -> Vec<TokenId> {
    let mut h = prompt.to_vec();
    let mut out = Vec::new();
    while out.len() < max_new {
        let t = next_token(&h);
        out.push(t);
        h.push(t);
    }
    out
}

#[test]
fn a_long_prompt_is_prefilled_in_budget_chunks() {
    let mut s = sched(4, 512);
    let mut kv = KvManager::new(200, 16, 4);
    s.add(SeqId(1), prompt(1200, 1));
    let mut chunks = Vec::new();
    for _ in 0..3 {
        let plan = s.step(&mut kv);
        assert_eq!(plan.items.len(), 1);
        let it = plan.items[0];
        chunks.push((it.start, it.len, it.sample));
        s.complete(&mut kv, &plan);
    }
    assert_eq!(chunks, vec![(0, 512, false), (512, 512, false), (1024, 176, true)]);
    assert_eq!(kv.committed(0).len(), 1200);
}

#[test]
fn decodes_go_first_and_prompts_share_the_rest_of_the_budget() {
    let mut sim = Sim::new(sched(4, 64), KvManager::new(64, 16, 4));
    sim.add(1, prompt(10, 1), 100);
    sim.step();
    sim.add(2, prompt(300, 2), 5);
    sim.add(3, prompt(5, 3), 5);
    sim.step();
    let p = sim.plans.last().expect("a plan");
    let items: Vec<_> = p.items.iter().map(|i| (i.id.0, i.start, i.len, i.sample)).collect();
    // Sequence 1 decodes; 2 takes the remaining 63 tokens; 3 waits (no budget left).
    assert_eq!(items, vec![(1, 10, 1, true), (2, 0, 63, false)]);
    sim.step();
    let items: Vec<_> = sim.plans.last().expect("a plan").items.iter().map(|i| (i.id.0, i.start, i.len)).collect();
    assert_eq!(items, vec![(1, 11, 1), (2, 63, 63)]);
    // The short prompt gets in once the long one is done with its budget share.
    sim.run(100);
    for id in 1..=3 {
        let n = sim.max_new[&SeqId(id)];
        assert_eq!(sim.generated[&SeqId(id)], solo(&prompt([10, 300, 5][id as usize - 1], id as u32), n));
    }
}

#[test]
fn admission_is_fifo_and_capped_by_max_seqs() {
    let mut s = sched(2, 512);
    let mut kv = KvManager::new(64, 16, 2);
    for id in 0..3 {
        s.add(SeqId(id), prompt(8, id as u32));
    }
    let plan = s.step(&mut kv);
    let admitted: Vec<u64> = plan.admitted.iter().map(|a| a.id.0).collect();
    assert_eq!(admitted, vec![0, 1]);
    assert_eq!((s.n_running(), s.n_waiting()), (2, 1));
    s.complete(&mut kv, &plan);
    assert!(s.remove(&mut kv, SeqId(0)));
    let plan = s.step(&mut kv);
    assert_eq!(plan.admitted.iter().map(|a| a.id.0).collect::<Vec<_>>(), vec![2]);
}

#[test]
fn a_prompt_at_the_head_that_does_not_fit_is_not_overtaken() {
    // 10 blocks of 4 tokens.
    let mut s = sched(4, 512);
    let mut kv = KvManager::new(10, 4, 4);
    s.add(SeqId(1), prompt(20, 1)); // 5 blocks
    let plan = s.step(&mut kv);
    s.complete(&mut kv, &plan);
    s.push_token(SeqId(1), 7);
    s.add(SeqId(2), prompt(30, 2)); // 8 blocks: must wait for 1 to finish
    s.add(SeqId(3), prompt(4, 3)); // 1 block: would fit, but arrives later
    let plan = s.step(&mut kv);
    assert!(plan.admitted.is_empty());
    assert_eq!(s.n_waiting(), 2);
    s.complete(&mut kv, &plan);
    s.remove(&mut kv, SeqId(1));
    let plan = s.step(&mut kv);
    // Now both fit (8 + 1 blocks of 10, one spare for the growth of 2), in arrival order.
    assert_eq!(plan.admitted.iter().map(|a| a.id.0).collect::<Vec<_>>(), vec![2, 3]);
}

#[test]
fn a_prompt_larger_than_the_whole_cache_is_rejected_and_others_proceed() {
    let mut sim = Sim::new(sched(4, 512), KvManager::new(4, 4, 4));
    sim.add(1, prompt(17, 1), 3); // 5 blocks > 4
    sim.add(2, prompt(6, 2), 3);
    sim.step();
    let p = &sim.plans[0];
    assert_eq!(p.rejected.len(), 1);
    assert_eq!(p.rejected[0].0, SeqId(1));
    assert!(p.rejected[0].1.contains("17 tokens"), "{}", p.rejected[0].1);
    sim.run(20);
    assert_eq!(sim.generated[&SeqId(2)], solo(&prompt(6, 2), 3));
}

#[test]
fn a_lone_sequence_that_outgrows_the_cache_is_finished_not_stuck() {
    let mut sim = Sim::new(sched(4, 512), KvManager::new(2, 4, 4));
    sim.add(1, prompt(5, 1), 100);
    let mut steps = 0;
    while sim.plans.last().is_none_or(|p| p.exhausted.is_empty()) {
        sim.step();
        steps += 1;
        assert!(steps < 20);
    }
    // 8 positions: the prompt's 5 plus 3 fed tokens; the 4th sampled one has nowhere to go.
    assert_eq!(sim.generated[&SeqId(1)].len(), 4);
    assert!(sim.s.is_idle());
    assert_eq!(sim.kv.stats().used, 0);
}

#[test]
fn preemption_frees_the_newest_which_resumes_from_its_cached_prefix() {
    // 6 blocks of 4 tokens; two sequences of 7 prompt tokens (2 blocks each) growing to 20.
    let mut sim = Sim::new(sched(4, 512), KvManager::new(6, 4, 4));
    sim.add(1, prompt(7, 1), 13);
    sim.add(2, prompt(7, 2), 13);
    sim.run(200);
    let preempted: Vec<SeqId> = sim.plans.iter().flat_map(|p| p.preempted.iter().copied()).collect();
    assert!(!preempted.is_empty(), "the cache is too small for both: someone must be preempted");
    assert!(preempted.iter().all(|&id| id == SeqId(2)), "only the newest is preempted: {preempted:?}");
    let resumed: Vec<Admission> = sim.plans.iter().flat_map(|p| p.admitted.iter().copied()).filter(|a| a.resumed).collect();
    assert!(resumed.iter().any(|a| a.cached_tokens > 0), "resuming reuses the cached full blocks: {resumed:?}");
    for id in [1, 2] {
        assert_eq!(sim.generated[&SeqId(id)], solo(&prompt(7, id as u32), 13), "seq {id}");
    }
}

#[test]
fn a_follow_up_turn_reuses_the_conversation_prefix() {
    let mut sim = Sim::new(sched(4, 512), KvManager::new(32, 4, 4));
    let p1 = prompt(10, 1);
    sim.add(1, p1.clone(), 6);
    sim.run(50);
    let mut p2 = p1.clone();
    p2.extend(&sim.generated[&SeqId(1)]);
    p2.extend([4000, 4001, 4002]);
    sim.add(2, p2.clone(), 4);
    sim.run(50);
    // 10 + 6 generated (the last one never fed) = 15 computed: 3 full blocks.
    assert_eq!(sim.cached[&SeqId(2)], 12);
    assert_eq!(sim.generated[&SeqId(2)], solo(&p2, 4));
}

#[test]
fn removing_a_waiting_or_running_sequence_frees_its_blocks() {
    let mut s = sched(1, 512);
    let mut kv = KvManager::new(16, 4, 1);
    s.add(SeqId(1), prompt(9, 1));
    s.add(SeqId(2), prompt(9, 2));
    let plan = s.step(&mut kv);
    assert_eq!(kv.stats().used, 3);
    s.complete(&mut kv, &plan);
    assert!(s.remove(&mut kv, SeqId(2)), "waiting");
    assert!(s.remove(&mut kv, SeqId(1)), "running");
    assert!(!s.remove(&mut kv, SeqId(1)));
    assert_eq!(kv.stats().used, 0);
    assert_eq!(kv.stats().cached, 2, "its full blocks stay cached");
    assert!(s.is_idle());
}

#[test]
fn many_sequences_under_memory_pressure_all_finish_with_their_solo_output() {
    // 24 sequences, some sharing a 20-token system prompt, in a cache of 40 blocks of 4
    // (160 positions), max 6 running, budget 32: chunking, admission waits, preemption and
    // prefix hits all happen; every output must equal the solo run.
    let mut sim = Sim::new(sched(6, 32), KvManager::new(40, 4, 6));
    let system = prompt(20, 99);
    let mut prompts = HashMap::new();
    let mut x: u64 = 12345;
    for id in 0..24u64 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let own = prompt(1 + (x >> 33) as usize % 40, id as u32 + 1);
        let p: Vec<TokenId> = if id % 3 == 0 { own } else { system.iter().chain(&own).copied().collect() };
        let max_new = 1 + (x >> 20) as usize % 30;
        prompts.insert(SeqId(id), (p.clone(), max_new));
        sim.add(id, p, max_new);
        if id % 4 == 3 {
            sim.step();
        }
    }
    sim.run(2000);
    for (id, (p, n)) in &prompts {
        assert_eq!(&sim.generated[id], &solo(p, *n), "{id:?}");
    }
    assert!(sim.plans.iter().any(|p| !p.preempted.is_empty()), "the test should exercise preemption");
    assert!(sim.cached.values().any(|&c| c > 0), "the test should exercise prefix hits");
    assert!(sim.plans.iter().all(|p| p.items.len() <= 6));
}

// ---- a model with sliding-window layers: a full-attention group (0) and a window group (1) ----

const W: usize = 8;
const BS: usize = 4;

fn hybrid(n_full: usize, n_window: usize, n_slots: usize) -> KvManager {
    use crate::kv::paged::GroupSpec;
    KvManager::with_groups(&[GroupSpec { window: None, n_blocks: n_full }, GroupSpec { window: Some(W), n_blocks: n_window }], BS, n_slots)
}

#[test]
fn a_long_sequence_holds_a_bounded_number_of_window_blocks_while_it_grows() {
    use crate::kv::paged::window_footprint;
    // A 100-token prompt in chunks of 16, then 300 generated tokens: 400 positions.
    let mut sim = Sim::new(sched(1, 16), hybrid(128, 64, 1));
    sim.add(1, prompt(100, 1), 300);
    let mut window_used = Vec::new();
    while !sim.s.is_idle() {
        sim.step();
        window_used.push(sim.kv.group_stats(1).pool.used);
    }
    assert_eq!(sim.generated[&SeqId(1)], solo(&prompt(100, 1), 300));
    // Prefill steps hold the window plus a 16-token chunk: at most 7 blocks for 7 + 16
    // positions, 6 here since the chunks start on block boundaries; decode steps the window
    // plus one.
    assert_eq!(window_footprint(W, 400, 16, BS), 7);
    assert_eq!(sim.most_used[1], 6);
    let decode_most = window_used[10..window_used.len() - 1].iter().max().copied().expect("steps");
    assert_eq!(decode_most, window_footprint(W, 400, 1, BS), "{window_used:?}");
    // The full-attention group held every position.
    assert_eq!(sim.most_used[0], 100);
    assert!(sim.plans.iter().all(|p| p.preempted.is_empty() && p.exhausted.is_empty()));
}

#[test]
fn preemption_when_the_window_group_runs_dry() {
    // Plenty of full-attention blocks, but 5 window blocks: two sequences past position 8 need
    // 3 each (7 older positions + 1), so the newer is preempted for the older and resumes
    // later.
    let mut sim = Sim::new(sched(4, 64), hybrid(256, 5, 4));
    for id in 1..=4 {
        sim.add(id, prompt(6, id as u32), 40);
    }
    sim.run(2000);
    for id in 1..=4 {
        assert_eq!(sim.generated[&SeqId(id)], solo(&prompt(6, id as u32), 40), "seq {id}");
    }
    let preempted: Vec<SeqId> = sim.plans.iter().flat_map(|p| p.preempted.iter().copied()).collect();
    assert!(!preempted.is_empty(), "the window group is too small for all four");
    assert!(!preempted.contains(&SeqId(1)), "the oldest always progresses");
    assert!(sim.most_used[1] <= 5);
    assert!(sim.plans.iter().all(|p| p.exhausted.is_empty() && p.rejected.is_empty()));
    assert!(sim.most_used[0] > 5, "the full-attention group was never the limit");
}

#[test]
fn preemption_when_the_full_group_runs_dry_with_two_groups() {
    let mut sim = Sim::new(sched(4, 64), hybrid(12, 64, 4));
    for id in 1..=3 {
        sim.add(id, prompt(7, id as u32), 13);
    }
    sim.run(2000);
    for id in 1..=3 {
        assert_eq!(sim.generated[&SeqId(id)], solo(&prompt(7, id as u32), 13), "seq {id}");
    }
    assert!(sim.plans.iter().any(|p| !p.preempted.is_empty()));
}

#[test]
fn a_prefix_hit_is_limited_by_window_blocks_evicted_under_pressure() {
    let turn1 = prompt(30, 1);
    let run_turns = |n_window: usize| {
        let mut sim = Sim::new(sched(2, 64), hybrid(64, n_window, 2));
        sim.add(1, turn1.clone(), 6);
        sim.run(100);
        let mut turn2 = turn1.clone();
        turn2.extend(&sim.generated[&SeqId(1)]);
        turn2.extend([4000, 4001, 4002]);
        // Between the turns, an unrelated request passes through the window group.
        sim.add(2, prompt(40, 2), 2);
        sim.run(100);
        sim.add(3, turn2.clone(), 4);
        sim.run(100);
        assert_eq!(sim.generated[&SeqId(3)], solo(&turn2, 4));
        sim.cached[&SeqId(3)]
    };
    // 30 + 6 generated (the last one never fed) = 35 computed: 8 full blocks reusable when
    // the window group kept blocks 6 and 7 (what the query at 32 needs).
    assert_eq!(run_turns(40), 32);
    // A window group of 12 blocks: request 2's 40-token prompt (10 blocks at once, 64-token
    // steps) evicts every window block of turn 1 (the full-attention group still has all of
    // them): no prefix is usable.
    assert_eq!(run_turns(12), 0);
}

#[test]
fn a_prompt_whose_steps_need_more_window_blocks_than_exist_is_rejected() {
    // 3 window blocks of 4 with w = 8: a 40-token prompt in 32-token steps needs 10.
    let mut sim = Sim::new(sched(2, 32), hybrid(64, 3, 2));
    sim.add(1, prompt(40, 1), 3);
    sim.add(2, prompt(8, 2), 30);
    sim.step();
    let p = &sim.plans[0];
    assert_eq!(p.rejected.len(), 1);
    assert!(p.rejected[0].1.contains("sliding-window"), "{}", p.rejected[0].1);
    sim.run(200);
    // An 8-token prompt fits, and decoding needs at most 3 window blocks (7 older positions + 1).
    assert_eq!(sim.generated[&SeqId(2)], solo(&prompt(8, 2), 30));
}

#[test]
fn many_sequences_with_a_sliding_window_all_finish_with_their_solo_output() {
    // The memory-pressure mix above on a two-group cache: both groups run short at times.
    let mut sim = Sim::new(sched(6, 32), hybrid(40, 30, 6));
    let system = prompt(20, 99);
    let mut prompts = HashMap::new();
    let mut x: u64 = 777;
    for id in 0..30u64 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let own = prompt(1 + (x >> 33) as usize % 40, id as u32 + 1);
        let p: Vec<TokenId> = if id % 3 == 0 { own } else { system.iter().chain(&own).copied().collect() };
        let max_new = 1 + (x >> 20) as usize % 40;
        prompts.insert(SeqId(id), (p.clone(), max_new));
        sim.add(id, p, max_new);
        if id % 4 == 3 {
            sim.step();
        }
    }
    sim.run(4000);
    for (id, (p, n)) in &prompts {
        assert_eq!(&sim.generated[id], &solo(p, *n), "{id:?}");
    }
    assert!(sim.plans.iter().any(|p| !p.preempted.is_empty()), "the test should exercise preemption");
    assert!(sim.cached.values().any(|&c| c > 0), "the test should exercise prefix hits");
    assert!(sim.most_used[1] <= 30);
    assert_eq!(sim.kv.stats().used, 0);
}

//! [`Scheduler`]: which sequences run in the next forward pass, and how much of each.
//!
//! A synchronous state machine over token counts, driven once per engine step (no tensors, no
//! threads: unit-tested directly). Policies, after vLLM's V1 scheduler and TGI's queue:
//!
//! - **Continuous batching**: new sequences join at step boundaries, finished ones leave.
//! - **Decode first, then chunked prefill** under a per-step token budget: every running
//!   sequence that is generating gets its one token; the rest of the budget goes to prompts,
//!   oldest first, in chunks, so a long prompt never stalls the running streams for more than
//!   one budget's worth of compute.
//! - **Admission** in arrival order (strict FIFO: a large prompt at the head is not overtaken,
//!   so it cannot starve), up to `max_seqs` running, when the [`KvManager`] can hold the whole
//!   prompt (minus its cached prefix) plus one block of growth per running sequence, in every
//!   layer group. Sliding-window groups (Gemma 3's local layers) are held to what the next
//!   chunk needs: they get blocks step by step and release those no query can see any more, so
//!   a long sequence holds a bounded number of them.
//! - **Preemption by recomputation**: when a running sequence needs a new block (in any group)
//!   and none is left, the newest running sequence is freed and put back at the head of the queue with all
//!   its tokens (prompt + generated so far); its full blocks stay in the prefix cache, so
//!   resuming usually recomputes only its last partial block.
//! - **No deadlock**: a prompt larger than the whole cache (or whose steps need more window
//!   blocks than the window group has) is rejected; a sequence that cannot grow even when
//!   running alone is finished (the cache is its context limit); otherwise the oldest running
//!   sequence always progresses.
//!
//! One step, as the runner drives it:
//!
//! ```text
//!   plan = sched.step(&mut kv)          // admit / preempt / reserve blocks, pick tokens
//!   forward(batch built from plan.items) // tokens[start..start+len] of each item's sequence
//!   sched.complete(&mut kv, &plan)       // K/V computed: commit (fills the prefix cache,
//!                                        // releases window blocks out of every query's sight)
//!   for items with `sample`: sched.push_token(id, t)  or  sched.remove(&mut kv, id)
//! ```

use std::collections::VecDeque;

use crate::kv::paged::{AdmitError, KvManager};
use crate::TokenId;

#[cfg(test)]
mod tests;

/// A sequence's id, chosen by the caller (unique among live sequences).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeqId(pub u64);

#[derive(Clone, Copy, Debug)]
pub struct SchedConfig {
    /// Most sequences running at once.
    pub max_seqs: usize,
    /// Most tokens in one forward pass (raised to `max_seqs` so every decode fits).
    pub step_token_budget: usize,
}

/// Tokens of one sequence to run in this step: positions `start..start + len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanItem {
    pub id: SeqId,
    /// KV slot (the `seq` of [`crate::kv::KvStore`]).
    pub slot: usize,
    pub start: usize,
    pub len: usize,
    /// The chunk ends at the sequence's last token: sample the next one from its logits.
    pub sample: bool,
}

/// A sequence that started (or resumed) running in this step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admission {
    pub id: SeqId,
    /// Leading tokens reused from the prefix cache.
    pub cached_tokens: usize,
    /// Whether it had run before and was preempted.
    pub resumed: bool,
}

/// The decisions of one step.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// In batch order: decodes first (oldest first), then prefill chunks.
    pub items: Vec<PlanItem>,
    pub admitted: Vec<Admission>,
    /// Sent back to the queue (their K/V freed) to make room; they resume later.
    pub preempted: Vec<SeqId>,
    /// Removed: the prompt can never fit in the cache.
    pub rejected: Vec<(SeqId, String)>,
    /// Removed: cannot grow even when running alone (the cache is full): finish with `length`.
    pub exhausted: Vec<SeqId>,
}

impl Plan {
    pub fn n_tokens(&self) -> usize {
        self.items.iter().map(|i| i.len).sum()
    }
}

#[derive(Debug)]
struct Seq {
    id: SeqId,
    /// Prompt then generated tokens; the last one may not be computed yet.
    tokens: Vec<TokenId>,
    n_prompt: usize,
    /// Leading tokens whose K/V are in the cache.
    n_computed: usize,
    slot: Option<usize>,
    /// Arrival order: admission and preemption priority.
    arrival: u64,
    admitted_before: bool,
    /// Prefix-cache salt of the sequence's tenant (0: shared).
    salt: u64,
}

/// See the module docs.
#[derive(Debug)]
pub struct Scheduler {
    cfg: SchedConfig,
    /// Not running, in arrival order (preempted sequences go back in their place).
    waiting: VecDeque<Seq>,
    /// In arrival order: the newest is last (preempted first).
    running: Vec<Seq>,
    next_arrival: u64,
}

impl Scheduler {
    pub fn new(cfg: SchedConfig) -> Self {
        let max_seqs = cfg.max_seqs.max(1);
        let cfg = SchedConfig { max_seqs, step_token_budget: cfg.step_token_budget.max(max_seqs) };
        Scheduler { cfg, waiting: VecDeque::new(), running: Vec::new(), next_arrival: 0 }
    }

    pub fn config(&self) -> SchedConfig {
        self.cfg
    }
    pub fn n_waiting(&self) -> usize {
        self.waiting.len()
    }
    pub fn n_running(&self) -> usize {
        self.running.len()
    }
    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.running.is_empty()
    }
    /// Ids of every live sequence (running, then waiting).
    pub fn ids(&self) -> impl Iterator<Item = SeqId> + '_ {
        self.running.iter().chain(&self.waiting).map(|s| s.id)
    }

    /// The first `n` waiting sequences (the next to be admitted, in order): id, tokens, salt.
    pub fn waiting_front(&self, n: usize) -> impl Iterator<Item = (SeqId, &[TokenId], u64)> + '_ {
        self.waiting.iter().take(n).map(|s| (s.id, s.tokens.as_slice(), s.salt))
    }

    /// Queues a new sequence. `prompt` must not be empty.
    pub fn add(&mut self, id: SeqId, prompt: Vec<TokenId>) {
        self.add_salted(id, prompt, 0);
    }

    /// [`add`](Self::add) for a tenant whose prefix-cache blocks are keyed by `salt` (0: shared).
    pub fn add_salted(&mut self, id: SeqId, prompt: Vec<TokenId>, salt: u64) {
        assert!(!prompt.is_empty(), "empty prompt");
        let arrival = self.next_arrival;
        self.next_arrival += 1;
        self.waiting.push_back(Seq {
            id,
            n_prompt: prompt.len(),
            tokens: prompt,
            n_computed: 0,
            slot: None,
            arrival,
            admitted_before: false,
            salt,
        });
    }

    fn find(&self, id: SeqId) -> Option<&Seq> {
        self.running.iter().chain(&self.waiting).find(|s| s.id == id)
    }

    /// All tokens of `id` so far (prompt then generated).
    pub fn tokens(&self, id: SeqId) -> Option<&[TokenId]> {
        self.find(id).map(|s| s.tokens.as_slice())
    }
    /// Prompt length of `id`.
    pub fn n_prompt(&self, id: SeqId) -> Option<usize> {
        self.find(id).map(|s| s.n_prompt)
    }
    pub fn is_running(&self, id: SeqId) -> bool {
        self.running.iter().any(|s| s.id == id)
    }

    /// Decides the next step; see the module docs. Blocks for every planned position are
    /// reserved in `kv` when this returns.
    pub fn step(&mut self, kv: &mut KvManager) -> Plan {
        let mut plan = Plan::default();
        let mut budget = self.plan_running(kv, &mut plan);

        // Admission. Not in a step that had to preempt: memory is short, and re-admitting what
        // was just preempted would only thrash.
        while budget > 0 && plan.preempted.is_empty() && self.running.len() < self.cfg.max_seqs {
            let Some(front) = self.waiting.front() else { break };
            if let Err(too_large) = kv.fits_alone(front.tokens.len(), self.cfg.step_token_budget) {
                let s = self.waiting.pop_front().expect("invariant: front exists");
                if s.tokens.len() > s.n_prompt {
                    plan.exhausted.push(s.id);
                } else {
                    plan.rejected.push((s.id, too_large.to_string()));
                }
                continue;
            }
            // One block of growth for each running sequence, so admitting does not force an
            // immediate preemption.
            let headroom = self.running.len();
            match kv.admit_salted(&front.tokens, budget, headroom, front.salt) {
                Ok(a) => {
                    let mut s = self.waiting.pop_front().expect("invariant: front exists");
                    s.slot = Some(a.slot);
                    s.n_computed = a.cached_tokens;
                    plan.admitted.push(Admission { id: s.id, cached_tokens: a.cached_tokens, resumed: s.admitted_before });
                    s.admitted_before = true;
                    let need = s.tokens.len() - s.n_computed;
                    let len = need.min(budget);
                    budget -= len;
                    plan.items.push(PlanItem { id: s.id, slot: a.slot, start: s.n_computed, len, sample: len == need });
                    let at = self.running.partition_point(|r| r.arrival < s.arrival);
                    self.running.insert(at, s);
                }
                Err(AdmitError::NoSlot | AdmitError::NoBlocks { .. }) => break,
            }
        }
        plan
    }

    /// Plans the running sequences' tokens (decodes first, so streams keep their pace; then
    /// prompt chunks, oldest first) and reserves their blocks, oldest first, preempting the
    /// newest when a pool runs dry (and planning again without it). Returns the budget left.
    fn plan_running(&mut self, kv: &mut KvManager, plan: &mut Plan) -> usize {
        'plan: loop {
            plan.items.clear();
            let mut budget = self.cfg.step_token_budget;
            for decode in [true, false] {
                for s in &self.running {
                    let need = s.tokens.len() - s.n_computed;
                    if (need == 1) != decode || budget == 0 || need == 0 {
                        continue;
                    }
                    let len = need.min(budget);
                    budget -= len;
                    let slot = s.slot.expect("invariant: running sequences have a slot");
                    plan.items.push(PlanItem { id: s.id, slot, start: s.n_computed, len, sample: len == need });
                }
            }
            // Full-attention groups hold every token of a sequence; sliding-window groups get
            // the blocks of this step's chunk (see `KvManager::reserve_step`).
            for i in 0..self.running.len() {
                let s = &self.running[i];
                let slot = s.slot.expect("invariant: running sequences have a slot");
                let step_end = plan.items.iter().find(|it| it.id == s.id).map_or(s.n_computed, |it| it.start + it.len);
                if kv.reserve_step(slot, s.tokens.len(), step_end) {
                    continue;
                }
                if self.running.len() == 1 {
                    // Alone and still no room: the cache cannot hold this sequence any longer.
                    let s = self.running.pop().expect("invariant: one running");
                    kv.free(slot);
                    plan.exhausted.push(s.id);
                } else {
                    let mut s = self.running.pop().expect("invariant: newest exists");
                    kv.free(s.slot.take().expect("invariant: running sequences have a slot"));
                    s.n_computed = 0;
                    plan.preempted.push(s.id);
                    let at = self.waiting.partition_point(|w| w.arrival < s.arrival);
                    self.waiting.insert(at, s);
                }
                continue 'plan;
            }
            return budget;
        }
    }

    /// Records that the forward pass of `plan` ran: its tokens' K/V are in the cache.
    pub fn complete(&mut self, kv: &mut KvManager, plan: &Plan) {
        for item in &plan.items {
            let Some(s) = self.running.iter_mut().find(|s| s.id == item.id) else { continue };
            debug_assert_eq!(s.n_computed, item.start);
            kv.commit(item.slot, &s.tokens[item.start..item.start + item.len]);
            s.n_computed += item.len;
        }
    }

    /// Appends the token sampled for `id`; it is fed in the next step.
    pub fn push_token(&mut self, id: SeqId, token: TokenId) {
        let s = self.running.iter_mut().find(|s| s.id == id).expect("push_token: not running");
        debug_assert_eq!(s.n_computed, s.tokens.len(), "a token is still pending");
        s.tokens.push(token);
    }

    /// Removes `id` (finished or cancelled), freeing its blocks (full ones stay cached).
    /// Returns false if it was not live.
    pub fn remove(&mut self, kv: &mut KvManager, id: SeqId) -> bool {
        if let Some(i) = self.running.iter().position(|s| s.id == id) {
            let s = self.running.remove(i);
            kv.free(s.slot.expect("invariant: running sequences have a slot"));
            return true;
        }
        if let Some(i) = self.waiting.iter().position(|s| s.id == id) {
            self.waiting.remove(i);
            return true;
        }
        false
    }
}

//! The engine thread's loop: intake, schedule, one batched forward, sample, stream.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::Instant;

use std::panic::{catch_unwind, AssertUnwindSafe};

mod disk;

use super::energy::{self, EnergyMeter};
use super::health::{panic_message, Fault, LastPanic};
use super::seq::{LiveSeq, Next};
use super::{Msg, Progress, SharedStats};
use crate::kv::paged::{GroupSpec, KvManager, PagedBuffers, PagedKv};
use crate::model::{Batch, ForwardCtx, Workspace};
use crate::sched::{Plan, SchedConfig, Scheduler, SeqId};
use crate::{Engine, FinishReason, TokenId};

pub(super) struct Worker {
    engine: Arc<Engine>,
    buffers: PagedBuffers,
    kv: KvManager,
    sched: Scheduler,
    n_ctx: usize,
    rx: Receiver<Msg>,
    stats: Arc<SharedStats>,
    live: HashMap<SeqId, LiveSeq>,
    next_id: u64,
    /// Set by a shutdown message: finish what runs until then.
    deadline: Option<Instant>,
    // Reused across steps: the decode loop allocates nothing once warm.
    batch: Batch,
    ws: Workspace,
    logits: Vec<f32>,
    lp_scratch: Vec<f32>,
    finished: Vec<SeqId>,
    /// The sequences of the step in progress: the ones that fail if it panics.
    current: Vec<SeqId>,
    /// What a fresh scheduler and KV bookkeeping are made from after a panic outside a step.
    groups: Vec<GroupSpec>,
    sched_cfg: SchedConfig,
    /// Tests only (see [`Fault`]).
    pub fault: Option<Fault>,
    /// Set by [`Fault::KillOnToken`]: the thread dies at the next turn of its loop.
    kill: bool,
    /// Requests ended so far; published with the rest of the step's stats.
    ended: u64,
    /// How the steps' energy is measured (set by the runner after `new`).
    pub meter: EnergyMeter,
    /// Reused: the step's tokens per item and their energy shares.
    energy_tokens: Vec<usize>,
    energy_shares: Vec<u64>,
    /// The KV disk tier (see [`disk`]).
    disk: Option<crate::kv::disk::DiskTier>,
    /// Waiting sequences already looked up on disk.
    disk_probed: std::collections::HashSet<SeqId>,
    /// Reused: the blocks a step filled.
    full_scratch: Vec<(usize, usize, crate::kv::paged::BlockHash)>,
}

impl Worker {
    /// `groups` are the block pools of `buffers`' layout, in its group order.
    pub fn new(
        engine: Arc<Engine>,
        buffers: PagedBuffers,
        groups: &[GroupSpec],
        cfg: SchedConfig,
        n_ctx: usize,
        rx: Receiver<Msg>,
        stats: Arc<SharedStats>,
    ) -> Self {
        let kv = KvManager::with_groups(groups, buffers.block_size(), cfg.max_seqs);
        Worker {
            engine,
            buffers,
            kv,
            sched: Scheduler::new(cfg),
            n_ctx,
            rx,
            stats,
            live: HashMap::new(),
            next_id: 0,
            deadline: None,
            batch: Batch::default(),
            ws: Workspace::default(),
            logits: Vec::new(),
            lp_scratch: Vec::new(),
            finished: Vec::new(),
            current: Vec::new(),
            groups: groups.to_vec(),
            sched_cfg: cfg,
            fault: None,
            kill: false,
            ended: 0,
            meter: EnergyMeter::new(&energy::EnergyConfig::default()),
            energy_tokens: Vec::new(),
            energy_shares: Vec::new(),
            disk: None,
            disk_probed: std::collections::HashSet::new(),
            full_scratch: Vec::new(),
        }
    }

    pub fn run(mut self) {
        loop {
            // Block only when there is nothing to do.
            if self.sched.is_idle() {
                self.publish();
                if self.deadline.is_some() {
                    break;
                }
                match self.rx.recv() {
                    Ok(msg) => self.intake(msg),
                    Err(_) => break,
                }
            }
            loop {
                match self.rx.try_recv() {
                    Ok(msg) => self.intake(msg),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        // Every handle is gone: nobody can read the results.
                        self.deadline.get_or_insert_with(Instant::now);
                        break;
                    }
                }
            }
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                self.end_all();
                self.publish();
                break;
            }
            if self.kill {
                // The injected fault: a panic no step catches ends the thread, as a bug would.
                panic!("injected fault: the engine thread dies");
            }
            self.guarded(|w| w.drop_cancelled());
            if !self.sched.is_idle() {
                self.guarded(|w| w.step());
            }
        }
        // Requests that raced with the shutdown.
        while let Ok(msg) = self.rx.try_recv() {
            if let Msg::Submit { sink, .. } = msg {
                self.stats.queue_depth.fetch_sub(1, Ordering::AcqRel);
                let _ = sink.send(super::Event::Error("the engine is shutting down".into()));
            }
        }
    }

    fn intake(&mut self, msg: Msg) {
        match msg {
            Msg::Shutdown { deadline } => {
                let d = self.deadline.map_or(deadline, |old| old.min(deadline));
                self.deadline = Some(d);
            }
            Msg::Submit { req, sink } => {
                if let Some(Fault::KillOnToken(t)) = self.fault {
                    self.kill |= req.prompt.contains(&t);
                }
                let id = SeqId(self.next_id);
                self.next_id += 1;
                let mut seq = LiveSeq::new(req.prompt.len(), req.params, sink);
                if seq.max_tokens() == 0 {
                    self.stats.queue_depth.fetch_sub(1, Ordering::AcqRel);
                    seq.finish(FinishReason::Length, None);
                    self.ended += 1;
                    return;
                }
                self.sched.add_salted(id, req.prompt, req.salt);
                self.live.insert(id, seq);
            }
        }
    }

    /// Removes sequences whose receiver is gone, freeing their blocks.
    fn drop_cancelled(&mut self) {
        self.finished.clear();
        for (&id, s) in self.live.iter_mut() {
            if s.sink_closed() {
                self.finished.push(id);
            }
        }
        for i in 0..self.finished.len() {
            let id = self.finished[i];
            self.retire(id);
        }
    }

    /// Forgets `id` everywhere (its blocks go back to the pool, full ones stay cached).
    fn retire(&mut self, id: SeqId) {
        self.sched.remove(&mut self.kv, id);
        self.disk_probed.remove(&id);
        if let Some(s) = self.live.remove(&id) {
            if !s.started {
                self.stats.queue_depth.fetch_sub(1, Ordering::AcqRel);
            }
            self.ended += 1;
        }
    }

    /// Ends every live sequence (shutdown deadline reached).
    fn end_all(&mut self) {
        let ids: Vec<SeqId> = self.live.keys().copied().collect();
        for id in ids {
            if let Some(s) = self.live.get_mut(&id) {
                if s.started {
                    s.finish(FinishReason::Cancelled, None);
                } else {
                    s.send_error("the engine is shutting down".into());
                }
            }
            self.retire(id);
        }
    }

    /// Runs `f` (a step, or the removal of cancelled sequences), catching a panic: the
    /// sequences of the step then get an error event and are retired, and the engine goes on
    /// (see [`super::health`]).
    fn guarded(&mut self, f: impl FnOnce(&mut Self)) {
        self.current.clear();
        let Err(payload) = catch_unwind(AssertUnwindSafe(|| f(self))) else { return };
        let message = panic_message(payload.as_ref());
        self.stats.panics_total.fetch_add(1, Ordering::Relaxed);
        *self.stats.last_panic.lock().unwrap_or_else(|p| p.into_inner()) = Some(LastPanic { at: Instant::now(), message: message.clone() });
        let error = format!("the engine failed while running this request ({message}); it was stopped and its memory released");
        let fresh = self.current.is_empty();
        let victims: Vec<SeqId> = if fresh { self.live.keys().copied().collect() } else { std::mem::take(&mut self.current) };
        for id in victims {
            if let Some(mut s) = self.live.remove(&id) {
                // A sink that panics again must not take the thread down.
                let _ = catch_unwind(AssertUnwindSafe(|| s.send_error(error.clone())));
                if !s.started {
                    self.stats.queue_depth.fetch_sub(1, Ordering::AcqRel);
                }
                self.ended += 1;
            }
            if !fresh {
                self.sched.remove(&mut self.kv, id);
            }
        }
        if fresh {
            // The panic came from outside any step's sequences (planning, bookkeeping): their
            // state cannot be trusted, so start them afresh (cached prefixes are dropped).
            self.kv = KvManager::with_groups(&self.groups, self.buffers.block_size(), self.sched_cfg.max_seqs);
            self.kv.set_record_full(self.disk.is_some());
            self.sched = Scheduler::new(self.sched_cfg);
            self.disk_probed.clear();
        }
        self.publish();
    }

    fn step(&mut self) {
        self.import_from_disk();
        let plan = self.sched.step(&mut self.kv);
        self.current.extend(plan.items.iter().map(|it| it.id));
        self.handle_admissions(&plan);
        if let Some(Fault::PanicOnToken(t)) = self.fault {
            if plan.items.iter().any(|it| self.sched.tokens(it.id).is_some_and(|ts| ts.contains(&t))) {
                panic!("injected fault: a step with token {t}");
            }
        }
        if !plan.items.is_empty() {
            self.batch.clear();
            for it in &plan.items {
                let toks = self.sched.tokens(it.id).expect("invariant: planned sequences are live");
                for (j, &t) in toks[it.start..it.start + it.len].iter().enumerate() {
                    let last = it.sample && j + 1 == it.len;
                    self.batch.push(t, it.start + j, it.slot, last);
                }
            }
            let before = self.meter.read(&self.engine.pool);
            let result = {
                let mut store = PagedKv { buffers: &mut self.buffers, tables: &self.kv, n_ctx: self.n_ctx };
                let mut ctx = ForwardCtx { pool: &self.engine.pool, kv: &mut store, ws: &mut self.ws };
                self.engine.model.forward(&self.batch, &mut ctx, &mut self.logits)
            };
            match result {
                Ok(()) => {
                    self.attribute_energy(&plan, &before);
                    for it in &plan.items {
                        if let Some(s) = self.live.get(&it.id).filter(|s| it.start < s.n_prompt && s.n_generated == 0) {
                            s.progress(Progress::Prefilled { start: it.start, end: (it.start + it.len).min(s.n_prompt), n_prompt: s.n_prompt });
                        }
                    }
                    self.sched.complete(&mut self.kv, &plan);
                    self.write_to_disk();
                    self.sample(&plan);
                }
                Err(e) => {
                    // Nothing was committed, so no block holds a half-written prefix.
                    let msg = format!("forward pass failed: {e}");
                    for it in &plan.items {
                        if let Some(s) = self.live.get_mut(&it.id) {
                            s.send_error(msg.clone());
                        }
                        self.retire(it.id);
                    }
                }
            }
        }
        self.publish();
    }

    /// Shares the step's energy among its sequences by their tokens in it.
    fn attribute_energy(&mut self, plan: &Plan, before: &energy::Reading) {
        let after = self.meter.read(&self.engine.pool);
        let uj = self.meter.microjoules(before, &after);
        self.stats.energy_uj_total.fetch_add(uj, Ordering::Relaxed);
        self.energy_tokens.clear();
        self.energy_tokens.extend(plan.items.iter().map(|it| it.len));
        energy::share(uj, &self.energy_tokens, &mut self.energy_shares);
        for (it, &e) in plan.items.iter().zip(&self.energy_shares) {
            if let Some(s) = self.live.get_mut(&it.id) {
                s.energy_uj += e;
            }
        }
    }

    fn handle_admissions(&mut self, plan: &Plan) {
        self.stats.preemptions_total.fetch_add(plan.preempted.len() as u64, Ordering::Relaxed);
        for a in &plan.admitted {
            self.disk_probed.remove(&a.id);
            if a.resumed {
                continue;
            }
            if let Some(s) = self.live.get_mut(&a.id) {
                s.started = true;
                s.cached_tokens = a.cached_tokens;
                s.progress(Progress::Admitted { cached_tokens: a.cached_tokens, n_prompt: s.n_prompt });
                self.stats.queue_depth.fetch_sub(1, Ordering::AcqRel);
                self.stats.prompt_tokens_total.fetch_add(s.n_prompt as u64, Ordering::Relaxed);
                self.stats.cached_tokens_total.fetch_add(a.cached_tokens as u64, Ordering::Relaxed);
            }
        }
        self.stats.rejected_too_large_total.fetch_add(plan.rejected.len() as u64, Ordering::Relaxed);
        for (id, msg) in &plan.rejected {
            if let Some(s) = self.live.get_mut(id) {
                s.send_error(msg.clone());
            }
            self.retire(*id);
        }
        for id in &plan.exhausted {
            if let Some(s) = self.live.get_mut(id) {
                s.finish(FinishReason::Length, None);
            }
            self.retire(*id);
        }
    }

    /// Samples the next token of every sequence whose chunk ended at its last token; logits
    /// rows come in batch order, one per such item.
    fn sample(&mut self, plan: &Plan) {
        let n_vocab = self.engine.model.hparams().n_vocab;
        let tok = &self.engine.tokenizer;
        self.finished.clear();
        let mut row = 0;
        for it in plan.items.iter().filter(|i| i.sample) {
            let logits = &self.logits[row * n_vocab..(row + 1) * n_vocab];
            row += 1;
            let Some(s) = self.live.get_mut(&it.id) else {
                // Not expected (live and scheduled sequences are retired together), but a
                // sequence with no pending token would otherwise stall the loop.
                self.finished.push(it.id);
                continue;
            };
            let history = self.sched.tokens(it.id).expect("invariant: planned sequences are live");
            let mut next: TokenId = 0;
            match s.on_logits(tok, logits, history, self.n_ctx, &mut self.lp_scratch, &mut next) {
                Next::Continue => self.sched.push_token(it.id, next),
                Next::Finished => self.finished.push(it.id),
            }
        }
        self.stats.generated_tokens_total.fetch_add(row as u64, Ordering::Relaxed);
        for i in 0..self.finished.len() {
            let id = self.finished[i];
            self.retire(id);
        }
    }

    fn publish(&self) {
        let s = self.kv.stats();
        self.stats.running.store(self.sched.n_running(), Ordering::Release);
        self.stats.kv_blocks_used.store(s.used, Ordering::Release);
        self.stats.kv_blocks_cached.store(s.cached, Ordering::Release);
        let (mut used, mut cached) = (0, 0);
        for g in 0..self.kv.n_groups() {
            let gs = self.kv.group_stats(g);
            if gs.window.is_some() {
                used += gs.pool.used;
                cached += gs.pool.cached;
            }
        }
        self.stats.kv_window_blocks_used.store(used, Ordering::Release);
        self.stats.kv_window_blocks_cached.store(cached, Ordering::Release);
        // Last, so that a reader who sees a request counted as finished (it loads this first)
        // also sees the running count and blocks of the step that finished it.
        self.stats.requests_finished.store(self.ended, Ordering::Release);
    }
}

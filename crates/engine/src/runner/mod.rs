//! The engine thread: one thread owns the model's KV cache, the scheduler and every running
//! generation; callers talk to it through an [`EngineHandle`].
//!
//! ```text
//!   submit(Request, sink) --bounded queue--> engine thread:  loop {
//!                                              take new requests, drop cancelled ones
//!                                              plan  = scheduler.step(kv)      (sched/)
//!                                              one forward over all planned tokens
//!                                              per sampled sequence: sample, logprobs,
//!                                                stream-decode, stop strings -> sink
//!                                            }
//! ```
//!
//! Every step runs **one** forward pass over all running sequences (decode tokens and prefill
//! chunks mixed in one flat batch), so the weights are read once per step. The forward pass is
//! row-independent (activations are quantized per row, each output row and each token's
//! attention is computed on its own, in an order that does not depend on the batch), so a
//! request's tokens and log-probs do not depend on what runs beside it: seeded and greedy
//! outputs are reproducible under load (tested in `tests/batch_invariance.rs`).
//!
//! No async runtime here: the server adapts [`EventSink`] to its own channels.

mod energy;
mod health;
mod seq;
mod thread;

pub use energy::{default_watts_per_core, EnergyConfig, EnergyMethod};
pub use health::{EngineState, Health, DEGRADED_FOR};
#[doc(hidden)]
pub use health::Fault;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::kv::disk::{DiskConfig, DiskStats, DiskStatsHandle, DiskTier, Geometry, ModelId};
use crate::kv::paged::{GroupSpec, KvLayout, PagedBuffers, Sizing, DEFAULT_BLOCK_SIZE};
use crate::{Engine, FinishReason, GenParams, Result, TokenId, TokenOut};

/// How the engine thread is sized.
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// Positions one sequence may use (clamped to the model's training context).
    pub n_ctx: usize,
    /// Most sequences running at once.
    pub max_seqs: usize,
    /// KV cache size in bytes (`--kv-memory`); `None`: room for `max_seqs` full contexts. With
    /// sliding-window layers (Gemma 3) the bytes are split between the full-attention layers'
    /// blocks and the window layers' (see [`Sizing::blocks_per_group`]).
    pub kv_memory_bytes: Option<usize>,
    /// Most requests waiting to start (beyond it `submit` says `QueueFull`).
    pub queue_capacity: usize,
    /// Most tokens in one forward pass (prefill is chunked to fit).
    pub step_token_budget: usize,
    /// Token positions per KV block.
    pub block_size: usize,
    /// How energy per answer is measured.
    pub energy: EnergyConfig,
    /// The KV disk tier (`--kv-disk`): full prefix blocks kept on disk across restarts and RAM
    /// evictions (see [`crate::kv::disk`]); `None`: off. Models with sliding-window layers do
    /// not use it.
    pub kv_disk: Option<DiskConfig>,
    /// Tests of panic isolation only: a fault the engine thread injects into itself.
    #[doc(hidden)]
    pub fault: Option<Fault>,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig { n_ctx: 4096, max_seqs: 8, kv_memory_bytes: None, queue_capacity: 256, step_token_budget: 512, block_size: DEFAULT_BLOCK_SIZE, energy: EnergyConfig::default(), kv_disk: None, fault: None }
    }
}

/// A generation request: an already tokenized prompt.
#[derive(Clone, Debug)]
pub struct Request {
    pub prompt: Vec<TokenId>,
    pub params: GenParams,
    /// Prefix-cache salt of the request's tenant: its KV blocks are shared only with requests
    /// of the same salt (0: the shared cache). Derive it from a secret key, not guessable input.
    pub salt: u64,
}

/// Token counts of a finished request (OpenAI's `usage`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Prompt tokens whose K/V came from the prefix cache.
    pub cached_tokens: usize,
    /// Energy attributed to the request, in microjoules (see [`EnergyMethod`]).
    pub energy_uj: u64,
}

/// What a request's sink receives: tokens, then exactly one `Done` or `Error`.
#[derive(Clone, Debug)]
pub enum Event {
    /// A generated token (also end-of-generation tokens, with empty text); `text` is complete
    /// UTF-8 and never part of a stop string.
    Token(TokenOut),
    /// Generation ended; `tail` is text held back until now (a partial stop string that did
    /// not complete, an incomplete UTF-8 sequence): print it after the last token.
    /// `stop`: the stop string that ended generation, if one did.
    Done { finish: FinishReason, usage: Usage, tail: String, stop: Option<String> },
    Error(String),
}

/// How far a request's prompt has come, before its first token (for traces: the time it
/// waited for a place in the batch, then each prefill chunk).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// It got a place in the batch; `cached_tokens` of its `n_prompt` came from the prefix cache.
    Admitted { cached_tokens: usize, n_prompt: usize },
    /// A step computed its prompt positions `start..end` (of `n_prompt`).
    Prefilled { start: usize, end: usize, n_prompt: usize },
}

/// Where a request's events go.
pub trait EventSink: Send + 'static {
    /// Delivers `e`; false once the receiver is gone (the client disconnected): the runner then
    /// cancels the sequence at the next step and frees its blocks.
    fn send(&self, e: Event) -> bool;
    /// Whether the receiver is gone already (checked every step, also while queued).
    fn is_closed(&self) -> bool;
    /// Reports the prompt's progress (nothing by default: only tracing wants it). Called on
    /// the engine thread: it must not block.
    fn progress(&self, _p: Progress) {}
}

/// For the CLI and tests. A std channel cannot tell that its receiver is gone without sending,
/// so a dropped receiver is noticed at the next event.
impl EventSink for mpsc::Sender<Event> {
    fn send(&self, e: Event) -> bool {
        mpsc::Sender::send(self, e).is_ok()
    }
    fn is_closed(&self) -> bool {
        false
    }
}

/// Why a request was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("the request queue is full")]
    QueueFull,
    #[error("the prompt has {n_prompt} tokens but the context holds {n_ctx}")]
    PromptTooLong { n_prompt: usize, n_ctx: usize },
    #[error("{0}")]
    Invalid(String),
    #[error("the engine is stopped")]
    Stopped,
}

/// A snapshot of the engine's load, for `/metrics` and logs.
///
/// The KV cache keeps one block pool per layer group (see [`crate::kv::paged::KvLayout`]): the
/// full-attention layers' and, for models with sliding-window layers (Gemma 3), the window
/// layers'. `kv_blocks_*` are sums over the groups; `kv_window_blocks_*` are the window
/// layers' part of them (0 for models without), so the full-attention part is the difference.
/// A block holds `kv_block_size` positions of the layers of its group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Requests accepted but not yet running.
    pub queue_depth: usize,
    pub running: usize,
    /// Blocks in all groups.
    pub kv_blocks_total: usize,
    /// Blocks referenced by live sequences (all groups).
    pub kv_blocks_used: usize,
    /// Unreferenced blocks holding reusable prefixes (all groups).
    pub kv_blocks_cached: usize,
    /// The sliding-window layers' part of `kv_blocks_total`.
    pub kv_window_blocks_total: usize,
    /// The sliding-window layers' part of `kv_blocks_used`.
    pub kv_window_blocks_used: usize,
    /// The sliding-window layers' part of `kv_blocks_cached`.
    pub kv_window_blocks_cached: usize,
    pub kv_block_size: usize,
    /// Positions the cache holds for all sequences together, which bounds a prompt's length: the
    /// full-attention layers' blocks times the block size (for a model whose layers all use a
    /// sliding window, the context length: the cache never limits a sequence's length then).
    pub kv_tokens: usize,
    pub kv_bytes: usize,
    /// Prompt tokens of requests that started running (cached ones included).
    pub prompt_tokens_total: u64,
    /// Prompt tokens served from the prefix cache.
    pub cached_tokens_total: u64,
    pub generated_tokens_total: u64,
    /// Energy of all steps so far, in microjoules.
    pub energy_uj_total: u64,
    pub requests_finished: u64,
    /// Times a running sequence was preempted (freed, recomputed later) for lack of KV blocks.
    pub preemptions_total: u64,
    /// Steps that panicked (their sequences failed; the engine went on).
    pub panics_total: u64,
    /// Requests refused because the queue was full.
    pub rejected_queue_full_total: u64,
    /// Requests refused because they can never fit in the KV cache.
    pub rejected_too_large_total: u64,
    /// The KV disk tier's counters (all zero when it is off).
    pub kv_disk: DiskStats,
}

/// Counters written by the engine thread, read by any handle.
#[derive(Default)]
struct SharedStats {
    queue_depth: AtomicUsize,
    running: AtomicUsize,
    kv_blocks_used: AtomicUsize,
    kv_blocks_cached: AtomicUsize,
    kv_window_blocks_used: AtomicUsize,
    kv_window_blocks_cached: AtomicUsize,
    prompt_tokens_total: AtomicU64,
    cached_tokens_total: AtomicU64,
    generated_tokens_total: AtomicU64,
    energy_uj_total: AtomicU64,
    requests_finished: AtomicU64,
    preemptions_total: AtomicU64,
    panics_total: AtomicU64,
    rejected_queue_full_total: AtomicU64,
    rejected_too_large_total: AtomicU64,
    last_panic: Mutex<Option<health::LastPanic>>,
}

/// Messages to the engine thread.
enum Msg {
    Submit { req: Request, sink: Box<dyn EventSink> },
    Shutdown { deadline: Instant },
}

/// The fixed sizes the thread was started with.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    n_ctx: usize,
    n_blocks: usize,
    n_window_blocks: usize,
    block_size: usize,
    /// Longest prompt the cache can hold (see [`Stats::kv_tokens`]).
    kv_tokens: usize,
    kv_bytes: usize,
    queue_capacity: usize,
}

struct Inner {
    energy_method: EnergyMethod,
    energy_watts: f64,
    engine: Arc<Engine>,
    tx: mpsc::Sender<Msg>,
    stats: Arc<SharedStats>,
    stopping: AtomicBool,
    sizes: Sizes,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    disk_stats: Option<DiskStatsHandle>,
}

/// A cheap, cloneable handle to the engine thread.
#[derive(Clone)]
pub struct EngineHandle {
    inner: Arc<Inner>,
}

impl EngineHandle {
    /// Sizes the paged KV cache, allocates it and spawns the engine thread.
    pub fn start(engine: Arc<Engine>, cfg: RunnerConfig) -> Result<Self> {
        let hp = engine.model.hparams();
        let n_ctx = cfg.n_ctx.clamp(2, hp.n_ctx_train.max(2));
        let max_seqs = cfg.max_seqs.max(1);
        let block_size = cfg.block_size.max(1);
        let step_token_budget = cfg.step_token_budget.max(1);
        let layout = KvLayout::for_model(hp, n_ctx);
        let sizing = Sizing { n_ctx, max_seqs, step_token_budget: step_token_budget.max(max_seqs), block_size, kv_dim: hp.kv_dim() };
        let n_blocks = sizing.blocks_per_group(&layout, cfg.kv_memory_bytes);
        let groups: Vec<GroupSpec> = n_blocks.iter().enumerate().map(|(g, &n)| GroupSpec { window: layout.window(g), n_blocks: n }).collect();
        let n_window_blocks = groups.iter().filter(|g| g.window.is_some()).map(|g| g.n_blocks).sum();
        // A model whose layers all use a sliding window runs any length in bounded memory.
        let kv_tokens = groups.iter().filter(|g| g.window.is_none()).map(|g| g.n_blocks * block_size).min().unwrap_or(n_ctx);
        let buffers = PagedBuffers::with_layout(layout, hp.kv_dim(), block_size, &n_blocks);
        let sizes = Sizes {
            n_ctx,
            n_blocks: buffers.n_blocks(),
            n_window_blocks,
            block_size,
            kv_tokens,
            kv_bytes: buffers.bytes(),
            queue_capacity: cfg.queue_capacity.max(1),
        };
        // A block file holds the block of every layer group (see kv::disk).
        let disk = match &cfg.kv_disk {
            Some(dc) if dc.max_bytes > 0 => {
                let geo = Geometry { block_size, n_layer: buffers.n_layer(), kv_dim: hp.kv_dim() };
                Some(DiskTier::open(dc, ModelId::of(&engine.file), geo).map_err(|e| crate::Error::Model(e.to_string()))?)
            }
            _ => None,
        };
        let disk_stats = disk.as_ref().map(DiskTier::stats_handle);
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(SharedStats::default());
        let sched_cfg = crate::sched::SchedConfig { max_seqs, step_token_budget };
        let meter = energy::EnergyMeter::new(&cfg.energy);
        let energy_method = meter.method();
        let energy_watts = meter.watts_per_core();
        let mut worker = thread::Worker::new(engine.clone(), buffers, &groups, sched_cfg, n_ctx, rx, stats.clone());
        worker.meter = meter;
        worker.fault = cfg.fault;
        worker.set_disk(disk);
        let join = std::thread::Builder::new()
            .name("daehwa-engine".into())
            .spawn(move || worker.run())
            .map_err(|e| crate::Error::Model(format!("cannot spawn the engine thread: {e}")))?;
        let inner = Inner { engine, tx, stats, stopping: AtomicBool::new(false), sizes, thread: Mutex::new(Some(join)), energy_method, energy_watts, disk_stats };
        Ok(EngineHandle { inner: Arc::new(inner) })
    }

    /// Queues a request; its events go to `sink`. Checks the request here, so the caller can
    /// answer bad input (400/413/429) before streaming starts.
    pub fn submit(&self, req: Request, sink: Box<dyn EventSink>) -> Result<(), SubmitError> {
        let inner = &*self.inner;
        if inner.stopping.load(Ordering::Acquire) {
            return Err(SubmitError::Stopped);
        }
        self.validate(&req)?;
        // Reserve a queue place (the engine thread gives it back when the request starts).
        let depth = &inner.stats.queue_depth;
        let mut cur = depth.load(Ordering::Relaxed);
        loop {
            if cur >= inner.sizes.queue_capacity {
                inner.stats.rejected_queue_full_total.fetch_add(1, Ordering::Relaxed);
                return Err(SubmitError::QueueFull);
            }
            match depth.compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        if inner.tx.send(Msg::Submit { req, sink }).is_err() {
            depth.fetch_sub(1, Ordering::AcqRel);
            return Err(SubmitError::Stopped);
        }
        Ok(())
    }

    fn validate(&self, req: &Request) -> Result<(), SubmitError> {
        let sizes = self.inner.sizes;
        let n_prompt = req.prompt.len();
        if n_prompt == 0 {
            return Err(SubmitError::Invalid("the prompt is empty".into()));
        }
        if n_prompt >= sizes.n_ctx {
            return Err(SubmitError::PromptTooLong { n_prompt, n_ctx: sizes.n_ctx });
        }
        if n_prompt >= sizes.kv_tokens {
            return Err(SubmitError::PromptTooLong { n_prompt, n_ctx: sizes.kv_tokens });
        }
        let n_vocab = self.inner.engine.model.hparams().n_vocab;
        if let Some(&t) = req.prompt.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(SubmitError::Invalid(format!("token id {t} is outside the vocabulary ({n_vocab})")));
        }
        req.params.sampling.validate().map_err(|e| SubmitError::Invalid(e.to_string()))?;
        Ok(())
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Positions one sequence may use.
    pub fn n_ctx(&self) -> usize {
        self.inner.sizes.n_ctx
    }

    /// How this engine measures energy.
    pub fn energy_method(&self) -> EnergyMethod {
        self.inner.energy_method
    }

    /// The per-core power figure an estimate uses (watts).
    pub fn energy_watts_per_core(&self) -> f64 {
        self.inner.energy_watts
    }

    pub fn stats(&self) -> Stats {
        let s = &*self.inner.stats;
        let z = self.inner.sizes;
        // First: the engine thread stores it last, so what follows is at least that step's state.
        let requests_finished = s.requests_finished.load(Ordering::Acquire);
        Stats {
            queue_depth: s.queue_depth.load(Ordering::Acquire),
            running: s.running.load(Ordering::Acquire),
            kv_blocks_total: z.n_blocks,
            kv_blocks_used: s.kv_blocks_used.load(Ordering::Acquire),
            kv_blocks_cached: s.kv_blocks_cached.load(Ordering::Acquire),
            kv_window_blocks_total: z.n_window_blocks,
            kv_window_blocks_used: s.kv_window_blocks_used.load(Ordering::Acquire),
            kv_window_blocks_cached: s.kv_window_blocks_cached.load(Ordering::Acquire),
            kv_block_size: z.block_size,
            kv_tokens: z.kv_tokens,
            kv_bytes: z.kv_bytes,
            prompt_tokens_total: s.prompt_tokens_total.load(Ordering::Acquire),
            cached_tokens_total: s.cached_tokens_total.load(Ordering::Acquire),
            generated_tokens_total: s.generated_tokens_total.load(Ordering::Acquire),
            energy_uj_total: s.energy_uj_total.load(Ordering::Acquire),
            requests_finished,
            preemptions_total: s.preemptions_total.load(Ordering::Acquire),
            panics_total: s.panics_total.load(Ordering::Acquire),
            rejected_queue_full_total: s.rejected_queue_full_total.load(Ordering::Acquire),
            rejected_too_large_total: s.rejected_too_large_total.load(Ordering::Acquire),
            kv_disk: self.inner.disk_stats.as_ref().map(DiskStatsHandle::stats).unwrap_or_default(),
        }
    }

    /// The engine's state for `/health`: dead when its thread is gone, stopping after
    /// `shutdown`, degraded for [`DEGRADED_FOR`] after a caught panic, else ok.
    pub fn health(&self) -> Health {
        let inner = &*self.inner;
        let last = inner.stats.last_panic.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let alive = inner.thread.lock().unwrap_or_else(|p| p.into_inner()).as_ref().is_some_and(|j| !j.is_finished());
        if inner.stopping.load(Ordering::Acquire) {
            return Health { state: EngineState::Stopping, reason: Some("the engine is shutting down".into()) };
        }
        if !alive {
            let why = last.map_or_else(String::new, |p| format!(" after a panic: {}", p.message));
            return Health { state: EngineState::Dead, reason: Some(format!("the engine thread stopped{why}")) };
        }
        match last {
            Some(p) if p.at.elapsed() < DEGRADED_FOR => Health {
                state: EngineState::Degraded,
                reason: Some(format!(
                    "a step panicked {} s ago (its requests failed; the engine goes on): {}",
                    p.at.elapsed().as_secs(),
                    p.message
                )),
            },
            _ => Health { state: EngineState::Ok, reason: None },
        }
    }

    /// Stops taking requests, lets running and queued ones finish for up to `drain`, then ends
    /// the rest (`Done` with `Cancelled` for started ones, `Error` for queued ones) and waits for
    /// the engine thread to exit. Later calls return at once.
    pub fn shutdown(&self, drain: Duration) {
        let inner = &*self.inner;
        inner.stopping.store(true, Ordering::Release);
        let _ = inner.tx.send(Msg::Shutdown { deadline: Instant::now() + drain });
        let join = inner.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(join) = join {
            let _ = join.join();
        }
    }
}

impl Drop for Inner {
    /// The last handle gone: stop the thread without draining.
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Shutdown { deadline: Instant::now() });
        if let Some(join) = self.thread.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = join.join();
        }
    }
}

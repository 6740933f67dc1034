//! [`Models`]: the models one server serves, each loaded on first use and unloaded (least
//! recently used first) when loading another would pass the memory budget (`--model-memory`).
//!
//! ```text
//!  handler ── st.models.get(Some("b")).await ──> Loaded    ─> ModelLease (the backend, marked busy)
//!                                          ├──> Unloaded  ─> evict idle LRU models, then load
//!                                          │                 (blocking pool) ─┐
//!                                          └──> Loading   ─> wait (holding a queue place) <┘
//! ```
//!
//! A handler takes its backend once, at the top:
//!
//! ```ignore
//! let backend = st.models.get(req.model.as_deref()).await?; // 404 model_not_found, 503, 429
//! generation::tokenize(&backend, &job).await?;             // derefs to Arc<dyn Backend>
//! ```
//!
//! A model is busy while a [`ModelLease`] of it lives or its engine has sequences queued or
//! running; a busy model is never unloaded. Each loaded model is its own engine thread with its
//! own KV cache (`--kv-memory`, `--ctx`, `--max-seqs` apply to each); unloading stops the thread
//! and drops the engine (KV cache, weights, the file's mapping) and then trims the heap.
//! A model's memory is `engine::memory::estimate`: file, repacked weights, KV cache and scratch.

mod engine_loader;
mod metrics;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::admission::Admission;
use crate::backend::{Backend, EngineState, Health, Stats};
use crate::config::{ModelNames, ServeConfig};
use crate::error::ApiError;

pub use engine_loader::EngineLoader;

/// One servable model as configured (nothing loaded yet).
#[derive(Clone, Debug)]
pub struct ModelSpec {
    /// The name clients use (a pulled model's name, a file's stem).
    pub id: String,
    /// Other accepted names (the GGUF's `general.name`).
    pub aliases: Vec<String>,
    /// Unix time reported as the model's `created`.
    pub created: u64,
    /// Estimated memory once loaded: the file's size plus its KV cache, in bytes.
    pub memory: u64,
    /// Context length per sequence once loaded (shown before it is).
    pub n_ctx: usize,
}

impl ModelSpec {
    pub fn new(id: impl Into<String>) -> Self {
        ModelSpec { id: id.into(), aliases: Vec::new(), created: 0, memory: 0, n_ctx: 0 }
    }
}

/// Makes a model's backend. Called on the blocking pool (it may take seconds).
pub trait Loader: Send + Sync + 'static {
    /// Loads the model with id `id`; `Err` says why it cannot be (shown to the client).
    fn load(&self, id: &str) -> Result<Arc<dyn Backend>, String>;
    /// Describes the model file `path` as model `id`, which [`load`](Self::load) can then load
    /// (a model pulled while the server runs). Blocking: it reads the file's metadata.
    fn register(&self, id: &str, path: &std::path::Path) -> Result<ModelSpec, String> {
        let _ = path;
        Err(format!("this server cannot add the model `{id}` while it runs"))
    }
}

/// Where a model stands (`/v1/models`' `state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelState {
    Loaded,
    Loading,
    Unloaded,
}

impl ModelState {
    pub const ALL: [ModelState; 3] = [ModelState::Loaded, ModelState::Loading, ModelState::Unloaded];

    pub fn as_str(self) -> &'static str {
        match self {
            ModelState::Loaded => "loaded",
            ModelState::Loading => "loading",
            ModelState::Unloaded => "unloaded",
        }
    }
}

/// Models unloaded to make room, to shut down off the lock: (id, backend).
type Evicted = Vec<(String, Arc<dyn Backend>)>;

/// The outcome of one load, as its waiters see it.
type LoadOutcome = Option<Result<(), String>>;

enum Slot {
    Unloaded,
    Loading(watch::Receiver<LoadOutcome>),
    Loaded(Arc<dyn Backend>),
}

/// Counters of one model's loads, for `/metrics`.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    loads: u64,
    load_failures: u64,
    unloads: u64,
    load_seconds: f64,
    last_load_seconds: f64,
}

struct Entry {
    spec: ModelSpec,
    slot: Slot,
    /// Leases handed out and not yet dropped.
    in_use: Arc<AtomicUsize>,
    /// The registry's clock at the last lease (larger = more recent).
    last_used: u64,
    /// What the model holds while loaded (its spec's estimate).
    memory: u64,
    /// Why the last load failed (cleared by a successful one).
    last_error: Option<String>,
    counts: Counts,
    /// Never unloaded (a server built over one ready backend, [`Models::single`]).
    pinned: bool,
}

impl Entry {
    fn state(&self) -> ModelState {
        match self.slot {
            Slot::Unloaded => ModelState::Unloaded,
            Slot::Loading(_) => ModelState::Loading,
            Slot::Loaded(_) => ModelState::Loaded,
        }
    }

    /// Loaded and nothing of it running, queued or leased: safe to unload.
    fn idle(&self) -> bool {
        match &self.slot {
            Slot::Loaded(b) => {
                let s = b.stats();
                !self.pinned && self.in_use.load(Ordering::Acquire) == 0 && s.running == 0 && s.queue_depth == 0
            }
            _ => false,
        }
    }
}

struct Inner {
    entries: Vec<Entry>,
    clock: u64,
    stopping: bool,
}

/// A model's public view (`/v1/models`, `/health`, `/api/models`).
#[derive(Clone, Debug)]
pub struct ModelStatus {
    pub id: String,
    pub aliases: Vec<String>,
    pub created: u64,
    pub state: ModelState,
    /// Context length per sequence (the configured one until loaded).
    pub n_ctx: usize,
    /// The engine's live figures and health while loaded.
    pub stats: Option<Stats>,
    pub health: Option<Health>,
    pub last_error: Option<String>,
}

/// The registry of served models. Cheap to share (`Arc<Models>` in [`crate::AppState`]).
pub struct Models {
    inner: Mutex<Inner>,
    loader: Option<Arc<dyn Loader>>,
    /// `--model-memory` in bytes: loaded models together stay under it (when they can).
    budget: Option<u64>,
    /// The server's request queue: requests waiting for a load hold a place in it.
    admission: Arc<Admission>,
    /// How long a request waits for busy models to finish when the budget has no room for its
    /// model (then 503).
    busy_wait: Duration,
}

/// The default of [`Models::with_busy_wait`].
pub const DEFAULT_BUSY_WAIT: Duration = Duration::from_secs(10);
/// How often a request waiting for room looks again.
const BUSY_POLL: Duration = Duration::from_millis(50);

/// A model taken for one request: derefs to its backend. While it lives the model is busy and
/// is not unloaded; once the request's sequences are submitted the engine's own queue keeps it
/// busy, so a streaming handler may drop it when it returns the stream.
pub struct ModelLease {
    id: String,
    backend: Arc<dyn Backend>,
    _in_use: InUse,
}

struct InUse(Arc<AtomicUsize>);

impl Drop for InUse {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ModelLease {
    /// The model's id (what responses report as `model`).
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }
}

impl std::ops::Deref for ModelLease {
    type Target = Arc<dyn Backend>;
    fn deref(&self) -> &Arc<dyn Backend> {
        &self.backend
    }
}

/// What a request found when it asked for a model.
enum Next {
    Ready(ModelLease),
    Wait(watch::Receiver<LoadOutcome>),
}

fn severity(s: EngineState) -> u8 {
    match s {
        EngineState::Ok => 0,
        EngineState::Degraded => 1,
        EngineState::Loading => 2,
        EngineState::Stopping => 3,
        EngineState::Dead => 4,
    }
}

fn mib(b: u64) -> u64 {
    b.div_ceil(1 << 20)
}

impl Models {
    /// Several models, none loaded yet; `loader` loads them on first use. The first spec is the
    /// default model.
    /// An alias that another model already answers to (two copies of one file share their
    /// `general.name`) is dropped: each name means one model.
    pub fn new(specs: Vec<ModelSpec>, loader: Arc<dyn Loader>, budget: Option<u64>, admission: Arc<Admission>) -> Self {
        let mut taken: Vec<String> = specs.iter().map(|s| s.id.clone()).collect();
        let specs: Vec<ModelSpec> = specs
            .into_iter()
            .map(|mut s| {
                s.aliases.retain(|a| {
                    let free = !a.is_empty() && !taken.contains(a);
                    if free {
                        taken.push(a.clone());
                    }
                    free
                });
                s
            })
            .collect();
        let entries = specs
            .into_iter()
            .map(|spec| Entry {
                memory: spec.memory,
                spec,
                slot: Slot::Unloaded,
                in_use: Arc::default(),
                last_used: 0,
                last_error: None,
                counts: Counts::default(),
                pinned: false,
            })
            .collect();
        Models {
            inner: Mutex::new(Inner { entries, clock: 0, stopping: false }),
            loader: Some(loader),
            budget,
            admission,
            busy_wait: DEFAULT_BUSY_WAIT,
        }
    }

    /// How long a request waits for busy models to finish (and free their memory) before a 503
    /// when the budget has no room for its model.
    pub fn with_busy_wait(mut self, wait: Duration) -> Self {
        self.busy_wait = wait;
        self
    }

    /// Serves the model file `path` as `id` from now on (a model pulled while the server runs):
    /// unloaded until its first request, listed by `/v1/models` at once. A model already served
    /// under `id` stays as it is. Blocking (it reads the file's metadata): call it on the
    /// blocking pool.
    pub fn register(&self, id: &str, path: &std::path::Path) -> Result<(), String> {
        if self.lock().entries.iter().any(|e| e.spec.id == id) {
            return Ok(());
        }
        let loader = self.loader.as_ref().ok_or_else(|| format!("this server cannot add the model `{id}` while it runs"))?;
        let mut spec = loader.register(id, path)?;
        let mut inner = self.lock();
        if inner.entries.iter().any(|e| e.spec.id == id) {
            return Ok(());
        }
        let taken: Vec<String> = inner.entries.iter().flat_map(|e| std::iter::once(e.spec.id.clone()).chain(e.spec.aliases.iter().cloned())).collect();
        spec.aliases.retain(|a| !a.is_empty() && !taken.contains(a));
        inner.entries.push(Entry {
            memory: spec.memory,
            spec,
            slot: Slot::Unloaded,
            in_use: Arc::default(),
            last_used: 0,
            last_error: None,
            counts: Counts::default(),
            pinned: false,
        });
        Ok(())
    }

    /// One ready backend that is never unloaded: the single-model server (and the tests').
    pub fn single(spec: ModelSpec, backend: Arc<dyn Backend>, admission: Arc<Admission>) -> Self {
        let entry = Entry {
            memory: spec.memory,
            spec,
            slot: Slot::Loaded(backend),
            in_use: Arc::default(),
            last_used: 0,
            last_error: None,
            counts: Counts { loads: 1, ..Counts::default() },
            pinned: true,
        };
        Models {
            inner: Mutex::new(Inner { entries: vec![entry], clock: 0, stopping: false }),
            loader: None,
            budget: None,
            admission,
            busy_wait: DEFAULT_BUSY_WAIT,
        }
    }

    /// Puts an already loaded backend in place for model `id` (the binary loads the default
    /// model before it starts serving, so start-up fails early on a broken file). `load_time`
    /// counts as that model's first load.
    pub fn preloaded(self, id: &str, backend: Arc<dyn Backend>, load_time: Duration) -> Self {
        {
            let mut inner = self.lock();
            if let Some(e) = inner.entries.iter_mut().find(|e| e.spec.id == id) {
                e.slot = Slot::Loaded(backend);
                e.counts.loads += 1;
                e.counts.load_seconds += load_time.as_secs_f64();
                e.counts.last_load_seconds = load_time.as_secs_f64();
            }
        }
        self
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The ids and names of every model, default first (what [`ServeConfig`] resolves against).
    pub fn names(&self) -> Vec<ModelNames> {
        self.lock().entries.iter().map(|e| ModelNames { id: e.spec.id.clone(), aliases: e.spec.aliases.clone() }).collect()
    }

    /// The default model's id.
    pub fn default_id(&self) -> String {
        self.lock().entries.first().map(|e| e.spec.id.clone()).unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The request queue that requests waiting for a load take a place in.
    pub fn admission(&self) -> &Arc<Admission> {
        &self.admission
    }

    /// The memory budget (`--model-memory`), if any.
    pub fn budget(&self) -> Option<u64> {
        self.budget
    }

    /// The index of the model `requested` names (its id or an alias; `None` = the default).
    fn find(inner: &Inner, requested: Option<&str>) -> Result<usize, ApiError> {
        let Some(name) = requested else { return Ok(0) };
        if let Some(i) = inner.entries.iter().position(|e| e.spec.id == name) {
            return Ok(i);
        }
        if let Some(i) = inner.entries.iter().position(|e| e.spec.aliases.iter().any(|a| a == name)) {
            return Ok(i);
        }
        if inner.entries.len() <= 1 {
            return Err(ApiError::ModelNotFound(name.to_string()));
        }
        let known: Vec<&str> = inner.entries.iter().map(|e| e.spec.id.as_str()).collect();
        Err(ApiError::ModelNotFoundAmong { model: name.to_string(), known: known.join(", ") })
    }

    /// The id of the model `requested` names (`None`: the default), without loading it.
    pub fn resolve(&self, requested: Option<&str>) -> Result<String, ApiError> {
        let inner = self.lock();
        Self::find(&inner, requested).map(|i| inner.entries[i].spec.id.clone())
    }

    /// The model `requested` names (`None`: the default), loaded: at once when it is, else
    /// after its load (started here or by another request), which this request waits for
    /// holding a place in the request queue (429 when full). 404 for an unknown name, 503 when
    /// the load fails, or when the memory budget has no room while other models stay busy for
    /// longer than the busy wait ([`Models::with_busy_wait`]).
    pub async fn get(self: &Arc<Self>, requested: Option<&str>) -> Result<ModelLease, ApiError> {
        let mut slot = None;
        let started = Instant::now();
        loop {
            let rx = match self.try_get(requested) {
                Ok(Next::Ready(lease)) => return Ok(lease),
                Ok(Next::Wait(rx)) => rx,
                Err(ApiError::ModelMemoryBusy(why)) => {
                    if started.elapsed() >= self.busy_wait {
                        return Err(ApiError::ModelMemoryBusy(why));
                    }
                    if slot.is_none() {
                        slot = Some(self.admission.try_take().ok_or(ApiError::QueueFull)?);
                    }
                    tokio::time::sleep(BUSY_POLL).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if slot.is_none() {
                slot = Some(self.admission.try_take().ok_or(ApiError::QueueFull)?);
            }
            let mut rx = rx;
            let outcome = rx.wait_for(Option::is_some).await.map(|v| v.clone()).unwrap_or(None);
            if let Some(Err(reason)) = outcome {
                let model = self.resolve(requested)?;
                return Err(ApiError::ModelLoadFailed { model, reason });
            }
            // Loaded (or the load was abandoned at shutdown): look again.
        }
    }

    fn try_get(self: &Arc<Self>, requested: Option<&str>) -> Result<Next, ApiError> {
        let mut inner = self.lock();
        if inner.stopping {
            return Err(ApiError::Unavailable);
        }
        let i = Self::find(&inner, requested)?;
        inner.clock += 1;
        let now = inner.clock;
        let e = &mut inner.entries[i];
        match &e.slot {
            Slot::Loaded(b) => {
                e.in_use.fetch_add(1, Ordering::AcqRel);
                e.last_used = now;
                return Ok(Next::Ready(ModelLease { id: e.spec.id.clone(), backend: b.clone(), _in_use: InUse(e.in_use.clone()) }));
            }
            Slot::Loading(rx) => return Ok(Next::Wait(rx.clone())),
            Slot::Unloaded => {}
        }
        let Some(loader) = self.loader.clone() else {
            return Err(ApiError::ModelLoadFailed { model: e.spec.id.clone(), reason: "this server cannot load models".into() });
        };
        let evicted = self.make_room(&mut inner, i)?;
        let (tx, rx) = watch::channel(None);
        let e = &mut inner.entries[i];
        e.slot = Slot::Loading(rx.clone());
        e.last_used = now;
        let id = e.spec.id.clone();
        drop(inner);
        tracing::info!(model = %id, unloading = ?evicted.iter().map(|(id, _)| id).collect::<Vec<_>>(), "loading a model");
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.load(id, evicted, loader, tx));
        Ok(Next::Wait(rx))
    }

    /// Unloads idle models, least recently used first, until model `i` fits in the budget
    /// beside the rest. Their backends are returned to be shut down off the lock. Refuses
    /// (503) when the busy models leave no room; a model alone is loaded whatever its size.
    fn make_room(&self, inner: &mut Inner, i: usize) -> Result<Evicted, ApiError> {
        let Some(budget) = self.budget else { return Ok(Vec::new()) };
        let need = inner.entries[i].memory;
        let held = |inner: &Inner| -> u64 {
            inner.entries.iter().filter(|e| e.state() != ModelState::Unloaded).map(|e| e.memory).sum()
        };
        let mut victims: Vec<usize> = (0..inner.entries.len()).filter(|&j| j != i && inner.entries[j].idle()).collect();
        victims.sort_by_key(|&j| inner.entries[j].last_used);
        let mut chosen = Vec::new();
        let mut total = held(inner);
        let mut it = victims.into_iter();
        while total + need > budget && total > 0 {
            let Some(j) = it.next() else {
                let busy: Vec<&str> =
                    inner.entries.iter().filter(|e| e.state() != ModelState::Unloaded).map(|e| e.spec.id.as_str()).collect();
                return Err(ApiError::ModelMemoryBusy(format!(
                    "the model `{}` needs about {} MiB, but --model-memory is {} MiB and the models in use ({}) hold {} MiB; retry when they finish",
                    inner.entries[i].spec.id,
                    mib(need),
                    mib(budget),
                    busy.join(", "),
                    mib(total)
                )));
            };
            total -= inner.entries[j].memory;
            chosen.push(j);
        }
        let mut out = Vec::with_capacity(chosen.len());
        for j in chosen {
            let e = &mut inner.entries[j];
            if let Slot::Loaded(b) = std::mem::replace(&mut e.slot, Slot::Unloaded) {
                e.counts.unloads += 1;
                out.push((e.spec.id.clone(), b));
            }
        }
        Ok(out)
    }

    /// The blocking half of a load: shuts the evicted models down (their memory goes back
    /// first), then loads model `id` and tells the waiters.
    fn load(&self, id: String, evicted: Evicted, loader: Arc<dyn Loader>, tx: watch::Sender<LoadOutcome>) {
        if !evicted.is_empty() {
            for (name, b) in evicted {
                b.shutdown(Duration::ZERO);
                drop(b);
                tracing::info!(model = %name, "unloaded a model (least recently used) to make room");
            }
            crate::memory::trim();
        }
        let started = Instant::now();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| loader.load(&id)))
            .unwrap_or_else(|_| Err("the loader panicked".to_string()));
        let secs = started.elapsed().as_secs_f64();
        let mut inner = self.lock();
        let stopping = inner.stopping;
        let mut late = None;
        let outcome = match inner.entries.iter_mut().find(|e| e.spec.id == id) {
            None => Err("the model is gone".to_string()),
            Some(e) => match result {
                Ok(backend) => {
                    e.counts.loads += 1;
                    e.counts.load_seconds += secs;
                    e.counts.last_load_seconds = secs;
                    e.last_error = None;
                    if stopping {
                        e.slot = Slot::Unloaded;
                        late = Some(backend);
                    } else {
                        e.slot = Slot::Loaded(backend);
                    }
                    tracing::info!(model = %id, seconds = secs, "model loaded");
                    Ok(())
                }
                Err(reason) => {
                    e.counts.load_failures += 1;
                    e.slot = Slot::Unloaded;
                    e.last_error = Some(reason.clone());
                    tracing::error!(model = %id, error = %reason, "could not load a model");
                    Err(reason)
                }
            },
        };
        drop(inner);
        let _ = tx.send(Some(outcome));
        if let Some(b) = late {
            b.shutdown(Duration::ZERO);
        }
    }

    /// Every model's state, default first.
    pub fn statuses(&self) -> Vec<ModelStatus> {
        let inner = self.lock();
        inner
            .entries
            .iter()
            .map(|e| {
                let loaded = match &e.slot {
                    Slot::Loaded(b) => Some(b),
                    _ => None,
                };
                ModelStatus {
                    id: e.spec.id.clone(),
                    aliases: e.spec.aliases.clone(),
                    created: e.spec.created,
                    state: e.state(),
                    n_ctx: loaded.map_or(e.spec.n_ctx, |b| b.n_ctx()),
                    stats: loaded.map(|b| b.stats()),
                    health: loaded.map(|b| b.health()),
                    last_error: e.last_error.clone(),
                }
            })
            .collect()
    }

    fn loaded(&self) -> Vec<Arc<dyn Backend>> {
        self.lock()
            .entries
            .iter()
            .filter_map(|e| match &e.slot {
                Slot::Loaded(b) => Some(b.clone()),
                _ => None,
            })
            .collect()
    }

    /// The engines' figures summed over the loaded models (`/metrics`' unlabelled series).
    pub fn stats(&self) -> Stats {
        let mut t = Stats::default();
        for b in self.loaded() {
            let s = b.stats();
            t.queue_depth += s.queue_depth;
            t.running += s.running;
            t.kv_blocks_total += s.kv_blocks_total;
            t.kv_blocks_used += s.kv_blocks_used;
            t.kv_blocks_cached += s.kv_blocks_cached;
            t.kv_window_blocks_total += s.kv_window_blocks_total;
            t.kv_window_blocks_used += s.kv_window_blocks_used;
            t.kv_window_blocks_cached += s.kv_window_blocks_cached;
            t.preemptions_total += s.preemptions_total;
            t.panics_total += s.panics_total;
            t.rejected_queue_full_total += s.rejected_queue_full_total;
            t.rejected_too_large_total += s.rejected_too_large_total;
            t.kv_disk.add(&s.kv_disk);
        }
        t
    }

    /// The worst health of the loaded models (ok when none is loaded: one loads on demand).
    pub fn health(&self) -> Health {
        let mut worst = Health::default();
        for b in self.loaded() {
            let h = b.health();
            if severity(h.state) > severity(worst.state) {
                worst = h;
            }
        }
        worst
    }

    /// Stops every loaded engine (draining running sequences for up to `drain`) and refuses
    /// requests from now on. Blocks: call it on the blocking pool.
    pub fn shutdown(&self, drain: Duration) {
        let loaded = {
            let mut inner = self.lock();
            inner.stopping = true;
            inner.entries.iter().filter_map(|e| if let Slot::Loaded(b) = &e.slot { Some(b.clone()) } else { None }).collect::<Vec<_>>()
        };
        // Drain them together: each gets the whole drain time.
        std::thread::scope(|s| {
            for b in &loaded {
                s.spawn(move || b.shutdown(drain));
            }
        });
    }

    /// The default model's backend when it is loaded (tests, the memory trimmer's idle check).
    pub fn default_backend(&self) -> Option<Arc<dyn Backend>> {
        match &self.lock().entries.first()?.slot {
            Slot::Loaded(b) => Some(b.clone()),
            _ => None,
        }
    }
}

/// Fills `config`'s model names from the registry (default first).
pub(crate) fn name_config(config: &mut ServeConfig, models: &Models) {
    let mut names = models.names().into_iter();
    if let Some(first) = names.next() {
        config.model_id = first.id;
        config.model_aliases = first.aliases;
    }
    config.set_extra_models(names.collect());
}

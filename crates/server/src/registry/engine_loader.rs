//! [`EngineLoader`]: the production [`Loader`], which starts an engine thread
//! ([`engine::runner::EngineHandle`]) per model from its GGUF file, all with the same settings
//! (`--ctx`, `--max-seqs`, `--kv-memory`, threads, ...).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use engine::kv::paged::{KvLayout, Sizing};
use engine::runner::{EngineHandle, RunnerConfig};

use super::{Loader, ModelSpec};
use crate::backend::Backend;
use crate::engine_backend::EngineBackend;

/// Loads models from GGUF files with one set of engine settings.
pub struct EngineLoader {
    engine: engine::EngineConfig,
    /// Every field applies to each model but `n_ctx`, which [`EngineLoader::ctx`] decides.
    runner: RunnerConfig,
    /// `--ctx`; `None`: each model's training context, at most `default_max_ctx`.
    ctx: Option<usize>,
    default_max_ctx: usize,
    /// The models' files by id (grows when a pull adds one while serving).
    paths: Mutex<Vec<(String, PathBuf)>>,
    /// Each added model's memory estimate (`engine::memory::estimate`), by id.
    estimates: Mutex<Vec<(String, engine::memory::MemoryEstimate)>>,
    /// The provenance mark of every model's generations (`--watermark-key-file`).
    watermark: Option<Arc<engine::sample::watermark::WatermarkKey>>,
}

/// What a model's file says before it is loaded.
struct FileFacts {
    general_name: Option<String>,
    n_ctx: usize,
    kv_bytes: u64,
    file_bytes: u64,
    created: u64,
    estimate: engine::memory::MemoryEstimate,
}

impl EngineLoader {
    pub fn new(engine: engine::EngineConfig, runner: RunnerConfig, ctx: Option<usize>, default_max_ctx: usize) -> Self {
        EngineLoader { engine, runner, ctx, default_max_ctx, paths: Mutex::default(), estimates: Mutex::default(), watermark: None }
    }

    /// Marks the generations of every model this loader starts with `key`.
    pub fn with_watermark(mut self, key: Option<Arc<engine::sample::watermark::WatermarkKey>>) -> Self {
        self.watermark = key;
        self
    }

    /// Context per sequence for a model trained on `n_ctx_train` positions.
    fn ctx(&self, n_ctx_train: usize) -> usize {
        self.ctx.unwrap_or_else(|| n_ctx_train.min(self.default_max_ctx))
    }

    /// The runner settings for a model trained on `n_ctx_train` positions.
    pub fn runner_config(&self, n_ctx_train: usize) -> RunnerConfig {
        RunnerConfig { n_ctx: self.ctx(n_ctx_train), ..self.runner.clone() }
    }

    /// Reads the file's metadata (cheap: the file is mapped, not read) and sizes its KV cache
    /// as [`EngineHandle::start`] will.
    fn facts(&self, path: &Path) -> Result<FileFacts, String> {
        let file = Arc::new(gguf::GgufFile::open(path).map_err(|e| e.to_string())?);
        let general_name = file.opt_str("general.name").ok().flatten().map(str::to_string);
        let model = engine::model::load(file.clone()).map_err(|e| e.to_string())?;
        let hp = model.hparams();
        let cfg = self.runner_config(hp.n_ctx_train);
        let n_ctx = cfg.n_ctx.clamp(2, hp.n_ctx_train.max(2));
        let max_seqs = cfg.max_seqs.max(1);
        let block_size = cfg.block_size.max(1);
        let layout = KvLayout::for_model(hp, n_ctx);
        let sizing = Sizing {
            n_ctx,
            max_seqs,
            step_token_budget: cfg.step_token_budget.max(1).max(max_seqs),
            block_size,
            kv_dim: hp.kv_dim(),
        };
        let blocks = sizing.blocks_per_group(&layout, cfg.kv_memory_bytes);
        // K and V, f16 each (engine::kv::paged::PagedBuffers).
        let kv_bytes: usize = blocks.iter().enumerate().map(|(g, &nb)| 2 * layout.n_layers_in(g) * nb * block_size * hp.kv_dim() * 2).sum();
        let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
        let created = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let usage = engine::memory::Usage { kv_bytes: kv_bytes as u64, n_seq: max_seqs, batch_tokens: sizing.step_token_budget };
        let estimate = engine::memory::estimate(&file, hp, &usage);
        Ok(FileFacts { general_name, n_ctx, kv_bytes: kv_bytes as u64, file_bytes: file.total_bytes(), created, estimate })
    }

    /// Adds the model in `path` under `id` and describes it for the registry: its
    /// `general.name` as an alias, context length and memory estimate (`engine::memory::estimate`).
    pub fn add(&self, id: &str, path: &Path) -> Result<ModelSpec, String> {
        if lock(&self.paths).iter().any(|(i, _)| i == id) {
            return Err(format!("two models are named `{id}` (the second is {})", path.display()));
        }
        let f = self.facts(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut paths = lock(&self.paths);
        if paths.iter().any(|(i, _)| i == id) {
            return Err(format!("two models are named `{id}` (the second is {})", path.display()));
        }
        paths.push((id.to_string(), path.to_path_buf()));
        lock(&self.estimates).push((id.to_string(), f.estimate));
        // The file and KV cache alone undercounted (Gemma 3 270M: 313 MiB against ~560 MiB
        // resident): the one estimate also counts repacked weights and scratch.
        let _ = (f.file_bytes, f.kv_bytes);
        Ok(ModelSpec {
            id: id.to_string(),
            aliases: f.general_name.into_iter().filter(|n| !n.is_empty() && n != id).collect(),
            created: f.created,
            memory: f.estimate.total(),
            n_ctx: f.n_ctx,
        })
    }

    /// The memory estimate of model `id` (what its spec's `memory` totals).
    pub fn estimate(&self, id: &str) -> Option<engine::memory::MemoryEstimate> {
        lock(&self.estimates).iter().find(|(i, _)| i == id).map(|(_, e)| *e)
    }

    /// The file of model `id`.
    pub fn path(&self, id: &str) -> Option<PathBuf> {
        lock(&self.paths).iter().find(|(i, _)| i == id).map(|(_, p)| p.clone())
    }

    /// Loads model `id` and starts its engine thread (blocking; seconds for a large model).
    pub fn start(&self, id: &str) -> Result<EngineHandle, String> {
        let path = self.path(id).ok_or_else(|| format!("no model `{id}`"))?;
        let engine = engine::Engine::load(&path, &self.engine).map_err(|e| e.to_string())?;
        let cfg = self.runner_config(engine.model.hparams().n_ctx_train);
        EngineHandle::start(Arc::new(engine), cfg).map_err(|e| format!("starting the engine: {e}"))
    }
}

/// Locks ignoring poisoning (the lists stay valid: each change is one push).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Loader for EngineLoader {
    fn load(&self, id: &str) -> Result<Arc<dyn Backend>, String> {
        let handle = self.start(id)?;
        Ok(Arc::new(EngineBackend::new(handle).with_watermark(self.watermark.clone())))
    }

    fn register(&self, id: &str, path: &Path) -> Result<ModelSpec, String> {
        self.add(id, path)
    }
}

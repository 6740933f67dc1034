//! Pulls an admin starts from the web UI (`/api/admin/pulls`): the same code as `daehwa pull
//! hf:...` (the `hub` crate), run on a blocking thread, its progress kept for the UI to poll.
//! One pull at a time (a pull is bounded by the disk and the network, not by the CPU; two at
//! once would only share the same link); the last few finished ones stay listed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// Finished pulls kept for the UI.
const KEEP_FINISHED: usize = 8;

/// One pull's state as the UI sees it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct PullJson {
    pub id: u64,
    /// As asked: `hf:ORG/REPO[:QUANT]`.
    pub model: String,
    /// `running`, `done` or `failed`.
    pub state: &'static str,
    /// The file being fetched.
    pub file: Option<String>,
    pub done_bytes: u64,
    pub total_bytes: u64,
    /// The pulled model's name (when done).
    pub name: Option<String>,
    /// `hf:ORG/REPO:QUANT` (when done).
    pub source: Option<String>,
    pub error: Option<String>,
}

struct Job {
    id: u64,
    model: String,
    done: Arc<AtomicU64>,
    total: Arc<AtomicU64>,
    file: Arc<Mutex<Option<String>>>,
    outcome: Option<Result<hub::Pulled, String>>,
}

/// The pulls of this server.
pub struct Pulls {
    /// The models directory pulls go to; `None` when the server was not given one.
    pub dir: Option<PathBuf>,
    jobs: Mutex<Vec<Job>>,
    next: AtomicU64,
}

/// Progress figures shared with the download threads.
struct Figures {
    done: Arc<AtomicU64>,
    total: Arc<AtomicU64>,
    file: Arc<Mutex<Option<String>>>,
}

impl hub::Progress for Figures {
    fn begin(&self, file: &str, total: u64, done: u64) {
        *self.file.lock().unwrap_or_else(|p| p.into_inner()) = Some(file.to_string());
        self.total.store(total, Ordering::Relaxed);
        self.done.store(done, Ordering::Relaxed);
    }
    fn advance(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }
    fn end(&self) {}
}

impl Pulls {
    pub fn new(dir: Option<PathBuf>) -> Self {
        Pulls { dir, jobs: Mutex::new(Vec::new()), next: AtomicU64::new(1) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Job>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every pull, newest first.
    pub fn list(&self) -> Vec<PullJson> {
        self.lock().iter().rev().map(json).collect()
    }

    /// Starts pulling `model` into `dir` on a blocking thread; `Err` if one is running.
    /// Starts pulling `spec` into `dir`; once it is there, `models` serves it (no restart).
    pub fn start(
        self: &Arc<Self>,
        model: &str,
        spec: hub::HfSpec,
        dir: &Path,
        models: Arc<crate::registry::Models>,
        config: Arc<crate::config::ServeConfig>,
    ) -> Result<PullJson, String> {
        let mut jobs = self.lock();
        if let Some(j) = jobs.iter().find(|j| j.outcome.is_none()) {
            return Err(format!("a pull is running already ({}); wait for it to end", j.model));
        }
        let finished = jobs.len().saturating_sub(KEEP_FINISHED - 1);
        jobs.drain(..finished);
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let figures = Figures { done: Arc::default(), total: Arc::default(), file: Arc::default() };
        jobs.push(Job { id, model: model.to_string(), done: figures.done.clone(), total: figures.total.clone(), file: figures.file.clone(), outcome: None });
        let view = jobs.last().map(json);
        drop(jobs);
        let (me, dir) = (self.clone(), dir.to_path_buf());
        tokio::task::spawn_blocking(move || {
            let hub = hub::Hub::from_env();
            let mut outcome = hub::pull(&hub, &spec, &dir, &figures).map_err(|e| e.to_string());
            if let Ok(p) = &outcome {
                match models.register(&p.name, &p.path) {
                    Ok(()) => {
                        if let Some(names) = models.names().into_iter().find(|n| n.id == p.name) {
                            config.add_extra_model(names);
                        }
                    }
                    Err(e) => outcome = Err(format!("pulled as {}, but it cannot be served: {e}", p.name)),
                }
            }
            match &outcome {
                Ok(p) => tracing::info!(model = %spec, name = %p.name, "pulled a model"),
                Err(e) => tracing::warn!(model = %spec, error = %e, "a pull failed"),
            }
            if let Some(j) = me.lock().iter_mut().find(|j| j.id == id) {
                j.outcome = Some(outcome);
            }
        });
        view.ok_or_else(|| "the pull vanished".to_string())
    }
}

fn json(j: &Job) -> PullJson {
    let (state, name, source, error) = match &j.outcome {
        None => ("running", None, None, None),
        Some(Ok(p)) => ("done", Some(p.name.clone()), Some(p.manifest.source.clone()), None),
        Some(Err(e)) => ("failed", None, None, Some(e.clone())),
    };
    PullJson {
        id: j.id,
        model: j.model.clone(),
        state,
        file: j.file.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        done_bytes: j.done.load(Ordering::Relaxed),
        total_bytes: j.total.load(Ordering::Relaxed),
        name,
        source,
        error,
    }
}

/// A model file in the models directory, as the picker and Settings show it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct LocalModel {
    pub name: String,
    pub size_bytes: u64,
    pub quant: Option<String>,
    pub context_length: Option<u64>,
    pub architecture: Option<String>,
    pub source: Option<String>,
}

/// Facts of the model file `path` (all parts of a split model counted).
pub fn describe(name: &str, path: &Path, dir: &Path) -> LocalModel {
    let f = gguf::GgufFile::open(path).ok();
    let manifest = hub::Manifest::read(dir, name);
    let size_bytes = match (&manifest, gguf::split_prefix(path)) {
        (Some(m), _) => m.files.iter().map(|f| f.size).sum(),
        (None, Some((prefix, _, n))) => (0..n).filter_map(|k| std::fs::metadata(gguf::split_part_path(&prefix, k, n)).ok()).map(|m| m.len()).sum(),
        (None, None) => std::fs::metadata(path).map_or(0, |m| m.len()),
    };
    let arch = f.as_ref().and_then(|f| f.opt_str("general.architecture").ok().flatten().map(str::to_string));
    let context_length = match (&f, &arch) {
        (Some(f), Some(a)) => f.opt_u64(&format!("{a}.context_length")).ok().flatten(),
        _ => None,
    };
    LocalModel {
        name: name.to_string(),
        size_bytes,
        quant: manifest.as_ref().map(|m| m.quant.clone()).or_else(|| f.as_ref().and_then(|f| f.file_type_name().map(str::to_string))),
        context_length,
        architecture: arch,
        source: manifest.map(|m| m.source),
    }
}

/// The models in `dir`: `*.gguf` files, a split model once (by its first part's prefix).
pub fn local_models(dir: &Path) -> Vec<LocalModel> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<LocalModel> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "gguf") && p.is_file())
        .filter_map(|p| {
            let stem = p.file_stem()?.to_str()?.to_string();
            let name = match gguf::split_prefix(&p) {
                Some((prefix, 0, _)) => prefix.file_name()?.to_str()?.to_string(),
                Some(_) => return None,
                None => stem,
            };
            (!name.starts_with('.')).then(|| describe(&name, &p, dir))
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

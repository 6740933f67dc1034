//! The KV disk tier (`daehwa serve --kv-disk SIZE`): full prefix blocks of the paged cache,
//! kept as files so that a conversation's prefix survives a restart and outlives its eviction
//! from RAM.
//!
//! ```text
//!   engine thread                         writer thread                  <data>/kv-cache/
//!   commit fills a block --try_send-->  [bounded queue] --> encode, write   <model id>/
//!     (queue full: the write is dropped,                    .tmp, rename      <hash>.kvb ...
//!      decoding never waits)                                evict LRU       <other model>/...
//!   admission misses RAM --read, check--------------------------------->  (evicted first)
//!     copy into pool blocks, registered as cached: the admission then hits them
//! ```
//!
//! - **Write-through**: a block is queued when it fills (commit), not when RAM evicts it, so a
//!   restart after a crash still finds it, and an eviction from RAM under memory pressure costs
//!   nothing at that moment: the block is already on disk (unless its write was dropped).
//! - **Keyed** by the model's identity ([`ModelId`]: a directory per model) and the block's
//!   prefix hash (the same hash chain as the RAM prefix cache, tenant salt included).
//! - **Never trusted**: a file is checked against the model, the geometry, the hash, the whole
//!   token prefix and its CRC-32 ([`format`]); a refused file is deleted and counted, and the
//!   block is computed instead. Files are written to a temporary name and renamed, without
//!   fsync: a crash can leave a torn file, which the checks refuse.
//! - **Bounded** by `max_bytes` over every file under the directory, least recently used first,
//!   other models' files before this model's ([`index`]).
//!
//! - **Every layer group**: a file holds the block of every layer, the full-attention groups'
//!   and the sliding-window ones' (Gemma 3) alike, copied right after the commit that filled it
//!   (a window group's released blocks are still cached then). On a read the full-attention
//!   groups import every block up to the hit, a window group only the last ones its layers
//!   can still see (`KvManager::import`).

pub mod format;
pub mod identity;
pub mod index;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use half::f16;

pub use format::{Geometry, Refused};
pub use identity::ModelId;
pub use index::{Index, Victim};

use crate::kv::paged::BlockHash;
use crate::TokenId;

/// Where and how large the tier is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskConfig {
    /// The tier's root (`<data dir>/kv-cache`); each model gets a directory in it.
    pub dir: PathBuf,
    /// Most bytes of block files under `dir`.
    pub max_bytes: u64,
}

/// Bytes of blocks waiting for the writer at most (beyond it writes are dropped).
const QUEUE_BYTES: usize = 64 << 20;

/// Counters of the tier, for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DiskStats {
    /// Blocks read back from disk into the RAM cache.
    pub hits: u64,
    /// Admissions that looked for the next block of their prefix on disk and did not find it.
    pub misses: u64,
    /// Files refused as corrupt, truncated or foreign (deleted).
    pub refused: u64,
    pub read_bytes: u64,
    pub written_bytes: u64,
    pub writes: u64,
    /// Writes dropped because the writer's queue was full.
    pub writes_dropped: u64,
    /// Files deleted to stay within the bound.
    pub evicted: u64,
    /// Engine-thread time spent reading blocks back, in microseconds.
    pub read_micros: u64,
    /// Bytes of files under the tier's directory now.
    pub bytes: u64,
    /// This model's block files now.
    pub files: u64,
    pub max_bytes: u64,
}

impl DiskStats {
    /// Sums `o` into `self` (several models' tiers; `bytes` may count shared files twice).
    pub fn add(&mut self, o: &DiskStats) {
        self.hits += o.hits;
        self.misses += o.misses;
        self.refused += o.refused;
        self.read_bytes += o.read_bytes;
        self.written_bytes += o.written_bytes;
        self.writes += o.writes;
        self.writes_dropped += o.writes_dropped;
        self.evicted += o.evicted;
        self.read_micros += o.read_micros;
        self.bytes += o.bytes;
        self.files += o.files;
        self.max_bytes = self.max_bytes.max(o.max_bytes);
    }
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    refused: AtomicU64,
    read_bytes: AtomicU64,
    written_bytes: AtomicU64,
    writes: AtomicU64,
    writes_dropped: AtomicU64,
    evicted: AtomicU64,
    read_micros: AtomicU64,
}

/// What the writer thread and the engine thread share.
struct Shared {
    dir: PathBuf,
    index: Mutex<Index>,
    counters: Counters,
}

impl Shared {
    fn index(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn path(&self, h: u128) -> PathBuf {
        self.dir.join(format!("{h:032x}.kvb"))
    }
    fn delete(&self, victims: Vec<Victim>) {
        for v in victims {
            let p = match v {
                Victim::Own(h) => self.path(h),
                Victim::Foreign(p) => p,
            };
            let _ = std::fs::remove_file(p);
            self.counters.evicted.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The tier's counters, readable from any thread.
#[derive(Clone)]
pub struct DiskStatsHandle(Arc<Shared>);

impl DiskStatsHandle {
    pub fn stats(&self) -> DiskStats {
        self.0.stats()
    }
}

impl Shared {
    fn stats(&self) -> DiskStats {
        let c = &self.counters;
        let (bytes, files, max_bytes) = {
            let ix = self.index();
            (ix.bytes(), ix.n_files() as u64, ix.max_bytes())
        };
        DiskStats {
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            read_bytes: c.read_bytes.load(Ordering::Relaxed),
            written_bytes: c.written_bytes.load(Ordering::Relaxed),
            writes: c.writes.load(Ordering::Relaxed),
            writes_dropped: c.writes_dropped.load(Ordering::Relaxed),
            evicted: c.evicted.load(Ordering::Relaxed),
            read_micros: c.read_micros.load(Ordering::Relaxed),
            bytes,
            files,
            max_bytes,
        }
    }
}

struct Job {
    hash: BlockHash,
    tokens: Vec<TokenId>,
    payload: Vec<f16>,
}

/// See the module docs. Owned by the engine thread; dropping it finishes the queued writes.
pub struct DiskTier {
    model: ModelId,
    geo: Geometry,
    shared: Arc<Shared>,
    tx: Option<SyncSender<Job>>,
    writer: Option<std::thread::JoinHandle<()>>,
    /// Reused by reads.
    bytes: Vec<u8>,
    payload: Vec<f16>,
}

/// Error opening the tier.
#[derive(Debug, thiserror::Error)]
#[error("the KV disk tier at {path}: {source}")]
pub struct DiskError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

fn parse_name(name: &str) -> Option<u128> {
    let hex = name.strip_suffix(".kvb")?;
    (hex.len() == 32).then(|| u128::from_str_radix(hex, 16).ok()).flatten()
}

fn mtime(m: &std::fs::Metadata) -> SystemTime {
    m.modified().unwrap_or(SystemTime::UNIX_EPOCH)
}

impl DiskTier {
    /// Opens (creating) the directory of `model` under `cfg.dir`, indexes the files found there
    /// (the bound applies to them at once) and starts the writer thread.
    pub fn open(cfg: &DiskConfig, model: ModelId, geo: Geometry) -> Result<DiskTier, DiskError> {
        let dir = cfg.dir.join(model.hex());
        let err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DiskError { path, source }
        };
        std::fs::create_dir_all(&dir).map_err(err(&dir))?;
        let mut index = Index::new(cfg.max_bytes);
        let mut foreign: Vec<(SystemTime, PathBuf, u64)> = Vec::new();
        let mut own: Vec<(SystemTime, u128, u64)> = Vec::new();
        for sub in std::fs::read_dir(&cfg.dir).map_err(err(&cfg.dir))?.flatten() {
            let sub_path = sub.path();
            if !sub_path.is_dir() {
                continue;
            }
            let is_own = sub_path == dir;
            let Ok(files) = std::fs::read_dir(&sub_path) else { continue };
            for f in files.flatten() {
                let Ok(meta) = f.metadata() else { continue };
                if !meta.is_file() {
                    continue;
                }
                let name = f.file_name().to_string_lossy().into_owned();
                if name.ends_with(".tmp") {
                    // A write interrupted by a crash.
                    let _ = std::fs::remove_file(f.path());
                    continue;
                }
                match (is_own, parse_name(&name)) {
                    (true, Some(h)) => own.push((mtime(&meta), h, meta.len())),
                    (false, Some(_)) => foreign.push((mtime(&meta), f.path(), meta.len())),
                    _ => {}
                }
            }
        }
        foreign.sort();
        own.sort();
        for (_, p, b) in foreign {
            index.add_foreign(p, b);
        }
        for (_, h, b) in own {
            index.insert(h, b);
        }
        let victims = index.shrink();
        let shared = Arc::new(Shared { dir, index: Mutex::new(index), counters: Counters::default() });
        shared.delete(victims);
        let per_block = 2 * geo.payload_len() + 4 * 4096;
        let (tx, rx) = sync_channel((QUEUE_BYTES / per_block.max(1)).max(2));
        let w = shared.clone();
        let writer = std::thread::Builder::new()
            .name("daehwa-kv-disk".into())
            .spawn(move || write_loop(&w, model, geo, rx))
            .map_err(err(&cfg.dir))?;
        Ok(DiskTier { model, geo, shared, tx: Some(tx), writer: Some(writer), bytes: Vec::new(), payload: vec![f16::ZERO; geo.payload_len()] })
    }

    pub fn geometry(&self) -> Geometry {
        self.geo
    }
    pub fn model(&self) -> ModelId {
        self.model
    }
    /// This model's directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Whether a file for `h` is on disk (it may still be refused when read).
    pub fn contains(&self, h: BlockHash) -> bool {
        self.shared.index().contains(h.0)
    }

    /// Claims the write of `h`: false when it is on disk or queued already.
    pub fn want(&self, h: BlockHash) -> bool {
        self.shared.index().reserve(h.0)
    }

    /// Queues the write of a block claimed with [`want`](Self::want): `tokens` is its whole
    /// prefix, `payload` its values (see [`format`]). Never waits: a full queue drops the
    /// write (counted) and returns false.
    pub fn submit(&self, hash: BlockHash, tokens: Vec<TokenId>, payload: Vec<f16>) -> bool {
        let Some(tx) = &self.tx else { return false };
        match tx.try_send(Job { hash, tokens, payload }) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.index().unreserve(hash.0);
                self.shared.counters.writes_dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Counts an admission whose next block was not on disk.
    pub fn record_miss(&self) {
        self.shared.counters.misses.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads the block of `hash` whose whole prefix is `tokens`; `None` when there is no such
    /// file or it is refused (then deleted and counted).
    pub fn read(&mut self, hash: BlockHash, tokens: &[TokenId]) -> Option<&[f16]> {
        let sh = &*self.shared;
        let path = sh.path(hash.0);
        self.bytes.clear();
        let read = std::fs::File::open(&path).and_then(|mut f| {
            f.read_to_end(&mut self.bytes)?;
            Ok(f)
        });
        let file = match read {
            Ok(f) => f,
            Err(_) => {
                sh.index().remove(hash.0);
                return None;
            }
        };
        if format::decode(&self.bytes, &self.model, hash, self.geo, tokens, &mut self.payload).is_err() {
            sh.counters.refused.fetch_add(1, Ordering::Relaxed);
            sh.index().remove(hash.0);
            let _ = std::fs::remove_file(&path);
            return None;
        }
        // The LRU order of the next start is the files' times.
        let _ = file.set_modified(SystemTime::now());
        sh.index().touch(hash.0);
        sh.counters.hits.fetch_add(1, Ordering::Relaxed);
        sh.counters.read_bytes.fetch_add(self.bytes.len() as u64, Ordering::Relaxed);
        Some(&self.payload)
    }

    pub fn stats(&self) -> DiskStats {
        self.shared.stats()
    }

    /// Reads the counters from any thread.
    pub fn stats_handle(&self) -> DiskStatsHandle {
        DiskStatsHandle(self.shared.clone())
    }

    /// Gives up a write claimed with [`want`](Self::want) and not submitted.
    pub fn unwant(&self, h: BlockHash) {
        self.shared.index().unreserve(h.0);
    }

    /// Adds engine-thread time spent reading blocks back.
    pub fn record_read_time(&self, d: std::time::Duration) {
        self.shared.counters.read_micros.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Waits until every queued write is on disk (tests; the tier keeps running).
    pub fn flush(&mut self) {
        // Swap in a fresh writer: dropping the old sender ends its loop after the queue drains.
        if let (Some(old_tx), Some(old)) = (self.tx.take(), self.writer.take()) {
            drop(old_tx);
            let _ = old.join();
        }
        let per_block = 2 * self.geo.payload_len() + 4 * 4096;
        let (tx, rx) = sync_channel((QUEUE_BYTES / per_block.max(1)).max(2));
        let w = self.shared.clone();
        let (model, geo) = (self.model, self.geo);
        self.writer = std::thread::Builder::new().name("daehwa-kv-disk".into()).spawn(move || write_loop(&w, model, geo, rx)).ok();
        self.tx = self.writer.as_ref().map(|_| tx);
    }
}

impl Drop for DiskTier {
    /// Finishes the queued writes.
    fn drop(&mut self) {
        self.tx.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn write_loop(sh: &Shared, model: ModelId, geo: Geometry, rx: Receiver<Job>) {
    let mut buf = Vec::new();
    for job in rx {
        let h = job.hash.0;
        format::encode(&model, job.hash, geo, &job.tokens, &job.payload, &mut buf);
        let path = sh.path(h);
        let tmp = sh.dir.join(format!(".{h:032x}.tmp"));
        let ok = std::fs::write(&tmp, &buf).and_then(|()| std::fs::rename(&tmp, &path));
        if ok.is_err() {
            let _ = std::fs::remove_file(&tmp);
            sh.index().unreserve(h);
            continue;
        }
        sh.counters.writes.fetch_add(1, Ordering::Relaxed);
        sh.counters.written_bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        let victims = sh.index().insert(h, buf.len() as u64);
        sh.delete(victims);
    }
}

#[cfg(test)]
mod tests;

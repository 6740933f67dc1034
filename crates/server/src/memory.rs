//! Giving memory back after load.
//!
//! glibc's `malloc` serves each thread from an arena and keeps what a request freed inside it for
//! later, so after a burst (many large request bodies parsed at once, an import, long prompts
//! tokenized on several blocking threads) an idle server can sit on gigabytes it no longer uses.
//! [`Trimmer`] calls `malloc_trim(0)`, which hands every arena's free pages back to the kernel:
//! once the engine is idle after any request was served since the last trim (freeing memory does
//! not show in the resident size, so the request count is the signal), and under sustained load
//! once the resident size has grown a lot. At most once per interval, on its own thread (a trim of
//! a large heap takes milliseconds: never on the async runtime).
//!
//! Chosen over replacing the global allocator (jemalloc, mimalloc): the kernels' hot loops do not
//! allocate, so allocator speed does not matter here, and trimming keeps the build free of a C
//! allocator while returning the memory all the same (`tests/serve_memory.rs` measures it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::backend::Backend;
use crate::metrics::Metrics;

/// When to trim.
#[derive(Clone, Copy, Debug)]
pub struct TrimPolicy {
    /// How often the resident size is looked at.
    pub interval: Duration,
    /// Growth since the last trim that is worth a trim even while requests run.
    pub busy_growth: u64,
}

impl Default for TrimPolicy {
    fn default() -> Self {
        TrimPolicy { interval: Duration::from_secs(2), busy_growth: 256 << 20 }
    }
}

/// Counts of what the trimmer did, for `/metrics`.
#[derive(Debug, Default)]
pub struct TrimStats {
    pub trims: AtomicU64,
    /// Bytes the last trims gave back (resident size before minus after), summed.
    pub released_bytes: AtomicU64,
}

/// The process's resident set size in bytes (`/proc/self/statm`); `None` where there is no procfs.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as u64
    } else {
        4096
    }
}

/// Returns free heap pages of every arena to the kernel. A no-op where the C library is not
/// glibc (musl's allocator returns memory by itself).
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own arenas under their locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// What the trimmer looks at on each tick.
#[derive(Clone, Copy, Debug)]
struct Tick {
    /// Resident bytes now.
    rss: u64,
    /// No sequence running or waiting.
    idle: bool,
    /// Requests served so far (any route, any status).
    requests: u64,
}

/// Caps glibc's malloc arenas at `n` (default: 8 per core). Each thread that allocates under
/// contention gets an arena of its own, and memory freed in one arena serves only that arena, so
/// on a many-core machine a burst spread over the runtime's and the blocking pool's threads leaves
/// free memory scattered over dozens of arenas. A few arenas are plenty for a server whose hot
/// loops do not allocate. Call it before spawning threads. A no-op elsewhere than glibc.
pub fn limit_arenas(n: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before other threads allocate.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, n.clamp(1, 64) as libc::c_int);
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = n;
}

/// The decision, apart from the clock and the allocator (unit-tested below): `last` is the tick
/// right after the previous trim.
fn should_trim(policy: &TrimPolicy, last: Tick, now: Tick) -> bool {
    if now.idle {
        now.requests != last.requests
    } else {
        now.rss.saturating_sub(last.rss) >= policy.busy_growth
    }
}

/// The trimming thread; it runs until the process exits.
pub struct Trimmer;

impl Trimmer {
    /// Starts the thread; it counts its work in `metrics.memory`. Fails only if the thread cannot
    /// be spawned.
    pub fn spawn(engine: Arc<dyn Backend>, metrics: Arc<Metrics>, policy: TrimPolicy) -> std::io::Result<()> {
        Self::spawn_with(move || engine.stats(), metrics, policy)
    }

    /// [`Trimmer::spawn`] over any source of the engines' figures (the summed stats of every
    /// loaded model, [`crate::registry::Models::stats`]).
    pub fn spawn_with(stats: impl Fn() -> crate::backend::Stats + Send + 'static, metrics: Arc<Metrics>, policy: TrimPolicy) -> std::io::Result<()> {
        std::thread::Builder::new().name("daehwa-trim".into()).spawn(move || {
            let tick = || {
                let s = stats();
                Some(Tick { rss: resident_bytes()?, idle: s.running == 0 && s.queue_depth == 0, requests: metrics.requests_total() })
            };
            let Some(mut last) = tick() else {
                tracing::debug!("no /proc/self/statm: memory trimming off");
                return;
            };
            loop {
                std::thread::sleep(policy.interval);
                let Some(now) = tick() else { return };
                if should_trim(&policy, last, now) {
                    trim();
                    let after = resident_bytes().unwrap_or(now.rss);
                    metrics.memory.trims.fetch_add(1, Ordering::Relaxed);
                    metrics.memory.released_bytes.fetch_add(now.rss.saturating_sub(after), Ordering::Relaxed);
                    tracing::debug!(before = now.rss, after, "returned free heap memory to the system");
                    last = Tick { rss: after, ..now };
                } else if now.rss < last.rss {
                    last.rss = now.rss;
                }
            }
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_after_requests_when_idle_and_after_large_growth_when_busy() {
        let p = TrimPolicy { interval: Duration::from_secs(1), busy_growth: 256 << 20 };
        let last = Tick { rss: 100 << 20, idle: true, requests: 10 };
        let at = |rss: u64, idle: bool, requests: u64| Tick { rss, idle, requests };
        assert!(!should_trim(&p, last, at(100 << 20, true, 10)), "nothing happened since");
        assert!(should_trim(&p, last, at(90 << 20, true, 11)), "a request was served: its memory may be free now");
        assert!(!should_trim(&p, last, at(200 << 20, false, 50)), "busy, modest growth");
        assert!(should_trim(&p, last, at(400 << 20, false, 50)), "busy, large growth");
    }

    #[test]
    fn reads_the_resident_size_and_trim_gives_freed_memory_back() {
        let before = resident_bytes().expect("procfs");
        assert!(before > 1 << 20, "a test process uses more than 1 MiB: {before}");
        // Many small blocks on another thread (its own arena), every 100th kept alive, the way
        // a few long-lived values outlive a burst of request data: the free space between them
        // is not at the top of any heap, so free() alone cannot return it.
        let kept = std::thread::spawn(|| {
            let mut blocks: Vec<Vec<u8>> = (0..200_000).map(|i| vec![i as u8; 1000]).collect();
            std::hint::black_box(&blocks);
            let kept: Vec<Vec<u8>> = blocks.iter_mut().step_by(100).map(std::mem::take).collect();
            drop(blocks);
            kept
        })
        .join()
        .expect("thread");
        let freed = resident_bytes().expect("procfs");
        trim();
        let after = resident_bytes().expect("procfs");
        assert!(after + (64 << 20) < freed, "trim returned less than 64 MiB of ~200 MB freed: {before} -> {freed} -> {after}");
        assert_eq!(kept.len(), 2000);
    }
}

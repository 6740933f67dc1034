//! A persistent thread pool for data-parallel kernels (matmul rows, attention heads).
//!
//! llama.cpp keeps its worker threads alive across graph nodes and hands them work through a
//! shared counter; spawning threads per operation would cost tens of microseconds per matmul,
//! more than a whole decode-step matmul of a small model. This pool does the same:
//!
//! ```text
//!   caller                      worker k (spin ~20 us, then park on a Condvar)
//!   ------                      --------
//!   job = &f; next = 0
//!   epoch += 1 (odd: open) ---> sees a new odd epoch, active += 1, re-checks the epoch
//!   claim i = next++ ...        claim i = next++ ... (dynamic: fast threads take more)
//!   epoch += 1 (even: closed)   active -= 1
//!   wait until active == 0      back to waiting
//! ```
//!
//! The caller never waits for a worker that has not joined yet (a descheduled worker on a busy
//! machine costs nothing); it only waits for workers that are running one of its tasks, which is
//! what makes borrowing the caller's stack-allocated closure sound.
//!
//! Nested use (calling [`ThreadPool::run`] from inside a task) and concurrent use from two threads
//! are not supported for parallelism: such a call is detected and runs its tasks inline on the
//! calling thread, which is correct but serial.
//!
//! ```
//! use kernels::pool::ThreadPool;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! let pool = ThreadPool::new(4);
//! let sum = AtomicUsize::new(0);
//! pool.run(100, &|i| { sum.fetch_add(i, Ordering::Relaxed); });
//! assert_eq!(sum.into_inner(), 4950);
//! ```

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long an idle worker spins before parking. Decode steps issue a `run` every few
/// microseconds, so a short spin avoids a futex wake per matmul; parking afterwards keeps an idle
/// server (or a machine where another process wants the core) from burning CPU.
const SPIN: Duration = Duration::from_micros(20);

/// The closure of the current job with its lifetime erased; valid only while the job is open.
type TaskFn = dyn Fn(usize) + Sync;

/// One `run` call, on the caller's stack.
struct Job {
    f: *const TaskFn,
    n_tasks: usize,
}

struct Shared {
    /// Odd while a job is open, even while closed; strictly increasing.
    epoch: AtomicU64,
    /// The open job (null when none). Points into the stack frame of the `run` in progress.
    job: AtomicPtr<Job>,
    /// Next task index to claim.
    next: AtomicUsize,
    /// Workers currently inside the open job.
    active: AtomicUsize,
    /// Set while a `run` is in progress, to detect nested or concurrent use.
    busy: AtomicBool,
    /// First panic payload of the current job, rethrown by the caller.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    /// Parking: `sleepers` counts workers waiting on `wake` (changed under `lock`).
    lock: Mutex<()>,
    wake: Condvar,
    sleepers: AtomicUsize,
    shutdown: AtomicBool,
}

/// A persistent pool of `n_threads - 1` workers plus the calling thread.
pub struct ThreadPool {
    n_threads: usize,
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl ThreadPool {
    /// Starts `n_threads - 1` workers (the caller of [`run`](Self::run) is the n-th thread).
    /// `n_threads` of 0 is treated as 1; with 1 every `run` executes inline.
    pub fn new(n_threads: usize) -> Self {
        let n_threads = n_threads.max(1);
        let shared = Arc::new(Shared {
            epoch: AtomicU64::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            next: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            busy: AtomicBool::new(false),
            panic: Mutex::new(None),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            sleepers: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
        });
        let mut workers = Vec::with_capacity(n_threads - 1);
        for k in 1..n_threads {
            let shared = Arc::clone(&shared);
            let spawned = thread::Builder::new()
                .name(format!("daehwa-kernel-{k}"))
                .spawn(move || worker_loop(&shared));
            match spawned {
                Ok(handle) => workers.push(handle),
                // Out of threads: run with what we have rather than fail; tasks are claimed
                // dynamically, so fewer workers is only slower.
                Err(_) => break,
            }
        }
        let n_threads = workers.len() + 1;
        ThreadPool { n_threads, shared, workers }
    }

    /// CPU time the workers have used since they started (spinning included: it is spent). The
    /// calling thread's own time is [`crate::cputime::thread_cpu_time`].
    pub fn workers_cpu_time(&self) -> Duration {
        use std::os::unix::thread::JoinHandleExt;
        // The workers are joined only in `Drop`, so each handle names a live thread.
        self.workers.iter().map(|h| crate::cputime::pthread_cpu_time(h.as_pthread_t())).sum()
    }

    /// Number of threads that execute tasks, the caller included.
    pub fn n_threads(&self) -> usize {
        self.n_threads
    }

    /// Runs `f(i)` for every `i in 0..n_tasks`, each exactly once, on the workers and the calling
    /// thread; returns when all have finished. Tasks are claimed one index at a time from a shared
    /// counter, so make each task a chunk of work (a range of rows), not a single element.
    ///
    /// If a task panics, the remaining unclaimed tasks are skipped, every running task is awaited,
    /// and the first panic is resumed on the calling thread; the pool stays usable.
    ///
    /// Nested or concurrent calls run inline on the calling thread (see the module docs).
    pub fn run(&self, n_tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        if n_tasks == 0 {
            return;
        }
        if self.n_threads == 1 || n_tasks == 1 {
            (0..n_tasks).for_each(f);
            return;
        }
        let s = &*self.shared;
        if s.busy.compare_exchange(false, true, SeqCst, SeqCst).is_err() {
            // Nested (from inside a task) or concurrent use: correct but serial.
            (0..n_tasks).for_each(f);
            return;
        }

        // SAFETY: only the lifetime is erased. The pointer is dereferenced by workers only while
        // the job is open or while they are counted in `active`, and this function does not
        // return (or unwind) before closing the job and seeing `active == 0`.
        let f_static: *const TaskFn = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static TaskFn>(f) };
        let job = Job { f: f_static, n_tasks };
        s.next.store(0, SeqCst);
        s.job.store(std::ptr::from_ref(&job).cast_mut(), SeqCst);
        s.epoch.fetch_add(1, SeqCst); // open (odd)
        if s.sleepers.load(SeqCst) > 0 {
            let _guard = lock(&s.lock);
            s.wake.notify_all();
        }

        // The caller works too.
        let caller_panic = panic::catch_unwind(AssertUnwindSafe(|| claim_tasks(s, &job)));
        if caller_panic.is_err() {
            s.next.store(usize::MAX / 2, SeqCst); // stop handing out tasks
        }

        s.epoch.fetch_add(1, SeqCst); // close (even): no new worker joins
        while s.active.load(SeqCst) != 0 {
            std::hint::spin_loop();
            // A joined worker may be descheduled mid-task on a busy machine; let it run.
            thread::yield_now();
        }
        s.job.store(std::ptr::null_mut(), SeqCst);
        let worker_panic = lock(&s.panic).take();
        s.busy.store(false, SeqCst);

        if let Err(payload) = caller_panic {
            panic::resume_unwind(payload);
        }
        if let Some(payload) = worker_panic {
            panic::resume_unwind(payload);
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        let s = &*self.shared;
        s.shutdown.store(true, SeqCst);
        s.epoch.fetch_add(2, SeqCst); // a change every waiting worker notices
        {
            let _guard = lock(&s.lock);
            s.wake.notify_all();
        }
        for handle in self.workers.drain(..) {
            // A worker never unwinds (tasks run under catch_unwind); nothing to report.
            let _ = handle.join();
        }
    }
}

/// Locks ignoring poisoning: the guarded data (a payload slot, a unit) stays valid after a panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Claims and runs tasks of `job` until the counter passes `n_tasks`.
fn claim_tasks(s: &Shared, job: &Job) {
    loop {
        let i = s.next.fetch_add(1, SeqCst);
        if i >= job.n_tasks {
            return;
        }
        // SAFETY: `job.f` outlives the open job (see `run`), and the caller of this function is
        // either `run` itself or a worker counted in `active`.
        let f = unsafe { &*job.f };
        f(i);
    }
}

fn worker_loop(s: &Shared) {
    let mut seen = 0u64;
    loop {
        let epoch = wait_for_new_epoch(s, seen);
        if s.shutdown.load(SeqCst) {
            return;
        }
        seen = epoch;
        if epoch.is_multiple_of(2) {
            continue; // a job opened and closed while we were not looking
        }
        s.active.fetch_add(1, SeqCst);
        // Re-check after announcing ourselves: if the epoch is unchanged, the caller has not
        // closed the job yet, so it will see `active > 0` and wait for us.
        if s.epoch.load(SeqCst) == epoch {
            let job = s.job.load(SeqCst);
            // SAFETY: the job is open at `epoch` and we are counted in `active`, so the caller's
            // `Job` is alive until we decrement `active`.
            let job = unsafe { &*job };
            if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| claim_tasks(s, job))) {
                // Stop handing out tasks; the caller rethrows the first payload.
                s.next.store(usize::MAX / 2, SeqCst);
                let mut slot = lock(&s.panic);
                if slot.is_none() {
                    *slot = Some(payload);
                }
            }
        }
        s.active.fetch_sub(1, SeqCst);
    }
}

/// Spins briefly, then parks, until the epoch differs from `seen`.
fn wait_for_new_epoch(s: &Shared, seen: u64) -> u64 {
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        let e = s.epoch.load(SeqCst);
        if e != seen {
            return e;
        }
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(64) && start.elapsed() > SPIN {
            break;
        }
    }
    let mut guard = lock(&s.lock);
    s.sleepers.fetch_add(1, SeqCst);
    loop {
        // Checked after registering as a sleeper: a caller that bumped the epoch before this
        // load is seen here; one that bumps it after sees `sleepers > 0` and notifies under the
        // lock, which it can only take once we are waiting.
        let e = s.epoch.load(SeqCst);
        if e != seen {
            s.sleepers.fetch_sub(1, SeqCst);
            return e;
        }
        guard = s.wake.wait(guard).unwrap_or_else(|poisoned| poisoned.into_inner());
    }
}

/// Default number of compute threads: the physical cores available to this process where that
/// can be told (Linux sysfs topology), else `available_parallelism`. Hyper-threads share the
/// SIMD units that matmul saturates, so llama.cpp also defaults to physical cores.
pub fn default_threads() -> usize {
    let logical = thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    match physical_cores() {
        Some(p) if p > 0 => p.min(logical),
        _ => logical,
    }
}

/// Counts distinct (package, core) pairs among the CPUs this process may run on.
#[cfg(target_os = "linux")]
fn physical_cores() -> Option<usize> {
    let allowed = allowed_cpus()?;
    let mut cores = std::collections::HashSet::new();
    for cpu in allowed {
        let base = format!("/sys/devices/system/cpu/cpu{cpu}/topology");
        let core = std::fs::read_to_string(format!("{base}/core_id")).ok()?;
        let pkg = std::fs::read_to_string(format!("{base}/physical_package_id")).ok()?;
        cores.insert((pkg.trim().to_owned(), core.trim().to_owned()));
    }
    Some(cores.len())
}

#[cfg(not(target_os = "linux"))]
fn physical_cores() -> Option<usize> {
    None
}

/// The `Cpus_allowed_list` of this process, e.g. `0-3,8`.
#[cfg(target_os = "linux")]
fn allowed_cpus() -> Option<Vec<usize>> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let list = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?;
    let mut cpus = Vec::new();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.trim().parse::<usize>().ok()?..=b.trim().parse::<usize>().ok()?),
            None => cpus.push(part.trim().parse().ok()?),
        }
    }
    Some(cpus)
}

//! The thread pool runs every index exactly once, call after call, survives panics, and degrades
//! to inline execution for nested use.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use kernels::pool::{default_threads, ThreadPool};

fn counts(n: usize) -> Vec<AtomicUsize> {
    (0..n).map(|_| AtomicUsize::new(0)).collect()
}

#[test]
fn every_index_runs_exactly_once_many_calls_in_a_row() {
    for n_threads in [1, 2, 3, 4, 8] {
        let pool = ThreadPool::new(n_threads);
        assert_eq!(pool.n_threads(), n_threads);
        for call in 0..2000 {
            let n_tasks = (call * 7) % 37; // 0..36, including 0 and 1
            let hits = counts(n_tasks);
            pool.run(n_tasks, &|i| {
                hits[i].fetch_add(1, Relaxed);
            });
            for (i, h) in hits.iter().enumerate() {
                assert_eq!(h.load(Relaxed), 1, "threads {n_threads} call {call} index {i}");
            }
        }
    }
}

#[test]
fn work_is_spread_across_threads() {
    let pool = ThreadPool::new(4);
    let threads = std::sync::Mutex::new(std::collections::HashSet::new());
    // Long enough tasks that the workers wake up and take some.
    pool.run(64, &|_| {
        std::thread::sleep(Duration::from_millis(2));
        threads.lock().expect("lock").insert(std::thread::current().id());
    });
    let n = threads.lock().expect("lock").len();
    assert!(n >= 2, "only {n} thread(s) ran tasks");
}

#[test]
fn workers_wake_after_parking() {
    let pool = ThreadPool::new(3);
    for _ in 0..5 {
        // Longer than the spin window: the workers park and must be woken by the next run.
        std::thread::sleep(Duration::from_millis(5));
        let hits = counts(100);
        pool.run(100, &|i| {
            hits[i].fetch_add(1, Relaxed);
        });
        assert!(hits.iter().all(|h| h.load(Relaxed) == 1));
    }
}

#[test]
fn results_written_from_tasks_are_visible_after_run() {
    let pool = ThreadPool::new(4);
    let out: Vec<AtomicUsize> = counts(1000);
    for round in 0..50 {
        pool.run(10, &|chunk| {
            for (i, slot) in out.iter().enumerate().skip(chunk * 100).take(100) {
                slot.store(i * round, Relaxed);
            }
        });
        assert!(out.iter().enumerate().all(|(i, v)| v.load(Relaxed) == i * round));
    }
}

#[test]
fn panic_in_a_task_propagates_and_the_pool_stays_usable() {
    let pool = ThreadPool::new(4);
    for _ in 0..20 {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.run(50, &|i| {
                if i == 17 {
                    panic!("task 17 failed");
                }
            });
        }));
        let payload = result.expect_err("the panic must reach the caller");
        let msg = payload.downcast_ref::<&str>().copied().unwrap_or("");
        assert_eq!(msg, "task 17 failed");
        let hits = counts(50);
        pool.run(50, &|i| {
            hits[i].fetch_add(1, Relaxed);
        });
        assert!(hits.iter().all(|h| h.load(Relaxed) == 1));
    }
}

/// Nested use is unsupported for parallelism; it is detected and runs inline, so it still
/// computes the right thing instead of deadlocking or corrupting the outer job.
#[test]
fn nested_run_is_inline_and_correct() {
    let pool = ThreadPool::new(4);
    let hits = counts(8 * 16);
    pool.run(8, &|outer| {
        pool.run(16, &|inner| {
            hits[outer * 16 + inner].fetch_add(1, Relaxed);
        });
    });
    assert!(hits.iter().all(|h| h.load(Relaxed) == 1));
}

#[test]
fn concurrent_callers_from_two_threads() {
    let pool = ThreadPool::new(3);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                for _ in 0..300 {
                    let hits = counts(20);
                    pool.run(20, &|i| {
                        hits[i].fetch_add(1, Relaxed);
                    });
                    assert!(hits.iter().all(|h| h.load(Relaxed) == 1));
                }
            });
        }
    });
}

#[test]
fn default_threads_is_within_available_parallelism() {
    let n = default_threads();
    let logical = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    assert!(n >= 1 && n <= logical, "default_threads {n}, logical {logical}");
}

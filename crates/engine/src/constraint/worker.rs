//! The threads that compute grammar masks while the engine thread runs the batched forward pass.
//!
//! A sequence hands its matcher to a worker right after its token is committed; the engine thread
//! then runs the next forward pass (tens of milliseconds) while the worker computes the next mask
//! (tens to hundreds of microseconds), and takes the matcher back just before sampling. Plain
//! threads and channels: the jobs are few and short, and the kernels' own pool must not be taken
//! from the forward pass.

use std::sync::mpsc::{channel, Sender};
use std::sync::{Mutex, OnceLock};

type Job = Box<dyn FnOnce() + Send + 'static>;

struct Pool {
    tx: Mutex<Sender<Job>>,
}

fn pool() -> Option<&'static Pool> {
    static POOL: OnceLock<Option<Pool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let n = (cores / 8).clamp(1, 4);
        let (tx, rx) = channel::<Job>();
        let rx = std::sync::Arc::new(Mutex::new(rx));
        for i in 0..n {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new().name(format!("grammar-{i}")).spawn(move || loop {
                let job = match rx.lock() {
                    Ok(r) => r.recv(),
                    Err(_) => return,
                };
                match job {
                    // A panicking job only loses its own result: the waiting sequence sees a
                    // closed channel and fails with an error.
                    Ok(job) => {
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                    Err(_) => return,
                }
            });
            if spawned.is_err() {
                return None;
            }
        }
        Some(Pool { tx: Mutex::new(tx) })
    })
    .as_ref()
}

/// Runs `job` on a worker, or right here when no worker could be started.
pub(super) fn spawn(job: Job) {
    let Some(p) = pool() else { return job() };
    let sent = match p.tx.lock() {
        Ok(tx) => tx.send(job).map_err(|e| e.0),
        Err(_) => Err(job),
    };
    if let Err(job) = sent {
        job()
    }
}

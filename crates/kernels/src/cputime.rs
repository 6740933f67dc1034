//! CPU time of threads (for energy accounting): the kernel's per-thread CPU clocks, read with
//! `clock_gettime` (a worker's clock through `pthread_getcpuclockid`). Zero where unavailable.

use std::time::Duration;

fn clock(id: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer; an invalid clock id is reported as an error.
    if unsafe { libc::clock_gettime(id, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(u64::try_from(ts.tv_sec).unwrap_or(0), u32::try_from(ts.tv_nsec).unwrap_or(0))
}

/// CPU time used so far by the calling thread.
pub fn thread_cpu_time() -> Duration {
    clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time used so far by the thread `t`, which must still be running (not yet joined).
pub(crate) fn pthread_cpu_time(t: libc::pthread_t) -> Duration {
    let mut id: libc::clockid_t = 0;
    // SAFETY: the caller guarantees `t` is a live thread of this process; `id` is an out-pointer.
    if unsafe { libc::pthread_getcpuclockid(t, &mut id) } != 0 {
        return Duration::ZERO;
    }
    clock(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_threads_accumulate_cpu_time() {
        let before = thread_cpu_time();
        let t0 = std::time::Instant::now();
        let mut x = 0u64;
        while t0.elapsed() < Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let used = thread_cpu_time() - before;
        assert!(used >= Duration::from_millis(5) && used <= Duration::from_millis(200), "{used:?}");
    }
}

//! [`Admission`]: the server's request queue, counted in requests (`--queue`), not in sequences.
//!
//! A request takes one [`Slot`] however many prompts and choices it has (a completions request
//! with a 64-item prompt list is one request) and gives it back once every one of its sequences
//! has started (sent its first event) or when it ends. The engine's own queue, which counts
//! sequences, is sized by the caller so it is never the limit (`--queue` x the most choices one
//! request may have).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Requests waiting to start, up to a capacity.
#[derive(Debug)]
pub struct Admission {
    capacity: usize,
    waiting: AtomicUsize,
}

impl Admission {
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Admission {
            capacity: capacity.max(1),
            waiting: AtomicUsize::new(0),
        })
    }

    /// A place in the queue, or `None` when it is full (429).
    pub fn try_take(self: &Arc<Self>) -> Option<Slot> {
        let mut cur = self.waiting.load(Ordering::Relaxed);
        loop {
            if cur >= self.capacity {
                return None;
            }
            match self.waiting.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(Slot(self.clone())),
                Err(now) => cur = now,
            }
        }
    }

    /// Requests holding a slot now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// One request's place in the queue; dropping it gives the place back.
#[derive(Debug)]
pub struct Slot(Arc<Admission>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_requests_up_to_capacity_and_frees_on_drop() {
        let a = Admission::new(2);
        let s1 = a.try_take().expect("first");
        let _s2 = a.try_take().expect("second");
        assert!(a.try_take().is_none());
        assert_eq!(a.waiting(), 2);
        drop(s1);
        assert!(a.try_take().is_some());
        assert_eq!(a.waiting(), 1);
    }
}

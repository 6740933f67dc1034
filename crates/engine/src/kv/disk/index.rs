//! [`Index`]: which block files the disk tier holds, their bytes, and the LRU order that
//! keeps them under the size bound. Pure bookkeeping (the tier deletes the files it names).
//!
//! Files of other models (another model file in the same data directory, an older version of
//! this one) count against the bound too, and are evicted before any of this model's: this
//! server can never read them. Among this model's files the least recently written or read goes
//! first; at startup the order is the files' modification times (a read hit touches its file).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;

/// A file the bound pushed out: delete it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Victim {
    Own(u128),
    Foreign(PathBuf),
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    bytes: u64,
    tick: u64,
}

/// See the module docs.
#[derive(Debug)]
pub struct Index {
    max_bytes: u64,
    /// Own and foreign files together.
    bytes: u64,
    entries: HashMap<u128, Entry>,
    /// tick -> hash, oldest first.
    order: BTreeMap<u64, u128>,
    tick: u64,
    /// Other models' files, oldest first.
    foreign: VecDeque<(PathBuf, u64)>,
    /// Queued or being written: not written again.
    pending: HashSet<u128>,
}

impl Index {
    pub fn new(max_bytes: u64) -> Self {
        Index { max_bytes, bytes: 0, entries: HashMap::new(), order: BTreeMap::new(), tick: 0, foreign: VecDeque::new(), pending: HashSet::new() }
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }
    /// Bytes of every file counted (this model's and others').
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
    /// This model's files.
    pub fn n_files(&self) -> usize {
        self.entries.len()
    }
    pub fn contains(&self, h: u128) -> bool {
        self.entries.contains_key(&h)
    }

    /// Marks `h` as the most recently used.
    pub fn touch(&mut self, h: u128) {
        self.tick += 1;
        if let Some(e) = self.entries.get_mut(&h) {
            self.order.remove(&e.tick);
            e.tick = self.tick;
            self.order.insert(self.tick, h);
        }
    }

    /// Claims the write of `h`: false when it is on disk or already queued.
    pub fn reserve(&mut self, h: u128) -> bool {
        !self.entries.contains_key(&h) && self.pending.insert(h)
    }

    /// Gives up a claimed write (the queue was full, the write failed).
    pub fn unreserve(&mut self, h: u128) {
        self.pending.remove(&h);
    }

    /// Counts another model's file found at startup (oldest first).
    pub fn add_foreign(&mut self, path: PathBuf, bytes: u64) {
        self.bytes += bytes;
        self.foreign.push_back((path, bytes));
    }

    /// Records the written file of `h` as the most recent, evicting what the bound needs.
    /// A file larger than the whole bound is not kept: it is its own victim.
    pub fn insert(&mut self, h: u128, bytes: u64) -> Vec<Victim> {
        self.pending.remove(&h);
        if bytes > self.max_bytes {
            return vec![Victim::Own(h)];
        }
        self.remove(h);
        let mut victims = Vec::new();
        while self.bytes + bytes > self.max_bytes {
            match self.evict_one() {
                Some(v) => victims.push(v),
                None => break,
            }
        }
        self.tick += 1;
        self.entries.insert(h, Entry { bytes, tick: self.tick });
        self.order.insert(self.tick, h);
        self.bytes += bytes;
        victims
    }

    /// Forgets `h` (a refused file the caller deletes); whether it was there.
    pub fn remove(&mut self, h: u128) -> bool {
        match self.entries.remove(&h) {
            Some(e) => {
                self.order.remove(&e.tick);
                self.bytes -= e.bytes;
                true
            }
            None => false,
        }
    }

    /// Evicts until the files fit in the bound (after a start over a smaller `--kv-disk`).
    pub fn shrink(&mut self) -> Vec<Victim> {
        let mut victims = Vec::new();
        while self.bytes > self.max_bytes {
            match self.evict_one() {
                Some(v) => victims.push(v),
                None => break,
            }
        }
        victims
    }

    fn evict_one(&mut self) -> Option<Victim> {
        if let Some((path, b)) = self.foreign.pop_front() {
            self.bytes -= b;
            return Some(Victim::Foreign(path));
        }
        let (_, h) = self.order.pop_first()?;
        let e = self.entries.remove(&h)?;
        self.bytes -= e.bytes;
        Some(Victim::Own(h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_holds_and_the_least_recently_used_goes_first() {
        let mut ix = Index::new(300);
        assert!(ix.insert(1, 100).is_empty());
        assert!(ix.insert(2, 100).is_empty());
        assert!(ix.insert(3, 100).is_empty());
        assert_eq!(ix.bytes(), 300);
        // A read of 1 makes 2 the oldest.
        ix.touch(1);
        assert_eq!(ix.insert(4, 100), vec![Victim::Own(2)]);
        assert_eq!(ix.insert(5, 150), vec![Victim::Own(3), Victim::Own(1)]);
        assert!(ix.bytes() <= 300);
        assert!(ix.contains(4) && ix.contains(5) && !ix.contains(1));
        assert_eq!(ix.n_files(), 2);
        // Too large for the whole bound: not kept, nothing else evicted.
        assert_eq!(ix.insert(6, 301), vec![Victim::Own(6)]);
        assert!(!ix.contains(6));
        assert_eq!(ix.bytes(), 250);
    }

    #[test]
    fn other_models_files_are_evicted_first_and_a_smaller_bound_shrinks() {
        let mut ix = Index::new(250);
        ix.add_foreign(PathBuf::from("other/a"), 100);
        ix.add_foreign(PathBuf::from("other/b"), 100);
        assert!(ix.insert(1, 50).is_empty());
        assert_eq!(ix.insert(2, 100), vec![Victim::Foreign(PathBuf::from("other/a"))]);
        assert_eq!(ix.insert(3, 100), vec![Victim::Foreign(PathBuf::from("other/b"))]);
        assert_eq!(ix.bytes(), 250);
        let mut small = Index::new(120);
        for h in 0..4 {
            small.entries.insert(h, Entry { bytes: 50, tick: h as u64 });
            small.order.insert(h as u64, h);
            small.bytes += 50;
        }
        small.tick = 4;
        assert_eq!(small.shrink(), vec![Victim::Own(0), Victim::Own(1)]);
        assert_eq!(small.bytes(), 100);
    }

    #[test]
    fn a_write_is_claimed_once() {
        let mut ix = Index::new(1000);
        assert!(ix.reserve(9));
        assert!(!ix.reserve(9), "already queued");
        ix.unreserve(9);
        assert!(ix.reserve(9));
        ix.insert(9, 10);
        assert!(!ix.reserve(9), "already on disk");
        assert!(ix.remove(9));
        assert!(!ix.remove(9));
        assert_eq!(ix.bytes(), 0);
    }
}

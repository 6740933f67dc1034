//! The engine thread's side of the KV disk tier ([`crate::kv::disk`]).
//!
//! - After each step's commit, every block that filled is copied out of the pool and queued for
//!   the writer thread (unless it is on disk or queued already); a full queue drops it.
//! - Before each step's admissions, the next waiting sequences that could be admitted now look
//!   past their RAM prefix hit for the following blocks on disk; those are read, checked and
//!   copied into free pool blocks registered as cached, so the admission then counts them as
//!   prefix hits (`cached_tokens`). The reads run on this thread, between two forward passes:
//!   running sequences wait for them (`read_micros` in the tier's counters measures how long;
//!   bench/serve's restart phase reports it).

use std::time::Instant;

use super::Worker;
use crate::kv::disk::DiskTier;

impl Worker {
    /// Enables the disk tier (commits then record the blocks they fill).
    pub fn set_disk(&mut self, disk: Option<DiskTier>) {
        self.kv.set_record_full(disk.is_some());
        self.disk = disk;
    }

    /// Queues the blocks the last commit filled for writing.
    pub(super) fn write_to_disk(&mut self) {
        let Some(disk) = self.disk.as_ref() else { return };
        self.kv.take_newly_full(&mut self.full_scratch);
        let bs = self.kv.block_size();
        let len = disk.geometry().payload_len();
        for &(slot, i, h) in &self.full_scratch {
            if !disk.want(h) {
                continue;
            }
            let (Some(Some(b)), Some(tokens)) = (self.kv.table(0, slot).get(i).copied(), self.kv.committed(slot).get(..(i + 1) * bs)) else {
                disk.unwant(h);
                continue;
            };
            let mut payload = Vec::with_capacity(len);
            self.buffers.copy_block_out(0, b.index(), &mut payload);
            disk.submit(h, tokens.to_vec(), payload);
        }
    }

    /// Reads the disk blocks that extend the RAM prefix hits of the next waiting sequences.
    pub(super) fn import_from_disk(&mut self) {
        let Some(disk) = self.disk.as_mut() else { return };
        let mut headroom = self.sched.n_running();
        let n = self.kv.n_free_slots().min(self.sched_cfg.max_seqs.saturating_sub(headroom));
        let bs = self.kv.block_size();
        let started = Instant::now();
        let mut read_any = false;
        for (id, tokens, salt) in self.sched.waiting_front(n) {
            if self.disk_probed.contains(&id) {
                headroom += 1;
                continue;
            }
            let (hashes, k) = self.kv.prefix_plan(tokens, salt);
            let room = self.kv.import_room(tokens.len(), &hashes, k, headroom);
            if room == 0 {
                // It cannot be admitted now, nor can those behind it (admission is FIFO).
                break;
            }
            self.disk_probed.insert(id);
            headroom += 1;
            if k == hashes.len() {
                continue;
            }
            let on_disk = hashes[k..].iter().take(room).take_while(|&&h| disk.contains(h)).count();
            if on_disk == 0 {
                disk.record_miss();
                continue;
            }
            read_any = true;
            let buffers = &mut self.buffers;
            self.kv.import(&hashes, k, on_disk, |i, b| match disk.read(hashes[i], &tokens[..(i + 1) * bs]) {
                Some(data) => {
                    buffers.copy_block_in(0, b.index(), data);
                    true
                }
                None => false,
            });
        }
        if read_any {
            disk.record_read_time(started.elapsed());
        }
    }
}

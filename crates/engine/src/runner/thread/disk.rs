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
            // Every group's block (all layers): a sliding-window group's just-released blocks
            // are still cached at this point.
            let (Some(blocks), Some(tokens)) = (self.kv.cached_blocks(h), self.kv.committed(slot).get(..(i + 1) * bs)) else {
                disk.unwant(h);
                continue;
            };
            let mut payload = Vec::with_capacity(len);
            for (g, b) in blocks.iter().enumerate() {
                self.buffers.copy_block_out(g, b.index(), &mut payload);
            }
            disk.submit(h, tokens.to_vec(), payload);
        }
    }

    /// Reads the disk blocks that extend the RAM prefix hits of the next waiting sequences.
    pub(super) fn import_from_disk(&mut self) {
        let Some(disk) = self.disk.as_mut() else { return };
        let mut headroom = self.sched.n_running();
        let n = self.kv.n_free_slots().min(self.sched_cfg.max_seqs.saturating_sub(headroom));
        let bs = self.kv.block_size();
        let chunk = self.sched_cfg.step_token_budget;
        // Where each group's layers sit in a block file's payload (group order).
        let per_layer = 2 * bs * self.buffers.kv_dim();
        let mut spans = Vec::with_capacity(self.kv.n_groups());
        let mut at = 0;
        for g in 0..self.kv.n_groups() {
            let n = self.buffers.layout().n_layers_in(g) * per_layer;
            spans.push(at..at + n);
            at += n;
        }
        let started = Instant::now();
        let mut read_any = false;
        for (id, tokens, salt) in self.sched.waiting_front(n) {
            if self.disk_probed.contains(&id) {
                headroom += 1;
                continue;
            }
            let (hashes, k) = self.kv.prefix_plan(tokens, salt);
            if !self.kv.import_fits(tokens.len(), chunk, &hashes, k, headroom) {
                // It cannot be admitted now, nor can those behind it (admission is FIFO).
                break;
            }
            self.disk_probed.insert(id);
            headroom += 1;
            if k == hashes.len() {
                continue;
            }
            // The longest hit the disk could complete (full-attention groups need every block
            // up to it, window groups the last ones before it) that fits now.
            let on_disk = |i: usize| disk.contains(hashes[i]);
            let mut m = self.kv.full_groups_reach(&hashes, k, &on_disk);
            while m > k && !(self.kv.hit_possible(&hashes, m, &on_disk) && self.kv.import_fits(tokens.len(), chunk, &hashes, m, headroom - 1)) {
                m -= 1;
            }
            if m == k {
                disk.record_miss();
                continue;
            }
            read_any = true;
            let buffers = &mut self.buffers;
            self.kv.import(&hashes, m, |i, blocks| match disk.read(hashes[i], &tokens[..(i + 1) * bs]) {
                Some(data) => {
                    for &(g, b) in blocks {
                        buffers.copy_block_in(g, b.index(), &data[spans[g].clone()]);
                    }
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

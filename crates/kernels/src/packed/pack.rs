//! Repacking at load: a GGUF matrix's rows rewritten into the packed layouts (module docs of
//! `packed`), row groups in parallel for large matrices.

use std::ops::Range;

use gguf::GgmlType;

use super::aligned::AlignedBytes;
#[cfg(target_arch = "x86_64")]
use super::mxfp4;
use super::pack_k::pack_k;
use super::{block_elems, group_block_bytes, packs, PackedMatrix, ROWS};
use crate::matmul::QMatrix;
use crate::quant::blocks::{as_blocks, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ8_0};

impl PackedMatrix {
    /// Repacks `m` when its type has a packed kernel and the CPU runs it; `None` otherwise.
    pub fn pack(m: &QMatrix) -> Option<Self> {
        if !packs(m.ty) {
            return None;
        }
        Self::pack_unchecked(m)
    }

    fn pack_unchecked(m: &QMatrix) -> Option<Self> {
        let (qsb, dmb) = group_block_bytes(m.ty)?;
        let rb = m.row_bytes().ok()?;
        let be = block_elems(m.ty);
        if m.data.len() != rb * m.n_rows || !m.n_cols.is_multiple_of(be) {
            return None;
        }
        let nb = m.n_cols / be;
        let n_groups = m.n_rows.div_ceil(ROWS);
        let mut qs = AlignedBytes::zeroed(n_groups * nb * qsb);
        let mut dm = AlignedBytes::zeroed(n_groups * nb * dmb);
        // Row groups are independent: large matrices are packed in parts on several threads.
        let parts = pack_threads(n_groups * nb * (qsb + dmb)).min(n_groups).max(1);
        let per = n_groups.div_ceil(parts).max(1);
        std::thread::scope(|scope| {
            let (mut qs, mut dm) = (qs.as_mut_slice(), dm.as_mut_slice());
            for g0 in (0..n_groups).step_by(per) {
                let g1 = (g0 + per).min(n_groups);
                let (q_part, q_rest) = std::mem::take(&mut qs).split_at_mut((g1 - g0) * nb * qsb);
                let (d_part, d_rest) = std::mem::take(&mut dm).split_at_mut((g1 - g0) * nb * dmb);
                (qs, dm) = (q_rest, d_rest);
                let mut job = move || pack_groups(m, g0..g1, (qsb, dmb), rb, q_part, d_part);
                if g1 == n_groups {
                    job();
                } else {
                    scope.spawn(job);
                }
            }
        });
        Some(PackedMatrix { ty: m.ty, n_rows: m.n_rows, n_cols: m.n_cols, qs, dm })
    }
}

/// Packs row groups `groups` of `m` into `qs` and `dm`, which hold exactly those groups' bytes
/// (`(qsb, dmb)` per group and block; `rb` bytes per GGUF row).
fn pack_groups(m: &QMatrix, groups: Range<usize>, (qsb, dmb): (usize, usize), rb: usize, qs: &mut [u8], dm: &mut [u8]) {
    let nb = m.n_cols / block_elems(m.ty);
    for r in groups.start * ROWS..(groups.end * ROWS).min(m.n_rows) {
        let (g, k) = (r / ROWS - groups.start, r % ROWS);
        let row = &m.data[r * rb..(r + 1) * rb];
        for b in 0..nb {
            let q = &mut qs[(g * nb + b) * qsb..][..qsb];
            let s = &mut dm[(g * nb + b) * dmb..][..dmb];
            match m.ty {
                GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K | GgmlType::Q3_K | GgmlType::Q2_K | GgmlType::IQ4_XS => pack_k(m.ty, row, b, k, q, s),
                GgmlType::Q4_1 => {
                    let blk: &[BlockQ4_1] = as_blocks(row).expect("whole blocks");
                    q[k * 16..(k + 1) * 16].copy_from_slice(&blk[b].qs);
                    s[k * 2..k * 2 + 2].copy_from_slice(&blk[b].d);
                    s[8 + k * 2..8 + k * 2 + 2].copy_from_slice(&blk[b].m);
                }
                GgmlType::Q8_0 => {
                    let blk: &[BlockQ8_0] = as_blocks(row).expect("whole blocks");
                    for (d, &v) in q[k * 32..(k + 1) * 32].iter_mut().zip(&blk[b].qs) {
                        *d = (v as u8) ^ 0x80;
                    }
                    s[k * 2..k * 2 + 2].copy_from_slice(&blk[b].d);
                }
                GgmlType::Q5_0 => {
                    let blk: &[BlockQ5_0] = as_blocks(row).expect("whole blocks");
                    q[k * 16..(k + 1) * 16].copy_from_slice(&blk[b].qs);
                    let qh = u32::from_le_bytes(blk[b].qh);
                    // Bits 16k..16k+16 of each mask: bytes 2k, 2k+1 (little-endian).
                    q[64 + k * 2..64 + k * 2 + 2].copy_from_slice(&(qh as u16).to_le_bytes());
                    q[72 + k * 2..72 + k * 2 + 2].copy_from_slice(&((qh >> 16) as u16).to_le_bytes());
                    s[k * 2..k * 2 + 2].copy_from_slice(&blk[b].d);
                }
                GgmlType::Q4_0 => {
                    let blk: &[BlockQ4_0] = as_blocks(row).expect("whole blocks");
                    q[k * 16..(k + 1) * 16].copy_from_slice(&blk[b].qs);
                    s[k * 2..k * 2 + 2].copy_from_slice(&blk[b].d);
                }
                #[cfg(target_arch = "x86_64")]
                GgmlType::MXFP4 => mxfp4::pack(&as_blocks::<crate::quant::blocks::BlockMxfp4>(row).expect("whole blocks")[b], k, q, s),
                _ => unreachable!("group_block_bytes admits only q4_0, q4_1, q5_0, q8_0, mxfp4, the K-quants and iq4_xs"),
            }
        }
    }
}

/// Threads that load-time packing may use: the CPUs available, at most 4. Packing an 8B model's
/// 4.7 GiB of weights is most of its load (byte shuffles and the page faults of the mapped file
/// and the new buffers), and the work splits with no sharing (by row group within a matrix, by
/// matrix across a layer's experts in the engine).
pub fn load_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(4)
}

/// Threads that pack a matrix of `bytes`: one below 16 MiB, else [`load_threads`].
fn pack_threads(bytes: usize) -> usize {
    const PARALLEL_FROM: usize = 16 << 20;
    if bytes < PARALLEL_FROM {
        return 1;
    }
    load_threads()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A matrix past the parallel threshold packs to the same bytes in parts as in one run, with
    /// a last row group that is only partly rows (its padding rows stay zero).
    #[test]
    fn packing_in_parts_writes_the_bytes_of_one_run() {
        let ty = GgmlType::Q4_0;
        let (n_rows, n_cols) = (8190, 4096);
        let rb = crate::quant::row_bytes(ty, n_cols).expect("q4_0 rows");
        // Deterministic pseudo-random bytes: packing moves them, it never reads them as numbers.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let data: Vec<u8> = (0..n_rows * rb)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let m = QMatrix { ty, data: &data, n_rows, n_cols, packed: None };
        let (qsb, dmb) = group_block_bytes(ty).expect("q4_0 packs");
        let (n_groups, nb) = (n_rows.div_ceil(ROWS), n_cols / block_elems(ty));
        assert!(pack_threads(n_groups * nb * (qsb + dmb)) > 1 || load_threads() == 1);
        let p = PackedMatrix::pack_unchecked(&m).expect("packs");
        let (mut qs, mut dm) = (vec![0u8; n_groups * nb * qsb], vec![0u8; n_groups * nb * dmb]);
        pack_groups(&m, 0..n_groups, (qsb, dmb), rb, &mut qs, &mut dm);
        assert!(p.qs.as_slice() == &qs[..], "quants differ");
        assert!(p.dm.as_slice() == &dm[..], "scales differ");
        // The last group's two padding rows: zero quants.
        let last = &p.qs.as_slice()[(n_groups - 1) * nb * qsb..];
        assert!((0..nb).all(|b| last[b * qsb + 2 * 16..b * qsb + 4 * 16].iter().all(|&v| v == 0)));
    }
}

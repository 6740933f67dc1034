//! Writing one row's 256-element super-block into its group's packed layout (q4_K, q5_K, q6_K,
//! q3_K, q2_K, iq4_xs), at load.

use gguf::GgmlType;

use crate::quant::blocks::as_blocks;

/// Writes row `k`'s super-block `b` into its group's packed quants `q` and meta `s` (layouts in
/// `q4_k`, `q5_k`, `q6_k`, `k16` and `iq4_xs`).
pub(super) fn pack_k(ty: GgmlType, row: &[u8], b: usize, k: usize, q: &mut [u8], s: &mut [u8]) {
    use crate::quant::blocks::{unpack_scales_q3k, BlockIQ4XS, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K};
    let (p, h) = (k / 2, k % 2);
    match ty {
        GgmlType::Q4_K => {
            let blk: &[BlockQ4K] = as_blocks(row).expect("whole blocks");
            let a = &blk[b];
            low4_scales_mins(k, q, s, &a.qs, &a.scales, a.d, a.dmin);
        }
        GgmlType::Q5_K => {
            let blk: &[BlockQ5K] = as_blocks(row).expect("whole blocks");
            let a = &blk[b];
            low4_scales_mins(k, q, s, &a.qs, &a.scales, a.d, a.dmin);
            q[512 + 64 * p + 32 * h..][..32].copy_from_slice(&a.qh);
        }
        GgmlType::Q6_K => {
            let blk: &[BlockQ6K] = as_blocks(row).expect("whole blocks");
            let a = &blk[b];
            for c in 0..4 {
                q[(2 * c + p) * 64 + 32 * h..][..32].copy_from_slice(&a.ql[32 * c..32 * c + 32]);
            }
            for j in 0..2 {
                q[512 + (2 * j + p) * 64 + 32 * h..][..32].copy_from_slice(&a.qh[32 * j..32 * j + 32]);
            }
            for (d, &v) in s[16 * k..16 * k + 16].iter_mut().zip(&a.scales) {
                *d = v as u8;
            }
            s[64 + 2 * k..64 + 2 * k + 2].copy_from_slice(&a.d);
        }
        // q3_K and q2_K: `k16`'s layouts.
        GgmlType::Q3_K => {
            let a = &as_blocks::<BlockQ3K>(row).expect("whole blocks")[b];
            pack_low2(&a.qs, p, h, q);
            q[256 + 64 * p + 32 * h..][..32].copy_from_slice(&a.hmask);
            for (d, v) in s[16 * k..16 * k + 16].iter_mut().zip(unpack_scales_q3k(&a.scales)) {
                *d = v as u8;
            }
            s[64 + 2 * k..64 + 2 * k + 2].copy_from_slice(&a.d);
        }
        GgmlType::Q2_K => {
            let a = &as_blocks::<BlockQ2K>(row).expect("whole blocks")[b];
            pack_low2(&a.qs, p, h, q);
            s[16 * k..16 * k + 16].copy_from_slice(&a.scales);
            s[64 + 2 * k..64 + 2 * k + 2].copy_from_slice(&a.d);
            s[72 + 2 * k..72 + 2 * k + 2].copy_from_slice(&a.dmin);
        }
        #[cfg(target_arch = "x86_64")]
        GgmlType::IQ4_XS => super::iq4_xs::pack(&as_blocks::<BlockIQ4XS>(row).expect("whole blocks")[b], k, q, s),
        _ => unreachable!("pack_k: K-quants and iq4_xs only"),
    }
}

/// q3_K's and q2_K's `qs` (two 32-byte halves) for row `2p + h` of a group (`k16`'s layout).
fn pack_low2(qs: &[u8; 64], p: usize, h: usize, q: &mut [u8]) {
    for half in 0..2 {
        q[(2 * half + p) * 64 + 32 * h..][..32].copy_from_slice(&qs[32 * half..32 * half + 32]);
    }
}

/// What q4_K and q5_K share: row `k`'s 128 low-nibble bytes, its 6-bit scales and mins decoded
/// (`m[8k + s]`, `m[32 + 8k + s]`), `d` and `dmin` (`m[64 + 2k]`, `m[72 + 2k]`).
fn low4_scales_mins(k: usize, q: &mut [u8], s: &mut [u8], qs: &[u8], scales: &[u8; crate::quant::blocks::K_SCALE_SIZE], d: [u8; 2], dmin: [u8; 2]) {
    let (p, h) = (k / 2, k % 2);
    for j in 0..4 {
        q[(2 * j + p) * 64 + 32 * h..][..32].copy_from_slice(&qs[32 * j..32 * j + 32]);
    }
    let sm = crate::quant::blocks::unpack_scales_mins_k4(scales);
    s[8 * k..8 * k + 8].copy_from_slice(&sm[..8]);
    s[32 + 8 * k..32 + 8 * k + 8].copy_from_slice(&sm[8..16]);
    s[64 + 2 * k..64 + 2 * k + 2].copy_from_slice(&d);
    s[72 + 2 * k..72 + 2 * k + 2].copy_from_slice(&dmin);
}

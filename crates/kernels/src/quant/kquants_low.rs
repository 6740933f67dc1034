//! The low-bit k-quants q2_K and q3_K (256-element super-blocks of 16 sub-blocks of 16, dot
//! with q8_K): dequantization as ggml's `dequantize_row_q2_K/q3_K`, and scalar dots with
//! ggml's integer sums in the float order of [`super::lanes`].
//!
//! Both store element `e = 128 h + 32 j + l` (`h` < 2, `j` < 4, `l` < 32) in bits `2j..2j + 2`
//! of `qs[32 h + l]`, with the scale of sub-block `e / 16`; q3_K's third bit is bit `4h + j` of
//! `hmask[l]`, and a clear bit means the value is 4 lower.

use super::blocks::{dot_operands, f16_le, unpack_scales_q3k, BlockQ2K, BlockQ3K, BlockQ8K, QK_K};
use super::kquants::k_step;

/// The 2-bit quants of chunk `c` (= 4h + j) of a q2_K/q3_K block, in element order.
#[inline(always)]
fn low2(qs: &[u8; QK_K / 4], c: usize) -> [i8; 32] {
    let (h, j) = (c / 4, c % 4);
    std::array::from_fn(|l| ((qs[32 * h + l] >> (2 * j)) & 3) as i8)
}

/// The signed values (-4..4) of chunk `c` of a q3_K block.
#[inline(always)]
fn q3_values(b: &BlockQ3K, c: usize) -> [i8; 32] {
    let lo = low2(&b.qs, c);
    std::array::from_fn(|l| lo[l] - if b.hmask[l] & (1 << c) != 0 { 0 } else { 4 })
}

pub fn dequantize_q2_k(x: &[BlockQ2K], y: &mut [f32]) {
    for (b, yb) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let (d, min) = (f16_le(b.d), f16_le(b.dmin));
        for (c, out) in yb.chunks_exact_mut(32).enumerate() {
            let q = low2(&b.qs, c);
            for (half, (o, q)) in out.chunks_exact_mut(16).zip(q.chunks_exact(16)).enumerate() {
                let sc = b.scales[2 * c + half];
                let (dl, ml) = (d * (sc & 0xF) as f32, min * (sc >> 4) as f32);
                for (o, &q) in o.iter_mut().zip(q) {
                    *o = dl * q as f32 - ml;
                }
            }
        }
    }
}

pub fn dequantize_q3_k(x: &[BlockQ3K], y: &mut [f32]) {
    for (b, yb) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = f16_le(b.d);
        let sc = unpack_scales_q3k(&b.scales);
        for (c, out) in yb.chunks_exact_mut(32).enumerate() {
            let q = q3_values(b, c);
            for (half, (o, q)) in out.chunks_exact_mut(16).zip(q.chunks_exact(16)).enumerate() {
                let dl = d * sc[2 * c + half] as f32;
                for (o, &q) in o.iter_mut().zip(q) {
                    *o = dl * q as f32;
                }
            }
        }
    }
}

pub fn vec_dot_q2_k_q8_k(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let (wb, xb) = dot_operands::<BlockQ2K, BlockQ8K>(n, w, x);
    let mut acc = 0f32;
    for (a, b) in wb.iter().zip(xb) {
        let mut isum = 0i32;
        for (c, y) in b.qs.chunks_exact(32).enumerate() {
            isum += sub_dots(&low2(&a.qs, c), y, |k| (a.scales[2 * c + k] & 0xF) as i32);
        }
        let mut msum = 0i32;
        for g in 0..QK_K / 16 {
            msum += (a.scales[g] >> 4) as i32 * b.bsum(g) as i32;
        }
        acc = k_step(acc, b.d() * f16_le(a.d), isum, b.d() * f16_le(a.dmin), msum);
    }
    acc
}

pub fn vec_dot_q3_k_q8_k(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let (wb, xb) = dot_operands::<BlockQ3K, BlockQ8K>(n, w, x);
    let mut acc = 0f32;
    for (a, b) in wb.iter().zip(xb) {
        let sc = unpack_scales_q3k(&a.scales);
        let mut isum = 0i32;
        for (c, y) in b.qs.chunks_exact(32).enumerate() {
            isum += sub_dots(&q3_values(a, c), y, |k| sc[2 * c + k] as i32);
        }
        acc = k_step(acc, b.d() * f16_le(a.d), isum, 0.0, 0);
    }
    acc
}

/// `scale(0) * dot(v[..16], y[..16]) + scale(1) * dot(v[16..], y[16..])` (exact).
#[inline(always)]
fn sub_dots(v: &[i8; 32], y: &[i8], scale: impl Fn(usize) -> i32) -> i32 {
    (0..2).map(|k| scale(k) * (16 * k..16 * k + 16).map(|i| v[i] as i32 * y[i] as i32).sum::<i32>()).sum()
}

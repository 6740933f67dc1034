//! mxfp4 (OCP microscaling FP4, gpt-oss's expert weights): dequantization and the scalar dot
//! with q8_0 (`ggml_vec_dot_mxfp4_q8_0_generic`'s integer sums, floats in [`super::lanes`]'
//! order). Each 32-element block has one E8M0 exponent `e` and 32 E2M1 codes; ggml stores the
//! codes' values doubled (`KVALUES_MXFP4`, all integers) and halves the scale instead.

use super::blocks::{dot_operands, e8m0_to_f32_half, f16_le, BlockMxfp4, BlockQ8_0, KVALUES_MXFP4, QK};
use super::lanes::{lane_dot32, nibbles_through, Lanes};

pub fn dequantize_mxfp4(x: &[BlockMxfp4], y: &mut [f32]) {
    for (b, yb) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = e8m0_to_f32_half(b.e);
        for (o, &v) in yb.iter_mut().zip(&nibbles_through(&b.qs, &KVALUES_MXFP4)) {
            *o = v as f32 * d;
        }
    }
}

pub fn vec_dot_mxfp4_q8_0(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let (wb, xb) = dot_operands::<BlockMxfp4, BlockQ8_0>(n, w, x);
    let mut acc = Lanes::default();
    for (a, b) in wb.iter().zip(xb) {
        let v = nibbles_through(&a.qs, &KVALUES_MXFP4);
        let mut sum = [0i32; 8];
        lane_dot32(&mut sum, &v, &b.qs, |_| 1);
        acc.add(f16_le(b.d) * e8m0_to_f32_half(a.e), &sum);
    }
    acc.hsum()
}

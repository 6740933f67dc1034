//! The non-linear 4-bit i-quants iq4_nl (32-element blocks, dot with q8_0) and iq4_xs
//! (256-element super-blocks of 8 sub-blocks with 6-bit scales, dot with q8_K): both look their
//! nibbles up in `KVALUES_IQ4NL`. Dequantization follows ggml's `dequantize_row_iq4_*`; the
//! scalar dots have ggml's integer sums, iq4_nl with the float order of [`super::lanes`],
//! iq4_xs with the K-quant one ([`super::kquants::k_step`]: one exact total per super-block,
//! so its packed and row kernels agree bit for bit).

use super::blocks::{dot_operands, f16_le, BlockIQ4NL, BlockIQ4XS, BlockQ8K, BlockQ8_0, KVALUES_IQ4NL, QK, QK_K};
use super::kquants::k_step;
use super::lanes::{lane_dot32, nibbles_through, Lanes};

pub fn dequantize_iq4_nl(x: &[BlockIQ4NL], y: &mut [f32]) {
    for (b, yb) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = f16_le(b.d);
        for (o, &v) in yb.iter_mut().zip(&nibbles_through(&b.qs, &KVALUES_IQ4NL)) {
            *o = d * v as f32;
        }
    }
}

pub fn dequantize_iq4_xs(x: &[BlockIQ4XS], y: &mut [f32]) {
    for (b, yb) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = f16_le(b.d);
        for (ib, (qs, out)) in b.qs.as_chunks::<16>().0.iter().zip(yb.chunks_exact_mut(32)).enumerate() {
            let dl = d * b.scale(ib) as f32;
            for (o, &v) in out.iter_mut().zip(&nibbles_through(qs, &KVALUES_IQ4NL)) {
                *o = dl * v as f32;
            }
        }
    }
}

pub fn vec_dot_iq4_nl_q8_0(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let (wb, xb) = dot_operands::<BlockIQ4NL, BlockQ8_0>(n, w, x);
    let mut acc = Lanes::default();
    for (a, b) in wb.iter().zip(xb) {
        let mut sum = [0i32; 8];
        lane_dot32(&mut sum, &nibbles_through(&a.qs, &KVALUES_IQ4NL), &b.qs, |_| 1);
        acc.add(f16_le(a.d) * f16_le(b.d), &sum);
    }
    acc.hsum()
}

pub fn vec_dot_iq4_xs_q8_k(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let (wb, xb) = dot_operands::<BlockIQ4XS, BlockQ8K>(n, w, x);
    let mut acc = 0f32;
    for (a, b) in wb.iter().zip(xb) {
        let mut isum = 0i32;
        for (ib, (qs, y)) in a.qs.as_chunks::<16>().0.iter().zip(b.qs.chunks_exact(32)).enumerate() {
            let v = nibbles_through(qs, &KVALUES_IQ4NL);
            isum += a.scale(ib) * v.iter().zip(y).map(|(&v, &y)| v as i32 * y as i32).sum::<i32>();
        }
        acc = k_step(acc, f16_le(a.d) * b.d(), isum, 0.0, 0);
    }
    acc
}

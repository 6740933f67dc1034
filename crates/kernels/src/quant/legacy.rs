//! The 32-element block types q4_0, q4_1, q5_0, q5_1, q8_0 and q8_1: reference quantization
//! (`quantize_row_*_ref` in ggml-quants.c), dequantization, and the scalar dot products
//! (`ggml_vec_dot_*_generic` in ggml-cpu/quants.c) with the same integer arithmetic and the
//! same order of float operations.
//!
//! Float expressions are written without fused multiply-adds; C compilers may contract
//! `x*d + m` into an FMA, so dequantized values can differ from a given ggml build in the last
//! bit, while the stored blocks are bit-exact.

use super::blocks::{
    dot_operands, f16_le, f16_le_from, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0,
    BlockQ8_1, QK,
};

const H: usize = QK / 2;

/// The signed value with the largest |v| (the first one on ties), as ggml's `amax/max` loops.
#[inline]
fn signed_absmax(xs: &[f32]) -> f32 {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in xs {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

#[inline]
fn min_max(xs: &[f32]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in xs {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

pub fn quantize_q4_0(x: &[f32], y: &mut [BlockQ4_0]) {
    for (xb, yb) in x.chunks_exact(QK).zip(y) {
        let d = signed_absmax(xb) / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        yb.d = f16_le_from(d);
        for j in 0..H {
            let x0 = xb[j] * id;
            let x1 = xb[H + j] * id;
            let xi0 = ((x0 + 8.5) as i8).min(15) as u8;
            let xi1 = ((x1 + 8.5) as i8).min(15) as u8;
            yb.qs[j] = xi0 | (xi1 << 4);
        }
    }
}

pub fn quantize_q4_1(x: &[f32], y: &mut [BlockQ4_1]) {
    for (xb, yb) in x.chunks_exact(QK).zip(y) {
        let (min, max) = min_max(xb);
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        yb.d = f16_le_from(d);
        yb.m = f16_le_from(min);
        for j in 0..H {
            let x0 = (xb[j] - min) * id;
            let x1 = (xb[H + j] - min) * id;
            let xi0 = ((x0 + 0.5) as i8).min(15) as u8;
            let xi1 = ((x1 + 0.5) as i8).min(15) as u8;
            yb.qs[j] = xi0 | (xi1 << 4);
        }
    }
}

pub fn quantize_q5_0(x: &[f32], y: &mut [BlockQ5_0]) {
    for (xb, yb) in x.chunks_exact(QK).zip(y) {
        let d = signed_absmax(xb) / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        yb.d = f16_le_from(d);
        let mut qh = 0u32;
        for j in 0..H {
            let x0 = xb[j] * id;
            let x1 = xb[H + j] * id;
            let xi0 = ((x0 + 16.5) as i8).min(31) as u8;
            let xi1 = ((x1 + 16.5) as i8).min(31) as u8;
            yb.qs[j] = (xi0 & 0x0F) | ((xi1 & 0x0F) << 4);
            qh |= (((xi0 & 0x10) >> 4) as u32) << j;
            qh |= (((xi1 & 0x10) >> 4) as u32) << (j + H);
        }
        yb.qh = qh.to_le_bytes();
    }
}

pub fn quantize_q5_1(x: &[f32], y: &mut [BlockQ5_1]) {
    for (xb, yb) in x.chunks_exact(QK).zip(y) {
        let (min, max) = min_max(xb);
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        yb.d = f16_le_from(d);
        yb.m = f16_le_from(min);
        let mut qh = 0u32;
        for j in 0..H {
            let x0 = (xb[j] - min) * id;
            let x1 = (xb[H + j] - min) * id;
            let xi0 = (x0 + 0.5) as u8;
            let xi1 = (x1 + 0.5) as u8;
            yb.qs[j] = (xi0 & 0x0F) | ((xi1 & 0x0F) << 4);
            qh |= (((xi0 & 0x10) >> 4) as u32) << j;
            qh |= (((xi1 & 0x10) >> 4) as u32) << (j + H);
        }
        yb.qh = qh.to_le_bytes();
    }
}

#[inline]
fn absmax(xs: &[f32]) -> f32 {
    xs.iter().fold(0f32, |a, v| a.max(v.abs()))
}

pub fn quantize_q8_0(x: &[f32], y: &mut [BlockQ8_0]) {
    for (xb, yb) in x.chunks_exact(QK).zip(y) {
        let d = absmax(xb) / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        yb.d = f16_le_from(d);
        for (q, &v) in yb.qs.iter_mut().zip(xb) {
            *q = (v * id).round() as i8;
        }
    }
}

pub fn quantize_q8_1(x: &[f32], y: &mut [BlockQ8_1]) {
    for (xb, yb) in x.chunks_exact(QK).zip(y) {
        let d = absmax(xb) / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        yb.d = f16_le_from(d);
        let mut sum = 0i32;
        for (q, &v) in yb.qs.iter_mut().zip(xb) {
            *q = (v * id).round() as i8;
            sum += *q as i32;
        }
        yb.s = f16_le_from(sum as f32 * d);
    }
}

pub fn dequantize_q4_0(x: &[BlockQ4_0], y: &mut [f32]) {
    for (b, yb) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = f16_le(b.d);
        for j in 0..H {
            yb[j] = ((b.qs[j] & 0x0F) as i32 - 8) as f32 * d;
            yb[j + H] = ((b.qs[j] >> 4) as i32 - 8) as f32 * d;
        }
    }
}

pub fn dequantize_q4_1(x: &[BlockQ4_1], y: &mut [f32]) {
    for (b, yb) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let (d, m) = (f16_le(b.d), f16_le(b.m));
        for j in 0..H {
            yb[j] = (b.qs[j] & 0x0F) as f32 * d + m;
            yb[j + H] = (b.qs[j] >> 4) as f32 * d + m;
        }
    }
}

/// The 5-bit values of a q5 block (0..32), element order.
#[inline(always)]
fn q5_values(qs: &[u8; H], qh: [u8; 4]) -> [i32; QK] {
    let qh = u32::from_le_bytes(qh);
    let mut v = [0i32; QK];
    for j in 0..H {
        let xh0 = (((qh >> j) << 4) & 0x10) as u8;
        let xh1 = ((qh >> (j + 12)) & 0x10) as u8;
        v[j] = ((qs[j] & 0x0F) | xh0) as i32;
        v[j + H] = ((qs[j] >> 4) | xh1) as i32;
    }
    v
}

pub fn dequantize_q5_0(x: &[BlockQ5_0], y: &mut [f32]) {
    for (b, yb) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = f16_le(b.d);
        for (o, v) in yb.iter_mut().zip(q5_values(&b.qs, b.qh)) {
            *o = (v - 16) as f32 * d;
        }
    }
}

pub fn dequantize_q5_1(x: &[BlockQ5_1], y: &mut [f32]) {
    for (b, yb) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let (d, m) = (f16_le(b.d), f16_le(b.m));
        for (o, v) in yb.iter_mut().zip(q5_values(&b.qs, b.qh)) {
            *o = v as f32 * d + m;
        }
    }
}

pub fn dequantize_q8_0(x: &[BlockQ8_0], y: &mut [f32]) {
    for (b, yb) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = f16_le(b.d);
        for (o, &q) in yb.iter_mut().zip(&b.qs) {
            *o = q as f32 * d;
        }
    }
}

pub fn dequantize_q8_1(x: &[BlockQ8_1], y: &mut [f32]) {
    for (b, yb) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = f16_le(b.d);
        for (o, &q) in yb.iter_mut().zip(&b.qs) {
            *o = q as f32 * d;
        }
    }
}

pub fn vec_dot_q4_0_q8_0(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let (wb, xb) = dot_operands::<BlockQ4_0, BlockQ8_0>(n, w, x);
    let mut sumf = 0f32;
    for (a, b) in wb.iter().zip(xb) {
        let (mut s0, mut s1) = (0i32, 0i32);
        for j in 0..H {
            s0 += ((a.qs[j] & 0x0F) as i32 - 8) * b.qs[j] as i32;
            s1 += ((a.qs[j] >> 4) as i32 - 8) * b.qs[j + H] as i32;
        }
        sumf += (s0 + s1) as f32 * f16_le(a.d) * f16_le(b.d);
    }
    sumf
}

pub fn vec_dot_q4_1_q8_1(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let (wb, xb) = dot_operands::<BlockQ4_1, BlockQ8_1>(n, w, x);
    let mut sumf = 0f32;
    for (a, b) in wb.iter().zip(xb) {
        let (mut s0, mut s1) = (0i32, 0i32);
        for j in 0..H {
            s0 += (a.qs[j] & 0x0F) as i32 * b.qs[j] as i32;
            s1 += (a.qs[j] >> 4) as i32 * b.qs[j + H] as i32;
        }
        sumf += (f16_le(a.d) * f16_le(b.d)) * (s0 + s1) as f32 + f16_le(a.m) * f16_le(b.s);
    }
    sumf
}

pub fn vec_dot_q5_0_q8_0(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let (wb, xb) = dot_operands::<BlockQ5_0, BlockQ8_0>(n, w, x);
    let mut sumf = 0f32;
    for (a, b) in wb.iter().zip(xb) {
        let v = q5_values(&a.qs, a.qh);
        let (mut s0, mut s1) = (0i32, 0i32);
        for j in 0..H {
            s0 += (v[j] - 16) * b.qs[j] as i32;
            s1 += (v[j + H] - 16) * b.qs[j + H] as i32;
        }
        sumf += (f16_le(a.d) * f16_le(b.d)) * (s0 + s1) as f32;
    }
    sumf
}

pub fn vec_dot_q5_1_q8_1(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let (wb, xb) = dot_operands::<BlockQ5_1, BlockQ8_1>(n, w, x);
    let mut sumf = 0f32;
    for (a, b) in wb.iter().zip(xb) {
        let v = q5_values(&a.qs, a.qh);
        let (mut s0, mut s1) = (0i32, 0i32);
        for j in 0..H {
            s0 += v[j] * b.qs[j] as i32;
            s1 += v[j + H] * b.qs[j + H] as i32;
        }
        sumf += (f16_le(a.d) * f16_le(b.d)) * (s0 + s1) as f32 + f16_le(a.m) * f16_le(b.s);
    }
    sumf
}

pub fn vec_dot_q8_0_q8_0(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let (wb, xb) = dot_operands::<BlockQ8_0, BlockQ8_0>(n, w, x);
    let mut sumf = 0f32;
    for (a, b) in wb.iter().zip(xb) {
        let mut sumi = 0i32;
        for j in 0..QK {
            sumi += a.qs[j] as i32 * b.qs[j] as i32;
        }
        sumf += sumi as f32 * (f16_le(a.d) * f16_le(b.d));
    }
    sumf
}

//! AVX2+FMA dot products of the 32-element types (ggml's `#if defined(__AVX2__)` branches):
//! integer products per block, one FMA per block into 8 float lanes, one horizontal sum.

use std::arch::x86_64::*;

use super::{bytes_from_bits_32, bytes_from_nibbles_32, f16, hsum_float_8, load32, mul_sum_i8_pairs_float, mul_sum_us8_pairs_float};
use crate::quant::blocks::{dot_operands, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1};

/// Defines the safe wrapper of a kernel: checks lengths, then calls the AVX2 body.
macro_rules! wrapper {
    ($name:ident, $body:ident, $w:ty, $x:ty) => {
        pub fn $name(n: usize, w: &[u8], x: &[u8]) -> f32 {
            let (wb, xb) = dot_operands::<$w, $x>(n, w, x);
            debug_assert!(super::has_avx2());
            // SAFETY: this wrapper is only handed out (the AVX2 kernel table) after
            // `has_avx2()` found avx2, fma and f16c on this CPU.
            unsafe { $body(wb, xb) }
        }
    };
}
pub(crate) use wrapper;

wrapper!(vec_dot_q4_0_q8_0, q4_0_q8_0, BlockQ4_0, BlockQ8_0);
wrapper!(vec_dot_q4_1_q8_1, q4_1_q8_1, BlockQ4_1, BlockQ8_1);
wrapper!(vec_dot_q5_0_q8_0, q5_0_q8_0, BlockQ5_0, BlockQ8_0);
wrapper!(vec_dot_q5_1_q8_1, q5_1_q8_1, BlockQ5_1, BlockQ8_1);
wrapper!(vec_dot_q8_0_q8_0, q8_0_q8_0, BlockQ8_0, BlockQ8_0);

#[target_feature(enable = "avx2,fma,f16c")]
fn q4_0_q8_0(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (a, b) in x.iter().zip(y) {
        let d = _mm256_set1_ps(f16(a.d) * f16(b.d));
        let qx = _mm256_sub_epi8(bytes_from_nibbles_32(&a.qs), _mm256_set1_epi8(8));
        let qy = load32(&b.qs);
        acc = _mm256_fmadd_ps(d, mul_sum_i8_pairs_float(qx, qy), acc);
    }
    hsum_float_8(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q4_1_q8_1(x: &[BlockQ4_1], y: &[BlockQ8_1]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut summs = 0f32;
    for (a, b) in x.iter().zip(y) {
        summs += f16(a.m) * f16(b.s);
        let d0d1 = _mm256_mul_ps(_mm256_set1_ps(f16(a.d)), _mm256_set1_ps(f16(b.d)));
        let qx = bytes_from_nibbles_32(&a.qs);
        let qy = load32(&b.qs);
        acc = _mm256_fmadd_ps(d0d1, mul_sum_us8_pairs_float(qx, qy), acc);
    }
    hsum_float_8(acc) + summs
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q5_0_q8_0(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (a, b) in x.iter().zip(y) {
        let d = _mm256_set1_ps(f16(a.d) * f16(b.d));
        // Elements whose fifth bit is clear get 0xF0 or'ed in: q - 16 as a signed byte.
        let bxhi = _mm256_andnot_si256(bytes_from_bits_32(a.qh), _mm256_set1_epi8(0xF0u8 as i8));
        let qx = _mm256_or_si256(bytes_from_nibbles_32(&a.qs), bxhi);
        let qy = load32(&b.qs);
        acc = _mm256_fmadd_ps(d, mul_sum_i8_pairs_float(qx, qy), acc);
    }
    hsum_float_8(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q5_1_q8_1(x: &[BlockQ5_1], y: &[BlockQ8_1]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut summs = 0f32;
    for (a, b) in x.iter().zip(y) {
        let dx = _mm256_set1_ps(f16(a.d));
        summs += f16(a.m) * f16(b.s);
        let bxhi = _mm256_and_si256(bytes_from_bits_32(a.qh), _mm256_set1_epi8(0x10));
        let qx = _mm256_or_si256(bytes_from_nibbles_32(&a.qs), bxhi);
        let dy = _mm256_set1_ps(f16(b.d));
        let qy = load32(&b.qs);
        let q = mul_sum_us8_pairs_float(qx, qy);
        acc = _mm256_fmadd_ps(q, _mm256_mul_ps(dx, dy), acc);
    }
    hsum_float_8(acc) + summs
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q8_0_q8_0(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (a, b) in x.iter().zip(y) {
        let d = _mm256_set1_ps(f16(a.d) * f16(b.d));
        let q = mul_sum_i8_pairs_float(load32(&a.qs), load32(&b.qs));
        acc = _mm256_fmadd_ps(d, q, acc);
    }
    hsum_float_8(acc)
}

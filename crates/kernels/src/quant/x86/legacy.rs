//! AVX2+FMA dot products of the 32-element types (ggml's `#if defined(__AVX2__)` branches):
//! integer products per block, one FMA per block into 8 float lanes, one horizontal sum.
//! Unlike ggml, even and odd blocks go to two accumulators, so consecutive FMAs do not wait on
//! each other (the rows of a small model are only 18-48 blocks long).

use std::arch::x86_64::*;

use super::{
    bytes_from_bits_32, bytes_from_nibbles_32, f16, f16x8, hsum_float_8, load32,
    mul_sum_i8_pairs_float, mul_sum_us8_pairs_float,
};
use crate::quant::blocks::{
    dot_operands, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1,
};

/// Defines the safe wrapper of a kernel: checks lengths, then calls the SIMD body.
macro_rules! wrapper {
    ($name:ident, $body:ident, $w:ty, $x:ty) => {
        pub fn $name(n: usize, w: &[u8], x: &[u8]) -> f32 {
            let (wb, xb) = dot_operands::<$w, $x>(n, w, x);
            // SAFETY: this wrapper is only handed out (the kernel table of its ISA) after
            // run-time detection found every feature the body enables.
            unsafe { $body(wb, xb) }
        }
    };
}
pub(crate) use wrapper;

/// Runs `$f(a, b, acc)` over block pairs into two accumulators and returns their sum.
/// `dot_operands` gave both slices the same length, so the odd tails line up.
macro_rules! two_accumulators {
    ($x:expr, $y:expr, $f:ident) => {{
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let (xp, xr) = $x.as_chunks::<2>();
        let (yp, yr) = $y.as_chunks::<2>();
        for (a, b) in xp.iter().zip(yp) {
            acc0 = $f(&a[0], &b[0], acc0);
            acc1 = $f(&a[1], &b[1], acc1);
        }
        for (a, b) in xr.iter().zip(yr) {
            acc0 = $f(a, b, acc0);
        }
        _mm256_add_ps(acc0, acc1)
    }};
}
pub(crate) use two_accumulators;

wrapper!(vec_dot_q4_0_q8_0, q4_0_q8_0, BlockQ4_0, BlockQ8_0);
wrapper!(vec_dot_q4_1_q8_1, q4_1_q8_1, BlockQ4_1, BlockQ8_1);
wrapper!(vec_dot_q5_0_q8_0, q5_0_q8_0, BlockQ5_0, BlockQ8_0);
wrapper!(vec_dot_q5_1_q8_1, q5_1_q8_1, BlockQ5_1, BlockQ8_1);
wrapper!(vec_dot_q8_0_q8_0, q8_0_q8_0, BlockQ8_0, BlockQ8_0);

/// The minimum terms of q4_1/q5_1: sum of `m * s` per block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn min_terms<W, X>(
    x: &[W],
    y: &[X],
    m: impl Fn(&W) -> [u8; 2],
    s: impl Fn(&X) -> [u8; 2],
) -> f32 {
    let mut summs = 0f32;
    for (a, b) in x.iter().zip(y) {
        summs += f16(m(a)) * f16(s(b));
    }
    summs
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_0_block(a: &BlockQ4_0, b: &BlockQ8_0, acc: __m256) -> __m256 {
    let d = _mm256_mul_ps(f16x8(a.d), f16x8(b.d));
    let qx = _mm256_sub_epi8(bytes_from_nibbles_32(&a.qs), _mm256_set1_epi8(8));
    _mm256_fmadd_ps(d, mul_sum_i8_pairs_float(qx, load32(&b.qs)), acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q4_0_q8_0(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
    hsum_float_8(two_accumulators!(x, y, q4_0_block))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_1_block(a: &BlockQ4_1, b: &BlockQ8_1, acc: __m256) -> __m256 {
    let d0d1 = _mm256_mul_ps(f16x8(a.d), f16x8(b.d));
    let qx = bytes_from_nibbles_32(&a.qs);
    _mm256_fmadd_ps(d0d1, mul_sum_us8_pairs_float(qx, load32(&b.qs)), acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q4_1_q8_1(x: &[BlockQ4_1], y: &[BlockQ8_1]) -> f32 {
    hsum_float_8(two_accumulators!(x, y, q4_1_block)) + min_terms(x, y, |a| a.m, |b| b.s)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q5_0_block(a: &BlockQ5_0, b: &BlockQ8_0, acc: __m256) -> __m256 {
    let d = _mm256_mul_ps(f16x8(a.d), f16x8(b.d));
    // Elements whose fifth bit is clear get 0xF0 or'ed in: q - 16 as a signed byte.
    let bxhi = _mm256_andnot_si256(bytes_from_bits_32(a.qh), _mm256_set1_epi8(0xF0u8 as i8));
    let qx = _mm256_or_si256(bytes_from_nibbles_32(&a.qs), bxhi);
    _mm256_fmadd_ps(d, mul_sum_i8_pairs_float(qx, load32(&b.qs)), acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q5_0_q8_0(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> f32 {
    hsum_float_8(two_accumulators!(x, y, q5_0_block))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q5_1_block(a: &BlockQ5_1, b: &BlockQ8_1, acc: __m256) -> __m256 {
    let bxhi = _mm256_and_si256(bytes_from_bits_32(a.qh), _mm256_set1_epi8(0x10));
    let qx = _mm256_or_si256(bytes_from_nibbles_32(&a.qs), bxhi);
    let q = mul_sum_us8_pairs_float(qx, load32(&b.qs));
    _mm256_fmadd_ps(q, _mm256_mul_ps(f16x8(a.d), f16x8(b.d)), acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q5_1_q8_1(x: &[BlockQ5_1], y: &[BlockQ8_1]) -> f32 {
    hsum_float_8(two_accumulators!(x, y, q5_1_block)) + min_terms(x, y, |a| a.m, |b| b.s)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q8_0_block(a: &BlockQ8_0, b: &BlockQ8_0, acc: __m256) -> __m256 {
    let d = _mm256_mul_ps(f16x8(a.d), f16x8(b.d));
    _mm256_fmadd_ps(d, mul_sum_i8_pairs_float(load32(&a.qs), load32(&b.qs)), acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q8_0_q8_0(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
    hsum_float_8(two_accumulators!(x, y, q8_0_block))
}

//! AVX-512 VNNI variants of the hottest 32-element dots (q4_0, q4_1, q8_0): `vpdpbusd` on
//! 256-bit vectors replaces `maddubs` + `madd` (ggml's `__AVX512VNNI__ && __AVX512VL__` path)
//! and, unlike `maddubs`, cannot saturate. Two accumulators as in the AVX2 kernels.

use std::arch::x86_64::*;

use super::legacy::{add4_in_order, f16x4, min_terms, q4_0_scalar_order, two_accumulators, wrapper};
use super::{bytes_from_nibbles_32, f16, f16x8, hsum_float_8, hsum_i32_8, load32};
use crate::quant::blocks::{dot_operands, BlockQ4_0, BlockQ4_1, BlockQ8_0, BlockQ8_1};

wrapper!(vec_dot_q4_0_q8_0, q4_0_q8_0, BlockQ4_0, BlockQ8_0);
wrapper!(vec_dot_q4_1_q8_1, q4_1_q8_1, BlockQ4_1, BlockQ8_1);
wrapper!(vec_dot_q8_0_q8_0, q8_0_q8_0, BlockQ8_0, BlockQ8_0);

/// unsigned x signed bytes summed in fours to i32, as floats.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn dot_us8(ax: __m256i, sy: __m256i) -> __m256 {
    _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), ax, sy))
}

/// signed x signed bytes via the sign trick.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn dot_i8(x: __m256i, y: __m256i) -> __m256 {
    dot_us8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
}

/// A q4_0 block's products with a q8_0 block in 8 i32 lanes: the unsigned nibbles (`q + 8`)
/// against the signed activations, less `8 * sum(y)` (one `vpdpbusd` of 8s), so no sign trick.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q4_0_isum8(a: &BlockQ4_0, b: &BlockQ8_0) -> __m256i {
    let y = load32(&b.qs);
    let p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), bytes_from_nibbles_32(&a.qs), y);
    _mm256_sub_epi32(p, _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(8), y))
}

/// In the scalar float order (see `legacy::q4_0_scalar_order`).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q4_0_q8_0(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
    q4_0_scalar_order!(x, y, q4_0_isum8)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q4_1_block(a: &BlockQ4_1, b: &BlockQ8_1, acc: __m256) -> __m256 {
    let d0d1 = _mm256_mul_ps(f16x8(a.d), f16x8(b.d));
    _mm256_fmadd_ps(
        d0d1,
        dot_us8(bytes_from_nibbles_32(&a.qs), load32(&b.qs)),
        acc,
    )
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q4_1_q8_1(x: &[BlockQ4_1], y: &[BlockQ8_1]) -> f32 {
    hsum_float_8(two_accumulators!(x, y, q4_1_block)) + min_terms(x, y, |a| a.m, |b| b.s)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q8_0_block(a: &BlockQ8_0, b: &BlockQ8_0, acc: __m256) -> __m256 {
    let d = _mm256_mul_ps(f16x8(a.d), f16x8(b.d));
    _mm256_fmadd_ps(d, dot_i8(load32(&a.qs), load32(&b.qs)), acc)
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q8_0_q8_0(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
    hsum_float_8(two_accumulators!(x, y, q8_0_block))
}

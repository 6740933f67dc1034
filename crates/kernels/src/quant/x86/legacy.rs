//! AVX2+FMA dot products of the 32-element types (ggml's `#if defined(__AVX2__)` branches):
//! integer products per block, one FMA per block into 8 float lanes, one horizontal sum.
//! Unlike ggml, even and odd blocks go to two accumulators, so consecutive FMAs do not wait on
//! each other (the rows of a small model are only 18-48 blocks long).

use std::arch::x86_64::*;

use super::{
    bytes_from_bits_32, bytes_from_nibbles_32, f16, f16x8, hsum_float_8, hsum_i32_8, load32,
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

/// 4 fp16 values -> f32 (exact).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn f16x4(b: [[u8; 2]; 4]) -> __m128 {
    let bits = b.iter().rev().fold(0u64, |acc, h| acc << 16 | u16::from_le_bytes(*h) as u64);
    _mm_cvtph_ps(_mm_cvtsi64_si128(bits as i64))
}

/// `sum + v[0] + v[1] + v[2] + v[3]`, added left to right.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn add4_in_order(sum: f32, v: __m128) -> f32 {
    let mut s = _mm_add_ss(_mm_set_ss(sum), v);
    s = _mm_add_ss(s, _mm_movehdup_ps(v));
    s = _mm_add_ss(s, _mm_movehl_ps(v, v));
    s = _mm_add_ss(s, _mm_shuffle_ps::<0b11_11_11_11>(v, v));
    _mm_cvtss_f32(s)
}

/// q4_0 in its scalar reference's float order (ggml's generic `vec_dot_q4_0_q8_0`, which
/// `quant::legacy` mirrors): per block the exact integer sum, then
/// `sum += (float(isum) * d_w) * d_x`, block after block. Every q4_0 path follows this order
/// (see `packed::q4_0`), so the prompt tiles, the 4-row kernels and these row kernels return the
/// same bits. `$isum8(a, b)` gives a block's integer products summed into 8 i32 lanes; four
/// blocks' lanes are reduced together (three `hadd`s), then the float steps run on the 4 totals.
macro_rules! q4_0_scalar_order {
    ($x:expr, $y:expr, $isum8:ident) => {{
        let mut sum = 0f32;
        let (xq, xr) = $x.as_chunks::<4>();
        let (yq, yr) = $y.as_chunks::<4>();
        for (a, b) in xq.iter().zip(yq) {
            let h01 = _mm256_hadd_epi32($isum8(&a[0], &b[0]), $isum8(&a[1], &b[1]));
            let h23 = _mm256_hadd_epi32($isum8(&a[2], &b[2]), $isum8(&a[3], &b[3]));
            let h = _mm256_hadd_epi32(h01, h23);
            let tot = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h));
            let dw = f16x4([a[0].d, a[1].d, a[2].d, a[3].d]);
            let dx = f16x4([b[0].d, b[1].d, b[2].d, b[3].d]);
            sum = add4_in_order(sum, _mm_mul_ps(_mm_mul_ps(_mm_cvtepi32_ps(tot), dw), dx));
        }
        for (a, b) in xr.iter().zip(yr) {
            sum += hsum_i32_8($isum8(a, b)) as f32 * f16(a.d) * f16(b.d);
        }
        sum
    }};
}
pub(crate) use q4_0_scalar_order;

/// A q4_0 block's products with a q8_0 block in 8 i32 lanes (`maddubs` cannot saturate here:
/// |q - 8| <= 8 and |y| <= 127).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_0_isum8(a: &BlockQ4_0, b: &BlockQ8_0) -> __m256i {
    let qx = _mm256_sub_epi8(bytes_from_nibbles_32(&a.qs), _mm256_set1_epi8(8));
    let y = load32(&b.qs);
    let dot = _mm256_maddubs_epi16(_mm256_sign_epi8(qx, qx), _mm256_sign_epi8(y, qx));
    _mm256_madd_epi16(_mm256_set1_epi16(1), dot)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q4_0_q8_0(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
    q4_0_scalar_order!(x, y, q4_0_isum8)
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

//! x86_64 SIMD paths. Each kernel is a safe `#[target_feature]` function (callable only through
//! `unsafe`) behind a safe wrapper that checks the operand lengths once; the wrappers are only
//! handed out by `quant::kernel*` after the features were detected at run time.
//!
//! The helpers mirror the ones at the top of ggml's `ggml-cpu/arch/x86/quants.c`.

pub mod fp;
pub mod iq4xs;
pub mod kquants;
pub mod kquants512;
pub mod kquants_low;
pub mod legacy;
pub mod nl4;
pub mod quantize;
pub mod vnni;

use std::arch::x86_64::*;

/// AVX2 + FMA + F16C: what every "avx2" kernel assumes (all AVX2 CPUs have the other two).
pub fn has_avx2() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

/// AVX-512 VNNI on 256-bit vectors (needs VL) on top of the AVX2 set.
pub fn has_avx512vnni() -> bool {
    has_avx2()
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni")
}

/// fp16 bits -> f32 (exact), for once-per-super-block scales. Per 32-element block use
/// [`f16x8`]: LLVM lowers a scalar F16C conversion to a `vpinsrw` into an arbitrary register,
/// and it picked the FMA accumulator, chaining every block on the previous one's FMA.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn f16(b: [u8; 2]) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(
        _mm_cvtsi32_si128(u16::from_le_bytes(b) as i32),
    ))
}

/// fp16 bits -> f32 broadcast to 8 lanes (exact; `vpbroadcastw` + `vcvtph2ps`, no false
/// dependency on other registers).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn f16x8(b: [u8; 2]) -> __m256 {
    _mm256_cvtph_ps(_mm_set1_epi16(i16::from_le_bytes(b)))
}

/// Horizontal sum of 8 floats in ggml's order (`hsum_float_8`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn hsum_float_8(x: __m256) -> f32 {
    let mut res = _mm256_extractf128_ps::<1>(x);
    res = _mm_add_ps(res, _mm256_castps256_ps128(x));
    res = _mm_add_ps(res, _mm_movehl_ps(res, res));
    res = _mm_add_ss(res, _mm_movehdup_ps(res));
    _mm_cvtss_f32(res)
}

/// Horizontal sum of 8 i32 (`hsum_i32_8`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn hsum_i32_8(a: __m256i) -> i32 {
    let sum128 = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256::<1>(a));
    let hi64 = _mm_unpackhi_epi64(sum128, sum128);
    let sum64 = _mm_add_epi32(hi64, sum128);
    let hi32 = _mm_shuffle_epi32::<0b10_11_00_01>(sum64);
    _mm_cvtsi128_si32(_mm_add_epi32(sum64, hi32))
}

/// 16 bytes of packed nibbles -> 32 bytes in 0..16: low nibbles first, then high nibbles
/// (the q4 element order).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn bytes_from_nibbles_32(qs: &[u8; 16]) -> __m256i {
    // SAFETY: `qs` is 16 readable bytes; `loadu` has no alignment requirement.
    let tmp = unsafe { _mm_loadu_si128(qs.as_ptr().cast()) };
    let bytes = _mm256_set_m128i(_mm_srli_epi16::<4>(tmp), tmp);
    _mm256_and_si256(_mm256_set1_epi8(0xF), bytes)
}

/// 32 bits -> 32 bytes, 0xFF where the bit is set (`bytes_from_bits_32`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn bytes_from_bits_32(b: [u8; 4]) -> __m256i {
    let x32 = u32::from_le_bytes(b) as i32;
    let shuf_mask = _mm256_set_epi64x(
        0x0303030303030303,
        0x0202020202020202,
        0x0101010101010101,
        0,
    );
    let mut bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(x32), shuf_mask);
    let bit_mask = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe);
    bytes = _mm256_or_si256(bytes, bit_mask);
    _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1))
}

/// Loads 32 bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn load32<T>(a: &[T; 32]) -> __m256i
where
    T: Copy,
{
    const { assert!(std::mem::size_of::<T>() == 1) };
    // SAFETY: `a` is 32 readable bytes (T is one byte, asserted above); `loadu` needs no alignment.
    unsafe { _mm256_loadu_si256(a.as_ptr().cast()) }
}

/// unsigned x signed bytes, summed in pairs to i16 and then to i32, as floats
/// (`mul_sum_us8_pairs_float` without VNNI).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn mul_sum_us8_pairs_float(ax: __m256i, sy: __m256i) -> __m256 {
    let dot = _mm256_maddubs_epi16(ax, sy);
    _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_set1_epi16(1), dot))
}

/// signed x signed bytes via the sign trick (`mul_sum_i8_pairs_float`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn mul_sum_i8_pairs_float(x: __m256i, y: __m256i) -> __m256 {
    let ax = _mm256_sign_epi8(x, x);
    let sy = _mm256_sign_epi8(y, x);
    mul_sum_us8_pairs_float(ax, sy)
}

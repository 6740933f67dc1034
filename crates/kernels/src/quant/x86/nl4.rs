//! AVX2 and AVX-512 VNNI dots of the 32-element table-lookup types iq4_nl and mxfp4 with q8_0.
//!
//! A block's 16 bytes of nibbles become 32 indices in element order (`bytes_from_nibbles_32`),
//! `pshufb` looks them up in the type's 16-entry code book, and the signed codes meet the q8_0
//! quants through the sign trick: `maddubs` + `madd` (AVX2) or `dpbusd` (VNNI) leave in lane
//! `l` the exact sum of elements `4l..4l + 4`, as `quant::lanes` defines. Then
//! `acc = acc + d * float(sum)` per block and `hsum_float_8`: the scalar reference's float
//! steps, so both paths return its bits. (The codes are at most 127 in magnitude and q8_0
//! quants at most 127, so `maddubs` pairs stay below 2^15 and never saturate.)

use std::arch::x86_64::*;

use super::{bytes_from_nibbles_32, f16x8, hsum_float_8, load32};
use crate::quant::blocks::{dot_operands, e8m0_to_f32_half, BlockIQ4NL, BlockMxfp4, BlockQ8_0, KVALUES_IQ4NL, KVALUES_MXFP4};

/// The code book in both 128-bit lanes (for `_mm256_shuffle_epi8`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn table(t: &[i8; 16]) -> __m256i {
    // SAFETY: `t` is 16 readable bytes; `loadu` needs no alignment.
    let v = unsafe { _mm_loadu_si128(t.as_ptr().cast()) };
    _mm256_broadcastsi128_si256(v)
}

/// Lane sums of one block with AVX2: `madd(maddubs(|v|, sign(y, v)), 1)`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn sum_avx2(tab: __m256i, qs: &[u8; 16], y: &[i8; 32]) -> __m256i {
    let v = _mm256_shuffle_epi8(tab, bytes_from_nibbles_32(qs));
    let yv = load32(y);
    let p = _mm256_maddubs_epi16(_mm256_sign_epi8(v, v), _mm256_sign_epi8(yv, v));
    _mm256_madd_epi16(p, _mm256_set1_epi16(1))
}

/// Lane sums of one block with VNNI: `dpbusd(0, |v|, sign(y, v))`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn sum_vnni(tab: __m256i, qs: &[u8; 16], y: &[i8; 32]) -> __m256i {
    let v = _mm256_shuffle_epi8(tab, bytes_from_nibbles_32(qs));
    let yv = load32(y);
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(v, v), _mm256_sign_epi8(yv, v))
}

macro_rules! kernels {
    ($feat:literal, $sum:ident, $iq4nl:ident, $mxfp4:ident, $iq4nl_body:ident, $mxfp4_body:ident) => {
        pub fn $iq4nl(n: usize, w: &[u8], x: &[u8]) -> f32 {
            let (wb, xb) = dot_operands::<BlockIQ4NL, BlockQ8_0>(n, w, x);
            // SAFETY: only handed out (this ISA's kernel table) after run-time detection found
            // every feature the body enables.
            unsafe { $iq4nl_body(wb, xb) }
        }

        pub fn $mxfp4(n: usize, w: &[u8], x: &[u8]) -> f32 {
            let (wb, xb) = dot_operands::<BlockMxfp4, BlockQ8_0>(n, w, x);
            // SAFETY: as above.
            unsafe { $mxfp4_body(wb, xb) }
        }

        #[target_feature(enable = $feat)]
        fn $iq4nl_body(x: &[BlockIQ4NL], y: &[BlockQ8_0]) -> f32 {
            let tab = table(&KVALUES_IQ4NL);
            let mut acc = _mm256_setzero_ps();
            for (a, b) in x.iter().zip(y) {
                let d = _mm256_mul_ps(f16x8(a.d), f16x8(b.d));
                let s = _mm256_cvtepi32_ps($sum(tab, &a.qs, &b.qs));
                acc = _mm256_add_ps(acc, _mm256_mul_ps(d, s));
            }
            hsum_float_8(acc)
        }

        #[target_feature(enable = $feat)]
        fn $mxfp4_body(x: &[BlockMxfp4], y: &[BlockQ8_0]) -> f32 {
            let tab = table(&KVALUES_MXFP4);
            let mut acc = _mm256_setzero_ps();
            for (a, b) in x.iter().zip(y) {
                let d = _mm256_mul_ps(f16x8(b.d), _mm256_set1_ps(e8m0_to_f32_half(a.e)));
                let s = _mm256_cvtepi32_ps($sum(tab, &a.qs, &b.qs));
                acc = _mm256_add_ps(acc, _mm256_mul_ps(d, s));
            }
            hsum_float_8(acc)
        }
    };
}

kernels!("avx2,fma,f16c", sum_avx2, vec_dot_iq4_nl_q8_0, vec_dot_mxfp4_q8_0, iq4_nl_avx2, mxfp4_avx2);
/// The VNNI kernels (named `*_vnni` in the avx512vnni table).
pub mod vnni {
    use super::*;
    kernels!("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni", sum_vnni, vec_dot_iq4_nl_q8_0, vec_dot_mxfp4_q8_0, iq4_nl_vnni, mxfp4_vnni);
}

//! AVX2+FMA(+F16C) dot products of f32, f16 and bf16 weights with f32 activations:
//! 32 elements per step into four 8-lane accumulators, then a scalar tail.

use std::arch::x86_64::*;

use super::hsum_float_8;
use crate::quant::fp::{bf16_to_f32, check_fp, f16_to_f32};

/// Defines the safe wrapper and the AVX2 body for one weight element type.
macro_rules! fp_dot {
    ($name:ident, $body:ident, $elem:literal, |$p:ident| $load8:expr, |$b:ident| $scalar:expr) => {
        pub fn $name(n: usize, w: &[u8], x: &[u8]) -> f32 {
            check_fp(n, w, x, $elem);
            // SAFETY: the AVX2 table holding this wrapper is only handed out after `has_avx2()`
            // found avx2, fma and f16c; `check_fp` verified that `w` has `n * $elem` bytes and
            // `x` has `n * 4` bytes, which is all the body reads.
            unsafe { $body(n, w.as_ptr(), x.as_ptr()) }
        }

        /// # Safety
        /// avx2, fma and f16c must be available; `w` must point to `n` elements of the weight
        /// type and `x` to `n` f32 (any alignment).
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn $body(n: usize, w: *const u8, x: *const u8) -> f32 {
            /// # Safety
            /// `$p` points to 8 readable weight elements.
            #[inline(always)]
            unsafe fn load8($p: *const u8) -> __m256 {
                // SAFETY: the caller guarantees 8 readable elements; `loadu` needs no alignment.
                unsafe { $load8 }
            }
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut i = 0;
            while i + 32 <= n {
                for (k, a) in acc.iter_mut().enumerate() {
                    let j = i + 8 * k;
                    // SAFETY: j + 8 <= n, so both 8-element reads are inside the rows.
                    let (wv, xv) = unsafe {
                        (
                            load8(w.add(j * $elem)),
                            _mm256_loadu_ps(x.add(j * 4).cast()),
                        )
                    };
                    *a = _mm256_fmadd_ps(wv, xv, *a);
                }
                i += 32;
            }
            while i + 8 <= n {
                // SAFETY: i + 8 <= n.
                let (wv, xv) = unsafe {
                    (
                        load8(w.add(i * $elem)),
                        _mm256_loadu_ps(x.add(i * 4).cast()),
                    )
                };
                acc[0] = _mm256_fmadd_ps(wv, xv, acc[0]);
                i += 8;
            }
            let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
            let mut s = hsum_float_8(sum);
            while i < n {
                // SAFETY: i < n; unaligned reads of plain bytes.
                let ($b, xf) = unsafe {
                    (
                        std::ptr::read_unaligned(w.add(i * $elem).cast::<[u8; $elem]>()),
                        std::ptr::read_unaligned(x.add(i * 4).cast::<f32>()),
                    )
                };
                s += $scalar * xf;
                i += 1;
            }
            s
        }
    };
}

fp_dot!(
    vec_dot_f32,
    f32_f32,
    4,
    |p| _mm256_loadu_ps(p.cast()),
    |b| f32::from_le_bytes(b)
);
fp_dot!(
    vec_dot_f16,
    f16_f32,
    2,
    |p| _mm256_cvtph_ps(_mm_loadu_si128(p.cast())),
    |b| f16_to_f32(u16::from_le_bytes(b))
);
fp_dot!(
    vec_dot_bf16,
    bf16_f32,
    2,
    |p| _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(
        _mm_loadu_si128(p.cast())
    ))),
    |b| bf16_to_f32(u16::from_le_bytes(b))
);

//! AVX2 quantization of activation rows, producing the same bytes as ggml's x86
//! `quantize_row_q8_0` / `quantize_row_q8_1` (scale `127/amax`, ties to even) and as the
//! reference `quantize_row_q8_K_ref` (which ggml's x86 build also uses for q8_K).

use std::arch::x86_64::*;

use super::hsum_i32_8;
use crate::quant::blocks::{f16_le_from, BlockQ8K, BlockQ8_0, BlockQ8_1, QK, QK_K};

const ROUND: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

pub fn quantize_q8_0(x: &[f32], y: &mut [BlockQ8_0]) {
    // SAFETY: only called after `has_avx2()` (quantize_row_fast checks the chosen level).
    unsafe { q8_0(x, y) }
}

pub fn quantize_q8_1(x: &[f32], y: &mut [BlockQ8_1]) {
    // SAFETY: as for `quantize_q8_0`.
    unsafe { q8_1(x, y) }
}

pub fn quantize_q8_k(x: &[f32], y: &mut [BlockQ8K]) {
    // SAFETY: as for `quantize_q8_0`.
    unsafe { q8_k(x, y) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load8(x: &[f32; 8]) -> __m256 {
    // SAFETY: 8 readable floats; `loadu` needs no alignment.
    unsafe { _mm256_loadu_ps(x.as_ptr()) }
}

/// One 32-float block: the four vectors, the absolute maximum.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load_block(x: &[f32; QK]) -> ([__m256; 4], f32) {
    let c: &[[f32; 8]] = x.as_chunks::<8>().0;
    let v = [load8(&c[0]), load8(&c[1]), load8(&c[2]), load8(&c[3])];
    let sign = _mm256_set1_ps(-0.0);
    let mut m = _mm256_andnot_ps(sign, v[0]);
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[1]));
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[2]));
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[3]));
    let mut max4 = _mm_max_ps(_mm256_extractf128_ps::<1>(m), _mm256_castps256_ps128(m));
    max4 = _mm_max_ps(max4, _mm_movehl_ps(max4, max4));
    max4 = _mm_max_ss(max4, _mm_movehdup_ps(max4));
    (v, _mm_cvtss_f32(max4))
}

/// Scales, rounds (ties to even) and converts four vectors to i32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn round_i32(v: [__m256; 4], mul: __m256) -> [__m256i; 4] {
    v.map(|v| _mm256_cvtps_epi32(_mm256_round_ps::<ROUND>(_mm256_mul_ps(v, mul))))
}

/// Packs 32 i32 (in order) into 32 i8 with saturation.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn pack_i8(i: [__m256i; 4], out: &mut [i8; 32]) {
    let a = _mm256_packs_epi32(i[0], i[1]);
    let b = _mm256_packs_epi32(i[2], i[3]);
    let p = _mm256_packs_epi16(a, b);
    // The packs work per 128-bit lane; this restores element order.
    let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    // SAFETY: `out` is 32 writable bytes; `storeu` needs no alignment.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), p) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q8_0(x: &[f32], y: &mut [BlockQ8_0]) {
    for (xb, yb) in x.as_chunks::<QK>().0.iter().zip(y) {
        let (v, max) = load_block(xb);
        let d = max / 127.0;
        yb.d = f16_le_from(d);
        let id = if max != 0.0 { 127.0 / max } else { 0.0 };
        pack_i8(round_i32(v, _mm256_set1_ps(id)), &mut yb.qs);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q8_1(x: &[f32], y: &mut [BlockQ8_1]) {
    for (xb, yb) in x.as_chunks::<QK>().0.iter().zip(y) {
        let (v, max) = load_block(xb);
        let d = max / 127.0;
        yb.d = f16_le_from(d);
        let id = if max != 0.0 { 127.0 / max } else { 0.0 };
        let i = round_i32(v, _mm256_set1_ps(id));
        let sum = hsum_i32_8(_mm256_add_epi32(
            _mm256_add_epi32(i[0], i[1]),
            _mm256_add_epi32(i[2], i[3]),
        ));
        yb.s = f16_le_from(d * sum as f32);
        pack_i8(i, &mut yb.qs);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q8_k(x: &[f32], y: &mut [BlockQ8K]) {
    let sign = _mm256_set1_ps(-0.0);
    for (xb, yb) in x.as_chunks::<QK_K>().0.iter().zip(y) {
        let c: &[[f32; 8]] = xb.as_chunks::<8>().0;
        let mut m = _mm256_setzero_ps();
        for v in c {
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, load8(v)));
        }
        let mut max4 = _mm_max_ps(_mm256_extractf128_ps::<1>(m), _mm256_castps256_ps128(m));
        max4 = _mm_max_ps(max4, _mm_movehl_ps(max4, max4));
        max4 = _mm_max_ss(max4, _mm_movehdup_ps(max4));
        let amax = _mm_cvtss_f32(max4);
        if amax == 0.0 {
            yb.d = 0f32.to_le_bytes();
            yb.qs = [0; QK_K];
            yb.bsums = [[0; 2]; QK_K / 16];
            continue;
        }
        // The reference keeps the sign of the first element with the largest magnitude.
        let max = xb
            .iter()
            .copied()
            .find(|v| v.abs() == amax)
            .expect("amax is some |x|");
        let iscale = -127.0 / max;
        let mul = _mm256_set1_ps(iscale);
        let lim = _mm256_set1_epi32(127);
        let q: &mut [[i8; 32]] = yb.qs.as_chunks_mut::<32>().0;
        for (g, (qo, xs)) in q.iter_mut().zip(c.chunks_exact(4)).enumerate() {
            let v = [load8(&xs[0]), load8(&xs[1]), load8(&xs[2]), load8(&xs[3])];
            let i = round_i32(v, mul).map(|i| _mm256_min_epi32(i, lim));
            yb.bsums[2 * g] = (hsum_i32_8(_mm256_add_epi32(i[0], i[1])) as i16).to_le_bytes();
            yb.bsums[2 * g + 1] = (hsum_i32_8(_mm256_add_epi32(i[2], i[3])) as i16).to_le_bytes();
            pack_i8(i, qo);
        }
        yb.d = (1.0 / iscale).to_le_bytes();
    }
}

//! AVX2 + FMA variants of the element-wise ops. Each function here is `unsafe` only because it
//! requires the CPU features; callers in [`super`] check them once (std caches the CPUID result).
//!
//! Arithmetic mirrors ggml's AVX2 build: `exp` is the vectorised approximation ggml uses
//! (`ggml_v_expf`, after ARM's optimized-routines `expf`: max error about 1.5 ulp), element-wise
//! products are plain multiplies (no FMA contraction), so results equal the scalar reference
//! exactly except where an `exp` is involved or f64 sums are reordered.

use std::arch::x86_64::*;

/// Bit patterns of the exp constants (hex-float literals in the C original); the attention
/// kernel's 16-lane `exp` uses the same.
pub(crate) mod c {
    pub const SHIFT: u32 = 0x4b40_0000; // 0x1.8p23: round-to-integer shift
    pub const LOG2E: u32 = 0x3fb8_aa3b; // 0x1.715476p+0
    pub const LN2_LO: u32 = 0x35bf_be8e; // 0x1.7f7d1cp-20
    pub const LN2_HI: u32 = 0x3f31_7200; // 0x1.62e4p-1
    pub const P4: u32 = 0x3c07_2010; // 0x1.0e4020p-7
    pub const P3: u32 = 0x3d2b_9f17; // 0x1.573e2ep-5
    pub const P2: u32 = 0x3e2a_af33; // 0x1.555e66p-3
    pub const P1: u32 = 0x3eff_fedb; // 0x1.fffdb6p-2
    pub const P0: u32 = 0x3f7f_fff6; // 0x1.ffffecp-1
}

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn splat_bits(bits: u32) -> __m256 {
    _mm256_castsi256_ps(_mm256_set1_epi32(bits as i32))
}

/// `exp` of 8 lanes: `x = n*ln2 + b`, `exp(x) = 2^n * (1 + p(b))` with a degree-5 polynomial;
/// the slow path handles |n| > 126 (overflow to inf, gradual underflow to 0).
#[target_feature(enable = "avx2,fma")]
pub unsafe fn expf8(x: __m256) -> __m256 {
    let r = splat_bits(c::SHIFT);
    let z = _mm256_fmadd_ps(x, splat_bits(c::LOG2E), r);
    let n = _mm256_sub_ps(z, r);
    let b = _mm256_fnmadd_ps(n, splat_bits(c::LN2_LO), _mm256_fnmadd_ps(n, splat_bits(c::LN2_HI), x));
    let e = _mm256_slli_epi32::<23>(_mm256_castps_si256(z));
    let k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_castps_si256(_mm256_set1_ps(1.0))));
    let abs_n = _mm256_andnot_ps(_mm256_set1_ps(-0.0), n);
    let c = _mm256_cmp_ps::<_CMP_GT_OQ>(abs_n, _mm256_set1_ps(126.0));
    let u = _mm256_mul_ps(b, b);
    let hi = _mm256_fmadd_ps(splat_bits(c::P4), b, splat_bits(c::P3));
    let lo = _mm256_fmadd_ps(splat_bits(c::P2), b, splat_bits(c::P1));
    let j = _mm256_fmadd_ps(_mm256_fmadd_ps(hi, u, lo), u, _mm256_mul_ps(splat_bits(c::P0), b));
    if _mm256_movemask_ps(c) == 0 {
        return _mm256_fmadd_ps(j, k, k);
    }
    let g = _mm256_and_si256(
        _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LE_OQ>(n, _mm256_setzero_ps())),
        _mm256_set1_epi32(0x8200_0000u32 as i32),
    );
    let s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f00_0000)));
    let s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
    let d = _mm256_cmp_ps::<_CMP_GT_OQ>(abs_n, _mm256_set1_ps(192.0));
    let scaled = _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1);
    let normal = _mm256_fmadd_ps(k, j, k);
    let finite = _mm256_or_ps(_mm256_and_ps(c, scaled), _mm256_andnot_ps(c, normal));
    _mm256_or_ps(_mm256_and_ps(d, _mm256_mul_ps(s1, s1)), _mm256_andnot_ps(d, finite))
}

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn silu8(x: __m256) -> __m256 {
    let e = expf8(_mm256_sub_ps(_mm256_setzero_ps(), x));
    _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0), e))
}

/// Sum of f32 squares accumulated in f64 (see `scalar::sum_squares`).
#[target_feature(enable = "avx2,fma")]
pub unsafe fn sum_squares(x: &[f32]) -> f64 {
    let n = x.len();
    let p = x.as_ptr();
    let mut acc0 = _mm256_setzero_pd();
    let mut acc1 = _mm256_setzero_pd();
    let mut i = 0;
    while i + 8 <= n {
        let v = _mm256_loadu_ps(p.add(i));
        let sq = _mm256_mul_ps(v, v);
        acc0 = _mm256_add_pd(acc0, _mm256_cvtps_pd(_mm256_castps256_ps128(sq)));
        acc1 = _mm256_add_pd(acc1, _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(sq)));
        i += 8;
    }
    let mut lanes = [0f64; 4];
    _mm256_storeu_pd(lanes.as_mut_ptr(), _mm256_add_pd(acc0, acc1));
    let mut sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
    for &v in &x[i..] {
        sum += f64::from(v * v);
    }
    sum
}

/// `out[i] = x[i] * s * w[i]`, multiplied in that order like the scalar reference.
/// Lengths are checked by the caller.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn scale_mul(x: &[f32], s: f32, w: &[f32], out: &mut [f32]) {
    let n = out.len();
    let vs = _mm256_set1_ps(s);
    let mut i = 0;
    while i + 8 <= n {
        let v = _mm256_mul_ps(_mm256_loadu_ps(x.as_ptr().add(i)), vs);
        let v = _mm256_mul_ps(v, _mm256_loadu_ps(w.as_ptr().add(i)));
        _mm256_storeu_ps(out.as_mut_ptr().add(i), v);
        i += 8;
    }
    for j in i..n {
        out[j] = x[j] * s * w[j];
    }
}

/// In-place `x[i] = x[i] * s * w[i]`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn scale_mul_inplace(x: &mut [f32], s: f32, w: &[f32]) {
    let n = x.len();
    let vs = _mm256_set1_ps(s);
    let mut i = 0;
    while i + 8 <= n {
        let v = _mm256_mul_ps(_mm256_loadu_ps(x.as_ptr().add(i)), vs);
        let v = _mm256_mul_ps(v, _mm256_loadu_ps(w.as_ptr().add(i)));
        _mm256_storeu_ps(x.as_mut_ptr().add(i), v);
        i += 8;
    }
    for j in i..n {
        x[j] = x[j] * s * w[j];
    }
}

/// Softmax in place (see `scalar::softmax_inplace`).
#[target_feature(enable = "avx2,fma")]
pub unsafe fn softmax_inplace(x: &mut [f32]) {
    let n = x.len();
    let p = x.as_mut_ptr();
    let mut vmax = _mm256_set1_ps(f32::NEG_INFINITY);
    let mut i = 0;
    while i + 8 <= n {
        vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(p.add(i)));
        i += 8;
    }
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), vmax);
    let max = lanes.iter().chain(&x[i..]).copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        x.iter_mut().for_each(|v| *v = 0.0);
        return;
    }
    let vm = _mm256_set1_ps(max);
    let mut acc0 = _mm256_setzero_pd();
    let mut acc1 = _mm256_setzero_pd();
    let mut i = 0;
    while i + 8 <= n {
        let e = expf8(_mm256_sub_ps(_mm256_loadu_ps(p.add(i)), vm));
        _mm256_storeu_ps(p.add(i), e);
        acc0 = _mm256_add_pd(acc0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        acc1 = _mm256_add_pd(acc1, _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(e)));
        i += 8;
    }
    let mut sums = [0f64; 4];
    _mm256_storeu_pd(sums.as_mut_ptr(), _mm256_add_pd(acc0, acc1));
    let mut sum = (sums[0] + sums[1]) + (sums[2] + sums[3]);
    for v in &mut x[i..] {
        *v = (*v - max).exp();
        sum += f64::from(*v);
    }
    scale_inplace(x, (1.0 / sum) as f32);
}

/// SiLU of `x` into `out` (same length, checked by the caller).
#[target_feature(enable = "avx2,fma")]
pub unsafe fn silu(x: &[f32], out: &mut [f32]) {
    let n = out.len();
    let mut i = 0;
    while i + 8 <= n {
        _mm256_storeu_ps(out.as_mut_ptr().add(i), silu8(_mm256_loadu_ps(x.as_ptr().add(i))));
        i += 8;
    }
    for j in i..n {
        out[j] = super::scalar::silu1(x[j]);
    }
}

/// SiLU in place.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn silu_inplace(x: &mut [f32]) {
    let n = x.len();
    let p = x.as_mut_ptr();
    let mut i = 0;
    while i + 8 <= n {
        _mm256_storeu_ps(p.add(i), silu8(_mm256_loadu_ps(p.add(i))));
        i += 8;
    }
    for v in &mut x[i..] {
        *v = super::scalar::silu1(*v);
    }
}

/// `out = silu(gate) * up` (lengths checked by the caller).
#[target_feature(enable = "avx2,fma")]
pub unsafe fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    let n = out.len();
    let mut i = 0;
    while i + 8 <= n {
        let g = silu8(_mm256_loadu_ps(gate.as_ptr().add(i)));
        let v = _mm256_mul_ps(g, _mm256_loadu_ps(up.as_ptr().add(i)));
        _mm256_storeu_ps(out.as_mut_ptr().add(i), v);
        i += 8;
    }
    for j in i..n {
        out[j] = super::scalar::silu1(gate[j]) * up[j];
    }
}

/// `x += y` (lengths checked by the caller).
#[target_feature(enable = "avx2,fma")]
pub unsafe fn add_inplace(x: &mut [f32], y: &[f32]) {
    let n = x.len();
    let p = x.as_mut_ptr();
    let mut i = 0;
    while i + 8 <= n {
        let v = _mm256_add_ps(_mm256_loadu_ps(p.add(i)), _mm256_loadu_ps(y.as_ptr().add(i)));
        _mm256_storeu_ps(p.add(i), v);
        i += 8;
    }
    for j in i..n {
        x[j] += y[j];
    }
}

/// `x *= y` (lengths checked by the caller).
#[target_feature(enable = "avx2,fma")]
pub unsafe fn mul_inplace(x: &mut [f32], y: &[f32]) {
    let n = x.len();
    let p = x.as_mut_ptr();
    let mut i = 0;
    while i + 8 <= n {
        let v = _mm256_mul_ps(_mm256_loadu_ps(p.add(i)), _mm256_loadu_ps(y.as_ptr().add(i)));
        _mm256_storeu_ps(p.add(i), v);
        i += 8;
    }
    for j in i..n {
        x[j] *= y[j];
    }
}

/// `x *= s`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn scale_inplace(x: &mut [f32], s: f32) {
    let n = x.len();
    let p = x.as_mut_ptr();
    let vs = _mm256_set1_ps(s);
    let mut i = 0;
    while i + 8 <= n {
        _mm256_storeu_ps(p.add(i), _mm256_mul_ps(_mm256_loadu_ps(p.add(i)), vs));
        i += 8;
    }
    for v in &mut x[i..] {
        *v *= s;
    }
}

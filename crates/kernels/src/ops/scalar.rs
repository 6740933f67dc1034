//! Scalar reference implementations of the element-wise ops, written to follow ggml's CPU
//! arithmetic (`ggml-cpu/ops.cpp`, `vec.h`) operation for operation, so that the SIMD variants
//! in [`super::avx2`] have a precise oracle and the whole crate tracks llama.cpp's numerics.
//!
//! Every function panics if its slices have different lengths (a caller bug, not bad data).

use super::gelu_table;

#[inline]
fn check_len(what: &str, a: usize, b: usize) {
    assert_eq!(a, b, "{what}: length mismatch ({a} vs {b})");
}

/// Sum of squares accumulated in f64 over f32 products, as ggml's `rms_norm` does
/// (`sum += (ggml_float)(x[i]*x[i])`).
pub fn sum_squares(x: &[f32]) -> f64 {
    x.iter().map(|&v| f64::from(v * v)).sum()
}

/// The f32 factor `1 / sqrt(mean + eps)` from an f64 sum of squares, rounded like ggml
/// (the mean is stored as f32 before adding eps).
#[inline]
pub fn rms_scale(sum: f64, n: usize, eps: f32) -> f32 {
    let mean = (sum / n as f64) as f32;
    1.0 / (mean + eps).sqrt()
}

/// `out = x / sqrt(mean(x^2) + eps) * w` (ggml `rms_norm` followed by `mul`).
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    check_len("rms_norm w", x.len(), w.len());
    check_len("rms_norm out", x.len(), out.len());
    if x.is_empty() {
        return;
    }
    let scale = rms_scale(sum_squares(x), x.len(), eps);
    for ((o, &xi), &wi) in out.iter_mut().zip(x).zip(w) {
        *o = xi * scale * wi;
    }
}

/// [`rms_norm`] writing over its input.
pub fn rms_norm_inplace(x: &mut [f32], w: &[f32], eps: f32) {
    check_len("rms_norm_inplace w", x.len(), w.len());
    if x.is_empty() {
        return;
    }
    let scale = rms_scale(sum_squares(x), x.len(), eps);
    for (xi, &wi) in x.iter_mut().zip(w) {
        *xi = *xi * scale * wi;
    }
}

/// Numerically stable softmax in place: subtract the max, exponentiate, divide by the sum
/// (accumulated in f64 like ggml's `ggml_vec_soft_max_f32`). An all `-inf` input (everything
/// masked) becomes all zeros rather than NaN.
pub fn softmax_inplace(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        x.iter_mut().for_each(|v| *v = 0.0);
        return;
    }
    let mut sum = 0f64;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += f64::from(*v);
    }
    let inv = (1.0 / sum) as f32;
    x.iter_mut().for_each(|v| *v *= inv);
}

/// `x / (1 + exp(-x))` (ggml_silu_f32).
#[inline]
pub fn silu1(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// SiLU of every element.
pub fn silu(x: &[f32], out: &mut [f32]) {
    check_len("silu", x.len(), out.len());
    for (o, &v) in out.iter_mut().zip(x) {
        *o = silu1(v);
    }
}

/// SiLU in place.
pub fn silu_inplace(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = silu1(*v));
}

/// `out = silu(gate) * up` (the SwiGLU FFN of llama, qwen, smollm).
pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    check_len("swiglu up", gate.len(), up.len());
    check_len("swiglu out", gate.len(), out.len());
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = silu1(g) * u;
    }
}

/// GELU, tanh approximation, exactly as ggml computes it per element (`ggml_gelu_f32`).
#[inline]
pub fn gelu_exact1(x: f32) -> f32 {
    const GELU_COEF_A: f32 = 0.044715;
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + GELU_COEF_A * x * x)).tanh())
}

/// GELU as ggml's vector op computes it (`GGML_GELU_FP16`): 0 below -10, identity above 10,
/// otherwise a lookup of the f16-rounded input in a table of f16-rounded [`gelu_exact1`].
#[inline]
pub fn gelu1(x: f32) -> f32 {
    if x <= -10.0 {
        0.0
    } else if x >= 10.0 {
        x
    } else {
        gelu_table::lookup(x)
    }
}

/// GELU of every element (ggml's f16-table variant, see [`gelu1`]).
pub fn gelu(x: &[f32], out: &mut [f32]) {
    check_len("gelu", x.len(), out.len());
    for (o, &v) in out.iter_mut().zip(x) {
        *o = gelu1(v);
    }
}

/// GELU in place.
pub fn gelu_inplace(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = gelu1(*v));
}

/// `out = gelu(gate) * up` (the GeGLU FFN of gemma), like ggml's `ggml_vec_geglu_f32`.
pub fn geglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    check_len("geglu up", gate.len(), up.len());
    check_len("geglu out", gate.len(), out.len());
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = if g <= -10.0 {
            0.0
        } else if g >= 10.0 {
            g * u
        } else {
            gelu_table::lookup(g) * u
        };
    }
}

/// `x += y`.
pub fn add_inplace(x: &mut [f32], y: &[f32]) {
    check_len("add_inplace", x.len(), y.len());
    x.iter_mut().zip(y).for_each(|(a, &b)| *a += b);
}

/// `x *= y` element-wise.
pub fn mul_inplace(x: &mut [f32], y: &[f32]) {
    check_len("mul_inplace", x.len(), y.len());
    x.iter_mut().zip(y).for_each(|(a, &b)| *a *= b);
}

/// `x *= s`.
pub fn scale_inplace(x: &mut [f32], s: f32) {
    x.iter_mut().for_each(|a| *a *= s);
}

/// `x = cap * tanh(x / cap)` (gemma's attention and final-logit soft-capping).
pub fn tanh_softcap(x: &mut [f32], cap: f32) {
    let inv = 1.0 / cap;
    x.iter_mut().for_each(|a| *a = cap * (*a * inv).tanh());
}

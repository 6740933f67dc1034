//! The f32 element-wise ops of a transformer forward pass: RMS norm, RoPE, softmax, SiLU/GELU and
//! their gated forms, residual adds, scaling and soft-capping.
//!
//! Each op has a scalar reference in [`scalar`] that follows ggml's CPU arithmetic; the functions
//! at this level pick an AVX2+FMA variant when the CPU has it (std caches the CPUID check, so the
//! choice costs one relaxed load) and fall back to the reference otherwise. Ops that are cheap
//! table look-ups or run once per token (`gelu`, `geglu`, `tanh_softcap`) only have the scalar form.
//!
//! ```
//! use kernels::ops;
//! let x = [1.0f32, 2.0, 3.0, 4.0];
//! let w = [1.0f32; 4];
//! let mut y = [0.0f32; 4];
//! ops::rms_norm(&x, &w, 1e-5, &mut y);
//! let rms = (30.0f32 / 4.0).sqrt();
//! assert!((y[3] - 4.0 / rms).abs() < 1e-5);
//! ```
//!
//! # Panics
//! Every op panics if its slices have mismatched lengths: that is a caller bug, not bad data.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) use avx2::{c as exp_bits, expf8};
mod gelu_table;
mod rope;
pub mod scalar;

pub use rope::{rope, RopeCache, RopeMode, Yarn};

/// Whether the AVX2+FMA variants are used on this CPU.
#[inline]
pub fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Calls the AVX2 variant `$simd` when available, else the scalar `$scalar`.
macro_rules! dispatch {
    ($simd:expr, $scalar:expr) => {{
        #[cfg(target_arch = "x86_64")]
        {
            if simd_available() {
                // SAFETY: the CPU supports AVX2 and FMA (checked just above), which is all the
                // `#[target_feature]` functions in `avx2` require; slice lengths were checked.
                #[allow(unused_unsafe)]
                return unsafe { $simd };
            }
        }
        $scalar
    }};
}

fn check_len(what: &str, a: usize, b: usize) {
    assert_eq!(a, b, "{what}: length mismatch ({a} vs {b})");
}

/// `out = x / sqrt(mean(x^2) + eps) * w`; the sum of squares is accumulated in f64 as in ggml.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    check_len("rms_norm w", x.len(), w.len());
    check_len("rms_norm out", x.len(), out.len());
    if x.is_empty() {
        return;
    }
    dispatch!(
        {
            let s = scalar::rms_scale(avx2::sum_squares(x), x.len(), eps);
            avx2::scale_mul(x, s, w, out)
        },
        scalar::rms_norm(x, w, eps, out)
    )
}

/// [`rms_norm`] in place.
pub fn rms_norm_inplace(x: &mut [f32], w: &[f32], eps: f32) {
    check_len("rms_norm_inplace w", x.len(), w.len());
    if x.is_empty() {
        return;
    }
    dispatch!(
        {
            let s = scalar::rms_scale(avx2::sum_squares(x), x.len(), eps);
            avx2::scale_mul_inplace(x, s, w)
        },
        scalar::rms_norm_inplace(x, w, eps)
    )
}

/// Softmax in place (max-subtracted; sum in f64; all `-inf` gives zeros).
pub fn softmax_inplace(x: &mut [f32]) {
    dispatch!(avx2::softmax_inplace(x), scalar::softmax_inplace(x))
}

/// `out = x / (1 + exp(-x))`.
pub fn silu(x: &[f32], out: &mut [f32]) {
    check_len("silu", x.len(), out.len());
    dispatch!(avx2::silu(x, out), scalar::silu(x, out))
}

/// SiLU in place.
pub fn silu_inplace(x: &mut [f32]) {
    dispatch!(avx2::silu_inplace(x), scalar::silu_inplace(x))
}

/// `out = silu(gate) * up`.
pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    check_len("swiglu up", gate.len(), up.len());
    check_len("swiglu out", gate.len(), out.len());
    dispatch!(avx2::swiglu(gate, up, out), scalar::swiglu(gate, up, out))
}

/// GELU (tanh approximation through ggml's f16 table; see [`scalar::gelu1`]).
pub fn gelu(x: &[f32], out: &mut [f32]) {
    scalar::gelu(x, out)
}

/// GELU in place.
pub fn gelu_inplace(x: &mut [f32]) {
    scalar::gelu_inplace(x)
}

/// `out = gelu(gate) * up`.
pub fn geglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    scalar::geglu(gate, up, out)
}

/// `x += y` (residual connections).
pub fn add_inplace(x: &mut [f32], y: &[f32]) {
    check_len("add_inplace", x.len(), y.len());
    dispatch!(avx2::add_inplace(x, y), scalar::add_inplace(x, y))
}

/// `x *= y` element-wise.
pub fn mul_inplace(x: &mut [f32], y: &[f32]) {
    check_len("mul_inplace", x.len(), y.len());
    dispatch!(avx2::mul_inplace(x, y), scalar::mul_inplace(x, y))
}

/// `x *= s`.
pub fn scale_inplace(x: &mut [f32], s: f32) {
    dispatch!(avx2::scale_inplace(x, s), scalar::scale_inplace(x, s))
}

/// `x = cap * tanh(x / cap)`.
pub fn tanh_softcap(x: &mut [f32], cap: f32) {
    scalar::tanh_softcap(x, cap)
}

//! GGML block types and their dot products, bit-exact with ggml's formats.
//!
//! A weight row stays in its GGUF encoding (`&[u8]` straight from the mmap, only 1-byte
//! aligned); the activation row is quantized once per token to the weight type's
//! [`QuantKernel::vec_dot_type`] (q8_0, q8_1, q8_K or f32), and [`QuantKernel::vec_dot`]
//! multiplies the two with integer arithmetic per block, like ggml's `ggml_vec_dot_*`.
//!
//! Every type has a scalar reference written like ggml's `*_generic` kernels; on x86_64 the
//! AVX2+FMA (and, where the CPU has them, AVX-512 VNNI) variants are chosen once at first use
//! (`is_x86_feature_detected!`), because a binary built for one CPU must run on another.
//! `DAEHWA_KERNELS=scalar` forces the reference path, `DAEHWA_KERNELS=avx2` caps at AVX2.
//!
//! ```
//! use gguf::GgmlType;
//! use kernels::quant;
//!
//! let n = 64;
//! let w: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
//! let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
//! let k = quant::kernel(GgmlType::Q4_1)?;
//! let mut wq = vec![0u8; quant::row_bytes(GgmlType::Q4_1, n)?];
//! quant::quantize_row(GgmlType::Q4_1, &w, &mut wq)?;
//! let mut xq = vec![0u8; quant::row_bytes(k.vec_dot_type, n)?];
//! quant::quantize_row_fast(k.vec_dot_type, &x, &mut xq)?;
//! let dot = (k.vec_dot)(n, &wq, &xq);
//! let exact: f32 = w.iter().zip(&x).map(|(a, b)| a * b).sum();
//! assert!((dot - exact).abs() < 0.02 * n as f32);
//! # Ok::<(), kernels::Error>(())
//! ```

pub mod blocks;
pub mod fp;
mod iq4;
pub(crate) mod kquants;
mod kquants_low;
mod kutil;
mod lanes;
mod legacy;
mod mxfp4;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

use std::sync::OnceLock;

use gguf::GgmlType;

use crate::{Error, Result};
use blocks::{as_blocks, as_blocks_mut, Block};

/// Dot product of one weight row (type `ty`, raw GGUF bytes) with one activation row already
/// quantized to `vec_dot_type(ty)`; `n` = number of elements (multiple of the block size).
/// Panics if `n` is not a whole number of blocks or either row is shorter than `n` elements.
pub type VecDotFn = fn(n: usize, w: &[u8], x: &[u8]) -> f32;

/// Dot products of one weight row with 1 to 4 activation rows (`xs.len() == out.len()`), each
/// bit-for-bit the type's `vec_dot`: the weights are unpacked once for all of them.
pub type VecDotMultiFn = fn(n: usize, w: &[u8], xs: &[&[u8]], out: &mut [f32]);

/// One dot-product implementation for one weight type.
#[derive(Debug)]
pub struct QuantKernel {
    pub ty: GgmlType,
    /// Q4_0/Q5_0/Q8_0 -> Q8_0; Q4_1/Q5_1 -> Q8_1; Q4_K/Q5_K/Q6_K -> Q8_K; F32/F16/BF16 -> F32.
    pub vec_dot_type: GgmlType,
    pub vec_dot: VecDotFn,
    /// The same dot for up to 4 tokens at once, where this path has one (prefill reuses it).
    pub vec_dot_multi: Option<VecDotMultiFn>,
    /// Which path this is: "scalar", "avx2", "avx512vnni".
    pub isa: &'static str,
}

const SUPPORTED: &[GgmlType] = &[
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q8_1,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::Q8_K,
];
/// Weight types read (dequantized, multiplied) but never written: daehwa has no quantizer for
/// them (GGUF writers such as llama.cpp's `llama-quantize` make these files).
const READ_ONLY: &[GgmlType] = &[
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::IQ4_NL,
    GgmlType::IQ4_XS,
    GgmlType::MXFP4,
];

fn names(types: impl Iterator<Item = GgmlType>) -> String {
    types.map(|t| t.name()).collect::<Vec<_>>().join(", ")
}

/// Every type `row_bytes` and `dequantize_row` accept, comma-separated (for error messages).
fn supported_names() -> &'static str {
    static S: OnceLock<String> = OnceLock::new();
    S.get_or_init(|| names(SUPPORTED.iter().chain(READ_ONLY).copied()))
}

/// The types `quantize_row` writes, comma-separated.
fn quantizable_names() -> &'static str {
    static S: OnceLock<String> = OnceLock::new();
    S.get_or_init(|| names(SUPPORTED.iter().copied()))
}

/// Types this module can quantize and dequantize.
pub fn supported_types() -> &'static [GgmlType] {
    SUPPORTED
}

/// Types this module can dequantize but not quantize.
pub fn read_only_types() -> &'static [GgmlType] {
    READ_ONLY
}

/// The weight types a model may use (those with a dot product: the scalar kernel table, the one
/// definition of what daehwa runs), in table order.
pub fn weight_types() -> impl Iterator<Item = GgmlType> {
    SCALAR.iter().map(|k| k.ty)
}

/// [`weight_types`] as ggml's names, comma-separated: what refusals and `daehwa list` print.
/// q8_1 and q8_K only exist as activations: ggml has no dot product with them as weights.
pub fn weight_type_names() -> &'static str {
    static S: OnceLock<String> = OnceLock::new();
    S.get_or_init(|| names(weight_types()))
}

fn check_supported(ty: GgmlType) -> Result<()> {
    if SUPPORTED.contains(&ty) || READ_ONLY.contains(&ty) {
        Ok(())
    } else {
        Err(Error::UnsupportedType(ty, supported_names()))
    }
}

/// The activation type a weight type's dot product consumes.
pub fn vec_dot_type(ty: GgmlType) -> Result<GgmlType> {
    use GgmlType::*;
    Ok(match ty {
        F32 | F16 | BF16 => F32,
        Q4_0 | Q5_0 | Q8_0 => Q8_0,
        Q4_1 | Q5_1 => Q8_1,
        Q4_K | Q5_K | Q6_K => Q8_K,
        Q2_K | Q3_K | IQ4_XS => Q8_K,
        IQ4_NL | MXFP4 => Q8_0,
        other => return Err(Error::UnsupportedType(other, weight_type_names())),
    })
}

/// Bytes of a row of `n` elements; `n` must be a multiple of the block size.
pub fn row_bytes(ty: GgmlType, n: usize) -> Result<usize> {
    check_supported(ty)?;
    let bs = ty.block_size();
    if !n.is_multiple_of(bs) {
        return Err(Error::Shape(format!(
            "{n} elements of {ty} is not a whole number of {bs}-element blocks"
        )));
    }
    Ok(n / bs * ty.type_size())
}

macro_rules! kernel_table {
    ($isa:literal; $($ty:ident => $vdt:ident, $f:path $(, $multi:path)?;)*) => {
        &[$(QuantKernel { ty: GgmlType::$ty, vec_dot_type: GgmlType::$vdt, vec_dot: $f, vec_dot_multi: multi!($($multi)?), isa: $isa },)*]
    };
}

macro_rules! multi {
    () => {
        None
    };
    ($f:path) => {
        Some($f as VecDotMultiFn)
    };
}

static SCALAR: &[QuantKernel] = kernel_table!("scalar";
    F32 => F32, fp::vec_dot_f32;
    F16 => F32, fp::vec_dot_f16;
    BF16 => F32, fp::vec_dot_bf16;
    Q4_0 => Q8_0, legacy::vec_dot_q4_0_q8_0;
    Q4_1 => Q8_1, legacy::vec_dot_q4_1_q8_1;
    Q5_0 => Q8_0, legacy::vec_dot_q5_0_q8_0;
    Q5_1 => Q8_1, legacy::vec_dot_q5_1_q8_1;
    Q8_0 => Q8_0, legacy::vec_dot_q8_0_q8_0;
    Q4_K => Q8_K, kquants::vec_dot_q4_k_q8_k;
    Q5_K => Q8_K, kquants::vec_dot_q5_k_q8_k;
    Q6_K => Q8_K, kquants::vec_dot_q6_k_q8_k;
    Q2_K => Q8_K, kquants_low::vec_dot_q2_k_q8_k;
    Q3_K => Q8_K, kquants_low::vec_dot_q3_k_q8_k;
    IQ4_NL => Q8_0, iq4::vec_dot_iq4_nl_q8_0;
    IQ4_XS => Q8_K, iq4::vec_dot_iq4_xs_q8_k;
    MXFP4 => Q8_0, mxfp4::vec_dot_mxfp4_q8_0;
);

#[cfg(target_arch = "x86_64")]
static AVX2: &[QuantKernel] = kernel_table!("avx2";
    F32 => F32, x86::fp::vec_dot_f32;
    F16 => F32, x86::fp::vec_dot_f16;
    BF16 => F32, x86::fp::vec_dot_bf16;
    Q4_0 => Q8_0, x86::legacy::vec_dot_q4_0_q8_0;
    Q4_1 => Q8_1, x86::legacy::vec_dot_q4_1_q8_1;
    Q5_0 => Q8_0, x86::legacy::vec_dot_q5_0_q8_0;
    Q5_1 => Q8_1, x86::legacy::vec_dot_q5_1_q8_1;
    Q8_0 => Q8_0, x86::legacy::vec_dot_q8_0_q8_0;
    Q4_K => Q8_K, x86::kquants::vec_dot_q4_k_q8_k;
    Q5_K => Q8_K, x86::kquants::vec_dot_q5_k_q8_k;
    Q6_K => Q8_K, x86::kquants::vec_dot_q6_k_q8_k;
    Q2_K => Q8_K, x86::kquants_low::vec_dot_q2_k_q8_k;
    Q3_K => Q8_K, x86::kquants_low::vec_dot_q3_k_q8_k;
    IQ4_NL => Q8_0, x86::nl4::vec_dot_iq4_nl_q8_0;
    IQ4_XS => Q8_K, x86::iq4xs::vec_dot_iq4_xs_q8_k;
    MXFP4 => Q8_0, x86::nl4::vec_dot_mxfp4_q8_0;
);

#[cfg(target_arch = "x86_64")]
static AVX512VNNI: &[QuantKernel] = kernel_table!("avx512vnni";
    Q4_0 => Q8_0, x86::vnni::vec_dot_q4_0_q8_0;
    Q4_1 => Q8_1, x86::vnni::vec_dot_q4_1_q8_1;
    Q8_0 => Q8_0, x86::vnni::vec_dot_q8_0_q8_0;
    Q4_K => Q8_K, x86::kquants512::vec_dot_q4_k_q8_k, x86::kquants512::vec_dot_multi_q4_k_q8_k;
    Q6_K => Q8_K, x86::kquants512::vec_dot_q6_k_q8_k, x86::kquants512::vec_dot_multi_q6_k_q8_k;
    Q2_K => Q8_K, x86::kquants_low::vec_dot_q2_k_q8_k_512, x86::kquants_low::vec_dot_multi_q2_k_q8_k_512;
    Q3_K => Q8_K, x86::kquants_low::vec_dot_q3_k_q8_k_512, x86::kquants_low::vec_dot_multi_q3_k_q8_k_512;
    IQ4_NL => Q8_0, x86::nl4::vnni::vec_dot_iq4_nl_q8_0;
    IQ4_XS => Q8_K, x86::iq4xs::vec_dot_iq4_xs_q8_k_512, x86::iq4xs::vec_dot_multi_iq4_xs_q8_k_512;
    MXFP4 => Q8_0, x86::nl4::vnni::vec_dot_mxfp4_q8_0;
);

/// How far up the ISA ladder this process may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    Scalar,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Avx2,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Avx512Vnni,
}

/// What the CPU can run, ignoring the environment.
fn detected_level() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        if x86::has_avx512vnni() {
            return Level::Avx512Vnni;
        }
        if x86::has_avx2() {
            return Level::Avx2;
        }
    }
    Level::Scalar
}

/// The level `kernel` uses: detected once, capped by `DAEHWA_KERNELS` (`scalar` or `avx2`).
pub(crate) fn chosen_level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let detected = detected_level();
        match std::env::var("DAEHWA_KERNELS").as_deref() {
            Ok("scalar") => Level::Scalar,
            Ok("avx2") => detected.min(Level::Avx2),
            _ => detected,
        }
    })
}

/// The kernel tables up to `max`, lowest first (a fixed array: `kernel` runs per matmul call
/// and must not allocate).
fn tables(max: Level) -> [Option<&'static [QuantKernel]>; 3] {
    let mut t: [Option<&'static [QuantKernel]>; 3] = [Some(SCALAR), None, None];
    #[cfg(target_arch = "x86_64")]
    {
        if max >= Level::Avx2 {
            t[1] = Some(AVX2);
        }
        if max >= Level::Avx512Vnni {
            t[2] = Some(AVX512VNNI);
        }
    }
    let _ = max;
    t
}

fn find(table: &'static [QuantKernel], ty: GgmlType) -> Option<&'static QuantKernel> {
    table.iter().find(|k| k.ty == ty)
}

fn unsupported_weight(ty: GgmlType) -> Error {
    Error::UnsupportedType(ty, weight_type_names())
}

/// The best path for this CPU (chosen once; see the module docs for `DAEHWA_KERNELS`).
pub fn kernel(ty: GgmlType) -> Result<&'static QuantKernel> {
    tables(chosen_level())
        .into_iter()
        .rev()
        .flatten()
        .find_map(|t| find(t, ty))
        .ok_or_else(|| unsupported_weight(ty))
}

/// The scalar reference path.
pub fn kernel_scalar(ty: GgmlType) -> Result<&'static QuantKernel> {
    find(SCALAR, ty).ok_or_else(|| unsupported_weight(ty))
}

/// Every path this CPU can run for `ty`, scalar first (empty for a type with no dot product).
pub fn kernel_variants(ty: GgmlType) -> Vec<&'static QuantKernel> {
    tables(detected_level())
        .into_iter()
        .flatten()
        .filter_map(|t| find(t, ty))
        .collect()
}

/// Views a `row_bytes`-long slice as blocks; it is a whole number of blocks by construction.
fn whole<B: Block>(bytes: &[u8]) -> &[B] {
    as_blocks(bytes).expect("row_bytes is a whole number of blocks")
}

fn whole_mut<B: Block>(bytes: &mut [u8]) -> &mut [B] {
    as_blocks_mut(bytes).expect("row_bytes is a whole number of blocks")
}

fn check_row(ty: GgmlType, n: usize, bytes: usize, what: &str) -> Result<usize> {
    let need = row_bytes(ty, n)?;
    if bytes < need {
        return Err(Error::Shape(format!(
            "{what}: {n} elements of {ty} need {need} bytes, got {bytes}"
        )));
    }
    Ok(need)
}

/// Decodes the first `row_bytes(ty, dst.len())` bytes of `src` into `dst`.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<()> {
    let need = check_row(ty, dst.len(), src.len(), "dequantize_row")?;
    let src = &src[..need];
    use GgmlType::*;
    match ty {
        F32 => fp::dequantize_f32(src, dst),
        F16 => fp::dequantize_f16(src, dst),
        BF16 => fp::dequantize_bf16(src, dst),
        Q4_0 => legacy::dequantize_q4_0(whole(src), dst),
        Q4_1 => legacy::dequantize_q4_1(whole(src), dst),
        Q5_0 => legacy::dequantize_q5_0(whole(src), dst),
        Q5_1 => legacy::dequantize_q5_1(whole(src), dst),
        Q8_0 => legacy::dequantize_q8_0(whole(src), dst),
        Q8_1 => legacy::dequantize_q8_1(whole(src), dst),
        Q4_K => kquants::dequantize_q4_k(whole(src), dst),
        Q5_K => kquants::dequantize_q5_k(whole(src), dst),
        Q6_K => kquants::dequantize_q6_k(whole(src), dst),
        Q8_K => kquants::dequantize_q8_k(whole(src), dst),
        Q2_K => kquants_low::dequantize_q2_k(whole(src), dst),
        Q3_K => kquants_low::dequantize_q3_k(whole(src), dst),
        IQ4_NL => iq4::dequantize_iq4_nl(whole(src), dst),
        IQ4_XS => iq4::dequantize_iq4_xs(whole(src), dst),
        MXFP4 => mxfp4::dequantize_mxfp4(whole(src), dst),
        other => return Err(Error::UnsupportedType(other, supported_names())),
    }
    Ok(())
}

/// Encodes `src` into the first `row_bytes(ty, src.len())` bytes of `dst` with ggml's
/// reference quantization (`quantize_row_*_ref`): deterministic, and what GGUF writers use.
pub fn quantize_row(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<()> {
    let need = check_row(ty, src.len(), dst.len(), "quantize_row")?;
    let dst = &mut dst[..need];
    use GgmlType::*;
    match ty {
        F32 => fp::quantize_f32(src, dst),
        F16 => fp::quantize_f16(src, dst),
        BF16 => fp::quantize_bf16(src, dst),
        Q4_0 => legacy::quantize_q4_0(src, whole_mut(dst)),
        Q4_1 => legacy::quantize_q4_1(src, whole_mut(dst)),
        Q5_0 => legacy::quantize_q5_0(src, whole_mut(dst)),
        Q5_1 => legacy::quantize_q5_1(src, whole_mut(dst)),
        Q8_0 => legacy::quantize_q8_0(src, whole_mut(dst)),
        Q8_1 => legacy::quantize_q8_1(src, whole_mut(dst)),
        Q4_K => kquants::quantize_q4_k(src, whole_mut(dst)),
        Q5_K => kquants::quantize_q5_k(src, whole_mut(dst)),
        Q6_K => kquants::quantize_q6_k(src, whole_mut(dst)),
        Q8_K => kquants::quantize_q8_k(src, whole_mut(dst)),
        other => return Err(Error::UnsupportedType(other, quantizable_names())),
    }
    Ok(())
}

/// Quantizes an activation row the way ggml's x86 `quantize_row_q8_0/q8_1/q8_K` do (SIMD when
/// the CPU has AVX2; `DAEHWA_KERNELS=scalar` forces the reference). Note that ggml's SIMD
/// q8_0/q8_1 differ from the reference in rounding (ties to even, scale `127/amax`), so the
/// bytes can differ from [`quantize_row`] in rare ties; q8_K and f32 are identical to it.
/// Other types fall back to [`quantize_row`].
pub fn quantize_row_fast(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<()> {
    #[cfg(target_arch = "x86_64")]
    if chosen_level() >= Level::Avx2 {
        let need = check_row(ty, src.len(), dst.len(), "quantize_row_fast")?;
        let dst = &mut dst[..need];
        match ty {
            GgmlType::Q8_0 => x86::quantize::quantize_q8_0(src, whole_mut(dst)),
            GgmlType::Q8_1 => x86::quantize::quantize_q8_1(src, whole_mut(dst)),
            GgmlType::Q8_K => x86::quantize::quantize_q8_k(src, whole_mut(dst)),
            _ => return quantize_row(ty, src, dst),
        }
        return Ok(());
    }
    quantize_row(ty, src, dst)
}

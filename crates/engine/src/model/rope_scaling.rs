//! RoPE scaling as the file's metadata asks for it (`{arch}.rope.scaling.*`), parsed once into
//! [`RopeScaling`] and turned into the kernels' [`RopeCache`] in one place, the way llama.cpp's
//! context derives `ggml_rope_ext`'s arguments from the hyper-parameters:
//!
//! - **linear** (`rope.scaling.type = linear`): every angle times `1 / factor`.
//! - **YaRN** (`yarn`): `freq_scale = 1 / factor`, the blend ramp between pairs
//!   `corr_dims(beta_fast, beta_slow)` at `original_context_length`, and the magnitude llama.cpp
//!   computes (`get_mscale(factor, mscale) / get_mscale(factor, mscale_all_dims)` with
//!   `mscale_all_dims = rope.scaling.yarn_log_multiplier`, cancelled by ggml's own
//!   `1 + 0.1 ln factor`, times `rope.scaling.attn_factor`).
//! - **Llama 3 frequency factors** (`rope_freqs.weight`, written by the converter for Llama 3.1+
//!   and EXAONE): per-pair divisors, combined with any of the above.

use gguf::GgufFile;
use kernels::ops::{RopeCache, Yarn};

use super::hparams::Keys;
use crate::{Error, Result};

/// The RoPE scaling of a model, parsed from its metadata.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RopeScaling {
    /// No scaling (or `linear`, whose `1 / factor` lives in `HParams::rope_freq_scale`).
    None,
    /// YaRN context extension.
    Yarn {
        factor: f32,
        /// Context length the model was trained at before extension.
        n_ctx_orig: usize,
        beta_fast: f32,
        beta_slow: f32,
        /// `rope.scaling.yarn_log_multiplier` (DeepSeek's `mscale_all_dim`; 0 when absent).
        log_mul: f32,
        /// `rope.scaling.attn_factor` (1 when absent).
        attn_factor: f32,
    },
}

/// llama.cpp's `get_mscale` (from transformers' YaRN): `1 + 0.1 mscale ln(scale)` above 1.
fn get_mscale(scale: f32, mscale: f32) -> f32 {
    if scale <= 1.0 {
        1.0
    } else {
        0.1 * mscale * scale.ln() + 1.0
    }
}

impl RopeScaling {
    /// Reads `{arch}.rope.scaling.type` and its parameters. Returns the scaling and the linear
    /// `freq_scale` (`1 / factor` for linear and YaRN, 1 otherwise).
    pub fn read(f: &GgufFile, arch: &str, n_ctx_train: usize) -> Result<(Self, f32)> {
        let k = Keys { arch };
        let factor = f.opt_f32(&k.key("rope.scaling.factor"))?.filter(|&x| x > 0.0 && x.is_finite());
        match f.opt_str(&k.key("rope.scaling.type"))? {
            None | Some("none") => Ok((RopeScaling::None, 1.0)),
            Some("linear") => Ok((RopeScaling::None, factor.map_or(1.0, |x| 1.0 / x))),
            Some("yarn") => {
                let factor = factor.unwrap_or(1.0);
                let n_ctx_orig = match f.opt_u32(&k.key("rope.scaling.original_context_length"))? {
                    Some(n) if n > 0 => n as usize,
                    _ => n_ctx_train,
                };
                let get = |key: &str, default: f32| -> Result<f32> {
                    Ok(f.opt_f32(&k.key(key))?.filter(|x| x.is_finite()).unwrap_or(default))
                };
                let y = RopeScaling::Yarn {
                    factor,
                    n_ctx_orig,
                    beta_fast: get("rope.scaling.yarn_beta_fast", 32.0)?,
                    beta_slow: get("rope.scaling.yarn_beta_slow", 1.0)?,
                    log_mul: get("rope.scaling.yarn_log_multiplier", 0.0)?,
                    attn_factor: get("rope.scaling.attn_factor", 1.0)?,
                };
                Ok((y, 1.0 / factor))
            }
            Some(other) => Err(Error::Model(format!("{arch}: rope scaling `{other}` is not supported (linear, yarn, none)"))),
        }
    }

    /// The kernel's YaRN parameters for layers rotating with `freq_base`, as llama.cpp's context
    /// derives `ext_factor` and `attn_factor` (`llama_context` constructor).
    pub fn yarn(&self, n_rot: usize, freq_base: f32) -> Option<Yarn> {
        let RopeScaling::Yarn { factor, n_ctx_orig, beta_fast, beta_slow, log_mul, attn_factor } = *self else {
            return None;
        };
        let mut af = if log_mul != 0.0 { get_mscale(factor, 1.0) / get_mscale(factor, log_mul) } else { get_mscale(factor, 1.0) };
        // ggml multiplies by `1 + 0.1 ln(1 / freq_scale)` again inside the kernel: cancel it.
        af *= 1.0 / (1.0 + 0.1 * factor.ln());
        af *= attn_factor;
        Some(Yarn { ext_factor: 1.0, attn_factor: af, corr_dims: Yarn::corr_dims(n_rot, n_ctx_orig, freq_base, beta_fast, beta_slow) })
    }

    /// The RoPE table of layers rotating with `freq_base` and `freq_scale`, with the per-pair
    /// divisors `freq_factors` where the file has them.
    pub fn cache(
        &self,
        head_dim: usize,
        n_rot: usize,
        freq_base: f32,
        freq_scale: f32,
        max_pos: usize,
        freq_factors: Option<&[f32]>,
    ) -> RopeCache {
        RopeCache::with_scaling(head_dim, n_rot, freq_base, freq_scale, max_pos, freq_factors, self.yarn(n_rot, freq_base))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// gpt-oss-20b's metadata (factor 32, original 4096): llama.cpp logs `yarn_attn_factor = 1`
    /// before its kernel multiplies by `1 + 0.1 ln 32`.
    #[test]
    fn yarn_magnitude_is_llama_cpp_s() {
        let y = RopeScaling::Yarn { factor: 32.0, n_ctx_orig: 4096, beta_fast: 32.0, beta_slow: 1.0, log_mul: 0.0, attn_factor: 1.0 };
        let k = y.yarn(64, 150000.0).expect("yarn");
        assert!((k.attn_factor - 1.0).abs() < 1e-6, "{}", k.attn_factor);
        assert_eq!(k.ext_factor, 1.0);
        assert!(k.corr_dims[0] < k.corr_dims[1] && k.corr_dims[1] <= 63.0, "{:?}", k.corr_dims);
        assert_eq!(RopeScaling::None.yarn(64, 10000.0), None);
    }
}

//! Phi-3 / Phi-3.5 / Phi-4-mini (`phi3`), as llama.cpp's `llama_model_phi3` graph computes it:
//! the llama block with RoPE over split halves (partial where `rope.dimension_count` < head size,
//! Phi-4-mini), Q, K and V fused in one `attn_qkv` tensor, the gate and up projections fused in
//! one `ffn_up` of 2 x n_ff rows (gate first; SwiGLU), and LongRoPE: per-pair divisors
//! `rope_factors_short` or, when the context per sequence exceeds
//! `rope.scaling.original_context_length`, `rope_factors_long`, with cos/sin scaled by
//! `rope.scaling.attn_factor`. llama.cpp disables Phi's sliding window (n_swa = 0), so it is
//! ignored here too. The fused tensors are sliced by rows at load (`Weight::load_rows`): one
//! forward pass serves all llama-like families.
//!
//! Verified against llama.cpp on a random-weight file by `families_vs_llama_cpp.rs`.

use std::sync::Arc;

use gguf::GgufFile;

use super::llama::{Llama, NormPlacement, Variant, LLAMA};
use super::RopeStyle;
use crate::Result;

/// Phi-3.
pub(crate) const PHI3: Variant = Variant {
    arch: "phi3",
    rope: RopeStyle::Neox,
    norms: NormPlacement::Pre,
    output_bias: true,
    rope_freqs: true,
    ..LLAMA
};

/// Loads a `phi3` file.
pub fn load_phi3(file: Arc<GgufFile>) -> Result<Llama> {
    Llama::load_variant(file, PHI3)
}

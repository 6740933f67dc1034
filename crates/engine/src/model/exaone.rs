//! EXAONE (LG AI Research's Korean-English models): llama-like decoders (see `llama.rs`) with RoPE
//! over split halves. Their Hugging Face tensor names (`transformer.h.N.attn.attention.q_proj`, ...)
//! are mapped to the standard GGUF names by llama.cpp's converter, so only the graph differs.
//!
//! - **EXAONE 3.0 / 3.5** (`exaone`, llama.cpp `llm_build_exaone`): the llama block, plus the
//!   per-dimension RoPE frequency factors `rope_freqs.weight` where the converter wrote them (its
//!   Llama-3-style rope scaling).
//! - **EXAONE 4.0** (`exaone4`, llama.cpp `llm_build_exaone4`): no norm before attention or the FFN;
//!   instead RMS norms on each branch's output before the residual add (`post_attention_norm`,
//!   `post_ffw_norm`), and QK-norm. llama.cpp gives the 64-layer 32B model sliding-window layers
//!   (`attention.sliding_window`, period `attention.sliding_window_pattern`, default 4: three
//!   windowed layers then one global) and RoPE only on the windowed ones ([`EXAONE4_32B`]). The
//!   1.2B model (30 layers) has none.
//!
//! Verified against llama.cpp on random-weight files by
//! `crates/engine/tests/families_vs_llama_cpp.rs`.

use std::sync::Arc;

use gguf::GgufFile;

use super::llama::{Llama, NormPlacement, Variant, LLAMA};
use super::RopeStyle;
use crate::Result;

/// EXAONE 3.x.
pub(crate) const EXAONE: Variant = Variant {
    arch: "exaone",
    rope: RopeStyle::Neox,
    norms: NormPlacement::Pre,
    qk_norm: false,
    output_bias: false,
    rope_freqs: true,
    ..LLAMA
};

/// EXAONE 4.0 without sliding windows.
pub(crate) const EXAONE4: Variant = Variant {
    arch: "exaone4",
    rope: RopeStyle::Neox,
    norms: NormPlacement::Post,
    qk_norm: true,
    output_bias: false,
    rope_freqs: true,
    ..LLAMA
};

/// Loads an `exaone` (3.x) file.
pub fn load_exaone(file: Arc<GgufFile>) -> Result<Llama> {
    Llama::load_variant(file, EXAONE)
}

/// EXAONE 4.0 32B: interleaved sliding-window layers, RoPE on those only.
pub(crate) const EXAONE4_32B: Variant = Variant {
    swa_period: Some(4),
    swa_rope_like_global: true,
    rope_full_layers: false,
    ..EXAONE4
};

/// Loads an `exaone4` file: the 64-layer (32B) layout with sliding windows, as llama.cpp keys it.
pub fn load_exaone4(file: Arc<GgufFile>) -> Result<Llama> {
    let n_layer = file.get_u32("exaone4.block_count")?;
    Llama::load_variant(file, if n_layer == 64 { EXAONE4_32B } else { EXAONE4 })
}

//! Qwen 2 and Qwen 3 (dense): llama-like decoders (see `llama.rs`) with RoPE over split halves.
//!
//! - **Qwen 2 / 2.5** (`qwen2`, llama.cpp `llm_build_qwen2`): biases on the Q, K and V projections
//!   (`blk.N.attn_{q,k,v}.bias`) and, when the file has one, on the output (`output.bias`);
//!   embeddings are often tied (no `output.weight`).
//! - **Qwen 3** (`qwen3`, llama.cpp `llm_build_qwen3`): no biases but a per-head RMS norm of Q and
//!   K before RoPE (`blk.N.attn_{q,k}_norm.weight`, `head_dim` wide); the head size comes from
//!   `qwen3.attention.key_length` and may exceed `n_embd / n_head` (Qwen3-0.6B: 16 x 128 > 1024).
//!
//! Both are verified against llama.cpp on random-weight files by
//! `crates/engine/tests/families_vs_llama_cpp.rs`.

use std::sync::Arc;

use gguf::GgufFile;

use super::llama::{Llama, NormPlacement, Variant, LLAMA};
use super::RopeStyle;
use crate::Result;

/// Qwen 2 / 2.5: QKV biases (optional per tensor, as in llama.cpp) and an optional output bias.
pub(crate) const QWEN2: Variant = Variant {
    arch: "qwen2",
    rope: RopeStyle::Neox,
    norms: NormPlacement::Pre,
    qk_norm: false,
    output_bias: true,
    rope_freqs: false,
    ..LLAMA
};

/// Qwen 3: QK-norm.
pub(crate) const QWEN3: Variant = Variant {
    arch: "qwen3",
    rope: RopeStyle::Neox,
    norms: NormPlacement::Pre,
    qk_norm: true,
    output_bias: false,
    rope_freqs: false,
    ..LLAMA
};

/// Loads a `qwen2` file.
pub fn load_qwen2(file: Arc<GgufFile>) -> Result<Llama> {
    Llama::load_variant(file, QWEN2)
}

/// Loads a `qwen3` file.
pub fn load_qwen3(file: Arc<GgufFile>) -> Result<Llama> {
    Llama::load_variant(file, QWEN3)
}

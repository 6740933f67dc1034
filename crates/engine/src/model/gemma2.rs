//! Gemma 2 (2B / 9B / 27B), as llama.cpp's `llama_model_gemma2` graph computes it: Gemma 3's
//! block (`gemma3.rs`) without QK-norm, plus attention-score soft-capping
//! (`attn_logit_softcapping`, default 50) and final logit soft-capping
//! (`final_logit_softcapping`), with sliding-window and global layers alternating
//! (`attention.sliding_window_pattern`, default period 2: even layers local) and both kinds of
//! layer rotating with the same RoPE base and scaling.
//!
//! ```text
//!   x = token_embd[t] * sqrt(n_embd)
//!   per layer: h = rms_norm(x) * attn_norm; q, k, v = h Wq, h Wk, h Wv; rope_neox(q, k)
//!              q *= 1/sqrt(head_dim)  (27B, 46 layers: 1/sqrt(n_embd / n_head))
//!              s = 50 tanh(q.k / 50); local layers see the last `sliding_window` positions
//!              x += rms_norm(a Wo) * post_attention_norm
//!              x += rms_norm(gelu(h' Wgate) * (h' Wup) Wdown) * post_ffw_norm,  h' = rms_norm(x) * ffn_norm
//!   logits = 30 tanh((rms_norm(x) * output_norm  token_embd) / 30)
//! ```
//!
//! Verified against llama.cpp on a random-weight file by `families_vs_llama_cpp.rs`.

use std::sync::Arc;

use gguf::GgufFile;

use super::gemma3::GEMMA3;
use super::llama::{AttnScale, Llama, Variant};
use crate::Result;

/// Gemma 2.
pub(crate) const GEMMA2: Variant = Variant {
    arch: "gemma2",
    qk_norm: false,
    attn_scale: AttnScale::Gemma2Query,
    swa_period: Some(2),
    attn_softcap: true,
    swa_rope_like_global: true,
    ..GEMMA3
};

/// Loads a `gemma2` file.
pub fn load_gemma2(file: Arc<GgufFile>) -> Result<Llama> {
    Llama::load_variant(file, GEMMA2)
}

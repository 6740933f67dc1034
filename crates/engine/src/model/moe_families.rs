//! The mixture-of-experts families, as options of the shared llama-like decoder (`llama.rs`) with
//! the MoE block of `moe.rs` in place of the dense FFN.
//!
//! - **Qwen 3 MoE** (`qwen3moe`, llama.cpp `llm_build_qwen3moe`; Qwen3-30B-A3B, 235B-A22B): Qwen 3's
//!   attention (QK-norm, NeoX RoPE, no biases), then `ffn_norm` and a MoE of `expert_count`
//!   experts of width `expert_feed_forward_length`, softmax gating, the top `expert_used_count`
//!   renormalised to sum to 1 (llama.cpp always renormalises for this architecture), SwiGLU experts.
//! - **gpt-oss** (`gpt-oss`, llama.cpp `llm_build_openai_moe_iswa`; gpt-oss-20b, -120b): biases on
//!   Q, K, V and the attention output, NeoX RoPE (YaRN-scaled in the real files) with the same
//!   base on every layer, a learned sink logit per head (`attn_sinks`, folded in by `kernels::attention`), even layers
//!   attending within a sliding window (`attention.sliding_window`, 128) and odd layers
//!   globally, the FFN pre-norm stored as `post_attention_norm`, then a MoE whose router has a
//!   bias and picks the top-k logits before a softmax over the chosen ones, experts with biases
//!   and the clamped SwiGLU `swiglu_oai` (alpha 1.702, limit 7).
//!
//! Both are verified against llama.cpp on random-weight files by
//! `crates/engine/tests/families_vs_llama_cpp.rs`.

use std::sync::Arc;

use gguf::GgufFile;

use super::llama::{Extras, Llama, Variant};
use super::moe::{ExpertAct, Gating, MoeVariant};
use super::qwen::QWEN3;
use crate::Result;

/// Qwen 3 MoE: Qwen 3's attention.
pub(crate) const QWEN3MOE: Variant = Variant { arch: "qwen3moe", ..QWEN3 };

/// Qwen 3 MoE's experts: softmax, top-k, renormalised, SwiGLU.
pub(crate) const QWEN3MOE_EXPERTS: MoeVariant = MoeVariant { gating: Gating::Softmax, norm_weights: true, act: ExpertAct::Silu };

/// llama.cpp's `set_swa_pattern(2)` for gpt-oss: layer `il` is local when `il % 2 == 0`.
const GPT_OSS_SWA_PERIOD: u32 = 2;

/// gpt-oss: no QK-norm, NeoX RoPE, alternating sliding-window layers.
pub(crate) const GPT_OSS: Variant =
    Variant { arch: "gpt-oss", qk_norm: false, output_bias: false, rope_freqs: false, swa_period: Some(GPT_OSS_SWA_PERIOD), ..QWEN3 };

/// gpt-oss's experts (`LLM_FFN_SWIGLU_OAI_MOE`, `LLAMA_EXPERT_GATING_FUNC_TYPE_SOFTMAX_WEIGHT`).
pub(crate) const GPT_OSS_EXPERTS: MoeVariant =
    MoeVariant { gating: Gating::SoftmaxWeight, norm_weights: false, act: ExpertAct::SwigluOai { alpha: 1.702, limit: 7.0 } };

/// Loads a `qwen3moe` file.
pub fn load_qwen3moe(file: Arc<GgufFile>) -> Result<Llama> {
    Llama::load_with(file, QWEN3MOE, Extras { moe: Some(QWEN3MOE_EXPERTS), ..Extras::default() })
}

/// Loads a `gpt-oss` file.
pub fn load_gpt_oss(file: Arc<GgufFile>) -> Result<Llama> {
    let x = Extras { moe: Some(GPT_OSS_EXPERTS), ffn_norm_name: Some("post_attention_norm.weight"), swa_global_rope: true };
    Llama::load_with(file, GPT_OSS, x)
}

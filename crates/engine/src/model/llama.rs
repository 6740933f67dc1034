//! The llama-like decoder: llama itself (SmolLM2, Llama 2/3, Mistral, TinyLlama) and the families
//! that differ from it only by a few options ([`Variant`]): Qwen 2/3 (`qwen.rs`), EXAONE 3/4
//! (`exaone.rs`), Gemma 3 (`gemma3.rs`). One forward pass serves them all, so a fix or an
//! optimisation lands everywhere.
//!
//! Per layer (llama.cpp `llm_build_llama`; the options in brackets):
//! ```text
//!   x = token_embd[t]                                [Gemma: * sqrt(n_embd)]
//!   h = rms_norm(x) * attn_norm                      [pre-norm; EXAONE 4: h = x]
//!   q, k, v = h Wq, h Wk, h Wv                       (+ biases where present: Qwen 2)
//!   q, k = rms_norm(q, k per head) * q/k_norm        [QK-norm: Qwen 3, EXAONE 4]
//!   q, k = rope(q, pos), rope(k, pos)                (adjacent pairs for llama, whose converter
//!                                                     permuted Wq/Wk; halves for the others;
//!                                                     divided by rope_freqs where present;
//!                                                     Gemma: another base on sliding-window layers)
//!   a = attention(q, K[..=pos], V[..=pos]) Wo        (grouped-query: n_head / n_head_kv per KV head;
//!                                                     [sliding-window layers see the last w positions];
//!                                                     scaled by 1/sqrt(head_dim) [Gemma: q scaled first])
//!   x += a                                           [post-norm: x += rms_norm(a) * post_attention_norm]
//!   h = rms_norm(x) * ffn_norm                       [pre-norm; EXAONE 4: h = x]
//!   f = (silu(h Wgate) * (h Wup)) Wdown              [Gemma: gelu instead of silu]
//!   x += f                                           [post-norm: x += rms_norm(f) * post_ffw_norm]
//! ```
//! then `logits = rms_norm(x) * output_norm  Woutput (+ output.bias: Qwen 2)`, where Woutput =
//! token_embd when `output.weight` is absent (tied embeddings) [Gemma: `cap * tanh(logits / cap)`
//! where the metadata sets a cap].
//!
//! The element-wise steps between the matmuls (norms, biases, RoPE, the gated activation,
//! residual adds) run over rows of tokens on the pool ([`par_rows`]): left on the calling thread
//! they were the serial part that kept a second thread from doubling prefill speed.

use std::sync::Arc;

use gguf::GgufFile;
use kernels::attention::AttnParams;
use kernels::matmul::{matmul, matmul_many};
use kernels::ops::{self, RopeCache, RopeMode};
use kernels::pool::ThreadPool;
use kernels::rows::par_rows;

use super::moe::{MoeFfn, MoeVariant};
use super::weights::{load_optional_vector, load_vector, Weight};
use super::{attend_window, grow, Batch, ForwardCtx, HParams, Model, RopeStyle};
use crate::{Error, Result};

/// Where a layer's RMS norms sit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NormPlacement {
    /// Before attention and before the FFN (`attn_norm`, `ffn_norm`): llama and most families.
    Pre,
    /// After attention and after the FFN, on the branch before the residual add
    /// (`post_attention_norm`, `post_ffw_norm`): EXAONE 4.
    Post,
    /// Both (Gemma 2/3).
    PreAndPost,
}

impl NormPlacement {
    fn pre(self) -> bool {
        matches!(self, NormPlacement::Pre | NormPlacement::PreAndPost)
    }
    fn post(self) -> bool {
        matches!(self, NormPlacement::Post | NormPlacement::PreAndPost)
    }
}

/// The gate's activation in the gated FFN `act(h Wgate) * (h Wup)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FfnAct {
    /// SwiGLU: llama and most families.
    Silu,
    /// GeGLU with the tanh approximation (ggml's table): Gemma.
    Gelu,
}

/// How attention scores are scaled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AttnScale {
    /// The attention kernel scales each score by `1 / sqrt(head_dim)`.
    Kernel,
    /// Q is multiplied by Gemma's `query_pre_attn_scalar` rule before attention (as llama.cpp's
    /// gemma graphs do): `1 / sqrt(n_embd / n_head)` for the 62-layer 27B, `1 / sqrt(head_dim)`
    /// otherwise; the kernel's own scale is 1.
    GemmaQuery,
    /// Gemma 2's rule: as `GemmaQuery`, with the 27B at 46 layers.
    Gemma2Query,
}

/// What distinguishes one llama-like family from another, as llama.cpp's graph for it does.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Variant {
    /// `general.architecture`, also the prefix of its metadata keys.
    pub arch: &'static str,
    pub rope: RopeStyle,
    pub norms: NormPlacement,
    /// Per-head RMS norm of Q and K before RoPE (`attn_q_norm`, `attn_k_norm`), required.
    pub qk_norm: bool,
    /// The graph adds `output.bias` to the logits when the file has one (Qwen 2).
    pub output_bias: bool,
    /// The graph divides RoPE frequencies by `rope_freqs.weight` when the file has one (Llama 3.1
    /// and EXAONE rope scaling, precomputed by the converter).
    pub rope_freqs: bool,
    pub ffn_act: FfnAct,
    /// Token embeddings are multiplied by `sqrt(n_embd)` (Gemma).
    pub embed_scale: bool,
    pub attn_scale: AttnScale,
    /// Sliding-window layers as llama.cpp's `load_swa_pattern(ml, period)` reads them (see
    /// [`HParams::read_sliding_window`]), with their own RoPE base `rope.freq_base_swa`; `None`:
    /// every layer is global.
    pub swa_period: Option<u32>,
    /// The graph soft-caps the logits by `final_logit_softcapping` where the metadata sets it.
    pub logit_softcap: bool,
    /// Attention scores are soft-capped by `attn_logit_softcapping` (default 50): Gemma 2.
    pub attn_softcap: bool,
    /// Sliding-window layers rotate with the global layers' RoPE (`rope.freq_base_swa` where set,
    /// else `rope.freq_base`; the same scaling), as llama.cpp's gemma2 and exaone4 do; otherwise
    /// Gemma 3's own base (10000) without linear scaling.
    pub swa_rope_like_global: bool,
    /// Full-attention layers use RoPE too. `false`: only the sliding-window layers rotate
    /// (EXAONE 4 32B, llama.cpp's `use_rope = is_swa(il) || swa_type == NONE`).
    pub rope_full_layers: bool,
    /// Llama-4-style attention temperature tuning where the metadata sets
    /// `attention.temperature_scale` (Mistral 3 / Ministral 3): Q at position `p` is multiplied by
    /// `1 + scale * ln(floor((p + offset) / n_ctx_orig) + 1)`, `n_ctx_orig` =
    /// `rope.scaling.original_context_length` (else the training context; llama.cpp 0.3.36 takes
    /// its `n_ctx_orig_yarn` here, not `attention.temperature_length`, as its logits show); the
    /// value is the offset (llama.cpp's `f_attn_temp_offset`).
    pub attn_temp_offset: Option<f32>,
}

/// Plain llama.
pub(crate) const LLAMA: Variant = Variant {
    arch: "llama",
    rope: RopeStyle::Normal,
    norms: NormPlacement::Pre,
    qk_norm: false,
    output_bias: false,
    rope_freqs: true,
    ffn_act: FfnAct::Silu,
    embed_scale: false,
    attn_scale: AttnScale::Kernel,
    swa_period: None,
    logit_softcap: false,
    attn_softcap: false,
    swa_rope_like_global: false,
    rope_full_layers: true,
    attn_temp_offset: None,
};

/// Mistral 3 / Ministral 3 text models (`mistral3`, llama.cpp `llama_model_mistral3`): llama with
/// attention temperature tuning.
pub(crate) const MISTRAL3: Variant = Variant { arch: "mistral3", attn_temp_offset: Some(0.0), ..LLAMA };
/// Options beyond [`Variant`], kept apart so the families' `Variant` consts need not name them:
/// what the mixture-of-experts families (`moe_families.rs`) add to the shared decoder.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Extras {
    /// The FFN is a mixture of experts (`moe.rs`) instead of one dense gated FFN.
    pub moe: Option<MoeVariant>,
    /// Name of the FFN pre-norm tensor when not `ffn_norm.weight` (gpt-oss:
    /// `post_attention_norm.weight`).
    pub ffn_norm_name: Option<&'static str>,
    /// Sliding-window layers use the global RoPE (gpt-oss) rather than `rope.freq_base_swa`.
    pub swa_global_rope: bool,
}

/// RoPE tables are precomputed up to this many positions; later positions are computed on the
/// fly with the same arithmetic (a table for Llama 3.1's 128k positions of 128-wide heads would
/// cost 64 MiB; Gemma 3's two tables of 32k positions another 64 MiB).
const ROPE_TABLE_POSITIONS: usize = 8192;

struct Layer {
    attn_norm: Option<Vec<f32>>, // (n_embd), pre-norm only
    wq: Weight,                  // (n_head * head_dim, n_embd)
    wk: Weight,                  // (n_head_kv * head_dim, n_embd)
    wv: Weight,                  // (n_head_kv * head_dim, n_embd)
    bq: Option<Vec<f32>>,
    bk: Option<Vec<f32>>,
    bv: Option<Vec<f32>>,
    q_norm: Option<Vec<f32>>, // (head_dim), QK-norm only
    k_norm: Option<Vec<f32>>, // (head_dim)
    wo: Weight,               // (n_embd, n_head * head_dim)
    attn_post_norm: Option<Vec<f32>>, // (n_embd), post-norm only
    ffn_norm: Option<Vec<f32>>,       // (n_embd), pre-norm only
    w_gate: Option<Weight>,           // (n_ff, n_embd), dense FFN only
    w_up: Option<Weight>,             // (n_ff, n_embd), dense FFN only
    w_down: Option<Weight>,           // (n_embd, n_ff), dense FFN only
    ffn_post_norm: Option<Vec<f32>>,  // (n_embd), post-norm only
    /// The mixture of experts replacing the dense FFN (`Extras::moe`).
    moe: Option<MoeFfn>,
    /// `attn_output.bias` where the file has one (gpt-oss).
    bo: Option<Vec<f32>>,
    /// Per-head attention sink logits `attn_sinks.weight` (gpt-oss), see `kernels::attention`.
    sinks: Option<Vec<f32>>,
}

/// A loaded llama-like model; `variant` says which family.
pub struct Llama {
    variant: Variant,
    file: Arc<GgufFile>,
    hp: HParams,
    tok_embd: Weight,            // (n_vocab, n_embd)
    output_norm: Vec<f32>,       // (n_embd)
    output: Weight,              // (n_vocab, n_embd), tied to tok_embd when absent
    output_b: Option<Vec<f32>>,  // (n_vocab)
    layers: Vec<Layer>,
    rope: RopeCache,
    /// RoPE of the sliding-window layers (`rope.freq_base_swa`), where the variant has them.
    rope_local: Option<RopeCache>,
    /// Multiplies Q before attention ([`AttnScale::GemmaQuery`]).
    query_scale: Option<f32>,
    /// Attention score soft-cap ([`Variant::attn_softcap`]).
    attn_softcap: Option<f32>,
    /// Phi-3's LongRoPE: the table with `rope_factors_long`, used (as llama.cpp does) when the
    /// cache's context per sequence exceeds `long_above` (`rope.scaling.original_context_length`);
    /// `rope` then holds `rope_factors_short`.
    rope_long: Option<(RopeCache, usize)>,
    /// Attention temperature tuning: `(scale, length, offset)` ([`Variant::attn_temp_offset`]).
    attn_temp: Option<(f32, usize, f32)>,
}

impl Llama {
    /// Loads a `llama` file.
    pub fn load(file: Arc<GgufFile>) -> Result<Self> {
        Self::load_variant(file, LLAMA)
    }

    /// Loads a file of the llama-like family `v`, checking every tensor's shape.
    pub(crate) fn load_variant(file: Arc<GgufFile>, v: Variant) -> Result<Self> {
        Self::load_with(file, v, Extras::default())
    }

    /// [`Self::load_variant`] with the [`Extras`] a MoE family needs.
    pub(crate) fn load_with(file: Arc<GgufFile>, v: Variant, x: Extras) -> Result<Self> {
        let f = &*file;
        let arch = v.arch;
        let mut hp = HParams::read(f, arch, v.rope)?;
        if let Some(period) = v.swa_period {
            hp.read_sliding_window(f, period)?;
        }
        if v.logit_softcap {
            hp.read_final_logit_softcap(f)?;
        }
        if hp.n_expert > 0 && x.moe.is_none() {
            return Err(Error::Model(format!("{arch}: mixture-of-experts models (expert_count) are not supported for this architecture")));
        }
        if let Some(vl) = f.opt_u32(&format!("{arch}.attention.value_length"))? {
            if vl as usize != hp.head_dim {
                return Err(Error::Model(format!("{arch}: value_length {vl} differs from key_length {} (not supported)", hp.head_dim)));
            }
        }
        let (e, qd, kvd, ff, hd) = (hp.n_embd, hp.q_dim(), hp.kv_dim(), hp.n_ff, hp.head_dim);
        let tok_embd = Weight::load(f, "token_embd.weight", e, hp.n_vocab)?;
        let output = match f.tensor("output.weight") {
            Some(_) => Weight::load(f, "output.weight", e, hp.n_vocab)?,
            None => tok_embd.clone(),
        };
        let output_b = if v.output_bias { load_optional_vector(f, "output.bias", hp.n_vocab)? } else { None };
        let (pre, post) = (v.norms.pre(), v.norms.post());
        let mut layers = Vec::with_capacity(hp.n_layer);
        for il in 0..hp.n_layer {
            let n = |s: &str| format!("blk.{il}.{s}");
            let norm = |on: bool, name: &str, len: usize| if on { load_vector(f, &n(name), len).map(Some) } else { Ok(None) };
            // Fused Q/K/V rows (phi3's `attn_qkv`) or separate tensors.
            let (wq, wk, wv) = match f.tensor(&n("attn_qkv.weight")) {
                Some(_) => {
                    let (name, rows) = (n("attn_qkv.weight"), qd + 2 * kvd);
                    (
                        Weight::load_rows(f, &name, e, rows, 0, qd)?,
                        Weight::load_rows(f, &name, e, rows, qd, kvd)?,
                        Weight::load_rows(f, &name, e, rows, qd + kvd, kvd)?,
                    )
                }
                None => (Weight::load(f, &n("attn_q.weight"), e, qd)?, Weight::load(f, &n("attn_k.weight"), e, kvd)?, Weight::load(f, &n("attn_v.weight"), e, kvd)?),
            };
            // Without `ffn_gate`, an `ffn_up` of 2 x n_ff rows holds the gate rows then the up rows
            // (phi3; ggml_swiglu activates the first half).
            let (w_gate, w_up) = match (x.moe, f.tensor(&n("ffn_gate.weight"))) {
                // A mixture of experts has no dense FFN.
                (Some(_), _) => (None, None),
                (None, None) => (Some(Weight::load_rows(f, &n("ffn_up.weight"), e, 2 * ff, 0, ff)?), Some(Weight::load_rows(f, &n("ffn_up.weight"), e, 2 * ff, ff, ff)?)),
                (None, Some(_)) => (Some(Weight::load(f, &n("ffn_gate.weight"), e, ff)?), Some(Weight::load(f, &n("ffn_up.weight"), e, ff)?)),
            };
            let dense = |name: &str, cols: usize, rows: usize| match x.moe {
                Some(_) => Ok(None),
                None => Weight::load(f, &n(name), cols, rows).map(Some),
            };
            layers.push(Layer {
                attn_norm: norm(pre, "attn_norm.weight", e)?,
                wq,
                wk,
                wv,
                bq: load_optional_vector(f, &n("attn_q.bias"), qd)?,
                bk: load_optional_vector(f, &n("attn_k.bias"), kvd)?,
                bv: load_optional_vector(f, &n("attn_v.bias"), kvd)?,
                q_norm: norm(v.qk_norm, "attn_q_norm.weight", hd)?,
                k_norm: norm(v.qk_norm, "attn_k_norm.weight", hd)?,
                wo: Weight::load(f, &n("attn_output.weight"), qd, e)?,
                attn_post_norm: norm(post, "post_attention_norm.weight", e)?,
                ffn_norm: norm(pre, x.ffn_norm_name.unwrap_or("ffn_norm.weight"), e)?,
                w_gate,
                w_up,
                w_down: dense("ffn_down.weight", ff, e)?,
                ffn_post_norm: norm(post, "post_ffw_norm.weight", e)?,
                moe: match x.moe {
                    Some(mv) => Some(MoeFfn::load(f, &hp, il, mv)?),
                    None => None,
                },
                bo: load_optional_vector(f, &n("attn_output.bias"), e)?,
                sinks: load_optional_vector(f, &n("attn_sinks.weight"), hp.n_head)?,
            });
        }
        let output_norm = load_vector(f, "output_norm.weight", e)?;
        let max_pos = hp.n_ctx_train.clamp(1, ROPE_TABLE_POSITIONS);
        let factors = match f.tensor("rope_freqs.weight") {
            Some(_) if v.rope_freqs => Some(load_vector(f, "rope_freqs.weight", hp.n_rot / 2)?),
            // Phi-3 LongRoPE: the short factors unless the context is long (`rope_long`).
            _ if v.rope_freqs => load_optional_vector(f, "rope_factors_short.weight", hp.n_rot / 2)?,
            _ => None,
        };
        let rs = hp.rope_scaling;
        let rope = rs.cache(hd, hp.n_rot, hp.rope_freq_base, hp.rope_freq_scale, max_pos, factors.as_deref());
        let rope_long = match load_optional_vector(f, "rope_factors_long.weight", hp.n_rot / 2)? {
            Some(long) if v.rope_freqs => {
                let orig = f.opt_u32(&format!("{arch}.rope.scaling.original_context_length"))?.map_or(hp.n_ctx_train, |n| n as usize);
                Some((rs.cache(hd, hp.n_rot, hp.rope_freq_base, hp.rope_freq_scale, max_pos, Some(&long)), orig))
            }
            _ => None,
        };
        // Gemma 3: llama.cpp's `rope_freq_scale_train_swa` is 1, linear scaling applies to global
        // layers only; Gemma 2 and EXAONE 4 rotate both kinds of layer alike.
        let swa_scale = if v.swa_rope_like_global {
            hp.rope_freq_base_swa = f.opt_f32(&format!("{arch}.rope.freq_base_swa"))?.unwrap_or(hp.rope_freq_base);
            hp.rope_freq_scale
        } else {
            1.0
        };
        // gpt-oss: the window layers use the global layers' RoPE table itself.
        let rope_local = hp.sliding_window.filter(|_| !x.swa_global_rope).map(|_| rs.cache(hd, hp.n_rot, hp.rope_freq_base_swa, swa_scale, max_pos, None));
        let attn_softcap = match v.attn_softcap {
            true => Some(f.opt_f32(&format!("{arch}.attn_logit_softcapping"))?.unwrap_or(50.0)).filter(|&c| c != 0.0),
            false => None,
        };
        let attn_temp = match v.attn_temp_offset {
            Some(offset) => {
                let orig = f.opt_u32(&format!("{arch}.rope.scaling.original_context_length"))?.filter(|&n| n > 0).map_or(hp.n_ctx_train, |n| n as usize);
                f.opt_f32(&format!("{arch}.attention.temperature_scale"))?.filter(|&s| s != 0.0).map(|scale| (scale, orig, offset))
            }
            None => None,
        };
        let query_scale = match v.attn_scale {
            AttnScale::Kernel => None,
            // gemma_pytorch's query_pre_attn_scalar: n_embd / n_head for the 27B (62 layers), the
            // head size otherwise (llama.cpp keys it on the layer count too).
            AttnScale::GemmaQuery if hp.n_layer == 62 => Some(1.0 / ((hp.n_embd / hp.n_head) as f32).sqrt()),
            AttnScale::GemmaQuery => Some(1.0 / (hd as f32).sqrt()),
            AttnScale::Gemma2Query if hp.n_layer == 46 => Some(1.0 / ((hp.n_embd / hp.n_head) as f32).sqrt()),
            AttnScale::Gemma2Query => Some(1.0 / (hd as f32).sqrt()),
        };
        Ok(Llama { variant: v, file, hp, tok_embd, output_norm, output, output_b, layers, rope, rope_local, query_scale, attn_softcap, rope_long, attn_temp })
    }

    /// The family this model was loaded as.
    pub fn arch(&self) -> &'static str {
        self.variant.arch
    }
}

/// RMS-normalizes each `width`-wide row of `rows` in place with weight `w` (a per-head norm when
/// `width` is the head size).
fn norm_rows(rows: &mut [f32], w: &[f32], eps: f32) {
    for row in rows.chunks_exact_mut(w.len()) {
        ops::rms_norm_inplace(row, w, eps);
    }
}

/// `h = rms_norm(x) * w` for the `n` rows of width `e`, or a plain copy of `x` when the layer has
/// no pre-norm; rows spread over the pool.
fn pre_norm(pool: &ThreadPool, n: usize, e: usize, x: &[f32], w: Option<&Vec<f32>>, eps: f32, h: &mut [f32]) {
    par_rows(pool, n, [(h, e)], &|r, [h]| {
        let x = &x[r.start * e..r.end * e];
        match w {
            Some(w) => {
                for (xr, hr) in x.chunks_exact(e).zip(h.chunks_exact_mut(e)) {
                    ops::rms_norm(xr, w, eps, hr);
                }
            }
            None => h.copy_from_slice(x),
        }
    });
}

/// The residual add of a block's output: `x += rms_norm(y) * w` with a post-norm, else `x += y`;
/// rows spread over the pool.
fn residual(pool: &ThreadPool, n: usize, e: usize, y: &mut [f32], w: Option<&Vec<f32>>, eps: f32, x: &mut [f32]) {
    par_rows(pool, n, [(y, e), (x, e)], &|_, [y, x]| {
        if let Some(w) = w {
            norm_rows(y, w, eps);
        }
        ops::add_inplace(x, y);
    });
}

impl Model for Llama {
    fn hparams(&self) -> &HParams {
        &self.hp
    }

    fn weight_bytes(&self) -> usize {
        let per_layer: usize = self
            .layers
            .iter()
            .map(|l| {
                let dense = [&l.w_gate, &l.w_up, &l.w_down].iter().flat_map(|w| w.as_ref()).map(|w| w.bytes(&self.file).len()).sum::<usize>();
                let moe = l.moe.as_ref().map_or(0, |m| m.active_bytes(&self.file));
                [&l.wq, &l.wk, &l.wv, &l.wo].iter().map(|w| w.bytes(&self.file).len()).sum::<usize>() + dense + moe
            })
            .sum();
        per_layer + self.output.bytes(&self.file).len()
    }

    fn forward(&self, batch: &Batch, ctx: &mut ForwardCtx<'_>, out: &mut Vec<f32>) -> Result<()> {
        let hp = &self.hp;
        let f = &*self.file;
        let n = batch.len();
        let (e, qd, kvd, ff) = (hp.n_embd, hp.q_dim(), hp.kv_dim(), hp.n_ff);
        if n == 0 {
            out.clear();
            return Ok(());
        }
        for (i, (&t, &p)) in batch.tokens.iter().zip(&batch.pos).enumerate() {
            if t as usize >= hp.n_vocab {
                return Err(Error::Model(format!("token id {t} is outside the vocabulary ({})", hp.n_vocab)));
            }
            if p >= ctx.kv.n_ctx() || batch.seq[i] >= ctx.kv.n_seq() {
                return Err(Error::Model(format!("position {p} / sequence {} is outside the KV cache", batch.seq[i])));
            }
        }
        let pool = ctx.pool;
        let ws = &mut *ctx.ws;
        let mode = match hp.rope_style {
            RopeStyle::Normal => RopeMode::Normal,
            RopeStyle::Neox => RopeMode::Neox,
        };

        // Token embeddings.
        let x = grow(&mut ws.x, n * e);
        for (i, &t) in batch.tokens.iter().enumerate() {
            kernels::quant::dequantize_row(self.tok_embd.ty, self.tok_embd.row_bytes(f, t as usize), &mut x[i * e..(i + 1) * e])?;
        }
        if self.variant.embed_scale {
            // f32, as ggml_scale does.
            ops::scale_inplace(x, (e as f32).sqrt());
        }

        let attn = AttnParams {
            n_head: hp.n_head,
            n_head_kv: hp.n_head_kv,
            head_dim: hp.head_dim,
            scale: if self.query_scale.is_some() { 1.0 } else { 1.0 / (hp.head_dim as f32).sqrt() },
            softcap: self.attn_softcap,
            sinks: None,
        };
        let (pos, eps) = (&batch.pos, hp.rms_eps);
        let rope_global = match &self.rope_long {
            Some((long, above)) if ctx.kv.n_ctx() > *above => long,
            _ => &self.rope,
        };

        for (il, l) in self.layers.iter().enumerate() {
            let window = hp.window_of(il);
            let rope = match (window, &self.rope_local) {
                (Some(_), Some(local)) => local,
                _ => rope_global,
            };
            let use_rope = window.is_some() || hp.sliding_window.is_none() || self.variant.rope_full_layers;

            // Attention block.
            pre_norm(pool, n, e, &ws.x[..n * e], l.attn_norm.as_ref(), eps, grow(&mut ws.h, n * e));
            let h = &ws.h[..n * e];
            let (q, k, v) = (grow(&mut ws.q, n * qd), grow(&mut ws.k, n * kvd), grow(&mut ws.v, n * kvd));
            // One call: the activations are quantized once and the threads meet once.
            let (wq, wk, wv) = (l.wq.matrix(f), l.wk.matrix(f), l.wv.matrix(f));
            matmul_many(pool, &mut [(&wq, &mut *q), (&wk, &mut *k), (&wv, &mut *v)], h, n, &mut ws.mm)?;
            par_rows(pool, n, [(&mut *q, qd), (&mut *k, kvd), (&mut *v, kvd)], &|r, [q, k, v]| {
                for (buf, bias, w) in [(&mut *q, &l.bq, qd), (&mut *k, &l.bk, kvd), (&mut *v, &l.bv, kvd)] {
                    if let Some(b) = bias {
                        for row in buf.chunks_exact_mut(w) {
                            ops::add_inplace(row, b);
                        }
                    }
                }
                if let (Some(qn), Some(kn)) = (&l.q_norm, &l.k_norm) {
                    norm_rows(q, qn, eps);
                    norm_rows(k, kn, eps);
                }
                for (i, (q, k)) in r.zip(q.chunks_exact_mut(qd).zip(k.chunks_exact_mut(kvd))) {
                    if use_rope {
                        rope.apply(q, hp.n_head, pos[i], mode);
                        rope.apply(k, hp.n_head_kv, pos[i], mode);
                    }
                    if let Some((scale, len, offset)) = self.attn_temp {
                        // In double precision, as llama.cpp's `llm_graph_input_attn_temp` computes it.
                        let steps = ((pos[i] as f32 + offset) / len as f32).floor() as f64;
                        ops::scale_inplace(q, ((steps + 1.0).ln() * scale as f64 + 1.0) as f32);
                    }
                }
                if let Some(s) = self.query_scale {
                    ops::scale_inplace(q, s);
                }
            });
            for i in 0..n {
                ctx.kv.write(il, batch.seq[i], pos[i], &k[i * kvd..(i + 1) * kvd], &v[i * kvd..(i + 1) * kvd]);
            }
            let att = grow(&mut ws.att, n * qd);
            // gpt-oss's sinks are folded in by the attention kernel.
            attend_window(pool, &*ctx.kv, il, batch, q, &AttnParams { sinks: l.sinks.as_deref(), ..attn }, window, att);
            let proj = grow(&mut ws.proj, n * e);
            matmul(pool, &l.wo.matrix(f), att, n, proj, &mut ws.mm)?;
            if let Some(bo) = &l.bo {
                for row in proj.chunks_exact_mut(e) {
                    ops::add_inplace(row, bo);
                }
            }
            residual(pool, n, e, proj, l.attn_post_norm.as_ref(), eps, &mut ws.x[..n * e]);

            // Feed-forward block.
            pre_norm(pool, n, e, &ws.x[..n * e], l.ffn_norm.as_ref(), eps, grow(&mut ws.h, n * e));
            let h = &ws.h[..n * e];
            let (Some(w_gate), Some(w_up), Some(w_down)) = (&l.w_gate, &l.w_up, &l.w_down) else {
                if let Some(moe) = &l.moe {
                    let proj = grow(&mut ws.proj, n * e);
                    moe.forward(pool, f, h, n, proj, &mut ws.moe, &mut ws.mm)?;
                }
                residual(pool, n, e, &mut ws.proj[..n * e], l.ffn_post_norm.as_ref(), eps, &mut ws.x[..n * e]);
                continue;
            };
            let (gate, up) = (grow(&mut ws.gate, n * ff), grow(&mut ws.up, n * ff));
            let (wg, wu) = (w_gate.matrix(f), w_up.matrix(f));
            matmul_many(pool, &mut [(&wg, &mut *gate), (&wu, &mut *up)], h, n, &mut ws.mm)?;
            let up = &*up;
            par_rows(pool, n, [(&mut *gate, ff)], &|r, [gate]| {
                // act(gate) * up in place: for GeGLU the same values as ggml's fused `ggml_vec_geglu_f32`.
                match self.variant.ffn_act {
                    FfnAct::Silu => ops::silu_inplace(gate),
                    FfnAct::Gelu => ops::gelu_inplace(gate),
                }
                ops::mul_inplace(gate, &up[r.start * ff..r.end * ff]);
            });
            let proj = grow(&mut ws.proj, n * e);
            matmul(pool, &w_down.matrix(f), gate, n, proj, &mut ws.mm)?;
            residual(pool, n, e, proj, l.ffn_post_norm.as_ref(), eps, &mut ws.x[..n * e]);
        }

        // Final norm and logits for the rows that want them.
        ws.rows.clear();
        ws.rows.extend((0..n).filter(|&i| batch.logits[i]));
        let m = ws.rows.len();
        let h = grow(&mut ws.h, m * e);
        for (j, &i) in ws.rows.iter().enumerate() {
            ops::rms_norm(&ws.x[i * e..(i + 1) * e], &self.output_norm, hp.rms_eps, &mut h[j * e..(j + 1) * e]);
        }
        if out.len() != m * hp.n_vocab {
            out.resize(m * hp.n_vocab, 0.0);
        }
        if m > 0 {
            matmul(pool, &self.output.matrix(f), h, m, out, &mut ws.mm)?;
            if let Some(b) = &self.output_b {
                for row in out.chunks_exact_mut(hp.n_vocab) {
                    ops::add_inplace(row, b);
                }
            }
            if let Some(cap) = hp.final_logit_softcap {
                ops::tanh_softcap(out, cap);
            }
        }
        Ok(())
    }
}

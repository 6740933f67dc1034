//! Hyper-parameters read from GGUF metadata through one key table, so architecture files never
//! spell metadata keys themselves.

use gguf::GgufFile;

use super::rope_scaling::RopeScaling;
use crate::Result;

/// The metadata keys, formatted in one place (`{arch}.attention.head_count`, ...).
pub struct Keys<'a> {
    pub arch: &'a str,
}

impl Keys<'_> {
    pub fn key(&self, suffix: &str) -> String {
        format!("{}.{}", self.arch, suffix)
    }
}

/// Upper bounds on hyper-parameters, far above any model we run: a model file is untrusted
/// input, and every count below sizes an allocation (per-layer tables, RoPE tables, the KV
/// cache), so a forged value must be an error before it is used, never an abort.
pub mod limits {
    pub const MAX_LAYERS: usize = 1024;
    pub const MAX_EMBD: usize = 1 << 17;
    pub const MAX_HEADS: usize = 1024;
    pub const MAX_HEAD_DIM: usize = 4096;
    pub const MAX_FF: usize = 1 << 20;
    pub const MAX_VOCAB: usize = 1 << 22;
    pub const MAX_CTX: usize = 1 << 24;
    pub const MAX_EXPERTS: usize = 1024;
}

/// `value` of `key` must lie in `1..=max`.
fn bounded(arch: &str, key: &str, value: usize, max: usize) -> Result<usize> {
    if value == 0 || value > max {
        return Err(crate::Error::Model(format!("{arch}.{key} = {value} is out of range (1..={max})")));
    }
    Ok(value)
}

/// How RoPE pairs dimensions (ggml's rope modes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs (0,1), (2,3), ...: llama (the GGUF converter permuted Q/K for it).
    Normal,
    /// Halves (i, i + n_rot/2): Gemma, Qwen, NeoX.
    Neox,
}

/// Hyper-parameters common to the decoder-only families we run.
#[derive(Clone, Debug)]
pub struct HParams {
    pub arch: String,
    pub n_vocab: usize,
    /// Context length the model was trained for.
    pub n_ctx_train: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    /// Per-head size of queries and keys.
    pub head_dim: usize,
    pub n_ff: usize,
    pub rms_eps: f32,
    pub rope_freq_base: f32,
    /// 1 / linear scaling factor.
    pub rope_freq_scale: f32,
    pub n_rot: usize,
    pub rope_style: RopeStyle,
    /// Sliding-window attention: a layer `il` with `swa_layers[il]` sees only the last
    /// `sliding_window` positions (keys at `p0 > pos - sliding_window`, llama.cpp's
    /// `LLAMA_SWA_TYPE_STANDARD`). `None` (and `swa_layers` empty) for full attention everywhere.
    pub sliding_window: Option<usize>,
    /// One flag per layer: does it use the sliding window? Empty when `sliding_window` is `None`.
    pub swa_layers: Vec<bool>,
    /// RoPE base of the sliding-window layers (`{arch}.rope.freq_base_swa`, llama.cpp's default
    /// 10000); global layers use `rope_freq_base`.
    pub rope_freq_base_swa: f32,
    /// Final logit soft-capping `logits = cap * tanh(logits / cap)` (`{arch}.final_logit_softcapping`),
    /// where the metadata sets it.
    pub final_logit_softcap: Option<f32>,
    /// Experts per MoE layer (`{arch}.expert_count`); 0 for a dense model.
    pub n_expert: usize,
    /// Experts each token is routed to (`{arch}.expert_used_count`); 0 for a dense model.
    pub n_expert_used: usize,
    /// Hidden width of one expert (`{arch}.expert_feed_forward_length`, else
    /// `feed_forward_length`); 0 for a dense model.
    pub n_ff_exp: usize,
    /// YaRN or none (linear scaling is `rope_freq_scale`); see `rope_scaling.rs`.
    pub rope_scaling: RopeScaling,
}

impl HParams {
    /// Reads the llama-style keys shared by most families.
    pub fn read(f: &GgufFile, arch: &str, rope_style: RopeStyle) -> Result<Self> {
        use limits::*;
        let k = Keys { arch };
        let n_embd = bounded(arch, "embedding_length", f.get_u32(&k.key("embedding_length"))? as usize, MAX_EMBD)?;
        let n_head = bounded(arch, "attention.head_count", f.get_u32(&k.key("attention.head_count"))? as usize, MAX_HEADS)?;
        let n_head_kv = f.opt_u32(&k.key("attention.head_count_kv"))?.map_or(n_head, |v| v as usize);
        let n_head_kv = bounded(arch, "attention.head_count_kv", n_head_kv, MAX_HEADS)?;
        if n_head_kv == 0 || !n_head.is_multiple_of(n_head_kv) {
            return Err(crate::Error::Model(format!(
                "{arch}: head_count {n_head} is not a multiple of head_count_kv {n_head_kv}"
            )));
        }
        let head_dim = f.opt_u32(&k.key("attention.key_length"))?.map_or(n_embd / n_head, |v| v as usize);
        let head_dim = bounded(arch, "attention.key_length (head size)", head_dim, MAX_HEAD_DIM)?;
        let n_rot = f.opt_u32(&k.key("rope.dimension_count"))?.map_or(head_dim, |v| v as usize);
        if n_rot > head_dim || n_rot % 2 != 0 {
            return Err(crate::Error::Model(format!("{arch}: rope dimension {n_rot} does not fit head size {head_dim}")));
        }
        let n_vocab = match f.opt_u32(&k.key("vocab_size"))? {
            Some(v) => v as usize,
            None => f.get_str_array("tokenizer.ggml.tokens")?.len(),
        };
        let n_vocab = bounded(arch, "vocab_size", n_vocab, MAX_VOCAB)?;
        let n_layer = bounded(arch, "block_count", f.get_u32(&k.key("block_count"))? as usize, MAX_LAYERS)?;
        // Every layer has several tensors: a count the file cannot back is a forged one.
        if n_layer > f.tensors().len() {
            return Err(crate::Error::Model(format!(
                "{arch}.block_count = {n_layer} but the file has only {} tensors",
                f.tensors().len()
            )));
        }
        let n_ctx_train = bounded(arch, "context_length", f.get_u32(&k.key("context_length"))? as usize, MAX_CTX)?;
        let (rope_scaling, rope_freq_scale) = RopeScaling::read(f, arch, n_ctx_train)?;
        // Mixture of experts: the architecture's loader decides whether it runs them (`moe.rs`).
        let n_expert = f.opt_u32(&k.key("expert_count"))?.unwrap_or(0) as usize;
        // Counts are bounded here; whether they are present is the MoE loader's check, so that an
        // architecture without MoE support says so first.
        let (n_expert_used, n_ff_exp) = if n_expert > 0 {
            let n_expert = bounded(arch, "expert_count", n_expert, MAX_EXPERTS)?;
            let used = f.opt_u32(&k.key("expert_used_count"))?.unwrap_or(0) as usize;
            let ff_exp = f.opt_u32(&k.key("expert_feed_forward_length"))?;
            let ff_exp = ff_exp.or(f.opt_u32(&k.key("feed_forward_length"))?).unwrap_or(0) as usize;
            if used > n_expert || ff_exp > MAX_FF {
                return Err(crate::Error::Model(format!(
                    "{arch}: expert_used_count {used} of {n_expert} experts, expert width {ff_exp} (at most {MAX_FF})"
                )));
            }
            (used, ff_exp)
        } else {
            (0, 0)
        };
        // MoE files may leave the dense width out (llama.cpp reads it as optional).
        let n_ff = match f.opt_u32(&k.key("feed_forward_length"))? {
            Some(v) => v as usize,
            None if n_expert > 0 => n_ff_exp,
            None => f.get_u32(&k.key("feed_forward_length"))? as usize,
        };
        let n_ff = bounded(arch, "feed_forward_length", n_ff, MAX_FF)?;
        Ok(HParams {
            arch: arch.to_string(),
            n_vocab,
            n_ctx_train,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            head_dim,
            n_ff,
            rms_eps: f.get_f32(&k.key("attention.layer_norm_rms_epsilon"))?,
            rope_freq_base: f.opt_f32(&k.key("rope.freq_base"))?.unwrap_or(10000.0),
            rope_freq_scale,
            n_rot,
            rope_style,
            sliding_window: None,
            swa_layers: Vec::new(),
            rope_freq_base_swa: 10000.0,
            final_logit_softcap: None,
            n_expert,
            n_expert_used,
            n_ff_exp,
            rope_scaling,
        })
    }

    /// Reads the sliding-window keys the way llama.cpp's `load_swa_pattern` does:
    /// `{arch}.attention.sliding_window` (absent or 0: no sliding window), then the layer pattern
    /// `{arch}.attention.sliding_window_pattern`, either one flag per layer or a period `n`
    /// (default `default_period`) in which the last layer of every `n` is global
    /// (`il % n < n - 1` is local), and `{arch}.rope.freq_base_swa`.
    pub fn read_sliding_window(&mut self, f: &GgufFile, default_period: u32) -> Result<()> {
        let k = Keys { arch: &self.arch };
        let window = f.opt_u32(&k.key("attention.sliding_window"))?.unwrap_or(0) as usize;
        if window == 0 {
            self.sliding_window = None;
            self.swa_layers.clear();
            return Ok(());
        }
        let window = bounded(&self.arch, "attention.sliding_window", window, limits::MAX_CTX)?;
        let pattern_key = k.key("attention.sliding_window_pattern");
        let flags = match f.get(&pattern_key) {
            Some(gguf::Value::Array(gguf::Array::Bool(flags))) => {
                if flags.len() < self.n_layer {
                    return Err(crate::Error::Model(format!(
                        "{pattern_key} has {} flags for {} layers",
                        flags.len(),
                        self.n_layer
                    )));
                }
                flags[..self.n_layer].to_vec()
            }
            _ => {
                let n = f.opt_u32(&pattern_key)?.unwrap_or(default_period) as usize;
                (0..self.n_layer).map(|il| n == 0 || il % n < n - 1).collect()
            }
        };
        self.sliding_window = Some(window);
        self.swa_layers = flags;
        self.rope_freq_base_swa = f.opt_f32(&k.key("rope.freq_base_swa"))?.unwrap_or(10000.0);
        Ok(())
    }

    /// Reads `{arch}.final_logit_softcapping` (0 or absent: none).
    pub fn read_final_logit_softcap(&mut self, f: &GgufFile) -> Result<()> {
        let key = Keys { arch: &self.arch }.key("final_logit_softcapping");
        self.final_logit_softcap = f.opt_f32(&key)?.filter(|&c| c != 0.0);
        Ok(())
    }

    /// The sliding window layer `il` attends within, `None` for a global layer.
    pub fn window_of(&self, il: usize) -> Option<usize> {
        match self.swa_layers.get(il) {
            Some(true) => self.sliding_window,
            _ => None,
        }
    }

    /// Width of one K (or V) row: all KV heads of one position.
    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
    /// Width of the Q rows and of the attention output.
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }
}

//! Hyper-parameters read from GGUF metadata through one key table, so architecture files never
//! spell metadata keys themselves.

use gguf::GgufFile;

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
}

impl HParams {
    /// Reads the llama-style keys shared by most families.
    pub fn read(f: &GgufFile, arch: &str, rope_style: RopeStyle) -> Result<Self> {
        let k = Keys { arch };
        let n_embd = f.get_u32(&k.key("embedding_length"))? as usize;
        let n_head = f.get_u32(&k.key("attention.head_count"))? as usize;
        if n_head == 0 || n_embd == 0 {
            return Err(crate::Error::Model(format!("{arch}: head_count and embedding_length must be positive")));
        }
        let n_head_kv = f.opt_u32(&k.key("attention.head_count_kv"))?.map_or(n_head, |v| v as usize);
        if n_head_kv == 0 || n_head % n_head_kv != 0 {
            return Err(crate::Error::Model(format!(
                "{arch}: head_count {n_head} is not a multiple of head_count_kv {n_head_kv}"
            )));
        }
        let head_dim = f.opt_u32(&k.key("attention.key_length"))?.map_or(n_embd / n_head, |v| v as usize);
        let n_rot = f.opt_u32(&k.key("rope.dimension_count"))?.map_or(head_dim, |v| v as usize);
        if n_rot > head_dim || n_rot % 2 != 0 {
            return Err(crate::Error::Model(format!("{arch}: rope dimension {n_rot} does not fit head size {head_dim}")));
        }
        let scale_type = f.opt_str(&k.key("rope.scaling.type"))?;
        let rope_freq_scale = match scale_type {
            None | Some("none") => 1.0,
            Some("linear") => {
                let factor = f.opt_f32(&k.key("rope.scaling.factor"))?.unwrap_or(1.0);
                if factor > 0.0 { 1.0 / factor } else { 1.0 }
            }
            Some(other) => {
                return Err(crate::Error::Model(format!("{arch}: rope scaling `{other}` is not supported (linear, none)")))
            }
        };
        let n_vocab = match f.opt_u32(&k.key("vocab_size"))? {
            Some(v) => v as usize,
            None => f.get_str_array("tokenizer.ggml.tokens")?.len(),
        };
        Ok(HParams {
            arch: arch.to_string(),
            n_vocab,
            n_ctx_train: f.get_u32(&k.key("context_length"))? as usize,
            n_embd,
            n_layer: f.get_u32(&k.key("block_count"))? as usize,
            n_head,
            n_head_kv,
            head_dim,
            n_ff: f.get_u32(&k.key("feed_forward_length"))? as usize,
            rms_eps: f.get_f32(&k.key("attention.layer_norm_rms_epsilon"))?,
            rope_freq_base: f.opt_f32(&k.key("rope.freq_base"))?.unwrap_or(10000.0),
            rope_freq_scale,
            n_rot,
            rope_style,
        })
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

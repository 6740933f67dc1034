//! The llama architecture: SmolLM2, Llama 2/3, Mistral, TinyLlama.
//!
//! Per layer (llama.cpp `llm_build_llama`):
//! ```text
//!   h = rms_norm(x) * attn_norm
//!   q, k, v = h Wq, h Wk, h Wv           (+ biases where present)
//!   q, k = rope(q, pos), rope(k, pos)    (adjacent pairs: the converter permuted Wq/Wk)
//!   x += attention(q, K[..=pos], V[..=pos]) Wo     (grouped-query: n_head / n_head_kv per KV head)
//!   h = rms_norm(x) * ffn_norm
//!   x += (silu(h Wgate) * (h Wup)) Wdown
//! ```
//! then `logits = rms_norm(x) * output_norm  Woutput` (Woutput = token_embd when `output.weight`
//! is absent: tied embeddings).

use std::sync::Arc;

use gguf::GgufFile;
use kernels::attention::AttnParams;
use kernels::matmul::matmul;
use kernels::ops::{self, RopeCache, RopeMode};

use super::weights::{load_optional_vector, load_vector, Weight};
use super::{attend, grow, Batch, ForwardCtx, HParams, Model, RopeStyle};
use crate::{Error, Result};

struct Layer {
    attn_norm: Vec<f32>, // (n_embd)
    wq: Weight,          // (n_head * head_dim, n_embd)
    wk: Weight,          // (n_head_kv * head_dim, n_embd)
    wv: Weight,          // (n_head_kv * head_dim, n_embd)
    bq: Option<Vec<f32>>,
    bk: Option<Vec<f32>>,
    bv: Option<Vec<f32>>,
    wo: Weight,          // (n_embd, n_head * head_dim)
    ffn_norm: Vec<f32>,  // (n_embd)
    w_gate: Weight,      // (n_ff, n_embd)
    w_up: Weight,        // (n_ff, n_embd)
    w_down: Weight,      // (n_embd, n_ff)
}

pub struct Llama {
    file: Arc<GgufFile>,
    hp: HParams,
    tok_embd: Weight,         // (n_vocab, n_embd)
    output_norm: Vec<f32>,    // (n_embd)
    output: Weight,           // (n_vocab, n_embd), tied to tok_embd when absent
    layers: Vec<Layer>,
    rope: RopeCache,
}

impl Llama {
    pub fn load(file: Arc<GgufFile>) -> Result<Self> {
        let f = &*file;
        let hp = HParams::read(f, "llama", RopeStyle::Normal)?;
        let (e, qd, kvd, ff) = (hp.n_embd, hp.q_dim(), hp.kv_dim(), hp.n_ff);
        let tok_embd = Weight::load(f, "token_embd.weight", e, hp.n_vocab)?;
        let output = match f.tensor("output.weight") {
            Some(_) => Weight::load(f, "output.weight", e, hp.n_vocab)?,
            None => tok_embd.clone(),
        };
        let mut layers = Vec::with_capacity(hp.n_layer);
        for il in 0..hp.n_layer {
            let n = |s: &str| format!("blk.{il}.{s}");
            layers.push(Layer {
                attn_norm: load_vector(f, &n("attn_norm.weight"), e)?,
                wq: Weight::load(f, &n("attn_q.weight"), e, qd)?,
                wk: Weight::load(f, &n("attn_k.weight"), e, kvd)?,
                wv: Weight::load(f, &n("attn_v.weight"), e, kvd)?,
                bq: load_optional_vector(f, &n("attn_q.bias"), qd)?,
                bk: load_optional_vector(f, &n("attn_k.bias"), kvd)?,
                bv: load_optional_vector(f, &n("attn_v.bias"), kvd)?,
                wo: Weight::load(f, &n("attn_output.weight"), qd, e)?,
                ffn_norm: load_vector(f, &n("ffn_norm.weight"), e)?,
                w_gate: Weight::load(f, &n("ffn_gate.weight"), e, ff)?,
                w_up: Weight::load(f, &n("ffn_up.weight"), e, ff)?,
                w_down: Weight::load(f, &n("ffn_down.weight"), ff, e)?,
            });
        }
        if f.tensor("rope_freqs.weight").is_some() {
            return Err(Error::Model("llama: per-dimension rope frequency factors (Llama 3.1 rope scaling) are not supported yet".into()));
        }
        let output_norm = load_vector(f, "output_norm.weight", e)?;
        let rope = RopeCache::new(hp.head_dim, hp.n_rot, hp.rope_freq_base, hp.rope_freq_scale, hp.n_ctx_train.max(1));
        Ok(Llama { file, hp, tok_embd, output_norm, output, layers, rope })
    }
}

impl Model for Llama {
    fn hparams(&self) -> &HParams {
        &self.hp
    }

    fn weight_bytes(&self) -> usize {
        let per_layer: usize = self
            .layers
            .iter()
            .map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down].iter().map(|w| w.bytes(&self.file).len()).sum::<usize>())
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

        let attn = AttnParams {
            n_head: hp.n_head,
            n_head_kv: hp.n_head_kv,
            head_dim: hp.head_dim,
            scale: 1.0 / (hp.head_dim as f32).sqrt(),
            softcap: None,
        };

        for (il, l) in self.layers.iter().enumerate() {
            // Attention block.
            let h = grow(&mut ws.h, n * e);
            for i in 0..n {
                ops::rms_norm(&ws.x[i * e..(i + 1) * e], &l.attn_norm, hp.rms_eps, &mut h[i * e..(i + 1) * e]);
            }
            let q = grow(&mut ws.q, n * qd);
            matmul(pool, &l.wq.matrix(f), h, n, q, &mut ws.mm)?;
            let k = grow(&mut ws.k, n * kvd);
            matmul(pool, &l.wk.matrix(f), h, n, k, &mut ws.mm)?;
            let v = grow(&mut ws.v, n * kvd);
            matmul(pool, &l.wv.matrix(f), h, n, v, &mut ws.mm)?;
            for (buf, bias, w) in [(&mut *q, &l.bq, qd), (&mut *k, &l.bk, kvd), (&mut *v, &l.bv, kvd)] {
                if let Some(b) = bias {
                    for row in buf.chunks_exact_mut(w) {
                        ops::add_inplace(row, b);
                    }
                }
            }
            for i in 0..n {
                let p = batch.pos[i];
                self.rope.apply(&mut q[i * qd..(i + 1) * qd], hp.n_head, p, mode);
                self.rope.apply(&mut k[i * kvd..(i + 1) * kvd], hp.n_head_kv, p, mode);
                ctx.kv.write(il, batch.seq[i], p, &k[i * kvd..(i + 1) * kvd], &v[i * kvd..(i + 1) * kvd]);
            }
            let att = grow(&mut ws.att, n * qd);
            attend(pool, &*ctx.kv, il, batch, q, &attn, att);
            let proj = grow(&mut ws.proj, n * e);
            matmul(pool, &l.wo.matrix(f), att, n, proj, &mut ws.mm)?;
            ops::add_inplace(&mut ws.x[..n * e], proj);

            // Feed-forward block.
            let h = grow(&mut ws.h, n * e);
            for i in 0..n {
                ops::rms_norm(&ws.x[i * e..(i + 1) * e], &l.ffn_norm, hp.rms_eps, &mut h[i * e..(i + 1) * e]);
            }
            let gate = grow(&mut ws.gate, n * ff);
            matmul(pool, &l.w_gate.matrix(f), h, n, gate, &mut ws.mm)?;
            let up = grow(&mut ws.up, n * ff);
            matmul(pool, &l.w_up.matrix(f), h, n, up, &mut ws.mm)?;
            ops::silu_inplace(gate);
            ops::mul_inplace(gate, up);
            let proj = grow(&mut ws.proj, n * e);
            matmul(pool, &l.w_down.matrix(f), gate, n, proj, &mut ws.mm)?;
            ops::add_inplace(&mut ws.x[..n * e], proj);
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
        }
        Ok(())
    }
}

//! The Gemma 3 architecture (Gemma-3-270M / 1B / 4B / 12B / 27B text models), as llama.cpp's
//! `llama_model_gemma3` graph computes it.
//!
//! ```text
//!   x = token_embd[t] * sqrt(n_embd)
//!   per layer il:
//!     h = rms_norm(x) * attn_norm
//!     q, k, v = h Wq, h Wk, h Wv
//!     q, k = rms_norm(q per head) * attn_q_norm, rms_norm(k per head) * attn_k_norm   (QK-norm)
//!     q, k = rope_neox(q, k, pos, base_il)      base_il = freq_base_swa (10000) on local layers,
//!                                               rope.freq_base (1e6) on global ones
//!     q *= attention_scale                      1/sqrt(key_length); 27B: 1/sqrt(n_embd/n_head)
//!     a = attention(q, K, V) Wo                 local layers see the last `sliding_window`
//!                                               positions only; global layers everything
//!     x += rms_norm(a) * post_attention_norm
//!     h = rms_norm(x) * ffn_norm
//!     x += rms_norm((gelu(h Wgate) * (h Wup)) Wdown) * post_ffw_norm
//!   logits = rms_norm(x) * output_norm  Woutput      (Woutput = token_embd: tied)
//!   logits = cap * tanh(logits / cap)                only where final_logit_softcapping is set
//! ```
//!
//! The norm weights are used as stored: the GGUF converter already added Gemma's `1 +` to them.
//! Which layers are local follows `attention.sliding_window_pattern` or llama.cpp's default
//! period of 6 (five local layers, then one global).

use std::sync::Arc;

use gguf::GgufFile;
use kernels::attention::AttnParams;
use kernels::matmul::{matmul, matmul_many};
use kernels::ops::{self, RopeCache, RopeMode};
use kernels::rows::par_rows;

use super::weights::{load_vector, Weight};
use super::{attend_window, grow, Batch, ForwardCtx, HParams, Model, RopeStyle};
use crate::{Error, Result};

/// llama.cpp's default sliding-window period for gemma3 (`load_swa_pattern(ml, 6)`).
const SWA_PERIOD: u32 = 6;

/// RoPE tables are precomputed up to this many positions; later positions are computed on the
/// fly with the same arithmetic (two tables of 32k positions would cost 64 MiB for the 270M).
const ROPE_TABLE_POSITIONS: usize = 8192;

struct Layer {
    attn_norm: Vec<f32>,      // (n_embd)
    wq: Weight,               // (n_head * head_dim, n_embd)
    wk: Weight,               // (n_head_kv * head_dim, n_embd)
    wv: Weight,               // (n_head_kv * head_dim, n_embd)
    q_norm: Vec<f32>,         // (head_dim)
    k_norm: Vec<f32>,         // (head_dim)
    wo: Weight,               // (n_embd, n_head * head_dim)
    attn_post_norm: Vec<f32>, // (n_embd)
    ffn_norm: Vec<f32>,       // (n_embd)
    w_gate: Weight,           // (n_ff, n_embd)
    w_up: Weight,             // (n_ff, n_embd)
    w_down: Weight,           // (n_embd, n_ff)
    ffn_post_norm: Vec<f32>,  // (n_embd)
}

/// A loaded Gemma 3 model.
pub struct Gemma3 {
    file: Arc<GgufFile>,
    hp: HParams,
    tok_embd: Weight, // (n_vocab, n_embd)
    output_norm: Vec<f32>,
    output: Weight, // tied to tok_embd when `output.weight` is absent
    layers: Vec<Layer>,
    /// RoPE of the global layers (`rope.freq_base`) and of the sliding-window ones.
    rope_global: RopeCache,
    rope_local: RopeCache,
    /// Multiplies Q before attention (llama.cpp's `f_attention_scale`).
    attn_scale: f32,
}

impl Gemma3 {
    /// Loads a `gemma3` file, checking every tensor's shape.
    pub fn load(file: Arc<GgufFile>) -> Result<Self> {
        let f = &*file;
        let mut hp = HParams::read(f, "gemma3", RopeStyle::Neox)?;
        hp.read_sliding_window(f, SWA_PERIOD)?;
        hp.read_final_logit_softcap(f)?;
        if let Some(vl) = f.opt_u32("gemma3.attention.value_length")? {
            if vl as usize != hp.head_dim {
                return Err(Error::Model(format!(
                    "gemma3: value_length {vl} differs from key_length {} (not supported)",
                    hp.head_dim
                )));
            }
        }
        let (e, qd, kvd, ff, hd) = (hp.n_embd, hp.q_dim(), hp.kv_dim(), hp.n_ff, hp.head_dim);
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
                q_norm: load_vector(f, &n("attn_q_norm.weight"), hd)?,
                k_norm: load_vector(f, &n("attn_k_norm.weight"), hd)?,
                wo: Weight::load(f, &n("attn_output.weight"), qd, e)?,
                attn_post_norm: load_vector(f, &n("post_attention_norm.weight"), e)?,
                ffn_norm: load_vector(f, &n("ffn_norm.weight"), e)?,
                w_gate: Weight::load(f, &n("ffn_gate.weight"), e, ff)?,
                w_up: Weight::load(f, &n("ffn_up.weight"), e, ff)?,
                w_down: Weight::load(f, &n("ffn_down.weight"), ff, e)?,
                ffn_post_norm: load_vector(f, &n("post_ffw_norm.weight"), e)?,
            });
        }
        let output_norm = load_vector(f, "output_norm.weight", e)?;
        let max_pos = hp.n_ctx_train.clamp(1, ROPE_TABLE_POSITIONS);
        let rope_global = RopeCache::new(hd, hp.n_rot, hp.rope_freq_base, hp.rope_freq_scale, max_pos);
        // llama.cpp's `rope_freq_scale_train_swa` is 1: linear scaling applies to global layers only.
        let rope_local = RopeCache::new(hd, hp.n_rot, hp.rope_freq_base_swa, 1.0, max_pos);
        // gemma_pytorch's query_pre_attn_scalar: n_embd / n_head for the 27B (62 layers), the
        // head size otherwise (llama.cpp keys it on the layer count too).
        let attn_scale = if hp.n_layer == 62 {
            1.0 / ((hp.n_embd / hp.n_head) as f32).sqrt()
        } else {
            1.0 / (hd as f32).sqrt()
        };
        Ok(Gemma3 { file, hp, tok_embd, output_norm, output, layers, rope_global, rope_local, attn_scale })
    }

    /// The sliding window of layer `il`, `None` for a global layer.
    pub fn window_of(&self, il: usize) -> Option<usize> {
        self.hp.window_of(il)
    }
}

/// RMS-normalizes each `w.len()`-wide row of `rows` in place (per-head QK-norm, post-norms).
fn norm_rows(rows: &mut [f32], w: &[f32], eps: f32) {
    for row in rows.chunks_exact_mut(w.len()) {
        ops::rms_norm_inplace(row, w, eps);
    }
}

impl Model for Gemma3 {
    fn hparams(&self) -> &HParams {
        &self.hp
    }

    fn weight_bytes(&self) -> usize {
        let f = &*self.file;
        let per_layer: usize = self
            .layers
            .iter()
            .map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down].iter().map(|w| w.bytes(f).len()).sum::<usize>())
            .sum();
        per_layer + self.output.bytes(f).len()
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

        // Token embeddings, scaled by sqrt(n_embd) (f32, as ggml_scale does).
        let x = grow(&mut ws.x, n * e);
        for (i, &t) in batch.tokens.iter().enumerate() {
            kernels::quant::dequantize_row(self.tok_embd.ty, self.tok_embd.row_bytes(f, t as usize), &mut x[i * e..(i + 1) * e])?;
        }
        ops::scale_inplace(x, (e as f32).sqrt());

        // Q is scaled before attention (as llama.cpp does), so the kernel's own scale is 1.
        let attn = AttnParams { n_head: hp.n_head, n_head_kv: hp.n_head_kv, head_dim: hp.head_dim, scale: 1.0, softcap: None };

        for (il, l) in self.layers.iter().enumerate() {
            let window = hp.window_of(il);
            let rope = if window.is_some() { &self.rope_local } else { &self.rope_global };

            // Attention block. The element-wise steps between the matmuls run over rows of
            // tokens on the pool (`par_rows`): serial, they would cap what a second thread adds.
            let x = &ws.x[..n * e];
            par_rows(pool, n, [(grow(&mut ws.h, n * e), e)], &|r, [h]| {
                for (i, h) in r.zip(h.chunks_exact_mut(e)) {
                    ops::rms_norm(&x[i * e..(i + 1) * e], &l.attn_norm, hp.rms_eps, h);
                }
            });
            let h = &ws.h[..n * e];
            let (q, k, v) = (grow(&mut ws.q, n * qd), grow(&mut ws.k, n * kvd), grow(&mut ws.v, n * kvd));
            // One call (q5_0 q and k beside a q8_0 v share q8_0 activations): the activations
            // are quantized once and the threads meet once.
            let (wq, wk, wv) = (l.wq.matrix(f), l.wk.matrix(f), l.wv.matrix(f));
            matmul_many(pool, &mut [(&wq, &mut *q), (&wk, &mut *k), (&wv, &mut *v)], h, n, &mut ws.mm)?;
            let pos = &batch.pos;
            par_rows(pool, n, [(&mut *q, qd), (&mut *k, kvd)], &|r, [q, k]| {
                norm_rows(q, &l.q_norm, hp.rms_eps);
                norm_rows(k, &l.k_norm, hp.rms_eps);
                for (i, (q, k)) in r.zip(q.chunks_exact_mut(qd).zip(k.chunks_exact_mut(kvd))) {
                    rope.apply(q, hp.n_head, pos[i], RopeMode::Neox);
                    rope.apply(k, hp.n_head_kv, pos[i], RopeMode::Neox);
                }
                ops::scale_inplace(q, self.attn_scale);
            });
            for i in 0..n {
                ctx.kv.write(il, batch.seq[i], batch.pos[i], &k[i * kvd..(i + 1) * kvd], &v[i * kvd..(i + 1) * kvd]);
            }
            let att = grow(&mut ws.att, n * qd);
            attend_window(pool, &*ctx.kv, il, batch, q, &attn, window, att);
            let proj = grow(&mut ws.proj, n * e);
            matmul(pool, &l.wo.matrix(f), att, n, proj, &mut ws.mm)?;
            par_rows(pool, n, [(proj, e), (&mut ws.x[..n * e], e)], &|_, [proj, x]| {
                norm_rows(proj, &l.attn_post_norm, hp.rms_eps);
                ops::add_inplace(x, proj);
            });

            // Feed-forward block (GeGLU).
            let x = &ws.x[..n * e];
            par_rows(pool, n, [(grow(&mut ws.h, n * e), e)], &|r, [h]| {
                for (i, h) in r.zip(h.chunks_exact_mut(e)) {
                    ops::rms_norm(&x[i * e..(i + 1) * e], &l.ffn_norm, hp.rms_eps, h);
                }
            });
            let h = &ws.h[..n * e];
            let (gate, up) = (grow(&mut ws.gate, n * ff), grow(&mut ws.up, n * ff));
            let (wg, wu) = (l.w_gate.matrix(f), l.w_up.matrix(f));
            matmul_many(pool, &mut [(&wg, &mut *gate), (&wu, &mut *up)], h, n, &mut ws.mm)?;
            // gelu(gate) * up in place: the same values as ggml's fused `ggml_vec_geglu_f32`.
            let up = &*up;
            par_rows(pool, n, [(&mut *gate, ff)], &|r, [gate]| {
                ops::gelu_inplace(gate);
                ops::mul_inplace(gate, &up[r.start * ff..r.end * ff]);
            });
            let proj = grow(&mut ws.proj, n * e);
            matmul(pool, &l.w_down.matrix(f), gate, n, proj, &mut ws.mm)?;
            par_rows(pool, n, [(proj, e), (&mut ws.x[..n * e], e)], &|_, [proj, x]| {
                norm_rows(proj, &l.ffn_post_norm, hp.rms_eps);
                ops::add_inplace(x, proj);
            });
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
            if let Some(cap) = hp.final_logit_softcap {
                ops::tanh_softcap(out, cap);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use kernels::attention::{attention_row_scalar, AttnParams, KvChunk};
    use kernels::pool::ThreadPool;

    use super::super::{attend_window, visible_start, Batch};
    use crate::kv::{KvCache, KvStore};

    /// A KV store that records which position ranges the attention asked for.
    struct Recording {
        inner: KvCache,
        asked: std::sync::Mutex<Vec<(usize, usize)>>,
    }

    impl KvStore for Recording {
        fn n_ctx(&self) -> usize {
            self.inner.n_ctx()
        }
        fn n_seq(&self) -> usize {
            self.inner.n_seq()
        }
        fn write(&mut self, il: usize, seq: usize, pos: usize, k: &[f32], v: &[f32]) {
            self.inner.write(il, seq, pos, k, v)
        }
        fn with_chunks(&self, il: usize, seq: usize, start: usize, end: usize, f: &mut dyn FnMut(&[KvChunk<'_>])) {
            self.asked.lock().expect("lock").push((start, end));
            self.inner.with_chunks(il, seq, start, end, f)
        }
    }

    fn value(i: usize) -> f32 {
        // A deterministic spread of values in [-1, 1].
        ((i as f32 * 0.618_034).fract() - 0.5) * 2.0
    }

    #[test]
    fn visible_start_keeps_the_last_window_positions() {
        assert_eq!(visible_start(0, Some(4)), 0);
        assert_eq!(visible_start(3, Some(4)), 0);
        assert_eq!(visible_start(4, Some(4)), 1);
        assert_eq!(visible_start(10, Some(4)), 7);
        assert_eq!(visible_start(10, None), 0);
    }

    /// Each token of a run sees exactly its last `window` positions (the same result as attention
    /// over just those rows), and rows before the run's first visible position are never fetched.
    #[test]
    fn sliding_window_attention_sees_only_the_window() {
        let (n_head, n_head_kv, hd, window, n_pos) = (4, 2, 8, 5, 24);
        let kv_dim = n_head_kv * hd;
        let mut kv = Recording { inner: KvCache::new(1, 32, kv_dim, 1), asked: Default::default() };
        for pos in 0..n_pos {
            let k: Vec<f32> = (0..kv_dim).map(|d| value(pos * 131 + d)).collect();
            let v: Vec<f32> = (0..kv_dim).map(|d| value(pos * 71 + d + 7)).collect();
            kv.write(0, 0, pos, &k, &v);
        }
        let p = AttnParams { n_head, n_head_kv, head_dim: hd, scale: 0.5, softcap: None };
        let mut batch = Batch::default();
        for pos in 16..n_pos {
            batch.push(0, pos, 0, true);
        }
        let row = n_head * hd;
        let q: Vec<f32> = (0..batch.len() * row).map(|i| value(i * 13 + 3) * 3.0).collect();
        let pool = ThreadPool::new(2);
        let mut out = vec![0f32; batch.len() * row];
        attend_window(&pool, &kv, 0, &batch, &q, &p, Some(window), &mut out);
        assert_eq!(*kv.asked.lock().expect("lock"), [(16 + 1 - window, n_pos)]);

        let mut full = vec![0f32; batch.len() * row];
        super::super::attend(&pool, &kv, 0, &batch, &q, &p, &mut full);
        let mut scratch = Vec::new();
        for (t, &pos) in batch.pos.iter().enumerate() {
            let mut want = vec![0f32; row];
            let start = pos + 1 - window;
            kv.inner.with_chunks(0, 0, start, pos + 1, &mut |chunks| {
                attention_row_scalar(&q[t * row..(t + 1) * row], chunks, &p, &mut scratch, &mut want);
            });
            let got = &out[t * row..(t + 1) * row];
            let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(diff < 1e-3, "position {pos}: windowed attention differs from attention over its window by {diff}");
            let full_diff = full[t * row..(t + 1) * row].iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(full_diff > 1e-3, "position {pos}: full attention should differ from the window's");
        }
    }
}

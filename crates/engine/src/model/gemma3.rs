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

//!
//! Gemma 3 is a [`Variant`] of the shared llama-like decoder (`llama.rs`): pre- and post-norms,
//! QK-norm, GeGLU, scaled embeddings, Q scaled before attention, sliding-window layers with their
//! own RoPE base, tied output and optional logit soft-capping are all options of that one forward
//! pass. Verified against llama.cpp on the real Gemma-3-270M by the golden tests.

use std::sync::Arc;

use gguf::GgufFile;

use super::llama::{AttnScale, FfnAct, Llama, NormPlacement, Variant};
use super::RopeStyle;
use crate::Result;

/// llama.cpp's default sliding-window period for gemma3 (`load_swa_pattern(ml, 6)`).
const SWA_PERIOD: u32 = 6;

/// Gemma 3.
pub(crate) const GEMMA3: Variant = Variant {
    arch: "gemma3",
    rope: RopeStyle::Neox,
    norms: NormPlacement::PreAndPost,
    qk_norm: true,
    output_bias: false,
    rope_freqs: false,
    ffn_act: FfnAct::Gelu,
    embed_scale: true,
    attn_scale: AttnScale::GemmaQuery,
    swa_period: Some(SWA_PERIOD),
    logit_softcap: true,
    attn_softcap: false,
    swa_rope_like_global: false,
    rope_full_layers: true,
    attn_temp_offset: None,
};

/// Loads a `gemma3` file.
pub fn load_gemma3(file: Arc<GgufFile>) -> Result<Llama> {
    Llama::load_variant(file, GEMMA3)
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
        let p = AttnParams { n_head, n_head_kv, head_dim: hd, scale: 0.5, softcap: None, sinks: None };
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
        attend_window(&pool, &kv, 0, &batch, &q, &p, None, &mut full);
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

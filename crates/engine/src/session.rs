//! A single conversation on a loaded model: prefix reuse across turns, chunked prefill, sampling,
//! streaming text with stop strings. The multi-sequence server scheduler builds on the same
//! model / KV / sampler pieces.

use std::time::{Duration, Instant};

use crate::engine::Engine;
use crate::kv::{KvCache, KvStore};
use crate::model::{Batch, ForwardCtx, Workspace};
use crate::decode::Decoding;
use crate::sample::{SamplingParams, TokenLogprob};
use crate::{Error, Result, TokenId};

/// Why generation ended (OpenAI's `finish_reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens` or the end of the context.
    Length,
    /// The caller asked to stop.
    Cancelled,
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenParams {
    pub sampling: SamplingParams,
    pub max_tokens: usize,
    pub stop: Vec<String>,
    /// Report log-probs of the chosen token and this many alternatives.
    pub top_logprobs: Option<usize>,
    /// Keep going past end-of-generation tokens (benchmarks).
    pub ignore_eos: bool,
    /// Constrained decoding: the output must match this grammar (it ends the sequence with
    /// `stop` once complete).
    pub grammar: Option<crate::constraint::CompiledGrammar>,
    /// Added to these tokens' logits before sampling (OpenAI's `logit_bias`).
    pub logit_bias: Vec<(TokenId, f32)>,
    /// Provenance mark (`--watermark-key-file`): the green-list bias of
    /// [`crate::sample::watermark`], applied after `logit_bias` and the grammar. `None`: sampling
    /// is unchanged.
    pub watermark: Option<std::sync::Arc<crate::sample::watermark::WatermarkKey>>,
}

impl Default for GenParams {
    fn default() -> Self {
        GenParams {
            sampling: SamplingParams::default(),
            max_tokens: 512,
            stop: Vec::new(),
            top_logprobs: None,
            ignore_eos: false,
            grammar: None,
            logit_bias: Vec::new(),
            watermark: None,
        }
    }
}

/// One generated token as it streams out.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TokenOut {
    pub id: TokenId,
    /// Text that became safe to show with this token (complete UTF-8, not part of a stop string).
    pub text: String,
    pub logprob: Option<f32>,
    pub top: Vec<TokenLogprob>,
}

/// The outcome of one `generate` call.
#[derive(Clone, Debug)]
pub struct Generation {
    /// The whole generated text (stop strings and end-of-generation tokens excluded).
    pub text: String,
    /// Text released only at the end (held back while it could still have been a stop string or
    /// an incomplete UTF-8 sequence): a streaming caller prints it after the last token.
    pub tail: String,
    pub tokens: Vec<TokenOut>,
    pub prompt_tokens: usize,
    /// Prompt tokens whose KV was reused from the previous turn.
    pub cached_tokens: usize,
    pub finish: FinishReason,
    pub prefill_time: Duration,
    pub decode_time: Duration,
}

/// A conversation's state: its KV cache and the tokens it holds.
pub struct Session<'e> {
    engine: &'e Engine,
    kv: KvCache,
    ws: Workspace,
    batch: Batch,
    logits: Vec<f32>,
    /// Tokens whose K/V are in the cache, in order.
    cached: Vec<TokenId>,
    /// Largest number of tokens one forward pass takes during prefill.
    pub n_batch: usize,
    lp_scratch: Vec<f32>,
}

impl<'e> Session<'e> {
    pub fn new(engine: &'e Engine, n_ctx: usize) -> Self {
        let hp = engine.model.hparams();
        let n_ctx = n_ctx.clamp(1, hp.n_ctx_train.max(1));
        Session {
            engine,
            kv: KvCache::new(hp.n_layer, n_ctx, hp.kv_dim(), 1),
            ws: Workspace::default(),
            batch: Batch::default(),
            logits: Vec::new(),
            cached: Vec::new(),
            n_batch: 512,
            lp_scratch: Vec::new(),
        }
    }

    pub fn n_ctx(&self) -> usize {
        self.kv.n_ctx()
    }

    /// Forgets the cached conversation.
    pub fn reset(&mut self) {
        self.cached.clear();
        self.kv.truncate(0, 0);
    }

    /// Runs `tokens` at positions `cached.len()..` and leaves the last token's logits in
    /// `self.logits` (when `want_last`).
    fn feed(&mut self, tokens: &[TokenId], want_last: bool) -> Result<()> {
        let n_batch = self.n_batch.max(1);
        let mut done = 0;
        while done < tokens.len() {
            let end = (done + n_batch).min(tokens.len());
            self.batch.clear();
            let base = self.cached.len();
            for (j, &t) in tokens[done..end].iter().enumerate() {
                let last = want_last && done + j + 1 == tokens.len();
                self.batch.push(t, base + j, 0, last);
            }
            let mut ctx = ForwardCtx { pool: &self.engine.pool, kv: &mut self.kv, ws: &mut self.ws };
            self.engine.model.forward(&self.batch, &mut ctx, &mut self.logits)?;
            self.cached.extend_from_slice(&tokens[done..end]);
            done = end;
        }
        Ok(())
    }

    /// Computes the logits after each of `tokens` (appended to the cache), one row per token:
    /// used to score a known continuation (teacher forcing).
    pub fn score(&mut self, tokens: &[TokenId]) -> Result<Vec<Vec<f32>>> {
        let n_vocab = self.engine.model.hparams().n_vocab;
        if self.cached.len() + tokens.len() > self.n_ctx() {
            return Err(Error::PromptTooLong { n_prompt: self.cached.len() + tokens.len(), n_ctx: self.n_ctx() });
        }
        let mut rows = Vec::with_capacity(tokens.len());
        for chunk in tokens.chunks(self.n_batch.max(1)) {
            self.batch.clear();
            let base = self.cached.len();
            for (j, &t) in chunk.iter().enumerate() {
                self.batch.push(t, base + j, 0, true);
            }
            let mut ctx = ForwardCtx { pool: &self.engine.pool, kv: &mut self.kv, ws: &mut self.ws };
            self.engine.model.forward(&self.batch, &mut ctx, &mut self.logits)?;
            self.cached.extend_from_slice(chunk);
            rows.extend(self.logits.chunks_exact(n_vocab).map(|r| r.to_vec()));
        }
        Ok(rows)
    }

    /// Generates a continuation of `prompt`. The longest prefix of `prompt` already in the cache
    /// (an earlier turn of the same conversation) is reused. `on_token` sees each token as it is
    /// produced and returns `false` to stop (finish reason `Cancelled`).
    pub fn generate(
        &mut self,
        prompt: &[TokenId],
        params: &GenParams,
        mut on_token: impl FnMut(&TokenOut) -> bool,
    ) -> Result<Generation> {
        params.sampling.validate()?;
        let n_ctx = self.n_ctx();
        if prompt.is_empty() {
            return Err(Error::InvalidParam { param: "prompt", message: "the prompt is empty".into() });
        }
        if prompt.len() >= n_ctx {
            return Err(Error::PromptTooLong { n_prompt: prompt.len(), n_ctx });
        }
        let tok = &self.engine.tokenizer;

        // Reuse the cached prefix, but always recompute at least the last prompt token (its logits).
        let common = self.cached.iter().zip(prompt).take_while(|(a, b)| a == b).count().min(prompt.len() - 1);
        self.cached.truncate(common);
        self.kv.truncate(0, common);

        let t0 = Instant::now();
        self.feed(&prompt[common..], true)?;
        let prefill_time = t0.elapsed();

        let mut dec = Decoding::new(params.clone());
        let mut history: Vec<TokenId> = prompt.to_vec();
        let mut text = String::new();
        let mut tokens = Vec::new();
        let t1 = Instant::now();
        let mut stopped = None;
        let finish = loop {
            if tokens.len() >= params.max_tokens {
                break FinishReason::Length;
            }
            let (out, stop) = dec.step(tok, &self.logits, &history, &mut self.lp_scratch).map_err(Error::Grammar)?;
            let id = out.id;
            history.push(id);
            text.push_str(&out.text);
            let keep_going = on_token(&out);
            tokens.push(out);
            if stop.is_some() {
                stopped = stop;
                break FinishReason::Stop;
            }
            if !keep_going {
                break FinishReason::Cancelled;
            }
            if self.cached.len() + 1 >= n_ctx {
                break FinishReason::Length;
            }
            self.feed(&[id], true)?;
        };
        let tail = dec.tail(stopped);
        text.push_str(&tail);
        Ok(Generation {
            text,
            tail,
            tokens,
            prompt_tokens: prompt.len(),
            cached_tokens: common,
            finish,
            prefill_time,
            decode_time: t1.elapsed(),
        })
    }
}

//! [`EngineBackend`]: the production [`Backend`], a thin adapter over the engine thread
//! (`engine::runner::EngineHandle`). It converts the server's request and event types to the
//! engine's and back; the engine's own defaults (llama.cpp's sampling defaults) apply to every
//! field a request leaves out.

use std::time::Duration;

use engine::runner::{self, EngineHandle, EventSink};
use engine::sample::SamplingParams;
use engine::text::template::ChatMessage as EngineMessage;

use crate::backend::{
    Backend, ChatMessage, ChoiceSink, Event, FinishReason, GenRequest, EngineState, GenSpec, Grammar, GrammarError, GrammarSpec, Health, PromptError, Stats, SubmitError, TokenId,
    TokenLogprob, TokenOut, Usage,
};

/// The engine thread as a [`Backend`].
pub struct EngineBackend {
    handle: EngineHandle,
    /// The longest token piece in bytes (see [`Backend::max_token_bytes`]).
    max_token_bytes: usize,
    /// The provenance mark every generation carries (`--watermark-key-file`), if any.
    watermark: Option<std::sync::Arc<engine::sample::watermark::WatermarkKey>>,
}

impl EngineBackend {
    pub fn new(handle: EngineHandle) -> Self {
        let e = handle.engine();
        let n_vocab = e.model.hparams().n_vocab as TokenId;
        let longest = (0..n_vocab).map(|id| e.tokenizer.token_to_piece(id, true).len()).max().unwrap_or(0);
        EngineBackend { max_token_bytes: longest.max(4), handle, watermark: None }
    }

    /// Marks every generation with `key` (`None`: unmarked).
    pub fn with_watermark(mut self, key: Option<std::sync::Arc<engine::sample::watermark::WatermarkKey>>) -> Self {
        self.watermark = key;
        self
    }

    pub fn handle(&self) -> &EngineHandle {
        &self.handle
    }
}

fn gen_params(p: GenSpec) -> engine::GenParams {
    let d = SamplingParams::default();
    let s = p.sampling;
    engine::GenParams {
        sampling: SamplingParams {
            temperature: s.temperature.unwrap_or(d.temperature),
            top_k: s.top_k.unwrap_or(d.top_k),
            top_p: s.top_p.unwrap_or(d.top_p),
            min_p: s.min_p.unwrap_or(d.min_p),
            repeat_penalty: s.repeat_penalty.unwrap_or(d.repeat_penalty),
            presence_penalty: s.presence_penalty.unwrap_or(d.presence_penalty),
            frequency_penalty: s.frequency_penalty.unwrap_or(d.frequency_penalty),
            seed: s.seed.or(d.seed),
            ..d
        },
        max_tokens: p.max_tokens,
        stop: p.stop,
        top_logprobs: p.top_logprobs,
        ignore_eos: p.ignore_eos,
        // A grammar compiled by another backend (not expected: routes compile with the backend
        // they submit to) is dropped rather than misapplied; `compile_grammar` makes them.
        grammar: p.grammar.and_then(|g| g.0.downcast_ref::<engine::constraint::CompiledGrammar>().cloned()),
        logit_bias: p.logit_bias,
        watermark: None,
    }
}

fn finish(f: engine::FinishReason) -> FinishReason {
    match f {
        engine::FinishReason::Stop => FinishReason::Stop,
        engine::FinishReason::Length => FinishReason::Length,
        engine::FinishReason::Cancelled => FinishReason::Cancelled,
    }
}

fn event(e: runner::Event) -> Event {
    match e {
        runner::Event::Token(t) => Event::Token(TokenOut {
            id: t.id,
            text: t.text,
            logprob: t.logprob,
            top: t.top.into_iter().map(|a| TokenLogprob { id: a.id, logprob: a.logprob }).collect(),
        }),
        runner::Event::Done { finish: f, usage, tail, stop } => Event::Done {
            finish: finish(f),
            usage: Usage {
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
                cached_tokens: usage.cached_tokens,
                energy_uj: usage.energy_uj,
            },
            tail,
            stop,
        },
        runner::Event::Error(e) => Event::Error(e),
    }
}

fn prompt_error(e: engine::Error) -> PromptError {
    match e {
        engine::Error::TooManyTokens(t) => PromptError::TooLong { limit: t.limit, at_least: t.at_least },
        other => PromptError::Invalid(other.to_string()),
    }
}

/// Carries engine events into the server's channel; runs on the engine thread.
struct Sink(ChoiceSink);

impl EventSink for Sink {
    fn send(&self, e: runner::Event) -> bool {
        self.0.send(event(e))
    }
    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
    fn progress(&self, p: runner::Progress) {
        self.0.send(Event::Progress(p));
    }
}

impl Backend for EngineBackend {
    fn n_ctx(&self) -> usize {
        self.handle.n_ctx()
    }

    fn n_vocab(&self) -> usize {
        self.handle.engine().model.hparams().n_vocab
    }

    fn max_token_bytes(&self) -> usize {
        self.max_token_bytes
    }

    fn chat_prompt(&self, messages: &[ChatMessage], max_tokens: usize) -> Result<Vec<TokenId>, PromptError> {
        let msgs: Vec<EngineMessage> = messages.iter().map(|m| EngineMessage::new(m.role.clone(), m.content.clone())).collect();
        self.handle.engine().chat_prompt_limited(&msgs, Some(max_tokens)).map_err(prompt_error)
    }

    fn chat_template_source(&self) -> Option<String> {
        self.handle.engine().chat_template_source().map(str::to_string)
    }

    fn chat_prompt_json(
        &self,
        messages: &serde_json::Value,
        tools: Option<&serde_json::Value>,
        max_tokens: usize,
    ) -> Result<Vec<TokenId>, PromptError> {
        self.handle.engine().chat_prompt_json(messages, tools, Some(max_tokens)).map_err(prompt_error)
    }

    fn raw_prompt(&self, text: &str, max_tokens: usize) -> Result<Vec<TokenId>, PromptError> {
        self.handle.engine().raw_prompt_limited(text, max_tokens).map_err(prompt_error)
    }

    fn token_bytes(&self, id: TokenId) -> Vec<u8> {
        self.handle.engine().tokenizer.token_to_piece(id, true)
    }

    fn compile_grammar(&self, spec: &GrammarSpec) -> Result<Grammar, GrammarError> {
        use engine::constraint::{ConstraintError, GrammarSource};
        let src = match spec {
            GrammarSpec::JsonObject => GrammarSource::JsonObject,
            GrammarSpec::JsonSchema { schema, strict } => GrammarSource::JsonSchema { schema: schema.clone(), strict: *strict },
            GrammarSpec::Lark(text) => GrammarSource::Lark(text.clone()),
        };
        match self.handle.engine().compile_grammar(&src) {
            Ok(g) => Ok(Grammar(std::sync::Arc::new(g))),
            Err(ConstraintError::Unsupported(m)) => Err(GrammarError::Unsupported(m)),
            Err(ConstraintError::Unavailable(_)) => Err(GrammarError::Unavailable),
        }
    }

    fn submit(&self, req: GenRequest, sink: ChoiceSink) -> Result<(), SubmitError> {
        let r = runner::Request { prompt: req.prompt, params: engine::GenParams { watermark: self.watermark.clone(), ..gen_params(req.params) }, salt: req.salt };
        self.handle.submit(r, Box::new(Sink(sink))).map_err(|e| match e {
            runner::SubmitError::QueueFull => SubmitError::QueueFull,
            runner::SubmitError::PromptTooLong { n_prompt, n_ctx } => SubmitError::PromptTooLong { n_prompt, n_ctx },
            runner::SubmitError::Invalid(m) => SubmitError::Invalid(m),
            runner::SubmitError::Stopped => SubmitError::Stopped,
        })
    }

    fn energy_method(&self) -> Option<crate::openai::common::EnergyMethod> {
        Some(match self.handle.energy_method() {
            runner::EnergyMethod::Rapl => crate::openai::common::EnergyMethod::Rapl,
            runner::EnergyMethod::Estimate => crate::openai::common::EnergyMethod::Estimate,
        })
    }

    fn stats(&self) -> Stats {
        let s = self.handle.stats();
        Stats {
            queue_depth: s.queue_depth,
            running: s.running,
            kv_blocks_total: s.kv_blocks_total,
            kv_blocks_used: s.kv_blocks_used,
            kv_blocks_cached: s.kv_blocks_cached,
            kv_window_blocks_total: s.kv_window_blocks_total,
            kv_window_blocks_used: s.kv_window_blocks_used,
            kv_window_blocks_cached: s.kv_window_blocks_cached,
            preemptions_total: s.preemptions_total,
            panics_total: s.panics_total,
            rejected_queue_full_total: s.rejected_queue_full_total,
            rejected_too_large_total: s.rejected_too_large_total,
            kv_disk: s.kv_disk,
        }
    }

    fn health(&self) -> Health {
        let h = self.handle.health();
        let state = match h.state {
            runner::EngineState::Loading => EngineState::Loading,
            runner::EngineState::Ok => EngineState::Ok,
            runner::EngineState::Degraded => EngineState::Degraded,
            runner::EngineState::Stopping => EngineState::Stopping,
            runner::EngineState::Dead => EngineState::Dead,
        };
        Health { state, reason: h.reason }
    }

    fn shutdown(&self, drain: Duration) {
        self.handle.shutdown(drain);
    }
}

//! The one seam between HTTP and inference: [`Backend`].
//!
//! The routes speak to a `dyn Backend`, not to the engine directly, for the same reason TGI's router
//! has a small `Backend` trait: the HTTP layer (validation, SSE framing, error mapping, metrics) is
//! tested against a scripted backend in milliseconds, and the real engine runner plugs in through a
//! thin adapter (`engine_backend`). The types here are the server's own plain copies of the engine
//! runner's contract (`Request`, `Event`, `Usage`, `SubmitError`, `Stats`), so this crate keeps
//! compiling while the engine is rebuilt underneath it.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

/// A token id in the model's vocabulary (the engine's `TokenId`).
pub type TokenId = u32;

/// One chat turn as the chat template sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// Sampling settings a request overrides; `None` keeps the engine's default.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SamplingSpec {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<usize>,
    pub min_p: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub seed: Option<u64>,
}

/// What to generate for one sequence (one choice).
#[derive(Clone, Debug, PartialEq)]
pub struct GenSpec {
    pub sampling: SamplingSpec,
    /// Tokens to generate at most; the context end also stops generation (`length`).
    pub max_tokens: usize,
    pub stop: Vec<String>,
    /// Report the chosen token's log-prob and this many alternatives.
    pub top_logprobs: Option<usize>,
    /// Generate past end-of-generation tokens, up to `max_tokens` (benchmarks).
    pub ignore_eos: bool,
    /// Constrained decoding: the output must match this grammar (compiled by
    /// [`Backend::compile_grammar`]).
    pub grammar: Option<Grammar>,
    /// Added to the logits of these tokens before sampling (OpenAI's `logit_bias`, -100..100).
    pub logit_bias: Vec<(TokenId, f32)>,
}

/// What a sequence's output must match (constrained decoding, `response_format`, forced tool calls).
#[derive(Clone, Debug, PartialEq)]
pub enum GrammarSpec {
    /// Any JSON object (`response_format: {"type": "json_object"}`).
    JsonObject,
    /// JSON valid against a JSON Schema (`response_format: {"type": "json_schema"}`).
    JsonSchema { schema: serde_json::Value, strict: bool },
    /// A grammar in llguidance's Lark dialect, which may embed JSON schemas (`%json{...}`): tool
    /// calls in a model family's own format.
    Lark(String),
}

/// A grammar compiled for one backend's vocabulary: opaque to the HTTP layer, cheap to clone,
/// shared by every choice of a request (each sequence gets its own matcher state).
#[derive(Clone)]
pub struct Grammar(pub Arc<dyn Any + Send + Sync>);

impl std::fmt::Debug for Grammar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Grammar(..)")
    }
}

impl PartialEq for Grammar {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Why a grammar cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GrammarError {
    /// The schema or grammar is invalid or uses something the grammar library cannot handle (a 400
    /// naming it).
    #[error("{0}")]
    Unsupported(String),
    /// This backend cannot constrain decoding at all.
    #[error("constrained decoding is not available on this backend")]
    Unavailable,
}

/// One sequence to run.
#[derive(Clone, Debug)]
pub struct GenRequest {
    pub prompt: Vec<TokenId>,
    pub params: GenSpec,
    /// Prefix-cache salt of the request's tenant (0: the shared cache, see [`crate::tenant`]).
    pub salt: u64,
}

/// A token's log-probability.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TokenLogprob {
    pub id: TokenId,
    pub logprob: f32,
}

/// One generated token.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenOut {
    pub id: TokenId,
    /// Text that became safe to show with this token (complete UTF-8, no part of a stop string);
    /// often empty while a multi-byte character or a possible stop string is held back.
    pub text: String,
    pub logprob: Option<f32>,
    pub top: Vec<TokenLogprob>,
}

/// Why a sequence ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    Cancelled,
}

impl FinishReason {
    /// OpenAI's `finish_reason`. A cancelled sequence (server shutting down) reads as `stop`: the
    /// text so far is complete and valid, and OpenAI's SDKs know no other value.
    pub fn as_openai(self) -> &'static str {
        match self {
            FinishReason::Length => "length",
            FinishReason::Stop | FinishReason::Cancelled => "stop",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Prompt tokens whose KV came from the prefix cache.
    pub cached_tokens: usize,
    /// Energy attributed to the sequence, in microjoules ([`Backend::energy_method`] says how).
    pub energy_uj: u64,
}

/// The engine's report of a prompt's progress (admission, prefill chunks), for traces.
pub use engine::runner::Progress;

/// What a sequence reports, in order: its prompt's progress (optional: a backend may send
/// none), tokens, then exactly one `Done` or `Error`.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Progress(Progress),
    Token(TokenOut),
    /// `tail`: text released only at the end (held back as a possible stop string or an incomplete
    /// UTF-8 sequence that turned out not to be one).
    /// `stop`: the stop string that ended generation, if one did.
    Done { finish: FinishReason, usage: Usage, tail: String, stop: Option<String> },
    Error(String),
}

/// Why a request was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("the server is busy: the request queue is full, retry later")]
    QueueFull,
    #[error("this model's maximum context length is {n_ctx} tokens, but the prompt has {n_prompt} tokens")]
    PromptTooLong { n_prompt: usize, n_ctx: usize },
    #[error("{0}")]
    Invalid(String),
    #[error("the server is shutting down")]
    Stopped,
}

/// Why a prompt could not be tokenized.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PromptError {
    /// The prompt has more than `limit` tokens (at least `at_least`); tokenizing stopped there.
    #[error("the prompt has at least {at_least} tokens, more than the {limit} allowed")]
    TooLong { limit: usize, at_least: usize },
    /// The messages or the prompt cannot be rendered or tokenized; shown to the client as an
    /// invalid `messages` parameter.
    #[error("{0}")]
    Invalid(String),
}

/// A snapshot of the scheduler for `/metrics` and `/health`. The `kv_blocks_*` counts are sums
/// over the cache's block groups (global layers and, for models such as Gemma 3, windowed ones).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub queue_depth: usize,
    pub running: usize,
    pub kv_blocks_total: usize,
    pub kv_blocks_used: usize,
    pub kv_blocks_cached: usize,
    /// The sliding-window layers' share of the three counts above (their own block group;
    /// 0 for models without windowed layers).
    pub kv_window_blocks_total: usize,
    pub kv_window_blocks_used: usize,
    pub kv_window_blocks_cached: usize,
    /// Sequences preempted for lack of KV blocks (recomputed later).
    pub preemptions_total: u64,
    /// Engine steps that panicked (their requests failed).
    pub panics_total: u64,
    /// Requests refused because the queue was full.
    pub rejected_queue_full_total: u64,
    /// Requests refused because they can never fit in the KV cache.
    pub rejected_too_large_total: u64,
    /// The KV disk tier's counters (`--kv-disk`; zero when off).
    pub kv_disk: engine::kv::disk::DiskStats,
}

/// What the engine can do now (`/health`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EngineState {
    Loading,
    #[default]
    Ok,
    /// Serving, after a recent failure.
    Degraded,
    Stopping,
    /// Cannot serve at all.
    Dead,
}

impl EngineState {
    pub fn can_serve(self) -> bool {
        matches!(self, EngineState::Ok | EngineState::Degraded)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            EngineState::Loading => "loading",
            EngineState::Ok => "ok",
            EngineState::Degraded => "degraded",
            EngineState::Stopping => "stopping",
            EngineState::Dead => "dead",
        }
    }
}

/// The engine's state and why (`None` when ok).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    pub state: EngineState,
    pub reason: Option<String>,
}

/// Where one sequence's events go: a channel shared by all choices of one HTTP request, each event
/// tagged with its choice index. When the HTTP side is gone (client disconnected, handler
/// dropped) the receiver is dropped, `send` returns false and the engine cancels the sequence.
#[derive(Clone, Debug)]
pub struct ChoiceSink {
    index: usize,
    tx: UnboundedSender<(usize, Event)>,
}

impl ChoiceSink {
    pub fn new(index: usize, tx: UnboundedSender<(usize, Event)>) -> Self {
        ChoiceSink { index, tx }
    }

    /// Delivers `e`; false once nobody listens any more.
    pub fn send(&self, e: Event) -> bool {
        self.tx.send((self.index, e)).is_ok()
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// A model the HTTP layer can run. Implementations must not block for long in any method but
/// `chat_prompt`/`raw_prompt`/`shutdown`, which the routes call on the blocking pool.
pub trait Backend: Send + Sync + 'static {
    /// Context length in tokens (prompt + generated) a sequence may use.
    fn n_ctx(&self) -> usize;
    /// Vocabulary size (token-id prompts are checked against it).
    fn n_vocab(&self) -> usize;
    /// The most bytes one token stands for (the longest piece in the vocabulary, special tokens
    /// spelled out; at least 4, one UTF-8 character): a text longer than `n_ctx` times this
    /// cannot fit in the context, which is checked before tokenizing it.
    fn max_token_bytes(&self) -> usize;
    /// Renders `messages` with the chat template and tokenizes the result, stopping with
    /// [`PromptError::TooLong`] as soon as it has more than `max_tokens` tokens.
    fn chat_prompt(&self, messages: &[ChatMessage], max_tokens: usize) -> Result<Vec<TokenId>, PromptError>;
    /// The chat template's Jinja source (`None` without one): the chat core reads the model's
    /// tool-call format and whether it thinks from it.
    fn chat_template_source(&self) -> Option<String> {
        None
    }
    /// Renders Hugging Face-style JSON `messages` (with `tool_calls`, `tool_call_id`, ...) and
    /// `tools` through the chat template and tokenizes the result like
    /// [`chat_prompt`](Self::chat_prompt) (message contents stay plain text).
    fn chat_prompt_json(
        &self,
        messages: &serde_json::Value,
        tools: Option<&serde_json::Value>,
        max_tokens: usize,
    ) -> Result<Vec<TokenId>, PromptError> {
        let _ = (messages, tools, max_tokens);
        Err(PromptError::Invalid("this model's chat template cannot render tools".into()))
    }
    /// Tokenizes a raw completion prompt, stopping as soon as it has more than `max_tokens` tokens.
    fn raw_prompt(&self, text: &str, max_tokens: usize) -> Result<Vec<TokenId>, PromptError>;
    /// The bytes a token stands for (special tokens spelled out): `logprobs[].bytes`.
    fn token_bytes(&self, id: TokenId) -> Vec<u8>;
    /// Compiles a grammar for this model's vocabulary (CPU-heavy for large schemas: the routes call
    /// it on the blocking pool).
    fn compile_grammar(&self, spec: &GrammarSpec) -> Result<Grammar, GrammarError> {
        let _ = spec;
        Err(GrammarError::Unavailable)
    }
    /// Queues one sequence; its events go to `sink`.
    fn submit(&self, req: GenRequest, sink: ChoiceSink) -> Result<(), SubmitError>;
    /// How [`Usage::energy_uj`] is measured; `None` when the backend does not measure energy.
    fn energy_method(&self) -> Option<crate::openai::common::EnergyMethod> {
        None
    }
    fn stats(&self) -> Stats;
    /// The engine's state for `/health` (a backend that cannot fail is always ok).
    fn health(&self) -> Health {
        Health::default()
    }
    /// Stops taking requests, lets running sequences finish for up to `drain`, then cancels the
    /// rest. Blocks.
    fn shutdown(&self, drain: Duration);
}

//! `POST /v1/completions` (the legacy text-completion API): request, response, stream chunk.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::common::{Chunk, Response, StopParam, StreamOptions};

/// Like the chat request: an unknown field is a 400 naming it.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompletionRequest {
    #[serde(default)]
    pub model: Option<String>,
    pub prompt: PromptParam,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// OpenAI's default here is 16 tokens.
    #[serde(default)]
    pub max_tokens: Option<i64>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub n: Option<i64>,
    #[serde(default)]
    pub stop: Option<StopParam>,
    #[serde(default)]
    pub seed: Option<i64>,
    #[serde(default)]
    pub presence_penalty: Option<f64>,
    #[serde(default)]
    pub frequency_penalty: Option<f64>,
    /// Number of alternatives to report per token (0..=5 at OpenAI).
    #[serde(default)]
    pub logprobs: Option<i64>,
    #[serde(default)]
    pub echo: Option<bool>,
    #[serde(default)]
    pub suffix: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub top_k: Option<i64>,
    #[serde(default)]
    pub min_p: Option<f64>,
    #[serde(default)]
    pub repeat_penalty: Option<f64>,
    /// Keep generating past end-of-generation tokens (benchmarks; llama.cpp's name).
    #[serde(default)]
    pub ignore_eos: Option<bool>,
    /// Accepted only when it changes nothing (equal to `n`).
    #[serde(default)]
    pub best_of: Option<i64>,
    /// `{"<token id>": bias}`, biases in -100..=100 (see [`crate::logit_bias`]).
    #[serde(default)]
    #[schema(value_type = Option<HashMap<String, f64>>)]
    pub logit_bias: Option<serde_json::Value>,
}

/// `prompt`: a string, a list of strings, a token list or a list of token lists.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum PromptParam {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

/// The non-streaming response.
pub type Completion = Response<CompletionChoice>;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct CompletionChoice {
    pub text: String,
    pub index: usize,
    pub logprobs: Option<LegacyLogprobs>,
    pub finish_reason: Option<String>,
}

/// The completions API's column-wise log-probs.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct LegacyLogprobs {
    pub tokens: Vec<String>,
    pub token_logprobs: Vec<f32>,
    pub top_logprobs: Vec<BTreeMap<String, f32>>,
    pub text_offset: Vec<usize>,
}

/// One `data:` event of a stream.
pub type CompletionChunk = Chunk<CompletionChoice>;

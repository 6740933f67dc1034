//! Pieces shared by chat and completions: `stop`, `stream_options`, `usage`, log-probs, and the
//! envelope of every response and stream chunk (only the choice type differs between the two).

use serde::{Deserialize, Serialize};

/// A parameter of OpenAI's API this server does not implement, kept as sent (`None` when absent
/// or `null`) so validation can accept its no-op values and reject the rest by name.
pub type Unsupported = Option<serde_json::Value>;

/// A parameter that cannot change the answer (`user`-like bookkeeping): read and dropped
/// without allocating. Documented as "any value" in `/openapi.json`.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub struct Ignored(#[allow(dead_code)] Option<serde::de::IgnoredAny>);

impl utoipa::PartialSchema for Ignored {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <serde_json::Value as utoipa::PartialSchema>::schema()
    }
}

impl utoipa::ToSchema for Ignored {}

/// `stop`: one string or a list of up to four.
#[derive(Clone, Debug, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(untagged)]
pub enum StopParam {
    One(String),
    Many(Vec<String>),
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct PromptTokensDetails {
    pub cached_tokens: usize,
}

/// `usage` as OpenAI reports it.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ApiUsage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
    pub prompt_tokens_details: PromptTokensDetails,
}

impl ApiUsage {
    pub fn new(prompt_tokens: usize, completion_tokens: usize, cached_tokens: usize) -> Self {
        ApiUsage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            prompt_tokens_details: PromptTokensDetails { cached_tokens },
        }
    }
}

/// Chat's `choices[].logprobs`: one entry per generated token.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ChoiceLogprobs {
    pub content: Vec<LogprobEntry>,
}

/// One token's log-prob. `token` is the token's text (lossy where the token is only part of a
/// UTF-8 character); `bytes` are its real bytes, so a client can reassemble the text exactly.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct LogprobEntry {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
    pub top_logprobs: Vec<TopLogprob>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
}

/// A whole non-streaming response: `chat.completion` or `text_completion`, with its choices.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Response<C> {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<C>,
    pub usage: ApiUsage,
}

/// One `data:` event of a stream.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Chunk<C> {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<C>,
    /// With `stream_options.include_usage`: `null` on every chunk but the last, which has empty
    /// `choices` and the usage. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<ApiUsage>>,
}

//! `POST /v1/chat/completions`: request, response and stream chunk.

use serde::{Deserialize, Serialize};

use super::common::{Chunk, ChoiceLogprobs, Ignored, Response, StopParam, StreamOptions, Unsupported};

/// The request body as sent. Every field a client may leave out is an `Option`; integers are
/// `i64` and floats `f64` so an out-of-range value reaches validation (and a precise error)
/// instead of failing deserialization. An unknown field is a 400 naming it (nothing is silently
/// ignored); OpenAI's parameters this server does not implement are listed as [`Unsupported`]
/// and accepted only when absent, `null` or at their no-op value (see [`crate::validate`]).
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatCompletionRequest {
    #[serde(default)]
    pub model: Option<String>,
    pub messages: Vec<RawMessage>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub max_tokens: Option<i64>,
    #[serde(default)]
    pub max_completion_tokens: Option<i64>,
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
    #[serde(default)]
    pub logprobs: Option<bool>,
    #[serde(default)]
    pub top_logprobs: Option<i64>,
    #[serde(default)]
    pub user: Option<String>,
    /// Extensions with llama.cpp server's names (not in OpenAI's API).
    #[serde(default)]
    pub top_k: Option<i64>,
    #[serde(default)]
    pub min_p: Option<f64>,
    #[serde(default)]
    pub repeat_penalty: Option<f64>,
    /// Keep generating past end-of-generation tokens (benchmarks; llama.cpp's name).
    #[serde(default)]
    pub ignore_eos: Option<bool>,
    /// OpenAI's function tools (`[{"type": "function", "function": {name, description,
    /// parameters, strict}}]`), read by the chat core ([`crate::chat::request`]).
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    pub tools: Option<serde_json::Value>,
    /// `none`, `auto`, `required` or `{"type": "function", "function": {"name": ...}}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub tool_choice: Option<serde_json::Value>,
    /// `{"type": "text" | "json_object"}` or `{"type": "json_schema", "json_schema": {name,
    /// schema, strict}}`: the answer is constrained to it.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub response_format: Option<serde_json::Value>,
    // Not implemented: a 400 unless absent, `null` or a no-op (`modalities: ["text"]`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub functions: Unsupported,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub function_call: Unsupported,
    /// `{"<token id>": bias}`, biases in -100..=100 (see [`crate::logit_bias`]).
    #[serde(default)]
    #[schema(value_type = Option<HashMap<String, f64>>)]
    pub logit_bias: Option<serde_json::Value>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub modalities: Unsupported,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub audio: Unsupported,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub prediction: Unsupported,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub reasoning_effort: Unsupported,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub verbosity: Unsupported,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub web_search_options: Unsupported,
    // Harmless by definition (bookkeeping and routing hints that cannot change the answer):
    // accepted and ignored.
    #[serde(default)]
    pub metadata: Ignored,
    #[serde(default)]
    pub store: Ignored,
    #[serde(default)]
    pub service_tier: Ignored,
    /// More than one tool call per answer (default true).
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default)]
    pub prompt_cache_key: Ignored,
    #[serde(default)]
    pub safety_identifier: Ignored,
}

#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<MessageContent>,
    /// A participant's name (a tool result's tool name).
    #[serde(default)]
    pub name: Option<String>,
    /// An assistant turn's calls: `[{"id", "type": "function", "function": {name, arguments}}]`.
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    pub tool_calls: Option<serde_json::Value>,
    /// The call a `tool` message answers.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub tool_call_id: Option<serde_json::Value>,
    /// An assistant turn's reasoning, as this server returned it: given back to templates that
    /// render it (gpt-oss shows a call's analysis, Qwen 3 its `<think>` block).
    #[serde(default)]
    pub reasoning_content: Option<String>,
    // Not implemented: a 400 unless absent or `null`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub function_call: Unsupported,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub refusal: Unsupported,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub audio: Unsupported,
}

/// `content`: a string or an array of typed parts (only `text` parts are supported).
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

/// The non-streaming response.
pub type ChatCompletion = Response<ChatChoice>;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ChatChoice {
    pub index: usize,
    pub message: AssistantMessage,
    pub finish_reason: String,
    pub logprobs: Option<ChoiceLogprobs>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct AssistantMessage {
    pub role: String,
    /// The answer's text (empty when the answer is only tool calls).
    pub content: String,
    /// The model's reasoning (thinking models), never mixed into `content`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallOut>,
}

/// A tool call of the answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ToolCallOut {
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionCallOut,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct FunctionCallOut {
    pub name: String,
    /// The arguments as a JSON text.
    pub arguments: String,
}

/// A stream's piece of a tool call: the first carries `id`, `type` and `function.name`, the
/// next ones `function.arguments` fragments, all with the call's `index`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ToolCallDelta {
    pub index: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub function: FunctionDelta,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct FunctionDelta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

/// One `data:` event of a stream.
pub type ChatCompletionChunk = Chunk<ChunkChoice>;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ChunkChoice {
    pub index: usize,
    pub delta: Delta,
    pub logprobs: Option<ChoiceLogprobs>,
    pub finish_reason: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Delta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
}

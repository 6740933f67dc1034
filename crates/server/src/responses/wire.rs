//! OpenAI Responses' wire format: the request body as sent (unknown fields are a 400 naming
//! them), the Response object and its output items. Stream events are built in
//! [`super::output`].

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::openai::common::{Ignored, Unsupported};

/// `POST /v1/responses`. Integers are `i64` and floats `f64` so an out-of-range value reaches
/// validation (and a precise error). Parameters of OpenAI's this server does not implement are
/// [`Unsupported`]: accepted only when absent, `null` or at their no-op value.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateResponse {
    #[serde(default)]
    pub model: Option<String>,
    /// A string (one user message) or a list of input items: messages (`role`, `content` as a
    /// string or `input_text` / `output_text` parts), `function_call`, `function_call_output`
    /// and `reasoning` items.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub input: Option<StringOr<RawItem>>,
    /// A system message put first (not carried over to a `previous_response_id` follow-up).
    #[serde(default)]
    pub instructions: Option<String>,
    /// Function tools: `[{"type": "function", "name", "description", "parameters", "strict"}]`.
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    pub tools: Option<Value>,
    /// `none`, `auto`, `required` or `{"type": "function", "name": ...}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    /// `{"format": {"type": "text" | "json_object"}}` or `{"format": {"type": "json_schema",
    /// "name", "schema", "strict"}}`: the answer is constrained to it.
    #[serde(default)]
    pub text: Option<TextParam>,
    #[serde(default)]
    pub max_output_tokens: Option<i64>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub stream: Option<bool>,
    /// Keep the response for `GET`, `DELETE` and follow-ups (default true, like OpenAI).
    #[serde(default)]
    pub store: Option<bool>,
    /// Continue the conversation of this stored response.
    #[serde(default)]
    pub previous_response_id: Option<String>,
    /// Up to 16 string pairs, stored and returned with the response.
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
    /// `disabled` (the default: a conversation longer than the context is a 400).
    #[serde(default)]
    pub truncation: Option<String>,
    /// Extensions with llama.cpp server's names (not in OpenAI's API).
    #[serde(default)]
    pub top_k: Option<i64>,
    #[serde(default)]
    pub seed: Option<i64>,
    // Not implemented: a 400 unless absent, `null` or a no-op (`include: []`, `background:
    // false`, `reasoning: {}`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub include: Unsupported,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub background: Unsupported,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub reasoning: Unsupported,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub max_tool_calls: Unsupported,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub top_logprobs: Unsupported,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub conversation: Unsupported,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub prompt: Unsupported,
    // Cannot change the answer: accepted and ignored.
    #[serde(default)]
    pub user: Ignored,
    #[serde(default)]
    pub service_tier: Ignored,
    #[serde(default)]
    pub prompt_cache_key: Ignored,
    #[serde(default)]
    pub safety_identifier: Ignored,
    #[serde(default)]
    pub stream_options: Ignored,
}

/// `text`.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TextParam {
    #[serde(default)]
    pub format: Option<FormatParam>,
    /// Only `medium` (the no-op) is accepted.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub verbosity: Unsupported,
}

/// `text.format`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FormatParam {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// A string or a list: a custom visitor (not `untagged`), so an error inside the list names
/// its path (`input[2].content[0].type`).
#[derive(Clone, Debug, PartialEq)]
pub enum StringOr<T> {
    Str(String),
    List(Vec<T>),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for StringOr<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = StringOr<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(StringOr::Str(s.to_string()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(StringOr::Str(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = seq.next_element()? {
                    v.push(x);
                }
                Ok(StringOr::List(v))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// One input item, any kind: the fields of every kind the server reads, checked per kind in
/// [`super::input`]. Output items sent back as input (`input=previous.output + [...]`) parse too.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawItem {
    /// `message` (the default when `role` is given), `function_call`, `function_call_output`,
    /// `reasoning`.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub content: Option<StringOr<RawPart>>,
    #[serde(default)]
    pub call_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub arguments: Option<String>,
    #[serde(default)]
    pub output: Option<StringOr<RawPart>>,
    #[serde(default)]
    pub summary: Option<Vec<RawPart>>,
    #[serde(default)]
    pub phase: Ignored,
    #[serde(default)]
    pub encrypted_content: Unsupported,
}

/// A content part: `input_text`, `output_text`, `text`, `reasoning_text`, `summary_text` or
/// `refusal` are read; anything else is a 400 naming it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub refusal: Option<String>,
    #[serde(default)]
    pub annotations: Ignored,
    #[serde(default)]
    pub logprobs: Ignored,
    #[serde(default)]
    pub image_url: Ignored,
    #[serde(default)]
    pub file_id: Ignored,
    #[serde(default)]
    pub file_data: Ignored,
    #[serde(default)]
    pub filename: Ignored,
    #[serde(default)]
    pub detail: Ignored,
}

/// The Response object (`GET /v1/responses/{id}` returns it as stored).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ResponseObject {
    pub id: String,
    /// Always `response`.
    pub object: String,
    pub created_at: u64,
    /// `in_progress`, `completed` or `incomplete` (cut at `max_output_tokens` or the context).
    pub status: String,
    #[schema(value_type = Option<Object>)]
    pub error: Option<Value>,
    pub incomplete_details: Option<IncompleteDetails>,
    pub instructions: Option<String>,
    pub max_output_tokens: Option<u64>,
    pub model: String,
    pub output: Vec<OutputItem>,
    pub parallel_tool_calls: bool,
    pub previous_response_id: Option<String>,
    #[schema(value_type = Object)]
    pub reasoning: Value,
    pub store: bool,
    pub temperature: f64,
    #[schema(value_type = Object)]
    pub text: Value,
    #[schema(value_type = Object)]
    pub tool_choice: Value,
    #[schema(value_type = Vec<Object>)]
    pub tools: Vec<Value>,
    pub top_p: f64,
    pub truncation: String,
    pub usage: Option<ResponseUsage>,
    pub user: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct IncompleteDetails {
    /// `max_output_tokens`.
    pub reason: String,
}

#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct InputTokensDetails {
    pub cached_tokens: usize,
}

#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct OutputTokensDetails {
    pub reasoning_tokens: usize,
}

#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ResponseUsage {
    pub input_tokens: usize,
    pub input_tokens_details: InputTokensDetails,
    pub output_tokens: usize,
    pub output_tokens_details: OutputTokensDetails,
    pub total_tokens: usize,
    /// The energy the answer took (daehwa's extension; absent when not measured).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::openai::common::EnergyWire>)]
    pub energy: Option<crate::openai::common::Energy>,
}

/// An output item.
#[derive(Clone, Debug, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputItem {
    /// The answer's text (`msg_...`).
    Message { id: String, status: String, role: String, content: Vec<OutputText> },
    /// A call the client should run and answer with a `function_call_output` item.
    FunctionCall { id: String, call_id: String, name: String, arguments: String, status: String },
    /// The model's reasoning (thinking models), never mixed into the message.
    Reasoning { id: String, summary: Vec<Value>, content: Vec<ReasoningText>, status: String },
}

/// `{"type": "output_text", "text", "annotations": [], "logprobs": []}`.
#[derive(Clone, Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct OutputText {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: String,
    #[schema(value_type = Vec<Object>)]
    pub annotations: Vec<Value>,
    #[schema(value_type = Vec<Object>)]
    pub logprobs: Vec<Value>,
}

impl OutputText {
    pub fn new(text: String) -> Self {
        OutputText { kind: "output_text".into(), text, annotations: Vec::new(), logprobs: Vec::new() }
    }
}

/// `{"type": "reasoning_text", "text"}`.
#[derive(Clone, Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ReasoningText {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: String,
}

/// `DELETE /v1/responses/{id}`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct DeletedResponse {
    pub id: String,
    /// Always `response`.
    pub object: String,
    pub deleted: bool,
}

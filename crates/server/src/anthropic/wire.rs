//! Anthropic Messages' request and response bodies (`POST /v1/messages`,
//! `POST /v1/messages/count_tokens`), as Anthropic documents them. Unknown fields are refused by
//! name; Anthropic's parameters this server does not implement (`thinking`, `service_tier`,
//! `container`, `mcp_servers`) are refused unless absent or `null`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `POST /v1/messages`.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessagesRequest {
    pub model: String,
    /// Required, as in Anthropic's API.
    pub max_tokens: i64,
    pub messages: Vec<InputMessage>,
    /// A string or a list of text blocks.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub system: Option<SystemParam>,
    #[serde(default)]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub top_k: Option<i64>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub tools: Option<Vec<ToolParam>>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub tool_choice: Option<ToolChoiceParam>,
    /// Kept for the record only (`user_id`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub thinking: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub service_tier: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub container: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub mcp_servers: Option<Value>,
}

/// `POST /v1/messages/count_tokens`.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CountTokensRequest {
    pub model: String,
    pub messages: Vec<InputMessage>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub system: Option<SystemParam>,
    #[serde(default)]
    pub tools: Option<Vec<ToolParam>>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub tool_choice: Option<ToolChoiceParam>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub thinking: Option<Value>,
}

/// `{"input_tokens": N}`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct CountTokens {
    pub input_tokens: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum SystemParam {
    Text(String),
    Blocks(Vec<TextBlockParam>),
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextBlockParam {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: String,
    #[serde(default)]
    pub cache_control: Option<Value>,
    #[serde(default)]
    pub citations: Option<Value>,
}

#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InputMessage {
    /// `user` or `assistant`.
    pub role: String,
    /// A string or a list of content blocks (`text`, `tool_use`, `tool_result`, `thinking`).
    #[schema(value_type = Object)]
    pub content: MessageContent,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Blocks(Vec<ContentBlockParam>),
}

#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ContentBlockParam {
    Text {
        text: String,
        #[serde(default)]
        cache_control: Option<Value>,
        #[serde(default)]
        citations: Option<Value>,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
        #[serde(default)]
        cache_control: Option<Value>,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(default)]
        content: Option<ToolResultContent>,
        #[serde(default)]
        is_error: Option<bool>,
        #[serde(default)]
        cache_control: Option<Value>,
    },
    Thinking {
        thinking: String,
        #[serde(default)]
        signature: Option<String>,
    },
    RedactedThinking {
        data: String,
    },
    Image {
        source: Value,
        #[serde(default)]
        cache_control: Option<Value>,
    },
    Document {
        source: Value,
        #[serde(default)]
        cache_control: Option<Value>,
        #[serde(default)]
        title: Option<String>,
        #[serde(default)]
        context: Option<String>,
        #[serde(default)]
        citations: Option<Value>,
    },
}

#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum ToolResultContent {
    Text(String),
    Blocks(Vec<TextBlockParam>),
}

/// A tool the model may use: `input_schema` is the JSON Schema of its input.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolParam {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[schema(value_type = Object)]
    pub input_schema: Value,
    /// `custom` (the default) is the only kind this server runs.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub cache_control: Option<Value>,
}

/// `{"type": "auto" | "any" | "none"}` or `{"type": "tool", "name": ...}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolChoiceParam {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub disable_parallel_tool_use: Option<bool>,
}

/// The response: `type: message`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Message {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub role: &'static str,
    pub model: String,
    pub content: Vec<ContentBlock>,
    /// `end_turn`, `max_tokens`, `stop_sequence` or `tool_use` (`null` in `message_start`).
    pub stop_reason: Option<&'static str>,
    pub stop_sequence: Option<String>,
    pub usage: MessageUsage,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[schema(value_type = Object)]
        input: Value,
    },
    Thinking {
        thinking: String,
        signature: String,
    },
}

/// Tokens: `input_tokens` excludes those read from the prefix cache
/// (`cache_read_input_tokens`), as Anthropic counts them.
#[derive(Clone, Copy, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct MessageUsage {
    pub input_tokens: usize,
    pub output_tokens: usize,
    pub cache_creation_input_tokens: usize,
    pub cache_read_input_tokens: usize,
    /// The energy the answer took (daehwa's extension; absent when not measured).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::openai::common::EnergyWire>)]
    pub energy: Option<crate::openai::common::Energy>,
}

//! The chat core: a transport-neutral conversation ([`ChatInput`]) shared by the OpenAI chat
//! completions route and the other chat-shaped APIs (Responses, Anthropic Messages).
//!
//! ```text
//!  wire request ──> ChatInput ──prepare (blocking pool)──> Prepared { prompt, grammar, parser }
//!                                                                       │
//!        generated text pieces ──> OutputParser ──> ParseEvent* ──> wire events / message
//! ```
//!
//! - [`prepare`] renders the prompt (the model's own template when it understands tools, else a
//!   generic format: tool descriptions in the system turn and a JSON envelope for the answer),
//!   compiles the grammar (`response_format`, forced tool calls, the generic envelope) and picks
//!   the output parser for the model's family ([`family`]).
//! - [`OutputParser`] turns the generated text, in pieces of any size, into content, reasoning and
//!   tool calls, the same however the text is split (streaming and not give one answer).

pub mod call_stream;
pub mod family;
pub mod grammar;
pub mod harmony;
pub mod parser;
pub mod prepare;
pub mod render;
pub mod request;

pub use family::{Family, ModelTraits};
pub use parser::{OutputParser, ParseEvent, ParsedMessage, ParserConfig};
pub use prepare::{prepare, Prepared};

/// Who speaks a turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
    /// A tool's result (answers the assistant's call `tool_call_id`).
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// One turn of a conversation.
#[derive(Clone, Debug, PartialEq)]
pub struct Turn {
    pub role: Role,
    /// The text (several text parts already joined); empty for an assistant turn that only calls
    /// tools.
    pub content: String,
    /// The assistant's tool calls (assistant turns only).
    pub tool_calls: Vec<ToolCall>,
    /// The call a tool turn answers.
    pub tool_call_id: Option<String>,
    /// A participant's or tool's name (the tool's name on a tool turn, when known).
    pub name: Option<String>,
    /// The assistant's reasoning, when the client sends it back (templates may show or drop it).
    pub reasoning: Option<String>,
}

impl Turn {
    /// A plain text turn.
    pub fn text(role: Role, content: impl Into<String>) -> Self {
        Turn { role, content: content.into(), tool_calls: Vec::new(), tool_call_id: None, name: None, reasoning: None }
    }
}

/// A function the model may call.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolDef {
    pub name: String,
    pub description: Option<String>,
    /// The JSON Schema of the arguments (an object schema; `{"type": "object"}` when not given).
    pub parameters: serde_json::Value,
    /// OpenAI's `strict`: the arguments must match the schema exactly. Forced calls are always
    /// constrained to the schema; this is kept for the record and for APIs that report it.
    pub strict: bool,
}

/// A call the model made (or the client replays from an earlier turn).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolCall {
    /// `call_...`: unique within the response.
    pub id: String,
    pub name: String,
    /// The arguments as a JSON text (OpenAI's `function.arguments` is a string).
    pub arguments: String,
}

/// Whether and which tool the model must call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides (text or calls).
    #[default]
    Auto,
    /// No call: tools are not shown to the model.
    None,
    /// At least one call, to any tool (grammar-constrained).
    Required,
    /// One call to this tool (grammar-constrained).
    Function(String),
}

/// The shape of the answer's text.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum OutputFormat {
    #[default]
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON valid against `schema`.
    JsonSchema { name: String, schema: serde_json::Value, strict: bool },
}

/// A conversation to answer, independent of the wire API it came from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChatInput {
    pub turns: Vec<Turn>,
    pub tools: Vec<ToolDef>,
    pub tool_choice: ToolChoice,
    /// More than one call per answer (OpenAI's default: true).
    pub parallel_tool_calls: bool,
    pub format: OutputFormat,
}

impl ChatInput {
    /// A conversation of plain turns, no tools, text output.
    pub fn new(turns: Vec<Turn>) -> Self {
        ChatInput { turns, parallel_tool_calls: true, ..Default::default() }
    }

    /// Tools the model is shown and may call (none with `tool_choice: none`).
    pub fn active_tools(&self) -> &[ToolDef] {
        match self.tool_choice {
            ToolChoice::None => &[],
            _ => &self.tools,
        }
    }
}

/// A fresh tool call id: `call_` and 24 hex digits, like OpenAI's.
pub fn new_call_id() -> String {
    let id = crate::generation::response_id("call");
    // response_id joins with '-'; OpenAI's call ids use '_'.
    id.replacen("call-", "call_", 1)
}

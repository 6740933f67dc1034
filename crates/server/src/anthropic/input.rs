//! An Anthropic Messages request as the chat core's [`ChatInput`] and the engine's
//! [`GenSpec`]: raw wire types in, checked types out, errors naming the parameter.

use std::collections::HashMap;

use serde_json::Value;

use super::wire::{ContentBlockParam, InputMessage, MessageContent, SystemParam, TextBlockParam, ToolChoiceParam, ToolParam, ToolResultContent};
use crate::backend::GenSpec;
use crate::chat::{request::valid_name, ChatInput, Role, ToolCall, ToolChoice, ToolDef, Turn, request::MAX_TOOLS};
use crate::error::ApiError;
use crate::validate;

fn unsupported(param: &str, v: &Option<Value>) -> Result<(), ApiError> {
    match v {
        None | Some(Value::Null) => Ok(()),
        Some(_) => Err(ApiError::param(param, format!("`{param}` is not supported by this server"))),
    }
}

fn texts(param: &str, blocks: &[TextBlockParam]) -> Result<String, ApiError> {
    let mut out = Vec::with_capacity(blocks.len());
    for (i, b) in blocks.iter().enumerate() {
        if b.kind != "text" {
            return Err(ApiError::param(format!("{param}[{i}].type"), format!("expected a `text` block, got `{}`", b.kind)));
        }
        out.push(b.text.as_str());
    }
    Ok(out.join("\n"))
}

/// `system`, `messages`, `tools` and `tool_choice` as a conversation.
pub fn chat_input(
    system: Option<SystemParam>,
    messages: Vec<InputMessage>,
    tools: Option<Vec<ToolParam>>,
    tool_choice: Option<ToolChoiceParam>,
) -> Result<ChatInput, ApiError> {
    let mut turns = Vec::with_capacity(messages.len() + 1);
    match system {
        None => {}
        Some(SystemParam::Text(s)) => turns.push(Turn::text(Role::System, s)),
        Some(SystemParam::Blocks(b)) => turns.push(Turn::text(Role::System, texts("system", &b)?)),
    }
    if messages.is_empty() {
        return Err(ApiError::param("messages", "`messages` must have at least one message"));
    }
    let mut tool_names: HashMap<String, String> = HashMap::new();
    for (i, m) in messages.into_iter().enumerate() {
        let role = match m.role.as_str() {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            r => return Err(ApiError::param(format!("messages[{i}].role"), format!("unexpected role `{r}`: `user` or `assistant`"))),
        };
        let blocks = match m.content {
            MessageContent::Text(s) => {
                turns.push(Turn::text(role, s));
                continue;
            }
            MessageContent::Blocks(b) => b,
        };
        let mut text: Vec<String> = Vec::new();
        let mut calls: Vec<ToolCall> = Vec::new();
        let mut reasoning: Option<String> = None;
        for (j, b) in blocks.into_iter().enumerate() {
            let at = |f: &str| format!("messages[{i}].content[{j}]{f}");
            match (role, b) {
                (_, ContentBlockParam::Text { text: t, .. }) => text.push(t),
                (Role::Assistant, ContentBlockParam::ToolUse { id, name, input, .. }) => {
                    tool_names.insert(id.clone(), name.clone());
                    calls.push(ToolCall { id, name, arguments: input.to_string() });
                }
                (Role::Assistant, ContentBlockParam::Thinking { thinking, .. }) => reasoning = Some(thinking),
                (Role::Assistant, ContentBlockParam::RedactedThinking { .. }) => {}
                (Role::User, ContentBlockParam::ToolResult { tool_use_id, content, is_error, .. }) => {
                    let mut body = match content {
                        None => String::new(),
                        Some(ToolResultContent::Text(s)) => s,
                        Some(ToolResultContent::Blocks(b)) => texts(&at(".content"), &b)?,
                    };
                    if is_error == Some(true) {
                        body = format!("Error: {body}");
                    }
                    let mut t = Turn::text(Role::Tool, body);
                    t.name = tool_names.get(&tool_use_id).cloned();
                    t.tool_call_id = Some(tool_use_id);
                    turns.push(t);
                }
                (_, ContentBlockParam::Image { .. }) | (_, ContentBlockParam::Document { .. }) => {
                    return Err(ApiError::param(at(".type"), "this server's models read text only: `image` and `document` blocks are not supported"));
                }
                (_, other) => {
                    let kind = match other {
                        ContentBlockParam::ToolUse { .. } => "tool_use",
                        ContentBlockParam::ToolResult { .. } => "tool_result",
                        _ => "thinking",
                    };
                    return Err(ApiError::param(at(".type"), format!("a `{kind}` block cannot be in a `{}` message", role.as_str())));
                }
            }
        }
        if !text.is_empty() || !calls.is_empty() || reasoning.is_some() {
            let mut t = Turn::text(role, text.join("\n"));
            t.tool_calls = calls;
            t.reasoning = reasoning;
            turns.push(t);
        }
    }
    let tools = tool_defs(tools)?;
    let (tool_choice, parallel) = choice(tool_choice, &tools)?;
    let mut input = ChatInput::new(turns);
    input.tools = tools;
    input.tool_choice = tool_choice;
    input.parallel_tool_calls = parallel;
    Ok(input)
}

fn tool_defs(tools: Option<Vec<ToolParam>>) -> Result<Vec<ToolDef>, ApiError> {
    let tools = tools.unwrap_or_default();
    if tools.len() > MAX_TOOLS {
        return Err(ApiError::param("tools", format!("at most {MAX_TOOLS} tools, got {}", tools.len())));
    }
    let mut out: Vec<ToolDef> = Vec::with_capacity(tools.len());
    for (i, t) in tools.into_iter().enumerate() {
        if t.kind.as_deref().is_some_and(|k| k != "custom") {
            return Err(ApiError::param(format!("tools.{i}.type"), "only client tools (`custom`, with `input_schema`) are supported"));
        }
        if !valid_name(&t.name) || out.iter().any(|o| o.name == t.name) {
            return Err(ApiError::param(format!("tools.{i}.name"), "a tool name is 1 to 64 of a-z, A-Z, 0-9, _ and -, unique in `tools`"));
        }
        if !t.input_schema.is_object() {
            return Err(ApiError::param(format!("tools.{i}.input_schema"), "`input_schema` must be a JSON Schema object"));
        }
        out.push(ToolDef { name: t.name, description: t.description, parameters: t.input_schema, strict: false });
    }
    Ok(out)
}

fn choice(c: Option<ToolChoiceParam>, tools: &[ToolDef]) -> Result<(ToolChoice, bool), ApiError> {
    let Some(c) = c else { return Ok((ToolChoice::Auto, true)) };
    let parallel = !c.disable_parallel_tool_use.unwrap_or(false);
    let choice = match (c.kind.as_str(), c.name) {
        ("auto", None) => ToolChoice::Auto,
        ("any", None) => ToolChoice::Required,
        ("none", None) => ToolChoice::None,
        ("tool", Some(n)) if tools.iter().any(|t| t.name == n) => ToolChoice::Function(n),
        ("tool", Some(n)) => return Err(ApiError::param("tool_choice.name", format!("`{n}` is not in `tools`"))),
        _ => return Err(ApiError::param("tool_choice", "`tool_choice` is {\"type\": \"auto\" | \"any\" | \"none\"} or {\"type\": \"tool\", \"name\": ...}")),
    };
    if tools.is_empty() && matches!(choice, ToolChoice::Required | ToolChoice::Function(_)) {
        return Err(ApiError::param("tool_choice", "`tool_choice` requires a tool call but `tools` is empty"));
    }
    Ok((choice, parallel))
}

/// `max_tokens`, `stop_sequences`, `temperature`, `top_p`, `top_k` as generation parameters.
pub fn gen_spec(
    max_tokens: i64,
    stop_sequences: Option<Vec<String>>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<i64>,
) -> Result<GenSpec, ApiError> {
    if max_tokens < 1 {
        return Err(ApiError::param("max_tokens", "`max_tokens` must be at least 1"));
    }
    if let Some(t) = temperature {
        if !(0.0..=1.0).contains(&t) {
            return Err(ApiError::param("temperature", "`temperature` is between 0 and 1"));
        }
    }
    let stop = stop_sequences.unwrap_or_default();
    if stop.len() > validate::MAX_STOP || stop.iter().any(|s| s.is_empty() || s.len() > validate::MAX_STOP_BYTES) {
        let (n, b) = (validate::MAX_STOP, validate::MAX_STOP_BYTES);
        return Err(ApiError::param("stop_sequences", format!("at most {n} stop sequences, each of 1 to {b} bytes")));
    }
    Ok(GenSpec {
        sampling: validate::basic_sampling(temperature, top_p, top_k)?,
        max_tokens: usize::try_from(max_tokens).unwrap_or(usize::MAX),
        stop,
        top_logprobs: None,
        ignore_eos: false,
        grammar: None,
        logit_bias: Vec::new(),
    })
}

/// Refuses Anthropic's parameters this server does not implement.
pub fn refuse_unsupported(fields: &[(&str, &Option<Value>)]) -> Result<(), ApiError> {
    fields.iter().try_for_each(|(p, v)| unsupported(p, v))
}

//! Anthropic's Messages API: `POST /v1/messages` (streaming and not) and
//! `POST /v1/messages/count_tokens`, on the chat core ([`crate::chat`]) and the same generation
//! machinery as chat completions. Errors on these routes take Anthropic's shape
//! (`{"type": "error", "error": {"type", "message"}}`, [`error::reshape`]); the `x-api-key`
//! header authenticates like `Authorization: Bearer`.

pub mod error;
pub mod input;
pub mod stream;
pub mod wire;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use crate::backend::FinishReason;
use crate::chat::{ParsedMessage, ToolCall};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::openai::common::ApiUsage;
use crate::routes::converse;
use crate::tenant::Tenant;
use crate::AppState;
use wire::{ContentBlock, CountTokens, CountTokensRequest, Message, MessageUsage, MessagesRequest};

/// A tool-use id in Anthropic's style (`toolu_...`) for one of the chat core's call ids.
pub fn tool_use_id(call: &ToolCall) -> String {
    call.id.replacen("call_", "toolu_", 1)
}

/// `stop_reason` of a finished answer.
pub fn stop_reason(finish: FinishReason, msg: &ParsedMessage, stop_sequence: Option<&str>) -> &'static str {
    match finish {
        FinishReason::Length => "max_tokens",
        _ if !msg.tool_calls.is_empty() => "tool_use",
        _ if stop_sequence.is_some() => "stop_sequence",
        _ => "end_turn",
    }
}

/// Anthropic's usage: `input_tokens` are those not read from the prefix cache.
pub fn usage(u: &ApiUsage) -> MessageUsage {
    let cached = u.prompt_tokens_details.cached_tokens;
    MessageUsage {
        input_tokens: u.prompt_tokens.saturating_sub(cached),
        output_tokens: u.completion_tokens,
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: cached,
        energy: u.energy,
    }
}

/// A tool call's arguments as the JSON value of `input` (an object; `{}` if unparseable).
pub fn call_input(call: &ToolCall) -> serde_json::Value {
    serde_json::from_str(&call.arguments).unwrap_or_else(|_| serde_json::json!({}))
}

fn content(msg: &ParsedMessage) -> Vec<ContentBlock> {
    let mut out = Vec::new();
    if let Some(r) = &msg.reasoning {
        out.push(ContentBlock::Thinking { thinking: r.clone(), signature: String::new() });
    }
    if !msg.content.is_empty() || msg.tool_calls.is_empty() {
        out.push(ContentBlock::Text { text: msg.content.clone() });
    }
    for c in &msg.tool_calls {
        out.push(ContentBlock::ToolUse { id: tool_use_id(c), name: c.name.clone(), input: call_input(c) });
    }
    out
}

/// A message id: `msg_` and 24 hex digits.
fn message_id() -> String {
    crate::generation::response_id("msg").replacen("msg-", "msg_", 1)
}

#[utoipa::path(post, path = "/v1/messages", tag = "anthropic", request_body = MessagesRequest, responses((status = 200, description = "a `message`, or with `stream: true` Anthropic's server-sent events (`message_start`, `content_block_start`, `content_block_delta`, `content_block_stop`, `message_delta`, `message_stop`)", content((Message = "application/json"), (String = "text/event-stream"))), (status = "4XX", description = "An Anthropic-shaped error", body = error::AnthropicErrorBody), (status = "5XX", description = "An Anthropic-shaped error", body = error::AnthropicErrorBody)))]
pub async fn messages(
    State(st): State<AppState>,
    tenant: Option<Extension<Tenant>>,
    who: Option<Extension<crate::policy::Who>>,
    ApiJson(req): ApiJson<MessagesRequest>,
) -> Result<Response, ApiError> {
    let model = st.config.resolve_model(Some(&req.model))?;
    input::refuse_unsupported(&[
        ("thinking", &req.thinking),
        ("service_tier", &req.service_tier),
        ("container", &req.container),
        ("mcp_servers", &req.mcp_servers),
    ])?;
    let params = input::gen_spec(req.max_tokens, req.stop_sequences, req.temperature, req.top_p, req.top_k)?;
    let chat_in = input::chat_input(req.system, req.messages, req.tools, req.tool_choice)?;
    let backend = st.models.get(Some(&model)).await?;
    let tenant = crate::routes::tenant_of(&st, tenant);
    let started = converse::start(&st, &backend, (tenant, who.as_deref()), model.clone(), chat_in, params).await?;
    let id = message_id();
    let hide_mark = started.hide_mark;
    if req.stream.unwrap_or(false) {
        let fmt = stream::MessageEvents::new(id, model, started.prepared.prompt.len());
        return Ok(crate::policy::HideMark::on(hide_mark, converse::stream(started, fmt, st.config.keep_alive).into_response()));
    }
    let answer = converse::collect(started).await?;
    Ok(crate::policy::HideMark::on(hide_mark, Json(Message {
        id,
        kind: "message",
        role: "assistant",
        model,
        content: content(&answer.message),
        stop_reason: Some(stop_reason(answer.finish, &answer.message, answer.stop_sequence.as_deref())),
        stop_sequence: answer.stop_sequence.clone(),
        usage: usage(&answer.usage),
    })
    .into_response()))
}

#[utoipa::path(post, path = "/v1/messages/count_tokens", tag = "anthropic", request_body = CountTokensRequest, responses((status = 200, description = "the prompt's length in tokens, with the model's template and tokenizer", body = CountTokens), (status = "4XX", description = "An Anthropic-shaped error", body = error::AnthropicErrorBody), (status = "5XX", description = "An Anthropic-shaped error", body = error::AnthropicErrorBody)))]
pub async fn count_tokens(State(st): State<AppState>, ApiJson(req): ApiJson<CountTokensRequest>) -> Result<Json<CountTokens>, ApiError> {
    let model = st.config.resolve_model(Some(&req.model))?;
    input::refuse_unsupported(&[("thinking", &req.thinking)])?;
    let chat_in = input::chat_input(req.system, req.messages, req.tools, req.tool_choice)?;
    let backend = st.models.get(Some(&model)).await?;
    let n = converse::count_prompt(&backend, chat_in).await?;
    Ok(Json(CountTokens { input_tokens: n }))
}

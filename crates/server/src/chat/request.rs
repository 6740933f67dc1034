//! OpenAI chat completions' `messages`, `tools`, `tool_choice`, `parallel_tool_calls` and
//! `response_format` as a [`ChatInput`]: raw JSON in, checked types out, errors naming the
//! parameter.

use serde::Deserialize;
use serde_json::Value;

use super::{ChatInput, OutputFormat, Role, ToolCall, ToolChoice, ToolDef, Turn};
use crate::error::ApiError;
use crate::openai::chat::{ChatCompletionRequest, MessageContent, RawMessage};

/// The most tools one request may offer (OpenAI's limit is 128).
pub const MAX_TOOLS: usize = 128;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTool {
    #[serde(rename = "type")]
    kind: String,
    function: RawFunction,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFunction {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
    #[serde(default)]
    strict: Option<bool>,
}

#[derive(Deserialize)]
struct RawToolCall {
    #[serde(default)]
    id: Option<String>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    function: RawCallFunction,
}

#[derive(Deserialize)]
struct RawCallFunction {
    name: String,
    #[serde(default)]
    arguments: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFormat {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    json_schema: Option<RawJsonSchema>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJsonSchema {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    schema: Option<Value>,
    #[serde(default)]
    strict: Option<bool>,
}

/// A function name as OpenAI allows it: 1 to 64 of `a-zA-Z0-9_-`.
pub fn valid_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 64 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn parse<T: serde::de::DeserializeOwned>(param: &str, v: Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| ApiError::param(param, format!("invalid `{param}`: {e}")))
}

/// `tools`.
pub fn tools(v: Option<Value>) -> Result<Vec<ToolDef>, ApiError> {
    let Some(v) = v.filter(|v| !v.is_null()) else { return Ok(Vec::new()) };
    let raw: Vec<RawTool> = parse("tools", v)?;
    if raw.len() > MAX_TOOLS {
        return Err(ApiError::param("tools", format!("at most {MAX_TOOLS} tools, got {}", raw.len())));
    }
    let mut out: Vec<ToolDef> = Vec::with_capacity(raw.len());
    for (i, t) in raw.into_iter().enumerate() {
        if t.kind != "function" {
            return Err(ApiError::param(format!("tools[{i}].type"), format!("unsupported tool type `{}` (expected function)", t.kind)));
        }
        let f = t.function;
        if !valid_name(&f.name) {
            return Err(ApiError::param(format!("tools[{i}].function.name"), "a function name is 1 to 64 of a-z, A-Z, 0-9, _ and -"));
        }
        if out.iter().any(|o| o.name == f.name) {
            return Err(ApiError::param(format!("tools[{i}].function.name"), format!("two tools are named `{}`", f.name)));
        }
        let parameters = match f.parameters {
            None | Some(Value::Null) => serde_json::json!({"type": "object", "properties": {}}),
            Some(p @ Value::Object(_)) => p,
            Some(_) => return Err(ApiError::param(format!("tools[{i}].function.parameters"), "`parameters` must be a JSON Schema object")),
        };
        out.push(ToolDef { name: f.name, description: f.description, parameters, strict: f.strict.unwrap_or(false) });
    }
    Ok(out)
}

/// `tool_choice` (default `auto`).
pub fn tool_choice(v: Option<Value>, tools: &[ToolDef]) -> Result<ToolChoice, ApiError> {
    let bad = || ApiError::param("tool_choice", "`tool_choice` is `none`, `auto`, `required` or {\"type\": \"function\", \"function\": {\"name\": ...}}");
    let c = match v {
        None | Some(Value::Null) => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            _ => return Err(bad()),
        },
        Some(Value::Object(o)) => {
            let name = o.get("function").and_then(|f| f.get("name")).and_then(Value::as_str).ok_or_else(bad)?;
            if o.get("type").and_then(Value::as_str) != Some("function") {
                return Err(bad());
            }
            if !tools.iter().any(|t| t.name == name) {
                return Err(ApiError::param("tool_choice", format!("`tool_choice` names `{name}`, which is not in `tools`")));
            }
            ToolChoice::Function(name.to_string())
        }
        Some(_) => return Err(bad()),
    };
    if tools.is_empty() && matches!(c, ToolChoice::Required | ToolChoice::Function(_)) {
        return Err(ApiError::param("tool_choice", "`tool_choice` requires a call but `tools` is empty"));
    }
    Ok(c)
}

/// `response_format` (default text).
pub fn response_format(v: Option<Value>) -> Result<OutputFormat, ApiError> {
    let Some(v) = v.filter(|v| !v.is_null()) else { return Ok(OutputFormat::Text) };
    let f: RawFormat = parse("response_format", v)?;
    match (f.kind.as_str(), f.json_schema) {
        ("text", _) => Ok(OutputFormat::Text),
        ("json_object", _) => Ok(OutputFormat::JsonObject),
        ("json_schema", Some(s)) => {
            let _ = s.description;
            let schema = match s.schema {
                None | Some(Value::Null) => serde_json::json!({}),
                Some(v @ (Value::Object(_) | Value::Bool(_))) => v,
                Some(_) => return Err(ApiError::param("response_format.json_schema.schema", "`schema` must be a JSON Schema object")),
            };
            Ok(OutputFormat::JsonSchema { name: s.name, schema, strict: s.strict.unwrap_or(false) })
        }
        ("json_schema", None) => Err(ApiError::param("response_format.json_schema", "`json_schema` is required with type `json_schema`")),
        (other, _) => Err(ApiError::param(
            "response_format.type",
            format!("unsupported `response_format` type `{other}` (expected text, json_object or json_schema)"),
        )),
    }
}

fn content_text(c: Option<MessageContent>, i: usize) -> Result<Option<String>, ApiError> {
    Ok(match c {
        None => None,
        Some(MessageContent::Text(s)) => Some(s),
        Some(MessageContent::Parts(parts)) => {
            let mut texts = Vec::with_capacity(parts.len());
            for (j, p) in parts.into_iter().enumerate() {
                match (p.kind.as_str(), p.text) {
                    ("text", Some(t)) => texts.push(t),
                    ("text", None) => return Err(ApiError::param(format!("messages[{i}].content[{j}].text"), "a text part needs `text`")),
                    (kind, _) => {
                        return Err(ApiError::param(
                            format!("messages[{i}].content[{j}].type"),
                            format!("unsupported content part type `{kind}` (this model reads text only)"),
                        ))
                    }
                }
            }
            Some(texts.join("\n"))
        }
    })
}

fn tool_calls(v: Option<Value>, i: usize) -> Result<Vec<ToolCall>, ApiError> {
    let param = format!("messages[{i}].tool_calls");
    let Some(v) = v.filter(|v| !v.is_null()) else { return Ok(Vec::new()) };
    let raw: Vec<RawToolCall> = parse(&param, v)?;
    raw.into_iter()
        .enumerate()
        .map(|(j, c)| {
            if c.kind.as_deref().is_some_and(|k| k != "function") {
                return Err(ApiError::param(format!("{param}[{j}].type"), "only `function` tool calls are supported"));
            }
            let arguments = match c.function.arguments {
                None | Some(Value::Null) => "{}".to_string(),
                Some(Value::String(s)) => s,
                Some(other) => other.to_string(),
            };
            Ok(ToolCall { id: c.id.unwrap_or_else(super::new_call_id), name: c.function.name, arguments })
        })
        .collect()
}

/// The messages as turns: `system`/`developer`, `user`, `assistant` (with `tool_calls`) and
/// `tool` (with `tool_call_id`).
pub fn turns(raw: Vec<RawMessage>) -> Result<Vec<Turn>, ApiError> {
    if raw.is_empty() {
        return Err(ApiError::param("messages", "`messages` must hold at least one message"));
    }
    let mut names: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    raw.into_iter()
        .enumerate()
        .map(|(i, m)| {
            let role = match m.role.as_str() {
                "system" | "developer" => Role::System,
                "user" => Role::User,
                "assistant" => Role::Assistant,
                "tool" => Role::Tool,
                other => {
                    return Err(ApiError::param(
                        format!("messages[{i}].role"),
                        format!("unsupported role `{other}` (expected system, developer, user, assistant or tool)"),
                    ))
                }
            };
            let content = content_text(m.content, i)?;
            let calls = if role == Role::Assistant { tool_calls(m.tool_calls, i)? } else { Vec::new() };
            let content = match content {
                Some(c) => c,
                None if role == Role::Assistant => String::new(),
                None => return Err(ApiError::param(format!("messages[{i}].content"), "a message needs `content`")),
            };
            for c in &calls {
                names.insert(c.id.clone(), c.name.clone());
            }
            let tool_call_id = match (role, m.tool_call_id) {
                (Role::Tool, Some(Value::String(id))) => Some(id),
                (Role::Tool, _) => {
                    return Err(ApiError::param(format!("messages[{i}].tool_call_id"), "a tool message needs `tool_call_id`"))
                }
                (_, None | Some(Value::Null)) => None,
                (_, Some(_)) => {
                    return Err(ApiError::param(format!("messages[{i}].tool_call_id"), "only tool messages have `tool_call_id`"))
                }
            };
            // A tool result names its tool: the client's `name`, or the call it answers.
            let name = m.name.or_else(|| tool_call_id.as_ref().and_then(|id| names.get(id).cloned()));
            let name = if role == Role::Tool || role == Role::User || role == Role::System { name } else { None };
            let reasoning = match (role, m.reasoning_content) {
                (_, None) => None,
                (Role::Assistant, Some(r)) => Some(r),
                (_, Some(_)) => {
                    return Err(ApiError::param(format!("messages[{i}].reasoning_content"), "only assistant messages have `reasoning_content`"))
                }
            };
            Ok(Turn { role, content, tool_calls: calls, tool_call_id, name, reasoning })
        })
        .collect()
}

/// The request's conversation part. Takes `messages`, `tools`, `tool_choice`,
/// `parallel_tool_calls` and `response_format` out of `req` (leaving them empty, so the rest
/// validates as before).
pub fn chat_input(req: &mut ChatCompletionRequest) -> Result<ChatInput, ApiError> {
    let tools = tools(req.tools.take())?;
    let tool_choice = tool_choice(req.tool_choice.take(), &tools)?;
    let format = response_format(req.response_format.take())?;
    let turns = turns(req.messages.clone())?;
    Ok(ChatInput { turns, tools, tool_choice, parallel_tool_calls: req.parallel_tool_calls.unwrap_or(true), format })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> ChatCompletionRequest {
        serde_json::from_value(v).expect("well-formed")
    }

    fn param(r: Result<ChatInput, ApiError>) -> String {
        match r {
            Err(ApiError::InvalidParam { param: Some(p), .. }) => p,
            other => panic!("expected a parameter error, got {other:?}"),
        }
    }

    #[test]
    fn tools_calls_and_results() {
        let mut r = req(serde_json::json!({"messages": [
            {"role": "user", "content": "2+3?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_a", "type": "function", "function": {"name": "add", "arguments": "{\"a\":2,\"b\":3}"}}]},
            {"role": "tool", "tool_call_id": "call_a", "content": "5"},
        ], "tools": [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}, "strict": true}}],
           "tool_choice": {"type": "function", "function": {"name": "add"}}, "parallel_tool_calls": false,
           "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": true}}}));
        let c = chat_input(&mut r).expect("valid");
        assert_eq!(c.tool_choice, ToolChoice::Function("add".into()));
        assert!(!c.parallel_tool_calls && c.tools[0].strict);
        assert_eq!(c.turns[1].tool_calls, vec![ToolCall { id: "call_a".into(), name: "add".into(), arguments: "{\"a\":2,\"b\":3}".into() }]);
        assert_eq!((c.turns[2].role, c.turns[2].name.as_deref()), (Role::Tool, Some("add")));
        assert_eq!(c.format, OutputFormat::JsonSchema { name: "x".into(), schema: serde_json::json!({"type": "object"}), strict: true });
        assert!(r.tools.is_none() && r.tool_choice.is_none() && r.response_format.is_none());
    }

    #[test]
    fn errors_name_their_parameter() {
        let m = serde_json::json!([{"role": "user", "content": "x"}]);
        let f = |n: &str| serde_json::json!([{"type": "function", "function": {"name": n}}]);
        for (body, p) in [
            (serde_json::json!({"messages": m, "tools": f("bad name")}), "tools[0].function.name"),
            (serde_json::json!({"messages": m, "tools": [{"type": "retrieval", "function": {"name": "a"}}]}), "tools[0].type"),
            (serde_json::json!({"messages": m, "tools": f("a"), "tool_choice": "always"}), "tool_choice"),
            (serde_json::json!({"messages": m, "tools": f("a"), "tool_choice": {"type": "function", "function": {"name": "b"}}}), "tool_choice"),
            (serde_json::json!({"messages": m, "tool_choice": "required"}), "tool_choice"),
            (serde_json::json!({"messages": m, "response_format": {"type": "xml"}}), "response_format.type"),
            (serde_json::json!({"messages": m, "response_format": {"type": "json_schema"}}), "response_format.json_schema"),
            (serde_json::json!({"messages": [{"role": "tool", "content": "x"}]}), "messages[0].tool_call_id"),
            (serde_json::json!({"messages": [{"role": "critic", "content": "x"}]}), "messages[0].role"),
        ] {
            assert_eq!(param(chat_input(&mut req(body.clone()))), p, "{body}");
        }
    }
}

//! A Responses request as checked types: the conversation (input items, instructions, the
//! previous response's conversation) as chat-core [`Turn`]s, the tools, the output format and
//! the generation parameters. Errors name the parameter (`input[1].content[0].type`).

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::{json, Value};

use super::wire::{CreateResponse, FormatParam, RawItem, RawPart, StringOr};
use crate::backend::GenSpec;
use crate::chat::request::{valid_name, MAX_TOOLS};
use crate::chat::{OutputFormat, Role, ToolCall, ToolChoice, ToolDef, Turn};
use crate::config::ServeConfig;
use crate::error::ApiError;
use crate::validate;

/// OpenAI's limits on `metadata`.
const MAX_METADATA: usize = 16;
const MAX_METADATA_KEY: usize = 64;
const MAX_METADATA_VALUE: usize = 512;

/// A checked Responses request (before the previous response is looked up).
#[derive(Clone, Debug)]
pub struct Request {
    pub model: String,
    pub instructions: Option<String>,
    /// This request's input items, as sent (checked).
    pub items: Vec<RawItem>,
    /// The same items in the canonical JSON form that is stored and read back.
    pub items_json: Vec<Value>,
    pub tools: Vec<ToolDef>,
    pub tool_choice: ToolChoice,
    pub parallel_tool_calls: bool,
    pub format: OutputFormat,
    pub params: GenSpec,
    pub stream: bool,
    pub store: bool,
    pub previous_response_id: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// Echoed in the Response object as OpenAI does.
    pub echo: Echo,
}

/// Request values the Response object repeats.
#[derive(Clone, Debug)]
pub struct Echo {
    pub temperature: f64,
    pub top_p: f64,
    pub max_output_tokens: Option<u64>,
    pub tools: Vec<Value>,
    pub tool_choice: Value,
    pub text: Value,
}

fn unsupported(param: &str, v: &Option<Value>, noop: fn(&Value) -> bool) -> Result<(), ApiError> {
    match v {
        Some(x) if !noop(x) => Err(ApiError::param(param, format!("`{param}` is not supported by this server (leave it out or send null)"))),
        _ => Ok(()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTool {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
    #[serde(default)]
    strict: Option<bool>,
}

/// `tools`: flat function tools (`{"type": "function", "name", ...}`, not chat's nesting).
fn tools(v: Option<Value>) -> Result<(Vec<ToolDef>, Vec<Value>), ApiError> {
    let Some(v) = v.filter(|v| !v.is_null()) else { return Ok((Vec::new(), Vec::new())) };
    let Value::Array(list) = v else { return Err(ApiError::param("tools", "`tools` must be an array")) };
    if list.len() > MAX_TOOLS {
        return Err(ApiError::param("tools", format!("at most {MAX_TOOLS} tools, got {}", list.len())));
    }
    let mut out: Vec<ToolDef> = Vec::with_capacity(list.len());
    let mut echo = Vec::with_capacity(list.len());
    for (i, t) in list.into_iter().enumerate() {
        if let Some(kind) = t.get("type").and_then(Value::as_str).filter(|k| *k != "function") {
            return Err(ApiError::param(format!("tools[{i}].type"), format!("unsupported tool type `{kind}` (this server runs function tools only)")));
        }
        let t: RawTool = serde_json::from_value(t).map_err(|e| ApiError::param(format!("tools[{i}]"), format!("invalid `tools[{i}]`: {e}")))?;
        let _ = t.kind;
        if !valid_name(&t.name) {
            return Err(ApiError::param(format!("tools[{i}].name"), "a function name is 1 to 64 of a-z, A-Z, 0-9, _ and -"));
        }
        if out.iter().any(|o| o.name == t.name) {
            return Err(ApiError::param(format!("tools[{i}].name"), format!("two tools are named `{}`", t.name)));
        }
        let parameters = match t.parameters {
            None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
            Some(p @ Value::Object(_)) => p,
            Some(_) => return Err(ApiError::param(format!("tools[{i}].parameters"), "`parameters` must be a JSON Schema object")),
        };
        // Responses' function tools are strict unless told otherwise.
        let strict = t.strict.unwrap_or(true);
        echo.push(json!({"type": "function", "name": t.name, "description": t.description, "parameters": parameters, "strict": strict}));
        out.push(ToolDef { name: t.name, description: t.description, parameters, strict });
    }
    Ok((out, echo))
}

/// `tool_choice` (default `auto`).
fn tool_choice(v: Option<Value>, tools: &[ToolDef]) -> Result<(ToolChoice, Value), ApiError> {
    let bad = || ApiError::param("tool_choice", "`tool_choice` is `none`, `auto`, `required` or {\"type\": \"function\", \"name\": ...}");
    let (c, echo) = match v {
        None | Some(Value::Null) => (ToolChoice::Auto, json!("auto")),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => (ToolChoice::Auto, json!("auto")),
            "none" => (ToolChoice::None, json!("none")),
            "required" => (ToolChoice::Required, json!("required")),
            _ => return Err(bad()),
        },
        Some(Value::Object(o)) => {
            if o.get("type").and_then(Value::as_str) != Some("function") || o.len() != 2 {
                return Err(bad());
            }
            let name = o.get("name").and_then(Value::as_str).ok_or_else(bad)?;
            if !tools.iter().any(|t| t.name == name) {
                return Err(ApiError::param("tool_choice", format!("`tool_choice` names `{name}`, which is not in `tools`")));
            }
            (ToolChoice::Function(name.to_string()), json!({"type": "function", "name": name}))
        }
        Some(_) => return Err(bad()),
    };
    if tools.is_empty() && matches!(c, ToolChoice::Required | ToolChoice::Function(_)) {
        return Err(ApiError::param("tool_choice", "`tool_choice` requires a call but `tools` is empty"));
    }
    Ok((c, echo))
}

/// `text.format` (default text).
fn format(f: Option<FormatParam>) -> Result<(OutputFormat, Value), ApiError> {
    let Some(f) = f else { return Ok((OutputFormat::Text, json!({"format": {"type": "text"}}))) };
    let echo = json!({ "format": f });
    let out = match f.kind.as_str() {
        "text" => OutputFormat::Text,
        "json_object" => OutputFormat::JsonObject,
        "json_schema" => {
            let name = f.name.ok_or_else(|| ApiError::param("text.format.name", "`name` is required with type `json_schema`"))?;
            let schema = match f.schema {
                Some(v @ (Value::Object(_) | Value::Bool(_))) => v,
                None => return Err(ApiError::param("text.format.schema", "`schema` is required with type `json_schema`")),
                Some(_) => return Err(ApiError::param("text.format.schema", "`schema` must be a JSON Schema object")),
            };
            OutputFormat::JsonSchema { name, schema, strict: f.strict.unwrap_or(false) }
        }
        other => {
            return Err(ApiError::param(
                "text.format.type",
                format!("unsupported `text.format` type `{other}` (expected text, json_object or json_schema)"),
            ))
        }
    };
    Ok((out, echo))
}

/// Checks `req` against the served model.
pub fn request(req: CreateResponse, cfg: &ServeConfig) -> Result<Request, ApiError> {
    let model = cfg.resolve_model(req.model.as_deref())?;
    unsupported("include", &req.include, |v| v.as_array().is_some_and(Vec::is_empty))?;
    unsupported("background", &req.background, |v| v.as_bool() == Some(false))?;
    unsupported("reasoning", &req.reasoning, |v| v.as_object().is_some_and(|o| o.values().all(Value::is_null)))?;
    unsupported("max_tool_calls", &req.max_tool_calls, |_| false)?;
    unsupported("top_logprobs", &req.top_logprobs, |v| v.as_u64() == Some(0))?;
    unsupported("conversation", &req.conversation, |_| false)?;
    unsupported("prompt", &req.prompt, |_| false)?;
    if let Some(t) = &req.text {
        unsupported("text.verbosity", &t.verbosity, |v| v.as_str() == Some("medium"))?;
    }
    match req.truncation.as_deref() {
        None | Some("disabled") => {}
        Some(other) => {
            return Err(ApiError::param("truncation", format!("`truncation: {other}` is not supported (only `disabled`: a conversation longer than the context is refused)")))
        }
    }
    let metadata = req.metadata.unwrap_or_default();
    if metadata.len() > MAX_METADATA
        || metadata.iter().any(|(k, v)| k.len() > MAX_METADATA_KEY || v.len() > MAX_METADATA_VALUE)
    {
        return Err(ApiError::param(
            "metadata",
            format!("`metadata` holds at most {MAX_METADATA} pairs, keys up to {MAX_METADATA_KEY} and values up to {MAX_METADATA_VALUE} characters"),
        ));
    }
    let (tools, tools_echo) = tools(req.tools)?;
    let (tool_choice, tool_choice_echo) = tool_choice(req.tool_choice, &tools)?;
    let (format, text_echo) = format(req.text.and_then(|t| t.format))?;
    let items = match req.input {
        None => return Err(ApiError::param("input", "`input` is required (a string or a list of items)")),
        Some(StringOr::Str(s)) => vec![RawItem::user_text(s)],
        Some(StringOr::List(v)) if v.is_empty() => return Err(ApiError::param("input", "`input` must hold at least one item")),
        Some(StringOr::List(v)) => v,
    };
    // Checked now (the previous conversation comes later): a bad item is a 400 before any lookup.
    let mut scratch = Conversation::default();
    scratch.push_items(&items, &|i| format!("input[{i}]"))?;
    let items_json = items.iter().map(RawItem::canonical).collect();
    let max_output_tokens = validate_int("max_output_tokens", req.max_output_tokens)?;
    let mut sampling = validate::basic_sampling(req.temperature, req.top_p, req.top_k)?;
    sampling.seed = req.seed.map(|s| s as u64);
    let params = GenSpec {
        sampling,
        max_tokens: max_output_tokens.map_or(usize::MAX, |n| n as usize),
        stop: Vec::new(),
        top_logprobs: None,
        ignore_eos: false,
        grammar: None,
        logit_bias: Vec::new(),
    };
    if let Some(id) = &req.previous_response_id {
        if id.is_empty() || id.len() > 128 {
            return Err(ApiError::param("previous_response_id", "`previous_response_id` is a response id (`resp_...`)"));
        }
    }
    Ok(Request {
        model,
        instructions: req.instructions,
        items,
        items_json,
        tools,
        tool_choice,
        parallel_tool_calls: req.parallel_tool_calls.unwrap_or(true),
        format,
        params,
        stream: req.stream.unwrap_or(false),
        store: req.store.unwrap_or(true),
        previous_response_id: req.previous_response_id,
        metadata,
        echo: Echo {
            temperature: req.temperature.unwrap_or(1.0),
            top_p: req.top_p.unwrap_or(1.0),
            max_output_tokens,
            tools: tools_echo,
            tool_choice: tool_choice_echo,
            text: text_echo,
        },
    })
}

fn validate_int(param: &str, v: Option<i64>) -> Result<Option<u64>, ApiError> {
    match v {
        None => Ok(None),
        Some(n) if n >= 1 => Ok(Some(n as u64)),
        Some(n) => Err(ApiError::param(param, format!("`{param}` must be at least 1, got {n}"))),
    }
}

impl RawItem {
    fn user_text(text: String) -> RawItem {
        RawItem {
            kind: None,
            id: None,
            status: None,
            role: Some("user".into()),
            content: Some(StringOr::Str(text)),
            call_id: None,
            name: None,
            arguments: None,
            output: None,
            summary: None,
            phase: Default::default(),
            encrypted_content: None,
        }
    }

    /// The item's kind: `type`, or `message` when only `role` says so.
    fn kind(&self) -> &str {
        self.kind.as_deref().unwrap_or("message")
    }

    /// The stored form: only what the conversation needs, parseable again as a [`RawItem`].
    /// Call it on items [`Conversation::push_items`] accepted.
    pub fn canonical(&self) -> Value {
        let text = |c: &Option<StringOr<RawPart>>| match c {
            Some(StringOr::Str(s)) => s.clone(),
            Some(StringOr::List(parts)) => join_parts(parts),
            None => String::new(),
        };
        match self.kind() {
            "function_call" => json!({
                "type": "function_call",
                "call_id": self.call_id,
                "name": self.name,
                "arguments": self.arguments.clone().unwrap_or_else(|| "{}".into()),
            }),
            "function_call_output" => json!({"type": "function_call_output", "call_id": self.call_id, "output": text(&self.output)}),
            "reasoning" => json!({"type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": reasoning_text(self)}]}),
            _ => {
                let role = self.role.as_deref().unwrap_or("user");
                let part = if role == "assistant" { "output_text" } else { "input_text" };
                json!({"type": "message", "role": role, "content": [{"type": part, "text": text(&self.content)}]})
            }
        }
    }
}

/// Text parts joined with newlines (how chat completions joins parts).
fn join_parts(parts: &[RawPart]) -> String {
    parts.iter().filter_map(|p| p.text.as_deref().or(p.refusal.as_deref())).collect::<Vec<_>>().join("\n")
}

fn reasoning_text(it: &RawItem) -> String {
    match (&it.content, &it.summary) {
        (Some(StringOr::List(parts)), _) if !parts.is_empty() => join_parts(parts),
        (Some(StringOr::Str(s)), _) => s.clone(),
        (_, Some(summary)) => join_parts(summary),
        _ => String::new(),
    }
}

/// Input items as turns, item by item: assistant `message`s and `function_call`s that follow
/// each other make one assistant turn; a `reasoning` item goes with the assistant turn after it.
#[derive(Debug, Default)]
pub struct Conversation {
    pub turns: Vec<Turn>,
    /// Call id -> function name (a tool result names its tool).
    names: HashMap<String, String>,
    reasoning: Option<String>,
}

impl Conversation {
    /// Adds `items`; `at(i)` names item `i` in errors.
    pub fn push_items(&mut self, items: &[RawItem], at: &dyn Fn(usize) -> String) -> Result<(), ApiError> {
        for (i, it) in items.iter().enumerate() {
            self.push(it, &at(i))?;
        }
        Ok(())
    }

    fn content(c: &Option<StringOr<RawPart>>, at: &str, field: &str, allowed: &[&str]) -> Result<String, ApiError> {
        match c {
            None => Err(ApiError::param(format!("{at}.{field}"), format!("this item needs `{field}`"))),
            Some(StringOr::Str(s)) => Ok(s.clone()),
            Some(StringOr::List(parts)) => {
                for (j, p) in parts.iter().enumerate() {
                    if !allowed.contains(&p.kind.as_str()) {
                        return Err(ApiError::param(
                            format!("{at}.{field}[{j}].type"),
                            format!("unsupported content type `{}` (this model reads text: {})", p.kind, allowed.join(", ")),
                        ));
                    }
                    if p.text.is_none() && p.refusal.is_none() {
                        return Err(ApiError::param(format!("{at}.{field}[{j}].text"), "a text part needs `text`"));
                    }
                }
                Ok(join_parts(parts))
            }
        }
    }

    fn push(&mut self, it: &RawItem, at: &str) -> Result<(), ApiError> {
        if it.encrypted_content.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(ApiError::param(format!("{at}.encrypted_content"), "encrypted reasoning is not supported by this server"));
        }
        match it.kind() {
            "message" => {
                let role = match it.role.as_deref() {
                    Some("user") => Role::User,
                    Some("system" | "developer") => Role::System,
                    Some("assistant") => Role::Assistant,
                    Some(other) => {
                        return Err(ApiError::param(format!("{at}.role"), format!("unsupported role `{other}` (expected user, system, developer or assistant)")))
                    }
                    None => return Err(ApiError::param(format!("{at}.role"), "a message needs `role`")),
                };
                let allowed: &[&str] = if role == Role::Assistant { &["output_text", "refusal", "text"] } else { &["input_text", "text"] };
                let text = Self::content(&it.content, at, "content", allowed)?;
                let mut turn = Turn::text(role, text);
                if role == Role::Assistant {
                    turn.reasoning = self.reasoning.take();
                }
                self.turns.push(turn);
            }
            "function_call" => {
                let (Some(call_id), Some(name)) = (&it.call_id, &it.name) else {
                    return Err(ApiError::param(at, "a `function_call` item needs `call_id` and `name`"));
                };
                let arguments = it.arguments.clone().unwrap_or_else(|| "{}".into());
                self.names.insert(call_id.clone(), name.clone());
                let call = ToolCall { id: call_id.clone(), name: name.clone(), arguments };
                match self.turns.last_mut() {
                    Some(t) if t.role == Role::Assistant && self.reasoning.is_none() => t.tool_calls.push(call),
                    _ => {
                        let mut turn = Turn::text(Role::Assistant, "");
                        turn.reasoning = self.reasoning.take();
                        turn.tool_calls.push(call);
                        self.turns.push(turn);
                    }
                }
            }
            "function_call_output" => {
                let Some(call_id) = &it.call_id else {
                    return Err(ApiError::param(format!("{at}.call_id"), "a `function_call_output` item needs `call_id`"));
                };
                let output = Self::content(&it.output, at, "output", &["input_text", "text", "output_text"])?;
                let mut turn = Turn::text(Role::Tool, output);
                turn.tool_call_id = Some(call_id.clone());
                turn.name = self.names.get(call_id).cloned();
                self.turns.push(turn);
            }
            "reasoning" => self.reasoning = Some(reasoning_text(it)),
            other => {
                return Err(ApiError::param(
                    format!("{at}.type"),
                    format!("unsupported item type `{other}` (expected message, function_call, function_call_output or reasoning)"),
                ))
            }
        }
        Ok(())
    }
}

/// Reads stored conversation items back (written by [`RawItem::canonical`] and the output).
pub fn stored_items(v: &Value) -> Result<Vec<RawItem>, ApiError> {
    Vec::<RawItem>::deserialize(v).map_err(|e| ApiError::Internal(format!("a stored conversation does not parse: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> Result<Request, ApiError> {
        let r: CreateResponse = serde_json::from_value(v).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
        request(r, &ServeConfig::new("m"))
    }

    fn param(r: Result<Request, ApiError>) -> String {
        match r {
            Err(ApiError::InvalidParam { param: Some(p), .. }) => p,
            other => panic!("expected a parameter error, got {other:?}"),
        }
    }

    #[test]
    fn items_become_turns_and_round_trip() {
        let r = req(json!({"input": [
            {"role": "developer", "content": "be brief"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "2+3?"}]},
            {"type": "reasoning", "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": "add"}]},
            {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant", "content": [{"type": "output_text", "text": "calling", "annotations": [], "logprobs": []}]},
            {"type": "function_call", "id": "fc_1", "call_id": "call_a", "name": "add", "arguments": "{\"a\":2}", "status": "completed"},
            {"type": "function_call_output", "call_id": "call_a", "output": "5"},
        ], "tools": [{"type": "function", "name": "add", "parameters": {"type": "object"}}], "tool_choice": {"type": "function", "name": "add"}}))
        .expect("valid");
        let mut c = Conversation::default();
        c.push_items(&r.items, &|i| format!("input[{i}]")).unwrap();
        let roles: Vec<Role> = c.turns.iter().map(|t| t.role).collect();
        assert_eq!(roles, [Role::System, Role::User, Role::Assistant, Role::Tool]);
        assert_eq!(c.turns[2].content, "calling");
        assert_eq!(c.turns[2].reasoning.as_deref(), Some("add"));
        assert_eq!(c.turns[2].tool_calls, vec![ToolCall { id: "call_a".into(), name: "add".into(), arguments: "{\"a\":2}".into() }]);
        assert_eq!((c.turns[3].tool_call_id.as_deref(), c.turns[3].name.as_deref()), (Some("call_a"), Some("add")));
        assert_eq!(r.tool_choice, ToolChoice::Function("add".into()));
        assert!(r.tools[0].strict, "Responses' tools are strict by default");
        // The stored form reads back to the same turns.
        let back = stored_items(&Value::Array(r.items_json.clone())).unwrap();
        let mut c2 = Conversation::default();
        c2.push_items(&back, &|i| format!("input[{i}]")).unwrap();
        assert_eq!(c.turns, c2.turns);
        assert!(r.store && !r.stream);
        assert_eq!(r.params.max_tokens, usize::MAX);
    }

    #[test]
    fn errors_name_their_parameter() {
        for (body, p) in [
            (json!({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}), "input[0].content[0].type"),
            (json!({"input": [{"role": "critic", "content": "x"}]}), "input[0].role"),
            (json!({"input": [{"type": "item_reference", "id": "x"}]}), "input[0].type"),
            (json!({"input": [{"type": "function_call_output", "output": "x"}]}), "input[0].call_id"),
            (json!({"input": "x", "tools": [{"type": "web_search"}]}), "tools[0].type"),
            (json!({"input": "x", "tools": [{"type": "function", "name": "a b"}]}), "tools[0].name"),
            (json!({"input": "x", "tool_choice": "required"}), "tool_choice"),
            (json!({"input": "x", "text": {"format": {"type": "xml"}}}), "text.format.type"),
            (json!({"input": "x", "text": {"format": {"type": "json_schema", "name": "a"}}}), "text.format.schema"),
            (json!({"input": "x", "max_output_tokens": 0}), "max_output_tokens"),
            (json!({"input": "x", "temperature": 3}), "temperature"),
            (json!({"input": "x", "background": true}), "background"),
            (json!({"input": "x", "truncation": "auto"}), "truncation"),
            (json!({"input": []}), "input"),
            (json!({}), "input"),
        ] {
            assert_eq!(param(req(body.clone())), p, "{body}");
        }
        let ok = req(json!({"input": "x", "include": [], "background": false, "reasoning": {"effort": null}, "text": {"format": {"type": "json_schema", "name": "a", "schema": {"type": "object"}, "strict": true}}})).expect("no-op values pass");
        assert!(matches!(ok.format, OutputFormat::JsonSchema { strict: true, .. }));
    }
}

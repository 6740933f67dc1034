//! A [`ChatInput`] as the template sees it: Hugging Face-style JSON messages and `tools` for a
//! template that renders tools itself, or plain `{role, content}` turns with the generic tool
//! format written into them (tool descriptions in the system turn, earlier calls and results as
//! JSON text) for a template that knows no tools.

use serde_json::{json, Value};

use super::{ChatInput, OutputFormat, Role, ToolChoice, ToolDef, Turn};
use crate::backend::ChatMessage;

/// A call's arguments as the template sees them: the parsed JSON (HF templates print
/// `arguments | tojson`), or the text when it is not JSON.
fn arguments_value(arguments: &str) -> Value {
    serde_json::from_str(arguments).unwrap_or_else(|_| Value::String(arguments.to_string()))
}

/// OpenAI's tool definition, which HF templates read (`tool.function.name`, or via
/// `tool.function is defined`).
pub fn tool_json(t: &ToolDef) -> Value {
    let mut f = json!({"name": t.name, "parameters": t.parameters});
    if let Some(d) = &t.description {
        f["description"] = Value::String(d.clone());
    }
    json!({"type": "function", "function": f})
}

/// The turns as HF-style JSON messages.
pub fn template_messages(turns: &[Turn]) -> Value {
    let msgs = turns
        .iter()
        .map(|t| {
            let mut m = json!({"role": t.role.as_str(), "content": t.content});
            if !t.tool_calls.is_empty() {
                m["tool_calls"] = t
                    .tool_calls
                    .iter()
                    .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": arguments_value(&c.arguments)}}))
                    .collect();
            }
            if let Some(id) = &t.tool_call_id {
                m["tool_call_id"] = Value::String(id.clone());
            }
            if let Some(n) = &t.name {
                m["name"] = Value::String(n.clone());
            }
            if let Some(r) = &t.reasoning {
                m["reasoning_content"] = Value::String(r.clone());
                // gpt-oss's template reads an earlier call's analysis from `thinking`.
                m["thinking"] = Value::String(r.clone());
            }
            m
        })
        .collect();
    Value::Array(msgs)
}

/// The tools the template is given (`None`: the template sees `tools` undefined/none).
pub fn template_tools(input: &ChatInput) -> Option<Value> {
    let tools = input.active_tools();
    (!tools.is_empty()).then(|| Value::Array(tools.iter().map(tool_json).collect()))
}

/// The system-turn text of the generic tool format.
pub fn generic_tool_prompt(input: &ChatInput) -> String {
    let tools: Vec<Value> = input
        .active_tools()
        .iter()
        .map(|t| json!({"name": t.name, "description": t.description.clone().unwrap_or_default(), "parameters": t.parameters}))
        .collect();
    let list = serde_json::to_string_pretty(&tools).unwrap_or_default();
    let call = "{\"tool_calls\": [{\"name\": <tool name>, \"arguments\": <arguments object>}]}";
    let forced = match &input.tool_choice {
        ToolChoice::Function(name) => format!("You must call the tool `{name}` now."),
        ToolChoice::Required => "You must call one of the tools now.".into(),
        _ => String::new(),
    };
    let answer = match input.tool_choice {
        ToolChoice::Auto if !matches!(input.format, OutputFormat::Text) => {
            "or {\"response\": <your answer as JSON>} to answer directly"
        }
        ToolChoice::Auto => "or {\"response\": \"<your answer>\"} to answer directly",
        _ => "",
    };
    format!(
        "You can call these tools:\n{list}\n\nAnswer with a JSON object: {call} to call tools{}{answer}. \
         Tool results come back as {{\"tool_response\": ...}} messages. {forced}",
        if answer.is_empty() { "" } else { ", " }
    )
    .trim_end()
    .to_string()
}

/// `{"name": .., "arguments": ..}` with the name first (the order the grammar writes).
pub fn call_text(name: &str, arguments: &Value) -> String {
    format!("{{\"name\": {}, \"arguments\": {}}}", Value::String(name.to_string()), arguments)
}

/// The turns as plain messages with the generic tool format (for templates without tools).
pub fn generic_messages(input: &ChatInput) -> Vec<ChatMessage> {
    let mut out: Vec<ChatMessage> = Vec::with_capacity(input.turns.len() + 1);
    let tool_prompt = (!input.active_tools().is_empty()).then(|| generic_tool_prompt(input));
    let mut system_done = tool_prompt.is_none();
    for (i, t) in input.turns.iter().enumerate() {
        let (role, content) = match t.role {
            Role::System => {
                let mut c = t.content.clone();
                if !system_done && i == 0 {
                    if let Some(p) = &tool_prompt {
                        c = format!("{c}\n\n{p}");
                    }
                    system_done = true;
                }
                ("system", c)
            }
            Role::User => ("user", t.content.clone()),
            Role::Assistant if t.tool_calls.is_empty() => ("assistant", t.content.clone()),
            Role::Assistant => {
                let calls: Vec<String> = t.tool_calls.iter().map(|c| call_text(&c.name, &arguments_value(&c.arguments))).collect();
                ("assistant", format!("{{\"tool_calls\": [{}]}}", calls.join(", ")))
            }
            Role::Tool => {
                let mut r = json!({"content": t.content});
                if let Some(n) = &t.name {
                    r["name"] = Value::String(n.clone());
                }
                if let Some(id) = &t.tool_call_id {
                    r["tool_call_id"] = Value::String(id.clone());
                }
                ("user", json!({"tool_response": r}).to_string())
            }
        };
        out.push(ChatMessage { role: role.to_string(), content });
    }
    if !system_done {
        if let Some(p) = tool_prompt {
            out.insert(0, ChatMessage { role: "system".into(), content: p });
        }
    }
    out
}

/// Whether the conversation needs tools in the prompt at all (tools offered, or calls and results
/// in the history).
pub fn uses_tools(input: &ChatInput) -> bool {
    !input.active_tools().is_empty() || input.turns.iter().any(|t| t.role == Role::Tool || !t.tool_calls.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::ToolCall;

    fn input() -> ChatInput {
        let mut a = Turn::text(Role::Assistant, "");
        a.tool_calls = vec![ToolCall { id: "call_1".into(), name: "add".into(), arguments: "{\"a\":1,\"b\":2}".into() }];
        let mut r = Turn::text(Role::Tool, "3");
        r.tool_call_id = Some("call_1".into());
        ChatInput {
            turns: vec![Turn::text(Role::System, "Be brief."), Turn::text(Role::User, "1+2?"), a, r],
            tools: vec![ToolDef {
                name: "add".into(),
                description: Some("Adds".into()),
                parameters: json!({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}),
                strict: false,
            }],
            tool_choice: ToolChoice::Auto,
            parallel_tool_calls: true,
            format: OutputFormat::Text,
        }
    }

    #[test]
    fn template_json_has_hf_fields() {
        let m = template_messages(&input().turns);
        assert_eq!(m[2]["tool_calls"][0]["function"]["arguments"], json!({"a": 1, "b": 2}));
        assert_eq!(m[2]["tool_calls"][0]["id"], "call_1");
        assert_eq!(m[3]["tool_call_id"], "call_1");
        assert_eq!(m[3]["role"], "tool");
        assert_eq!(template_tools(&input()).expect("tools")[0]["function"]["name"], "add");
        let none = ChatInput { tool_choice: ToolChoice::None, ..input() };
        assert_eq!(template_tools(&none), None);
    }

    #[test]
    fn generic_messages_carry_tools_calls_and_results() {
        let m = generic_messages(&input());
        assert_eq!(m.len(), 4);
        assert!(m[0].content.starts_with("Be brief.\n\nYou can call these tools:"), "{}", m[0].content);
        assert!(m[0].content.contains("\"name\": \"add\""));
        assert_eq!(m[2].content, "{\"tool_calls\": [{\"name\": \"add\", \"arguments\": {\"a\":1,\"b\":2}}]}");
        assert_eq!((m[3].role.as_str(), m[3].content.as_str()), ("user", "{\"tool_response\":{\"content\":\"3\",\"tool_call_id\":\"call_1\"}}"));
        // Without a system turn one is added first.
        let mut i = input();
        i.turns.remove(0);
        let m = generic_messages(&i);
        assert_eq!(m[0].role, "system");
        assert!(m[0].content.starts_with("You can call these tools:"));
    }
}

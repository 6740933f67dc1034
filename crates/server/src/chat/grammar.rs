//! The grammar an answer must match: `response_format`, and tool calls in the model family's
//! format (llguidance Lark, each tool's parameter schema embedded with `%json`), so a forced call
//! always parses and its arguments match the tool's schema.

use serde_json::{json, Value};

use super::family::Family;
use super::{ChatInput, OutputFormat, ToolChoice, ToolDef};
use crate::backend::GrammarSpec;

/// A Lark string literal for `s` (JSON's escaping is a subset Lark reads).
fn lit(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// The tools a forced or generic call may name.
fn callable(input: &ChatInput) -> Vec<&ToolDef> {
    match &input.tool_choice {
        ToolChoice::None => Vec::new(),
        ToolChoice::Function(name) => input.tools.iter().filter(|t| &t.name == name).collect(),
        ToolChoice::Auto | ToolChoice::Required => input.tools.iter().collect(),
    }
}

/// `call: call_0 | call_1 ...` with each `call_i` the JSON `{"name": "<name>", "<args_key>": <schema>}`.
fn call_rules(tools: &[&ToolDef], args_key: &str) -> String {
    let mut g = String::new();
    let alts: Vec<String> = (0..tools.len()).map(|i| format!("call_{i}")).collect();
    g.push_str(&format!("call: {}\n", alts.join(" | ")));
    for (i, t) in tools.iter().enumerate() {
        let head = format!("{{\"name\": {}, \"{args_key}\": ", lit(&t.name));
        g.push_str(&format!("call_{i}: {} args_{i} \"}}\"\n", lit(&head)));
        g.push_str(&format!("args_{i}: %json {}\n", params_schema(&t.parameters)));
    }
    g
}

/// An embedded schema with the engine's compact JSON layout (one space after `,` and `:`, no
/// other whitespace) unless it sets its own: flexible whitespace lets a small model write
/// newlines forever inside a valid object.
fn with_layout(mut schema: Value) -> Value {
    if let Some(o) = schema.as_object_mut() {
        o.entry("x-guidance").or_insert_with(|| json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "}));
    }
    schema
}

/// A tool's parameter schema as embedded: an object schema (`{"type": "object"}` when empty).
fn params_schema(p: &Value) -> Value {
    match p {
        Value::Object(m) if !m.is_empty() => with_layout(p.clone()),
        _ => with_layout(json!({"type": "object"})),
    }
}

/// The response format's grammar (`None` for text).
pub fn format_grammar(format: &OutputFormat) -> Option<GrammarSpec> {
    match format {
        OutputFormat::Text => None,
        OutputFormat::JsonObject => Some(GrammarSpec::JsonObject),
        OutputFormat::JsonSchema { schema, strict, .. } => Some(GrammarSpec::JsonSchema { schema: schema.clone(), strict: *strict }),
    }
}

/// The answer's grammar for this request and model family, if any:
/// - generic family with tools: the JSON envelope (calls, or with `auto` a direct response);
/// - a template family with `required` or a named function: the calls in the family's format
///   (harmony: one call message, as gpt-oss's template spells past calls);
/// - otherwise the response format's grammar (none for text).
pub fn answer_grammar(input: &ChatInput, family: Family) -> Option<GrammarSpec> {
    let tools = callable(input);
    if tools.is_empty() {
        return format_grammar(&input.format);
    }
    let forced = matches!(input.tool_choice, ToolChoice::Required | ToolChoice::Function(_));
    let many = input.parallel_tool_calls && !matches!(input.tool_choice, ToolChoice::Function(_));
    match family {
        Family::Harmony if forced => {
            // The prompt ends with `<|start|>assistant`; `<|call|>` (an end of generation)
            // follows the arguments. One call: harmony ends the turn at each call.
            let mut g = String::from("start: call\n");
            let alts: Vec<String> = (0..tools.len()).map(|i| format!("call_{i}")).collect();
            g.push_str(&format!("call: {}\n", alts.join(" | ")));
            for (i, t) in tools.iter().enumerate() {
                let head = format!(" to=functions.{}<|channel|>commentary json<|message|>", t.name);
                g.push_str(&format!("call_{i}: {} args_{i}\n", lit(&head)));
                g.push_str(&format!("args_{i}: %json {}\n", params_schema(&t.parameters)));
            }
            Some(GrammarSpec::Lark(g))
        }
        Family::Generic => {
            let calls = if many { "call (\", \" call)*" } else { "call" };
            let mut g = String::from("start: calls");
            if !forced {
                g.push_str(" | response");
            }
            g.push('\n');
            g.push_str(&format!("calls: {} {calls} {}\n", lit("{\"tool_calls\": ["), lit("]}")));
            if !forced {
                let answer = match &input.format {
                    OutputFormat::Text => json!({"type": "string"}),
                    OutputFormat::JsonObject => json!({"type": "object"}),
                    OutputFormat::JsonSchema { schema, .. } => schema.clone(),
                };
                g.push_str(&format!("response: {} answer \"}}\"\n", lit("{\"response\": ")));
                g.push_str(&format!("answer: %json {}\n", with_layout(answer)));
            }
            g.push_str(&call_rules(&tools, "arguments"));
            Some(GrammarSpec::Lark(g))
        }
        Family::Hermes if forced => {
            let blocks = if many { "block (\"\\n\" block)*" } else { "block" };
            let mut g = format!("start: {blocks}\n");
            g.push_str(&format!("block: {} call {}\n", lit("<tool_call>\n"), lit("\n</tool_call>")));
            g.push_str(&call_rules(&tools, "arguments"));
            Some(GrammarSpec::Lark(g))
        }
        Family::Llama3 if forced => {
            let mut g = String::from("start: call\n");
            g.push_str(&call_rules(&tools, "parameters"));
            Some(GrammarSpec::Lark(g))
        }
        Family::Hermes | Family::Llama3 | Family::Harmony => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools() -> Vec<ToolDef> {
        ["add", "lookup"]
            .iter()
            .map(|n| ToolDef { name: n.to_string(), description: None, parameters: json!({"type": "object", "properties": {"x": {"type": "integer"}}}), strict: true })
            .collect()
    }

    fn lark(g: Option<GrammarSpec>) -> String {
        match g {
            Some(GrammarSpec::Lark(s)) => s,
            other => panic!("expected a Lark grammar, got {other:?}"),
        }
    }

    #[test]
    fn generic_envelope_grammar() {
        let input = ChatInput { tools: tools(), ..ChatInput::new(vec![]) };
        let g = lark(answer_grammar(&input, Family::Generic));
        assert!(g.starts_with("start: calls | response\n"), "{g}");
        assert!(g.contains("calls: \"{\\\"tool_calls\\\": [\" call (\", \" call)* \"]}\""), "{g}");
        assert!(g.contains("call: call_0 | call_1\n"));
        assert!(g.contains("call_1: \"{\\\"name\\\": \\\"lookup\\\", \\\"arguments\\\": \" args_1 \"}\"\n"), "{g}");
        let args0 = g.lines().find_map(|l| l.strip_prefix("args_0: %json ")).expect("args_0");
        let args0: Value = serde_json::from_str(args0).expect("embedded JSON");
        assert_eq!(args0["properties"], json!({"x": {"type": "integer"}}));
        assert_eq!(args0["x-guidance"]["whitespace_flexible"], false);
        assert!(g.contains("answer: %json {") && g.contains("\"type\":\"string\""), "{g}");
        // A named function, one call, no direct response.
        let input = ChatInput { tool_choice: ToolChoice::Function("lookup".into()), ..input };
        let g = lark(answer_grammar(&input, Family::Generic));
        assert!(g.starts_with("start: calls\n") && g.contains("call: call_0\n") && g.contains("lookup") && !g.contains("\"add\""), "{g}");
        assert!(!g.contains("call)*"));
    }

    #[test]
    fn family_grammars_only_when_forced() {
        let auto = ChatInput { tools: tools(), ..ChatInput::new(vec![]) };
        assert_eq!(answer_grammar(&auto, Family::Hermes), None);
        let req = ChatInput { tool_choice: ToolChoice::Required, parallel_tool_calls: false, ..auto.clone() };
        let g = lark(answer_grammar(&req, Family::Hermes));
        assert!(g.starts_with("start: block\nblock: \"<tool_call>\\n\" call \"\\n</tool_call>\"\n"), "{g}");
        let g = lark(answer_grammar(&req, Family::Llama3));
        assert!(g.contains("\\\"parameters\\\": "), "{g}");
        assert_eq!(answer_grammar(&auto, Family::Harmony), None);
        let g = lark(answer_grammar(&req, Family::Harmony));
        assert!(g.starts_with("start: call\ncall: call_0 | call_1\n"), "{g}");
        assert!(g.contains("call_1: \" to=functions.lookup<|channel|>commentary json<|message|>\" args_1\n"), "{g}");
        let none = ChatInput { tool_choice: ToolChoice::None, format: OutputFormat::JsonObject, ..auto };
        assert_eq!(answer_grammar(&none, Family::Generic), Some(GrammarSpec::JsonObject));
    }
}

//! Chat templates with tools: a Qwen 2.5 / Hermes-style template (the `tools` context variable,
//! assistant `tool_calls` with JSON arguments, `tool` turns) renders exactly as Python's Jinja2
//! does with transformers' settings. The expected text was produced by
//! `tests/data/render_reference.py` (jinja2 3.1.6):
//! `python3 render_reference.py qwen25_tools.jinja qwen25_tools_input.json`.

use engine::text::template::{ChatMessage, ChatTemplate};

const TEMPLATE: &str = include_str!("data/qwen25_tools.jinja");
const INPUT: &str = include_str!("data/qwen25_tools_input.json");
const EXPECTED: &str = include_str!("data/qwen25_tools_expected.txt");

fn template() -> ChatTemplate {
    ChatTemplate::new(TEMPLATE, "", "<|im_end|>").expect("the template compiles")
}

#[test]
fn tools_render_like_jinja2() {
    let t = template();
    let input: serde_json::Value = serde_json::from_str(INPUT).expect("input JSON");
    let got = t.render_json(&input["messages"], Some(&input["tools"]), true).expect("render");
    assert_eq!(got, EXPECTED);
    assert!(got.contains("<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 2, \"b\": 3}}\n</tool_call>"), "{got}");
    assert_eq!(t.source(), TEMPLATE);
}

#[test]
fn without_tools_render_json_matches_render() {
    let t = template();
    let msgs = [ChatMessage::new("system", "Be brief."), ChatMessage::new("user", "Hi")];
    let json = serde_json::to_value(&msgs).expect("messages as JSON");
    let plain = t.render(&msgs, true).expect("render");
    assert_eq!(t.render_json(&json, None, true).expect("render_json"), plain);
    assert!(!plain.contains("# Tools"), "{plain}");
}

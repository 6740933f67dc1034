//! gpt-oss's chat template constructs (issue 14): a harmony-format template in the shape of
//! gpt-oss's own (recursive macros rendering tool schemas as TypeScript types, `namespace` objects
//! set in loops, `loop_messages[loop.index:]`, `is iterable / is not mapping` tests, `in` on
//! messages, `tojson` of tool arguments, `strftime_now`, `raise_exception`) renders exactly as
//! Python's Jinja2 with transformers' setup (trim_blocks, lstrip_blocks) renders it: the expected
//! strings below were produced by jinja2 3.1.6 for the same template, messages and tools.

use std::time::{Duration, UNIX_EPOCH};

use engine::text::template::ChatTemplate;
use serde_json::json;

/// Also the chat template of the tiny gpt-oss file `gpt-oss-chat` (scripts/tiny_models.py), which
/// the server's harmony tool-call test serves.
const HARMONY: &str = include_str!("../../../scripts/harmony_template.jinja");

/// 2026-12-04 12:00 UTC.
fn now() -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_796_385_600)
}

#[test]
fn harmony_template_with_tools_and_a_tool_round_trip_renders_like_jinja2() {
    let t = ChatTemplate::new(HARMONY, "<s>", "</s>").expect("compile");
    let messages = json!([{"role": "system", "content": "Answer in Korean."}, {"role": "user", "content": "서울 날씨 어때?"}, {"role": "assistant", "content": "", "thinking": "Need the weather tool.", "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Seoul", "unit": "c"}}}]}, {"role": "tool", "content": "{\"temp\": 3}"}, {"role": "assistant", "content": "서울은 3도입니다."}, {"role": "user", "content": "고마워!"}]);
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "description": "Current weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}, "days": {"type": ["integer", "null"]}, "tags": {"type": "array", "items": {"type": "string"}}}, "required": ["city"]}}}]);
    let got = t.render_json_at(&messages, Some(&tools), true, now()).expect("render");
    assert_eq!(got, r###"<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.
Knowledge cutoff: 2024-06
Current date: 2026-12-04

Reasoning: medium

# Valid channels: analysis, commentary, final. Channel must be included for every message.
Calls to these tools must go to the commentary channel: 'functions'.<|end|><|start|>developer<|message|># Instructions

Answer in Korean.

# Tools

## functions

namespace functions {

// Current weather
type get_weather = (_: {city: string, unit?: "c" | "f", days?: integer | null, tags?: string[]}) => any;

} // namespace functions<|end|><|start|>user<|message|>서울 날씨 어때?<|end|><|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{"city": "Seoul", "unit": "c"}<|call|><|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>"{\"temp\": 3}"<|end|><|start|>assistant<|channel|>final<|message|>서울은 3도입니다.<|end|><|start|>user<|message|>고마워!<|end|><|start|>assistant"###);
}

#[test]
fn harmony_template_plain_turn_renders_like_jinja2() {
    let t = ChatTemplate::new(HARMONY, "<s>", "</s>").expect("compile");
    let got = t.render_json_at(&json!([{"role": "user", "content": "hi"}]), None, true, now()).expect("render");
    assert_eq!(got, r###"<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.
Knowledge cutoff: 2024-06
Current date: 2026-12-04

Reasoning: medium

# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|><|start|>user<|message|>hi<|end|><|start|>assistant"###);
}

#[test]
fn harmony_template_raises_on_channel_tags_in_content() {
    let t = ChatTemplate::new(HARMONY, "<s>", "</s>").expect("compile");
    let bad = json!([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "<|channel|>analysis<|message|>x"}]);
    let err = t.render_json_at(&bad, None, true, now()).expect_err("must raise");
    assert!(err.to_string().contains("<|channel|> tags"), "{err}");
}

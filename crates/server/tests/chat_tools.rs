//! Tool calls, reasoning and response formats over the real router (`oneshot`) with a scripted
//! backend whose chat template is a Qwen 3-style one (`<tool_call>` and `<think>`), so the
//! family parsers, the grammar choices and the wire format (non-streaming and streamed) are
//! checked without a multi-gigabyte model. The real model's end-to-end runs are in
//! `tests/serve_openai.rs` (`tests/openai/test_tools.py`).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{post, send, send_json, sse_data};
use serde_json::{json, Value};
use server::backend::{ChatMessage, Grammar, GrammarError, GrammarSpec, PromptError, TokenId, TokenOut};
use server::{Backend, ChoiceSink, Event, FinishReason, GenRequest, Stats, SubmitError, Usage};

const QWEN3_LIKE: &str = "{%- if tools %}<tools>{% for t in tools %}{{ t | tojson }}{% endfor %}</tools>\
    For each call: <tool_call>{\"name\": ..., \"arguments\": ...}</tool_call>{% endif %}\
    {%- for m in messages %}{% if '</think>' in m.content %}{% endif %}<|im_start|>{{ m.role }}{% endfor %}";

/// Answers every request with `answer`, one character per token; records what it was asked.
#[derive(Default)]
struct Scripted {
    template: Option<&'static str>,
    answer: Mutex<String>,
    /// The last `chat_prompt_json` call: messages and tools.
    json_prompt: Mutex<Option<(Value, Option<Value>)>>,
    /// The last plain `chat_prompt` call.
    plain_prompt: Mutex<Vec<ChatMessage>>,
    grammars: Mutex<Vec<GrammarSpec>>,
    submitted: Mutex<Vec<bool>>,
}

impl Backend for Scripted {
    fn n_ctx(&self) -> usize {
        4096
    }
    fn n_vocab(&self) -> usize {
        300
    }
    fn max_token_bytes(&self) -> usize {
        4
    }
    fn chat_template_source(&self) -> Option<String> {
        self.template.map(str::to_string)
    }
    fn chat_prompt(&self, messages: &[ChatMessage], _: usize) -> Result<Vec<TokenId>, PromptError> {
        *self.plain_prompt.lock().expect("lock") = messages.to_vec();
        Ok(vec![1, 2, 3])
    }
    fn chat_prompt_json(&self, messages: &Value, tools: Option<&Value>, _: usize) -> Result<Vec<TokenId>, PromptError> {
        *self.json_prompt.lock().expect("lock") = Some((messages.clone(), tools.cloned()));
        Ok(vec![1, 2, 3])
    }
    fn raw_prompt(&self, _: &str, _: usize) -> Result<Vec<TokenId>, PromptError> {
        Ok(vec![1])
    }
    fn token_bytes(&self, id: TokenId) -> Vec<u8> {
        vec![id as u8]
    }
    fn compile_grammar(&self, spec: &GrammarSpec) -> Result<Grammar, GrammarError> {
        if let GrammarSpec::JsonSchema { schema, .. } = spec {
            if schema.get("x-unsupported").is_some() {
                return Err(GrammarError::Unsupported("keyword x-unsupported".into()));
            }
        }
        self.grammars.lock().expect("lock").push(spec.clone());
        Ok(Grammar(Arc::new(())))
    }
    fn submit(&self, req: GenRequest, sink: ChoiceSink) -> Result<(), SubmitError> {
        self.submitted.lock().expect("lock").push(req.params.grammar.is_some());
        let answer = self.answer.lock().expect("lock").clone();
        std::thread::spawn(move || {
            let mut n = 0;
            for ch in answer.chars() {
                n += 1;
                let t = TokenOut { id: u32::from(ch) % 256, text: ch.to_string(), logprob: None, top: Vec::new() };
                if !sink.send(Event::Token(t)) {
                    return;
                }
            }
            let usage = Usage { prompt_tokens: req.prompt.len(), completion_tokens: n, cached_tokens: 0, energy_uj: 0 };
            sink.send(Event::Done { finish: FinishReason::Stop, usage, tail: String::new(), stop: None });
        });
        Ok(())
    }
    fn stats(&self) -> Stats {
        Stats::default()
    }
    fn shutdown(&self, _: Duration) {}
}

fn app(b: Arc<Scripted>) -> axum::Router {
    server::app(server::AppState::new(b, server::ServeConfig::new("m")))
}

fn tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
        {"type": "function", "function": {"name": "add", "parameters": {"type": "object",
            "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}}}
    ])
}

/// Non-streaming and streamed answers for `body`: (message, finish_reason) of each, the stream
/// accumulated the way the SDKs do (tool calls by `index`).
async fn both(app: &axum::Router, body: Value) -> ((Value, String), (Value, String)) {
    let (s, v) = send_json(app, post("/v1/chat/completions", &body.to_string())).await;
    assert_eq!(s, 200, "{v}");
    let full = (v["choices"][0]["message"].clone(), v["choices"][0]["finish_reason"].as_str().unwrap_or("").to_string());
    let mut sb = body.clone();
    sb["stream"] = json!(true);
    let (s, text) = send(app, post("/v1/chat/completions", &sb.to_string())).await;
    assert_eq!(s, 200, "{text}");
    let data = sse_data(&text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let (mut content, mut reasoning, mut calls, mut finish) = (String::new(), String::new(), Vec::<Value>::new(), String::new());
    for d in &data[..data.len() - 1] {
        let c: Value = serde_json::from_str(d).expect("chunk JSON");
        let ch = &c["choices"][0];
        let delta = &ch["delta"];
        content.push_str(delta["content"].as_str().unwrap_or(""));
        reasoning.push_str(delta["reasoning_content"].as_str().unwrap_or(""));
        for tc in delta["tool_calls"].as_array().into_iter().flatten() {
            let i = tc["index"].as_u64().expect("index") as usize;
            if i == calls.len() {
                // The first piece of a call names it.
                assert!(tc["id"].as_str().is_some_and(|id| id.starts_with("call_")), "{tc}");
                assert_eq!(tc["type"], "function");
                assert!(tc["function"]["name"].is_string(), "{tc}");
                calls.push(json!({"id": tc["id"], "type": "function", "function": {"name": tc["function"]["name"], "arguments": ""}}));
            } else {
                assert!(tc.get("id").is_none() && tc["function"].get("name").is_none(), "only the first piece names the call: {tc}");
            }
            let args = calls[i]["function"]["arguments"].as_str().unwrap_or("").to_string() + tc["function"]["arguments"].as_str().unwrap_or("");
            calls[i]["function"]["arguments"] = json!(args);
        }
        if let Some(f) = ch["finish_reason"].as_str() {
            finish = f.to_string();
        }
    }
    let mut m = json!({"role": "assistant", "content": content});
    if !reasoning.is_empty() {
        m["reasoning_content"] = json!(reasoning);
    }
    if !calls.is_empty() {
        m["tool_calls"] = json!(calls);
    }
    ((full.0, full.1), (m, finish))
}

/// Tool call ids differ between two answers; everything else must not.
fn without_ids(mut m: Value) -> Value {
    for c in m["tool_calls"].as_array_mut().into_iter().flatten() {
        c["id"] = json!("");
    }
    m
}

#[tokio::test]
async fn hermes_tool_calls_with_reasoning_streamed_and_not() {
    let b = Arc::new(Scripted { template: Some(QWEN3_LIKE), ..Default::default() });
    *b.answer.lock().expect("lock") = "<think>\nThe user wants weather and a sum.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Seoul\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 2, \"b\": 3}}\n</tool_call>".into();
    let app = app(b.clone());
    let body = json!({"messages": [{"role": "user", "content": "Weather in Seoul, and 2+3?"}], "tools": tools(), "temperature": 0});
    let ((full, f1), (streamed, f2)) = both(&app, body).await;
    assert_eq!((f1.as_str(), f2.as_str()), ("tool_calls", "tool_calls"));
    assert_eq!(without_ids(full.clone()), without_ids(streamed));
    assert_eq!(full["content"], "");
    assert_eq!(full["reasoning_content"], "The user wants weather and a sum.");
    let calls = full["tool_calls"].as_array().expect("tool calls");
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let args: Value = serde_json::from_str(calls[0]["function"]["arguments"].as_str().expect("string")).expect("JSON");
    assert_eq!(args, json!({"city": "Seoul"}));
    assert!(calls[0]["id"].as_str().is_some_and(|id| id.starts_with("call_")) && calls[0]["id"] != calls[1]["id"]);
    // The template was given the tools (auto: no grammar for a template family).
    let (msgs, t) = b.json_prompt.lock().expect("lock").clone().expect("rendered with tools");
    assert_eq!(t.expect("tools")[0]["function"]["name"], "get_weather");
    assert_eq!(msgs[0]["content"], "Weather in Seoul, and 2+3?");
    assert!(b.grammars.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn tool_results_reach_the_template_and_text_answers_stay_content() {
    let b = Arc::new(Scripted { template: Some(QWEN3_LIKE), ..Default::default() });
    *b.answer.lock().expect("lock") = "<think>5 it is</think>The sum is 5.".into();
    let app = app(b.clone());
    let body = json!({"messages": [
        {"role": "user", "content": "2+3?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_x", "type": "function", "function": {"name": "add", "arguments": "{\"a\": 2, \"b\": 3}"}}]},
        {"role": "tool", "tool_call_id": "call_x", "content": "5"}
    ], "tools": tools()});
    let ((full, f1), (streamed, f2)) = both(&app, body).await;
    assert_eq!((f1.as_str(), f2.as_str()), ("stop", "stop"));
    assert_eq!(full, streamed);
    assert_eq!((full["content"].as_str(), full["reasoning_content"].as_str()), (Some("The sum is 5."), Some("5 it is")));
    assert!(full.get("tool_calls").is_none(), "{full}");
    let (msgs, _) = b.json_prompt.lock().expect("lock").clone().expect("rendered");
    assert_eq!(msgs[1]["tool_calls"][0]["function"]["arguments"], json!({"a": 2, "b": 3}));
    assert_eq!(msgs[1]["tool_calls"][0]["id"], "call_x");
    assert_eq!((msgs[2]["role"].as_str(), msgs[2]["tool_call_id"].as_str(), msgs[2]["name"].as_str()), (Some("tool"), Some("call_x"), Some("add")));
}

#[tokio::test]
async fn forced_calls_are_grammar_constrained_in_the_family_format() {
    let b = Arc::new(Scripted { template: Some(QWEN3_LIKE), ..Default::default() });
    *b.answer.lock().expect("lock") = "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 1}}\n</tool_call>".into();
    let app = app(b.clone());
    let body = json!({"messages": [{"role": "user", "content": "1+1"}], "tools": tools(),
        "tool_choice": {"type": "function", "function": {"name": "add"}}});
    let ((full, f1), _) = both(&app, body).await;
    assert_eq!(f1, "tool_calls");
    assert_eq!(full["tool_calls"][0]["function"]["name"], "add");
    let g = b.grammars.lock().expect("lock").clone();
    let GrammarSpec::Lark(lark) = &g[0] else { panic!("a Lark grammar, got {g:?}") };
    assert!(lark.starts_with("start: block\n") && lark.contains("%json") && lark.contains("\\\"add\\\"") && !lark.contains("get_weather"), "{lark}");
    assert!(b.submitted.lock().expect("lock").iter().all(|&g| g), "every sequence carries the grammar");
}

#[tokio::test]
async fn generic_envelope_for_templates_without_tools() {
    let b = Arc::new(Scripted { template: None, ..Default::default() });
    *b.answer.lock().expect("lock") = "{\"tool_calls\": [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}]}".into();
    let app = app(b.clone());
    let body = json!({"messages": [{"role": "system", "content": "Be helpful."}, {"role": "user", "content": "Weather in Paris?"}], "tools": tools(), "tool_choice": "required", "parallel_tool_calls": false});
    let ((full, f1), (streamed, f2)) = both(&app, body).await;
    assert_eq!((f1.as_str(), f2.as_str()), ("tool_calls", "tool_calls"));
    assert_eq!(without_ids(full.clone()), without_ids(streamed));
    // The arguments are the model's own JSON text (streamed in pieces as it is written).
    assert_eq!(full["tool_calls"][0]["function"]["arguments"], "{\"city\": \"Paris\"}");
    // Tools described in the system turn; the envelope grammar allows calls only, one of them.
    let plain = b.plain_prompt.lock().expect("lock").clone();
    assert!(plain[0].content.starts_with("Be helpful.\n\nYou can call these tools:") && plain[0].content.contains("get_weather"), "{plain:?}");
    let g = b.grammars.lock().expect("lock").clone();
    let GrammarSpec::Lark(lark) = &g[0] else { panic!("Lark") };
    assert!(lark.starts_with("start: calls\n") && !lark.contains("response") && !lark.contains("call)*"), "{lark}");
    // auto: a direct answer comes back as content.
    *b.answer.lock().expect("lock") = "{\"response\": \"It is sunny.\"}".into();
    let body = json!({"messages": [{"role": "user", "content": "Weather?"}], "tools": tools()});
    let ((full, f1), (streamed, _)) = both(&app, body).await;
    assert_eq!((full["content"].as_str(), f1.as_str()), (Some("It is sunny."), "stop"));
    assert_eq!(full, streamed);
}

#[tokio::test]
async fn response_formats_compile_and_bad_schemas_are_named() {
    let b = Arc::new(Scripted::default());
    *b.answer.lock().expect("lock") = "{\"a\": 1}".into();
    let app = app(b.clone());
    let m = json!([{"role": "user", "content": "x"}]);
    let body = json!({"messages": m, "response_format": {"type": "json_schema", "json_schema": {"name": "t", "strict": true, "schema": {"type": "object", "properties": {"a": {"type": "integer"}}}}}});
    let ((full, _), _) = both(&app, body).await;
    assert_eq!(full["content"], "{\"a\": 1}");
    let g = b.grammars.lock().expect("lock").clone();
    assert_eq!(g[0], GrammarSpec::JsonSchema { schema: json!({"type": "object", "properties": {"a": {"type": "integer"}}}), strict: true });
    let (s, v) = send_json(&app, post("/v1/chat/completions", &json!({"messages": m, "response_format": {"type": "json_object"}}).to_string())).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(b.grammars.lock().expect("lock").last(), Some(&GrammarSpec::JsonObject));
    let (s, v) = send_json(&app, post("/v1/chat/completions", &json!({"messages": m, "response_format": {"type": "json_schema", "json_schema": {"name": "t", "schema": {"x-unsupported": 1}}}}).to_string())).await;
    assert_eq!((s, v["error"]["param"].as_str()), (400, Some("response_format")), "{v}");
    assert!(v["error"]["message"].as_str().is_some_and(|m| m.contains("x-unsupported")), "{v}");
}

/// gpt-oss's harmony template (the channel tags and a `tools` branch are what the chat core reads).
const HARMONY_LIKE: &str = "{%- if tools %}namespace functions {}{% endif %}\
    {%- for m in messages %}<|start|>{{ m.role }}<|channel|>final<|message|>{{ m.content }}<|end|>{% endfor %}<|start|>assistant";

#[tokio::test]
async fn harmony_tool_calls_are_read_from_the_commentary_channel() {
    let b = Arc::new(Scripted { template: Some(HARMONY_LIKE), ..Default::default() });
    // gpt-oss's own spelling of a call; generation ends at `<|call|>`, which is not text.
    *b.answer.lock().expect("lock") = "<|channel|>analysis<|message|>Need the weather tool.<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\": \"Seoul\"}".into();
    let app = app(b.clone());
    let body = json!({"messages": [{"role": "user", "content": "Weather in Seoul?"}], "tools": tools()});
    let ((full, f1), (streamed, f2)) = both(&app, body).await;
    assert_eq!((f1.as_str(), f2.as_str()), ("tool_calls", "tool_calls"));
    assert_eq!(without_ids(full.clone()), without_ids(streamed));
    assert_eq!(full["content"], "");
    assert_eq!(full["reasoning_content"], "Need the weather tool.");
    let calls = full["tool_calls"].as_array().expect("tool calls");
    assert_eq!(calls.len(), 1, "{full}");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let args: Value = serde_json::from_str(calls[0]["function"]["arguments"].as_str().expect("string")).expect("JSON");
    assert_eq!(args, json!({"city": "Seoul"}));
    // The template renders the tools itself; `auto` needs no grammar.
    let (_, t) = b.json_prompt.lock().expect("lock").clone().expect("rendered with tools");
    assert_eq!(t.expect("tools")[1]["function"]["name"], "add");
    assert!(b.grammars.lock().expect("lock").is_empty());

    // The follow-up: the call (with its reasoning, as gpt-oss's template reads it from
    // `thinking`) and the result go back to the template; a final answer is content.
    *b.answer.lock().expect("lock") = "<|channel|>final<|message|>It is 3 degrees in Seoul.<|return|>".into();
    let body = json!({"messages": [
        {"role": "user", "content": "Weather in Seoul?"},
        {"role": "assistant", "content": "", "reasoning_content": "Need the weather tool.", "tool_calls": [{"id": "call_w", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Seoul\"}"}}]},
        {"role": "tool", "tool_call_id": "call_w", "content": "{\"temp\": 3}"}
    ], "tools": tools()});
    let ((full, f1), (streamed, _)) = both(&app, body).await;
    assert_eq!(f1, "stop");
    assert_eq!(full, streamed);
    assert_eq!(full["content"], "It is 3 degrees in Seoul.");
    assert!(full.get("tool_calls").is_none(), "{full}");
    let (msgs, _) = b.json_prompt.lock().expect("lock").clone().expect("rendered");
    assert_eq!(msgs[1]["thinking"], "Need the weather tool.");
    assert_eq!(msgs[1]["tool_calls"][0]["function"]["arguments"], json!({"city": "Seoul"}));
}

#[tokio::test]
async fn harmony_forced_calls_use_the_call_message_grammar() {
    let b = Arc::new(Scripted { template: Some(HARMONY_LIKE), ..Default::default() });
    // What the grammar lets the model write after the prompt's `<|start|>assistant`.
    *b.answer.lock().expect("lock") = " to=functions.add<|channel|>commentary json<|message|>{\"a\": 1, \"b\": 2}".into();
    let app = app(b.clone());
    let body = json!({"messages": [{"role": "user", "content": "1+2"}], "tools": tools(), "tool_choice": "required"});
    let ((full, f1), (streamed, _)) = both(&app, body).await;
    assert_eq!(f1, "tool_calls");
    assert_eq!(without_ids(full.clone()), without_ids(streamed));
    assert_eq!(full["tool_calls"][0]["function"]["name"], "add");
    assert_eq!(full["tool_calls"][0]["function"]["arguments"], "{\"a\": 1, \"b\": 2}");
    let g = b.grammars.lock().expect("lock").clone();
    let GrammarSpec::Lark(lark) = &g[0] else { panic!("a Lark grammar, got {g:?}") };
    assert!(lark.starts_with("start: call\n") && lark.contains(" to=functions.get_weather<|channel|>commentary json<|message|>"), "{lark}");
}

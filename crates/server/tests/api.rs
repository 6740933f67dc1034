//! Every route and every error through the real router (`oneshot`), over the scripted backend.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use common::{get, post, send, send_json, sse_data, Fake, ANSWER};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

fn app() -> (Arc<Fake>, axum::Router) {
    let fake = Arc::new(Fake::default());
    (fake.clone(), server::app(common::state(fake, &[])))
}

const HI: &str = r#"{"model": "smollm2", "messages": [{"role": "user", "content": "hi"}]"#;

fn chat_body(extra: &str) -> String {
    if extra.is_empty() { format!("{HI}}}") } else { format!("{HI}, {extra}}}") }
}

fn assert_error(status: u16, body: &Value, want_status: u16, param: Option<&str>, code: Option<&str>) {
    assert_eq!(status, want_status, "{body}");
    let e = &body["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(e["type"].is_string(), "{body}");
    assert_eq!(e["param"].as_str(), param, "{body}");
    assert_eq!(e["code"].as_str(), code, "{body}");
}

#[tokio::test]
async fn chat_non_streaming() {
    let (fake, app) = app();
    let (s, v) = send_json(&app, post("/v1/chat/completions", &chat_body(r#""seed": 5, "temperature": 0.5"#))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().is_some_and(|id| id.starts_with("chatcmpl-")));
    assert_eq!(v["model"], "smollm2");
    let c = &v["choices"][0];
    assert_eq!(c["index"], 0);
    assert_eq!(c["message"]["role"], "assistant");
    assert_eq!(c["message"]["content"], ANSWER);
    assert_eq!(c["finish_reason"], "stop");
    assert!(c["logprobs"].is_null());
    let n = ANSWER.len();
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 2, "completion_tokens": n, "total_tokens": 2 + n, "prompt_tokens_details": {"cached_tokens": 1},
               "energy": {"joules": (2 + n) as f64 / 1000.0, "method": "estimate"}})
    );
    let sub = fake.s.submitted.lock().expect("lock");
    assert_eq!(sub[0].prompt, vec![104, 105]);
    assert_eq!(sub[0].params.sampling.seed, Some(5));
    assert_eq!(sub[0].params.sampling.temperature, Some(0.5));
    // No max_tokens: bounded by the context.
    assert_eq!(sub[0].params.max_tokens, 64);
}

#[tokio::test]
async fn max_tokens_reaches_length_and_n_offsets_seeds() {
    let (fake, app) = app();
    let (s, v) = send_json(&app, post("/v1/chat/completions", &chat_body(r#""max_tokens": 5, "n": 3, "seed": 7"#))).await;
    assert_eq!(s, 200, "{v}");
    let choices = v["choices"].as_array().expect("choices");
    assert_eq!(choices.len(), 3);
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
        assert_eq!(c["message"]["content"], "Hello");
        assert_eq!(c["finish_reason"], "length");
    }
    // The prompt is counted once, completions summed.
    assert_eq!(v["usage"]["prompt_tokens"], 2);
    assert_eq!(v["usage"]["completion_tokens"], 15);
    let mut seeds: Vec<_> = fake.s.submitted.lock().expect("lock").iter().map(|r| r.params.sampling.seed).collect();
    seeds.sort();
    assert_eq!(seeds, vec![Some(7), Some(8), Some(9)]);
}

#[tokio::test]
async fn logprobs_one_entry_per_token_with_real_bytes() {
    let (_, app) = app();
    let (s, v) = send_json(&app, post("/v1/chat/completions", &chat_body(r#""logprobs": true, "top_logprobs": 2"#))).await;
    assert_eq!(s, 200, "{v}");
    let content = v["choices"][0]["logprobs"]["content"].as_array().expect("content");
    assert_eq!(content.len(), ANSWER.len(), "one entry per generated token");
    let bytes: Vec<u8> =
        content.iter().flat_map(|e| e["bytes"].as_array().expect("bytes").iter().map(|b| b.as_u64().expect("u8") as u8)).collect();
    assert_eq!(bytes, ANSWER.as_bytes());
    let last = content.last().expect("entries");
    assert_eq!(last["token"], "\u{FFFD}", "an incomplete UTF-8 piece reads lossy");
    assert_eq!(last["logprob"], -0.25);
    assert_eq!(last["top_logprobs"], json!([{"token": "a", "logprob": -1.0, "bytes": [97]}, {"token": "b", "logprob": -2.0, "bytes": [98]}]));
}

#[tokio::test]
async fn chat_stream_is_openai_sse() {
    let (_, app) = app();
    let req = post("/v1/chat/completions", &chat_body(r#""stream": true, "stream_options": {"include_usage": true}"#));
    let resp = app.clone().oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().expect("ascii").starts_with("text/event-stream"));
    let body = String::from_utf8(resp.into_body().collect().await.expect("body").to_bytes().to_vec()).expect("utf-8");
    let data = sse_data(&body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).expect("chunk JSON")).collect();
    let first = &chunks[0];
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(first["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
    let id = first["id"].clone();
    let mut text = String::new();
    let mut finish = Vec::new();
    for c in &chunks {
        assert_eq!(c["id"], id, "one id for the whole stream");
        if c["choices"].as_array().expect("choices").is_empty() {
            continue;
        }
        assert!(c["usage"].is_null(), "usage is null on choice chunks: {c}");
        let ch = &c["choices"][0];
        text.push_str(ch["delta"]["content"].as_str().unwrap_or(""));
        if let Some(f) = ch["finish_reason"].as_str() {
            finish.push(f.to_string());
            assert_eq!(ch["delta"], json!({}));
        }
    }
    assert_eq!(text, ANSWER);
    assert_eq!(finish, vec!["stop"]);
    let usage = chunks.last().expect("usage chunk");
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], ANSWER.len());
    assert_eq!(usage["usage"]["total_tokens"], ANSWER.len() + 2);
}

#[tokio::test]
async fn stream_without_usage_has_no_usage_field_and_logprobs_per_token() {
    let (_, app) = app();
    let (s, body) = send(&app, post("/v1/chat/completions", &chat_body(r#""stream": true, "logprobs": true, "n": 2"#))).await;
    assert_eq!(s, 200);
    let data = sse_data(&body);
    let mut per_choice = [0usize; 2];
    let mut text = [String::new(), String::new()];
    for d in &data[..data.len() - 1] {
        let c: Value = serde_json::from_str(d).expect("json");
        assert!(c.get("usage").is_none(), "{c}");
        let ch = &c["choices"][0];
        let i = ch["index"].as_u64().expect("index") as usize;
        text[i].push_str(ch["delta"]["content"].as_str().unwrap_or(""));
        if let Some(lp) = ch["logprobs"]["content"].as_array() {
            per_choice[i] += lp.len();
        }
    }
    assert_eq!(per_choice, [ANSWER.len(); 2], "one log-prob entry per token, also the incomplete-UTF-8 ones");
    assert_eq!(text, [ANSWER.to_string(), ANSWER.to_string()]);
}

#[tokio::test]
async fn completions_plain_list_and_stream() {
    let (fake, app) = app();
    let (s, v) = send_json(&app, post("/v1/completions", r#"{"model": "SmolLM2 135M", "prompt": ["ab", "cde"], "logprobs": 1, "max_tokens": 8}"#)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"].as_array().expect("choices").len(), 2);
    assert_eq!(v["choices"][1]["text"], "Hello, w");
    assert_eq!(v["choices"][1]["finish_reason"], "length");
    let lp = &v["choices"][0]["logprobs"];
    assert_eq!(lp["tokens"].as_array().expect("tokens").len(), 8);
    assert_eq!(lp["text_offset"][2], 2);
    assert_eq!(lp["top_logprobs"][0], json!({"a": -1.0}));
    assert_eq!(v["usage"]["prompt_tokens"], 5);
    assert_eq!(fake.s.submitted.lock().expect("lock")[0].params.top_logprobs, Some(1));

    let (s, body) = send(&app, post("/v1/completions", r#"{"prompt": "x", "stream": true, "max_tokens": 100}"#)).await;
    assert_eq!(s, 200);
    let data = sse_data(&body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let mut text = String::new();
    for d in &data[..data.len() - 1] {
        let c: Value = serde_json::from_str(d).expect("json");
        assert_eq!(c["object"], "text_completion");
        text.push_str(c["choices"][0]["text"].as_str().expect("text"));
    }
    assert_eq!(text, ANSWER);
}

#[tokio::test]
async fn models_and_health() {
    let (_, app) = app();
    let (s, v) = send_json(&app, get("/v1/models")).await;
    assert_eq!(s, 200);
    assert_eq!(v["object"], "list");
    let ids: Vec<_> = v["data"].as_array().expect("data").iter().map(|m| m["id"].as_str().expect("id").to_string()).collect();
    assert_eq!(ids, vec!["smollm2", "SmolLM2 135M"]);
    let (s, v) = send_json(&app, get("/v1/models/smollm2")).await;
    assert_eq!((s, v["object"].as_str()), (200, Some("model")));
    let (s, v) = send_json(&app, get("/v1/models/gpt-4")).await;
    assert_error(s, &v, 404, Some("model"), Some("model_not_found"));
    let (s, v) = send_json(&app, get("/health")).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")));
}

#[tokio::test]
async fn errors_have_openai_shape_and_status() {
    let (fake, app) = app();
    // (request, status, param, code)
    type Case = (Request<Body>, u16, Option<&'static str>, Option<&'static str>);
    let cases: Vec<Case> = vec![
        (post("/v1/chat/completions", "{not json"), 400, None, None),
        (post("/v1/chat/completions", r#"{"messages": "hi"}"#), 400, Some("messages"), None),
        (post("/v1/chat/completions", &chat_body(r#""temperature": 3"#)), 400, Some("temperature"), None),
        (post("/v1/chat/completions", &chat_body(r#""top_logprobs": 30, "logprobs": true"#)), 400, Some("top_logprobs"), None),
        (post("/v1/chat/completions", &chat_body(r#""stop": ["1","2","3","4","5"]"#)), 400, Some("stop"), None),
        (post("/v1/chat/completions", r#"{"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}"#), 404, Some("model"), Some("model_not_found")),
        (post("/v1/chat/completions", r#"{"messages": [{"role": "user", "content": "RAISE"}]}"#), 400, Some("messages"), None),
        (post("/v1/completions", r#"{"prompt": [5, 999]}"#), 400, Some("prompt"), None),
        (post("/v1/completions", &format!(r#"{{"prompt": "{}"}}"#, "x".repeat(80))), 400, Some("messages"), Some("context_length_exceeded")),
        (post("/v1/completions", &format!(r#"{{"prompt": "{}"}}"#, "x".repeat(100_000))), 413, None, Some("payload_too_large")),
        (get("/v1/nothing"), 404, None, Some("unknown_url")),
        (get("/v1/chat/completions"), 405, None, Some("method_not_allowed")),
    ];
    for (req, status, param, code) in cases {
        let what = format!("{} {}", req.method(), req.uri());
        let (s, v) = send_json(&app, req).await;
        assert_error(s, &v, status, param, code);
        assert_ne!(s, 500, "{what}");
    }
    // 64 bytes pass the byte bound (64 tokens x 1 byte) but not the context (63 + 1 generated).
    let (s, v) = send_json(&app, post("/v1/completions", &format!(r#"{{"prompt": "{}"}}"#, "x".repeat(64)))).await;
    let msg = v["error"]["message"].as_str().expect("message");
    // Tokenizing stopped once the prompt could not fit: the lower bound is named.
    assert!(s == 400 && msg.contains("at least 64 tokens") && msg.contains("is 64 tokens"), "both numbers: {msg}");
    let (s, v) = send_json(&app, post("/v1/completions", &format!(r#"{{"prompt": "{}"}}"#, "x".repeat(80)))).await;
    let msg = v["error"]["message"].as_str().expect("message");
    assert!(s == 400 && msg.contains("80 bytes") && msg.contains("is 64 tokens"), "refused by its bytes: {msg}");
    assert!(fake.s.submitted.lock().expect("lock").is_empty(), "no invalid request reached the engine");

    fake.s.queue_full.store(true, Ordering::SeqCst);
    let (s, v) = send_json(&app, post("/v1/chat/completions", &chat_body(""))).await;
    assert_error(s, &v, 429, None, Some("rate_limit_exceeded"));
}

#[tokio::test]
async fn api_keys_guard_every_route_but_health() {
    let fake = Arc::new(Fake::default());
    let app = server::app(common::state(fake, &["sk-one", "sk-two"]));
    let with_key = |mut r: Request<Body>, k: &str| {
        r.headers_mut().insert("authorization", format!("Bearer {k}").parse().expect("header"));
        r
    };
    for path in ["/v1/models", "/metrics", "/v1/models/smollm2"] {
        let (s, v) = send_json(&app, get(path)).await;
        assert_error(s, &v, 401, None, Some("invalid_api_key"));
        let (s, v) = send_json(&app, with_key(get(path), "sk-wrong")).await;
        assert_error(s, &v, 401, None, Some("invalid_api_key"));
    }
    let (s, _) = send_json(&app, post("/v1/chat/completions", &chat_body(""))).await;
    assert_eq!(s, 401);
    let (s, v) = send_json(&app, with_key(post("/v1/chat/completions", &chat_body("")), "sk-two")).await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = send(&app, with_key(get("/metrics"), "sk-one")).await;
    assert_eq!(s, 200);
    let (s, _) = send(&app, get("/health")).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn metrics_count_requests_tokens_and_latency() {
    let (_, app) = app();
    send(&app, post("/v1/chat/completions", &chat_body(""))).await;
    send(&app, post("/v1/chat/completions", &chat_body(r#""temperature": 9"#))).await;
    send(&app, get("/v1/nope")).await;
    let (s, text) = send(&app, get("/metrics")).await;
    assert_eq!(s, 200);
    let has = |l: &str| assert!(text.lines().any(|x| x == l), "missing `{l}` in\n{text}");
    has("daehwa_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 1");
    has("daehwa_requests_total{route=\"/v1/chat/completions\",status=\"400\"} 1");
    has("daehwa_requests_total{route=\"other\",status=\"404\"} 1");
    has(&format!("daehwa_generated_tokens_total {}", ANSWER.len()));
    has("daehwa_prompt_tokens_total 2");
    has("daehwa_time_to_first_token_seconds_count 1");
    has(&format!("daehwa_inter_token_latency_seconds_count {}", ANSWER.len() - 1));
    has("daehwa_kv_blocks_total 10");
}

#[tokio::test]
async fn client_leaving_mid_stream_cancels_the_sequence() {
    let (fake, app) = app();
    fake.s.delay_ms.store(20, Ordering::SeqCst);
    let resp = app.clone().oneshot(post("/v1/chat/completions", &chat_body(r#""stream": true"#))).await.expect("infallible");
    let mut body = resp.into_body();
    // Read the role chunk and one token, then hang up.
    let mut seen = String::new();
    while !seen.contains("\"content\":\"H\"") {
        let frame = body.frame().await.expect("more frames").expect("frame");
        if let Ok(d) = frame.into_data() {
            seen.push_str(std::str::from_utf8(&d).expect("utf-8"));
        }
    }
    drop(body);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while fake.s.cancelled.load(Ordering::SeqCst) == 0 {
        assert!(std::time::Instant::now() < deadline, "the backend never saw the client leave");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(fake.s.running.load(Ordering::SeqCst), 0);
}

//! Issue 12, items 1 and 9 over the real router (`oneshot`) and the scripted backend: nothing a
//! client sends is silently ignored, a full queue says when to retry, queue places count
//! requests, and prompts are bounded before tokenization.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{post, send_json, Fake};
use serde_json::{json, Value};
use tower::ServiceExt;

fn error_param(v: &Value) -> Option<&str> {
    v["error"]["param"].as_str()
}

#[tokio::test]
async fn unimplemented_parameters_are_refused_by_name() {
    let fake = Arc::new(Fake::default());
    let app = server::app(common::state(fake.clone(), &[]));
    let chat = |extra: Value| {
        let mut b = json!({"messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().expect("object") {
            b[k] = v.clone();
        }
        post("/v1/chat/completions", &b.to_string())
    };
    let completion = |extra: Value| {
        let mut b = json!({"prompt": "hi", "max_tokens": 2});
        for (k, v) in extra.as_object().expect("object") {
            b[k] = v.clone();
        }
        post("/v1/completions", &b.to_string())
    };
    let refused = [
        (
            chat(json!({"tools": [{"type": "function", "function": {"name": "get_weather"}}]})),
            "tools",
        ),
        (
            chat(json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}})),
            "response_format",
        ),
        // logit_bias is implemented: a bias outside -100..100 or an id outside the vocabulary is
        // refused by name.
        (chat(json!({"logit_bias": {"15339": 100}})), "logit_bias"),
        (chat(json!({"logit_bias": {"1": 150}})), "logit_bias"),
        (chat(json!({"cache_prompt": true})), "cache_prompt"),
        (
            chat(json!({"messages": [{"role": "user", "content": "hi", "weight": 2}]})),
            "messages[0].weight",
        ),
        (completion(json!({"logit_bias": {"1": -100.5}})), "logit_bias"),
        (completion(json!({"n_predict": 5})), "n_predict"),
        (completion(json!({"best_of": 4})), "best_of"),
    ];
    for (req, param) in refused {
        let (s, v) = send_json(&app, req).await;
        assert_eq!((s, error_param(&v)), (400, Some(param)), "{v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(param)),
            "{v}"
        );
    }
    assert!(
        fake.s.submitted.lock().expect("lock").is_empty(),
        "a refused request reached the engine"
    );
    // What OpenAI's SDKs may send as null, and harmless bookkeeping, still pass.
    let accepted = [
        chat(
            json!({"tools": null, "tool_choice": null, "response_format": null, "logit_bias": null, "user": "u-1",
            "metadata": {"team": "a"}, "store": false, "service_tier": "auto", "stream_options": null, "n": 1,
            "parallel_tool_calls": null, "seed": null}),
        ),
        chat(
            json!({"response_format": {"type": "text"}, "tools": [], "tool_choice": "none", "logit_bias": {}}),
        ),
        completion(
            json!({"logit_bias": null, "user": "u", "best_of": 1, "suffix": null, "echo": false}),
        ),
    ];
    for req in accepted {
        let (s, v) = send_json(&app, req).await;
        assert_eq!(s, 200, "{v}");
    }
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after() {
    let fake = Arc::new(Fake::default());
    let app = server::app(common::state(fake.clone(), &[]));
    fake.s.queue_full.store(true, Ordering::SeqCst);
    let resp = app
        .clone()
        .oneshot(post(
            "/v1/chat/completions",
            r#"{"messages": [{"role": "user", "content": "x"}]}"#,
        ))
        .await
        .expect("infallible");
    assert_eq!(resp.status(), 429);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
}

#[tokio::test]
async fn queue_places_count_requests_not_prompts() {
    let fake = Arc::new(Fake::default());
    // Every sequence sends its first token after 400 ms: until then it is waiting to start.
    fake.s.delay_ms.store(400, Ordering::SeqCst);
    let mut st = common::state(fake.clone(), &[]);
    let mut cfg = (*st.config).clone();
    cfg.queue = 1;
    st = server::AppState::new(st.models.default_backend().expect("the model"), cfg);
    let app = server::app(st.clone());
    // One request with 16 prompts x n=4 = 64 sequences takes one place of a queue of one.
    let prompts: Vec<String> = (0..16).map(|i| format!("prompt {i}")).collect();
    let body = json!({"prompt": prompts, "n": 4, "max_tokens": 1, "stream": true}).to_string();
    let resp = app
        .clone()
        .oneshot(post("/v1/completions", &body))
        .await
        .expect("infallible");
    assert_eq!(resp.status(), 200);
    assert_eq!(fake.s.submitted.lock().expect("lock").len(), 64);
    assert_eq!(st.admission.waiting(), 1);
    // The queue (one request) is full now: the next request is turned away, with Retry-After.
    let second = app
        .clone()
        .oneshot(post(
            "/v1/completions",
            r#"{"prompt": "x", "max_tokens": 1}"#,
        ))
        .await
        .expect("infallible");
    assert_eq!(second.status(), 429);
    assert_eq!(
        second
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    // Once every sequence of the first has started, its place is free again.
    let collected = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    assert!(!collected.is_empty());
    assert_eq!(st.admission.waiting(), 0);
    let (s, v) = send_json(
        &app,
        post("/v1/completions", r#"{"prompt": "x", "max_tokens": 1}"#),
    )
    .await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test]
async fn prompts_beyond_the_context_in_bytes_are_refused_before_tokenizing() {
    let fake = Arc::new(Fake::default());
    let mut st = common::state(fake.clone(), &[]);
    let mut cfg = (*st.config).clone();
    cfg.body_limit = 32 << 20;
    st = server::AppState::new(st.models.default_backend().expect("the model"), cfg);
    let app = server::app(st);
    // 15 MiB against a 64-token context of one-byte tokens.
    let big = "x".repeat(15 << 20);
    let t = Instant::now();
    let chat =
        json!({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": big}]})
            .to_string();
    let (s, v) = send_json(&app, post("/v1/chat/completions", &chat)).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("context_length_exceeded")),
        "{v}"
    );
    let completion = json!({"prompt": ["short", big]}).to_string();
    let (s, v) = send_json(&app, post("/v1/completions", &completion)).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("context_length_exceeded")),
        "{v}"
    );
    assert_eq!(
        fake.s.tokenized.load(Ordering::SeqCst),
        0,
        "the prompt was tokenized"
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    // At the bound itself (64 bytes of 64 one-byte tokens) the tokenizer decides.
    let (s, v) = send_json(
        &app,
        post(
            "/v1/completions",
            &json!({"prompt": "y".repeat(64)}).to_string(),
        ),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("context_length_exceeded")),
        "{v}"
    );
    assert_eq!(fake.s.tokenized.load(Ordering::SeqCst), 1);
    // Long stop strings are refused by name.
    let (s, v) = send_json(
        &app,
        post(
            "/v1/chat/completions",
            &json!({"messages": [{"role": "user", "content": "x"}], "stop": "z".repeat(10_000)})
                .to_string(),
        ),
    )
    .await;
    assert_eq!((s, error_param(&v)), (400, Some("stop")), "{v}");
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_cut_with_408() {
    let fake = Arc::new(Fake::default());
    let st = common::state(fake, &[]);
    let mut cfg = (*st.config).clone();
    cfg.connections.body_timeout = Duration::from_millis(300);
    let app = server::app(server::AppState::new(st.models.default_backend().expect("the model"), cfg));
    // One byte now, then nothing: a client trickling its body.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<axum::body::Bytes, std::io::Error>>(1);
    tx.send(Ok(axum::body::Bytes::from_static(b"{"))).await.expect("send");
    let body = axum::body::Body::from_stream(tokio_stream_from(rx));
    let req = axum::http::Request::post("/v1/chat/completions").header("content-length", "100").body(body).expect("request");
    let t = Instant::now();
    let resp = tokio::time::timeout(Duration::from_secs(5), app.clone().oneshot(req)).await.expect("answered in time").expect("infallible");
    assert_eq!(resp.status(), 408);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    drop(tx);
    let (s, text) = common::send(&app, axum::http::Request::get("/metrics").body(axum::body::Body::empty()).expect("req")).await;
    assert_eq!(s, 200);
    assert!(text.lines().any(|l| l == "daehwa_rejections_total{reason=\"timeout\"} 1"), "{text}");
}

/// A stream over an mpsc receiver (what tokio-stream's `ReceiverStream` does).
fn tokio_stream_from<T: Send + 'static>(rx: tokio::sync::mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_rejections_are_counted() {
    let fake = Arc::new(Fake::default());
    let app = server::app(common::state(fake.clone(), &[]));
    let resp = app.clone().oneshot(post("/v1/chat/completions", r#"{"messages": [{"role": "user", "content": "x"}]}"#)).await.expect("infallible");
    let id = resp.headers().get("x-request-id").and_then(|v| v.to_str().ok()).expect("x-request-id").to_string();
    assert_eq!(id.len(), 32, "{id}");
    // A sane id from the client is kept; a forged one (a newline, an escape) is replaced.
    let mut req = post("/v1/models", "");
    *req.method_mut() = axum::http::Method::GET;
    req.headers_mut().insert("x-request-id", "trace-42".parse().expect("header"));
    let resp = app.clone().oneshot(req).await.expect("infallible");
    assert_eq!(resp.headers()["x-request-id"], "trace-42");
    let mut req = common::get("/nowhere");
    req.headers_mut().insert("x-request-id", axum::http::HeaderValue::from_bytes(b"forged id \"x\" \xff").expect("header"));
    let resp = app.clone().oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), 404);
    let given = resp.headers()["x-request-id"].to_str().expect("ascii");
    assert!(given.len() == 32 && given.bytes().all(|b| b.is_ascii_hexdigit()), "{given}");
    // Rejections by reason.
    send_json(&app, post("/v1/chat/completions", r#"{"messages": [{"role": "user", "content": "x"}], "tools": [{}]}"#)).await;
    send_json(&app, post("/v1/completions", &json!({"prompt": "z".repeat(100)}).to_string())).await;
    send_json(&app, post("/v1/completions", &json!({"prompt": "z".repeat(100_000)}).to_string())).await;
    fake.s.queue_full.store(true, Ordering::SeqCst);
    send_json(&app, post("/v1/completions", r#"{"prompt": "x"}"#)).await;
    let (s, text) = common::send(&app, common::get("/metrics")).await;
    assert_eq!(s, 200);
    for (reason, n) in [("invalid", 1), ("prompt_too_long", 1), ("body_too_large", 1), ("queue_full", 1), ("connections", 0)] {
        let line = format!("daehwa_rejections_total{{reason=\"{reason}\"}} {n}");
        assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
    }
}

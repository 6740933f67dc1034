//! Fuzzing the request JSON of `/v1/chat/completions`, `/v1/completions`, `/v1/responses` and
//! `/v1/messages` (issue 12, "How it
//! is checked"): valid requests mutated (wrong types, huge numbers, deep nesting, huge strings,
//! unknown fields, invalid UTF-8, truncation) go through the real router over the scripted
//! backend. Never a panic, never a 5xx, and the memory a request allocates at its peak stays
//! within a bound proportional to its body, measured by a counting global allocator.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::Fake;
use http_body_util::BodyExt;
use proptest::prelude::*;
use serde_json::{json, Value};
use tower::ServiceExt;

/// Counts live heap bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded to the system allocator with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's pointer, layout and size.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let now = LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size - layout.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Peak heap growth allowed for a request: this many times its body, plus a constant for the
/// router, the response and the scripted backend's threads.
const PER_BODY_BYTE: usize = 24;
const CONSTANT: usize = 4 << 20;

fn chat_seed() -> Value {
    json!({
        "model": "smollm2",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "again"},
        ],
        "max_tokens": 4, "temperature": 0.5, "top_p": 0.9, "n": 2, "stop": ["\n"], "seed": 7,
        "logprobs": true, "top_logprobs": 2, "stream": false, "user": "u",
    })
}

fn completion_seed() -> Value {
    json!({"model": "smollm2", "prompt": ["a", "b"], "max_tokens": 3, "n": 1, "logprobs": 1, "stop": "x", "echo": false})
}

fn responses_seed() -> Value {
    json!({
        "model": "smollm2",
        "instructions": "be brief",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hello", "annotations": []}]},
            {"role": "user", "content": "again"},
        ],
        "tool_choice": "none",
        "max_output_tokens": 4, "temperature": 0.5, "top_p": 0.9, "store": false, "metadata": {"k": "v"},
    })
}

fn messages_seed() -> Value {
    json!({
        "model": "smollm2",
        "system": [{"type": "text", "text": "be brief"}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "again"},
        ],
        "tool_choice": {"type": "none"},
        "max_tokens": 4, "temperature": 0.5, "stop_sequences": ["\n"],
    })
}

/// A JSON value of any type, including the extremes a parser must survive.
fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        Just(json!(u64::MAX)),
        Just(json!(-1)),
        Just(json!(0)),
        "[a-z\\n\\u{1b}<>|{}]{0,12}".prop_map(Value::String),
        (0usize..200_000).prop_map(|n| Value::String("x".repeat(n))),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An array nested `depth` deep (serde_json refuses past 128).
fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(1), |v, _| Value::Array(vec![v]))
}

const FIELDS: &[&str] = &[
    "model", "messages", "prompt", "stream", "stream_options", "max_tokens", "max_completion_tokens", "temperature",
    "top_p", "n", "stop", "seed", "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs", "user", "top_k",
    "min_p", "repeat_penalty", "ignore_eos", "tools", "tool_choice", "response_format", "logit_bias", "best_of", "echo",
    "suffix", "metadata", "unknown_field", "cache_prompt",
];

#[derive(Clone, Debug)]
enum Mutation {
    Set(usize, Value),
    Remove(usize),
    SetMessage(usize, String, Value),
    Nest(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (0..FIELDS.len(), any_value()).prop_map(|(f, v)| Mutation::Set(f, v)),
        1 => (0..FIELDS.len()).prop_map(Mutation::Remove),
        2 => (0usize..4, prop_oneof![Just("role"), Just("content"), Just("name"), Just("tool_calls"), Just("x")], any_value())
            .prop_map(|(i, k, v)| Mutation::SetMessage(i, k.to_string(), v)),
        1 => (0..FIELDS.len(), prop_oneof![Just(10usize), Just(127), Just(129), Just(5000)]).prop_map(|(f, d)| Mutation::Nest(f, d)),
    ]
}

/// What is done to the serialized body.
#[derive(Clone, Debug)]
enum Bytes {
    Keep,
    Truncate(usize),
    InsertInvalidUtf8(usize),
    Garbage(Vec<u8>),
}

fn bytes_mutation() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        6 => Just(Bytes::Keep),
        1 => any::<usize>().prop_map(Bytes::Truncate),
        1 => any::<usize>().prop_map(Bytes::InsertInvalidUtf8),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::Garbage),
    ]
}

fn apply(mut v: Value, muts: &[Mutation]) -> Value {
    for m in muts {
        let Some(obj) = v.as_object_mut() else { return v };
        match m {
            Mutation::Set(f, x) => {
                obj.insert(FIELDS[*f].to_string(), x.clone());
            }
            Mutation::Remove(f) => {
                obj.remove(FIELDS[*f]);
            }
            Mutation::SetMessage(i, k, x) => {
                if let Some(msg) = obj.get_mut("messages").and_then(|m| m.get_mut(*i)).and_then(Value::as_object_mut) {
                    msg.insert(k.clone(), x.clone());
                }
            }
            Mutation::Nest(f, d) => {
                obj.insert(FIELDS[*f].to_string(), nested(*d));
            }
        }
    }
    v
}

fn serialize(v: &Value, b: &Bytes) -> Vec<u8> {
    // serde_json refuses to serialize past its own limits only on parsing; writing any depth works.
    let mut out = serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec());
    match b {
        Bytes::Keep => {}
        Bytes::Truncate(at) => out.truncate(at % (out.len() + 1)),
        Bytes::InsertInvalidUtf8(at) => {
            let at = at % (out.len() + 1);
            out.splice(at..at, [0xff, 0xc3, 0x28]);
        }
        Bytes::Garbage(g) => out = g.clone(),
    }
    out
}

/// Sends one body and checks the answer and the allocation peak.
fn check(rt: &tokio::runtime::Runtime, app: &axum::Router, path: &str, body: Vec<u8>) -> Result<(), TestCaseError> {
    let len = body.len();
    let req = axum::http::Request::post(path)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body))
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let (status, text) = rt.block_on(async {
        let resp = app.clone().oneshot(req).await.expect("infallible");
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    });
    let grown = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    prop_assert!(status < 500, "{path} answered {status}: {text}");
    prop_assert!(matches!(status, 200 | 400 | 404 | 413), "{path} answered {status}: {text}");
    if status != 200 {
        let v: Value = serde_json::from_str(&text).map_err(|e| TestCaseError::fail(format!("not JSON ({e}): {text}")))?;
        prop_assert!(v["error"]["message"].is_string(), "{text}");
    }
    let bound = PER_BODY_BYTE * len + CONSTANT;
    prop_assert!(grown <= bound, "{path}: a {len}-byte body allocated {grown} bytes at its peak (bound {bound})");
    Ok(())
}

fn setup() -> (tokio::runtime::Runtime, axum::Router) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let fake = Arc::new(Fake::default());
    let app = server::app(common::state(fake, &[]));
    (rt, app)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, max_shrink_iters: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn chat_bodies_never_panic_or_fail_the_server(muts in prop::collection::vec(mutation(), 0..5), b in bytes_mutation()) {
        thread_local!(static APP: (tokio::runtime::Runtime, axum::Router) = setup());
        let body = serialize(&apply(chat_seed(), &muts), &b);
        APP.with(|(rt, app)| check(rt, app, "/v1/chat/completions", body))?;
    }

    #[test]
    fn completion_bodies_never_panic_or_fail_the_server(muts in prop::collection::vec(mutation(), 0..5), b in bytes_mutation()) {
        thread_local!(static APP: (tokio::runtime::Runtime, axum::Router) = setup());
        let body = serialize(&apply(completion_seed(), &muts), &b);
        APP.with(|(rt, app)| check(rt, app, "/v1/completions", body))?;
    }

    #[test]
    fn responses_bodies_never_panic_or_fail_the_server(muts in prop::collection::vec(mutation(), 0..5), b in bytes_mutation()) {
        thread_local!(static APP: (tokio::runtime::Runtime, axum::Router) = setup());
        let body = serialize(&apply(responses_seed(), &muts), &b);
        APP.with(|(rt, app)| check(rt, app, "/v1/responses", body))?;
    }

    #[test]
    fn messages_bodies_never_panic_or_fail_the_server(muts in prop::collection::vec(mutation(), 0..5), b in bytes_mutation()) {
        thread_local!(static APP: (tokio::runtime::Runtime, axum::Router) = setup());
        let body = serialize(&apply(messages_seed(), &muts), &b);
        APP.with(|(rt, app)| check(rt, app, "/v1/messages", body))?;
    }
}

#[test]
fn the_seeds_are_valid_requests() {
    let (rt, app) = setup();
    for (path, seed) in [
        ("/v1/chat/completions", chat_seed()),
        ("/v1/completions", completion_seed()),
        ("/v1/responses", responses_seed()),
        ("/v1/messages", messages_seed()),
    ] {
        let body = serde_json::to_vec(&seed).expect("json");
        let req = axum::http::Request::post(path).body(axum::body::Body::from(body)).expect("request");
        let (status, text) = rt.block_on(async {
            let resp = app.clone().oneshot(req).await.expect("infallible");
            let status = resp.status().as_u16();
            let bytes = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            (status, String::from_utf8_lossy(&bytes).into_owned())
        });
        assert_eq!(status, 200, "{path}: {text}");
    }
}

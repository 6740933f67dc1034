//! Stored OpenAI Responses over `daehwa serve` with the real SmolLM2 model: each API key sees only
//! its own responses (404 for another key's id on GET, DELETE and `previous_response_id`), a
//! stored response survives a restart (it lives in the SQLite store), and the stream is named
//! server-sent events (`event: response.created` ... `event: response.completed`, no `[DONE]`).

mod support;

use std::path::Path;
use std::process::Stdio;

use serde_json::{json, Value};
use support::Serve;

fn start(data_dir: &Path) -> Serve {
    let mut cmd = support::serve_command(data_dir);
    cmd.args(["--ctx", "1024", "--max-seqs", "2", "--threads", "2"])
        .args(["--api-key", "key-a", "--api-key", "key-b"])
        .arg("-m")
        .arg(support::smollm2())
        .stderr(Stdio::inherit());
    support::spawn_serve(cmd, String::new)
}

/// A request under `key`; returns the status and the body.
fn call(addr: &str, key: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
    let auth = format!("Bearer {key}");
    support::http(addr, method, path, &[("Authorization", &auth)], &body.map(Value::to_string).unwrap_or_default())
}

fn json_of(status: u16, body: &str, want: u16) -> Value {
    assert_eq!(status, want, "{body}");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn responses_are_per_key_persist_and_stream_as_named_events() {
    let dir = support::scratch("serve-responses");
    let server = start(&dir);
    let a = &server.addr;
    let ask = json!({"input": "Name a fruit that is yellow.", "temperature": 0, "max_output_tokens": 12});
    let (s, b) = call(a, "key-a", "POST", "/v1/responses", Some(&ask));
    let first = json_of(s, &b, 200);
    let id = first["id"].as_str().expect("id").to_string();
    assert!(id.starts_with("resp_") && first["store"] == true, "{first}");
    let text = first["output"][0]["content"][0]["text"].as_str().expect("text").to_string();
    assert!(!text.is_empty());

    // Key A reads it back exactly; key B cannot see, continue or delete it.
    let (s, b) = call(a, "key-a", "GET", &format!("/v1/responses/{id}"), None);
    assert_eq!(json_of(s, &b, 200), first);
    for (method, path, body) in [
        ("GET", format!("/v1/responses/{id}"), None),
        ("DELETE", format!("/v1/responses/{id}"), None),
        ("POST", "/v1/responses".to_string(), Some(json!({"input": "and?", "previous_response_id": id, "max_output_tokens": 2}))),
    ] {
        let (s, b) = call(a, "key-b", method, &path, body.as_ref());
        let e = json_of(s, &b, 404);
        assert_eq!(e["error"]["type"], "invalid_request_error", "{e}");
        assert!(!b.contains(&text), "another key's response leaked: {b}");
    }
    let (s, b) = call(a, "key-b", "POST", "/v1/responses", Some(&json!({"input": "and?", "previous_response_id": id})));
    assert_eq!(json_of(s, &b, 404)["error"]["param"], "previous_response_id");
    // Without a key: 401, as on every /v1 route.
    let (s, _) = call(a, "wrong-key", "GET", &format!("/v1/responses/{id}"), None);
    assert_eq!(s, 401);

    // A follow-up by key A continues the conversation: its prompt holds the first exchange.
    let follow = json!({"input": "Name another one.", "previous_response_id": id, "temperature": 0, "max_output_tokens": 12});
    let (s, b) = call(a, "key-a", "POST", "/v1/responses", Some(&follow));
    let second = json_of(s, &b, 200);
    let (u1, u2) = (&first["usage"], &second["usage"]);
    assert!(u2["input_tokens"].as_u64() > Some(u1["input_tokens"].as_u64().unwrap_or(0) + u1["output_tokens"].as_u64().unwrap_or(0)), "{u1} {u2}");
    assert!(u2["input_tokens_details"]["cached_tokens"].as_u64() >= Some(16), "the first prompt's blocks were not reused: {u2}");

    // Streaming: `event:` names equal to each event's `type`, sequence numbers in order, the
    // final response equal to what GET returns, no `[DONE]`.
    let mut st = ask.clone();
    st["stream"] = json!(true);
    let (s, b) = call(a, "key-a", "POST", "/v1/responses", Some(&st));
    assert_eq!(s, 200, "{b}");
    assert!(!b.contains("[DONE]"), "{b}");
    let mut events = Vec::new();
    let mut name = String::new();
    for line in b.lines() {
        if let Some(n) = line.strip_prefix("event: ") {
            name = n.to_string();
        } else if let Some(d) = line.strip_prefix("data: ") {
            let v: Value = serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}"));
            assert_eq!(v["type"], name.as_str(), "{line}");
            events.push(v);
        }
    }
    assert!(events.len() >= 8, "{b}");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["sequence_number"], i, "{e}");
    }
    assert_eq!(events[0]["type"], "response.created");
    let last = events.last().expect("events");
    let streamed = &last["response"];
    // `response.completed`, or `response.incomplete` for an answer cut at max_output_tokens.
    let want = if streamed["status"] == "incomplete" { "response.incomplete" } else { "response.completed" };
    assert_eq!(last["type"], want, "{last}");
    assert_eq!(streamed["status"], first["status"], "{last}");
    let sid = streamed["id"].as_str().expect("id");
    assert_eq!(streamed["output"][0]["content"][0]["text"].as_str(), Some(text.as_str()), "stream and non-stream differ");
    let (s, b) = call(a, "key-a", "GET", &format!("/v1/responses/{sid}"), None);
    assert_eq!(&json_of(s, &b, 200), streamed);

    // A restart keeps them (the SQLite store), still per key.
    drop(server);
    let server = start(&dir);
    let a = &server.addr;
    let (s, b) = call(a, "key-a", "GET", &format!("/v1/responses/{id}"), None);
    assert_eq!(json_of(s, &b, 200), first);
    let (s, _) = call(a, "key-b", "GET", &format!("/v1/responses/{id}"), None);
    assert_eq!(s, 404);
    let (s, b) = call(a, "key-a", "DELETE", &format!("/v1/responses/{id}"), None);
    assert_eq!(json_of(s, &b, 200), json!({"id": id, "object": "response", "deleted": true}));
    let (s, _) = call(a, "key-a", "GET", &format!("/v1/responses/{id}"), None);
    assert_eq!(s, 404);
    // The follow-up outlives the response it continued.
    let sec = second["id"].as_str().expect("id");
    let (s, b) = call(a, "key-a", "GET", &format!("/v1/responses/{sec}"), None);
    assert_eq!(json_of(s, &b, 200)["previous_response_id"], id.as_str());
}

//! Use-case policies (issue 17 item 3) through the real `/v1` routes of `daehwa serve` on
//! loopback with the real SmolLM2 model: an admin defines policies over the web API and assigns
//! them to the server's `--api-key`s by label; a request outside its policy is refused before
//! the engine (403 naming the policy for a model not allowed or too many tokens per answer, 429
//! when the day's tokens are spent), the policy's system prompt is put first (the prompt grows),
//! energy figures and the provenance mark header are left off on chat completions, Responses and
//! Messages, and every change is in the audit trail.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use support::Serve;

const KEY_A: &str = "sk-policy-a";
const KEY_B: &str = "sk-policy-b";
const PER_ANSWER: u64 = 8;
const PER_DAY: u64 = 30;
const SYSTEM: &str = "You are a patient tutor for middle-school students. Answer kindly and simply, in short sentences.";

fn start(dir: &Path) -> Serve {
    std::fs::create_dir_all(dir).expect("mkdir");
    let key = dir.join("mark.key");
    std::fs::write(&key, "policy test mark secret\n").expect("write key");
    let mut cmd = support::serve_command(dir);
    cmd.args(["--ctx", "1024", "--max-seqs", "4", "--threads", "2", "--api-key", KEY_A, "--api-key", KEY_B]);
    cmd.arg("--watermark-key-file").arg(&key);
    cmd.arg("-m").arg(support::smollm2()).stderr(Stdio::inherit());
    support::spawn_serve(cmd, String::new)
}

/// One request: the status, the response head (lower case), and the JSON body.
fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &Value) -> (u16, String, Value) {
    let body = if body.is_null() { String::new() } else { body.to_string() };
    let (status, head, body) = support::http_head(addr, method, path, headers, &body);
    (status, head.to_ascii_lowercase(), serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn v1(addr: &str, key: &str, path: &str, body: &Value) -> (u16, String, Value) {
    let auth = format!("Bearer {key}");
    request(addr, "POST", path, &[("Authorization", &auth)], body)
}

/// Signs up the first account (the admin) and returns its session cookie.
fn admin_cookie(addr: &str) -> String {
    let body = json!({"username": "admin", "password": "correct horse battery"});
    let (status, head, json) = request(addr, "POST", "/api/auth/setup", &[("X-Daehwa-CSRF", "1")], &body);
    assert_eq!(status, 201, "{json}");
    let line = head.lines().find_map(|l| l.strip_prefix("set-cookie: ")).expect("a session cookie");
    line.split(';').next().expect("cookie pair").to_string()
}

fn admin(addr: &str, cookie: &str, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let (status, _, json) = request(addr, method, path, &[("Cookie", cookie), ("X-Daehwa-CSRF", "1")], body);
    (status, json)
}

fn error_message(json: &Value) -> String {
    json["error"]["message"].as_str().unwrap_or_default().to_string()
}

fn msgs() -> Value {
    json!([{"role": "user", "content": "Name a colour."}])
}

/// A chat completion with key A that generates to its limit (`ignore_eos`), greedy.
fn chat_a(addr: &str, extra: Value) -> (u16, String, Value) {
    let mut body = json!({"model": "smollm2", "messages": msgs(), "temperature": 0, "ignore_eos": true});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    v1(addr, KEY_A, "/v1/chat/completions", &body)
}

/// Tokens are counted in the background once an answer is out: give the count a moment.
fn settle() {
    std::thread::sleep(Duration::from_millis(400));
}

#[test]
fn policies_govern_the_v1_routes_of_a_real_server() {
    let dir = support::scratch("serve_policies");
    let srv = start(&dir);
    let addr = srv.addr.as_str();
    let cookie = admin_cookie(addr);

    // Before any policy: energy, the mark header, and the plain prompt's length.
    let (status, head, before) = chat_a(addr, json!({"max_tokens": 4}));
    assert_eq!(status, 200, "{before}");
    assert!(head.contains("x-daehwa-watermark:"), "marks are on: {head}");
    assert!(before["usage"]["energy"]["joules"].is_number(), "{before}");
    // The prompt the policy's system prompt makes: the same question after that system message
    // (SmolLM2's template puts its own default system prompt in when none is given).
    let with_system = json!([{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Name a colour."}]);
    let (status, _, sys) = chat_a(addr, json!({"max_tokens": 1, "messages": with_system}));
    assert_eq!(status, 200, "{sys}");
    let system_prompt = sys["usage"]["prompt_tokens"].as_u64().expect("prompt_tokens");
    assert_ne!(system_prompt, before["usage"]["prompt_tokens"].as_u64().expect("prompt_tokens"), "the check below could not fail");
    let (status, head, _) = v1(addr, KEY_A, "/v1/responses", &json!({"model": "smollm2", "input": "Name a colour.", "max_output_tokens": 4}));
    assert_eq!(status, 200);
    assert!(head.contains("x-daehwa-watermark:"), "{head}");
    let (status, head, _) = v1(addr, KEY_A, "/v1/messages", &json!({"model": "smollm2", "max_tokens": 4, "messages": msgs()}));
    assert_eq!(status, 200);
    assert!(head.contains("x-daehwa-watermark:"), "{head}");

    // The admin defines two policies and assigns them to the server keys by label.
    let (status, list) = admin(addr, &cookie, "GET", "/api/policies", &Value::Null);
    assert_eq!(status, 200, "{list}");
    let labels: Vec<String> = list["server_keys"].as_array().expect("server_keys").iter().map(|l| l.as_str().expect("label").to_string()).collect();
    assert_eq!(labels.len(), 2, "{list}");
    let school = json!({"name": "학교", "system_prompt": SYSTEM,
        "allowed_models": ["smollm2"], "max_tokens_per_answer": PER_ANSWER, "max_tokens_per_day": PER_DAY,
        "show_energy": false, "show_marks": false});
    let (status, created) = admin(addr, &cookie, "POST", "/api/policies", &school);
    assert_eq!(status, 201, "{created}");
    let school_id = created["id"].as_i64().expect("id");
    let (status, created) = admin(addr, &cookie, "POST", "/api/policies", &json!({"name": "closed", "allowed_models": ["gpt-4o"]}));
    assert_eq!(status, 201, "{created}");
    let closed_id = created["id"].as_i64().expect("id");
    for (label, id) in [(&labels[0], school_id), (&labels[1], closed_id)] {
        let (status, r) = admin(addr, &cookie, "POST", "/api/policies/assign", &json!({"subject": format!("serverkey:{label}"), "policy_id": id}));
        assert_eq!(status, 200, "{r}");
    }

    // A model the policy does not allow: 403 naming the policy, before the engine.
    let (status, _, e) = v1(addr, KEY_B, "/v1/chat/completions", &json!({"model": "smollm2", "messages": msgs(), "max_tokens": 2}));
    assert_eq!(status, 403, "{e}");
    let m = error_message(&e);
    assert!(m.contains("\"closed\"") && m.contains("smollm2"), "{e}");
    assert_eq!(e["error"]["code"], "policy_model_not_allowed", "{e}");
    let (status, _, e) = v1(addr, KEY_B, "/v1/messages", &json!({"model": "smollm2", "max_tokens": 2, "messages": msgs()}));
    assert_eq!(status, 403, "{e}");
    assert!(e.to_string().contains("closed"), "{e}");

    // More tokens per answer than allowed: 403 naming the policy; none asked: the limit.
    let (status, _, e) = chat_a(addr, json!({"max_tokens": 50}));
    assert_eq!(status, 403, "{e}");
    let m = error_message(&e);
    assert!(m.contains("\"학교\"") && m.contains(&format!("at most {PER_ANSWER} tokens per answer")), "{e}");
    let (status, head, ok) = chat_a(addr, json!({}));
    assert_eq!(status, 200, "{ok}");
    let mut used = ok["usage"]["completion_tokens"].as_u64().expect("completion_tokens");
    assert_eq!(used, PER_ANSWER, "{ok}");
    // The policy's system prompt comes first: the prompt is the one with that system message.
    assert_eq!(ok["usage"]["prompt_tokens"].as_u64(), Some(system_prompt), "the system prompt was not applied: {ok}");
    // Energy and marks hidden.
    assert_eq!(ok["usage"].get("energy"), None, "{ok}");
    assert!(!head.contains("x-daehwa-watermark"), "{head}");

    // Responses and Messages run under the policy too: limits, system prompt, no mark header.
    settle();
    let (status, head, r) = v1(addr, KEY_A, "/v1/responses", &json!({"model": "smollm2", "input": "Name a colour."}));
    assert_eq!(status, 200, "{r}");
    assert!(!head.contains("x-daehwa-watermark"), "{head}");
    let out = r["usage"]["output_tokens"].as_u64().expect("output_tokens");
    assert!(out <= PER_ANSWER, "{r}");
    assert_eq!(r["usage"]["input_tokens"].as_u64(), Some(system_prompt), "{r}");
    assert_eq!(r["usage"].get("energy"), None, "{r}");
    used += out;
    settle();
    let (status, _, e) = v1(addr, KEY_A, "/v1/messages", &json!({"model": "smollm2", "max_tokens": 20, "messages": msgs()}));
    assert_eq!(status, 403, "{e}");
    assert!(e.to_string().contains("학교"), "{e}");
    let (status, head, r) = v1(addr, KEY_A, "/v1/messages", &json!({"model": "smollm2", "max_tokens": PER_ANSWER, "messages": msgs()}));
    assert_eq!(status, 200, "{r}");
    assert!(!head.contains("x-daehwa-watermark"), "{head}");
    let out = r["usage"]["output_tokens"].as_u64().expect("output_tokens");
    assert!(out <= PER_ANSWER, "{r}");
    used += out;

    // The day: each answer gets what is left, then 429 naming the policy on every route.
    let mut rounds = 0;
    while used < PER_DAY {
        settle();
        let (status, _, ok) = chat_a(addr, json!({}));
        assert_eq!(status, 200, "{ok}");
        let n = ok["usage"]["completion_tokens"].as_u64().expect("completion_tokens");
        assert_eq!(n, PER_ANSWER.min(PER_DAY - used), "{ok}");
        used += n;
        rounds += 1;
        assert!(rounds < 10, "the day never ended");
    }
    settle();
    let (status, _, e) = chat_a(addr, json!({}));
    assert_eq!(status, 429, "{e}");
    let m = error_message(&e);
    assert!(m.contains("\"학교\"") && m.contains(&format!("{PER_DAY} tokens per day")), "{e}");
    let (status, _, e) = v1(addr, KEY_A, "/v1/completions", &json!({"model": "smollm2", "prompt": "Hi", "max_tokens": 2}));
    assert_eq!(status, 429, "{e}");
    let (status, _, e) = v1(addr, KEY_A, "/v1/responses", &json!({"model": "smollm2", "input": "Hi"}));
    assert_eq!(status, 429, "{e}");
    assert!(error_message(&e).contains("학교"), "{e}");

    // The audit trail has every change, newest first.
    let (status, trail) = admin(addr, &cookie, "GET", "/api/policies/audit", &Value::Null);
    assert_eq!(status, 200, "{trail}");
    let actions: Vec<&str> = trail["entries"].as_array().expect("entries").iter().map(|a| a["action"].as_str().expect("action")).collect();
    assert_eq!(actions, ["assign", "assign", "create", "create"], "{trail}");
    assert_eq!(trail["entries"][3]["new_value"]["spec"]["name"], "학교", "{trail}");
    assert_eq!(trail["entries"][0]["actor_name"], "admin", "{trail}");
    assert_eq!(trail["entries"][0]["subject"], format!("serverkey:{}", labels[1]), "{trail}");
    // Taking the policy away lifts it (and is audited).
    let (status, _) = admin(addr, &cookie, "POST", "/api/policies/assign", &json!({"subject": format!("serverkey:{}", labels[0]), "policy_id": null}));
    assert_eq!(status, 200);
    let (status, head, ok) = chat_a(addr, json!({"max_tokens": 4}));
    assert_eq!(status, 200, "{ok}");
    assert!(head.contains("x-daehwa-watermark:") && ok["usage"]["energy"].is_object(), "{ok}");
    let (_, trail) = admin(addr, &cookie, "GET", "/api/policies/audit", &Value::Null);
    assert_eq!(trail["entries"].as_array().map(Vec::len), Some(5), "{trail}");
}

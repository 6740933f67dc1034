//! Use-case policies over real HTTP (issue 17 item 3): the admin API, and a policy applied
//! before the engine on `/v1/chat/completions` (personal and server keys) and the web UI's
//! chat: the system prompt first, models allowed, tokens per answer and per day, energy hidden,
//! and the audit trail of the changes.

mod common;
mod webkit;

use serde_json::{json, Value};
use webkit::{add_user, new_conversation, with_admin_opts, Client, Options};

async fn chat(c: &Client, body: Value) -> webkit::Resp {
    c.post("/v1/chat/completions", &body).await
}

#[tokio::test]
async fn a_policy_governs_its_subjects_before_the_engine() {
    let o = Options { keys: vec!["sk-server-1"], ..Options::default() };
    let (srv, admin) = with_admin_opts("policies", o).await;
    let (bob_id, bob) = add_user(&srv, &admin, "bob", "bob-password-1").await;

    // Admins only.
    let school = json!({"name": "학교", "system_prompt": "Be a tutor.", "allowed_models": ["smollm2"],
        "max_tokens_per_answer": 5, "max_tokens_per_day": 17, "show_energy": false});
    bob.post("/api/policies", &school).await.error(403);
    bob.get("/api/policies").await.error(403);
    let r = admin.post("/api/policies", &school).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let school_id = r.json()["id"].as_i64().expect("id");
    admin.post("/api/policies", &json!({"name": "학교"})).await.error(409);
    admin.post("/api/policies", &json!({"name": "x", "max_tokens_per_day": 0})).await.error(400);
    admin.post("/api/policies/assign", &json!({"subject": "group:1", "policy_id": school_id})).await.error(400);
    let r = admin.post("/api/policies/assign", &json!({"subject": format!("user:{bob_id}"), "policy_id": school_id})).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // The web chat: the policy's system prompt first, the answer cut to 5 tokens, no energy.
    let conv = new_conversation(&bob, json!({"system_prompt": "Be brief."})).await;
    let s = bob.stream(&format!("/api/conversations/{conv}/messages"), &json!({"parent_id": null, "content": "Hi"})).await;
    assert_eq!(s.status, 200);
    let events = s.collect().await;
    let usage = &events.last().expect("done").data["usage"];
    assert_eq!(usage["completion_tokens"], 5, "{usage}");
    assert_eq!(usage.get("energy"), None, "{usage}");
    let prompt = {
        let sent = srv.fake.submitted.lock().expect("lock");
        let last = sent.iter().rev().find(|r| !String::from_utf8_lossy(&r.prompt.iter().map(|&t| t as u8).collect::<Vec<_>>()).starts_with("Write a short title")).expect("asked").clone();
        String::from_utf8(last.prompt.iter().map(|&t| t as u8).collect()).expect("utf8")
    };
    assert_eq!(prompt, "Be a tutor.Be brief.Hi");

    // The automatic title runs under the policy too: at most 5 tokens (the fake answers "Hello"
    // in 5), counted toward the day. Bob sees his policy and today's count; the admin has none.
    let title = webkit::eventually(5, "the automatic title", || async {
        let t = bob.get(&format!("/api/conversations/{conv}")).await.json()["title"].as_str().unwrap_or("").to_string();
        (!t.is_empty()).then_some(t)
    })
    .await;
    assert_eq!(title, "Hello");
    let mine = webkit::eventually(5, "the title's tokens counted", || async {
        let m = bob.get("/api/policies/mine").await.json();
        (m["policy"]["tokens_today"] == 10).then_some(m)
    })
    .await;
    let expected = json!({"name": "학교", "allowed_models": ["smollm2"], "max_tokens_per_answer": 5, "max_tokens_per_day": 17,
        "show_marks": true, "show_energy": false, "tokens_today": 10});
    assert_eq!(mine["policy"], expected);
    assert_eq!(admin.get("/api/policies/mine").await.json(), json!({"policy": null}));

    // Bob's personal key on /v1: the same policy.
    let r = bob.post("/api/keys", &json!({"name": "laptop"})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let mut api = Client::new(srv.addr);
    api.csrf = false;
    api.bearer = Some(r.json()["key"].as_str().expect("key").to_string());
    let msgs = json!([{"role": "user", "content": "Hi"}]);
    let e = chat(&api, json!({"model": "smollm2", "messages": msgs, "max_tokens": 50})).await.error(403);
    let m = e["message"].as_str().expect("message");
    assert!(m.contains("\"학교\"") && m.contains("at most 5 tokens per answer"), "{e}");
    let ok = chat(&api, json!({"model": "smollm2", "messages": msgs})).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let body = ok.json();
    assert_eq!(body["usage"]["completion_tokens"], 5);
    assert_eq!(body["usage"].get("energy"), None);
    // 5 (web) + 5 (title) + 5 = 15 of 17: the next answer gets the 2 left, then the day is spent.
    // (Tokens are counted in the background once an answer is out: give the count a moment.)
    let settle = || tokio::time::sleep(std::time::Duration::from_millis(300));
    settle().await;
    let last = chat(&api, json!({"model": "smollm2", "messages": msgs})).await;
    assert_eq!((last.status, last.json()["usage"]["completion_tokens"].clone()), (200, json!(2)), "{}", last.body);
    settle().await;
    let e = chat(&api, json!({"model": "smollm2", "messages": msgs})).await.error(429);
    let m = e["message"].as_str().expect("message");
    assert!(m.contains("\"학교\"") && m.contains("17 tokens per day"), "{e}");
    let e = api.post("/v1/completions", &json!({"model": "smollm2", "prompt": "Hi"})).await.error(429);
    assert!(e["message"].as_str().expect("message").contains("\"학교\""), "{e}");
    let e = api.post("/v1/responses", &json!({"model": "smollm2", "input": "Hi"})).await.error(429);
    assert!(e["message"].as_str().expect("message").contains("\"학교\""), "{e}");
    let r = api.post("/v1/messages", &json!({"model": "smollm2", "max_tokens": 3, "messages": msgs})).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.body.contains("학교"), "{}", r.body);

    // A server key by its label; the admin (no policy) is not limited.
    let listed = admin.get("/api/policies").await.json();
    let label = listed["server_keys"][0].as_str().expect("a label").to_string();
    assert_eq!(listed["policies"][0]["subjects"], json!([format!("user:{bob_id}")]));
    let r = admin.post("/api/policies", &json!({"name": "api", "allowed_models": ["nothing"]})).await;
    let api_id = r.json()["id"].as_i64().expect("id");
    admin.post("/api/policies/assign", &json!({"subject": format!("serverkey:{label}"), "policy_id": api_id})).await;
    let mut server_key = Client::new(srv.addr);
    server_key.csrf = false;
    server_key.bearer = Some("sk-server-1".into());
    let e = chat(&server_key, json!({"model": "smollm2", "messages": msgs})).await.error(403);
    let m = e["message"].as_str().expect("message");
    assert!(m.contains("\"api\"") && m.contains("smollm2"), "{e}");
    assert_eq!(e["code"], "policy_model_not_allowed");
    let r = admin.send("PUT", &format!("/api/policies/{api_id}"), Some(&json!({"name": "api"}).to_string())).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ok = chat(&server_key, json!({"model": "smollm2", "messages": msgs})).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(ok.json()["usage"]["energy"].is_object(), "the api policy shows energy");

    // The audit trail: every change, newest first, with the values before and after.
    let trail = admin.get("/api/policies/audit").await.json();
    let actions: Vec<&str> = trail["entries"].as_array().expect("entries").iter().map(|a| a["action"].as_str().expect("action")).collect();
    assert_eq!(actions, ["update", "assign", "create", "assign", "create"]);
    let update = &trail["entries"][0];
    assert_eq!(update["old_value"]["spec"]["allowed_models"], json!(["nothing"]));
    assert_eq!(update["new_value"]["spec"]["allowed_models"], json!([]));
    assert_eq!(update["actor_name"], webkit::ADMIN);
    bob.get("/api/policies/audit").await.error(403);
    admin.delete(&format!("/api/policies/{school_id}")).await;
    assert_eq!(admin.get("/api/policies/audit").await.json()["entries"][0]["action"], "delete");
}

/// A title is asked of the model under the user's policy: once the day's tokens are spent it is
/// not asked at all, and the title is the question's first words.
#[tokio::test]
async fn a_title_is_not_asked_for_when_the_day_is_spent() {
    let (srv, admin) = with_admin_opts("policies-title", Options::default()).await;
    let (bob_id, bob) = add_user(&srv, &admin, "bob", "bob-password-1").await;
    let r = admin.post("/api/policies", &json!({"name": "day", "max_tokens_per_answer": 5, "max_tokens_per_day": 5})).await;
    let id = r.json()["id"].as_i64().expect("id");
    admin.post("/api/policies/assign", &json!({"subject": format!("user:{bob_id}"), "policy_id": id})).await;
    let r = bob.post("/api/keys", &json!({"name": "laptop"})).await;
    let mut api = Client::new(srv.addr);
    api.csrf = false;
    api.bearer = Some(r.json()["key"].as_str().expect("key").to_string());

    // The web answer is admitted (nothing used yet) and streams slowly; meanwhile bob's key spends
    // the day (5 choices of 1 token, fast), so when the answer ends the title finds the day spent.
    srv.fake.delay_ms.store(150, std::sync::atomic::Ordering::SeqCst);
    let conv = new_conversation(&bob, json!({})).await;
    let s = bob.stream(&format!("/api/conversations/{conv}/messages"), &json!({"parent_id": null, "content": "Tell the class hello"})).await;
    assert_eq!(s.status, 200);
    let r = chat(&api, json!({"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "n": 5, "max_tokens": 1})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["usage"]["completion_tokens"], 5, "{}", r.body);
    let events = s.collect().await;
    assert_eq!(events.last().expect("done").data["usage"]["completion_tokens"], 5);

    let title = webkit::eventually(5, "the fallback title", || async {
        let t = bob.get(&format!("/api/conversations/{conv}")).await.json()["title"].as_str().unwrap_or("").to_string();
        (!t.is_empty()).then_some(t)
    })
    .await;
    assert_eq!(title, "Tell the class hello");
    let asked_title = srv.fake.submitted.lock().expect("lock").iter().any(|r| r.prompt.iter().map(|&t| t as u8).collect::<Vec<_>>().starts_with(b"Write a short title"));
    assert!(!asked_title, "the model was asked for a title on a spent day");
    assert_eq!(bob.get("/api/policies/mine").await.json()["policy"]["tokens_today"], 10);
}

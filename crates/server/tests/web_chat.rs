//! Conversations and the answer stream over real HTTP: the events, the answer saved as it
//! streams and closed complete, a client leaving mid-answer (saved incomplete, the engine told),
//! regenerate and edit branches, the automatic title, settings reaching the engine, search, and
//! clear errors.

mod common;
mod webkit;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::ANSWER;
use serde_json::{json, Value};
use webkit::{deltas, eventually, new_conversation, with_admin, with_admin_opts, Client, Ev, Options};

fn message<'a>(conv: &'a Value, id: &str) -> &'a Value {
    conv["messages"].as_array().expect("messages").iter().find(|m| m["id"] == id).unwrap_or_else(|| panic!("no message {id} in {conv}"))
}

async fn ask(c: &Client, conv: &str, parent: Value, content: &str) -> Vec<Ev> {
    let s = c.stream(&format!("/api/conversations/{conv}/messages"), &json!({"parent_id": parent, "content": content})).await;
    assert_eq!(s.status, 200);
    assert!(s.header("content-type").is_some_and(|t| t.starts_with("text/event-stream")));
    s.collect().await
}

/// The prompt of the last answer the backend was asked for (title prompts skipped), as text.
fn last_prompt(srv: &webkit::TestServer) -> String {
    let sent = srv.fake.submitted.lock().expect("lock");
    let texts = sent.iter().map(|r| String::from_utf8(r.prompt.iter().map(|&t| t as u8).collect()).expect("utf8"));
    texts.rev().find(|t| !t.starts_with("Write a short title")).expect("an answer was asked for")
}

fn done(events: &[Ev]) -> &Value {
    &events.iter().find(|e| e.name == "done").unwrap_or_else(|| panic!("no done event in {events:?}")).data["message"]
}

#[tokio::test]
async fn an_answer_streams_is_saved_complete_and_titles_the_conversation() {
    let (srv, c) = with_admin("stream").await;
    let conv = new_conversation(&c, json!({"system_prompt": "Be brief.", "settings": {"temperature": 0.3}})).await;
    let events = ask(&c, &conv, Value::Null, "What is up?").await;
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).filter(|n| *n != "delta").collect();
    assert_eq!(names, vec!["user", "assistant", "done"], "{events:?}");
    let user = &events[0].data["message"];
    assert_eq!((user["role"].as_str(), user["content"].as_str(), user["parent_id"].clone()), (Some("user"), Some("What is up?"), Value::Null));
    let streaming = &events[1].data["message"];
    assert_eq!(streaming["status"], "streaming");
    assert_eq!(streaming["parent_id"], user["id"]);
    assert_eq!(deltas(&events), ANSWER);
    let fin = done(&events);
    assert_eq!((fin["status"].as_str(), fin["content"].as_str()), (Some("complete"), Some(ANSWER)));
    assert_eq!(fin["id"], streaming["id"]);
    let usage = &events.last().expect("done").data["usage"];
    assert_eq!(usage["completion_tokens"], ANSWER.len());

    // The store has both rows, the answer complete with the full text, and the new leaf current.
    let got = c.get(&format!("/api/conversations/{conv}")).await.json();
    assert_eq!(got["messages"].as_array().expect("messages").len(), 2);
    let a = message(&got, fin["id"].as_str().expect("id"));
    assert_eq!((a["status"].as_str(), a["content"].as_str(), a["model"].as_str()), (Some("complete"), Some(ANSWER), Some("smollm2")));
    assert_eq!(got["current_message_id"], fin["id"]);
    assert!(got["messages"][0]["created_at"].as_str().expect("time").ends_with('Z'));
    // The energy the answer took (the fake backend: 1 mJ a token), kept with it and summed per
    // day for Settings; the question has none.
    let joules = (usage["prompt_tokens"].as_u64().expect("prompt") + usage["completion_tokens"].as_u64().expect("completion")) as f64 / 1000.0;
    assert_eq!(usage["energy"], json!({"joules": joules, "method": "estimate"}));
    assert_eq!((fin["energy"].clone(), a["energy"].clone()), (usage["energy"].clone(), usage["energy"].clone()));
    assert_eq!(got["messages"][0].get("energy"), None);
    let energy = c.get("/api/energy").await.json();
    assert_eq!(energy["days"].as_array().expect("days").len(), 1, "{energy}");
    assert_eq!((energy["days"][0]["joules"].as_f64(), energy["days"][0]["answers"].as_i64(), energy["days"][0]["estimated"].as_bool()), (Some(joules), Some(1), Some(true)));
    assert_eq!(energy["total_joules"].as_f64(), Some(joules));

    // The prompt held the system prompt, then the question; the temperature came from settings.
    let submitted = srv.fake.submitted.lock().expect("lock")[0].clone();
    let prompt: Vec<u8> = submitted.prompt.iter().map(|&t| t as u8).collect();
    assert_eq!(String::from_utf8(prompt).expect("utf8"), "Be brief.What is up?");
    assert_eq!(submitted.params.sampling.temperature, Some(0.3));

    // The title is made in the background from the model's reply.
    let title = eventually(5, "the automatic title", || async {
        let t = c.get(&format!("/api/conversations/{conv}")).await.json()["title"].as_str().unwrap_or("").to_string();
        (!t.is_empty()).then_some(t)
    })
    .await;
    assert_eq!(title, "Hello, world! 안녕");
    let list = c.get("/api/conversations").await.json();
    assert_eq!(list["conversations"][0]["title"], title.as_str());
}

#[tokio::test]
async fn korean_question_gets_a_korean_title_when_the_model_cannot() {
    // A context too small for the title prompt: the first words of the question are used.
    let (_srv, c) = with_admin_opts("title-ko", Options { n_ctx: 64, ..Default::default() }).await;
    let conv = new_conversation(&c, json!({})).await;
    let events = ask(&c, &conv, Value::Null, "오늘 서울 날씨 어때?").await;
    assert_eq!(done(&events)["status"], "complete");
    let title = eventually(5, "the fallback title", || async {
        let t = c.get(&format!("/api/conversations/{conv}")).await.json()["title"].as_str().unwrap_or("").to_string();
        (!t.is_empty()).then_some(t)
    })
    .await;
    assert_eq!(title, "오늘 서울 날씨 어때");
    // A title set by the user is never replaced.
    let conv2 = new_conversation(&c, json!({"title": "mine"})).await;
    ask(&c, &conv2, Value::Null, "안녕").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(c.get(&format!("/api/conversations/{conv2}")).await.json()["title"], "mine");
}

#[tokio::test]
async fn the_answer_is_saved_while_it_streams_and_incomplete_when_the_client_leaves() {
    let (srv, c) = with_admin("disconnect").await;
    srv.fake.delay_ms.store(100, Ordering::SeqCst);
    let conv = new_conversation(&c, json!({})).await;
    let mut s = c.stream(&format!("/api/conversations/{conv}/messages"), &json!({"parent_id": null, "content": "long story"})).await;
    let mut answer_id = String::new();
    let mut seen = String::new();
    while let Some(e) = s.next().await {
        match e.name.as_str() {
            "assistant" => answer_id = e.data["message"]["id"].as_str().expect("id").to_string(),
            "delta" => seen.push_str(e.data["content"].as_str().expect("text")),
            _ => {}
        }
        if seen.len() >= 6 {
            break;
        }
    }
    // While it streams, the text so far is in the store already (periodic flushes).
    let id = server::store::MessageId(answer_id.parse().expect("numeric id"));
    let owner = srv.store.user_credentials(webkit::ADMIN).await.expect("lookup").expect("admin").user.id;
    let row = eventually(3, "a flushed prefix", || async {
        let m = srv.store.message(owner, id).await.expect("row");
        (!m.content.is_empty()).then_some(m)
    })
    .await;
    assert_eq!(row.status, server::store::MessageStatus::Streaming);
    assert!(ANSWER.starts_with(&row.content), "{:?}", row.content);

    s.disconnect();
    eventually(5, "the engine to see the cancel", || async { (srv.fake.cancelled.load(Ordering::SeqCst) >= 1).then_some(()) }).await;
    let m = eventually(5, "the answer to be closed", || async {
        let m = srv.store.message(owner, id).await.expect("row");
        (m.status != server::store::MessageStatus::Streaming).then_some(m)
    })
    .await;
    assert_eq!(m.status, server::store::MessageStatus::Incomplete);
    assert!(ANSWER.starts_with(&m.content) && m.content.len() >= seen.len() && m.content.len() < ANSWER.len(), "{:?}", m.content);
    let got = c.get(&format!("/api/conversations/{conv}")).await.json();
    assert_eq!(message(&got, &answer_id)["status"], "incomplete");
}

#[tokio::test]
async fn regenerate_makes_a_sibling_and_an_edit_makes_a_branch() {
    let (srv, c) = with_admin("branches").await;
    let conv = new_conversation(&c, json!({})).await;
    let first = ask(&c, &conv, Value::Null, "Q1").await;
    let q1 = first[0].data["message"]["id"].as_str().expect("id").to_string();
    let a1 = done(&first)["id"].as_str().expect("id").to_string();
    let second = ask(&c, &conv, json!(a1), "Q2").await;
    let q2 = second[0].data["message"]["id"].as_str().expect("id").to_string();
    let a2 = done(&second)["id"].as_str().expect("id").to_string();
    // The second prompt carried the first exchange.
    assert_eq!(last_prompt(&srv), format!("Q1{ANSWER}Q2"));

    // Regenerate: no user event, a new answer with the same parent.
    let again = c.stream(&format!("/api/conversations/{conv}/regenerate"), &json!({"message_id": a2})).await.collect().await;
    assert!(again.iter().all(|e| e.name != "user"), "{again:?}");
    let a2b = done(&again);
    assert_eq!((a2b["parent_id"].as_str(), a2b["status"].as_str()), (Some(q2.as_str()), Some("complete")));
    assert_ne!(a2b["id"].as_str(), Some(a2.as_str()));
    assert_eq!(last_prompt(&srv), format!("Q1{ANSWER}Q2"), "the regenerated answer does not see its sibling");

    // Edit the second question: a new question under the first answer (a sibling of Q2).
    let edited = ask(&c, &conv, json!(a1), "Q2 edited").await;
    let q2b = &edited[0].data["message"];
    assert_eq!(q2b["parent_id"], a1.as_str());
    // Edit the first question: a new root.
    let root = ask(&c, &conv, Value::Null, "Q1 edited").await;
    assert_eq!(root[0].data["message"]["parent_id"], Value::Null);

    let got = c.get(&format!("/api/conversations/{conv}")).await.json();
    let ms = got["messages"].as_array().expect("messages");
    assert_eq!(ms.len(), 9);
    let children_of = |p: &str| ms.iter().filter(|m| m["parent_id"] == p).count();
    assert_eq!(children_of(&q2), 2, "two answers to Q2");
    assert_eq!(children_of(&a1), 2, "Q2 and its edit");
    assert_eq!(ms.iter().filter(|m| m["parent_id"].is_null()).count(), 2, "Q1 and its edit");
    assert_eq!(got["current_message_id"], done(&root)["id"]);
    assert!(message(&got, &q1)["content"] == "Q1");

    // Bad references are clear 400s.
    let e = c.post(&format!("/api/conversations/{conv}/regenerate"), &json!({"message_id": "999999"})).await.error(400);
    assert_eq!(e["param"], "message_id");
    let e = c.post(&format!("/api/conversations/{conv}/messages"), &json!({"parent_id": "nope", "content": "x"})).await.error(400);
    assert_eq!(e["param"], "parent_id");
    let e = c.post(&format!("/api/conversations/{conv}/messages"), &json!({"parent_id": null, "content": "  "})).await.error(400);
    assert_eq!(e["param"], "content");
}

#[tokio::test]
async fn over_the_context_is_a_clear_error_and_stores_nothing() {
    let (_srv, c) = with_admin_opts("context", Options { n_ctx: 64, ..Default::default() }).await;
    let conv = new_conversation(&c, json!({})).await;
    let e = c.post(&format!("/api/conversations/{conv}/messages"), &json!({"parent_id": null, "content": "x".repeat(80)})).await.error(400);
    assert_eq!(e["code"], "context_length_exceeded");
    assert!(e["message"].as_str().expect("msg").contains("64"), "{e}");
    assert_eq!(c.get(&format!("/api/conversations/{conv}")).await.json()["messages"], json!([]));
}

#[tokio::test]
async fn a_full_queue_is_429_and_leaves_no_rows() {
    let (srv, c) = with_admin("queue").await;
    srv.fake.queue_full.store(true, Ordering::SeqCst);
    let conv = new_conversation(&c, json!({})).await;
    c.post(&format!("/api/conversations/{conv}/messages"), &json!({"parent_id": null, "content": "hi"})).await.error(429);
    assert_eq!(c.get(&format!("/api/conversations/{conv}")).await.json()["messages"], json!([]));
}

#[tokio::test]
async fn conversations_crud_settings_and_search() {
    let (_srv, c) = with_admin("crud").await;
    let r = c.post("/api/conversations", &json!({"title": "  Trip  ", "model": "SmolLM2 135M", "settings": {"temperature": 1.2}})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let v = r.json();
    assert_eq!((v["title"].as_str(), v["model"].as_str()), (Some("Trip"), Some("smollm2")));
    assert_eq!(v["settings"], json!({"temperature": 1.2}));
    assert_eq!(v["messages"], json!([]));
    let id = v["id"].as_str().expect("id").to_string();
    let path = format!("/api/conversations/{id}");

    let p = c.patch(&path, &json!({"title": "제주 여행", "system_prompt": "Answer in Korean", "settings": {"temperature": 0.2}})).await;
    assert_eq!(p.status, 200, "{}", p.body);
    let got = c.get(&path).await.json();
    assert_eq!((got["title"].as_str(), got["system_prompt"].as_str()), (Some("제주 여행"), Some("Answer in Korean")));
    assert_eq!(got["settings"], json!({"temperature": 0.2}));
    assert_eq!(got["model"], "smollm2", "untouched fields stay");
    c.patch(&path, &json!({"system_prompt": null, "model": null})).await;
    let got = c.get(&path).await.json();
    assert_eq!((got["system_prompt"].clone(), got["model"].clone()), (Value::Null, Value::Null));

    for (body, param) in [
        (json!({"settings": {"temperature": 5}}), "settings.temperature"),
        (json!({"settings": {"temprature": 1}}), "settings.temprature"),
        (json!({"title": "x".repeat(300)}), "title"),
        (json!({"title": 5}), "title"),
    ] {
        let e = c.patch(&path, &body).await.error(400);
        assert_eq!(e["param"], param, "{body}");
    }
    let e = c.patch(&path, &json!({"model": "gpt-4o"})).await.error(404);
    assert_eq!(e["code"], "model_not_found");
    c.send("PATCH", &path, Some("{not json")).await.error(400);
    c.get("/api/conversations/abc").await.error(404);
    c.get("/api/conversations/424242").await.error(404);
    c.get("/api/conversations?limit=x").await.error(400);

    // Search finds text inside messages, not only titles.
    let other = new_conversation(&c, json!({})).await;
    ask(&c, &other, Value::Null, "the quick brown fox").await;
    let hits = c.get("/api/conversations?q=brown%20fox").await.json();
    let hits = hits["conversations"].as_array().expect("hits");
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["id"], other.as_str());
    assert!(hits[0]["snippet"].as_str().expect("snippet").contains("brown fox"));
    assert_eq!(c.get("/api/conversations?q=nowhere-to-be-found").await.json(), json!({"conversations": []}));
    assert_eq!(c.get("/api/conversations?q=%EC%A0%9C%EC%A3%BC").await.json()["conversations"][0]["id"], id.as_str());

    let m = c.get("/api/models").await.json();
    assert_eq!(m, json!({"models": [{"id": "smollm2", "name": "SmolLM2 135M", "context_length": 4096}]}));

    assert_eq!(c.delete(&path).await.status, 204);
    c.get(&path).await.error(404);
    c.delete(&path).await.error(404);
    assert_eq!(c.get("/api/conversations").await.json()["conversations"].as_array().expect("list").len(), 1);
    // Signed out: every data route is 401.
    let anon = Client::new(c.addr);
    for p in ["/api/conversations", "/api/models", "/api/keys", "/api/users"] {
        anon.get(p).await.error(401);
    }
}

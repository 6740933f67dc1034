//! Several models in one server (issue 13, item 7) over scripted backends: a model loads on first
//! use, once however many requests ask for it at the same time; a failed load tells each waiter
//! why; the least recently used idle model unloads when `--model-memory` would be exceeded, a
//! busy one never (503 with `Retry-After`); `/v1/models`, `/health` and `/metrics` show each
//! model's state; an unknown model is a 404 naming the served ones; the web UI's conversation
//! answers with its own model.

mod common;
mod webkit;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{get, post, send, send_json, Fake, Shared};
use serde_json::json;
use server::registry::{Loader, ModelSpec};
use server::{Backend, Models};

/// Makes a [`Fake`] per load, after `delay`; the models in `fail` do not load.
struct FakeLoader {
    delay: Duration,
    fail: HashSet<String>,
    loads: AtomicUsize,
    /// Every backend made, with its model's id, in order.
    made: Mutex<Vec<(String, Arc<Shared>)>>,
}

impl FakeLoader {
    fn new(delay_ms: u64, fail: &[&str]) -> Arc<Self> {
        Arc::new(FakeLoader {
            delay: Duration::from_millis(delay_ms),
            fail: fail.iter().map(|s| s.to_string()).collect(),
            loads: AtomicUsize::new(0),
            made: Mutex::new(Vec::new()),
        })
    }

    fn loads_of(&self, id: &str) -> usize {
        self.made.lock().expect("lock").iter().filter(|(m, _)| m == id).count()
    }

    /// The latest backend of model `id`.
    fn backend(&self, id: &str) -> Arc<Shared> {
        self.made.lock().expect("lock").iter().rev().find(|(m, _)| m == id).map(|(_, s)| s.clone()).expect("loaded")
    }
}

impl Loader for FakeLoader {
    fn load(&self, id: &str) -> Result<Arc<dyn Backend>, String> {
        std::thread::sleep(self.delay);
        self.loads.fetch_add(1, Ordering::SeqCst);
        if self.fail.contains(id) {
            return Err(format!("{id}.gguf: unsupported architecture `mamba`"));
        }
        let f = Fake::default();
        self.made.lock().expect("lock").push((id.to_string(), f.s.clone()));
        Ok(Arc::new(f))
    }
}

fn spec(id: &str, memory: u64) -> ModelSpec {
    ModelSpec { memory, n_ctx: 64, aliases: vec![format!("{id}-alias")], ..ModelSpec::new(id) }
}

fn state(ids: &[&str], memory: u64, budget: Option<u64>, loader: Arc<FakeLoader>) -> server::AppState {
    state_waiting(ids, memory, budget, loader, server::registry::DEFAULT_BUSY_WAIT)
}

fn state_waiting(ids: &[&str], memory: u64, budget: Option<u64>, loader: Arc<FakeLoader>, busy_wait: Duration) -> server::AppState {
    let admission = server::admission::Admission::new(256);
    let models = Models::new(ids.iter().map(|i| spec(i, memory)).collect(), loader, budget, admission).with_busy_wait(busy_wait);
    server::AppState::with_models(models, server::ServeConfig::new("ignored"))
}

fn chat(model: &str) -> String {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}).to_string()
}

/// `{id: state}` from `/v1/models`, ids only (not aliases).
async fn states(app: &axum::Router) -> Vec<(String, String)> {
    let (s, v) = send_json(app, get("/v1/models")).await;
    assert_eq!(s, 200);
    v["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter(|m| !m["id"].as_str().expect("id").ends_with("-alias"))
        .map(|m| (m["id"].as_str().expect("id").to_string(), m["state"].as_str().expect("state").to_string()))
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start).map(|v| v.trim().parse::<f64>().expect("number")))
        .unwrap_or_else(|| panic!("no `{line_start}` in\n{text}"))
}

#[tokio::test]
async fn concurrent_first_requests_load_a_model_once() {
    let loader = FakeLoader::new(300, &[]);
    let app = server::app(state(&["a", "b"], 100, None, loader.clone()));
    assert_eq!(states(&app).await, pairs(&[("a", "unloaded"), ("b", "unloaded")]));
    // Eight requests at once, streaming and not, by id and by alias, for the unloaded `b`.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let app = app.clone();
        let name = if i % 2 == 0 { "b" } else { "b-alias" };
        let body = json!({"model": name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "stream": i % 3 == 0}).to_string();
        tasks.push(tokio::spawn(async move { send(&app, post("/v1/chat/completions", &body)).await }));
    }
    // Meanwhile it is `loading`.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(states(&app).await, pairs(&[("a", "unloaded"), ("b", "loading")]));
    let (_, m) = send(&app, get("/metrics")).await;
    assert!(m.contains("daehwa_model_state{model=\"b\",state=\"loading\"} 1\n"), "{m}");
    for t in tasks {
        let (s, body) = t.await.expect("task");
        assert_eq!(s, 200, "{body}");
        assert!(body.contains("\"model\":\"b\""), "{body}");
    }
    assert_eq!(loader.loads_of("b"), 1, "one load for eight requests");
    assert_eq!(loader.backend("b").submitted.lock().expect("lock").len(), 8);
    assert_eq!(states(&app).await, pairs(&[("a", "unloaded"), ("b", "loaded")]));
    let (_, m) = send(&app, get("/metrics")).await;
    assert_eq!(metric(&m, "daehwa_model_loads_total{model=\"b\"}"), 1.0);
    assert_eq!(metric(&m, "daehwa_model_loads_total{model=\"a\"}"), 0.0);
    assert!(metric(&m, "daehwa_model_load_seconds_total{model=\"b\"}") >= 0.3, "{m}");
    assert_eq!(metric(&m, "daehwa_model_state{model=\"b\",state=\"loaded\"}"), 1.0);
    // A request naming no model gets the default (`a`), loaded now.
    let (s, v) = send_json(&app, post("/v1/completions", r#"{"prompt": "x", "max_tokens": 2}"#)).await;
    assert_eq!((s, v["model"].as_str()), (200, Some("a")), "{v}");
    assert_eq!(loader.loads_of("a"), 1);
    let (s, v) = send_json(&app, get("/v1/models/b-alias")).await;
    assert_eq!((s, v["state"].as_str()), (200, Some("loaded")), "{v}");
}

#[tokio::test]
async fn an_unknown_model_is_a_404_naming_the_served_ones() {
    let loader = FakeLoader::new(0, &[]);
    let app = server::app(state(&["a", "b"], 100, None, loader.clone()));
    let requests = [
        ("/v1/chat/completions", json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]})),
        ("/v1/completions", json!({"model": "gpt-4o", "prompt": "x"})),
    ];
    for (path, body) in requests {
        let (s, v) = send_json(&app, post(path, &body.to_string())).await;
        assert_eq!(s, 404, "{v}");
        assert_eq!((v["error"]["code"].as_str(), v["error"]["param"].as_str()), (Some("model_not_found"), Some("model")));
        let msg = v["error"]["message"].as_str().expect("message");
        assert!(msg.contains("gpt-4o") && msg.contains("a, b"), "{msg}");
    }
    let (s, v) = send_json(&app, get("/v1/models/gpt-4o")).await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("model_not_found")));
    assert_eq!(loader.loads.load(Ordering::SeqCst), 0, "nothing was loaded for an unknown name");
}

#[tokio::test]
async fn a_failed_load_tells_every_waiter_why_and_a_later_request_tries_again() {
    let loader = FakeLoader::new(200, &["bad"]);
    let app = server::app(state(&["good", "bad"], 100, None, loader.clone()));
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move { send_json(&app, post("/v1/chat/completions", &chat("bad"))).await }));
    }
    for t in tasks {
        let (s, v) = t.await.expect("task");
        assert_eq!((s, v["error"]["code"].as_str()), (503, Some("model_load_failed")), "{v}");
        let msg = v["error"]["message"].as_str().expect("message");
        assert!(msg.contains("`bad`") && msg.contains("unsupported architecture"), "{msg}");
    }
    assert_eq!(loader.loads.load(Ordering::SeqCst), 1, "the three waited for one load");
    let (s, h) = send_json(&app, get("/health")).await;
    assert_eq!(s, 200, "the server still serves its other models: {h}");
    let bad = h["models"].as_array().expect("models").iter().find(|m| m["id"] == "bad").expect("bad").clone();
    assert_eq!(bad["state"], "unloaded");
    assert!(bad["last_error"].as_str().is_some_and(|e| e.contains("mamba")), "{h}");
    let (_, m) = send(&app, get("/metrics")).await;
    assert_eq!(metric(&m, "daehwa_model_load_failures_total{model=\"bad\"}"), 1.0);
    let (s, _) = send_json(&app, post("/v1/chat/completions", &chat("bad"))).await;
    assert_eq!(s, 503);
    assert_eq!(loader.loads.load(Ordering::SeqCst), 2, "a later request tries again");
    let (s, _) = send_json(&app, post("/v1/chat/completions", &chat("good"))).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn the_least_recently_used_idle_model_unloads_when_the_budget_is_exceeded() {
    let loader = FakeLoader::new(0, &[]);
    // Room for two of the three.
    let app = server::app(state(&["a", "b", "c"], 100, Some(250), loader.clone()));
    for m in ["a", "b", "a"] {
        let (s, v) = send_json(&app, post("/v1/chat/completions", &chat(m))).await;
        assert_eq!(s, 200, "{v}");
    }
    assert_eq!(states(&app).await, pairs(&[("a", "loaded"), ("b", "loaded"), ("c", "unloaded")]));
    // `c` needs room: `b` was used least recently.
    let (s, _) = send_json(&app, post("/v1/chat/completions", &chat("c"))).await;
    assert_eq!(s, 200);
    assert_eq!(states(&app).await, pairs(&[("a", "loaded"), ("b", "unloaded"), ("c", "loaded")]));
    let (_, m) = send(&app, get("/metrics")).await;
    assert_eq!(metric(&m, "daehwa_model_unloads_total{model=\"b\"}"), 1.0);
    assert_eq!(metric(&m, "daehwa_model_memory_bytes{model=\"b\"}"), 0.0);
    assert_eq!(metric(&m, "daehwa_model_memory_bytes{model=\"c\"}"), 100.0);
    assert_eq!(metric(&m, "daehwa_model_memory_budget_bytes"), 250.0);
    // And `b` again: reloaded, in place of `a` (used before `c`).
    let (s, _) = send_json(&app, post("/v1/chat/completions", &chat("b"))).await;
    assert_eq!(s, 200);
    assert_eq!(states(&app).await, pairs(&[("a", "unloaded"), ("b", "loaded"), ("c", "loaded")]));
    assert_eq!((loader.loads_of("a"), loader.loads_of("b"), loader.loads_of("c")), (1, 2, 1));
}

#[tokio::test]
async fn a_busy_model_is_not_unloaded_and_the_request_gets_503_with_retry_after() {
    let loader = FakeLoader::new(0, &[]);
    // Room for one; a request waits 300 ms for room.
    let app = server::app(state_waiting(&["a", "b"], 100, Some(150), loader.clone(), Duration::from_millis(300)));
    let (s, _) = send_json(&app, post("/v1/chat/completions", &chat("a"))).await;
    assert_eq!(s, 200);
    // A slow answer keeps `a` busy.
    loader.backend("a").delay_ms.store(60, Ordering::SeqCst);
    let slow = {
        let app = app.clone();
        tokio::spawn(async move { send(&app, post("/v1/chat/completions", &json!({"model": "a", "messages": [{"role": "user", "content": "x"}], "stream": true}).to_string())).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let resp = tower::ServiceExt::oneshot(app.clone(), post("/v1/chat/completions", &chat("b"))).await.expect("infallible");
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("5"));
    let (_, v) = send_json(&app, post("/v1/chat/completions", &chat("b"))).await;
    assert_eq!(v["error"]["code"], "model_memory_exhausted", "{v}");
    assert!(v["error"]["message"].as_str().expect("message").contains("--model-memory"), "{v}");
    assert_eq!(states(&app).await, pairs(&[("a", "loaded"), ("b", "unloaded")]));
    let (s, body) = slow.await.expect("task");
    assert_eq!(s, 200);
    assert!(body.contains("[DONE]"), "the busy model's answer completed: {body}");
    // Idle now (or within the wait): `b` loads in its place.
    let (s, _) = send_json(&app, post("/v1/chat/completions", &chat("b"))).await;
    assert_eq!(s, 200);
    assert_eq!(states(&app).await, pairs(&[("a", "unloaded"), ("b", "loaded")]));
}

#[tokio::test]
async fn a_request_waits_for_a_busy_model_to_finish_when_the_budget_has_no_room() {
    let loader = FakeLoader::new(0, &[]);
    // Room for one; the default wait (10 s) outlasts the busy answer (~1.3 s).
    let app = server::app(state(&["a", "b"], 100, Some(150), loader.clone()));
    let (s, _) = send_json(&app, post("/v1/chat/completions", &chat("a"))).await;
    assert_eq!(s, 200);
    loader.backend("a").delay_ms.store(60, Ordering::SeqCst);
    let slow = {
        let app = app.clone();
        tokio::spawn(async move { send(&app, post("/v1/chat/completions", &json!({"model": "a", "messages": [{"role": "user", "content": "x"}]}).to_string())).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = std::time::Instant::now();
    let (s, v) = send_json(&app, post("/v1/chat/completions", &chat("b"))).await;
    assert_eq!(s, 200, "{v}");
    assert!(t.elapsed() >= Duration::from_millis(500), "it waited for `a` to finish: {:?}", t.elapsed());
    let (s, body) = slow.await.expect("task");
    assert_eq!(s, 200, "the busy model's answer was not cut: {body}");
    assert!(body.contains(common::ANSWER), "{body}");
    assert_eq!(states(&app).await, pairs(&[("a", "unloaded"), ("b", "loaded")]));
}

#[tokio::test]
async fn a_conversation_answers_with_its_own_model() {
    let loader = FakeLoader::new(50, &[]);
    let dir = webkit::scratch("models-conv");
    let store = server::store::Store::connect(&server::store::Store::default_sqlite_url(&dir)).await.expect("store");
    let st = state(&["a", "b"], 100, None, loader.clone()).with_accounts(server::web::Accounts::new(store));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server::serve(listener, st, async move { let _ = rx.await; }, Duration::ZERO));
    let mut c = webkit::Client::new(addr);
    let r = c.post("/api/auth/setup", &json!({"username": "admin", "password": "correct horse battery"})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    c.keep_cookie(&r);

    let listed = c.get("/api/models").await.json();
    let ids: Vec<&str> = listed["models"].as_array().expect("models").iter().map(|m| m["id"].as_str().expect("id")).collect();
    assert_eq!(ids, vec!["a", "b"]);
    assert_eq!(listed["models"][1]["state"], "unloaded");
    assert_eq!(listed["models"][1]["name"], "b-alias");

    let conv = webkit::new_conversation(&c, json!({"model": "b"})).await;
    let events = c.stream(&format!("/api/conversations/{conv}/messages"), &json!({"content": "hello"})).await.collect().await;
    let done = events.iter().find(|e| e.name == "done").unwrap_or_else(|| panic!("no done in {events:?}"));
    assert_eq!(done.data["message"]["model"], "b");
    assert_eq!(loader.loads_of("a"), 0, "the default model was not needed");
    assert!(!loader.backend("b").submitted.lock().expect("lock").is_empty());
    // The title is asked of the conversation's model too.
    let title = webkit::eventually(5, "the automatic title", || async {
        let t = c.get(&format!("/api/conversations/{conv}")).await.json()["title"].as_str().unwrap_or("").to_string();
        (!t.is_empty()).then_some(t)
    })
    .await;
    assert!(!title.is_empty());
    assert_eq!(loader.loads_of("a"), 0);
    // Switching the conversation to `a` answers with `a`.
    let r = c.patch(&format!("/api/conversations/{conv}"), &json!({"model": "a"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let events = c.stream(&format!("/api/conversations/{conv}/messages"), &json!({"content": "again"})).await.collect().await;
    let done = events.iter().find(|e| e.name == "done").unwrap_or_else(|| panic!("no done in {events:?}"));
    assert_eq!(done.data["message"]["model"], "a");
    assert_eq!(loader.loads_of("a"), 1);
    // An unknown model is refused when stored.
    let r = c.patch(&format!("/api/conversations/{conv}"), &json!({"model": "zzz"})).await;
    assert_eq!(r.status, 404, "{}", r.body);
    let _ = tx.send(());
}

//! `/health` and `/metrics` tell the engine's real state (issue 12, item 6), over the real engine
//! and the real SmolLM2 model with the engine's code-only fault hook: a panic in a step fails
//! that request (500), the next one is served, `/health` says degraded and `/metrics` counts the
//! panic; once the engine thread is gone `/health` answers 503 `dead`.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::{get, post, send, send_json};
use engine::runner::Fault;

const FAULT: u32 = 49_000;

fn model_path() -> PathBuf {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    [
        env("DAEHWA_SMOLLM2_GGUF"),
        env("DAEHWA_MODELS_DIR").map(|d| d.join("smollm2.gguf")),
        env("XDG_DATA_HOME").map(|d| d.join("daehwa/models/smollm2.gguf")),
        env("HOME").map(|h| h.join(".local/share/daehwa/models/smollm2.gguf")),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.is_file())
    .expect("the SmolLM2 model is missing: run `cargo run --release -- pull smollm2`")
}

fn app(fault: Fault) -> axum::Router {
    let engine = engine::Engine::load(model_path(), &engine::EngineConfig::default()).expect("load SmolLM2");
    let cfg = engine::runner::RunnerConfig { n_ctx: 512, max_seqs: 2, fault: Some(fault), ..Default::default() };
    let handle = engine::runner::EngineHandle::start(Arc::new(engine), cfg).expect("engine thread");
    let state = server::AppState::new(Arc::new(server::EngineBackend::new(handle)), server::ServeConfig::new("smollm2"));
    server::app(state)
}

fn completion(tokens: &[u32]) -> String {
    serde_json::json!({ "prompt": tokens, "max_tokens": 4, "temperature": 0 }).to_string()
}

#[tokio::test]
async fn a_panic_fails_one_request_and_health_says_degraded() {
    let app = app(Fault::PanicOnToken(FAULT));
    let (s, v) = send_json(&app, get("/health")).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")), "{v}");
    let (s, body) = send(&app, post("/v1/completions", &completion(&[504, 2683, FAULT]))).await;
    assert_eq!(s, 500, "{body}");
    let (s, _) = send(&app, post("/v1/completions", &completion(&[504, 2683, 314]))).await;
    assert_eq!(s, 200, "the next request is served");
    let (s, v) = send_json(&app, get("/health")).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("degraded")), "{v}");
    assert!(v["reason"].as_str().is_some_and(|r| r.contains("panicked")), "{v}");
    let (_, metrics) = send(&app, get("/metrics")).await;
    assert!(metrics.contains("daehwa_engine_panics_total 1\n"), "{metrics}");
    assert!(metrics.contains("daehwa_engine_state{state=\"degraded\"} 1\n"), "{metrics}");
}

#[tokio::test]
async fn health_is_503_once_the_engine_thread_is_gone() {
    let app = app(Fault::KillOnToken(FAULT));
    let (s, _) = send(&app, get("/health")).await;
    assert_eq!(s, 200);
    let (s, body) = send(&app, post("/v1/completions", &completion(&[504, 2683, FAULT]))).await;
    assert_eq!(s, 500, "{body}");
    let t0 = std::time::Instant::now();
    loop {
        let (s, v) = send_json(&app, get("/health")).await;
        if s == 503 {
            assert_eq!(v["status"], "dead", "{v}");
            assert!(v["reason"].as_str().is_some_and(|r| r.contains("engine thread stopped")), "{v}");
            break;
        }
        assert!(t0.elapsed().as_secs() < 30, "/health still {s}: {v}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (_, metrics) = send(&app, get("/metrics")).await;
    assert!(metrics.contains("daehwa_engine_state{state=\"dead\"} 1\n"), "{metrics}");
    let (s, _) = send(&app, post("/v1/completions", &completion(&[504, 2683]))).await;
    assert_eq!(s, 503);
}

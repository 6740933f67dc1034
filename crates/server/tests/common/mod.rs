//! A scripted [`Backend`] for the HTTP tests: tokens are bytes, and every sequence answers with
//! the same UTF-8 text one byte per token, so incomplete-UTF-8 tokens occur (in the Korean part).

#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response};
use http_body_util::BodyExt;
use server::backend::{ChatMessage, PromptError, TokenId, TokenLogprob, TokenOut};
use server::{Backend, ChoiceSink, Event, FinishReason, GenRequest, Stats, SubmitError, Usage};
use tower::ServiceExt;

pub const ANSWER: &str = "Hello, world! 안녕";

#[derive(Default)]
pub struct Fake {
    pub s: Arc<Shared>,
}

#[derive(Default)]
pub struct Shared {
    /// Context length; 0 means 64.
    pub n_ctx: AtomicUsize,
    pub queue_full: AtomicBool,
    /// Pause between tokens (ms), so a client can leave mid-stream.
    pub delay_ms: AtomicUsize,
    pub running: AtomicUsize,
    pub cancelled: AtomicUsize,
    pub submitted: Mutex<Vec<GenRequest>>,
    /// Calls of `chat_prompt` and `raw_prompt`.
    pub tokenized: AtomicUsize,
}

/// Collects at most `max_tokens + 1` tokens, like the engine: stops once the limit is passed.
fn limited(tokens: impl Iterator<Item = TokenId>, max_tokens: usize) -> Result<Vec<TokenId>, PromptError> {
    let v: Vec<TokenId> = tokens.take(max_tokens.saturating_add(1)).collect();
    if v.len() > max_tokens {
        return Err(PromptError::TooLong { limit: max_tokens, at_least: v.len() });
    }
    Ok(v)
}

impl Backend for Fake {
    fn n_ctx(&self) -> usize {
        match self.s.n_ctx.load(Ordering::SeqCst) {
            0 => 64,
            n => n,
        }
    }
    fn n_vocab(&self) -> usize {
        300
    }
    fn max_token_bytes(&self) -> usize {
        // Tokens are bytes.
        1
    }
    fn chat_prompt(&self, messages: &[ChatMessage], max_tokens: usize) -> Result<Vec<TokenId>, PromptError> {
        self.s.tokenized.fetch_add(1, Ordering::SeqCst);
        if messages.iter().any(|m| m.content == "RAISE") {
            return Err(PromptError::Invalid("Conversation roles must alternate user/assistant".into()));
        }
        limited(messages.iter().flat_map(|m| m.content.bytes().map(u32::from)), max_tokens)
    }
    fn raw_prompt(&self, text: &str, max_tokens: usize) -> Result<Vec<TokenId>, PromptError> {
        self.s.tokenized.fetch_add(1, Ordering::SeqCst);
        limited(text.bytes().map(u32::from), max_tokens)
    }
    fn token_bytes(&self, id: TokenId) -> Vec<u8> {
        if id < 256 { vec![id as u8] } else { format!("<{id}>").into_bytes() }
    }
    fn submit(&self, req: GenRequest, sink: ChoiceSink) -> Result<(), SubmitError> {
        if self.s.queue_full.load(Ordering::SeqCst) {
            return Err(SubmitError::QueueFull);
        }
        if req.prompt.len() > self.n_ctx() {
            return Err(SubmitError::PromptTooLong { n_prompt: req.prompt.len(), n_ctx: self.n_ctx() });
        }
        self.s.submitted.lock().expect("lock").push(req.clone());
        let delay = Duration::from_millis(self.s.delay_ms.load(Ordering::SeqCst) as u64);
        let me = self.s.clone();
        me.running.fetch_add(1, Ordering::SeqCst);
        std::thread::spawn(move || {
            run(&me, req, sink, delay);
            me.running.fetch_sub(1, Ordering::SeqCst);
        });
        Ok(())
    }
    /// An estimate of 1 mJ per token (prompt and generated).
    fn energy_method(&self) -> Option<server::openai::common::EnergyMethod> {
        Some(server::openai::common::EnergyMethod::Estimate)
    }
    fn stats(&self) -> Stats {
        Stats { running: self.s.running.load(Ordering::SeqCst), kv_blocks_total: 10, ..Stats::default() }
    }
    fn shutdown(&self, _drain: Duration) {}
}

fn run(me: &Shared, req: GenRequest, sink: ChoiceSink, delay: Duration) {
    let bytes = ANSWER.as_bytes();
    let n = bytes.len().min(req.params.max_tokens);
    let mut pending = Vec::new();
    for &b in &bytes[..n] {
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        pending.push(b);
        let text = match std::str::from_utf8(&pending) {
            Ok(s) => {
                let s = s.to_string();
                pending.clear();
                s
            }
            Err(_) => String::new(),
        };
        let (logprob, top) = match req.params.top_logprobs {
            Some(k) => (Some(-0.25), (0..k as u32).map(|i| TokenLogprob { id: 97 + i, logprob: -1.0 - i as f32 }).collect()),
            None => (None, Vec::new()),
        };
        if !sink.send(Event::Token(TokenOut { id: u32::from(b), text, logprob, top })) {
            me.cancelled.fetch_add(1, Ordering::SeqCst);
            return;
        }
    }
    let finish = if n < bytes.len() { FinishReason::Length } else { FinishReason::Stop };
    let usage = Usage { prompt_tokens: req.prompt.len(), completion_tokens: n, cached_tokens: 1, energy_uj: 1000 * (req.prompt.len() + n) as u64 };
    let tail = String::from_utf8_lossy(&pending).into_owned();
    sink.send(Event::Done { finish, usage, tail, stop: None });
}

pub fn state(fake: Arc<Fake>, keys: &[&str]) -> server::AppState {
    let mut cfg = server::ServeConfig::new("smollm2");
    cfg.model_aliases = vec!["SmolLM2 135M".into()];
    cfg.api_keys = keys.iter().map(|k| k.to_string()).collect();
    cfg.body_limit = 64 << 10;
    server::AppState::new(fake, cfg)
}

pub fn post(path: &str, body: &str) -> Request<Body> {
    Request::post(path).header("content-type", "application/json").body(Body::from(body.to_string())).expect("request")
}

pub fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).expect("request")
}

pub async fn send(app: &axum::Router, req: Request<Body>) -> (u16, String) {
    let resp: Response<Body> = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8(body.to_vec()).expect("utf-8 body"))
}

pub async fn send_json(app: &axum::Router, req: Request<Body>) -> (u16, serde_json::Value) {
    let (s, b) = send(app, req).await;
    (s, serde_json::from_str(&b).unwrap_or_else(|e| panic!("not JSON ({e}): {b}")))
}

/// Splits an SSE body into its `data:` payloads, checking the framing on the way.
pub fn sse_data(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    for event in body.split("\n\n").filter(|e| !e.trim().is_empty()) {
        for line in event.lines() {
            if let Some(d) = line.strip_prefix("data: ") {
                out.push(d.to_string());
            } else {
                assert!(line.starts_with(':'), "unexpected SSE line {line:?}");
            }
        }
    }
    out
}

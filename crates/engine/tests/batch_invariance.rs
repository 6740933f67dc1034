//! Batch invariance of the engine thread on the real SmolLM2-135M-Instruct Q4_1: the golden chat
//! prompts run one at a time and then all at once (continuous batching, mixed prefill and
//! decode in one forward pass, paged KV with shared prefix blocks) give identical ids and
//! identical log-probs, bit for bit, and both equal the single-conversation `Session` on the
//! contiguous cache.

mod common;

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use engine::runner::{EngineHandle, Event, Request, RunnerConfig, Usage};
use engine::sample::{SamplingParams, TokenLogprob};
use engine::{Engine, EngineConfig, FinishReason, GenParams, Session};
use serde_json::Value;

fn golden_prompts() -> Vec<(String, Vec<u32>)> {
    let dir = std::env::var("DAEHWA_GOLDEN_DIR").unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/golden").to_string());
    let text = std::fs::read_to_string(format!("{dir}/chat-smollm2-q4_1.jsonl")).expect("golden file");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("json");
            let ids = v["prompt_token_ids"].as_array().expect("ids").iter().map(|x| x.as_u64().expect("id") as u32).collect();
            (v["name"].as_str().expect("name").to_string(), ids)
        })
        .collect()
}

/// Everything a request produced, log-probs as bits so equality is exact.
#[derive(Debug, PartialEq)]
struct Outcome {
    ids: Vec<u32>,
    logprobs: Vec<u32>,
    top: Vec<Vec<(u32, u32)>>,
    text: String,
    finish: FinishReason,
    completion_tokens: usize,
}

fn top_bits(top: &[TokenLogprob]) -> Vec<(u32, u32)> {
    top.iter().map(|t| (t.id, t.logprob.to_bits())).collect()
}

fn collect(rx: &mpsc::Receiver<Event>) -> (Outcome, Usage) {
    let mut o = Outcome { ids: vec![], logprobs: vec![], top: vec![], text: String::new(), finish: FinishReason::Cancelled, completion_tokens: 0 };
    loop {
        match rx.recv_timeout(Duration::from_secs(300)).expect("an event within 5 minutes") {
            Event::Token(t) => {
                o.ids.push(t.id);
                o.logprobs.push(t.logprob.expect("logprobs requested").to_bits());
                o.top.push(top_bits(&t.top));
                o.text.push_str(&t.text);
            }
            Event::Done { finish, usage, tail, .. } => {
                o.text.push_str(&tail);
                o.finish = finish;
                o.completion_tokens = usage.completion_tokens;
                return (o, usage);
            }
            Event::Error(e) => panic!("request failed: {e}"),
        }
    }
}

fn params() -> GenParams {
    GenParams { sampling: SamplingParams::greedy(), max_tokens: 32, top_logprobs: Some(5), ..GenParams::default() }
}

#[test]
fn golden_prompts_alone_and_all_at_once_give_identical_ids_and_logprobs() {
    let engine = Arc::new(Engine::load(common::smollm2(), &EngineConfig { threads: 2, ..EngineConfig::default() }).expect("load smollm2"));
    let prompts = golden_prompts();
    assert!(prompts.len() >= 6, "expected the golden chat prompts");

    // Reference: the single-conversation session on the contiguous cache.
    let mut reference = Vec::new();
    for (name, p) in &prompts {
        let mut s = Session::new(&engine, 1024);
        let g = s.generate(p, &params(), |_| true).expect("generate");
        reference.push(Outcome {
            ids: g.tokens.iter().map(|t| t.id).collect(),
            logprobs: g.tokens.iter().map(|t| t.logprob.expect("lp").to_bits()).collect(),
            top: g.tokens.iter().map(|t| top_bits(&t.top)).collect(),
            text: g.text.clone(),
            finish: g.finish,
            completion_tokens: g.tokens.len(),
        });
        assert!(!g.tokens.is_empty(), "{name}");
    }

    let cfg = RunnerConfig { n_ctx: 1024, max_seqs: 16, step_token_budget: 512, ..RunnerConfig::default() };
    let handle = EngineHandle::start(engine.clone(), cfg).expect("start");

    // One at a time.
    for ((name, p), want) in prompts.iter().zip(&reference) {
        let (tx, rx) = mpsc::channel();
        handle.submit(Request { prompt: p.clone(), params: params(), salt: 0 }, Box::new(tx)).expect("submit");
        let (got, usage) = collect(&rx);
        assert_eq!(&got, want, "{name}: runner alone differs from the session");
        assert_eq!(usage.prompt_tokens, p.len());
    }

    // All at once (each prompt twice, so identical requests also run side by side), in two
    // rounds: in the second, every prompt's leading blocks come from the prefix cache.
    let both: Vec<_> = prompts.iter().chain(&prompts).cloned().collect();
    let reference: Vec<_> = reference.iter().chain(&reference).collect();
    for round in 0..2 {
        let rxs: Vec<_> = both
            .iter()
            .map(|(_, p)| {
                let (tx, rx) = mpsc::channel();
                handle.submit(Request { prompt: p.clone(), params: params(), salt: 0 }, Box::new(tx)).expect("submit");
                rx
            })
            .collect();
        let mut cached = 0;
        for ((rx, (name, _)), want) in rxs.iter().zip(&both).zip(&reference) {
            let (got, usage) = collect(rx);
            assert_eq!(&got, *want, "{name}: round {round} of all at once differs from alone");
            cached += usage.cached_tokens;
        }
        if round == 1 {
            assert!(cached > 0, "identical prompts must hit the prefix cache");
        }
    }
    // Stats are published after each step, a moment after the last event was sent.
    let n_requests = prompts.len() as u64 * 5;
    let t0 = std::time::Instant::now();
    while handle.stats().requests_finished < n_requests {
        assert!(t0.elapsed() < Duration::from_secs(60), "{:?}", handle.stats());
        std::thread::sleep(Duration::from_millis(10));
    }
    let st = handle.stats();
    assert_eq!((st.running, st.queue_depth, st.kv_blocks_used), (0, 0, 0), "{st:?}");
    handle.shutdown(Duration::from_secs(1));
}

//! The engine thread on the real SmolLM2-135M-Instruct Q4_1: prefix reuse across turns,
//! concurrency, cancellation, preemption under a tiny KV budget, request validation and
//! shutdown. Outputs are checked against the single-conversation `Session` on the contiguous
//! cache (exact equality: the runner is batch-invariant).

mod common;

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::runner::{EngineHandle, Event, Request, RunnerConfig, Stats, SubmitError, Usage};
use engine::sample::SamplingParams;
use engine::{Engine, EngineConfig, FinishReason, GenParams, Session};
use serde_json::Value;

fn engine() -> Arc<Engine> {
    Arc::new(Engine::load(common::smollm2(), &EngineConfig { threads: 2, ..EngineConfig::default() }).expect("load smollm2"))
}

fn golden_prompts() -> Vec<Vec<u32>> {
    let dir = std::env::var("DAEHWA_GOLDEN_DIR").unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/golden").to_string());
    let text = std::fs::read_to_string(format!("{dir}/chat-smollm2-q4_1.jsonl")).expect("golden file");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("json");
            v["prompt_token_ids"].as_array().expect("ids").iter().map(|x| x.as_u64().expect("id") as u32).collect()
        })
        .collect()
}

#[derive(Debug, PartialEq)]
struct Outcome {
    ids: Vec<u32>,
    text: String,
    finish: FinishReason,
}

fn collect(rx: &mpsc::Receiver<Event>) -> (Outcome, Usage) {
    let mut o = Outcome { ids: vec![], text: String::new(), finish: FinishReason::Cancelled };
    loop {
        match rx.recv_timeout(Duration::from_secs(300)).expect("an event within 5 minutes") {
            Event::Token(t) => {
                o.ids.push(t.id);
                o.text.push_str(&t.text);
            }
            Event::Done { finish, usage, tail, .. } => {
                o.text.push_str(&tail);
                o.finish = finish;
                assert_eq!(usage.completion_tokens, o.ids.len());
                return (o, usage);
            }
            Event::Error(e) => panic!("request failed: {e}"),
        }
    }
}

fn solo(engine: &Engine, prompt: &[u32], params: &GenParams) -> Outcome {
    let mut s = Session::new(engine, 2048);
    let g = s.generate(prompt, params, |_| true).expect("generate");
    Outcome { ids: g.tokens.iter().map(|t| t.id).collect(), text: g.text, finish: g.finish }
}

fn submit(h: &EngineHandle, prompt: &[u32], params: &GenParams) -> mpsc::Receiver<Event> {
    let (tx, rx) = mpsc::channel();
    h.submit(Request { prompt: prompt.to_vec(), params: params.clone(), salt: 0 }, Box::new(tx)).expect("submit");
    rx
}

fn greedy(max_tokens: usize) -> GenParams {
    GenParams { sampling: SamplingParams::greedy(), max_tokens, ..GenParams::default() }
}

/// Polls `stats` until `done` holds (the engine thread publishes after each step).
fn wait_for(h: &EngineHandle, what: &str, done: impl Fn(&Stats) -> bool) -> Stats {
    let t0 = Instant::now();
    loop {
        let s = h.stats();
        if done(&s) {
            return s;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "timed out waiting for {what}: {s:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_follow_up_turn_reuses_the_cached_prefix_and_matches_a_cold_run() {
    let e = engine();
    let cfg = RunnerConfig { n_ctx: 1024, max_seqs: 4, ..RunnerConfig::default() };
    let warm = EngineHandle::start(e.clone(), cfg.clone()).expect("start");
    let turn1 = golden_prompts().remove(0);
    let (first, usage1) = collect(&submit(&warm, &turn1, &greedy(16)));
    assert_eq!(usage1.cached_tokens, 0);
    let mut turn2 = turn1.clone();
    turn2.extend(&first.ids);
    turn2.extend(e.tokenizer.encode("\n<|im_start|>user\nAnd what about Germany?<|im_end|>\n<|im_start|>assistant\n", false, true));

    let (warm_out, warm_usage) = collect(&submit(&warm, &turn2, &greedy(24)));
    let cold = EngineHandle::start(e.clone(), cfg).expect("start");
    let (cold_out, cold_usage) = collect(&submit(&cold, &turn2, &greedy(24)));
    assert_eq!(cold_usage.cached_tokens, 0);
    // Turn 1 left its prompt and all but the last generated token in full blocks of 16.
    let bs = warm.stats().kv_block_size;
    let expect_cached = (turn1.len() + first.ids.len() - 1) / bs * bs;
    assert!(expect_cached >= 32);
    assert_eq!(warm_usage.cached_tokens, expect_cached, "{warm_usage:?}");
    assert_eq!(warm_usage.prompt_tokens, turn2.len());
    assert_eq!(warm_out, cold_out, "reusing cached K/V must not change the output");
    assert_eq!(warm_out, solo(&e, &turn2, &greedy(24)));
    let st = warm.stats();
    assert!(st.cached_tokens_total >= expect_cached as u64, "{st:?}");
    assert!(st.kv_blocks_cached > 0 && st.kv_blocks_used == 0, "{st:?}");
}

#[test]
fn sixteen_concurrent_requests_complete_with_their_solo_outputs() {
    let e = engine();
    let prompts = golden_prompts();
    let mut jobs = Vec::new();
    for i in 0..16 {
        let p = prompts[i % prompts.len()].clone();
        let mut params = greedy(8 + (i * 5) % 20);
        match i % 4 {
            // Seeded sampling is batch-invariant too.
            1 => params.sampling = SamplingParams { seed: Some(1000 + i as u64), ..SamplingParams::default() },
            // Stop strings end generation where the session ends it.
            2 => params.stop = vec![", la".into(), " the".into(), "\n".into()],
            3 => params.ignore_eos = true,
            _ => {}
        }
        jobs.push((p, params));
    }
    let want: Vec<Outcome> = jobs.iter().map(|(p, params)| solo(&e, p, params)).collect();
    let h = EngineHandle::start(e.clone(), RunnerConfig { n_ctx: 1024, max_seqs: 16, step_token_budget: 256, ..RunnerConfig::default() }).expect("start");
    let rxs: Vec<_> = jobs.iter().map(|(p, params)| submit(&h, p, params)).collect();
    for (i, (rx, want)) in rxs.iter().zip(&want).enumerate() {
        let (got, usage) = collect(rx);
        assert_eq!(&got, want, "request {i}");
        assert_eq!(usage.prompt_tokens, jobs[i].0.len());
        if jobs[i].1.ignore_eos {
            assert_eq!((got.finish, got.ids.len()), (FinishReason::Length, jobs[i].1.max_tokens));
        }
    }
    assert!(want.iter().any(|w| w.finish == FinishReason::Stop), "some request should end on a stop string or eog");
    let st = wait_for(&h, "all finished", |s| s.requests_finished == 16);
    assert_eq!((st.running, st.queue_depth, st.kv_blocks_used), (0, 0, 0), "{st:?}");
    assert_eq!(st.generated_tokens_total, want.iter().map(|w| w.ids.len() as u64).sum::<u64>());
}

#[test]
fn a_dropped_receiver_cancels_its_sequence_and_frees_its_blocks() {
    let e = engine();
    let h = EngineHandle::start(e.clone(), RunnerConfig { n_ctx: 1024, max_seqs: 4, ..RunnerConfig::default() }).expect("start");
    let prompts = golden_prompts();
    let long = GenParams { ignore_eos: true, ..greedy(500) };
    let gone = submit(&h, &prompts[0], &long);
    let stays = submit(&h, &prompts[1], &greedy(12));
    for _ in 0..3 {
        assert!(matches!(gone.recv_timeout(Duration::from_secs(120)), Ok(Event::Token(_))));
    }
    let during = h.stats();
    assert!(during.kv_blocks_used > 0, "{during:?}");
    drop(gone);
    let (out, _) = collect(&stays);
    assert_eq!(out, solo(&e, &prompts[1], &greedy(12)), "the other request is unaffected");
    let st = wait_for(&h, "the cancelled sequence to be freed", |s| s.requests_finished == 2);
    assert_eq!((st.running, st.kv_blocks_used), (0, 0), "{st:?}");
    assert!(st.generated_tokens_total < 100, "the cancelled request stopped early: {st:?}");
}

#[test]
fn preemption_under_a_tiny_kv_budget_keeps_every_greedy_output() {
    let e = engine();
    let hp = e.model.hparams();
    let block_bytes = 2 * hp.n_layer * 16 * hp.kv_dim() * 2;
    // 10 blocks of 16 = 160 positions for 4 requests of up to 68 + 40 tokens each.
    let cfg = RunnerConfig { n_ctx: 1024, max_seqs: 4, kv_memory_bytes: Some(10 * block_bytes), block_size: 16, ..RunnerConfig::default() };
    let h = EngineHandle::start(e.clone(), cfg).expect("start");
    assert_eq!(h.stats().kv_blocks_total, 10);
    let prompts: Vec<Vec<u32>> = golden_prompts().into_iter().take(4).collect();
    let params = GenParams { ignore_eos: true, ..greedy(40) };
    let rxs: Vec<_> = prompts.iter().map(|p| submit(&h, p, &params)).collect();
    for (i, (rx, p)) in rxs.iter().zip(&prompts).enumerate() {
        let (got, usage) = collect(rx);
        assert_eq!(got, solo(&e, p, &params), "request {i}");
        assert_eq!(usage.completion_tokens, 40);
    }
    let st = wait_for(&h, "all finished", |s| s.requests_finished == 4);
    assert!(st.preemptions_total > 0, "the budget is meant to force preemption: {st:?}");
    assert_eq!(st.kv_blocks_used, 0);
}

#[test]
fn bad_requests_are_refused_and_shutdown_ends_everything() {
    let e = engine();
    let cfg = RunnerConfig { n_ctx: 256, max_seqs: 1, queue_capacity: 1, ..RunnerConfig::default() };
    let h = EngineHandle::start(e.clone(), cfg).expect("start");
    let p = golden_prompts().remove(0);
    let sink = || Box::new(mpsc::channel().0);
    let req = |prompt: Vec<u32>, params: GenParams| Request { prompt, params, salt: 0 };
    assert!(matches!(h.submit(req(vec![], greedy(4)), sink()), Err(SubmitError::Invalid(_))));
    assert_eq!(h.submit(req(vec![1; 300], greedy(4)), sink()), Err(SubmitError::PromptTooLong { n_prompt: 300, n_ctx: 256 }));
    assert!(matches!(h.submit(req(vec![u32::MAX], greedy(4)), sink()), Err(SubmitError::Invalid(m)) if m.contains("vocabulary")));
    let hot = GenParams { sampling: SamplingParams { temperature: 5.0, ..SamplingParams::default() }, ..greedy(4) };
    assert!(matches!(h.submit(req(p.clone(), hot), sink()), Err(SubmitError::Invalid(m)) if m.contains("temperature")));

    // max_tokens 0: done at once, with usage.
    let (o, u) = collect(&submit(&h, &p, &greedy(0)));
    assert_eq!((o.ids.len(), o.finish, u.prompt_tokens), (0, FinishReason::Length, p.len()));

    // One running (max_seqs 1), one queued (capacity 1), the next refused.
    let long = GenParams { ignore_eos: true, ..greedy(200) };
    let running = submit(&h, &p, &long);
    wait_for(&h, "the first request to run", |s| s.running == 1 && s.queue_depth == 0);
    let queued = submit(&h, &p, &long);
    assert_eq!(h.stats().queue_depth, 1);
    assert_eq!(h.submit(req(p.clone(), long.clone()), sink()), Err(SubmitError::QueueFull));

    h.shutdown(Duration::from_millis(0));
    assert_eq!(h.submit(req(p.clone(), greedy(4)), sink()), Err(SubmitError::Stopped));
    let mut n_tokens = 0;
    let end = loop {
        match running.recv_timeout(Duration::from_secs(60)).expect("an event") {
            Event::Token(_) => n_tokens += 1,
            other => break other,
        }
    };
    assert!(matches!(end, Event::Done { finish: FinishReason::Cancelled, .. }), "{end:?}");
    assert!(n_tokens < 200);
    assert!(matches!(queued.recv_timeout(Duration::from_secs(60)), Ok(Event::Error(_))));
}

/// SmolLM2 has no sliding-window layers: the cache is one group of blocks holding every layer,
/// sized as before the window groups existed, and its window counters stay 0.
#[test]
fn a_model_without_sliding_windows_keeps_one_block_group() {
    let e = engine();
    let hp = e.model.hparams();
    let block_bytes = 2 * hp.n_layer * 16 * hp.kv_dim() * 2;
    let budget = 4 << 20;
    let cfg = RunnerConfig { n_ctx: 1024, max_seqs: 4, kv_memory_bytes: Some(budget), block_size: 16, ..RunnerConfig::default() };
    let h = EngineHandle::start(e.clone(), cfg).expect("start");
    let st = h.stats();
    assert_eq!(st.kv_blocks_total, budget / block_bytes, "{st:?}");
    assert_eq!(st.kv_bytes, st.kv_blocks_total * block_bytes);
    assert_eq!((st.kv_window_blocks_total, st.kv_tokens), (0, st.kv_blocks_total * 16), "{st:?}");
    // The longest prompt is what the blocks hold.
    let too_long = vec![1; st.kv_tokens + 1];
    assert_eq!(
        h.submit(Request { prompt: too_long, params: greedy(1), salt: 0 }, Box::new(mpsc::channel().0)),
        Err(SubmitError::PromptTooLong { n_prompt: st.kv_tokens + 1, n_ctx: st.kv_tokens })
    );
    let p = golden_prompts().remove(0);
    let rx = submit(&h, &p, &GenParams { ignore_eos: true, ..greedy(40) });
    // Tokens are sent before their step's stats are published: after three, two steps were.
    for _ in 0..3 {
        assert!(matches!(rx.recv_timeout(Duration::from_secs(120)), Ok(Event::Token(_))));
    }
    let during = h.stats();
    assert!(during.kv_blocks_used > 0 && during.kv_window_blocks_used == 0, "{during:?}");
    while !matches!(rx.recv_timeout(Duration::from_secs(120)).expect("an event"), Event::Done { .. }) {}
    let st = wait_for(&h, "the request to finish", |s| s.requests_finished == 1);
    assert_eq!((st.kv_blocks_used, st.kv_window_blocks_used, st.kv_window_blocks_cached), (0, 0, 0), "{st:?}");
    // Without a budget: max_seqs full contexts.
    let h = EngineHandle::start(e.clone(), RunnerConfig { n_ctx: 1024, max_seqs: 4, ..RunnerConfig::default() }).expect("start");
    assert_eq!((h.stats().kv_blocks_total, h.stats().kv_tokens), (4 * 1024 / 16, 4 * 1024));
}

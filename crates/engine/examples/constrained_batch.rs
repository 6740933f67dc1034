//! Constrained decoding's cost in the engine's batch: decode tokens/s of `--seqs` sequences run
//! together by the engine thread, all unconstrained (A) vs `--constrained` of them under a JSON
//! schema grammar (B), alternated A B A B for `--pairs` pairs; prints the medians and B / A as
//! one JSON line. Driven by `bench/grammar-engine` (see bench/README.md).
//!
//! Every sequence generates exactly `--tokens` tokens: the unconstrained ones ignore EOS, the
//! constrained ones must write a string longer than the budget, so their grammar never completes.
//! Throughput = tokens generated while all `--seqs` sequences decode together (from the moment the
//! last one has its first token to the moment the first one has its last) / that time: batch
//! decode only, prompt processing excluded. Every round's prompts are new (no prefix-cache hits).

use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use engine::constraint::GrammarSource;
use engine::runner::{EngineHandle, Event, Request, RunnerConfig};
use engine::sample::SamplingParams;
use engine::text::template::ChatMessage;
use engine::{Engine, EngineConfig, FinishReason, GenParams};

struct Args {
    model: PathBuf,
    seqs: usize,
    constrained: usize,
    tokens: usize,
    pairs: usize,
    threads: usize,
}

fn args() -> Result<Args, String> {
    let mut a = Args { model: PathBuf::new(), seqs: 8, constrained: 4, tokens: 128, pairs: 5, threads: 2 };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().ok_or(format!("{k} needs a value"))?;
        let n = || v.parse::<usize>().map_err(|e| format!("{k}: {e}"));
        match k.as_str() {
            "--model" => a.model = PathBuf::from(&v),
            "--seqs" => a.seqs = n()?,
            "--constrained" => a.constrained = n()?,
            "--tokens" => a.tokens = n()?,
            "--pairs" => a.pairs = n()?,
            "--threads" => a.threads = n()?,
            _ => return Err(format!("unknown option {k}")),
        }
    }
    if a.model.as_os_str().is_empty() {
        return Err("--model PATH is required".into());
    }
    Ok(a)
}

fn round(e: &Engine, h: &EngineHandle, a: &Args, constrained: usize, tokens: usize, tag: u64) -> Result<f64, String> {
    let schema = serde_json::json!({
        "type": "object",
        "properties": {"story": {"type": "string", "minLength": 4000, "maxLength": 5000}},
        "required": ["story"],
        "additionalProperties": false,
    });
    let grammar = e.compile_grammar(&GrammarSource::JsonSchema { schema, strict: true }).map_err(|e| e.to_string())?;
    let mut rxs = Vec::new();
    for i in 0..a.seqs {
        // A prompt of its own in every round (`tag`): a prompt seen before would be a cache hit and
        // make that round's prefill, inside the measured window for the first sequences, cheaper.
        let text = format!("Write a long story about a lighthouse keeper, part {tag:04}{i:02}.");
        let prompt = e.chat_prompt(&[ChatMessage::new("user", &text)]).map_err(|e| e.to_string())?;
        let c = i < constrained;
        let params = GenParams {
            sampling: SamplingParams { seed: Some(tag * 100 + i as u64), temperature: 0.7, ..SamplingParams::default() },
            max_tokens: tokens,
            ignore_eos: !c,
            grammar: c.then(|| grammar.clone()),
            ..GenParams::default()
        };
        let (tx, rx) = mpsc::channel::<Event>();
        h.submit(Request { prompt, params, salt: 0 }, Box::new(tx)).map_err(|e| format!("{e:?}"))?;
        rxs.push(rx);
    }
    // Each sequence's token arrival times, collected by one thread per sequence.
    let times: Vec<Result<Vec<Instant>, String>> = std::thread::scope(|s| {
        let hs: Vec<_> = rxs
            .into_iter()
            .map(|rx| {
                s.spawn(move || {
                    let mut t = Vec::new();
                    loop {
                        match rx.recv_timeout(Duration::from_secs(600)).map_err(|e| e.to_string())? {
                            Event::Token(_) => t.push(Instant::now()),
                            Event::Done { finish: FinishReason::Length, .. } => return Ok(t),
                            Event::Done { finish, .. } => return Err(format!("a sequence ended early ({finish:?})")),
                            Event::Error(e) => return Err(e.to_string()),
                        }
                    }
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("a collector panicked".into()))).collect()
    });
    let times = times.into_iter().collect::<Result<Vec<_>, _>>()?;
    // The window where every sequence is decoding (all prefills done, none finished).
    let start = times.iter().filter_map(|t| t.first()).max().ok_or("no token")?;
    let end = times.iter().filter_map(|t| t.last()).min().ok_or("no token")?;
    let n = times.iter().flatten().filter(|t| *t > start && *t <= end).count();
    Ok(n as f64 / end.duration_since(*start).as_secs_f64())
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len().is_multiple_of(2) {
        (s[m - 1] + s[m]) / 2.0
    } else {
        s[m]
    }
}

fn main() -> Result<(), String> {
    let a = args()?;
    let e = Arc::new(Engine::load(&a.model, &EngineConfig { threads: a.threads, ..EngineConfig::default() }).map_err(|e| e.to_string())?);
    let h = EngineHandle::start(e.clone(), RunnerConfig { n_ctx: 1024, max_seqs: a.seqs.max(1), ..RunnerConfig::default() })
        .map_err(|e| e.to_string())?;
    round(&e, &h, &a, a.constrained, 16, 999)?; // warm-up: the token trie, caches, the worker threads
    let (mut plain, mut mixed) = (Vec::new(), Vec::new());
    for p in 0..a.pairs {
        plain.push(round(&e, &h, &a, 0, a.tokens, 2 * p as u64)?);
        mixed.push(round(&e, &h, &a, a.constrained, a.tokens, 2 * p as u64 + 1)?);
        eprintln!("[constrained_batch] pair {}: A {:.1} tok/s, B {:.1} tok/s", p + 1, plain[p], mixed[p]);
    }
    let (ma, mb) = (median(&plain), median(&mixed));
    let kernels = if kernels::packed::available() {
        "avx512-vnni (packed)"
    } else if kernels::ops::simd_available() {
        "avx2+fma"
    } else {
        "scalar"
    };
    println!(
        "{}",
        serde_json::json!({
            "seqs": a.seqs, "constrained": a.constrained, "tokens": a.tokens, "pairs": a.pairs, "threads": a.threads,
            "kernels": kernels,
            "unconstrained_tok_s": plain, "with_constrained_tok_s": mixed,
            "median_unconstrained_tok_s": (ma * 10.0).round() / 10.0,
            "median_with_constrained_tok_s": (mb * 10.0).round() / 10.0,
            "ratio": (mb / ma * 1000.0).round() / 1000.0,
        })
    );
    h.shutdown(Duration::from_secs(1));
    Ok(())
}

//! Golden tests against llama.cpp on the real Gemma-3-270M Q4_K_M
//! (`../shared/golden/completion-gemma3-270m-q4_k_m.jsonl`, see its README for how it was made):
//! raw completions with BOS, the same two rules as for SmolLM2 (issue 2, issue 6):
//! (a) greedy decoding gives llama.cpp's first 32 ids, or parts from them only where daehwa's pick
//!     is in llama.cpp's top 5 within 0.5 log-prob of llama.cpp's top choice (a near-tie; here
//!     llama.cpp's own two paths already part at gaps of 0.05 to 0.28);
//! (b) teacher-forced along llama.cpp's ids, the log-probs of llama.cpp's top-5 tokens at the first
//!     16 positions differ by at most 1.75, and by at most 0.35 on average per prompt.
//!
//! The worst-case bound was 1.0 while daehwa's K-quant dots summed in llama.cpp's order (eight
//! float lanes per row), i.e. rounded exactly as llama.cpp's did. They now keep one exact
//! integer total per super-block (the order AMX tiles can produce, so prompts on AMX and decode
//! steps on AVX-512 give the same bits). That order is slightly *more* accurate against the exact
//! value (`kernels/tests/quant_dot.rs::k_quant_float_order_is_as_accurate_as_ggml_order`: mean
//! relative error 2.6e-9 vs 3.7e-9), but it no longer rounds as llama.cpp does, and this 270M
//! model amplifies rounding differences at a few low-ranked log-probs. Measured on the same
//! machine, old order -> new: ko_news worst 0.663 -> 1.153, long_context 0.362 -> 1.562, the
//! others 0.29-0.48 -> 0.28-0.49; means 0.07-0.15 -> 0.08-0.18, so the mean bound is unchanged.
//!
//! Plus what the goldens' short prompts cannot show: the sliding window (the 512-position window
//! of the local layers), checked against a direct evaluation that masks instead of skipping, and
//! the built-in Gemma chat format on this template-less base model.

mod common;

use common::{golden, ids};

use engine::sample::{logprobs, SamplingParams};
use engine::{Engine, EngineConfig, GenParams, Session};
use serde_json::Value;

fn engine() -> Engine {
    Engine::load(common::gemma3(), &EngineConfig { threads: 2, ..EngineConfig::default() }).expect("load gemma3-270m")
}

const GOLDEN: &str = "completion-gemma3-270m-q4_k_m.jsonl";

#[test]
fn hyper_parameters_follow_llama_cpp() {
    let e = engine();
    let hp = e.model.hparams();
    assert_eq!(hp.arch, "gemma3");
    assert_eq!((hp.n_layer, hp.n_embd, hp.n_head, hp.n_head_kv, hp.head_dim, hp.n_ff), (18, 640, 4, 1, 256, 2048));
    assert_eq!(hp.sliding_window, Some(512));
    // llama.cpp's default period 6: layers 5, 11, 17 are global.
    let global: Vec<usize> = (0..hp.n_layer).filter(|&il| hp.window_of(il).is_none()).collect();
    assert_eq!(global, [5, 11, 17]);
    assert_eq!((hp.rope_freq_base, hp.rope_freq_base_swa), (1_000_000.0, 10_000.0));
    assert_eq!(hp.final_logit_softcap, None);
}

#[test]
fn prompt_tokens_match_llama_cpp() {
    let e = engine();
    for g in golden(GOLDEN) {
        let prompt = g["prompt"].as_str().expect("prompt");
        assert_eq!(e.raw_prompt(prompt), ids(&g["prompt_token_ids_add_special_true"]), "{}", g["name"]);
    }
}

/// Rule (a) on one golden record; returns whether all ids were equal.
fn check_greedy(e: &Engine, g: &Value) -> bool {
    let name = g["name"].as_str().expect("name");
    let prompt = ids(&g["prompt_token_ids_add_special_true"]);
    let want = ids(&g["generated_token_ids"]);
    let top5 = g["top5_per_position"].as_array().expect("top5");
    let n = want.len().min(32);
    let mut s = Session::new(e, 2048);
    let params = GenParams { sampling: SamplingParams::greedy(), max_tokens: n, ignore_eos: true, ..GenParams::default() };
    let got: Vec<u32> = s.generate(&prompt, &params, |_| true).expect("generate").tokens.iter().map(|t| t.id).collect();
    match got.iter().zip(&want).position(|(a, b)| a != b) {
        None => {
            assert!(got.len() >= n, "{name}: stopped early: {got:?} vs {want:?}");
            println!("{name}: all {n} greedy ids equal llama.cpp's");
            true
        }
        Some(i) => {
            let alts = top5[i]["top5"].as_array().expect("top5 list");
            let best = alts[0]["logprob"].as_f64().expect("lp");
            let ours = alts.iter().find(|a| a["id"].as_u64() == Some(got[i] as u64));
            let gap = ours.map(|a| best - a["logprob"].as_f64().expect("lp"));
            println!("{name}: parts from llama.cpp at position {i}: ours {} vs {} (gap {gap:?})", got[i], want[i]);
            assert!(
                gap.is_some_and(|g| g <= 0.5),
                "{name}: at position {i} daehwa picked {} but llama.cpp picked {}; not a near-tie (gap {gap:?})",
                got[i],
                want[i]
            );
            false
        }
    }
}

/// Rule (b) on one golden record: teacher-forced along llama.cpp's ids, returns the (mean, worst)
/// absolute difference of the top-5 log-probs over the first 16 positions, asserting the bounds.
fn check_teacher_forced(e: &Engine, g: &Value) -> (f64, f64) {
    let name = g["name"].as_str().expect("name");
    let prompt = ids(&g["prompt_token_ids_add_special_true"]);
    let gen = ids(&g["generated_token_ids"]);
    let top5 = g["top5_per_position"].as_array().expect("top5");
    let n = top5.len().min(16);
    let mut s = Session::new(e, 2048);
    // Logits after the last prompt token, then after each golden token.
    let mut seq = prompt.clone();
    seq.extend_from_slice(&gen[..n - 1]);
    let rows = s.score(&seq).expect("score");
    let mut scratch = Vec::new();
    let (mut sum, mut count, mut worst) = (0f64, 0usize, 0f64);
    for (i, pos) in top5.iter().take(n).enumerate() {
        let logits = &rows[prompt.len() - 1 + i];
        for alt in pos["top5"].as_array().expect("alts") {
            let id = alt["id"].as_u64().expect("id") as u32;
            let (ours, _) = logprobs(logits, id, 0, &mut scratch);
            let d = (ours as f64 - alt["logprob"].as_f64().expect("lp")).abs();
            sum += d;
            count += 1;
            worst = worst.max(d);
        }
    }
    let mean = sum / count as f64;
    println!("{name}: top-5 log-prob difference over {n} positions: mean {mean:.3}, worst {worst:.3}");
    assert!(worst <= 1.75, "{name}: worst log-prob difference {worst:.3} > 1.75");
    assert!(mean <= 0.35, "{name}: mean log-prob difference {mean:.3} > 0.35");
    (mean, worst)
}

#[test]
fn greedy_follows_llama_cpp_or_parts_at_near_ties() {
    let e = engine();
    let all = golden(GOLDEN);
    let exact = all.iter().filter(|g| check_greedy(&e, g)).count();
    println!("{exact}/{} prompts follow llama.cpp exactly for 32 tokens", all.len());
}

#[test]
fn teacher_forced_logprobs_match_llama_cpp() {
    let e = engine();
    let worst = golden(GOLDEN).iter().map(|g| check_teacher_forced(&e, g).1).fold(0f64, f64::max);
    println!("worst over all prompts: {worst:.3}");
}

/// A 979-token prompt (a password stated at the start, ~950 tokens of filler, then the question)
/// makes the local layers' 512-position window matter: past position 512 they no longer see the
/// start, the three global layers still do. `tests/data/gemma3-long-window.json` was made with
/// llama-server (see its `how` field); prefilled in 512-token batches, so one batch straddles
/// the window's edge.
#[test]
fn long_prompt_through_the_sliding_window_matches_llama_cpp() {
    let e = engine();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/gemma3-long-window.json"))
        .expect("long golden");
    let g: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(e.raw_prompt(g["prompt"].as_str().expect("prompt")), ids(&g["prompt_token_ids_add_special_true"]));
    assert!(ids(&g["prompt_token_ids_add_special_true"]).len() > 900, "the prompt must reach well past the window");
    check_teacher_forced(&e, &g);
    check_greedy(&e, &g);
}

/// Gemma-3-270M is a base model without `tokenizer.chat_template`: chat uses the built-in Gemma
/// format, which must render and tokenize as llama.cpp's built-in `gemma` format does
/// (`tests/data/gemma3-chat.json`, see its `how`), and generate llama.cpp's greedy answer (or part
/// from it only at a near-tie; the server's top-5 are per generated position).
#[test]
fn chat_uses_the_builtin_gemma_format_like_llama_cpp() {
    let e = engine();
    assert_eq!(e.builtin_chat, Some(engine::text::template::builtin::BuiltinFormat::Gemma));
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/gemma3-chat.json")).expect("chat golden");
    let g: Value = serde_json::from_str(&text).expect("json");
    for case in g["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let msgs: Vec<engine::text::template::ChatMessage> = serde_json::from_value(case["messages"].clone()).expect("messages");
        let template = e.template.as_ref().expect("a built-in template");
        assert_eq!(template.render(&msgs, true).expect("render"), case["templated"].as_str().expect("templated"), "{name}");
        let prompt = e.chat_prompt(&msgs).expect("chat prompt");
        assert_eq!(prompt, ids(&case["ids"]), "{name}");

        let want = ids(&case["gen"]);
        let mut s = Session::new(&e, 2048);
        let params = GenParams { sampling: SamplingParams::greedy(), max_tokens: want.len(), ignore_eos: true, ..GenParams::default() };
        let got: Vec<u32> = s.generate(&prompt, &params, |_| true).expect("generate").tokens.iter().map(|t| t.id).collect();
        match got.iter().zip(&want).position(|(a, b)| a != b) {
            None => println!("{name}: all {} greedy chat ids equal llama.cpp's", want.len()),
            Some(i) => {
                let alts = case["top5"][i].as_array().expect("top5");
                let best = alts[0]["logprob"].as_f64().expect("lp");
                let gap = alts.iter().find(|a| a["id"].as_u64() == Some(got[i] as u64)).map(|a| best - a["logprob"].as_f64().expect("lp"));
                println!("{name}: chat parts from llama.cpp at position {i}: ours {} vs {} (gap {gap:?})", got[i], want[i]);
                assert!(gap.is_some_and(|g| g <= 0.5), "{name}: position {i}: {} vs {}, not a near-tie (gap {gap:?})", got[i], want[i]);
            }
        }
    }
}

/// The paged KV cache and the engine thread run the sliding window exactly as the contiguous
/// `Session` does: the 979-token prompt (prefilled in 200-token steps, so chunk edges fall at
/// odd places around the window's edge and beside another sequence's decode) gives the same
/// ids and bit-identical log-probs.
#[test]
fn runner_on_paged_kv_equals_session_past_the_window() {
    use engine::runner::{EngineHandle, Event, Request, RunnerConfig};
    use std::sync::{mpsc, Arc};
    use std::time::Duration;

    let e = Arc::new(engine());
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/gemma3-long-window.json"))
        .expect("long golden");
    let long: Value = serde_json::from_str(&text).expect("json");
    let prompts = [ids(&long["prompt_token_ids_add_special_true"]), ids(&golden(GOLDEN)[0]["prompt_token_ids_add_special_true"])];
    let params = GenParams { sampling: SamplingParams::greedy(), max_tokens: 8, top_logprobs: Some(3), ignore_eos: true, ..GenParams::default() };
    let reference: Vec<Vec<(u32, u32)>> = prompts
        .iter()
        .map(|p| {
            let mut s = Session::new(&e, 2048);
            let g = s.generate(p, &params, |_| true).expect("generate");
            g.tokens.iter().map(|t| (t.id, t.logprob.expect("lp").to_bits())).collect()
        })
        .collect();

    let cfg = RunnerConfig { n_ctx: 2048, max_seqs: 4, step_token_budget: 200, ..RunnerConfig::default() };
    let handle = EngineHandle::start(e.clone(), cfg).expect("start");
    let rxs: Vec<_> = prompts
        .iter()
        .map(|p| {
            let (tx, rx) = mpsc::channel();
            handle.submit(Request { prompt: p.clone(), params: params.clone(), salt: 0 }, Box::new(tx)).expect("submit");
            rx
        })
        .collect();
    for (i, (rx, want)) in rxs.iter().zip(&reference).enumerate() {
        let mut got = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(600)).expect("an event") {
                Event::Token(t) => got.push((t.id, t.logprob.expect("lp").to_bits())),
                Event::Done { .. } => break,
                Event::Error(err) => panic!("request {i} failed: {err}"),
            }
        }
        assert_eq!(&got, want, "request {i}: runner on the paged cache differs from the session");
    }
    handle.shutdown(Duration::from_secs(1));
}

/// Bytes of K plus V per block of `n_layers` layers (f16, 16 positions, kv_dim 256).
fn gemma_block_bytes(e: &Engine, n_layers: usize, block_size: usize) -> usize {
    2 * n_layers * block_size * e.model.hparams().kv_dim() * 2
}

/// Issue 6: the paged cache keeps the 15 sliding-window layers' K/V only for the positions
/// their 512-position window can still see. A 1500-token sequence (the long golden prompt,
/// extended by its own start) runs through the engine thread with the same ids and
/// bit-identical log-probs as the contiguous `Session`, while the cache holds blocks of the 3
/// global layers for all 1500+ positions and blocks of the 15 local layers for about 512. A
/// follow-up turn then reuses the cached prefix in both groups.
#[test]
fn a_long_sequence_holds_local_layer_blocks_only_for_the_window() {
    use engine::runner::{EngineHandle, Event, Request, RunnerConfig};
    use std::sync::{mpsc, Arc};
    use std::time::Duration;

    let e = Arc::new(engine());
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/gemma3-long-window.json"))
        .expect("long golden");
    let long: Value = serde_json::from_str(&text).expect("json");
    let mut prompt = ids(&long["prompt_token_ids_add_special_true"]);
    let again = prompt[1..1500 - prompt.len() + 1].to_vec();
    prompt.extend(again);
    assert_eq!(prompt.len(), 1500);
    let n_gen = 12;
    let params = GenParams { sampling: SamplingParams::greedy(), max_tokens: n_gen, top_logprobs: Some(3), ignore_eos: true, ..GenParams::default() };
    let want: Vec<(u32, u32)> = {
        let mut s = Session::new(&e, 2048);
        let g = s.generate(&prompt, &params, |_| true).expect("generate");
        g.tokens.iter().map(|t| (t.id, t.logprob.expect("lp").to_bits())).collect()
    };

    let h = EngineHandle::start(e.clone(), RunnerConfig { n_ctx: 2048, max_seqs: 2, ..RunnerConfig::default() }).expect("start");
    let st = h.stats();
    let bs = st.kv_block_size;
    assert!(st.kv_window_blocks_total > 0 && st.kv_window_blocks_total < st.kv_blocks_total, "{st:?}");
    assert_eq!(st.kv_tokens, 2 * 2048, "the global layers' group holds max_seqs full contexts");
    let (tx, rx) = mpsc::channel();
    h.submit(Request { prompt: prompt.clone(), params: params.clone(), salt: 0 }, Box::new(tx)).expect("submit");
    let mut got = Vec::new();
    // (global blocks used, window blocks used) as published after each step, while it runs.
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(600)).expect("an event") {
            Event::Token(t) => {
                got.push((t.id, t.logprob.expect("lp").to_bits()));
                let s = h.stats();
                if s.running == 1 {
                    seen.push((s.kv_blocks_used - s.kv_window_blocks_used, s.kv_window_blocks_used));
                }
            }
            Event::Done { .. } => break,
            Event::Error(err) => panic!("request failed: {err}"),
        }
    }
    assert_eq!(got, want, "the runner on the two-group paged cache differs from the session");
    assert!(!seen.is_empty(), "no stats observed while the sequence ran");
    let n_max = prompt.len() + n_gen;
    let (g_bytes, w_bytes, all_bytes) = (gemma_block_bytes(&e, 3, bs), gemma_block_bytes(&e, 15, bs), gemma_block_bytes(&e, 18, bs));
    for &(global, window) in &seen {
        // Every position of the 3 global layers...
        assert!((prompt.len().div_ceil(bs)..=n_max.div_ceil(bs)).contains(&global), "{seen:?}");
        // ...but only the blocks of the last 512 positions (511 older ones + the next) of the
        // 15 local layers: 32 or 33 blocks of 16, instead of 94.
        assert!((512 / bs..=engine::kv::paged::max_blocks_touched(512, bs)).contains(&window), "{seen:?}");
        let now = global * g_bytes + window * w_bytes;
        let before = global * all_bytes;
        assert!(2 * now < before, "{now} bytes vs {before} with every layer in every block");
    }
    let (global, window) = seen[seen.len() - 1];
    println!(
        "1500+ positions: {global} global-layer blocks + {window} local-layer blocks = {:.1} MiB (all 18 layers in {global} blocks: {:.1} MiB)",
        (global * g_bytes + window * w_bytes) as f64 / (1 << 20) as f64,
        (global * all_bytes) as f64 / (1 << 20) as f64
    );
    // `Done` comes before the step's stats are published.
    let t0 = std::time::Instant::now();
    let end = loop {
        let s = h.stats();
        if s.requests_finished == 1 {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "the request never finished: {s:?}");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!((end.kv_blocks_used, end.kv_window_blocks_used), (0, 0), "{end:?}");
    assert!(end.kv_window_blocks_cached > 0, "full released window blocks stay cached: {end:?}");

    // A follow-up turn reuses the conversation: the global layers' blocks of every full block,
    // and the local layers' blocks of the last 512 positions before it (the table starts with
    // holes there); the output is still the session's, bit for bit.
    let mut turn2 = prompt.clone();
    turn2.extend(got.iter().map(|&(id, _)| id));
    turn2.extend(e.tokenizer.encode(" And then?", false, true));
    let params2 = GenParams { max_tokens: 4, ..params };
    let want2: Vec<(u32, u32)> = {
        let mut s = Session::new(&e, 2048);
        let g = s.generate(&turn2, &params2, |_| true).expect("generate");
        g.tokens.iter().map(|t| (t.id, t.logprob.expect("lp").to_bits())).collect()
    };
    let (tx, rx) = mpsc::channel();
    h.submit(Request { prompt: turn2.clone(), params: params2, salt: 0 }, Box::new(tx)).expect("submit");
    let mut got2 = Vec::new();
    let usage = loop {
        match rx.recv_timeout(Duration::from_secs(600)).expect("an event") {
            Event::Token(t) => got2.push((t.id, t.logprob.expect("lp").to_bits())),
            Event::Done { usage, .. } => break usage,
            Event::Error(err) => panic!("follow-up failed: {err}"),
        }
    };
    // Turn 1 computed its prompt and all but the last generated token.
    assert_eq!(usage.cached_tokens, (prompt.len() + n_gen - 1) / bs * bs, "{usage:?}");
    assert_eq!(got2, want2, "the follow-up on cached blocks differs from the session");
    h.shutdown(Duration::from_secs(1));
}

/// A `--kv-memory` budget now holds several times as many full-context Gemma sequences: the
/// global layers' blocks cover the context, the local layers' only their window.
#[test]
fn a_kv_memory_budget_holds_more_full_context_sequences_with_the_window_split() {
    use engine::kv::paged::{KvLayout, Sizing};
    use engine::runner::{EngineHandle, RunnerConfig};
    use std::sync::Arc;
    use std::time::Duration;

    let e = Arc::new(engine());
    let (n_ctx, budget, bs) = (4096, 256usize << 20, 16);
    let hp = e.model.hparams().clone();
    let full_ctx_blocks = n_ctx / bs;
    // Before: every block holds all 18 layers.
    let before = budget / gemma_block_bytes(&e, 18, bs) / full_ctx_blocks;
    for max_seqs in [4, 8, 16] {
        let cfg = RunnerConfig { n_ctx, max_seqs, kv_memory_bytes: Some(budget), ..RunnerConfig::default() };
        let h = EngineHandle::start(e.clone(), cfg).expect("start");
        let st = h.stats();
        assert!(st.kv_bytes <= budget, "{st:?}");
        let sizing = Sizing { n_ctx, max_seqs, step_token_budget: 512, block_size: bs, kv_dim: hp.kv_dim() };
        let layout = KvLayout::for_model(&hp, n_ctx);
        assert_eq!(layout.n_groups(), 2);
        // Sequences at full context that the cache holds at once: the global group's share, and
        // the window group's (each running sequence needs at most its window's worth).
        let per_seq_window = sizing.window_blocks_at_most(512) / max_seqs;
        let global = (st.kv_blocks_total - st.kv_window_blocks_total) / full_ctx_blocks;
        let window = st.kv_window_blocks_total / per_seq_window;
        let now = global.min(window).min(max_seqs);
        println!("--kv-memory 256 MiB, n_ctx {n_ctx}, max_seqs {max_seqs}: {now} full-context sequences at once (before: {before}); {st:?}");
        assert_eq!(before, 3);
        assert!(now >= max_seqs.min(3 * before), "max_seqs {max_seqs}: {now} vs {before} before");
        h.shutdown(Duration::from_secs(1));
    }
}

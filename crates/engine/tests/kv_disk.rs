//! The KV disk tier under the engine thread, on the real SmolLM2-135M-Instruct Q4_1: a prefix
//! written by one engine is read back by the next one started on the same directory (a
//! restart), serves a prefix evicted from RAM, and a damaged file is refused while the answer
//! stays exactly the cold one (checked against the single-conversation `Session`). The same
//! restart on the real Gemma-3-270M, whose sliding-window layers (window 512) have released the
//! leading blocks of a 700-token conversation, is also served from disk.

mod common;

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::kv::disk::DiskConfig;
use engine::runner::{EngineHandle, Event, Request, RunnerConfig, Stats, Usage};
use engine::sample::SamplingParams;
use engine::{Engine, EngineConfig, GenParams, Session};

fn engine() -> Arc<Engine> {
    Arc::new(Engine::load(common::smollm2(), &EngineConfig { threads: 2, ..EngineConfig::default() }).expect("load smollm2"))
}

fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn greedy(max_tokens: usize) -> GenParams {
    GenParams { sampling: SamplingParams::greedy(), max_tokens, ..GenParams::default() }
}

fn run(h: &EngineHandle, prompt: &[u32], max_tokens: usize) -> (Vec<u32>, Usage) {
    let (tx, rx) = mpsc::channel();
    h.submit(Request { prompt: prompt.to_vec(), params: greedy(max_tokens), salt: 7 }, Box::new(tx)).expect("submit");
    let mut ids = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(300)).expect("an event within 5 minutes") {
            Event::Token(t) => ids.push(t.id),
            Event::Done { usage, .. } => return (ids, usage),
            Event::Error(e) => panic!("request failed: {e}"),
        }
    }
}

fn solo(e: &Engine, prompt: &[u32], max_tokens: usize) -> Vec<u32> {
    let mut s = Session::new(e, 2048);
    s.generate(prompt, &greedy(max_tokens), |_| true).expect("generate").tokens.iter().map(|t| t.id).collect()
}

fn wait_for(h: &EngineHandle, what: &str, done: impl Fn(&Stats) -> bool) -> Stats {
    let t0 = Instant::now();
    loop {
        let s = h.stats();
        if done(&s) {
            return s;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "timed out waiting for {what}: {s:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A chat prompt of a few hundred tokens about `topic`.
fn conversation(e: &Engine, topic: &str, n: usize) -> Vec<u32> {
    let body = format!("Here are my notes about {topic}. ").repeat(n);
    e.tokenizer.encode(&format!("<|im_start|>user\n{body}Summarise them.<|im_end|>\n<|im_start|>assistant\n"), false, true)
}

fn follow_up(e: &Engine, turn1: &[u32], answer: &[u32]) -> Vec<u32> {
    let mut t = turn1.to_vec();
    t.extend(answer);
    t.extend(e.tokenizer.encode("<|im_end|>\n<|im_start|>user\nAnd in one word?<|im_end|>\n<|im_start|>assistant\n", false, true));
    t
}

fn config(dir: &std::path::Path, max_bytes: u64) -> RunnerConfig {
    RunnerConfig { n_ctx: 1024, max_seqs: 2, kv_disk: Some(DiskConfig { dir: dir.to_path_buf(), max_bytes }), ..RunnerConfig::default() }
}

/// Runs turn 1 on a first engine, waits for its blocks to be written and stops it.
fn first_run(e: &Arc<Engine>, cfg: &RunnerConfig, turn1: &[u32]) -> Vec<u32> {
    let h = EngineHandle::start(e.clone(), cfg.clone()).expect("start");
    let (answer, usage) = run(&h, turn1, 12);
    assert_eq!(usage.cached_tokens, 0);
    let full = ((turn1.len() + answer.len() - 1) / 16) as u64;
    wait_for(&h, "the blocks to be written", |s| s.kv_disk.writes >= full);
    h.shutdown(Duration::from_secs(5));
    answer
}

#[test]
fn a_restarted_engine_reads_the_conversation_prefix_back_from_disk() {
    let e = engine();
    let dir = scratch("kv-disk-restart");
    let cfg = config(&dir, 1 << 30);
    let turn1 = conversation(&e, "the harbour", 20);
    assert!(turn1.len() > 150, "{}", turn1.len());
    let answer = first_run(&e, &cfg, &turn1);
    let turn2 = follow_up(&e, &turn1, &answer);

    let h = EngineHandle::start(e.clone(), cfg).expect("restart");
    let (out, usage) = run(&h, &turn2, 16);
    let expect_cached = (turn1.len() + answer.len() - 1) / 16 * 16;
    assert_eq!(usage.cached_tokens, expect_cached, "{usage:?}");
    assert_eq!(out, solo(&e, &turn2, 16), "K/V read from disk must give the cold output");
    let d = h.stats().kv_disk;
    assert_eq!(d.hits as usize, expect_cached / 16, "{d:?}");
    assert_eq!(d.refused, 0);
    assert!(d.read_micros > 0 && d.read_bytes > 0, "{d:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_damaged_block_file_is_refused_and_the_answer_is_still_right() {
    let e = engine();
    let dir = scratch("kv-disk-damaged");
    let cfg = config(&dir, 1 << 30);
    let turn1 = conversation(&e, "the orchard", 20);
    let answer = first_run(&e, &cfg, &turn1);
    let turn2 = follow_up(&e, &turn1, &answer);
    // Block 4 of the prefix gets one flipped byte: blocks 0..4 still come from disk.
    let model_dir = std::fs::read_dir(&dir).expect("tier dir").flatten().next().expect("model dir").path();
    let hashes = {
        let m = engine::kv::paged::KvManager::new(4, 16, 1);
        m.prefix_plan(&turn2, 7).0
    };
    let victim = model_dir.join(format!("{:032x}.kvb", hashes[4].0));
    let mut b = std::fs::read(&victim).expect("block 4 on disk");
    let at = b.len() / 3;
    b[at] ^= 0x40;
    std::fs::write(&victim, &b).expect("write");

    let h = EngineHandle::start(e.clone(), cfg).expect("restart");
    let (out, usage) = run(&h, &turn2, 16);
    assert_eq!(usage.cached_tokens, 4 * 16, "only the blocks before the damaged one: {usage:?}");
    assert_eq!(out, solo(&e, &turn2, 16));
    let d = h.stats().kv_disk;
    assert_eq!((d.hits, d.refused), (4, 1), "{d:?}");
    assert!(!victim.exists() || std::fs::read(&victim).expect("rewritten") != b, "the damaged file is not kept");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_prefix_evicted_from_ram_is_served_from_disk() {
    let e = engine();
    let dir = scratch("kv-disk-evicted");
    // 28 blocks of RAM: conversation B pushes most of A's cached blocks out.
    let block_bytes = 368_640;
    let cfg = RunnerConfig { kv_memory_bytes: Some(28 * block_bytes), max_seqs: 1, ..config(&dir, 1 << 30) };
    let h = EngineHandle::start(e.clone(), cfg).expect("start");
    let a1 = conversation(&e, "the lighthouse", 20);
    let (answer, _) = run(&h, &a1, 12);
    let b = conversation(&e, "a long train journey across the mountains", 25);
    assert!(b.len() > 20 * 16, "{}", b.len());
    let (_, ub) = run(&h, &b, 4);
    assert_eq!(ub.cached_tokens, 0);
    let a2 = follow_up(&e, &a1, &answer);
    assert_eq!(h.stats().kv_disk.hits, 0);
    let (out, usage) = run(&h, &a2, 16);
    let expect_cached = (a1.len() + answer.len() - 1) / 16 * 16;
    assert_eq!(usage.cached_tokens, expect_cached, "{usage:?}");
    let d = h.stats().kv_disk;
    assert!(d.hits > 0, "A's prefix came back from disk: {d:?}");
    assert_eq!(out, solo(&e, &a2, 16));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_restarted_gemma3_with_sliding_window_layers_reads_its_prefix_back() {
    let e = Arc::new(Engine::load(common::gemma3(), &EngineConfig { threads: 2, ..EngineConfig::default() }).expect("load gemma3"));
    let window = e.model.hparams().window_of(0).expect("Gemma 3's local layers have a window");
    let dir = scratch("kv-disk-gemma3");
    let cfg = config(&dir, 1 << 30);
    let chat = |body: &str| e.tokenizer.encode(&format!("<start_of_turn>user\n{body}<end_of_turn>\n<start_of_turn>model\n"), true, true);
    let turn1 = chat(&format!("{}Summarise them.", "Here are my notes about the old harbour and its boats. ".repeat(60)));
    // Longer than the window: the window layers released the leading blocks before the end.
    assert!(turn1.len() > window + 100 && turn1.len() < 1000, "{} tokens, window {window}", turn1.len());
    let answer = first_run(&e, &cfg, &turn1);
    let mut turn2 = turn1.clone();
    turn2.extend(&answer);
    turn2.extend(e.tokenizer.encode("<end_of_turn>\n<start_of_turn>user\nAnd in one word?<end_of_turn>\n<start_of_turn>model\n", false, true));

    let h = EngineHandle::start(e.clone(), cfg).expect("restart");
    let (out, usage) = run(&h, &turn2, 16);
    let expect_cached = (turn1.len() + answer.len() - 1) / 16 * 16;
    assert_eq!(usage.cached_tokens, expect_cached, "{usage:?}");
    assert_eq!(out, solo(&e, &turn2, 16), "K/V of both layer groups read from disk must give the cold output");
    let d = h.stats().kv_disk;
    assert_eq!(d.hits as usize, expect_cached / 16, "one file per block serves both groups: {d:?}");
    assert_eq!(d.refused, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

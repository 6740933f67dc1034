//! Model files are untrusted input (issue 12, item 4): forged hyper-parameters and chat templates
//! are a one-line error with exit code 2 from `daehwa run` and `daehwa serve`, quickly, never an
//! abort, a hang or an out-of-memory kill (`llama.block_count = 2^31` aborted in
//! `Vec::with_capacity`; two nested `range(100000)` loops in the template hung the engine).

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gguf::Value;
use support::{scratch, stderr, write_tiny, Tiny};

fn assert_fails(o: &std::process::Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "exactly one error line expected: {err}");
    for n in needles {
        assert!(lines[0].contains(n), "`{n}` not in: {}", lines[0]);
    }
}

/// Runs `daehwa ARGS`, killed after 60 s (a model that loads would serve forever).
fn daehwa_bounded(d: &std::path::Path, args: &[&str]) -> std::process::Output {
    let t0 = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_daehwa"))
        .arg("--models-dir")
        .arg(d)
        .args(args)
        .env("DAEHWA_DATA_DIR", d.join("data"))
        .env_remove("DAEHWA_CONFIG")
        .env_remove("DAEHWA_DATABASE")
        .env_remove("DAEHWA_API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run daehwa");
    while child.try_wait().expect("wait").is_none() {
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("daehwa {args:?} still running after 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().expect("output");
    assert!(t0.elapsed() < Duration::from_secs(30), "took {:?}", t0.elapsed());
    o
}

/// A tiny model with `meta` overriding its metadata fails to load, with `needles` in the line,
/// from both `run` and `serve`.
fn check(name: &str, meta: Vec<(&str, Value)>, template: Option<&str>, needles: &[&str]) {
    let d = scratch(&format!("hostile-{name}"));
    let f = d.join("bad.gguf");
    let meta = meta.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    write_tiny(&f, &Tiny { meta, chat_template: template, ..Tiny::default() });
    let path = f.to_str().expect("utf8");
    assert_fails(&daehwa_bounded(&d, &["run", "-m", path, "hi"]), needles);
    assert_fails(&daehwa_bounded(&d, &["serve", "--port", "0", "-m", path]), needles);
}

#[test]
fn forged_layer_count() {
    check("layers", vec![("llama.block_count", Value::U32(1 << 31))], None, &["block_count", "2147483648", "out of range"]);
    // In range, but more layers than the file has tensors for.
    check("layers-tensors", vec![("llama.block_count", Value::U32(1000))], None, &["block_count = 1000", "tensors"]);
}

#[test]
fn forged_sizes() {
    check("embd", vec![("llama.embedding_length", Value::U32(u32::MAX))], None, &["embedding_length", "out of range"]);
    check("embd0", vec![("llama.embedding_length", Value::U32(0))], None, &["embedding_length", "out of range"]);
    check("heads", vec![("llama.attention.head_count", Value::U32(1 << 31))], None, &["head_count", "out of range"]);
    check("kvheads", vec![("llama.attention.head_count_kv", Value::U32(0))], None, &["head_count_kv", "out of range"]);
    check("headdim", vec![("llama.attention.key_length", Value::U32(1 << 30))], None, &["key_length", "out of range"]);
    check("ff", vec![("llama.feed_forward_length", Value::U32(1 << 31))], None, &["feed_forward_length", "out of range"]);
    check("ctx", vec![("llama.context_length", Value::U32(u32::MAX))], None, &["context_length", "out of range"]);
    check("vocab", vec![("llama.vocab_size", Value::U32(1 << 31))], None, &["vocab_size", "out of range"]);
    check("rope", vec![("llama.rope.dimension_count", Value::U32(1 << 31))], None, &["rope dimension"]);
    // In range but not what the tensors hold: the shapes are checked before anything is sized by them.
    check("embd-shape", vec![("llama.embedding_length", Value::U32(4096))], None, &["token_embd.weight", "shape"]);
    check("vocab-shape", vec![("llama.vocab_size", Value::U32(100))], None, &["token_embd.weight", "shape"]);
    check("experts", vec![("llama.expert_count", Value::U32(8))], None, &["expert_count", "not supported"]);
}

#[test]
fn a_template_that_never_finishes_is_refused_at_load() {
    check(
        "loops",
        vec![],
        Some("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}{{ messages[0].content }}"),
        &["chat template exceeded its limits", "instructions"],
    );
    check(
        "output",
        vec![],
        Some("{% for i in range(100000) %}{{ 'x' * 100000 }}{% endfor %}"),
        &["chat template exceeded its limits", "bytes of output"],
    );
}

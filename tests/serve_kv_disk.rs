//! The KV disk tier through the real server (issue 16, item 3): `daehwa serve --kv-disk` over
//! loopback with the real SmolLM2 model. A conversation's follow-up after a restart is served
//! from disk (`cached_tokens` > 0) with the cold run's greedy answer; damaged and foreign block
//! files are refused and the answer stays right; the size bound holds; a prefix pushed out of a
//! small RAM cache comes back from disk.

mod support;

use support::Serve;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn start(data: &Path, extra: &[&str]) -> Serve {
    let mut cmd = support::serve_command(data);
    cmd.args(["--ctx", "1024", "--threads", "2"]).args(extra).arg("-m").arg(support::smollm2()).stderr(Stdio::inherit());
    support::spawn_serve(cmd, String::new)
}

/// Stops the server with SIGTERM (it drains, and the tier finishes its queued writes).
fn stop(mut s: Serve) {
    let ok = Command::new("kill").args(["-TERM", &s.child.id().to_string()]).status().expect("kill");
    assert!(ok.success());
    let t0 = Instant::now();
    while s.child.try_wait().expect("wait").is_none() {
        assert!(t0.elapsed() < Duration::from_secs(60), "the server did not stop within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn http(addr: &str, method: &str, path: &str, body: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(180))).expect("timeout");
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
        .expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 200"), "{method} {path}: {out}");
    out.split_once("\r\n\r\n").expect("body").1.to_string()
}

/// The greedy answer to `messages` and its `cached_tokens`.
fn chat(addr: &str, messages: &Value, max_tokens: u32) -> (String, u64) {
    let body = json!({ "messages": messages, "max_tokens": max_tokens, "temperature": 0 }).to_string();
    let v: Value = serde_json::from_str(&http(addr, "POST", "/v1/chat/completions", &body)).expect("json");
    let text = v["choices"][0]["message"]["content"].as_str().expect("content").to_string();
    (text, v["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().expect("cached_tokens"))
}

fn metric(addr: &str, name: &str) -> f64 {
    let text = http(addr, "GET", "/metrics", "");
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' '))).unwrap_or_else(|| panic!("{name} not in /metrics")).trim().parse().expect("number")
}

/// Waits until `daehwa_kv_disk_writes_total` stops growing (the writer caught up).
fn settle(addr: &str) -> f64 {
    let t0 = Instant::now();
    let mut last = -1.0;
    loop {
        let w = metric(addr, "daehwa_kv_disk_writes_total");
        if w == last && w > 0.0 {
            return w;
        }
        last = w;
        assert!(t0.elapsed() < Duration::from_secs(60), "disk writes did not settle");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// About 400 tokens of conversation about `topic`, and its follow-up with `answer`.
fn turn1(topic: &str) -> Value {
    let notes = format!("Here are my notes about {topic}, which I wrote over several weeks of careful study. ").repeat(20);
    json!([{ "role": "system", "content": "You are a helpful assistant." }, { "role": "user", "content": format!("{notes}Summarise them.") }])
}

fn turn2(t1: &Value, answer: &str) -> Value {
    let mut m = t1.as_array().expect("array").clone();
    m.push(json!({ "role": "assistant", "content": answer }));
    m.push(json!({ "role": "user", "content": "And in one word?" }));
    Value::Array(m)
}

fn block_files(data: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for d in std::fs::read_dir(data.join("kv-cache")).expect("kv-cache dir").flatten() {
        if d.path().is_dir() {
            out.extend(std::fs::read_dir(d.path()).expect("model dir").flatten().map(|f| f.path()).filter(|p| p.extension().is_some_and(|e| e == "kvb")));
        }
    }
    out
}

/// The follow-up's answer on a fresh server without the tier.
fn cold_answer(name: &str, messages: &Value) -> String {
    let s = start(&support::scratch(name), &["--max-seqs", "2"]);
    let (text, cached) = chat(&s.addr, messages, 16);
    assert_eq!(cached, 0);
    text
}

#[test]
fn a_follow_up_after_a_restart_is_served_from_disk_with_the_cold_answer() {
    let data = support::scratch("serve-kv-disk-restart");
    let t1 = turn1("the harbour");
    let s = start(&data, &["--kv-disk", "256MiB", "--max-seqs", "2"]);
    let (answer, _) = chat(&s.addr, &t1, 12);
    settle(&s.addr);
    stop(s);
    assert!(data.join("kv-cache/tenant.key").exists());
    let t2 = turn2(&t1, &answer);

    let s = start(&data, &["--kv-disk", "256MiB", "--max-seqs", "2"]);
    let (text, cached) = chat(&s.addr, &t2, 16);
    assert!(cached >= 300, "the follow-up's prefix came from disk: cached_tokens {cached}");
    assert_eq!(metric(&s.addr, "daehwa_kv_disk_hits_total"), (cached / 16) as f64);
    assert_eq!(metric(&s.addr, "daehwa_kv_disk_refused_total"), 0.0);
    assert!(metric(&s.addr, "daehwa_kv_disk_read_bytes_total") > 0.0);
    drop(s);
    assert_eq!(text, cold_answer("serve-kv-disk-restart-cold", &t2), "K/V from disk must give the cold answer");
}

#[test]
fn damaged_truncated_and_foreign_block_files_are_ignored() {
    let data = support::scratch("serve-kv-disk-damaged");
    let t1 = turn1("the orchard");
    let s = start(&data, &["--kv-disk", "256MiB", "--max-seqs", "2"]);
    let (answer, _) = chat(&s.addr, &t1, 12);
    settle(&s.addr);
    stop(s);
    // Every file damaged one way or another: a flipped byte, a truncation, or another model's
    // identity (the same file moved under a directory of another model id is foreign too).
    let files = block_files(&data);
    assert!(files.len() >= 20, "{}", files.len());
    for (i, f) in files.iter().enumerate() {
        let mut b = std::fs::read(f).expect("read");
        match i % 3 {
            0 => {
                let at = b.len() / 2 + i;
                b[at] ^= 0x01;
            }
            1 => b.truncate(b.len() - 100),
            _ => b[8..40].copy_from_slice(&[0xAB; 32]),
        }
        std::fs::write(f, &b).expect("write");
    }
    let t2 = turn2(&t1, &answer);
    let s = start(&data, &["--kv-disk", "256MiB", "--max-seqs", "2"]);
    let (text, cached) = chat(&s.addr, &t2, 16);
    assert_eq!(cached, 0, "nothing damaged may be served");
    assert!(metric(&s.addr, "daehwa_kv_disk_refused_total") >= 1.0);
    assert_eq!(metric(&s.addr, "daehwa_kv_disk_hits_total"), 0.0);
    drop(s);
    assert_eq!(text, cold_answer("serve-kv-disk-damaged-cold", &t2));
}

#[test]
fn the_disk_bound_holds_with_lru_eviction() {
    let data = support::scratch("serve-kv-disk-bound");
    // 4 MiB: about ten 368 KiB SmolLM2 blocks; one conversation has over twenty.
    let bound = 4u64 << 20;
    let s = start(&data, &["--kv-disk", "4MiB", "--max-seqs", "2"]);
    let t1 = turn1("the windmill");
    let (answer, _) = chat(&s.addr, &t1, 12);
    settle(&s.addr);
    let on_disk: u64 = block_files(&data).iter().map(|f| std::fs::metadata(f).expect("meta").len()).sum();
    assert!(on_disk <= bound, "{on_disk} bytes on disk over the {bound} bound");
    assert!(metric(&s.addr, "daehwa_kv_disk_bytes") as u64 <= bound);
    assert!(metric(&s.addr, "daehwa_kv_disk_evictions_total") >= 10.0);
    assert!(block_files(&data).len() >= 5, "the most recent blocks stay");
    stop(s);
    // After a restart the most recent blocks (the prefix's end) are there, the first ones were
    // evicted: the follow-up finds no leading block and recomputes, correctly.
    let t2 = turn2(&t1, &answer);
    let s = start(&data, &["--kv-disk", "4MiB", "--max-seqs", "2"]);
    let (text, cached) = chat(&s.addr, &t2, 16);
    assert_eq!(cached, 0);
    assert!(metric(&s.addr, "daehwa_kv_disk_misses_total") >= 1.0);
    drop(s);
    assert_eq!(text, cold_answer("serve-kv-disk-bound-cold", &t2));
}

#[test]
fn a_prefix_evicted_from_ram_under_pressure_comes_back_from_disk() {
    let data = support::scratch("serve-kv-disk-pressure");
    // 40 blocks of RAM (SmolLM2: 368,640 bytes each), one sequence at a time.
    let s = start(&data, &["--kv-disk", "256MiB", "--kv-memory", "14745600", "--max-seqs", "1"]);
    let a1 = turn1("the lighthouse");
    let (answer, _) = chat(&s.addr, &a1, 12);
    // Another conversation large enough to push A's blocks out of RAM.
    let b = json!([{ "role": "user", "content": "Tell me about trains crossing the mountains in winter, with snow on the tracks. ".repeat(24) }]);
    let (_, cb) = chat(&s.addr, &b, 4);
    assert_eq!(cb, 0);
    assert_eq!(metric(&s.addr, "daehwa_kv_disk_hits_total"), 0.0);
    let a2 = turn2(&a1, &answer);
    let (text, cached) = chat(&s.addr, &a2, 16);
    assert!(cached >= 300, "A's prefix, RAM and disk together: cached_tokens {cached}");
    assert!(metric(&s.addr, "daehwa_kv_disk_hits_total") >= 5.0, "A's evicted blocks were read from disk");
    drop(s);
    assert_eq!(text, cold_answer("serve-kv-disk-pressure-cold", &a2));
}

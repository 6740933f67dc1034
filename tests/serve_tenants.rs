//! The KV prefix cache keeps tenants apart (issue 12, item 8): `daehwa serve` with two API keys
//! over loopback and the real SmolLM2 model. A long prompt sent under key A is cached for A only:
//! the same prompt under key B reports `cached_tokens == 0`, while A's follow-up reuses it; with
//! `--shared-prefix-cache` the cross-key request is served from the cache.

mod support;

use support::Serve;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

fn start(name: &str, extra: &[&str]) -> Serve {
    let mut cmd = support::serve_command(&support::scratch(name));
    cmd.args(["--ctx", "1024", "--max-seqs", "2", "--threads", "2"])
        .args(["--api-key", "key-a", "--api-key", "key-b"])
        .args(extra)
        .arg("-m")
        .arg(support::smollm2())
        .stderr(Stdio::inherit());
    support::spawn_serve(cmd, String::new)
}

/// `cached_tokens` of a one-token completion of `prompt` under `key`.
fn cached(addr: &str, key: &str, prompt: &str) -> u64 {
    let body = serde_json::json!({ "prompt": prompt, "max_tokens": 1, "temperature": 0 }).to_string();
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(120))).expect("timeout");
    write!(
        s,
        "POST /v1/completions HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let json: Value = serde_json::from_str(out.split("\r\n\r\n").nth(1).expect("body")).expect("json body");
    json["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().expect("cached_tokens")
}

/// About 200 tokens: a dozen KV blocks.
fn long_prompt() -> String {
    "The committee met on Tuesday to review the quarterly figures and the plans for the new office. ".repeat(10)
}

#[test]
fn each_api_key_has_its_own_prefix_cache() {
    let server = start("serve-tenants-isolated", &[]);
    let p = long_prompt();
    assert_eq!(cached(&server.addr, "key-a", &p), 0);
    assert_eq!(cached(&server.addr, "key-b", &p), 0, "key B must not hit key A's cached prefix");
    let again = format!("{p}And one more sentence.");
    assert!(cached(&server.addr, "key-a", &again) > 100, "key A reuses its own prefix");
    assert!(cached(&server.addr, "key-b", &again) > 100, "key B reuses its own prefix");
}

#[test]
fn shared_prefix_cache_shares_across_keys() {
    let server = start("serve-tenants-shared", &["--shared-prefix-cache"]);
    let p = long_prompt();
    assert_eq!(cached(&server.addr, "key-a", &p), 0);
    assert!(cached(&server.addr, "key-b", &p) > 100, "with --shared-prefix-cache key B reuses key A's prefix");
}

//! Provenance marks (issue 17, item 2) over loopback with the real SmolLM2 model: `daehwa serve
//! --watermark-key-file` marks its answers (and says so in `x-daehwa-watermark`), `POST
//! /v1/provenance/detect` and `daehwa detect` find the mark with the key and agree, another key
//! or an unmarked server's answers or human Korean and English text are not flagged, and the
//! route needs an API key like every `/v1` route.

mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use support::Serve;

const API_KEY: &str = "prov-key";
const THRESHOLD: f64 = 4.0;

fn key_file(dir: &Path, name: &str, secret: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir");
    let p = dir.join(name);
    std::fs::write(&p, format!("{secret}\n")).expect("write key");
    p
}

fn start(name: &str, key: Option<&Path>) -> Serve {
    let mut cmd = support::serve_command(&support::scratch(name));
    cmd.args(["--ctx", "1024", "--max-seqs", "4", "--threads", "2", "--api-key", API_KEY]);
    if let Some(k) = key {
        cmd.arg("--watermark-key-file").arg(k);
    }
    cmd.arg("-m").arg(support::smollm2()).stderr(Stdio::inherit());
    support::spawn_serve(cmd, String::new)
}

/// The whole response: status line and headers, then the body.
fn request(addr: &str, path: &str, auth: Option<&str>, body: &Value) -> (u16, String, Value) {
    let body = body.to_string();
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(300))).expect("timeout");
    let auth = auth.map(|k| format!("Authorization: Bearer {k}\r\n")).unwrap_or_default();
    write!(s, "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (status, head.to_ascii_lowercase(), serde_json::from_str(body).unwrap_or(Value::Null))
}

/// A 200-token answer at temperature 0.7 (fixed seed), and the response head.
fn answer(addr: &str, prompt: &str, seed: u64) -> (String, String) {
    let body = serde_json::json!({
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0.7, "max_tokens": 200, "ignore_eos": true, "seed": seed,
    });
    let (status, head, json) = request(addr, "/v1/chat/completions", Some(API_KEY), &body);
    assert_eq!(status, 200, "{json}");
    (json["choices"][0]["message"]["content"].as_str().expect("content").to_string(), head)
}

fn detect_route(addr: &str, text: &str) -> Value {
    let (status, _, json) = request(addr, "/v1/provenance/detect", Some(API_KEY), &serde_json::json!({ "text": text }));
    assert_eq!(status, 200, "{json}");
    json
}

fn detect_cli(dir: &Path, key: &Path, text: &str) -> Value {
    let f = dir.join("text.txt");
    std::fs::write(&f, text).expect("write text");
    let model = support::smollm2();
    let o = support::daehwa(dir, &["detect", "-m", model.to_str().expect("utf-8 path"), "--key-file", key.to_str().expect("utf-8"), "--json", f.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", support::stderr(&o));
    serde_json::from_str(support::stdout(&o).trim()).expect("detect --json")
}

fn human() -> Vec<String> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/provenance");
    ["ko_constitution.txt", "en_gpl3_preamble.txt"].iter().map(|f| std::fs::read_to_string(d.join(f)).expect("testdata")).collect()
}

#[test]
fn marked_answers_are_detected_with_the_key_only() {
    let dir = support::scratch("serve-provenance-keys");
    let key = key_file(&dir, "key", "provenance-test-secret-0001");
    let other = key_file(&dir, "other", "provenance-test-secret-0002");
    let server = start("serve-provenance-marked", Some(&key));

    // The route needs an API key like every /v1 route.
    let (status, _, _) = request(&server.addr, "/v1/provenance/detect", None, &serde_json::json!({ "text": "hello" }));
    assert_eq!(status, 401);

    let prompts = ["Write a short essay about the history of Seoul.", "Explain how bread rises to a curious student."];
    for (i, p) in prompts.iter().enumerate() {
        let (text, head) = answer(&server.addr, p, 11 + i as u64);
        assert!(head.contains("x-daehwa-watermark: kirchenbauer-2023"), "the response says it is marked: {head}");
        let route = detect_route(&server.addr, &text);
        let cli = detect_cli(&dir, &key, &text);
        assert_eq!(route, cli, "the route and the CLI agree on {text:?}");
        let z = route["z"].as_f64().expect("z");
        assert!(z >= THRESHOLD && route["verdict"] == "marked", "marked answer not detected: {route} for {text:?}");
        assert!(route["scored"].as_u64().expect("scored") > 100, "{route}");
        let wrong = detect_cli(&dir, &other, &text);
        assert_eq!(wrong["verdict"], "not_marked", "another key must not find the mark: {wrong}");
    }
    for t in human() {
        let d = detect_route(&server.addr, &t);
        assert_eq!(d["verdict"], "not_marked", "human text flagged: {d}");
        assert!(d["z"].as_f64().expect("z") < THRESHOLD, "{d}");
    }
}

#[test]
fn unmarked_answers_are_not_flagged() {
    let dir = support::scratch("serve-provenance-unmarked");
    let key = key_file(&dir, "key", "provenance-test-secret-0001");
    let server = start("serve-provenance-plain", None);
    let (text, head) = answer(&server.addr, "Write a short essay about the history of Seoul.", 11);
    assert!(!head.contains("x-daehwa-watermark"), "{head}");
    let d = detect_cli(&dir, &key, &text);
    assert_eq!(d["verdict"], "not_marked", "{d} for {text:?}");
    // Without a key the server has nothing to detect with.
    let (status, _, json) = request(&server.addr, "/v1/provenance/detect", Some(API_KEY), &serde_json::json!({ "text": text }));
    assert_eq!(status, 400, "{json}");
}

/// Greedy decoding with marks on stays deterministic (the bias is added before the argmax) and is
/// marked; with marks off `daehwa run` prints what it printed before (the golden tests in
/// crates/engine/tests check the engine's greedy tokens against llama.cpp).
#[test]
fn greedy_with_marks_is_deterministic_and_marks_off_is_unchanged() {
    let dir = support::scratch("cli-provenance-greedy");
    let key = key_file(&dir, "key", "provenance-test-secret-0001");
    let model = support::smollm2();
    let m = model.to_str().expect("utf-8");
    let k = key.to_str().expect("utf-8");
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "-m", m, "--temp", "0", "-n", "60", "Tell me about the Moon landing."];
        args.extend_from_slice(extra);
        let o = support::daehwa(&dir, &args);
        assert!(o.status.success(), "{}", support::stderr(&o));
        support::stdout(&o)
    };
    let plain = run(&[]);
    assert_eq!(plain, run(&[]), "greedy is deterministic");
    let marked = run(&["--watermark-key-file", k]);
    assert_eq!(marked, run(&["--watermark-key-file", k]), "greedy with marks is deterministic");
    assert_ne!(marked, plain, "the mark changes greedy output");
    let dm = detect_cli(&dir, &key, &marked);
    let dp = detect_cli(&dir, &key, &plain);
    assert!(dm["z"].as_f64().expect("z") > dp["z"].as_f64().expect("z") + 2.0, "marked {dm} vs plain {dp}");
}

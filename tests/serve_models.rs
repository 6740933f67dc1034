//! Several models in one `daehwa serve` (issue 13, item 7), with the real SmolLM2 and
//! Gemma-3-270M files: interleaved requests to both answer exactly as each model does alone at
//! temperature 0; concurrent first requests load a model once; an unknown model is a 404; and
//! `--model-memory` with room for one model unloads the least recently used one (visible in
//! `/v1/models` and `/metrics`, and the resident size drops), which a later request reloads.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod support;

use support::Serve;

fn gemma() -> PathBuf {
    let p = support::smollm2().with_file_name("gemma3-270m.gguf");
    assert!(p.exists(), "{} is missing: run `daehwa pull gemma3-270m` first", p.display());
    p
}

fn start(name: &str, extra: &[&str]) -> Serve {
    let data_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&data_dir);
    let mut cmd = support::serve_command(&data_dir);
    cmd.args(["--ctx", "512", "--max-seqs", "8", "-t", "1"])
        .arg("-m")
        .arg(support::smollm2())
        .arg("-m")
        .arg(gemma())
        .args(extra)
        .stderr(Stdio::inherit());
    support::spawn_serve(cmd, String::new)
}

/// One HTTP/1.1 request; the status and the body.
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    support::http(addr, method, path, &[], body)
}

/// A greedy completion's text and the model that answered.
fn complete(addr: &str, model: &str, prompt: &str) -> (String, String) {
    let body = json!({"model": model, "prompt": prompt, "max_tokens": 12, "temperature": 0}).to_string();
    let (status, body) = http(addr, "POST", "/v1/completions", &body);
    assert_eq!(status, 200, "{model}: {body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    (v["choices"][0]["text"].as_str().expect("text").to_string(), v["model"].as_str().expect("model").to_string())
}

fn states(addr: &str) -> Vec<(String, String)> {
    let (status, body) = http(addr, "GET", "/v1/models", "");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    v["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter(|m| ["smollm2", "gemma3-270m"].contains(&m["id"].as_str().expect("id")))
        .map(|m| (m["id"].as_str().expect("id").to_string(), m["state"].as_str().expect("state").to_string()))
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

fn metric(addr: &str, series: &str) -> f64 {
    let (_, text) = http(addr, "GET", "/metrics", "");
    text.lines()
        .find_map(|l| l.strip_prefix(series).map(|v| v.trim().parse::<f64>().expect("number")))
        .unwrap_or_else(|| panic!("no `{series}` in /metrics:\n{text}"))
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kib * 1024
}

/// (model, prompt) asked, and (text, model that answered).
type Answered = ((&'static str, &'static str), (String, String));

const PROMPTS: [&str; 3] = ["The capital of France is", "Once upon a time, a small robot", "def fibonacci(n):"];
const MODELS: [&str; 2] = ["smollm2", "gemma3-270m"];

#[test]
fn two_models_answer_interleaved_requests_as_each_does_alone() {
    let server = start("serve-models-two", &[]);
    let addr = server.addr.clone();
    assert_eq!(states(&addr), pairs(&[("smollm2", "loaded"), ("gemma3-270m", "unloaded")]));

    // Six requests at once, the two models interleaved; Gemma's three are its first.
    let threads: Vec<_> = PROMPTS
        .iter()
        .flat_map(|p| MODELS.iter().map(move |m| (*m, *p)))
        .map(|(m, p)| {
            let addr = addr.clone();
            std::thread::spawn(move || ((m, p), complete(&addr, m, p)))
        })
        .collect();
    let together: Vec<Answered> = threads.into_iter().map(|t| t.join().expect("client")).collect();
    assert_eq!(metric(&addr, "daehwa_model_loads_total{model=\"gemma3-270m\"}"), 1.0, "three first requests, one load");
    assert_eq!(states(&addr), pairs(&[("smollm2", "loaded"), ("gemma3-270m", "loaded")]));

    // Each alone, one after the other: the same text from the same model.
    for ((m, p), (text, by)) in &together {
        assert_eq!(by, m, "the model that answered");
        let (alone, _) = complete(&addr, m, p);
        assert_eq!(&alone, text, "{m} on {p:?}: alone vs. interleaved");
    }
    let differs = PROMPTS.iter().any(|p| {
        let of = |m: &str| together.iter().find(|((mm, pp), _)| *mm == m && pp == p).map(|(_, (t, _))| t.clone());
        of("smollm2") != of("gemma3-270m")
    });
    assert!(differs, "the two models answer differently somewhere: {together:?}");

    let (status, body) = http(&addr, "POST", "/v1/chat/completions", &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}).to_string());
    assert_eq!(status, 404, "{body}");
    let e: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(e["error"]["code"], "model_not_found");
    assert!(e["error"]["message"].as_str().expect("message").contains("smollm2, gemma3-270m"), "{body}");
    let (status, body) = http(&addr, "GET", "/health", "");
    assert_eq!(status, 200, "{body}");
    let h: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(h["models"].as_array().map(Vec::len), Some(2), "{h}");
}

#[test]
fn the_memory_budget_unloads_the_least_recently_used_model_and_a_request_reloads_it() {
    // SmolLM2 is ~145 MiB by the estimate (engine::memory: repacked weights whose mapped pages
    // are released, KV cache at this size, scratch), Gemma ~425 MiB: either fits, not both.
    let server = start("serve-models-budget", &["--model-memory", "480MiB"]);
    let addr = server.addr.clone();
    let pid = server.child.id();
    let (small, _) = complete(&addr, "smollm2", PROMPTS[0]);

    let (_, by) = complete(&addr, "gemma3-270m", PROMPTS[0]);
    assert_eq!(by, "gemma3-270m");
    assert_eq!(states(&addr), pairs(&[("smollm2", "unloaded"), ("gemma3-270m", "loaded")]));
    assert_eq!(metric(&addr, "daehwa_model_unloads_total{model=\"smollm2\"}"), 1.0);
    assert_eq!(metric(&addr, "daehwa_model_memory_bytes{model=\"smollm2\"}"), 0.0);
    let with_gemma = rss_bytes(pid);

    // SmolLM2 again: reloaded in Gemma's place, with the same answer; Gemma's memory goes back.
    let (again, _) = complete(&addr, "smollm2", PROMPTS[0]);
    assert_eq!(again, small, "the reloaded model answers as before");
    assert_eq!(states(&addr), pairs(&[("smollm2", "loaded"), ("gemma3-270m", "unloaded")]));
    assert_eq!(metric(&addr, "daehwa_model_loads_total{model=\"smollm2\"}"), 2.0);
    assert_eq!(metric(&addr, "daehwa_model_unloads_total{model=\"gemma3-270m\"}"), 1.0);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut now = rss_bytes(pid);
    while now + (100 << 20) > with_gemma && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        now = rss_bytes(pid);
    }
    assert!(
        now + (100 << 20) <= with_gemma,
        "unloading Gemma should give back at least 100 MiB: {} MiB with it, {} MiB after",
        with_gemma >> 20,
        now >> 20
    );
    eprintln!("RSS {} MiB with Gemma loaded, {} MiB after it was unloaded", with_gemma >> 20, now >> 20);
}

#[test]
fn models_dir_on_the_command_line_serves_every_model_in_it_and_the_variable_does_not() {
    let models = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("serve-models-dir");
    let _ = std::fs::remove_dir_all(&models);
    std::fs::create_dir_all(&models).expect("models dir");
    for name in ["smollm2.gguf", "twin.gguf"] {
        std::os::unix::fs::symlink(support::smollm2(), models.join(name)).expect("symlink");
    }
    // A file that is no model is left out with a warning, not a failed start.
    std::fs::write(models.join("broken.gguf"), b"not a gguf").expect("write");
    let ids = |server: &Serve| -> Vec<(String, String)> {
        let (status, body) = http(&server.addr, "GET", "/v1/models", "");
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).expect("json");
        v["data"]
            .as_array()
            .expect("data")
            .iter()
            .filter(|m| ["smollm2", "twin"].contains(&m["id"].as_str().expect("id")))
            .map(|m| (m["id"].as_str().expect("id").to_string(), m["state"].as_str().expect("state").to_string()))
            .collect()
    };
    let data_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("serve-models-dir-data");
    let _ = std::fs::remove_dir_all(&data_dir);
    let mut cmd = support::serve_command(&data_dir);
    cmd.args(["--ctx", "256", "-t", "1", "--models-dir"]).arg(&models).stderr(Stdio::inherit());
    let flag = support::spawn_serve(cmd, String::new);
    assert_eq!(ids(&flag), pairs(&[("smollm2", "loaded"), ("twin", "unloaded")]), "every .gguf, the first by name the default");
    drop(flag);

    let _ = std::fs::remove_dir_all(&data_dir);
    let mut cmd = support::serve_command(&data_dir);
    cmd.args(["--ctx", "256", "-t", "1"]).env("DAEHWA_MODELS_DIR", &models).stderr(Stdio::inherit());
    let env = support::spawn_serve(cmd, String::new);
    assert_eq!(ids(&env), pairs(&[("smollm2", "loaded")]), "the variable only says where models live");
}

//! `daehwa run` and `daehwa list` on the real Gemma-3-270M, a base model without a chat template:
//! raw completion works, chat uses the built-in Gemma format, `list` says so.

mod support;

use std::path::PathBuf;

use serde_json::Value;
use support::{daehwa, stderr, stdout};

/// The directory holding `gemma3-270m.gguf` (the house lookup order); fails if it is missing.
fn models_dir() -> PathBuf {
    let dir = std::env::var_os("DAEHWA_MODELS_DIR").map(PathBuf::from).unwrap_or_else(|| {
        let data = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".local/share"));
        data.join("daehwa/models")
    });
    let p = dir.join("gemma3-270m.gguf");
    assert!(p.exists(), "{} is missing: run `cargo run --release -- pull gemma3-270m` first", p.display());
    dir
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array().expect("array").iter().map(|x| x.as_u64().expect("id")).collect()
}

fn run_json(args: &[&str]) -> Value {
    let mut all = vec!["run", "-m", "gemma3-270m", "--json", "--temp", "0"];
    all.extend_from_slice(args);
    let o = daehwa(&models_dir(), &all);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    serde_json::from_str(&stdout(&o)).expect("one JSON object")
}

#[test]
fn raw_completion_matches_llama_cpp() {
    let dir = std::env::var("DAEHWA_GOLDEN_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/golden").to_string());
    let text = std::fs::read_to_string(format!("{dir}/completion-gemma3-270m-q4_k_m.jsonl")).expect("golden");
    let g: Value = serde_json::from_str(text.lines().next().expect("line")).expect("json");
    assert_eq!(g["prompt"], "The capital of France is");
    let out = run_json(&["--raw", "-n", "8", "The capital of France is"]);
    assert_eq!(ids(&out["prompt_tokens"]), ids(&g["prompt_token_ids_add_special_true"]));
    assert_eq!(ids(&out["tokens"]), ids(&g["generated_token_ids"])[..8].to_vec());
    assert!(out["text"].as_str().expect("text").starts_with(" the capital of the country"), "{}", out["text"]);
}

#[test]
fn chat_uses_the_builtin_gemma_format() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crates/engine/tests/data/gemma3-chat.json"))
        .expect("chat golden");
    let g: Value = serde_json::from_str(&text).expect("json");
    let case = &g["cases"][0];
    assert_eq!(case["name"], "single");
    let question = case["messages"][0]["content"].as_str().expect("content");
    let out = run_json(&["-n", "16", question]);
    assert_eq!(ids(&out["prompt_tokens"]), ids(&case["ids"]), "the prompt is <start_of_turn>user ... <start_of_turn>model");
    // Greedy ids equal llama.cpp's, or part from them only at a near-tie of its log-probs (as
    // `golden_gemma3`: both engines' float orders differ, so a 0.5-nat tie may break either way).
    let (got, want) = (ids(&out["tokens"]), ids(&case["gen"]));
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    if let Some(i) = got.iter().zip(&want).position(|(a, b)| a != b) {
        let alts = case["top5"][i].as_array().expect("top5");
        let best = alts[0]["logprob"].as_f64().expect("lp");
        let gap = alts.iter().find(|a| a["id"].as_u64() == Some(got[i])).map(|a| best - a["logprob"].as_f64().expect("lp"));
        assert!(gap.is_some_and(|g| g <= 0.5), "position {i}: {} vs llama.cpp's {}, not a near-tie (gap {gap:?})", got[i], want[i]);
    }
}

#[test]
fn list_shows_the_builtin_chat_format() {
    let o = daehwa(&models_dir(), &["list", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let all: Vec<Value> = serde_json::from_str(&stdout(&o)).expect("JSON array");
    let g = all.iter().find(|m| m["name"] == "gemma3-270m").expect("gemma3-270m listed");
    assert_eq!((g["architecture"].as_str(), g["chat_template"].as_bool()), (Some("gemma3"), Some(false)));
    assert_eq!(g["chat_format"], "builtin:gemma");
    let o = daehwa(&models_dir(), &["list"]);
    let line = stdout(&o).lines().find(|l| l.starts_with("gemma3-270m")).map(str::to_string).expect("table row");
    assert!(line.contains(" builtin:gemma "), "{line}");
}

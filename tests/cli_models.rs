//! The model-management CLI contract, run against the built binary:
//! `daehwa --models-dir D pull PATH | list [--json] | rm NAME`, and the one-line error with
//! exit code 2 for an unknown model.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gguf::{GgmlType, GgufWriter, Value};

fn daehwa(models_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_daehwa"))
        .arg("--models-dir")
        .arg(models_dir)
        .args(args)
        .env_remove("DAEHWA_MODELS_DIR")
        .output()
        .expect("run the daehwa binary")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn temp_dir(what: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("daehwa-cli-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// The real model, located as the house rules say; absent => fail with the fix.
fn smollm2_path() -> PathBuf {
    let mut c = Vec::new();
    if let Some(p) = std::env::var_os("DAEHWA_SMOLLM2_GGUF") {
        c.push(PathBuf::from(p));
    }
    if let Some(d) = std::env::var_os("DAEHWA_MODELS_DIR") {
        c.push(PathBuf::from(d).join("smollm2.gguf"));
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
        c.push(PathBuf::from(d).join("daehwa/models/smollm2.gguf"));
    }
    if let Some(h) = std::env::var_os("HOME") {
        c.push(PathBuf::from(h).join(".local/share/daehwa/models/smollm2.gguf"));
    }
    c.iter().find(|p| p.is_file()).cloned().unwrap_or_else(|| {
        panic!("SmolLM2 not found at {c:?}: run `cargo run --release -- pull smollm2`")
    })
}

#[test]
fn pull_path_list_json_and_rm() {
    let root = temp_dir("models");
    let models = root.join("models");
    // An empty (not yet created) models dir lists as an empty array.
    let o = daehwa(&models, &["list", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v, serde_json::json!([]));

    // Import the real model by path (a copy named after the file stem) and a tiny one.
    let real = smollm2_path();
    let o = daehwa(&models, &["pull", "--quiet", real.to_str().expect("utf-8 path")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stem = real.file_stem().and_then(|s| s.to_str()).expect("stem").to_string();
    let tiny = root.join("tiny.gguf");
    let mut w = GgufWriter::new();
    w.add("general.architecture", Value::String("qwen2".into()))
        .add("qwen2.context_length", Value::U64(4096))
        .add("general.file_type", Value::U32(7));
    w.add_tensor("w", &[32, 2], GgmlType::Q8_0, vec![0; 68]);
    std::fs::write(&tiny, w.to_bytes()).expect("write");
    let o = daehwa(&models, &["pull", tiny.to_str().expect("utf-8 path")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("imported tiny"), "{}", stderr(&o));

    let o = daehwa(&models, &["list", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let arr = v.as_array().expect("an array");
    assert_eq!(arr.len(), 2, "{v}");
    let by_name = |n: &str| arr.iter().find(|m| m["name"] == n).unwrap_or_else(|| panic!("{n} in {v}"));
    let s = by_name(&stem);
    assert_eq!(s["size_bytes"], 98_362_432);
    assert_eq!(s["architecture"], "llama");
    assert_eq!(s["quant"], "Q4_1");
    assert_eq!(s["context_length"], 8192);
    assert_eq!(s["chat_template"], true);
    assert_eq!(PathBuf::from(s["path"].as_str().expect("path")), models.join(format!("{stem}.gguf")));
    let t = by_name("tiny");
    assert_eq!((&t["architecture"], &t["quant"], &t["context_length"]), (&"qwen2".into(), &"Q8_0".into(), &4096.into()));
    assert_eq!(t["chat_template"], false);

    // The table names both, with human sizes.
    let o = daehwa(&models, &["list"]);
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && table.contains("NAME") && table.contains("93.8 MiB") && table.contains("tiny"), "{table}");
    // ... and the tensor types daehwa runs (the kernels' table, the same list a refusal prints).
    assert!(table.contains("supported tensor types: ") && table.contains("q3_K") && table.contains("iq4_xs") && table.contains("mxfp4"), "{table}");

    let o = daehwa(&models, &["rm", "tiny"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!models.join("tiny.gguf").exists());
    let o = daehwa(&models, &["rm", "tiny"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no pulled model named `tiny`"), "{}", stderr(&o));
    let o = daehwa(&models, &["list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v.as_array().map(Vec::len), Some(1));
    std::fs::remove_dir_all(&root).expect("cleanup");
}

#[test]
fn pull_of_an_unknown_name_is_a_one_line_error_with_exit_code_2() {
    let root = temp_dir("unknown");
    let o = daehwa(&root, &["pull", "nonsense"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    assert!(err.contains("nonsense") && err.contains("smollm2") && err.contains("gemma3-270m"), "{err}");
    assert!(o.stdout.is_empty());
    std::fs::remove_dir_all(&root).expect("cleanup");
}

#[test]
fn pull_of_a_non_gguf_file_is_refused() {
    let root = temp_dir("junk");
    let junk = root.join("junk.gguf");
    std::fs::write(&junk, b"this is not a model").expect("write");
    let o = daehwa(&root.join("models"), &["pull", junk.to_str().expect("utf-8 path")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not a GGUF file"), "{}", stderr(&o));
    assert!(!root.join("models/junk.gguf").exists());
    std::fs::remove_dir_all(&root).expect("cleanup");
}

//! What the engine's tests share: finding the real models and llama.cpp's golden files.

#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::Value;

/// The pulled model `name` (`smollm2`, `gemma3-270m`): `$env_var`, then
/// `$DAEHWA_MODELS_DIR/NAME.gguf`, `$XDG_DATA_HOME/daehwa/models/NAME.gguf` and
/// `~/.local/share/daehwa/models/NAME.gguf`, the first that exists.
pub fn find_model(name: &str, env_var: &str) -> Option<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let file = format!("{name}.gguf");
    [
        env(env_var),
        env("DAEHWA_MODELS_DIR").map(|d| d.join(&file)),
        env("XDG_DATA_HOME").map(|d| d.join("daehwa/models").join(&file)),
        env("HOME").map(|d| d.join(".local/share/daehwa/models").join(&file)),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.is_file())
}

/// Like [`find_model`], failing the test with the command that fetches the model.
pub fn model_path(name: &str, env_var: &str) -> PathBuf {
    find_model(name, env_var).unwrap_or_else(|| {
        panic!(
            "{name}.gguf not found (${env_var}, $DAEHWA_MODELS_DIR, $XDG_DATA_HOME/daehwa/models, \
             ~/.local/share/daehwa/models): run `cargo run --release -- pull {name}` first"
        )
    })
}

pub fn smollm2() -> PathBuf {
    model_path("smollm2", "DAEHWA_SMOLLM2_GGUF")
}

pub fn gemma3() -> PathBuf {
    model_path("gemma3-270m", "DAEHWA_GEMMA3_GGUF")
}

/// A file of `shared/golden` (or `$DAEHWA_GOLDEN_DIR`).
pub fn golden_path(name: &str) -> PathBuf {
    std::env::var_os("DAEHWA_GOLDEN_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/golden")))
        .join(name)
}

/// The JSON lines of a golden file.
pub fn golden(name: &str) -> Vec<Value> {
    let path = golden_path(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect("golden json")).collect()
}

/// A JSON array of token ids.
pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array().expect("array").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

/// `test` cannot run here because of `why`: a failure under `DAEHWA_REQUIRE_ALL=1` (set by
/// `.ci/run`), a printed notice otherwise (straight to the stderr handle: the harness hides
/// `eprintln!` output of passing tests, and a skip must be visible).
pub fn skip(test: &str, why: &str) {
    assert!(
        std::env::var("DAEHWA_REQUIRE_ALL").as_deref() != Ok("1"),
        "{test} cannot run and DAEHWA_REQUIRE_ALL=1 makes that a failure: {why}"
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("NOTICE: {test} SKIPPED: {why}\n").as_bytes());
}

/// The Python interpreter of the tests: `$DAEHWA_PYTHON` (scripts/test points it at its venv),
/// else `python3`.
pub fn python() -> String {
    std::env::var("DAEHWA_PYTHON").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "python3".into())
}

//! The web UI's browser tests (`webui/e2e/*.test.mjs`, Node's test runner with playwright-core
//! driving Debian's chromium) against this package's `daehwa` binary and the real SmolLM2 model.
//!
//! Needs Node.js 20+, `webui/node_modules` (`npm ci` in webui), `/usr/bin/chromium` (or
//! `DAEHWA_CHROMIUM`), the model, and a binary built with `webui/dist` in place. Where one is
//! missing the test is skipped with a notice, unless `DAEHWA_REQUIRE_E2E=1` (scripts/test sets it),
//! where it fails instead. Screenshots go to `target/e2e-screenshots/` (or `$DAEHWA_E2E_SCREENSHOTS`).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The real SmolLM2 GGUF, in the lookup order of `tests/support` (not asserted here: a missing
/// model is a skip or a failure depending on `DAEHWA_REQUIRE_E2E`).
fn model_path() -> PathBuf {
    if let Some(p) = std::env::var_os("DAEHWA_SMOLLM2_GGUF") {
        return PathBuf::from(p);
    }
    let dir = std::env::var_os("DAEHWA_MODELS_DIR").map(PathBuf::from).unwrap_or_else(|| {
        let data = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".local/share"));
        data.join("daehwa/models")
    });
    dir.join("smollm2.gguf")
}

fn chromium_path() -> PathBuf {
    std::env::var_os("DAEHWA_CHROMIUM").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Node's major version, if `node` runs.
fn node_major() -> Option<u32> {
    let out = Command::new("node").arg("--version").output().ok()?;
    let v = String::from_utf8_lossy(&out.stdout);
    v.trim().trim_start_matches('v').split('.').next()?.parse().ok()
}

/// What the suite needs and is not there.
fn missing_prerequisites(webui: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    match node_major() {
        None => missing.push("node (Node.js 20+)".to_string()),
        Some(v) if v < 20 => missing.push(format!("Node.js 20+ (found {v})")),
        Some(_) => {}
    }
    if !webui.join("node_modules/playwright-core/package.json").is_file() {
        missing.push("webui/node_modules with playwright-core (cd webui && npm ci)".to_string());
    }
    let chromium = chromium_path();
    if !chromium.is_file() {
        missing.push(format!("chromium at {} (apt-get install chromium)", chromium.display()));
    }
    let model = model_path();
    if !model.is_file() {
        missing.push(format!("the model at {} (daehwa pull smollm2)", model.display()));
    }
    if !webui.join("dist/index.html").is_file() {
        missing.push("webui/dist (cd webui && npm run build, then rebuild the binary)".to_string());
    }
    missing
}

#[test]
fn web_ui_in_a_real_browser() {
    let webui = repo().join("webui");
    let missing = missing_prerequisites(&webui);
    if !missing.is_empty() {
        let list = missing.join("; ");
        assert!(
            std::env::var("DAEHWA_REQUIRE_E2E").as_deref() != Ok("1"),
            "the browser tests cannot run (DAEHWA_REQUIRE_E2E=1), missing: {list}"
        );
        support::skip("web UI browser tests", &format!("missing: {list}"));
        return;
    }

    let mut files: Vec<PathBuf> = std::fs::read_dir(webui.join("e2e"))
        .expect("read webui/e2e")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(".test.mjs")))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "webui/e2e has too few test files: {files:?}");

    let screenshots = std::env::var_os("DAEHWA_E2E_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/e2e-screenshots"));
    // Screenshots of an earlier run must not pass for this run's.
    if let Ok(dir) = std::fs::read_dir(&screenshots) {
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = name.ends_with(".png") && (name.starts_with("FAIL-") || name.chars().take(2).all(|c| c.is_ascii_digit()));
            if ours {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    // One file at a time: each starts its own server with 2 model threads on this 2-core machine.
    let status = Command::new("node")
        .args(["--test", "--test-concurrency=1", "--test-reporter=spec"])
        .args(&files)
        .current_dir(&webui)
        .env("DAEHWA_BIN", env!("CARGO_BIN_EXE_daehwa"))
        .env("DAEHWA_E2E_MODEL", model_path())
        .env("DAEHWA_CHROMIUM", chromium_path())
        .env("DAEHWA_E2E_SCREENSHOTS", &screenshots)
        .status()
        .expect("run node --test");
    assert!(status.success(), "the browser tests failed ({status}); screenshots of failures (FAIL-*.png) are in {}", screenshots.display());

    for name in ["01-setup", "03-chat-answer", "11-chat-korean", "20-phone-drawer"] {
        let shot = screenshots.join(format!("{name}.png"));
        assert!(shot.is_file(), "the run wrote no screenshot {}", shot.display());
    }
}

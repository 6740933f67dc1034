//! `daehwa serve` end to end: starts the binary on a free port with the real SmolLM2 model, runs
//! the official `openai` Python SDK suite in `tests/openai/` against it, then checks graceful
//! shutdown (SIGTERM lets a running stream finish, and the process exits cleanly).
//!
//! Needs `python3 -m pip install openai pytest` (`.ci/run` installs them).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::Serve;

fn model_path() -> PathBuf {
    if let Some(p) = std::env::var_os("DAEHWA_SMOLLM2_GGUF") {
        return PathBuf::from(p);
    }
    let candidates = [
        std::env::var_os("DAEHWA_MODELS_DIR").map(|d| PathBuf::from(d).join("smollm2.gguf")),
        std::env::var_os("XDG_DATA_HOME").map(|d| PathBuf::from(d).join("daehwa/models/smollm2.gguf")),
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share/daehwa/models/smollm2.gguf")),
    ];
    candidates.into_iter().flatten().find(|p| p.is_file()).unwrap_or_else(|| {
        panic!("the SmolLM2 model is missing: run `cargo run --release -- pull smollm2` (or set DAEHWA_SMOLLM2_GGUF)")
    })
}

fn golden_dir() -> PathBuf {
    std::env::var_os("DAEHWA_GOLDEN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/golden"))
}

const KEY: &str = "sk-daehwa-test";
const MAX_SEQS: usize = 16;
const QUEUE: usize = 16;

fn start() -> Serve {
    // A fresh conversation store for this run, never the user's own.
    let data_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("serve-openai-data");
    let _ = std::fs::remove_dir_all(&data_dir);
    let mut cmd = support::serve_command(&data_dir);
    cmd.args(["--ctx", "2048", "--drain-timeout", "20"])
        .args(["--max-seqs", &MAX_SEQS.to_string(), "--queue", &QUEUE.to_string(), "--api-key", KEY])
        .arg("-m")
        .arg(model_path())
        .stderr(Stdio::inherit());
    support::spawn_serve(cmd, String::new)
}

/// A bare HTTP/1.1 request (no client crate needed); returns the raw response.
fn http(addr: &str, method: &str, path: &str, body: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(120))).expect("timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn openai_sdk_suite_and_graceful_shutdown() {
    let deps = Command::new(support::python()).args(["-c", "import openai, pytest"]).status();
    assert!(
        deps.is_ok_and(|s| s.success()),
        "the Python packages `openai` and `pytest` are missing: run `python3 -m pip install openai pytest`"
    );
    let mut server = start();
    let health = http(&server.addr, "GET", "/health", "");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");

    let model_id = model_path().file_stem().expect("stem").to_string_lossy().into_owned();
    let status = Command::new(support::python())
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/openai"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DAEHWA_BASE_URL", format!("http://{}/v1", server.addr))
        .env("DAEHWA_API_KEY", KEY)
        .env("DAEHWA_MODEL_ID", &model_id)
        .env("DAEHWA_GOLDEN_DIR", golden_dir())
        .env("DAEHWA_MAX_SEQS", MAX_SEQS.to_string())
        .env("DAEHWA_QUEUE", QUEUE.to_string())
        .status()
        .expect("run pytest");
    assert!(status.success(), "the openai SDK suite failed (see pytest's output above)");

    // Graceful shutdown: a stream running when SIGTERM arrives still completes.
    let addr = server.addr.clone();
    let body = format!(
        r#"{{"model": "{model_id}", "messages": [{{"role": "user", "content": "Tell me a story."}}], "temperature": 0, "max_tokens": 48, "stream": true}}"#
    );
    let streamer = std::thread::spawn(move || http(&addr, "POST", "/v1/chat/completions", &body));
    std::thread::sleep(Duration::from_millis(300));
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let streamed = streamer.join().expect("stream thread");
    assert!(streamed.starts_with("HTTP/1.1 200"), "{streamed}");
    assert!(streamed.contains("\"finish_reason\":\"length\"") && streamed.contains("data: [DONE]"), "the stream was cut: {streamed}");
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        if let Some(st) = server.child.try_wait().expect("wait") {
            assert!(st.success(), "daehwa serve exited with {st} after SIGTERM");
            break;
        }
        assert!(Instant::now() < deadline, "daehwa serve did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    // New connections are refused once it has stopped.
    assert!(TcpStream::connect(&server.addr).is_err());
}

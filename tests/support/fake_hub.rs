//! A fake Hugging Face hub on 127.0.0.1 (`tests/fake_hub.py`) serving tiny GGUFs written by
//! `scripts/tiny_models.py`: what the `daehwa pull hf:` tests pull from.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The token the gated repository wants.
pub const TOKEN: &str = "hf_secret-token";

/// The running fake hub (killed when dropped) and its repositories:
/// - `tiny/llama-GGUF`: `tiny-llama-Q4_K_M.gguf`, `tiny-llama-Q8_0.gguf` (both the tiny llama
///   model), `F16/tiny-llama-F16-0000K-of-00003.gguf` (the same model split in three parts by
///   gguf-py's split writer), `README.md`;
/// - `tiny/gated-GGUF`: `gated-Q4_K_M.gguf`, gated by [`TOKEN`];
/// - `tiny/docs-only`: no GGUF files.
pub struct FakeHub {
    child: Child,
    pub endpoint: String,
    pub root: PathBuf,
    /// The single-file twin of the split model.
    pub single: PathBuf,
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> String {
    std::env::var("DAEHWA_PYTHON").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "python3".into())
}

impl FakeHub {
    /// Writes the repositories under `dir` and starts the hub.
    pub fn start(dir: &Path) -> FakeHub {
        let gen = dir.join("gen");
        std::fs::create_dir_all(&gen).expect("mkdir");
        let out = Command::new(python())
            .arg(repo_root().join("scripts/tiny_models.py"))
            .arg(&gen)
            .args(["--split", "llama"])
            .output()
            .expect("run python3 scripts/tiny_models.py");
        assert!(out.status.success(), "tiny_models.py --split llama: {}", String::from_utf8_lossy(&out.stderr));
        let single = gen.join("llama.gguf");
        let root = dir.join("hub");
        let repo = root.join("tiny/llama-GGUF");
        std::fs::create_dir_all(repo.join("F16")).expect("mkdir");
        std::fs::copy(&single, repo.join("tiny-llama-Q4_K_M.gguf")).expect("copy");
        std::fs::copy(&single, repo.join("tiny-llama-Q8_0.gguf")).expect("copy");
        for k in 1..=3 {
            std::fs::copy(gen.join(format!("llama-split-{k:05}-of-00003.gguf")), repo.join(format!("F16/tiny-llama-F16-{k:05}-of-00003.gguf"))).expect("copy part");
        }
        std::fs::write(repo.join("README.md"), "# tiny llama\n").expect("write");
        let gated = root.join("tiny/gated-GGUF");
        std::fs::create_dir_all(&gated).expect("mkdir");
        std::fs::copy(&single, gated.join("gated-Q4_K_M.gguf")).expect("copy");
        std::fs::write(gated.join(".gated"), TOKEN).expect("write");
        let docs = root.join("tiny/docs-only");
        std::fs::create_dir_all(&docs).expect("mkdir");
        std::fs::write(docs.join("README.md"), "no weights here\n").expect("write");
        std::fs::write(docs.join("model.safetensors"), b"not a gguf").expect("write");

        let mut child = Command::new(python())
            .arg(repo_root().join("tests/fake_hub.py"))
            .arg(&root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tests/fake_hub.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read the ports");
        let port = line.split_whitespace().next().expect("a port").to_string();
        FakeHub { child, endpoint: format!("http://127.0.0.1:{port}"), root, single }
    }

    fn http(&self, method: &str, path: &str, body: &str) -> String {
        let addr = self.endpoint.trim_start_matches("http://");
        let mut s = TcpStream::connect(addr).expect("connect to the fake hub");
        write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).expect("send");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()
    }

    /// `POST /_control` (see tests/fake_hub.py): `{"drop_after": N, "drop_times": K}`, `{"corrupt": true}`, `{}`.
    pub fn control(&self, json: &str) {
        self.http("POST", "/_control", json);
    }

    /// The CDN requests so far: (path, Range header).
    pub fn log(&self) -> Vec<(String, Option<String>)> {
        let v: serde_json::Value = serde_json::from_str(&self.http("GET", "/_log", "")).expect("log JSON");
        v.as_array()
            .expect("array")
            .iter()
            .map(|e| (e["path"].as_str().unwrap_or("").to_string(), e["range"].as_str().map(str::to_string)))
            .collect()
    }

    /// `daehwa --models-dir DIR ARGS` pointed at this hub (small ranges on three connections,
    /// so that even tiny files are fetched in parallel ranges), with `env` added.
    pub fn daehwa(&self, models: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_daehwa"));
        c.arg("--models-dir").arg(models).args(args);
        for k in ["DAEHWA_MODELS_DIR", "DAEHWA_MODEL", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "DAEHWA_TEST_FREE_BYTES"] {
            c.env_remove(k);
        }
        c.env("HF_ENDPOINT", &self.endpoint).env("DAEHWA_PULL_CHUNK_BYTES", "65536").env("DAEHWA_PULL_CONNECTIONS", "3");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("run daehwa")
    }
}

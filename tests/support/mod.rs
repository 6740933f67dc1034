//! Shared helpers for the binary's integration tests: running `daehwa`, locating the real
//! model, and writing tiny llama-architecture GGUF files with random weights.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use gguf::{Array, GgmlType, GgufWriter, Value};

pub mod fake_hub;

pub fn daehwa(models_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_daehwa"))
        .arg("--models-dir")
        .arg(models_dir)
        .args(args)
        .output()
        .expect("run daehwa")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The real SmolLM2 GGUF (see the house rules for the lookup order); fails if it is missing.
pub fn smollm2() -> PathBuf {
    if let Ok(p) = std::env::var("DAEHWA_SMOLLM2_GGUF") {
        return p.into();
    }
    let dir = std::env::var_os("DAEHWA_MODELS_DIR").map(PathBuf::from).unwrap_or_else(|| {
        let data = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".local/share"));
        data.join("daehwa/models")
    });
    let p = dir.join("smollm2.gguf");
    assert!(p.exists(), "{} is missing: run `cargo run --release -- pull smollm2` first", p.display());
    p
}

/// A running `daehwa serve`, killed when dropped.
pub struct Serve {
    pub child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `daehwa serve --host 127.0.0.1 --port 0` on a fresh store in `data_dir`, with none of the
/// caller's `DAEHWA_*` settings leaking in; the caller adds flags (and `-m`).
pub fn serve_command(data_dir: &Path) -> Command {
    serve_command_on(data_dir, 0)
}

/// [`serve_command`] on a given port (a replica restarted where its load balancer expects it).
pub fn serve_command_on(data_dir: &Path, port: u16) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_daehwa"));
    c.args(["serve", "--host", "127.0.0.1", "--port"]).arg(port.to_string());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("DAEHWA_") && k != "DAEHWA_LOG" {
            c.env_remove(k);
        }
    }
    c.env("DAEHWA_DATA_DIR", data_dir);
    c
}

/// Spawns a `daehwa serve` command and waits (up to 120 s) for its first stdout line, the URL.
/// `describe` adds context (its log) to a failure.
pub fn spawn_serve(mut cmd: Command, describe: impl Fn() -> String) -> Serve {
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("start daehwa serve");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(120)).expect("daehwa serve printed no URL within 120 s");
    let addr = line.trim().trim_start_matches("http://").trim_end_matches("/v1").to_string();
    assert!(addr.starts_with("127.0.0.1:"), "first stdout line should be the URL: {line:?}\n{}", describe());
    Serve { child, addr }
}

/// A scratch directory under the target dir, emptied first.
pub fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

pub struct Tiny<'a> {
    pub arch: &'a str,
    /// Type of `blk.0.ffn_up.weight` (to test unsupported quant types).
    pub ffn_up_type: GgmlType,
    pub chat_template: Option<&'a str>,
    pub n_ctx: u32,
    /// Name the two special tokens `<|im_start|>`/`<|im_end|>` (so the built-in ChatML format
    /// applies when there is no template) rather than `<s>`/`</s>`.
    pub chatml_tokens: bool,
    /// Metadata written instead of (or besides) the defaults: hostile files.
    pub meta: Vec<(String, Value)>,
}

impl Default for Tiny<'_> {
    fn default() -> Self {
        Tiny { arch: "llama", ffn_up_type: GgmlType::F32, chat_template: None, n_ctx: 64, chatml_tokens: true, meta: Vec::new() }
    }
}

/// GPT-2's byte-to-unicode map, so a 256-token byte-level vocabulary covers every text.
fn byte_tokens() -> Vec<String> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut pairs: Vec<(u32, u32)> = bs.into_iter().zip(cs).collect();
    pairs.sort();
    pairs.into_iter().map(|(_, c)| char::from_u32(c).expect("char").to_string()).collect()
}

/// Writes a tiny llama-style GGUF with random F32 weights and a byte-level BPE vocabulary.
pub fn write_tiny(path: &Path, t: &Tiny) {
    let (e, n_head, n_head_kv, ff, n_layer) = (32u64, 4u32, 2u32, 64u64, 2u32);
    let hd = e / n_head as u64;
    let mut tokens = byte_tokens();
    let (bos, eos) = if t.chatml_tokens { ("<|im_start|>", "<|im_end|>") } else { ("<s>", "</s>") };
    tokens.push(bos.into());
    tokens.push(eos.into());
    let n_vocab = tokens.len() as u64;
    let mut types = vec![1i32; 256];
    types.extend([3, 3]);
    let mut w = GgufWriter::new();
    let mut kv: Vec<(String, Value)> = Vec::new();
    let mut add = |k: &str, v: Value| kv.push((k.to_string(), v));
    let a = t.arch;
    add("general.architecture", Value::String(a.into()));
    add("general.name", Value::String("tiny".into()));
    add(&format!("{a}.block_count"), Value::U32(n_layer));
    add(&format!("{a}.context_length"), Value::U32(t.n_ctx));
    add(&format!("{a}.embedding_length"), Value::U32(e as u32));
    add(&format!("{a}.feed_forward_length"), Value::U32(ff as u32));
    add(&format!("{a}.attention.head_count"), Value::U32(n_head));
    add(&format!("{a}.attention.head_count_kv"), Value::U32(n_head_kv));
    add(&format!("{a}.attention.layer_norm_rms_epsilon"), Value::F32(1e-5));
    add(&format!("{a}.rope.freq_base"), Value::F32(10000.0));
    add("tokenizer.ggml.model", Value::String("gpt2".into()));
    add("tokenizer.ggml.pre", Value::String("gpt-2".into()));
    add("tokenizer.ggml.tokens", Value::Array(Array::String(tokens)));
    add("tokenizer.ggml.token_type", Value::Array(Array::I32(types)));
    add("tokenizer.ggml.merges", Value::Array(Array::String(vec![])));
    add("tokenizer.ggml.bos_token_id", Value::U32(256));
    add("tokenizer.ggml.eos_token_id", Value::U32(257));
    add("tokenizer.ggml.add_bos_token", Value::Bool(false));
    if let Some(tpl) = t.chat_template {
        add("tokenizer.chat_template", Value::String(tpl.into()));
    }
    for (k, v) in &t.meta {
        match kv.iter_mut().find(|(dk, _)| dk == k) {
            Some(slot) => slot.1 = v.clone(),
            None => kv.push((k.clone(), v.clone())),
        }
    }
    for (k, v) in kv {
        w.add(&k, v);
    }
    let mut seed = 0x9E3779B97F4A7C15u64;
    let mut rnd = |n: u64| -> Vec<u8> {
        (0..n)
            .flat_map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2).to_le_bytes()
            })
            .collect()
    };
    let ones = |n: u64| -> Vec<u8> { (0..n).flat_map(|_| 1f32.to_le_bytes()).collect() };
    w.add_tensor("token_embd.weight", &[e, n_vocab], GgmlType::F32, rnd(e * n_vocab));
    w.add_tensor("output_norm.weight", &[e], GgmlType::F32, ones(e));
    let kvd = hd * n_head_kv as u64;
    for il in 0..n_layer {
        let n = |s: &str| format!("blk.{il}.{s}");
        w.add_tensor(&n("attn_norm.weight"), &[e], GgmlType::F32, ones(e));
        w.add_tensor(&n("attn_q.weight"), &[e, e], GgmlType::F32, rnd(e * e));
        w.add_tensor(&n("attn_k.weight"), &[e, kvd], GgmlType::F32, rnd(e * kvd));
        w.add_tensor(&n("attn_v.weight"), &[e, kvd], GgmlType::F32, rnd(e * kvd));
        w.add_tensor(&n("attn_output.weight"), &[e, e], GgmlType::F32, rnd(e * e));
        w.add_tensor(&n("ffn_norm.weight"), &[e], GgmlType::F32, ones(e));
        w.add_tensor(&n("ffn_gate.weight"), &[e, ff], GgmlType::F32, rnd(e * ff));
        if il == 0 && t.ffn_up_type != GgmlType::F32 {
            let bytes = t.ffn_up_type.row_bytes(e * ff).expect("row bytes") as usize;
            w.add_tensor(&n("ffn_up.weight"), &[e, ff], t.ffn_up_type, vec![0u8; bytes]);
        } else {
            w.add_tensor(&n("ffn_up.weight"), &[e, ff], GgmlType::F32, rnd(e * ff));
        }
        w.add_tensor(&n("ffn_down.weight"), &[ff, e], GgmlType::F32, rnd(ff * e));
    }
    std::fs::write(path, w.to_bytes()).expect("write tiny gguf");
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

/// One HTTP/1.1 request to `addr` (`Connection: close`, JSON body, extra `headers`), read to
/// the end: the status and the body (a chunked body as it came).
pub fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let (status, _, body) = http_head(addr, method, path, headers, body);
    (status, body)
}

/// [`http`] with the response head too (status line and headers, as sent).
pub fn http_head(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(300))).expect("timeout");
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (status, head.to_string(), body.to_string())
}

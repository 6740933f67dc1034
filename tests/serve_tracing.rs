//! Traces and logs of `daehwa serve`: every response carries `X-Request-Id` (the client's when
//! sane, else a fresh one), `--log-format json` writes JSON lines whose span carries that
//! `request_id`, and `--otlp-endpoint` exports the request's spans (`request`,
//! `queue`, `prefill` with its `prefill_chunk`s, `decode`) to an OTLP/HTTP collector: here a tiny one on loopback that
//! records what it is sent.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{scratch, write_tiny, Tiny};

/// What the collector received: (path, content type, body) per POST.
type Received = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

/// An OTLP/HTTP collector: answers every POST 200 with an empty protobuf response.
fn collector() -> (String, Received) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    let got: Received = Arc::default();
    let g = got.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let g = g.clone();
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
                let mut r = BufReader::new(s.try_clone().expect("clone"));
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split(' ').nth(1).unwrap_or("").to_string();
                    let (mut len, mut ctype) = (0usize, String::new());
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            match k.trim().to_ascii_lowercase().as_str() {
                                "content-length" => len = v.trim().parse().unwrap_or(0),
                                "content-type" => ctype = v.trim().to_string(),
                                _ => {}
                            }
                        }
                    }
                    let mut body = vec![0u8; len];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    g.lock().expect("lock").push((path, ctype, body));
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n");
                }
            });
        }
    });
    (addr, got)
}

fn http(addr: &str, method: &str, path: &str, headers: &str, body: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn request_id(resp: &str) -> Option<String> {
    resp.split("\r\n\r\n").next()?.lines().find_map(|l| l.strip_prefix("x-request-id: ")).map(str::to_string)
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn request_ids_json_logs_and_otlp_export() {
    let d = scratch("serve-tracing");
    let model = d.join("tiny.gguf");
    write_tiny(&model, &Tiny::default());
    let (otlp, received) = collector();
    let mut cmd = support::serve_command(&d.join("data"));
    cmd.args(["-t", "1", "--log-format", "json", "--otlp-endpoint", &format!("http://{otlp}"), "-m"]).arg(&model);
    cmd.env("DAEHWA_LOG", "info").stderr(Stdio::piped());
    let mut server = support::spawn_serve(cmd, String::new);
    let stderr = server.child.stderr.take().expect("stderr");
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let l2 = lines.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            l2.lock().expect("lock").push(line);
        }
    });
    let addr = server.addr.clone();

    // Every route answers with an id: the API, the web UI, /health, an unknown route, a 405.
    let chat = r#"{"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":4,"temperature":0}"#;
    let cases = [
        ("GET", "/health", ""),
        ("GET", "/v1/models", ""),
        ("POST", "/v1/chat/completions", chat),
        ("GET", "/", ""),
        ("GET", "/api/auth/state", ""),
        ("GET", "/openapi.json", ""),
        ("GET", "/metrics", ""),
        ("GET", "/no/such/route", ""),
        ("DELETE", "/v1/models", ""),
    ];
    for (method, path, body) in cases {
        let r = http(&addr, method, path, "", body);
        let id = request_id(&r).unwrap_or_else(|| panic!("{method} {path}: no x-request-id: {r}"));
        assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{method} {path}: generated id {id:?}");
    }
    // A sane client id is kept; a hostile one is replaced.
    let r = http(&addr, "POST", "/v1/chat/completions", "X-Request-Id: trace-me-1\r\n", chat);
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert_eq!(request_id(&r).as_deref(), Some("trace-me-1"));
    let r = http(&addr, "GET", "/health", "X-Request-Id: two words\r\n", "");
    assert_ne!(request_id(&r).as_deref(), Some("two words"));

    // SIGTERM: a clean exit flushes the span export.
    let _ = std::process::Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status();
    let status = server.child.wait().expect("wait");
    assert!(status.success(), "{status}");
    reader.join().expect("stderr reader");

    // JSON lines: every line parses; the chat request's lines carry its request_id.
    let lines = lines.lock().expect("lock").clone();
    let mut tagged = 0;
    for l in lines.iter().filter(|l| l.starts_with('{')) {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v["timestamp"].is_string() && v["level"].is_string(), "{l}");
        if v["span"]["request_id"] == "trace-me-1" {
            tagged += 1;
            assert_eq!(v["spans"][0]["name"], "request", "{l}");
        }
    }
    assert!(tagged >= 1, "no JSON log line carries request_id trace-me-1:\n{}", lines.join("\n"));
    let closing = lines.iter().find(|l| l.contains("trace-me-1") && l.contains(r#""route":"/v1/chat/completions""#));
    assert!(closing.is_some(), "the request's closing line names its route:\n{}", lines.join("\n"));

    // OTLP: protobuf POSTs to /v1/traces holding the request's spans and its id.
    let t0 = Instant::now();
    loop {
        let got = received.lock().expect("lock").clone();
        let all: Vec<u8> = got.iter().flat_map(|(_, _, b)| b.clone()).collect();
        if ["request", "queue", "prefill", "prefill_chunk", "decode", "trace-me-1", "daehwa"].iter().all(|n| contains(&all, n)) {
            assert!(got.iter().all(|(p, c, _)| p == "/v1/traces" && c == "application/x-protobuf"), "{:?}", got.iter().map(|(p, c, _)| (p, c)).collect::<Vec<_>>());
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "the collector got {} POSTs without the request's spans", got.len());
        std::thread::sleep(Duration::from_millis(100));
    }
}

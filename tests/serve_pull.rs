//! The admin pull route over loopback: `daehwa serve --models-dir D` with accounts; an admin
//! starts a pull from the fake hub (tests/fake_hub.py) with `POST /api/admin/pulls` and polls its
//! progress until done; a non-admin gets 403; `/api/models` describes the served model's file
//! (size, quantization, source) for the picker.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::fake_hub::FakeHub;
use support::{scratch, serve_command, spawn_serve};

fn http(addr: &str, method: &str, path: &str, headers: &str, body: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}X-Daehwa-CSRF: 1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    // Chunked bodies: the JSON is the part between the chunk-size lines.
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body.split("\r\n").enumerate().filter(|(i, _)| i % 2 == 1).map(|(_, c)| c).collect::<String>()
    } else {
        body.to_string()
    };
    (status, head.to_string(), body)
}

fn cookie(head: &str) -> String {
    head.lines()
        .find_map(|l| l.strip_prefix("set-cookie: ").or_else(|| l.strip_prefix("Set-Cookie: ")))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string()
}

#[test]
fn an_admin_pulls_from_the_hub_and_sees_progress_others_get_403_and_the_picker_sees_file_details() {
    let dir = scratch("serve-pull");
    let hub = FakeHub::start(&dir);
    let models = dir.join("models");
    std::fs::create_dir_all(&models).expect("mkdir");
    std::fs::copy(&hub.single, models.join("tiny.gguf")).expect("a served model");
    let mut cmd = serve_command(&dir.join("data"));
    cmd.args(["--models-dir"]).arg(&models).args(["-t", "1"]);
    cmd.env("HF_ENDPOINT", &hub.endpoint).env("DAEHWA_PULL_CHUNK_BYTES", "65536").env_remove("HF_TOKEN");
    let serve = spawn_serve(cmd, String::new);
    let addr = serve.addr.clone();

    let (s, head, _) = http(&addr, "POST", "/api/auth/setup", "", r#"{"username":"admin","password":"admin password 1"}"#);
    assert_eq!(s, 201);
    let admin = format!("Cookie: {}\r\n", cookie(&head));
    let (s, _, _) = http(&addr, "POST", "/api/users", &admin, r#"{"username":"bob","password":"bob's password","is_admin":false}"#);
    assert_eq!(s, 201);
    let (s, head, _) = http(&addr, "POST", "/api/auth/login", "", r#"{"username":"bob","password":"bob's password"}"#);
    assert_eq!(s, 200);
    let bob = format!("Cookie: {}\r\n", cookie(&head));

    // Not an admin: 403 both ways.
    assert_eq!(http(&addr, "GET", "/api/admin/pulls", &bob, "").0, 403);
    assert_eq!(http(&addr, "POST", "/api/admin/pulls", &bob, r#"{"model":"hf:tiny/llama-GGUF:Q8_0"}"#).0, 403);
    // A bad spec: 400 naming the field.
    let (s, _, body) = http(&addr, "POST", "/api/admin/pulls", &admin, r#"{"model":"tiny/llama"}"#);
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("hf:ORG/REPO"), "{body}");

    // The picker: the served model with its file's size and quantization.
    let (s, _, body) = http(&addr, "GET", "/api/models", &bob, "");
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let m = &v["models"][0];
    let size = std::fs::metadata(&hub.single).expect("stat").len();
    assert_eq!((m["id"].as_str(), m["size_bytes"].as_u64(), m["quant"].as_str()), (Some("tiny"), Some(size), Some("F32")), "{v}");

    // The admin pulls the split model and polls until it is done (bounded: 60 s).
    let (s, _, body) = http(&addr, "POST", "/api/admin/pulls", &admin, r#"{"model":"hf:tiny/llama-GGUF:F16"}"#);
    assert_eq!(s, 202, "{body}");
    let started = Instant::now();
    let done = loop {
        let (s, _, body) = http(&addr, "GET", "/api/admin/pulls", &admin, "");
        assert_eq!(s, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        let p = v["pulls"][0].clone();
        assert_eq!(p["model"], "hf:tiny/llama-GGUF:F16");
        if p["state"] != "running" {
            break v;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the pull did not end: {v}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let p = &done["pulls"][0];
    assert_eq!((p["state"].as_str(), p["name"].as_str(), p["source"].as_str()), (Some("done"), Some("tiny-llama-F16"), Some("hf:tiny/llama-GGUF:F16")), "{done}");
    assert!(p["done_bytes"].as_u64().is_some_and(|d| d > 0 && Some(d) == p["total_bytes"].as_u64()), "{p}");
    let names: Vec<&str> = done["models"].as_array().expect("models").iter().filter_map(|m| m["name"].as_str()).collect();
    assert_eq!(names, ["tiny", "tiny-llama-F16"], "the split model is listed once: {done}");
    assert!(models.join("tiny-llama-F16-00003-of-00003.gguf").is_file());
    // Served at once, without a restart: in the picker, and it answers on /v1.
    let (s, _, body) = http(&addr, "GET", "/api/models", &bob, "");
    assert_eq!(s, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let ids: Vec<&str> = v["models"].as_array().expect("models").iter().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(ids, ["tiny", "tiny-llama-F16"], "{v}");
    let (s, _, body) = http(&addr, "POST", "/api/keys", &admin, r#"{"name":"pull test"}"#);
    assert_eq!(s, 201, "{body}");
    let key = serde_json::from_str::<serde_json::Value>(&body).expect("json")["key"].as_str().expect("key").to_string();
    let bearer = format!("Authorization: Bearer {key}\r\n");
    let (s, _, body) = http(&addr, "POST", "/v1/completions", &bearer, r#"{"model":"tiny-llama-F16","prompt":"hello","max_tokens":4,"temperature":0}"#);
    assert_eq!(s, 200, "the pulled model answers: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!((v["model"].as_str(), v["usage"]["completion_tokens"].as_u64().is_some_and(|n| n >= 1)), (Some("tiny-llama-F16"), true), "{v}");

    // A failing pull is reported with the hub's reason.
    let (s, _, _) = http(&addr, "POST", "/api/admin/pulls", &admin, r#"{"model":"hf:tiny/llama-GGUF:Q2_K"}"#);
    assert_eq!(s, 202);
    let started = Instant::now();
    loop {
        let (_, _, body) = http(&addr, "GET", "/api/admin/pulls", &admin, "");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        if v["pulls"][0]["state"] == "failed" {
            assert!(v["pulls"][0]["error"].as_str().is_some_and(|e| e.contains("available: F16, Q4_K_M, Q8_0")), "{v}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(serve);
}

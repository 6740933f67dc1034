//! Answer fingerprints (issue 17, item 2) over loopback with the real SmolLM2 model: an answer
//! the web UI stores keeps a keyed fingerprint, so an admin's `POST /api/provenance/match`
//! finds an exact copy (`exact`), a copy with one word in ten replaced (similarity below 1) and
//! not an unrelated text; a non-admin gets 403, an empty text 400 and an oversized one 413;
//! answers made with marks on say `marked` in the conversation JSON; answers that lost their
//! fingerprint get it back from the start-up backfill.

mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::Serve;

const PASSWORD: &str = "correct horse battery";

fn start(dir: &Path, key: &Path) -> Serve {
    let mut cmd = support::serve_command(dir);
    cmd.args(["--ctx", "1024", "--max-seqs", "2", "--threads", "2", "--watermark-key-file"]).arg(key);
    cmd.arg("-m").arg(support::smollm2()).stderr(Stdio::inherit());
    support::spawn_serve(cmd, String::new)
}

/// A body sent with `Transfer-Encoding: chunked`, joined.
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { return body.to_string() };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// One request with the web UI's CSRF header and a session cookie: status, lower-cased head,
/// body (de-chunked).
fn call(addr: &str, method: &str, path: &str, cookie: Option<&str>, body: &str) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(300))).expect("timeout");
    let cookie = cookie.map(|c| format!("Cookie: {c}\r\n")).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nX-Daehwa-CSRF: 1\r\n{cookie}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .expect("write head");
    // A large body may be refused before it is all sent.
    let _ = s.write_all(body.as_bytes());
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let out = String::from_utf8_lossy(&raw).to_string();
    let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let head = head.to_ascii_lowercase();
    let body = if head.contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_string() };
    (status, head, body)
}

fn json_call(addr: &str, method: &str, path: &str, cookie: Option<&str>, body: &Value) -> (u16, Value) {
    let (status, _, body) = call(addr, method, path, cookie, &body.to_string());
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn session(addr: &str, path: &str, username: &str, expect: u16) -> String {
    let (status, head, body) = call(addr, "POST", path, None, &json!({"username": username, "password": PASSWORD}).to_string());
    assert_eq!(status, expect, "{body}");
    let line = head.lines().find(|l| l.starts_with("set-cookie:")).expect("session cookie");
    line.split_once(':').map_or("", |(_, v)| v).split(';').next().unwrap_or("").trim().to_string()
}

/// Asks a question in a new conversation of the cookie's user; returns (conversation id, the
/// stored answer of the `done` event).
fn ask(addr: &str, cookie: &str, question: &str) -> (String, Value) {
    let (status, conv) = json_call(addr, "POST", "/api/conversations", Some(cookie), &json!({"settings": {"max_tokens": 160}}));
    assert_eq!(status, 201, "{conv}");
    let id = conv["id"].as_str().expect("conversation id").to_string();
    let (status, _, sse) = call(addr, "POST", &format!("/api/conversations/{id}/messages"), Some(cookie), &json!({"content": question}).to_string());
    assert_eq!(status, 200, "{sse}");
    let mut event = "";
    for line in sse.lines() {
        if let Some(e) = line.strip_prefix("event: ") {
            event = e;
        } else if let Some(data) = line.strip_prefix("data: ") {
            assert_ne!(event, "error", "{data}");
            if event == "done" {
                let v: Value = serde_json::from_str(data).expect("done json");
                return (id, v["message"].clone());
            }
        }
    }
    panic!("no done event: {sse}");
}

fn matches(addr: &str, admin: &str, text: &str) -> Vec<Value> {
    let (status, v) = json_call(addr, "POST", "/api/provenance/match", Some(admin), &json!({"text": text}));
    assert_eq!(status, 200, "{v}");
    v["matches"].as_array().expect("matches").clone()
}

/// Every tenth word (from the sixth) replaced.
fn edited(text: &str) -> String {
    text.split_whitespace().enumerate().map(|(i, w)| if i % 10 == 5 { format!("zq{i}x") } else { w.to_string() }).collect::<Vec<_>>().join(" ")
}

fn human_text() -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/provenance/en_gpl3_preamble.txt");
    std::fs::read_to_string(p).expect("testdata")
}

#[test]
fn an_admin_matches_exact_and_edited_copies_of_a_stored_answer() {
    let dir = support::scratch("answer-match");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let key = dir.join("wm.key");
    std::fs::write(&key, "answer-match-test-key-0123456789\n").expect("key");
    let srv = start(&dir, &key);
    let addr = srv.addr.as_str();
    let admin = session(addr, "/api/auth/setup", "root", 201);
    let (status, v) = json_call(addr, "POST", "/api/users", Some(&admin), &json!({"username": "bob", "password": PASSWORD, "is_admin": false}));
    assert_eq!(status, 201, "{v}");
    let bob = session(addr, "/api/auth/login", "bob", 200);

    // Bob's answer, generated with marks on: `marked` in the done event and in the conversation.
    let (conv, answer) = ask(addr, &bob, "Write a long paragraph about the history of tea in China and England.");
    assert_eq!(answer["marked"], json!(true), "{answer}");
    let text = answer["content"].as_str().expect("content").to_string();
    let words = text.split_whitespace().count();
    assert!(words >= 40, "the answer is too short to edit one word in ten ({words} words): {text:?}");
    let (status, c) = json_call(addr, "GET", &format!("/api/conversations/{conv}"), Some(&bob), &Value::Null);
    assert_eq!(status, 200, "{c}");
    let stored = c["messages"].as_array().expect("messages").iter().find(|m| m["id"] == answer["id"]).expect("the answer").clone();
    assert_eq!(stored["marked"], json!(true), "{stored}");
    assert!(c["messages"].as_array().expect("messages").iter().filter(|m| m["role"] == "user").all(|m| m["marked"] == json!(false)));

    // The exact copy, with other spacing and case: exact, similarity 1, bob's conversation.
    let m = matches(addr, &admin, &format!("  {}\n", text.to_uppercase()));
    assert!(!m.is_empty(), "no match for the exact copy");
    assert_eq!((&m[0]["message_id"], &m[0]["conversation_id"], &m[0]["owner"]), (&answer["id"], &json!(conv), &json!("bob")), "{m:?}");
    assert_eq!((&m[0]["exact"], m[0]["similarity"].as_f64()), (&json!(true), Some(1.0)), "{m:?}");

    // One word in ten replaced: still found, not exact, similarity below 1.
    let copy = edited(&text);
    let m = matches(addr, &admin, &copy);
    let hit = m.iter().find(|x| x["message_id"] == answer["id"]).unwrap_or_else(|| panic!("the edited copy was not matched: {m:?}"));
    let sim = hit["similarity"].as_f64().expect("similarity");
    assert_eq!(hit["exact"], json!(false));
    assert!((0.3..1.0).contains(&sim), "similarity {sim}");
    eprintln!("10% substituted copy: similarity {sim:.3} ({words} words)");

    // Unrelated (human) text: no match.
    assert!(matches(addr, &admin, &human_text()).iter().all(|x| x["message_id"] != answer["id"]), "an unrelated text matched");

    // Admins only; a clear 400 and 413 for bad texts.
    let (status, v) = json_call(addr, "POST", "/api/provenance/match", Some(&bob), &json!({"text": text}));
    assert_eq!(status, 403, "{v}");
    let (status, v) = json_call(addr, "POST", "/api/provenance/match", None, &json!({"text": text}));
    assert_eq!(status, 401, "{v}");
    let (status, v) = json_call(addr, "POST", "/api/provenance/match", Some(&admin), &json!({"text": "  \n"}));
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["param"], json!("text"), "{v}");
    let (status, v) = json_call(addr, "POST", "/api/provenance/match", Some(&admin), &json!({"text": "tea ".repeat(80_000)}));
    assert_eq!(status, 413, "{v}");
    let (status, v) = json_call(addr, "POST", "/api/provenance/match", Some(&admin), &json!({"text": "tea ".repeat(300_000)}));
    assert_eq!(status, 413, "{v}");
    let (status, v) = json_call(addr, "POST", "/api/provenance/match", Some(&admin), &json!({"text": text, "min_similarity": 2}));
    assert_eq!(status, 400, "{v}");
    drop(srv);

    // Fingerprints lost (as for answers stored before there were any): the next start puts
    // them back in the background.
    let db = dir.join("daehwa.sqlite3");
    let py = "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\nc.execute('DELETE FROM answer_shingles')\nc.execute('DELETE FROM answer_fingerprints')\nc.commit()";
    let o = Command::new(support::python()).args(["-c", py]).arg(&db).output().expect("python");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let srv = start(&dir, &key);
    let admin = session(&srv.addr, "/api/auth/login", "root", 200);
    let t = Instant::now();
    loop {
        let m = matches(&srv.addr, &admin, &text);
        if m.first().is_some_and(|x| x["message_id"] == answer["id"] && x["exact"] == json!(true)) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "the backfill did not restore the fingerprint: {m:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

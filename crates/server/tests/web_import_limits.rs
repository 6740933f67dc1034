//! The ChatGPT import under hostile and heavy use, over real HTTP on a real SQLite file: a
//! 200 000-node chain from two users at once while `/health` keeps answering, bodies over the
//! limit (413, also while streaming), too many nodes (400), a second import of the same user
//! while one runs (409), and the memory an export of dropped nodes costs.
//!
//! The server runs on a 2-worker multi-thread runtime, as `daehwa serve` does.

mod common;
mod webkit;

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use webkit::{add_user, with_admin_opts, Client, Options};

/// A chain of `n` nodes (every other one dropped: no message), as `conversations.json`.
fn chain(n: usize) -> Vec<u8> {
    let mut s = String::from(r#"[{"title":"chain","current_node":"n"#);
    s.push_str(&format!("{}\",\"mapping\":{{", n - 1));
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        let parent = if i == 0 { "null".to_string() } else { format!("\"n{}\"", i - 1) };
        if i % 2 == 0 {
            s.push_str(&format!(r#""n{i}":{{"id":"n{i}","parent":{parent},"children":["n{}"],"message":null}}"#, i + 1));
        } else {
            let role = if i % 4 == 1 { "user" } else { "assistant" };
            s.push_str(&format!(
                r#""n{i}":{{"id":"n{i}","parent":{parent},"children":[],"message":{{"author":{{"role":"{role}"}},"create_time":{},"content":{{"parts":["m{i}"]}}}}}}"#,
                1_700_000_000 + i
            ));
        }
    }
    s.push_str("}}]");
    s.into_bytes()
}

/// Sends a POST with `body` (from the caller's buffer, no copy) and reads the whole answer:
/// (status, body).
async fn post_raw(c: &Client, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(c.addr).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nCookie: {}\r\nX-Daehwa-CSRF: 1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        c.addr,
        c.cookie.as_deref().unwrap_or(""),
        body.len()
    );
    s.write_all(head.as_bytes()).await.expect("head");
    // The server may answer (413) and close before taking the whole body.
    let _ = s.write_all(body).await;
    read_answer(&mut s).await
}

async fn read_answer(s: &mut TcpStream) -> (u16, String) {
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(120), s.read_to_end(&mut raw)).await.expect("an answer within 120 s");
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status line: {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// Two users each import a 200 000-node chain (100 000 messages) at once. Before, parsing and
/// mapping ran on the async workers in quadratic time and `/health` went unanswered for 38 s;
/// now `/health` answers within 200 ms throughout and both imports finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_200k_node_chains_import_while_health_answers() {
    let (srv, admin) = with_admin_opts("import-chain", Options::default()).await;
    let (_, bob) = add_user(&srv, &admin, "bob", "bob's password").await;
    let file = std::sync::Arc::new(chain(200_000));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = {
        let (c, stop) = (Client::new(srv.addr), stop.clone());
        tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let t = Instant::now();
                let r = tokio::time::timeout(Duration::from_secs(60), c.get("/health")).await.expect("/health within 60 s");
                assert_eq!(r.status, 200);
                worst = worst.max(t.elapsed());
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (worst, n)
        })
    };
    let t = Instant::now();
    let imports: Vec<_> = [admin.clone(), bob.clone()]
        .into_iter()
        .map(|c| {
            let file = file.clone();
            tokio::spawn(async move { post_raw(&c, "/api/import", &file).await })
        })
        .collect();
    let mut ids = Vec::new();
    for i in imports {
        let (status, body) = i.await.expect("import task");
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(v["imported"], 1, "{v}");
        ids.push(v["conversations"][0].as_str().expect("id").to_string());
    }
    let took = t.elapsed();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (worst, probes) = probe.await.expect("probe");
    eprintln!("two 200k-node imports: {took:?}; /health: {probes} probes, worst {worst:?}");
    assert!(took < Duration::from_secs(90), "the imports took {took:?}");
    assert!(probes >= 5, "{probes} probes");
    assert!(worst < Duration::from_millis(200), "/health took {worst:?} during the imports");

    // Everything arrived: one chain of 100 000 messages each, the current leaf its end.
    for (c, id) in [(&admin, &ids[0]), (&bob, &ids[1])] {
        let me = c.get("/api/auth/state").await.json()["user"]["id"].as_str().expect("id").parse().expect("number");
        let conv: i64 = id.parse().expect("number");
        let all = srv.store.messages(server::store::UserId(me), server::store::ConversationId(conv)).await.expect("messages");
        assert_eq!(all.len(), 100_000);
        assert!(all.windows(2).all(|w| w[1].parent_id == Some(w[0].id)), "one chain");
        let got = srv.store.conversation(server::store::UserId(me), server::store::ConversationId(conv)).await.expect("conv");
        assert_eq!(got.current_message_id, all.last().map(|m| m.id));
        assert_eq!(all[0].created_at, 1_700_000_001_000);
    }
    // A chain that deep can be deleted again.
    assert_eq!(admin.delete(&format!("/api/conversations/{}", ids[0])).await.status, 204);
}

/// 413 for a body over `--import-limit`: at once for a larger `Content-Length`, and while
/// streaming for a chunked body, which is cut off near the limit rather than read to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_are_413() {
    assert_eq!(server::web::Accounts::new(webkit::start("default-limit").await.store.clone()).import_body_limit, 64 << 20);
    let o = Options { accounts: |a| a.import_body_limit = 1 << 20, ..Default::default() };
    let (srv, admin) = with_admin_opts("import-413", o).await;
    let cookie = admin.cookie.clone().expect("cookie");
    let head = |extra: &str| {
        format!(
            "POST /api/import HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\nX-Daehwa-CSRF: 1\r\nContent-Type: application/json\r\n{extra}\r\n",
            srv.addr
        )
    };

    // A declared size over the limit: refused before any of the body is sent.
    let mut s = TcpStream::connect(srv.addr).await.expect("connect");
    s.write_all(head("Content-Length: 2097152\r\nConnection: close\r\n").as_bytes()).await.expect("head");
    let (status, body) = read_answer(&mut s).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("import limit of 1 MiB") && body.contains("--import-limit"), "{body}");

    // A chunked body with no declared size: cut off once past the limit. The writer offers
    // 64 MiB; the server stops reading soon after 1 MiB.
    let s = TcpStream::connect(srv.addr).await.expect("connect");
    let (mut rd, mut wr) = s.into_split();
    wr.write_all(head("Transfer-Encoding: chunked\r\n").as_bytes()).await.expect("head");
    let writer = tokio::spawn(async move {
        let chunk = format!("{:x}\r\n{}\r\n", 64 << 10, "[".repeat(64 << 10));
        let mut sent = 0usize;
        for _ in 0..1024 {
            if wr.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
            sent += 64 << 10;
        }
        sent
    });
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let answer = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let n = rd.read(&mut buf).await.expect("read");
            raw.extend_from_slice(&buf[..n]);
            if n == 0 || raw.windows(4).any(|w| w == b"\r\n\r\n") {
                break String::from_utf8_lossy(&raw).to_string();
            }
        }
    })
    .await
    .expect("413 within 30 s");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    drop(rd);
    let sent = writer.await.expect("writer");
    assert!(sent < 32 << 20, "the server read {sent} bytes of a body over its 1 MiB limit");
    assert_eq!(admin.get("/api/conversations").await.json()["conversations"], json!([]));
}

/// More nodes than the import takes: a clear 400, nothing imported.
#[tokio::test]
async fn too_many_nodes_is_400() {
    let o = Options { accounts: |a| a.import_node_limit = 1000, ..Default::default() };
    let (_srv, admin) = with_admin_opts("import-nodes", o).await;
    let (status, body) = post_raw(&admin, "/api/import", &chain(1500)).await;
    assert_eq!(status, 400, "{body}");
    let e: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(e["error"]["param"], "body");
    assert!(e["error"]["message"].as_str().expect("message").contains("more than 1000 message nodes"), "{e}");
    assert_eq!(admin.get("/api/conversations").await.json()["conversations"], json!([]));
    // Within the limit the same kind of file imports.
    let (status, body) = post_raw(&admin, "/api/import", &chain(900)).await;
    assert_eq!(status, 200, "{body}");
}

/// While one import of a user runs (its body still arriving), a second of the same user is
/// refused with 409; another user's import goes ahead; the first then completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_import_of_the_same_user_is_refused() {
    let (srv, admin) = with_admin_opts("import-once", Options::default()).await;
    let (_, bob) = add_user(&srv, &admin, "bob", "bob's password").await;
    let file = chain(1000);
    let mut first = TcpStream::connect(srv.addr).await.expect("connect");
    let head = format!(
        "POST /api/import HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nCookie: {}\r\nX-Daehwa-CSRF: 1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        srv.addr,
        admin.cookie.as_deref().expect("cookie"),
        file.len()
    );
    first.write_all(head.as_bytes()).await.expect("head");
    first.write_all(&file[..100]).await.expect("part of the body");
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (status, body) = post_raw(&admin, "/api/import", &file).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("already running"), "{body}");
    let (status, body) = post_raw(&bob, "/api/import", &file).await;
    assert_eq!(status, 200, "another user's import is not held up: {body}");

    first.write_all(&file[100..]).await.expect("the rest");
    let (status, body) = read_answer(&mut first).await;
    assert_eq!(status, 200, "{body}");
    // Done: the next import of the same user is welcome.
    let (status, body) = post_raw(&admin, "/api/import", &file).await;
    assert_eq!(status, 200, "{body}");
}

fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}

/// An export of 80 000 dropped nodes (system messages with metadata, about 45 MB): the peak
/// memory of the import stays within twice the file (the body itself, and the ids and parents
/// of the nodes). Reading it into a `serde_json::Value` took tens of times the file.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_follows_what_is_kept() {
    let (_srv, admin) = with_admin_opts("import-rss", Options::default()).await;
    let n = 80_000usize;
    let mut s = String::from(r#"[{"title":"dropped","mapping":{"#);
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        let parent = if i == 0 { "null".to_string() } else { format!("\"{:036}\"", i - 1) };
        s.push_str(&format!(
            r#""{i:036}":{{"id":"{i:036}","parent":{parent},"children":["{:036}"],"message":{{"id":"{i:036}","author":{{"role":"system","name":null,"metadata":{{}}}},"create_time":1700000000.5,"update_time":null,"content":{{"content_type":"text","parts":["{}"]}},"status":"finished_successfully","end_turn":true,"weight":1.0,"metadata":{{"is_visually_hidden_from_conversation":true,"a":1,"b":[1,2,3],"c":{{"d":"e"}},"e":[{{"f":1}},{{"g":2}}]}},"recipient":"all","channel":null}}}}"#,
            i + 1,
            "x".repeat(40)
        ));
    }
    s.push_str(r#"}},{"title":"kept","mapping":{"a":{"message":{"author":{"role":"user"},"content":{"parts":["hello"]}}}}}]"#);
    let file = s.into_bytes();
    let size_kib = file.len() as u64 / 1024;
    // Reset the peak (VmHWM) to the present, so it measures the import alone.
    std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak RSS");
    let before = status_kib("VmRSS:");
    let (status, body) = post_raw(&admin, "/api/import", &file).await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!((v["imported"].as_u64(), v["skipped"].as_u64()), (Some(1), Some(1)), "{v}");
    let peak = status_kib("VmHWM:");
    let growth = peak.saturating_sub(before);
    eprintln!("file {size_kib} KiB; RSS before {before} KiB, peak {peak} KiB: +{growth} KiB");
    assert!(growth < 2 * size_kib, "the import of a {size_kib} KiB file grew the peak RSS by {growth} KiB");
}

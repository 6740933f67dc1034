//! The web tests' harness: the real server (`server::serve`) on 127.0.0.1:0 over the scripted
//! backend and a real SQLite file in a fresh directory, and a small HTTP/1.1 client on a raw TCP
//! socket (cookies, the CSRF header, chunked bodies, server-sent events read as they arrive).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use server::store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{self, Fake, Shared};

pub struct TestServer {
    pub addr: SocketAddr,
    pub fake: Arc<Shared>,
    pub store: Store,
    pub dir: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A fresh directory under the target dir for one test.
pub fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("web-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

pub struct Options {
    pub n_ctx: usize,
    pub keys: Vec<&'static str>,
    /// Adjusts the account settings (limits, trusted proxies) before the server starts.
    pub accounts: fn(&mut server::web::Accounts),
}

impl Default for Options {
    fn default() -> Self {
        Options { n_ctx: 4096, keys: Vec::new(), accounts: |_| {} }
    }
}

pub async fn start(name: &str) -> TestServer {
    start_with(name, Options::default()).await
}

pub async fn start_with(name: &str, o: Options) -> TestServer {
    let dir = scratch(name);
    let store = Store::connect(&Store::default_sqlite_url(&dir)).await.expect("open the store");
    let fake = Arc::new(Fake::default());
    fake.s.n_ctx.store(o.n_ctx, Ordering::SeqCst);
    let shared = fake.s.clone();
    let mut state = common::state(fake, &o.keys);
    // Keep the `/v1` body limit of the API tests, but let conversations be longer.
    let mut cfg = (*state.config).clone();
    cfg.body_limit = 1 << 20;
    cfg.keep_alive = Duration::from_millis(500);
    state.config = Arc::new(cfg);
    let mut accounts = server::web::Accounts::new(store.clone());
    (o.accounts)(&mut accounts);
    let state = state.with_accounts(accounts);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server::serve(listener, state, async move { let _ = rx.await; }, Duration::ZERO));
    TestServer { addr, fake: shared, store, dir, stop: Some(tx) }
}

/// A parsed response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}), status {}: {}", self.status, self.body))
    }

    /// Asserts an OpenAI-shaped error with this status; returns the `error` object.
    pub fn error(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}", self.body);
        let v = self.json();
        let e = v["error"].clone();
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        assert!(e["type"].is_string() && e.get("param").is_some() && e.get("code").is_some(), "{v}");
        e
    }
}

/// A browser-like client: keeps the session cookie, sends `X-Daehwa-CSRF: 1` unless told not to.
#[derive(Clone)]
pub struct Client {
    pub addr: SocketAddr,
    pub cookie: Option<String>,
    pub csrf: bool,
    pub bearer: Option<String>,
    pub extra: Vec<(String, String)>,
    /// The loopback address to connect from (another client address: 127.0.0.2, ...).
    pub source: Option<std::net::IpAddr>,
}

fn find(h: &[u8], needle: &[u8]) -> Option<usize> {
    h.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(head: &str) -> (u16, Vec<(String, String)>) {
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers)
}

/// Decodes as much of a chunked body as is complete; returns (decoded, bytes consumed, ended).
fn dechunk(raw: &[u8]) -> (Vec<u8>, usize, bool) {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let Some(eol) = find(&raw[at..], b"\r\n") else { return (out, at, false) };
        let size_txt = String::from_utf8_lossy(&raw[at..at + eol]).to_string();
        let size = usize::from_str_radix(size_txt.split(';').next().unwrap_or("").trim(), 16).expect("chunk size");
        let start = at + eol + 2;
        if size == 0 {
            return (out, raw.len(), true);
        }
        if raw.len() < start + size + 2 {
            return (out, at, false);
        }
        out.extend_from_slice(&raw[start..start + size]);
        at = start + size + 2;
    }
}

impl Client {
    pub fn new(addr: SocketAddr) -> Self {
        Client { addr, cookie: None, csrf: true, bearer: None, extra: Vec::new(), source: None }
    }

    /// A connection to the server, from `source` when set.
    pub async fn connect(&self) -> TcpStream {
        match self.source {
            None => TcpStream::connect(self.addr).await.expect("connect"),
            Some(ip) => {
                let sock = tokio::net::TcpSocket::new_v4().expect("socket");
                sock.bind(std::net::SocketAddr::new(ip, 0)).expect("bind the source address");
                sock.connect(self.addr).await.expect("connect")
            }
        }
    }

    fn request_text(&self, method: &str, path: &str, body: Option<&str>) -> String {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", self.addr);
        if let Some(c) = &self.cookie {
            req.push_str(&format!("Cookie: {c}\r\n"));
        }
        if self.csrf && method != "GET" && method != "HEAD" {
            req.push_str("X-Daehwa-CSRF: 1\r\n");
        }
        if let Some(b) = &self.bearer {
            req.push_str(&format!("Authorization: Bearer {b}\r\n"));
        }
        for (k, v) in &self.extra {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        let body = body.unwrap_or("");
        if !body.is_empty() || method != "GET" {
            req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        req.push_str(body);
        req
    }

    pub async fn send(&self, method: &str, path: &str, body: Option<&str>) -> Resp {
        let mut s = self.connect().await;
        s.write_all(self.request_text(method, path, body).as_bytes()).await.expect("write");
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut raw)).await.expect("response within 30 s").expect("read");
        let split = find(&raw, b"\r\n\r\n").expect("end of headers");
        let (status, headers) = parse_head(&String::from_utf8_lossy(&raw[..split]));
        let rest = &raw[split + 4..];
        let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        let body = if chunked { dechunk(rest).0 } else { rest.to_vec() };
        Resp { status, headers, body: String::from_utf8(body).expect("UTF-8 body") }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send("GET", path, None).await
    }
    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.send("POST", path, Some(&body.to_string())).await
    }
    pub async fn patch(&self, path: &str, body: &Value) -> Resp {
        self.send("PATCH", path, Some(&body.to_string())).await
    }
    pub async fn delete(&self, path: &str) -> Resp {
        self.send("DELETE", path, None).await
    }

    /// Takes the session cookie from a response's `Set-Cookie`.
    pub fn keep_cookie(&mut self, r: &Resp) {
        let sc = r.header("set-cookie").expect("a Set-Cookie header");
        self.cookie = Some(sc.split(';').next().expect("pair").to_string());
    }

    /// Signs in (200 expected) and keeps the cookie.
    pub async fn login(&mut self, user: &str, password: &str) {
        let r = self.post("/api/auth/login", &serde_json::json!({"username": user, "password": password})).await;
        assert_eq!(r.status, 200, "{}", r.body);
        self.keep_cookie(&r);
    }

    /// Opens a request whose answer is read as server-sent events.
    pub async fn stream(&self, path: &str, body: &Value) -> Events {
        let mut s = self.connect().await;
        s.write_all(self.request_text("POST", path, Some(&body.to_string())).as_bytes()).await.expect("write");
        let mut raw = Vec::new();
        let split = loop {
            if let Some(i) = find(&raw, b"\r\n\r\n") {
                break i;
            }
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).await.expect("read");
            assert!(n > 0, "connection closed before the headers");
            raw.extend_from_slice(&buf[..n]);
        };
        let (status, headers) = parse_head(&String::from_utf8_lossy(&raw[..split]));
        let pending = raw[split + 4..].to_vec();
        Events { stream: Some(s), status, headers, raw: pending, text: String::new(), ended: false }
    }
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct Ev {
    pub name: String,
    pub data: Value,
}

pub struct Events {
    stream: Option<TcpStream>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    raw: Vec<u8>,
    text: String,
    ended: bool,
}

impl Events {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The next event (comments skipped); `None` at the end of the stream.
    pub async fn next(&mut self) -> Option<Ev> {
        loop {
            if let Some(i) = self.text.find("\n\n") {
                let block: String = self.text.drain(..i + 2).collect();
                let mut name = "message".to_string();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = n.to_string();
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data.push_str(d);
                    }
                }
                if data.is_empty() {
                    continue;
                }
                let data = serde_json::from_str(&data).unwrap_or_else(|e| panic!("event data is not JSON ({e}): {data}"));
                return Some(Ev { name, data });
            }
            if self.ended {
                return None;
            }
            let (decoded, used, ended) = dechunk(&self.raw);
            self.raw.drain(..used);
            self.text.push_str(std::str::from_utf8(&decoded).expect("whole UTF-8 per chunk"));
            if ended {
                self.ended = true;
                continue;
            }
            if !decoded.is_empty() {
                continue;
            }
            let s = self.stream.as_mut()?;
            let mut buf = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await.expect("an event within 30 s").expect("read");
            if n == 0 {
                self.ended = true;
                continue;
            }
            self.raw.extend_from_slice(&buf[..n]);
        }
    }

    /// Every remaining event.
    pub async fn collect(mut self) -> Vec<Ev> {
        let mut out = Vec::new();
        while let Some(e) = self.next().await {
            out.push(e);
        }
        out
    }

    /// Closes the connection (what a browser does when the fetch is aborted).
    pub fn disconnect(mut self) {
        self.stream.take();
    }

    pub fn body_status(&self) -> u16 {
        self.status
    }
}

/// The text of every `delta` in `events`.
pub fn deltas(events: &[Ev]) -> String {
    events.iter().filter(|e| e.name == "delta").map(|e| e.data["content"].as_str().expect("content")).collect()
}

/// Polls `f` every 50 ms until it returns `Some`, for at most `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub const ADMIN: &str = "admin";
pub const ADMIN_PASSWORD: &str = "correct horse battery";

/// A server with its admin set up, and the admin's signed-in client.
pub async fn with_admin(name: &str) -> (TestServer, Client) {
    with_admin_opts(name, Options::default()).await
}

pub async fn with_admin_opts(name: &str, o: Options) -> (TestServer, Client) {
    let srv = start_with(name, o).await;
    let mut c = Client::new(srv.addr);
    let r = c.post("/api/auth/setup", &serde_json::json!({"username": ADMIN, "password": ADMIN_PASSWORD})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    c.keep_cookie(&r);
    (srv, c)
}

/// Adds a user through the admin's client and returns that user's signed-in client.
pub async fn add_user(srv: &TestServer, admin: &Client, name: &str, password: &str) -> (String, Client) {
    let r = admin.post("/api/users", &serde_json::json!({"username": name, "password": password, "is_admin": false})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["id"].as_str().expect("id").to_string();
    let mut c = Client::new(srv.addr);
    c.login(name, password).await;
    (id, c)
}

/// Creates a conversation and returns its id.
pub async fn new_conversation(c: &Client, body: Value) -> String {
    let r = c.post("/api/conversations", &body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()["id"].as_str().expect("id").to_string()
}

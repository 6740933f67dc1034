//! `daehwa user`: accounts made on the command line sign in to the web UI of `daehwa serve`
//! (the real binary, a tiny model, a fresh data directory), and bad input is one error line
//! with exit code 2.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::{scratch, stderr, stdout, write_tiny, Tiny};

/// `daehwa user ARGS` with `store_args` choosing the store and `stdin` as its input.
fn user_on(store_args: &[&std::ffi::OsStr], args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_daehwa"))
        .arg("user")
        .args(args)
        .args(store_args)
        .env_remove("DAEHWA_DATABASE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run daehwa user");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn user(data: &Path, args: &[&str], stdin: &str) -> Output {
    user_on(&["--data-dir".as_ref(), data.as_os_str()], args, stdin)
}

fn assert_one_error(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains(needle), "`{needle}` not in {}", lines[0]);
}

fn http(addr: &str, method: &str, path: &str, headers: &str, body: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
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

struct Serve(std::process::Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `daehwa serve` on a free port with `store_args` choosing the store; returns the
/// process guard and `host:port`.
fn serve(model: &Path, store_args: &[&std::ffi::OsStr]) -> (Serve, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_daehwa"))
        .args(["serve", "--host", "127.0.0.1", "--port", "0", "-t", "1", "-m"])
        .arg(model)
        .args(store_args)
        .env_remove("DAEHWA_CONFIG")
        .env_remove("DAEHWA_DATABASE")
        .env_remove("DAEHWA_API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start daehwa serve");
    let out = child.stdout.take().expect("stdout");
    let server = Serve(child);
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line).expect("the URL line");
    let addr = line.trim().trim_start_matches("http://").trim_end_matches("/v1").to_string();
    assert!(addr.starts_with("127.0.0.1:"), "{line:?}");
    (server, addr)
}

/// Signs `name` in and returns the `daehwa_session=...` cookie pair.
fn sign_in(addr: &str, name: &str, password: &str) -> String {
    let body = format!(r#"{{"username":"{name}","password":"{password}"}}"#);
    let ok = http(addr, "POST", "/api/auth/login", "X-Daehwa-CSRF: 1\r\n", &body);
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    ok.lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string()
}

#[test]
fn user_add_then_sign_in_to_the_web_ui() {
    let d = scratch("cli-user");
    let data = d.join("data");

    let o = user(&data, &["add", "alice", "--admin", "--password-stdin"], "alice's password\n");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "added alice (admin)");
    assert!(data.join("daehwa.sqlite3").is_file(), "the default store lives in the data directory");

    assert_one_error(&user(&data, &["add", "bob", "--password-stdin"], "short\n"), "at least 8 characters");
    assert_one_error(&user(&data, &["add", "ALICE", "--password-stdin"], "another password\n"), "taken");
    assert_one_error(&user(&data, &["add", "a/b", "--password-stdin"], "another password\n"), "username");
    // Not a terminal and no flag: the password is read from stdin all the same.
    assert!(user(&data, &["add", "bob"], "bob's password\n").status.success());
    let list = stdout(&user(&data, &["list"], ""));
    assert!(list.contains("alice") && list.contains("yes") && list.contains("bob"), "{list}");
    assert_one_error(&user(&data, &["rm", "alice"], ""), "only admin");
    assert_one_error(&user(&data, &["rm", "carol"], ""), "no account named `carol`");
    assert!(user(&data, &["rm", "bob"], "").status.success());
    assert!(!stdout(&user(&data, &["list"], "")).contains("bob"));

    // The server on the same data directory: alice signs in; /v1 needs a key now.
    let model = d.join("tiny.gguf");
    write_tiny(&model, &Tiny::default());
    let (server, addr) = serve(&model, &["--data-dir".as_ref(), data.as_os_str()]);

    let wrong = http(&addr, "POST", "/api/auth/login", "X-Daehwa-CSRF: 1\r\n", r#"{"username":"alice","password":"nope nope"}"#);
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    let cookie = sign_in(&addr, "alice", "alice's password");
    let state = http(&addr, "GET", "/api/auth/state", &format!("Cookie: {cookie}\r\n"), "");
    assert!(state.contains(r#""username":"alice""#) && state.contains(r#""needs_setup":false"#), "{state}");
    let v1 = http(&addr, "GET", "/v1/models", "", "");
    assert!(v1.starts_with("HTTP/1.1 401"), "{v1}");
    let ui = http(&addr, "GET", "/", "", "");
    assert!(ui.starts_with("HTTP/1.1 200") && ui.contains("content-security-policy: default-src 'self'"), "{ui}");
    drop(server);
}

/// Two `daehwa serve` replicas on one PostgreSQL store (`--database postgres://...`): an account
/// made with `daehwa user add --database`, a session from one replica that works on the other,
/// and a conversation written through one and read and renamed through the other. Runs where
/// `DAEHWA_TEST_POSTGRES_URL` names a server (`.ci/run` starts one); skipped with a notice elsewhere.
#[test]
fn replicas_share_one_postgres_store() {
    let Ok(url) = std::env::var("DAEHWA_TEST_POSTGRES_URL") else {
        support::skip("the PostgreSQL replica test", "DAEHWA_TEST_POSTGRES_URL is not set (scripts/test starts a server when run as root)");
        return;
    };
    let d = scratch("cli-user-pg");
    // The test database is shared with other runs: a name of our own keeps this run apart.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_nanos();
    let name = format!("replica{}x{}", std::process::id(), nanos % 1_000_000_000);
    let store: [&std::ffi::OsStr; 2] = ["--database".as_ref(), url.as_ref()];
    let add = |args: &[&str], stdin: &str| user_on(&store, args, stdin);
    let o = add(&["add", &name, "--admin", "--password-stdin"], "replica password\n");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&add(&["list"], "")).contains(&name));

    let model = d.join("tiny.gguf");
    write_tiny(&model, &Tiny::default());
    let (a_guard, a) = serve(&model, &store);
    let (b_guard, b) = serve(&model, &store);
    let cookie = sign_in(&a, &name, "replica password");
    let h = format!("Cookie: {cookie}\r\nX-Daehwa-CSRF: 1\r\n");
    let created = http(&a, "POST", "/api/conversations", &h, r#"{"title":"서울 replica"}"#);
    assert!(created.starts_with("HTTP/1.1 200") || created.starts_with("HTTP/1.1 201"), "{created}");
    let id = created
        .split(r#""id":""#)
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the conversation id")
        .to_string();
    let read = http(&b, "GET", &format!("/api/conversations/{id}"), &format!("Cookie: {cookie}\r\n"), "");
    assert!(read.starts_with("HTTP/1.1 200") && read.contains("서울 replica"), "replica B reads A's write: {read}");
    let renamed = http(&b, "PATCH", &format!("/api/conversations/{id}"), &h, r#"{"title":"renamed on B"}"#);
    assert!(renamed.starts_with("HTTP/1.1 200"), "{renamed}");
    let list = http(&a, "GET", "/api/conversations", &format!("Cookie: {cookie}\r\n"), "");
    assert!(list.contains("renamed on B"), "replica A sees B's rename: {list}");
    // Signing out on B ends the session on A too.
    let out = http(&b, "POST", "/api/auth/logout", &h, "");
    assert!(out.starts_with("HTTP/1.1 2"), "{out}");
    let gone = http(&a, "GET", "/api/conversations", &format!("Cookie: {cookie}\r\n"), "");
    assert!(gone.starts_with("HTTP/1.1 401"), "{gone}");
    drop((a_guard, b_guard));
    // The uniquely named account stays in the test database (the store keeps at least one admin).
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o777
}

/// The data directory is 0700 and the SQLite file, its WAL and its SHM are 0600 (SQLite's own
/// default is 0644: every local user could read the conversations and the password hashes);
/// an existing store with looser modes is tightened when opened again, and the log says so.
#[cfg(unix)]
#[test]
fn data_at_rest_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let d = scratch("cli-user-private");
    let data = d.join("data");
    // A data directory someone made world-readable beforehand.
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let model = d.join("tiny.gguf");
    write_tiny(&model, &Tiny::default());
    let (server, addr) = serve(&model, &["--data-dir".as_ref(), data.as_os_str()]);
    // A write: the first account.
    let setup = http(&addr, "POST", "/api/auth/setup", "X-Daehwa-CSRF: 1\r\n", r#"{"username":"alice","password":"alice's password"}"#);
    assert!(setup.starts_with("HTTP/1.1 201"), "{setup}");
    let db = data.join("daehwa.sqlite3");
    let wal = data.join("daehwa.sqlite3-wal");
    let shm = data.join("daehwa.sqlite3-shm");
    assert_eq!(mode(&data), 0o700, "the data directory");
    for f in [&db, &wal, &shm] {
        assert!(f.is_file(), "{} exists while the server runs", f.display());
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    drop(server);

    // A store left 0644 (by an older daehwa) is tightened when opened again, with a log line.
    for f in [&db, &wal, &shm] {
        if f.exists() {
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
    }
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let o = user(&data, &["list"], "");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("alice"), "{}", stdout(&o));
    assert!(stderr(&o).contains("permissions tightened") && stderr(&o).contains("daehwa.sqlite3"), "{}", stderr(&o));
    assert_eq!(mode(&data), 0o700);
    for f in [&db, &wal, &shm] {
        if f.exists() {
            assert_eq!(mode(f), 0o600, "{}", f.display());
        }
    }
    // A fresh store made by `daehwa user add` is private from the start.
    let fresh = d.join("fresh");
    assert!(user(&fresh, &["add", "bob", "--password-stdin"], "bob's password\n").status.success());
    assert_eq!(mode(&fresh), 0o700);
    assert_eq!(mode(&fresh.join("daehwa.sqlite3")), 0o600);
}

/// `daehwa serve --import-limit`: an export over it is 413 with a message naming the flag.
#[test]
fn import_limit_flag() {
    let d = scratch("cli-user-import-limit");
    let data = d.join("data");
    let model = d.join("tiny.gguf");
    write_tiny(&model, &Tiny::default());
    let (server, addr) =
        serve(&model, &["--data-dir".as_ref(), data.as_os_str(), "--import-limit".as_ref(), "1KiB".as_ref()]);
    let setup = http(&addr, "POST", "/api/auth/setup", "X-Daehwa-CSRF: 1\r\n", r#"{"username":"alice","password":"alice's password"}"#);
    assert!(setup.starts_with("HTTP/1.1 201"), "{setup}");
    let cookie = sign_in(&addr, "alice", "alice's password");
    let h = format!("Cookie: {cookie}\r\nX-Daehwa-CSRF: 1\r\n");
    let small = r#"[{"title":"t","mapping":{"a":{"message":{"author":{"role":"user"},"content":{"parts":["hi"]}}}}}]"#;
    let ok = http(&addr, "POST", "/api/import", &h, small);
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let big = format!(r#"[{{"title":"{}","mapping":{{}}}}]"#, "x".repeat(2000));
    let refused = http(&addr, "POST", "/api/import", &h, &big);
    assert!(refused.starts_with("HTTP/1.1 413") && refused.contains("--import-limit"), "{refused}");
    drop(server);
}

/// A username sent to the sign-in with a newline and a terminal escape cannot forge a line of
/// the server's log (it is written escaped); and with `--trusted-proxy` the log names the
/// client address the proxy forwarded for.
#[test]
fn user_strings_cannot_forge_log_lines() {
    let d = scratch("cli-user-log");
    let data = d.join("data");
    let model = d.join("tiny.gguf");
    write_tiny(&model, &Tiny::default());
    let mut child = Command::new(env!("CARGO_BIN_EXE_daehwa"))
        .args(["serve", "--host", "127.0.0.1", "--port", "0", "-t", "1", "--trusted-proxy", "127.0.0.1", "-m"])
        .arg(&model)
        .arg("--data-dir")
        .arg(&data)
        .env_remove("DAEHWA_CONFIG")
        .env_remove("DAEHWA_DATABASE")
        .env_remove("DAEHWA_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start daehwa serve");
    let out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let log = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let server = Serve(child);
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line).expect("the URL line");
    let addr = line.trim().trim_start_matches("http://").trim_end_matches("/v1").to_string();

    let forged = "ghost\n2026-01-01T00:00:00.000000Z  INFO server: FORGED admin signed in\u{1b}[2K";
    let body = serde_json::json!({"username": forged, "password": "whatever"}).to_string();
    let r = http(&addr, "POST", "/api/auth/login", "X-Daehwa-CSRF: 1\r\nX-Forwarded-For: 10.9.8.7\r\n", &body);
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    drop(server);
    let log = log.join().expect("log reader");
    assert!(!log.contains('\u{1b}'), "a raw escape reached the log: {log:?}");
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("FORGED")).collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(lines[0].contains("failed sign-in") && lines[0].contains("\\n2026-01-01"), "escaped inside its own line: {}", lines[0]);
    assert!(!log.lines().any(|l| l.starts_with("2026-01-01T00:00:00.000000Z")), "{log}");
    assert!(lines[0].contains("addr=10.9.8.7"), "the forwarded client address: {}", lines[0]);
}

//! `deploy/haproxy.cfg` in front of three `daehwa serve` replicas sharing one PostgreSQL store,
//! with the real SmolLM2 model: 30 conversations of 4 turns (Responses API, stored, each turn
//! continuing the previous with `previous_response_id`) go through HAProxy with one
//! `X-Daehwa-Session` each. Every follow-up is served from a cached prefix (`cached_tokens` > 0),
//! a conversation's turns stay on one replica while it is up, one replica stopped (SIGTERM) in
//! the middle of the run fails no request, and every conversation is in the store afterwards.
//!
//! Needs `haproxy` (Debian's package; scripts/test-deps installs it as root) and
//! `DAEHWA_TEST_POSTGRES_URL`; without them the test is skipped with a notice (a failure under
//! `DAEHWA_REQUIRE_ALL=1`). Loopback only; bounded: 8-token answers, 120 requests.
//!
//! The second test runs `deploy/rolling-restart` (drain in HAProxy, wait for the replica's
//! connections to end, restart it, wait for `/health`, put it back) over three live replicas while
//! clients keep streaming through HAProxy, and checks that every stream ends complete. It needs
//! `haproxy` and `socat`, not PostgreSQL.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const KEY: &str = "replicas-test-key";
const CONVERSATIONS: usize = 30;
const TURNS: usize = 4;
/// Shared by every conversation: one tenant (one API key), so each replica caches it once.
const SYSTEM: &str = "You are a terse assistant for a load-balancing test. Answer every question with one short sentence, \
                      no lists, no code, no greetings, and never ask a question back. Numbers are written as digits.";

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 exchange (Connection: close): status, headers (lowercase names), body.
fn http(addr: &str, method: &str, path: &str, headers: &[(&str, String)], body: &str) -> (u16, Vec<(String, String)>, String) {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, head, rest) = support::http_head(addr, method, path, &headers, body);
    let headers: Vec<(String, String)> =
        head.lines().skip(1).filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())).collect();
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(&rest) } else { rest };
    (status, headers, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// A free loopback port (bound, then released for HAProxy).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// One line of the HAProxy runtime API on `sock`.
fn admin(sock: &Path, cmd: &str) -> String {
    let mut s = std::os::unix::net::UnixStream::connect(sock).expect("admin socket");
    s.write_all(format!("{cmd}\n").as_bytes()).expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// `deploy/haproxy.cfg` made runnable here: no daemon, user or syslog; our socket, port and
/// replicas; quicker health checks.
fn haproxy_config(dir: &Path, port: u16, replicas: &[String]) -> std::path::PathBuf {
    let shipped = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/haproxy.cfg")).expect("deploy/haproxy.cfg");
    let mut out = String::new();
    for line in shipped.lines() {
        let t = line.trim_start();
        if t.starts_with("user ") || t.starts_with("group ") || t == "daemon" || t.starts_with("log ") || t.starts_with("server ") {
            continue;
        }
        if t.starts_with("stats socket ") {
            out.push_str(&format!("    stats socket {} mode 600 level admin\n", dir.join("admin.sock").display()));
        } else if t.starts_with("bind ") {
            out.push_str(&format!("    bind 127.0.0.1:{port}\n"));
        } else if t.starts_with("default-server ") {
            out.push_str("    default-server check inter 300ms fall 1 rise 1\n");
            for (i, r) in replicas.iter().enumerate() {
                out.push_str(&format!("    server r{} {r}\n", i + 1));
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, out).expect("write haproxy.cfg");
    path
}

fn replica(dir: &Path, model: &Path, pg: &str) -> support::Serve {
    let mut cmd = support::serve_command(dir);
    cmd.args(["-t", "1", "-c", "1024", "--max-seqs", "4", "--drain-timeout", "30", "--api-key", KEY, "--database", pg, "-m"]).arg(model);
    support::spawn_serve(cmd, String::new)
}

#[derive(Debug, Clone)]
struct Turn {
    conversation: usize,
    turn: usize,
    replica: String,
    cached: u64,
    id: String,
}

#[test]
fn thirty_conversations_through_haproxy_survive_a_stopped_replica() {
    let Ok(pg) = std::env::var("DAEHWA_TEST_POSTGRES_URL") else {
        support::skip("the HAProxy replicas test", "DAEHWA_TEST_POSTGRES_URL is not set (scripts/test starts PostgreSQL when run as root)");
        return;
    };
    if Command::new("haproxy").arg("-v").output().is_err() {
        support::skip("the HAProxy replicas test", "haproxy is not installed (apt-get install haproxy)");
        return;
    }
    let model = support::smollm2();
    let d = support::scratch("deploy-replicas");
    let mut replicas: Vec<Option<support::Serve>> =
        (0..3).map(|i| Some(replica(&d.join(format!("r{}", i + 1)), &model, &pg))).collect();
    let addrs: Vec<String> = replicas.iter().map(|r| r.as_ref().expect("up").addr.clone()).collect();
    let port = free_port();
    let cfg = haproxy_config(&d, port, &addrs);
    let check = Command::new("haproxy").arg("-c").arg("-f").arg(&cfg).output().expect("haproxy -c");
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let _haproxy = Proc(Command::new("haproxy").arg("-db").arg("-f").arg(&cfg).stdout(Stdio::null()).spawn().expect("start haproxy"));
    let front = format!("127.0.0.1:{port}");
    let sock = d.join("admin.sock");
    let t0 = Instant::now();
    loop {
        let up = sock.exists() && admin(&sock, "show stat").lines().filter(|l| l.starts_with("daehwa,r") && l.contains(",UP,")).count() == 3;
        if up {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "the replicas did not come up in HAProxy: {}", admin(&sock, "show stat"));
        std::thread::sleep(Duration::from_millis(100));
    }

    // Each worker thread runs its conversations turn by turn; the main thread stops replica r2
    // once the run is half done.
    let done: Arc<Mutex<Vec<Turn>>> = Arc::default();
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let started = Instant::now();
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let (done, failures, front) = (done.clone(), failures.clone(), front.clone());
            std::thread::spawn(move || {
                let mine: Vec<usize> = (w..CONVERSATIONS).step_by(6).collect();
                let mut prev: BTreeMap<usize, String> = BTreeMap::new();
                for turn in 0..TURNS {
                    for &c in &mine {
                        // Instructions are not carried over to a follow-up (OpenAI's rule): sent each turn.
                        let mut body = json!({
                            "model": "smollm2", "max_output_tokens": 8, "temperature": 0, "store": true,
                            "instructions": SYSTEM,
                            "input": format!("Conversation {c}, question {turn}: what is {c} plus {turn}?"),
                        });
                        if let Some(p) = prev.get(&c) {
                            body["previous_response_id"] = json!(p);
                        }
                        let headers = [("Authorization", format!("Bearer {KEY}")), ("X-Daehwa-Session", format!("conversation-{c}"))];
                        let (status, h, text) = http(&front, "POST", "/v1/responses", &headers, &body.to_string());
                        if status != 200 {
                            failures.lock().expect("lock").push(format!("conversation {c} turn {turn}: {status} {text}"));
                            return;
                        }
                        let v: Value = serde_json::from_str(&text).expect("JSON");
                        let id = v["id"].as_str().expect("id").to_string();
                        let cached = v["usage"]["input_tokens_details"]["cached_tokens"].as_u64().expect("cached_tokens");
                        let replica = header(&h, "x-daehwa-replica").unwrap_or("?").to_string();
                        prev.insert(c, id.clone());
                        done.lock().expect("lock").push(Turn { conversation: c, turn, replica, cached, id });
                    }
                }
            })
        })
        .collect();
    while done.lock().expect("lock").len() < CONVERSATIONS * TURNS / 2 && failures.lock().expect("lock").is_empty() {
        assert!(started.elapsed() < Duration::from_secs(300), "the first half took over 5 minutes");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SIGTERM, as systemd stops a replica: running requests finish, new ones go elsewhere.
    let r2 = replicas[1].take().expect("r2");
    let stopped_at = done.lock().expect("lock").len();
    let _ = Command::new("kill").args(["-TERM", &r2.child.id().to_string()]).status();
    let mut r2 = r2;
    let exited = r2.child.wait().expect("wait r2");
    assert!(exited.success(), "r2 exits cleanly after SIGTERM: {exited}");
    for w in workers {
        w.join().expect("worker");
    }
    let failures = failures.lock().expect("lock").clone();
    assert!(failures.is_empty(), "requests failed:\n{}", failures.join("\n"));
    let turns = done.lock().expect("lock").clone();
    assert_eq!(turns.len(), CONVERSATIONS * TURNS);
    eprintln!("{} requests in {:?}; r2 stopped after {stopped_at}", turns.len(), started.elapsed());

    let mut by_conv: BTreeMap<usize, Vec<Turn>> = BTreeMap::new();
    for t in &turns {
        by_conv.entry(t.conversation).or_default().push(t.clone());
    }
    let mut per_replica: BTreeMap<String, usize> = BTreeMap::new();
    for (c, ts) in &mut by_conv {
        ts.sort_by_key(|t| t.turn);
        *per_replica.entry(ts[0].replica.clone()).or_default() += 1;
        let mut moves = 0;
        for (i, pair) in ts.windows(2).enumerate() {
            let (a, b) = (&pair[0], &pair[1]);
            assert!(b.cached > 0, "conversation {c} turn {} (on {}) was not served from a cached prefix: {ts:?}", b.turn, b.replica);
            // Affinity: only a conversation that was on the stopped replica moves, never onto it,
            // and at most twice: while r2 is stopping, HAProxy's redispatch after a refused
            // connection walks the hash ring on from r2's node, and once r2 is marked down the
            // ring's closest remaining node takes its conversations; the two need not agree.
            if a.replica != b.replica {
                moves += 1;
                let was_on_r2 = ts[..=i].iter().any(|t| t.replica == "r2");
                assert!(was_on_r2 && b.replica != "r2" && moves <= 2, "conversation {c} moved from {} to {}: {ts:?}", a.replica, b.replica);
            }
        }
    }
    assert!(per_replica.len() == 3, "the conversations spread over the three replicas: {per_replica:?}");

    // Every conversation is in the store: its last response (and through it the whole chain) is
    // readable through HAProxy from whichever replica answers.
    for (c, ts) in &by_conv {
        let last = ts.last().expect("turns");
        let (status, _, text) = http(&front, "GET", &format!("/v1/responses/{}", last.id), &[("Authorization", format!("Bearer {KEY}"))], "");
        assert_eq!(status, 200, "conversation {c}: {text}");
    }
    drop(replicas);
}

/// A child leading its own process group, which is killed (the whole group) when dropped.
struct Group(Child);
impl Drop for Group {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.0.id())]).status();
        let _ = self.0.wait();
    }
}

/// A streamed chat completion through HAProxy, as a client saw it.
#[derive(Debug, Clone)]
struct Stream {
    replica: String,
    start: Instant,
    end: Instant,
}

const STREAM_TOKENS: u64 = 48;

/// One streamed chat completion; `Err` says how it was lost or cut.
fn stream_once(front: &str, session: &str) -> Result<Stream, String> {
    let body = json!({
        "model": "smollm2", "max_tokens": STREAM_TOKENS, "ignore_eos": true, "temperature": 0, "stream": true,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": format!("Session {session}: count slowly from one to one hundred in words.")}],
    });
    let headers = [("Authorization", format!("Bearer {KEY}")), ("X-Daehwa-Session", session.to_string())];
    let start = Instant::now();
    let (status, h, text) = http(front, "POST", "/v1/chat/completions", &headers, &body.to_string());
    let end = Instant::now();
    let replica = header(&h, "x-daehwa-replica").unwrap_or("?").to_string();
    if status != 200 {
        return Err(format!("{session} on {replica}: status {status}: {text}"));
    }
    let data: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    if data.last() != Some(&"[DONE]") {
        return Err(format!("{session} on {replica}: the stream did not end with [DONE]: {text}"));
    }
    let (mut content, mut finish, mut usage) = (String::new(), None, None);
    for d in &data[..data.len() - 1] {
        let v: Value = serde_json::from_str(d).map_err(|e| format!("{session} on {replica}: bad event {d}: {e}"))?;
        if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
            content.push_str(c);
        }
        if let Some(f) = v["choices"][0]["finish_reason"].as_str() {
            finish = Some(f.to_string());
        }
        if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
            usage = Some(n);
        }
    }
    if finish.as_deref() != Some("length") || usage != Some(STREAM_TOKENS) || content.is_empty() {
        return Err(format!("{session} on {replica}: cut short (finish {finish:?}, {usage:?} tokens, {} bytes)", content.len()));
    }
    Ok(Stream { replica, start, end })
}

fn rolling_replica(dir: &Path, port: u16, model: &Path) -> support::Serve {
    let mut cmd = support::serve_command_on(dir, port);
    cmd.args(["-t", "1", "-c", "1024", "--max-seqs", "4", "--drain-timeout", "60", "--api-key", KEY, "-m"]).arg(model);
    support::spawn_serve(cmd, String::new)
}

#[test]
fn rolling_restart_behind_haproxy_loses_no_stream() {
    for (tool, arg) in [("haproxy", "-v"), ("socat", "-V")] {
        if Command::new(tool).arg(arg).output().is_err() {
            support::skip("the rolling-restart test", &format!("{tool} is not installed (apt-get install {tool})"));
            return;
        }
    }
    let model = support::smollm2();
    let d = support::scratch("deploy-rolling-restart");
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let dirs: Vec<_> = (0..3).map(|i| d.join(format!("r{}", i + 1))).collect();
    let mut replicas: Vec<support::Serve> = (0..3).map(|i| rolling_replica(&dirs[i], ports[i], &model)).collect();
    let addrs: Vec<String> = replicas.iter().map(|r| r.addr.clone()).collect();
    let port = free_port();
    let cfg = haproxy_config(&d, port, &addrs);
    let _haproxy = Proc(Command::new("haproxy").arg("-db").arg("-f").arg(&cfg).stdout(Stdio::null()).spawn().expect("start haproxy"));
    let front = format!("127.0.0.1:{port}");
    let sock = d.join("admin.sock");
    let up = |n: usize| sock.exists() && admin(&sock, "show stat").lines().filter(|l| l.starts_with("daehwa,r") && l.contains(",UP,")).count() == n;
    let t0 = Instant::now();
    while !up(3) {
        assert!(t0.elapsed() < Duration::from_secs(30), "the replicas did not come up in HAProxy: {}", admin(&sock, "show stat"));
        std::thread::sleep(Duration::from_millis(100));
    }

    // Six clients stream without pause, each request under its own session (spread over the replicas).
    let stop = Arc::new(AtomicBool::new(false));
    let streams: Arc<Mutex<Vec<Stream>>> = Arc::default();
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let clients: Vec<_> = (0..6)
        .map(|w| {
            let (stop, streams, failures, front) = (stop.clone(), streams.clone(), failures.clone(), front.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    match stream_once(&front, &format!("client-{w}-{i}")) {
                        Ok(s) => streams.lock().expect("lock").push(s),
                        Err(e) => failures.lock().expect("lock").push(e),
                    }
                    i += 1;
                }
            })
        })
        .collect();
    while streams.lock().expect("lock").len() < 6 {
        assert!(t0.elapsed() < Duration::from_secs(120), "no streams completed: {:?}", failures.lock().expect("lock"));
        std::thread::sleep(Duration::from_millis(50));
    }

    // The shipped script, its restart command replaced by a hand-off to this test (which owns the
    // replica processes): `restart.sh PORT` asks for the restart and waits until it is done. It
    // clears the previous round's `.done` first: a stale one let the second round's last restart
    // return before this test had restarted anything, and the script finish without it.
    let restart = d.join("restart.sh");
    std::fs::write(
        &restart,
        format!("#!/bin/sh\nrm -f {0}/restart-$1.done\ntouch {0}/restart-$1.req\nwhile [ ! -e {0}/restart-$1.done ]; do sleep 0.1; done\n", d.display()),
    )
    .expect("restart.sh");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/rolling-restart");
    // Round 1 is the documented procedure (wait for the drained replica's connections to end).
    // Round 2 restarts each replica at once, streams still running on it: daehwa's own
    // SIGTERM drain must finish them.
    let mut rounds = Vec::new();
    for wait in ["60", "0"] {
        let mut run = Command::new("bash");
        // Its own process group, so that a failing test stops the script and its restart hand-off too.
        std::os::unix::process::CommandExt::process_group(&mut run, 0);
        let mut run = Group(
            run.arg(&script)
                .arg(&sock)
                .arg("daehwa")
                .env("DAEHWA_RESTART", format!("sh {} PORT", restart.display()))
                .env("DAEHWA_DRAIN_WAIT", wait)
                .stdout(Stdio::piped())
                .spawn()
                .expect("run deploy/rolling-restart"),
        );
        let drains: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
        let out = run.0.stdout.take().expect("stdout");
        let reader = {
            let drains = drains.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                let mut log = String::new();
                for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                    if let Some(name) = line.strip_prefix("draining daehwa/").and_then(|r| r.split(' ').next()) {
                        drains.lock().expect("lock").push((name.to_string(), Instant::now()));
                    }
                    log.push_str(&line);
                    log.push('\n');
                }
                log
            })
        };
        let mut restarted = Vec::new();
        let status = loop {
            if let Some(status) = run.0.try_wait().expect("try_wait") {
                break status;
            }
            assert!(t0.elapsed() < Duration::from_secs(600), "deploy/rolling-restart did not finish in time");
            for (i, p) in ports.iter().enumerate() {
                let req = d.join(format!("restart-{p}.req"));
                if !req.exists() {
                    continue;
                }
                std::fs::remove_file(&req).expect("remove request");
                // As systemd does: SIGTERM (the replica finishes what still runs), then start it again.
                let _ = Command::new("kill").args(["-TERM", &replicas[i].child.id().to_string()]).status();
                let exited = replicas[i].child.wait().expect("wait replica");
                assert!(exited.success(), "r{} exits cleanly after SIGTERM: {exited}", i + 1);
                replicas[i] = rolling_replica(&dirs[i], *p, &model);
                restarted.push(format!("r{}", i + 1));
                std::fs::write(d.join(format!("restart-{p}.done")), "").expect("done");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let log = reader.join().expect("reader");
        assert!(status.success(), "deploy/rolling-restart (drain wait {wait} s) failed ({status}):\n{log}");
        assert_eq!(restarted, ["r1", "r2", "r3"], "each replica restarted once, in order:\n{log}");
        let t1 = Instant::now();
        while !up(3) {
            assert!(t1.elapsed() < Duration::from_secs(30), "not every replica is back in HAProxy: {}", admin(&sock, "show stat"));
            std::thread::sleep(Duration::from_millis(100));
        }
        // Streams keep flowing over the restarted replicas.
        let before = streams.lock().expect("lock").len();
        while streams.lock().expect("lock").len() < before + 6 {
            assert!(t1.elapsed() < Duration::from_secs(120), "no streams after the restarts: {:?}", failures.lock().expect("lock"));
            std::thread::sleep(Duration::from_millis(50));
        }
        let drains = drains.lock().expect("lock").clone();
        assert_eq!(drains.len(), 3, "three drains:\n{log}");
        rounds.push((wait, drains, log));
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client");
    }
    let failures = failures.lock().expect("lock").clone();
    let streams = streams.lock().expect("lock").clone();
    assert!(failures.is_empty(), "{} of {} streams were lost or cut:\n{}", failures.len(), failures.len() + streams.len(), failures.join("\n"));
    // The drain mattered: in each round, streams were running on a replica when it was drained,
    // and they finished.
    for (wait, drains, log) in &rounds {
        let across: usize =
            drains.iter().map(|(name, at)| streams.iter().filter(|s| &s.replica == name && s.start < *at && s.end > *at).count()).sum();
        eprintln!("drain wait {wait} s: {across} streams were running on a replica as it was drained:\n{log}");
        assert!(across > 0, "drain wait {wait} s: no stream was running on a replica when it was drained: the test proved nothing");
    }
    eprintln!("{} streams in all, none lost", streams.len());
}

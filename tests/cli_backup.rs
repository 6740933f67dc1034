//! `daehwa backup` and `daehwa restore` against a real `daehwa serve` under write load: four
//! clients create conversations as fast as the server takes them while three backups are taken.
//! Each backup is intact and a consistent snapshot (per client, the conversations it holds are a
//! gap-free prefix of what that client wrote, and every one acknowledged before the backup began
//! is in it); restore is refused while the server runs, then replaces the store, keeps the old
//! one, and the restarted server serves exactly the backup's conversations.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{scratch, stderr, stdout, write_tiny, Tiny};

const WRITERS: usize = 4;

fn daehwa(data: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_daehwa"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env_remove("DAEHWA_DATABASE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run daehwa");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    child.wait_with_output().expect("wait")
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

fn serve(data: &Path, model: &Path) -> support::Serve {
    let mut cmd = support::serve_command(data);
    cmd.args(["-t", "1", "-m"]).arg(model);
    support::spawn_serve(cmd, String::new)
}

fn sign_in(addr: &str) -> String {
    let ok = http(addr, "POST", "/api/auth/login", "X-Daehwa-CSRF: 1\r\n", r#"{"username":"alice","password":"alice's password"}"#);
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    ok.lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string()
}

/// The conversation titles in the SQLite store `db`, as writer -> sorted sequence numbers.
fn titles(db: &Path) -> BTreeMap<usize, Vec<usize>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let store = server::store::Store::connect(&format!("sqlite://{}", db.display())).await.expect("open the copy");
        let alice = store.user_credentials("alice").await.expect("query").expect("alice is in the copy").user;
        let all = store.list_conversations(alice.id, 1_000_000, 0).await.expect("list");
        store.close().await;
        let mut by: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for c in all {
            let (w, i) = c.title.strip_prefix('w').and_then(|t| t.split_once('-')).expect("a writer's title");
            by.entry(w.parse().expect("writer")).or_default().push(i.parse().expect("seq"));
        }
        for v in by.values_mut() {
            v.sort_unstable();
        }
        by
    })
}

#[test]
fn backup_under_write_load_then_restore() {
    let d = scratch("cli-backup");
    let data = d.join("data");
    let o = daehwa(&data, &["user", "add", "alice", "--admin", "--password-stdin"], "alice's password\n");
    assert!(o.status.success(), "{}", stderr(&o));
    let model = d.join("tiny.gguf");
    write_tiny(&model, &Tiny::default());
    let server = serve(&data, &model);
    let addr = server.addr.clone();
    let cookie = sign_in(&addr);

    // Writers: each creates w{t}-0, w{t}-1, ... one after another; `acked[t]` counts the 200s.
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Vec<AtomicUsize>> = Arc::new((0..WRITERS).map(|_| AtomicUsize::new(0)).collect());
    let writers: Vec<_> = (0..WRITERS)
        .map(|t| {
            let (stop, acked, addr, cookie) = (stop.clone(), acked.clone(), addr.clone(), cookie.clone());
            std::thread::spawn(move || {
                let h = format!("Cookie: {cookie}\r\nX-Daehwa-CSRF: 1\r\n");
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) && i < 5000 {
                    let r = http(&addr, "POST", "/api/conversations", &h, &format!(r#"{{"title":"w{t}-{i}"}}"#));
                    assert!(r.starts_with("HTTP/1.1 200") || r.starts_with("HTTP/1.1 201"), "{r}");
                    i += 1;
                    acked[t].store(i, Ordering::SeqCst);
                }
            })
        })
        .collect();

    std::thread::sleep(Duration::from_millis(500));
    let mut backups = Vec::new();
    for n in 0..3 {
        let before: Vec<usize> = acked.iter().map(|a| a.load(Ordering::SeqCst)).collect();
        let file = d.join(format!("backup-{n}.sqlite3"));
        let t = Instant::now();
        let o = daehwa(&data, &["backup", file.to_str().expect("utf-8")], "");
        assert!(o.status.success(), "backup {n}: {}", stderr(&o));
        assert!(stdout(&o).contains("conversation(s)"), "{}", stdout(&o));
        let after: Vec<usize> = acked.iter().map(|a| a.load(Ordering::SeqCst)).collect();
        eprintln!("backup {n}: {:?} during writes {before:?} -> {after:?}", t.elapsed());
        backups.push((file, before, after));
        std::thread::sleep(Duration::from_millis(300));
    }
    // Writing over an existing file is refused.
    let again = daehwa(&data, &["backup", backups[0].0.to_str().expect("utf-8")], "");
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().expect("writer");
    }
    let total: usize = acked.iter().map(|a| a.load(Ordering::SeqCst)).sum();
    assert!(total >= 50, "too little write load to mean anything: {total} conversations");

    for (file, before, after) in &backups {
        let check = daehwa(&data, &["restore", "--check", file.to_str().expect("utf-8")], "");
        assert!(check.status.success(), "{}", stderr(&check));
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(file).expect("stat").permissions()) & 0o777;
        assert_eq!(mode, 0o600, "the backup holds password hashes");
        let copy = d.join("inspect.sqlite3");
        std::fs::copy(file, &copy).expect("copy");
        let got = titles(&copy);
        for f in ["", "-wal", "-shm", "-lock"] {
            let _ = std::fs::remove_file(format!("{}{f}", copy.display()));
        }
        for t in 0..WRITERS {
            let seqs = got.get(&t).cloned().unwrap_or_default();
            let n = seqs.len();
            assert_eq!(seqs, (0..n).collect::<Vec<_>>(), "writer {t}: a snapshot holds a gap-free prefix of its writes");
            assert!(n >= before[t], "writer {t}: {n} in the backup but {} acknowledged before it began", before[t]);
            // At most one write in flight when the backup ended.
            assert!(n <= after[t] + 1, "writer {t}: {n} in the backup, only {} acknowledged after it", after[t]);
        }
    }

    // Restore is refused while the server has the store open.
    let (file, _, _) = &backups[2];
    let refused = daehwa(&data, &["restore", file.to_str().expect("utf-8")], "");
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("in use"), "{}", stderr(&refused));
    // Stopped hard (SIGKILL: the WAL is left behind), then restored.
    drop(server);
    let live = titles(&data.join("daehwa.sqlite3"));
    assert_eq!(live.values().map(Vec::len).sum::<usize>(), total, "every acknowledged write is in the live store");
    let o = daehwa(&data, &["restore", file.to_str().expect("utf-8")], "");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(data.join("daehwa.sqlite3.before-restore").is_file(), "the replaced store is kept");
    let want = {
        let copy = d.join("want.sqlite3");
        std::fs::copy(file, &copy).expect("copy");
        titles(&copy)
    };
    let before_restore = {
        let copy = d.join("before.sqlite3");
        std::fs::copy(data.join("daehwa.sqlite3.before-restore"), &copy).expect("copy");
        titles(&copy)
    };
    assert_eq!(before_restore, live, "the kept store is the whole old store (its WAL folded in)");

    // The restarted server serves the backup's conversations.
    let server = serve(&data, &model);
    let cookie = sign_in(&server.addr);
    let list = http(&server.addr, "GET", "/api/conversations?limit=100", &format!("Cookie: {cookie}\r\n"), "");
    assert!(list.starts_with("HTTP/1.1 200"), "{list}");
    drop(server);
    assert_eq!(titles(&data.join("daehwa.sqlite3")), want, "the restored store is the backup");
    let n: usize = want.values().map(Vec::len).sum();
    assert!(n < total, "the backup predates the last writes ({n} of {total})");
}

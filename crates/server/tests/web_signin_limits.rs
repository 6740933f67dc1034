//! Sign-in under attack, over real HTTP from several loopback addresses (127.0.0.x): parallel
//! guesses are refused before they cost a password hash, memory and threads stay bounded, an
//! attacker cannot lock the owner out from elsewhere, `X-Forwarded-For` and
//! `X-Forwarded-Host` count only from a trusted proxy, and a password change can revoke keys.

mod common;
mod webkit;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use webkit::{with_admin_opts, Client, Options, ADMIN, ADMIN_PASSWORD};

fn loopback(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

fn from(c: &Client, n: u8) -> Client {
    let mut c = Client::new(c.addr);
    c.source = Some(loopback(n));
    c
}

fn status_field(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}

/// Sends `n` sign-ins at the same moment (all connected first, then written together), the
/// i-th from `source(i)` as `name(i)`; returns each (status, Retry-After) and the peak thread
/// count seen meanwhile.
async fn burst(
    addr: std::net::SocketAddr,
    n: usize,
    source: impl Fn(usize) -> IpAddr,
    name: impl Fn(usize) -> String,
) -> (Vec<(u16, Option<u64>)>, u64) {
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = Vec::new();
    for i in 0..n {
        let mut c = Client::new(addr);
        c.source = Some(source(i));
        let body = json!({"username": name(i), "password": "wrong password"}).to_string();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = c.connect().await;
            let req = format!(
                "POST /api/auth/login HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nX-Daehwa-CSRF: 1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            barrier.wait().await;
            s.write_all(req.as_bytes()).await.expect("write");
            let mut raw = Vec::new();
            tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut raw)).await.expect("an answer within 60 s").expect("read");
            let text = String::from_utf8_lossy(&raw).to_string();
            let status: u16 = text.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
            let retry = text
                .lines()
                .find_map(|l| l.strip_prefix("retry-after: "))
                .map(|v| v.trim().parse().expect("seconds"));
            (status, retry)
        }));
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                peak = peak.max(status_field("Threads:"));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            peak
        })
    };
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("task"));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    (out, sampler.await.expect("sampler"))
}

/// 100 wrong passwords for one account from one address at once: before, all 100 ran argon2
/// (+1.8 GB, 113 threads). Now the failures are reserved before the check: at most 5 hashes
/// run, the rest are 429 with `Retry-After`, and memory and threads stay bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_for_one_account_are_refused_before_hashing() {
    let (srv, _admin) = with_admin_opts("signin-burst", Options::default()).await;
    std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak RSS");
    let (rss, threads) = (status_field("VmRSS:"), status_field("Threads:"));
    let (answers, peak_threads) = burst(srv.addr, 100, |_| loopback(1), |_| ADMIN.to_string()).await;
    let refused = answers.iter().filter(|(s, _)| *s == 429).count();
    let wrong = answers.iter().filter(|(s, _)| *s == 401).count();
    let growth = status_field("VmHWM:").saturating_sub(rss);
    eprintln!("429: {refused}, 401: {wrong}; peak RSS +{growth} KiB; threads {threads} -> peak {peak_threads}");
    assert_eq!(refused + wrong, 100, "{answers:?}");
    assert!(wrong <= 5, "{wrong} guesses were checked: the limit is 5");
    assert!(answers.iter().all(|(s, r)| *s != 429 || r.is_some_and(|r| (1..=300).contains(&r))), "{answers:?}");
    assert!(growth < 64 * 1024, "peak RSS grew by {growth} KiB");
    assert!(peak_threads <= threads + 12, "threads went from {threads} to {peak_threads}");
}

/// 100 wrong passwords from 100 addresses for 100 names at once (so the per-account and
/// per-address limits let each through), twice: the hashing pool runs 2 at a time with a short
/// queue and refuses the rest with 429 and `Retry-After`, instead of a thread and 19 MiB each,
/// and its memory is reused (before, each hash checked left about 10 MiB behind).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hashing_gate_bounds_work_from_many_addresses() {
    let (srv, _admin) = with_admin_opts("signin-gate", Options::default()).await;
    std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak RSS");
    let (rss, threads) = (status_field("VmRSS:"), status_field("Threads:"));
    let (answers, peak_threads) =
        burst(srv.addr, 100, |i| loopback(10 + i as u8), |i| format!("nobody{i}")).await;
    let refused = answers.iter().filter(|(s, _)| *s == 429).count();
    let first = status_field("VmHWM:").saturating_sub(rss);
    // A second burst costs no more memory: the hashing memory is reused, not piled up.
    let (again, _) = burst(srv.addr, 100, |i| loopback(120 + i as u8), |i| format!("other{i}")).await;
    let refused_again = again.iter().filter(|(s, _)| *s == 429).count();
    let growth = status_field("VmHWM:").saturating_sub(rss);
    eprintln!("429: {refused} then {refused_again} of 100; peak RSS +{first} KiB then +{growth} KiB; threads {threads} -> peak {peak_threads}");
    for a in [&answers, &again] {
        assert!(a.iter().all(|(s, _)| *s == 401 || *s == 429), "{a:?}");
        assert!(a.iter().all(|(s, r)| *s != 429 || *r == Some(1)), "{a:?}");
    }
    assert!(refused >= 50 && refused_again >= 50, "only {refused} / {refused_again} of 100 were refused");
    assert!(growth < 64 * 1024, "peak RSS grew by {growth} KiB");
    assert!(peak_threads <= threads + 12, "threads went from {threads} to {peak_threads}");
    // The gate is open again afterwards.
    let mut owner = Client::new(srv.addr);
    owner.login(ADMIN, ADMIN_PASSWORD).await;
}

/// Guesses from one address cannot lock the owner out from another (before, 5 failures from
/// anyone locked the account everywhere).
#[tokio::test]
async fn the_owner_signs_in_while_an_attacker_elsewhere_is_throttled() {
    let (srv, admin) = with_admin_opts("signin-owner", Options::default()).await;
    let attacker = from(&admin, 2);
    for _ in 0..5 {
        attacker.post("/api/auth/login", &json!({"username": ADMIN, "password": "guess"})).await.error(401);
    }
    let r = attacker.post("/api/auth/login", &json!({"username": ADMIN, "password": ADMIN_PASSWORD})).await;
    r.error(429);
    assert!(r.header("retry-after").is_some());
    let mut owner = from(&admin, 1);
    owner.login(ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(owner.get("/api/conversations").await.status, 200);
    // Still throttled where the guesses came from.
    attacker.post("/api/auth/login", &json!({"username": ADMIN, "password": ADMIN_PASSWORD})).await.error(429);
    drop(srv);
}

/// Without `--trusted-proxy`, `X-Forwarded-For` is ignored (a client cannot pick the address
/// it is counted under) and `X-Forwarded-Host` does not make a foreign origin ours.
#[tokio::test]
async fn forwarded_headers_are_ignored_without_a_trusted_proxy() {
    let (srv, admin) = with_admin_opts("xff-untrusted", Options::default()).await;
    let mut c = from(&admin, 3);
    for i in 0..5 {
        c.extra = vec![("X-Forwarded-For".into(), format!("10.0.0.{i}"))];
        c.post("/api/auth/login", &json!({"username": ADMIN, "password": "guess"})).await.error(401);
    }
    c.extra = vec![("X-Forwarded-For".into(), "10.0.0.99".into())];
    c.post("/api/auth/login", &json!({"username": ADMIN, "password": ADMIN_PASSWORD})).await.error(429);

    let mut proxied = admin.clone();
    proxied.extra = vec![("X-Forwarded-Host".into(), "chat.example.org".into()), ("Origin".into(), "https://chat.example.org".into())];
    proxied.post("/api/conversations", &json!({})).await.error(403);
    drop(srv);
}

/// With `--trusted-proxy 127.0.0.1`, requests through it are counted under the forwarded
/// client address, and its `X-Forwarded-Host` is believed; a peer that is not the proxy still
/// gets neither.
#[tokio::test]
async fn forwarded_headers_count_from_a_trusted_proxy() {
    let o = Options { accounts: |a| a.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")], ..Default::default() };
    let (srv, admin) = with_admin_opts("xff-trusted", o).await;
    let mut via_proxy = from(&admin, 1);
    via_proxy.extra = vec![("X-Forwarded-For".into(), "203.0.113.5".into())];
    for _ in 0..5 {
        via_proxy.post("/api/auth/login", &json!({"username": ADMIN, "password": "guess"})).await.error(401);
    }
    via_proxy.post("/api/auth/login", &json!({"username": ADMIN, "password": ADMIN_PASSWORD})).await.error(429);
    // Another client behind the same proxy is not throttled.
    let mut owner = from(&admin, 1);
    owner.extra = vec![("X-Forwarded-For".into(), "198.51.100.7".into())];
    owner.login(ADMIN, ADMIN_PASSWORD).await;

    // Not the proxy: the header means nothing, the peer is counted.
    let mut direct = from(&admin, 4);
    for i in 0..5 {
        direct.extra = vec![("X-Forwarded-For".into(), format!("192.0.2.{i}"))];
        direct.post("/api/auth/login", &json!({"username": ADMIN, "password": "guess"})).await.error(401);
    }
    direct.extra = vec![("X-Forwarded-For".into(), "192.0.2.200".into())];
    direct.post("/api/auth/login", &json!({"username": ADMIN, "password": ADMIN_PASSWORD})).await.error(429);

    // X-Forwarded-Host from the proxy is believed; from anyone else it is not.
    let host = [("X-Forwarded-Host".to_string(), "chat.example.org".to_string()), ("Origin".to_string(), "https://chat.example.org".to_string())];
    let mut proxied = owner.clone();
    proxied.extra.extend(host.clone());
    assert_eq!(proxied.post("/api/conversations", &json!({})).await.status, 201);
    let mut spoofed = owner.clone();
    spoofed.source = Some(loopback(4));
    spoofed.extra = host.to_vec();
    spoofed.post("/api/conversations", &json!({})).await.error(403);
    drop(srv);
}

/// A password change ends the user's other sessions, and with `revoke_api_keys` their
/// personal API keys stop working too.
#[tokio::test]
async fn password_change_ends_other_sessions_and_can_revoke_keys() {
    let (srv, admin) = with_admin_opts("password-keys", Options::default()).await;
    let key = admin.post("/api/keys", &json!({"name": "laptop"})).await.json()["key"].as_str().expect("key").to_string();
    let mut with_key = Client::new(srv.addr);
    with_key.bearer = Some(key);
    assert_eq!(with_key.get("/v1/models").await.status, 200);

    let mut other = Client::new(srv.addr);
    other.login(ADMIN, ADMIN_PASSWORD).await;
    let mut me = admin.clone();
    let r = me.post("/api/auth/password", &json!({"current_password": ADMIN_PASSWORD, "new_password": "second password"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    me.keep_cookie(&r);
    other.get("/api/conversations").await.error(401);
    admin.get("/api/conversations").await.error(401);
    assert_eq!(me.get("/api/conversations").await.status, 200);
    assert_eq!(with_key.get("/v1/models").await.status, 200, "keys stay unless revoking is asked for");

    let r = me
        .post("/api/auth/password", &json!({"current_password": "second password", "new_password": "third password", "revoke_api_keys": true}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    me.keep_cookie(&r);
    with_key.get("/v1/models").await.error(401);
    assert_eq!(me.get("/api/conversations").await.status, 200);
    // A wrong current password is a 403 and counts as a failure (5 of them throttle).
    for _ in 0..5 {
        me.post("/api/auth/password", &json!({"current_password": "not it at all", "new_password": "fourth password"})).await.error(403);
    }
    me.post("/api/auth/password", &json!({"current_password": "third password", "new_password": "fourth password"})).await.error(429);
}

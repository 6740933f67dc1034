//! Accounts over real HTTP: first-run setup, sign-in and its rate limit, cookies, CSRF, users
//! kept apart, admin-only account management, and personal API keys on `/v1`.

mod common;
mod webkit;

use serde_json::json;
use webkit::{add_user, new_conversation, start, with_admin, Client, ADMIN, ADMIN_PASSWORD};

#[tokio::test]
async fn setup_happens_once_and_signs_the_admin_in() {
    let srv = start("setup").await;
    let mut c = Client::new(srv.addr);
    let s = c.get("/api/auth/state").await;
    assert_eq!(s.status, 200);
    assert_eq!(s.json(), json!({"needs_setup": true, "user": null}));

    // Bad input is a clear 400 naming the field, and nothing is created.
    let e = c.post("/api/auth/setup", &json!({"username": "admin", "password": "short"})).await.error(400);
    assert_eq!(e["param"], "password");
    let e = c.post("/api/auth/setup", &json!({"username": "a b", "password": "long enough"})).await.error(400);
    assert_eq!(e["param"], "username");
    c.post("/api/auth/setup", &json!({"username": "admin"})).await.error(400);
    assert_eq!(srv.store.count_users().await.expect("count"), 0);

    let r = c.post("/api/auth/setup", &json!({"username": ADMIN, "password": ADMIN_PASSWORD})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["username"], ADMIN);
    assert_eq!(r.json()["is_admin"], true);
    let cookie = r.header("set-cookie").expect("cookie").to_string();
    for attr in ["daehwa_session=", "HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=2592000"] {
        assert!(cookie.contains(attr), "{attr} missing in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    c.keep_cookie(&r);
    let s = c.get("/api/auth/state").await.json();
    assert_eq!(s["needs_setup"], false);
    assert_eq!(s["user"]["username"], ADMIN);
    assert!(s["user"]["id"].is_string(), "ids are strings: {s}");

    // The password is stored as an argon2id hash, never as itself.
    let creds = srv.store.user_credentials(ADMIN).await.expect("lookup").expect("the admin");
    assert!(creds.password_hash.starts_with("$argon2id$"), "{}", creds.password_hash);
    assert!(!creds.password_hash.contains(ADMIN_PASSWORD));

    // A second setup, by anyone, is refused.
    let other = Client::new(srv.addr);
    let e = other.post("/api/auth/setup", &json!({"username": "mallory", "password": "another password"})).await.error(409);
    assert_eq!(e["code"], "conflict");
    assert_eq!(srv.store.count_users().await.expect("count"), 1);
}

#[tokio::test]
async fn sign_in_sign_out_secure_cookie_and_rate_limit() {
    let (srv, admin) = with_admin("login").await;
    let anon = Client::new(srv.addr);
    let e = anon.post("/api/auth/login", &json!({"username": ADMIN, "password": "wrong password"})).await.error(401);
    assert_eq!(e["message"], "incorrect username or password");
    // An unknown name gets the very same answer.
    let e2 = anon.post("/api/auth/login", &json!({"username": "nobody", "password": "wrong password"})).await.error(401);
    assert_eq!(e, e2);

    // Behind a TLS proxy the cookie is Secure; names match in any letter case.
    let mut proxied = Client::new(srv.addr);
    proxied.extra.push(("X-Forwarded-Proto".into(), "https".into()));
    let r = proxied.post("/api/auth/login", &json!({"username": "ADMIN", "password": ADMIN_PASSWORD})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("set-cookie").expect("cookie").contains("; Secure"));

    // Sign out ends the session in the store, not only in the browser.
    let mut c = Client::new(srv.addr);
    c.login(ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(c.get("/api/conversations").await.status, 200);
    let r = c.send("POST", "/api/auth/logout", None).await;
    assert_eq!(r.status, 204);
    assert!(r.header("set-cookie").expect("cleared").contains("Max-Age=0"));
    c.get("/api/conversations").await.error(401);
    assert_eq!(c.get("/api/auth/state").await.json()["user"], serde_json::Value::Null);
    // The admin's other session is untouched.
    assert_eq!(admin.get("/api/conversations").await.status, 200);

    // Five failures for a name, then 429 with Retry-After, even with the right password.
    for _ in 0..5 {
        anon.post("/api/auth/login", &json!({"username": ADMIN, "password": "still wrong"})).await.error(401);
    }
    let r = anon.post("/api/auth/login", &json!({"username": ADMIN, "password": ADMIN_PASSWORD})).await;
    let e = r.error(429);
    assert_eq!(e["code"], "rate_limit_exceeded");
    let wait: u64 = r.header("retry-after").expect("Retry-After").parse().expect("seconds");
    assert!((1..=300).contains(&wait), "{wait}");
}

#[tokio::test]
async fn state_changes_need_the_csrf_header_and_a_matching_origin() {
    let (srv, admin) = with_admin("csrf").await;
    let mut bare = admin.clone();
    bare.csrf = false;
    let e = bare.post("/api/conversations", &json!({})).await.error(403);
    assert!(e["message"].as_str().expect("msg").contains("X-Daehwa-CSRF"), "{e}");
    bare.delete("/api/keys/1").await.error(403);
    bare.send("POST", "/api/auth/logout", None).await.error(403);
    // Reads need no header.
    assert_eq!(bare.get("/api/conversations").await.status, 200);

    let mut evil = admin.clone();
    evil.extra.push(("Origin".into(), "https://evil.example".into()));
    evil.post("/api/conversations", &json!({})).await.error(403);
    let mut same = admin.clone();
    same.extra.push(("Origin".into(), format!("http://{}", srv.addr)));
    assert_eq!(same.post("/api/conversations", &json!({})).await.status, 201);
    assert_eq!(admin.get("/api/conversations").await.json()["conversations"].as_array().expect("list").len(), 1);
}

#[tokio::test]
async fn users_never_see_each_others_conversations() {
    let (srv, admin) = with_admin("isolation").await;
    let conv = new_conversation(&admin, json!({"title": "admin's secret plans"})).await;
    let events = admin.stream(&format!("/api/conversations/{conv}/messages"), &json!({"parent_id": null, "content": "zebra"})).await.collect().await;
    let answer = events.iter().find(|e| e.name == "done").expect("done").data["message"]["id"].as_str().expect("id").to_string();

    let (bob_id, bob) = add_user(&srv, &admin, "bob", "bob's password").await;
    let path = format!("/api/conversations/{conv}");
    bob.get(&path).await.error(404);
    bob.patch(&path, &json!({"title": "mine now"})).await.error(404);
    bob.delete(&path).await.error(404);
    bob.post(&format!("{path}/messages"), &json!({"parent_id": answer, "content": "hi"})).await.error(404);
    bob.post(&format!("{path}/regenerate"), &json!({"message_id": answer})).await.error(404);
    assert_eq!(bob.get("/api/conversations").await.json(), json!({"conversations": []}));
    assert_eq!(bob.get("/api/conversations?q=zebra").await.json(), json!({"conversations": []}));
    // Nothing changed for the owner.
    let c = admin.get(&path).await.json();
    assert_eq!(c["title"], "admin's secret plans");
    assert_eq!(c["messages"].as_array().expect("messages").len(), 2);
    assert_eq!(admin.get("/api/conversations?q=zebra").await.json()["conversations"][0]["id"], conv.as_str());

    // Bob is no admin.
    bob.get("/api/users").await.error(403);
    bob.post("/api/users", &json!({"username": "eve", "password": "eve's password"})).await.error(403);
    bob.delete("/api/users/1").await.error(403);

    // Removing bob ends his sessions at once.
    assert_eq!(admin.delete(&format!("/api/users/{bob_id}")).await.status, 204);
    bob.get("/api/conversations").await.error(401);
    admin.delete(&format!("/api/users/{bob_id}")).await.error(404);
}

#[tokio::test]
async fn admins_manage_accounts() {
    let (_srv, admin) = with_admin("users").await;
    let me = admin.get("/api/auth/state").await.json()["user"]["id"].as_str().expect("id").to_string();
    let r = admin.post("/api/users", &json!({"username": "김민수", "password": "비밀번호입니다요", "is_admin": true})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["is_admin"], true);
    admin.post("/api/users", &json!({"username": "김민수", "password": "another one"})).await.error(409);
    admin.post("/api/users", &json!({"username": "Admin", "password": "another one"})).await.error(409);
    admin.post("/api/users", &json!({"username": "x/y", "password": "another one"})).await.error(400);
    admin.post("/api/users", &json!({"username": "carol", "password": "short"})).await.error(400);
    let users = admin.get("/api/users").await.json();
    let names: Vec<&str> = users["users"].as_array().expect("users").iter().map(|u| u["username"].as_str().expect("name")).collect();
    assert_eq!(names, vec![ADMIN, "김민수"]);
    let e = admin.delete(&format!("/api/users/{me}")).await.error(403);
    assert!(e["message"].as_str().expect("msg").contains("own account"), "{e}");
    admin.delete("/api/users/not-a-number").await.error(404);

    // A password change signs other browsers out and keeps this one signed in.
    let mut other = Client::new(admin.addr);
    other.login(ADMIN, ADMIN_PASSWORD).await;
    let mut me_client = admin.clone();
    admin.post("/api/auth/password", &json!({"current_password": "wrong one!", "new_password": "new password"})).await.error(403);
    let r = me_client.post("/api/auth/password", &json!({"current_password": ADMIN_PASSWORD, "new_password": "new password"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    me_client.keep_cookie(&r);
    other.get("/api/conversations").await.error(401);
    assert_eq!(me_client.get("/api/conversations").await.status, 200);
    let mut again = Client::new(admin.addr);
    again.login(ADMIN, "new password").await;
}

#[tokio::test]
async fn personal_keys_work_on_v1_until_revoked() {
    // A fresh install without accounts: /v1 is open, as before.
    let open = start("v1-open").await;
    assert_eq!(Client::new(open.addr).get("/v1/models").await.status, 200);

    let (srv, admin) = with_admin("keys").await;
    let anon = Client::new(srv.addr);
    let e = anon.get("/v1/models").await.error(401);
    assert_eq!(e["code"], "invalid_api_key");
    anon.get("/metrics").await.error(401);
    assert_eq!(anon.get("/health").await.status, 200);
    // A session cookie is not a key.
    admin.get("/v1/models").await.error(401);

    let r = admin.post("/api/keys", &json!({"name": "laptop"})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let k = r.json();
    let secret = k["key"].as_str().expect("the secret, once").to_string();
    assert!(secret.starts_with("dh-") && secret.starts_with(k["prefix"].as_str().expect("prefix")), "{k}");
    for field in ["id", "name", "prefix", "created_at"] {
        assert!(k[field].is_string(), "{field}: {k}");
    }
    let listed = admin.get("/api/keys").await;
    assert!(!listed.body.contains(&secret), "the secret is shown once: {}", listed.body);
    assert_eq!(listed.json()["keys"][0]["name"], "laptop");

    let mut with_key = Client::new(srv.addr);
    with_key.bearer = Some(secret.clone());
    assert_eq!(with_key.get("/v1/models").await.status, 200);
    let chat = with_key.post("/v1/chat/completions", &json!({"messages": [{"role": "user", "content": "hi"}]})).await;
    assert_eq!(chat.status, 200, "{}", chat.body);
    // A key is for /v1, not for the account's /api.
    with_key.get("/api/conversations").await.error(401);
    let mut wrong = Client::new(srv.addr);
    wrong.bearer = Some("dh-0000000000000000000000000000000000000000000000000".into());
    wrong.get("/v1/models").await.error(401);

    // Another user cannot revoke it; its owner can, and it stops working at once.
    let (_, bob) = add_user(&srv, &admin, "bob", "bob's password").await;
    let id = k["id"].as_str().expect("id");
    bob.delete(&format!("/api/keys/{id}")).await.error(404);
    assert_eq!(with_key.get("/v1/models").await.status, 200);
    assert_eq!(admin.delete(&format!("/api/keys/{id}")).await.status, 204);
    with_key.get("/v1/models").await.error(401);
    assert_eq!(admin.get("/api/keys").await.json(), json!({"keys": []}));
}

#[tokio::test]
async fn static_keys_still_work_beside_accounts() {
    let srv = webkit::start_with("static-keys", webkit::Options { keys: vec!["sk-static"], ..Default::default() }).await;
    let mut c = Client::new(srv.addr);
    c.get("/v1/models").await.error(401);
    c.bearer = Some("sk-static".into());
    assert_eq!(c.get("/v1/models").await.status, 200);
    // The UI and its API need no static key: they have their own sign-in.
    let anon = Client::new(srv.addr);
    assert_eq!(anon.get("/api/auth/state").await.json()["needs_setup"], true);
    assert_eq!(anon.get("/").await.status, 200);
}

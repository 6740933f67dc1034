//! The ChatGPT import and the embedded web UI over real HTTP.

mod common;
mod webkit;

use serde_json::{json, Value};
use webkit::{with_admin, Client};

/// A small `conversations.json`: a Korean title, a system message and a hidden one to drop, an
/// edited question (a branch), an image part, and `current_node` on the edited branch.
fn fixture() -> Value {
    let msg = |id: &str, role: &str, parts: Value, t: f64| {
        json!({"id": id, "author": {"role": role}, "create_time": t, "content": {"content_type": "text", "parts": parts},
               "metadata": {"model_slug": "gpt-4o"}})
    };
    json!([
        {
            "title": "제주도 여행 계획",
            "create_time": 1_700_000_000.0,
            "update_time": 1_700_000_100.0,
            "current_node": "a2",
            "mapping": {
                "root": {"id": "root", "message": null, "parent": null, "children": ["sys"]},
                "sys": {"id": "sys", "message": msg("sys", "system", json!([""]), 1.0), "parent": "root", "children": ["u1", "u2"]},
                "u1": {"id": "u1", "message": msg("u1", "user", json!(["제주도 3일 일정 짜줘"]), 2.0), "parent": "sys", "children": ["a1"]},
                "a1": {"id": "a1", "message": msg("a1", "assistant", json!(["첫째 날: 성산일출봉"]), 3.0), "parent": "u1", "children": []},
                "u2": {"id": "u2", "message": msg("u2", "user", json!(["제주도 2일 일정 짜줘", {"content_type": "image_asset_pointer"}]), 4.0), "parent": "sys", "children": ["hid"]},
                "hid": {"id": "hid", "message": {"id": "hid", "author": {"role": "assistant"}, "content": {"parts": ["hidden"]},
                        "metadata": {"is_visually_hidden_from_conversation": true}}, "parent": "u2", "children": ["a2"]},
                "a2": {"id": "a2", "message": msg("a2", "assistant", json!(["첫째 날: 한라산"]), 5.0), "parent": "hid", "children": []}
            }
        },
        {"title": "empty", "mapping": {"root": {"id": "root", "message": null, "parent": null, "children": []}}, "current_node": "root"}
    ])
}

#[tokio::test]
async fn imports_a_chatgpt_export_with_its_branches() {
    let (_srv, c) = with_admin("import").await;
    let r = c.post("/api/import", &fixture()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!((v["imported"].as_u64(), v["skipped"].as_u64()), (Some(1), Some(1)), "{v}");
    let id = v["conversations"][0].as_str().expect("id");

    let conv = c.get(&format!("/api/conversations/{id}")).await.json();
    assert_eq!(conv["title"], "제주도 여행 계획");
    let ms = conv["messages"].as_array().expect("messages");
    let by_text = |t: &str| ms.iter().find(|m| m["content"] == t).unwrap_or_else(|| panic!("no {t:?} in {conv}"));
    assert_eq!(ms.len(), 4, "system and hidden messages are dropped: {conv}");
    let (u1, a1, u2, a2) = (by_text("제주도 3일 일정 짜줘"), by_text("첫째 날: 성산일출봉"), by_text("제주도 2일 일정 짜줘"), by_text("첫째 날: 한라산"));
    assert_eq!((u1["parent_id"].clone(), u2["parent_id"].clone()), (Value::Null, Value::Null), "two roots: the edit is a branch");
    assert_eq!(a1["parent_id"], u1["id"]);
    assert_eq!(a2["parent_id"], u2["id"], "re-attached past the hidden message");
    assert_eq!((a2["role"].as_str(), a2["status"].as_str(), a2["model"].as_str()), (Some("assistant"), Some("complete"), Some("gpt-4o")));
    assert_eq!(conv["current_message_id"], a2["id"], "ChatGPT's current node");
    // ChatGPT's times are kept (a message's time never precedes its parent's or the conversation's).
    assert!(conv["updated_at"].as_str().is_some_and(|t| t.starts_with("2023-11-14T22:15:00")), "{conv}");
    for m in [u1, a1, u2, a2] {
        assert!(m["created_at"].as_str().is_some_and(|t| t.starts_with("2023-11-14T22:13:20")), "{m}");
    }
    // Imported text is searchable like any other.
    let hits = c.get("/api/conversations?q=%ED%95%9C%EB%9D%BC%EC%82%B0").await.json();
    assert_eq!(hits["conversations"][0]["id"], id);
}

#[tokio::test]
async fn a_wrong_file_is_a_clear_400() {
    let (_srv, c) = with_admin("import-bad").await;
    for body in [json!({"conversations": []}), json!([]), json!([{"title": "no mapping"}]), json!(["text"])] {
        let e = c.post("/api/import", &body).await.error(400);
        assert!(e["message"].as_str().expect("message").contains("ChatGPT") || e["message"].as_str().expect("m").contains("no conversations"), "{body}: {e}");
    }
    c.send("POST", "/api/import", Some("[{")).await.error(400);
    assert_eq!(c.get("/api/conversations").await.json(), json!({"conversations": []}));
    Client::new(c.addr).post("/api/import", &fixture()).await.error(401);
}

#[tokio::test]
async fn the_embedded_ui_is_served_with_its_security_headers() {
    let (srv, _admin) = with_admin("ui").await;
    let anon = Client::new(srv.addr);
    let r = anon.get("/").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    let csp = r.header("content-security-policy").expect("CSP");
    assert!(csp.starts_with("default-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert!(r.header("referrer-policy").is_some());
    assert!(r.body.contains("<html"), "{}", r.body);

    // Every asset index.html names is embedded and cached for good; nothing is loaded from elsewhere.
    let refs: Vec<&str> = r.body.split(['"', '\'']).filter(|s| s.starts_with("/assets/")).collect();
    if server::web::assets::UI_BUILT {
        assert!(!refs.is_empty(), "{}", r.body);
        assert!(!r.body.contains("http://") && !r.body.contains("https://"));
    }
    for a in refs {
        let r = anon.get(a).await;
        assert_eq!(r.status, 200, "{a}");
        assert_eq!(r.header("cache-control"), Some("public, max-age=31536000, immutable"), "{a}");
        let want = server::web::assets::content_type(a);
        assert_eq!(r.header("content-type"), Some(want), "{a}");
    }
    anon.get("/assets/nope-12345678.js").await.error(404);
    // The API answers carry the headers too, and are never cached.
    let s = anon.get("/api/auth/state").await;
    assert_eq!(s.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(s.header("cache-control"), Some("no-store"));
    // An unknown /api route is a JSON 404, not the UI.
    anon.get("/api/nothing").await.error(404);
}

//! `POST /api/import`: a ChatGPT data export's `conversations.json` (the array, unchanged) into
//! the caller's conversations, mapped as webui/src/lib/chatgpt.ts documents:
//!
//! * each conversation's `mapping` is a tree of nodes `{message, parent, children}`;
//! * nodes without a message, system/tool messages, hidden messages and messages without text
//!   are dropped, and their children re-attached to the nearest kept ancestor (branches
//!   survive);
//! * text is `content.parts` (strings only) joined with "\n", or `content.text`;
//! * messages are inserted parents first, siblings by time, one row each; the current branch is
//!   ChatGPT's `current_node` (or its nearest kept ancestor).
//!
//! The mapping ([`map_conversation`]) is pure and tested on its own.

use std::collections::{HashMap, HashSet};
use std::fmt;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};
use store::{MessageId, NewConversation, NewMessage, Role};

use super::error::WebError;
use super::session::CurrentUser;
use super::{title, WebState};
use crate::error::ApiError;

/// The body limit of this route (exports of long histories are large).
pub const DEFAULT_BODY_LIMIT: usize = 512 << 20;

/// One conversation of the export, as far as the import reads it.
#[derive(Debug, Deserialize)]
pub struct ExportConversation {
    #[serde(default)]
    title: Value,
    mapping: Mapping,
    #[serde(default)]
    current_node: Value,
    #[serde(default)]
    create_time: Value,
    #[serde(default)]
    update_time: Value,
}

/// `mapping` in the file's order (serde_json's own map would sort the ids).
#[derive(Debug, Default)]
pub struct Mapping(Vec<(String, Node)>);

#[derive(Debug, Deserialize, Default)]
pub struct Node {
    #[serde(default)]
    message: Value,
    #[serde(default)]
    parent: Value,
}

impl<'de> Deserialize<'de> for Mapping {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Mapping;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of message nodes")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Mapping, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    // A node that is not an object holds no message; keep its id for the tree walk.
                    let node = serde_json::from_value::<Node>(v).unwrap_or_default();
                    out.push((k, node));
                }
                Ok(Mapping(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A message to insert.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    pub node: String,
    /// The node of the parent message (already mapped to a kept one), `None` at a root.
    pub parent: Option<String>,
    pub role: Role,
    pub content: String,
    pub create_time: Option<f64>,
    pub model: Option<String>,
}

/// A conversation ready to insert: messages parents first.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedConversation {
    pub title: String,
    pub messages: Vec<Imported>,
    /// The node of the message ChatGPT showed last.
    pub current: Option<String>,
    /// The conversation's times in ChatGPT (Unix seconds), kept on import.
    pub create_time: Option<f64>,
    pub update_time: Option<f64>,
}

fn text_of(message: &Value) -> String {
    let content = &message["content"];
    if let Some(parts) = content["parts"].as_array() {
        return parts.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("\n");
    }
    content["text"].as_str().unwrap_or("").to_string()
}

fn kept(node_id: &str, node: &Node) -> Option<Imported> {
    let m = &node.message;
    if !m.is_object() {
        return None;
    }
    let role = match m["author"]["role"].as_str() {
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        _ => return None,
    };
    if m["metadata"]["is_visually_hidden_from_conversation"] == Value::Bool(true) {
        return None;
    }
    let content = text_of(m);
    if content.trim().is_empty() {
        return None;
    }
    Some(Imported {
        node: node_id.to_string(),
        parent: None,
        role,
        content,
        create_time: m["create_time"].as_f64(),
        model: m["metadata"]["model_slug"].as_str().map(str::to_string),
    })
}

/// Maps one exported conversation (see the module docs).
pub fn map_conversation(c: &ExportConversation) -> ImportedConversation {
    let nodes: HashMap<&str, &Node> = c.mapping.0.iter().map(|(k, n)| (k.as_str(), n)).collect();
    let kept_list: Vec<Imported> = c.mapping.0.iter().filter_map(|(k, n)| kept(k, n)).collect();
    let kept_ids: HashSet<&str> = kept_list.iter().map(|m| m.node.as_str()).collect();
    // The nearest kept ancestor of a node (itself excluded); cycles end the walk.
    let kept_ancestor = |id: &str| -> Option<String> {
        let mut seen: HashSet<&str> = HashSet::from([id]);
        let mut cur = nodes.get(id).copied();
        while let Some(parent) = cur.and_then(|n| n.parent.as_str()) {
            if !seen.insert(parent) {
                return None;
            }
            if kept_ids.contains(parent) {
                return Some(parent.to_string());
            }
            cur = nodes.get(parent).copied();
        }
        None
    };
    let mut messages: Vec<Imported> =
        kept_list.iter().map(|m| Imported { parent: kept_ancestor(&m.node), ..m.clone() }).collect();
    let parent_of: HashMap<String, Option<String>> = messages.iter().map(|m| (m.node.clone(), m.parent.clone())).collect();
    let depth = |id: &str| {
        let mut d = 0usize;
        let mut at = parent_of.get(id).cloned().flatten();
        while let Some(p) = at {
            d += 1;
            if d > parent_of.len() {
                break;
            }
            at = parent_of.get(&p).cloned().flatten();
        }
        d
    };
    let depths: HashMap<String, usize> = messages.iter().map(|m| (m.node.clone(), depth(&m.node))).collect();
    // Stable: equal depth and time keep the file's order.
    messages.sort_by(|a, b| {
        let (da, db) = (depths.get(&a.node), depths.get(&b.node));
        da.cmp(&db).then(a.create_time.unwrap_or(f64::MIN).total_cmp(&b.create_time.unwrap_or(f64::MIN)))
    });
    let current = c.current_node.as_str().and_then(|n| if kept_ids.contains(n) { Some(n.to_string()) } else { kept_ancestor(n) });
    let title = c.title.as_str().map(str::trim).unwrap_or("").to_string();
    ImportedConversation { title, messages, current, create_time: c.create_time.as_f64(), update_time: c.update_time.as_f64() }
}

/// Parses the export: 400 with a clear message when it is not one.
pub fn parse(bytes: &[u8]) -> Result<Vec<ExportConversation>, WebError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'[') {
        return Err(WebError::param(
            "body",
            "this is not a ChatGPT export: send the array in conversations.json (from ChatGPT's Settings > Data controls > Export)",
        ));
    }
    let convs: Vec<ExportConversation> = crate::extract::parse(bytes).map_err(|e| {
        let detail = match e {
            ApiError::InvalidParam { message, .. } | ApiError::InvalidJson(message) => message,
            other => other.to_string(),
        };
        WebError::param("body", format!("this is not a ChatGPT conversations.json ({detail})"))
    })?;
    if convs.is_empty() {
        return Err(WebError::param("body", "the file has no conversations"));
    }
    Ok(convs)
}

/// `POST /api/import`: `{imported, skipped, conversations: [ids]}` (skipped: no message with text).
pub async fn import(State(st): State<WebState>, CurrentUser(user): CurrentUser, req: Request) -> Result<Response, WebError> {
    let body = Bytes::from_request(req, &()).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            WebError::Api(ApiError::PayloadTooLarge)
        } else {
            WebError::param("body", format!("could not read the request body: {}", e.body_text()))
        }
    })?;
    let convs = parse(&body)?;
    drop(body);
    let mut ids = Vec::new();
    let mut skipped = 0usize;
    for c in &convs {
        let mapped = map_conversation(c);
        if mapped.messages.is_empty() {
            skipped += 1;
            continue;
        }
        let title = if mapped.title.is_empty() {
            mapped.messages.iter().find(|m| m.role == Role::User).map(|m| title::fallback(&m.content)).unwrap_or_default()
        } else {
            mapped.title.chars().take(super::input::MAX_TITLE_CHARS).collect()
        };
        let new = NewConversation { title, system_prompt: None, model: None, settings: Value::Null };
        let conv = st.store.create_conversation(user.id, &new).await?;
        if let Err(e) = insert(&st, user.id, conv.id, &mapped).await {
            // Leave no half-imported conversation behind.
            let _ = st.store.delete_conversation(user.id, conv.id).await;
            return Err(e);
        }
        ids.push(conv.id.to_string());
    }
    tracing::info!(user = ?user.username, imported = ids.len(), skipped, "imported a ChatGPT export");
    Ok((StatusCode::OK, Json(json!({"imported": ids.len(), "skipped": skipped, "conversations": ids}))).into_response())
}

async fn insert(st: &WebState, user: store::UserId, conv: store::ConversationId, c: &ImportedConversation) -> Result<(), WebError> {
    let mut ids: HashMap<&str, MessageId> = HashMap::new();
    for m in &c.messages {
        let parent = m.parent.as_deref().and_then(|p| ids.get(p).copied());
        let mut new = NewMessage::complete(conv, parent, m.role, m.content.clone());
        new.model = m.model.clone().filter(|_| m.role == Role::Assistant);
        let row = st.store.add_message(user, &new).await?;
        ids.insert(&m.node, row.id);
    }
    if let Some(leaf) = c.current.as_deref().and_then(|n| ids.get(n)) {
        st.store.set_current_message(user, conv, *leaf).await?;
    }
    // ChatGPT's own times, where the file has them, so the import sorts among the other
    // conversations by when it happened. Messages without a time take their parent's (or the
    // conversation's), keeping every child at or after its parent.
    let ms = |t: f64| (t.is_finite() && t > 0.0 && t < 1e11).then(|| (t * 1000.0) as i64);
    let conv_created = c.create_time.and_then(ms).or_else(|| c.messages.iter().filter_map(|m| m.create_time.and_then(ms)).min());
    if let Some(created) = conv_created {
        let mut at: HashMap<&str, i64> = HashMap::new();
        let mut times = Vec::with_capacity(c.messages.len());
        for m in &c.messages {
            let parent_at = m.parent.as_deref().and_then(|p| at.get(p).copied()).unwrap_or(created);
            let t = m.create_time.and_then(ms).unwrap_or(parent_at).max(parent_at);
            at.insert(&m.node, t);
            if let Some(id) = ids.get(m.node.as_str()) {
                times.push((*id, t));
            }
        }
        let last = times.iter().map(|(_, t)| *t).max().unwrap_or(created);
        let updated = c.update_time.and_then(ms).unwrap_or(last).max(last).max(created);
        st.store.set_imported_times(user, conv, created, updated, &times).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, parent: Option<&str>, role: &str, text: &str, t: f64) -> (String, Value) {
        (
            id.to_string(),
            json!({"id": id, "parent": parent, "children": [], "message": {
                "id": id, "author": {"role": role}, "create_time": t,
                "content": {"content_type": "text", "parts": [text]}, "metadata": {"model_slug": "gpt-4o"}}}),
        )
    }

    #[test]
    fn maps_a_tree_with_a_branch_and_dropped_nodes() {
        let mut mapping = serde_json::Map::new();
        mapping.insert("root".into(), json!({"id": "root", "message": null, "parent": null, "children": ["sys"]}));
        for (k, v) in [
            node("sys", Some("root"), "system", "You are ChatGPT", 1.0),
            node("u1", Some("sys"), "user", "첫 질문", 2.0),
            node("a1", Some("u1"), "assistant", "first answer", 3.0),
            node("u2b", Some("a1"), "user", "edited", 5.0),
            node("u2", Some("a1"), "user", "original", 4.0),
            node("tool", Some("u2b"), "tool", "search results", 6.0),
            node("a2b", Some("tool"), "assistant", "after tool", 7.0),
            node("empty", Some("a2b"), "assistant", "  ", 8.0),
        ] {
            mapping.insert(k, v);
        }
        let raw = json!([{"title": " 한국어 제목 ", "mapping": mapping, "current_node": "empty"}]).to_string();
        let convs = parse(raw.as_bytes()).expect("export");
        let c = map_conversation(&convs[0]);
        assert_eq!(c.title, "한국어 제목");
        let shape: Vec<(&str, Option<&str>)> = c.messages.iter().map(|m| (m.node.as_str(), m.parent.as_deref())).collect();
        assert_eq!(
            shape,
            vec![("u1", None), ("a1", Some("u1")), ("u2", Some("a1")), ("u2b", Some("a1")), ("a2b", Some("u2b"))]
        );
        assert_eq!(c.current.as_deref(), Some("a2b"), "the empty current node maps to its kept ancestor");
        assert_eq!(c.messages[1].model.as_deref(), Some("gpt-4o"));
    }

    #[test]
    fn refuses_what_is_not_an_export() {
        for bad in [r#"{"a": 1}"#, "", "[]", r#"[{"title": "x"}]"#, r#"[1, 2]"#, "[{"] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad}");
        }
        // Parts that are not text (images) are skipped; content.text is read.
        let v = json!({"content": {"parts": ["a", {"asset": 1}, "b"]}});
        assert_eq!(text_of(&v), "a\nb");
        assert_eq!(text_of(&json!({"content": {"content_type": "code", "text": "print(1)"}})), "print(1)");
    }
}

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
//! An export is untrusted and can be large, so the work is bounded:
//!
//! * the body is read up to [`ImportLimits::max_bytes`] (`daehwa serve --import-limit`, 64 MiB
//!   by default): a larger `Content-Length` is refused at once and a body that grows past it
//!   while streaming is cut off, 413 either way;
//! * one import per user at a time (a second answers 409), and at most [`PARSE_SLOTS`] files
//!   are parsed at once on the whole server;
//! * parsing and mapping run on the blocking pool, never on the async workers, in time linear
//!   in the nodes ([`mapping`]), keeping only what is imported ([`export`]), with at most
//!   [`ImportLimits::max_nodes`] nodes (400 beyond);
//! * the rows go in by batches, one transaction each ([`store::Store::import_conversation`]).

pub mod export;
pub mod mapping;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde_json::json;
use store::UserId;

use super::error::WebError;
use super::session::CurrentUser;
use super::WebState;

/// The default largest export (`--import-limit`).
pub const DEFAULT_BODY_LIMIT: usize = 64 << 20;
/// The default most nodes (and conversations) of one export.
pub const DEFAULT_NODE_LIMIT: usize = 1_000_000;
/// How many exports the server parses at once (each holds its file and what it keeps).
pub const PARSE_SLOTS: usize = 2;

/// The bounds of one import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportLimits {
    pub max_bytes: usize,
    pub max_nodes: usize,
}

impl Default for ImportLimits {
    fn default() -> Self {
        ImportLimits { max_bytes: DEFAULT_BODY_LIMIT, max_nodes: DEFAULT_NODE_LIMIT }
    }
}

/// The imports in progress: one per user, and the parse slots.
#[derive(Debug)]
pub struct Imports {
    limits: ImportLimits,
    running: Mutex<HashSet<UserId>>,
    parsing: tokio::sync::Semaphore,
}

impl Imports {
    pub fn new(limits: ImportLimits) -> Self {
        Imports { limits, running: Mutex::default(), parsing: tokio::sync::Semaphore::new(PARSE_SLOTS) }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashSet<UserId>> {
        // Inserts and removes only: a poisoned set is still consistent.
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks `user`'s import as running until the returned guard drops; 409 if one is.
    fn begin(self: &Arc<Self>, user: UserId) -> Result<Running, WebError> {
        if !self.running().insert(user) {
            return Err(WebError::Conflict(
                "an import of yours is already running: wait for it to finish, then try again".into(),
            ));
        }
        Ok(Running { imports: self.clone(), user })
    }
}

struct Running {
    imports: Arc<Imports>,
    user: UserId,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.imports.running().remove(&self.user);
    }
}

fn too_large(limit: usize) -> WebError {
    WebError::TooLarge(format!(
        "the export is larger than this server's import limit of {} MiB (daehwa serve --import-limit)",
        limit >> 20
    ))
}

/// Reads the body up to `limit` bytes: 413 as soon as it is known to be larger.
async fn read_body(req: Request, limit: usize) -> Result<Vec<u8>, WebError> {
    let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    let mut out = Vec::with_capacity(declared.map_or(0, |n| n as usize));
    let mut stream = req.into_body().into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| WebError::param("body", format!("could not read the request body: {e}")))?;
        if out.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// `POST /api/import`: `{imported, skipped, conversations: [ids]}` (skipped: no message with text).
#[utoipa::path(post, path = "/api/import", tag = "web", request_body(content = Object, description = "a ChatGPT export (`conversations.json` or its zip)", content_type = "application/json"), responses((status = 201, description = "`{imported, skipped}`", body = Object), (status = "4XX", description = "An error: {\"error\": {\"message\", \"param\"?}}", body = Object)))]
pub async fn import(State(st): State<WebState>, CurrentUser(user): CurrentUser, req: Request) -> Result<Response, WebError> {
    let _running = st.imports.begin(user.id)?;
    let limits = st.imports.limits;
    let body = read_body(req, limits.max_bytes).await?;
    let parsed = {
        let _slot = st.imports.parsing.acquire().await.map_err(WebError::internal)?;
        let now = store::now_ms();
        tokio::task::spawn_blocking(move || export::parse(&body, limits.max_nodes, now))
            .await
            .map_err(WebError::internal)?
    };
    let export = parsed.map_err(|e| WebError::param("body", e.to_string()))?;
    let mut ids = Vec::with_capacity(export.conversations.len());
    for c in &export.conversations {
        let conv = st.store.import_conversation(user.id, c).await?;
        ids.push(conv.id.to_string());
    }
    let messages: usize = export.conversations.iter().map(|c| c.messages.len()).sum();
    tracing::info!(user = ?user.username, imported = ids.len(), messages, skipped = export.skipped, "imported a ChatGPT export");
    let body = json!({"imported": ids.len(), "skipped": export.skipped, "conversations": ids});
    Ok((StatusCode::OK, Json(body)).into_response())
}

#[cfg(test)]
mod tests {
    use super::export::{parse, ExportError};
    use serde_json::{json, Value};
    use std::time::{Duration, Instant};
    use store::Role;

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
        let export = parse(raw.as_bytes(), 100, 0).expect("export");
        let c = &export.conversations[0];
        assert_eq!(c.new.title, "한국어 제목");
        let text = |i: Option<usize>| i.map(|i| c.messages[i].content.as_str());
        let shape: Vec<(&str, Option<&str>)> = c.messages.iter().map(|m| (m.content.as_str(), text(m.parent))).collect();
        assert_eq!(
            shape,
            vec![
                ("첫 질문", None),
                ("first answer", Some("첫 질문")),
                ("original", Some("first answer")),
                ("edited", Some("first answer")),
                ("after tool", Some("edited"))
            ]
        );
        assert_eq!(text(c.current), Some("after tool"), "the empty current node maps to its kept ancestor");
        assert_eq!(c.messages[1].model.as_deref(), Some("gpt-4o"));
        assert_eq!(c.messages[0].model, None, "a user's message has no model");
        assert_eq!(c.messages[0].created_at, 2000);
        assert_eq!(c.updated_at, Some(7000));
    }

    #[test]
    fn refuses_what_is_not_an_export() {
        for bad in [r#"{"a": 1}"#, "", "[]", r#"[{"title": "x"}]"#, r#"[1, 2]"#, "[{", "[] x"] {
            assert!(parse(bad.as_bytes(), 100, 0).is_err(), "{bad}");
        }
        // Parts that are not text (images) are skipped; content.text is read; fields of an
        // unexpected type are read as absent.
        let raw = json!([{"title": 5, "create_time": "yesterday", "mapping": {
            "a": {"message": {"author": {"role": "user"}, "content": {"parts": ["a", {"asset": 1}, "b"]}}},
            "b": {"parent": "a", "message": {"author": {"role": "assistant"}, "create_time": "noon", "metadata": [],
                  "content": {"content_type": "code", "text": "print(1)"}}},
            "c": 7,
            "d": {"parent": ["a"], "message": {"author": "user", "content": {"parts": ["x"]}}}
        }}]);
        let export = parse(raw.to_string().as_bytes(), 100, 42).expect("export");
        let c = &export.conversations[0];
        let texts: Vec<(&str, Option<usize>, Role)> = c.messages.iter().map(|m| (m.content.as_str(), m.parent, m.role)).collect();
        assert_eq!(texts, vec![("a\nb", None, Role::User), ("print(1)", Some(0), Role::Assistant)]);
        assert_eq!(c.new.title, "a", "no title: from the first question");
        assert!(c.messages.iter().all(|m| m.created_at == 42), "no times at all: the import's time");
        assert_eq!(c.created_at, None);
    }

    #[test]
    fn the_node_budget_covers_the_whole_file() {
        let conv = |n: usize| {
            let mapping: serde_json::Map<String, Value> =
                (0..n).map(|i| (format!("n{i}"), json!({"parent": i.checked_sub(1).map(|p| format!("n{p}"))}))).collect();
            json!({"mapping": mapping})
        };
        let raw = json!([conv(40), conv(40)]).to_string();
        assert_eq!(parse(raw.as_bytes(), 100, 0).expect("82 fit in 100").skipped, 2);
        let e = parse(raw.as_bytes(), 60, 0).expect_err("82 do not fit in 60");
        assert_eq!(e, ExportError::TooManyNodes(60));
        assert!(e.to_string().contains("more than 60 message nodes"), "{e}");
    }

    /// A chain of `n` nodes where every other node is dropped (no message), as a file.
    fn chain(n: usize) -> Vec<u8> {
        let mut s = String::from(r#"[{"title":"chain","current_node":"n"#);
        s.push_str(&format!("{}\",\"mapping\":{{", n - 1));
        for i in 0..n {
            if i > 0 {
                s.push(',');
            }
            let parent = if i == 0 { "null".to_string() } else { format!("\"n{}\"", i - 1) };
            if i % 2 == 0 {
                s.push_str(&format!(r#""n{i}":{{"parent":{parent},"message":null}}"#));
            } else {
                let role = if i % 4 == 1 { "user" } else { "assistant" };
                s.push_str(&format!(
                    r#""n{i}":{{"parent":{parent},"message":{{"author":{{"role":"{role}"}},"create_time":{},"content":{{"parts":["m{i}"]}}}}}}"#,
                    1_700_000_000 + i
                ));
            }
        }
        s.push_str("}}]");
        s.into_bytes()
    }

    fn time_to_map(n: usize) -> Duration {
        let file = chain(n);
        let t = Instant::now();
        let export = parse(&file, usize::MAX, 0).expect("chain");
        let took = t.elapsed();
        let c = &export.conversations[0];
        assert_eq!(c.messages.len(), n / 2);
        assert!(c.messages.iter().enumerate().all(|(i, m)| m.parent == i.checked_sub(1)), "one chain, in order");
        assert_eq!(c.current, Some(n / 2 - 1));
        took
    }

    /// The old mapping walked to the root from every message (quadratic: minutes for this
    /// chain); now 200 000 nodes take well under a second, and ten times the nodes about ten
    /// times the time. No recursion: the chain is 200 000 levels deep.
    #[test]
    fn a_200k_node_chain_maps_in_linear_time() {
        let small = time_to_map(20_000);
        let big = time_to_map(200_000);
        assert!(big < Duration::from_secs(5), "200k nodes took {big:?}");
        assert!(big < small * 40 + Duration::from_millis(200), "20k: {small:?}, 200k: {big:?}");
    }

    #[test]
    fn cycles_are_cut() {
        let raw = json!([{"current_node": "b", "mapping": {
            "a": {"parent": "c", "message": {"author": {"role": "user"}, "content": {"parts": ["a"]}}},
            "b": {"parent": "a", "message": {"author": {"role": "assistant"}, "content": {"parts": ["b"]}}},
            "c": {"parent": "b", "message": null},
            "d": {"parent": "d", "message": {"author": {"role": "user"}, "content": {"parts": ["d"]}}}
        }}]);
        let export = parse(raw.to_string().as_bytes(), 100, 0).expect("export");
        let c = &export.conversations[0];
        assert_eq!(c.messages.len(), 3);
        for (i, m) in c.messages.iter().enumerate() {
            assert!(m.parent.is_none_or(|p| p < i), "parents first: {:?}", c.messages);
        }
        assert!(c.messages.iter().any(|m| m.parent.is_none()));
    }
}

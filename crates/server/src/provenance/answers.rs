//! Answer fingerprints end to end: the key they are made with ([`AnswerKey`]), writing one for
//! every answer the web UI stores ([`record`]), fingerprinting the answers stored before there
//! were fingerprints ([`backfill`]), and the admin's search (`POST /api/provenance/match`,
//! [`match_text`]).
//!
//! ```text
//!  answer finished (web::answer) ─> record: fingerprint (blocking pool) ─> store
//!  server start ─> backfill: answers without one, 64 at a time, in id order ─> store
//!  admin: POST /api/provenance/match {text} ─> fingerprint ─> Store::match_answers
//! ```
//!
//! The key is the watermark key when the server has one (`--watermark-key-file`), else 32
//! random bytes kept in the data directory (`answer-fingerprint.key`, mode 0600, created on
//! first start). Servers sharing one database must share the key; a new key leaves the
//! fingerprints made with the old one unmatchable. `/v1` answers are not stored, so they have
//! none (their watermark is what identifies them).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use store::{MessageId, Store, UserId};

use super::fingerprint::{fingerprint, Fingerprint};
use crate::extract::ApiJson;
use crate::web::error::WebError;
use crate::web::session::Admin;
use crate::web::WebState;

/// The data directory's key file (used when there is no watermark key).
pub const KEY_FILE: &str = "answer-fingerprint.key";
/// The longest text an admin may match, in bytes (413 beyond).
pub const MAX_MATCH_TEXT_BYTES: usize = 256 << 10;
/// The largest match request body: the text, JSON-escaped, and the other fields.
pub const MATCH_BODY_LIMIT: usize = 2 * MAX_MATCH_TEXT_BYTES;
/// Similarity below which a stored answer is not reported, unless the request says otherwise.
/// A copy with one word in ten replaced keeps a similarity around 0.5; unrelated texts share
/// almost no keyed 3-word shingles.
pub const DEFAULT_MIN_SIMILARITY: f64 = 0.3;
/// Most matches reported.
pub const MAX_MATCHES: usize = 50;
/// Answers the backfill fingerprints per store round trip.
pub const BACKFILL_BATCH: usize = 64;

/// The secret the fingerprints are keyed with. Never printed.
#[derive(Clone)]
pub struct AnswerKey(Arc<[u8]>);

impl std::fmt::Debug for AnswerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AnswerKey(..)")
    }
}

/// Why the key could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("reading the answer fingerprint key {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("writing the answer fingerprint key {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("the answer fingerprint key {path} is empty")]
    Empty { path: PathBuf },
    #[error("{0}")]
    Dir(#[from] store::StoreError),
}

impl AnswerKey {
    /// A key from secret bytes (ASCII whitespace around them is ignored, as for the watermark
    /// key file).
    pub fn new(secret: &[u8]) -> Option<Self> {
        let s = secret.trim_ascii();
        (!s.is_empty()).then(|| AnswerKey(Arc::from(s)))
    }

    /// The server's key: the watermark key file's secret when one is given, else the data
    /// directory's [`KEY_FILE`] (created with 32 random bytes, mode 0600, when missing).
    pub fn load(watermark_key_file: Option<&Path>, data_dir: &Path) -> Result<Self, KeyError> {
        if let Some(path) = watermark_key_file {
            let bytes = std::fs::read(path).map_err(|source| KeyError::Read { path: path.to_path_buf(), source })?;
            return Self::new(&bytes).ok_or_else(|| KeyError::Empty { path: path.to_path_buf() });
        }
        let path = data_dir.join(KEY_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => return Self::new(&bytes).ok_or(KeyError::Empty { path }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(KeyError::Read { path, source }),
        }
        store::private::create_private_dir(data_dir)?;
        let key = crate::keyfile::create(&path).map_err(|source| KeyError::Write { path, source })?;
        Ok(AnswerKey(Arc::from(&key[..])))
    }

    /// The fingerprint of `text` under this key (CPU work: call off the async workers).
    pub fn fingerprint(&self, text: &str) -> Fingerprint {
        fingerprint(&self.0, text)
    }
}

/// Fingerprints a stored answer and records it with `marked` (the answer was generated with
/// the watermark on). Failures are logged, not returned: the answer itself is saved already.
pub async fn record(store: &Store, key: &AnswerKey, owner: UserId, answer: MessageId, text: String, marked: bool) -> bool {
    let key = key.clone();
    let fp = match tokio::task::spawn_blocking(move || key.fingerprint(&text)).await {
        Ok(fp) => fp,
        Err(e) => {
            tracing::warn!(error = %e, message = %answer, "could not fingerprint the answer");
            return false;
        }
    };
    match store.set_answer_fingerprint(owner, answer, marked, &fp.exact, &fp.shingles).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = ?e.to_string(), message = %answer, "could not save the answer's fingerprint");
            false
        }
    }
}

/// Fingerprints every finished answer stored without one (answers from before fingerprints,
/// imported ones, streams a stopped server left incomplete), [`BACKFILL_BATCH`] at a time in
/// id order, one at a time on the blocking pool. Idempotent: only answers without a fingerprint
/// are read, and a cursor makes one that cannot be written be skipped rather than retried.
/// Returns how many it wrote.
pub async fn backfill(store: Store, key: AnswerKey) -> u64 {
    let mut after = MessageId(0);
    let mut written = 0u64;
    loop {
        let batch = match store.answers_without_fingerprint(after, BACKFILL_BATCH).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = ?e.to_string(), "answer fingerprint backfill stopped");
                break;
            }
        };
        let Some(last) = batch.last().map(|b| b.1) else { break };
        after = last;
        for (owner, answer, text, marked) in batch {
            written += u64::from(record(&store, &key, owner, answer, text, marked).await);
        }
    }
    if written > 0 {
        tracing::info!(answers = written, "fingerprinted answers stored without one");
    }
    written
}

/// `POST /api/provenance/match`'s body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchRequest {
    /// The text to look for: a copy, exact or edited, of a stored answer.
    pub text: String,
    /// The lowest similarity (0 to 1) reported; default 0.3.
    #[serde(default)]
    pub min_similarity: Option<f64>,
}

/// A checked [`MatchRequest`].
#[derive(Debug)]
pub struct MatchQuery {
    pub text: String,
    pub min_similarity: f64,
}

impl TryFrom<MatchRequest> for MatchQuery {
    type Error = WebError;

    fn try_from(r: MatchRequest) -> Result<Self, WebError> {
        if r.text.len() > MAX_MATCH_TEXT_BYTES {
            return Err(WebError::TooLarge(format!("the text is {} bytes; at most {MAX_MATCH_TEXT_BYTES} can be matched", r.text.len())));
        }
        if r.text.trim().is_empty() {
            return Err(WebError::param("text", "the text to match is empty"));
        }
        let min_similarity = r.min_similarity.unwrap_or(DEFAULT_MIN_SIMILARITY);
        if !(min_similarity.is_finite() && (0.0..=1.0).contains(&min_similarity)) {
            return Err(WebError::param("min_similarity", "must be a number from 0 to 1"));
        }
        Ok(MatchQuery { text: r.text, min_similarity })
    }
}

/// `POST /api/provenance/match {text, min_similarity?}` (admins only): the stored answers the
/// text is a copy of, exact first, then by similarity.
#[utoipa::path(post, operation_id = "match_answers", path = "/api/provenance/match", tag = "web", request_body = MatchRequest, responses((status = 200, description = "`{matches: [{conversation_id, message_id, owner_id, owner, similarity, exact}]}`, best first (admins only)", body = Object), (status = "4XX", description = "An error: {\"error\": {\"message\", \"param\"?}}; 413 for a text over 256 KiB", body = Object)))]
pub async fn match_text(State(st): State<WebState>, Admin(admin): Admin, ApiJson(req): ApiJson<MatchRequest>) -> Result<Json<Value>, WebError> {
    let q = MatchQuery::try_from(req)?;
    let Some(key) = st.answer_key.clone() else {
        return Err(WebError::param("text", "this server keeps no answer fingerprints"));
    };
    let text = q.text;
    let fp = tokio::task::spawn_blocking(move || key.fingerprint(&text)).await.map_err(WebError::internal)?;
    if fp.shingles.is_empty() {
        return Err(WebError::param("text", "the text has no words to match"));
    }
    let found = st.store.match_answers(admin.id, &fp.exact, &fp.shingles, q.min_similarity, MAX_MATCHES).await?;
    let matches: Vec<Value> = found
        .iter()
        .map(|m| {
            json!({
                "conversation_id": m.conversation_id.to_string(),
                "message_id": m.message_id.to_string(),
                "owner_id": m.owner.to_string(),
                "owner": m.owner_name,
                "similarity": m.similarity,
                "exact": m.exact,
            })
        })
        .collect();
    Ok(Json(json!({ "matches": matches })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(text: &str, min: Option<f64>) -> Result<MatchQuery, WebError> {
        MatchQuery::try_from(MatchRequest { text: text.into(), min_similarity: min })
    }

    #[test]
    fn match_requests_are_checked() {
        assert_eq!(query("some text", None).unwrap().min_similarity, DEFAULT_MIN_SIMILARITY);
        assert_eq!(query(" \n ", None).unwrap_err().status(), axum::http::StatusCode::BAD_REQUEST);
        assert_eq!(query("x", Some(1.5)).unwrap_err().status(), axum::http::StatusCode::BAD_REQUEST);
        assert_eq!(query("x", Some(f64::NAN)).unwrap_err().status(), axum::http::StatusCode::BAD_REQUEST);
        let big = "a ".repeat(MAX_MATCH_TEXT_BYTES);
        assert_eq!(query(&big, None).unwrap_err().status(), axum::http::StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn key_is_kept_private_in_the_data_dir_or_taken_from_the_watermark_file() {
        let dir = std::env::temp_dir().join(format!("daehwa-answer-key-{}-{:?}", std::process::id(), std::thread::current().id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = AnswerKey::load(None, &dir).expect("create");
        let b = AnswerKey::load(None, &dir).expect("read again");
        assert_eq!(a.fingerprint("the same words here"), b.fingerprint("the same words here"), "the same key on every start");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(KEY_FILE)).expect("key file").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let wm = dir.join("wm.key");
        std::fs::write(&wm, "0123456789abcdef-secret\n").expect("write");
        let c = AnswerKey::load(Some(&wm), &dir).expect("watermark key");
        assert_eq!(c.fingerprint("x y z"), fingerprint(b"0123456789abcdef-secret", "x y z"));
        assert_ne!(c.fingerprint("x y z"), a.fingerprint("x y z"));
        std::fs::write(&wm, "  \n").expect("write");
        assert!(matches!(AnswerKey::load(Some(&wm), &dir), Err(KeyError::Empty { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

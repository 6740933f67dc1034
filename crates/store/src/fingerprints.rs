//! Answer provenance: the keyed hashes an admin matches a copied text against.
//!
//! The store only keeps and compares hashes; normalising the text and keying the hashes with
//! the server secret is the caller's job (the server's `provenance` module), so the same
//! secret never reaches the database.

use crate::error::{Result, StoreError};
use crate::types::{ConversationId, MessageId, UserId};
use crate::{with_pool, Store};

/// The most shingle hashes one answer (or one query) may carry: a bounded MinHash sketch.
pub const MAX_SHINGLES: usize = 256;

/// A stored answer that matches a queried text.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AnswerMatch {
    pub conversation_id: ConversationId,
    pub message_id: MessageId,
    pub owner: UserId,
    pub owner_name: String,
    /// Jaccard similarity of the two shingle sets (1.0 for an exact copy).
    pub similarity: f64,
    /// The normalised texts are identical.
    pub exact: bool,
}

impl Store {
    /// Records an answer's provenance: whether it was generated with the watermark on, the keyed
    /// hash of its normalised text and the keyed hashes of its shingle sketch (at most
    /// [`MAX_SHINGLES`], duplicates ignored). Replaces an earlier fingerprint of the same answer
    /// (a regenerated or edited answer). The message must be one of the actor's.
    pub async fn set_answer_fingerprint(
        &self,
        actor: UserId,
        id: MessageId,
        marked: bool,
        exact_hash: &str,
        shingles: &[i64],
    ) -> Result<()> {
        let mut shingles = shingles.to_vec();
        shingles.sort_unstable();
        shingles.dedup();
        if shingles.len() > MAX_SHINGLES {
            return Err(StoreError::Invalid(format!("at most {MAX_SHINGLES} shingle hashes per answer")));
        }
        const MARK: &str = "UPDATE messages SET marked = $3 WHERE id = $1 AND \
            conversation_id IN (SELECT id FROM conversations WHERE user_id = $2)";
        const DELETE: &str = "DELETE FROM answer_fingerprints WHERE message_id = $1";
        const INSERT: &str = "INSERT INTO answer_fingerprints (message_id, exact_hash, shingle_count) VALUES ($1, $2, $3)";
        const SHINGLE: &str = "INSERT INTO answer_shingles (message_id, hash) VALUES ($1, $2)";
        let count = shingles.len() as i64;
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let done = sqlx::query(MARK).bind(id).bind(actor).bind(marked).execute(&mut *tx).await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
            sqlx::query(DELETE).bind(id).execute(&mut *tx).await?;
            sqlx::query(INSERT).bind(id).bind(exact_hash).bind(count).execute(&mut *tx).await?;
            for h in &shingles {
                sqlx::query(SHINGLE).bind(id).bind(*h).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Up to `limit` finished answers (`complete` or `incomplete`) that have no fingerprint yet,
    /// with ids above `after`, in id order: what the server's start-up backfill fingerprints
    /// (it passes the last id it saw, so an answer it could not fingerprint is not retried
    /// forever). Each is `(owner, answer id, text, marked)`. A server-side maintenance read: no
    /// actor, never reachable from a request.
    pub async fn answers_without_fingerprint(&self, after: MessageId, limit: usize) -> Result<Vec<(UserId, MessageId, String, bool)>> {
        const SQL: &str = "SELECT c.user_id, m.id, m.content, m.marked FROM messages m \
             JOIN conversations c ON c.id = m.conversation_id \
             LEFT JOIN answer_fingerprints f ON f.message_id = m.id \
             WHERE m.role = 'assistant' AND m.status <> 'streaming' AND f.message_id IS NULL AND m.id > $1 \
             ORDER BY m.id LIMIT $2";
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<(i64, i64, String, bool)> = with_pool!(self, pool => sqlx::query_as(SQL).bind(after).bind(limit).fetch_all(pool).await?);
        Ok(rows.into_iter().map(|(u, m, text, marked)| (UserId(u), MessageId(m), text, marked)).collect())
    }

    /// The stored answers that match a text, for an admin ([`StoreError::Forbidden`]
    /// otherwise): those with the same exact hash, and those whose shingle sketch has a Jaccard
    /// similarity of at least `min_similarity` with the given one, best first, at most `limit`.
    pub async fn match_answers(
        &self,
        actor: UserId,
        exact_hash: &str,
        shingles: &[i64],
        min_similarity: f64,
        limit: usize,
    ) -> Result<Vec<AnswerMatch>> {
        self.require_admin(actor).await?;
        let mut shingles = shingles.to_vec();
        shingles.sort_unstable();
        shingles.dedup();
        if shingles.len() > MAX_SHINGLES {
            return Err(StoreError::Invalid(format!("at most {MAX_SHINGLES} shingle hashes per query")));
        }
        // `hash IN (...)` with one placeholder per hash: both drivers bind them the same way.
        let list = if shingles.is_empty() {
            "NULL".to_string()
        } else {
            (0..shingles.len()).map(|i| format!("${}", i + 2)).collect::<Vec<_>>().join(", ")
        };
        let sql = format!(
            "SELECT f.message_id, m.conversation_id, c.user_id, u.username, f.exact_hash, f.shingle_count, \
               COALESCE(h.n, 0) \
             FROM answer_fingerprints f \
             JOIN messages m ON m.id = f.message_id \
             JOIN conversations c ON c.id = m.conversation_id \
             JOIN users u ON u.id = c.user_id \
             LEFT JOIN (SELECT message_id, COUNT(*) AS n FROM answer_shingles WHERE hash IN ({list}) \
                        GROUP BY message_id) h ON h.message_id = f.message_id \
             WHERE f.exact_hash = $1 OR h.n IS NOT NULL"
        );
        type Row = (i64, i64, i64, String, String, i64, i64);
        let rows: Vec<Row> = with_pool!(self, pool => {
            // Only placeholders are formatted into the text; every value is bound.
            let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(exact_hash);
            for h in &shingles {
                q = q.bind(*h);
            }
            q.fetch_all(pool).await?
        });
        let query_count = shingles.len() as i64;
        let mut out: Vec<AnswerMatch> = rows
            .into_iter()
            .map(|(message, conversation, owner, owner_name, hash, stored, common)| {
                let exact = hash == exact_hash;
                let union = stored + query_count - common;
                let similarity = if exact { 1.0 } else if union > 0 { common as f64 / union as f64 } else { 0.0 };
                AnswerMatch {
                    conversation_id: ConversationId(conversation),
                    message_id: MessageId(message),
                    owner: UserId(owner),
                    owner_name,
                    similarity,
                    exact,
                }
            })
            .filter(|m| m.exact || m.similarity >= min_similarity)
            .collect();
        out.sort_by(|a, b| b.exact.cmp(&a.exact).then(b.similarity.total_cmp(&a.similarity)).then(b.message_id.0.cmp(&a.message_id.0)));
        out.truncate(limit);
        Ok(out)
    }
}

//! Conversations: create, list, read, update, delete and search, always scoped to the owner.

use crate::error::{Result, StoreError};
use crate::rows::{conversation_columns, conversation_columns_c, convert_all, ConversationRow};
use crate::types::{
    Conversation, ConversationId, ConversationPatch, MessageId, NewConversation, SearchHit,
    UserId,
};
use crate::{now_ms, with_pool, Store};

/// Characters of context kept on each side of a search match in a snippet.
const SNIPPET_CONTEXT_CHARS: usize = 60;

fn settings_text(settings: &serde_json::Value) -> Result<String> {
    match settings {
        serde_json::Value::Null => Ok("{}".to_string()),
        serde_json::Value::Object(_) => Ok(settings.to_string()),
        _ => Err(StoreError::Invalid("settings must be a JSON object".into())),
    }
}

/// A `LIKE` pattern matching `needle` anywhere, with `%`, `_` and `\` taken literally
/// (used with `ESCAPE '\'`), lowercased to pair with `lower(column)`.
fn like_pattern(needle: &str) -> String {
    let mut p = String::with_capacity(needle.len() + 2);
    p.push('%');
    for c in needle.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// A short excerpt of `text` around the first case-insensitive occurrence of `needle`, cut on
/// character boundaries (Korean text is never split inside a syllable).
pub(crate) fn snippet(text: &str, needle: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let lower: Vec<char> = chars
        .iter()
        .map(|c| c.to_lowercase().next().unwrap_or(*c))
        .collect();
    let pat: Vec<char> = needle
        .chars()
        .map(|c| c.to_lowercase().next().unwrap_or(c))
        .collect();
    let at = if pat.is_empty() {
        0
    } else {
        lower.windows(pat.len()).position(|w| w == pat.as_slice()).unwrap_or(0)
    };
    let start = at.saturating_sub(SNIPPET_CONTEXT_CHARS);
    let end = (at + pat.len() + SNIPPET_CONTEXT_CHARS).min(chars.len());
    let mut s = String::new();
    if start > 0 {
        s.push('…');
    }
    s.extend(&chars[start..end]);
    if end < chars.len() {
        s.push('…');
    }
    s
}

impl Store {
    /// Starts a conversation owned by `actor`.
    pub async fn create_conversation(
        &self,
        actor: UserId,
        new: &NewConversation,
    ) -> Result<Conversation> {
        let settings = settings_text(&new.settings)?;
        let now = now_ms();
        const SQL: &str = concat!(
            "INSERT INTO conversations \
             (user_id, title, system_prompt, model, settings, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING ", conversation_columns!()
        );
        let row: ConversationRow = with_pool!(self, pool => sqlx::query_as(SQL)
            .bind(actor)
            .bind(&new.title)
            .bind(&new.system_prompt)
            .bind(&new.model)
            .bind(&settings)
            .bind(now)
            .fetch_one(pool)
            .await?);
        row.try_into()
    }

    /// One of the actor's conversations.
    pub async fn conversation(&self, actor: UserId, id: ConversationId) -> Result<Conversation> {
        const SQL: &str = concat!(
            "SELECT ", conversation_columns!(), " FROM conversations WHERE id = $1 AND user_id = $2"
        );
        let row: Option<ConversationRow> = with_pool!(self, pool => sqlx::query_as(SQL)
            .bind(id)
            .bind(actor)
            .fetch_optional(pool)
            .await?);
        row.ok_or(StoreError::NotFound)?.try_into()
    }

    /// The actor's conversations, most recently updated first (`limit` rows after skipping
    /// `offset`).
    pub async fn list_conversations(
        &self,
        actor: UserId,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<Conversation>> {
        const SQL: &str = concat!(
            "SELECT ", conversation_columns!(), " FROM conversations WHERE user_id = $1 \
             ORDER BY updated_at DESC, id DESC LIMIT $2 OFFSET $3"
        );
        let rows: Vec<ConversationRow> = with_pool!(self, pool => sqlx::query_as(SQL)
            .bind(actor)
            .bind(limit.max(0))
            .bind(offset.max(0))
            .fetch_all(pool)
            .await?);
        convert_all(rows)
    }

    /// Changes some fields of one of the actor's conversations and returns it as stored.
    pub async fn update_conversation(
        &self,
        actor: UserId,
        id: ConversationId,
        patch: &ConversationPatch,
    ) -> Result<Conversation> {
        let settings = patch.settings.as_ref().map(settings_text).transpose()?;
        const SQL: &str = concat!(
            "UPDATE conversations SET \
               title = COALESCE($3, title), \
               system_prompt = CASE WHEN $4 THEN $5 ELSE system_prompt END, \
               model = CASE WHEN $6 THEN $7 ELSE model END, \
               settings = COALESCE($8, settings), \
               updated_at = $9 \
             WHERE id = $1 AND user_id = $2 RETURNING ", conversation_columns!()
        );
        let row: Option<ConversationRow> = with_pool!(self, pool => sqlx::query_as(SQL)
            .bind(id)
            .bind(actor)
            .bind(&patch.title)
            .bind(patch.system_prompt.is_some())
            .bind(patch.system_prompt.clone().flatten())
            .bind(patch.model.is_some())
            .bind(patch.model.clone().flatten())
            .bind(&settings)
            .bind(now_ms())
            .fetch_optional(pool)
            .await?);
        row.ok_or(StoreError::NotFound)?.try_into()
    }

    /// Renames one of the actor's conversations.
    pub async fn rename_conversation(
        &self,
        actor: UserId,
        id: ConversationId,
        title: &str,
    ) -> Result<Conversation> {
        let patch = ConversationPatch {
            title: Some(title.to_string()),
            ..ConversationPatch::default()
        };
        self.update_conversation(actor, id, &patch).await
    }

    /// Remembers which branch the actor is looking at: `leaf` must be a message of this
    /// conversation. Does not change `updated_at` (browsing is not editing).
    pub async fn set_current_message(
        &self,
        actor: UserId,
        id: ConversationId,
        leaf: MessageId,
    ) -> Result<()> {
        let affected = with_pool!(self, pool => sqlx::query(
            "UPDATE conversations SET current_message_id = $3 \
             WHERE id = $1 AND user_id = $2 \
               AND EXISTS (SELECT 1 FROM messages m WHERE m.id = $3 AND m.conversation_id = $1)",
        )
        .bind(id)
        .bind(actor)
        .bind(leaf)
        .execute(pool)
        .await?.rows_affected());
        if affected == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Deletes one of the actor's conversations with all its messages (a real delete: the
    /// rows are gone, not hidden).
    ///
    /// The messages' parent links are cut first: the cascade along `parent_id` would otherwise
    /// recurse once per level, and an imported chain of thousands of messages exceeds SQLite's
    /// 1000 levels of trigger recursion (and PostgreSQL's stack).
    pub async fn delete_conversation(&self, actor: UserId, id: ConversationId) -> Result<()> {
        let affected = with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "UPDATE messages SET parent_id = NULL WHERE conversation_id = $1 AND parent_id IS NOT NULL \
                   AND conversation_id IN (SELECT id FROM conversations WHERE user_id = $2)",
            )
            .bind(id)
            .bind(actor)
            .execute(&mut *tx)
            .await?;
            let affected = sqlx::query("DELETE FROM conversations WHERE id = $1 AND user_id = $2")
                .bind(id)
                .bind(actor)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            affected
        });
        if affected == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// The actor's conversations whose title or any message contains `query` (case-insensitive
    /// for ASCII on SQLite, for all letters on PostgreSQL), most recently updated first, with
    /// the first matching message and an excerpt. An empty query matches nothing.
    pub async fn search(&self, actor: UserId, query: &str, limit: i64) -> Result<Vec<SearchHit>> {
        let query = query.trim();
        if query.is_empty() {
            return Ok(Vec::new());
        }
        let pattern = like_pattern(query);
        const SQL: &str = concat!(
            "SELECT ", conversation_columns_c!(), ", \
               (SELECT m.id FROM messages m WHERE m.conversation_id = c.id \
                  AND lower(m.content) LIKE $2 ESCAPE '\\' ORDER BY m.id LIMIT 1) AS hit_id, \
               (SELECT m.content FROM messages m WHERE m.conversation_id = c.id \
                  AND lower(m.content) LIKE $2 ESCAPE '\\' ORDER BY m.id LIMIT 1) AS hit_content \
             FROM conversations c \
             WHERE c.user_id = $1 AND (lower(c.title) LIKE $2 ESCAPE '\\' OR EXISTS ( \
               SELECT 1 FROM messages m WHERE m.conversation_id = c.id \
                 AND lower(m.content) LIKE $2 ESCAPE '\\')) \
             ORDER BY c.updated_at DESC, c.id DESC LIMIT $3"
        );
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            conversation: ConversationRow,
            hit_id: Option<i64>,
            hit_content: Option<String>,
        }
        let rows: Vec<Row> = with_pool!(self, pool => sqlx::query_as(SQL)
            .bind(actor)
            .bind(&pattern)
            .bind(limit.max(0))
            .fetch_all(pool)
            .await?);
        rows.into_iter()
            .map(|r| {
                Ok(SearchHit {
                    conversation: r.conversation.try_into()?,
                    message_id: r.hit_id.map(MessageId),
                    snippet: r.hit_content.map(|text| snippet(&text, query)),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_pattern_escapes_wildcards() {
        assert_eq!(like_pattern("100%_a\\B"), "%100\\%\\_a\\\\b%");
    }

    #[test]
    fn snippet_cuts_on_characters_around_the_match() {
        let text = format!("{}안녕하세요 WORLD{}", "가".repeat(100), "나".repeat(100));
        let s = snippet(&text, "world");
        assert!(s.starts_with('…') && s.ends_with('…'), "{s}");
        assert!(s.contains("안녕하세요 WORLD"), "{s}");
        assert_eq!(s.chars().count(), 2 + 60 + 5 + 60);
        assert_eq!(snippet("short", "zzz"), "short");
    }
}

//! Messages: one row each, linked by `parent_id`; streamed answers saved as they grow.
//!
//! Every statement filters by the owner through the conversation
//! (`conversation_id IN (SELECT id FROM conversations WHERE user_id = $actor)`), so a message
//! id from another user behaves like one that does not exist. Each write is its own short
//! transaction that starts by writing (never a read upgraded to a write, which SQLite would
//! answer with `SQLITE_BUSY` under concurrent writers).

use crate::error::{Result, StoreError};
use crate::rows::{convert_all, message_columns, MessageRow};
use crate::types::{
    ConversationId, Message, MessageFinish, MessageId, MessageStatus, NewMessage, UserId,
};
use crate::{now_ms, with_pool, Store};

/// The filter that limits a message statement to the actor's conversations (`$2` is the
/// actor).
macro_rules! owned {
    () => {
        "conversation_id IN (SELECT id FROM conversations WHERE user_id = $2)"
    };
}

impl Store {
    /// Adds a message to one of the actor's conversations. The parent must be a message of
    /// that conversation ([`StoreError::NotFound`] otherwise). The conversation's
    /// `updated_at` moves and its current branch becomes the new message.
    pub async fn add_message(&self, actor: UserId, new: &NewMessage) -> Result<Message> {
        let now = now_ms();
        const INSERT: &str = concat!(
            "INSERT INTO messages (conversation_id, parent_id, role, content, model, \
               prompt_tokens, completion_tokens, status, created_at, updated_at) \
             SELECT c.id, $3, $4, $5, $6, $7, $8, $9, $10, $10 FROM conversations c \
             WHERE c.id = $1 AND c.user_id = $2 \
               AND ($3 IS NULL OR EXISTS \
                 (SELECT 1 FROM messages p WHERE p.id = $3 AND p.conversation_id = c.id)) \
             RETURNING ", message_columns!()
        );
        let row: MessageRow = with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let row: Option<MessageRow> = sqlx::query_as(INSERT)
                .bind(new.conversation_id)
                .bind(actor)
                .bind(new.parent_id)
                .bind(new.role.as_str())
                .bind(&new.content)
                .bind(&new.model)
                .bind(new.prompt_tokens)
                .bind(new.completion_tokens)
                .bind(new.status.as_str())
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(row) = row else {
                return Err(StoreError::NotFound);
            };
            let (id,): (i64,) = sqlx::query_as(
                "UPDATE conversations SET updated_at = $2, current_message_id = $3 \
                 WHERE id = $1 RETURNING id",
            )
            .bind(new.conversation_id)
            .bind(now)
            .bind(row.id)
            .fetch_one(&mut *tx)
            .await?;
            debug_assert_eq!(id, new.conversation_id.0);
            tx.commit().await?;
            row
        });
        row.try_into()
    }

    /// Gives an imported conversation and its messages their original times (Unix ms), so an
    /// import sorts among the other conversations by when it happened, not by when it was
    /// imported, and its branches keep their order. Only the actor's conversation, and only
    /// messages of it, are touched ([`StoreError::NotFound`] otherwise); one transaction.
    pub async fn set_imported_times(
        &self,
        actor: UserId,
        conversation: ConversationId,
        created_at: i64,
        updated_at: i64,
        messages: &[(MessageId, i64)],
    ) -> Result<()> {
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let done = sqlx::query(
                "UPDATE conversations SET created_at = $3, updated_at = $4 WHERE id = $1 AND user_id = $2",
            )
            .bind(conversation)
            .bind(actor)
            .bind(created_at)
            .bind(updated_at)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
            for (id, at) in messages {
                let done = sqlx::query(
                    "UPDATE messages SET created_at = $3, updated_at = $3 WHERE id = $1 AND conversation_id = $2",
                )
                .bind(*id)
                .bind(conversation)
                .bind(*at)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// One of the actor's messages.
    pub async fn message(&self, actor: UserId, id: MessageId) -> Result<Message> {
        const SQL: &str = concat!("SELECT ", message_columns!(), " FROM messages WHERE id = $1 AND ", owned!());
        let row: Option<MessageRow> = with_pool!(self, pool => sqlx::query_as(SQL)
            .bind(id)
            .bind(actor)
            .fetch_optional(pool)
            .await?);
        row.ok_or(StoreError::NotFound)?.try_into()
    }

    /// Every message of one of the actor's conversations (all branches), oldest first. The
    /// [`crate::tree`] helpers turn it into the branch to show.
    pub async fn messages(&self, actor: UserId, conversation: ConversationId) -> Result<Vec<Message>> {
        // Ownership is checked first so that another user's conversation is NotFound rather
        // than an empty list.
        self.conversation(actor, conversation).await?;
        const SQL: &str = concat!(
            "SELECT ", message_columns!(), " FROM messages WHERE conversation_id = $1 AND ", owned!(), " \
             ORDER BY id"
        );
        let rows: Vec<MessageRow> = with_pool!(self, pool => sqlx::query_as(SQL)
            .bind(conversation)
            .bind(actor)
            .fetch_all(pool)
            .await?);
        convert_all(rows)
    }

    /// Appends streamed text to a `streaming` message and commits it, so that what was shown
    /// survives a crash. Call it per flush (every few hundred milliseconds or tokens), not per
    /// token. Also the stream's heartbeat (`updated_at`).
    pub async fn append_to_message(&self, actor: UserId, id: MessageId, delta: &str) -> Result<()> {
        const SQL: &str = concat!(
            "UPDATE messages SET content = content || $3, updated_at = $4 \
             WHERE id = $1 AND status = 'streaming' AND ", owned!()
        );
        let affected = with_pool!(self, pool => sqlx::query(SQL)
            .bind(id)
            .bind(actor)
            .bind(delta)
            .bind(now_ms())
            .execute(pool)
            .await?.rows_affected());
        self.expect_streaming_write(actor, id, affected).await
    }

    /// Replaces the whole text of a `streaming` message (the alternative to appending when
    /// the caller keeps the full text).
    pub async fn update_message_content(
        &self,
        actor: UserId,
        id: MessageId,
        content: &str,
    ) -> Result<()> {
        const SQL: &str = concat!(
            "UPDATE messages SET content = $3, updated_at = $4 \
             WHERE id = $1 AND status = 'streaming' AND ", owned!()
        );
        let affected = with_pool!(self, pool => sqlx::query(SQL)
            .bind(id)
            .bind(actor)
            .bind(content)
            .bind(now_ms())
            .execute(pool)
            .await?.rows_affected());
        self.expect_streaming_write(actor, id, affected).await
    }

    /// Ends a stream: `Complete` at the natural end, `Incomplete` when stopped or failed,
    /// optionally with the final full text and the token counts.
    pub async fn finish_message(
        &self,
        actor: UserId,
        id: MessageId,
        finish: &MessageFinish,
    ) -> Result<Message> {
        if finish.status == MessageStatus::Streaming {
            return Err(StoreError::Invalid("a stream finishes complete or incomplete".into()));
        }
        const SQL: &str = concat!(
            "UPDATE messages SET status = $3, content = COALESCE($4, content), \
               prompt_tokens = COALESCE($5, prompt_tokens), \
               completion_tokens = COALESCE($6, completion_tokens), updated_at = $7, \
               energy_uj = COALESCE($8, energy_uj), energy_method = COALESCE($9, energy_method) \
             WHERE id = $1 AND status = 'streaming' AND ", owned!(), " RETURNING ", message_columns!()
        );
        let now = now_ms();
        let row: Option<MessageRow> = with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let row: Option<MessageRow> = sqlx::query_as(SQL)
                .bind(id)
                .bind(actor)
                .bind(finish.status.as_str())
                .bind(&finish.content)
                .bind(finish.prompt_tokens)
                .bind(finish.completion_tokens)
                .bind(now)
                .bind(finish.energy.as_ref().map(|e| e.0))
                .bind(finish.energy.as_ref().map(|e| e.1.clone()))
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(row) = &row {
                sqlx::query("UPDATE conversations SET updated_at = $2 WHERE id = $1")
                    .bind(row.conversation_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            row
        });
        match row {
            Some(row) => row.try_into(),
            None => {
                self.expect_streaming_write(actor, id, 0).await?;
                Err(StoreError::NotFound)
            }
        }
    }

    /// Deletes one of the actor's messages and every message below it (its branch). If the
    /// conversation's current branch was inside it, the current branch moves to the parent.
    pub async fn delete_message(&self, actor: UserId, id: MessageId) -> Result<()> {
        const SQL: &str = concat!(
            "DELETE FROM messages WHERE id = $1 AND ", owned!(), " RETURNING conversation_id, parent_id"
        );
        // Every descendant is re-parented onto the deleted message first, so the cascade along
        // `parent_id` is one level deep however long the branch is (SQLite caps the recursion of
        // cascading deletes, and a 200k-message imported chain is far deeper).
        const FLATTEN: &str = concat!(
            "UPDATE messages SET parent_id = $1 WHERE id IN (",
            "WITH RECURSIVE sub(id) AS (",
            "SELECT c.id FROM messages c WHERE c.parent_id = $1 ",
            "UNION ALL SELECT m.id FROM messages m JOIN sub ON m.parent_id = sub.id) ",
            "SELECT id FROM sub) AND EXISTS (SELECT 1 FROM messages r WHERE r.id = $1 AND r.", owned!(), ")"
        );
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(FLATTEN).bind(id).bind(actor).execute(&mut *tx).await?;
            let row: Option<(i64, Option<i64>)> = sqlx::query_as(SQL)
                .bind(id)
                .bind(actor)
                .fetch_optional(&mut *tx)
                .await?;
            let Some((conversation, parent)) = row else {
                return Err(StoreError::NotFound);
            };
            sqlx::query(
                "UPDATE conversations SET current_message_id = $2, updated_at = $3 \
                 WHERE id = $1 AND current_message_id IS NOT NULL AND NOT EXISTS \
                   (SELECT 1 FROM messages m WHERE m.id = conversations.current_message_id)",
            )
            .bind(conversation)
            .bind(parent)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Marks every message still `streaming` whose last write is older than `stale_before`
    /// (Unix ms) as `incomplete`, and returns how many. `connect` runs it at start (a stream
    /// cannot outlive the process that wrote it); a multi-replica deployment can also run it
    /// periodically with a grace period.
    pub async fn recover_interrupted(&self, stale_before: i64) -> Result<u64> {
        let affected = with_pool!(self, pool => sqlx::query(
            "UPDATE messages SET status = 'incomplete' \
             WHERE status = 'streaming' AND updated_at < $1",
        )
        .bind(stale_before)
        .execute(pool)
        .await?.rows_affected());
        Ok(affected)
    }

    /// Turns "no row was written" into the right error: NotFound for a message that is not
    /// the actor's, Invalid for one that is no longer streaming.
    async fn expect_streaming_write(&self, actor: UserId, id: MessageId, rows: u64) -> Result<()> {
        if rows > 0 {
            return Ok(());
        }
        let message = self.message(actor, id).await?;
        Err(StoreError::Invalid(format!(
            "message {id} is {}, not streaming",
            message.status.as_str()
        )))
    }
}

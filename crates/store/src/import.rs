//! Bulk insertion of an imported conversation (a ChatGPT export can hold 100 000s of messages):
//! the messages go in batches of [`IMPORT_BATCH`] rows, one transaction per batch, so a large
//! import costs one commit per batch rather than per row, and other users' writes (a streamed
//! answer saving itself) get the database between two batches instead of waiting for the
//! whole import.

use crate::error::{Result, StoreError};
use crate::types::{Conversation, ConversationId, MessageId, NewConversation, Role, UserId};
use crate::{with_pool, Store};

/// Rows per transaction of [`Store::import_conversation`].
pub const IMPORT_BATCH: usize = 2000;

/// One message of an import. `parent` indexes an earlier message of the same import.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportMessage {
    pub parent: Option<usize>,
    pub role: Role,
    pub content: String,
    pub model: Option<String>,
    /// When it was written (Unix ms).
    pub created_at: i64,
}

/// A conversation to import: its messages parents first.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportConversation {
    pub new: NewConversation,
    pub messages: Vec<ImportMessage>,
    /// The index of the message to show (the current branch's leaf).
    pub current: Option<usize>,
    /// The conversation's own times (Unix ms); `None` keeps the import's time.
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
}

impl Store {
    /// Creates one of `actor`'s conversations with all its messages (complete, with their
    /// times). [`StoreError::Invalid`] when a message's parent is not an earlier message. If a
    /// batch fails, the conversation is deleted again: no half import is left behind.
    pub async fn import_conversation(&self, actor: UserId, c: &ImportConversation) -> Result<Conversation> {
        for (i, m) in c.messages.iter().enumerate() {
            if m.parent.is_some_and(|p| p >= i) {
                return Err(StoreError::Invalid(format!("imported message {i} comes before its parent")));
            }
        }
        if c.current.is_some_and(|i| i >= c.messages.len()) {
            return Err(StoreError::Invalid("the current message is not one of the import".into()));
        }
        let conv = self.create_conversation(actor, &c.new).await?;
        match self.fill_import(actor, conv.id, c).await {
            Ok(()) => self.conversation(actor, conv.id).await,
            Err(e) => {
                let _ = self.delete_conversation(actor, conv.id).await;
                Err(e)
            }
        }
    }

    async fn fill_import(&self, actor: UserId, conv: ConversationId, c: &ImportConversation) -> Result<()> {
        const INSERT: &str = "INSERT INTO messages (conversation_id, parent_id, role, content, model, \
               status, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'complete', $6, $6) RETURNING id";
        let mut ids: Vec<MessageId> = Vec::with_capacity(c.messages.len());
        for batch in c.messages.chunks(IMPORT_BATCH) {
            with_pool!(self, pool => {
                let mut tx = pool.begin().await?;
                for m in batch {
                    let parent = m.parent.and_then(|p| ids.get(p).copied());
                    let model = m.model.as_deref().filter(|_| m.role == Role::Assistant);
                    let (id,): (i64,) = sqlx::query_as(INSERT)
                        .bind(conv)
                        .bind(parent)
                        .bind(m.role.as_str())
                        .bind(&m.content)
                        .bind(model)
                        .bind(m.created_at)
                        .fetch_one(&mut *tx)
                        .await?;
                    ids.push(MessageId(id));
                }
                tx.commit().await?;
            });
        }
        let current = c.current.and_then(|i| ids.get(i).copied());
        let affected = with_pool!(self, pool => sqlx::query(
            "UPDATE conversations SET current_message_id = $3, \
               created_at = COALESCE($4, created_at), updated_at = COALESCE($5, updated_at) \
             WHERE id = $1 AND user_id = $2",
        )
        .bind(conv)
        .bind(actor)
        .bind(current)
        .bind(c.created_at)
        .bind(c.updated_at)
        .execute(pool)
        .await?.rows_affected());
        if affected == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}

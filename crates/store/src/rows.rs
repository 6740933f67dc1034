//! Raw rows as the drivers decode them, and their conversion into the public types.
//!
//! The derived `FromRow` impls are generic over the row type, so one struct decodes from both
//! SQLite and PostgreSQL. Enums and JSON travel as TEXT and are parsed here, so an unexpected
//! value becomes a `Corrupt` error instead of a panic.

use crate::error::{Result, StoreError};
use crate::types::{
    ApiKey, ApiKeyId, Conversation, ConversationId, Message, MessageId, User, UserId,
};

// Column lists as macros expanding to literals, so that every statement is a `concat!`ed
// `&'static str`: sqlx only takes static SQL without an explicit audit marker, and no value
// ever reaches SQL text (values are always bound parameters).

/// The columns every user query selects.
macro_rules! user_columns {
    () => {
        "id, username, is_admin, created_at"
    };
}
/// [`user_columns`] qualified by the alias `u`, for joins.
macro_rules! user_columns_u {
    () => {
        "u.id, u.username, u.is_admin, u.created_at"
    };
}
/// The columns every API key query selects.
macro_rules! api_key_columns {
    () => {
        "id, user_id, name, prefix, created_at, revoked_at"
    };
}
/// The columns every conversation query selects.
macro_rules! conversation_columns {
    () => {
        "id, user_id, title, system_prompt, model, settings, current_message_id, created_at, \
         updated_at"
    };
}
/// [`conversation_columns`] qualified by the alias `c`, for joins.
macro_rules! conversation_columns_c {
    () => {
        "c.id, c.user_id, c.title, c.system_prompt, c.model, c.settings, c.current_message_id, \
         c.created_at, c.updated_at"
    };
}
/// The columns every message query selects.
macro_rules! message_columns {
    () => {
        "id, conversation_id, parent_id, role, content, model, prompt_tokens, completion_tokens, \
         status, created_at, updated_at, energy_uj, energy_method, marked"
    };
}
pub(crate) use {
    api_key_columns, conversation_columns, conversation_columns_c, message_columns,
    user_columns, user_columns_u,
};

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    id: i64,
    username: String,
    is_admin: bool,
    created_at: i64,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> Self {
        User {
            id: UserId(r.id),
            username: r.username,
            is_admin: r.is_admin,
            created_at: r.created_at,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct CredentialsRow {
    #[sqlx(flatten)]
    pub(crate) user: UserRow,
    pub(crate) password_hash: String,
}

#[derive(sqlx::FromRow)]
pub(crate) struct ApiKeyRow {
    id: i64,
    user_id: i64,
    name: String,
    prefix: String,
    created_at: i64,
    revoked_at: Option<i64>,
}

impl From<ApiKeyRow> for ApiKey {
    fn from(r: ApiKeyRow) -> Self {
        ApiKey {
            id: ApiKeyId(r.id),
            user_id: UserId(r.user_id),
            name: r.name,
            prefix: r.prefix,
            created_at: r.created_at,
            revoked_at: r.revoked_at,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ConversationRow {
    id: i64,
    user_id: i64,
    title: String,
    system_prompt: Option<String>,
    model: Option<String>,
    settings: String,
    current_message_id: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<ConversationRow> for Conversation {
    type Error = StoreError;
    fn try_from(r: ConversationRow) -> Result<Self> {
        let settings = serde_json::from_str(&r.settings).map_err(|e| {
            StoreError::Corrupt(format!("conversation {} settings: {e}", r.id))
        })?;
        Ok(Conversation {
            id: ConversationId(r.id),
            user_id: UserId(r.user_id),
            title: r.title,
            system_prompt: r.system_prompt,
            model: r.model,
            settings,
            current_message_id: r.current_message_id.map(MessageId),
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct MessageRow {
    pub(crate) id: i64,
    pub(crate) conversation_id: i64,
    parent_id: Option<i64>,
    role: String,
    content: String,
    model: Option<String>,
    prompt_tokens: Option<i64>,
    completion_tokens: Option<i64>,
    status: String,
    created_at: i64,
    updated_at: i64,
    energy_uj: Option<i64>,
    energy_method: Option<String>,
    marked: bool,
}

impl TryFrom<MessageRow> for Message {
    type Error = StoreError;
    fn try_from(r: MessageRow) -> Result<Self> {
        Ok(Message {
            id: MessageId(r.id),
            conversation_id: ConversationId(r.conversation_id),
            parent_id: r.parent_id.map(MessageId),
            role: r.role.parse()?,
            content: r.content,
            model: r.model,
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
            status: r.status.parse()?,
            created_at: r.created_at,
            updated_at: r.updated_at,
            energy_uj: r.energy_uj,
            energy_method: r.energy_method,
            marked: r.marked,
        })
    }
}

/// Converts a batch of rows, failing on the first corrupt one.
pub(crate) fn convert_all<R, T>(rows: Vec<R>) -> Result<Vec<T>>
where
    T: TryFrom<R, Error = StoreError>,
{
    rows.into_iter().map(T::try_from).collect()
}

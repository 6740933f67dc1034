//! The rows the store hands out, and the inputs it takes.
//!
//! Ids are newtypes so that an acting user's id can never be passed where a conversation id is
//! expected. Times are Unix milliseconds (`i64`), the one representation both backends share.

use serde::{Deserialize, Serialize};

use crate::error::StoreError;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
            sqlx::Type,
        )]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(pub i64);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A user's id.
    UserId
);
id_type!(
    /// An API key's id (not the key: the key itself is never stored).
    ApiKeyId
);
id_type!(
    /// A use-case policy's id.
    PolicyId
);
id_type!(
    /// A conversation's id.
    ConversationId
);
id_type!(
    /// A message's id.
    MessageId
);

/// An account. The password hash is not part of it: see [`UserCredentials`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub is_admin: bool,
    pub created_at: i64,
}

/// A user with their stored password hash (a PHC string such as `$argon2id$v=19$...`), returned
/// only by the login lookup so that the hash does not travel with every `User`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCredentials {
    pub user: User,
    pub password_hash: String,
}

/// A personal API key as listed to its owner: the hash stays in the store, the prefix lets the
/// owner recognise which key is which.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub user_id: UserId,
    pub name: String,
    pub prefix: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// A conversation's header (its messages are fetched separately).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: ConversationId,
    pub user_id: UserId,
    pub title: String,
    pub system_prompt: Option<String>,
    pub model: Option<String>,
    /// Sampling settings (temperature, top_p, ...) as the UI sent them.
    pub settings: serde_json::Value,
    /// The leaf of the branch last shown or written; `None` for an empty conversation.
    pub current_message_id: Option<MessageId>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An enum stored as a text column: each variant's column name is written once, and `as_str`
/// and `FromStr` (an unknown name is [`StoreError::Corrupt`]) come from that one list.
macro_rules! text_column_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal, $as_str_doc:literal { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            #[doc = $as_str_doc]
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = StoreError;
            fn from_str(s: &str) -> Result<Self, StoreError> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(StoreError::Corrupt(format!(concat!("unknown ", $what, " {:?}"), other))),
                }
            }
        }
    };
}

text_column_enum!(
    /// Who wrote a message.
    Role, "role", "The name stored in the `role` column (and used by the OpenAI API)." {
        System => "system",
        User => "user",
        Assistant => "assistant",
        Tool => "tool",
    }
);

text_column_enum!(
    /// Where a message is in its life.
    ///
    /// An answer is inserted `Streaming`, grows with [`crate::Store::append_to_message`] while the
    /// model writes it and becomes `Complete` at the end. A stream that was stopped, failed, or whose
    /// process died (found by [`crate::Store::recover_interrupted`]) ends `Incomplete`.
    MessageStatus, "status", "The name stored in the `status` column." {
        Streaming => "streaming",
        Complete => "complete",
        Incomplete => "incomplete",
    }
);

/// One message: one row. `parent_id` links it to the message it answers or follows; several
/// messages with one parent are branches (an edited question, a regenerated answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub parent_id: Option<MessageId>,
    pub role: Role,
    pub content: String,
    /// The model that wrote an assistant message.
    pub model: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub status: MessageStatus,
    pub created_at: i64,
    /// Last write (each streamed append moves it: it is the stream's heartbeat).
    pub updated_at: i64,
    /// The energy the answer took, in microjoules, and how it was obtained (`rapl`, `estimate`).
    pub energy_uj: Option<i64>,
    pub energy_method: Option<String>,
    /// Generated while the statistical watermark was on (set by [`Store::set_answer_fingerprint`]).
    ///
    /// [`Store::set_answer_fingerprint`]: crate::Store::set_answer_fingerprint
    pub marked: bool,
}

/// The fields of a new conversation.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NewConversation {
    pub title: String,
    pub system_prompt: Option<String>,
    pub model: Option<String>,
    /// `Value::Null` is stored as `{}`.
    pub settings: serde_json::Value,
}

/// A partial update of a conversation: `None` leaves a field as it is. For the nullable
/// fields `Some(None)` clears them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConversationPatch {
    pub title: Option<String>,
    pub system_prompt: Option<Option<String>>,
    pub model: Option<Option<String>>,
    pub settings: Option<serde_json::Value>,
}

/// The fields of a new message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub conversation_id: ConversationId,
    /// Must be a message of the same conversation, or `None` for a first message.
    pub parent_id: Option<MessageId>,
    pub role: Role,
    pub content: String,
    pub model: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub status: MessageStatus,
}

impl NewMessage {
    /// A finished message (a user's question, an imported answer).
    pub fn complete(
        conversation_id: ConversationId,
        parent_id: Option<MessageId>,
        role: Role,
        content: impl Into<String>,
    ) -> Self {
        NewMessage {
            conversation_id,
            parent_id,
            role,
            content: content.into(),
            model: None,
            prompt_tokens: None,
            completion_tokens: None,
            status: MessageStatus::Complete,
        }
    }

    /// An empty assistant answer about to stream from `model`.
    pub fn streaming_answer(
        conversation_id: ConversationId,
        parent_id: MessageId,
        model: impl Into<String>,
    ) -> Self {
        NewMessage {
            conversation_id,
            parent_id: Some(parent_id),
            role: Role::Assistant,
            content: String::new(),
            model: Some(model.into()),
            prompt_tokens: None,
            completion_tokens: None,
            status: MessageStatus::Streaming,
        }
    }
}

/// How a streamed message ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageFinish {
    /// `Complete` or `Incomplete` (stopped by the user, failed); `Streaming` is rejected.
    pub status: MessageStatus,
    /// The full final text, replacing what was appended; `None` keeps the appended text.
    pub content: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    /// Microjoules and method (`rapl` or `estimate`); `None` keeps what is stored.
    pub energy: Option<(i64, String)>,
}

/// One day of a user's answers: the energy they took.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct EnergyDay {
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    pub microjoules: i64,
    pub answers: i64,
    /// Whether any of that day's figures is an estimate (not RAPL counters).
    pub estimated: bool,
}

/// One search result: a conversation whose title or messages match, with the first matching
/// message (if the match was in a message) and a short excerpt around the match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    pub conversation: Conversation,
    pub message_id: Option<MessageId>,
    pub snippet: Option<String>,
}

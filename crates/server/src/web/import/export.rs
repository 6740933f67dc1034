//! Reading a ChatGPT `conversations.json` in one pass, keeping only what the import needs.
//!
//! The file is deserialized straight into small types: a node keeps its id, its parent's id and,
//! only when its message will be imported, the role, text, time and model. Everything else
//! (dropped messages, metadata, non-text parts) is skipped by the parser without being
//! allocated, so memory follows what is kept, not the file (a `serde_json::Value` of a 63 MB
//! export took 2 GB). Each conversation is mapped ([`super::mapping`]) as soon as it is read,
//! so only one conversation's nodes exist at a time, and a shared budget caps the nodes of the
//! whole file while it is read.
//!
//! Fields of an unexpected type are read as absent ([`Lenient`]), as the import always did
//! with `Value::as_str` and friends.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use store::{ImportConversation, Role};

use super::mapping;

/// A value read as `T` when it has `T`'s shape and skipped (read as `None`) otherwise.
#[derive(Debug)]
pub struct Lenient<T>(pub Option<T>);

impl<T> Default for Lenient<T> {
    fn default() -> Self {
        Lenient(None)
    }
}

/// The JSON shapes a [`Lenient`] value accepts; every other shape is skipped.
pub trait Shape<'de>: Sized {
    fn from_str(_: &str) -> Option<Self> {
        None
    }
    fn from_f64(_: f64) -> Option<Self> {
        None
    }
    fn from_bool(_: bool) -> Option<Self> {
        None
    }
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn from_seq<A: SeqAccess<'de>>(mut seq: A) -> Result<Option<Self>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

impl<'de, T: Shape<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Shape<'de>> Visitor<'de> for V<T> {
            type Value = Lenient<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Lenient(T::from_str(v)))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Lenient(T::from_f64(v)))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Lenient(T::from_f64(v as f64)))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Lenient(T::from_f64(v as f64)))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Lenient(T::from_bool(v)))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::from_map(map).map(Lenient)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                T::from_seq(seq).map(Lenient)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

impl Shape<'_> for String {
    fn from_str(s: &str) -> Option<Self> {
        Some(s.to_string())
    }
}

impl Shape<'_> for f64 {
    fn from_f64(v: f64) -> Option<Self> {
        Some(v)
    }
}

impl Shape<'_> for bool {
    fn from_bool(v: bool) -> Option<Self> {
        Some(v)
    }
}

/// A JSON object read as `T` (a struct whose fields are all lenient and defaulted).
#[derive(Debug)]
pub struct Obj<T>(pub T);

impl<'de, T: Deserialize<'de>> Shape<'de> for Obj<T> {
    fn from_map<A: MapAccess<'de>>(map: A) -> Result<Option<Self>, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(|t| Some(Obj(t)))
    }
}

/// `content.parts`: the strings of the array (images and other parts skipped).
#[derive(Debug, Default)]
pub struct Parts(pub Vec<String>);

impl<'de> Shape<'de> for Parts {
    fn from_seq<A: SeqAccess<'de>>(mut seq: A) -> Result<Option<Self>, A::Error> {
        let mut out = Vec::new();
        while let Some(Lenient(part)) = seq.next_element::<Lenient<String>>()? {
            out.extend(part);
        }
        Ok(Some(Parts(out)))
    }
}

fn get<T>(v: Lenient<Obj<T>>) -> Option<T> {
    v.0.map(|o| o.0)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Author {
    role: Lenient<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Content {
    parts: Lenient<Parts>,
    text: Lenient<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Metadata {
    is_visually_hidden_from_conversation: Lenient<bool>,
    model_slug: Lenient<String>,
}

/// The fields of a message the import reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawMessage {
    author: Lenient<Obj<Author>>,
    content: Lenient<Obj<Content>>,
    metadata: Lenient<Obj<Metadata>>,
    create_time: Lenient<f64>,
}

/// A message that will be imported.
#[derive(Debug, Clone, PartialEq)]
pub struct Kept {
    pub role: Role,
    pub content: String,
    pub create_time: Option<f64>,
    pub model: Option<String>,
}

impl RawMessage {
    /// Users' and the assistant's visible messages with text; system and tool messages,
    /// hidden ones and empty ones are dropped.
    fn kept(self) -> Option<Kept> {
        let role = match get(self.author).and_then(|a| a.role.0).as_deref() {
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            _ => return None,
        };
        let meta = get(self.metadata).unwrap_or_default();
        if meta.is_visually_hidden_from_conversation.0 == Some(true) {
            return None;
        }
        let content = get(self.content).unwrap_or_default();
        let text = match content.parts.0 {
            Some(parts) => parts.0.join("\n"),
            None => content.text.0.unwrap_or_default(),
        };
        if text.trim().is_empty() {
            return None;
        }
        Some(Kept { role, content: text, create_time: self.create_time.0, model: meta.model_slug.0 })
    }
}

/// The fields of a node the import reads (`children` is implied by the parents).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawNode {
    message: Lenient<Obj<RawMessage>>,
    parent: Lenient<String>,
}

/// One node of a conversation's `mapping`, as far as the import needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub id: String,
    pub parent: Option<String>,
    pub message: Option<Kept>,
}

/// One conversation of the export, reduced to what the import needs.
#[derive(Debug, Default)]
pub struct Conversation {
    pub title: Option<String>,
    /// `mapping` in the file's order.
    pub nodes: Vec<Node>,
    pub current_node: Option<String>,
    pub create_time: Option<f64>,
    pub update_time: Option<f64>,
}

/// Nodes (and conversations) left to read before the file is refused.
struct Budget {
    left: Cell<usize>,
    exceeded: Cell<bool>,
}

impl Budget {
    fn take<E: serde::de::Error>(&self) -> Result<(), E> {
        match self.left.get().checked_sub(1) {
            Some(n) => {
                self.left.set(n);
                Ok(())
            }
            None => {
                self.exceeded.set(true);
                Err(E::custom("too many message nodes"))
            }
        }
    }
}

struct MappingSeed<'b>(&'b Budget);

impl<'de> DeserializeSeed<'de> for MappingSeed<'_> {
    type Value = Vec<Node>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Node>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for MappingSeed<'_> {
    type Value = Vec<Node>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of message nodes")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<Node>, A::Error> {
        let mut out = Vec::new();
        while let Some(id) = map.next_key::<String>()? {
            self.0.take()?;
            // A node that is not an object holds no message; its id stays for the tree walk.
            let raw = get(map.next_value::<Lenient<Obj<RawNode>>>()?).unwrap_or_default();
            out.push(Node { id, parent: raw.parent.0, message: get(raw.message).and_then(RawMessage::kept) });
        }
        Ok(out)
    }
}

struct ConversationSeed<'b>(&'b Budget);

impl<'de> DeserializeSeed<'de> for ConversationSeed<'_> {
    type Value = Conversation;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Conversation, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ConversationSeed<'_> {
    type Value = Conversation;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a conversation object with a `mapping`")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Conversation, A::Error> {
        self.0.take()?;
        let mut c = Conversation::default();
        let mut mapping = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "title" => c.title = map.next_value::<Lenient<String>>()?.0,
                "current_node" => c.current_node = map.next_value::<Lenient<String>>()?.0,
                "create_time" => c.create_time = map.next_value::<Lenient<f64>>()?.0,
                "update_time" => c.update_time = map.next_value::<Lenient<f64>>()?.0,
                "mapping" => mapping = Some(map.next_value_seed(MappingSeed(self.0))?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        c.nodes = mapping.ok_or_else(|| A::Error::missing_field("mapping"))?;
        Ok(c)
    }
}

/// The whole file: each conversation mapped as soon as it is read.
struct ExportSeed<'b> {
    budget: &'b Budget,
    now_ms: i64,
}

/// What a file held: the conversations to import, and how many had nothing to import.
#[derive(Debug, Default)]
pub struct Export {
    pub conversations: Vec<ImportConversation>,
    pub skipped: usize,
}

impl<'de> Visitor<'de> for ExportSeed<'_> {
    type Value = Export;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("the array of conversations")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Export, A::Error> {
        let mut out = Export::default();
        while let Some(c) = seq.next_element_seed(ConversationSeed(self.budget))? {
            let mapped = mapping::map_conversation(c, self.now_ms);
            if mapped.messages.is_empty() {
                out.skipped += 1;
            } else {
                out.conversations.push(mapped);
            }
        }
        Ok(out)
    }
}

/// Why a file was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ExportError {
    #[error("this is not a ChatGPT export: send the array in conversations.json (from ChatGPT's Settings > Data controls > Export)")]
    NotAnArray,
    #[error("this is not a ChatGPT conversations.json ({0})")]
    Malformed(String),
    #[error("the file has no conversations")]
    Empty,
    #[error("the export has more than {0} message nodes and conversations, the most one import takes: split it (or raise the server's limit)")]
    TooManyNodes(usize),
}

/// Reads and maps a whole export. `max_nodes` caps the nodes and conversations read;
/// `now_ms` is the time of messages whose conversation has no time of its own.
pub fn parse(bytes: &[u8], max_nodes: usize, now_ms: i64) -> Result<Export, ExportError> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'[') {
        return Err(ExportError::NotAnArray);
    }
    let budget = Budget { left: Cell::new(max_nodes), exceeded: Cell::new(false) };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let read = de
        .deserialize_seq(ExportSeed { budget: &budget, now_ms })
        .and_then(|export| de.end().map(|()| export));
    let export = match read {
        Ok(e) => e,
        Err(_) if budget.exceeded.get() => return Err(ExportError::TooManyNodes(max_nodes)),
        Err(e) => return Err(ExportError::Malformed(e.to_string())),
    };
    if export.conversations.is_empty() && export.skipped == 0 {
        return Err(ExportError::Empty);
    }
    Ok(export)
}

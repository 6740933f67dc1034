//! The JSON the `/api` routes answer (webui/src/lib/types.ts): ids are strings, times are
//! ISO 8601 UTC strings (`2024-05-01T12:34:56.789Z`), never the store's Unix milliseconds.

use serde::Serialize;
use store::{ApiKey, Conversation, Message, SearchHit, User};

/// Unix milliseconds as ISO 8601 UTC with milliseconds (what JavaScript's `toISOString` writes).
pub fn iso_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z", sod / 3600, sod % 3600 / 60, sod % 60)
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (year, month, day) in the
/// proleptic Gregorian calendar, O(1).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserJson {
    pub id: String,
    pub username: String,
    pub is_admin: bool,
    pub created_at: String,
}

impl From<&User> for UserJson {
    fn from(u: &User) -> Self {
        UserJson { id: u.id.to_string(), username: u.username.clone(), is_admin: u.is_admin, created_at: iso_time(u.created_at) }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MessageJson {
    pub id: String,
    pub parent_id: Option<String>,
    pub role: &'static str,
    pub content: String,
    pub status: &'static str,
    pub model: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    /// `{joules, method}`: the energy the answer took (absent when not measured).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::openai::common::EnergyWire>)]
    pub energy: Option<crate::openai::common::Energy>,
    /// The answer was generated with the provenance watermark on (the UI labels it).
    pub marked: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Message> for MessageJson {
    fn from(m: &Message) -> Self {
        MessageJson {
            id: m.id.to_string(),
            parent_id: m.parent_id.map(|p| p.to_string()),
            role: m.role.as_str(),
            content: m.content.clone(),
            status: m.status.as_str(),
            model: m.model.clone(),
            prompt_tokens: m.prompt_tokens,
            completion_tokens: m.completion_tokens,
            energy: match (m.energy_uj, m.energy_method.as_deref()) {
                (Some(uj), Some(method)) => Some(crate::openai::common::Energy {
                    microjoules: u64::try_from(uj).unwrap_or(0),
                    method: if method == "rapl" { crate::openai::common::EnergyMethod::Rapl } else { crate::openai::common::EnergyMethod::Estimate },
                }),
                _ => None,
            },
            marked: m.marked,
            created_at: iso_time(m.created_at),
            updated_at: iso_time(m.updated_at),
        }
    }
}

/// A conversation with every message of its tree (all branches; the UI picks the path).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConversationJson {
    pub id: String,
    pub title: String,
    pub system_prompt: Option<String>,
    pub model: Option<String>,
    pub settings: serde_json::Value,
    pub current_message_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub messages: Vec<MessageJson>,
}

impl ConversationJson {
    pub fn new(c: &Conversation, messages: &[Message]) -> Self {
        ConversationJson {
            id: c.id.to_string(),
            title: c.title.clone(),
            system_prompt: c.system_prompt.clone(),
            model: c.model.clone(),
            settings: c.settings.clone(),
            current_message_id: c.current_message_id.map(|m| m.to_string()),
            created_at: iso_time(c.created_at),
            updated_at: iso_time(c.updated_at),
            messages: messages.iter().map(MessageJson::from).collect(),
        }
    }
}

/// A sidebar entry; a search hit adds the matching message and an excerpt.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SummaryJson {
    pub id: String,
    pub title: String,
    pub model: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snippet: Option<String>,
}

impl From<&Conversation> for SummaryJson {
    fn from(c: &Conversation) -> Self {
        SummaryJson {
            id: c.id.to_string(),
            title: c.title.clone(),
            model: c.model.clone(),
            created_at: iso_time(c.created_at),
            updated_at: iso_time(c.updated_at),
            message_id: None,
            snippet: None,
        }
    }
}

impl From<&SearchHit> for SummaryJson {
    fn from(h: &SearchHit) -> Self {
        SummaryJson {
            message_id: h.message_id.map(|m| m.to_string()),
            snippet: h.snippet.clone(),
            ..SummaryJson::from(&h.conversation)
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyJson {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

impl From<&ApiKey> for KeyJson {
    fn from(k: &ApiKey) -> Self {
        KeyJson {
            id: k.id.to_string(),
            name: k.name.clone(),
            prefix: k.prefix.clone(),
            created_at: iso_time(k.created_at),
            revoked_at: k.revoked_at.map(iso_time),
        }
    }
}

/// A new key with its secret, shown exactly once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedKeyJson {
    #[serde(flatten)]
    pub key: KeyJson,
    #[serde(rename = "key")]
    pub secret: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_times_match_javascript() {
        assert_eq!(iso_time(0), "1970-01-01T00:00:00.000Z");
        // new Date(1714566896789).toISOString()
        assert_eq!(iso_time(1_714_566_896_789), "2024-05-01T12:34:56.789Z");
        assert_eq!(iso_time(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso_time(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(iso_time(4_102_444_800_000), "2100-01-01T00:00:00.000Z");
    }
}

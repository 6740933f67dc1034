//! The `/api` request bodies, parsed into types that are valid by construction (usernames,
//! passwords, conversation settings, message text). Each rejection names its parameter.

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::error::WebError;
use crate::config::ServeConfig;

pub const MAX_USERNAME_CHARS: usize = 64;
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Long enough for any passphrase, short enough that hashing stays cheap.
pub const MAX_PASSWORD_BYTES: usize = 1024;
pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_SYSTEM_PROMPT_BYTES: usize = 64 << 10;
pub const MAX_KEY_NAME_CHARS: usize = 64;

/// A username: 1 to 64 letters (any script), digits, or `.` `_` `-` `@`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, WebError> {
        let s = raw.trim();
        let n = s.chars().count();
        if n == 0 || n > MAX_USERNAME_CHARS {
            return Err(WebError::param("username", format!("a username has 1 to {MAX_USERNAME_CHARS} characters")));
        }
        if let Some(bad) = s.chars().find(|c| !(c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))) {
            return Err(WebError::param(
                "username",
                format!("a username has only letters, digits and . _ - @ (not {bad:?})"),
            ));
        }
        Ok(Username(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A new password: at least 8 characters, at most 1024 bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

impl Password {
    pub fn parse(raw: String) -> Result<Self, WebError> {
        if raw.chars().count() < MIN_PASSWORD_CHARS {
            return Err(WebError::param("password", format!("a password has at least {MIN_PASSWORD_CHARS} characters")));
        }
        if raw.len() > MAX_PASSWORD_BYTES {
            return Err(WebError::param("password", format!("a password has at most {MAX_PASSWORD_BYTES} bytes")));
        }
        Ok(Password(raw))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// Sampling settings of a conversation (`settings`): a JSON object with any of `temperature`
/// (0..=2), `top_p` (0 < p <= 1) and `max_tokens` (>= 1). Unknown keys are refused, so a typo
/// is an error rather than a silently ignored setting.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Settings {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_tokens: Option<usize>,
}

impl Settings {
    pub fn parse(v: &Value) -> Result<Self, WebError> {
        let obj = match v {
            Value::Null => return Ok(Settings::default()),
            Value::Object(o) => o,
            _ => return Err(WebError::param("settings", "settings must be a JSON object")),
        };
        let mut s = Settings::default();
        for (k, val) in obj {
            let param = format!("settings.{k}");
            if val.is_null() {
                continue;
            }
            match k.as_str() {
                "temperature" => match val.as_f64() {
                    Some(t) if (0.0..=2.0).contains(&t) => s.temperature = Some(t),
                    _ => return Err(WebError::param(&param, "temperature is a number from 0 to 2")),
                },
                "top_p" => match val.as_f64() {
                    Some(p) if p > 0.0 && p <= 1.0 => s.top_p = Some(p),
                    _ => return Err(WebError::param(&param, "top_p is a number above 0 and at most 1")),
                },
                "max_tokens" => match val.as_u64() {
                    Some(n) if n >= 1 => s.max_tokens = Some(usize::try_from(n).unwrap_or(usize::MAX)),
                    _ => return Err(WebError::param(&param, "max_tokens is a whole number of at least 1")),
                },
                _ => {
                    return Err(WebError::param(
                        &param,
                        format!("unknown setting `{k}` (known: temperature, top_p, max_tokens)"),
                    ))
                }
            }
        }
        Ok(s)
    }

    /// The stored form (only the keys that are set).
    pub fn to_json(self) -> Value {
        let mut m = Map::new();
        if let Some(t) = self.temperature {
            m.insert("temperature".into(), Value::from(t));
        }
        if let Some(p) = self.top_p {
            m.insert("top_p".into(), Value::from(p));
        }
        if let Some(n) = self.max_tokens {
            m.insert("max_tokens".into(), Value::from(n as u64));
        }
        Value::Object(m)
    }
}

/// A conversation title: trimmed, at most 200 characters (may be empty: untitled).
pub fn title(raw: &str) -> Result<String, WebError> {
    let t = raw.trim();
    if t.chars().count() > MAX_TITLE_CHARS {
        return Err(WebError::param("title", format!("a title has at most {MAX_TITLE_CHARS} characters")));
    }
    Ok(t.to_string())
}

/// A system prompt: blank means none.
pub fn system_prompt(raw: Option<String>) -> Result<Option<String>, WebError> {
    match raw {
        Some(s) if s.len() > MAX_SYSTEM_PROMPT_BYTES => {
            Err(WebError::param("system_prompt", format!("a system prompt has at most {MAX_SYSTEM_PROMPT_BYTES} bytes")))
        }
        Some(s) if !s.trim().is_empty() => Ok(Some(s)),
        _ => Ok(None),
    }
}

/// A model name: blank means the served model; another name must be one the server serves
/// (stored as the primary name).
pub fn model(raw: Option<String>, config: &ServeConfig) -> Result<Option<String>, WebError> {
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(m) => Ok(Some(config.resolve_model(Some(m))?)),
    }
}

/// The text of a new question: not blank.
pub fn message_text(raw: String) -> Result<String, WebError> {
    if raw.trim().is_empty() {
        return Err(WebError::param("content", "the message is empty"));
    }
    Ok(raw)
}

/// A key name: trimmed, at most 64 characters; blank becomes "API key".
pub fn key_name(raw: Option<&str>) -> Result<String, WebError> {
    let n = raw.unwrap_or("").trim();
    if n.chars().count() > MAX_KEY_NAME_CHARS {
        return Err(WebError::param("name", format!("a key name has at most {MAX_KEY_NAME_CHARS} characters")));
    }
    Ok(if n.is_empty() { "API key".to_string() } else { n.to_string() })
}

/// An id from a URL or a body: the store's ids are integers; anything else names no row.
pub fn id(raw: &str, what: &str) -> Result<i64, WebError> {
    raw.trim().parse::<i64>().map_err(|_| WebError::NotFound(format!("{what} not found")))
}

/// Deserializes a field that distinguishes "absent" (`None`) from `null` (`Some(None)`), for
/// PATCH bodies where `null` clears a value. Use with `#[serde(default)]`.
pub fn nullable<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usernames() {
        assert_eq!(Username::parse(" alice ").expect("ok").as_str(), "alice");
        assert!(Username::parse("김민수").is_ok());
        assert!(Username::parse("a.b-c_d@x").is_ok());
        for bad in ["", "   ", "a b", "a/b", "<script>", &"x".repeat(65)] {
            assert!(Username::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn passwords() {
        assert!(Password::parse("1234567".into()).is_err());
        assert!(Password::parse("비밀번호여덟자리".into()).is_ok());
        assert!(Password::parse("x".repeat(1025)).is_err());
        assert_eq!(format!("{:?}", Password::parse("secret-pass".into()).expect("ok")), "Password(..)");
    }

    #[test]
    fn settings_are_checked_and_normalized() {
        let s = Settings::parse(&json!({"temperature": 0.5, "max_tokens": 100, "top_p": null})).expect("ok");
        assert_eq!(s, Settings { temperature: Some(0.5), top_p: None, max_tokens: Some(100) });
        assert_eq!(s.to_json(), json!({"temperature": 0.5, "max_tokens": 100}));
        assert_eq!(Settings::parse(&Value::Null).expect("null"), Settings::default());
        for (bad, param) in [
            (json!({"temperature": 3}), "settings.temperature"),
            (json!({"temperature": "hot"}), "settings.temperature"),
            (json!({"top_p": 0}), "settings.top_p"),
            (json!({"max_tokens": 0}), "settings.max_tokens"),
            (json!({"temprature": 1}), "settings.temprature"),
            (json!([1]), "settings"),
        ] {
            match Settings::parse(&bad) {
                Err(WebError::Api(crate::ApiError::InvalidParam { param: Some(p), .. })) => assert_eq!(p, param),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn small_fields() {
        assert_eq!(system_prompt(Some("  ".into())).expect("ok"), None);
        assert_eq!(key_name(Some("  ")).expect("ok"), "API key");
        assert!(title(&"가".repeat(201)).is_err());
        assert!(message_text(" \n".into()).is_err());
        assert!(matches!(id("12x", "conversation"), Err(WebError::NotFound(_))));
        let cfg = ServeConfig::new("smollm2");
        assert_eq!(model(Some(" ".into()), &cfg).expect("blank"), None);
        assert_eq!(model(Some("smollm2".into()), &cfg).expect("served"), Some("smollm2".into()));
        assert!(model(Some("gpt-4o".into()), &cfg).is_err());
    }
}

//! [`ApiJson`]: a JSON body extractor whose rejections are [`ApiError`]s in OpenAI's shape, and
//! whose type errors name the parameter (`messages[0].content`), using the path that
//! `serde_path_to_error` tracks. The `Content-Type` header is not required (llama.cpp's server
//! and many curl users skip it).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;

use crate::error::ApiError;

pub struct ApiJson<T>(pub T);

/// Bodies larger than this are parsed on the blocking pool: a 16 MiB request takes tens of
/// milliseconds of CPU, which must not stall the async workers that serve everyone else.
const PARSE_INLINE_MAX: usize = 64 << 10;

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned + Send + 'static,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if crate::body_deadline::is_timeout(&e) {
                ApiError::RequestTimeout
            } else if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::InvalidJson(format!("could not read the request body: {}", e.body_text()))
            }
        })?;
        if bytes.len() <= PARSE_INLINE_MAX {
            return parse(&bytes).map(ApiJson);
        }
        tokio::task::spawn_blocking(move || parse(&bytes))
            .await
            .map_err(|e| ApiError::Internal(format!("parsing the request body: {e}")))?
            .map(ApiJson)
    }
}

/// Parses a request body, mapping serde's errors to OpenAI-style 400s.
pub fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() || inner.is_io() {
            return ApiError::InvalidJson(format!(
                "we could not parse the JSON body of your request ({inner}); send valid JSON"
            ));
        }
        let msg = inner.to_string();
        // An unknown field (the request types deny them): name it, as OpenAI does, without
        // serde's list of every expected field.
        if let Some(rest) = msg.strip_prefix("unknown field `") {
            let field = rest.split('`').next().unwrap_or_default();
            // serde_path_to_error's path already ends with the unknown field.
            let param = if path == "." { field.to_string() } else { path.clone() };
            return ApiError::InvalidParam {
                message: format!("unrecognized request argument supplied: `{param}` (this server does not implement it)"),
                param: Some(param),
            };
        }
        // serde reports a missing field at its parent's path; name the field itself.
        let param = match (msg.strip_prefix("missing field `"), path.as_str()) {
            (Some(rest), parent) => {
                let field = rest.split('`').next().unwrap_or_default();
                if parent == "." { field.to_string() } else { format!("{parent}.{field}") }
            }
            (None, ".") => String::new(),
            (None, p) => p.to_string(),
        };
        let param = (!param.is_empty()).then_some(param);
        let message = match &param {
            Some(p) => format!("invalid `{p}`: {msg}"),
            None => format!("invalid request body: {msg}"),
        };
        ApiError::InvalidParam { param, message }
    })?;
    de.end().map_err(|e| ApiError::InvalidJson(format!("trailing characters after the JSON body ({e})")))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::ChatCompletionRequest;

    fn param_of(body: &str) -> Option<String> {
        match parse::<ChatCompletionRequest>(body.as_bytes()) {
            Err(ApiError::InvalidParam { param, .. }) => param,
            other => panic!("expected InvalidParam for {body}, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn syntax_errors_are_invalid_json() {
        for body in ["{", "", "{\"messages\": [}", "{\"messages\": []} x"] {
            assert!(matches!(parse::<ChatCompletionRequest>(body.as_bytes()), Err(ApiError::InvalidJson(_))), "{body}");
        }
    }

    #[test]
    fn type_errors_name_the_field() {
        assert_eq!(param_of(r#"{"messages": [], "temperature": "hot"}"#).as_deref(), Some("temperature"));
        assert_eq!(param_of(r#"{"model": "m"}"#).as_deref(), Some("messages"));
        assert_eq!(param_of(r#"{"messages": [{"content": "x"}]}"#).as_deref(), Some("messages[0].role"));
        assert_eq!(param_of(r#"{"messages": [], "n": 1.5}"#).as_deref(), Some("n"));
        assert_eq!(param_of(r#""just a string""#), None);
    }

    #[test]
    fn unknown_fields_are_named() {
        assert_eq!(param_of(r#"{"messages": [], "cache_prompt": true}"#).as_deref(), Some("cache_prompt"));
        assert_eq!(
            param_of(r#"{"messages": [{"role": "user", "content": "x", "extra": 1}]}"#).as_deref(),
            Some("messages[0].extra")
        );
        // Known parameters sent as `null` (OpenAI's SDKs may) parse.
        let r: ChatCompletionRequest =
            parse(br#"{"messages": [], "tools": null, "response_format": null, "user": null, "metadata": {"a": "b"}}"#)
                .expect("nulls parse");
        assert!(r.messages.is_empty() && r.tools.is_none());
    }
}

//! [`ApiError`]: the one place that maps failures to an HTTP status and OpenAI's error body
//! `{"error": {"message", "type", "param", "code"}}`, which the official SDKs turn into their
//! exception classes (400 `BadRequestError`, 401 `AuthenticationError`, 404 `NotFoundError`,
//! 429 `RateLimitError`, ...).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::backend::SubmitError;
use crate::metrics::Rejection;

/// `Retry-After` of a 429 for a full queue: queued requests start as running ones finish,
/// typically within a second or two.
pub const RETRY_AFTER_SECS: &str = "1";
/// `Retry-After` of a 503 when `--model-memory` cannot fit a model until busy ones finish.
pub const MODEL_RETRY_AFTER_SECS: &str = "5";

/// An error a client sees. Internal causes are logged, never leaked into the body.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// A parameter is missing, malformed or out of range (400).
    #[error("{message}")]
    InvalidParam { param: Option<String>, message: String },
    /// The request body is not the JSON we expect (400).
    #[error("{0}")]
    InvalidJson(String),
    /// The prompt does not fit in the context (400, `context_length_exceeded`).
    #[error("this model's maximum context length is {n_ctx} tokens, but the prompt has {n_prompt} tokens; shorten the messages or the prompt")]
    ContextLengthExceeded { n_prompt: usize, n_ctx: usize },
    /// The prompt has more bytes than the context can hold, found before tokenizing it (400,
    /// `context_length_exceeded`).
    #[error("this model's maximum context length is {n_ctx} tokens, but the prompt has {n_bytes} bytes, more than that many tokens can hold; shorten the messages or the prompt")]
    PromptTooManyBytes { n_bytes: usize, n_ctx: usize },
    /// Like `ContextLengthExceeded`, found while tokenizing, which stopped once the prompt could
    /// not fit: its full length is unknown (400, `context_length_exceeded`).
    #[error("this model's maximum context length is {n_ctx} tokens, but the prompt has at least {at_least} tokens; shorten the messages or the prompt")]
    ContextLengthExceededAtLeast { at_least: usize, n_ctx: usize },
    /// No such model (404, `model_not_found`).
    #[error("the model `{0}` does not exist")]
    ModelNotFound(String),
    /// No such model on a server with several (404, `model_not_found`), naming the ones it has.
    #[error("the model `{model}` does not exist; this server has: {known}")]
    ModelNotFoundAmong { model: String, known: String },
    /// A model could not be loaded (503, `model_load_failed`), saying why.
    #[error("the model `{model}` could not be loaded: {reason}")]
    ModelLoadFailed { model: String, reason: String },
    /// Loading a model would exceed `--model-memory` while the loaded ones are busy (503 with
    /// `Retry-After`, `model_memory_exhausted`).
    #[error("{0}")]
    ModelMemoryBusy(String),
    /// No such route (404).
    #[error("unknown path {0}")]
    UnknownRoute(String),
    /// No such object of the caller's (a stored response; 404, also for other callers' ids).
    #[error("{message}")]
    NotFound { param: Option<String>, message: String },
    /// Wrong method on a known route (405).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Missing or wrong API key (401).
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The request body is too large (413).
    #[error("the request body is too large")]
    PayloadTooLarge,
    /// Outside the request's use-case policy (403, or 429 for its daily tokens).
    #[error("{0}")]
    Policy(#[from] crate::policy::Refusal),
    /// The engine's queue is full (429).
    #[error("the server is busy: too many requests are queued, retry later")]
    QueueFull,
    /// Over the connection cap (503 with `Retry-After`).
    #[error("the server has too many open connections; retry shortly")]
    TooManyConnections,
    /// The request body did not arrive in time (408).
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    /// Shutting down (503).
    #[error("the server is shutting down")]
    Unavailable,
    /// Something broke inside (500): the cause is logged, the client sees a generic message.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn param(param: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::InvalidParam { param: Some(param.into()), message: message.into() }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidParam { .. }
            | ApiError::InvalidJson(_)
            | ApiError::ContextLengthExceeded { .. }
            | ApiError::PromptTooManyBytes { .. }
            | ApiError::ContextLengthExceededAtLeast { .. } => StatusCode::BAD_REQUEST,
            ApiError::ModelNotFound(_) | ApiError::ModelNotFoundAmong { .. } | ApiError::UnknownRoute(_) => StatusCode::NOT_FOUND,
            ApiError::ModelLoadFailed { .. } | ApiError::ModelMemoryBusy(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::QueueFull => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Policy(r) => r.status(),
            ApiError::Unavailable | ApiError::TooManyConnections => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `daehwa_rejections_total` reason this error counts under (`count_requests` reads it
    /// from the response's extensions).
    pub fn rejection(&self) -> Option<Rejection> {
        match self {
            ApiError::InvalidParam { .. } | ApiError::InvalidJson(_) => Some(Rejection::Invalid),
            ApiError::ContextLengthExceeded { .. }
            | ApiError::PromptTooManyBytes { .. }
            | ApiError::ContextLengthExceededAtLeast { .. } => Some(Rejection::PromptTooLong),
            ApiError::PayloadTooLarge => Some(Rejection::BodyTooLarge),
            ApiError::QueueFull => Some(Rejection::QueueFull),
            ApiError::TooManyConnections => Some(Rejection::Connections),
            ApiError::RequestTimeout => Some(Rejection::Timeout),
            _ => None,
        }
    }

    /// The body OpenAI sends for this error.
    pub fn body(&self) -> ErrorBody {
        let (kind, param, code): (&str, Option<String>, Option<&str>) = match self {
            ApiError::InvalidParam { param, .. } => ("invalid_request_error", param.clone(), None),
            ApiError::InvalidJson(_) => ("invalid_request_error", None, None),
            ApiError::ContextLengthExceeded { .. }
            | ApiError::PromptTooManyBytes { .. }
            | ApiError::ContextLengthExceededAtLeast { .. } => {
                ("invalid_request_error", Some("messages".into()), Some("context_length_exceeded"))
            }
            ApiError::ModelNotFound(_) | ApiError::ModelNotFoundAmong { .. } => {
                ("invalid_request_error", Some("model".into()), Some("model_not_found"))
            }
            ApiError::ModelLoadFailed { .. } => ("server_error", Some("model".into()), Some("model_load_failed")),
            ApiError::ModelMemoryBusy(_) => ("server_error", Some("model".into()), Some("model_memory_exhausted")),
            ApiError::UnknownRoute(_) => ("invalid_request_error", None, Some("unknown_url")),
            ApiError::NotFound { param, .. } => ("invalid_request_error", param.clone(), None),
            ApiError::MethodNotAllowed => ("invalid_request_error", None, Some("method_not_allowed")),
            ApiError::Unauthorized(_) => ("invalid_request_error", None, Some("invalid_api_key")),
            ApiError::PayloadTooLarge => ("invalid_request_error", None, Some("payload_too_large")),
            ApiError::QueueFull => ("requests", None, Some("rate_limit_exceeded")),
            ApiError::Policy(crate::policy::Refusal::Model { .. }) => ("permission_error", Some("model".into()), Some("policy_model_not_allowed")),
            ApiError::Policy(crate::policy::Refusal::AnswerTokens { .. }) => ("permission_error", Some("max_tokens".into()), Some("policy_max_tokens")),
            ApiError::Policy(crate::policy::Refusal::TokenPrompt { .. }) => ("permission_error", Some("prompt".into()), Some("policy_token_prompt")),
            ApiError::Policy(crate::policy::Refusal::DayTokens { .. }) => ("requests", None, Some("policy_daily_tokens")),
            ApiError::Unavailable => ("server_error", None, Some("unavailable")),
            ApiError::TooManyConnections => ("server_error", None, Some("too_many_connections")),
            ApiError::RequestTimeout => ("invalid_request_error", None, Some("timeout")),
            ApiError::Internal(_) => ("server_error", None, None),
        };
        ErrorBody {
            error: ErrorDetail { message: self.to_string(), kind: kind.to_string(), param, code: code.map(str::to_string) },
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::QueueFull => ApiError::QueueFull,
            SubmitError::PromptTooLong { n_prompt, n_ctx } => ApiError::ContextLengthExceeded { n_prompt, n_ctx },
            SubmitError::Invalid(m) => ApiError::InvalidParam { param: None, message: m },
            SubmitError::Stopped => ApiError::Unavailable,
        }
    }
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub param: Option<String>,
    pub code: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(?cause, "internal error");
        }
        let mut resp = (self.status(), Json(self.body())).into_response();
        if matches!(self, ApiError::QueueFull | ApiError::TooManyConnections) {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
        }
        if matches!(self, ApiError::ModelMemoryBusy(_)) {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(MODEL_RETRY_AFTER_SECS));
        }
        if let Some(r) = self.rejection() {
            resp.extensions_mut().insert(r);
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_error_names_both_numbers_and_code() {
        let e = ApiError::from(SubmitError::PromptTooLong { n_prompt: 9000, n_ctx: 8192 });
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let b = e.body();
        assert!(b.error.message.contains("9000") && b.error.message.contains("8192"), "{}", b.error.message);
        assert_eq!(b.error.code.as_deref(), Some("context_length_exceeded"));
    }

    #[test]
    fn internal_cause_is_not_leaked() {
        let e = ApiError::Internal("secret path /home/x".into());
        assert!(!e.body().error.message.contains("secret"));
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}

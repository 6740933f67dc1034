//! Errors in Anthropic's shape on the `/v1/messages` routes: every error response there (auth,
//! a bad body, a handler's [`crate::ApiError`]) is rewritten from OpenAI's
//! `{"error": {"message", "type", ...}}` to `{"type": "error", "error": {"type", "message"}}`
//! with Anthropic's error types, which its SDK turns into its exception classes.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Error bodies are small; anything larger is passed through untouched.
const MAX_ERROR_BODY: usize = 64 << 10;

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AnthropicErrorBody {
    /// Always `error`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub error: AnthropicError,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AnthropicError {
    /// `invalid_request_error`, `authentication_error`, `not_found_error`, `request_too_large`,
    /// `rate_limit_error`, `api_error` or `overloaded_error`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub message: String,
}

/// Anthropic's error type for a status.
pub fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 405 | 408 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    }
}

/// Whether a path is one of Anthropic's routes.
pub fn is_anthropic_path(path: &str) -> bool {
    path == "/v1/messages" || path.starts_with("/v1/messages/")
}

/// The middleware: reshapes error responses on Anthropic's routes.
pub async fn reshape(req: Request, next: Next) -> Response {
    if !is_anthropic_path(req.uri().path()) {
        return next.run(req).await;
    }
    let resp = next.run(req).await;
    let status = resp.status();
    if !status.is_client_error() && !status.is_server_error() {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_ERROR_BODY).await else {
        return (status, "").into_response();
    };
    let message = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("error")?.get("message")?.as_str().map(str::to_string));
    let Some(message) = message else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let out = AnthropicErrorBody { kind: "error", error: AnthropicError { kind: error_type(status), message } };
    let json = crate::routes::to_json(&out);
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(json))
}

//! [`WebError`]: the failures of the `/api` routes, in the same OpenAI error shape as the `/v1`
//! API (`{"error": {"message", "type", "param", "code"}}`, built by [`crate::error`]), with the
//! statuses an account system needs on top: 401 (signed out), 403, 404, 409 and 429 with
//! `Retry-After`.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use store::StoreError;

use crate::error::{ApiError, ErrorBody, ErrorDetail};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WebError {
    /// Anything the `/v1` API can answer too (bad JSON, a bad parameter, context length, 413...).
    #[error(transparent)]
    Api(#[from] ApiError),
    /// No valid session cookie (or personal API key): the UI shows its sign-in page (401).
    #[error("{0}")]
    Unauthorized(&'static str),
    /// Signed in but not allowed (403): not an admin, a missing CSRF header, a foreign origin.
    #[error("{0}")]
    Forbidden(String),
    /// No such row, or one that belongs to another user (404): the two look the same.
    #[error("{0}")]
    NotFound(String),
    /// A unique value is taken, or the first account exists already (409).
    #[error("{0}")]
    Conflict(String),
    /// A body over a route's own limit (413), saying which limit.
    #[error("{0}")]
    TooLarge(String),
    /// Too many password checks at once (429 with `Retry-After`).
    #[error("the server is busy checking passwords; try again in {retry_after_secs} second(s)")]
    Busy { retry_after_secs: u64 },
    /// Too many failed sign-ins (429 with `Retry-After` in seconds).
    #[error("too many failed sign-ins; try again in {retry_after_secs} seconds")]
    RateLimited { retry_after_secs: u64 },
}

impl WebError {
    pub fn param(param: &str, message: impl Into<String>) -> Self {
        WebError::Api(ApiError::param(param, message))
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        WebError::Api(ApiError::Internal(cause.to_string()))
    }

    /// A store error about a `what` (conversation, message, user, key): NotFound names it.
    pub fn store(what: &'static str) -> impl Fn(StoreError) -> WebError {
        move |e| match e {
            StoreError::NotFound => WebError::NotFound(format!("{what} not found")),
            other => WebError::from(other),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            WebError::Api(e) => e.status(),
            WebError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            WebError::Forbidden(_) => StatusCode::FORBIDDEN,
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::Conflict(_) => StatusCode::CONFLICT,
            WebError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            WebError::RateLimited { .. } | WebError::Busy { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    pub fn body(&self) -> ErrorBody {
        let (kind, code) = match self {
            WebError::Api(e) => return e.body(),
            WebError::Unauthorized(_) => ("invalid_request_error", "unauthorized"),
            WebError::Forbidden(_) => ("invalid_request_error", "forbidden"),
            WebError::NotFound(_) => ("invalid_request_error", "not_found"),
            WebError::Conflict(_) => ("invalid_request_error", "conflict"),
            WebError::TooLarge(_) => ("invalid_request_error", "payload_too_large"),
            WebError::RateLimited { .. } | WebError::Busy { .. } => ("requests", "rate_limit_exceeded"),
        };
        ErrorBody {
            error: ErrorDetail {
                message: self.to_string(),
                kind: kind.to_string(),
                param: None,
                code: Some(code.to_string()),
            },
        }
    }
}

impl From<super::secret::SecretError> for WebError {
    fn from(e: super::secret::SecretError) -> Self {
        match e {
            super::secret::SecretError::Busy => WebError::Busy { retry_after_secs: 1 },
            other => WebError::internal(other),
        }
    }
}

impl From<StoreError> for WebError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => WebError::NotFound("not found".into()),
            StoreError::Conflict(_) => WebError::Conflict("that name is already taken".into()),
            StoreError::Forbidden(m) => WebError::Forbidden(m.to_string()),
            StoreError::Invalid(m) => WebError::Api(ApiError::InvalidParam { param: None, message: m }),
            other => WebError::internal(other),
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        if let WebError::Api(e) = self {
            return e.into_response();
        }
        let mut resp = (self.status(), Json(self.body())).into_response();
        if let WebError::RateLimited { retry_after_secs } | WebError::Busy { retry_after_secs } = self {
            resp.headers_mut().insert(header::RETRY_AFTER, retry_after_secs.into());
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_codes_and_retry_after() {
        let r = WebError::RateLimited { retry_after_secs: 42 }.into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "42");
        assert_eq!(WebError::from(StoreError::Forbidden("admins only")).status(), StatusCode::FORBIDDEN);
        assert_eq!(WebError::from(StoreError::Conflict("UNIQUE".into())).status(), StatusCode::CONFLICT);
        let nf = WebError::store("conversation")(StoreError::NotFound);
        assert_eq!(nf.to_string(), "conversation not found");
        assert_eq!(nf.body().error.code.as_deref(), Some("not_found"));
        let internal = WebError::from(StoreError::Corrupt("row 5 path /secret".into()));
        assert_eq!(internal.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!internal.body().error.message.contains("secret"));
    }
}

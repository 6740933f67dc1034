//! A request id for every request and one structured log line when it is answered.
//!
//! The id is the client's `X-Request-Id` when it is sane (1 to 128 characters among ASCII
//! letters, digits and `-_.:`), else a fresh random one; it is returned in the `X-Request-Id` response header,
//! kept in the request's extensions ([`RequestId`]) and carried by a `tracing` span around the
//! handler, so every log line written while handling the request names it. The closing line
//! has the method, the route pattern (the raw path, escaped, when no route matched), the status
//! and the latency to the response head (a stream goes on after it). `/health` and `/metrics`,
//! polled by monitors, log at debug level.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The header carrying the id, both ways.
pub const HEADER: &str = "x-request-id";

/// The id of the request being handled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(pub String);

/// Whether a client-supplied id may be used (and logged) as it is.
pub fn sane(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// A fresh id: 16 random bytes in hex (a counter-based one should the OS refuse randomness).
pub fn new_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        return crate::generation::response_id("req");
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Middleware: the id, the span, the response header and the log line.
pub async fn layer(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|s| sane(s))
        .map_or_else(new_id, str::to_string);
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string());
    let path = req.uri().path().to_string();
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", request_id = %id);
    let started = Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1e3;
    let status = resp.status().as_u16();
    let _enter = span.enter();
    let quiet = matches!(route.as_deref(), Some("/health" | "/metrics"));
    match (&route, quiet) {
        (Some(r), true) => tracing::debug!(%method, route = %r, status, latency_ms, "request"),
        (Some(r), false) => tracing::info!(%method, route = %r, status, latency_ms, "request"),
        // No route matched: the path is the client's, so it is logged escaped.
        (None, _) => tracing::info!(%method, path = ?path, status, latency_ms, "request"),
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(HEADER, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_ids_are_taken_from_clients() {
        assert!(sane("abc-123_x.y:z"));
        assert!(!sane(""));
        assert!(!sane("a\nforged line"));
        assert!(!sane("\u{1b}[31mred"));
        assert!(!sane(&"a".repeat(129)));
        let id = new_id();
        assert!(sane(&id) && id.len() == 32, "{id}");
        assert_ne!(new_id(), id);
    }
}

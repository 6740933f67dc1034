//! The CSRF guard of `/api`: a state-changing request (anything but GET, HEAD and OPTIONS) must
//! carry `X-Daehwa-CSRF: 1`, and an `Origin` header, when present, must name this host.
//!
//! `X-Forwarded-Host` counts as this host only when the peer is a trusted proxy
//! (`--trusted-proxy`): anyone else could send it to make a foreign origin look like ours.
//!
//! A cross-site form cannot set a custom header, and a cross-site `fetch` that sets one needs a
//! CORS preflight this server never approves; with `SameSite=Lax` cookies on top, a forged
//! request from another site never acts as the signed-in user.

use axum::extract::Request;
use axum::http::header::{HOST, ORIGIN};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::WebError;
use super::proxy::TrustedProxies;

pub const HEADER: &str = "x-daehwa-csrf";

pub async fn guard(req: Request, next: Next) -> Response {
    let peer = super::session::peer(req.extensions());
    let trusted = req.extensions().get::<std::sync::Arc<TrustedProxies>>().is_some_and(|p| p.trusts(peer));
    if let Err(e) = check(req.method(), req.headers(), trusted) {
        return e.into_response();
    }
    next.run(req).await
}

fn check(method: &Method, headers: &HeaderMap, trust_forwarded_host: bool) -> Result<(), WebError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    if headers.get(HEADER).and_then(|v| v.to_str().ok()).map(str::trim) != Some("1") {
        return Err(WebError::Forbidden(
            "a state-changing request must send the header `X-Daehwa-CSRF: 1` (cross-site requests are refused)".into(),
        ));
    }
    if let Some(origin) = headers.get(ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let forwarded = if trust_forwarded_host { Some("x-forwarded-host") } else { None };
        let hosts = std::iter::once(HOST.as_str())
            .chain(forwarded)
            .filter_map(|h| headers.get(h).and_then(|v| v.to_str().ok()));
        let authority = origin.split_once("://").map(|(_, a)| a.trim_end_matches('/'));
        let same = authority.is_some_and(|a| hosts.into_iter().any(|h| h.trim().eq_ignore_ascii_case(a)));
        if !same {
            return Err(WebError::Forbidden(format!("requests from the origin `{origin}` are refused")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn header_and_origin_rules() {
        assert!(check(&Method::GET, &headers(&[]), false).is_ok());
        assert!(check(&Method::POST, &headers(&[]), false).is_err());
        assert!(check(&Method::DELETE, &headers(&[(HEADER, "0")]), false).is_err());
        assert!(check(&Method::POST, &headers(&[(HEADER, "1")]), false).is_ok());
        let same = headers(&[(HEADER, "1"), ("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8080")]);
        assert!(check(&Method::PATCH, &same, false).is_ok());
        let evil = headers(&[(HEADER, "1"), ("host", "127.0.0.1:8080"), ("origin", "https://evil.example")]);
        assert!(check(&Method::POST, &evil, false).is_err());
        let null = headers(&[(HEADER, "1"), ("host", "127.0.0.1:8080"), ("origin", "null")]);
        assert!(check(&Method::POST, &null, false).is_err());
        let proxied = headers(&[
            (HEADER, "1"),
            ("host", "127.0.0.1:8080"),
            ("x-forwarded-host", "chat.example.org"),
            ("origin", "https://chat.example.org"),
        ]);
        assert!(check(&Method::POST, &proxied, false).is_err(), "X-Forwarded-Host from anyone is not believed");
        assert!(check(&Method::POST, &proxied, true).is_ok(), "from a trusted proxy it is");
    }
}

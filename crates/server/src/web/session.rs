//! Sign-in sessions: the `daehwa_session` cookie and the extractors that turn it into the
//! acting user.
//!
//! The cookie holds a random token; the store keeps only its hash, so a leaked database holds no
//! usable session. It is `HttpOnly` (no script reads it), `SameSite=Lax` (not sent on
//! cross-site POSTs), `Path=/`, `Max-Age` 30 days (the store row expires at the same time), and
//! `Secure` when the request came over TLS (a proxy's `X-Forwarded-Proto: https`) or the server
//! is told so (`--secure-cookies`).

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::{COOKIE, FORWARDED};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use store::User;

use super::error::WebError;
use super::proxy::TrustedProxies;
use super::secret;
use super::WebState;

pub const COOKIE_NAME: &str = "daehwa_session";
/// How long a sign-in lasts (cookie and store row alike).
pub const SESSION_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The session token the request's cookie carries, if any.
pub fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE_NAME)
        .map(|(_, v)| v.trim_matches('"'))
        .filter(|v| !v.is_empty())
}

/// Whether the client reached us over TLS (directly configured, or through a proxy that says so).
pub fn over_tls(headers: &HeaderMap, always: bool) -> bool {
    if always {
        return true;
    }
    let proto = headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok());
    if proto.is_some_and(|p| p.split(',').next().is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))) {
        return true;
    }
    headers
        .get(FORWARDED)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|f| f.split([';', ',']).any(|kv| kv.trim().eq_ignore_ascii_case("proto=https")))
}

fn cookie(value: &str, max_age: u64, secure: bool) -> HeaderValue {
    let s = format!(
        "{COOKIE_NAME}={value}; HttpOnly; SameSite=Lax; Path=/; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    );
    // Tokens are hex digits, so the header value is always valid ASCII.
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static("daehwa_session=; Max-Age=0; Path=/"))
}

/// The `Set-Cookie` that ends the session in the browser.
pub fn clear_cookie(secure: bool) -> HeaderValue {
    cookie("", 0, secure)
}

/// Starts a session for `user` and returns its `Set-Cookie` value.
pub async fn start(st: &WebState, user: &User, headers: &HeaderMap) -> Result<HeaderValue, WebError> {
    let token = secret::session_token().map_err(WebError::internal)?;
    let ttl_ms = i64::try_from(SESSION_TTL.as_millis()).unwrap_or(i64::MAX);
    let expires = store::now_ms().saturating_add(ttl_ms);
    st.store.create_session(user.id, &store::token_hash(&token), expires).await?;
    Ok(cookie(&token, SESSION_TTL.as_secs(), over_tls(headers, st.secure_cookies)))
}

/// The signed-in user of a request, if its cookie names a live session.
pub async fn signed_in(st: &WebState, headers: &HeaderMap) -> Result<Option<User>, WebError> {
    match cookie_token(headers) {
        Some(token) => Ok(st.store.session_user(&store::token_hash(token)).await?),
        None => Ok(None),
    }
}

/// The signed-in user; 401 otherwise.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub User);

impl FromRequestParts<WebState> for CurrentUser {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, st: &WebState) -> Result<Self, WebError> {
        signed_in(st, &parts.headers)
            .await?
            .map(CurrentUser)
            .ok_or(WebError::Unauthorized("you are not signed in (or your session has ended): sign in again"))
    }
}

/// The signed-in user, who must be an admin; 401 / 403 otherwise.
#[derive(Debug, Clone)]
pub struct Admin(pub User);

impl FromRequestParts<WebState> for Admin {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, st: &WebState) -> Result<Self, WebError> {
        let CurrentUser(u) = CurrentUser::from_request_parts(parts, st).await?;
        if !u.is_admin {
            return Err(WebError::Forbidden("only an admin may manage accounts".into()));
        }
        Ok(Admin(u))
    }
}

/// The client's address for rate limiting and logs: the peer of the TCP connection, or, when
/// that peer is a trusted proxy, the address it forwarded for ([`super::proxy`]); `unknown`
/// when the server runs without connection info (in-process tests).
#[derive(Debug, Clone)]
pub struct ClientAddr(pub String);

/// The TCP peer's address, if the server records it.
pub fn peer(extensions: &axum::http::Extensions) -> Option<std::net::IpAddr> {
    extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let peer = peer(&parts.extensions);
        let ip = match parts.extensions.get::<std::sync::Arc<TrustedProxies>>() {
            Some(p) => p.client(peer, &parts.headers),
            None => peer,
        };
        Ok(ClientAddr(ip.map_or_else(|| "unknown".into(), |ip| ip.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_session_cookie_among_others() {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_static("theme=dark; daehwa_session=abc123; x=1"));
        assert_eq!(cookie_token(&h), Some("abc123"));
        h.insert(COOKIE, HeaderValue::from_static("daehwa_session_old=zzz; other=1"));
        assert_eq!(cookie_token(&h), None);
    }

    #[test]
    fn cookie_attributes_and_tls() {
        let c = cookie("t0k", 60, false);
        assert_eq!(c, "daehwa_session=t0k; HttpOnly; SameSite=Lax; Path=/; Max-Age=60");
        assert!(cookie("t", 1, true).to_str().expect("ascii").ends_with("; Secure"));
        let mut h = HeaderMap::new();
        assert!(!over_tls(&h, false));
        assert!(over_tls(&h, true));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(over_tls(&h, false));
        let mut h = HeaderMap::new();
        h.insert(FORWARDED, HeaderValue::from_static("for=1.2.3.4;proto=https;by=x"));
        assert!(over_tls(&h, false));
    }
}

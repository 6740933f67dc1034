//! `/api/auth/*`: the first-run setup, sign-in (rate limited), sign-out, the session's state and
//! a password change.
//!
//! Usernames in log lines are written with `?` (Debug): a name a client sent can hold a
//! newline or a terminal escape, and must not forge a line of the server's log.

use std::time::Instant;

use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::extract::ApiJson;
use crate::web::error::WebError;
use crate::web::input::{Password, Username};
use crate::web::json::UserJson;
use crate::web::session::{self, ClientAddr, CurrentUser};
use crate::web::{secret, WebState};

#[derive(Deserialize, utoipa::ToSchema)]
pub struct Credentials {
    username: String,
    password: String,
}

/// `GET /api/auth/state`: `{needs_setup, user}` (no account yet: the first visitor creates the
/// admin; `user` is null when signed out). Never 401.
#[utoipa::path(get, operation_id = "auth_state", path = "/api/auth/state", tag = "web", responses((status = 200, description = "`{{needs_setup, user}}`", body = Object)))]
pub async fn state(State(st): State<WebState>, headers: HeaderMap) -> Result<Json<serde_json::Value>, WebError> {
    let needs_setup = st.store.count_users().await? == 0;
    let user = session::signed_in(&st, &headers).await?;
    Ok(Json(json!({"needs_setup": needs_setup, "user": user.as_ref().map(UserJson::from)})))
}

fn signed_in_response(status: StatusCode, user: &store::User, cookie: axum::http::HeaderValue) -> Response {
    (status, [(SET_COOKIE, cookie)], Json(UserJson::from(user))).into_response()
}

/// `POST /api/auth/setup {username, password}`: creates the first account, an admin, and signs
/// it in. Only while no account exists (409 after); two racing visitors cannot both succeed.
#[utoipa::path(post, operation_id = "auth_setup", path = "/api/auth/setup", tag = "web", request_body = Credentials, responses((status = 201, description = "the first (admin) account, signed in", body = Object), (status = "4XX", description = "An error: {\"error\": {\"message\", \"param\"?}}", body = Object)))]
pub async fn setup(
    State(st): State<WebState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<Credentials>,
) -> Result<Response, WebError> {
    let username = Username::parse(&req.username)?;
    let password = Password::parse(req.password)?;
    let taken = || WebError::Conflict("the first account exists already: sign in instead".into());
    if st.store.count_users().await? > 0 {
        return Err(taken());
    }
    let hash = secret::hash_password(password.into_inner()).await?;
    let user = match st.store.create_first_admin(username.as_str(), &hash).await {
        Ok(u) => u,
        Err(store::StoreError::Forbidden(_)) => return Err(taken()),
        Err(e) => return Err(e.into()),
    };
    tracing::info!(user = ?user.username, "created the first account (admin)");
    let cookie = session::start(&st, &user, &headers).await?;
    Ok(signed_in_response(StatusCode::CREATED, &user, cookie))
}

/// `POST /api/auth/login {username, password}`: 401 for a wrong name or password (the same
/// answer and the same time for both), 429 with `Retry-After` after too many failures of this
/// account from this address, or from this address at all, or when too many passwords are
/// being checked at once.
///
/// The failure is counted before the password is checked and given back on success, so
/// parallel guesses cannot run more hash checks than the limit allows.
#[utoipa::path(post, operation_id = "login", path = "/api/auth/login", tag = "web", request_body = Credentials, responses((status = 200, description = "signed in (session cookie)", body = Object), (status = "4XX", description = "An error: {\"error\": {\"message\", \"param\"?}}", body = Object)))]
pub async fn login(
    State(st): State<WebState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    ApiJson(req): ApiJson<Credentials>,
) -> Result<Response, WebError> {
    let name = req.username.trim();
    let slot = match st.limiter.reserve(&addr, name, Instant::now()) {
        Ok(slot) => slot,
        Err(wait) => {
            tracing::warn!(%addr, username = ?name, "sign-in refused: too many failures");
            return Err(WebError::RateLimited { retry_after_secs: wait.as_secs().max(1) });
        }
    };
    let creds = st.store.user_credentials(name).await?;
    let (user, hash) = match creds {
        Some(c) => (Some(c.user), Some(c.password_hash)),
        None => (None, None),
    };
    let ok = secret::verify_password(req.password, hash).await?;
    let Some(user) = user.filter(|_| ok) else {
        tracing::info!(%addr, username = ?name, "failed sign-in");
        return Err(WebError::Unauthorized("incorrect username or password"));
    };
    st.limiter.release(slot);
    if let Err(e) = st.store.purge_expired_sessions().await {
        tracing::warn!(error = %e, "could not purge expired sessions");
    }
    let cookie = session::start(&st, &user, &headers).await?;
    Ok(signed_in_response(StatusCode::OK, &user, cookie))
}

/// `POST /api/auth/logout`: deletes the session row and the cookie (204, also when signed out).
#[utoipa::path(post, operation_id = "logout", path = "/api/auth/logout", tag = "web", responses((status = 204, description = "signed out")))]
pub async fn logout(State(st): State<WebState>, headers: HeaderMap) -> Result<Response, WebError> {
    if let Some(token) = session::cookie_token(&headers) {
        st.store.delete_session(&store::token_hash(token)).await?;
    }
    let clear = session::clear_cookie(session::over_tls(&headers, st.secure_cookies));
    Ok((StatusCode::NO_CONTENT, [(SET_COOKIE, clear)]).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct PasswordChange {
    current_password: String,
    new_password: String,
    /// Also revoke every personal API key of the user (after a leak).
    #[serde(default)]
    revoke_api_keys: bool,
}

/// `POST /api/auth/password {current_password, new_password, revoke_api_keys?}`: ends every
/// session of the user (other browsers are signed out), revokes their API keys when asked,
/// and signs this browser in again. A wrong current password counts as a failed sign-in.
#[utoipa::path(post, operation_id = "change_password", path = "/api/auth/password", tag = "web", request_body = PasswordChange, responses((status = 200, description = "changed; signed in again", body = Object), (status = "4XX", description = "An error: {\"error\": {\"message\", \"param\"?}}", body = Object)))]
pub async fn change_password(
    State(st): State<WebState>,
    CurrentUser(user): CurrentUser,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    ApiJson(req): ApiJson<PasswordChange>,
) -> Result<Response, WebError> {
    let new = Password::parse(req.new_password).map_err(|_| {
        WebError::param("new_password", format!("a password has at least {} characters", crate::web::input::MIN_PASSWORD_CHARS))
    })?;
    let slot = st
        .limiter
        .reserve(&addr, &user.username, Instant::now())
        .map_err(|wait| WebError::RateLimited { retry_after_secs: wait.as_secs().max(1) })?;
    let hash = st.store.user_credentials(&user.username).await?.map(|c| c.password_hash);
    if !secret::verify_password(req.current_password, hash).await? {
        return Err(WebError::Forbidden("the current password is not correct".into()));
    }
    st.limiter.release(slot);
    let new_hash = secret::hash_password(new.into_inner()).await?;
    let revoked = st.store.change_password(user.id, user.id, &new_hash, req.revoke_api_keys).await?;
    tracing::info!(user = ?user.username, revoked_api_keys = revoked, "changed the password; other sessions ended");
    let cookie = session::start(&st, &user, &headers).await?;
    Ok(signed_in_response(StatusCode::OK, &user, cookie))
}

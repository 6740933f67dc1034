//! `/api/conversations`: list and search, create, read (with the whole message tree), change
//! and delete, always the signed-in user's own (another user's id answers 404).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use store::{ConversationId, ConversationPatch, MessageId, NewConversation};

use crate::extract::ApiJson;
use crate::web::error::WebError;
use crate::web::input::{self, nullable, Settings};
use crate::web::json::{ConversationJson, SummaryJson};
use crate::web::session::CurrentUser;
use crate::web::WebState;

const DEFAULT_LIMIT: i64 = 200;
const MAX_LIMIT: i64 = 1000;

fn number(q: &HashMap<String, String>, key: &str, default: i64, max: i64) -> Result<i64, WebError> {
    match q.get(key) {
        None => Ok(default),
        Some(v) => match v.trim().parse::<i64>() {
            Ok(n) if (0..=max).contains(&n) => Ok(n),
            _ => Err(WebError::param(key, format!("`{key}` is a whole number from 0 to {max}"))),
        },
    }
}

/// `GET /api/conversations[?q=text][&limit=N][&offset=N]`: most recently updated first; with
/// `q`, the conversations whose title or any message contains it, each with a snippet.
#[utoipa::path(get, operation_id = "list_conversations", path = "/api/conversations", tag = "web", params(("q" = Option<String>, Query, description = "search titles and messages")), responses((status = 200, description = "`{conversations: [..]}`", body = Object), (status = "4XX", description = "An error: {\"error\": {\"message\", \"param\"?}}", body = Object)))]
pub async fn list(
    State(st): State<WebState>,
    CurrentUser(user): CurrentUser,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, WebError> {
    let limit = number(&q, "limit", DEFAULT_LIMIT, MAX_LIMIT)?;
    let offset = number(&q, "offset", 0, i64::MAX)?;
    let items: Vec<SummaryJson> = match q.get("q").map(|s| s.trim()).filter(|s| !s.is_empty()) {
        Some(text) => st.store.search(user.id, text, limit).await?.iter().map(SummaryJson::from).collect(),
        None => st.store.list_conversations(user.id, limit, offset).await?.iter().map(SummaryJson::from).collect(),
    };
    Ok(Json(json!({ "conversations": items })))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
pub struct Create {
    title: Option<String>,
    system_prompt: Option<String>,
    model: Option<String>,
    settings: Option<Value>,
}

/// `POST /api/conversations {title?, system_prompt?, model?, settings?}` (201).
#[utoipa::path(post, operation_id = "create_conversation", path = "/api/conversations", tag = "web", request_body = Create, responses((status = 201, description = "created", body = crate::web::json::ConversationJson), (status = "4XX", description = "An error: {\"error\": {\"message\", \"param\"?}}", body = Object)))]
pub async fn create(
    State(st): State<WebState>,
    CurrentUser(user): CurrentUser,
    ApiJson(req): ApiJson<Create>,
) -> Result<Response, WebError> {
    let new = NewConversation {
        title: input::title(req.title.as_deref().unwrap_or(""))?,
        system_prompt: input::system_prompt(req.system_prompt)?,
        model: input::model(req.model, &st.config)?,
        settings: Settings::parse(&req.settings.unwrap_or(Value::Null))?.to_json(),
    };
    let c = st.store.create_conversation(user.id, &new).await?;
    Ok((StatusCode::CREATED, Json(ConversationJson::new(&c, &[]))).into_response())
}

/// `GET /api/conversations/{id}`: the conversation and every message of its tree.
#[utoipa::path(get, operation_id = "get_conversation", path = "/api/conversations/{id}", tag = "web", params(("id" = String, Path)), responses((status = 200, description = "success", body = crate::web::json::ConversationJson), (status = "4XX", description = "An error: {\"error\": {\"message\", \"param\"?}}", body = Object)))]
pub async fn get_one(
    State(st): State<WebState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<ConversationJson>, WebError> {
    let id = ConversationId(input::id(&id, "conversation")?);
    let c = st.store.conversation(user.id, id).await.map_err(WebError::store("conversation"))?;
    let messages = st.store.messages(user.id, id).await.map_err(WebError::store("conversation"))?;
    let mut json = ConversationJson::new(&c, &messages);
    // A policy that hides provenance marks hides the answers' "marked" label too.
    let policy = crate::policy::resolve_in(Some(&st.store), Some(&crate::policy::Who::user(user.id, None))).await?;
    if policy.is_some_and(|p| !p.show_marks()) {
        json.messages.iter_mut().for_each(|m| m.marked = false);
    }
    Ok(Json(json))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct Patch {
    title: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    system_prompt: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    model: Option<Option<String>>,
    settings: Option<Value>,
    /// The leaf of the branch being looked at (remembered for the next visit).
    current_message_id: Option<String>,
}

/// `PATCH /api/conversations/{id}`: any of `title`, `system_prompt` (null or blank clears it),
/// `model` (null clears it), `settings` (replaced whole), `current_message_id`.
#[utoipa::path(patch, operation_id = "patch_conversation", path = "/api/conversations/{id}", tag = "web", params(("id" = String, Path)), request_body = Patch, responses((status = 200, description = "success", body = crate::web::json::ConversationJson), (status = "4XX", description = "An error: {\"error\": {\"message\", \"param\"?}}", body = Object)))]
pub async fn patch(
    State(st): State<WebState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<Patch>,
) -> Result<Json<ConversationJson>, WebError> {
    let id = ConversationId(input::id(&id, "conversation")?);
    let patch = ConversationPatch {
        title: req.title.as_deref().map(input::title).transpose()?,
        system_prompt: req.system_prompt.map(input::system_prompt).transpose()?,
        model: req.model.map(|m| input::model(m, &st.config)).transpose()?,
        settings: req.settings.as_ref().map(|s| Settings::parse(s).map(Settings::to_json)).transpose()?,
    };
    if let Some(leaf) = req.current_message_id {
        let leaf = input::id(&leaf, "message").map_err(|_| WebError::param("current_message_id", "no such message"))?;
        st.store.set_current_message(user.id, id, MessageId(leaf)).await.map_err(|e| match e {
            store::StoreError::NotFound => WebError::param("current_message_id", "not a message of this conversation"),
            other => other.into(),
        })?;
    }
    // Ownership first, so a foreign id is 404 whatever the body holds.
    let c = if patch == ConversationPatch::default() {
        st.store.conversation(user.id, id).await
    } else {
        st.store.update_conversation(user.id, id, &patch).await
    }
    .map_err(WebError::store("conversation"))?;
    let messages = st.store.messages(user.id, id).await.map_err(WebError::store("conversation"))?;
    Ok(Json(ConversationJson::new(&c, &messages)))
}

/// `DELETE /api/conversations/{id}` (204): the rows are gone, not hidden.
#[utoipa::path(delete, operation_id = "delete_conversation", path = "/api/conversations/{id}", tag = "web", params(("id" = String, Path)), responses((status = 204, description = "deleted"), (status = "4XX", description = "An error: {\"error\": {\"message\", \"param\"?}}", body = Object)))]
pub async fn delete(
    State(st): State<WebState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, WebError> {
    let id = ConversationId(input::id(&id, "conversation")?);
    st.store.delete_conversation(user.id, id).await.map_err(WebError::store("conversation"))?;
    Ok(StatusCode::NO_CONTENT)
}

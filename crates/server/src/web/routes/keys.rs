//! `/api/keys`: personal API keys for `/v1`. The secret is shown once, in the answer that
//! creates it; the store keeps its hash and a short prefix to recognise it by.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use store::ApiKeyId;

use crate::extract::ApiJson;
use crate::web::error::WebError;
use crate::web::input;
use crate::web::json::{CreatedKeyJson, KeyJson};
use crate::web::secret::{self, SHOWN_KEY_CHARS};
use crate::web::session::CurrentUser;
use crate::web::WebState;

/// `GET /api/keys`: the user's keys that still work, newest first.
#[utoipa::path(get, operation_id = "list_keys", path = "/api/keys", tag = "web", responses((status = 200, description = "`{{keys: [..]}}`", body = Object)))]
pub async fn list(State(st): State<WebState>, CurrentUser(user): CurrentUser) -> Result<Json<Value>, WebError> {
    let keys: Vec<KeyJson> =
        st.store.list_api_keys(user.id).await?.iter().filter(|k| k.revoked_at.is_none()).map(KeyJson::from).collect();
    Ok(Json(json!({ "keys": keys })))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
pub struct Create {
    name: Option<String>,
}

/// `POST /api/keys {name}` (201): `{id, name, prefix, created_at, key}`.
#[utoipa::path(post, operation_id = "create_key", path = "/api/keys", tag = "web", request_body = Create, responses((status = 201, description = "created", body = crate::web::json::CreatedKeyJson), (status = "4XX", description = "An error: {\"error\": {\"message\", \"param\"?}}", body = Object)))]
pub async fn create(
    State(st): State<WebState>,
    CurrentUser(user): CurrentUser,
    ApiJson(req): ApiJson<Create>,
) -> Result<Response, WebError> {
    let name = input::key_name(req.name.as_deref())?;
    let secret = secret::api_key().map_err(WebError::internal)?;
    let prefix: String = secret.chars().take(SHOWN_KEY_CHARS).collect();
    let key = st.store.create_api_key(user.id, &name, &prefix, &store::token_hash(&secret)).await?;
    tracing::info!(user = ?user.username, key = %key.id, "created an API key");
    Ok((StatusCode::CREATED, Json(CreatedKeyJson { key: KeyJson::from(&key), secret })).into_response())
}

/// `DELETE /api/keys/{id}` (204): the key stops working at once.
#[utoipa::path(delete, operation_id = "revoke_key", path = "/api/keys/{id}", tag = "web", params(("id" = String, Path)), responses((status = 204, description = "revoked"), (status = "4XX", description = "An error: {\"error\": {\"message\", \"param\"?}}", body = Object)))]
pub async fn revoke(
    State(st): State<WebState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, WebError> {
    let id = ApiKeyId(input::id(&id, "API key")?);
    st.store.revoke_api_key(user.id, id).await.map_err(WebError::store("API key"))?;
    Ok(StatusCode::NO_CONTENT)
}

//! `/api/users` (admins only, 403 otherwise): list, add and remove accounts. Removing one
//! deletes everything it owns, its sessions included, so it is signed out everywhere at once.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use store::UserId;

use crate::extract::ApiJson;
use crate::web::error::WebError;
use crate::web::input::{self, Password, Username};
use crate::web::json::UserJson;
use crate::web::session::Admin;
use crate::web::{secret, WebState};

/// `GET /api/users`.
#[utoipa::path(get, operation_id = "list_users", path = "/api/users", tag = "web", responses((status = 200, description = "`{users: [..]}` (admins only)", body = Object), (status = "4XX", description = "An error: {\"error\": {\"message\", \"param\"?}}", body = Object)))]
pub async fn list(State(st): State<WebState>, Admin(admin): Admin) -> Result<Json<Value>, WebError> {
    let users: Vec<UserJson> = st.store.list_users(admin.id).await?.iter().map(UserJson::from).collect();
    Ok(Json(json!({ "users": users })))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct Create {
    username: String,
    password: String,
    #[serde(default)]
    is_admin: bool,
}

/// `POST /api/users {username, password, is_admin}` (201; 409 when the name is taken, in any
/// letter case).
#[utoipa::path(post, operation_id = "create_user", path = "/api/users", tag = "web", request_body = Create, responses((status = 201, description = "created", body = crate::web::json::UserJson), (status = "4XX", description = "An error: {\"error\": {\"message\", \"param\"?}}", body = Object)))]
pub async fn create(
    State(st): State<WebState>,
    Admin(admin): Admin,
    ApiJson(req): ApiJson<Create>,
) -> Result<Response, WebError> {
    let username = Username::parse(&req.username)?;
    let password = Password::parse(req.password)?;
    let hash = secret::hash_password(password.into_inner()).await?;
    let user = st.store.create_user(username.as_str(), &hash, req.is_admin).await.map_err(|e| match e {
        store::StoreError::Conflict(_) => WebError::Conflict(format!("the username `{}` is taken", username.as_str())),
        other => other.into(),
    })?;
    tracing::info!(by = ?admin.username, user = ?user.username, admin = user.is_admin, "added an account");
    Ok((StatusCode::CREATED, Json(UserJson::from(&user))).into_response())
}

/// `DELETE /api/users/{id}` (204; 403 for one's own account).
#[utoipa::path(delete, operation_id = "delete_user", path = "/api/users/{id}", tag = "web", params(("id" = String, Path)), responses((status = 204, description = "removed"), (status = "4XX", description = "An error: {\"error\": {\"message\", \"param\"?}}", body = Object)))]
pub async fn delete(
    State(st): State<WebState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, WebError> {
    let target = UserId(input::id(&id, "user")?);
    if target == admin.id {
        return Err(WebError::Forbidden("you cannot remove your own account".into()));
    }
    st.store.delete_user(admin.id, target).await.map_err(WebError::store("user"))?;
    tracing::info!(by = ?admin.username, user = ?target, "removed an account");
    Ok(StatusCode::NO_CONTENT)
}

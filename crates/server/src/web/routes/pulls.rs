//! `/api/admin/pulls` (admins only, 403 otherwise): the models in the models directory and the
//! pulls from Hugging Face started from Settings, with their progress.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::web::error::WebError;
use crate::web::pulls::local_models;
use crate::web::session::CurrentUser;
use crate::web::WebState;

fn admin(user: &CurrentUser) -> Result<(), WebError> {
    if user.0.is_admin {
        Ok(())
    } else {
        Err(WebError::Forbidden("only an admin may pull models".into()))
    }
}

/// `GET /api/admin/pulls`: `{models_dir, models: [{name, size_bytes, quant, context_length,
/// architecture, source}], pulls: [{id, model, state, file, done_bytes, total_bytes, name, source,
/// error}]}`, the newest pull first.
#[utoipa::path(get, operation_id = "list_pulls", path = "/api/admin/pulls", tag = "web", responses((status = 200, description = "`{models_dir, models: [..], pulls: [..]}` (admins only)", body = Object), (status = "4XX", description = "An error: {\"error\": {\"message\", \"param\"?}}", body = Object)))]
pub async fn list(State(st): State<WebState>, user: CurrentUser) -> Result<Json<Value>, WebError> {
    admin(&user)?;
    let dir = st.pulls.dir.clone();
    // The pulls before the files: a pull seen as done has its model in the listing.
    let pulls = st.pulls.list();
    let models = match dir.clone() {
        // Reading GGUF headers is file I/O and parsing: not on the async workers.
        Some(d) => tokio::task::spawn_blocking(move || local_models(&d)).await.unwrap_or_default(),
        None => Vec::new(),
    };
    Ok(Json(json!({ "models_dir": dir, "models": models, "pulls": pulls })))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct StartPull {
    /// `hf:ORG/REPO` or `hf:ORG/REPO:QUANT`.
    model: String,
}

/// `POST /api/admin/pulls {model: "hf:ORG/REPO[:QUANT]"}`: starts the pull in the background
/// (202 with the pull; 409 while another one runs). Poll `GET /api/admin/pulls` for progress.
#[utoipa::path(post, operation_id = "start_pull", path = "/api/admin/pulls", tag = "web", request_body = StartPull, responses((status = 202, description = "started", body = crate::web::pulls::PullJson), (status = "4XX", description = "An error: {\"error\": {\"message\", \"param\"?}}", body = Object)))]
pub async fn start(State(st): State<WebState>, user: CurrentUser, ApiJson(req): ApiJson<StartPull>) -> Result<Response, WebError> {
    admin(&user)?;
    let model = req.model.trim();
    let spec = hub::HfSpec::parse(model).map_err(|e| ApiError::param("model", e.to_string()))?;
    let Some(dir) = st.pulls.dir.clone() else {
        return Err(ApiError::param("model", "this server has no models directory to pull into").into());
    };
    let pull = st.pulls.start(model, spec, &dir, st.models.clone(), st.config.clone()).map_err(WebError::Conflict)?;
    tracing::info!(by = ?user.0.username, model, "started a pull");
    Ok((StatusCode::ACCEPTED, Json(pull)).into_response())
}

//! The HTTP routes. Generation routes live in their own files; the small read-only ones here.

pub mod chat;
pub(crate) mod choices;
pub mod completions;
pub mod converse;
pub mod responses;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;

use crate::error::ApiError;
use crate::openai::{Model, ModelList};
use crate::AppState;

pub use choices::to_json;

/// The tenant the key check put on the request (an open server's "anyone" if none).
pub(crate) fn tenant_of(st: &AppState, t: Option<axum::Extension<crate::tenant::Tenant>>) -> crate::tenant::Tenant {
    t.map_or_else(|| crate::tenant::Tenant::of(&st.config, crate::tenant::Identity::Anyone), |e| e.0)
}

fn model_entries(st: &AppState) -> Vec<Model> {
    st.config
        .model_names()
        .into_iter()
        .map(|id| Model { id: id.to_string(), object: "model".into(), created: st.config.created, owned_by: "daehwa".into() })
        .collect()
}

/// `GET /v1/models`: the served model under its name, then its other names.
#[utoipa::path(get, path = "/v1/models", tag = "openai", responses((status = 200, description = "success", body = ModelList)))]
pub async fn list_models(State(st): State<AppState>) -> Json<ModelList> {
    Json(ModelList { object: "list".into(), data: model_entries(&st) })
}

/// `GET /v1/models/{id}`.
#[utoipa::path(get, path = "/v1/models/{id}", tag = "openai", params(("id" = String, Path, description = "a model id")), responses((status = 200, description = "success", body = Model), (status = "4XX", description = "An OpenAI-shaped error", body = crate::error::ErrorBody), (status = "5XX", description = "An OpenAI-shaped error", body = crate::error::ErrorBody)))]
pub async fn get_model(State(st): State<AppState>, Path(id): Path<String>) -> Result<Json<Model>, ApiError> {
    model_entries(&st).into_iter().find(|m| m.id == id).map(Json).ok_or(ApiError::ModelNotFound(id))
}

/// `GET /health`: the engine's real state (`ok`, `degraded`, `loading`, `stopping`, `dead`) with
/// the reason when not ok, plus the scheduler's load (never needs a key). 200 only when the
/// engine can serve, 503 otherwise.
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, description = "`{{status, model, queue_depth, running, reason?}}`: the engine can serve", body = Object), (status = 503, description = "the engine cannot serve (loading, stopping, dead)", body = Object)))]
pub async fn health(State(st): State<AppState>) -> impl IntoResponse {
    let s = st.engine.stats();
    let h = st.engine.health();
    let status = if h.state.can_serve() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let mut body = serde_json::json!({
        "status": h.state.as_str(),
        "model": st.config.model_id,
        "queue_depth": s.queue_depth,
        "running": s.running,
    });
    if let Some(reason) = h.reason {
        body["reason"] = reason.into();
    }
    (status, Json(body))
}

/// `GET /metrics` in Prometheus' text format.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(State(st): State<AppState>) -> impl IntoResponse {
    let mut body = st.metrics.render(&st.engine.stats());
    crate::metrics::render_engine(&mut body, &st.engine.stats(), st.engine.health().state);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body)
}

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

/// Each served model under its id, then its other names, with its state.
fn model_entries(st: &AppState) -> Vec<Model> {
    let mut out = Vec::new();
    for m in st.models.statuses() {
        for name in std::iter::once(&m.id).chain(&m.aliases) {
            out.push(Model {
                id: name.clone(),
                object: "model".into(),
                created: m.created,
                owned_by: "daehwa".into(),
                state: Some(m.state.as_str().into()),
            });
        }
    }
    out
}

/// `GET /v1/models`: each served model (the default first) under its name, then its other
/// names, each with its `state`.
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
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, description = "`{{status, model, queue_depth, running, reason?, models: [{{id, state, status?, queue_depth?, running?, reason?, last_error?}}]}}`: the loaded engines can serve", body = Object), (status = 503, description = "the engine cannot serve (loading, stopping, dead)", body = Object)))]
pub async fn health(State(st): State<AppState>) -> impl IntoResponse {
    let s = st.models.stats();
    let h = st.models.health();
    let status = if h.state.can_serve() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let mut body = serde_json::json!({
        "status": h.state.as_str(),
        "model": st.config.model_id,
        "queue_depth": s.queue_depth,
        "running": s.running,
        "models": model_health(&st),
    });
    if let Some(reason) = h.reason {
        body["reason"] = reason.into();
    }
    (status, Json(body))
}

/// Each model's part of `/health`: its state and, while loaded, its engine's.
fn model_health(st: &AppState) -> Vec<serde_json::Value> {
    st.models
        .statuses()
        .into_iter()
        .map(|m| {
            let mut v = serde_json::json!({ "id": m.id, "state": m.state.as_str() });
            if let (Some(h), Some(s)) = (m.health, m.stats) {
                v["status"] = h.state.as_str().into();
                v["queue_depth"] = s.queue_depth.into();
                v["running"] = s.running.into();
                if let Some(r) = h.reason {
                    v["reason"] = r.into();
                }
            }
            if let Some(e) = m.last_error {
                v["last_error"] = e.into();
            }
            v
        })
        .collect()
}

/// `GET /metrics` in Prometheus' text format.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(State(st): State<AppState>) -> impl IntoResponse {
    let stats = st.models.stats();
    let mut body = st.metrics.render(&stats);
    crate::metrics::render_engine(&mut body, &stats, st.models.health().state);
    crate::metrics::render_kv_disk(&mut body, &stats);
    st.models.render_metrics(&mut body);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body)
}

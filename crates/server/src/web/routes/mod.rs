//! The `/api` JSON routes, one file per concept. The answer stream is in `web::answer` and the
//! import in `web::import`.

pub mod auth;
pub mod conversations;
pub mod keys;
pub mod users;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::session::CurrentUser;
use super::WebState;

/// `GET /api/models`: the served model (`{models: [{id, name, context_length}]}`).
#[utoipa::path(get, operation_id = "web_models", path = "/api/models", tag = "web", responses((status = 200, description = "`{{models: [{{id, name, context_length}}]}}`", body = Object)))]
pub async fn models(State(st): State<WebState>, _user: CurrentUser) -> Json<Value> {
    let name = st.config.model_aliases.iter().find(|a| !a.is_empty()).unwrap_or(&st.config.model_id);
    Json(json!({
        "models": [{"id": st.config.model_id, "name": name, "context_length": st.engine.n_ctx()}]
    }))
}

//! The `/api` JSON routes, one file per concept. The answer stream is in `web::answer` and the
//! import in `web::import`.

pub mod auth;
pub mod conversations;
pub mod energy;
pub mod keys;
pub mod users;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::session::CurrentUser;
use super::WebState;

/// `GET /api/models`: the served models, the default first
/// (`{models: [{id, name, context_length, state?}]}`; `state` (`loaded`, `loading`, `unloaded`)
/// when the server has several).
#[utoipa::path(get, operation_id = "web_models", path = "/api/models", tag = "web", responses((status = 200, description = "`{{models: [{{id, name, context_length, state?}}]}}`", body = Object)))]
pub async fn models(State(st): State<WebState>, _user: CurrentUser) -> Json<Value> {
    let all = st.models.statuses();
    let several = all.len() > 1;
    let models: Vec<Value> = all
        .into_iter()
        .map(|m| {
            let name = m.aliases.iter().find(|a| !a.is_empty()).unwrap_or(&m.id);
            let mut v = json!({"id": m.id, "name": name, "context_length": m.n_ctx});
            if several {
                v["state"] = m.state.as_str().into();
            }
            v
        })
        .collect();
    Json(json!({ "models": models }))
}

//! The `/api` JSON routes, one file per concept. The answer stream is in `web::answer` and the
//! import in `web::import`.

pub mod auth;
pub mod conversations;
pub mod energy;
pub mod keys;
pub mod policies;
pub mod pulls;
pub mod users;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::session::CurrentUser;
use super::WebState;

/// `GET /api/models`: the served models, the default first
/// (`{models: [{id, name, context_length, state?, size_bytes?, quant?, source?}]}`; `state`
/// (`loaded`, `loading`, `unloaded`) when the server has several; size, quantization and source
/// (`hf:ORG/REPO:QUANT` for a pulled model) for the models in the models directory).
#[utoipa::path(get, operation_id = "web_models", path = "/api/models", tag = "web", responses((status = 200, description = "`{{models: [{{id, name, context_length, state?}}]}}`", body = Object)))]
pub async fn models(State(st): State<WebState>, _user: CurrentUser) -> Json<Value> {
    // Size and quantization of the served models found in the models directory (file reads:
    // not on the async workers).
    let local = match st.pulls.dir.clone() {
        Some(d) => tokio::task::spawn_blocking(move || super::pulls::local_models(&d)).await.unwrap_or_default(),
        None => Vec::new(),
    };
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
            if let Some(l) = local.iter().find(|l| l.name == m.id) {
                v["size_bytes"] = l.size_bytes.into();
                v["quant"] = l.quant.clone().into();
                v["source"] = l.source.clone().into();
            }
            v
        })
        .collect();
    Json(json!({ "models": models }))
}

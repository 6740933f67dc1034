//! `/api/policies` (admins only, 403 otherwise; CSRF as every `/api` write): list, create,
//! update and delete use-case policies, assign them to users, personal API keys and the server's
//! `--api-key`s (by label), and read the audit trail of changes.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use store::{PolicyId, PolicySpec, PolicySubject};

use crate::extract::ApiJson;
use crate::web::error::WebError;
use crate::web::input;
use crate::web::session::{Admin, CurrentUser};
use crate::web::WebState;

/// `GET /api/policies`: `{policies: [..], server_keys: [label, ..]}`.
#[utoipa::path(get, operation_id = "list_policies", path = "/api/policies", tag = "web", responses((status = 200, description = "`{policies: [{id, name, system_prompt, allowed_models, max_tokens_per_answer, max_tokens_per_day, show_marks, show_energy, is_default, subjects, created_at, updated_at}], server_keys: [label]}` (admins only)", body = Object), (status = "4XX", description = "An error: {\"error\": {\"message\", \"param\"?}}", body = Object)))]
pub async fn list(State(st): State<WebState>, Admin(admin): Admin) -> Result<Json<Value>, WebError> {
    let policies = st.store.list_policies(admin.id).await?;
    let server_keys: Vec<String> = st.config.api_keys.iter().map(|k| PolicySubject::server_key_label(k)).collect();
    Ok(Json(json!({ "policies": policies, "server_keys": server_keys })))
}

fn conflict(name: &str) -> impl FnOnce(store::StoreError) -> WebError + '_ {
    move |e| match e {
        store::StoreError::Conflict(_) => WebError::Conflict(format!("a policy named `{name}` exists")),
        other => WebError::store("policy")(other),
    }
}

/// `POST /api/policies {name, system_prompt?, allowed_models?, max_tokens_per_answer?, max_tokens_per_day?, show_marks?, show_energy?, is_default?}` (201).
#[utoipa::path(post, operation_id = "create_policy", path = "/api/policies", tag = "web", request_body = Object, responses((status = 201, description = "created", body = Object), (status = "4XX", description = "An error: {\"error\": {\"message\", \"param\"?}}", body = Object)))]
pub async fn create(State(st): State<WebState>, Admin(admin): Admin, ApiJson(spec): ApiJson<PolicySpec>) -> Result<Response, WebError> {
    let p = st.store.create_policy(admin.id, &spec).await.map_err(conflict(&spec.name))?;
    tracing::info!(by = ?admin.username, policy = ?p.spec.name, "created a policy");
    Ok((StatusCode::CREATED, Json(p)).into_response())
}

/// `PUT /api/policies/{id}` with the whole policy, as for create.
#[utoipa::path(put, operation_id = "update_policy", path = "/api/policies/{id}", tag = "web", params(("id" = String, Path)), request_body = Object, responses((status = 200, description = "updated", body = Object), (status = "4XX", description = "An error: {\"error\": {\"message\", \"param\"?}}", body = Object)))]
pub async fn update(State(st): State<WebState>, Admin(admin): Admin, Path(id): Path<String>, ApiJson(spec): ApiJson<PolicySpec>) -> Result<Json<store::Policy>, WebError> {
    let id = PolicyId(input::id(&id, "policy")?);
    let p = st.store.update_policy(admin.id, id, &spec).await.map_err(conflict(&spec.name))?;
    Ok(Json(p))
}

/// `DELETE /api/policies/{id}` (204).
#[utoipa::path(delete, operation_id = "delete_policy", path = "/api/policies/{id}", tag = "web", params(("id" = String, Path)), responses((status = 204, description = "deleted"), (status = "4XX", description = "An error: {\"error\": {\"message\", \"param\"?}}", body = Object)))]
pub async fn delete(State(st): State<WebState>, Admin(admin): Admin, Path(id): Path<String>) -> Result<StatusCode, WebError> {
    let id = PolicyId(input::id(&id, "policy")?);
    st.store.delete_policy(admin.id, id).await.map_err(WebError::store("policy"))?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Assign {
    /// `user:ID`, `apikey:ID` or `serverkey:LABEL`.
    #[schema(value_type = String)]
    subject: PolicySubject,
    /// The policy's id, or null to take the subject's policy away.
    #[schema(value_type = Option<i64>)]
    policy_id: Option<PolicyId>,
}

/// `POST /api/policies/assign {subject, policy_id}`: `{policy}` now assigned (null when none).
#[utoipa::path(post, operation_id = "assign_policy", path = "/api/policies/assign", tag = "web", request_body = Assign, responses((status = 200, description = "`{policy}`", body = Object), (status = "4XX", description = "An error: {\"error\": {\"message\", \"param\"?}}", body = Object)))]
pub async fn assign(State(st): State<WebState>, Admin(admin): Admin, ApiJson(req): ApiJson<Assign>) -> Result<Json<Value>, WebError> {
    let p = st.store.assign_policy(admin.id, &req.subject, req.policy_id).await.map_err(WebError::store("policy"))?;
    Ok(Json(json!({ "policy": p })))
}

/// `GET /api/policies/audit`: the newest 500 changes, newest first.
#[utoipa::path(get, operation_id = "policy_audit", path = "/api/policies/audit", tag = "web", responses((status = 200, description = "`{entries: [{id, at, actor_id, actor_name, action, policy_id, policy_name, subject, old_value, new_value}]}`", body = Object), (status = "4XX", description = "An error: {\"error\": {\"message\", \"param\"?}}", body = Object)))]
pub async fn audit(State(st): State<WebState>, Admin(admin): Admin) -> Result<Json<Value>, WebError> {
    let entries = st.store.policy_audit(admin.id, 500).await?;
    Ok(Json(json!({ "entries": entries })))
}

/// `GET /api/policies/mine` (any signed-in user): the policy the user's chats run under, as
/// the chat view shows it: `{policy: {name, allowed_models, max_tokens_per_answer,
/// max_tokens_per_day, show_marks, show_energy, tokens_today} | null}`. The system prompt is
/// not shown (it is the organisation's).
#[utoipa::path(get, operation_id = "my_policy", path = "/api/policies/mine", tag = "web", responses((status = 200, description = "`{policy: {name, allowed_models, max_tokens_per_answer, max_tokens_per_day, show_marks, show_energy, tokens_today} | null}`", body = Object), (status = "4XX", description = "An error: {\"error\": {\"message\", \"param\"?}}", body = Object)))]
pub async fn mine(State(st): State<WebState>, CurrentUser(user): CurrentUser) -> Result<Json<Value>, WebError> {
    let who = crate::policy::Who::user(user.id, None);
    let Some(active) = crate::policy::resolve_in(Some(&st.store), Some(&who)).await? else {
        return Ok(Json(json!({ "policy": null })));
    };
    let spec = &active.policy.spec;
    let tokens_today = st.store.policy_tokens_today(&who.usage_key).await?;
    Ok(Json(json!({ "policy": {
        "name": spec.name,
        "allowed_models": spec.allowed_models,
        "max_tokens_per_answer": spec.max_tokens_per_answer,
        "max_tokens_per_day": spec.max_tokens_per_day,
        "show_marks": spec.show_marks,
        "show_energy": spec.show_energy,
        "tokens_today": tokens_today,
    } })))
}

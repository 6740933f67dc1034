//! daehwa's OpenAI-compatible HTTP API (axum): `/v1/chat/completions`, `/v1/completions`,
//! `/v1/models`, `/health` and `/metrics`, over any [`Backend`] (the engine runner in production,
//! a scripted backend in tests). With a conversation store ([`AppState::with_accounts`]) it is
//! also the chat product: accounts, the `/api` routes and the embedded web UI ([`web`]). Several
//! models can be served at once ([`AppState::with_models`], [`registry`]): a handler takes its
//! backend with `st.models.get(requested_model).await?`.
//!
//! ```text
//!  client ── HTTP ──> auth ─> ApiJson (400 on bad JSON) ─> validate (400 naming the param)
//!                                                              │ Job
//!                     SSE / JSON <── Generation <── Backend::submit (one sequence per choice)
//! ```
//!
//! ```no_run
//! # async fn demo(backend: std::sync::Arc<dyn server::Backend>) -> std::io::Result<()> {
//! let state = server::AppState::new(backend, server::ServeConfig::new("smollm2"));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! server::serve(listener, state, async { let _ = tokio::signal::ctrl_c().await; }, std::time::Duration::from_secs(30)).await
//! # }
//! ```

pub mod admission;
pub mod anthropic;
pub mod backend;
pub mod body_deadline;
pub mod chat;
pub mod config;
pub mod connections;
pub mod engine_backend;
pub mod error;
pub mod extract;
pub mod gen_trace;
pub mod generation;
pub mod keyfile;
pub mod logit_bias;
pub mod memory;
pub mod metrics;
pub mod openai;
pub mod openapi;
pub mod policy;
pub mod prompt_limits;
pub mod provenance;
pub mod registry;
pub mod request_log;
pub mod responses;
pub mod routes;
mod serve;
pub mod sse;
pub mod tenant;
pub mod validate;
pub mod web;

/// The conversation store the accounts live in (re-exported so the binary needs no direct
/// dependency on it: `store` is used only through the server).
pub use store;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use backend::{Backend, ChoiceSink, Event, FinishReason, GenRequest, GenSpec, SamplingSpec, Stats, SubmitError, Usage};
pub use config::ServeConfig;
pub use engine_backend::EngineBackend;
pub use error::ApiError;
pub use metrics::Metrics;
pub use registry::{ModelLease, Models};
pub use serve::{run, serve, shutdown_signal};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The served models: `st.models.get(requested).await?` gives a request its backend
    /// (see [`registry`]).
    pub models: Arc<Models>,
    pub config: Arc<ServeConfig>,
    pub metrics: Arc<Metrics>,
    /// Accounts and conversations; `None` serves the bare `/v1` API.
    pub accounts: Option<web::Accounts>,
    /// The request queue (`ServeConfig::queue` requests waiting to start).
    pub admission: Arc<admission::Admission>,
    /// Stored Responses when there is no store (`accounts` is `None`): a bounded in-memory map.
    pub responses: Arc<responses::saved::MemoryResponses>,
}

impl AppState {
    /// One ready model (`config.model_id`), never unloaded.
    pub fn new(engine: Arc<dyn Backend>, config: ServeConfig) -> Self {
        let admission = admission::Admission::new(config.queue);
        let spec = registry::ModelSpec {
            aliases: config.model_aliases.clone(),
            created: config.created,
            n_ctx: engine.n_ctx(),
            ..registry::ModelSpec::new(config.model_id.clone())
        };
        let models = Arc::new(Models::single(spec, engine, admission.clone()));
        AppState { models, config: Arc::new(config), metrics: Arc::new(Metrics::default()), accounts: None, admission, responses: Arc::default() }
    }

    /// Several models (loaded on first use); the first is the default. The request queue is the
    /// registry's; `config`'s model names are set from the registry.
    pub fn with_models(models: Models, mut config: ServeConfig) -> Self {
        registry::name_config(&mut config, &models);
        let admission = models.admission().clone();
        AppState { models: Arc::new(models), config: Arc::new(config), metrics: Arc::new(Metrics::default()), accounts: None, admission, responses: Arc::default() }
    }

    /// Adds the chat product over `accounts.store`: the `/api` routes, the web UI at `/`, and
    /// personal API keys on `/v1`.
    pub fn with_accounts(mut self, accounts: web::Accounts) -> Self {
        self.accounts = Some(accounts);
        self
    }
}

/// The router with every route, auth, request metrics and OpenAI-shaped 404/405s.
pub fn app(state: AppState) -> Router {
    app_and_openapi(state).0
}

/// [`app`] and the OpenAPI document of its routes (served at `GET /openapi.json`): every route is
/// registered through `utoipa_axum`, which records its documentation with it.
pub fn app_and_openapi(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    let mut routes = OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(routes::chat::chat_completions))
        .routes(routes!(routes::completions::completions))
        .routes(routes!(routes::list_models))
        .routes(routes!(routes::get_model))
        .routes(routes!(routes::health))
        .routes(routes!(routes::metrics))
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(routes::responses::create_response))
        .routes(routes!(routes::responses::get_response, routes::responses::delete_response))
        .routes(routes!(routes::responses::list_input_items))
        .routes(routes!(anthropic::messages))
        .routes(routes!(anthropic::count_tokens))
        .routes(routes!(provenance::detect));
    if let Some(accounts) = &state.accounts {
        routes = routes.merge(web::router(&state, accounts));
    }
    let (router, doc) = routes.split_for_parts();
    let doc = openapi::openapi_paths(doc);
    let router = router
        .fallback(|req: Request| async move { ApiError::UnknownRoute(req.uri().path().to_string()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::Extension(openapi::Document::new(&doc)))
        .layer(DefaultBodyLimit::max(state.config.body_limit))
        .layer(middleware::from_fn({
            let limit = state.config.connections.body_timeout;
            move |req, next| body_deadline::layer(limit, req, next)
        }))
        .layer(middleware::from_fn_with_state(state.clone(), require_key))
        .layer(middleware::from_fn_with_state(state.clone(), provenance::mark_header))
        .layer(middleware::from_fn(anthropic::error::reshape))
        .layer(middleware::from_fn_with_state(state.clone(), count_requests))
        .layer(middleware::from_fn(request_log::layer))
        .with_state(state);
    (router, doc)
}

/// Compares without an early exit, so response time does not reveal how much of a key matched.
fn same_key(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `Authorization: Bearer` value of a request, or its `x-api-key` header (Anthropic's).
fn bearer(req: &Request) -> Option<&str> {
    req.headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .or_else(|| req.headers().get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim)
}

/// 401 on every route but `/health` (and the web UI's and `/api`'s own, which use sessions)
/// when authentication is on and the request lacks a valid `Authorization: Bearer <key>`.
///
/// Authentication is on when `--api-key`s are configured or the store has an account; a key is
/// one of those or an unrevoked personal key. A fresh local install (neither) stays open.
async fn require_key(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    use tenant::{Identity, Tenant};
    let path = req.uri().path();
    if path == "/health" || (st.accounts.is_some() && web::is_own_auth_path(path)) {
        return next.run(req).await;
    }
    let given = bearer(&req).map(str::to_string);
    let given = given.as_deref();
    if let Some(k) = given {
        if st.config.api_keys.iter().any(|key| same_key(key.as_bytes(), k.as_bytes())) {
            req.extensions_mut().insert(Tenant::of(&st.config, Identity::ApiKey(k)));
            req.extensions_mut().insert(store::ResponseOwner::of_key(k));
            req.extensions_mut().insert(policy::Who::server_key(k));
            return next.run(req).await;
        }
    }
    let required = match (&st.accounts, st.config.api_keys.is_empty()) {
        (_, false) => true,
        (None, true) => false,
        (Some(a), true) => match a.store.count_users().await {
            Ok(n) => n > 0,
            Err(e) => return ApiError::Internal(format!("counting accounts: {e}")).into_response(),
        },
    };
    if !required {
        req.extensions_mut().insert(Tenant::of(&st.config, Identity::Anyone));
        req.extensions_mut().insert(store::ResponseOwner::Anyone);
        return next.run(req).await;
    }
    let Some(k) = given else {
        return ApiError::Unauthorized("you did not provide an API key: send `Authorization: Bearer <key>`").into_response();
    };
    if let Some(a) = &st.accounts {
        match web::personal_key_user(&a.store, k).await {
            Ok(Some((u, key))) => {
                req.extensions_mut().insert(policy::Who::user(u.id, Some(key)));
                req.extensions_mut().insert(Tenant::of(&st.config, Identity::User(u.id.0)));
                req.extensions_mut().insert(store::ResponseOwner::User(u.id));
                return next.run(req).await;
            }
            Ok(None) => {}
            Err(e) => return ApiError::Internal(format!("checking an API key: {e}")).into_response(),
        }
    }
    ApiError::Unauthorized("incorrect API key provided").into_response()
}

/// Counts each request by its route pattern (not the raw path, which would explode the label
/// set) and status.
async fn count_requests(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "other".into());
    let resp = next.run(req).await;
    st.metrics.count_request(&route, resp.status().as_u16());
    if let Some(r) = resp.extensions().get::<metrics::Rejection>() {
        st.metrics.reject(*r);
    }
    resp
}

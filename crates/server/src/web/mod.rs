//! The chat product's server side: accounts, sessions, the `/api` routes over the conversation
//! store, the answer stream that saves as it goes, automatic titles, the ChatGPT import, personal
//! API keys for `/v1`, and the embedded web UI.
//!
//! ```text
//!  browser ── /, /assets/* ─────────────> assets (embedded webui/dist, CSP)
//!          ── /api/* ─> csrf guard ─> session cookie ─> routes ─> store (SQLite / PostgreSQL)
//!                                                    └─> answer task ─> Backend (engine)
//!  client  ── /v1/* ─> Bearer: --api-key or a personal key (store) ─> the OpenAI API
//! ```
//!
//! The UI uses exactly these public routes; there is no private shortcut. Every `/api` error has
//! the OpenAI error shape ([`error::WebError`]).
//!
//! ```no_run
//! # async fn demo(backend: std::sync::Arc<dyn server::Backend>) -> Result<(), Box<dyn std::error::Error>> {
//! let store = server::store::Store::connect("sqlite:///tmp/daehwa.sqlite3").await?;
//! let state = server::AppState::new(backend, server::ServeConfig::new("smollm2"))
//!     .with_accounts(server::web::Accounts::new(store));
//! let app = server::app(state); // `/`, `/api/*` and `/v1/*`
//! # let _ = app; Ok(())
//! # }
//! ```

pub mod answer;
pub mod assets;
mod csrf;
pub mod error;
pub mod import;
pub mod input;
pub mod json;
pub mod proxy;
pub mod pulls;
pub mod ratelimit;
mod routes;
pub mod secret;
pub mod session;
pub mod title;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::HeaderMap;
use axum::middleware;
use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use store::Store;

use crate::config::ServeConfig;
use crate::metrics::Metrics;
use crate::AppState;

pub use error::WebError;
pub use ratelimit::{Limits, LoginLimiter};

/// The account side of a server: the store and how sessions behave.
#[derive(Debug, Clone)]
pub struct Accounts {
    pub store: Store,
    /// Mark session cookies `Secure` even without a proxy's `X-Forwarded-Proto: https`
    /// (set this when TLS is terminated in front of daehwa by something that does not say so).
    pub secure_cookies: bool,
    /// Largest `/api/import` body in bytes (`--import-limit`).
    pub import_body_limit: usize,
    /// Most message nodes (and conversations) of one `/api/import`.
    pub import_node_limit: usize,
    /// Failed sign-ins allowed per account at a client address and per client address.
    pub login_limits: Limits,
    /// Reverse proxies whose `X-Forwarded-For` / `X-Forwarded-Host` are believed
    /// (`--trusted-proxy`); none by default.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The models directory: what `/api/models` describes (size, quantization) and where an
    /// admin's pulls from Hugging Face go (`/api/admin/pulls`); `None`: no pulls.
    pub models_dir: Option<std::path::PathBuf>,
    /// The key of the answers' fingerprints ([`crate::provenance::answers`]); `None`: answers
    /// get none and `/api/provenance/match` says so. `daehwa serve` always sets one.
    pub answer_key: Option<crate::provenance::answers::AnswerKey>,
}

impl Accounts {
    pub fn new(store: Store) -> Self {
        Accounts {
            store,
            secure_cookies: false,
            import_body_limit: import::DEFAULT_BODY_LIMIT,
            import_node_limit: import::DEFAULT_NODE_LIMIT,
            login_limits: Limits::default(),
            trusted_proxies: Vec::new(),
            models_dir: None,
            answer_key: None,
        }
    }
}

/// What the `/api` handlers share.
#[derive(Clone)]
pub struct WebState {
    /// The served models (a conversation answers with its own, see [`answer`]).
    pub models: Arc<crate::registry::Models>,
    pub config: Arc<ServeConfig>,
    pub metrics: Arc<Metrics>,
    pub store: Store,
    pub secure_cookies: bool,
    pub limiter: Arc<LoginLimiter>,
    pub titling: Arc<title::InFlight>,
    /// The request queue (`--queue`), shared with `/v1`.
    pub admission: Arc<crate::admission::Admission>,
    pub imports: Arc<import::Imports>,
    /// Pulls from Hugging Face started from Settings.
    pub pulls: Arc<pulls::Pulls>,
    /// The key of the answers' fingerprints (see [`Accounts::answer_key`]).
    pub answer_key: Option<crate::provenance::answers::AnswerKey>,
}

/// Whether a path authenticates itself (the `/api` routes use the session cookie) or needs no
/// authentication (the UI's files): the `/v1` key check skips these.
pub fn is_own_auth_path(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/") || assets::is_ui_path(path)
}

/// Adds the security headers to an `/api` answer, and `no-store`: it holds private data.
async fn api_headers(req: axum::extract::Request, next: middleware::Next) -> Response {
    let mut resp = next.run(req).await;
    let h: &mut HeaderMap = resp.headers_mut();
    assets::security_headers(h);
    h.entry(axum::http::header::CACHE_CONTROL).or_insert(axum::http::HeaderValue::from_static("no-store"));
    resp
}

/// The UI and `/api` routes, to merge into the app's router.
pub fn router<S: Clone + Send + Sync + 'static>(app: &AppState, accounts: &Accounts) -> OpenApiRouter<S> {
    secret::warm_up();
    let st = WebState {
        models: app.models.clone(),
        config: app.config.clone(),
        metrics: app.metrics.clone(),
        store: accounts.store.clone(),
        secure_cookies: accounts.secure_cookies,
        limiter: Arc::new(LoginLimiter::new(accounts.login_limits)),
        titling: Arc::default(),
        admission: app.admission.clone(),
        imports: Arc::new(import::Imports::new(import::ImportLimits {
            max_bytes: accounts.import_body_limit,
            max_nodes: accounts.import_node_limit,
        })),
        pulls: Arc::new(pulls::Pulls::new(accounts.models_dir.clone())),
        answer_key: accounts.answer_key.clone(),
    };
    // Answers stored before they had fingerprints get theirs in the background.
    if let (Some(key), Ok(rt)) = (accounts.answer_key.clone(), tokio::runtime::Handle::try_current()) {
        rt.spawn(crate::provenance::answers::backfill(accounts.store.clone(), key));
    }
    let (match_schemas, match_paths, match_route) = routes!(crate::provenance::answers::match_text);
    let (import_schemas, import_paths, import_route) = routes!(import::import);
    let api = OpenApiRouter::new()
        .routes(routes!(routes::auth::state))
        .routes(routes!(routes::auth::setup))
        .routes(routes!(routes::auth::login))
        .routes(routes!(routes::auth::logout))
        .routes(routes!(routes::auth::change_password))
        .routes(routes!(routes::models))
        .routes(routes!(routes::conversations::list, routes::conversations::create))
        .routes(routes!(routes::conversations::get_one, routes::conversations::patch, routes::conversations::delete))
        .routes(routes!(answer::post_message))
        .routes(routes!(answer::regenerate))
        .routes(routes!(routes::keys::list, routes::keys::create))
        .routes(routes!(routes::keys::revoke))
        .routes(routes!(routes::energy::by_day))
        .routes(routes!(routes::policies::list, routes::policies::create))
        .routes(routes!(routes::policies::update, routes::policies::delete))
        .routes(routes!(routes::policies::assign))
        .routes(routes!(routes::policies::audit))
        .routes(routes!(routes::policies::mine))
        .routes(routes!(routes::users::list, routes::users::create))
        .routes(routes!(routes::users::delete))
        .routes(routes!(routes::pulls::list, routes::pulls::start))
        .routes((import_schemas, import_paths, import_route.layer(DefaultBodyLimit::disable())))
        .routes((match_schemas, match_paths, match_route.layer(DefaultBodyLimit::max(crate::provenance::answers::MATCH_BODY_LIMIT))))
        .layer(middleware::from_fn(csrf::guard))
        .layer(axum::Extension(Arc::new(proxy::TrustedProxies::new(accounts.trusted_proxies.clone()))))
        .layer(middleware::from_fn(api_headers))
        .with_state(st);
    api.merge(assets::router())
}

/// The `/v1` side of accounts: the owner of a personal API key, if `key` is one that works.
pub async fn personal_key_user(store: &Store, key: &str) -> Result<Option<(store::User, store::ApiKeyId)>, store::StoreError> {
    if !key.starts_with(secret::API_KEY_PREFIX) {
        return Ok(None);
    }
    store.api_key_user(&store::token_hash(key)).await
}

//! `GET /openapi.json`: an OpenAPI 3.1 document of every route the server has.
//!
//! Nothing in it is written by hand: each handler carries its method, path and body types in a
//! `#[utoipa::path]` attribute, the wire types derive `utoipa::ToSchema`, and the routers are built
//! with `utoipa_axum`'s `OpenApiRouter`, which registers a route and its documentation in one call
//! (`routes!(handler)`), so a route cannot exist without being documented. The few routes made at
//! run time (the web UI's top-level files) add their own entries where they are registered
//! ([`crate::web::assets::router`]). The document is rendered once, when the router is built.

use std::sync::Arc;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder};

/// The choice types of the generic response envelopes (`Response<C>`, `Chunk<C>`): utoipa names
/// the envelopes after them but does not collect them through the generic parameter.
#[derive(utoipa::OpenApi)]
#[openapi(components(schemas(
    crate::openai::chat::ChatChoice,
    crate::openai::chat::ChunkChoice,
    crate::openai::completions::CompletionChoice
)))]
struct EnvelopeChoices;

/// The document's header: title, version and the two ways to authenticate.
pub fn base() -> OpenApi {
    let mut doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("daehwa")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "A self-hosted conversational AI server: OpenAI-compatible `/v1` routes, the web chat's `/api` \
                     routes, and operations (`/health`, `/metrics`). Once API keys or accounts exist every route \
                     but `/health` needs `Authorization: Bearer <key>` (the `/api` routes use the session cookie).",
                ))
                .build(),
        )
        .build();
    doc.merge(<EnvelopeChoices as utoipa::OpenApi>::openapi());
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
    components.add_security_scheme("session", SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("daehwa_session"))));
    doc
}

/// Writes axum's catch-all segments (`/assets/{*path}`) as OpenAPI path parameters
/// (`/assets/{path}`, whose value may contain `/`).
pub fn openapi_paths(mut doc: OpenApi) -> OpenApi {
    let paths = std::mem::take(&mut doc.paths.paths);
    doc.paths.paths = paths.into_iter().map(|(k, v)| (k.replace("{*", "{"), v)).collect();
    doc
}

/// The rendered document, shared by the handler.
#[derive(Clone)]
pub struct Document(pub Arc<str>);

impl Document {
    pub fn new(doc: &OpenApi) -> Self {
        // Serializing plain data into a String cannot fail; an empty object is still valid JSON.
        Document(Arc::from(doc.to_pretty_json().unwrap_or_else(|_| "{}".into())))
    }
}

/// `GET /openapi.json`.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "this document (OpenAPI 3.1)", body = Object)))]
pub async fn openapi_json(axum::Extension(doc): axum::Extension<Document>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], doc.0.to_string()).into_response()
}

//! The web UI, embedded in the binary: `webui/dist` as built by `crates/server/build.rs`
//! (`include_bytes!` of every file), so one executable serves everything and no CDN is used.
//!
//! `/` is `index.html` (`no-cache`: it names the current asset hashes); `/assets/*` are
//! content-hashed, so they are cached for a year as immutable. Every UI response carries a
//! strict Content-Security-Policy: the build has no inline script and loads nothing from
//! another host (webui/scripts/check-dist.mjs checks that), so `default-src 'self'` holds.
//! No route here needs a session: the UI shows its own sign-in page.

use axum::extract::Path;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use utoipa::openapi::path::{HttpMethod, OperationBuilder};
use utoipa::openapi::ResponseBuilder;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/webui_assets.rs"));
}

/// Whether the real UI was embedded (false: the "UI not built" page stands in).
pub const UI_BUILT: bool = embedded::UI_BUILT;

pub const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
    object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'";

/// The security headers of every UI response (the `/api` answers get them too).
pub fn security_headers(h: &mut HeaderMap) {
    let set = |h: &mut HeaderMap, k: &'static str, v: &'static str| {
        h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
    };
    set(h, "content-security-policy", CSP);
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "no-referrer");
    set(h, "x-frame-options", "DENY");
    set(h, "cross-origin-opener-policy", "same-origin");
}

/// An embedded file by its path under `dist/`.
pub fn file(path: &str) -> Option<&'static [u8]> {
    embedded::FILES.iter().find(|(p, _)| *p == path).map(|(_, b)| *b)
}

/// Paths of the embedded files (for tests and the start-up log).
pub fn paths() -> impl Iterator<Item = &'static str> {
    embedded::FILES.iter().map(|(p, _)| *p)
}

/// Whether `path` is a UI route (public: no key or session needed).
pub fn is_ui_path(path: &str) -> bool {
    path == "/" || path == "/index.html" || path.starts_with("/assets/") || root_file(path).is_some()
}

/// A file at the top of `dist/` (e.g. `/favicon.svg`, `/robots.txt`), not `index.html`.
fn root_file(path: &str) -> Option<&'static str> {
    let name = path.strip_prefix('/')?;
    paths().find(|p| *p == name && !p.contains('/') && *p != "index.html")
}

pub fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "ttf" => "font/ttf",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "txt" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

fn respond(path: &str, body: &'static [u8], cache: &'static str) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
    h.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    security_headers(h);
    r
}

/// `GET /`: the web chat.
#[utoipa::path(get, path = "/", tag = "web", responses((status = 200, description = "the web chat's page", body = String, content_type = "text/html")))]
async fn index() -> Response {
    match file("index.html") {
        Some(b) => respond("index.html", b, "no-cache"),
        None => ApiError::Internal("index.html is not embedded".into()).into_response(),
    }
}

/// `GET /index.html`: the same page.
#[utoipa::path(get, path = "/index.html", tag = "web", responses((status = 200, description = "the web chat's page", body = String, content_type = "text/html")))]
async fn index_html() -> Response {
    index().await
}

/// `GET /assets/{path}`: the page's scripts, styles and fonts (content-hashed names, cached for a year).
#[utoipa::path(get, path = "/assets/{*path}", tag = "web", params(("path" = String, Path, description = "an asset of the build")), responses((status = 200, description = "the file"), (status = 404, description = "no such asset")))]
async fn asset(Path(rest): Path<String>) -> Response {
    let path = format!("assets/{rest}");
    match file(&path) {
        Some(b) => respond(&path, b, "public, max-age=31536000, immutable"),
        None => {
            let mut r = ApiError::UnknownRoute(format!("/{path}")).into_response();
            security_headers(r.headers_mut());
            r
        }
    }
}

/// The UI's routes (stateless, so they merge into any router): the page, its hashed assets and
/// each top-level file of the build (favicon, ...), which are registered from the embedded files
/// at run time and so document themselves here.
pub fn router<S: Clone + Send + Sync + 'static>() -> OpenApiRouter<S> {
    let mut r = OpenApiRouter::new().routes(routes!(index)).routes(routes!(index_html)).routes(routes!(asset));
    for name in paths().filter(|p| !p.contains('/') && *p != "index.html") {
        let path = format!("/{name}");
        r = r.route(
            &path,
            get(move || async move {
                match file(name) {
                    Some(b) => respond(name, b, "public, max-age=3600"),
                    None => ApiError::UnknownRoute(format!("/{name}")).into_response(),
                }
            }),
        );
        let op = OperationBuilder::new()
            .tag("web")
            .summary(Some(format!("the web UI's `{name}`")))
            .response("200", ResponseBuilder::new().description(content_type(name)).build())
            .build();
        r.get_openapi_mut().paths.add_path_operation(&path, vec![HttpMethod::Get], op);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_is_embedded_and_types_are_right() {
        let html = String::from_utf8_lossy(file("index.html").expect("index.html is always embedded"));
        assert!(html.contains("<html"), "{html}");
        assert_eq!(content_type("assets/index-abc.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("assets/x.CSS"), "text/css; charset=utf-8");
        assert_eq!(content_type("favicon.svg"), "image/svg+xml");
        assert!(is_ui_path("/") && is_ui_path("/assets/x.js") && !is_ui_path("/v1/models") && !is_ui_path("/api/keys"));
        // Every asset the page names is embedded (a stale or partial dist would fail here).
        for r in html.split('"').filter(|s| s.starts_with("/assets/")) {
            assert!(file(&r[1..]).is_some(), "{r} is named by index.html but not embedded");
        }
        assert_eq!(UI_BUILT, html.contains("/assets/"), "the placeholder page loads no assets");
    }
}

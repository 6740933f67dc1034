//! `GET /openapi.json`: an OpenAPI 3.1 document with every route the server has.
//!
//! Three checks: (1) the document served by the real server over loopback lists each route with
//! its method, and every documented operation exists on the live router (a request to it is not
//! answered by the unknown-route / wrong-method fallbacks); (2) no route can be added without
//! documentation: the server's sources register routes only through `utoipa_axum`'s `routes!`
//! (the one exception, the web UI's top-level files registered at run time, documents itself and
//! is checked here file by file); (3) the document is valid OpenAPI 3.1 by
//! `openapi-spec-validator` (PyPI, installed by `.ci/run`).

mod common;
mod webkit;

use std::path::Path;

use serde_json::Value;

/// Every route of the server with accounts, as (method, path): the list a reader of the router
/// code sees. The document must have each; if a route is added, it appears in the document by
/// construction and check (1) below requires it to be listed here too.
const ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/chat/completions"),
    ("post", "/v1/completions"),
    ("get", "/v1/models"),
    ("get", "/v1/models/{id}"),
    ("get", "/health"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("post", "/v1/responses"),
    ("get", "/v1/responses/{id}"),
    ("delete", "/v1/responses/{id}"),
    ("get", "/v1/responses/{id}/input_items"),
    ("get", "/api/energy"),
    ("get", "/api/policies"),
    ("post", "/api/policies"),
    ("put", "/api/policies/{id}"),
    ("delete", "/api/policies/{id}"),
    ("post", "/api/policies/assign"),
    ("get", "/api/policies/audit"),
    ("get", "/api/policies/mine"),
    ("post", "/v1/messages"),
    ("post", "/v1/messages/count_tokens"),
    ("post", "/v1/provenance/detect"),
    ("post", "/api/provenance/match"),
    ("get", "/api/auth/state"),
    ("post", "/api/auth/setup"),
    ("post", "/api/auth/login"),
    ("post", "/api/auth/logout"),
    ("post", "/api/auth/password"),
    ("get", "/api/models"),
    ("get", "/api/conversations"),
    ("post", "/api/conversations"),
    ("get", "/api/conversations/{id}"),
    ("patch", "/api/conversations/{id}"),
    ("delete", "/api/conversations/{id}"),
    ("post", "/api/conversations/{id}/messages"),
    ("post", "/api/conversations/{id}/regenerate"),
    ("get", "/api/keys"),
    ("post", "/api/keys"),
    ("delete", "/api/keys/{id}"),
    ("get", "/api/users"),
    ("post", "/api/users"),
    ("delete", "/api/users/{id}"),
    ("get", "/api/admin/pulls"),
    ("post", "/api/admin/pulls"),
    ("post", "/api/import"),
    ("get", "/"),
    ("get", "/index.html"),
    ("get", "/assets/{path}"),
];

fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                ops.push((method.to_string(), path.clone()));
            }
        }
    }
    ops
}

#[tokio::test]
async fn the_document_lists_every_route_and_every_listed_route_exists() {
    let srv = webkit::start("openapi").await;
    let c = webkit::Client::new(srv.addr);
    let r = c.send("GET", "/openapi.json", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("content-type").unwrap_or_default().starts_with("application/json"));
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "daehwa");

    let ops = operations(&doc);
    for (m, p) in ROUTES {
        assert!(ops.iter().any(|(om, op)| om == m && op == p), "{m} {p} is not in /openapi.json");
    }
    // The web UI's top-level files (favicon, ...) are routes made at run time: each is documented.
    let top_files: Vec<String> = server::web::assets::paths().filter(|p| !p.contains('/') && *p != "index.html").map(|p| format!("/{p}")).collect();
    for f in &top_files {
        assert!(ops.iter().any(|(m, p)| m == "get" && p == f), "{f} is served but not documented");
    }
    // Nothing documented that the lists above do not know of (a new route must be listed here).
    for (m, p) in &ops {
        assert!(ROUTES.iter().any(|(rm, rp)| rm == m && rp == p) || top_files.contains(p), "{m} {p} is documented but not in this test's list");
    }

    // Every documented operation exists on the live router: a request reaches its handler
    // rather than the unknown-route (404 `unknown_route`) or wrong-method (405) fallbacks.
    for (m, p) in &ops {
        let concrete = p.replace("{id}", "00000000").replace("{path}", "x.js");
        let body = if m == "get" || m == "delete" { None } else { Some("{}") };
        let r = c.send(&m.to_uppercase(), &concrete, body).await;
        assert_ne!(r.status, 405, "{m} {concrete}: {}", r.body);
        let unknown = r.status == 404 && r.body.contains("unknown_url");
        let missing_asset = p == "/assets/{path}"; // a 404 naming the asset is the handler's answer
        assert!(!unknown || missing_asset, "{m} {concrete} fell through to the unknown-route fallback: {}", r.body);
    }
    // The component schemas the operations refer to are in the document.
    let schemas = doc["components"]["schemas"].as_object().expect("components.schemas");
    for name in ["ChatCompletionRequest", "CompletionRequest", "ErrorBody", "ModelList", "ConversationJson"] {
        assert!(schemas.contains_key(name), "schema {name} missing: {:?}", schemas.keys().collect::<Vec<_>>());
    }
}

/// Routes are registered only through `routes!` (which documents them): a plain axum `.route(`
/// anywhere in the server's sources would be an undocumented route.
#[test]
fn routes_are_registered_only_with_their_documentation() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut plain = Vec::new();
    let mut stack = vec![src];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read src") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).expect("read");
                for (i, line) in text.lines().enumerate() {
                    let plain_router = line.match_indices("Router::new()").any(|(i, _)| !line[..i].ends_with("OpenApi"));
                    if line.contains(".route(") || plain_router {
                        plain.push(format!("{}:{}: {}", p.display(), i + 1, line.trim()));
                    }
                }
            }
        }
    }
    // The one allowed: the web UI's run-time file routes, documented beside their registration.
    let allowed = |l: &str| l.contains("web/assets.rs") && l.contains("r = r.route(");
    let bad: Vec<&String> = plain.iter().filter(|l| !allowed(l)).collect();
    assert!(bad.is_empty(), "routes registered without documentation:\n{}", bad.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n"));
}

/// The document is valid OpenAPI 3.1 (openapi-spec-validator, the reference validator on PyPI).
#[tokio::test]
async fn the_document_is_valid_openapi_3_1() {
    let srv = webkit::start("openapi-valid").await;
    let doc = webkit::Client::new(srv.addr).send("GET", "/openapi.json", None).await.body;
    let path = webkit::scratch("openapi-valid-doc").join("openapi.json");
    std::fs::write(&path, &doc).expect("write");
    let out = std::process::Command::new(std::env::var("DAEHWA_PYTHON").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "python3".into()))
        .args(["-c", "import json,sys; from openapi_spec_validator import validate; from openapi_spec_validator.validation import OpenAPIV31SpecValidator; validate(json.load(open(sys.argv[1])), cls=OpenAPIV31SpecValidator); print('valid')"])
        .arg(&path)
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "openapi-spec-validator rejected the document (install it with `pip install openapi-spec-validator==0.9.0`; .ci/run does):\n{stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "valid");
}

//! The OpenAPI document is generated from the routes: every documented path is routed, and
//! every route is documented (routes are only registered through `utoipa_axum::routes!`,
//! which cannot take a handler without its `#[utoipa::path]`; the source scan below fails if
//! anything registers a route another way).

use std::collections::BTreeSet;

use reqwest::Method;

use crate::common::TestApp;

crate::on_both_backends!(every_documented_operation_is_routed, the_document_describes_requests_and_responses);

async fn every_documented_operation_is_routed(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let doc = app.call(Method::GET, "/v1/openapi.json", None, None).await.body;
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 17, "{:?}", paths.keys());
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let concrete = path.replace("{id}", "1");
            let r = app.call(m.clone(), &concrete, Some(&token), None).await;
            assert_ne!(r.status.as_u16(), 405, "{method} {path} is documented but not routed");
            let unrouted = r.body["error"].as_str().is_some_and(|e| e.starts_with("no route for"));
            assert!(!unrouted, "{method} {path} is documented but not routed");
        }
    }
}

async fn the_document_describes_requests_and_responses(app: TestApp) {
    let doc = app.call(Method::GET, "/v1/openapi.json", None, None).await.body;
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in ["RegisterRequest", "LoginResponse", "CreateKeyRequest", "KeyView", "ErrorBody", "Pagination"] {
        assert!(schemas.contains_key(name), "schema {name} missing");
    }
    let login = &doc["paths"]["/v1/auth/login"]["post"];
    assert!(login["requestBody"].is_object());
    assert!(login["responses"]["200"].is_object());
    assert!(doc["paths"]["/v1/api-keys"]["get"]["parameters"].as_array().is_some_and(|p| !p.is_empty()));
}

/// Every `#[utoipa::path(..., path = "…")]` in the API crate is in the served document (so no
/// router was left unmerged), and no code registers a route outside `routes!`.
#[test]
fn no_route_is_registered_outside_the_openapi_router() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/crates/api/src");
    let mut declared = BTreeSet::new();
    let mut stack = vec![std::path::PathBuf::from(dir)];
    while let Some(p) = stack.pop() {
        for entry in std::fs::read_dir(&p).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for bad in [".route(", ".route_service(", ".nest(", ".nest_service("] {
                assert!(
                    !text.contains(bad),
                    "{} registers a route with {bad}: use utoipa_axum's routes! so it is documented",
                    path.display()
                );
            }
            let plain_routers = text.matches("Router::new()").count() - text.matches("OpenApiRouter::new()").count();
            assert_eq!(
                plain_routers,
                0,
                "{} builds a plain axum Router: use OpenApiRouter so routes are documented",
                path.display()
            );
            for (i, _) in text.match_indices("#[utoipa::path(") {
                let rest = &text[i..];
                let start = rest.find("path = \"").unwrap() + 8;
                let end = rest[start..].find('"').unwrap();
                declared.insert(rest[start..start + end].to_string());
            }
        }
    }
    let settings = cairn_api::ApiSettings { test_clock: true, ..Default::default() };
    let (_, doc) = cairn_api::routes(&settings);
    let served: BTreeSet<String> = doc.paths.paths.keys().cloned().collect();
    let unmerged: Vec<_> = declared.difference(&served).collect();
    assert!(unmerged.is_empty(), "declared but not routed (router not merged?): {unmerged:?}");
}

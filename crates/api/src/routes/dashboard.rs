//! The dashboard (docs/dashboard.md): a single-page application for marketers and sales teams,
//! embedded in the binary from crates/api/dashboard/ (no build step, nothing from a CDN). It
//! talks to the same `/v1` API as every other client, signed in with a session token kept in the
//! browser's localStorage. `GET /` sends a browser to it.

use std::sync::LazyLock;

use axum::{
    extract::Path,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Redirect, Response},
};
use sha2::{Digest, Sha256};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(root)).routes(routes!(index)).routes(routes!(asset))
}

struct Asset {
    name: &'static str,
    body: &'static str,
    mime: &'static str,
    etag: String,
}

fn asset_of(name: &'static str, body: &'static str, mime: &'static str) -> Asset {
    let etag = format!("\"{}\"", &hex::encode(Sha256::digest(body.as_bytes()))[..16]);
    Asset { name, body, mime, etag }
}

static ASSETS: LazyLock<[Asset; 3]> = LazyLock::new(|| {
    [
        asset_of("index.html", include_str!("../../dashboard/index.html"), "text/html; charset=utf-8"),
        asset_of("app.js", include_str!("../../dashboard/app.js"), "text/javascript; charset=utf-8"),
        asset_of("app.css", include_str!("../../dashboard/app.css"), "text/css; charset=utf-8"),
    ]
});

/// Scripts and styles only from this origin; the API on the same origin; no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn serve(a: &Asset, headers: &HeaderMap) -> Response {
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().trim_start_matches("W/") == a.etag));
    let mut resp = if fresh { StatusCode::NOT_MODIFIED.into_response() } else { a.body.into_response() };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(a.mime));
    // Revalidated on every load (a cheap 304): a new release is seen at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if let Ok(v) = HeaderValue::from_str(&a.etag) {
        h.insert(header::ETAG, v);
    }
    resp
}

/// A browser opening the server's address lands on the dashboard.
#[utoipa::path(get, path = "/", tag = "dashboard", responses((status = 303, description = "to /app")))]
pub async fn root() -> Redirect {
    Redirect::to("/app")
}

/// The dashboard's page (its views are addressed after `#`, e.g. `/app#/customers`).
#[utoipa::path(get, path = "/app", tag = "dashboard",
    responses((status = 200, description = "the dashboard (HTML)", content_type = "text/html"), (status = 304)))]
pub async fn index(headers: HeaderMap) -> Response {
    serve(&ASSETS[0], &headers)
}

/// The dashboard's script and stylesheet.
#[utoipa::path(get, path = "/app/{file}", tag = "dashboard", params(("file" = String, Path, description = "app.js or app.css")),
    responses((status = 200, description = "the file"), (status = 304), (status = 404)))]
pub async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().find(|a| a.name == file) {
        Some(a) => serve(a, &headers),
        None => crate::error::ApiError::not_found("dashboard file").into_response(),
    }
}

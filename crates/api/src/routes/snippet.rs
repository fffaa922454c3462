//! The tracking snippet (docs/snippet.md), embedded from snippet/dist/: the loader at
//! `GET /snippet.js` (and `/enter-track.js`, seed 003's file name) with a short cache, and the
//! tracker module and its WebAssembly core under content-hashed URLs
//! (`/snippet/core-<sha256 prefix>.js|.wasm`) cached for a year. Each file is served as brotli,
//! gzip or identity by `Accept-Encoding` (precompressed at build time), with an ETag, and open
//! to every origin (a module script and a wasm fetch from another site's page need CORS).

use std::sync::LazyLock;

use axum::{
    extract::Path,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use sha2::{Digest, Sha256};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(loader)).routes(routes!(seed_loader)).routes(routes!(core))
}

macro_rules! dist {
    ($name:literal) => {
        Encoded {
            identity: include_bytes!(concat!("../../../../snippet/dist/", $name)),
            gzip: include_bytes!(concat!("../../../../snippet/dist/", $name, ".gz")),
            brotli: include_bytes!(concat!("../../../../snippet/dist/", $name, ".br")),
        }
    };
}

/// One file in its three encodings.
pub struct Encoded {
    pub identity: &'static [u8],
    pub gzip: &'static [u8],
    pub brotli: &'static [u8],
}

pub struct File {
    pub content: Encoded,
    pub mime: &'static str,
    pub etag: String,
    /// The first 12 hex digits of the SHA-256 of the identity bytes.
    pub hash: String,
}

impl File {
    fn new(content: Encoded, mime: &'static str) -> File {
        let hash = hex::encode(Sha256::digest(content.identity))[..12].to_string();
        File { etag: format!("\"{hash}\""), content, mime, hash }
    }
}

pub static LOADER: LazyLock<File> = LazyLock::new(|| File::new(dist!("snippet.js"), "text/javascript; charset=utf-8"));
pub static CORE_JS: LazyLock<File> = LazyLock::new(|| File::new(dist!("core.js"), "text/javascript; charset=utf-8"));
pub static CORE_WASM: LazyLock<File> = LazyLock::new(|| File::new(dist!("core.wasm"), "application/wasm"));

/// The path each core file is served at.
pub fn core_path(f: &File) -> String {
    let ext = if f.mime == "application/wasm" { "wasm" } else { "js" };
    format!("/snippet/core-{}.{ext}", f.hash)
}

fn serve(f: &File, headers: &HeaderMap, cache: &'static str) -> Response {
    let mut resp = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().trim_start_matches("W/") == f.etag || t.trim() == "*"))
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let accepts = |coding: &str| {
            headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).any(|v| {
                v.split(',').any(|c| {
                    let mut parts = c.split(';');
                    let name = parts.next().unwrap_or("").trim();
                    let refused = parts.any(|p| p.trim().replace(' ', "") == "q=0");
                    name.eq_ignore_ascii_case(coding) && !refused
                })
            })
        };
        let (body, encoding) = if accepts("br") {
            (f.content.brotli, Some("br"))
        } else if accepts("gzip") {
            (f.content.gzip, Some("gzip"))
        } else {
            (f.content.identity, None)
        };
        let mut r = (StatusCode::OK, body).into_response();
        if let Some(e) = encoding {
            r.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static(e));
        }
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(f.mime));
        r
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    if let Ok(v) = HeaderValue::from_str(&f.etag) {
        h.insert(header::ETAG, v);
    }
    resp
}

/// The loader a page embeds (five minutes' cache: a new release reaches pages quickly).
#[utoipa::path(get, path = "/snippet.js", tag = "snippet",
    responses((status = 200, description = "the loader (JavaScript)", content_type = "text/javascript"), (status = 304)))]
pub async fn loader(headers: HeaderMap) -> Response {
    serve(&LOADER, &headers, "public, max-age=300")
}

/// The loader under seed 003's file name.
#[utoipa::path(get, path = "/enter-track.js", tag = "snippet",
    responses((status = 200, description = "the loader (JavaScript)", content_type = "text/javascript"), (status = 304)))]
pub async fn seed_loader(headers: HeaderMap) -> Response {
    serve(&LOADER, &headers, "public, max-age=300")
}

/// The tracker module and its WebAssembly core, by content hash (cached for a year).
#[utoipa::path(get, path = "/snippet/{file}", tag = "snippet", params(("file" = String, Path, description = "core-<hash>.js or core-<hash>.wasm")),
    responses((status = 200, description = "the file"), (status = 304), (status = 404)))]
pub async fn core(Path(file): Path<String>, headers: HeaderMap) -> Response {
    for f in [&*CORE_JS, &*CORE_WASM] {
        if core_path(f) == format!("/snippet/{file}") {
            return serve(f, &headers, "public, max-age=31536000, immutable");
        }
    }
    crate::error::ApiError::not_found("snippet file").into_response()
}

//! Extractors that turn bad input into the envelope with the offending field named:
//! JSON bodies (content type, size, syntax, types, unknown fields), query strings, and the
//! authenticated principal.

use axum::{
    extract::{FromRequest, FromRequestParts, Request},
    http::{header, request::Parts},
};
use cairn_service::Principal;
use serde::de::DeserializeOwned;

use crate::{error::ApiError, AppState};

/// The body size limit in force for a request (set by the gate; routes may differ).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// A JSON body. Rejections: 415 for another content type, 413 past the size limit, and 400
/// `VALIDATION_ERROR` naming the field for syntax errors, wrong types, missing and unknown
/// fields (write DTOs deny unknown fields: no mass assignment).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if mime != "application/json" && !(mime.starts_with("application/") && mime.ends_with("+json")) {
            let got = if mime.is_empty() { "none".to_string() } else { mime.chars().take(100).collect() };
            return Err(ApiError::unsupported_media_type(format!(
                "expected Content-Type: application/json, got {got}"
            )));
        }
        let limit = req.extensions().get::<BodyLimit>().map(|l| l.0).unwrap_or(state.settings.max_body_bytes);
        let bytes = read_body(req, limit).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// An optional JSON object body (`POST /v1/leads/{id}/convert` may be sent without one): an
/// empty body reads as `{}`; anything else must be JSON, as for [`ApiJson`].
pub struct ApiJsonOrEmpty(pub serde_json::Value);

impl FromRequest<AppState> for ApiJsonOrEmpty {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let limit = req.extensions().get::<BodyLimit>().map(|l| l.0).unwrap_or(state.settings.max_body_bytes);
        let bytes = read_body(req, limit).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(ApiJsonOrEmpty(serde_json::json!({})));
        }
        let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if mime != "application/json" && !(mime.starts_with("application/") && mime.ends_with("+json")) {
            return Err(ApiError::unsupported_media_type("expected Content-Type: application/json"));
        }
        parse_json(&bytes).map(ApiJsonOrEmpty)
    }
}

/// Reads a whole body, refusing (413) as soon as it passes `limit`.
///
/// The refused rest of the body is read and thrown away (at most [`DRAIN_BYTES`], for at most
/// [`DRAIN_TIME`]) before the 413 goes out: a server that answers and closes while the client is
/// still uploading makes the kernel reset the connection, and the client then sees a broken
/// connection instead of the 413 (nginx's "lingering close" does the same).
pub async fn read_body(req: Request, limit: usize) -> Result<bytes::Bytes, ApiError> {
    use http_body_util::BodyExt;
    let mut body = req.into_body();
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| ApiError::bad_request("could not read the request body"))?;
        let Ok(data) = frame.into_data() else { continue };
        if buf.len() + data.len() > limit {
            drain(body).await;
            return Err(ApiError::too_large(limit));
        }
        buf.extend_from_slice(&data);
    }
    Ok(buf.freeze())
}

/// How much of a refused body is read and discarded so the client can read the 413.
pub const DRAIN_BYTES: usize = 4 * 1024 * 1024;
/// How long a refused body is read for, at most.
pub const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads and discards what is left of a refused body, within [`DRAIN_BYTES`] and [`DRAIN_TIME`].
pub async fn drain(mut body: axum::body::Body) {
    use http_body_util::BodyExt;
    let discard = async {
        let mut seen = 0usize;
        while seen < DRAIN_BYTES {
            match body.frame().await {
                Some(Ok(frame)) => seen += frame.data_ref().map_or(0, |d| d.len()),
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, discard).await;
}

/// Parses JSON into `T`, naming the field at fault.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::bad_request(format!("malformed JSON: {inner}"));
        }
        field_error(&path, &strip_position(&inner.to_string()))
    })
}

/// Builds the 400 for a deserialisation message, naming the field. serde reports unknown and
/// missing fields at the parent's path, with the name in the message; this moves it into the
/// path so the client sees `items[0].colour`, not `items[0]`.
fn field_error(path: &str, msg: &str) -> ApiError {
    let parent = if path == "." { "" } else { path };
    let join = |name: &str| {
        if parent.is_empty() {
            name.to_string()
        } else {
            format!("{parent}.{name}")
        }
    };
    if let Some(name) = between(msg, "unknown field `", "`") {
        // serde_path_to_error already ends the path with the unknown key.
        let field =
            if parent == name || parent.ends_with(&format!(".{name}")) { parent.to_string() } else { join(name) };
        return ApiError::validation(field, "unknown field");
    }
    if let Some(name) = between(msg, "missing field `", "`") {
        return ApiError::validation(join(name), "is required");
    }
    if let Some(name) = between(msg, "duplicate field `", "`") {
        return ApiError::validation(join(name), "appears twice");
    }
    ApiError::validation(parent.to_string(), msg.to_string())
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = s.find(start)? + start.len();
    let len = s[from..].find(end)?;
    Some(&s[from..from + len])
}

/// serde_json appends " at line 1 column 42"; the field name says more.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// A query string, parsed with the field at fault named. Unknown parameters are ignored.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded_parse(q));
        serde_path_to_error::deserialize(de).map(ApiQuery).map_err(|e| {
            let path = e.path().to_string();
            field_error(&path, &e.into_inner().to_string())
        })
    }
}

fn form_urlencoded_parse(q: &str) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(q.as_bytes())
}

/// The authenticated caller, or 401 `AUTH_REQUIRED`.
pub struct Auth(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Principal>().cloned().map(Auth).ok_or_else(|| {
            ApiError::unauthenticated("authentication required: send Authorization: Bearer <token or key> or X-API-Key")
        })
    }
}

/// Path parameters; a malformed one (`/v1/api-keys/abc`) is a 400 naming the parameter.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state).await.map(|p| ApiPath(p.0)).map_err(|e| {
            let text = e.body_text();
            let field = between(&text, "parameter `", "`").unwrap_or("id").to_string();
            ApiError::validation(field, "must be a whole number")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        price: f64,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        items: Vec<Item>,
    }

    fn field_of(json: &str) -> (Option<String>, String) {
        let e = parse_json::<Body>(json.as_bytes()).unwrap_err();
        (e.field, e.message)
    }

    #[test]
    fn errors_name_the_field_at_fault() {
        assert_eq!(field_of(r#"{"name": 1, "items": []}"#).0.as_deref(), Some("name"));
        assert_eq!(
            field_of(r#"{"name": "x", "items": [{"price": 1}, {"price": "a"}]}"#).0.as_deref(),
            Some("items[1].price")
        );
        assert_eq!(field_of(r#"{"name": "x", "items": [], "role": "owner"}"#).0.as_deref(), Some("role"));
        assert_eq!(
            field_of(r#"{"name": "x", "items": [{"price": 1, "colour": 2}]}"#).0.as_deref(),
            Some("items[0].colour")
        );
        assert_eq!(field_of(r#"{"items": []}"#).0.as_deref(), Some("name"));
        let (field, msg) = field_of(r#"{"name": "#);
        assert_eq!(field, None);
        assert!(msg.starts_with("malformed JSON"), "{msg}");
    }
}

/// For `#[serde(default, deserialize_with = "present")]` on an `Option<Option<T>>` field:
/// absent → `None` (leave as is), `null` → `Some(None)` (clear), a value → `Some(Some(v))`.
pub fn present<'de, D: serde::Deserializer<'de>, T: serde::Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    <Option<T> as serde::Deserialize>::deserialize(d).map(Some)
}

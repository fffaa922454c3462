//! Seed 003's tracking endpoints: `POST /v1/track/event`, `/identify`, `/page`, `/batch`.
//! Keys with `events:write` (secret or public) may call them, from any web origin (CORS).
//! A 200 means the messages are on disk in the ingest log; they reach the customer's profile
//! and the event store moments later.
//!
//! Unknown fields are kept out of the way rather than refused: SDKs send fields of their own.
//! A batch is all or nothing: one invalid message makes the whole batch a 400 that names it
//! (`batch[2].event`), and nothing is stored — fix it and send the batch again (message ids
//! make the resend safe).

use axum::{
    extract::{Request, State},
    response::{IntoResponse, Response},
    Json,
};
use cairn_domain::{CustomerId, FieldError, Scope, TenantId};
use cairn_ingest::{message::parse_seed, message::IngestMessage, LogError};
use cairn_service::Principal;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    envelope::{data, Data},
    error::{ApiError, ApiResult, ErrorBody},
    extract::{read_body, BodyLimit},
    middleware::{with_limit_headers, ClientIp},
    ratelimit::Decision,
    AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(track_event))
        .routes(routes!(track_identify))
        .routes(routes!(track_page))
        .routes(routes!(track_batch))
}

#[derive(Serialize, ToSchema)]
pub struct Accepted {
    /// How many messages were accepted.
    accepted: usize,
    /// Their ids (generated where the client sent none), in order.
    message_ids: Vec<String>,
}

/// Measures messages against the per-message limit, without re-serialising any when the
/// whole body is within it (the common case).
#[derive(Clone, Copy)]
pub struct Sizer {
    whole_body_fits: bool,
}

impl Sizer {
    pub fn size(&self, item: &Value) -> usize {
        if self.whole_body_fits {
            0
        } else {
            item.to_string().len()
        }
    }
}

/// One parsed message with what its errors are named by (`batch[3].`) and its size.
pub struct Parsed {
    pub prefix: String,
    pub size: usize,
    pub message: IngestMessage,
}

/// How a tracking route answers success: seed 003's envelope, or Segment's `{"success": true}`.
#[derive(Clone, Copy)]
pub enum Reply {
    Seed,
    Segment,
}

/// Reads a tracking body as JSON (`application/json`, or `text/plain` as browsers' beacons
/// and analytics.js send it), within the ingestion size limits.
pub async fn read_tracking_body(st: &AppState, req: Request) -> ApiResult<(Value, usize)> {
    let ct = req.headers().get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if !(mime.is_empty() || mime == "application/json" || mime == "text/plain" || mime.ends_with("+json")) {
        return Err(ApiError::unsupported_media_type(format!("expected application/json or text/plain, got {mime}")));
    }
    let gzip = req
        .headers()
        .get(axum::http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
    let limit = req.extensions().get::<BodyLimit>().map(|l| l.0).unwrap_or(st.settings.max_batch_bytes);
    let bytes = read_body(req, limit).await?;
    let bytes = if gzip { gunzip(&bytes, limit)? } else { bytes.to_vec() };
    let value = serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
    Ok((value, bytes.len()))
}

/// Inflates a gzip body (SDKs may compress), refusing (413) past `limit` inflated bytes.
fn gunzip(bytes: &[u8], limit: usize) -> ApiResult<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    let mut reader = flate2::read::GzDecoder::new(bytes).take(limit as u64 + 1);
    reader.read_to_end(&mut out).map_err(|_| ApiError::bad_request("the body is not valid gzip"))?;
    if out.len() > limit {
        return Err(ApiError::too_large(limit));
    }
    Ok(out)
}

pub fn field(e: FieldError) -> ApiError {
    ApiError::validation(e.field, e.message)
}

/// The ingesting credential: from a header (authenticated and rate-limited by the gate), or
/// from the body (`writeKey`, `api_key` or `apiKey`: browsers' beacons cannot set headers),
/// authenticated and rate-limited here.
async fn caller(
    st: &AppState,
    from_header: Option<Principal>,
    ip: Option<ClientIp>,
    body: &Value,
) -> Result<(Principal, Option<Decision>), Response> {
    if let Some(p) = from_header {
        return Ok((p, None));
    }
    let key = ["writeKey", "api_key", "apiKey"].iter().find_map(|k| body.get(*k).and_then(Value::as_str));
    let ip = ip.map(|c| c.0).unwrap_or_default();
    let Some(key) = key else {
        let d = st.limiter.check(&format!("ip:{ip}"), st.settings.anonymous_rate_limit);
        let e = ApiError::unauthenticated(
            "send the key in X-API-Key, Authorization (Bearer or Basic), or writeKey in the body",
        );
        return Err(with_limit_headers(e.into_response(), &d));
    };
    match st.svc.authenticate_for_ingest(key).await {
        Ok(p) => {
            let limit = st.settings.limit_for(&p, true);
            let d = st.limiter.check(&format!("{}:ingest", p.label()), limit);
            if !d.allowed {
                return Err(with_limit_headers(ApiError::rate_limited(d.retry_after).into_response(), &d));
            }
            Ok((p, Some(d)))
        }
        Err(e) => {
            let d = st.limiter.check(&format!("ip:{ip}"), st.settings.anonymous_rate_limit);
            let resp = if d.allowed {
                ApiError::from(e).into_response()
            } else {
                ApiError::rate_limited(d.retry_after).into_response()
            };
            Err(with_limit_headers(resp, &d))
        }
    }
}

/// The whole of a tracking request: body, credential, scope, parsing, durable append.
pub async fn ingest(
    st: AppState,
    req: Request,
    reply: Reply,
    parse: impl FnOnce(&Value, i64, DateTime<Utc>, Sizer) -> ApiResult<Vec<Parsed>>,
) -> Response {
    let from_header = req.extensions().get::<Principal>().cloned();
    let ip = req.extensions().get::<ClientIp>().cloned();
    let (body, raw_len) = match read_tracking_body(&st, req).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let sizer = Sizer { whole_body_fits: raw_len <= st.settings.max_event_bytes };
    let (p, decision) = match caller(&st, from_header, ip, &body).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let result = async {
        p.require(Scope::EventsWrite)?;
        let parsed = parse(&body, p.tenant_id.0, st.svc.clock.now(), sizer)?;
        accept(&st, p.tenant_id, parsed).await
    }
    .await;
    let resp = match result {
        Ok(a) => match reply {
            Reply::Seed => data(a).into_response(),
            Reply::Segment => Json(serde_json::json!({"success": true})).into_response(),
        },
        Err(e) => e.into_response(),
    };
    match decision {
        Some(d) => with_limit_headers(resp, &d),
        None => resp,
    }
}

/// Checks per-message size, that named customers exist, and appends to the log.
async fn accept(st: &AppState, tenant: TenantId, parsed: Vec<Parsed>) -> ApiResult<Accepted> {
    for p in &parsed {
        if p.size > st.settings.max_event_bytes {
            let mut e = ApiError::too_large(st.settings.max_event_bytes);
            let name = if p.prefix.is_empty() {
                "the message".to_string()
            } else {
                p.prefix.trim_end_matches('.').to_string()
            };
            e.message = format!("{name}: a message may be at most {} bytes", st.settings.max_event_bytes);
            return Err(e);
        }
    }
    for p in &parsed {
        if let Some(id) = p.message.customer_id {
            let mut c = st.svc.store.read().await.map_err(|e| ApiError::internal(&e))?;
            if c.customer_exists(tenant, CustomerId(id)).await.map_err(|e| ApiError::internal(&e))?.is_none() {
                return Err(ApiError::validation(format!("{}customer_id", p.prefix), "no such customer"));
            }
        }
    }
    let message_ids: Vec<String> = parsed.iter().map(|p| p.message.message_id.clone()).collect();
    let records = parsed
        .iter()
        .map(|p| serde_json::to_vec(&p.message).map_err(|e| ApiError::internal(&e)))
        .collect::<ApiResult<Vec<_>>>()?;
    match st.ingest.append(records).await {
        Ok(()) => Ok(Accepted { accepted: message_ids.len(), message_ids }),
        Err(LogError::Full { .. }) => Err(ApiError::unavailable("ingestion is backed up; retry shortly", 5)),
        Err(e) => Err(ApiError::internal(&e)),
    }
}

fn one(kind: &'static str) -> impl FnOnce(&Value, i64, DateTime<Utc>, Sizer) -> ApiResult<Vec<Parsed>> {
    move |body, tenant, now, sizer| {
        let message = parse_seed(kind, body, "", tenant, now).map_err(field)?;
        Ok(vec![Parsed { prefix: String::new(), size: sizer.size(body), message }])
    }
}

/// Track an event (seed 003): `customer_email` (or `customer_id`, `user_id`, `anonymous_id`),
/// `event`, `properties`; optional `timestamp`, `sent_at`, `message_id`, `context`.
#[utoipa::path(post, path = "/v1/track/event", tag = "tracking", request_body(content = Object, description = "seed 003's event body"),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Data<Accepted>), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn track_event(State(st): State<AppState>, req: Request) -> Response {
    ingest(st, req, Reply::Seed, one("track")).await
}

/// Identify a customer: `email`, `name`, `phone`, `traits`, `user_id`, `anonymous_id` (links
/// the visitor's anonymous history to the profile).
#[utoipa::path(post, path = "/v1/track/identify", tag = "tracking", request_body(content = Object, description = "seed 003's identify body"),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Data<Accepted>), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn track_identify(State(st): State<AppState>, req: Request) -> Response {
    ingest(st, req, Reply::Seed, one("identify")).await
}

/// Track a page view: `url`, `title`, `referrer`, `properties`, and who.
#[utoipa::path(post, path = "/v1/track/page", tag = "tracking", request_body(content = Object, description = "seed 003's page body"),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Data<Accepted>), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn track_page(State(st): State<AppState>, req: Request) -> Response {
    ingest(st, req, Reply::Seed, one("page")).await
}

/// The items of a batch body: a JSON array, or `{"batch": [...]}`.
pub fn batch_items(body: &Value) -> ApiResult<&Vec<Value>> {
    let items = match body {
        Value::Array(items) => items,
        Value::Object(o) => match o.get("batch") {
            Some(Value::Array(items)) => items,
            _ => return Err(ApiError::validation("batch", "must be an array of messages")),
        },
        _ => return Err(ApiError::validation("batch", "must be an array of messages")),
    };
    if items.is_empty() {
        return Err(ApiError::validation("batch", "must hold at least one message"));
    }
    Ok(items)
}

/// Several messages at once: a JSON array, or `{"batch": [...]}`; each item has a `type`
/// (`event`/`track`, `identify` or `page`) and that type's fields. All or nothing.
#[utoipa::path(post, path = "/v1/track/batch", tag = "tracking", request_body(content = Object, description = "an array of messages, or {\"batch\": [...]}"),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Data<Accepted>), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn track_batch(State(st): State<AppState>, req: Request) -> Response {
    ingest(st, req, Reply::Seed, |body, tenant, now, sizer| {
        let items = batch_items(body)?;
        let mut parsed = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let prefix = format!("batch[{i}].");
            let kind = match item.get("type").and_then(Value::as_str) {
                Some("event") | Some("track") => "track",
                Some("identify") => "identify",
                Some("page") => "page",
                Some(other) => {
                    return Err(ApiError::validation(
                        format!("{prefix}type"),
                        format!("unknown type {other:?}: use event, identify or page"),
                    ))
                }
                None => {
                    return Err(ApiError::validation(format!("{prefix}type"), "is required (event, identify or page)"))
                }
            };
            let message = parse_seed(kind, item, &prefix, tenant, now).map_err(field)?;
            parsed.push(Parsed { prefix, size: sizer.size(item), message });
        }
        Ok(parsed)
    })
    .await
}

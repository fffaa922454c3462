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
    Json,
};
use cairn_domain::{CustomerId, FieldError, Scope, TenantId};
use cairn_ingest::{message::parse_seed, message::IngestMessage, LogError};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    envelope::{data, Data},
    error::{ApiError, ApiResult, ErrorBody},
    extract::{read_body, Auth, BodyLimit},
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

/// Reads a tracking body as JSON (`application/json`, or `text/plain` as browsers' beacons
/// send it), within the ingestion size limits.
pub async fn read_tracking_body(st: &AppState, req: Request) -> ApiResult<Value> {
    let ct = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if !(mime.is_empty()
        || mime == "application/json"
        || mime == "text/plain"
        || mime.ends_with("+json"))
    {
        return Err(ApiError::unsupported_media_type(format!(
            "expected application/json or text/plain, got {mime}"
        )));
    }
    let limit = req
        .extensions()
        .get::<BodyLimit>()
        .map(|l| l.0)
        .unwrap_or(st.settings.max_batch_bytes);
    let bytes = read_body(req, limit).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))
}

fn field(e: FieldError) -> ApiError {
    ApiError::validation(e.field, e.message)
}

/// Checks per-message size, that named customers exist, and appends to the log.
async fn accept(
    st: &AppState,
    tenant: TenantId,
    raw_sizes: &[usize],
    messages: Vec<IngestMessage>,
    prefix: impl Fn(usize) -> String,
) -> ApiResult<Json<Data<Accepted>>> {
    for (i, size) in raw_sizes.iter().enumerate() {
        if *size > st.settings.max_event_bytes {
            let mut e = ApiError::too_large(st.settings.max_event_bytes);
            e.message = format!(
                "{}: a message may be at most {} bytes",
                prefix(i).trim_end_matches('.'),
                st.settings.max_event_bytes
            );
            return Err(e);
        }
    }
    for (i, m) in messages.iter().enumerate() {
        if let Some(id) = m.customer_id {
            let exists = st
                .svc
                .store
                .read()
                .await
                .map_err(|e| ApiError::internal(&e))?
                .customer_exists(tenant, CustomerId(id))
                .await;
            if exists.map_err(|e| ApiError::internal(&e))?.is_none() {
                return Err(ApiError::validation(
                    format!("{}customer_id", prefix(i)),
                    "no such customer",
                ));
            }
        }
    }
    let message_ids: Vec<String> = messages.iter().map(|m| m.message_id.clone()).collect();
    let records = messages
        .iter()
        .map(|m| serde_json::to_vec(m).map_err(|e| ApiError::internal(&e)))
        .collect::<ApiResult<Vec<_>>>()?;
    match st.ingest.append(records).await {
        Ok(()) => Ok(data(Accepted {
            accepted: message_ids.len(),
            message_ids,
        })),
        Err(LogError::Full { .. }) => Err(ApiError::unavailable(
            "ingestion is backed up; retry shortly",
            5,
        )),
        Err(e) => Err(ApiError::internal(&e)),
    }
}

async fn single(
    st: AppState,
    p: cairn_service::Principal,
    kind: &str,
    req: Request,
) -> ApiResult<Json<Data<Accepted>>> {
    p.require(Scope::EventsWrite)?;
    let body = read_tracking_body(&st, req).await?;
    let size = body.to_string().len();
    let m = parse_seed(kind, &body, "", p.tenant_id.0, st.svc.clock.now()).map_err(field)?;
    accept(&st, p.tenant_id, &[size], vec![m], |_| String::new()).await
}

/// Track an event (seed 003): `customer_email` (or `customer_id`, `user_id`, `anonymous_id`),
/// `event`, `properties`; optional `timestamp`, `sent_at`, `message_id`, `context`.
#[utoipa::path(post, path = "/v1/track/event", tag = "tracking", request_body(content = Object, description = "seed 003's event body"),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Data<Accepted>), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn track_event(
    State(st): State<AppState>,
    Auth(p): Auth,
    req: Request,
) -> ApiResult<Json<Data<Accepted>>> {
    single(st, p, "track", req).await
}

/// Identify a customer: `email`, `name`, `phone`, `traits`, `user_id`, `anonymous_id` (links
/// the visitor's anonymous history to the profile).
#[utoipa::path(post, path = "/v1/track/identify", tag = "tracking", request_body(content = Object, description = "seed 003's identify body"),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Data<Accepted>), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn track_identify(
    State(st): State<AppState>,
    Auth(p): Auth,
    req: Request,
) -> ApiResult<Json<Data<Accepted>>> {
    single(st, p, "identify", req).await
}

/// Track a page view: `url`, `title`, `referrer`, `properties`, and who.
#[utoipa::path(post, path = "/v1/track/page", tag = "tracking", request_body(content = Object, description = "seed 003's page body"),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Data<Accepted>), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn track_page(
    State(st): State<AppState>,
    Auth(p): Auth,
    req: Request,
) -> ApiResult<Json<Data<Accepted>>> {
    single(st, p, "page", req).await
}

/// Several messages at once: a JSON array, or `{"batch": [...]}`; each item has a `type`
/// (`event`/`track`, `identify` or `page`) and that type's fields. All or nothing.
#[utoipa::path(post, path = "/v1/track/batch", tag = "tracking", request_body(content = Object, description = "an array of messages, or {\"batch\": [...]}"),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Data<Accepted>), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn track_batch(
    State(st): State<AppState>,
    Auth(p): Auth,
    req: Request,
) -> ApiResult<Json<Data<Accepted>>> {
    p.require(Scope::EventsWrite)?;
    let body = read_tracking_body(&st, req).await?;
    let items = match &body {
        Value::Array(items) => items,
        Value::Object(o) => match o.get("batch") {
            Some(Value::Array(items)) => items,
            _ => {
                return Err(ApiError::validation(
                    "batch",
                    "must be an array of messages",
                ))
            }
        },
        _ => {
            return Err(ApiError::validation(
                "batch",
                "must be an array of messages",
            ))
        }
    };
    if items.is_empty() {
        return Err(ApiError::validation(
            "batch",
            "must hold at least one message",
        ));
    }
    let now = st.svc.clock.now();
    let prefix = |i: usize| format!("batch[{i}].");
    let mut sizes = Vec::with_capacity(items.len());
    let mut messages = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        sizes.push(item.to_string().len());
        let kind = match item.get("type").and_then(Value::as_str) {
            Some("event") | Some("track") => "track",
            Some("identify") => "identify",
            Some("page") => "page",
            Some(other) => {
                return Err(ApiError::validation(
                    format!("batch[{i}].type"),
                    format!("unknown type {other:?}: use event, identify or page"),
                ))
            }
            None => {
                return Err(ApiError::validation(
                    format!("batch[{i}].type"),
                    "is required (event, identify or page)",
                ))
            }
        };
        messages.push(parse_seed(kind, item, &prefix(i), p.tenant_id.0, now).map_err(field)?);
    }
    accept(&st, p.tenant_id, &sizes, messages, prefix).await
}

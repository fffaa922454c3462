//! Segment's HTTP tracking API, so that unmodified Segment and RudderStack SDKs can send to
//! Cairn by changing their host: `/v1/identify|track|page|screen|group|alias|batch`, the
//! browser library's short routes (`/v1/i`, `/v1/t`, `/v1/p`, `/v1/s`, `/v1/g`, `/v1/a`,
//! `/v1/b`), and `GET /v1/projects/{writeKey}/settings` for analytics.js to start.
//! Authentication: HTTP Basic with the write key as user name, or `writeKey` in the body; the
//! write key is any Cairn key with `events:write` (a `pk_live_` key for browsers).

use axum::{
    extract::{Request, State},
    http::{header, HeaderMap},
    response::{IntoResponse, Response},
    Json,
};
use cairn_domain::Scope;
use cairn_ingest::message::parse_segment;
use serde_json::{json, Value};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    error::{ApiError, ErrorBody},
    extract::ApiPath,
    routes::track::{batch_items, field, ingest, Parsed, Reply},
    AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(identify))
        .routes(routes!(track))
        .routes(routes!(page))
        .routes(routes!(screen))
        .routes(routes!(group))
        .routes(routes!(alias))
        .routes(routes!(batch))
        .routes(routes!(short_identify))
        .routes(routes!(short_track))
        .routes(routes!(short_page))
        .routes(routes!(short_screen))
        .routes(routes!(short_group))
        .routes(routes!(short_alias))
        .routes(routes!(short_batch))
        .routes(routes!(project_settings))
}

async fn single(st: AppState, req: Request, kind: &'static str) -> Response {
    ingest(st, req, Reply::Segment, move |body, tenant, now, sizer| {
        let message = parse_segment(kind, body, "", tenant, now, None).map_err(field)?;
        Ok(vec![Parsed { prefix: String::new(), size: sizer.size(body), message }])
    })
    .await
}

async fn many(st: AppState, req: Request) -> Response {
    ingest(st, req, Reply::Segment, |body, tenant, now, sizer| {
        let items = batch_items(body)?;
        let shared = body.get("context");
        let mut parsed = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let prefix = format!("batch[{i}].");
            let kind = match item.get("type").and_then(Value::as_str) {
                Some(k @ ("identify" | "track" | "page" | "screen" | "group" | "alias")) => k,
                Some(other) => {
                    return Err(ApiError::validation(format!("{prefix}type"), format!("unknown type {other:?}")))
                }
                None => return Err(ApiError::validation(format!("{prefix}type"), "is required")),
            };
            let message = parse_segment(kind, item, &prefix, tenant, now, shared).map_err(field)?;
            parsed.push(Parsed { prefix, size: sizer.size(item), message });
        }
        Ok(parsed)
    })
    .await
}

macro_rules! segment_route {
    ($name:ident, $path:literal, $kind:literal, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "segment", request_body(content = Object, description = "Segment's message"),
            responses((status = 200, description = "accepted: {\"success\": true}"), (status = 400, body = ErrorBody),
                      (status = 401, body = ErrorBody), (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)))]
        pub async fn $name(State(st): State<AppState>, req: Request) -> Response {
            single(st, req, $kind).await
        }
    };
}

segment_route!(
    identify,
    "/v1/identify",
    "identify",
    "Segment `identify`: `userId`/`anonymousId` and `traits` (email, name, phone and the rest)."
);
segment_route!(track, "/v1/track", "track", "Segment `track`: `event` and `properties`.");
segment_route!(page, "/v1/page", "page", "Segment `page`: `name`, `category`, `properties` (url, title, referrer).");
segment_route!(screen, "/v1/screen", "screen", "Segment `screen`: a mobile screen view.");
segment_route!(group, "/v1/group", "group", "Segment `group`: `groupId` and its `traits`.");
segment_route!(alias, "/v1/alias", "alias", "Segment `alias`: merges the profile of `previousId` into `userId`'s.");
segment_route!(short_identify, "/v1/i", "identify", "analytics.js's short route for `identify`.");
segment_route!(short_track, "/v1/t", "track", "analytics.js's short route for `track`.");
segment_route!(short_page, "/v1/p", "page", "analytics.js's short route for `page`.");
segment_route!(short_screen, "/v1/s", "screen", "analytics.js's short route for `screen`.");
segment_route!(short_group, "/v1/g", "group", "analytics.js's short route for `group`.");
segment_route!(short_alias, "/v1/a", "alias", "analytics.js's short route for `alias`.");

/// Segment `batch`: `{"batch": [...], "context"?, "writeKey"?}`, each item with its `type`.
/// All or nothing, like seed 003's batch.
#[utoipa::path(post, path = "/v1/batch", tag = "segment", request_body(content = Object, description = "Segment's batch"),
    responses((status = 200, description = "accepted"), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn batch(State(st): State<AppState>, req: Request) -> Response {
    many(st, req).await
}

/// analytics.js's short route for `batch`.
#[utoipa::path(post, path = "/v1/b", tag = "segment", request_body(content = Object, description = "Segment's batch"),
    responses((status = 200, description = "accepted"), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn short_batch(State(st): State<AppState>, req: Request) -> Response {
    many(st, req).await
}

/// What analytics.js fetches to start: the Segment.io destination pointed at this server.
/// An unknown key, or one that cannot ingest, is a 404.
#[utoipa::path(get, path = "/v1/projects/{writeKey}/settings", tag = "segment", params(("writeKey" = String, Path)),
    responses((status = 200, description = "analytics.js settings"), (status = 404, body = ErrorBody)))]
pub async fn project_settings(
    State(st): State<AppState>,
    headers: HeaderMap,
    ApiPath(write_key): ApiPath<String>,
) -> Response {
    let Ok(p) = st.svc.authenticate(&write_key).await else {
        return ApiError::not_found("project").into_response();
    };
    if p.require(Scope::EventsWrite).is_err() {
        return ApiError::not_found("project").into_response();
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1:8080");
    let enabled = json!({"__default": {"enabled": true, "integrations": {}}});
    Json(json!({
        "integrations": {"Segment.io": {"apiKey": write_key, "apiHost": format!("{host}/v1"), "protocol": "http",
                                         "unbundledIntegrations": [], "addBundledMetadata": true}},
        "plan": {"track": enabled, "identify": enabled, "group": enabled},
        "edgeFunction": {},
        "analyticsNextEnabled": true,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0.0},
        "legacyVideoPluginsEnabled": false,
        "remotePlugins": []
    }))
    .into_response()
}

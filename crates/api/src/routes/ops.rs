//! Operations: liveness, readiness, metrics, the OpenAPI document, and the 404 fallback.

use std::fmt::Write;

use axum::{
    extract::State,
    http::{header, StatusCode, Uri},
    response::IntoResponse,
    Json,
};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{error::ApiError, metrics::render_histogram, AppState};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi_json))
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    status: &'static str,
    version: &'static str,
}

/// Liveness: the process is up and serving.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok", version: env!("CARGO_PKG_VERSION") })
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    status: &'static str,
    entity_store: String,
    event_store: String,
}

/// Readiness: both stores answer a query. 503 `UNAVAILABLE` otherwise.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, body = Readiness), (status = 503, body = crate::error::ErrorBody)))]
pub async fn readyz(State(st): State<AppState>) -> Result<Json<Readiness>, ApiError> {
    if let Err(e) = st.svc.store.ping().await {
        tracing::warn!(error = %e, "entity store not ready");
        return Err(ApiError::unavailable("the entity store is not answering", 5));
    }
    if let Err(e) = st.events.ping().await {
        tracing::warn!(error = %e, "event store not ready");
        return Err(ApiError::unavailable("the event store is not answering", 5));
    }
    Ok(Json(Readiness {
        status: "ready",
        entity_store: format!("{:?}", st.svc.store.backend()).to_lowercase(),
        event_store: st.events.backend().to_string(),
    }))
}

/// Prometheus metrics: requests and latency by route, store latencies, queue depths.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, content_type = "text/plain")))]
pub async fn metrics(State(st): State<AppState>) -> impl IntoResponse {
    let mut out = String::with_capacity(16 * 1024);
    st.metrics.render(&mut out);
    out.push_str("# HELP cairn_store_query_duration_seconds Entity store statement latency.\n");
    out.push_str("# TYPE cairn_store_query_duration_seconds histogram\n");
    let backend = format!("backend=\"{:?}\"", st.svc.store.backend()).to_lowercase();
    render_histogram(&mut out, "cairn_store_query_duration_seconds", &backend, &cairn_store::QUERY_LATENCY);
    out.push_str("# HELP cairn_event_store_duration_seconds Event store latency by operation.\n");
    out.push_str("# TYPE cairn_event_store_duration_seconds histogram\n");
    let b = st.events.backend();
    render_histogram(
        &mut out,
        "cairn_event_store_duration_seconds",
        &format!("backend=\"{b}\",op=\"write\""),
        &cairn_events::INSERT_LATENCY,
    );
    render_histogram(
        &mut out,
        "cairn_event_store_duration_seconds",
        &format!("backend=\"{b}\",op=\"read\""),
        &cairn_events::READ_LATENCY,
    );
    out.push_str("# HELP cairn_queue_depth Items waiting, by queue.\n# TYPE cairn_queue_depth gauge\n");
    let _ = writeln!(out, "cairn_queue_depth{{queue=\"api_logs\"}} {}", st.api_logs.depth());
    match async { st.svc.store.read().await?.job_depths().await }.await {
        Ok(depths) => {
            for (kind, status, n) in depths {
                let _ = writeln!(out, "cairn_queue_depth{{queue=\"jobs\",kind=\"{kind}\",status=\"{status}\"}} {n}");
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not read job depths"),
    }
    let (open, idle) = st.svc.store.pool_stats();
    out.push_str(
        "# HELP cairn_store_connections Entity store pool connections.\n# TYPE cairn_store_connections gauge\n",
    );
    let _ = writeln!(out, "cairn_store_connections{{state=\"open\"}} {open}");
    let _ = writeln!(out, "cairn_store_connections{{state=\"idle\"}} {idle}");
    let _ = writeln!(out, "# TYPE cairn_uptime_seconds gauge\ncairn_uptime_seconds {}", st.started.elapsed().as_secs());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// This document: every route with its request and response schemas.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "ops", responses((status = 200, content_type = "application/json")))]
pub async fn openapi_json(State(st): State<AppState>) -> impl IntoResponse {
    let (_, doc) = crate::routes(&st.settings);
    Json(doc)
}

/// A known path with a method it does not take.
pub async fn method_not_allowed(method: axum::http::Method, uri: Uri) -> impl IntoResponse {
    let mut e = ApiError::bad_request(format!("{} does not accept {method}; see /v1/openapi.json", uri.path()));
    e.status = StatusCode::METHOD_NOT_ALLOWED;
    e
}

/// Any path no route matches.
pub async fn fallback(uri: Uri) -> impl IntoResponse {
    let mut e = ApiError::not_found("route");
    e.message = format!("no route for {}; see /v1/openapi.json", uri.path());
    e
}

//! Outbound webhooks (seed 004's endpoints, seed 003's payload, every seed's signatures).

use axum::{extract::State, response::IntoResponse, Json};
use cairn_channels::catalogue;
use cairn_service::webhooks::WebhookPatch;
use cairn_store::webhooks::{Delivery, Webhook};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    envelope::{data, Data, PageQuery, Paged},
    error::{ApiResult, ErrorBody},
    extract::{ApiJson, ApiPath, ApiQuery, Auth},
    routes::created,
    AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_webhooks, create_webhook))
        .routes(routes!(event_catalogue))
        .routes(routes!(get_webhook, update_webhook, delete_webhook))
        .routes(routes!(ping_webhook))
        .routes(routes!(rotate_secret))
        .routes(routes!(list_deliveries))
        .routes(routes!(redeliver))
}

#[derive(Serialize, ToSchema)]
pub struct WebhookView {
    id: i64,
    url: String,
    events: Vec<String>,
    /// `active` or `disabled`.
    status: String,
    disabled_reason: Option<String>,
    /// Until when the previous secret still signs (after a rotation).
    previous_secret_until: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<Webhook> for WebhookView {
    fn from(w: Webhook) -> Self {
        WebhookView {
            id: w.id,
            url: w.url,
            events: w.events.split_whitespace().map(str::to_string).collect(),
            status: w.status,
            disabled_reason: w.disabled_reason,
            previous_secret_until: w.previous_secret_until,
            created_at: w.created_at,
            updated_at: w.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct WebhookWithSecret {
    #[serde(flatten)]
    view: WebhookView,
    /// Shown once, here: the key of every signature.
    secret: String,
}

fn with_secret(w: Webhook) -> WebhookWithSecret {
    let secret = w.secret.clone();
    WebhookWithSecret { view: w.into(), secret }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    #[schema(example = "https://your-app.com/webhooks/crm")]
    url: String,
    /// Event names, `category.*` or `*` (see `GET /v1/webhooks/events`).
    #[schema(example = json!(["lead.created", "lead.converted", "opportunity.won"]))]
    events: Vec<String>,
    /// Your own signing secret (16–256 characters); one is generated (`whsec_…`) when absent.
    secret: Option<String>,
}

/// Register an endpoint.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", request_body = CreateWebhook, security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = Data<WebhookWithSecret>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_webhook(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiJson(r): ApiJson<CreateWebhook>,
) -> ApiResult<impl IntoResponse> {
    let w = st.svc.create_webhook(&p, &r.url, &r.events, r.secret.as_deref()).await?;
    Ok(created(data(with_secret(w))))
}

/// The workspace's endpoints.
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", params(PageQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Paged<WebhookView>), (status = 403, body = ErrorBody)))]
pub async fn list_webhooks(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Paged<WebhookView>>> {
    let (rows, total) = st.svc.webhooks(&p, q.limit(), q.offset()).await?;
    Ok(q.wrap(rows.into_iter().map(WebhookView::from).collect(), total))
}

#[derive(Serialize, ToSchema)]
pub struct CatalogueEntry {
    event: &'static str,
    description: &'static str,
    /// JSON Schema of the delivery's `data`; null for events of entities not built yet.
    #[schema(value_type = Option<Object>)]
    payload_schema: Option<serde_json::Value>,
}

/// Every event an endpoint can subscribe to (plus `*` and `category.*`).
#[utoipa::path(get, path = "/v1/webhooks/events", tag = "webhooks", security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Vec<CatalogueEntry>>)))]
pub async fn event_catalogue(Auth(p): Auth) -> ApiResult<Json<Data<Vec<CatalogueEntry>>>> {
    p.require_private()?;
    Ok(data(
        catalogue::EVENTS
            .iter()
            .map(|(event, description)| CatalogueEntry {
                event,
                description,
                payload_schema: catalogue::payload_schema(event),
            })
            .collect(),
    ))
}

/// One endpoint.
#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = i64, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<WebhookView>), (status = 404, body = ErrorBody)))]
pub async fn get_webhook(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<WebhookView>>> {
    Ok(data(st.svc.webhook(&p, id).await?.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    url: Option<String>,
    events: Option<Vec<String>>,
    /// `active` (re-enables a disabled endpoint) or `disabled`.
    status: Option<String>,
}

/// Change an endpoint's URL, events or status.
#[utoipa::path(put, path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = i64, Path)), request_body = UpdateWebhook,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<WebhookView>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_webhook(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(r): ApiJson<UpdateWebhook>,
) -> ApiResult<Json<Data<WebhookView>>> {
    let patch = WebhookPatch { url: r.url, events: r.events, status: r.status };
    Ok(data(st.svc.update_webhook(&p, id, patch).await?.into()))
}

#[derive(Serialize, ToSchema)]
pub struct Deleted {
    id: i64,
    deleted: bool,
}

/// Remove an endpoint (and its pending deliveries).
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = i64, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Deleted>), (status = 404, body = ErrorBody)))]
pub async fn delete_webhook(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<Deleted>>> {
    st.svc.delete_webhook(&p, id).await?;
    Ok(data(Deleted { id, deleted: true }))
}

#[derive(Serialize, ToSchema)]
pub struct Queued {
    delivery_id: i64,
}

/// Send a `webhook.ping` to the endpoint.
#[utoipa::path(post, path = "/v1/webhooks/{id}/ping", tag = "webhooks", params(("id" = i64, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 202, body = Data<Queued>), (status = 404, body = ErrorBody)))]
pub async fn ping_webhook(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<impl IntoResponse> {
    let delivery_id = st.svc.ping_webhook(&p, id).await?;
    Ok((axum::http::StatusCode::ACCEPTED, data(Queued { delivery_id })))
}

/// Replace the secret; the old one keeps signing for 24 hours. The new secret is shown once.
#[utoipa::path(post, path = "/v1/webhooks/{id}/rotate-secret", tag = "webhooks", params(("id" = i64, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<WebhookWithSecret>), (status = 404, body = ErrorBody)))]
pub async fn rotate_secret(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<WebhookWithSecret>>> {
    Ok(data(with_secret(st.svc.rotate_webhook_secret(&p, id).await?)))
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryView {
    id: i64,
    webhook_id: i64,
    event: String,
    /// `pending`, `succeeded` or `failed`.
    status: String,
    attempts: i32,
    status_code: Option<i32>,
    latency_ms: Option<f64>,
    error: Option<String>,
    /// The first 500 characters of the endpoint's last answer.
    response_excerpt: Option<String>,
    next_retry_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    delivered_at: Option<DateTime<Utc>>,
}

impl From<Delivery> for DeliveryView {
    fn from(d: Delivery) -> Self {
        DeliveryView {
            id: d.id,
            webhook_id: d.webhook_id,
            next_retry_at: (d.status == "pending").then_some(d.next_attempt_at),
            event: d.event,
            status: d.status,
            attempts: d.attempts,
            status_code: d.last_status,
            latency_ms: d.last_latency_ms,
            error: d.last_error,
            response_excerpt: d.response_excerpt,
            created_at: d.created_at,
            delivered_at: d.delivered_at,
        }
    }
}

/// An endpoint's deliveries, newest first.
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks", params(("id" = i64, Path), PageQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Paged<DeliveryView>), (status = 404, body = ErrorBody)))]
pub async fn list_deliveries(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Paged<DeliveryView>>> {
    let (rows, total) = st.svc.webhook_deliveries(&p, id, q.limit(), q.offset()).await?;
    Ok(q.wrap(rows.into_iter().map(DeliveryView::from).collect(), total))
}

/// Send a delivery again, now.
#[utoipa::path(post, path = "/v1/webhooks/deliveries/{id}/redeliver", tag = "webhooks", params(("id" = i64, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 202, body = Data<DeliveryView>), (status = 404, body = ErrorBody)))]
pub async fn redeliver(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<impl IntoResponse> {
    let d = st.svc.redeliver(&p, id).await?;
    Ok((axum::http::StatusCode::ACCEPTED, data(DeliveryView::from(d))))
}

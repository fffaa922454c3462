//! Inbound webhooks (docs/webhooks.md): seed 002's `POST /webhooks/crm/lead`, its lead detail
//! path `GET /analytics/leads/{id}` (the same answer as `GET /v1/leads/{id}`), a lead's
//! timeline, and the workspace's inbound secrets (`/v1/settings/crm-webhook`).

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use cairn_service::inbound::{CrmHookOutcome, InboundSettings, InboundSignature};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    envelope::{data, Data, PageQuery},
    error::{ApiError, ApiResult, ErrorBody},
    extract::{ApiJson, ApiPath, ApiQuery, Auth},
    middleware::presented_secret,
    AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(crm_lead))
        .routes(routes!(analytics_lead))
        .routes(routes!(lead_timeline))
        .routes(routes!(get_settings, put_settings))
        .routes(routes!(new_secret))
        .routes(routes!(new_signing_secret))
}

/// The signature headers of an inbound call: Standard Webhooks' when `webhook-signature` is
/// present, seed 000's `X-TraceCRM-*` otherwise.
pub fn signature(h: &HeaderMap) -> InboundSignature {
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    if h.contains_key("webhook-signature") {
        InboundSignature {
            standard: true,
            delivery_id: get("webhook-id"),
            timestamp: get("webhook-timestamp"),
            signature: get("webhook-signature"),
        }
    } else {
        InboundSignature {
            standard: false,
            delivery_id: get("x-tracecrm-delivery"),
            timestamp: get("x-tracecrm-timestamp"),
            signature: get("x-tracecrm-signature"),
        }
    }
}

/// Seed 002's answers carry `ok`; its errors keep the seeds' envelope and add `ok: false`.
fn seed002_error(e: ApiError) -> Response {
    let status = e.status;
    let mut body = json!({"ok": false, "success": false, "error": e.message, "code": e.code});
    if let Some(f) = e.field {
        body["field"] = json!(f);
    }
    (status, Json(body)).into_response()
}

/// Seed 002's CRM webhook: authenticated by the CRM webhook secret (`Authorization: Bearer` or
/// `X-API-Key`); when the workspace has a signing secret, also signed (seed 000's
/// `X-TraceCRM-*` headers or Standard Webhooks'). The whole body becomes CRM activity of the
/// lead its `crm_lead_id` names. An unknown `crm_lead_id` is answered 200 with `stored: false`
/// so that the CRM does not retry.
#[utoipa::path(post, path = "/webhooks/crm/lead", tag = "public", request_body = Object,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "`{ok: true, stored: true, lead_id}` or `{ok: true, stored: false, reason}`", body = Object),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 500, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn crm_lead(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let presented = presented_secret(&headers);
    match st.svc.crm_webhook(presented.as_deref(), &signature(&headers), &body).await {
        Ok(CrmHookOutcome::Stored { lead_id, activity_id }) => {
            Json(json!({"ok": true, "stored": true, "lead_id": lead_id, "activity_id": activity_id})).into_response()
        }
        Ok(CrmHookOutcome::Unmatched) => Json(json!({
            "ok": true,
            "stored": false,
            "reason": "No matching lead or submission for crm_lead_id",
        }))
        .into_response(),
        Err(e) => seed002_error(e.into()),
    }
}

/// Seed 002's lead detail path: the lead with `crm_activity`, as `GET /v1/leads/{id}` answers.
#[utoipa::path(get, path = "/analytics/leads/{id}", tag = "leads", params(("id" = i64, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Object>), (status = 404, body = ErrorBody)))]
pub async fn analytics_lead(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<Value>>> {
    let detail = st.svc.lead(&p, id).await?;
    Ok(data(super::crm::to_json(detail)?))
}

/// Everything that happened to a lead, newest first: `{kind, label, at, data}` with kind
/// `lead`, `activity`, `note`, `form_submission` or `crm` (labelled `CRM: <event_type>`).
#[utoipa::path(get, path = "/v1/leads/{id}/timeline", tag = "leads", params(("id" = i64, Path), PageQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Vec<Object>>), (status = 404, body = ErrorBody)))]
pub async fn lead_timeline(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Data<Vec<Value>>>> {
    Ok(data(st.svc.lead_timeline(&p, id, q.limit()).await?))
}

/// The workspace's inbound webhook settings.
#[derive(Serialize, ToSchema)]
pub struct InboundView {
    /// Where the CRM (or Make.com) posts lead events.
    crm_webhook_url: String,
    /// Whether the workspace has its own CRM webhook secret.
    secret_set: bool,
    /// Its first characters, to tell secrets apart.
    secret_prefix: Option<String>,
    /// Whether inbound calls must be signed (seed 000's rules).
    signing_secret_set: bool,
    /// Whether the server's `CRM_WEBHOOK_SECRET` also reaches this workspace.
    environment_secret: bool,
    /// A secret just generated: shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

fn view(st: &AppState, s: InboundSettings, secret: Option<String>) -> InboundView {
    InboundView {
        crm_webhook_url: format!(
            "{}/webhooks/crm/lead",
            st.svc.campaigns.as_deref().map(|k| k.links.base().to_string()).unwrap_or_default()
        ),
        secret_set: s.secret_set,
        secret_prefix: s.secret_prefix,
        signing_secret_set: s.signing_secret_set,
        environment_secret: s.environment_secret,
        secret,
    }
}

#[utoipa::path(get, path = "/v1/settings/crm-webhook", tag = "webhooks", security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<InboundView>), (status = 403, body = ErrorBody)))]
pub async fn get_settings(State(st): State<AppState>, Auth(p): Auth) -> ApiResult<Json<Data<InboundView>>> {
    let s = st.svc.inbound_settings(&p).await?;
    Ok(data(view(&st, s, None)))
}

/// Sets either secret to a value of your own (16 to 200 characters) or clears it (null); a
/// field left out keeps its secret.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InboundBody {
    #[serde(default, deserialize_with = "crate::extract::present")]
    #[schema(value_type = Option<String>)]
    secret: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::extract::present")]
    #[schema(value_type = Option<String>)]
    signing_secret: Option<Option<String>>,
}

#[utoipa::path(put, path = "/v1/settings/crm-webhook", tag = "webhooks", request_body = InboundBody,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<InboundView>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn put_settings(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiJson(b): ApiJson<InboundBody>,
) -> ApiResult<Json<Data<InboundView>>> {
    let s = st.svc.put_inbound_settings(&p, b.secret, b.signing_secret).await?;
    Ok(data(view(&st, s, None)))
}

/// Generates the workspace's CRM webhook secret (`crmwh_…`, shown once), replacing any.
#[utoipa::path(post, path = "/v1/settings/crm-webhook/secret", tag = "webhooks", security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = Data<InboundView>), (status = 403, body = ErrorBody)))]
pub async fn new_secret(State(st): State<AppState>, Auth(p): Auth) -> ApiResult<impl IntoResponse> {
    let n = st.svc.rotate_inbound_secret(&p).await?;
    Ok((StatusCode::CREATED, data(view(&st, n.settings, Some(n.secret)))))
}

/// Generates the workspace's inbound signing secret (`whsec_…`, shown once), replacing any:
/// from then on inbound calls must be signed.
#[utoipa::path(post, path = "/v1/settings/crm-webhook/signing-secret", tag = "webhooks",
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = Data<InboundView>), (status = 403, body = ErrorBody)))]
pub async fn new_signing_secret(State(st): State<AppState>, Auth(p): Auth) -> ApiResult<impl IntoResponse> {
    let n = st.svc.rotate_inbound_signing_secret(&p).await?;
    Ok((StatusCode::CREATED, data(view(&st, n.settings, Some(n.secret)))))
}

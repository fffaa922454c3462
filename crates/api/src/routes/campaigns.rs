//! Campaigns (seed 003, docs/campaigns.md): `GET/POST /v1/campaigns`, `GET/PUT/DELETE
//! /v1/campaigns/{id}`, `/send`, `/schedule`, `/cancel`, `/test`, `/preview`, `/stats`,
//! `/recipients`, `/audience.csv`; channel settings (`/v1/settings/email`, `/v1/settings/sms`);
//! the suppression list (`/v1/suppressions`); bounce and complaint intake (`/v1/email-events`).

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::IntoResponse,
    Json,
};
use cairn_campaigns::settings::{EmailSettings, SmsWorkspaceSettings};
use cairn_domain::CustomerId;
use cairn_service::campaigns::{CampaignInput, CampaignView as Campaign, EmailEvent};
use cairn_store::campaigns::{CustomerSend, SendRow};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    envelope::{data, Data, PageQuery, Paged},
    error::{ApiError, ApiResult, ErrorBody},
    extract::{ApiJson, ApiPath, ApiQuery, Auth},
    routes::created,
    AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_campaigns, create_campaign))
        .routes(routes!(get_campaign, update_campaign, delete_campaign))
        .routes(routes!(send_campaign))
        .routes(routes!(schedule_campaign))
        .routes(routes!(cancel_campaign))
        .routes(routes!(test_campaign))
        .routes(routes!(preview_campaign))
        .routes(routes!(campaign_stats))
        .routes(routes!(campaign_recipients))
        .routes(routes!(customer_messages))
        .routes(routes!(audience_csv))
        .routes(routes!(get_email_settings, put_email_settings))
        .routes(routes!(get_sms_settings, put_sms_settings))
        .routes(routes!(list_suppressions, add_suppression, remove_suppression))
        .routes(routes!(email_events))
}

/// Seed 003's campaign body, plus tracking, throttling and consent options.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignWrite {
    #[schema(example = "Win-Back Offer")]
    name: Option<String>,
    /// `email`, `sms` or `ad`.
    #[serde(rename = "type")]
    #[schema(example = "email")]
    kind: Option<String>,
    #[serde(default, deserialize_with = "crate::extract::present")]
    #[schema(value_type = Option<i64>, example = 3)]
    segment_id: Option<Option<i64>>,
    #[serde(default, deserialize_with = "crate::extract::present")]
    #[schema(value_type = Option<String>, example = "We miss you — here is 20% off")]
    subject: Option<Option<String>>,
    /// A minijinja template (`{{name}}`, filters, `{% if %}`); HTML for email.
    #[serde(default, deserialize_with = "crate::extract::present")]
    #[schema(value_type = Option<String>, example = "<p>Hi {{name}},</p><p>Use code BACK20 for 20% off your next order.</p>")]
    body: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::extract::present")]
    #[schema(value_type = Option<String>, example = "EnterCRM Team")]
    from_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::extract::present")]
    #[schema(value_type = Option<String>, example = "hello@yourcompany.com")]
    from_email: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::extract::present")]
    #[schema(value_type = Option<String>)]
    reply_to: Option<Option<String>>,
    /// Open pixel (default true).
    track_opens: Option<bool>,
    /// Click redirects (default true).
    track_clicks: Option<bool>,
    /// Messages per second for this campaign.
    #[serde(default, deserialize_with = "crate::extract::present")]
    #[schema(value_type = Option<i64>)]
    rate_limit: Option<Option<i64>>,
    /// Send only to customers whose `email_consent` / `sms_consent` trait is true (default:
    /// everyone who has not opted out).
    require_consent: Option<bool>,
}

impl From<CampaignWrite> for CampaignInput {
    fn from(w: CampaignWrite) -> Self {
        CampaignInput {
            name: w.name,
            kind: w.kind,
            segment_id: w.segment_id,
            subject: w.subject,
            body: w.body,
            from_name: w.from_name,
            from_email: w.from_email,
            reply_to: w.reply_to,
            track_opens: w.track_opens,
            track_clicks: w.track_clicks,
            rate_limit: w.rate_limit,
            require_consent: w.require_consent,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct StatsView {
    recipients: i64,
    /// Waiting to go (including retries).
    queued: i64,
    /// Committed to the channel this moment.
    in_flight: i64,
    /// Accepted by the SMTP server or the SMS provider (delivered ones included).
    sent: i64,
    delivered: i64,
    failed: i64,
    bounced: i64,
    /// Sent, but the provider never answered; its status callback settles it.
    unknown: i64,
    /// No valid address, opted out, or suppressed.
    skipped: i64,
    cancelled: i64,
    opened: i64,
    clicked: i64,
    unsubscribed: i64,
}

#[derive(Serialize, ToSchema)]
pub struct CampaignView {
    id: i64,
    name: String,
    #[serde(rename = "type")]
    kind: String,
    segment_id: Option<i64>,
    subject: Option<String>,
    body: Option<String>,
    from_name: Option<String>,
    from_email: Option<String>,
    reply_to: Option<String>,
    /// draft, scheduled, sending, sent, cancelled or failed.
    status: String,
    send_at: Option<DateTime<Utc>>,
    track_opens: bool,
    track_clicks: bool,
    rate_limit: Option<i64>,
    require_consent: bool,
    /// Why it failed.
    error: Option<String>,
    stats: StatsView,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<Campaign> for CampaignView {
    fn from(v: Campaign) -> Self {
        let (r, n) = (v.row, v.counts);
        CampaignView {
            id: r.id,
            name: r.name,
            kind: r.kind,
            segment_id: r.segment_id,
            subject: r.subject,
            body: r.body,
            from_name: r.from_name,
            from_email: r.from_email,
            reply_to: r.reply_to,
            status: r.status,
            send_at: r.send_at,
            track_opens: r.track_opens,
            track_clicks: r.track_clicks,
            rate_limit: r.rate_limit,
            require_consent: r.require_consent,
            error: r.error,
            stats: StatsView {
                recipients: n.recipients,
                queued: n.queued,
                in_flight: n.in_flight,
                sent: n.sent + n.delivered,
                delivered: n.delivered,
                failed: n.failed,
                bounced: n.bounced,
                unknown: n.unknown,
                skipped: n.skipped,
                cancelled: n.cancelled,
                opened: n.opened,
                clicked: n.clicked,
                unsubscribed: n.unsubscribed,
            },
            started_at: r.started_at,
            finished_at: r.finished_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    page: Option<u64>,
    per_page: Option<u64>,
    /// Only campaigns (or recipients) with this status.
    status: Option<String>,
}

impl ListQuery {
    fn page(&self) -> PageQuery {
        PageQuery { page: self.page, per_page: self.per_page }
    }
}

#[utoipa::path(get, path = "/v1/campaigns", tag = "campaigns", params(ListQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Paged<CampaignView>), (status = 403, body = ErrorBody)))]
pub async fn list_campaigns(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Paged<CampaignView>>> {
    let page = q.page();
    let (rows, total) = st.svc.campaigns(&p, q.status.as_deref(), page.limit(), page.offset()).await?;
    Ok(page.wrap(rows.into_iter().map(CampaignView::from).collect(), total))
}

/// Create a campaign (seed 003's body); it starts as a draft. Template syntax errors are a 400
/// naming the field, line and column.
#[utoipa::path(post, path = "/v1/campaigns", tag = "campaigns", request_body = CampaignWrite,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = Data<CampaignView>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_campaign(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiJson(w): ApiJson<CampaignWrite>,
) -> ApiResult<impl IntoResponse> {
    Ok(created(data(CampaignView::from(st.svc.create_campaign(&p, w.into()).await?))))
}

#[utoipa::path(get, path = "/v1/campaigns/{id}", tag = "campaigns", params(("id" = i64, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<CampaignView>), (status = 404, body = ErrorBody)))]
pub async fn get_campaign(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<CampaignView>>> {
    Ok(data(st.svc.campaign(&p, id).await?.into()))
}

/// Change a draft or scheduled campaign; absent fields stay.
#[utoipa::path(put, path = "/v1/campaigns/{id}", tag = "campaigns", params(("id" = i64, Path)), request_body = CampaignWrite,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<CampaignView>), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn update_campaign(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(w): ApiJson<CampaignWrite>,
) -> ApiResult<Json<Data<CampaignView>>> {
    Ok(data(st.svc.update_campaign(&p, id, w.into()).await?.into()))
}

#[utoipa::path(delete, path = "/v1/campaigns/{id}", tag = "campaigns", params(("id" = i64, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_campaign(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    st.svc.delete_campaign(&p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Send now (seed 003). The audience is resolved when sending starts; follow `stats`.
#[utoipa::path(post, path = "/v1/campaigns/{id}/send", tag = "campaigns", params(("id" = i64, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 202, body = Data<CampaignView>), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn send_campaign(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<impl IntoResponse> {
    Ok((StatusCode::ACCEPTED, data(CampaignView::from(st.svc.send_campaign(&p, id).await?))))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleBody {
    /// When to start sending (RFC 3339, in the future).
    send_at: DateTime<Utc>,
}

#[utoipa::path(post, path = "/v1/campaigns/{id}/schedule", tag = "campaigns", params(("id" = i64, Path)), request_body = ScheduleBody,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<CampaignView>), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn schedule_campaign(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<ScheduleBody>,
) -> ApiResult<Json<Data<CampaignView>>> {
    Ok(data(st.svc.schedule_campaign(&p, id, b.send_at).await?.into()))
}

/// Cancel a draft, scheduled or sending campaign: whatever has not gone yet never goes.
#[utoipa::path(post, path = "/v1/campaigns/{id}/cancel", tag = "campaigns", params(("id" = i64, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<CampaignView>), (status = 409, body = ErrorBody)))]
pub async fn cancel_campaign(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<CampaignView>>> {
    Ok(data(st.svc.cancel_campaign(&p, id).await?.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestBody {
    /// 1 to 10 email addresses (email campaigns) or E.164 numbers (SMS).
    to: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TestResultView {
    to: String,
    sent: bool,
    error: Option<String>,
}

/// Send a test to a few addresses now ("[Test]" in the subject; nothing is recorded).
#[utoipa::path(post, path = "/v1/campaigns/{id}/test", tag = "campaigns", params(("id" = i64, Path)), request_body = TestBody,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Vec<TestResultView>>), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn test_campaign(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<TestBody>,
) -> ApiResult<Json<Data<Vec<TestResultView>>>> {
    let results = st.svc.test_campaign(&p, id, b.to).await?;
    Ok(data(results.into_iter().map(|r| TestResultView { to: r.to, sent: r.sent, error: r.error }).collect()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewBody {
    customer_id: i64,
}

#[derive(Serialize, ToSchema)]
pub struct PreviewResult {
    subject: Option<String>,
    body: String,
    /// The plain-text part (email).
    text: Option<String>,
    /// Message segments (SMS).
    segments: Option<u32>,
}

/// The subject and body a customer would get.
#[utoipa::path(post, path = "/v1/campaigns/{id}/preview", tag = "campaigns", params(("id" = i64, Path)), request_body = PreviewBody,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<PreviewResult>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn preview_campaign(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<PreviewBody>,
) -> ApiResult<Json<Data<PreviewResult>>> {
    let v = st.svc.preview_campaign(&p, id, b.customer_id).await?;
    Ok(data(PreviewResult { subject: v.subject, body: v.body, text: v.text, segments: v.segments }))
}

/// Recipients, sent, delivered, failed, bounced, opened, clicked, unsubscribed.
#[utoipa::path(get, path = "/v1/campaigns/{id}/stats", tag = "campaigns", params(("id" = i64, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<StatsView>), (status = 404, body = ErrorBody)))]
pub async fn campaign_stats(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<Value>>> {
    let v = CampaignView::from(st.svc.campaign_stats(&p, id).await?);
    let mut stats = serde_json::to_value(&v.stats).map_err(|e| ApiError::internal(&e))?;
    stats["status"] = json!(v.status);
    Ok(data(stats))
}

#[derive(Serialize, ToSchema)]
pub struct RecipientView {
    customer_id: i64,
    channel: String,
    address: Option<String>,
    status: String,
    reason: Option<String>,
    provider_id: Option<String>,
    attempts: i64,
    segments: Option<i64>,
    error: Option<String>,
    sent_at: Option<DateTime<Utc>>,
    delivered_at: Option<DateTime<Utc>>,
    opened_at: Option<DateTime<Utc>>,
    clicked_at: Option<DateTime<Utc>>,
    unsubscribed_at: Option<DateTime<Utc>>,
}

impl From<SendRow> for RecipientView {
    fn from(s: SendRow) -> Self {
        RecipientView {
            customer_id: s.customer_id,
            channel: s.channel,
            address: s.address,
            status: if s.status == "committing" { "sending".into() } else { s.status },
            reason: s.reason,
            provider_id: s.provider_id,
            attempts: s.attempts,
            segments: s.parts,
            error: s.error,
            sent_at: s.sent_at,
            delivered_at: s.delivered_at,
            opened_at: s.opened_at,
            clicked_at: s.clicked_at,
            unsubscribed_at: s.unsubscribed_at,
        }
    }
}

/// Every recipient with what happened to their message.
#[utoipa::path(get, path = "/v1/campaigns/{id}/recipients", tag = "campaigns", params(("id" = i64, Path), ListQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Paged<RecipientView>), (status = 404, body = ErrorBody)))]
pub async fn campaign_recipients(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Paged<RecipientView>>> {
    let page = q.page();
    let (rows, total) = st.svc.campaign_recipients(&p, id, q.status.as_deref(), page.limit(), page.offset()).await?;
    Ok(page.wrap(rows.into_iter().map(RecipientView::from).collect(), total))
}

/// One message a customer was sent: its campaign and what happened to it.
#[derive(Serialize, ToSchema)]
pub struct CustomerMessageView {
    campaign_id: i64,
    campaign_name: String,
    /// `email` or `sms`.
    campaign_type: String,
    #[serde(flatten)]
    send: RecipientView,
    created_at: DateTime<Utc>,
}

impl From<CustomerSend> for CustomerMessageView {
    fn from(s: CustomerSend) -> Self {
        CustomerMessageView {
            campaign_id: s.send.campaign_id,
            campaign_name: s.campaign_name,
            campaign_type: s.campaign_kind,
            created_at: s.send.created_at,
            send: s.send.into(),
        }
    }
}

/// The messages a customer was sent — campaigns and automation steps — newest first, with
/// what happened to each (the profile's "campaigns received").
#[utoipa::path(get, path = "/v1/customers/{id}/messages", tag = "customers", params(("id" = i64, Path), PageQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Paged<CustomerMessageView>), (status = 404, body = ErrorBody)))]
pub async fn customer_messages(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> ApiResult<Json<Paged<CustomerMessageView>>> {
    let (rows, total) = st.svc.customer_messages(&p, CustomerId(id), page.limit(), page.offset()).await?;
    Ok(page.wrap(rows.into_iter().map(CustomerMessageView::from).collect(), total))
}

/// The segment as a hashed audience (`email_sha256,phone_sha256`) for ad platforms.
#[utoipa::path(get, path = "/v1/campaigns/{id}/audience.csv", tag = "campaigns", params(("id" = i64, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, content_type = "text/csv"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn audience_csv(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<impl IntoResponse> {
    let csv = st.svc.campaign_audience_csv(&p, id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"campaign-{id}-audience.csv\"")),
        ],
        csv,
    ))
}

#[derive(Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct EmailSettingsView {
    from_name: Option<String>,
    from_email: Option<String>,
    reply_to: Option<String>,
    /// `smtp://user:pass@host:port?tls=none|starttls|tls`; shown back without the password.
    smtp_url: Option<String>,
    rate_limit: Option<i64>,
    unsubscribe_mailto: Option<String>,
    dkim_domain: Option<String>,
    dkim_selector: Option<String>,
    /// Write-only: an RSA key (PKCS#1 PEM) or an Ed25519 key (base64); omitted keeps the current one.
    #[serde(skip_serializing)]
    dkim_private_key: Option<String>,
    /// Read-only: whether a DKIM key is stored.
    #[serde(default)]
    dkim_key_set: bool,
}

fn email_view(s: EmailSettings) -> EmailSettingsView {
    EmailSettingsView {
        from_name: s.from_name,
        from_email: s.from_email,
        reply_to: s.reply_to,
        smtp_url: s
            .smtp_url
            .as_deref()
            .map(|u| cairn_channels::email::SmtpSettings::parse(u).map(|p| p.redacted()).unwrap_or_default()),
        rate_limit: s.rate_limit,
        unsubscribe_mailto: s.unsubscribe_mailto,
        dkim_domain: s.dkim_domain,
        dkim_selector: s.dkim_selector,
        dkim_private_key: None,
        dkim_key_set: s.dkim_private_key.is_some(),
    }
}

#[utoipa::path(get, path = "/v1/settings/email", tag = "campaigns",
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<EmailSettingsView>), (status = 403, body = ErrorBody)))]
pub async fn get_email_settings(State(st): State<AppState>, Auth(p): Auth) -> ApiResult<Json<Data<EmailSettingsView>>> {
    Ok(data(email_view(st.svc.get_email_settings(&p).await?)))
}

/// Replace the workspace's sender settings (a missing smtp_url means the server's default).
#[utoipa::path(put, path = "/v1/settings/email", tag = "campaigns", request_body = EmailSettingsView,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<EmailSettingsView>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn put_email_settings(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiJson(b): ApiJson<EmailSettingsView>,
) -> ApiResult<Json<Data<EmailSettingsView>>> {
    let s = EmailSettings {
        from_name: b.from_name,
        from_email: b.from_email,
        reply_to: b.reply_to,
        smtp_url: b.smtp_url,
        rate_limit: b.rate_limit,
        unsubscribe_mailto: b.unsubscribe_mailto,
        dkim_domain: b.dkim_domain,
        dkim_selector: b.dkim_selector,
        dkim_private_key: b.dkim_private_key,
    };
    Ok(data(email_view(st.svc.put_email_settings(&p, s).await?)))
}

#[derive(Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct SmsSettingsView {
    /// A Twilio-compatible Messages API base URL.
    api_url: Option<String>,
    account_sid: Option<String>,
    /// Write-only; omitted keeps the current one.
    #[serde(skip_serializing)]
    auth_token: Option<String>,
    #[serde(default)]
    auth_token_set: bool,
    /// The sending number (E.164) or alphanumeric sender id.
    from: Option<String>,
    rate_limit: Option<i64>,
}

fn sms_view(s: SmsWorkspaceSettings) -> SmsSettingsView {
    SmsSettingsView {
        api_url: s.api_url,
        account_sid: s.account_sid,
        auth_token: None,
        auth_token_set: s.auth_token.is_some(),
        from: s.from,
        rate_limit: s.rate_limit,
    }
}

#[utoipa::path(get, path = "/v1/settings/sms", tag = "campaigns",
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<SmsSettingsView>), (status = 403, body = ErrorBody)))]
pub async fn get_sms_settings(State(st): State<AppState>, Auth(p): Auth) -> ApiResult<Json<Data<SmsSettingsView>>> {
    Ok(data(sms_view(st.svc.get_sms_settings(&p).await?)))
}

#[utoipa::path(put, path = "/v1/settings/sms", tag = "campaigns", request_body = SmsSettingsView,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<SmsSettingsView>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn put_sms_settings(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiJson(b): ApiJson<SmsSettingsView>,
) -> ApiResult<Json<Data<SmsSettingsView>>> {
    let s = SmsWorkspaceSettings {
        api_url: b.api_url,
        account_sid: b.account_sid,
        auth_token: b.auth_token,
        from: b.from,
        rate_limit: b.rate_limit,
    };
    Ok(data(sms_view(st.svc.put_sms_settings(&p, s).await?)))
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuppressionView {
    /// `email` or `sms`.
    channel: String,
    address: String,
    /// unsubscribed, hard_bounce, complaint, stop_keyword, manual (read-only).
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    created_at: Option<DateTime<Utc>>,
}

#[utoipa::path(get, path = "/v1/suppressions", tag = "campaigns", params(PageQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Vec<SuppressionView>>)))]
pub async fn list_suppressions(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> ApiResult<Json<Data<Vec<SuppressionView>>>> {
    let rows = st.svc.suppressions(&p, page.limit(), page.offset()).await?;
    Ok(data(
        rows.into_iter()
            .map(|(channel, address, reason, at)| SuppressionView {
                channel,
                address,
                reason: Some(reason),
                created_at: Some(at),
            })
            .collect(),
    ))
}

/// Suppress an address by hand.
#[utoipa::path(post, path = "/v1/suppressions", tag = "campaigns", request_body = SuppressionView,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 204), (status = 400, body = ErrorBody)))]
pub async fn add_suppression(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiJson(b): ApiJson<SuppressionView>,
) -> ApiResult<StatusCode> {
    st.svc.add_suppression(&p, &b.channel, &b.address).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Release an address (it will be sent to again; its consent trait is not changed).
#[utoipa::path(delete, path = "/v1/suppressions", tag = "campaigns", request_body = SuppressionView,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn remove_suppression(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiJson(b): ApiJson<SuppressionView>,
) -> ApiResult<StatusCode> {
    if st.svc.remove_suppression(&p, &b.channel, &b.address).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("suppression"))
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailEventBody {
    /// `bounce`, `complaint` or `delivered` (`event` is accepted as well).
    #[serde(alias = "event")]
    #[serde(rename = "type")]
    kind: String,
    email: String,
    /// `hard` (default) or `soft`; soft bounces do not suppress.
    bounce_type: Option<String>,
    /// The Message-ID Cairn gave the message, if the provider reports it.
    message_id: Option<String>,
    reason: Option<String>,
    timestamp: Option<Value>,
}

/// Bounce and complaint intake, in the shape email providers post: one report or an array.
#[utoipa::path(post, path = "/v1/email-events", tag = "campaigns", request_body = Vec<EmailEventBody>,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Object>), (status = 400, body = ErrorBody)))]
pub async fn email_events(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiJson(b): ApiJson<Value>,
) -> ApiResult<Json<Data<Value>>> {
    let items = match b {
        Value::Array(a) => a,
        one => vec![one],
    };
    let mut events = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let e: EmailEventBody =
            serde_json::from_value(item).map_err(|e| ApiError::validation(format!("[{i}]"), e.to_string()))?;
        if !matches!(e.kind.as_str(), "bounce" | "complaint" | "delivered") {
            return Err(ApiError::validation(format!("[{i}].type"), "must be bounce, complaint or delivered"));
        }
        if cairn_domain::Email::parse("email", &e.email).is_err() {
            return Err(ApiError::validation(format!("[{i}].email"), "must be an email address"));
        }
        let soft = match e.bounce_type.as_deref() {
            None | Some("hard") | Some("permanent") | Some("Permanent") => false,
            Some("soft") | Some("transient") | Some("Transient") => true,
            Some(_) => return Err(ApiError::validation(format!("[{i}].bounce_type"), "must be hard or soft")),
        };
        let _ = e.timestamp;
        events.push(EmailEvent { kind: e.kind, email: e.email, soft, message_id: e.message_id, reason: e.reason });
    }
    let applied = st.svc.email_events(&p, events).await?;
    Ok(data(json!({"applied": applied})))
}

//! The public side of messages (docs/campaigns.md), outside `/v1` (no credentials, signed
//! links instead): the open pixel `GET /t/o/{token}`, click redirects `GET /t/c/{token}?u=`,
//! unsubscribe (`GET /u/{token}` a confirmation page, `POST /u/{token}` the RFC 8058 one-click
//! action), `GET /v/{token}` (view in browser), and the SMS provider's callbacks
//! (`POST /hooks/sms/status/{token}`, `POST /hooks/sms/inbound/{workspace}`), verified by
//! `X-Twilio-Signature`.

use axum::{
    body::Bytes,
    extract::{OriginalUri, Path, Query, State},
    http::{header, HeaderMap, StatusCode},
    response::{Html, IntoResponse, Response},
};
use cairn_ingest::message::IngestMessage;
use cairn_service::campaigns::Tracked;
use serde::Deserialize;
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{error::ApiError, AppState};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(open))
        .routes(routes!(click))
        .routes(routes!(unsubscribe_page, unsubscribe))
        .routes(routes!(view))
        .routes(routes!(sms_status))
        .routes(routes!(sms_inbound))
}

/// A transparent 1×1 GIF.
const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff,
    0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02,
    0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// Records what a link did as an event on the customer, through the ingest log like any
/// tracked event (so segments and automations see it). Deterministic message ids make a
/// repeated open or click of the same link one event.
async fn track(st: &AppState, t: &Tracked) {
    let Tracked::Recorded { tenant, customer, events } = t else { return };
    let now = st.svc.clock.now();
    let mut records = Vec::with_capacity(events.len());
    for (name, message_id, properties) in events {
        let m = IngestMessage {
            tenant_id: tenant.0,
            kind: "track".into(),
            message_id: message_id.clone(),
            name: name.clone(),
            customer_id: Some(*customer),
            email: None,
            user_id: None,
            anonymous_id: None,
            previous_id: None,
            traits: None,
            profile_name: None,
            profile_phone: None,
            properties: properties.clone(),
            context: json!({"source": "campaign"}),
            timestamp: now,
            sent_at: None,
            received_at: now,
            amount: None,
            currency: None,
        };
        match serde_json::to_vec(&m) {
            Ok(r) => records.push(r),
            Err(e) => tracing::warn!(error = %e, "could not encode a campaign event"),
        }
    }
    if records.is_empty() {
        return;
    }
    if let Err(e) = st.ingest.append(records).await {
        tracing::warn!(error = %e, "could not record a campaign event");
    }
}

#[utoipa::path(get, path = "/t/o/{token}", tag = "public", params(("token" = String, Path)), responses((status = 200, content_type = "image/gif")))]
async fn open(State(st): State<AppState>, Path(token): Path<String>) -> Response {
    let token = token.trim_end_matches(".gif");
    if let Ok(t) = st.svc.track_open(token).await {
        track(&st, &t).await;
    }
    // The pixel is answered whatever the token: a mail client shows nothing either way.
    ([(header::CONTENT_TYPE, "image/gif"), (header::CACHE_CONTROL, "no-store, max-age=0")], PIXEL).into_response()
}

#[derive(Deserialize)]
struct ClickQuery {
    u: String,
}

/// A tracked link: records the click and redirects to the URL it was signed for.
#[utoipa::path(get, path = "/t/c/{token}", tag = "public", params(("token" = String, Path), ("u" = String, Query)), responses((status = 302), (status = 404)))]
async fn click(
    State(st): State<AppState>,
    Path(token): Path<String>,
    Query(q): Query<ClickQuery>,
) -> Result<Response, ApiError> {
    let t = st.svc.track_click(&token, &q.u).await?;
    track(&st, &t).await;
    Ok((StatusCode::FOUND, [(header::LOCATION, q.u.as_str()), (header::CACHE_CONTROL, "no-store")]).into_response())
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{title}</title><style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#1f2937}}\
         button{{font:inherit;padding:.6rem 1.2rem;border-radius:.4rem;border:0;background:#2563eb;color:#fff;cursor:pointer}}</style>\
         </head><body>{body}</body></html>"
    ))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The confirmation page: a GET never unsubscribes (link scanners follow links), its button does.
#[utoipa::path(get, path = "/u/{token}", tag = "public", params(("token" = String, Path)), responses((status = 200, content_type = "text/html"), (status = 404)))]
async fn unsubscribe_page(State(st): State<AppState>, Path(token): Path<String>) -> Result<Html<String>, ApiError> {
    let what = match st.svc.unsubscribe_page(&token).await? {
        Some(name) => format!("from messages like &ldquo;{}&rdquo;", escape(&name)),
        None => "(this was a test message: nothing will change)".into(),
    };
    Ok(page(
        "Unsubscribe",
        &format!(
            "<h1>Unsubscribe</h1><p>Stop receiving these messages {what}?</p>\
             <form method=\"post\"><button type=\"submit\">Unsubscribe</button></form>"
        ),
    ))
}

/// One-click unsubscribe (RFC 8058 `List-Unsubscribe=One-Click`, or the page's button).
#[utoipa::path(post, path = "/u/{token}", tag = "public", params(("token" = String, Path)), responses((status = 200, content_type = "text/html"), (status = 404)))]
async fn unsubscribe(State(st): State<AppState>, Path(token): Path<String>) -> Result<Html<String>, ApiError> {
    let t = st.svc.unsubscribe(&token).await?;
    track(&st, &t).await;
    Ok(page("Unsubscribed", "<h1>You are unsubscribed</h1><p>You will not receive these messages any more.</p>"))
}

/// The email as a web page.
#[utoipa::path(get, path = "/v/{token}", tag = "public", params(("token" = String, Path)), responses((status = 200, content_type = "text/html"), (status = 404)))]
async fn view(State(st): State<AppState>, Path(token): Path<String>) -> Result<Html<String>, ApiError> {
    Ok(Html(st.svc.view_in_browser(&token).await?))
}

/// The URL the provider signed: our public base and the path (and query) it posted to.
fn signed_url(st: &AppState, uri: &axum::http::Uri) -> Result<String, ApiError> {
    let kit = st.svc.campaigns.as_deref().ok_or_else(|| ApiError::not_found("link"))?;
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or(uri.path());
    Ok(format!("{}{path}", kit.links.base()))
}

fn form(body: &Bytes) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

fn signature(h: &HeaderMap) -> String {
    h.get("x-twilio-signature").and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}

/// The SMS provider's status callback (X-Twilio-Signature).
#[utoipa::path(post, path = "/hooks/sms/status/{token}", tag = "public", params(("token" = String, Path)), responses((status = 204), (status = 403)))]
async fn sms_status(
    State(st): State<AppState>,
    Path(token): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let url = signed_url(&st, &uri)?;
    st.svc.sms_status(&token, &url, &form(&body), &signature(&headers)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Inbound SMS (STOP / START keywords), X-Twilio-Signature.
#[utoipa::path(post, path = "/hooks/sms/inbound/{workspace}", tag = "public", params(("workspace" = i64, Path)), responses((status = 200, content_type = "text/xml"), (status = 403)))]
async fn sms_inbound(
    State(st): State<AppState>,
    Path(workspace): Path<i64>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let url = signed_url(&st, &uri)?;
    st.svc.sms_inbound(workspace, &url, &form(&body), &signature(&headers)).await?;
    // An empty TwiML answer: the provider sends its own STOP/START confirmations.
    Ok(([(header::CONTENT_TYPE, "text/xml")], "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>")
        .into_response())
}

//! Custom fields (seed 004), forms and their public submission URL (seed 000), imports (seed
//! 000), reports (seed 000) and search (seed 004).

use axum::{
    extract::{Path, Request, State},
    http::header,
    response::IntoResponse,
    Json,
};
use cairn_store::{
    crm::settings::{CustomField, Form, Import},
    inbound::Submission,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{time_param, to_json, Deleted};
use crate::{
    envelope::{data, Data, PageQuery, Paged},
    error::{ApiError, ApiResult, ErrorBody},
    extract::{parse_json, read_body, ApiJson, ApiPath, ApiQuery, Auth, BodyLimit},
    routes::created,
    AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_custom_fields, create_custom_field))
        .routes(routes!(update_custom_field, delete_custom_field))
        .routes(routes!(list_forms, create_form))
        .routes(routes!(get_form, update_form, delete_form))
        .routes(routes!(form_submissions))
        .routes(routes!(update_submission))
        .routes(routes!(public_form))
        .routes(routes!(submit_form))
        .routes(routes!(create_import))
        .routes(routes!(get_import))
        .routes(routes!(lead_report))
        .routes(routes!(opportunity_report))
        .routes(routes!(search))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FieldQuery {
    /// lead, contact, opportunity or prospect.
    entity_type: Option<String>,
}

/// Custom field definitions, for one entity type or all.
#[utoipa::path(get, path = "/v1/custom-fields", tag = "custom fields", params(FieldQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Vec<CustomField>>), (status = 400, body = ErrorBody)))]
pub async fn list_custom_fields(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<FieldQuery>,
) -> ApiResult<Json<Data<Vec<CustomField>>>> {
    Ok(data(st.svc.custom_fields(&p, q.entity_type.as_deref()).await?))
}

/// Define a custom field: {entity_type, key, label, field_type (text, number, date, boolean,
/// select, multi_select, url, email), options, required, position}.
#[utoipa::path(post, path = "/v1/custom-fields", tag = "custom fields", request_body = Object, security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = Data<CustomField>), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_custom_field(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<impl IntoResponse> {
    Ok(created(data(st.svc.create_custom_field(&p, body).await?)))
}

/// Change a definition's label, options, required flag or position.
#[utoipa::path(put, path = "/v1/custom-fields/{id}", tag = "custom fields", params(("id" = i64, Path)), request_body = Object,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<CustomField>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_custom_field(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Data<CustomField>>> {
    Ok(data(st.svc.update_custom_field(&p, id, body).await?))
}

/// Remove a definition.
#[utoipa::path(delete, path = "/v1/custom-fields/{id}", tag = "custom fields", params(("id" = i64, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Deleted>), (status = 404, body = ErrorBody)))]
pub async fn delete_custom_field(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<Deleted>>> {
    st.svc.delete_custom_field(&p, id).await?;
    Ok(data(Deleted { id, deleted: true }))
}

/// A form with its public submission URL.
#[derive(Serialize, ToSchema)]
pub struct FormView {
    #[serde(flatten)]
    form: Form,
    /// Where websites post submissions (JSON or an HTML form's urlencoded body).
    submit_url: String,
}

fn form_view(st: &AppState, form: Form) -> FormView {
    let base = st.svc.campaigns.as_deref().map(|k| k.links.base().to_string()).unwrap_or_default();
    FormView { submit_url: format!("{base}/v1/public/forms/{}/submissions", form.token), form }
}

/// The workspace's forms.
#[utoipa::path(get, path = "/v1/forms", tag = "forms", params(PageQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Paged<FormView>), (status = 403, body = ErrorBody)))]
pub async fn list_forms(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Paged<FormView>>> {
    let (rows, total) = st.svc.forms(&p, q.limit(), q.offset()).await?;
    Ok(q.wrap(rows.into_iter().map(|f| form_view(&st, f)).collect(), total))
}

/// Create a form: {name, fields: [{name, label, type, required, options, maps_to, max_length}],
/// source, lead_status, form_type, honeypot, is_active}.
#[utoipa::path(post, path = "/v1/forms", tag = "forms", request_body = Object, security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = Data<FormView>), (status = 400, body = ErrorBody)))]
pub async fn create_form(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<impl IntoResponse> {
    let f = st.svc.create_form(&p, body).await?;
    Ok(created(data(form_view(&st, f))))
}

/// One form.
#[utoipa::path(get, path = "/v1/forms/{id}", tag = "forms", params(("id" = i64, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<FormView>), (status = 404, body = ErrorBody)))]
pub async fn get_form(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<FormView>>> {
    let f = st.svc.form(&p, id).await?;
    Ok(data(form_view(&st, f)))
}

/// A form's submissions, newest first.
#[utoipa::path(get, path = "/v1/forms/{id}/submissions", tag = "forms", params(("id" = i64, Path), PageQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Paged<Submission>), (status = 404, body = ErrorBody)))]
pub async fn form_submissions(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Paged<Submission>>> {
    let (rows, total) = st.svc.form_submissions(&p, id, q.limit(), q.offset()).await?;
    Ok(q.wrap(rows, total))
}

/// Record the external CRM's lead id for a submission (`{crm_lead_id}`; null clears it): seed
/// 002's CRM webhook then finds the submission's lead by it.
#[utoipa::path(put, path = "/v1/forms/{id}/submissions/{submission_id}", tag = "forms",
    params(("id" = i64, Path), ("submission_id" = i64, Path)), request_body = Object,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Submission>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_submission(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath((id, submission_id)): ApiPath<(i64, i64)>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Data<Submission>>> {
    Ok(data(st.svc.update_submission(&p, id, submission_id, body).await?))
}

/// Change a form.
#[utoipa::path(put, path = "/v1/forms/{id}", tag = "forms", params(("id" = i64, Path)), request_body = Object,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<FormView>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_form(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Data<FormView>>> {
    let f = st.svc.update_form(&p, id, body).await?;
    Ok(data(form_view(&st, f)))
}

/// Delete a form.
#[utoipa::path(delete, path = "/v1/forms/{id}", tag = "forms", params(("id" = i64, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Deleted>), (status = 404, body = ErrorBody)))]
pub async fn delete_form(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<Deleted>>> {
    st.svc.delete_form(&p, id).await?;
    Ok(data(Deleted { id, deleted: true }))
}

#[derive(Serialize, ToSchema)]
pub struct PublicForm {
    name: String,
    #[schema(value_type = Vec<Object>)]
    fields: Value,
    /// The field to leave empty (hidden from people; bots fill it in).
    honeypot: Option<String>,
}

/// A form's fields, for a website to render (public; no credentials).
#[utoipa::path(get, path = "/v1/public/forms/{token}", tag = "public", params(("token" = String, Path)),
    responses((status = 200, body = Data<PublicForm>), (status = 404, body = ErrorBody)))]
pub async fn public_form(State(st): State<AppState>, Path(token): Path<String>) -> ApiResult<Json<Data<PublicForm>>> {
    let f = st.svc.public_form(&token).await?;
    Ok(data(PublicForm { name: f.name, fields: f.fields, honeypot: f.honeypot }))
}

/// Submit a form from a website (public; no credentials; CORS open; rate-limited per address):
/// a JSON object or an HTML form's `application/x-www-form-urlencoded` body. Creates or updates
/// the lead and emits `form.submission.created` / `form.response.created`.
#[utoipa::path(post, path = "/v1/public/forms/{token}/submissions", tag = "public", params(("token" = String, Path)), request_body = Object,
    responses((status = 201, body = Data<Object>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn submit_form(
    State(st): State<AppState>,
    Path(token): Path<String>,
    req: Request,
) -> ApiResult<impl IntoResponse> {
    let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let limit = req.extensions().get::<BodyLimit>().map(|l| l.0).unwrap_or(st.settings.max_body_bytes);
    let bytes = read_body(req, limit).await?;
    let fields: Map<String, Value> = if ct.starts_with("application/x-www-form-urlencoded") {
        form_urlencoded::parse(&bytes).map(|(k, v)| (k.into_owned(), Value::String(v.into_owned()))).collect()
    } else if ct.starts_with("application/json") || ct.is_empty() {
        parse_json(&bytes)?
    } else {
        return Err(ApiError::unsupported_media_type("expected application/json or application/x-www-form-urlencoded"));
    };
    let s = st.svc.submit_form(&token, fields).await?;
    Ok(created(data(to_json(s)?)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportBody {
    /// `leads` or `people`.
    kind: String,
    /// The CSV text, with a header row.
    csv: String,
    /// CSV column → field (`email`, `first_name`, `custom_fields.<key>`, or null to skip).
    #[schema(value_type = Option<Object>)]
    mapping: Option<Map<String, Value>>,
    /// The source given to imported leads (or stored on people as `traits.source`).
    source: Option<String>,
    /// Leads: the status; people: the lifecycle stage.
    stage: Option<String>,
}

/// Import a CSV of leads or people (runs in the background; follow it at `GET /v1/imports/{id}`).
#[utoipa::path(post, path = "/v1/imports", tag = "imports", request_body = ImportBody, security(("bearer" = []), ("api_key" = [])),
    responses((status = 202, body = Data<Import>), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn create_import(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiJson(b): ApiJson<ImportBody>,
) -> ApiResult<impl IntoResponse> {
    let req = cairn_service::crm::imports::ImportRequest {
        kind: b.kind,
        csv: b.csv,
        mapping: b.mapping,
        source: b.source,
        stage: b.stage,
    };
    let i = st.svc.start_import(&p, req).await?;
    Ok((axum::http::StatusCode::ACCEPTED, data(i)))
}

/// An import's progress and per-row errors.
#[utoipa::path(get, path = "/v1/imports/{id}", tag = "imports", params(("id" = i64, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Import>), (status = 404, body = ErrorBody)))]
pub async fn get_import(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<Import>>> {
    Ok(data(st.svc.import(&p, id).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// source, stage, owner, month (or pipeline, for opportunities).
    group_by: Option<String>,
    /// ISO 8601: created at or after.
    from: Option<String>,
    /// ISO 8601: created before.
    to: Option<String>,
}

/// Leads grouped by source (default), stage, owner or month: counts, conversions, value.
#[utoipa::path(get, path = "/v1/reports/leads", tag = "reports", params(ReportQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Object>), (status = 400, body = ErrorBody)))]
pub async fn lead_report(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> ApiResult<Json<Data<Value>>> {
    let (from, to) = (time_param("from", q.from.as_deref())?, time_param("to", q.to.as_deref())?);
    Ok(data(st.svc.lead_report(&p, q.group_by.as_deref(), from, to).await?))
}

/// Opportunities grouped by stage (default), source, owner, month or pipeline: counts, value,
/// won, lost and win rates.
#[utoipa::path(get, path = "/v1/reports/opportunities", tag = "reports", params(ReportQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Object>), (status = 400, body = ErrorBody)))]
pub async fn opportunity_report(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> ApiResult<Json<Data<Value>>> {
    let (from, to) = (time_param("from", q.from.as_deref())?, time_param("to", q.to.as_deref())?);
    Ok(data(st.svc.opportunity_report(&p, q.group_by.as_deref(), from, to).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    q: Option<String>,
    /// Comma-separated: lead, contact, prospect, opportunity (default: all the key may read).
    types: Option<String>,
    /// Default 20, at most 100.
    limit: Option<i64>,
}

/// Search leads, people, prospects and opportunities (seed 004's shape: results with type, id,
/// title, subtitle, score and url, and the total).
#[utoipa::path(get, path = "/v1/search", tag = "search", params(SearchQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Object>), (status = 400, body = ErrorBody)))]
pub async fn search(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> ApiResult<Json<Data<Value>>> {
    let limit = q.limit.unwrap_or(20).clamp(1, 100);
    let hits = st.svc.search(&p, q.q.as_deref().unwrap_or(""), q.types.as_deref(), limit).await?;
    let total = hits.len();
    Ok(data(serde_json::json!({"results": to_json(hits)?, "total": total})))
}

//! Leads (seed 004): `GET/POST /v1/leads`, `GET/PUT/DELETE /v1/leads/{id}`,
//! `POST /v1/leads/{id}/convert`, `GET/POST /v1/leads/{id}/activities`.

use axum::{
    extract::{RawQuery, State},
    Json,
};
use cairn_store::crm::{leads::Lead, records::ActivityFilter, EntityType};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{custom_query, time_param, Deleted};
use crate::{
    envelope::{data, Data, PageQuery, Paged},
    error::{ApiError, ApiResult, ErrorBody},
    extract::{ApiJson, ApiJsonOrEmpty, ApiPath, ApiQuery, Auth},
    routes::created,
    AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_leads, create_lead))
        .routes(routes!(get_lead, update_lead, delete_lead))
        .routes(routes!(convert_lead))
        .routes(routes!(lead_activities, log_lead_activity))
}

/// A lead as the API shows it: its fields and seed 004's `lead_id` (the same as `id`).
#[derive(Serialize, ToSchema)]
pub struct LeadView {
    lead_id: i64,
    #[serde(flatten)]
    lead: Lead,
}

impl From<Lead> for LeadView {
    fn from(lead: Lead) -> Self {
        LeadView { lead_id: lead.id, lead }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LeadQuery {
    page: Option<u64>,
    per_page: Option<u64>,
    /// new, contacted, qualified, unqualified, converted or all (default).
    status: Option<String>,
    source: Option<String>,
    assigned_to: Option<i64>,
    /// Part of the name, email or company (case-insensitive).
    search: Option<String>,
    /// The lead's id in an external CRM (exact).
    crm_lead_id: Option<String>,
    /// ISO 8601 date or time.
    created_after: Option<String>,
    created_before: Option<String>,
    /// created_at (default), updated_at, score, value, first_name, last_name, email, status.
    sort: Option<String>,
    /// asc or desc (default).
    order: Option<String>,
}

/// List leads (seed 004's filters; `custom_fields.<key>=value` filters by a custom field).
#[utoipa::path(get, path = "/v1/leads", tag = "leads", params(LeadQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Paged<LeadView>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_leads(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<LeadQuery>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Paged<LeadView>>> {
    let page = PageQuery { page: q.page, per_page: q.per_page };
    let status = match q.status.as_deref().map(str::to_lowercase) {
        None => None,
        Some(s) if s == "all" || s.is_empty() => None,
        Some(s) if cairn_service::crm::leads::STATUSES.contains(&s.as_str()) => Some(s),
        Some(_) => {
            return Err(ApiError::validation(
                "status",
                "must be new, contacted, qualified, unqualified, converted or all",
            ))
        }
    };
    let sort = q.sort.unwrap_or_else(|| "created_at".into());
    if !cairn_store::crm::leads::SORTS.contains(&sort.as_str()) {
        return Err(ApiError::validation(
            "sort",
            format!("must be one of {}", cairn_store::crm::leads::SORTS.join(", ")),
        ));
    }
    let descending = match q.order.as_deref().map(str::to_lowercase).as_deref() {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(_) => return Err(ApiError::validation("order", "must be asc or desc")),
    };
    let filter = cairn_store::crm::leads::LeadFilter {
        status,
        source: q.source.filter(|s| !s.is_empty()),
        assigned_to: q.assigned_to,
        search: q.search.filter(|s| !s.trim().is_empty()).map(|s| s.trim().to_string()),
        crm_lead_id: q.crm_lead_id.filter(|s| !s.is_empty()),
        created_after: time_param("created_after", q.created_after.as_deref())?,
        created_before: time_param("created_before", q.created_before.as_deref())?,
        custom: cairn_service::crm::custom_filters(&custom_query(raw.as_deref())),
    };
    let (rows, total) = st.svc.leads(&p, &filter, &sort, descending, page.limit(), page.offset()).await?;
    Ok(page.wrap(rows.into_iter().map(LeadView::from).collect(), total))
}

/// Create a lead (seed 004's body: first_name, last_name, email, phone, company_name, source,
/// form_type, raw_payload; also status, score, value, assigned_to, title, website, custom_fields).
#[utoipa::path(post, path = "/v1/leads", tag = "leads", request_body = Object, security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = Data<LeadView>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_lead(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<impl axum::response::IntoResponse> {
    Ok(created(data(LeadView::from(st.svc.create_lead(&p, body).await?))))
}

/// A lead with its activities, notes, linked customer profile (tracked events, scores),
/// contact, prospect and opportunity.
#[utoipa::path(get, path = "/v1/leads/{id}", tag = "leads", params(("id" = i64, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Object>), (status = 404, body = ErrorBody)))]
pub async fn get_lead(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<Value>>> {
    let detail = st.svc.lead(&p, id).await?;
    Ok(data(super::to_json(detail)?))
}

/// Update a lead: the fields given change, `null` clears one (status, assignment, score,
/// custom fields, …).
#[utoipa::path(put, path = "/v1/leads/{id}", tag = "leads", params(("id" = i64, Path)), request_body = Object,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<LeadView>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_lead(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Data<LeadView>>> {
    Ok(data(st.svc.update_lead(&p, id, body).await?.into()))
}

/// Delete a lead (and its activities, notes and files).
#[utoipa::path(delete, path = "/v1/leads/{id}", tag = "leads", params(("id" = i64, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Deleted>), (status = 404, body = ErrorBody)))]
pub async fn delete_lead(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<Deleted>>> {
    st.svc.delete_lead(&p, id).await?;
    Ok(data(Deleted { id, deleted: true }))
}

#[derive(Serialize, ToSchema)]
pub struct ConversionView {
    lead_id: i64,
    contact_id: Option<i64>,
    prospect_id: Option<i64>,
    opportunity_id: Option<i64>,
    /// Always `converted`.
    lead_status: String,
}

/// Convert a lead (seed 004): {create_contact, create_prospect, create_opportunity,
/// opportunity_name, opportunity_value} → the new ids and `lead_status: converted`.
#[utoipa::path(post, path = "/v1/leads/{id}/convert", tag = "leads", params(("id" = i64, Path)), request_body = Object,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<ConversionView>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn convert_lead(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty,
) -> ApiResult<Json<Data<ConversionView>>> {
    let c = st.svc.convert_lead(&p, id, body).await?;
    Ok(data(ConversionView {
        lead_id: c.lead_id,
        contact_id: c.contact_id,
        prospect_id: c.prospect_id,
        opportunity_id: c.opportunity_id,
        lead_status: c.lead_status,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ActivityPage {
    page: Option<u64>,
    per_page: Option<u64>,
    /// call, email, meeting, task or note.
    #[serde(rename = "type")]
    kind: Option<String>,
    completed: Option<bool>,
}

/// A lead's activity history, newest first.
#[utoipa::path(get, path = "/v1/leads/{id}/activities", tag = "leads", params(("id" = i64, Path), ActivityPage),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Paged<cairn_store::crm::records::Activity>), (status = 404, body = ErrorBody)))]
pub async fn lead_activities(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<ActivityPage>,
) -> ApiResult<Json<Paged<cairn_store::crm::records::Activity>>> {
    let page = PageQuery { page: q.page, per_page: q.per_page };
    let f = ActivityFilter {
        kind: q.kind,
        entity_type: Some(EntityType::Lead),
        entity_id: Some(id),
        completed: q.completed,
        ..Default::default()
    };
    let (rows, total) = st.svc.activities(&p, &f, page.limit(), page.offset()).await?;
    Ok(page.wrap(rows, total))
}

/// Log an activity against a lead (the body of `POST /v1/activities` without the entity).
#[utoipa::path(post, path = "/v1/leads/{id}/activities", tag = "leads", params(("id" = i64, Path)), request_body = Object,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = Data<cairn_store::crm::records::Activity>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn log_lead_activity(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<impl axum::response::IntoResponse> {
    let a = match st.svc.create_entity_activity(&p, EntityType::Lead, id, body).await {
        Err(cairn_service::ServiceError::Invalid(fe)) if fe.field == "entity_id" => {
            return Err(cairn_service::ServiceError::NotFound("lead").into())
        }
        r => r?,
    };
    Ok(created(data(a)))
}

//! Prospect accounts (seed 004; seed 001's clients): `GET/POST /v1/prospects`,
//! `GET/PUT/DELETE /v1/prospects/{id}`, `POST /v1/prospects/{id}/convert`.

use axum::{
    extract::{RawQuery, State},
    response::IntoResponse,
    Json,
};
use cairn_store::crm::prospects::{Prospect, ProspectFilter};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{custom_query, to_json, Deleted};
use crate::{
    envelope::{data, Data, PageQuery, Paged},
    error::{ApiError, ApiResult, ErrorBody},
    extract::{ApiJson, ApiPath, ApiQuery, Auth},
    routes::created,
    AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_prospects, create_prospect))
        .routes(routes!(get_prospect, update_prospect, delete_prospect))
        .routes(routes!(convert_prospect))
}

/// A prospect with seed 004's `prospect_id` and seed 001's client `number` (CL-0001).
#[derive(Serialize, ToSchema)]
pub struct ProspectView {
    prospect_id: i64,
    number: String,
    #[serde(flatten)]
    prospect: Prospect,
}

impl From<Prospect> for ProspectView {
    fn from(p: Prospect) -> Self {
        ProspectView { prospect_id: p.id, number: cairn_service::crm::number("CL", p.id), prospect: p }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProspectQuery {
    page: Option<u64>,
    per_page: Option<u64>,
    /// Part of the account name.
    search: Option<String>,
    /// active, inactive or converted.
    status: Option<String>,
    industry: Option<String>,
}

/// List prospect accounts.
#[utoipa::path(get, path = "/v1/prospects", tag = "prospects", params(ProspectQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Paged<ProspectView>), (status = 400, body = ErrorBody)))]
pub async fn list_prospects(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<ProspectQuery>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Paged<ProspectView>>> {
    let page = PageQuery { page: q.page, per_page: q.per_page };
    let status = match q.status.as_deref().map(str::to_lowercase) {
        None => None,
        Some(s) if s.is_empty() || s == "all" => None,
        Some(s) if cairn_service::crm::prospects::STATUSES.contains(&s.as_str()) => Some(s),
        Some(_) => return Err(ApiError::validation("status", "must be active, inactive or converted")),
    };
    let f = ProspectFilter {
        search: q.search.filter(|s| !s.trim().is_empty()).map(|s| s.trim().to_string()),
        status,
        industry: q.industry.filter(|s| !s.is_empty()),
        custom: cairn_service::crm::custom_filters(&custom_query(raw.as_deref())),
    };
    let (rows, total) = st.svc.prospects(&p, &f, page.limit(), page.offset()).await?;
    Ok(page.wrap(rows.into_iter().map(ProspectView::from).collect(), total))
}

/// Create a prospect account: name, industry, website, email, phone, tax_number, status,
/// assigned_to, custom_fields.
#[utoipa::path(post, path = "/v1/prospects", tag = "prospects", request_body = Object, security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = Data<ProspectView>), (status = 400, body = ErrorBody)))]
pub async fn create_prospect(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<impl IntoResponse> {
    Ok(created(data(ProspectView::from(st.svc.create_prospect(&p, body).await?))))
}

/// A prospect with its contacts, opportunities and activities.
#[utoipa::path(get, path = "/v1/prospects/{id}", tag = "prospects", params(("id" = i64, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Object>), (status = 404, body = ErrorBody)))]
pub async fn get_prospect(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<Value>>> {
    Ok(data(to_json(st.svc.prospect(&p, id).await?)?))
}

/// Update a prospect account.
#[utoipa::path(put, path = "/v1/prospects/{id}", tag = "prospects", params(("id" = i64, Path)), request_body = Object,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<ProspectView>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_prospect(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Data<ProspectView>>> {
    Ok(data(st.svc.update_prospect(&p, id, body).await?.into()))
}

/// Delete a prospect account (its people and opportunities stay, unlinked).
#[utoipa::path(delete, path = "/v1/prospects/{id}", tag = "prospects", params(("id" = i64, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Deleted>), (status = 404, body = ErrorBody)))]
pub async fn delete_prospect(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<Deleted>>> {
    st.svc.delete_prospect(&p, id).await?;
    Ok(data(Deleted { id, deleted: true }))
}

/// Convert to a customer company (status `converted`; its people become customers).
#[utoipa::path(post, path = "/v1/prospects/{id}/convert", tag = "prospects", params(("id" = i64, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<ProspectView>), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn convert_prospect(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<ProspectView>>> {
    Ok(data(st.svc.convert_prospect(&p, id).await?.into()))
}

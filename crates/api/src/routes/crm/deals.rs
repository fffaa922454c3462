//! Opportunities (seed 004), served also as `/v1/deals` (seeds 000 and 001), and pipelines:
//! `GET/POST /v1/opportunities`, `GET/PUT/DELETE /v1/opportunities/{id}`,
//! `POST /v1/opportunities/{id}/advance-stage|won|lost`, the same under `/v1/deals`, and
//! `GET/POST /v1/pipelines`, `GET/PUT/DELETE /v1/pipelines/{id}`, `GET /v1/pipelines/{id}/board`.

use axum::{
    extract::{RawQuery, State},
    response::IntoResponse,
    Json,
};
use cairn_store::crm::opportunities::{Opportunity, OpportunityFilter};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{custom_query, to_json, Deleted};
use crate::{
    envelope::{data, Data, PageQuery, Paged},
    error::{ApiError, ApiResult, ErrorBody},
    extract::{ApiJson, ApiJsonOrEmpty, ApiPath, ApiQuery, Auth},
    routes::created,
    AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_opportunities, create_opportunity))
        .routes(routes!(get_opportunity, update_opportunity, delete_opportunity))
        .routes(routes!(advance_stage))
        .routes(routes!(mark_won))
        .routes(routes!(mark_lost))
        .routes(routes!(list_deals, create_deal))
        .routes(routes!(get_deal, update_deal, delete_deal))
        .routes(routes!(advance_deal))
        .routes(routes!(list_pipelines, create_pipeline))
        .routes(routes!(get_pipeline, update_pipeline, delete_pipeline))
        .routes(routes!(pipeline_board))
}

/// An opportunity with seed 004's `opportunity_id` and seed 001's deal names (`title`,
/// `number` DL-0001, `price`, `expectedCloseDate`, `stageId`, `pipelineId`, `clientId`,
/// `leadId`, `ownerId`).
#[derive(Serialize, ToSchema)]
pub struct DealView {
    opportunity_id: i64,
    #[serde(flatten)]
    opportunity: Opportunity,
    number: String,
    title: String,
    price: f64,
    #[serde(rename = "expectedCloseDate")]
    expected_close_date_001: Option<String>,
    #[serde(rename = "stageId")]
    stage_id_001: i64,
    #[serde(rename = "pipelineId")]
    pipeline_id_001: i64,
    #[serde(rename = "clientId")]
    client_id: Option<i64>,
    #[serde(rename = "leadId")]
    lead_id_001: Option<i64>,
    #[serde(rename = "ownerId")]
    owner_id: Option<i64>,
}

impl From<Opportunity> for DealView {
    fn from(o: Opportunity) -> Self {
        DealView {
            opportunity_id: o.id,
            number: cairn_service::crm::number("DL", o.id),
            title: o.name.clone(),
            price: o.value,
            expected_close_date_001: o.expected_close_date.clone(),
            stage_id_001: o.stage_id,
            pipeline_id_001: o.pipeline_id,
            client_id: o.prospect_id,
            lead_id_001: o.lead_id,
            owner_id: o.assigned_to,
            opportunity: o,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OpportunityQuery {
    page: Option<u64>,
    per_page: Option<u64>,
    /// A stage key (`discovery`) or id.
    stage: Option<String>,
    /// open, won, lost or all (default).
    status: Option<String>,
    assigned_to: Option<i64>,
    prospect_id: Option<i64>,
    contact_id: Option<i64>,
    lead_id: Option<i64>,
    pipeline_id: Option<i64>,
    min_value: Option<f64>,
    max_value: Option<f64>,
    /// Part of the name.
    search: Option<String>,
}

async fn list(
    st: &AppState,
    p: &cairn_service::Principal,
    q: OpportunityQuery,
    raw: Option<String>,
) -> ApiResult<Json<Paged<DealView>>> {
    let page = PageQuery { page: q.page, per_page: q.per_page };
    let status = match q.status.as_deref().map(str::to_lowercase) {
        None => None,
        Some(s) if s == "all" || s.is_empty() => None,
        Some(s) if cairn_service::crm::opportunities::STATUSES.contains(&s.as_str()) => Some(s),
        Some(_) => return Err(ApiError::validation("status", "must be open, won, lost or all")),
    };
    let f = OpportunityFilter {
        stage: q.stage.filter(|s| !s.is_empty()),
        status,
        assigned_to: q.assigned_to,
        prospect_id: q.prospect_id,
        contact_id: q.contact_id,
        lead_id: q.lead_id,
        pipeline_id: q.pipeline_id,
        min_value: q.min_value,
        max_value: q.max_value,
        search: q.search.filter(|s| !s.trim().is_empty()),
        custom: cairn_service::crm::custom_filters(&custom_query(raw.as_deref())),
    };
    let (rows, total) = st.svc.opportunities(p, &f, page.limit(), page.offset()).await?;
    Ok(page.wrap(rows.into_iter().map(DealView::from).collect(), total))
}

async fn detail(st: &AppState, p: &cairn_service::Principal, id: i64) -> ApiResult<Json<Data<Value>>> {
    let d = st.svc.opportunity(p, id).await?;
    let mut v = to_json(DealView::from(d.opportunity.clone()))?;
    v["activities"] = to_json(&d.activities)?;
    v["notes"] = to_json(&d.notes)?;
    v["prospect"] = to_json(&d.prospect)?;
    v["contact"] = d.contact.clone().unwrap_or(Value::Null);
    Ok(data(v))
}

/// List opportunities (seed 004's filters; `custom_fields.<key>=value` too).
#[utoipa::path(get, path = "/v1/opportunities", tag = "opportunities", params(OpportunityQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Paged<DealView>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_opportunities(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<OpportunityQuery>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Paged<DealView>>> {
    list(&st, &p, q, raw).await
}

/// Create an opportunity (seed 004: name, prospect_id, stage, value, expected_close_date,
/// probability, assigned_to; also pipeline_id, contact_id, lead_id, priority, source, currency,
/// status, custom_fields; seed 001's title, price, expectedCloseDate, stageId, …).
#[utoipa::path(post, path = "/v1/opportunities", tag = "opportunities", request_body = Object, security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = Data<DealView>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_opportunity(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<impl IntoResponse> {
    Ok(created(data(DealView::from(st.svc.create_opportunity(&p, body).await?))))
}

/// An opportunity with its activities, notes, prospect and contact.
#[utoipa::path(get, path = "/v1/opportunities/{id}", tag = "opportunities", params(("id" = i64, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Object>), (status = 404, body = ErrorBody)))]
pub async fn get_opportunity(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<Value>>> {
    detail(&st, &p, id).await
}

/// Update an opportunity; `stage` moves it (`opportunity.stage_changed`), `status` won/lost
/// closes it with `close_reason` (`opportunity.won` / `opportunity.lost`), open reopens it.
#[utoipa::path(put, path = "/v1/opportunities/{id}", tag = "opportunities", params(("id" = i64, Path)), request_body = Object,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<DealView>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_opportunity(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Data<DealView>>> {
    Ok(data(st.svc.update_opportunity(&p, id, body).await?.into()))
}

/// Delete an opportunity.
#[utoipa::path(delete, path = "/v1/opportunities/{id}", tag = "opportunities", params(("id" = i64, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Deleted>), (status = 404, body = ErrorBody)))]
pub async fn delete_opportunity(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<Deleted>>> {
    st.svc.delete_opportunity(&p, id).await?;
    Ok(data(Deleted { id, deleted: true }))
}

/// Advance to the next stage of its pipeline (or `{"stage": "…"}`).
#[utoipa::path(post, path = "/v1/opportunities/{id}/advance-stage", tag = "opportunities", params(("id" = i64, Path)), request_body = Object,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<DealView>), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn advance_stage(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty,
) -> ApiResult<Json<Data<DealView>>> {
    Ok(data(st.svc.advance_opportunity(&p, id, body).await?.into()))
}

/// Mark won, with an optional `reason`.
#[utoipa::path(post, path = "/v1/opportunities/{id}/won", tag = "opportunities", params(("id" = i64, Path)), request_body = Object,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<DealView>), (status = 404, body = ErrorBody)))]
pub async fn mark_won(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty,
) -> ApiResult<Json<Data<DealView>>> {
    Ok(data(st.svc.close_opportunity(&p, id, "won", body).await?.into()))
}

/// Mark lost, with an optional `reason`.
#[utoipa::path(post, path = "/v1/opportunities/{id}/lost", tag = "opportunities", params(("id" = i64, Path)), request_body = Object,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<DealView>), (status = 404, body = ErrorBody)))]
pub async fn mark_lost(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty,
) -> ApiResult<Json<Data<DealView>>> {
    Ok(data(st.svc.close_opportunity(&p, id, "lost", body).await?.into()))
}

/// Seed 000's deals: the opportunities.
#[utoipa::path(get, path = "/v1/deals", tag = "deals", params(OpportunityQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Paged<DealView>), (status = 403, body = ErrorBody)))]
pub async fn list_deals(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<OpportunityQuery>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Paged<DealView>>> {
    list(&st, &p, q, raw).await
}

/// Create a deal (an opportunity; seed 001's `title`, `price`, `expectedCloseDate`, `priority`).
#[utoipa::path(post, path = "/v1/deals", tag = "deals", request_body = Object, security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = Data<DealView>), (status = 400, body = ErrorBody)))]
pub async fn create_deal(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<impl IntoResponse> {
    Ok(created(data(DealView::from(st.svc.create_opportunity(&p, body).await?))))
}

/// One deal.
#[utoipa::path(get, path = "/v1/deals/{id}", tag = "deals", params(("id" = i64, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Object>), (status = 404, body = ErrorBody)))]
pub async fn get_deal(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<Value>>> {
    detail(&st, &p, id).await
}

/// Update a deal.
#[utoipa::path(put, path = "/v1/deals/{id}", tag = "deals", params(("id" = i64, Path)), request_body = Object,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<DealView>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_deal(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Data<DealView>>> {
    Ok(data(st.svc.update_opportunity(&p, id, body).await?.into()))
}

/// Delete a deal.
#[utoipa::path(delete, path = "/v1/deals/{id}", tag = "deals", params(("id" = i64, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Deleted>), (status = 404, body = ErrorBody)))]
pub async fn delete_deal(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<Deleted>>> {
    st.svc.delete_opportunity(&p, id).await?;
    Ok(data(Deleted { id, deleted: true }))
}

/// Advance a deal to its pipeline's next stage.
#[utoipa::path(post, path = "/v1/deals/{id}/advance-stage", tag = "deals", params(("id" = i64, Path)), request_body = Object,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<DealView>), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn advance_deal(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty,
) -> ApiResult<Json<Data<DealView>>> {
    Ok(data(st.svc.advance_opportunity(&p, id, body).await?.into()))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PipelineQuery {
    /// deals (opportunity pipelines) or lifecycle (contact lifecycle stages).
    kind: Option<String>,
}

/// The workspace's pipelines with their stages (a default opportunity pipeline and contact
/// lifecycle exist from the first call).
#[utoipa::path(get, path = "/v1/pipelines", tag = "pipelines", params(PipelineQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Vec<Object>>)))]
pub async fn list_pipelines(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<PipelineQuery>,
) -> ApiResult<Json<Data<Value>>> {
    if q.kind.as_deref().is_some_and(|k| k != "deals" && k != "lifecycle") {
        return Err(ApiError::validation("kind", "must be deals or lifecycle"));
    }
    Ok(data(to_json(st.svc.pipelines(&p, q.kind.as_deref()).await?)?))
}

/// Create a pipeline: {name, kind?, is_default?, stages: [{name, key?, probability}]}.
#[utoipa::path(post, path = "/v1/pipelines", tag = "pipelines", request_body = Object, security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = Data<Object>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_pipeline(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<impl IntoResponse> {
    Ok(created(data(to_json(st.svc.create_pipeline(&p, body).await?)?)))
}

/// One pipeline with its stages.
#[utoipa::path(get, path = "/v1/pipelines/{id}", tag = "pipelines", params(("id" = i64, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Object>), (status = 404, body = ErrorBody)))]
pub async fn get_pipeline(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<Value>>> {
    Ok(data(to_json(st.svc.pipeline(&p, id).await?)?))
}

/// Rename, make default, or replace the stages (stages keep their ids; a stage left out must
/// have no opportunities).
#[utoipa::path(put, path = "/v1/pipelines/{id}", tag = "pipelines", params(("id" = i64, Path)), request_body = Object,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Object>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_pipeline(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Data<Value>>> {
    Ok(data(to_json(st.svc.update_pipeline(&p, id, body).await?)?))
}

/// Delete a pipeline without opportunities.
#[utoipa::path(delete, path = "/v1/pipelines/{id}", tag = "pipelines", params(("id" = i64, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Deleted>), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_pipeline(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<Deleted>>> {
    st.svc.delete_pipeline(&p, id).await?;
    Ok(data(Deleted { id, deleted: true }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BoardQuery {
    /// Opportunities shown per stage (default 50, at most 200).
    per_stage: Option<i64>,
}

/// The Kanban board: each stage with its open opportunities and totals (count, value,
/// probability-weighted value).
#[utoipa::path(get, path = "/v1/pipelines/{id}/board", tag = "pipelines", params(("id" = i64, Path), BoardQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Object>), (status = 404, body = ErrorBody)))]
pub async fn pipeline_board(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<BoardQuery>,
) -> ApiResult<Json<Data<Value>>> {
    let per_stage = q.per_stage.unwrap_or(50).clamp(1, 200);
    Ok(data(st.svc.board(&p, id, per_stage).await?))
}

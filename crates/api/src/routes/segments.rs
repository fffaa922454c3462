//! Segments (seed 003, docs/segments.md): `GET/POST /v1/segments`, `GET/PUT/DELETE
//! /v1/segments/{id}`, `GET /v1/segments/{id}/customers`, `POST /v1/segments/preview`, static
//! members (`POST/DELETE /v1/segments/{id}/members`, `POST /v1/segments/{id}/members/import`),
//! `GET /v1/segments/{id}/explain` and `GET /v1/customers/{id}/segments`.

use axum::{body::Bytes, extract::State, http::StatusCode, response::IntoResponse, Json};
use cairn_domain::CustomerId;
use cairn_segments::EvaluationProgress;
use cairn_service::segments::{SegmentInput, SegmentView as Segment};
use cairn_store::segments::Membership;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    envelope::{data, Data, PageQuery, Paged},
    error::{ApiError, ApiResult, ErrorBody},
    extract::{ApiJson, ApiPath, ApiQuery, Auth},
    routes::{created, customers::CustomerView},
    AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_segments, create_segment))
        .routes(routes!(preview))
        .routes(routes!(get_segment, update_segment, delete_segment))
        .routes(routes!(segment_customers))
        .routes(routes!(add_members, remove_members))
        .routes(routes!(import_members))
        .routes(routes!(explain))
        .routes(routes!(customer_segments))
}

/// Seed 003's segment body, plus `type` (`dynamic`, the default, or `static`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentWrite {
    #[schema(example = "High Value + Recent")]
    name: Option<String>,
    #[serde(default, deserialize_with = "crate::extract::present")]
    #[schema(value_type = Option<String>)]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::extract::present")]
    #[schema(value_type = Option<String>, example = "#6366f1")]
    color: Option<Option<String>>,
    #[serde(rename = "type")]
    kind: Option<String>,
    /// The filter (docs/segments.md): seed 003's flat keys or the general form.
    #[schema(value_type = Option<Object>, example = json!({"clv_total_min": 500, "last_purchase_days_max": 30}))]
    filters: Option<Value>,
}

impl From<SegmentWrite> for SegmentInput {
    fn from(w: SegmentWrite) -> Self {
        SegmentInput { name: w.name, description: w.description, color: w.color, kind: w.kind, filters: w.filters }
    }
}

#[derive(Serialize, ToSchema)]
pub struct EvaluationView {
    job_id: i64,
    /// `pending`, `running`, `done` or `failed`.
    status: String,
    /// `evaluating`, `writing`, `done`.
    phase: Option<String>,
    members: u64,
    /// Membership changes to write, and how many are written.
    changes: u64,
    written: u64,
    took_ms: Option<u64>,
    error: Option<String>,
    updated_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct SegmentView {
    id: i64,
    name: String,
    description: Option<String>,
    color: Option<String>,
    /// `dynamic` or `static`.
    #[serde(rename = "type")]
    kind: String,
    /// True for the RFM segments every workspace has.
    builtin: bool,
    #[schema(value_type = Option<Object>)]
    filters: Option<Value>,
    member_count: i64,
    /// Seed-style alias of `member_count`.
    customer_count: i64,
    /// The latest evaluation over every customer (queued on create and on a filter change).
    evaluation: Option<EvaluationView>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<Segment> for SegmentView {
    fn from(s: Segment) -> Self {
        let r = s.row;
        let evaluation = s.job.map(|j| {
            let p: EvaluationProgress =
                j.progress.as_deref().and_then(|p| serde_json::from_str(p).ok()).unwrap_or_default();
            EvaluationView {
                job_id: j.id,
                status: j.status,
                phase: (!p.phase.is_empty()).then_some(p.phase),
                members: p.members,
                changes: p.changes,
                written: p.written,
                took_ms: p.took_ms,
                error: j.last_error,
                updated_at: j.updated_at,
            }
        });
        SegmentView {
            id: r.id,
            name: r.name,
            description: r.description,
            color: r.color,
            kind: r.kind,
            builtin: r.builtin.is_some(),
            filters: r.filters.as_deref().and_then(|f| serde_json::from_str(f).ok()),
            member_count: r.member_count,
            customer_count: r.member_count,
            evaluation,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

pub fn membership_view(m: &Membership) -> Value {
    json!({
        "segment_id": m.segment_id,
        "segment_name": m.name,
        "type": m.kind,
        "builtin": m.builtin.is_some(),
        "since": m.since,
    })
}

/// Every segment of the workspace with its member count.
#[utoipa::path(get, path = "/v1/segments", tag = "segments",
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Vec<SegmentView>>), (status = 403, body = ErrorBody)))]
pub async fn list_segments(State(st): State<AppState>, Auth(p): Auth) -> ApiResult<Json<Data<Vec<SegmentView>>>> {
    Ok(data(st.svc.segments(&p).await?.into_iter().map(SegmentView::from).collect()))
}

/// Create a segment (seed 003's body). A dynamic segment is evaluated over every customer by a
/// job whose progress shows in `evaluation`.
#[utoipa::path(post, path = "/v1/segments", tag = "segments", request_body = SegmentWrite,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = Data<SegmentView>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_segment(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiJson(w): ApiJson<SegmentWrite>,
) -> ApiResult<impl IntoResponse> {
    Ok(created(data(SegmentView::from(st.svc.create_segment(&p, w.into()).await?))))
}

#[utoipa::path(get, path = "/v1/segments/{id}", tag = "segments", params(("id" = i64, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<SegmentView>), (status = 404, body = ErrorBody)))]
pub async fn get_segment(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<SegmentView>>> {
    Ok(data(st.svc.segment(&p, id).await?.into()))
}

/// Change a segment; absent fields stay. A new filter queues a new evaluation.
#[utoipa::path(put, path = "/v1/segments/{id}", tag = "segments", params(("id" = i64, Path)), request_body = SegmentWrite,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<SegmentView>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_segment(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(w): ApiJson<SegmentWrite>,
) -> ApiResult<Json<Data<SegmentView>>> {
    Ok(data(st.svc.update_segment(&p, id, w.into()).await?.into()))
}

#[utoipa::path(delete, path = "/v1/segments/{id}", tag = "segments", params(("id" = i64, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_segment(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    st.svc.delete_segment(&p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct MemberView {
    #[serde(flatten)]
    customer: CustomerView,
    /// Member since.
    member_since: DateTime<Utc>,
}

/// A segment's members, newest membership first.
#[utoipa::path(get, path = "/v1/segments/{id}/customers", tag = "segments", params(("id" = i64, Path), PageQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Paged<MemberView>), (status = 404, body = ErrorBody)))]
pub async fn segment_customers(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> ApiResult<Json<Paged<MemberView>>> {
    let (rows, total) = st.svc.segment_customers(&p, id, page.limit(), page.offset()).await?;
    let items = rows.into_iter().map(|(c, since)| MemberView { customer: c.into(), member_since: since }).collect();
    Ok(page.wrap(items, total))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    #[schema(value_type = Object)]
    filters: Option<Value>,
}

/// How many customers a filter matches now and the first 20, without saving anything.
#[utoipa::path(post, path = "/v1/segments/preview", tag = "segments", request_body = PreviewRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Object>), (status = 400, body = ErrorBody)))]
pub async fn preview(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiJson(r): ApiJson<PreviewRequest>,
) -> ApiResult<Json<Data<Value>>> {
    let filters = r.filters.ok_or_else(|| ApiError::validation("filters", "is required"))?;
    let started = std::time::Instant::now();
    let (count, first) = st.svc.preview_segment(&p, &filters).await?;
    let customers: Vec<CustomerView> = first.into_iter().map(CustomerView::from).collect();
    Ok(data(json!({
        "count": count,
        "customers": customers,
        "took_ms": started.elapsed().as_millis() as u64,
    })))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MembersRequest {
    customer_ids: Vec<i64>,
}

/// Add customers to a static segment (each real change emits `customer.segment_entered`).
#[utoipa::path(post, path = "/v1/segments/{id}/members", tag = "segments", params(("id" = i64, Path)), request_body = MembersRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Object>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn add_members(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(r): ApiJson<MembersRequest>,
) -> ApiResult<Json<Data<Value>>> {
    let n = st.svc.change_segment_members(&p, id, &r.customer_ids, true).await?;
    Ok(data(json!({"added": n})))
}

/// Remove customers from a static segment (each real change emits `customer.segment_exited`).
#[utoipa::path(delete, path = "/v1/segments/{id}/members", tag = "segments", params(("id" = i64, Path)), request_body = MembersRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Object>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove_members(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(r): ApiJson<MembersRequest>,
) -> ApiResult<Json<Data<Value>>> {
    let n = st.svc.change_segment_members(&p, id, &r.customer_ids, false).await?;
    Ok(data(json!({"removed": n})))
}

/// Add the customers a CSV names to a static segment: a header with a `customer_id` or an
/// `email` column, then one customer per row. Rows naming nobody are reported by line.
#[utoipa::path(post, path = "/v1/segments/{id}/members/import", tag = "segments", params(("id" = i64, Path)),
    request_body(content = String, content_type = "text/csv"),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Object>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn import_members(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    body: Bytes,
) -> ApiResult<Json<Data<Value>>> {
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::validation("file", "must be UTF-8 text"))?;
    let r = st.svc.import_segment_members(&p, id, text.trim_start_matches('\u{feff}')).await?;
    Ok(data(json!({"rows": r.rows, "added": r.added, "already_members": r.already, "not_found_lines": r.not_found})))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExplainQuery {
    customer_id: Option<i64>,
}

/// Which conditions held or failed for a customer, with the values seen.
#[utoipa::path(get, path = "/v1/segments/{id}/explain", tag = "segments", params(("id" = i64, Path), ExplainQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Object>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn explain(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<ExplainQuery>,
) -> ApiResult<Json<Data<Value>>> {
    let customer = q.customer_id.ok_or_else(|| ApiError::validation("customer_id", "is required"))?;
    let (stored, tree) = st.svc.explain_segment(&p, id, CustomerId(customer)).await?;
    let matches = tree.get("held").and_then(Value::as_bool).unwrap_or(false);
    Ok(data(json!({
        "segment_id": id,
        "customer_id": customer,
        "matches": matches,
        "member": stored,
        "conditions": tree,
    })))
}

/// A customer's segments, with since when.
#[utoipa::path(get, path = "/v1/customers/{id}/segments", tag = "segments", params(("id" = i64, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Vec<Object>>), (status = 404, body = ErrorBody)))]
pub async fn customer_segments(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<Vec<Value>>>> {
    Ok(data(st.svc.customer_segments(&p, CustomerId(id)).await?.iter().map(membership_view).collect()))
}

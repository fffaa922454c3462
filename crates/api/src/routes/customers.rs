//! Customers (seed 003): `GET/POST /v1/customers`, `GET/PUT/DELETE /v1/customers/{id}`,
//! `GET /v1/customers/{id}/events`, with each profile's RFM and CLV scores (docs/scoring.md).
//! The detail view lists the customer's segments (docs/segments.md).

use std::collections::BTreeMap;

use axum::{extract::State, response::IntoResponse, Json};
use cairn_domain::CustomerId;
use cairn_events::{Event, EventFilter};
use cairn_service::customers::{CustomerDetail, CustomerPatch};
use cairn_store::{
    customers::{Customer, CustomerFilter, CustomerSort},
    scores::ScoreRow,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
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
        .routes(routes!(list_customers, create_customer))
        .routes(routes!(get_customer, update_customer, delete_customer))
        .routes(routes!(customer_events))
}

/// Distinguishes an absent field (leave it) from `null` (clear it).
/// Seed 003's customer body. On `PUT`, absent fields stay as they are and `null` clears one;
/// `traits` merge key by key (a `null` value removes the key).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerWrite {
    #[serde(default, deserialize_with = "crate::extract::present")]
    #[schema(value_type = Option<String>, example = "marko@example.com")]
    email: Option<Option<String>>,
    /// The customer's id in your own system (Segment's `userId`).
    #[serde(default, deserialize_with = "crate::extract::present")]
    #[schema(value_type = Option<String>)]
    user_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::extract::present")]
    #[schema(value_type = Option<String>, example = "Marko Horvatić")]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::extract::present")]
    #[schema(value_type = Option<String>, example = "+385921234567")]
    phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::extract::present")]
    #[schema(value_type = Option<String>, example = "Zagreb")]
    city: Option<Option<String>>,
    /// ISO 3166-1 alpha-2.
    #[serde(default, deserialize_with = "crate::extract::present")]
    #[schema(value_type = Option<String>, example = "HR")]
    country: Option<Option<String>>,
    /// Custom traits (a JSON object, at most 32 KB).
    #[schema(value_type = Option<Object>)]
    traits: Option<Value>,
}

impl From<CustomerWrite> for CustomerPatch {
    fn from(w: CustomerWrite) -> Self {
        CustomerPatch {
            email: w.email,
            user_id: w.user_id,
            name: w.name,
            phone: w.phone,
            city: w.city,
            country: w.country,
            traits: w.traits,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CustomerView {
    id: CustomerId,
    email: Option<String>,
    user_id: Option<String>,
    name: Option<String>,
    phone: Option<String>,
    city: Option<String>,
    country: Option<String>,
    #[schema(value_type = Object)]
    traits: Value,
    first_seen_at: Option<DateTime<Utc>>,
    last_seen_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// R, F and M scores (1–5, 5 best); null without a purchase.
    rfm_recency: Option<i64>,
    rfm_frequency: Option<i64>,
    rfm_monetary: Option<i64>,
    /// R + F + M (3–15).
    rfm_score: Option<i64>,
    /// Champions (13–15), Loyal Customers (9–12), At Risk (5–8), Lost (3–4).
    rfm_segment: Option<String>,
    /// Net spend: purchases minus refunds (0 without a purchase).
    clv_total: f64,
    /// Purchases.
    clv_order_count: i64,
    /// Gross purchase amount / purchases.
    clv_average_order: Option<f64>,
    /// Expected spend over the configured horizon (12 months by default).
    clv_predicted: Option<f64>,
    /// The probability that the customer is still active (BG/NBD); null with the simple method.
    p_alive: Option<f64>,
    /// `bgnbd_gamma_gamma` or `simple`: what produced `clv_predicted`.
    clv_method: Option<String>,
    last_purchase_at: Option<DateTime<Utc>>,
}

impl From<Customer> for CustomerView {
    fn from(c: Customer) -> Self {
        CustomerView::from((c, None))
    }
}

impl From<(Customer, Option<ScoreRow>)> for CustomerView {
    fn from((c, s): (Customer, Option<ScoreRow>)) -> Self {
        CustomerView {
            id: c.id,
            email: c.email,
            user_id: c.external_id,
            name: c.name,
            phone: c.phone,
            city: c.city,
            country: c.country,
            traits: c.traits,
            first_seen_at: c.first_seen_at,
            last_seen_at: c.last_seen_at,
            created_at: c.created_at,
            updated_at: c.updated_at,
            rfm_recency: s.as_ref().map(|s| s.rfm_recency),
            rfm_frequency: s.as_ref().map(|s| s.rfm_frequency),
            rfm_monetary: s.as_ref().map(|s| s.rfm_monetary),
            rfm_score: s.as_ref().map(|s| s.rfm_score),
            rfm_segment: s.as_ref().map(|s| s.rfm_segment.clone()),
            clv_total: s.as_ref().map_or(0.0, |s| s.clv_total),
            clv_order_count: s.as_ref().map_or(0, |s| s.clv_order_count),
            clv_average_order: s.as_ref().map(|s| s.clv_average_order),
            clv_predicted: s.as_ref().map(|s| s.clv_predicted),
            p_alive: s.as_ref().and_then(|s| s.p_alive),
            clv_method: s.as_ref().map(|s| s.clv_method.clone()),
            last_purchase_at: s.as_ref().map(|s| s.last_purchase_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CustomerDetailView {
    #[serde(flatten)]
    customer: CustomerView,
    /// Events by name.
    event_counts: BTreeMap<String, u64>,
    events_total: u64,
    /// Segment memberships with since when.
    #[schema(value_type = Vec<Object>)]
    segments: Vec<Value>,
}

impl From<CustomerDetail> for CustomerDetailView {
    fn from(d: CustomerDetail) -> Self {
        let events_total = d.event_counts.iter().map(|(_, n)| n).sum();
        CustomerDetailView {
            customer: (d.customer, d.scores).into(),
            event_counts: d.event_counts.into_iter().collect(),
            events_total,
            segments: d.segments.iter().map(crate::routes::segments::membership_view).collect(),
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    page: Option<u64>,
    per_page: Option<u64>,
    /// Matches part of the name or email, case-insensitively.
    search: Option<String>,
    /// `-created_at` (default), `created_at`, `name`, `-name`, `email`, `-email`,
    /// `-last_seen_at`, `last_seen_at`, `-clv_total`, `clv_total`, `-clv_predicted`,
    /// `clv_predicted`, `-rfm_score`, `rfm_score`.
    sort: Option<String>,
    /// Members of this segment (seed 003).
    segment_id: Option<i64>,
    /// Customers in this RFM segment: Champions, Loyal Customers, At Risk, Lost.
    rfm_segment: Option<String>,
    /// Net spend at least this (customers without purchases have spent 0).
    clv_total_min: Option<f64>,
    /// Net spend at most this.
    clv_total_max: Option<f64>,
    /// `exact` (default): `pagination.total` counts every match. `none`: no count — for a
    /// search being typed over a large workspace — and `total` is the rows through this page,
    /// plus one when another page follows.
    count: Option<String>,
}

/// Customer profiles, newest first unless `sort` says otherwise.
#[utoipa::path(get, path = "/v1/customers", tag = "customers", params(ListQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Paged<CustomerView>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_customers(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Paged<CustomerView>>> {
    let sort = match q.sort.as_deref() {
        None => CustomerSort::default(),
        Some(s) => CustomerSort::parse(s).ok_or_else(|| {
            ApiError::validation(
                "sort",
                "must be one of created_at, name, email, last_seen_at, clv_total, clv_predicted, rfm_score, \
                 optionally with a leading -",
            )
        })?,
    };
    let skip_count = match q.count.as_deref() {
        None | Some("exact") => false,
        Some("none") => true,
        Some(_) => return Err(ApiError::validation("count", "must be exact or none")),
    };
    let page = PageQuery { page: q.page, per_page: q.per_page };
    let filter = CustomerFilter {
        skip_count,
        search: q.search.as_deref(),
        rfm_segment: q.rfm_segment.as_deref(),
        clv_total_min: q.clv_total_min,
        clv_total_max: q.clv_total_max,
        segment_id: q.segment_id,
    };
    let (rows, total) = st.svc.customers(&p, filter, sort, page.limit(), page.offset()).await?;
    Ok(page.wrap(rows.into_iter().map(CustomerView::from).collect(), total))
}

/// Create a customer (seed 003's body). Emits `customer.created`.
#[utoipa::path(post, path = "/v1/customers", tag = "customers", request_body = CustomerWrite,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = Data<CustomerView>), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_customer(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiJson(w): ApiJson<CustomerWrite>,
) -> ApiResult<impl IntoResponse> {
    let c = st.svc.create_customer(&p, w.into()).await?;
    Ok(created(data(CustomerView::from(c))))
}

/// A customer's profile, traits, first and last seen, event counts.
#[utoipa::path(get, path = "/v1/customers/{id}", tag = "customers", params(("id" = i64, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<CustomerDetailView>), (status = 404, body = ErrorBody)))]
pub async fn get_customer(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<CustomerDetailView>>> {
    Ok(data(st.svc.customer(&p, CustomerId(id)).await?.into()))
}

/// Change a customer: fields given are set (`null` clears), others stay; traits merge.
#[utoipa::path(put, path = "/v1/customers/{id}", tag = "customers", params(("id" = i64, Path)), request_body = CustomerWrite,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<CustomerView>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn update_customer(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(w): ApiJson<CustomerWrite>,
) -> ApiResult<Json<Data<CustomerView>>> {
    Ok(data(st.svc.update_customer(&p, CustomerId(id), w.into()).await?.into()))
}

#[derive(Serialize, ToSchema)]
pub struct Erased {
    id: i64,
    erased: bool,
}

/// Erase a customer: the profile and every event of it, in both stores (right to erasure).
#[utoipa::path(delete, path = "/v1/customers/{id}", tag = "customers", params(("id" = i64, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Erased>), (status = 404, body = ErrorBody)))]
pub async fn delete_customer(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<Erased>>> {
    st.svc.erase_customer(&p, CustomerId(id)).await?;
    Ok(data(Erased { id, erased: true }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    page: Option<u64>,
    per_page: Option<u64>,
    /// Only events of this name.
    event: Option<String>,
    /// From this time (RFC 3339, inclusive).
    from: Option<String>,
    /// Until this time (RFC 3339, exclusive).
    to: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct EventView {
    message_id: String,
    /// `track`, `identify`, `page`, …
    #[serde(rename = "type")]
    kind: String,
    event: String,
    #[schema(value_type = Object)]
    properties: Value,
    #[schema(value_type = Object)]
    context: Value,
    anonymous_id: Option<String>,
    user_id: Option<String>,
    timestamp: DateTime<Utc>,
    sent_at: Option<DateTime<Utc>>,
    received_at: DateTime<Utc>,
}

impl From<Event> for EventView {
    fn from(e: Event) -> Self {
        EventView {
            message_id: e.message_id,
            kind: e.kind,
            event: e.name,
            properties: e.properties,
            context: e.context,
            anonymous_id: e.anonymous_id,
            user_id: e.user_id,
            timestamp: e.timestamp,
            sent_at: e.sent_at,
            received_at: e.received_at,
        }
    }
}

fn time_param(field: &str, v: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    v.map(|s| {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| ApiError::validation(field, "must be an RFC 3339 time such as 2026-03-16T10:00:00Z"))
    })
    .transpose()
}

/// A customer's events, newest first.
#[utoipa::path(get, path = "/v1/customers/{id}/events", tag = "customers", params(("id" = i64, Path), EventsQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Paged<EventView>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn customer_events(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> ApiResult<Json<Paged<EventView>>> {
    let filter = EventFilter {
        name: q.event.filter(|e| !e.is_empty()),
        from: time_param("from", q.from.as_deref())?,
        to: time_param("to", q.to.as_deref())?,
    };
    let page = PageQuery { page: q.page, per_page: q.per_page };
    let (events, total) =
        st.svc.customer_events(&p, CustomerId(id), &filter, page.limit() as u64, page.offset() as u64).await?;
    Ok(page.wrap(events.into_iter().map(EventView::from).collect(), total as i64))
}

//! Scoring (docs/scoring.md): `POST /v1/scoring/recompute`, `GET /v1/scoring/jobs/{id}`,
//! `GET /v1/analytics/clv/model`, `GET /v1/analytics/rfm`, `GET /v1/customers/{id}/scores/explain`.

use axum::{body::Bytes, extract::State, http::StatusCode, response::IntoResponse, Json};
use cairn_domain::CustomerId;
use cairn_scoring::{rfm::SEGMENTS, Model, Progress};
use cairn_store::jobs::Job;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    envelope::{data, Data},
    error::{ApiResult, ErrorBody},
    extract::{parse_json, ApiPath, Auth},
    AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(recompute))
        .routes(routes!(scoring_job))
        .routes(routes!(clv_model))
        .routes(routes!(rfm_grid))
        .routes(routes!(explain))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RecomputeRequest {
    /// Refit the CLV models as well as the RFM cut points (default true).
    fit: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct ScoringJobView {
    id: i64,
    /// `pending`, `running`, `done` or `failed`.
    status: String,
    /// `summarising`, `fitting`, `scoring`, `done`.
    phase: Option<String>,
    /// Customers with purchases to score, and how many are done.
    customers: u64,
    scored: u64,
    /// Customers whose stored scores changed.
    changed: u64,
    method: Option<String>,
    took_ms: Option<u64>,
    attempts: i32,
    error: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<Job> for ScoringJobView {
    fn from(j: Job) -> Self {
        let p: Progress = j.progress.as_deref().and_then(|p| serde_json::from_str(p).ok()).unwrap_or_default();
        ScoringJobView {
            id: j.id,
            status: j.status,
            phase: (!p.phase.is_empty()).then_some(p.phase),
            customers: p.customers,
            scored: p.scored,
            changed: p.changed,
            method: p.method,
            took_ms: p.took_ms,
            attempts: j.attempts,
            error: j.last_error,
            created_at: j.created_at,
            updated_at: j.updated_at,
        }
    }
}

/// Recompute every customer's scores now: fresh RFM cut points and, unless `fit` is false,
/// refitted CLV models. Returns the job to follow.
#[utoipa::path(post, path = "/v1/scoring/recompute", tag = "scoring", request_body(content = Option<RecomputeRequest>),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 202, body = Data<ScoringJobView>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn recompute(State(st): State<AppState>, Auth(p): Auth, body: Bytes) -> ApiResult<impl IntoResponse> {
    let r: RecomputeRequest =
        if body.iter().all(u8::is_ascii_whitespace) { RecomputeRequest::default() } else { parse_json(&body)? };
    let job = st.svc.request_recompute(&p, r.fit.unwrap_or(true)).await?;
    Ok((StatusCode::ACCEPTED, data(ScoringJobView::from(job))))
}

/// A recompute job: its progress and outcome.
#[utoipa::path(get, path = "/v1/scoring/jobs/{id}", tag = "scoring", params(("id" = i64, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<ScoringJobView>), (status = 404, body = ErrorBody)))]
pub async fn scoring_job(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<ScoringJobView>>> {
    Ok(data(st.svc.scoring_job(&p, id).await?.into()))
}

fn model_view(m: Option<&Model>) -> Value {
    match m {
        None => json!({
            "method": null, "fitted_at": null, "customers": 0, "bgnbd": null, "gamma_gamma": null,
            "time_unit": "weeks", "horizon_months": null,
        }),
        Some(m) => json!({
            "method": m.method.as_str(),
            "fitted_at": m.fitted_at,
            "customers": m.customers,
            "bgnbd": m.bgnbd,
            "gamma_gamma": m.gamma_gamma,
            "time_unit": "weeks",
            "horizon_months": m.horizon_months,
        }),
    }
}

/// The workspace's fitted CLV models: BG/NBD (r, alpha, a, b; time in weeks) and Gamma-Gamma
/// (p, q, gamma), or `method: "simple"` when there was too little data to fit.
#[utoipa::path(get, path = "/v1/analytics/clv/model", tag = "scoring",
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Object>), (status = 403, body = ErrorBody)))]
pub async fn clv_model(State(st): State<AppState>, Auth(p): Auth) -> ApiResult<Json<Data<Value>>> {
    let model = st.svc.scoring_model(&p).await?;
    Ok(data(model_view(model.as_ref())))
}

/// The R×F grid (customers per recency and frequency score) and the size of each named segment.
#[utoipa::path(get, path = "/v1/analytics/rfm", tag = "scoring",
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Object>), (status = 403, body = ErrorBody)))]
pub async fn rfm_grid(State(st): State<AppState>, Auth(p): Auth) -> ApiResult<Json<Data<Value>>> {
    let (counts, model) = st.svc.rfm_counts(&p).await?;
    let mut grid = vec![vec![0i64; 5]; 5];
    for (r, f, n) in &counts.cells {
        if (1..=5).contains(r) && (1..=5).contains(f) {
            grid[(*r - 1) as usize][(*f - 1) as usize] = *n;
        }
    }
    let cells: Vec<Value> =
        counts.cells.iter().map(|(r, f, n)| json!({"recency": r, "frequency": f, "customers": n})).collect();
    let segments: Vec<Value> = SEGMENTS
        .iter()
        .map(|name| {
            let n = counts.segments.iter().find(|(s, _)| s == name).map_or(0, |(_, n)| *n);
            json!({"segment": name, "customers": n})
        })
        .collect();
    Ok(data(json!({
        "scored": counts.scored,
        "grid": grid,
        "cells": cells,
        "segments": segments,
        "boundaries": model.as_ref().map(|m| &m.boundaries),
        "boundaries_at": model.as_ref().and_then(|m| m.boundaries_at),
    })))
}

/// Everything behind one customer's scores: the recency, frequency and monetary inputs, the
/// cut points they were scored against, the BG/NBD inputs (x, t_x, T in weeks), the model
/// parameters and the method.
#[utoipa::path(get, path = "/v1/customers/{id}/scores/explain", tag = "scoring", params(("id" = i64, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Object>), (status = 404, body = ErrorBody)))]
pub async fn explain(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<Value>>> {
    let e = st.svc.explain_scores(&p, CustomerId(id)).await?;
    let model = e.model.as_ref();
    let Some(s) = e.scores else {
        return Ok(data(json!({
            "customer_id": id,
            "scored": false,
            "reason": "no purchase yet: RFM and CLV need at least one purchase event with an amount",
            "time_zone": e.time_zone,
            "model": model_view(model),
        })));
    };
    let b = model.map(|m| &m.boundaries);
    let to_date = |day: i64| chrono::NaiveDate::default() + chrono::Duration::days(day);
    let x = (s.transactions - 1).max(0);
    let weeks = |days: i64| days as f64 / 7.0;
    Ok(data(json!({
        "customer_id": id,
        "scored": true,
        "time_zone": e.time_zone,
        "today": to_date(e.today),
        "recency": {
            "days_since_last_purchase": e.today - s.last_purchase_day,
            "last_purchase_date": to_date(s.last_purchase_day),
            "last_purchase_at": s.last_purchase_at,
            "score": s.rfm_recency,
            "boundaries_last_purchase_date": b.map(|b| b.last_purchase_day.iter().map(|d| to_date(*d as i64)).collect::<Vec<_>>()),
            "rule": "1 + the number of cut points the last purchase date is later than",
        },
        "frequency": {
            "purchases": s.clv_order_count,
            "score": s.rfm_frequency,
            "boundaries": b.map(|b| &b.frequency),
            "rule": "1 + the number of cut points the purchase count exceeds",
        },
        "monetary": {
            "gross": s.gross,
            "refunds": s.refunds,
            "net": s.clv_total,
            "score": s.rfm_monetary,
            "boundaries": b.map(|b| &b.monetary),
            "rule": "1 + the number of cut points the net spend exceeds",
        },
        "rfm_score": s.rfm_score,
        "rfm_segment": s.rfm_segment,
        "scored_against": b.map(|b| b.customers),
        "clv": {
            "total": s.clv_total,
            "order_count": s.clv_order_count,
            "average_order": s.clv_average_order,
            "predicted": s.clv_predicted,
            "p_alive": s.p_alive,
            "method": s.clv_method,
            "inputs": {
                "transactions": s.transactions,
                "x": x,
                "t_x_weeks": weeks(s.last_purchase_day - s.first_purchase_day),
                "T_weeks": weeks(e.today - s.first_purchase_day),
                "repeat_average_value": if x > 0 { Some((s.gross - s.first_day_gross) / x as f64) } else { None },
                "first_purchase_date": to_date(s.first_purchase_day),
            },
        },
        "model": model_view(model),
    })))
}

//! Recent API requests per key, for debugging an integration (seed 000: "Review API/Webhook
//! logs to debug"). Method, path, status, latency and time — never bodies or query strings.

use axum::{extract::State, Json};
use cairn_domain::ApiKeyId;
use cairn_store::api_logs::{ApiLogFilter, ApiLogRow};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    envelope::{PageQuery, Paged},
    error::{ApiError, ApiResult, ErrorBody},
    extract::{ApiQuery, Auth},
    AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_api_logs))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    page: Option<u64>,
    per_page: Option<u64>,
    /// Only requests made with this key.
    api_key_id: Option<i64>,
    /// `2xx`, `4xx`, `5xx`, or an exact status such as `429`.
    status: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ApiLogView {
    id: i64,
    api_key_id: Option<i64>,
    user_id: Option<i64>,
    method: String,
    path: String,
    status: i32,
    latency_ms: f64,
    created_at: DateTime<Utc>,
}

impl From<ApiLogRow> for ApiLogView {
    fn from(r: ApiLogRow) -> Self {
        ApiLogView {
            id: r.id,
            api_key_id: r.api_key_id,
            user_id: r.user_id,
            method: r.method,
            path: r.path,
            status: r.status,
            latency_ms: r.latency_ms,
            created_at: r.created_at,
        }
    }
}

fn status_range(s: &str) -> Result<(i32, i32), ApiError> {
    let bad = || ApiError::validation("status", "must be 2xx, 3xx, 4xx, 5xx or a status code such as 429");
    if let Some(class) = s.strip_suffix("xx") {
        let c: i32 = class.parse().map_err(|_| bad())?;
        if !(1..=5).contains(&c) {
            return Err(bad());
        }
        return Ok((c * 100, c * 100 + 99));
    }
    let code: i32 = s.parse().map_err(|_| bad())?;
    if !(100..=599).contains(&code) {
        return Err(bad());
    }
    Ok((code, code))
}

/// Recent requests, newest first (kept 7 days).
#[utoipa::path(get, path = "/v1/api-logs", tag = "api keys", params(LogQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Paged<ApiLogView>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_api_logs(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> ApiResult<Json<Paged<ApiLogView>>> {
    let page = PageQuery { page: q.page, per_page: q.per_page };
    let (status_min, status_max) = match q.status.as_deref() {
        Some(s) => status_range(s).map(|(a, b)| (Some(a), Some(b)))?,
        None => (None, None),
    };
    let filter = ApiLogFilter { api_key_id: q.api_key_id.map(ApiKeyId), status_min, status_max };
    let (rows, total) = st.svc.api_logs(&p, &filter, page.limit(), page.offset()).await?;
    Ok(page.wrap(rows.into_iter().map(ApiLogView::from).collect(), total))
}

//! The settable clock, for tests and demos. Routed only when the server started with
//! `CAIRN_TEST_CLOCK=1`; otherwise these paths do not exist (404). Workspace owners only —
//! though the clock is server-wide, since delays and schedules of every workspace follow it.

use axum::{extract::State, Json};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    envelope::{data, Data},
    error::{ApiError, ApiResult, ErrorBody},
    extract::{ApiJson, Auth},
    AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_clock, set_clock))
}

#[derive(Serialize, ToSchema)]
pub struct ClockView {
    now: DateTime<Utc>,
}

fn require_owner(p: &cairn_service::Principal) -> Result<(), ApiError> {
    if p.role() == Some(cairn_domain::Role::Owner) {
        Ok(())
    } else {
        Err(ApiError::forbidden("only a workspace owner, signed in, may read or move the test clock"))
    }
}

/// The clock's current time.
#[utoipa::path(get, path = "/v1/test/clock", tag = "test", security(("bearer" = [])),
    responses((status = 200, body = Data<ClockView>), (status = 403, body = ErrorBody)))]
pub async fn get_clock(State(st): State<AppState>, Auth(p): Auth) -> ApiResult<Json<Data<ClockView>>> {
    require_owner(&p)?;
    Ok(data(ClockView { now: st.svc.clock.now() }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetClockRequest {
    /// Freeze the clock at this instant (RFC 3339).
    set: Option<String>,
    /// Move the clock by this many seconds (negative moves it back).
    advance_seconds: Option<i64>,
}

/// Set or advance the clock. A set clock stays frozen until set or advanced again.
#[utoipa::path(post, path = "/v1/test/clock", tag = "test", request_body = SetClockRequest, security(("bearer" = [])),
    responses((status = 200, body = Data<ClockView>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn set_clock(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiJson(r): ApiJson<SetClockRequest>,
) -> ApiResult<Json<Data<ClockView>>> {
    require_owner(&p)?;
    match (r.set, r.advance_seconds) {
        (Some(s), None) => {
            let at = DateTime::parse_from_rfc3339(&s)
                .map_err(|_| ApiError::validation("set", "must be an RFC 3339 time such as 1997-09-30T00:00:00Z"))?;
            st.svc.clock.set(at.with_timezone(&Utc));
        }
        (None, Some(n)) => {
            if n.unsigned_abs() > 100 * 365 * 86_400 {
                return Err(ApiError::validation("advance_seconds", "must be within a hundred years"));
            }
            st.svc.clock.advance(Duration::seconds(n));
        }
        _ => return Err(ApiError::bad_request("give exactly one of \"set\" or \"advance_seconds\"")),
    }
    tracing::info!("test clock moved");
    Ok(data(ClockView { now: st.svc.clock.now() }))
}

//! The caller's workspace.

use axum::{extract::State, Json};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use cairn_store::notifications::Notification;

use crate::{
    envelope::{data, Data, PageQuery, Paged},
    error::{ApiResult, ErrorBody},
    extract::{ApiJson, ApiQuery, Auth},
    routes::auth::TenantView,
    AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_workspace, update_workspace)).routes(routes!(notifications))
}

/// Notices for the workspace's owners, newest first — a webhook endpoint disabled, with whether
/// the owners were emailed (`status` sent, pending, or unsent with `last_error`).
#[utoipa::path(get, path = "/v1/notifications", tag = "workspace", params(PageQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Paged<Notification>), (status = 403, body = ErrorBody)))]
pub async fn notifications(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Paged<Notification>>> {
    let (rows, total) = st.svc.notifications(&p, q.limit(), q.offset()).await?;
    Ok(q.wrap(rows, total))
}

/// The workspace the credential belongs to.
#[utoipa::path(get, path = "/v1/workspace", tag = "workspace", security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<TenantView>), (status = 401, body = ErrorBody)))]
pub async fn get_workspace(State(st): State<AppState>, Auth(p): Auth) -> ApiResult<Json<Data<TenantView>>> {
    p.require_private()?;
    Ok(data(st.svc.tenant(p.tenant_id).await?.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWorkspaceRequest {
    name: Option<String>,
    /// An IANA time zone name (`UTC`, `Europe/Zagreb`): scoring counts calendar days in it.
    time_zone: Option<String>,
}

/// Rename the workspace or set its time zone (`settings:manage`).
#[utoipa::path(put, path = "/v1/workspace", tag = "workspace", request_body = UpdateWorkspaceRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<TenantView>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn update_workspace(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiJson(r): ApiJson<UpdateWorkspaceRequest>,
) -> ApiResult<Json<Data<TenantView>>> {
    Ok(data(st.svc.update_workspace(&p, r.name.as_deref(), r.time_zone.as_deref()).await?.into()))
}

//! Sign-up, sign-in, the caller's identity, sign-out, and joining by invitation.
//! Login answers seed 003's `{token, user, tenant}` without the envelope (the seed wins
//! there, DESIGN.md); register and accept-invitation answer the same way.

use axum::{extract::State, response::IntoResponse, Json};
use cairn_domain::{Role, TenantId, UserId};
use cairn_service::{
    accounts::{Registration, SignedIn},
    Actor,
};
use cairn_store::{tenants::Tenant, users::User};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    envelope::{data, Data},
    error::{ApiResult, ErrorBody},
    extract::{ApiJson, Auth},
    routes::created,
    AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(me))
        .routes(routes!(logout))
        .routes(routes!(accept_invitation))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    #[schema(example = "you@company.com")]
    email: String,
    /// At least 8 characters.
    password: String,
    #[schema(example = "Ana Kovač")]
    name: String,
    /// The new workspace's name.
    #[schema(example = "Acme")]
    workspace: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    email: String,
    password: String,
    /// Which workspace to sign in to (id or slug), for people in several. Default: the first.
    workspace: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct UserView {
    pub id: UserId,
    pub email: String,
    pub name: String,
    /// Role in the signed-in workspace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    pub created_at: DateTime<Utc>,
}

impl UserView {
    pub fn new(u: User, role: Option<Role>) -> UserView {
        UserView { id: u.id, email: u.email, name: u.name, role, created_at: u.created_at }
    }
}

#[derive(Serialize, ToSchema)]
pub struct TenantView {
    pub id: TenantId,
    pub name: String,
    pub slug: String,
    pub time_zone: String,
    pub created_at: DateTime<Utc>,
}

impl From<Tenant> for TenantView {
    fn from(t: Tenant) -> Self {
        TenantView { id: t.id, name: t.name, slug: t.slug, time_zone: t.time_zone, created_at: t.created_at }
    }
}

/// Seed 003's login answer.
#[derive(Serialize, ToSchema)]
pub struct LoginResponse {
    /// The Bearer token for later requests.
    token: String,
    expires_at: DateTime<Utc>,
    user: UserView,
    tenant: TenantView,
}

impl From<SignedIn> for LoginResponse {
    fn from(s: SignedIn) -> Self {
        LoginResponse {
            token: s.token,
            expires_at: s.expires_at,
            user: UserView::new(s.user, Some(s.role)),
            tenant: s.tenant.into(),
        }
    }
}

/// Create a workspace and its owner; answers like login.
#[utoipa::path(post, path = "/v1/auth/register", tag = "auth", request_body = RegisterRequest,
    responses((status = 201, body = LoginResponse), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 403, description = "registration is closed", body = ErrorBody)))]
pub async fn register(
    State(st): State<AppState>,
    ApiJson(r): ApiJson<RegisterRequest>,
) -> ApiResult<impl IntoResponse> {
    let signed_in = st
        .svc
        .register(Registration { email: &r.email, password: &r.password, name: &r.name, workspace: &r.workspace })
        .await?;
    Ok(created(Json(LoginResponse::from(signed_in))))
}

/// Sign in with email and password: `{token, user, tenant}` (seed 003).
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 401, body = ErrorBody)))]
pub async fn login(State(st): State<AppState>, ApiJson(r): ApiJson<LoginRequest>) -> ApiResult<Json<LoginResponse>> {
    let signed_in = st.svc.login(&r.email, &r.password, r.workspace.as_deref()).await?;
    Ok(Json(signed_in.into()))
}

#[derive(Serialize, ToSchema)]
pub struct CredentialView {
    /// `session` or `api_key`.
    #[serde(rename = "type")]
    kind: &'static str,
    id: i64,
    /// For API keys: `secret`, `public_live` or `public_test`.
    #[serde(skip_serializing_if = "Option::is_none")]
    key_type: Option<&'static str>,
}

#[derive(Serialize, ToSchema)]
pub struct WorkspaceView {
    id: TenantId,
    name: String,
    slug: String,
    role: Role,
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    /// The signed-in user (absent for API keys).
    user: Option<UserView>,
    tenant: TenantView,
    credential: CredentialView,
    scopes: Vec<String>,
    /// Every workspace the user belongs to.
    workspaces: Vec<WorkspaceView>,
}

/// The caller: user and workspace for a session, the key for an API key.
#[utoipa::path(get, path = "/v1/auth/me", tag = "auth", security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Me>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn me(State(st): State<AppState>, Auth(p): Auth) -> ApiResult<Json<Data<Me>>> {
    p.require_private()?;
    let tenant = st.svc.tenant(p.tenant_id).await?;
    let user = st.svc.user(&p).await?.map(|u| UserView::new(u, p.role()));
    let workspaces = st
        .svc
        .workspaces_of(&p)
        .await?
        .into_iter()
        .map(|m| WorkspaceView { id: m.tenant.id, name: m.tenant.name, slug: m.tenant.slug, role: m.role })
        .collect();
    let credential = match p.actor {
        Actor::Session { id, .. } => CredentialView { kind: "session", id: id.0, key_type: None },
        Actor::Key { id, kind, .. } => CredentialView { kind: "api_key", id: id.0, key_type: Some(kind.as_str()) },
    };
    Ok(data(Me { user, tenant: tenant.into(), credential, scopes: p.scopes.names(), workspaces }))
}

#[derive(Serialize, ToSchema)]
pub struct LoggedOut {
    logged_out: bool,
}

/// End the calling session; its token stops working at once.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Data<LoggedOut>), (status = 401, body = ErrorBody)))]
pub async fn logout(State(st): State<AppState>, Auth(p): Auth) -> ApiResult<Json<Data<LoggedOut>>> {
    st.svc.logout(&p).await?;
    Ok(data(LoggedOut { logged_out: true }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptInvitationRequest {
    /// The `inv_…` token from the invitation.
    token: String,
    /// Your name (for a new account).
    name: Option<String>,
    /// A new password, or the existing account's password.
    password: String,
}

/// Join a workspace with an invitation token; answers like login.
#[utoipa::path(post, path = "/v1/auth/accept-invitation", tag = "auth", request_body = AcceptInvitationRequest,
    responses((status = 201, body = LoginResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn accept_invitation(
    State(st): State<AppState>,
    ApiJson(r): ApiJson<AcceptInvitationRequest>,
) -> ApiResult<impl IntoResponse> {
    let signed_in = st.svc.accept_invitation(&r.token, r.name.as_deref(), &r.password).await?;
    Ok(created(Json(LoginResponse::from(signed_in))))
}

//! The team: members with roles, and invitations.

use axum::{extract::State, response::IntoResponse, Json};
use cairn_domain::{InvitationId, Role, UserId};
use cairn_service::team::parse_role;
use cairn_store::{invitations::Invitation, users::TeamMember};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    envelope::{data, Data, PageQuery, Paged},
    error::{ApiResult, ErrorBody},
    extract::{ApiJson, ApiPath, ApiQuery, Auth},
    routes::created,
    AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_members))
        .routes(routes!(get_member, update_member, remove_member))
        .routes(routes!(invite, list_invitations))
        .routes(routes!(get_invitation, revoke_invitation))
}

#[derive(Serialize, ToSchema)]
pub struct MemberView {
    id: UserId,
    email: String,
    name: String,
    role: Role,
    joined_at: DateTime<Utc>,
}

impl From<TeamMember> for MemberView {
    fn from(m: TeamMember) -> Self {
        MemberView { id: m.user.id, email: m.user.email, name: m.user.name, role: m.role, joined_at: m.joined_at }
    }
}

/// The workspace's members.
#[utoipa::path(get, path = "/v1/users", tag = "team", params(PageQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Paged<MemberView>), (status = 403, body = ErrorBody)))]
pub async fn list_members(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Paged<MemberView>>> {
    let (members, total) = st.svc.team(&p, q.limit(), q.offset()).await?;
    Ok(q.wrap(members.into_iter().map(MemberView::from).collect(), total))
}

/// One member.
#[utoipa::path(get, path = "/v1/users/{id}", tag = "team", params(("id" = i64, Path)),
    security(("bearer" = []), ("api_key" = [])), responses((status = 200, body = Data<MemberView>), (status = 404, body = ErrorBody)))]
pub async fn get_member(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<MemberView>>> {
    Ok(data(st.svc.team_member(&p, UserId(id)).await?.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMemberRequest {
    /// `owner`, `admin` or `member`.
    role: String,
}

/// Change a member's role (owners and admins; only owners touch the owner role).
#[utoipa::path(put, path = "/v1/users/{id}", tag = "team", params(("id" = i64, Path)), request_body = UpdateMemberRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<MemberView>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_member(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
    ApiJson(r): ApiJson<UpdateMemberRequest>,
) -> ApiResult<Json<Data<MemberView>>> {
    let role = parse_role("role", &r.role)?;
    Ok(data(st.svc.set_member_role(&p, UserId(id), role).await?.into()))
}

#[derive(Serialize, ToSchema)]
pub struct Removed {
    id: i64,
    removed: bool,
}

/// Remove a member from the workspace; their sessions here end at once.
#[utoipa::path(delete, path = "/v1/users/{id}", tag = "team", params(("id" = i64, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Data<Removed>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove_member(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<Removed>>> {
    st.svc.remove_member(&p, UserId(id)).await?;
    Ok(data(Removed { id, removed: true }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteRequest {
    email: String,
    /// `owner`, `admin` or `member` (default `member`).
    role: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct InvitationView {
    id: InvitationId,
    email: String,
    role: Role,
    /// `pending`, `accepted`, `revoked` or `expired`.
    status: &'static str,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    accepted_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl InvitationView {
    fn new(i: Invitation, now: DateTime<Utc>) -> InvitationView {
        let status = if i.accepted_at.is_some() {
            "accepted"
        } else if i.revoked_at.is_some() {
            "revoked"
        } else if i.expires_at <= now {
            "expired"
        } else {
            "pending"
        };
        InvitationView {
            id: i.id,
            email: i.email,
            role: i.role,
            status,
            created_at: i.created_at,
            expires_at: i.expires_at,
            accepted_at: i.accepted_at,
            revoked_at: i.revoked_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CreatedInvitation {
    #[serde(flatten)]
    view: InvitationView,
    /// Shown this once: the invitee posts it to `/v1/auth/accept-invitation`.
    token: String,
}

/// Invite someone to the workspace by email.
#[utoipa::path(post, path = "/v1/invitations", tag = "team", request_body = InviteRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = Data<CreatedInvitation>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn invite(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiJson(r): ApiJson<InviteRequest>,
) -> ApiResult<impl IntoResponse> {
    let (inv, token) = st.svc.invite(&p, &r.email, r.role.as_deref().unwrap_or("member")).await?;
    let now = st.svc.clock.now();
    Ok(created(data(CreatedInvitation { view: InvitationView::new(inv, now), token })))
}

/// The workspace's invitations, newest first.
#[utoipa::path(get, path = "/v1/invitations", tag = "team", params(PageQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Paged<InvitationView>), (status = 403, body = ErrorBody)))]
pub async fn list_invitations(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Paged<InvitationView>>> {
    let (invs, total) = st.svc.invitations(&p, q.limit(), q.offset()).await?;
    let now = st.svc.clock.now();
    Ok(q.wrap(invs.into_iter().map(|i| InvitationView::new(i, now)).collect(), total))
}

/// One invitation.
#[utoipa::path(get, path = "/v1/invitations/{id}", tag = "team", params(("id" = i64, Path)),
    security(("bearer" = []), ("api_key" = [])), responses((status = 200, body = Data<InvitationView>), (status = 404, body = ErrorBody)))]
pub async fn get_invitation(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<InvitationView>>> {
    let inv = st.svc.invitation(&p, InvitationId(id)).await?;
    Ok(data(InvitationView::new(inv, st.svc.clock.now())))
}

/// Revoke an invitation so its token no longer works.
#[utoipa::path(delete, path = "/v1/invitations/{id}", tag = "team", params(("id" = i64, Path)),
    security(("bearer" = []), ("api_key" = [])), responses((status = 200, body = Data<InvitationView>), (status = 404, body = ErrorBody)))]
pub async fn revoke_invitation(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Data<InvitationView>>> {
    let inv = st.svc.revoke_invitation(&p, InvitationId(id)).await?;
    Ok(data(InvitationView::new(inv, st.svc.clock.now())))
}

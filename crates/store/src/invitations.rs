//! Invitations to join a workspace (seed 000: "invite your team").

use cairn_domain::{InvitationId, Role, TenantId, UserId};
use chrono::{DateTime, Utc};

use crate::{Conn, Result, StoreError};

#[derive(Debug, Clone)]
pub struct Invitation {
    pub id: InvitationId,
    pub tenant_id: TenantId,
    pub email: String,
    pub role: Role,
    pub invited_by: Option<UserId>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct InvitationRow {
    id: i64,
    tenant_id: i64,
    email: String,
    role: String,
    invited_by: Option<i64>,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    accepted_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl From<InvitationRow> for Invitation {
    fn from(r: InvitationRow) -> Self {
        Invitation {
            id: InvitationId(r.id),
            tenant_id: TenantId(r.tenant_id),
            email: r.email,
            role: Role::parse(&r.role).unwrap_or(Role::Member),
            invited_by: r.invited_by.map(UserId),
            created_at: r.created_at,
            expires_at: r.expires_at,
            accepted_at: r.accepted_at,
            revoked_at: r.revoked_at,
        }
    }
}

const COLS: &str = "id, tenant_id, email, role, invited_by, created_at, expires_at, accepted_at, revoked_at";

pub struct NewInvitation<'a> {
    pub tenant_id: TenantId,
    pub email: &'a str,
    pub role: Role,
    pub token_hash: &'a str,
    pub invited_by: Option<UserId>,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl Conn {
    pub async fn insert_invitation(&mut self, i: &NewInvitation<'_>) -> Result<Invitation> {
        let sql = format!(
            "INSERT INTO invitations (tenant_id, email, role, token_hash, invited_by, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLS}"
        );
        let row: InvitationRow = on!(self, |c| sqlx::query_as(&sql)
            .bind(i.tenant_id.0)
            .bind(i.email)
            .bind(i.role.as_str())
            .bind(i.token_hash)
            .bind(i.invited_by.map(|u| u.0))
            .bind(i.now)
            .bind(i.expires_at)
            .fetch_one(c)
            .await)?;
        Ok(row.into())
    }

    pub async fn invitation(&mut self, tenant: TenantId, id: InvitationId) -> Result<Invitation> {
        let sql = format!("SELECT {COLS} FROM invitations WHERE tenant_id = $1 AND id = $2");
        let row: Option<InvitationRow> =
            on!(self, |c| sqlx::query_as(&sql).bind(tenant.0).bind(id.0).fetch_optional(c).await)?;
        row.map(Into::into).ok_or(StoreError::NotFound)
    }

    /// An open invitation by token hash: not accepted, not revoked, not expired.
    pub async fn open_invitation_by_token(
        &mut self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Invitation>> {
        let sql = format!(
            "SELECT {COLS} FROM invitations WHERE token_hash = $1
             AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $2"
        );
        let row: Option<InvitationRow> =
            on!(self, |c| sqlx::query_as(&sql).bind(token_hash).bind(now).fetch_optional(c).await)?;
        Ok(row.map(Into::into))
    }

    pub async fn list_invitations(
        &mut self,
        tenant: TenantId,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Invitation>, i64)> {
        let sql = format!("SELECT {COLS} FROM invitations WHERE tenant_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3");
        let rows: Vec<InvitationRow> =
            on!(self, |c| sqlx::query_as(&sql).bind(tenant.0).bind(limit).bind(offset).fetch_all(c).await)?;
        let total: i64 = on!(self, |c| sqlx::query_scalar("SELECT COUNT(*) FROM invitations WHERE tenant_id = $1")
            .bind(tenant.0)
            .fetch_one(c)
            .await)?;
        Ok((rows.into_iter().map(Into::into).collect(), total))
    }

    /// Marks an invitation accepted; false when it was already used or revoked (a race).
    pub async fn accept_invitation(&mut self, id: InvitationId, now: DateTime<Utc>) -> Result<bool> {
        let done = on!(self, |c| {
            sqlx::query(
                "UPDATE invitations SET accepted_at = $1 WHERE id = $2 AND accepted_at IS NULL AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(id.0)
            .execute(c)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(done == 1)
    }

    pub async fn revoke_invitation(&mut self, tenant: TenantId, id: InvitationId, now: DateTime<Utc>) -> Result<bool> {
        let done = on!(self, |c| {
            sqlx::query("UPDATE invitations SET revoked_at = COALESCE(revoked_at, $1) WHERE tenant_id = $2 AND id = $3")
                .bind(now)
                .bind(tenant.0)
                .bind(id.0)
                .execute(c)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(done > 0)
    }
}

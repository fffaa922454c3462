//! Sign-in sessions: a Bearer token's hash, its user and workspace, expiry and revocation.

use cairn_domain::{Role, SessionId, TenantId, UserId};
use chrono::{DateTime, Utc};

use crate::{Conn, Result};

/// A live session as seen by authentication: who, where, with which role.
#[derive(Debug, Clone)]
pub struct SessionAuth {
    pub id: SessionId,
    pub user_id: UserId,
    pub tenant_id: TenantId,
    pub role: Role,
}

#[derive(sqlx::FromRow)]
struct SessionAuthRow {
    id: i64,
    user_id: i64,
    tenant_id: i64,
    role: String,
}

impl Conn {
    pub async fn insert_session(
        &mut self,
        token_hash: &str,
        user: UserId,
        tenant: TenantId,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<SessionId> {
        let id: i64 = on!(self, |c| sqlx::query_scalar(
            "INSERT INTO sessions (token_hash, user_id, tenant_id, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5) RETURNING id"
        )
        .bind(token_hash)
        .bind(user.0)
        .bind(tenant.0)
        .bind(now)
        .bind(expires_at)
        .fetch_one(c)
        .await)?;
        Ok(SessionId(id))
    }

    /// The session with this token hash if it is neither expired nor revoked and its user is
    /// still a member of the workspace (removing a member ends their sessions at once).
    pub async fn live_session(&mut self, token_hash: &str, now: DateTime<Utc>) -> Result<Option<SessionAuth>> {
        let row: Option<SessionAuthRow> = on!(self, |c| sqlx::query_as(
            "SELECT s.id, s.user_id, s.tenant_id, m.role FROM sessions s
             JOIN memberships m ON m.tenant_id = s.tenant_id AND m.user_id = s.user_id
             WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > $2"
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(c)
        .await)?;
        Ok(row.map(|r| SessionAuth {
            id: SessionId(r.id),
            user_id: UserId(r.user_id),
            tenant_id: TenantId(r.tenant_id),
            role: Role::parse(&r.role).unwrap_or(Role::Member),
        }))
    }

    pub async fn revoke_session(&mut self, id: SessionId, now: DateTime<Utc>) -> Result<()> {
        on!(self, |c| sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(id.0)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Deletes sessions that expired or were revoked before `before`. Returns how many.
    pub async fn purge_sessions(&mut self, before: DateTime<Utc>) -> Result<u64> {
        let done = on!(self, |c| {
            sqlx::query("DELETE FROM sessions WHERE expires_at < $1 OR (revoked_at IS NOT NULL AND revoked_at < $1)")
                .bind(before)
                .execute(c)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(done)
    }
}

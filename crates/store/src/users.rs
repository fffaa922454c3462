//! Users (people who sign in) and the team of a workspace.

use cairn_domain::{Role, TenantId, UserId};
use chrono::{DateTime, Utc};

use crate::{Conn, Result, StoreError};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

impl UserRow {
    pub fn user(&self) -> User {
        User { id: UserId(self.id), email: self.email.clone(), name: self.name.clone(), created_at: self.created_at }
    }
}

/// A member of a workspace's team.
#[derive(Debug, Clone)]
pub struct TeamMember {
    pub user: User,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct TeamRow {
    id: i64,
    email: String,
    name: String,
    created_at: DateTime<Utc>,
    role: String,
    joined_at: DateTime<Utc>,
}

const TEAM_SELECT: &str = "SELECT u.id, u.email, u.name, u.created_at, m.role, m.created_at AS joined_at \
                           FROM memberships m JOIN users u ON u.id = m.user_id";

impl From<TeamRow> for TeamMember {
    fn from(r: TeamRow) -> Self {
        TeamMember {
            user: User { id: UserId(r.id), email: r.email, name: r.name, created_at: r.created_at },
            role: Role::parse(&r.role).unwrap_or(Role::Member),
            joined_at: r.joined_at,
        }
    }
}

impl Conn {
    pub async fn insert_user(
        &mut self,
        email: &str,
        name: &str,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<User> {
        let row: UserRow = on!(self, |c| sqlx::query_as(
            "INSERT INTO users (email, name, password_hash, created_at) VALUES ($1, $2, $3, $4)
             RETURNING id, email, name, password_hash, created_at"
        )
        .bind(email)
        .bind(name)
        .bind(password_hash)
        .bind(now)
        .fetch_one(c)
        .await)?;
        Ok(row.user())
    }

    /// The user with this (normalised) email, with the password hash for verification.
    pub async fn user_by_email(&mut self, email: &str) -> Result<Option<UserRow>> {
        Ok(on!(self, |c| sqlx::query_as(
            "SELECT id, email, name, password_hash, created_at FROM users WHERE email = $1"
        )
        .bind(email)
        .fetch_optional(c)
        .await)?)
    }

    pub async fn user(&mut self, id: UserId) -> Result<User> {
        let row: Option<UserRow> = on!(self, |c| sqlx::query_as(
            "SELECT id, email, name, password_hash, created_at FROM users WHERE id = $1"
        )
        .bind(id.0)
        .fetch_optional(c)
        .await)?;
        row.map(|r| r.user()).ok_or(StoreError::NotFound)
    }

    pub async fn count_users(&mut self) -> Result<i64> {
        Ok(on!(self, |c| sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(c).await)?)
    }

    /// The members of a workspace, paginated, oldest first.
    pub async fn team(&mut self, tenant: TenantId, limit: i64, offset: i64) -> Result<(Vec<TeamMember>, i64)> {
        let sql = format!("{TEAM_SELECT} WHERE m.tenant_id = $1 ORDER BY m.created_at, u.id LIMIT $2 OFFSET $3");
        let rows: Vec<TeamRow> =
            on!(self, |c| sqlx::query_as(&sql).bind(tenant.0).bind(limit).bind(offset).fetch_all(c).await)?;
        let total: i64 = on!(self, |c| sqlx::query_scalar("SELECT COUNT(*) FROM memberships WHERE tenant_id = $1")
            .bind(tenant.0)
            .fetch_one(c)
            .await)?;
        Ok((rows.into_iter().map(TeamMember::from).collect(), total))
    }

    pub async fn team_member(&mut self, tenant: TenantId, user: UserId) -> Result<TeamMember> {
        let sql = format!("{TEAM_SELECT} WHERE m.tenant_id = $1 AND m.user_id = $2");
        let row: Option<TeamRow> =
            on!(self, |c| sqlx::query_as(&sql).bind(tenant.0).bind(user.0).fetch_optional(c).await)?;
        row.map(TeamMember::from).ok_or(StoreError::NotFound)
    }
}

//! Workspaces and memberships.

use cairn_domain::{Role, TenantId, UserId};
use chrono::{DateTime, Utc};

use crate::{Conn, Result, StoreError};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TenantRow {
    pub id: i64,
    pub name: String,
    pub slug: String,
    pub time_zone: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub slug: String,
    pub time_zone: String,
    pub created_at: DateTime<Utc>,
}

impl From<TenantRow> for Tenant {
    fn from(r: TenantRow) -> Self {
        Tenant { id: TenantId(r.id), name: r.name, slug: r.slug, time_zone: r.time_zone, created_at: r.created_at }
    }
}

/// A user's place in a workspace.
#[derive(Debug, Clone)]
pub struct Membership {
    pub tenant: Tenant,
    pub role: Role,
}

#[derive(sqlx::FromRow)]
struct MembershipRow {
    #[sqlx(flatten)]
    tenant: TenantRow,
    role: String,
}

const TENANT_COLS: &str = "t.id, t.name, t.slug, t.time_zone, t.created_at";

impl Conn {
    pub async fn insert_tenant(&mut self, name: &str, slug: &str, now: DateTime<Utc>) -> Result<Tenant> {
        let row: TenantRow = on!(self, |c| sqlx::query_as(
            "INSERT INTO tenants (name, slug, created_at) VALUES ($1, $2, $3)
             RETURNING id, name, slug, time_zone, created_at"
        )
        .bind(name)
        .bind(slug)
        .bind(now)
        .fetch_one(c)
        .await)?;
        let tenant: Tenant = row.into();
        self.insert_builtin_segments(tenant.id, now).await?;
        Ok(tenant)
    }

    /// Whether a slug is taken (to pick a free one before inserting).
    pub async fn tenant_slug_exists(&mut self, slug: &str) -> Result<bool> {
        let n: i64 = on!(self, |c| sqlx::query_scalar("SELECT COUNT(*) FROM tenants WHERE slug = $1")
            .bind(slug)
            .fetch_one(c)
            .await)?;
        Ok(n > 0)
    }

    pub async fn tenant(&mut self, id: TenantId) -> Result<Tenant> {
        let sql = format!("SELECT {TENANT_COLS} FROM tenants t WHERE t.id = $1");
        let row: Option<TenantRow> = on!(self, |c| sqlx::query_as(&sql).bind(id.0).fetch_optional(c).await)?;
        row.map(Into::into).ok_or(StoreError::NotFound)
    }

    /// Looks a workspace up by id or slug (the CLI accepts either).
    pub async fn tenant_by_ref(&mut self, reference: &str) -> Result<Tenant> {
        let id: i64 = reference.parse().unwrap_or(-1);
        let sql = format!("SELECT {TENANT_COLS} FROM tenants t WHERE t.id = $1 OR t.slug = $2");
        let row: Option<TenantRow> =
            on!(self, |c| sqlx::query_as(&sql).bind(id).bind(reference).fetch_optional(c).await)?;
        row.map(Into::into).ok_or(StoreError::NotFound)
    }

    pub async fn list_tenants(&mut self) -> Result<Vec<Tenant>> {
        let sql = format!("SELECT {TENANT_COLS} FROM tenants t ORDER BY t.id");
        let rows: Vec<TenantRow> = on!(self, |c| sqlx::query_as(&sql).fetch_all(c).await)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    pub async fn count_tenants(&mut self) -> Result<i64> {
        Ok(on!(self, |c| sqlx::query_scalar("SELECT COUNT(*) FROM tenants").fetch_one(c).await)?)
    }

    pub async fn insert_membership(
        &mut self,
        tenant: TenantId,
        user: UserId,
        role: Role,
        now: DateTime<Utc>,
    ) -> Result<()> {
        on!(self, |c| {
            sqlx::query("INSERT INTO memberships (tenant_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)")
                .bind(tenant.0)
                .bind(user.0)
                .bind(role.as_str())
                .bind(now)
                .execute(c)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(())
    }

    /// The workspaces a user belongs to, oldest membership first.
    pub async fn memberships_of(&mut self, user: UserId) -> Result<Vec<Membership>> {
        let sql = format!(
            "SELECT {TENANT_COLS}, m.role FROM memberships m JOIN tenants t ON t.id = m.tenant_id
             WHERE m.user_id = $1 ORDER BY m.created_at, t.id"
        );
        let rows: Vec<MembershipRow> = on!(self, |c| sqlx::query_as(&sql).bind(user.0).fetch_all(c).await)?;
        Ok(rows
            .into_iter()
            .map(|r| Membership { role: Role::parse(&r.role).unwrap_or(Role::Member), tenant: r.tenant.into() })
            .collect())
    }

    pub async fn role_of(&mut self, tenant: TenantId, user: UserId) -> Result<Option<Role>> {
        let role: Option<String> =
            on!(self, |c| sqlx::query_scalar("SELECT role FROM memberships WHERE tenant_id = $1 AND user_id = $2")
                .bind(tenant.0)
                .bind(user.0)
                .fetch_optional(c)
                .await)?;
        Ok(role.as_deref().and_then(Role::parse))
    }

    pub async fn set_role(&mut self, tenant: TenantId, user: UserId, role: Role) -> Result<()> {
        let done =
            on!(self, |c| sqlx::query("UPDATE memberships SET role = $1 WHERE tenant_id = $2 AND user_id = $3")
                .bind(role.as_str())
                .bind(tenant.0)
                .bind(user.0)
                .execute(c)
                .await
                .map(|r| r.rows_affected()))?;
        if done == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    pub async fn delete_membership(&mut self, tenant: TenantId, user: UserId) -> Result<()> {
        let done = on!(self, |c| sqlx::query("DELETE FROM memberships WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant.0)
            .bind(user.0)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        if done == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    pub async fn count_owners(&mut self, tenant: TenantId) -> Result<i64> {
        Ok(on!(self, |c| sqlx::query_scalar(
            "SELECT COUNT(*) FROM memberships WHERE tenant_id = $1 AND role = 'owner'"
        )
        .bind(tenant.0)
        .fetch_one(c)
        .await)?)
    }
}

impl Conn {
    pub async fn rename_tenant(&mut self, id: TenantId, name: &str) -> Result<()> {
        let done = on!(self, |c| sqlx::query("UPDATE tenants SET name = $1 WHERE id = $2")
            .bind(name)
            .bind(id.0)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        if done == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    pub async fn set_tenant_time_zone(&mut self, id: TenantId, time_zone: &str) -> Result<()> {
        on!(self, |c| sqlx::query("UPDATE tenants SET time_zone = $1 WHERE id = $2")
            .bind(time_zone)
            .bind(id.0)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }
}

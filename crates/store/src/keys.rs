//! API keys: stored as a lookup prefix and a SHA-256 hash, never in the clear.

use cairn_domain::{credential::KeyKind, ApiKeyId, ScopeSet, TenantId, UserId};
use chrono::{DateTime, Utc};

use crate::{Conn, Result, StoreError};

#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub tenant_id: TenantId,
    pub name: String,
    pub kind: KeyKind,
    pub prefix: String,
    pub key_hash: String,
    pub scopes: ScopeSet,
    /// Requests per minute; `None` means the default for the key's kind.
    pub rate_limit: Option<i64>,
    /// Requests per minute on the ingestion routes; `None` means the server default.
    pub ingest_rate_limit: Option<i64>,
    pub created_by: Option<UserId>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What the service decided for a new key.
pub struct NewApiKey<'a> {
    pub tenant_id: TenantId,
    pub name: &'a str,
    pub kind: KeyKind,
    pub prefix: &'a str,
    pub key_hash: &'a str,
    pub scopes: ScopeSet,
    pub rate_limit: Option<i64>,
    pub ingest_rate_limit: Option<i64>,
    pub created_by: Option<UserId>,
    pub now: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct ApiKeyRow {
    id: i64,
    tenant_id: i64,
    name: String,
    kind: String,
    prefix: String,
    key_hash: String,
    scopes: String,
    rate_limit: Option<i64>,
    ingest_rate_limit: Option<i64>,
    created_by: Option<i64>,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl From<ApiKeyRow> for ApiKey {
    fn from(r: ApiKeyRow) -> Self {
        ApiKey {
            id: ApiKeyId(r.id),
            tenant_id: TenantId(r.tenant_id),
            name: r.name,
            kind: KeyKind::parse(&r.kind).unwrap_or(KeyKind::Secret),
            prefix: r.prefix,
            key_hash: r.key_hash,
            scopes: ScopeSet::from_db(&r.scopes),
            rate_limit: r.rate_limit,
            ingest_rate_limit: r.ingest_rate_limit,
            created_by: r.created_by.map(UserId),
            created_at: r.created_at,
            last_used_at: r.last_used_at,
            revoked_at: r.revoked_at,
        }
    }
}

const COLS: &str = "id, tenant_id, name, kind, prefix, key_hash, scopes, rate_limit, ingest_rate_limit, created_by, \
                    created_at, last_used_at, revoked_at";

impl Conn {
    pub async fn insert_api_key(&mut self, k: &NewApiKey<'_>) -> Result<ApiKey> {
        let sql = format!(
            "INSERT INTO api_keys (tenant_id, name, kind, prefix, key_hash, scopes, rate_limit, ingest_rate_limit,
                                   created_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {COLS}"
        );
        let row: ApiKeyRow = on!(self, |c| sqlx::query_as(&sql)
            .bind(k.tenant_id.0)
            .bind(k.name)
            .bind(k.kind.as_str())
            .bind(k.prefix)
            .bind(k.key_hash)
            .bind(k.scopes.to_db())
            .bind(k.rate_limit)
            .bind(k.ingest_rate_limit)
            .bind(k.created_by.map(|u| u.0))
            .bind(k.now)
            .fetch_one(c)
            .await)?;
        Ok(row.into())
    }

    /// The key with this lookup prefix, revoked or not (the caller checks hash and state).
    pub async fn api_key_by_prefix(&mut self, prefix: &str) -> Result<Option<ApiKey>> {
        let sql = format!("SELECT {COLS} FROM api_keys WHERE prefix = $1");
        let row: Option<ApiKeyRow> = on!(self, |c| sqlx::query_as(&sql).bind(prefix).fetch_optional(c).await)?;
        Ok(row.map(Into::into))
    }

    pub async fn api_key(&mut self, tenant: TenantId, id: ApiKeyId) -> Result<ApiKey> {
        let sql = format!("SELECT {COLS} FROM api_keys WHERE tenant_id = $1 AND id = $2");
        let row: Option<ApiKeyRow> =
            on!(self, |c| sqlx::query_as(&sql).bind(tenant.0).bind(id.0).fetch_optional(c).await)?;
        row.map(Into::into).ok_or(StoreError::NotFound)
    }

    /// A workspace's keys, newest first; revoked keys are listed only when asked for.
    pub async fn list_api_keys(
        &mut self,
        tenant: TenantId,
        include_revoked: bool,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<ApiKey>, i64)> {
        let filter = if include_revoked { "" } else { " AND revoked_at IS NULL" };
        let sql =
            format!("SELECT {COLS} FROM api_keys WHERE tenant_id = $1{filter} ORDER BY id DESC LIMIT $2 OFFSET $3");
        let rows: Vec<ApiKeyRow> =
            on!(self, |c| sqlx::query_as(&sql).bind(tenant.0).bind(limit).bind(offset).fetch_all(c).await)?;
        let count_sql = format!("SELECT COUNT(*) FROM api_keys WHERE tenant_id = $1{filter}");
        let total: i64 = on!(self, |c| sqlx::query_scalar(&count_sql).bind(tenant.0).fetch_one(c).await)?;
        Ok((rows.into_iter().map(Into::into).collect(), total))
    }

    /// Revokes a key of this workspace. Returns false when it does not exist (or is another
    /// workspace's). Revoking twice is not an error.
    pub async fn revoke_api_key(&mut self, tenant: TenantId, id: ApiKeyId, now: DateTime<Utc>) -> Result<bool> {
        let done = on!(self, |c| {
            sqlx::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE tenant_id = $2 AND id = $3")
                .bind(now)
                .bind(tenant.0)
                .bind(id.0)
                .execute(c)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(done > 0)
    }

    pub async fn touch_api_key(&mut self, id: ApiKeyId, now: DateTime<Utc>) -> Result<()> {
        on!(self, |c| sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id.0)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }
}

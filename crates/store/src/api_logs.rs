//! Recent API requests per workspace and credential (method, path, status, latency, time —
//! never bodies or query strings, which can carry personal data).

use cairn_domain::{ApiKeyId, TenantId, UserId};
use chrono::{DateTime, Utc};

use crate::{Conn, Result};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiLogRow {
    pub id: i64,
    pub tenant_id: i64,
    pub api_key_id: Option<i64>,
    pub user_id: Option<i64>,
    pub method: String,
    pub path: String,
    pub status: i32,
    pub latency_ms: f64,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewApiLog {
    pub tenant_id: TenantId,
    pub api_key_id: Option<ApiKeyId>,
    pub user_id: Option<UserId>,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub latency_ms: f64,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Default, Clone)]
pub struct ApiLogFilter {
    pub api_key_id: Option<ApiKeyId>,
    pub status_min: Option<i32>,
    pub status_max: Option<i32>,
}

impl Conn {
    /// Inserts many log lines in one statement.
    pub async fn insert_api_logs(&mut self, logs: &[NewApiLog]) -> Result<()> {
        if logs.is_empty() {
            return Ok(());
        }
        on!(self, |c| {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO api_logs (tenant_id, api_key_id, user_id, method, path, status, latency_ms, created_at) ",
            );
            qb.push_values(logs, |mut b, l| {
                b.push_bind(l.tenant_id.0)
                    .push_bind(l.api_key_id.map(|k| k.0))
                    .push_bind(l.user_id.map(|u| u.0))
                    .push_bind(l.method.clone())
                    .push_bind(l.path.clone())
                    .push_bind(l.status as i32)
                    .push_bind(l.latency_ms)
                    .push_bind(l.at);
            });
            qb.build().execute(c).await.map(|r| r.rows_affected())
        })?;
        Ok(())
    }

    /// A workspace's log lines, newest first.
    pub async fn list_api_logs(
        &mut self,
        tenant: TenantId,
        filter: &ApiLogFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<ApiLogRow>, i64)> {
        let where_sql = "tenant_id = $1 AND ($2 IS NULL OR api_key_id = $2)
             AND ($3 IS NULL OR status >= $3) AND ($4 IS NULL OR status <= $4)";
        let sql = format!(
            "SELECT id, tenant_id, api_key_id, user_id, method, path, status, latency_ms, created_at
             FROM api_logs WHERE {where_sql} ORDER BY id DESC LIMIT $5 OFFSET $6"
        );
        let key = filter.api_key_id.map(|k| k.0);
        let rows: Vec<ApiLogRow> = on!(self, |c| sqlx::query_as(&sql)
            .bind(tenant.0)
            .bind(key)
            .bind(filter.status_min)
            .bind(filter.status_max)
            .bind(limit)
            .bind(offset)
            .fetch_all(c)
            .await)?;
        let count_sql = format!("SELECT COUNT(*) FROM api_logs WHERE {where_sql}");
        let total: i64 = on!(self, |c| sqlx::query_scalar(&count_sql)
            .bind(tenant.0)
            .bind(key)
            .bind(filter.status_min)
            .bind(filter.status_max)
            .fetch_one(c)
            .await)?;
        Ok((rows, total))
    }

    pub async fn purge_api_logs(&mut self, before: DateTime<Utc>) -> Result<u64> {
        let done = on!(self, |c| sqlx::query("DELETE FROM api_logs WHERE created_at < $1")
            .bind(before)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(done)
    }
}

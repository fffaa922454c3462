//! Outbound webhook endpoints and their deliveries, fed from the outbox.

use cairn_domain::TenantId;
use chrono::{DateTime, Utc};

use crate::{db::Raw, Backend, Conn, Result, StoreError};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Webhook {
    pub id: i64,
    pub tenant_id: i64,
    pub url: String,
    /// Space-separated event names and patterns (`*`, `lead.*`).
    pub events: String,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<DateTime<Utc>>,
    pub status: String,
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Webhook {
    pub fn subscribed_to(&self, event: &str) -> bool {
        self.events.split_whitespace().any(|p| {
            p == "*"
                || p == event
                || p.strip_suffix(".*").is_some_and(|cat| event.starts_with(cat) && event[cat.len()..].starts_with('.'))
        })
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Delivery {
    pub id: i64,
    pub tenant_id: i64,
    pub webhook_id: i64,
    pub outbox_id: Option<i64>,
    pub event: String,
    pub body: String,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_status: Option<i32>,
    pub last_latency_ms: Option<f64>,
    pub last_error: Option<String>,
    pub response_excerpt: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// An undispatched outbox entry.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub tenant_id: i64,
    pub event: String,
    pub payload: sqlx::types::Json<serde_json::Value>,
    pub created_at: DateTime<Utc>,
}

const WEBHOOK_COLS: &str = "id, tenant_id, url, events, secret, previous_secret, previous_secret_until, status, \
                            disabled_reason, created_at, updated_at";
const DELIVERY_COLS: &str = "id, tenant_id, webhook_id, outbox_id, event, body, status, attempts, next_attempt_at, \
                             last_status, last_latency_ms, last_error, response_excerpt, created_at, delivered_at";

impl Conn {
    pub async fn insert_webhook(
        &mut self,
        tenant: TenantId,
        url: &str,
        events: &str,
        secret: &str,
        now: DateTime<Utc>,
    ) -> Result<Webhook> {
        let sql = format!(
            "INSERT INTO webhooks (tenant_id, url, events, secret, status, created_at, updated_at)
             VALUES ($1, $2, $3, $4, 'active', $5, $5) RETURNING {WEBHOOK_COLS}"
        );
        Ok(on!(self, |c| sqlx::query_as(&sql)
            .bind(tenant.0)
            .bind(url)
            .bind(events)
            .bind(secret)
            .bind(now)
            .fetch_one(c)
            .await)?)
    }

    pub async fn webhook(&mut self, tenant: TenantId, id: i64) -> Result<Webhook> {
        let sql = format!("SELECT {WEBHOOK_COLS} FROM webhooks WHERE tenant_id = $1 AND id = $2");
        let row: Option<Webhook> = on!(self, |c| sqlx::query_as(&sql).bind(tenant.0).bind(id).fetch_optional(c).await)?;
        row.ok_or(StoreError::NotFound)
    }

    pub async fn list_webhooks(&mut self, tenant: TenantId, limit: i64, offset: i64) -> Result<(Vec<Webhook>, i64)> {
        let sql = format!("SELECT {WEBHOOK_COLS} FROM webhooks WHERE tenant_id = $1 ORDER BY id LIMIT $2 OFFSET $3");
        let rows: Vec<Webhook> =
            on!(self, |c| sqlx::query_as(&sql).bind(tenant.0).bind(limit).bind(offset).fetch_all(c).await)?;
        let total: i64 = on!(self, |c| sqlx::query_scalar("SELECT COUNT(*) FROM webhooks WHERE tenant_id = $1")
            .bind(tenant.0)
            .fetch_one(c)
            .await)?;
        Ok((rows, total))
    }

    /// Active endpoints of a workspace (for fan-out).
    pub async fn active_webhooks(&mut self, tenant: TenantId) -> Result<Vec<Webhook>> {
        let sql = format!("SELECT {WEBHOOK_COLS} FROM webhooks WHERE tenant_id = $1 AND status = 'active'");
        Ok(on!(self, |c| sqlx::query_as(&sql).bind(tenant.0).fetch_all(c).await)?)
    }

    /// Replaces url, events and status (re-enabling clears the reason).
    pub async fn update_webhook(&mut self, tenant: TenantId, w: &Webhook, now: DateTime<Utc>) -> Result<Webhook> {
        let sql = format!(
            "UPDATE webhooks SET url = $1, events = $2, status = $3, disabled_reason = $4, secret = $5,
                 previous_secret = $6, previous_secret_until = $7, updated_at = $8
             WHERE tenant_id = $9 AND id = $10 RETURNING {WEBHOOK_COLS}"
        );
        let row: Option<Webhook> = on!(self, |c| sqlx::query_as(&sql)
            .bind(&w.url)
            .bind(&w.events)
            .bind(&w.status)
            .bind(w.disabled_reason.as_deref())
            .bind(&w.secret)
            .bind(w.previous_secret.as_deref())
            .bind(w.previous_secret_until)
            .bind(now)
            .bind(tenant.0)
            .bind(w.id)
            .fetch_optional(c)
            .await)?;
        row.ok_or(StoreError::NotFound)
    }

    pub async fn delete_webhook(&mut self, tenant: TenantId, id: i64) -> Result<bool> {
        let n = on!(self, |c| sqlx::query("DELETE FROM webhooks WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.0)
            .bind(id)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }

    /// When the endpoint last accepted a delivery.
    pub async fn last_webhook_success(&mut self, webhook: i64) -> Result<Option<DateTime<Utc>>> {
        Ok(on!(self, |c| sqlx::query_scalar(
            "SELECT MAX(delivered_at) FROM webhook_deliveries WHERE webhook_id = $1 AND status = 'succeeded'"
        )
        .bind(webhook)
        .fetch_one(c)
        .await)?)
    }

    pub async fn disable_webhook(&mut self, id: i64, reason: &str, now: DateTime<Utc>) -> Result<()> {
        on!(self, |c| sqlx::query(
            "UPDATE webhooks SET status = 'disabled', disabled_reason = $1, updated_at = $2 WHERE id = $3"
        )
        .bind(reason)
        .bind(now)
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Oldest undispatched outbox entries, locked for this transaction on PostgreSQL.
    pub async fn undispatched_outbox(&mut self, limit: i64) -> Result<Vec<OutboxRow>> {
        let lock = if self.backend() == Backend::Postgres { "FOR UPDATE SKIP LOCKED" } else { "" };
        let sql = format!(
            "SELECT id, tenant_id, event, payload, created_at FROM outbox WHERE dispatched_at IS NULL ORDER BY id LIMIT $1 {lock}"
        );
        Ok(on!(self, |c| sqlx::query_as(&sql).bind(limit).fetch_all(c).await)?)
    }

    pub async fn mark_dispatched(&mut self, ids: &[i64], now: DateTime<Utc>) -> Result<()> {
        self.stamp_outbox("dispatched_at", ids, now).await
    }

    /// Sets a consumer's column (`dispatched_at`, `automated_at`) on outbox entries: one
    /// statement on PostgreSQL, one per 500 entries on SQLite.
    pub(crate) async fn stamp_outbox(&mut self, column: &'static str, ids: &[i64], now: DateTime<Utc>) -> Result<()> {
        match self.raw() {
            Raw::Postgres(c) => {
                sqlx::query(&format!("UPDATE outbox SET {column} = $1 WHERE id = ANY($2)"))
                    .bind(now)
                    .bind(ids)
                    .execute(&mut *c)
                    .await?;
                Ok(())
            }
            Raw::Sqlite(c) => {
                crate::db::sqlite_by_ids(c, ids, |qb| {
                    qb.push(format!("UPDATE outbox SET {column} = "));
                    qb.push_bind(now);
                })
                .await
            }
        }
    }

    /// Queues a delivery; a second one for the same (endpoint, outbox event) is ignored.
    pub async fn insert_delivery(
        &mut self,
        tenant: i64,
        webhook: i64,
        outbox: Option<i64>,
        event: &str,
        body: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>> {
        Ok(on!(self, |c| {
            sqlx::query_scalar(
            "INSERT INTO webhook_deliveries (tenant_id, webhook_id, outbox_id, event, body, status, next_attempt_at, created_at)
             VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6) ON CONFLICT (webhook_id, outbox_id) DO NOTHING RETURNING id"
        )
        .bind(tenant)
        .bind(webhook)
        .bind(outbox)
        .bind(event)
        .bind(body)
        .bind(now)
        .fetch_optional(c)
        .await
        })?)
    }

    /// Inserts many deliveries of outbox entries (one statement on PostgreSQL), skipping those
    /// that exist: `(tenant, webhook, outbox entry, event, body)`.
    pub async fn insert_deliveries(
        &mut self,
        rows: &[(i64, i64, i64, String, String)],
        now: DateTime<Utc>,
    ) -> Result<()> {
        if let Raw::Postgres(c) = self.raw() {
            let tenants: Vec<i64> = rows.iter().map(|r| r.0).collect();
            let hooks: Vec<i64> = rows.iter().map(|r| r.1).collect();
            let entries: Vec<i64> = rows.iter().map(|r| r.2).collect();
            let events: Vec<&str> = rows.iter().map(|r| r.3.as_str()).collect();
            let bodies: Vec<&str> = rows.iter().map(|r| r.4.as_str()).collect();
            sqlx::query(
                "INSERT INTO webhook_deliveries (tenant_id, webhook_id, outbox_id, event, body, status, next_attempt_at, created_at)
                 SELECT t, w, o, e, b, 'pending', $6, $6
                 FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[]) AS u(t, w, o, e, b)
                 ON CONFLICT (webhook_id, outbox_id) DO NOTHING",
            )
            .bind(&tenants)
            .bind(&hooks)
            .bind(&entries)
            .bind(&events)
            .bind(&bodies)
            .bind(now)
            .execute(&mut *c)
            .await?;
            return Ok(());
        }
        for (tenant, webhook, entry, event, body) in rows {
            self.insert_delivery(*tenant, *webhook, Some(*entry), event, body, now).await?;
        }
        Ok(())
    }

    /// Claims due deliveries for `lease_until` (another worker takes them over after that),
    /// leaving out endpoints listed in `busy` (those with as many deliveries in flight as they may
    /// have).
    pub async fn claim_deliveries(
        &mut self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
        busy: &[i64],
    ) -> Result<Vec<Delivery>> {
        let lock = if self.backend() == Backend::Postgres { " FOR UPDATE SKIP LOCKED" } else { "" };
        on!(self, |c| {
            let mut qb = sqlx::QueryBuilder::new("UPDATE webhook_deliveries SET locked_until = ");
            qb.push_bind(lease_until);
            qb.push(" WHERE id IN (SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= ");
            qb.push_bind(now);
            qb.push(" AND (locked_until IS NULL OR locked_until < ");
            qb.push_bind(now);
            qb.push(")");
            if !busy.is_empty() {
                qb.push(" AND webhook_id NOT IN (");
                let mut list = qb.separated(", ");
                for id in busy {
                    list.push_bind(*id);
                }
                qb.push(")");
            }
            qb.push(" ORDER BY next_attempt_at, id LIMIT ");
            qb.push_bind(limit);
            qb.push(lock);
            qb.push(") RETURNING ");
            qb.push(DELIVERY_COLS);
            qb.build_query_as().fetch_all(c).await
        })
        .map_err(Into::into)
    }

    /// Claims up to `limit` due deliveries of one endpoint (one with deliveries in flight and
    /// room for more: only what its share allows is taken).
    pub async fn claim_deliveries_of(
        &mut self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        webhook: i64,
        limit: i64,
    ) -> Result<Vec<Delivery>> {
        let lock = if self.backend() == Backend::Postgres { " FOR UPDATE SKIP LOCKED" } else { "" };
        let sql = format!(
            "UPDATE webhook_deliveries SET locked_until = $1 WHERE id IN (SELECT id FROM webhook_deliveries
                 WHERE webhook_id = $2 AND status = 'pending' AND next_attempt_at <= $3
                   AND (locked_until IS NULL OR locked_until < $3)
                 ORDER BY next_attempt_at, id LIMIT $4{lock}) RETURNING {DELIVERY_COLS}"
        );
        on!(self, |c| sqlx::query_as(&sql).bind(lease_until).bind(webhook).bind(now).bind(limit).fetch_all(c).await)
            .map_err(Into::into)
    }

    /// Gives claimed deliveries back unsent (they go to the next claim).
    pub async fn release_deliveries(&mut self, ids: &[i64]) -> Result<()> {
        for chunk in ids.chunks(500) {
            on!(self, |c| {
                let mut qb = sqlx::QueryBuilder::new("UPDATE webhook_deliveries SET locked_until = NULL WHERE id IN (");
                let mut list = qb.separated(", ");
                for id in chunk {
                    list.push_bind(*id);
                }
                qb.push(")");
                qb.build().execute(c).await.map(|r| r.rows_affected())
            })?;
        }
        Ok(())
    }

    /// Records many attempts' outcomes (one statement on PostgreSQL; one per row on SQLite,
    /// where a statement costs no round trip).
    pub async fn record_attempts(&mut self, rows: &[AttemptRecord], now: DateTime<Utc>) -> Result<()> {
        if let Raw::Postgres(c) = self.raw() {
            let ids: Vec<i64> = rows.iter().map(|a| a.id).collect();
            let statuses: Vec<String> = rows.iter().map(|a| a.status.clone()).collect();
            let codes: Vec<Option<i32>> = rows.iter().map(|a| a.http_status).collect();
            let latencies: Vec<f64> = rows.iter().map(|a| a.latency_ms).collect();
            let errors: Vec<Option<String>> = rows.iter().map(|a| a.error.clone()).collect();
            let excerpts: Vec<Option<String>> = rows.iter().map(|a| a.excerpt.clone()).collect();
            let nexts: Vec<Option<DateTime<Utc>>> = rows.iter().map(|a| a.next).collect();
            sqlx::query(
                "UPDATE webhook_deliveries d SET status = u.status, attempts = d.attempts + 1, last_status = u.code,
                     last_latency_ms = u.latency, last_error = u.error, response_excerpt = u.excerpt,
                     next_attempt_at = COALESCE(u.next, d.next_attempt_at), locked_until = NULL,
                     delivered_at = CASE WHEN u.status = 'succeeded' THEN $8 ELSE d.delivered_at END
                 FROM UNNEST($1::bigint[], $2::text[], $3::int[], $4::float8[], $5::text[], $6::text[],
                             $7::timestamptz[]) AS u(id, status, code, latency, error, excerpt, next)
                 WHERE d.id = u.id",
            )
            .bind(&ids)
            .bind(&statuses)
            .bind(&codes)
            .bind(&latencies)
            .bind(&errors)
            .bind(&excerpts)
            .bind(&nexts)
            .bind(now)
            .execute(&mut *c)
            .await?;
            return Ok(());
        }
        for a in rows {
            let (error, excerpt) = (a.error.as_deref(), a.excerpt.as_deref());
            self.record_attempt(a.id, &a.status, a.http_status, a.latency_ms, error, excerpt, a.next, now).await?;
        }
        Ok(())
    }

    /// Records one attempt's outcome: `next` is when to retry, `None` when done.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_attempt(
        &mut self,
        id: i64,
        status: &str,
        http_status: Option<i32>,
        latency_ms: f64,
        error: Option<&str>,
        excerpt: Option<&str>,
        next: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        on!(self, |c| {
            sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, last_status = $2, last_latency_ms = $3,
                 last_error = $4, response_excerpt = $5, next_attempt_at = COALESCE($6, next_attempt_at), locked_until = NULL,
                 delivered_at = CASE WHEN $1 = 'succeeded' THEN $7 ELSE delivered_at END
             WHERE id = $8"
        )
        .bind(status)
        .bind(http_status)
        .bind(latency_ms)
        .bind(error)
        .bind(excerpt)
        .bind(next)
        .bind(now)
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
        })?;
        Ok(())
    }

    pub async fn list_deliveries(
        &mut self,
        tenant: TenantId,
        webhook: i64,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Delivery>, i64)> {
        let sql = format!(
            "SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE tenant_id = $1 AND webhook_id = $2 ORDER BY id DESC LIMIT $3 OFFSET $4"
        );
        let rows: Vec<Delivery> = on!(self, |c| sqlx::query_as(&sql)
            .bind(tenant.0)
            .bind(webhook)
            .bind(limit)
            .bind(offset)
            .fetch_all(c)
            .await)?;
        let total: i64 = on!(self, |c| sqlx::query_scalar(
            "SELECT COUNT(*) FROM webhook_deliveries WHERE tenant_id = $1 AND webhook_id = $2"
        )
        .bind(tenant.0)
        .bind(webhook)
        .fetch_one(c)
        .await)?;
        Ok((rows, total))
    }

    pub async fn delivery(&mut self, tenant: TenantId, id: i64) -> Result<Delivery> {
        let sql = format!("SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE tenant_id = $1 AND id = $2");
        let row: Option<Delivery> =
            on!(self, |c| sqlx::query_as(&sql).bind(tenant.0).bind(id).fetch_optional(c).await)?;
        row.ok_or(StoreError::NotFound)
    }

    /// Schedules a delivery again, now (a manual redelivery).
    pub async fn requeue_delivery(&mut self, tenant: TenantId, id: i64, now: DateTime<Utc>) -> Result<bool> {
        let n = on!(self, |c| sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $1, locked_until = NULL
             WHERE tenant_id = $2 AND id = $3"
        )
        .bind(now)
        .bind(tenant.0)
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(events: &str) -> Webhook {
        Webhook {
            id: 1,
            tenant_id: 1,
            url: String::new(),
            events: events.into(),
            secret: String::new(),
            previous_secret: None,
            previous_secret_until: None,
            status: "active".into(),
            disabled_reason: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn subscriptions_match_names_categories_and_everything() {
        assert!(hook("*").subscribed_to("lead.created"));
        assert!(hook("lead.* deal.created").subscribed_to("lead.stage_changed"));
        assert!(hook("lead.* deal.created").subscribed_to("deal.created"));
        assert!(!hook("lead.* deal.created").subscribed_to("deal.updated"));
        assert!(!hook("lead.*").subscribed_to("leads.created"));
        assert!(hook("form.*").subscribed_to("form.submission.created"));
    }
}

/// One attempt's outcome, for [`Conn::record_attempts`].
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub id: i64,
    pub status: String,
    pub http_status: Option<i32>,
    pub latency_ms: f64,
    pub error: Option<String>,
    pub excerpt: Option<String>,
    /// When to retry; `None` when done.
    pub next: Option<DateTime<Utc>>,
}

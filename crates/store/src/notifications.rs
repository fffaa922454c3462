//! Notices to a workspace's owners (a webhook endpoint disabled): written in the transaction of
//! the change they report, claimed and emailed by the notifier, listed by the API.

use cairn_domain::TenantId;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{Conn, Result};

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Notification {
    pub id: i64,
    #[serde(skip)]
    pub tenant_id: i64,
    /// What happened: `webhook.disabled`.
    pub kind: String,
    pub subject: String,
    pub body: String,
    /// `pending` (to be emailed to the owners), `sent`, or `unsent` (no SMTP server, no owner,
    /// or every attempt failed; `last_error` says which).
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    #[serde(skip)]
    pub next_attempt_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

const COLS: &str =
    "id, tenant_id, kind, subject, body, status, attempts, last_error, next_attempt_at, created_at, sent_at";

impl Conn {
    pub async fn insert_notification(
        &mut self,
        tenant: TenantId,
        kind: &str,
        subject: &str,
        body: &str,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        Ok(on!(self, |c| sqlx::query_scalar(
            "INSERT INTO notifications (tenant_id, kind, subject, body, status, next_attempt_at, created_at)
             VALUES ($1, $2, $3, $4, 'pending', $5, $5) RETURNING id"
        )
        .bind(tenant.0)
        .bind(kind)
        .bind(subject)
        .bind(body)
        .bind(now)
        .fetch_one(c)
        .await)?)
    }

    pub async fn notifications(
        &mut self,
        tenant: TenantId,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Notification>, i64)> {
        let w = crate::crm::Where::tenant(tenant);
        let from = format!("FROM notifications WHERE {}", w.sql());
        crate::crm::page(self, COLS, &from, "id DESC", &w.args, limit, offset).await
    }

    /// Claims up to `limit` due notices until `lease_until` (another instance skips them).
    pub async fn claim_notifications(
        &mut self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Notification>> {
        let sql = format!(
            "SELECT {COLS} FROM notifications WHERE status = 'pending' AND next_attempt_at <= $1 ORDER BY id LIMIT $2"
        );
        let due: Vec<Notification> = on!(self, |c| sqlx::query_as(&sql).bind(now).bind(limit).fetch_all(c).await)?;
        let mut claimed = Vec::with_capacity(due.len());
        for n in due {
            // Compare-and-set on the due time: of two instances, one wins each notice.
            let won = on!(self, |c| {
                sqlx::query(
                "UPDATE notifications SET next_attempt_at = $1 WHERE id = $2 AND status = 'pending' AND next_attempt_at = $3"
            )
            .bind(lease_until)
            .bind(n.id)
            .bind(n.next_attempt_at)
            .execute(c)
            .await
            .map(|r| r.rows_affected())
            })?;
            if won == 1 {
                claimed.push(n);
            }
        }
        Ok(claimed)
    }

    /// Records an attempt: `status` sent, unsent, or pending again at `retry_at`.
    pub async fn finish_notification(
        &mut self,
        id: i64,
        status: &str,
        error: Option<&str>,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        on!(self, |c| sqlx::query(
            "UPDATE notifications SET status = $1, attempts = attempts + 1, last_error = $2,
                 next_attempt_at = COALESCE($3, next_attempt_at),
                 sent_at = CASE WHEN $1 = 'sent' THEN $4 ELSE sent_at END
             WHERE id = $5"
        )
        .bind(status)
        .bind(error)
        .bind(retry_at)
        .bind(now)
        .bind(id)
        .execute(c)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// The email addresses of a workspace's owners.
    pub async fn owner_emails(&mut self, tenant: TenantId) -> Result<Vec<String>> {
        Ok(on!(self, |c| sqlx::query_scalar(
            "SELECT u.email FROM memberships m JOIN users u ON u.id = m.user_id
             WHERE m.tenant_id = $1 AND m.role = 'owner' ORDER BY u.id"
        )
        .bind(tenant.0)
        .fetch_all(c)
        .await)?)
    }
}

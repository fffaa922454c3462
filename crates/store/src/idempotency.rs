//! Stored first responses of mutating requests, keyed by the client's `Idempotency-Key`.

use cairn_domain::TenantId;
use chrono::{DateTime, Utc};

use crate::{Conn, Result};

/// The state of an idempotency key when a request presents it.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// First use (or a stale in-progress claim taken over): run the request.
    Fresh,
    /// Another request with this key is still running.
    InProgress,
    /// Already answered: replay this response if the request hash matches.
    Done { request_hash: String, status: u16, content_type: Option<String>, body: Vec<u8> },
    /// Used before with a different request body.
    Mismatch,
}

#[derive(sqlx::FromRow)]
struct Row {
    request_hash: String,
    status: Option<i32>,
    content_type: Option<String>,
    response_body: Option<Vec<u8>>,
    locked_until: DateTime<Utc>,
    created_at: DateTime<Utc>,
}

pub struct IdemKey<'a> {
    pub tenant: TenantId,
    pub principal: &'a str,
    pub key: &'a str,
}

impl Conn {
    /// Claims a key for a request. Each statement is atomic on its own, so two concurrent
    /// requests with one key never both get [`Claim::Fresh`]: the insert decides, and a
    /// takeover of a stale claim is a compare-and-set on `locked_until`. Entries created
    /// before `expire_before` count as absent.
    pub async fn claim_idempotency_key(
        &mut self,
        k: &IdemKey<'_>,
        request_hash: &str,
        now: DateTime<Utc>,
        lock_until: DateTime<Utc>,
        expire_before: DateTime<Utc>,
    ) -> Result<Claim> {
        let inserted = on!(self, |c| {
            sqlx::query(
                "INSERT INTO idempotency_keys (tenant_id, principal, idem_key, request_hash, locked_until, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, principal, idem_key) DO NOTHING",
            )
            .bind(k.tenant.0)
            .bind(k.principal)
            .bind(k.key)
            .bind(request_hash)
            .bind(lock_until)
            .bind(now)
            .execute(c)
            .await
            .map(|r| r.rows_affected())
        })?;
        if inserted == 1 {
            return Ok(Claim::Fresh);
        }
        let row: Option<Row> = on!(self, |c| sqlx::query_as(
            "SELECT request_hash, status, content_type, response_body, locked_until, created_at
             FROM idempotency_keys WHERE tenant_id = $1 AND principal = $2 AND idem_key = $3"
        )
        .bind(k.tenant.0)
        .bind(k.principal)
        .bind(k.key)
        .fetch_optional(c)
        .await)?;
        let Some(row) = row else {
            // Purged between the two statements: the caller may simply retry.
            return Ok(Claim::InProgress);
        };
        let expired = row.created_at < expire_before;
        if !expired {
            if row.request_hash != request_hash {
                return Ok(Claim::Mismatch);
            }
            match row.status {
                Some(status) => {
                    return Ok(Claim::Done {
                        request_hash: row.request_hash,
                        status: status as u16,
                        content_type: row.content_type,
                        body: row.response_body.unwrap_or_default(),
                    })
                }
                None if row.locked_until > now => return Ok(Claim::InProgress),
                None => {} // the first attempt died mid-request: take it over
            }
        }
        let taken = on!(self, |c| sqlx::query(
            "UPDATE idempotency_keys SET request_hash = $1, status = NULL, content_type = NULL,
                response_body = NULL, locked_until = $2, created_at = $3
             WHERE tenant_id = $4 AND principal = $5 AND idem_key = $6 AND locked_until = $7"
        )
        .bind(request_hash)
        .bind(lock_until)
        .bind(now)
        .bind(k.tenant.0)
        .bind(k.principal)
        .bind(k.key)
        .bind(row.locked_until)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(if taken == 1 { Claim::Fresh } else { Claim::InProgress })
    }

    pub async fn complete_idempotency_key(
        &mut self,
        k: &IdemKey<'_>,
        status: u16,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<()> {
        on!(self, |c| sqlx::query(
            "UPDATE idempotency_keys SET status = $1, content_type = $2, response_body = $3
             WHERE tenant_id = $4 AND principal = $5 AND idem_key = $6"
        )
        .bind(status as i32)
        .bind(content_type)
        .bind(body)
        .bind(k.tenant.0)
        .bind(k.principal)
        .bind(k.key)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Forgets a claim whose request failed on the server's side, so a retry can run.
    pub async fn release_idempotency_key(&mut self, k: &IdemKey<'_>) -> Result<()> {
        on!(self, |c| {
            sqlx::query(
            "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND principal = $2 AND idem_key = $3 AND status IS NULL"
        )
        .bind(k.tenant.0)
        .bind(k.principal)
        .bind(k.key)
        .execute(c)
        .await.map(|r| r.rows_affected())
        })?;
        Ok(())
    }

    pub async fn purge_idempotency_keys(&mut self, before: DateTime<Utc>) -> Result<u64> {
        let done = on!(self, |c| sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(before)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(done)
    }
}

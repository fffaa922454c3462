//! Background work as rows, claimed with leases (DESIGN.md: "work is claimed, not owned").
//! A claimed job belongs to its worker until `locked_until`; after that any instance may take
//! it over, so a crashed instance's work is never lost, and job bodies must be idempotent.

use cairn_domain::TenantId;
use chrono::{DateTime, Utc};

use crate::{Backend, Conn, Result, StoreError};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Job {
    pub id: i64,
    pub tenant_id: Option<i64>,
    pub kind: String,
    pub dedupe_key: Option<String>,
    pub payload: String,
    pub status: String,
    pub attempts: i32,
    pub run_at: DateTime<Utc>,
    pub locked_by: Option<String>,
    pub locked_until: Option<DateTime<Utc>>,
    pub progress: Option<String>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub struct NewJob<'a> {
    pub tenant_id: Option<TenantId>,
    pub kind: &'a str,
    /// At most one job with this key exists; enqueueing it again returns the existing one.
    pub dedupe_key: Option<&'a str>,
    pub payload: &'a str,
    pub run_at: DateTime<Utc>,
    pub now: DateTime<Utc>,
}

const COLS: &str = "id, tenant_id, kind, dedupe_key, payload, status, attempts, run_at, locked_by, \
                    locked_until, progress, last_error, created_at, updated_at";

impl Conn {
    /// Adds a job; with a dedupe key already present, returns the existing job's id.
    pub async fn enqueue_job(&mut self, j: &NewJob<'_>) -> Result<i64> {
        let inserted: Option<i64> = on!(self, |c| {
            sqlx::query_scalar(
                "INSERT INTO jobs (tenant_id, kind, dedupe_key, payload, status, run_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, 'pending', $5, $6, $6)
             ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
            )
            .bind(j.tenant_id.map(|t| t.0))
            .bind(j.kind)
            .bind(j.dedupe_key)
            .bind(j.payload)
            .bind(j.run_at)
            .bind(j.now)
            .fetch_optional(c)
            .await
        })?;
        if let Some(id) = inserted {
            return Ok(id);
        }
        let id: Option<i64> = on!(self, |c| sqlx::query_scalar("SELECT id FROM jobs WHERE dedupe_key = $1")
            .bind(j.dedupe_key)
            .fetch_optional(c)
            .await)?;
        id.ok_or(StoreError::NotFound)
    }

    /// Claims up to `limit` due jobs of `kind`: pending ones whose time has come, and running
    /// ones whose lease ran out (their worker died). On PostgreSQL `SKIP LOCKED` lets several
    /// instances claim at once without waiting on each other; SQLite has a single writer.
    pub async fn claim_jobs(
        &mut self,
        kind: &str,
        worker: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Job>> {
        let lock = match self.backend() {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE jobs SET status = 'running', locked_by = $1, locked_until = $2,
                 attempts = attempts + 1, updated_at = $3
             WHERE id IN (
                 SELECT id FROM jobs
                 WHERE kind = $4 AND ((status = 'pending' AND run_at <= $3)
                                   OR (status = 'running' AND locked_until < $3))
                 ORDER BY run_at, id LIMIT $5 {lock})
             RETURNING {COLS}"
        );
        let mut jobs: Vec<Job> = on!(self, |c| sqlx::query_as(&sql)
            .bind(worker)
            .bind(lease_until)
            .bind(now)
            .bind(kind)
            .bind(limit)
            .fetch_all(c)
            .await)?;
        jobs.sort_by_key(|j| (j.run_at, j.id));
        Ok(jobs)
    }

    /// Marks a job done, if this worker still holds it.
    pub async fn complete_job(&mut self, id: i64, worker: &str, now: DateTime<Utc>) -> Result<bool> {
        let done = on!(self, |c| {
            sqlx::query(
                "UPDATE jobs SET status = 'done', locked_by = NULL, locked_until = NULL, updated_at = $1
             WHERE id = $2 AND locked_by = $3 AND status = 'running'",
            )
            .bind(now)
            .bind(id)
            .bind(worker)
            .execute(c)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(done == 1)
    }

    /// Records a failure: retried at `retry_at`, or failed for good when it is `None`.
    pub async fn fail_job(
        &mut self,
        id: i64,
        worker: &str,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let (status, run_at) = match retry_at {
            Some(t) => ("pending", t),
            None => ("failed", now),
        };
        let done = on!(self, |c| sqlx::query(
            "UPDATE jobs SET status = $1, run_at = $2, last_error = $3, locked_by = NULL,
                 locked_until = NULL, updated_at = $4
             WHERE id = $5 AND locked_by = $6 AND status = 'running'"
        )
        .bind(status)
        .bind(run_at)
        .bind(error)
        .bind(now)
        .bind(id)
        .bind(worker)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// Extends a lease and records progress; false when the lease was lost to another worker.
    pub async fn heartbeat_job(
        &mut self,
        id: i64,
        worker: &str,
        lease_until: DateTime<Utc>,
        progress: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let done = on!(self, |c| {
            sqlx::query(
                "UPDATE jobs SET locked_until = $1, progress = COALESCE($2, progress), updated_at = $3
             WHERE id = $4 AND locked_by = $5 AND status = 'running'",
            )
            .bind(lease_until)
            .bind(progress)
            .bind(now)
            .bind(id)
            .bind(worker)
            .execute(c)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(done == 1)
    }

    pub async fn job(&mut self, id: i64) -> Result<Job> {
        let sql = format!("SELECT {COLS} FROM jobs WHERE id = $1");
        let row: Option<Job> = on!(self, |c| sqlx::query_as(&sql).bind(id).fetch_optional(c).await)?;
        row.ok_or(StoreError::NotFound)
    }

    /// Pending and running jobs per kind, for `/metrics`.
    pub async fn job_depths(&mut self) -> Result<Vec<(String, String, i64)>> {
        Ok(on!(self, |c| sqlx::query_as(
            "SELECT kind, status, COUNT(*) FROM jobs WHERE status IN ('pending', 'running')
             GROUP BY kind, status ORDER BY kind, status"
        )
        .fetch_all(c)
        .await)?)
    }

    /// Deletes finished jobs last updated before `before`.
    pub async fn purge_jobs(&mut self, before: DateTime<Utc>) -> Result<u64> {
        let done =
            on!(self, |c| sqlx::query("DELETE FROM jobs WHERE status IN ('done', 'failed') AND updated_at < $1")
                .bind(before)
                .execute(c)
                .await
                .map(|r| r.rows_affected()))?;
        Ok(done)
    }
}

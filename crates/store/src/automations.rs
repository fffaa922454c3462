//! Automations (docs/automations.md): definitions with their draft design (`automations`),
//! immutable published versions (`automation_versions`), durable runs (`automation_runs`) with
//! their step history (`automation_steps`), tracked events some automation listens for
//! (`automation_signals`), and the trigger intake's mark on the outbox (`automated_at`).
//!
//! Due runs are taken inside the transaction that moves them (row locks with `SKIP LOCKED` on
//! PostgreSQL, the write lock on SQLite) and moved with a compare-and-set on their `rev`, so
//! each step — and the side effects written in the same transaction — happens once, whatever
//! crashes and however many instances.

use std::collections::{HashMap, HashSet};

use cairn_domain::TenantId;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;

use crate::{db::Raw, webhooks::OutboxRow, Backend, Conn, Result, StoreError};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AutomationRow {
    pub id: i64,
    pub tenant_id: i64,
    pub name: String,
    pub trigger_type: String,
    pub trigger_config: Json<Value>,
    /// once, once_at_a_time, every_time.
    pub reentry: String,
    pub exit_filter: Option<Json<Value>>,
    pub design: Json<Value>,
    pub is_active: bool,
    /// The latest published version (0: never activated).
    pub version: i64,
    pub active_version: Option<i64>,
    pub webhook_token: String,
    pub listens: String,
    pub next_tick_at: Option<DateTime<Utc>>,
    pub activated_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLS: &str =
    "id, tenant_id, name, trigger_type, trigger_config, reentry, exit_filter, design, is_active, version, \
                    active_version, webhook_token, listens, next_tick_at, activated_at, created_at, updated_at";

/// See [`Conn::automations_stamp`].
pub type AutomationsStamp = [i64; 4];

/// What [`Conn::intake_pending`] found.
#[derive(Debug, Clone, Copy, Default)]
pub struct IntakePending {
    pub outbox: bool,
    pub signals: bool,
    pub ticks: bool,
}

/// The writable fields of an automation.
#[derive(Debug, Clone)]
pub struct AutomationFields {
    pub name: String,
    pub trigger_type: String,
    pub trigger_config: Value,
    pub reentry: String,
    pub exit_filter: Option<Value>,
    pub design: Value,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct VersionRow {
    pub automation_id: i64,
    pub version: i64,
    pub tenant_id: i64,
    pub design: Json<Value>,
    pub trigger_type: String,
    pub trigger_config: Json<Value>,
    pub reentry: String,
    pub exit_filter: Option<Json<Value>>,
    /// Node id → the triggered campaign or webhook endpoint it sends through.
    pub bindings: Json<Value>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RunRow {
    pub id: i64,
    pub tenant_id: i64,
    pub automation_id: i64,
    pub version: i64,
    pub customer_id: i64,
    pub occurrence: String,
    pub live: Option<i64>,
    /// active (due), waiting, completed, exited, failed, cancelled.
    pub status: String,
    pub node: String,
    /// At a delay or wait whose clock is running.
    pub parked: bool,
    /// The event a wait was waiting for happened.
    pub matched: bool,
    pub wait_event: Option<String>,
    pub due_at: Option<DateTime<Utc>>,
    pub rev: i64,
    pub context: Json<Value>,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub parked_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

const RUN_COLS: &str = "id, tenant_id, automation_id, version, customer_id, occurrence, live, status, node, parked, \
                        matched, wait_event, due_at, rev, context, error, started_at, parked_at, updated_at, \
                        finished_at";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StepRow {
    pub id: i64,
    pub run_id: i64,
    pub automation_id: i64,
    pub version: i64,
    pub node: String,
    pub kind: String,
    pub outcome: String,
    pub detail: Json<Value>,
    pub at: DateTime<Utc>,
}

/// A run to start.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub tenant_id: i64,
    pub automation_id: i64,
    pub version: i64,
    pub customer_id: i64,
    pub occurrence: String,
    /// Once at a time: no second run of the automation while this one is in flight.
    pub exclusive: bool,
    pub node: String,
    pub context: Value,
}

/// Where a run is after a step.
#[derive(Debug, Clone)]
pub struct RunUpdate {
    pub id: i64,
    pub rev: i64,
    pub status: &'static str,
    pub node: String,
    pub parked: bool,
    pub matched: bool,
    pub wait_event: Option<String>,
    pub due_at: Option<DateTime<Utc>>,
    pub parked_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

impl RunUpdate {
    pub fn finished(&self) -> bool {
        matches!(self.status, "completed" | "exited" | "failed" | "cancelled")
    }
}

#[derive(Debug, Clone)]
pub struct NewStep {
    pub run_id: i64,
    pub automation_id: i64,
    pub version: i64,
    pub node: String,
    pub kind: &'static str,
    pub outcome: String,
    pub detail: Value,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SignalRow {
    pub id: i64,
    pub tenant_id: i64,
    pub customer_id: i64,
    pub name: String,
    pub message_id: String,
    pub properties: Json<Value>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewSignal {
    pub tenant_id: i64,
    pub customer_id: i64,
    pub name: String,
    pub message_id: String,
    pub properties: Value,
    pub at: DateTime<Utc>,
}

/// Per-node counts for a builder: runs that entered the node, are at it now (waiting or due),
/// left it, and failed at it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeCounts {
    pub entered: i64,
    pub waiting: i64,
    pub completed: i64,
    pub failed: i64,
}

/// The scheduler's query for due runs: the batch, in due order, read straight off
/// `automation_runs_due (due_at, id)` (migration 0013) with no sort.
pub(crate) fn due_runs_sql(backend: Backend) -> String {
    let lock = if backend == Backend::Postgres { "FOR UPDATE SKIP LOCKED" } else { "" };
    format!(
        "SELECT {RUN_COLS} FROM automation_runs WHERE due_at IS NOT NULL AND due_at <= $1
         ORDER BY due_at, id LIMIT $2 {lock}"
    )
}

impl Conn {
    pub async fn insert_automation(
        &mut self,
        tenant: TenantId,
        f: &AutomationFields,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<AutomationRow> {
        let sql = format!(
            "INSERT INTO automations (tenant_id, name, trigger_type, trigger_config, reentry, exit_filter, design,
                 webhook_token, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING {COLS}"
        );
        Ok(on!(self, |c| sqlx::query_as(&sql)
            .bind(tenant.0)
            .bind(&f.name)
            .bind(&f.trigger_type)
            .bind(Json(&f.trigger_config))
            .bind(&f.reentry)
            .bind(f.exit_filter.as_ref().map(Json))
            .bind(Json(&f.design))
            .bind(token)
            .bind(now)
            .fetch_one(c)
            .await)?)
    }

    pub async fn automation(&mut self, tenant: TenantId, id: i64) -> Result<AutomationRow> {
        let sql = format!("SELECT {COLS} FROM automations WHERE tenant_id = $1 AND id = $2");
        let row: Option<AutomationRow> =
            on!(self, |c| sqlx::query_as(&sql).bind(tenant.0).bind(id).fetch_optional(c).await)?;
        row.ok_or(StoreError::NotFound)
    }

    pub async fn automation_by_token(&mut self, token: &str) -> Result<AutomationRow> {
        let sql = format!("SELECT {COLS} FROM automations WHERE webhook_token = $1");
        let row: Option<AutomationRow> = on!(self, |c| sqlx::query_as(&sql).bind(token).fetch_optional(c).await)?;
        row.ok_or(StoreError::NotFound)
    }

    pub async fn list_automations(
        &mut self,
        tenant: TenantId,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<AutomationRow>, i64)> {
        let sql = format!("SELECT {COLS} FROM automations WHERE tenant_id = $1 ORDER BY id LIMIT $2 OFFSET $3");
        let rows = on!(self, |c| sqlx::query_as(&sql).bind(tenant.0).bind(limit).bind(offset).fetch_all(c).await)?;
        let total: i64 = on!(self, |c| sqlx::query_scalar("SELECT COUNT(*) FROM automations WHERE tenant_id = $1")
            .bind(tenant.0)
            .fetch_one(c)
            .await)?;
        Ok((rows, total))
    }

    /// The active automations of every workspace (the trigger intake caches them).
    pub async fn active_automations(&mut self) -> Result<Vec<AutomationRow>> {
        let sql = format!("SELECT {COLS} FROM automations WHERE is_active = TRUE ORDER BY id");
        Ok(on!(self, |c| sqlx::query_as(&sql).fetch_all(c).await)?)
    }

    /// A cheap fingerprint of what the trigger intake caches: changes whenever an automation is
    /// created, deleted, published or turned on or off (whatever the clock says).
    pub async fn automations_stamp(&mut self) -> Result<AutomationsStamp> {
        let (count, max_id, versions, active): (i64, Option<i64>, Option<i64>, Option<i64>) = on!(self, |c| {
            sqlx::query_as(
                "SELECT COUNT(*), MAX(id), CAST(SUM(version) AS BIGINT), CAST(SUM(CASE WHEN is_active THEN 1 ELSE 0 END) AS BIGINT)
                 FROM automations",
            )
            .fetch_one(c)
            .await
        })?;
        Ok([count, max_id.unwrap_or(0), versions.unwrap_or(0), active.unwrap_or(0)])
    }

    pub async fn update_automation(
        &mut self,
        tenant: TenantId,
        id: i64,
        f: &AutomationFields,
        now: DateTime<Utc>,
    ) -> Result<AutomationRow> {
        let sql = format!(
            "UPDATE automations SET name = $1, trigger_type = $2, trigger_config = $3, reentry = $4, exit_filter = $5,
                 design = $6, updated_at = $7
             WHERE tenant_id = $8 AND id = $9 RETURNING {COLS}"
        );
        let row: Option<AutomationRow> = on!(self, |c| sqlx::query_as(&sql)
            .bind(&f.name)
            .bind(&f.trigger_type)
            .bind(Json(&f.trigger_config))
            .bind(&f.reentry)
            .bind(f.exit_filter.as_ref().map(Json))
            .bind(Json(&f.design))
            .bind(now)
            .bind(tenant.0)
            .bind(id)
            .fetch_optional(c)
            .await)?;
        row.ok_or(StoreError::NotFound)
    }

    /// Deletes an automation with its versions, runs and steps.
    pub async fn delete_automation(&mut self, tenant: TenantId, id: i64) -> Result<bool> {
        let n = on!(self, |c| sqlx::query("DELETE FROM automations WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.0)
            .bind(id)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Publishes the automation's current fields as its next version and makes it the active
    /// one. Returns the version number.
    #[allow(clippy::too_many_arguments)]
    pub async fn publish_automation(
        &mut self,
        a: &AutomationRow,
        bindings: &Value,
        listens: &[String],
        next_tick: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        let version = a.version + 1;
        on!(self, |c| sqlx::query(
            "INSERT INTO automation_versions (automation_id, version, tenant_id, design, trigger_type, trigger_config,
                 reentry, exit_filter, bindings, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        )
        .bind(a.id)
        .bind(version)
        .bind(a.tenant_id)
        .bind(&a.design)
        .bind(&a.trigger_type)
        .bind(&a.trigger_config)
        .bind(&a.reentry)
        .bind(&a.exit_filter)
        .bind(Json(bindings))
        .bind(now)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        let mut all: Vec<String> = serde_json::from_str(&a.listens).unwrap_or_default();
        all.extend(listens.iter().cloned());
        all.sort_unstable();
        all.dedup();
        let listens = serde_json::to_string(&all).expect("strings serialise");
        on!(self, |c| sqlx::query(
            "UPDATE automations SET version = $1, active_version = $1, is_active = TRUE, activated_at = $2,
                 next_tick_at = $3, listens = $4, updated_at = $2
             WHERE id = $5"
        )
        .bind(version)
        .bind(now)
        .bind(next_tick)
        .bind(listens)
        .bind(a.id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(version)
    }

    /// Turns an automation on (again, at its latest version) or off.
    pub async fn set_automation_active(
        &mut self,
        tenant: TenantId,
        id: i64,
        active: bool,
        next_tick: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        on!(self, |c| sqlx::query(
            "UPDATE automations SET is_active = $1,
                 active_version = CASE WHEN $1 THEN version ELSE NULL END,
                 activated_at = CASE WHEN $1 THEN $2 ELSE activated_at END,
                 next_tick_at = $3, updated_at = $2
             WHERE tenant_id = $4 AND id = $5"
        )
        .bind(active)
        .bind(now)
        .bind(next_tick)
        .bind(tenant.0)
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn automation_version(&mut self, automation: i64, version: i64) -> Result<VersionRow> {
        let row: Option<VersionRow> = on!(self, |c| sqlx::query_as(
            "SELECT automation_id, version, tenant_id, design, trigger_type, trigger_config, reentry, exit_filter,
                 bindings, created_at
             FROM automation_versions WHERE automation_id = $1 AND version = $2"
        )
        .bind(automation)
        .bind(version)
        .fetch_optional(c)
        .await)?;
        row.ok_or(StoreError::NotFound)
    }

    /// Active automations whose schedule or date trigger is due.
    pub async fn due_automation_ticks(&mut self, now: DateTime<Utc>) -> Result<Vec<AutomationRow>> {
        let sql = format!(
            "SELECT {COLS} FROM automations WHERE next_tick_at IS NOT NULL AND next_tick_at <= $1 AND is_active = TRUE
             ORDER BY next_tick_at LIMIT 100"
        );
        Ok(on!(self, |c| sqlx::query_as(&sql).bind(now).fetch_all(c).await)?)
    }

    /// Moves a tick on; false when another instance did it first.
    pub async fn advance_tick(&mut self, id: i64, from: DateTime<Utc>, to: Option<DateTime<Utc>>) -> Result<bool> {
        let n =
            on!(self, |c| sqlx::query("UPDATE automations SET next_tick_at = $1 WHERE id = $2 AND next_tick_at = $3")
                .bind(to)
                .bind(id)
                .bind(from)
                .execute(c)
                .await
                .map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// The event names the automations of these workspaces listen for.
    pub async fn automation_listens(&mut self, tenants: &[i64]) -> Result<HashMap<i64, Vec<String>>> {
        let mut out: HashMap<i64, Vec<String>> = HashMap::new();
        for chunk in tenants.chunks(500) {
            let rows: Vec<(i64, String)> = on!(self, |c| {
                let mut qb = sqlx::QueryBuilder::new(
                    "SELECT tenant_id, listens FROM automations WHERE listens <> '[]' AND tenant_id IN (",
                );
                let mut sep = qb.separated(", ");
                for t in chunk {
                    sep.push_bind(*t);
                }
                qb.push(")");
                qb.build_query_as().fetch_all(c).await
            })?;
            for (t, l) in rows {
                let names: Vec<String> = serde_json::from_str(&l).unwrap_or_default();
                out.entry(t).or_default().extend(names);
            }
        }
        Ok(out)
    }

    // ---- runs ----

    /// Starts runs; those that collide with an existing one (the same occurrence, or one in
    /// flight when only one at a time may be) are left out. Returns the new runs' (id, index
    /// into `runs`).
    pub async fn insert_runs(&mut self, runs: &[NewRun], now: DateTime<Utc>) -> Result<Vec<(i64, usize)>> {
        let mut out = Vec::new();
        if let Raw::Postgres(c) = self.raw() {
            // One statement per 5,000 runs; the new rows come back by their occurrence key
            // (unique per automation and customer), which finds each one's index again.
            for (base, chunk) in runs.chunks(5_000).enumerate().map(|(k, c)| (k * 5_000, c)) {
                let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(
                    "INSERT INTO automation_runs (tenant_id, automation_id, version, customer_id, occurrence, live,
                         status, node, due_at, context, started_at, updated_at)
                     SELECT u.tenant_id, u.automation_id, u.version, u.customer_id, u.occurrence, u.live, 'active',
                            u.node, $9, u.context::jsonb, $9, $9
                     FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::bigint[],
                                 $7::text[], $8::text[])
                          AS u(tenant_id, automation_id, version, customer_id, occurrence, live, node, context)
                     ON CONFLICT DO NOTHING RETURNING id, automation_id, customer_id, occurrence",
                )
                .bind(chunk.iter().map(|r| r.tenant_id).collect::<Vec<_>>())
                .bind(chunk.iter().map(|r| r.automation_id).collect::<Vec<_>>())
                .bind(chunk.iter().map(|r| r.version).collect::<Vec<_>>())
                .bind(chunk.iter().map(|r| r.customer_id).collect::<Vec<_>>())
                .bind(chunk.iter().map(|r| r.occurrence.clone()).collect::<Vec<_>>())
                .bind(chunk.iter().map(|r| r.exclusive.then_some(1i64)).collect::<Vec<_>>())
                .bind(chunk.iter().map(|r| r.node.clone()).collect::<Vec<_>>())
                .bind(chunk.iter().map(|r| r.context.to_string()).collect::<Vec<_>>())
                .bind(now)
                .fetch_all(&mut *c)
                .await?;
                let mut index: HashMap<(i64, i64, &str), usize> = HashMap::new();
                for (i, r) in chunk.iter().enumerate().rev() {
                    index.insert((r.automation_id, r.customer_id, r.occurrence.as_str()), base + i);
                }
                let mut found: Vec<(i64, usize)> = rows
                    .iter()
                    .filter_map(|(id, a, cu, o)| index.get(&(*a, *cu, o.as_str())).map(|i| (*id, *i)))
                    .collect();
                found.sort_unstable_by_key(|(_, i)| *i);
                out.extend(found);
            }
            return Ok(out);
        }
        for (i, r) in runs.iter().enumerate() {
            let id: Option<i64> = on!(self, |c| {
                sqlx::query_scalar(
                "INSERT INTO automation_runs (tenant_id, automation_id, version, customer_id, occurrence, live, status,
                     node, due_at, context, started_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $8, $9, $8, $8)
                 ON CONFLICT DO NOTHING RETURNING id"
            )
            .bind(r.tenant_id)
            .bind(r.automation_id)
            .bind(r.version)
            .bind(r.customer_id)
            .bind(&r.occurrence)
            .bind(r.exclusive.then_some(1i64))
            .bind(&r.node)
            .bind(now)
            .bind(Json(&r.context))
            .fetch_optional(c)
            .await
            })?;
            if let Some(id) = id {
                out.push((id, i));
            }
        }
        Ok(out)
    }

    /// Up to `limit` runs due at `now` (the injected clock), oldest due first — locked for this
    /// transaction on PostgreSQL (other instances skip them), and on SQLite held by the
    /// transaction's write lock.
    pub async fn due_runs(&mut self, now: DateTime<Utc>, limit: i64) -> Result<Vec<RunRow>> {
        let sql = due_runs_sql(self.backend());
        if self.backend() == Backend::Sqlite {
            // Take the write lock before reading, so that nothing moves these rows meanwhile.
            on!(self, |c| sqlx::query("UPDATE automation_runs SET rev = rev WHERE id = -1")
                .execute(c)
                .await
                .map(|r| r.rows_affected()))?;
        }
        Ok(on!(self, |c| sqlx::query_as(&sql).bind(now).bind(limit).fetch_all(c).await)?)
    }

    /// The earliest time a run falls due (for the scheduler's sleep).
    pub async fn next_run_due(&mut self) -> Result<Option<DateTime<Utc>>> {
        Ok(on!(self, |c| sqlx::query_scalar("SELECT MIN(due_at) FROM automation_runs WHERE due_at IS NOT NULL")
            .fetch_one(c)
            .await)?)
    }

    /// Moves runs on, each only if it is still as it was read (`rev`). Returns the ids moved
    /// (one statement per 5,000 runs on PostgreSQL, per 1,000 on SQLite).
    pub async fn update_runs(&mut self, updates: &[RunUpdate], now: DateTime<Utc>) -> Result<HashSet<i64>> {
        let mut moved = HashSet::new();
        if let Raw::Postgres(c) = self.raw() {
            for chunk in updates.chunks(5_000) {
                let ids: Vec<i64> = sqlx::query_scalar(
                    "UPDATE automation_runs r SET status = u.status, node = u.node, parked = u.parked, matched = u.matched,
                         wait_event = u.wait_event, due_at = u.due_at, parked_at = u.parked_at, error = u.error,
                         rev = r.rev + 1, updated_at = $11,
                         finished_at = CASE WHEN u.status IN ('completed', 'exited', 'failed', 'cancelled') THEN $11 END,
                         live = CASE WHEN u.status IN ('completed', 'exited', 'failed', 'cancelled') THEN NULL ELSE r.live END
                     FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bool[], $6::bool[], $7::text[],
                                 $8::timestamptz[], $9::timestamptz[], $10::text[])
                          AS u(id, rev, status, node, parked, matched, wait_event, due_at, parked_at, error)
                     WHERE r.id = u.id AND r.rev = u.rev
                     RETURNING r.id",
                )
                .bind(chunk.iter().map(|u| u.id).collect::<Vec<_>>())
                .bind(chunk.iter().map(|u| u.rev).collect::<Vec<_>>())
                .bind(chunk.iter().map(|u| u.status).collect::<Vec<_>>())
                .bind(chunk.iter().map(|u| u.node.as_str()).collect::<Vec<_>>())
                .bind(chunk.iter().map(|u| u.parked).collect::<Vec<_>>())
                .bind(chunk.iter().map(|u| u.matched).collect::<Vec<_>>())
                .bind(chunk.iter().map(|u| u.wait_event.as_deref()).collect::<Vec<_>>())
                .bind(chunk.iter().map(|u| u.due_at).collect::<Vec<_>>())
                .bind(chunk.iter().map(|u| u.parked_at).collect::<Vec<_>>())
                .bind(chunk.iter().map(|u| u.error.as_deref()).collect::<Vec<_>>())
                .bind(now)
                .fetch_all(&mut *c)
                .await?;
                moved.extend(ids);
            }
            return Ok(moved);
        }
        // SQLite: one `UPDATE … FROM` a VALUES list per 1,000 runs (12 parameters a run; it
        // allows 32,766), each statement a single round trip to sqlx's SQLite worker thread —
        // a statement per run made the thread hand-offs most of a batch's cost.
        if let Raw::Sqlite(c) = self.raw() {
            for chunk in updates.chunks(1_000) {
                let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                    "WITH u(id, rev, status, node, parked, matched, wait_event, due_at, parked_at, error, finished) AS (",
                );
                qb.push_values(chunk, |mut b, u| {
                    b.push_bind(u.id)
                        .push_bind(u.rev)
                        .push_bind(u.status)
                        .push_bind(u.node.as_str())
                        .push_bind(u.parked)
                        .push_bind(u.matched)
                        .push_bind(u.wait_event.as_deref())
                        .push_bind(u.due_at)
                        .push_bind(u.parked_at)
                        .push_bind(u.error.as_deref())
                        .push_bind(u.finished());
                });
                qb.push(
                    ") UPDATE automation_runs SET status = u.status, node = u.node, parked = u.parked,
                         matched = u.matched, wait_event = u.wait_event, due_at = u.due_at, parked_at = u.parked_at,
                         error = u.error, rev = automation_runs.rev + 1, updated_at = ",
                );
                qb.push_bind(now);
                qb.push(", finished_at = CASE WHEN u.finished THEN ");
                qb.push_bind(now);
                qb.push(
                    " ELSE NULL END, live = CASE WHEN u.finished THEN NULL ELSE automation_runs.live END
                     FROM u WHERE automation_runs.id = u.id AND automation_runs.rev = u.rev
                     RETURNING automation_runs.id",
                );
                let ids: Vec<i64> = qb.build_query_scalar().persistent(false).fetch_all(&mut *c).await?;
                moved.extend(ids);
            }
        }
        Ok(moved)
    }

    /// Merges `patch` into a profile's traits in one statement on PostgreSQL (`||`). False on
    /// SQLite (the caller reads and writes the profile) or when there is no such profile.
    pub async fn merge_traits(
        &mut self,
        tenant: TenantId,
        customer: i64,
        patch: &Value,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let Raw::Postgres(c) = self.raw() else { return Ok(false) };
        let n =
            sqlx::query("UPDATE customers SET traits = traits || $1, updated_at = $2 WHERE tenant_id = $3 AND id = $4")
                .bind(Json(patch))
                .bind(now)
                .bind(tenant.0)
                .bind(customer)
                .execute(&mut *c)
                .await?
                .rows_affected();
        Ok(n == 1)
    }

    /// Merges each patch into its profile's traits (`||`), one statement for all on
    /// PostgreSQL; each (workspace, customer) at most once. `None` on SQLite (the caller reads
    /// and writes each profile). Profiles that no longer exist are skipped.
    pub async fn merge_traits_many(
        &mut self,
        patches: &[(i64, i64, Value)],
        now: DateTime<Utc>,
    ) -> Result<Option<u64>> {
        let Raw::Postgres(c) = self.raw() else { return Ok(None) };
        let mut n = 0;
        for chunk in patches.chunks(5_000) {
            n += sqlx::query(
                "UPDATE customers c SET traits = c.traits || u.patch::jsonb, updated_at = $4
                 FROM UNNEST($1::bigint[], $2::bigint[], $3::text[]) AS u(tenant_id, id, patch)
                 WHERE c.tenant_id = u.tenant_id AND c.id = u.id",
            )
            .bind(chunk.iter().map(|p| p.0).collect::<Vec<_>>())
            .bind(chunk.iter().map(|p| p.1).collect::<Vec<_>>())
            .bind(chunk.iter().map(|p| p.2.to_string()).collect::<Vec<_>>())
            .bind(now)
            .execute(&mut *c)
            .await?
            .rows_affected();
        }
        Ok(Some(n))
    }

    /// Adds a tag to or removes it from each profile's `tags` trait, one statement for all on
    /// PostgreSQL; each (workspace, customer) at most once. As the engine does it one profile at
    /// a time: the tag leaves the list wherever it was (a `tags` that is not a list counts as
    /// empty) and, when added, goes to its end. `None` on SQLite. Profiles that no longer exist
    /// are skipped.
    pub async fn tag_many(&mut self, tags: &[(i64, i64, String, bool)], now: DateTime<Utc>) -> Result<Option<u64>> {
        let Raw::Postgres(c) = self.raw() else { return Ok(None) };
        let mut n = 0;
        for chunk in tags.chunks(5_000) {
            n += sqlx::query(
                "UPDATE customers c SET traits = jsonb_set(
                     CASE WHEN jsonb_typeof(c.traits) = 'object' THEN c.traits ELSE '{}'::jsonb END, '{tags}',
                     COALESCE((SELECT jsonb_agg(e ORDER BY o)
                               FROM jsonb_array_elements(CASE WHEN jsonb_typeof(c.traits -> 'tags') = 'array'
                                                              THEN c.traits -> 'tags' ELSE '[]'::jsonb END)
                                    WITH ORDINALITY AS x(e, o)
                               WHERE e <> to_jsonb(u.tag)), '[]'::jsonb)
                     || CASE WHEN u.add THEN jsonb_build_array(u.tag) ELSE '[]'::jsonb END),
                     updated_at = $5
                 FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::bool[]) AS u(tenant_id, id, tag, add)
                 WHERE c.tenant_id = u.tenant_id AND c.id = u.id",
            )
            .bind(chunk.iter().map(|t| t.0).collect::<Vec<_>>())
            .bind(chunk.iter().map(|t| t.1).collect::<Vec<_>>())
            .bind(chunk.iter().map(|t| t.2.clone()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|t| t.3).collect::<Vec<_>>())
            .bind(now)
            .execute(&mut *c)
            .await?
            .rows_affected();
        }
        Ok(Some(n))
    }

    pub async fn insert_steps(&mut self, steps: &[NewStep]) -> Result<()> {
        if let Raw::Postgres(c) = self.raw() {
            // One prepared statement of column arrays: a multi-row VALUES was parsed and
            // planned afresh for every batch (8 parameters a step).
            for chunk in steps.chunks(5_000) {
                sqlx::query(
                    "INSERT INTO automation_steps (run_id, automation_id, version, node, kind, outcome, detail, at)
                     SELECT u.run_id, u.automation_id, u.version, u.node, u.kind, u.outcome, u.detail::jsonb, u.at
                     FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[],
                                 $7::text[], $8::timestamptz[])
                          WITH ORDINALITY AS u(run_id, automation_id, version, node, kind, outcome, detail, at, n)
                     ORDER BY u.n",
                )
                .bind(chunk.iter().map(|s| s.run_id).collect::<Vec<_>>())
                .bind(chunk.iter().map(|s| s.automation_id).collect::<Vec<_>>())
                .bind(chunk.iter().map(|s| s.version).collect::<Vec<_>>())
                .bind(chunk.iter().map(|s| s.node.clone()).collect::<Vec<_>>())
                .bind(chunk.iter().map(|s| s.kind.to_string()).collect::<Vec<_>>())
                .bind(chunk.iter().map(|s| s.outcome.clone()).collect::<Vec<_>>())
                .bind(chunk.iter().map(|s| s.detail.to_string()).collect::<Vec<_>>())
                .bind(chunk.iter().map(|s| s.at).collect::<Vec<_>>())
                .execute(&mut *c)
                .await?;
            }
            return Ok(());
        }
        for chunk in steps.chunks(1_000) {
            on!(self, |c| {
                let mut qb = sqlx::QueryBuilder::new(
                    "INSERT INTO automation_steps (run_id, automation_id, version, node, kind, outcome, detail, at) ",
                );
                qb.push_values(chunk, |mut b, s| {
                    b.push_bind(s.run_id)
                        .push_bind(s.automation_id)
                        .push_bind(s.version)
                        .push_bind(&s.node)
                        .push_bind(s.kind)
                        .push_bind(&s.outcome)
                        .push_bind(Json(&s.detail))
                        .push_bind(s.at);
                });
                qb.build().persistent(false).execute(c).await.map(|r| r.rows_affected())
            })?;
        }
        Ok(())
    }

    /// Wakes the runs of a customer waiting for `event` since before `at`.
    pub async fn match_waiting_runs(
        &mut self,
        tenant: i64,
        customer: i64,
        event: &str,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        Ok(on!(self, |c| sqlx::query(
            "UPDATE automation_runs SET matched = TRUE, due_at = $1, updated_at = $1
             WHERE tenant_id = $2 AND customer_id = $3 AND wait_event = $4 AND status = 'waiting' AND parked = TRUE
               AND matched = FALSE AND parked_at <= $5"
        )
        .bind(now)
        .bind(tenant)
        .bind(customer)
        .bind(event)
        .bind(at)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?)
    }

    /// Cancels the runs in flight of an automation (or of one customer in it).
    pub async fn cancel_runs(&mut self, automation: i64, customer: Option<i64>, now: DateTime<Utc>) -> Result<u64> {
        Ok(on!(self, |c| sqlx::query(
            "UPDATE automation_runs SET status = 'cancelled', due_at = NULL, live = NULL, rev = rev + 1,
                 finished_at = $1, updated_at = $1
             WHERE automation_id = $2 AND ($3 IS NULL OR customer_id = $3) AND status IN ('active', 'waiting')"
        )
        .bind(now)
        .bind(automation)
        .bind(customer)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?)
    }

    /// Moves the runs in flight on `from` to `to`, each from its node to the mapped one; runs at
    /// unmapped nodes stay. Returns how many moved.
    pub async fn migrate_runs(
        &mut self,
        automation: i64,
        from: i64,
        to: i64,
        mapping: &[(String, String)],
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let mut n = 0;
        for (old, new) in mapping {
            n += on!(self, |c| sqlx::query(
                "UPDATE automation_runs SET version = $1, node = $2, rev = rev + 1, updated_at = $3
                 WHERE automation_id = $4 AND version = $5 AND node = $6 AND status IN ('active', 'waiting')"
            )
            .bind(to)
            .bind(new)
            .bind(now)
            .bind(automation)
            .bind(from)
            .bind(old)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        }
        Ok(n)
    }

    pub async fn run(&mut self, tenant: TenantId, id: i64) -> Result<RunRow> {
        let sql = format!("SELECT {RUN_COLS} FROM automation_runs WHERE tenant_id = $1 AND id = $2");
        let row: Option<RunRow> = on!(self, |c| sqlx::query_as(&sql).bind(tenant.0).bind(id).fetch_optional(c).await)?;
        row.ok_or(StoreError::NotFound)
    }

    pub async fn run_steps(&mut self, run: i64) -> Result<Vec<StepRow>> {
        Ok(on!(self, |c| sqlx::query_as(
            "SELECT id, run_id, automation_id, version, node, kind, outcome, detail, at
             FROM automation_steps WHERE run_id = $1 ORDER BY id"
        )
        .bind(run)
        .fetch_all(c)
        .await)?)
    }

    /// Runs of an automation, newest first, optionally of one status and at one node.
    pub async fn list_runs(
        &mut self,
        automation: i64,
        status: Option<&str>,
        node: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<RunRow>, i64)> {
        let filter = "automation_id = $1 AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR node = $3)";
        let sql = format!("SELECT {RUN_COLS} FROM automation_runs WHERE {filter} ORDER BY id DESC LIMIT $4 OFFSET $5");
        let rows = on!(self, |c| sqlx::query_as(&sql)
            .bind(automation)
            .bind(status)
            .bind(node)
            .bind(limit)
            .bind(offset)
            .fetch_all(c)
            .await)?;
        let count = format!("SELECT COUNT(*) FROM automation_runs WHERE {filter}");
        let total: i64 =
            on!(self, |c| sqlx::query_scalar(&count).bind(automation).bind(status).bind(node).fetch_one(c).await)?;
        Ok((rows, total))
    }

    pub async fn customer_runs(
        &mut self,
        tenant: TenantId,
        customer: i64,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<RunRow>, i64)> {
        let sql = format!(
            "SELECT {RUN_COLS} FROM automation_runs WHERE tenant_id = $1 AND customer_id = $2 ORDER BY id DESC LIMIT $3 OFFSET $4"
        );
        let rows = on!(self, |c| sqlx::query_as(&sql)
            .bind(tenant.0)
            .bind(customer)
            .bind(limit)
            .bind(offset)
            .fetch_all(c)
            .await)?;
        let total: i64 = on!(self, |c| sqlx::query_scalar(
            "SELECT COUNT(*) FROM automation_runs WHERE tenant_id = $1 AND customer_id = $2"
        )
        .bind(tenant.0)
        .bind(customer)
        .fetch_one(c)
        .await)?;
        Ok((rows, total))
    }

    /// Per-node counts of an automation (all versions): entered and completed from the step
    /// history, waiting and failed from where runs are now.
    pub async fn node_counts(&mut self, automation: i64) -> Result<HashMap<String, NodeCounts>> {
        let mut out: HashMap<String, NodeCounts> = HashMap::new();
        let entered: Vec<(String, i64)> = on!(self, |c| sqlx::query_as(
            "SELECT node, COUNT(DISTINCT run_id) FROM automation_steps WHERE automation_id = $1 GROUP BY node"
        )
        .bind(automation)
        .fetch_all(c)
        .await)?;
        for (node, n) in entered {
            out.entry(node).or_default().entered = n;
        }
        let now: Vec<(String, String, i64)> = on!(self, |c| sqlx::query_as(
            "SELECT node, status, COUNT(*) FROM automation_runs WHERE automation_id = $1
             AND status IN ('active', 'waiting', 'failed') GROUP BY node, status"
        )
        .bind(automation)
        .fetch_all(c)
        .await)?;
        for (node, status, n) in now {
            let e = out.entry(node).or_default();
            if status == "failed" {
                e.failed += n;
            } else {
                e.waiting += n;
            }
        }
        for c in out.values_mut() {
            c.completed = (c.entered - c.waiting - c.failed).max(0);
        }
        Ok(out)
    }

    /// Run counts by status.
    pub async fn run_counts(&mut self, automation: i64) -> Result<HashMap<String, i64>> {
        let rows: Vec<(String, i64)> = on!(self, |c| sqlx::query_as(
            "SELECT status, COUNT(*) FROM automation_runs WHERE automation_id = $1 GROUP BY status"
        )
        .bind(automation)
        .fetch_all(c)
        .await)?;
        Ok(rows.into_iter().collect())
    }

    // ---- trigger intake ----

    pub async fn insert_signals(&mut self, signals: &[NewSignal]) -> Result<()> {
        for chunk in signals.chunks(500) {
            on!(self, |c| {
                let mut qb = sqlx::QueryBuilder::new(
                    "INSERT INTO automation_signals (tenant_id, customer_id, name, message_id, properties, at) ",
                );
                qb.push_values(chunk, |mut b, s| {
                    b.push_bind(s.tenant_id)
                        .push_bind(s.customer_id)
                        .push_bind(&s.name)
                        .push_bind(&s.message_id)
                        .push_bind(Json(&s.properties))
                        .push_bind(s.at);
                });
                qb.push(" ON CONFLICT (tenant_id, message_id) DO NOTHING");
                qb.build().persistent(false).execute(c).await.map(|r| r.rows_affected())
            })?;
        }
        Ok(())
    }

    /// Which of the engine's intakes have work, in one round trip: outbox entries it has not
    /// seen, tracked-event signals, schedule or date triggers due at `now`. The engine asks
    /// this before opening a transaction per intake (an idle intake cost three round trips).
    pub async fn intake_pending(&mut self, now: DateTime<Utc>) -> Result<IntakePending> {
        let (outbox, signals, ticks): (bool, bool, bool) = on!(self, |c| sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM outbox WHERE automated_at IS NULL),
                    EXISTS (SELECT 1 FROM automation_signals),
                    EXISTS (SELECT 1 FROM automations
                            WHERE next_tick_at IS NOT NULL AND next_tick_at <= $1 AND is_active = TRUE)"
        )
        .bind(now)
        .fetch_one(c)
        .await)?;
        Ok(IntakePending { outbox, signals, ticks })
    }

    /// The oldest signals, locked for this transaction on PostgreSQL.
    pub async fn take_signals(&mut self, limit: i64) -> Result<Vec<SignalRow>> {
        let lock = if self.backend() == Backend::Postgres { "FOR UPDATE SKIP LOCKED" } else { "" };
        let sql = format!(
            "SELECT id, tenant_id, customer_id, name, message_id, properties, at FROM automation_signals ORDER BY id LIMIT $1 {lock}"
        );
        Ok(on!(self, |c| sqlx::query_as(&sql).bind(limit).fetch_all(c).await)?)
    }

    pub async fn delete_signals(&mut self, ids: &[i64]) -> Result<()> {
        self.delete_ids("automation_signals", ids).await
    }

    /// Outbox entries the trigger intake has not seen, locked for this transaction on
    /// PostgreSQL.
    pub async fn unautomated_outbox(&mut self, limit: i64) -> Result<Vec<OutboxRow>> {
        let lock = if self.backend() == Backend::Postgres { "FOR UPDATE SKIP LOCKED" } else { "" };
        let sql = format!(
            "SELECT id, tenant_id, event, payload, created_at FROM outbox WHERE automated_at IS NULL ORDER BY id LIMIT $1 {lock}"
        );
        Ok(on!(self, |c| sqlx::query_as(&sql).bind(limit).fetch_all(c).await)?)
    }

    pub async fn mark_automated(&mut self, ids: &[i64], now: DateTime<Utc>) -> Result<()> {
        self.stamp_outbox("automated_at", ids, now).await
    }

    async fn delete_ids(&mut self, table: &'static str, ids: &[i64]) -> Result<()> {
        match self.raw() {
            Raw::Postgres(c) => {
                sqlx::query(&format!("DELETE FROM {table} WHERE id = ANY($1)")).bind(ids).execute(&mut *c).await?;
                Ok(())
            }
            Raw::Sqlite(c) => {
                crate::db::sqlite_by_ids(c, ids, |qb| {
                    qb.push(format!("DELETE FROM {table}"));
                })
                .await
            }
        }
    }
}

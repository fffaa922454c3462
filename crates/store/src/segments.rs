//! Segments: definitions (`segments`), stored membership (`segment_members`), customers waiting
//! to be re-evaluated with what changed about them (`segment_dirty`), each customer's next
//! time-driven crossing (`segment_crossings`) and which instance maintains which workspace
//! (`segment_locks`). Profile conditions are evaluated here, as SQL the segment engine compiles
//! ([`Conn::customer_ids_where`]).

use std::collections::HashMap;

use cairn_domain::{CustomerId, TenantId};
use chrono::{DateTime, Utc};

use crate::{db::Raw, jobs::NewJob, Conn, Result, StoreError};

/// The job that evaluates one dynamic segment over every customer; its payload is
/// `{"segment_id": N}`.
pub const EVALUATE_JOB: &str = "segments.evaluate";

/// The RFM segments every workspace has: (name, description, color, filter).
pub const BUILTIN: [(&str, &str, &str, &str); 4] = [
    ("Champions", "RFM score 13-15", "#16a34a", r#"{"rfm_segment":"Champions"}"#),
    ("Loyal Customers", "RFM score 9-12", "#2563eb", r#"{"rfm_segment":"Loyal Customers"}"#),
    ("At Risk", "RFM score 5-8", "#d97706", r#"{"rfm_segment":"At Risk"}"#),
    ("Lost", "RFM score 3-4", "#dc2626", r#"{"rfm_segment":"Lost"}"#),
];

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct SegmentRow {
    pub id: i64,
    pub tenant_id: i64,
    pub name: String,
    pub description: Option<String>,
    pub color: Option<String>,
    /// `dynamic` (a filter decides) or `static` (members are added and removed by hand).
    pub kind: String,
    /// The RFM segment a built-in segment stands for.
    pub builtin: Option<String>,
    /// The filter as JSON text (dynamic segments).
    pub filters: Option<String>,
    /// What the filter depends on (bits of the segment engine's `changed`).
    pub deps: i64,
    pub member_count: i64,
    /// The last evaluation job queued for it.
    pub job_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLS: &str =
    "id, tenant_id, name, description, color, kind, builtin, filters, deps, member_count, job_id, created_at, updated_at";

/// The writable fields of a segment.
#[derive(Debug, Clone, Default)]
pub struct SegmentFields<'a> {
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub color: Option<&'a str>,
    pub kind: &'a str,
    pub filters: Option<&'a str>,
    /// What the filter depends on (bits of the segment engine's `changed`).
    pub deps: i64,
}

/// A customer waiting to be re-evaluated: the version of the mark (bumped by every new mark)
/// and what changed (bits of the segment engine's `Changed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct SegmentMark {
    pub customer_id: i64,
    pub version: i64,
    pub kinds: i64,
}

/// One of a customer's memberships.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Membership {
    pub segment_id: i64,
    pub name: String,
    pub kind: String,
    pub builtin: Option<String>,
    pub since: DateTime<Utc>,
}

fn id_list(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

// Lookups of given customers by id. `+tenant_id` keeps SQLite on the primary key (see
// `customers::sqlite_by_ids_sql`); PostgreSQL reads the same SQL the same way.

pub(crate) fn sqlite_add_members_sql(list: &str) -> String {
    format!(
        "INSERT INTO segment_members (tenant_id, segment_id, customer_id, since)
         SELECT $1, $2, id, $3 FROM customers WHERE +tenant_id = $1 AND id IN ({list})
         ON CONFLICT DO NOTHING RETURNING customer_id"
    )
}

/// The ids of a workspace's customers matching `condition`, among `list` when given.
pub(crate) fn customer_ids_sql(condition: &str, list: Option<&str>) -> String {
    let (tenant_col, restrict) = match list {
        Some(list) => ("+c.tenant_id", format!(" AND c.id IN ({list})")),
        None => ("c.tenant_id", String::new()),
    };
    format!(
        "SELECT c.id FROM customers c LEFT JOIN customer_scores s ON s.tenant_id = c.tenant_id AND s.customer_id = c.id
         WHERE {tenant_col} = $1{restrict} AND ({condition}) ORDER BY c.id"
    )
}

pub(crate) fn customer_emails_sql(list: &str) -> String {
    format!("SELECT id, email FROM customers WHERE +tenant_id = $1 AND id IN ({list})")
}

impl Conn {
    pub async fn insert_segment(
        &mut self,
        tenant: TenantId,
        f: &SegmentFields<'_>,
        builtin: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<SegmentRow> {
        let sql = format!(
            "INSERT INTO segments (tenant_id, name, description, color, kind, builtin, filters, deps, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $9, $8, $8) RETURNING {COLS}"
        );
        Ok(on!(self, |c| sqlx::query_as(&sql)
            .bind(tenant.0)
            .bind(f.name)
            .bind(f.description)
            .bind(f.color)
            .bind(f.kind)
            .bind(builtin)
            .bind(f.filters)
            .bind(now)
            .bind(f.deps)
            .fetch_one(c)
            .await)?)
    }

    /// Creates a new workspace's RFM segments.
    pub async fn insert_builtin_segments(&mut self, tenant: TenantId, now: DateTime<Utc>) -> Result<()> {
        for (name, description, color, filters) in BUILTIN {
            let f = SegmentFields {
                name,
                description: Some(description),
                color: Some(color),
                kind: "dynamic",
                filters: Some(filters),
                // Scores only (the segment engine's `changed::SCORES`).
                deps: 2,
            };
            self.insert_segment(tenant, &f, Some(name), now).await?;
        }
        Ok(())
    }

    pub async fn segment(&mut self, tenant: TenantId, id: i64) -> Result<SegmentRow> {
        let sql = format!("SELECT {COLS} FROM segments WHERE tenant_id = $1 AND id = $2");
        let row: Option<SegmentRow> =
            on!(self, |c| sqlx::query_as(&sql).bind(tenant.0).bind(id).fetch_optional(c).await)?;
        row.ok_or(StoreError::NotFound)
    }

    /// Every segment of a workspace, oldest first.
    pub async fn list_segments(&mut self, tenant: TenantId) -> Result<Vec<SegmentRow>> {
        let sql = format!("SELECT {COLS} FROM segments WHERE tenant_id = $1 ORDER BY id");
        Ok(on!(self, |c| sqlx::query_as(&sql).bind(tenant.0).fetch_all(c).await)?)
    }

    pub async fn update_segment(
        &mut self,
        tenant: TenantId,
        id: i64,
        f: &SegmentFields<'_>,
        now: DateTime<Utc>,
    ) -> Result<SegmentRow> {
        let sql = format!(
            "UPDATE segments SET name = $1, description = $2, color = $3, filters = $4, updated_at = $5, deps = $8
             WHERE tenant_id = $6 AND id = $7 RETURNING {COLS}"
        );
        let row: Option<SegmentRow> = on!(self, |c| sqlx::query_as(&sql)
            .bind(f.name)
            .bind(f.description)
            .bind(f.color)
            .bind(f.filters)
            .bind(now)
            .bind(tenant.0)
            .bind(id)
            .bind(f.deps)
            .fetch_optional(c)
            .await)?;
        row.ok_or(StoreError::NotFound)
    }

    /// Per workspace, what its dynamic segments depend on, together (bits of the segment
    /// engine's `changed`; 0 for a workspace without any).
    pub async fn segment_deps(&mut self, tenants: &[i64]) -> Result<HashMap<i64, i64>> {
        if tenants.is_empty() {
            return Ok(HashMap::new());
        }
        let sql = format!(
            "SELECT tenant_id, deps FROM segments WHERE kind = 'dynamic' AND tenant_id IN ({})",
            id_list(tenants)
        );
        let rows: Vec<(i64, i64)> = on!(self, |c| sqlx::query_as(&sql).persistent(false).fetch_all(c).await)?;
        let mut out: HashMap<i64, i64> = tenants.iter().map(|t| (*t, 0)).collect();
        for (t, d) in rows {
            *out.entry(t).or_default() |= d;
        }
        Ok(out)
    }

    /// The dynamic segments of a workspace whose filters read any of `kinds` (bits of the
    /// segment engine's `changed`).
    pub async fn segments_depending_on(&mut self, tenant: TenantId, kinds: i64) -> Result<Vec<i64>> {
        Ok(on!(self, |c| sqlx::query_scalar(
            "SELECT id FROM segments WHERE tenant_id = $1 AND kind = 'dynamic' AND (deps & $2) <> 0 ORDER BY id"
        )
        .bind(tenant.0)
        .bind(kinds)
        .fetch_all(c)
        .await)?)
    }

    /// Queues the evaluation of a segment over every customer (a [`EVALUATE_JOB`] the segment
    /// engine claims) and records it on the segment; returns the job id.
    pub async fn enqueue_segment_evaluation(
        &mut self,
        tenant: TenantId,
        segment: i64,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        let payload = serde_json::json!({ "segment_id": segment }).to_string();
        let job = NewJob {
            tenant_id: Some(tenant),
            kind: EVALUATE_JOB,
            dedupe_key: None,
            payload: &payload,
            run_at: now,
            now,
        };
        let id = self.enqueue_job(&job).await?;
        self.set_segment_job(tenant, segment, id).await?;
        Ok(id)
    }

    pub async fn set_segment_job(&mut self, tenant: TenantId, id: i64, job_id: i64) -> Result<()> {
        on!(self, |c| sqlx::query("UPDATE segments SET job_id = $1 WHERE tenant_id = $2 AND id = $3")
            .bind(job_id)
            .bind(tenant.0)
            .bind(id)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Deletes a segment and its memberships. False when there was none.
    pub async fn delete_segment(&mut self, tenant: TenantId, id: i64) -> Result<bool> {
        on!(self, |c| sqlx::query("DELETE FROM segment_members WHERE tenant_id = $1 AND segment_id = $2")
            .bind(tenant.0)
            .bind(id)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        let n = on!(self, |c| sqlx::query("DELETE FROM segments WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.0)
            .bind(id)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }

    /// A page of a segment's members (newest membership first) and how many there are.
    pub async fn segment_member_page(
        &mut self,
        tenant: TenantId,
        segment: i64,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<(CustomerId, DateTime<Utc>)>, i64)> {
        let rows: Vec<(i64, DateTime<Utc>)> = on!(self, |c| sqlx::query_as(
            "SELECT customer_id, since FROM segment_members WHERE tenant_id = $1 AND segment_id = $2
             ORDER BY since DESC, customer_id DESC LIMIT $3 OFFSET $4"
        )
        .bind(tenant.0)
        .bind(segment)
        .bind(limit)
        .bind(offset)
        .fetch_all(c)
        .await)?;
        let total: i64 = on!(self, |c| sqlx::query_scalar(
            "SELECT COUNT(*) FROM segment_members WHERE tenant_id = $1 AND segment_id = $2"
        )
        .bind(tenant.0)
        .bind(segment)
        .fetch_one(c)
        .await)?;
        Ok((rows.into_iter().map(|(id, since)| (CustomerId(id), since)).collect(), total))
    }

    /// Every member of a segment, by id (or only those among `only`).
    pub async fn segment_member_ids(
        &mut self,
        tenant: TenantId,
        segment: i64,
        only: Option<&[i64]>,
    ) -> Result<Vec<i64>> {
        if only.is_some_and(<[i64]>::is_empty) {
            return Ok(Vec::new());
        }
        let restrict = only.map(|ids| format!(" AND customer_id IN ({})", id_list(ids))).unwrap_or_default();
        let sql = format!(
            "SELECT customer_id FROM segment_members WHERE tenant_id = $1 AND segment_id = $2{restrict} ORDER BY customer_id"
        );
        Ok(on!(self, |c| sqlx::query_scalar(&sql).persistent(false).bind(tenant.0).bind(segment).fetch_all(c).await)?)
    }

    /// The (segment, customer) memberships of the given customers.
    pub async fn segment_memberships_of(&mut self, tenant: TenantId, customers: &[i64]) -> Result<Vec<(i64, i64)>> {
        if let Raw::Postgres(c) = self.raw() {
            return Ok(sqlx::query_as(
                "SELECT segment_id, customer_id FROM segment_members WHERE tenant_id = $1 AND customer_id = ANY($2)",
            )
            .bind(tenant.0)
            .bind(customers)
            .fetch_all(&mut *c)
            .await?);
        }
        let mut out = Vec::new();
        for chunk in customers.chunks(1_000) {
            let sql = format!(
                "SELECT segment_id, customer_id FROM segment_members WHERE tenant_id = $1 AND customer_id IN ({})",
                id_list(chunk)
            );
            let rows: Vec<(i64, i64)> =
                on!(self, |c| sqlx::query_as(&sql).persistent(false).bind(tenant.0).fetch_all(c).await)?;
            out.extend(rows);
        }
        Ok(out)
    }

    /// One customer's memberships, with since when.
    pub async fn customer_memberships(&mut self, tenant: TenantId, customer: CustomerId) -> Result<Vec<Membership>> {
        Ok(on!(self, |c| sqlx::query_as(
            "SELECT m.segment_id, s.name, s.kind, s.builtin, m.since FROM segment_members m
             JOIN segments s ON s.id = m.segment_id
             WHERE m.tenant_id = $1 AND m.customer_id = $2 ORDER BY m.since, m.segment_id"
        )
        .bind(tenant.0)
        .bind(customer.0)
        .fetch_all(c)
        .await)?)
    }

    /// Adds members; returns those who were not members yet (in the order given). The
    /// segment's member count follows.
    pub async fn add_segment_members(
        &mut self,
        tenant: TenantId,
        segment: i64,
        ids: &[i64],
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>> {
        let mut added = Vec::new();
        for chunk in ids.chunks(5_000) {
            let rows: Vec<i64> = match self.raw() {
                Raw::Postgres(c) => {
                    sqlx::query_scalar(
                        "INSERT INTO segment_members (tenant_id, segment_id, customer_id, since)
                         SELECT $1, $2, u, $4 FROM UNNEST($3::bigint[]) AS u
                         WHERE EXISTS (SELECT 1 FROM customers WHERE customers.id = u AND customers.tenant_id = $1)
                         ON CONFLICT DO NOTHING RETURNING customer_id",
                    )
                    .bind(tenant.0)
                    .bind(segment)
                    .bind(chunk)
                    .bind(now)
                    .fetch_all(&mut *c)
                    .await?
                }
                Raw::Sqlite(c) => {
                    let sql = sqlite_add_members_sql(&id_list(chunk));
                    sqlx::query_scalar(&sql)
                        .persistent(false)
                        .bind(tenant.0)
                        .bind(segment)
                        .bind(now)
                        .fetch_all(&mut *c)
                        .await?
                }
            };
            added.extend(rows);
        }
        self.adjust_member_count(tenant, segment, added.len() as i64).await?;
        Ok(added)
    }

    /// Removes members; returns those who were members.
    pub async fn remove_segment_members(&mut self, tenant: TenantId, segment: i64, ids: &[i64]) -> Result<Vec<i64>> {
        let mut removed = Vec::new();
        for chunk in ids.chunks(5_000) {
            let sql = format!(
                "DELETE FROM segment_members WHERE tenant_id = $1 AND segment_id = $2 AND customer_id IN ({})
                 RETURNING customer_id",
                id_list(chunk)
            );
            let rows: Vec<i64> = on!(self, |c| sqlx::query_scalar(&sql)
                .persistent(false)
                .bind(tenant.0)
                .bind(segment)
                .fetch_all(c)
                .await)?;
            removed.extend(rows);
        }
        self.adjust_member_count(tenant, segment, -(removed.len() as i64)).await?;
        Ok(removed)
    }

    async fn adjust_member_count(&mut self, tenant: TenantId, segment: i64, delta: i64) -> Result<()> {
        if delta != 0 {
            on!(self, |c| sqlx::query(
                "UPDATE segments SET member_count = member_count + $1 WHERE tenant_id = $2 AND id = $3"
            )
            .bind(delta)
            .bind(tenant.0)
            .bind(segment)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        }
        Ok(())
    }

    /// Before a customer is deleted: the member counts of their segments drop (the memberships
    /// themselves go with the customer).
    pub async fn forget_customer_memberships(&mut self, tenant: TenantId, customer: CustomerId) -> Result<()> {
        on!(self, |c| sqlx::query(
            "UPDATE segments SET member_count = member_count - 1 WHERE tenant_id = $1
             AND id IN (SELECT segment_id FROM segment_members WHERE tenant_id = $1 AND customer_id = $2)"
        )
        .bind(tenant.0)
        .bind(customer.0)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        on!(self, |c| sqlx::query("DELETE FROM segment_members WHERE tenant_id = $1 AND customer_id = $2")
            .bind(tenant.0)
            .bind(customer.0)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        on!(self, |c| sqlx::query("DELETE FROM segment_crossings WHERE tenant_id = $1 AND customer_id = $2")
            .bind(tenant.0)
            .bind(customer.0)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// The ids of a workspace's customers matching a condition over `customers` (aliased `c`)
    /// and their scores (`s`, left-joined), compiled by the segment engine, optionally only
    /// among `only`. Sorted.
    pub async fn customer_ids_where(
        &mut self,
        tenant: TenantId,
        condition: &str,
        only: Option<&[i64]>,
    ) -> Result<Vec<i64>> {
        if only.is_some_and(<[i64]>::is_empty) {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let chunks: Vec<Option<&[i64]>> = match only {
            None => vec![None],
            Some(ids) => ids.chunks(5_000).map(Some).collect(),
        };
        for chunk in chunks {
            let sql = customer_ids_sql(condition, chunk.map(id_list).as_deref());
            let rows: Vec<i64> =
                on!(self, |c| sqlx::query_scalar(&sql).persistent(false).bind(tenant.0).fetch_all(c).await)?;
            out.extend(rows);
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Every customer id of a workspace (or those of `only` that exist), sorted.
    pub async fn customer_ids(&mut self, tenant: TenantId, only: Option<&[i64]>) -> Result<Vec<i64>> {
        self.customer_ids_where(tenant, "1 = 1", only).await
    }

    /// The emails of the given customers (for event payloads).
    pub async fn customer_emails(&mut self, tenant: TenantId, ids: &[i64]) -> Result<HashMap<i64, Option<String>>> {
        let mut out = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(5_000) {
            let sql = customer_emails_sql(&id_list(chunk));
            let rows: Vec<(i64, Option<String>)> =
                on!(self, |c| sqlx::query_as(&sql).persistent(false).bind(tenant.0).fetch_all(c).await)?;
            out.extend(rows);
        }
        Ok(out)
    }

    /// Each scored customer's last purchase day (days since 1970-01-01, workspace time zone).
    pub async fn last_purchase_days(&mut self, tenant: TenantId, only: Option<&[i64]>) -> Result<Vec<(i64, i64)>> {
        if only.is_some_and(<[i64]>::is_empty) {
            return Ok(Vec::new());
        }
        let restrict = only.map(|ids| format!(" AND customer_id IN ({})", id_list(ids))).unwrap_or_default();
        let sql = format!("SELECT customer_id, last_purchase_day FROM customer_scores WHERE tenant_id = $1{restrict}");
        Ok(on!(self, |c| sqlx::query_as(&sql).persistent(false).bind(tenant.0).fetch_all(c).await)?)
    }

    /// Marks customers for re-evaluation with what changed about them (bits OR-ed into an
    /// existing mark, whose version is bumped).
    pub async fn mark_segments_dirty(
        &mut self,
        marks: &[(TenantId, CustomerId, i64)],
        now: DateTime<Utc>,
    ) -> Result<()> {
        if let Raw::Postgres(c) = self.raw() {
            for chunk in marks.chunks(10_000) {
                sqlx::query(
                    "INSERT INTO segment_dirty (tenant_id, customer_id, version, kinds, marked_at)
                     SELECT t, c, 1, k, $4 FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[]) AS u(t, c, k)
                     ON CONFLICT (tenant_id, customer_id) DO UPDATE SET version = segment_dirty.version + 1,
                         kinds = segment_dirty.kinds | excluded.kinds, marked_at = excluded.marked_at",
                )
                .bind(chunk.iter().map(|m| m.0 .0).collect::<Vec<_>>())
                .bind(chunk.iter().map(|m| m.1 .0).collect::<Vec<_>>())
                .bind(chunk.iter().map(|m| m.2).collect::<Vec<_>>())
                .bind(now)
                .execute(&mut *c)
                .await?;
            }
            return Ok(());
        }
        for chunk in marks.chunks(500) {
            on!(self, |c| {
                let mut qb = sqlx::QueryBuilder::new(
                    "INSERT INTO segment_dirty (tenant_id, customer_id, version, kinds, marked_at) ",
                );
                qb.push_values(chunk, |mut b, (t, id, k)| {
                    b.push_bind(t.0).push_bind(id.0).push_bind(1i64).push_bind(*k).push_bind(now);
                });
                qb.push(
                    " ON CONFLICT (tenant_id, customer_id) DO UPDATE SET version = segment_dirty.version + 1, \
                     kinds = segment_dirty.kinds | excluded.kinds, marked_at = excluded.marked_at",
                );
                qb.build().persistent(false).execute(c).await.map(|r| r.rows_affected())
            })?;
        }
        Ok(())
    }

    /// Workspaces with customers waiting to be re-evaluated.
    pub async fn segment_dirty_tenants(&mut self) -> Result<Vec<TenantId>> {
        let ids: Vec<i64> =
            on!(self, |c| sqlx::query_scalar("SELECT DISTINCT tenant_id FROM segment_dirty").fetch_all(c).await)?;
        Ok(ids.into_iter().map(TenantId).collect())
    }

    /// The oldest marks of a workspace.
    pub async fn segment_dirty(&mut self, tenant: TenantId, limit: i64) -> Result<Vec<SegmentMark>> {
        Ok(on!(self, |c| sqlx::query_as(
            "SELECT customer_id, version, kinds FROM segment_dirty WHERE tenant_id = $1
             ORDER BY marked_at, customer_id LIMIT $2"
        )
        .bind(tenant.0)
        .bind(limit)
        .fetch_all(c)
        .await)?)
    }

    /// Removes marks that were not renewed since they were read.
    pub async fn clear_segment_dirty(&mut self, tenant: TenantId, marks: &[SegmentMark]) -> Result<()> {
        let marks: Vec<(i64, i64)> = marks.iter().map(|m| (m.customer_id, m.version)).collect();
        self.clear_marks("segment_dirty", tenant, &marks).await
    }

    /// Takes or renews the right to maintain a workspace's segments until `until`.
    pub async fn lock_segments(
        &mut self,
        tenant: TenantId,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        self.take_lease("segment_locks", tenant, holder, now, until).await
    }

    /// Sets customers' next crossings: `Some` replaces, `None` removes.
    pub async fn set_crossings(&mut self, tenant: TenantId, due: &[(i64, Option<DateTime<Utc>>)]) -> Result<()> {
        let gone: Vec<i64> = due.iter().filter(|(_, d)| d.is_none()).map(|(c, _)| *c).collect();
        for chunk in gone.chunks(5_000) {
            let sql =
                format!("DELETE FROM segment_crossings WHERE tenant_id = $1 AND customer_id IN ({})", id_list(chunk));
            on!(self, |c| sqlx::query(&sql)
                .persistent(false)
                .bind(tenant.0)
                .execute(c)
                .await
                .map(|r| r.rows_affected()))?;
        }
        let set: Vec<(i64, DateTime<Utc>)> = due.iter().filter_map(|(c, d)| d.map(|d| (*c, d))).collect();
        self.upsert_crossings(tenant, &set, "excluded.due_at").await
    }

    /// Brings customers' next crossings forward to `due` where it is earlier.
    pub async fn lower_crossings(&mut self, tenant: TenantId, due: &[(i64, DateTime<Utc>)]) -> Result<()> {
        self.upsert_crossings(tenant, due, "excluded.due_at WHERE excluded.due_at < segment_crossings.due_at").await
    }

    async fn upsert_crossings(&mut self, tenant: TenantId, due: &[(i64, DateTime<Utc>)], value: &str) -> Result<()> {
        if let Raw::Postgres(c) = self.raw() {
            for chunk in due.chunks(10_000) {
                sqlx::query(&format!(
                    "INSERT INTO segment_crossings (tenant_id, customer_id, due_at)
                     SELECT $1, c, d FROM UNNEST($2::bigint[], $3::timestamptz[]) AS u(c, d)
                     ON CONFLICT (tenant_id, customer_id) DO UPDATE SET due_at = {value}"
                ))
                .bind(tenant.0)
                .bind(chunk.iter().map(|d| d.0).collect::<Vec<_>>())
                .bind(chunk.iter().map(|d| d.1).collect::<Vec<_>>())
                .execute(&mut *c)
                .await?;
            }
            return Ok(());
        }
        for chunk in due.chunks(1_000) {
            on!(self, |c| {
                let mut qb = sqlx::QueryBuilder::new("INSERT INTO segment_crossings (tenant_id, customer_id, due_at) ");
                qb.push_values(chunk, |mut b, (id, d)| {
                    b.push_bind(tenant.0).push_bind(*id).push_bind(*d);
                });
                qb.push(format!(" ON CONFLICT (tenant_id, customer_id) DO UPDATE SET due_at = {value}"));
                qb.build().persistent(false).execute(c).await.map(|r| r.rows_affected())
            })?;
        }
        Ok(())
    }

    /// Turns crossings that are due into marks (call in a transaction): returns how many.
    pub async fn take_due_crossings(&mut self, now: DateTime<Utc>, kinds: i64, limit: i64) -> Result<usize> {
        let due: Vec<(i64, i64)> = on!(self, |c| sqlx::query_as(
            "SELECT tenant_id, customer_id FROM segment_crossings WHERE due_at <= $1 ORDER BY due_at LIMIT $2"
        )
        .bind(now)
        .bind(limit)
        .fetch_all(c)
        .await)?;
        if due.is_empty() {
            return Ok(0);
        }
        let marks: Vec<(TenantId, CustomerId, i64)> =
            due.iter().map(|(t, c)| (TenantId(*t), CustomerId(*c), kinds)).collect();
        self.mark_segments_dirty(&marks, now).await?;
        for chunk in due.chunks(500) {
            on!(self, |c| {
                let mut qb = sqlx::QueryBuilder::new("DELETE FROM segment_crossings WHERE due_at <= ");
                qb.push_bind(now);
                qb.push(" AND (tenant_id, customer_id) IN (");
                qb.push_values(chunk, |mut b, (t, id)| {
                    b.push_bind(*t).push_bind(*id);
                });
                qb.push(")");
                qb.build().persistent(false).execute(c).await.map(|r| r.rows_affected())
            })?;
        }
        Ok(due.len())
    }

    /// A customer's next crossing, if any (explain and tests).
    pub async fn crossing(&mut self, tenant: TenantId, customer: CustomerId) -> Result<Option<DateTime<Utc>>> {
        Ok(on!(self, |c| sqlx::query_scalar(
            "SELECT due_at FROM segment_crossings WHERE tenant_id = $1 AND customer_id = $2"
        )
        .bind(tenant.0)
        .bind(customer.0)
        .fetch_optional(c)
        .await)?)
    }
}

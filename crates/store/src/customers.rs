//! Customer profiles, their anonymous ids, and the outbox of domain events.

use cairn_domain::{CustomerId, TenantId};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;

use crate::{Backend, Conn, Result, StoreError};

#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    pub id: CustomerId,
    pub tenant_id: TenantId,
    pub email: Option<String>,
    /// The customer's id in the client's own system (Segment's `userId`).
    pub external_id: Option<String>,
    pub name: Option<String>,
    pub phone: Option<String>,
    pub city: Option<String>,
    pub country: Option<String>,
    /// Custom traits, a JSON object.
    pub traits: Value,
    pub first_seen_at: Option<DateTime<Utc>>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The writable fields of a profile, as the service decided them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CustomerFields {
    pub email: Option<String>,
    pub external_id: Option<String>,
    pub name: Option<String>,
    pub phone: Option<String>,
    pub city: Option<String>,
    pub country: Option<String>,
    pub traits: Value,
}

#[derive(sqlx::FromRow)]
pub(crate) struct Row {
    id: i64,
    tenant_id: i64,
    email: Option<String>,
    external_id: Option<String>,
    name: Option<String>,
    phone: Option<String>,
    city: Option<String>,
    country: Option<String>,
    traits: Json<Value>,
    first_seen_at: Option<DateTime<Utc>>,
    last_seen_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<Row> for Customer {
    fn from(r: Row) -> Self {
        Customer {
            id: CustomerId(r.id),
            tenant_id: TenantId(r.tenant_id),
            email: r.email,
            external_id: r.external_id,
            name: r.name,
            phone: r.phone,
            city: r.city,
            country: r.country,
            traits: r.traits.0,
            first_seen_at: r.first_seen_at,
            last_seen_at: r.last_seen_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

impl Customer {
    /// Seed 003's payload for `customer.created`.
    pub fn created_payload(&self) -> Value {
        serde_json::json!({
            "customer_id": self.id,
            "customer_email": self.email,
            "user_id": self.external_id,
            "name": self.name,
            "created_at": self.created_at,
        })
    }
}

pub(crate) const COLS: &str = "id, tenant_id, email, external_id, name, phone, city, country, traits, \
                    first_seen_at, last_seen_at, created_at, updated_at";

/// How a customer list is ordered. Missing values sort last in both directions, on both
/// backends (SQLite and PostgreSQL disagree on where NULLs go by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CustomerSort {
    #[default]
    NewestFirst,
    OldestFirst,
    NameAsc,
    NameDesc,
    EmailAsc,
    EmailDesc,
    LastSeenDesc,
    LastSeenAsc,
    ClvTotalDesc,
    ClvTotalAsc,
    ClvPredictedDesc,
    ClvPredictedAsc,
    RfmScoreDesc,
    RfmScoreAsc,
}

impl CustomerSort {
    /// The accepted `sort` values: a field, `-` for descending.
    pub fn parse(s: &str) -> Option<CustomerSort> {
        Some(match s {
            "-created_at" => CustomerSort::NewestFirst,
            "created_at" => CustomerSort::OldestFirst,
            "name" => CustomerSort::NameAsc,
            "-name" => CustomerSort::NameDesc,
            "email" => CustomerSort::EmailAsc,
            "-email" => CustomerSort::EmailDesc,
            "-last_seen_at" => CustomerSort::LastSeenDesc,
            "last_seen_at" => CustomerSort::LastSeenAsc,
            "-clv_total" => CustomerSort::ClvTotalDesc,
            "clv_total" => CustomerSort::ClvTotalAsc,
            "-clv_predicted" => CustomerSort::ClvPredictedDesc,
            "clv_predicted" => CustomerSort::ClvPredictedAsc,
            "-rfm_score" => CustomerSort::RfmScoreDesc,
            "rfm_score" => CustomerSort::RfmScoreAsc,
            _ => return None,
        })
    }

    fn order_by(self) -> String {
        let fixed = match self {
            CustomerSort::NewestFirst => "created_at DESC, id DESC",
            CustomerSort::OldestFirst => "created_at ASC, id ASC",
            CustomerSort::NameAsc => "(name IS NULL), name ASC, id ASC",
            CustomerSort::NameDesc => "(name IS NULL), name DESC, id DESC",
            CustomerSort::EmailAsc => "(email IS NULL), email ASC, id ASC",
            CustomerSort::EmailDesc => "(email IS NULL), email DESC, id DESC",
            CustomerSort::LastSeenDesc => "(last_seen_at IS NULL), last_seen_at DESC, id DESC",
            CustomerSort::LastSeenAsc => "(last_seen_at IS NULL), last_seen_at ASC, id ASC",
            // Sorts by a score: net spend is 0 without a purchase; without a prediction or an RFM
            // score a customer sorts last either way.
            _ => {
                let (column, missing, direction) = self.by_score().expect("a score sort");
                return by_score(column, missing, direction);
            }
        };
        fixed.to_string()
    }

    /// For a sort by a score: the score column, the value a customer without scores sorts as,
    /// and the direction.
    fn by_score(self) -> Option<(&'static str, &'static str, &'static str)> {
        Some(match self {
            CustomerSort::ClvTotalDesc => ("clv_total", "0", "DESC"),
            CustomerSort::ClvTotalAsc => ("clv_total", "0", "ASC"),
            CustomerSort::ClvPredictedDesc => ("clv_predicted", "-1", "DESC"),
            CustomerSort::ClvPredictedAsc => ("clv_predicted", "1e300", "ASC"),
            CustomerSort::RfmScoreDesc => ("rfm_score", "0", "DESC"),
            CustomerSort::RfmScoreAsc => ("rfm_score", "99", "ASC"),
            _ => return None,
        })
    }
}

/// A customer's score column, for filters and sorts (no row: no purchase yet).
fn score_of(column: &str) -> String {
    format!(
        "(SELECT s.{column} FROM customer_scores s WHERE s.tenant_id = customers.tenant_id \
         AND s.customer_id = customers.id)"
    )
}

fn by_score(column: &str, missing: &str, direction: &str) -> String {
    format!("COALESCE({}, {missing}) {direction}, id {direction}", score_of(column))
}

/// Which profiles a list shows.
#[derive(Debug, Clone, Copy, Default)]
pub struct CustomerFilter<'a> {
    /// Part of the name or email, case-insensitively.
    pub search: Option<&'a str>,
    pub rfm_segment: Option<&'a str>,
    /// Net spend bounds (inclusive); customers without purchases have spent 0.
    pub clv_total_min: Option<f64>,
    pub clv_total_max: Option<f64>,
    /// Members of this segment only.
    pub segment_id: Option<i64>,
    /// Skip counting the matches (a search being typed over a million profiles): the total is
    /// then the rows through this page, plus one when there are more.
    pub skip_count: bool,
}

/// Escapes `%`, `_` and `\` so a search term matches literally inside `LIKE '%…%' ESCAPE '\'`.
fn like_pattern(term: &str) -> String {
    let mut p = String::from("%");
    for c in term.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

fn map_duplicate(e: StoreError) -> StoreError {
    match e {
        StoreError::Duplicate(c) if c.contains("external") => StoreError::Duplicate("external_id".into()),
        StoreError::Duplicate(_) => StoreError::Duplicate("email".into()),
        e => e,
    }
}

/// `customers_by_ids` on SQLite. `+tenant_id` keeps SQLite on the primary key: without planner
/// statistics (SQLite has none until `ANALYZE`) it would rather walk the workspace's whole
/// `(tenant_id, created_at)` index — 10 ms per lookup at 100,000 customers, which was most of an
/// automation tick's time.
pub(crate) fn sqlite_by_ids_sql(list: &str) -> String {
    format!("SELECT {COLS} FROM customers WHERE +tenant_id = $1 AND id IN ({list})")
}

impl Conn {
    /// Inserts a profile. A taken email or external id is `Duplicate("email" | "external_id")`.
    pub async fn insert_customer(
        &mut self,
        tenant: TenantId,
        f: &CustomerFields,
        now: DateTime<Utc>,
    ) -> Result<Customer> {
        let sql = format!(
            "INSERT INTO customers (tenant_id, email, external_id, name, phone, city, country, traits, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING {COLS}"
        );
        let row: Row = on!(self, |c| sqlx::query_as(&sql)
            .bind(tenant.0)
            .bind(f.email.as_deref())
            .bind(f.external_id.as_deref())
            .bind(f.name.as_deref())
            .bind(f.phone.as_deref())
            .bind(f.city.as_deref())
            .bind(f.country.as_deref())
            .bind(Json(&f.traits))
            .bind(now)
            .fetch_one(c)
            .await)
        .map_err(|e| map_duplicate(e.into()))?;
        Ok(row.into())
    }

    pub async fn customer(&mut self, tenant: TenantId, id: CustomerId) -> Result<Customer> {
        let sql = format!("SELECT {COLS} FROM customers WHERE tenant_id = $1 AND id = $2");
        let row: Option<Row> = on!(self, |c| sqlx::query_as(&sql).bind(tenant.0).bind(id.0).fetch_optional(c).await)?;
        row.map(Into::into).ok_or(StoreError::NotFound)
    }

    /// The profiles of the given ids that exist.
    pub async fn customers_by_ids(&mut self, tenant: TenantId, ids: &[i64]) -> Result<Vec<Customer>> {
        if let crate::db::Raw::Postgres(c) = self.raw() {
            let sql = format!("SELECT {COLS} FROM customers WHERE tenant_id = $1 AND id = ANY($2)");
            let rows: Vec<Row> = sqlx::query_as(&sql).bind(tenant.0).bind(ids).fetch_all(&mut *c).await?;
            return Ok(rows.into_iter().map(Customer::from).collect());
        }
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(1_000) {
            let list = chunk.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
            let sql = sqlite_by_ids_sql(&list);
            let rows: Vec<Row> =
                on!(self, |c| sqlx::query_as(&sql).persistent(false).bind(tenant.0).fetch_all(c).await)?;
            out.extend(rows.into_iter().map(Customer::from));
        }
        Ok(out)
    }

    /// A page of profiles matching `filter`.
    pub async fn list_customers(
        &mut self,
        tenant: TenantId,
        filter: &CustomerFilter<'_>,
        sort: CustomerSort,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Customer>, i64)> {
        let unfiltered = filter.search.is_none()
            && filter.rfm_segment.is_none()
            && filter.clv_total_min.is_none()
            && filter.clv_total_max.is_none()
            && filter.segment_id.is_none();
        if let (Some(by), true) = (sort.by_score(), unfiltered) {
            return self.customers_by_score(tenant, by, filter.skip_count, limit, offset).await;
        }
        let pattern = filter.search.map(like_pattern);
        let clv = format!("COALESCE({}, 0)", score_of("clv_total"));
        // SQLite's LIKE already ignores the case of ASCII letters (and LOWER folds only those):
        // without LOWER a search scans a million profiles in about half the time.
        let name = if self.backend() == crate::Backend::Postgres { "LOWER(name)" } else { "name" };
        let cond = format!(
            "tenant_id = $1 AND ($2 IS NULL OR email LIKE $2 ESCAPE '\\' OR {name} LIKE $2 ESCAPE '\\')
             AND ($3 IS NULL OR id IN (SELECT s.customer_id FROM customer_scores s
                                       WHERE s.tenant_id = $1 AND s.rfm_segment = $3))
             AND ($4 IS NULL OR {clv} >= $4) AND ($5 IS NULL OR {clv} <= $5)
             AND ($8 IS NULL OR id IN (SELECT m.customer_id FROM segment_members m WHERE m.segment_id = $8))"
        );
        let sql = format!("SELECT {COLS} FROM customers WHERE {cond} ORDER BY {} LIMIT $6 OFFSET $7", sort.order_by());
        // Without a count, one row more than the page says whether another page follows.
        let fetch = if filter.skip_count { limit + 1 } else { limit };
        let mut rows: Vec<Row> = on!(self, |c| sqlx::query_as(&sql)
            .bind(tenant.0)
            .bind(pattern.as_deref())
            .bind(filter.rfm_segment)
            .bind(filter.clv_total_min)
            .bind(filter.clv_total_max)
            .bind(fetch)
            .bind(offset)
            .bind(filter.segment_id)
            .fetch_all(c)
            .await)?;
        if filter.skip_count {
            let total = offset + rows.len() as i64;
            rows.truncate(limit as usize);
            return Ok((rows.into_iter().map(Into::into).collect(), total));
        }
        let count_sql = format!("SELECT COUNT(*) FROM customers WHERE {cond}");
        let total: i64 = on!(self, |c| sqlx::query_scalar(&count_sql)
            .bind(tenant.0)
            .bind(pattern.as_deref())
            .bind(filter.rfm_segment)
            .bind(filter.clv_total_min)
            .bind(filter.clv_total_max)
            .bind(None::<i64>)
            .bind(None::<i64>)
            .bind(filter.segment_id)
            .fetch_one(c)
            .await)?;
        Ok((rows.into_iter().map(Into::into).collect(), total))
    }

    /// The whole workspace sorted by a score, without sorting a million rows: the page is the
    /// merge of the first `offset + limit` scored customers (read from the scores alone) and the
    /// first `offset + limit` unscored ones (which sort as `missing`), each in the sort's order —
    /// together they hold the first `offset + limit` of the whole order. (`+c.tenant_id` keeps
    /// SQLite from reading the unscored through the tenant's index and sorting them all: it
    /// walks the primary key backwards instead, ~70 ms rather than ~700 at a million.)
    async fn customers_by_score(
        &mut self,
        tenant: TenantId,
        (column, missing, direction): (&str, &str, &str),
        skip_count: bool,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Customer>, i64)> {
        let fetch = if skip_count { limit + 1 } else { limit };
        let sql = format!(
            "SELECT id FROM (
                 SELECT * FROM (SELECT customer_id AS id, {column} AS v FROM customer_scores WHERE tenant_id = $1
                                ORDER BY v {direction}, id {direction} LIMIT $2) scored
                 UNION ALL
                 SELECT * FROM (SELECT id, {missing} AS v FROM customers c WHERE +c.tenant_id = $1 AND NOT EXISTS
                                    (SELECT 1 FROM customer_scores s WHERE s.tenant_id = $1 AND s.customer_id = c.id)
                                ORDER BY id {direction} LIMIT $2) unscored
             ) page ORDER BY v {direction}, id {direction} LIMIT $3 OFFSET $4"
        );
        let ids: Vec<i64> = on!(self, |c| sqlx::query_scalar(&sql)
            .bind(tenant.0)
            .bind(offset + fetch)
            .bind(fetch)
            .bind(offset)
            .fetch_all(c)
            .await)?;
        let total = if skip_count {
            offset + ids.len() as i64
        } else {
            on!(self, |c| sqlx::query_scalar("SELECT COUNT(*) FROM customers WHERE tenant_id = $1")
                .bind(tenant.0)
                .fetch_one(c)
                .await)?
        };
        let ids: Vec<i64> = ids.into_iter().take(limit as usize).collect();
        let mut by_id: std::collections::HashMap<i64, Customer> =
            self.customers_by_ids(tenant, &ids).await?.into_iter().map(|c| (c.id.0, c)).collect();
        Ok((ids.iter().filter_map(|id| by_id.remove(id)).collect(), total))
    }

    /// Replaces a profile's writable fields.
    pub async fn update_customer(
        &mut self,
        tenant: TenantId,
        id: CustomerId,
        f: &CustomerFields,
        now: DateTime<Utc>,
    ) -> Result<Customer> {
        let sql = format!(
            "UPDATE customers SET email = $1, external_id = $2, name = $3, phone = $4, city = $5, country = $6,
                 traits = $7, updated_at = $8
             WHERE tenant_id = $9 AND id = $10 RETURNING {COLS}"
        );
        let row: Option<Row> = on!(self, |c| sqlx::query_as(&sql)
            .bind(f.email.as_deref())
            .bind(f.external_id.as_deref())
            .bind(f.name.as_deref())
            .bind(f.phone.as_deref())
            .bind(f.city.as_deref())
            .bind(f.country.as_deref())
            .bind(Json(&f.traits))
            .bind(now)
            .bind(tenant.0)
            .bind(id.0)
            .fetch_optional(c)
            .await)
        .map_err(|e| map_duplicate(e.into()))?;
        row.map(Into::into).ok_or(StoreError::NotFound)
    }

    /// Deletes a profile and its anonymous ids. Returns false when there was none.
    pub async fn delete_customer(&mut self, tenant: TenantId, id: CustomerId) -> Result<bool> {
        self.forget_customer_memberships(tenant, id).await?;
        // No foreign key on PostgreSQL (migration 0014): the scores go here.
        self.delete_scores(tenant, &[id.0]).await?;
        on!(self, |c| sqlx::query("DELETE FROM customer_anonymous_ids WHERE tenant_id = $1 AND customer_id = $2")
            .bind(tenant.0)
            .bind(id.0)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        let n = on!(self, |c| sqlx::query("DELETE FROM customers WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.0)
            .bind(id.0)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }

    /// Appends a domain event to the outbox (call inside the transaction of the change).
    pub async fn insert_outbox(
        &mut self,
        tenant: TenantId,
        event: &str,
        payload: &Value,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        let sql = format!(
            "INSERT INTO outbox (tenant_id, event, payload, created_at, dispatched_at, automated_at)
             SELECT $1, $2, $3, $4, {} RETURNING id",
            settled_at_birth(self.backend(), "$1", "$4")
        );
        Ok(on!(self, |c| sqlx::query_scalar(&sql)
            .bind(tenant.0)
            .bind(event)
            .bind(Json(payload))
            .bind(now)
            .fetch_one(c)
            .await)?)
    }

    /// Adds many entries of one workspace in few statements (a recompute can change thousands
    /// of customers at once).
    pub async fn insert_outbox_many(
        &mut self,
        tenant: TenantId,
        entries: &[(&str, Value)],
        now: DateTime<Utc>,
    ) -> Result<()> {
        if let crate::db::Raw::Postgres(c) = self.raw() {
            let sql = format!(
                "INSERT INTO outbox (tenant_id, event, payload, created_at, dispatched_at, automated_at)
                 SELECT $1, e, p::jsonb, $4, {} FROM UNNEST($2::text[], $3::text[]) AS u(e, p)",
                settled_at_birth(Backend::Postgres, "$1", "$4")
            );
            for chunk in entries.chunks(10_000) {
                let started = std::time::Instant::now();
                sqlx::query(&sql)
                    .bind(tenant.0)
                    .bind(chunk.iter().map(|(e, _)| e.to_string()).collect::<Vec<_>>())
                    .bind(chunk.iter().map(|(_, p)| p.to_string()).collect::<Vec<_>>())
                    .bind(now)
                    .execute(&mut *c)
                    .await?;
                crate::db::QUERY_LATENCY.observe(started.elapsed());
            }
            return Ok(());
        }
        // SQLite: `?` placeholders number in the order they appear, so the workspace and the
        // time come first, from a one-row subquery the rest refers to.
        let sql = format!(
            "INSERT INTO outbox (tenant_id, event, payload, created_at, dispatched_at, automated_at)
             SELECT k.t, u.column1, u.column2, k.n, {} FROM (SELECT ",
            settled_at_birth(Backend::Sqlite, "k.t", "k.n")
        );
        for chunk in entries.chunks(1_000) {
            on!(self, |c| {
                let mut qb = sqlx::QueryBuilder::new(&sql);
                qb.push_bind(tenant.0).push(" AS t, ").push_bind(now).push(" AS n) AS k, (");
                qb.push_values(chunk, |mut b, (event, payload)| {
                    b.push_bind(*event).push_bind(Json(payload));
                });
                qb.push(") AS u");
                qb.build().persistent(false).execute(c).await.map(|r| r.rows_affected())
            })?;
        }
        Ok(())
    }

    /// A workspace's outbox entries after `after_id`, oldest first.
    pub async fn outbox_after(&mut self, tenant: TenantId, after_id: i64, limit: i64) -> Result<Vec<OutboxEntry>> {
        let rows: Vec<OutboxRow> = on!(self, |c| sqlx::query_as(
            "SELECT id, tenant_id, event, payload, created_at FROM outbox
             WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        )
        .bind(tenant.0)
        .bind(after_id)
        .bind(limit)
        .fetch_all(c)
        .await)?;
        Ok(rows
            .into_iter()
            .map(|r| OutboxEntry {
                id: r.id,
                tenant_id: TenantId(r.tenant_id),
                event: r.event,
                payload: r.payload.0,
                created_at: r.created_at,
            })
            .collect())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    pub id: i64,
    pub tenant_id: TenantId,
    pub event: String,
    pub payload: Value,
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct OutboxRow {
    id: i64,
    tenant_id: i64,
    event: String,
    payload: Json<Value>,
    created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    #[test]
    fn search_terms_match_literally() {
        assert_eq!(super::like_pattern("Ana_K%"), "%ana\\_k\\%%");
    }
}

/// The `dispatched_at, automated_at` of a new outbox entry: already settled (`now`) when its
/// workspace has no active webhook endpoint, or no active automation, to read it. Nothing is
/// owed to a consumer that did not exist when the event happened (the dispatcher and the
/// automation intake already decide per entry at the time they read it, and an automation
/// only takes entries written after its activation), and an entry settled at birth skips two
/// index entries and the consumer's later update — a first recompute writes a million.
fn settled_at_birth(backend: Backend, tenant: &str, now: &str) -> String {
    let now = match backend {
        Backend::Postgres => format!("{now}::timestamptz"),
        Backend::Sqlite => now.to_string(),
    };
    format!(
        "CASE WHEN EXISTS (SELECT 1 FROM webhooks WHERE tenant_id = {tenant} AND status = 'active')
              THEN NULL ELSE {now} END,
         CASE WHEN EXISTS (SELECT 1 FROM automations WHERE tenant_id = {tenant} AND is_active = TRUE)
              THEN NULL ELSE {now} END"
    )
}

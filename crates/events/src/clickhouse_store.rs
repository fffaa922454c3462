//! The ClickHouse event store. SQL kept to what both Debian's 18.16 and current releases run
//! (DESIGN.md): MergeTree family, UInt64/String/Nullable(Float64) columns, no Map/JSON types.
//! Retried events collapse in a ReplacingMergeTree keyed by message id; reads use `FINAL`,
//! so a duplicate never shows even before the background merge.

use std::time::Duration;

use async_trait::async_trait;
use cairn_domain::{CustomerId, TenantId};
use clickhouse::{Client, Compression, Row};
use serde::{Deserialize, Serialize};

use crate::{
    customer_filter, from_millis, id_list, non_empty, parse_json, to_millis, BehaviourFold, BehaviourQuery,
    BehaviourStats, Customers, Event, EventFilter, EventStore, EventStoreError, PurchaseSummary, Result,
};

/// Forward-only migrations, in order. Each file may hold several statements separated by `;`.
const MIGRATIONS: &[(u32, &str, &str)] = &[
    (1, "events", include_str!("../../../migrations/clickhouse/0001_events.sql")),
    (2, "event_ids", include_str!("../../../migrations/clickhouse/0002_event_ids.sql")),
    (3, "purchases", include_str!("../../../migrations/clickhouse/0003_purchases.sql")),
];

#[derive(Debug, Clone)]
pub struct ClickHouseConfig {
    /// The HTTP interface, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    pub database: String,
    pub user: Option<String>,
    pub password: Option<String>,
}

pub struct ClickHouseStore {
    config: ClickHouseConfig,
    /// Bound to the configured database.
    client: Client,
}

#[derive(Debug, Row, Serialize, Deserialize)]
struct ChEventId {
    tenant_id: u64,
    message_id: String,
    received_at: u64,
}

#[derive(Debug, Row, Deserialize)]
struct ChSummary {
    customer_id: u64,
    purchases: u64,
    days: u64,
    first_day: u32,
    last_day: u32,
    last_at: u64,
    gross: f64,
    first_day_gross: f64,
    refunds: f64,
    /// More rows than distinct message ids: a retried insert not yet collapsed by a merge.
    duplicated: u8,
}

#[derive(Debug, Row, Serialize, Deserialize)]
struct ChEvent {
    tenant_id: u64,
    message_id: String,
    customer_id: u64,
    anonymous_id: String,
    user_id: String,
    kind: String,
    name: String,
    properties: String,
    context: String,
    timestamp: u64,
    /// 0 when the client did not say.
    sent_at: u64,
    received_at: u64,
    amount: Option<f64>,
    currency: String,
}

impl ChEvent {
    fn from_event(e: &Event) -> ChEvent {
        ChEvent {
            tenant_id: e.tenant_id.0 as u64,
            message_id: e.message_id.clone(),
            customer_id: e.customer_id.0 as u64,
            anonymous_id: e.anonymous_id.clone().unwrap_or_default(),
            user_id: e.user_id.clone().unwrap_or_default(),
            kind: e.kind.clone(),
            name: e.name.clone(),
            properties: e.properties.to_string(),
            context: e.context.to_string(),
            timestamp: to_millis(e.timestamp).max(0) as u64,
            sent_at: e.sent_at.map(|t| to_millis(t).max(0) as u64).unwrap_or(0),
            received_at: to_millis(e.received_at).max(0) as u64,
            amount: e.amount,
            currency: e.currency.clone().unwrap_or_default(),
        }
    }

    fn into_event(self) -> Result<Event> {
        Ok(Event {
            tenant_id: TenantId(self.tenant_id as i64),
            message_id: self.message_id,
            customer_id: CustomerId(self.customer_id as i64),
            anonymous_id: non_empty(self.anonymous_id),
            user_id: non_empty(self.user_id),
            kind: self.kind,
            name: self.name,
            properties: parse_json(&self.properties)?,
            context: parse_json(&self.context)?,
            timestamp: from_millis(self.timestamp as i64)?,
            sent_at: (self.sent_at > 0).then(|| from_millis(self.sent_at as i64)).transpose()?,
            received_at: from_millis(self.received_at as i64)?,
            amount: self.amount,
            currency: non_empty(self.currency),
        })
    }
}

const EVENT_COLS: &str = "tenant_id, message_id, customer_id, anonymous_id, user_id, kind, name, properties, \
                          context, timestamp, sent_at, received_at, amount, currency";

impl ClickHouseStore {
    pub fn new(config: ClickHouseConfig) -> ClickHouseStore {
        let client = Self::client(&config).with_database(config.database.clone());
        ClickHouseStore { config, client }
    }

    fn client(config: &ClickHouseConfig) -> Client {
        // 18.16 cannot read the crate's compressed inserts: compression stays off.
        let mut c = Client::default().with_url(config.url.clone()).with_compression(Compression::None);
        if let Some(u) = &config.user {
            c = c.with_user(u.clone());
        }
        if let Some(p) = &config.password {
            c = c.with_password(p.clone());
        }
        c
    }

    pub fn database(&self) -> &str {
        &self.config.database
    }

    /// The events of a batch whose message ids are not stored yet (nor repeated earlier in
    /// the batch). One primary-key lookup per workspace in the batch.
    async fn drop_known<'a>(&self, events: &'a [Event]) -> Result<Vec<&'a Event>> {
        let mut by_tenant: std::collections::BTreeMap<i64, Vec<&str>> = Default::default();
        for e in events {
            by_tenant.entry(e.tenant_id.0).or_default().push(e.message_id.as_str());
        }
        let mut known: std::collections::HashSet<(i64, String)> = Default::default();
        for (tenant, ids) in by_tenant {
            for chunk in ids.chunks(5_000) {
                // `IN (?, ?, …)`, one bound value each: 18.16 does not take an array there, and
                // a tuple keeps the primary-key index in play.
                let placeholders = vec!["?"; chunk.len()].join(", ");
                let sql =
                    format!("SELECT message_id FROM event_ids WHERE tenant_id = ? AND message_id IN ({placeholders})");
                let mut q = self.client.query(&sql).bind(tenant as u64);
                for id in chunk {
                    q = q.bind(*id);
                }
                let found: Vec<String> = q.fetch_all().await?;
                known.extend(found.into_iter().map(|m| (tenant, m)));
            }
        }
        let mut seen: std::collections::HashSet<(i64, &str)> = Default::default();
        Ok(events
            .iter()
            .filter(|e| !known.contains(&(e.tenant_id.0, e.message_id.clone())))
            .filter(|e| seen.insert((e.tenant_id.0, e.message_id.as_str())))
            .collect())
    }

    /// Waits until no mutation of the events or purchases table is pending, so that an erasure
    /// is visible to every later read when `delete_customer` returns.
    async fn await_mutations(&self) -> Result<()> {
        for _ in 0..600 {
            let pending: u64 = self
                .client
                .query(
                    "SELECT count() FROM system.mutations
                     WHERE database = ? AND table IN ('events', 'purchases') AND is_done = 0",
                )
                .bind(self.config.database.as_str())
                .fetch_one()
                .await?;
            if pending == 0 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(EventStoreError::Timeout("erasure mutation still running after 60 s".into()))
    }
}

/// Splits a migration file into statements (on `;` at the end of a line), dropping comments.
fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in sql.lines() {
        let line = line.trim_end();
        if line.trim_start().starts_with("--") {
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
        if line.ends_with(';') {
            let stmt = cur.trim().trim_end_matches(';').trim().to_string();
            if !stmt.is_empty() {
                out.push(stmt);
            }
            cur.clear();
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

#[async_trait]
impl EventStore for ClickHouseStore {
    fn backend(&self) -> &'static str {
        "clickhouse"
    }

    async fn migrate(&self) -> Result<usize> {
        let db = &self.config.database;
        if !db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(EventStoreError::Corrupt(format!("invalid ClickHouse database name {db:?}")));
        }
        Self::client(&self.config).query(&format!("CREATE DATABASE IF NOT EXISTS {db}")).execute().await?;
        self.client
            .query(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, applied_at DateTime)
                 ENGINE = MergeTree ORDER BY version",
            )
            .execute()
            .await?;
        let applied: Vec<u32> = self.client.query("SELECT version FROM schema_migrations").fetch_all().await?;
        let mut ran = 0;
        for (version, name, sql) in MIGRATIONS {
            if applied.contains(version) {
                continue;
            }
            for stmt in statements(sql) {
                self.client.query(&stmt).execute().await?;
            }
            self.client
                .query("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, now())")
                .bind(*version)
                .bind(*name)
                .execute()
                .await?;
            ran += 1;
        }
        Ok(ran)
    }

    async fn ping(&self) -> Result<()> {
        let _: u8 = self.client.query("SELECT 1").fetch_one().await?;
        Ok(())
    }

    async fn insert(&self, events: &[Event]) -> Result<()> {
        let fresh = self.drop_known(events).await?;
        if fresh.is_empty() {
            return Ok(());
        }
        // Events first, ids second: a crash between them leaves events whose ids a retry
        // does not find, and the retry's copies collapse in the ReplacingMergeTree (same key)
        // — never an id without its event.
        let mut insert = self.client.insert::<ChEvent>("events")?;
        for e in &fresh {
            insert.write(&ChEvent::from_event(e)).await?;
        }
        insert.end().await?;
        let mut ids = self.client.insert::<ChEventId>("event_ids")?;
        for e in &fresh {
            ids.write(&ChEventId {
                tenant_id: e.tenant_id.0 as u64,
                message_id: e.message_id.clone(),
                received_at: to_millis(e.received_at).max(0) as u64,
            })
            .await?;
        }
        ids.end().await?;
        Ok(())
    }

    async fn customer_events(
        &self,
        tenant: TenantId,
        customer: CustomerId,
        filter: &EventFilter,
        limit: u64,
        offset: u64,
    ) -> Result<(Vec<Event>, u64)> {
        let mut where_sql = String::from("tenant_id = ? AND customer_id = ?");
        if filter.name.is_some() {
            where_sql.push_str(" AND name = ?");
        }
        if filter.from.is_some() {
            where_sql.push_str(" AND timestamp >= ?");
        }
        if filter.to.is_some() {
            where_sql.push_str(" AND timestamp < ?");
        }
        let bind = |mut q: clickhouse::query::Query| {
            q = q.bind(tenant.0 as u64).bind(customer.0 as u64);
            if let Some(n) = &filter.name {
                q = q.bind(n.as_str());
            }
            if let Some(f) = filter.from {
                q = q.bind(to_millis(f).max(0) as u64);
            }
            if let Some(t) = filter.to {
                q = q.bind(to_millis(t).max(0) as u64);
            }
            q
        };
        let rows: Vec<ChEvent> = bind(self.client.query(&format!(
            "SELECT {EVENT_COLS} FROM events FINAL WHERE {where_sql}
             ORDER BY timestamp DESC, message_id DESC LIMIT {limit} OFFSET {offset}"
        )))
        .fetch_all()
        .await?;
        let total: u64 =
            bind(self.client.query(&format!("SELECT count() FROM events FINAL WHERE {where_sql}"))).fetch_one().await?;
        let events = rows.into_iter().map(ChEvent::into_event).collect::<Result<Vec<_>>>()?;
        Ok((events, total))
    }

    async fn count(&self, tenant: TenantId) -> Result<u64> {
        Ok(self
            .client
            .query("SELECT count() FROM events FINAL WHERE tenant_id = ?")
            .bind(tenant.0 as u64)
            .fetch_one()
            .await?)
    }

    async fn customer_event_counts(&self, tenant: TenantId, customer: CustomerId) -> Result<Vec<(String, u64)>> {
        #[derive(Row, Deserialize)]
        struct NameCount {
            name: String,
            n: u64,
        }
        let rows: Vec<NameCount> = self
            .client
            .query(
                "SELECT name, count() AS n FROM events FINAL WHERE tenant_id = ? AND customer_id = ?
                 GROUP BY name ORDER BY n DESC, name",
            )
            .bind(tenant.0 as u64)
            .bind(customer.0 as u64)
            .fetch_all()
            .await?;
        Ok(rows.into_iter().map(|r| (r.name, r.n)).collect())
    }

    async fn reassign_customer(&self, tenant: TenantId, from: CustomerId, into: CustomerId) -> Result<()> {
        // customer_id is part of the sorting key, so it cannot be updated in place: copy the
        // rows under the new id, then delete the old ones. (The new id is left unaliased: an
        // alias named customer_id would shadow the column in WHERE.) A repeat after a crash
        // inserts copies with identical keys, which the ReplacingMergeTree (and FINAL) collapse.
        self.client
            .query(&format!(
                "INSERT INTO events ({EVENT_COLS}) SELECT tenant_id, message_id, toUInt64(?), anonymous_id,
                     user_id, kind, name, properties, context, timestamp, sent_at, received_at, amount, currency
                 FROM events FINAL WHERE tenant_id = ? AND customer_id = ?"
            ))
            .bind(into.0 as u64)
            .bind(tenant.0 as u64)
            .bind(from.0 as u64)
            .execute()
            .await?;
        self.delete_customer(tenant, from).await
    }

    async fn delete_customer(&self, tenant: TenantId, customer: CustomerId) -> Result<()> {
        // Both tables (the purchases were copied from the events by the view); a crash between
        // the two leaves purchases of no events, which a repeat of the erasure removes.
        for table in ["events", "purchases"] {
            self.client
                .query(&format!("ALTER TABLE {table} DELETE WHERE tenant_id = ? AND customer_id = ?"))
                .bind(tenant.0 as u64)
                .bind(customer.0 as u64)
                .execute()
                .await?;
        }
        self.await_mutations().await
    }

    /// One row per customer, its purchase days worked out from its own (day, amount) pairs (a
    /// day is one transaction), read from `purchases` (a few fine-grained rows per customer, so
    /// that scoring 2,000 marked customers reads about 2,000 granules of 256 rows). `FINAL` on
    /// 18.16 serialises a scan and ignores the primary key for `IN` lists (5 s for 2,000
    /// customers, against 0.3 s without), so the summary reads without it and flags, in the same
    /// scan, the customers whose rows outnumber their distinct message ids — a retried insert not
    /// yet collapsed by a merge. Those alone are read again with `FINAL`. One scan sees one set of
    /// parts, so a duplicate the summary counted is the one it flags.
    async fn purchase_summaries(
        &self,
        tenant: TenantId,
        customers: Customers<'_>,
        tz: chrono_tz::Tz,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<PurchaseSummary>> {
        let Some(only) = customer_filter(customers) else { return Ok(Vec::new()) };
        let (rows, duplicated) = self.summaries(tenant, &only, "", tz, until).await?;
        if duplicated.is_empty() {
            return Ok(rows);
        }
        let again: std::collections::HashSet<i64> = duplicated.iter().copied().collect();
        let mut out: Vec<PurchaseSummary> = rows.into_iter().filter(|r| !again.contains(&r.customer_id.0)).collect();
        for chunk in duplicated.chunks(1_000) {
            out.extend(self.summaries(tenant, &id_list(chunk.iter().copied()), "FINAL", tz, until).await?.0);
        }
        out.sort_by_key(|s| s.customer_id.0);
        Ok(out)
    }

    async fn behaviour_many(
        &self,
        tenant: TenantId,
        queries: &[BehaviourQuery<'_>],
        customers: Customers<'_>,
    ) -> Result<Vec<Vec<BehaviourStats>>> {
        let Some(only) = customer_filter(customers) else { return Ok(vec![Vec::new(); queries.len()]) };
        let plain: Vec<usize> = (0..queries.len()).filter(|i| queries[*i].predicate.is_none()).collect();
        let mut out = vec![Vec::new(); queries.len()];
        if plain.len() > 1 {
            // One scan for all of them: per query, a distinct count and the first and last time
            // among the rows its condition selects.
            let mut columns = Vec::new();
            let mut any = Vec::new();
            for i in &plain {
                let c = queries[*i].condition();
                columns.push(format!(
                    "uniqExactIf(cityHash64(message_id), {c}), minIf(timestamp, {c}), maxIf(timestamp, {c})"
                ));
                any.push(c);
            }
            let sql = format!(
                "SELECT customer_id, [{}] FROM events WHERE tenant_id = ? AND ({}){only} GROUP BY customer_id ORDER BY customer_id",
                columns.join(", "),
                any.join(" OR ")
            );
            // The columns alternate count, first, last per query; read as one UInt64 array.
            let rows: Vec<ChMany> = self.client.query(&sql).bind(tenant.0 as u64).fetch_all().await?;
            for ChMany { customer_id: customer, values } in rows {
                for (k, i) in plain.iter().enumerate() {
                    let n = values[3 * k];
                    if n > 0 {
                        out[*i].push(BehaviourStats {
                            customer_id: customer as i64,
                            count: n,
                            first_ms: values[3 * k + 1] as i64,
                            last_ms: values[3 * k + 2] as i64,
                        });
                    }
                }
            }
        }
        for (i, q) in queries.iter().enumerate() {
            if q.predicate.is_some() || plain.len() <= 1 {
                out[i] = self.behaviour(tenant, q, customers).await?;
            }
        }
        Ok(out)
    }

    async fn behaviour(
        &self,
        tenant: TenantId,
        query: &BehaviourQuery<'_>,
        customers: Customers<'_>,
    ) -> Result<Vec<BehaviourStats>> {
        let Some(only) = customer_filter(customers) else { return Ok(Vec::new()) };
        let time = query.time_filter();
        let Some(predicate) = query.predicate else {
            // A retried event not yet collapsed by a merge has the same message id: counting
            // distinct ids counts it once without FINAL.
            let rows: Vec<(u64, u64, u64, u64)> = self
                .client
                .query(&format!(
                    "SELECT customer_id, uniqExact(cityHash64(message_id)), min(timestamp), max(timestamp) FROM events
                     WHERE tenant_id = ? AND name = ?{time}{only} GROUP BY customer_id ORDER BY customer_id"
                ))
                .bind(tenant.0 as u64)
                .bind(query.name)
                .fetch_all()
                .await?;
            return Ok(rows
                .into_iter()
                .map(|(c, n, first, last)| BehaviourStats {
                    customer_id: c as i64,
                    count: n,
                    first_ms: first as i64,
                    last_ms: last as i64,
                })
                .collect());
        };
        let mut cursor = self
            .client
            .query(&format!(
                "SELECT customer_id, message_id, timestamp, properties FROM events
                 WHERE tenant_id = ? AND name = ?{time}{only}"
            ))
            .bind(tenant.0 as u64)
            .bind(query.name)
            .fetch::<(u64, String, u64, String)>()?;
        let mut fold = BehaviourFold::default();
        while let Some((customer, message_id, ms, properties)) = cursor.next().await? {
            if predicate(&parse_json(&properties)?) {
                fold.push(customer as i64, &message_id, ms as i64);
            }
        }
        Ok(fold.finish())
    }
}

#[derive(Row, Deserialize)]
struct ChMany {
    customer_id: u64,
    values: Vec<u64>,
}

/// Over the `purchases` table (migration 0003: the events named purchase or refund that carry an
/// amount, copied by a materialized view).
const SUMMARY_FILTER: &str = "tenant_id = ? AND timestamp <= ?";

impl ClickHouseStore {
    async fn summaries(
        &self,
        tenant: TenantId,
        only: &str,
        final_: &str,
        tz: chrono_tz::Tz,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<(Vec<PurchaseSummary>, Vec<i64>)> {
        // One pass over the events, grouped by customer only: each customer's purchases are kept
        // as (day, amount) pairs, and the days are worked out from that short array. Grouping by
        // (customer, day) first, as this did before, built ~15 million groups for 1 million
        // customers and took 3–4× as long on 18.16. Aliases are global to a ClickHouse query,
        // hence the inner names.
        let sql = format!(
            "SELECT customer_id, purchases, length(arrayDistinct(arrayMap(t -> t.1, pairs))) AS days,
                    arrayReduce('min', arrayMap(t -> t.1, pairs)) AS first_day,
                    arrayReduce('max', arrayMap(t -> t.1, pairs)) AS last_day, last_at, gross,
                    arraySum(arrayMap(t -> if(t.1 = first_day, t.2, 0), pairs)) AS first_day_gross, refunds,
                    duplicated
             FROM (
                 SELECT customer_id, countIf(name = 'purchase') AS purchases,
                        groupArrayIf((toUInt32(toDate(toDateTime(intDiv(timestamp, 1000)), ?)), amount),
                                     name = 'purchase') AS pairs,
                        maxIf(timestamp, name = 'purchase') AS last_at,
                        sumIf(amount, name = 'purchase') AS gross,
                        sumIf(amount, name = 'refund') AS refunds,
                        count() != uniqExact(cityHash64(message_id)) AS duplicated
                 FROM purchases {final_}
                 WHERE {SUMMARY_FILTER}{only}
                 GROUP BY customer_id HAVING purchases > 0
             )
             ORDER BY customer_id"
        );
        // A whole-workspace scan yields to per-customer reads (ClickHouse pauses a query of a
        // lower priority — a higher number — while one of a higher priority runs): a recompute's
        // scan, seconds of both cores on a large workspace, otherwise held the scoring of newly
        // marked customers back by seconds.
        let priority = if only.is_empty() { "10" } else { "1" };
        let rows: Vec<ChSummary> = self
            .client
            .query(&sql)
            .with_option("priority", priority)
            .bind(tz.name())
            .bind(tenant.0 as u64)
            .bind(to_millis(until).max(0) as u64)
            .fetch_all()
            .await?;
        let duplicated = rows.iter().filter(|r| r.duplicated != 0).map(|r| r.customer_id as i64).collect();
        let rows = rows
            .into_iter()
            .map(|r| {
                Ok(PurchaseSummary {
                    customer_id: CustomerId(r.customer_id as i64),
                    purchases: r.purchases,
                    days: r.days,
                    first_day: r.first_day as i64,
                    last_day: r.last_day as i64,
                    last_at: from_millis(r.last_at as i64)?,
                    gross: r.gross,
                    first_day_gross: r.first_day_gross,
                    refunds: r.refunds,
                })
            })
            .collect::<Result<_>>()?;
        Ok((rows, duplicated))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_files_split_into_statements_without_comments() {
        let sql =
            "-- a comment\nCREATE TABLE a (x UInt8)\nENGINE = Memory;\n\nCREATE TABLE b (y UInt8) ENGINE = Memory;\n";
        assert_eq!(
            statements(sql),
            vec!["CREATE TABLE a (x UInt8)\nENGINE = Memory", "CREATE TABLE b (y UInt8) ENGINE = Memory"]
        );
    }

    #[test]
    fn every_migration_file_is_listed_in_order() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations/clickhouse");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        assert_eq!(files.len(), MIGRATIONS.len(), "a file in migrations/clickhouse is not in MIGRATIONS");
        for (i, (version, _, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version as usize, i + 1);
            assert!(files[i].starts_with(&format!("{:04}_", version)));
        }
    }
}

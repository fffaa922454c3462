//! The embedded event store: a SQLite file of its own (apart from the entity store, so event
//! writes never queue behind CRM writes), WAL mode, fsync on every commit.

use std::{path::Path, time::Duration};

use async_trait::async_trait;
use cairn_domain::{CustomerId, TenantId};
use sqlx::{
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    QueryBuilder, SqlitePool,
};

use crate::{
    customer_filter, from_millis, non_empty, parse_json, to_millis, BehaviourFold, BehaviourQuery, BehaviourStats,
    Customers, Event, EventFilter, EventStore, PurchaseSummary, Result, SummaryFold,
};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/events-sqlite");

/// SQLite caps bound parameters per statement (32,766); 14 per row.
const ROWS_PER_INSERT: usize = 2_000;

pub struct SqliteEventStore {
    write: SqlitePool,
    read: SqlitePool,
}

impl SqliteEventStore {
    pub async fn open(path: &Path) -> Result<SqliteEventStore> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
        }
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            // 64 MiB of page cache per connection: index inserts stay in memory.
            .pragma("cache_size", "-65536")
            .busy_timeout(Duration::from_secs(10));
        let write = SqlitePoolOptions::new().max_connections(1).connect_with(opts.clone()).await?;
        let read = SqlitePoolOptions::new().max_connections(4).connect_with(opts).await?;
        Ok(SqliteEventStore { write, read })
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    tenant_id: i64,
    message_id: String,
    customer_id: i64,
    anonymous_id: Option<String>,
    user_id: Option<String>,
    kind: String,
    name: String,
    properties: String,
    context: String,
    timestamp: i64,
    sent_at: Option<i64>,
    received_at: i64,
    amount: Option<f64>,
    currency: Option<String>,
}

impl Row {
    fn into_event(self) -> Result<Event> {
        Ok(Event {
            tenant_id: TenantId(self.tenant_id),
            message_id: self.message_id,
            customer_id: CustomerId(self.customer_id),
            anonymous_id: self.anonymous_id.and_then(non_empty),
            user_id: self.user_id.and_then(non_empty),
            kind: self.kind,
            name: self.name,
            properties: parse_json(&self.properties)?,
            context: parse_json(&self.context)?,
            timestamp: from_millis(self.timestamp)?,
            sent_at: self.sent_at.map(from_millis).transpose()?,
            received_at: from_millis(self.received_at)?,
            amount: self.amount,
            currency: self.currency.and_then(non_empty),
        })
    }
}

#[async_trait]
impl EventStore for SqliteEventStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> Result<usize> {
        let count = |pool: &SqlitePool| {
            let pool = pool.clone();
            async move { sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM _sqlx_migrations").fetch_one(&pool).await }
        };
        let before = count(&self.write).await.unwrap_or(0);
        MIGRATIONS.run(&self.write).await?;
        Ok((count(&self.write).await? - before) as usize)
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    async fn insert(&self, events: &[Event]) -> Result<()> {
        let mut tx = self.write.begin().await?;
        for chunk in events.chunks(ROWS_PER_INSERT) {
            let mut qb = QueryBuilder::new(
                "INSERT INTO events (tenant_id, message_id, customer_id, anonymous_id, user_id, kind, name, \
                 properties, context, timestamp, sent_at, received_at, amount, currency) ",
            );
            qb.push_values(chunk, |mut b, e| {
                b.push_bind(e.tenant_id.0)
                    .push_bind(e.message_id.as_str())
                    .push_bind(e.customer_id.0)
                    .push_bind(e.anonymous_id.as_deref())
                    .push_bind(e.user_id.as_deref())
                    .push_bind(e.kind.as_str())
                    .push_bind(e.name.as_str())
                    .push_bind(e.properties.to_string())
                    .push_bind(e.context.to_string())
                    .push_bind(to_millis(e.timestamp))
                    .push_bind(e.sent_at.map(to_millis))
                    .push_bind(to_millis(e.received_at))
                    .push_bind(e.amount)
                    .push_bind(e.currency.as_deref());
            });
            qb.push(" ON CONFLICT (tenant_id, message_id) DO NOTHING");
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
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
        let where_sql = "tenant_id = $1 AND customer_id = $2 AND ($3 IS NULL OR name = $3)
             AND ($4 IS NULL OR timestamp >= $4) AND ($5 IS NULL OR timestamp < $5)";
        let from = filter.from.map(to_millis);
        let to = filter.to.map(to_millis);
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT tenant_id, message_id, customer_id, anonymous_id, user_id, kind, name, properties, context,
                    timestamp, sent_at, received_at, amount, currency
             FROM events WHERE {where_sql} ORDER BY timestamp DESC, message_id DESC LIMIT $6 OFFSET $7"
        ))
        .bind(tenant.0)
        .bind(customer.0)
        .bind(filter.name.as_deref())
        .bind(from)
        .bind(to)
        .bind(limit as i64)
        .bind(offset as i64)
        .fetch_all(&self.read)
        .await?;
        let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM events WHERE {where_sql}"))
            .bind(tenant.0)
            .bind(customer.0)
            .bind(filter.name.as_deref())
            .bind(from)
            .bind(to)
            .fetch_one(&self.read)
            .await?;
        let events = rows.into_iter().map(Row::into_event).collect::<Result<Vec<_>>>()?;
        Ok((events, total as u64))
    }

    async fn count(&self, tenant: TenantId) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE tenant_id = $1")
            .bind(tenant.0)
            .fetch_one(&self.read)
            .await?;
        Ok(n as u64)
    }

    async fn customer_event_counts(&self, tenant: TenantId, customer: CustomerId) -> Result<Vec<(String, u64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT name, COUNT(*) AS n FROM events WHERE tenant_id = $1 AND customer_id = $2
             GROUP BY name ORDER BY n DESC, name",
        )
        .bind(tenant.0)
        .bind(customer.0)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.into_iter().map(|(name, n)| (name, n as u64)).collect())
    }

    async fn reassign_customer(&self, tenant: TenantId, from: CustomerId, into: CustomerId) -> Result<()> {
        sqlx::query("UPDATE events SET customer_id = $1 WHERE tenant_id = $2 AND customer_id = $3")
            .bind(into.0)
            .bind(tenant.0)
            .bind(from.0)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn delete_customer(&self, tenant: TenantId, customer: CustomerId) -> Result<()> {
        sqlx::query("DELETE FROM events WHERE tenant_id = $1 AND customer_id = $2")
            .bind(tenant.0)
            .bind(customer.0)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn purchase_summaries(
        &self,
        tenant: TenantId,
        customers: Customers<'_>,
        tz: chrono_tz::Tz,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<PurchaseSummary>> {
        use futures::TryStreamExt;
        let Some(only) = customer_filter(customers) else { return Ok(Vec::new()) };
        let sql = format!(
            "SELECT customer_id, timestamp, name = 'purchase', amount FROM events
             WHERE tenant_id = $1 AND name IN ('purchase', 'refund') AND amount IS NOT NULL AND timestamp <= $2{only}
             ORDER BY customer_id, timestamp"
        );
        let mut fold = SummaryFold::new(tz);
        let mut rows = sqlx::query_as::<_, (i64, i64, bool, f64)>(&sql)
            .persistent(false)
            .bind(tenant.0)
            .bind(to_millis(until))
            .fetch(&self.read);
        while let Some((customer, ms, purchase, amount)) = rows.try_next().await? {
            fold.push(customer, ms, purchase, amount)?;
        }
        Ok(fold.finish())
    }

    async fn behaviour(
        &self,
        tenant: TenantId,
        query: &BehaviourQuery<'_>,
        customers: Customers<'_>,
    ) -> Result<Vec<BehaviourStats>> {
        use futures::TryStreamExt;
        let Some(only) = customer_filter(customers) else { return Ok(Vec::new()) };
        let time = query.time_filter();
        let Some(predicate) = query.predicate else {
            let sql = format!(
                "SELECT customer_id, COUNT(*), MIN(timestamp), MAX(timestamp) FROM events
                 WHERE tenant_id = $1 AND name = $2{time}{only} GROUP BY customer_id ORDER BY customer_id"
            );
            let rows: Vec<(i64, i64, i64, i64)> =
                sqlx::query_as(&sql).persistent(false).bind(tenant.0).bind(query.name).fetch_all(&self.read).await?;
            return Ok(rows
                .into_iter()
                .map(|(customer_id, n, first_ms, last_ms)| BehaviourStats {
                    customer_id,
                    count: n as u64,
                    first_ms,
                    last_ms,
                })
                .collect());
        };
        let sql = format!(
            "SELECT customer_id, message_id, timestamp, properties FROM events
             WHERE tenant_id = $1 AND name = $2{time}{only}"
        );
        let mut fold = BehaviourFold::default();
        let mut rows = sqlx::query_as::<_, (i64, String, i64, String)>(&sql)
            .persistent(false)
            .bind(tenant.0)
            .bind(query.name)
            .fetch(&self.read);
        while let Some((customer, message_id, ms, properties)) = rows.try_next().await? {
            if predicate(&parse_json(&properties)?) {
                fold.push(customer, &message_id, ms);
            }
        }
        Ok(fold.finish())
    }
}

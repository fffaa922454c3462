//! Cairn's event store: every tracked event, append-only, behind one trait with two
//! implementations — SQLite (the embedded default) and ClickHouse (for volume).
//!
//! Both behave the same, and `tests/conformance.rs` proves it by running one suite on each:
//! an event with a `message_id` already stored for its workspace counts once, reads are newest
//! first, erasure removes a customer's events for good.

mod clickhouse_store;
mod sqlite_store;

use async_trait::async_trait;
use cairn_domain::{CustomerId, TenantId};
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

pub use clickhouse_store::{ClickHouseConfig, ClickHouseStore};
pub use sqlite_store::SqliteEventStore;

/// One tracked event, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub tenant_id: TenantId,
    /// The client's id for the event (or one generated at ingestion): the dedupe key.
    pub message_id: String,
    /// The profile the event belongs to.
    pub customer_id: CustomerId,
    pub anonymous_id: Option<String>,
    pub user_id: Option<String>,
    /// `track`, `identify`, `page`, `screen`, `group` or `alias`.
    pub kind: String,
    /// The event name (`purchase`, `pageview`, …).
    pub name: String,
    pub properties: serde_json::Value,
    pub context: serde_json::Value,
    /// When it happened (client time, skew-corrected).
    pub timestamp: DateTime<Utc>,
    /// When the client sent it, if it said.
    pub sent_at: Option<DateTime<Utc>>,
    /// When Cairn received it.
    pub received_at: DateTime<Utc>,
    /// The money an event carries (purchase, refund), extracted at ingestion.
    pub amount: Option<f64>,
    pub currency: Option<String>,
}

/// One customer's purchases and refunds, summed per calendar day of the workspace's time zone:
/// what scoring reads. Days are counted from 1970-01-01 in that zone.
#[derive(Debug, Clone, PartialEq)]
pub struct PurchaseSummary {
    pub customer_id: CustomerId,
    /// `purchase` events with an amount.
    pub purchases: u64,
    /// Distinct days with a purchase.
    pub days: u64,
    pub first_day: i64,
    pub last_day: i64,
    pub last_at: DateTime<Utc>,
    /// The sum of purchase amounts.
    pub gross: f64,
    /// The sum of purchase amounts on the first purchase day.
    pub first_day_gross: f64,
    /// The sum of refund amounts.
    pub refunds: f64,
}

/// Whose purchases to summarise.
#[derive(Debug, Clone, Copy)]
pub enum Customers<'a> {
    All,
    Only(&'a [CustomerId]),
}

/// Which of a customer's events to read.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub name: Option<String>,
    pub from: Option<DateTime<Utc>>,
    /// Exclusive.
    pub to: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum EventStoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] sqlx::Error),
    #[error("sqlite migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("stored event is malformed: {0}")]
    Corrupt(String),
    #[error("timed out: {0}")]
    Timeout(String),
}

pub type Result<T, E = EventStoreError> = std::result::Result<T, E>;

#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// `sqlite` or `clickhouse`.
    fn backend(&self) -> &'static str;

    /// Creates or upgrades the schema. Idempotent. Returns how many migrations ran.
    async fn migrate(&self) -> Result<usize>;

    /// Checks the store answers (for `/readyz`).
    async fn ping(&self) -> Result<()>;

    /// Appends events. When this returns Ok they are durable. An event whose
    /// (tenant, message_id) is already stored is not stored again.
    async fn insert(&self, events: &[Event]) -> Result<()>;

    /// A customer's events, newest first, and how many match in all.
    async fn customer_events(
        &self,
        tenant: TenantId,
        customer: CustomerId,
        filter: &EventFilter,
        limit: u64,
        offset: u64,
    ) -> Result<(Vec<Event>, u64)>;

    /// How many events a workspace has (deduplicated).
    async fn count(&self, tenant: TenantId) -> Result<u64>;

    /// A customer's event counts by name, most frequent first (ties by name).
    async fn customer_event_counts(&self, tenant: TenantId, customer: CustomerId) -> Result<Vec<(String, u64)>>;

    /// Moves every event of customer `from` to customer `into` (profile merges). Idempotent:
    /// running it again after a crash finishes the move without duplicating anything.
    async fn reassign_customer(&self, tenant: TenantId, from: CustomerId, into: CustomerId) -> Result<()>;

    /// Erases every event of a customer (right to erasure). When it returns, no read sees them.
    async fn delete_customer(&self, tenant: TenantId, customer: CustomerId) -> Result<()>;

    /// The purchase summaries of customers with at least one purchase at or before `until`,
    /// ordered by customer id. Days are calendar days in the IANA time zone `tz`.
    async fn purchase_summaries(
        &self,
        tenant: TenantId,
        customers: Customers<'_>,
        tz: chrono_tz::Tz,
        until: DateTime<Utc>,
    ) -> Result<Vec<PurchaseSummary>>;

    /// Per customer with at least one matching event: how many (a retried event counts once),
    /// and the first and last time. Events match by name, time (`from` inclusive, `to`
    /// exclusive, Unix ms) and, when given, a predicate over their properties (evaluated in
    /// Rust, so that both stores agree to the bit). Ordered by customer id.
    async fn behaviour(
        &self,
        tenant: TenantId,
        query: &BehaviourQuery<'_>,
        customers: Customers<'_>,
    ) -> Result<Vec<BehaviourStats>>;

    /// Several behaviour queries over the same customers, answered in as few passes as the
    /// store can (ClickHouse: the queries without a predicate in one scan). One result per
    /// query, in order.
    async fn behaviour_many(
        &self,
        tenant: TenantId,
        queries: &[BehaviourQuery<'_>],
        customers: Customers<'_>,
    ) -> Result<Vec<Vec<BehaviourStats>>> {
        let mut out = Vec::with_capacity(queries.len());
        for q in queries {
            out.push(self.behaviour(tenant, q, customers).await?);
        }
        Ok(out)
    }
}

/// A predicate over an event's properties.
pub type PropertyPredicate<'a> = dyn Fn(&serde_json::Value) -> bool + Send + Sync + 'a;

/// Which events a behaviour condition counts.
pub struct BehaviourQuery<'a> {
    pub name: &'a str,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub predicate: Option<&'a PropertyPredicate<'a>>,
}

impl BehaviourQuery<'_> {
    /// The query's name and time bounds as one ClickHouse condition.
    pub(crate) fn condition(&self) -> String {
        let name = self.name.replace('\\', "\\\\").replace('\'', "\\'");
        format!("(name = '{name}'{})", self.time_filter())
    }

    pub(crate) fn time_filter(&self) -> String {
        let mut f = String::new();
        if let Some(from) = self.from_ms {
            f.push_str(&format!(" AND timestamp >= {}", from.max(0)));
        }
        if let Some(to) = self.to_ms {
            f.push_str(&format!(" AND timestamp < {}", to.max(0)));
        }
        f
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BehaviourStats {
    pub customer_id: i64,
    pub count: u64,
    pub first_ms: i64,
    pub last_ms: i64,
}

/// Folds matching events, in any order, into per-customer stats (the predicate path of both
/// stores).
#[derive(Default)]
pub(crate) struct BehaviourFold {
    stats: std::collections::HashMap<i64, BehaviourStats>,
    seen: std::collections::HashSet<(i64, u64)>,
}

impl BehaviourFold {
    pub(crate) fn push(&mut self, customer: i64, message_id: &str, ms: i64) {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        message_id.hash(&mut h);
        if !self.seen.insert((customer, h.finish())) {
            return;
        }
        let s = self.stats.entry(customer).or_insert(BehaviourStats {
            customer_id: customer,
            count: 0,
            first_ms: ms,
            last_ms: ms,
        });
        s.count += 1;
        s.first_ms = s.first_ms.min(ms);
        s.last_ms = s.last_ms.max(ms);
    }

    pub(crate) fn finish(self) -> Vec<BehaviourStats> {
        let mut out: Vec<BehaviourStats> = self.stats.into_values().collect();
        out.sort_unstable_by_key(|s| s.customer_id);
        out
    }
}

/// Folds a customer-ordered stream of (customer, timestamp ms, is purchase, amount) into
/// purchase summaries: the embedded store's way, where SQLite has no time-zone database.
pub(crate) struct SummaryFold {
    tz: chrono_tz::Tz,
    out: Vec<PurchaseSummary>,
    current: Option<PurchaseSummary>,
}

impl SummaryFold {
    pub(crate) fn new(tz: chrono_tz::Tz) -> SummaryFold {
        SummaryFold { tz, out: Vec::new(), current: None }
    }

    pub(crate) fn day_of(tz: chrono_tz::Tz, ms: i64) -> Result<i64> {
        let local = from_millis(ms)?.with_timezone(&tz).date_naive();
        Ok(local.signed_duration_since(chrono::NaiveDate::default()).num_days())
    }

    /// Rows of one customer must come in time order, customers one after the other.
    pub(crate) fn push(&mut self, customer: i64, ms: i64, purchase: bool, amount: f64) -> Result<()> {
        if self.current.as_ref().is_some_and(|c| c.customer_id.0 != customer) {
            self.flush();
        }
        let day = Self::day_of(self.tz, ms)?;
        let c = self.current.get_or_insert(PurchaseSummary {
            customer_id: CustomerId(customer),
            purchases: 0,
            days: 0,
            first_day: day,
            last_day: day,
            last_at: DateTime::<Utc>::MIN_UTC,
            gross: 0.0,
            first_day_gross: 0.0,
            refunds: 0.0,
        });
        if !purchase {
            c.refunds += amount;
            return Ok(());
        }
        if c.purchases == 0 {
            c.first_day = day;
            c.last_day = day;
            c.days = 1;
        } else if day != c.last_day {
            c.days += 1;
            c.last_day = day;
        }
        if day == c.first_day {
            c.first_day_gross += amount;
        }
        c.purchases += 1;
        c.gross += amount;
        c.last_at = from_millis(ms)?;
        Ok(())
    }

    fn flush(&mut self) {
        if let Some(c) = self.current.take() {
            if c.purchases > 0 {
                self.out.push(c);
            }
        }
    }

    pub(crate) fn finish(mut self) -> Vec<PurchaseSummary> {
        self.flush();
        self.out
    }
}

/// ` AND customer_id IN (…)` for a list of customer ids (integers: nothing to escape); empty for
/// all customers. `None` when the list is empty (nothing to read).
pub(crate) fn customer_filter(customers: Customers<'_>) -> Option<String> {
    match customers {
        Customers::All => Some(String::new()),
        Customers::Only([]) => None,
        Customers::Only(ids) => Some(id_list(ids.iter().map(|c| c.0))),
    }
}

pub(crate) fn id_list(ids: impl Iterator<Item = i64>) -> String {
    format!(" AND customer_id IN ({})", ids.map(|c| c.to_string()).collect::<Vec<_>>().join(","))
}

pub(crate) fn to_millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_millis(ms: i64) -> Result<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms).single().ok_or_else(|| EventStoreError::Corrupt(format!("timestamp {ms}")))
}

pub(crate) fn parse_json(s: &str) -> Result<serde_json::Value> {
    serde_json::from_str(s).map_err(|e| EventStoreError::Corrupt(e.to_string()))
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// Latency of event-store writes and reads, for `/metrics`.
pub static INSERT_LATENCY: cairn_domain::metrics::Histogram = cairn_domain::metrics::Histogram::new();
pub static READ_LATENCY: cairn_domain::metrics::Histogram = cairn_domain::metrics::Histogram::new();

/// Wraps an event store and records the latency of every call.
pub struct Timed<S>(pub S);

async fn timed<T>(h: &cairn_domain::metrics::Histogram, f: impl std::future::Future<Output = T>) -> T {
    let started = std::time::Instant::now();
    let out = f.await;
    h.observe(started.elapsed());
    out
}

#[async_trait]
impl<S: EventStore> EventStore for Timed<S> {
    fn backend(&self) -> &'static str {
        self.0.backend()
    }

    async fn migrate(&self) -> Result<usize> {
        self.0.migrate().await
    }

    async fn ping(&self) -> Result<()> {
        timed(&READ_LATENCY, self.0.ping()).await
    }

    async fn insert(&self, events: &[Event]) -> Result<()> {
        timed(&INSERT_LATENCY, self.0.insert(events)).await
    }

    async fn customer_events(
        &self,
        tenant: TenantId,
        customer: CustomerId,
        filter: &EventFilter,
        limit: u64,
        offset: u64,
    ) -> Result<(Vec<Event>, u64)> {
        timed(&READ_LATENCY, self.0.customer_events(tenant, customer, filter, limit, offset)).await
    }

    async fn count(&self, tenant: TenantId) -> Result<u64> {
        timed(&READ_LATENCY, self.0.count(tenant)).await
    }

    async fn customer_event_counts(&self, tenant: TenantId, customer: CustomerId) -> Result<Vec<(String, u64)>> {
        timed(&READ_LATENCY, self.0.customer_event_counts(tenant, customer)).await
    }

    async fn reassign_customer(&self, tenant: TenantId, from: CustomerId, into: CustomerId) -> Result<()> {
        timed(&INSERT_LATENCY, self.0.reassign_customer(tenant, from, into)).await
    }

    async fn delete_customer(&self, tenant: TenantId, customer: CustomerId) -> Result<()> {
        timed(&INSERT_LATENCY, self.0.delete_customer(tenant, customer)).await
    }

    async fn purchase_summaries(
        &self,
        tenant: TenantId,
        customers: Customers<'_>,
        tz: chrono_tz::Tz,
        until: DateTime<Utc>,
    ) -> Result<Vec<PurchaseSummary>> {
        timed(&READ_LATENCY, self.0.purchase_summaries(tenant, customers, tz, until)).await
    }

    async fn behaviour(
        &self,
        tenant: TenantId,
        query: &BehaviourQuery<'_>,
        customers: Customers<'_>,
    ) -> Result<Vec<BehaviourStats>> {
        timed(&READ_LATENCY, self.0.behaviour(tenant, query, customers)).await
    }

    async fn behaviour_many(
        &self,
        tenant: TenantId,
        queries: &[BehaviourQuery<'_>],
        customers: Customers<'_>,
    ) -> Result<Vec<Vec<BehaviourStats>>> {
        timed(&READ_LATENCY, self.0.behaviour_many(tenant, queries, customers)).await
    }
}

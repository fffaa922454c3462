//! The scoring worker on real stores (SQLite + SQLite, PostgreSQL + ClickHouse): a recompute
//! stopped half-way leaves every written row whole, no other instance can touch the workspace
//! while the lease holds, and after it runs out another instance resumes from the last
//! committed chunk with the same model.

use std::{sync::Arc, time::Duration};

use cairn_domain::{Clock, CustomerId, TenantId};
use cairn_events::{ClickHouseConfig, ClickHouseStore, Event, EventStore, SqliteEventStore};
use cairn_scoring::{enqueue_recompute, load_model, Progress, Scorer, ScoringSettings};
use cairn_store::{customers::CustomerFields, Store, StoreConfig};
use cairn_testkit::{FreshClickHouse, FreshPg, TempDir};
use chrono::{TimeZone, Utc};

struct Stores {
    store: Store,
    events: Arc<dyn EventStore>,
    _pg: Option<FreshPg>,
    _ch: Option<FreshClickHouse>,
    _dir: TempDir,
}

async fn embedded() -> Stores {
    let dir = TempDir::new();
    let store = Store::connect(&StoreConfig::Sqlite { path: dir.0.join("cairn.db") }).await.unwrap();
    let events: Arc<dyn EventStore> = Arc::new(SqliteEventStore::open(&dir.0.join("events.db")).await.unwrap());
    Stores { store, events, _pg: None, _ch: None, _dir: dir }
}

async fn scale_out() -> Stores {
    let pg = FreshPg::create().await;
    let store = Store::connect(&StoreConfig::Postgres { url: pg.url.clone(), max_connections: 4 }).await.unwrap();
    let ch = FreshClickHouse::new("cairn_scoring");
    let config = ClickHouseConfig { url: ch.url.clone(), database: ch.database.clone(), user: None, password: None };
    let events: Arc<dyn EventStore> = Arc::new(ClickHouseStore::new(config));
    Stores { store, events, _pg: Some(pg), _ch: Some(ch), _dir: TempDir::new() }
}

/// 120 customers, customer k with 1 + k % 4 purchases over the spring.
async fn populate(s: &Stores, clock: &Clock) -> TenantId {
    s.store.migrate().await.unwrap();
    s.events.migrate().await.unwrap();
    let now = clock.now();
    let mut conn = s.store.write().await.unwrap();
    let tenant = conn.insert_tenant("Acme", "acme", now).await.unwrap().id;
    let mut events = Vec::new();
    for k in 0..120i64 {
        let fields = CustomerFields {
            email: Some(format!("c{k}@example.com")),
            traits: serde_json::json!({}),
            ..Default::default()
        };
        let customer = conn.insert_customer(tenant, &fields, now).await.unwrap().id;
        for j in 0..(1 + k % 4) {
            let at =
                Utc.with_ymd_and_hms(2026, 3, 1 + (k % 28) as u32, 10, 0, 0).unwrap() + chrono::Duration::days(j * 20);
            events.push(event(tenant, customer, &format!("m{k}-{j}"), at, 5.0 + (k * 7 % 50) as f64));
        }
    }
    drop(conn);
    s.events.insert(&events).await.unwrap();
    tenant
}

fn event(tenant: TenantId, customer: CustomerId, id: &str, at: chrono::DateTime<Utc>, amount: f64) -> Event {
    Event {
        tenant_id: tenant,
        message_id: id.into(),
        customer_id: customer,
        anonymous_id: None,
        user_id: None,
        kind: "track".into(),
        name: "purchase".into(),
        properties: serde_json::json!({"amount": amount}),
        context: serde_json::json!({}),
        timestamp: at,
        sent_at: None,
        received_at: at,
        amount: Some(amount),
        currency: Some("EUR".into()),
    }
}

fn settings() -> ScoringSettings {
    ScoringSettings { chunk: 25, lease: Duration::from_secs(1), ..ScoringSettings::default() }
}

async fn progress(store: &Store, job: i64) -> (String, Progress) {
    let j = store.read().await.unwrap().job(job).await.unwrap();
    (j.status, serde_json::from_str(j.progress.as_deref().unwrap_or("{}")).unwrap_or_default())
}

async fn a_recompute_stopped_half_way_resumes_elsewhere_with_the_same_model(s: Stores) {
    let clock = Clock::test();
    clock.set(Utc.with_ymd_and_hms(2026, 7, 1, 12, 0, 0).unwrap());
    let tenant = populate(&s, &clock).await;
    let a = Scorer::new(s.store.clone(), s.events.clone(), clock.clone(), settings());
    let b = Scorer::new(s.store.clone(), s.events.clone(), clock.clone(), settings());

    let job = enqueue_recompute(&s.store, tenant, true, None).await.unwrap();
    // Instance A dies after two chunks of 25: its rows and cursor are committed, the rest is not.
    assert_eq!(a.work_one(Some(2)).await.unwrap(), Some(job));
    let (status, p) = progress(&s.store, job).await;
    assert_eq!((status.as_str(), p.scored, p.customers), ("running", 50, 120), "{p:?}");
    let written = s.store.read().await.unwrap().scores_in_range(tenant, None, None).await.unwrap();
    assert_eq!(written.len(), 50);
    assert_eq!(p.cursor, Some(written.last().unwrap().customer_id));
    let (model, model_job) = load_model(&mut s.store.read().await.unwrap(), tenant).await.unwrap().unwrap();
    assert_eq!(model_job, Some(job));

    // While A's lease holds, B can neither take the job nor score the workspace.
    assert_eq!(b.work_one(None).await.unwrap(), None);
    let now = Utc::now();
    let locked = s.store.write().await.unwrap().lock_scoring(tenant, "someone-else", now, now).await.unwrap();
    assert!(!locked, "the workspace is A's until its lease runs out");

    // After it runs out, B resumes after the cursor with A's model and finishes.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(b.work_one(None).await.unwrap(), Some(job));
    let (status, p) = progress(&s.store, job).await;
    assert_eq!((status.as_str(), p.scored, p.phase.as_str()), ("done", 120, "done"), "{p:?}");
    let (after, _) = load_model(&mut s.store.read().await.unwrap(), tenant).await.unwrap().unwrap();
    assert_eq!(after, model, "the resumed job scored with the model it started with");
    let all = s.store.read().await.unwrap().scores_in_range(tenant, None, None).await.unwrap();
    assert_eq!(all.len(), 120);
    assert_eq!(&all[..50], &written[..], "rows written before the crash were right and are untouched");

    // A fresh recompute with the same cut points finds nothing to change: every row was whole.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let again = enqueue_recompute(&s.store, tenant, false, None).await.unwrap();
    assert_eq!(a.work_one(None).await.unwrap(), Some(again));
    let (status, p) = progress(&s.store, again).await;
    let now_rows = s.store.read().await.unwrap().scores_in_range(tenant, None, None).await.unwrap();
    let diff: Vec<_> = all.iter().zip(&now_rows).filter(|(a, b)| a != b).take(1).collect();
    assert_eq!((status.as_str(), p.changed), ("done", 0), "{p:?} {diff:#?}");
}

/// An event store whose whole-workspace summary is taken at once but handed over only when the
/// test says: the recompute's snapshot goes stale while it waits.
struct Stalled {
    inner: Arc<dyn EventStore>,
    release: Arc<tokio::sync::Notify>,
    waiting: Arc<tokio::sync::Notify>,
}

#[async_trait::async_trait]
impl EventStore for Stalled {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn migrate(&self) -> cairn_events::Result<usize> {
        self.inner.migrate().await
    }
    async fn ping(&self) -> cairn_events::Result<()> {
        self.inner.ping().await
    }
    async fn insert(&self, events: &[Event]) -> cairn_events::Result<()> {
        self.inner.insert(events).await
    }
    async fn customer_events(
        &self,
        tenant: TenantId,
        customer: CustomerId,
        filter: &cairn_events::EventFilter,
        limit: u64,
        offset: u64,
    ) -> cairn_events::Result<(Vec<Event>, u64)> {
        self.inner.customer_events(tenant, customer, filter, limit, offset).await
    }
    async fn count(&self, tenant: TenantId) -> cairn_events::Result<u64> {
        self.inner.count(tenant).await
    }
    async fn customer_event_counts(&self, t: TenantId, c: CustomerId) -> cairn_events::Result<Vec<(String, u64)>> {
        self.inner.customer_event_counts(t, c).await
    }
    async fn reassign_customer(&self, t: TenantId, from: CustomerId, into: CustomerId) -> cairn_events::Result<()> {
        self.inner.reassign_customer(t, from, into).await
    }
    async fn delete_customer(&self, t: TenantId, c: CustomerId) -> cairn_events::Result<()> {
        self.inner.delete_customer(t, c).await
    }
    async fn purchase_summaries(
        &self,
        tenant: TenantId,
        customers: cairn_events::Customers<'_>,
        tz: chrono_tz::Tz,
        until: chrono::DateTime<Utc>,
    ) -> cairn_events::Result<Vec<cairn_events::PurchaseSummary>> {
        let out = self.inner.purchase_summaries(tenant, customers, tz, until).await?;
        if matches!(customers, cairn_events::Customers::All) {
            self.waiting.notify_one();
            self.release.notified().await;
        }
        Ok(out)
    }
    async fn behaviour(
        &self,
        tenant: TenantId,
        query: &cairn_events::BehaviourQuery<'_>,
        customers: cairn_events::Customers<'_>,
    ) -> cairn_events::Result<Vec<cairn_events::BehaviourStats>> {
        self.inner.behaviour(tenant, query, customers).await
    }
}

/// While a recompute is busy (here: its snapshot held back), a new purchase is still scored
/// within moments, and the recompute's later chunks do not overwrite that fresher row with the
/// stale snapshot.
async fn purchases_during_a_recompute_are_scored_at_once_and_not_overwritten(s: Stores) {
    let clock = Clock::test();
    clock.set(Utc.with_ymd_and_hms(2026, 7, 1, 12, 0, 0).unwrap());
    let tenant = populate(&s, &clock).await;
    let plain = Scorer::new(s.store.clone(), s.events.clone(), clock.clone(), settings());
    enqueue_recompute(&s.store, tenant, true, None).await.unwrap();
    plain.work_one(None).await.unwrap().expect("first recompute");
    tokio::time::sleep(Duration::from_millis(1_200)).await; // the first scorer's lease runs out

    let (release, waiting) = (Arc::new(tokio::sync::Notify::new()), Arc::new(tokio::sync::Notify::new()));
    let stalled: Arc<dyn EventStore> =
        Arc::new(Stalled { inner: s.events.clone(), release: release.clone(), waiting: waiting.clone() });
    let scorer = Arc::new(Scorer::new(s.store.clone(), stalled, clock.clone(), settings()));
    let job = enqueue_recompute(&s.store, tenant, false, None).await.unwrap();
    let running = tokio::spawn({
        let scorer = scorer.clone();
        async move { scorer.work_one(None).await.unwrap() }
    });
    tokio::time::timeout(Duration::from_secs(10), waiting.notified()).await.expect("the recompute takes its snapshot");

    // Customer 100 (in a late chunk) buys for 1,000 now; the processor would mark it.
    let customer = CustomerId(100);
    let big = event(tenant, customer, "late", Utc.with_ymd_and_hms(2026, 7, 1, 11, 0, 0).unwrap(), 1_000.0);
    s.events.insert(&[big]).await.unwrap();
    s.store.write().await.unwrap().mark_scoring_dirty(&[(tenant, customer)], clock.now()).await.unwrap();
    let started = std::time::Instant::now();
    let row = loop {
        let row = s.store.read().await.unwrap().scores_for(tenant, &[customer]).await.unwrap().pop().unwrap();
        if row.clv_total > 1_000.0 {
            break row;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "not scored while the recompute waits: {row:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    release.notify_one();
    assert_eq!(running.await.unwrap(), Some(job));
    let (status, _) = progress(&s.store, job).await;
    assert_eq!(status, "done");
    let after = s.store.read().await.unwrap().scores_for(tenant, &[customer]).await.unwrap().pop().unwrap();
    assert_eq!(after.clv_total, row.clv_total, "the stale snapshot did not overwrite the fresher row");
    assert_eq!(after.clv_order_count, row.clv_order_count);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_purchases_during_a_recompute() {
    purchases_during_a_recompute_are_scored_at_once_and_not_overwritten(embedded().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_out_purchases_during_a_recompute() {
    purchases_during_a_recompute_are_scored_at_once_and_not_overwritten(scale_out().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_recompute_resumes() {
    a_recompute_stopped_half_way_resumes_elsewhere_with_the_same_model(embedded().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_out_recompute_resumes() {
    a_recompute_stopped_half_way_resumes_elsewhere_with_the_same_model(scale_out().await).await;
}

/// A scorer racing an erasure can write a row for a customer deleted between its existence check
/// and its commit (PostgreSQL keeps no foreign key from scores to customers, migration 0014).
/// The erasure deleted the customer's events first, so the next recompute finds no purchases
/// behind the row and removes it.
async fn a_score_left_behind_by_an_erasure_goes_at_the_next_recompute(s: Stores) {
    let clock = Clock::test();
    clock.set(Utc.with_ymd_and_hms(2026, 7, 1, 12, 0, 0).unwrap());
    let tenant = populate(&s, &clock).await;
    let scorer = Scorer::new(s.store.clone(), s.events.clone(), clock.clone(), settings());
    enqueue_recompute(&s.store, tenant, true, None).await.unwrap();
    scorer.work_one(None).await.unwrap().expect("first recompute");
    let before = s.store.read().await.unwrap().scores_in_range(tenant, None, None).await.unwrap();
    assert_eq!(before.len(), 120);

    // The erasure as it lands when the scorer's write wins the race: events and profile gone,
    // the score row still there.
    let erased = CustomerId(before[40].customer_id);
    s.events.delete_customer(tenant, erased).await.unwrap();
    let mut conn = s.store.write().await.unwrap();
    let delete = "DELETE FROM customers WHERE id = $1";
    match conn.raw() {
        cairn_store::Raw::Postgres(c) => sqlx::query(delete).bind(erased.0).execute(&mut *c).await.map(|_| ()),
        cairn_store::Raw::Sqlite(c) => sqlx::query(delete).bind(erased.0).execute(&mut *c).await.map(|_| ()),
    }
    .unwrap();
    drop(conn);

    tokio::time::sleep(Duration::from_millis(1_200)).await; // the first scorer's lease runs out
    enqueue_recompute(&s.store, tenant, false, None).await.unwrap();
    scorer.work_one(None).await.unwrap().expect("second recompute");
    let after = s.store.read().await.unwrap().scores_in_range(tenant, None, None).await.unwrap();
    assert!(after.iter().all(|r| r.customer_id != erased.0), "the erased customer's row went");
    assert_eq!(after.len(), 119);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_score_left_behind_by_an_erasure() {
    a_score_left_behind_by_an_erasure_goes_at_the_next_recompute(embedded().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_out_score_left_behind_by_an_erasure() {
    a_score_left_behind_by_an_erasure_goes_at_the_next_recompute(scale_out().await).await;
}

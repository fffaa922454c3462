//! The segment worker on real stores (SQLite + SQLite, PostgreSQL + ClickHouse): an evaluation
//! stopped half-way and resumed by another instance emits every transition exactly once; the
//! lease keeps a second instance out meanwhile; marks and crossings move customers in and out
//! once each.

use std::{sync::Arc, time::Duration};

use cairn_domain::{Clock, CustomerId, TenantId};
use cairn_events::{ClickHouseConfig, ClickHouseStore, Event, EventStore, SqliteEventStore};
use cairn_segments::{changed, enqueue_evaluation, SegmentSettings, Segmenter};
use cairn_store::{customers::CustomerFields, segments::SegmentFields, Store, StoreConfig};
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
    let ch = FreshClickHouse::new("cairn_segments");
    let config = ClickHouseConfig { url: ch.url.clone(), database: ch.database.clone(), user: None, password: None };
    let events: Arc<dyn EventStore> = Arc::new(ClickHouseStore::new(config));
    Stores { store, events, _pg: Some(pg), _ch: Some(ch), _dir: TempDir::new() }
}

fn event(tenant: TenantId, customer: CustomerId, id: &str, at: chrono::DateTime<Utc>) -> Event {
    Event {
        tenant_id: tenant,
        message_id: id.into(),
        customer_id: customer,
        anonymous_id: None,
        user_id: None,
        kind: "track".into(),
        name: "login".into(),
        properties: serde_json::json!({}),
        context: serde_json::json!({}),
        timestamp: at,
        sent_at: None,
        received_at: at,
        amount: None,
        currency: None,
    }
}

/// 30 customers; customer k logged in on June (1 + k) at 09:00 when k is even. The segment:
/// logged in within the last 14 days (at June 30 noon: since June 16 noon, so the logins of
/// June 17, 19, …, 29: seven members).
async fn populate(s: &Stores, clock: &Clock) -> (TenantId, i64, Vec<i64>) {
    s.store.migrate().await.unwrap();
    s.events.migrate().await.unwrap();
    let now = clock.now();
    let mut conn = s.store.write().await.unwrap();
    let tenant = conn.insert_tenant("Acme", "acme", now).await.unwrap().id;
    let mut events = Vec::new();
    let mut expected = Vec::new();
    for k in 0..30i64 {
        let fields = CustomerFields {
            email: Some(format!("c{k}@example.com")),
            traits: serde_json::json!({}),
            ..Default::default()
        };
        let customer = conn.insert_customer(tenant, &fields, now).await.unwrap().id;
        if k % 2 == 0 {
            let day = 1 + (k % 30) as u32;
            events.push(event(
                tenant,
                customer,
                &format!("m{k}"),
                Utc.with_ymd_and_hms(2026, 6, day, 9, 0, 0).unwrap(),
            ));
            if day >= 16 {
                expected.push(customer.0);
            }
        }
    }
    let fields = SegmentFields {
        name: "Active",
        kind: "dynamic",
        filters: Some(r#"{"event": "login", "within_days": 14}"#),
        ..Default::default()
    };
    let segment = conn.insert_segment(tenant, &fields, None, now).await.unwrap().id;
    drop(conn);
    s.events.insert(&events).await.unwrap();
    (tenant, segment, expected)
}

/// (event, customer) of a segment's transitions, in outbox order.
async fn transitions(store: &Store, tenant: TenantId, segment: i64) -> Vec<(String, i64)> {
    let outbox = store.read().await.unwrap().outbox_after(tenant, 0, 100_000).await.unwrap();
    outbox
        .into_iter()
        .filter(|e| e.event.starts_with("customer.segment_") && e.payload["segment_id"] == segment)
        .map(|e| (e.event, e.payload["customer_id"].as_i64().unwrap()))
        .collect()
}

fn settings(lease: Duration) -> SegmentSettings {
    SegmentSettings { chunk: 4, lease, poll: Duration::from_millis(20), ..Default::default() }
}

async fn evaluation_resumes_after_a_stop_without_repeating_transitions(s: Stores) {
    let clock = Clock::test();
    clock.set(Utc.with_ymd_and_hms(2026, 6, 30, 12, 0, 0).unwrap());
    let (tenant, segment, expected) = populate(&s, &clock).await;
    assert_eq!(expected.len(), 7);
    let job = enqueue_evaluation(&mut s.store.write().await.unwrap(), tenant, segment, clock.now()).await.unwrap();

    // The first instance writes one chunk of four of the seven, then stops as a crash would.
    let first = Segmenter::new(s.store.clone(), s.events.clone(), clock.clone(), settings(Duration::from_millis(400)));
    assert_eq!(first.work_one(Some(1)).await.unwrap(), Some(job));
    let half = transitions(&s.store, tenant, segment).await;
    assert_eq!(half.len(), 4, "{half:?}");
    // While its lease holds, another instance can neither claim the job nor run it.
    let second = Segmenter::new(s.store.clone(), s.events.clone(), clock.clone(), settings(Duration::from_secs(30)));
    assert_eq!(second.work_one(None).await.unwrap(), None);
    assert!(matches!(second.run_job(job, None).await, Err(cairn_segments::SegmentError::Busy)));
    // After it runs out, the second instance takes the job over and finishes it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(second.work_one(None).await.unwrap(), Some(job));
    assert_eq!(s.store.read().await.unwrap().job(job).await.unwrap().status, "done");
    let all = transitions(&s.store, tenant, segment).await;
    let entered: Vec<i64> = all.iter().map(|(e, c)| (assert_eq!(e, "customer.segment_entered"), *c).1).collect();
    assert_eq!(entered, expected, "each member entered once, in customer order");
    let stored = s.store.read().await.unwrap().segment_member_ids(tenant, segment, None).await.unwrap();
    assert_eq!(stored, expected);
    assert_eq!(s.store.read().await.unwrap().segment(tenant, segment).await.unwrap().member_count, 7);

    // Evaluating again changes nothing and emits nothing.
    let again = enqueue_evaluation(&mut s.store.write().await.unwrap(), tenant, segment, clock.now()).await.unwrap();
    assert_eq!(second.work_one(None).await.unwrap(), Some(again));
    assert_eq!(transitions(&s.store, tenant, segment).await.len(), 7);
}

async fn marks_and_crossings_move_customers_once(s: Stores) {
    let clock = Clock::test();
    clock.set(Utc.with_ymd_and_hms(2026, 6, 30, 12, 0, 0).unwrap());
    let (tenant, segment, expected) = populate(&s, &clock).await;
    let worker = Segmenter::new(s.store.clone(), s.events.clone(), clock.clone(), settings(Duration::from_secs(30)));
    enqueue_evaluation(&mut s.store.write().await.unwrap(), tenant, segment, clock.now()).await.unwrap();
    while worker.tick().await.unwrap() {}
    assert_eq!(transitions(&s.store, tenant, segment).await.len(), expected.len());

    // A customer outside logs in now: marked, re-evaluated, in once; marking again moves nothing.
    let outsider = CustomerId(2);
    assert!(!expected.contains(&outsider.0));
    s.events.insert(&[event(tenant, outsider, "new", clock.now())]).await.unwrap();
    let mark = [(tenant, outsider, changed::EVENTS)];
    s.store.write().await.unwrap().mark_segments_dirty(&mark, clock.now()).await.unwrap();
    worker.tick().await.unwrap();
    s.store.write().await.unwrap().mark_segments_dirty(&mark, clock.now()).await.unwrap();
    worker.tick().await.unwrap();
    let t = transitions(&s.store, tenant, segment).await;
    assert_eq!(t[expected.len()..], [("customer.segment_entered".to_string(), outsider.0)]);

    // Time: the earliest member's login (June 17 09:00) leaves the 14-day window just after
    // July 1 09:00; that is its crossing, and nothing moves before it.
    let first = expected[0];
    let due = s.store.read().await.unwrap().crossing(tenant, CustomerId(first)).await.unwrap().unwrap();
    assert_eq!(due, Utc.with_ymd_and_hms(2026, 7, 1, 9, 0, 0).unwrap() + chrono::Duration::milliseconds(1));
    clock.set(Utc.with_ymd_and_hms(2026, 7, 1, 8, 59, 0).unwrap());
    worker.tick().await.unwrap();
    assert_eq!(transitions(&s.store, tenant, segment).await.len(), expected.len() + 1);
    clock.set(due);
    while worker.tick().await.unwrap() {}
    worker.tick().await.unwrap();
    let t = transitions(&s.store, tenant, segment).await;
    assert_eq!(t[expected.len() + 1..], [("customer.segment_exited".to_string(), first)]);
    // The member's next crossing is gone (no login left in the window); the next member's is
    // two days later.
    assert_eq!(s.store.read().await.unwrap().crossing(tenant, CustomerId(first)).await.unwrap(), None);
    let next = s.store.read().await.unwrap().crossing(tenant, CustomerId(expected[1])).await.unwrap();
    assert_eq!(next, Some(Utc.with_ymd_and_hms(2026, 7, 3, 9, 0, 0).unwrap() + chrono::Duration::milliseconds(1)));
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
              async fn $name() { super::$name(super::embedded().await).await })*
        }
        mod scale_out {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
              async fn $name() { super::$name(super::scale_out().await).await })*
        }
    };
}

/// Each built-in RFM segment's members are exactly the customers whose stored scores name it.
async fn assert_rfm_segments_follow_scores(store: &Store, tenant: TenantId) {
    let scores = store.read().await.unwrap().scores_in_range(tenant, None, None).await.unwrap();
    let builtins: Vec<_> = store
        .read()
        .await
        .unwrap()
        .list_segments(tenant)
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.builtin.is_some())
        .collect();
    assert_eq!(builtins.len(), 4);
    let mut filled = 0;
    for segment in builtins {
        let mut want: Vec<i64> =
            scores.iter().filter(|r| r.rfm_segment == segment.name).map(|r| r.customer_id).collect();
        want.sort_unstable();
        let mut have = store.read().await.unwrap().segment_member_ids(tenant, segment.id, None).await.unwrap();
        have.sort_unstable();
        assert_eq!(have, want, "{}", segment.name);
        filled += usize::from(!want.is_empty());
    }
    assert!(filled >= 2, "the purchases spread customers over several RFM segments");
}

/// A recompute that re-scores most customers of a chunk leaves the segments on scores to one
/// evaluation each at its end (no mark per customer); one that changes fewer marks each
/// customer. Either way the built-in RFM segments end up holding exactly the customers their
/// scores name.
async fn rfm_segments_follow_a_recompute_by_evaluation_or_by_marks(s: Stores) {
    use cairn_scoring::{enqueue_recompute, Progress, Scorer, ScoringSettings};
    let clock = Clock::test();
    clock.set(Utc.with_ymd_and_hms(2026, 7, 1, 12, 0, 0).unwrap());
    s.store.migrate().await.unwrap();
    s.events.migrate().await.unwrap();
    let mut conn = s.store.write().await.unwrap();
    let tenant = conn.insert_tenant("Acme", "acme", clock.now()).await.unwrap().id;
    let mut events = Vec::new();
    let mut customers = Vec::new();
    for k in 0..40i64 {
        let fields = CustomerFields {
            email: Some(format!("c{k}@example.com")),
            traits: serde_json::json!({}),
            ..Default::default()
        };
        let customer = conn.insert_customer(tenant, &fields, clock.now()).await.unwrap().id;
        customers.push(customer);
        for j in 0..(1 + k % 5) {
            let at = Utc.with_ymd_and_hms(2026, 1 + (k % 6) as u32, 1 + j as u32, 10, 0, 0).unwrap();
            events.push(purchase(tenant, customer, &format!("p{k}-{j}"), at, 10.0 + (k * 13 % 90) as f64));
        }
    }
    drop(conn);
    s.events.insert(&events).await.unwrap();
    let segmenter = Segmenter::new(s.store.clone(), s.events.clone(), clock.clone(), settings(Duration::from_secs(30)));
    let scoring = |defer_segments_at| ScoringSettings {
        chunk: 10,
        defer_segments_at,
        lease: Duration::from_millis(200),
        ..Default::default()
    };
    let progress = |job: i64| {
        let store = s.store.clone();
        async move {
            let j = store.read().await.unwrap().job(job).await.unwrap();
            serde_json::from_str::<Progress>(j.progress.as_deref().unwrap()).unwrap()
        }
    };

    // The first recompute changes every customer: deferred.
    let scorer = Scorer::new(s.store.clone(), s.events.clone(), clock.clone(), scoring(5));
    let job = enqueue_recompute(&s.store, tenant, true, None).await.unwrap();
    assert_eq!(scorer.work_one(None).await.unwrap(), Some(job));
    assert!(progress(job).await.segments_deferred);
    assert!(s.store.read().await.unwrap().segment_dirty(tenant, 1_000).await.unwrap().is_empty(), "no marks");
    let queued = s.store.write().await.unwrap().segments_depending_on(tenant, changed::SCORES).await.unwrap();
    assert_eq!(queued.len(), 4, "the four built-in RFM segments read scores");
    while segmenter.tick().await.unwrap() {}
    assert_rfm_segments_follow_scores(&s.store, tenant).await;

    // A month later every third customer has bought again, big: the next recompute (fresh cut
    // points) changes fewer customers per chunk than the threshold: marked one by one.
    tokio::time::sleep(Duration::from_millis(300)).await; // the first scorer's lease runs out
    clock.set(Utc.with_ymd_and_hms(2026, 8, 1, 12, 0, 0).unwrap());
    let more: Vec<Event> = customers
        .iter()
        .enumerate()
        .filter(|(k, _)| k % 3 == 0)
        .map(|(k, c)| purchase(tenant, *c, &format!("q{k}"), clock.now(), 500.0 + k as f64))
        .collect();
    s.events.insert(&more).await.unwrap();
    let scorer = Scorer::new(s.store.clone(), s.events.clone(), clock.clone(), scoring(1_000));
    let job = enqueue_recompute(&s.store, tenant, false, None).await.unwrap();
    assert_eq!(scorer.work_one(None).await.unwrap(), Some(job));
    let p = progress(job).await;
    assert!(!p.segments_deferred && p.changed > 0, "{p:?}");
    let marks = s.store.read().await.unwrap().segment_dirty(tenant, 1_000).await.unwrap();
    assert_eq!(marks.len() as u64, p.changed, "one mark per changed customer");
    while segmenter.tick().await.unwrap() {}
    assert_rfm_segments_follow_scores(&s.store, tenant).await;
}

fn purchase(tenant: TenantId, customer: CustomerId, id: &str, at: chrono::DateTime<Utc>, amount: f64) -> Event {
    Event {
        name: "purchase".into(),
        properties: serde_json::json!({"amount": amount}),
        amount: Some(amount),
        currency: Some("EUR".into()),
        ..event(tenant, customer, id, at)
    }
}

on_both!(
    evaluation_resumes_after_a_stop_without_repeating_transitions,
    marks_and_crossings_move_customers_once,
    rfm_segments_follow_a_recompute_by_evaluation_or_by_marks
);

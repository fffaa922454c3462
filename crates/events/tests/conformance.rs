//! One suite, two event stores: every test runs on SQLite and on ClickHouse, each on a fresh
//! database. ClickHouse must be running (`scripts/test.sh` starts it); a missing server fails
//! the ClickHouse tests, it never skips them.

use std::sync::Arc;

use cairn_domain::{CustomerId, TenantId};
use cairn_events::{
    BehaviourQuery, BehaviourStats, ClickHouseConfig, ClickHouseStore, Customers, Event, EventFilter, EventStore,
    PurchaseSummary, SqliteEventStore,
};
use cairn_testkit::{FreshClickHouse, TempDir};
use chrono::{DateTime, Duration, Utc};
use serde_json::json;

/// A store on a fresh database, removed when the test ends (even when it fails).
struct Fresh {
    store: Arc<dyn EventStore>,
    _ch: Option<FreshClickHouse>,
    _dir: Option<TempDir>,
}

async fn sqlite() -> Fresh {
    let dir = TempDir::new();
    let store = SqliteEventStore::open(&dir.0.join("events.db")).await.expect("open sqlite event store");
    store.migrate().await.expect("migrate");
    Fresh { store: Arc::new(store), _ch: None, _dir: Some(dir) }
}

async fn clickhouse() -> Fresh {
    let ch = FreshClickHouse::new("cairn_test");
    let store = migrated_clickhouse(&ch).await;
    Fresh { store: Arc::new(store), _ch: Some(ch), _dir: None }
}

/// A store on `ch`'s database, migrated.
async fn migrated_clickhouse(ch: &FreshClickHouse) -> ClickHouseStore {
    let store = ClickHouseStore::new(ClickHouseConfig {
        url: ch.url.clone(),
        database: ch.database.clone(),
        user: None,
        password: None,
    });
    store.migrate().await.unwrap_or_else(|e| panic!("ClickHouse at {} must be running for this test: {e}", ch.url));
    store
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn event(tenant: i64, customer: i64, message_id: &str, name: &str, at: DateTime<Utc>) -> Event {
    Event {
        tenant_id: TenantId(tenant),
        message_id: message_id.into(),
        customer_id: CustomerId(customer),
        anonymous_id: Some("anon-1".into()),
        user_id: None,
        kind: "track".into(),
        name: name.into(),
        properties: json!({"amount": 149.99, "currency": "EUR", "items": [{"id": "prod_1"}]}),
        context: json!({"ip": "203.0.113.7"}),
        timestamp: at,
        sent_at: Some(at + Duration::milliseconds(250)),
        received_at: at + Duration::seconds(1),
        amount: Some(149.99),
        currency: Some("EUR".into()),
    }
}

macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {
        mod sqlite_store {
            $(#[tokio::test] async fn $name() { super::$name(super::sqlite().await).await })*
        }
        mod clickhouse_store {
            $(#[tokio::test] async fn $name() { super::$name(super::clickhouse().await).await })*
        }
    };
}

on_every_store!(
    migrating_twice_changes_nothing,
    stored_events_read_back_exactly,
    a_retried_message_id_is_stored_once,
    reads_are_newest_first_and_paginated,
    reads_filter_by_name_and_time_range,
    workspaces_never_see_each_others_events,
    erasure_removes_every_event_of_the_customer_only,
    event_counts_by_name_count_each_message_once,
    reassigning_moves_every_event_once_even_when_repeated,
    a_retry_with_another_time_or_customer_still_counts_once,
    purchase_summaries_merge_days_subtract_refunds_and_stop_at_now,
    behaviour_counts_matching_events_with_first_and_last_times,
);

async fn migrating_twice_changes_nothing(s: Fresh) {
    assert_eq!(s.store.migrate().await.unwrap(), 0, "a second migration run must apply nothing");
    s.store.ping().await.unwrap();
}

async fn stored_events_read_back_exactly(s: Fresh) {
    let e = event(1, 42, "m-1", "purchase", t("2026-03-16T10:00:00.123Z"));
    s.store.insert(std::slice::from_ref(&e)).await.unwrap();
    let (events, total) =
        s.store.customer_events(TenantId(1), CustomerId(42), &EventFilter::default(), 10, 0).await.unwrap();
    assert_eq!(total, 1);
    assert_eq!(events, vec![e]);
}

async fn a_retried_message_id_is_stored_once(s: Fresh) {
    let e = event(1, 42, "m-1", "purchase", t("2026-03-16T10:00:00Z"));
    s.store.insert(std::slice::from_ref(&e)).await.unwrap();
    s.store.insert(&[e.clone(), e.clone()]).await.unwrap();
    assert_eq!(s.store.count(TenantId(1)).await.unwrap(), 1);
    let (events, total) =
        s.store.customer_events(TenantId(1), CustomerId(42), &EventFilter::default(), 10, 0).await.unwrap();
    assert_eq!((events.len(), total), (1, 1));
}

async fn reads_are_newest_first_and_paginated(s: Fresh) {
    let base = t("2026-01-01T00:00:00Z");
    let events: Vec<Event> =
        (0..25).map(|i| event(1, 7, &format!("m-{i:02}"), "pageview", base + Duration::minutes(i))).collect();
    s.store.insert(&events).await.unwrap();
    let (page1, total) =
        s.store.customer_events(TenantId(1), CustomerId(7), &EventFilter::default(), 10, 0).await.unwrap();
    let (page3, _) =
        s.store.customer_events(TenantId(1), CustomerId(7), &EventFilter::default(), 10, 20).await.unwrap();
    assert_eq!(total, 25);
    assert_eq!(page1.iter().map(|e| e.message_id.as_str()).collect::<Vec<_>>()[..3], ["m-24", "m-23", "m-22"]);
    assert_eq!(
        page3.iter().map(|e| e.message_id.as_str()).collect::<Vec<_>>(),
        ["m-04", "m-03", "m-02", "m-01", "m-00"]
    );
}

async fn reads_filter_by_name_and_time_range(s: Fresh) {
    let base = t("2026-01-01T00:00:00Z");
    let mut events = Vec::new();
    for i in 0..10 {
        let name = if i % 2 == 0 { "purchase" } else { "pageview" };
        events.push(event(1, 7, &format!("m-{i}"), name, base + Duration::days(i)));
    }
    s.store.insert(&events).await.unwrap();
    let filter = EventFilter {
        name: Some("purchase".into()),
        from: Some(base + Duration::days(2)),
        to: Some(base + Duration::days(8)),
    };
    let (found, total) = s.store.customer_events(TenantId(1), CustomerId(7), &filter, 100, 0).await.unwrap();
    assert_eq!(total, 3);
    assert_eq!(found.iter().map(|e| e.message_id.as_str()).collect::<Vec<_>>(), ["m-6", "m-4", "m-2"]);
}

async fn workspaces_never_see_each_others_events(s: Fresh) {
    let at = t("2026-01-01T00:00:00Z");
    // The same message id in two workspaces is two events.
    s.store.insert(&[event(1, 5, "m-1", "signup", at), event(2, 5, "m-1", "signup", at)]).await.unwrap();
    assert_eq!(s.store.count(TenantId(1)).await.unwrap(), 1);
    assert_eq!(s.store.count(TenantId(2)).await.unwrap(), 1);
    let (found, _) = s.store.customer_events(TenantId(2), CustomerId(5), &EventFilter::default(), 10, 0).await.unwrap();
    assert!(found.iter().all(|e| e.tenant_id == TenantId(2)));
    assert_eq!(s.store.count(TenantId(3)).await.unwrap(), 0);
}

async fn erasure_removes_every_event_of_the_customer_only(s: Fresh) {
    let at = t("2026-01-01T00:00:00Z");
    s.store
        .insert(&[event(1, 5, "a", "signup", at), event(1, 5, "b", "login", at), event(1, 6, "c", "signup", at)])
        .await
        .unwrap();
    s.store
        .insert(&[
            money(1, 5, "p5", "purchase", "2026-01-02T00:00:00Z", 10.0),
            money(1, 6, "p6", "purchase", "2026-01-02T00:00:00Z", 7.0),
        ])
        .await
        .unwrap();
    s.store.delete_customer(TenantId(1), CustomerId(5)).await.unwrap();
    let (gone, total) =
        s.store.customer_events(TenantId(1), CustomerId(5), &EventFilter::default(), 10, 0).await.unwrap();
    assert!(gone.is_empty() && total == 0, "erased events must not be readable");
    assert_eq!(s.store.count(TenantId(1)).await.unwrap(), 2, "other customers keep their events");
    // Nor are the erased customer's purchases, where scoring reads them.
    let until = t("2026-02-01T00:00:00Z");
    let left = s.store.purchase_summaries(TenantId(1), Customers::All, chrono_tz::UTC, until).await.unwrap();
    assert_eq!(left.iter().map(|p| (p.customer_id, p.gross)).collect::<Vec<_>>(), vec![(CustomerId(6), 7.0)]);
    let only = s.store.purchase_summaries(TenantId(1), Customers::Only(&[CustomerId(5)]), chrono_tz::UTC, until);
    assert!(only.await.unwrap().is_empty());
}

async fn event_counts_by_name_count_each_message_once(s: Fresh) {
    let at = t("2026-01-01T00:00:00Z");
    let events = [
        event(1, 5, "a", "pageview", at),
        event(1, 5, "b", "pageview", at + Duration::seconds(1)),
        event(1, 5, "c", "purchase", at + Duration::seconds(2)),
        event(1, 5, "c", "purchase", at + Duration::seconds(2)),
        event(1, 6, "d", "purchase", at),
    ];
    s.store.insert(&events).await.unwrap();
    s.store.insert(&events[2..3]).await.unwrap();
    let counts = s.store.customer_event_counts(TenantId(1), CustomerId(5)).await.unwrap();
    assert_eq!(counts, vec![("pageview".to_string(), 2), ("purchase".to_string(), 1)]);
    assert!(s.store.customer_event_counts(TenantId(2), CustomerId(5)).await.unwrap().is_empty());
}

async fn reassigning_moves_every_event_once_even_when_repeated(s: Fresh) {
    let at = t("2026-01-01T00:00:00Z");
    s.store
        .insert(&[event(1, 5, "a", "pageview", at), event(1, 5, "b", "signup", at), event(1, 9, "c", "login", at)])
        .await
        .unwrap();
    s.store.insert(&[money(1, 5, "p", "purchase", "2026-01-01T12:00:00Z", 30.0)]).await.unwrap();
    s.store.reassign_customer(TenantId(1), CustomerId(5), CustomerId(9)).await.unwrap();
    s.store.reassign_customer(TenantId(1), CustomerId(5), CustomerId(9)).await.unwrap();
    // The purchase is scored on the profile it moved to, once.
    let until = t("2026-02-01T00:00:00Z");
    let summaries = s.store.purchase_summaries(TenantId(1), Customers::All, chrono_tz::UTC, until).await.unwrap();
    assert_eq!(
        summaries.iter().map(|p| (p.customer_id, p.purchases, p.gross)).collect::<Vec<_>>(),
        vec![(CustomerId(9), 1, 30.0)]
    );
    let (moved, total) =
        s.store.customer_events(TenantId(1), CustomerId(9), &EventFilter::default(), 10, 0).await.unwrap();
    assert_eq!(total, 4);
    assert!(moved.iter().all(|e| e.customer_id == CustomerId(9)));
    let (left, _) = s.store.customer_events(TenantId(1), CustomerId(5), &EventFilter::default(), 10, 0).await.unwrap();
    assert!(left.is_empty());
    // A retried event arriving after the merge, now resolved to the new profile, counts once.
    let mut retry = event(1, 9, "a", "pageview", at);
    retry.received_at = at + Duration::seconds(30);
    s.store.insert(&[retry]).await.unwrap();
    assert_eq!(s.store.count(TenantId(1)).await.unwrap(), 4);
}

async fn a_retry_with_another_time_or_customer_still_counts_once(s: Fresh) {
    let at = t("2026-01-01T00:00:00Z");
    s.store.insert(&[event(1, 5, "m-1", "signup", at)]).await.unwrap();
    // The client sent no timestamp, so the retry was stamped when it arrived; and identity
    // resolution put it on another profile meanwhile.
    let mut retry = event(1, 6, "m-1", "signup", at + Duration::seconds(40));
    retry.received_at = at + Duration::seconds(40);
    s.store.insert(&[retry.clone(), retry]).await.unwrap();
    assert_eq!(s.store.count(TenantId(1)).await.unwrap(), 1);
    let (on_six, _) =
        s.store.customer_events(TenantId(1), CustomerId(6), &EventFilter::default(), 10, 0).await.unwrap();
    assert!(on_six.is_empty(), "the retry was not stored again");
}

fn money(tenant: i64, customer: i64, id: &str, name: &str, at: &str, amount: f64) -> Event {
    Event { amount: Some(amount), ..event(tenant, customer, id, name, t(at)) }
}

/// What scoring reads: per customer, purchases, distinct purchase days (in the time zone),
/// first and last day, gross, the first day's gross, refunds — only up to `until`.
async fn purchase_summaries_merge_days_subtract_refunds_and_stop_at_now(s: Fresh) {
    s.store
        .insert(&[
            money(1, 7, "a", "purchase", "2026-03-01T10:00:00Z", 10.0),
            money(1, 7, "b", "purchase", "2026-03-01T23:30:00Z", 5.0),
            money(1, 7, "c", "purchase", "2026-03-04T09:00:00Z", 20.0),
            money(1, 7, "d", "refund", "2026-03-05T09:00:00Z", 4.0),
            money(1, 7, "e", "purchase", "2026-04-01T09:00:00Z", 99.0), // after `until`
            money(1, 8, "f", "refund", "2026-03-02T09:00:00Z", 1.0),    // refunds only: not scored
            money(1, 9, "g", "pageview", "2026-03-02T09:00:00Z", 1.0),  // not money
            money(2, 7, "h", "purchase", "2026-03-02T09:00:00Z", 1.0),  // another workspace
        ])
        .await
        .unwrap();
    let until = t("2026-03-31T00:00:00Z");
    let day = |s: &str| s.parse::<chrono::NaiveDate>().unwrap().signed_duration_since(Default::default()).num_days();
    let want = |first: &str, second: &str, first_day_gross: f64| PurchaseSummary {
        customer_id: CustomerId(7),
        purchases: 3,
        days: 2 + (first_day_gross == 10.0) as u64,
        first_day: day(first),
        last_day: day(second),
        last_at: t("2026-03-04T09:00:00Z"),
        gross: 35.0,
        first_day_gross,
        refunds: 4.0,
    };
    let utc = s.store.purchase_summaries(TenantId(1), Customers::All, chrono_tz::UTC, until).await.unwrap();
    assert_eq!(utc, vec![want("2026-03-01", "2026-03-04", 15.0)]);
    // In Zagreb 23:30 UTC is the next day: three purchase days, the first worth 10.
    let zagreb = chrono_tz::Europe::Zagreb;
    let local = s.store.purchase_summaries(TenantId(1), Customers::All, zagreb, until).await.unwrap();
    assert_eq!(local, vec![want("2026-03-01", "2026-03-04", 10.0)]);
    let only = [CustomerId(7), CustomerId(8)];
    let some = s.store.purchase_summaries(TenantId(1), Customers::Only(&only), chrono_tz::UTC, until).await.unwrap();
    assert_eq!(some, utc);
    let none = s.store.purchase_summaries(TenantId(1), Customers::Only(&[]), chrono_tz::UTC, until).await.unwrap();
    assert!(none.is_empty());
}

/// A retried insert that ClickHouse has not collapsed yet (two parts holding one message) is
/// counted once, by the whole-workspace scan and by per-customer reads (both read without FINAL
/// and re-read flagged customers with it).
#[tokio::test]
async fn clickhouse_summaries_count_an_uncollapsed_duplicate_once() {
    let ch = FreshClickHouse::new("cairn_test");
    let store = migrated_clickhouse(&ch).await;
    store.insert(&[money(1, 7, "a", "purchase", "2026-03-01T10:00:00Z", 10.0)]).await.unwrap();
    store.insert(&[money(1, 8, "b", "purchase", "2026-03-01T10:00:00Z", 3.0)]).await.unwrap();
    // The crash window: the event row written again, its id never recorded.
    let copy = ch
        .query(&format!("INSERT INTO {db}.events SELECT * FROM {db}.events WHERE message_id = 'a'", db = ch.database));
    assert!(copy.trim().is_empty(), "{copy}");
    let rows = ch.query(&format!("SELECT count() FROM {}.events WHERE message_id = 'a'", ch.database));
    assert_eq!(rows.trim(), "2", "two physical rows");
    let until = t("2026-03-31T00:00:00Z");
    let all = store.purchase_summaries(TenantId(1), Customers::All, chrono_tz::UTC, until).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!((all[0].customer_id, all[0].purchases, all[0].gross), (CustomerId(7), 1, 10.0));
    assert_eq!((all[1].customer_id, all[1].purchases, all[1].gross), (CustomerId(8), 1, 3.0));
    let some = store.purchase_summaries(TenantId(1), Customers::Only(&[CustomerId(7)]), chrono_tz::UTC, until).await;
    assert_eq!(some.unwrap(), all[..1], "the per-customer read counts it once too");
}

/// Migration 0003 copies the purchases stored before it into the `purchases` table scoring
/// reads, and from then on the view copies each new one: none missing, none counted twice.
#[tokio::test]
async fn clickhouse_purchases_stored_before_the_purchases_table_are_scored() {
    let ch = FreshClickHouse::new("cairn_test");
    let store = migrated_clickhouse(&ch).await;
    // Back to the schema before migration 0003.
    let db = &ch.database;
    for sql in [
        format!("DROP TABLE {db}.purchases_feed"),
        format!("DROP TABLE {db}.purchases"),
        format!("DROP TABLE {db}.schema_migrations"),
        format!("CREATE TABLE {db}.schema_migrations (version UInt32, name String, applied_at DateTime) ENGINE = MergeTree ORDER BY version"),
        format!("INSERT INTO {db}.schema_migrations VALUES (1, 'events', now()), (2, 'event_ids', now())"),
    ] {
        let out = ch.query(&sql);
        assert!(out.trim().is_empty(), "{sql}: {out}");
    }
    store
        .insert(&[
            money(1, 7, "a", "purchase", "2026-03-01T10:00:00Z", 10.0),
            money(1, 7, "b", "refund", "2026-03-02T10:00:00Z", 4.0),
            money(1, 8, "c", "purchase", "2026-03-01T10:00:00Z", 3.0),
            money(1, 8, "d", "pageview", "2026-03-01T11:00:00Z", 50.0),
        ])
        .await
        .unwrap();
    assert_eq!(store.migrate().await.unwrap(), 1, "migration 0003 runs");
    store.insert(&[money(1, 8, "e", "purchase", "2026-03-03T10:00:00Z", 6.0)]).await.unwrap();
    let until = t("2026-03-31T00:00:00Z");
    let all = store.purchase_summaries(TenantId(1), Customers::All, chrono_tz::UTC, until).await.unwrap();
    assert_eq!(
        all.iter().map(|p| (p.customer_id, p.purchases, p.gross, p.refunds)).collect::<Vec<_>>(),
        vec![(CustomerId(7), 1, 10.0, 4.0), (CustomerId(8), 2, 9.0, 0.0)]
    );
}

fn with_props(customer: i64, id: &str, name: &str, at: &str, amount: f64) -> Event {
    let mut e = event(1, customer, id, name, t(at));
    e.properties = json!({"amount": amount, "sku": if amount > 100.0 { "big" } else { "small" }});
    e
}

fn stats(customer_id: i64, count: u64, first: &str, last: &str) -> BehaviourStats {
    BehaviourStats { customer_id, count, first_ms: t(first).timestamp_millis(), last_ms: t(last).timestamp_millis() }
}

/// Counts by name and time window (from inclusive, to exclusive), with and without a property
/// predicate, alone and several at once, restricted to some customers: the same answers on
/// both stores.
async fn behaviour_counts_matching_events_with_first_and_last_times(s: Fresh) {
    s.store
        .insert(&[
            with_props(1, "a1", "purchase", "2026-03-01T10:00:00Z", 50.0),
            with_props(1, "a2", "purchase", "2026-03-05T10:00:00Z", 150.0),
            with_props(1, "a3", "purchase", "2026-03-09T10:00:00Z", 20.0),
            with_props(2, "b1", "purchase", "2026-03-02T10:00:00Z", 500.0),
            with_props(2, "b2", "login", "2026-03-03T10:00:00Z", 0.0),
            with_props(3, "c1", "login", "2026-03-04T10:00:00Z", 0.0),
        ])
        .await
        .unwrap();
    let ms = |s: &str| t(s).timestamp_millis();
    let all = BehaviourQuery { name: "purchase", from_ms: None, to_ms: None, predicate: None };
    let got = s.store.behaviour(TenantId(1), &all, Customers::All).await.unwrap();
    assert_eq!(
        got,
        vec![
            stats(1, 3, "2026-03-01T10:00:00Z", "2026-03-09T10:00:00Z"),
            stats(2, 1, "2026-03-02T10:00:00Z", "2026-03-02T10:00:00Z")
        ]
    );
    let window = BehaviourQuery {
        name: "purchase",
        from_ms: Some(ms("2026-03-05T10:00:00Z")),
        to_ms: Some(ms("2026-03-09T10:00:00Z")),
        predicate: None,
    };
    let got = s.store.behaviour(TenantId(1), &window, Customers::All).await.unwrap();
    assert_eq!(got, vec![stats(1, 1, "2026-03-05T10:00:00Z", "2026-03-05T10:00:00Z")]);
    let big = |p: &serde_json::Value| p["amount"].as_f64().is_some_and(|a| a > 100.0);
    let where_big = BehaviourQuery { name: "purchase", from_ms: None, to_ms: None, predicate: Some(&big) };
    let got = s.store.behaviour(TenantId(1), &where_big, Customers::All).await.unwrap();
    assert_eq!(
        got,
        vec![
            stats(1, 1, "2026-03-05T10:00:00Z", "2026-03-05T10:00:00Z"),
            stats(2, 1, "2026-03-02T10:00:00Z", "2026-03-02T10:00:00Z")
        ]
    );
    let only = [CustomerId(2), CustomerId(3)];
    let logins = BehaviourQuery { name: "login", from_ms: None, to_ms: None, predicate: None };
    let many = s.store.behaviour_many(TenantId(1), &[all, window, where_big, logins], Customers::Only(&only)).await;
    let many = many.unwrap();
    assert_eq!(many.len(), 4);
    assert_eq!(many[0], vec![stats(2, 1, "2026-03-02T10:00:00Z", "2026-03-02T10:00:00Z")]);
    assert_eq!(many[1], vec![]);
    assert_eq!(many[2], vec![stats(2, 1, "2026-03-02T10:00:00Z", "2026-03-02T10:00:00Z")]);
    assert_eq!(
        many[3],
        vec![
            stats(2, 1, "2026-03-03T10:00:00Z", "2026-03-03T10:00:00Z"),
            stats(3, 1, "2026-03-04T10:00:00Z", "2026-03-04T10:00:00Z")
        ]
    );
    assert_eq!(
        s.store
            .behaviour(
                TenantId(2),
                &BehaviourQuery { name: "purchase", from_ms: None, to_ms: None, predicate: None },
                Customers::All
            )
            .await
            .unwrap(),
        vec![]
    );
}

/// A duplicate row left uncollapsed by ClickHouse counts once in behaviour counts too, alone
/// and in the combined scan.
#[tokio::test]
async fn clickhouse_behaviour_counts_an_uncollapsed_duplicate_once() {
    let ch = FreshClickHouse::new("cairn_test");
    let store = migrated_clickhouse(&ch).await;
    store.insert(&[with_props(7, "a", "purchase", "2026-03-01T10:00:00Z", 10.0)]).await.unwrap();
    store.insert(&[with_props(7, "b", "login", "2026-03-01T11:00:00Z", 0.0)]).await.unwrap();
    let copy = ch
        .query(&format!("INSERT INTO {db}.events SELECT * FROM {db}.events WHERE message_id = 'a'", db = ch.database));
    assert!(copy.trim().is_empty(), "{copy}");
    let q = BehaviourQuery { name: "purchase", from_ms: None, to_ms: None, predicate: None };
    assert_eq!(store.behaviour(TenantId(1), &q, Customers::All).await.unwrap()[0].count, 1);
    let yes = |_: &serde_json::Value| true;
    let with = BehaviourQuery { name: "purchase", from_ms: None, to_ms: None, predicate: Some(&yes) };
    assert_eq!(store.behaviour(TenantId(1), &with, Customers::All).await.unwrap()[0].count, 1);
    let logins = BehaviourQuery { name: "login", from_ms: None, to_ms: None, predicate: None };
    let many = store.behaviour_many(TenantId(1), &[q, logins], Customers::Only(&[CustomerId(7)])).await.unwrap();
    assert_eq!((many[0][0].count, many[1][0].count), (1, 1));
}

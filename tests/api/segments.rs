//! Segments end to end on both backend combinations (SQLite + SQLite, PostgreSQL + ClickHouse):
//! seed 003's example, every condition kind giving the same members on both, live membership
//! through events, scores and time, exactly one event per transition, static segments, errors.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use chrono::{TimeZone, Utc};
use serde_json::{json, Value};

use crate::common::TestApp;

crate::on_both_combinations!(
    seed_example_segment_is_evaluated_listed_and_kept_current,
    every_condition_kind_selects_the_same_customers,
    static_segments_take_members_by_hand_and_by_csv,
    invalid_filters_and_references_are_refused,
    explain_says_which_conditions_held,
);

async fn setup(app: &TestApp) -> (String, String) {
    let token = app.register("you@company.com", "Acme").await;
    let key = app.create_key(&token, json!({"name": "server", "type": "secret"})).await.1;
    app.clock.set(Utc.with_ymd_and_hms(2026, 6, 30, 12, 0, 0).unwrap());
    (token, key)
}

async fn customer(app: &TestApp, token: &str, body: Value) -> i64 {
    app.post("/v1/customers", token, body).await.assert_ok(201)["data"]["id"].as_i64().unwrap()
}

fn event(who: &str, name: &str, at: &str, id: &str, properties: Value) -> Value {
    json!({"type": "event", "customer_email": format!("{who}@example.com"), "event": name, "timestamp": at,
           "message_id": id, "properties": properties})
}

fn purchase(who: &str, at: &str, amount: f64, id: &str) -> Value {
    event(who, "purchase", at, id, json!({"amount": amount, "currency": "EUR", "sku": "A-1"}))
}

async fn track(app: &TestApp, key: &str, events: Vec<Value>, total_after: u64) {
    app.post("/v1/track/batch", key, Value::Array(events)).await.assert_ok(200);
    app.wait_for_events(1, total_after).await;
}

/// Recomputes scores and waits for the job.
async fn rescore(app: &TestApp, token: &str) {
    let id = app.post("/v1/scoring/recompute", token, json!({})).await.assert_ok(202)["data"]["id"].as_i64().unwrap();
    wait(Duration::from_secs(30), || async {
        let job = app.get(&format!("/v1/scoring/jobs/{id}"), token).await.body["data"].clone();
        assert_ne!(job["status"], "failed", "{job}");
        (job["status"] == "done").then_some(())
    })
    .await;
}

async fn wait<T, F: std::future::Future<Output = Option<T>>>(within: Duration, mut check: impl FnMut() -> F) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(started.elapsed() < within, "not within {within:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Creates a segment and waits for its evaluation over every customer.
async fn create_segment(app: &TestApp, token: &str, body: Value) -> i64 {
    let r = app.post("/v1/segments", token, body).await;
    let id = r.assert_ok(201)["data"]["id"].as_i64().unwrap();
    evaluated(app, token, id).await;
    id
}

async fn evaluated(app: &TestApp, token: &str, id: i64) -> Value {
    wait(Duration::from_secs(30), || async {
        let s = app.get(&format!("/v1/segments/{id}"), token).await.body["data"].clone();
        assert_ne!(s["evaluation"]["status"], "failed", "{s}");
        (s["evaluation"]["status"] == "done").then_some(s)
    })
    .await
}

fn names(customers: &Value) -> BTreeSet<String> {
    customers
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["email"].as_str().unwrap().trim_end_matches("@example.com").to_string())
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

async fn members(app: &TestApp, token: &str, id: i64) -> BTreeSet<String> {
    names(&app.get(&format!("/v1/segments/{id}/customers?per_page=100"), token).await.assert_ok(200)["data"])
}

/// The segment events in the outbox as (event, customer, segment), in order.
async fn transitions(app: &TestApp) -> Vec<(String, i64, i64)> {
    let outbox = app.store.read().await.unwrap().outbox_after(cairn_domain::TenantId(1), 0, 100_000).await.unwrap();
    outbox
        .into_iter()
        .filter(|e| e.event.starts_with("customer.segment_"))
        .map(|e| (e.event, e.payload["customer_id"].as_i64().unwrap(), e.payload["segment_id"].as_i64().unwrap()))
        .collect()
}

async fn seed_example_segment_is_evaluated_listed_and_kept_current(app: TestApp) {
    let (token, key) = setup(&app).await;
    let ana = customer(&app, &token, json!({"email": "ana@example.com", "name": "Ana"})).await;
    let ben = customer(&app, &token, json!({"email": "ben@example.com", "name": "Ben"})).await;
    customer(&app, &token, json!({"email": "cid@example.com", "name": "Cid"})).await;
    // Ana: €600 within the month. Ben: €600, but his last purchase was 40 days ago. Cid: €100.
    track(
        &app,
        &key,
        vec![
            purchase("ana", "2026-06-20T10:00:00Z", 400.0, "a1"),
            purchase("ana", "2026-06-25T10:00:00Z", 200.0, "a2"),
            purchase("ben", "2026-05-21T10:00:00Z", 600.0, "b1"),
            purchase("cid", "2026-06-29T10:00:00Z", 100.0, "c1"),
        ],
        4,
    )
    .await;
    rescore(&app, &token).await;

    // Seed 003's request, verbatim.
    let r = app
        .post(
            "/v1/segments",
            &token,
            json!({
                "name": "High Value + Recent",
                "description": "Customers who spent over €500 and purchased in last 30 days",
                "color": "#6366f1",
                "filters": {"clv_total_min": 500, "last_purchase_days_max": 30}
            }),
        )
        .await;
    let created = r.assert_ok(201)["data"].clone();
    assert_eq!(created["name"], "High Value + Recent");
    assert_eq!(created["color"], "#6366f1");
    assert_eq!(created["type"], "dynamic");
    assert_eq!(created["filters"], json!({"clv_total_min": 500, "last_purchase_days_max": 30}));
    let id = created["id"].as_i64().unwrap();
    assert!(created["evaluation"]["job_id"].as_i64().is_some(), "{created}");
    let s = evaluated(&app, &token, id).await;
    assert_eq!(s["member_count"], 1, "{s}");
    assert_eq!(s["evaluation"]["members"], 1);
    assert_eq!(members(&app, &token, id).await, set(&["ana"]));

    // Listed with member counts, beside the four built-in RFM segments.
    let list = app.get("/v1/segments", &token).await;
    let list = list.assert_ok(200)["data"].as_array().unwrap().clone();
    let builtin: Vec<&str> =
        list.iter().filter(|s| s["builtin"] == true).map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(builtin, vec!["Champions", "Loyal Customers", "At Risk", "Lost"]);
    let mine = list.iter().find(|s| s["id"] == id).unwrap();
    assert_eq!((mine["member_count"].as_i64(), mine["customer_count"].as_i64()), (Some(1), Some(1)));
    // Seed 003's customer filter.
    let filtered = app.get(&format!("/v1/customers?segment_id={id}"), &token).await;
    assert_eq!(names(&filtered.assert_ok(200)["data"]), set(&["ana"]));
    assert_eq!(filtered.body["pagination"]["total"], 1);
    let r = app.get("/v1/customers?segment_id=999", &token).await;
    r.assert_error(400, "VALIDATION_ERROR");
    assert_eq!(r.body["field"], "segment_id");
    // The built-in segments hold the RFM segments' customers.
    let ana_segments = app.get(&format!("/v1/customers/{ana}/segments"), &token).await;
    let ana_segments = ana_segments.assert_ok(200)["data"].as_array().unwrap().clone();
    let held: Vec<&str> = ana_segments.iter().map(|m| m["segment_name"].as_str().unwrap()).collect();
    let ana_rfm = app.get(&format!("/v1/customers/{ana}"), &token).await.body["data"].clone();
    assert!(
        held.contains(&"High Value + Recent") && held.contains(&ana_rfm["rfm_segment"].as_str().unwrap()),
        "{held:?}"
    );
    assert!(ana_segments.iter().all(|m| m["since"].is_string()));
    assert_eq!(ana_rfm["segments"].as_array().unwrap().len(), ana_segments.len());

    // One entered event for Ana, with seed 003's payload.
    let outbox = app.store.read().await.unwrap().outbox_after(cairn_domain::TenantId(1), 0, 10_000).await.unwrap();
    let entered: Vec<&Value> = outbox
        .iter()
        .filter(|e| e.event == "customer.segment_entered" && e.payload["segment_id"] == id)
        .map(|e| &e.payload)
        .collect();
    assert_eq!(
        entered,
        vec![&json!({"customer_id": ana, "customer_email": "ana@example.com", "segment_id": id,
                                     "segment_name": "High Value + Recent"})]
    );

    // The webhook catalogue describes exactly the keys delivered.
    let catalogue = app.get("/v1/webhooks/events", &token).await;
    for name in ["customer.segment_entered", "customer.segment_exited"] {
        let entry = catalogue.body["data"].as_array().unwrap().iter().find(|e| e["event"] == name).cloned();
        let schema = entry.expect("catalogued")["payload_schema"].clone();
        let keys: Vec<&String> = schema["properties"].as_object().unwrap().keys().collect();
        assert_eq!(keys, entered[0].as_object().unwrap().keys().collect::<Vec<_>>(), "{name}");
    }

    // Live: Ben buys again today; his scores change and he enters within seconds.
    let started = Instant::now();
    track(&app, &key, vec![purchase("ben", "2026-06-30T11:00:00Z", 20.0, "b2")], 5).await;
    wait(Duration::from_secs(10), || async { members(&app, &token, id).await.contains("ben").then_some(()) }).await;
    assert!(started.elapsed() < Duration::from_secs(10));

    // Time: 31 days after Ana's last purchase she has not bought within 30 days and leaves;
    // Ben (last purchase June 30) stays.
    app.clock.set(Utc.with_ymd_and_hms(2026, 7, 26, 0, 0, 0).unwrap());
    wait(Duration::from_secs(10), || async { (!members(&app, &token, id).await.contains("ana")).then_some(()) }).await;
    assert_eq!(members(&app, &token, id).await, set(&["ben"]));
    // Nothing else happens as time goes on until Ben's own crossing (31 days after June 30).
    app.clock.set(Utc.with_ymd_and_hms(2026, 7, 30, 0, 0, 0).unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.clock.set(Utc.with_ymd_and_hms(2026, 7, 31, 0, 0, 1).unwrap());
    wait(Duration::from_secs(10), || async { members(&app, &token, id).await.is_empty().then_some(()) }).await;

    // Exactly one event per transition, in order, and none for what did not change.
    let mine: Vec<(String, i64)> =
        transitions(&app).await.into_iter().filter(|t| t.2 == id).map(|(e, c, _)| (e, c)).collect();
    assert_eq!(
        mine,
        vec![
            ("customer.segment_entered".to_string(), ana),
            ("customer.segment_entered".to_string(), ben),
            ("customer.segment_exited".to_string(), ana),
            ("customer.segment_exited".to_string(), ben),
        ]
    );
    assert_eq!(app.get(&format!("/v1/segments/{id}"), &token).await.body["data"]["member_count"], 0);

    // A segment on behaviour follows tracked events through the ingest processor's marks (it
    // marks customers only for changes some segment depends on; this one depends on events).
    let active =
        create_segment(&app, &token, json!({"name": "Active", "filters": {"event": "login", "within_days": 7}})).await;
    assert!(members(&app, &token, active).await.is_empty());
    track(&app, &key, vec![event("cid", "login", "2026-07-30T23:00:00Z", "l1", json!({}))], 6).await;
    wait(Duration::from_secs(10), || async { (members(&app, &token, active).await == set(&["cid"])).then_some(()) })
        .await;
}

/// Four customers with traits, profile fields, scores, events and consent; each filter below
/// must select the same customers on both backend combinations, in a preview and as a stored
/// segment.
async fn every_condition_kind_selects_the_same_customers(app: TestApp) {
    let (token, key) = setup(&app).await;
    customer(
        &app,
        &token,
        json!({"email": "ana@example.com", "city": "Zagreb", "country": "HR",
        "traits": {"plan": "pro", "seats": 12, "trial": false, "renewal": "2026-09-01", "email_consent": true}}),
    )
    .await;
    let ben = customer(
        &app,
        &token,
        json!({"email": "ben@example.com", "name": "Ben Horvatić", "city": "Berlin", "country": "DE",
        "traits": {"plan": "team", "seats": 3, "trial": true, "sms_consent": true}}),
    )
    .await;
    customer(
        &app,
        &token,
        json!({"email": "cid@example.com", "city": "Split", "country": "HR", "traits": {"plan": "free"}}),
    )
    .await;
    let dan = customer(&app, &token, json!({"email": "dan@example.com"})).await;
    let events = vec![
        purchase("ana", "2026-06-10T10:00:00Z", 250.0, "p1"),
        purchase("ana", "2026-06-25T10:00:00Z", 100.0, "p2"),
        purchase("ben", "2026-04-01T10:00:00Z", 40.0, "p3"),
        event("ana", "login", "2026-06-29T09:00:00Z", "l1", json!({})),
        event("ben", "login", "2026-05-01T09:00:00Z", "l2", json!({})),
        event("cid", "login", "2026-06-28T09:00:00Z", "l3", json!({})),
        event("cid", "login", "2026-06-29T09:00:00Z", "l4", json!({})),
        event("cid", "login", "2026-06-30T10:00:00Z", "l5", json!({})),
        event("ana", "signup", "2025-12-01T09:00:00Z", "s1", json!({})),
        event("ben", "signup", "2026-02-01T09:00:00Z", "s2", json!({})),
        event("cid", "signup", "2026-06-01T09:00:00Z", "s3", json!({})),
    ];
    track(&app, &key, events, 11).await;
    rescore(&app, &token).await;
    let vip = app.post("/v1/segments", &token, json!({"name": "VIP list", "type": "static"})).await;
    let vip = vip.assert_ok(201)["data"]["id"].as_i64().unwrap();
    app.post(&format!("/v1/segments/{vip}/members"), &token, json!({"customer_ids": [ben, dan]})).await.assert_ok(200);

    let cases: Vec<(Value, &[&str])> = vec![
        (json!({"field": "traits.plan", "op": "eq", "value": "pro"}), &["ana"]),
        (json!({"field": "traits.plan", "op": "neq", "value": "pro"}), &["ben", "cid", "dan"]),
        (json!({"field": "traits.plan", "op": "in", "value": ["pro", "team"]}), &["ana", "ben"]),
        (json!({"field": "traits.plan", "op": "contains", "value": "RE"}), &["cid"]),
        (json!({"field": "traits.plan", "op": "starts_with", "value": "t"}), &["ben"]),
        (json!({"field": "traits.seats", "op": "gt", "value": 5}), &["ana"]),
        (json!({"field": "traits.seats", "op": "lte", "value": 3}), &["ben"]),
        (json!({"field": "traits.seats", "op": "between", "value": [1, 5]}), &["ben"]),
        (json!({"field": "traits.trial", "op": "eq", "value": true}), &["ben"]),
        (json!({"field": "traits.renewal", "op": "gt", "value": "2026-08-01"}), &["ana"]),
        (json!({"field": "traits.seats", "op": "exists"}), &["ana", "ben"]),
        (json!({"field": "traits.seats", "op": "exists", "value": false}), &["cid", "dan"]),
        (json!({"country": "HR"}), &["ana", "cid"]),
        (json!({"city": ["Berlin", "Split"]}), &["ben", "cid"]),
        (json!({"field": "email", "op": "starts_with", "value": "a"}), &["ana"]),
        (json!({"field": "city", "op": "contains", "value": "AGR"}), &["ana"]),
        (json!({"field": "name", "op": "contains", "value": "ć"}), &["ben"]),
        (json!({"field": "name", "op": "contains", "value": "Ć"}), &[]),
        (json!({"created_after": "2026-06-01"}), &["ana", "ben", "cid", "dan"]),
        (json!({"created_before": "2026-06-01"}), &[]),
        (json!({"rfm_segment": "Loyal Customers"}), &["ana"]),
        (json!({"rfm_score_min": 3, "rfm_score_max": 4}), &["ben"]),
        (json!({"clv_total_min": 100}), &["ana"]),
        (json!({"clv_total_max": 50}), &["ben", "cid", "dan"]),
        (json!({"order_count_min": 2}), &["ana"]),
        (json!({"field": "clv_average_order", "op": "gte", "value": 100}), &["ana"]),
        (json!({"last_purchase_days_max": 30}), &["ana"]),
        (json!({"last_purchase_days_min": 60}), &["ben"]),
        (json!({"event": "login", "count": {"at_least": 2}, "within_days": 7}), &["cid"]),
        (json!({"event": "login", "count": {"at_most": 1}, "within_days": 7}), &["ana", "ben", "dan"]),
        (json!({"event": "login", "count": {"exactly": 3}}), &["cid"]),
        (json!({"event": "purchase", "between": ["2026-06-01", "2026-07-01"]}), &["ana"]),
        (json!({"event": "purchase", "where": [{"property": "amount", "op": "gte", "value": 200}]}), &["ana"]),
        (
            json!({"event": "purchase", "count": {"exactly": 2}, "where": [{"property": "sku", "op": "eq", "value": "A-1"}]}),
            &["ana"],
        ),
        (json!({"not_performed": "login", "within_days": 30}), &["ben", "dan"]),
        (json!({"event": "signup", "first": {"before": "2026-01-01"}}), &["ana"]),
        (json!({"event": "signup", "first": {"after": "2026-01-01"}}), &["ben", "cid"]),
        (json!({"event": "login", "last": {"within_days": 3}}), &["ana", "cid"]),
        (json!({"consent": "email"}), &["ana"]),
        (json!({"consent": "sms"}), &["ben"]),
        (json!({"not": {"consent": "email"}}), &["ben", "cid", "dan"]),
        (json!({"segment": vip}), &["ben", "dan"]),
        (json!({"any": [{"country": "DE"}, {"event": "login", "count": {"at_least": 3}}]}), &["ben", "cid"]),
        (json!({"all": [{"country": "HR"}, {"not": {"event": "purchase"}}]}), &["cid"]),
        (
            json!({"all": [{"field": "traits.plan", "op": "exists"}, {"rfm_score_min": 3},
                           {"event": "purchase", "count": {"at_least": 2}, "within_days": 30}]}),
            &["ana"],
        ),
    ];
    let mut ids = Vec::new();
    for (n, (filter, expected)) in cases.iter().enumerate() {
        let r = app.post("/v1/segments/preview", &token, json!({"filters": filter})).await;
        let body = r.assert_ok(200)["data"].clone();
        assert_eq!(names(&body["customers"]), set(expected), "preview of {filter}");
        assert_eq!(body["count"], expected.len(), "{filter}");
        let id = app.post("/v1/segments", &token, json!({"name": format!("case {n}"), "filters": filter})).await;
        ids.push(id.assert_ok(201)["data"]["id"].as_i64().unwrap());
    }
    for (id, (filter, expected)) in ids.iter().zip(&cases) {
        evaluated(&app, &token, *id).await;
        assert_eq!(members(&app, &token, *id).await, set(expected), "stored members of {filter}");
    }
    // Incremental upkeep decides profile and score conditions in memory: re-evaluating every
    // customer that way must agree with the evaluation above, so nothing moves.
    let before = transitions(&app).await.len();
    let everyone: Vec<_> = (1..=4).map(|c| (cairn_domain::TenantId(1), cairn_domain::CustomerId(c), 31)).collect();
    app.store.write().await.unwrap().mark_segments_dirty(&everyone, app.clock.now()).await.unwrap();
    wait(Duration::from_secs(10), || async {
        app.store.read().await.unwrap().segment_dirty_tenants().await.unwrap().is_empty().then_some(())
    })
    .await;
    assert_eq!(transitions(&app).await.len(), before, "{:?}", &transitions(&app).await[before..]);
    for (id, (filter, expected)) in ids.iter().zip(&cases) {
        assert_eq!(members(&app, &token, *id).await, set(expected), "members of {filter} after re-evaluation");
    }
}

async fn static_segments_take_members_by_hand_and_by_csv(app: TestApp) {
    let (token, _key) = setup(&app).await;
    let ana = customer(&app, &token, json!({"email": "ana@example.com"})).await;
    let ben = customer(&app, &token, json!({"email": "ben@example.com"})).await;
    let cid = customer(&app, &token, json!({"email": "cid@example.com"})).await;
    let r = app.post("/v1/segments", &token, json!({"name": "Beta testers", "type": "static"})).await;
    let s = r.assert_ok(201)["data"].clone();
    assert_eq!((s["type"].as_str(), s["member_count"].as_i64()), (Some("static"), Some(0)));
    let id = s["id"].as_i64().unwrap();
    // A dynamic segment of everyone not in the static one follows its changes.
    let outside = create_segment(&app, &token, json!({"name": "Not beta", "filters": {"not": {"segment": id}}})).await;
    assert_eq!(members(&app, &token, outside).await, set(&["ana", "ben", "cid"]));

    let add = app.post(&format!("/v1/segments/{id}/members"), &token, json!({"customer_ids": [ana, ben]})).await;
    assert_eq!(add.assert_ok(200)["data"]["added"], 2);
    // Adding again changes nothing and emits nothing.
    let again = app.post(&format!("/v1/segments/{id}/members"), &token, json!({"customer_ids": [ana]})).await;
    assert_eq!(again.assert_ok(200)["data"]["added"], 0);
    let r = app
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/segments/{id}/members"),
            Some(&token),
            Some(json!({"customer_ids": [ben]})),
        )
        .await;
    assert_eq!(r.assert_ok(200)["data"]["removed"], 1);
    let bad = app.post(&format!("/v1/segments/{id}/members"), &token, json!({"customer_ids": [cid, 999_999]})).await;
    bad.assert_error(400, "VALIDATION_ERROR");
    assert_eq!(bad.body["field"], "customer_ids[1]");

    // CSV: by email or id, quoted cells, an unknown row reported by line.
    let csv = format!("email,customer_id\n\"cid@example.com\",\nnobody@example.com,\n,{ben}\n");
    let r = app
        .client
        .post(format!("{}/v1/segments/{id}/members/import", app.base))
        .bearer_auth(&token)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let report: Value = r.json().await.unwrap();
    assert_eq!(report["data"], json!({"rows": 3, "added": 2, "already_members": 0, "not_found_lines": [3]}));
    assert_eq!(members(&app, &token, id).await, set(&["ana", "ben", "cid"]));
    wait(Duration::from_secs(10), || async { members(&app, &token, outside).await.is_empty().then_some(()) }).await;

    let mine: Vec<(String, i64)> =
        transitions(&app).await.into_iter().filter(|t| t.2 == id).map(|(e, c, _)| (e, c)).collect();
    assert_eq!(
        mine,
        vec![
            ("customer.segment_entered".to_string(), ana),
            ("customer.segment_entered".to_string(), ben),
            ("customer.segment_exited".to_string(), ben),
            ("customer.segment_entered".to_string(), ben),
            ("customer.segment_entered".to_string(), cid),
        ]
    );
    // Dynamic segments take no hand-added members.
    let r = app.post(&format!("/v1/segments/{outside}/members"), &token, json!({"customer_ids": [ana]})).await;
    r.assert_error(400, "VALIDATION_ERROR");
}

async fn invalid_filters_and_references_are_refused(app: TestApp) {
    let (token, _key) = setup(&app).await;
    let bad = |filters: Value| json!({"name": "x", "filters": filters});
    let cases: Vec<(Value, &str)> = vec![
        (
            bad(
                json!({"all": [{"country": "HR"}, {"city": "Split"}, {"field": "traits.seats", "op": "gt", "value": true}]}),
            ),
            "filters.all[2].value",
        ),
        (bad(json!({"clv_total_min": "lots"})), "filters.clv_total_min"),
        (bad(json!({"colour": "red"})), "filters.colour"),
        (bad(json!({"event": "purchase", "count": {"at_least": -1}})), "filters.count.at_least"),
        (bad(json!({"segment": 999})), "filters"),
        (json!({"name": "x"}), "filters"),
        (json!({"name": "", "filters": {"country": "HR"}}), "name"),
        (json!({"name": "x", "color": "blue", "filters": {"country": "HR"}}), "color"),
        (json!({"name": "x", "type": "static", "filters": {"country": "HR"}}), "filters"),
        (json!({"name": "x", "type": "smart", "filters": {"country": "HR"}}), "type"),
    ];
    for (body, field) in cases {
        let r = app.post("/v1/segments", &token, body.clone()).await;
        r.assert_error(400, "VALIDATION_ERROR");
        assert_eq!(r.body["field"], field, "{body}: {}", r.body);
    }
    let r = app.post("/v1/segments/preview", &token, json!({"filters": {"any": []}})).await;
    r.assert_error(400, "VALIDATION_ERROR");
    assert_eq!(r.body["field"], "filters.any");

    // Cycles: a → b, then b → a (or a → a) is refused.
    let a = app.post("/v1/segments", &token, json!({"name": "a", "filters": {"country": "HR"}})).await;
    let a = a.assert_ok(201)["data"]["id"].as_i64().unwrap();
    let b = app.post("/v1/segments", &token, json!({"name": "b", "filters": {"segment": a}})).await;
    let b = b.assert_ok(201)["data"]["id"].as_i64().unwrap();
    let r = app.put(&format!("/v1/segments/{a}"), &token, json!({"filters": {"any": [{"segment": b}]}})).await;
    r.assert_error(400, "VALIDATION_ERROR");
    assert!(r.body["error"].as_str().unwrap().contains("cycle"), "{}", r.body);
    let r = app.put(&format!("/v1/segments/{a}"), &token, json!({"filters": {"segment": a}})).await;
    r.assert_error(400, "VALIDATION_ERROR");
    // A segment others refer to stays.
    app.delete(&format!("/v1/segments/{a}"), &token).await.assert_error(400, "VALIDATION_ERROR");
    assert_eq!(app.delete(&format!("/v1/segments/{b}"), &token).await.status, 204);
    assert_eq!(app.delete(&format!("/v1/segments/{a}"), &token).await.status, 204);
    app.get(&format!("/v1/segments/{a}"), &token).await.assert_error(404, "NOT_FOUND");

    // The built-in segments keep their name and filter and cannot be deleted; colour may change.
    let list = app.get("/v1/segments", &token).await.body["data"].clone();
    let champions = list.as_array().unwrap().iter().find(|s| s["name"] == "Champions").unwrap()["id"].as_i64().unwrap();
    let r = app.put(&format!("/v1/segments/{champions}"), &token, json!({"filters": {"country": "HR"}})).await;
    r.assert_error(400, "VALIDATION_ERROR");
    app.delete(&format!("/v1/segments/{champions}"), &token).await.assert_error(400, "VALIDATION_ERROR");
    let r = app.put(&format!("/v1/segments/{champions}"), &token, json!({"color": "#000000"})).await;
    assert_eq!(r.assert_ok(200)["data"]["color"], "#000000");
    // Nothing was stored by the refused requests.
    let after = app.get("/v1/segments", &token).await.body["data"].as_array().unwrap().len();
    assert_eq!(after, 4);
}

async fn explain_says_which_conditions_held(app: TestApp) {
    let (token, key) = setup(&app).await;
    let ana =
        customer(&app, &token, json!({"email": "ana@example.com", "country": "HR", "traits": {"plan": "pro"}})).await;
    track(
        &app,
        &key,
        vec![purchase("ana", "2026-06-20T10:00:00Z", 40.0, "a1"), purchase("ana", "2026-06-21T10:00:00Z", 40.0, "a2")],
        2,
    )
    .await;
    rescore(&app, &token).await;
    let id = create_segment(
        &app,
        &token,
        json!({"name": "Pro buyers", "filters": {"all": [{"field": "traits.plan", "op": "eq", "value": "pro"},
            {"clv_total_min": 500}, {"event": "purchase", "count": {"at_least": 2}, "within_days": 30}]}}),
    )
    .await;
    let r = app.get(&format!("/v1/segments/{id}/explain?customer_id={ana}"), &token).await;
    let e = r.assert_ok(200)["data"].clone();
    assert_eq!((e["matches"].as_bool(), e["member"].as_bool()), (Some(false), Some(false)), "{e}");
    let parts = e["conditions"]["all"].as_array().unwrap();
    assert_eq!(parts[0]["held"], true);
    assert_eq!(parts[0]["seen"], "pro");
    assert_eq!(parts[1]["held"], false);
    assert_eq!(parts[1]["field"], "clv_total");
    assert_eq!(parts[1]["seen"].as_f64(), Some(80.0));
    assert_eq!(parts[2]["held"], true);
    assert_eq!(parts[2]["seen"]["count"], 2);
    app.get(&format!("/v1/segments/{id}/explain"), &token).await.assert_error(400, "VALIDATION_ERROR");
    app.get(&format!("/v1/segments/{id}/explain?customer_id=99999"), &token).await.assert_error(404, "NOT_FOUND");
}

//! Scoring end to end on both backend combinations (SQLite + SQLite, PostgreSQL + ClickHouse):
//! purchases go in through the tracking API, scores come out of the customer API.

use std::time::{Duration, Instant};

use chrono::{NaiveDate, TimeZone, Utc};
use serde_json::{json, Value};

use crate::common::TestApp;

crate::on_both_combinations!(
    cdnow_fits_reproduce_the_published_parameters,
    rfm_and_clv_follow_the_definitions,
    each_purchase_rescores_its_customer_and_emits_rfm_changed,
    days_are_counted_in_the_workspace_time_zone,
    bad_scoring_requests_are_refused,
    cut_points_refresh_on_their_schedule_as_the_clock_moves,
);

async fn setup(app: &TestApp) -> (String, String) {
    let token = app.register("you@company.com", "Acme").await;
    let key = app.create_key(&token, json!({"name": "server", "type": "secret"})).await.1;
    (token, key)
}

async fn ingest(app: &TestApp, key: &str, tenant: i64, events: Vec<Value>, already: u64) {
    for chunk in events.chunks(500) {
        app.post("/v1/track/batch", key, Value::Array(chunk.to_vec())).await.assert_ok(200);
    }
    app.wait_for_events(tenant, already + events.len() as u64).await;
}

fn purchase(who: &str, at: &str, amount: f64, id: &str) -> Value {
    json!({"type": "event", "customer_email": format!("{who}@example.com"), "event": "purchase", "timestamp": at, "message_id": id,
           "properties": {"amount": amount, "currency": "USD"}})
}

/// Runs a recompute and waits for it to finish; returns the job.
async fn recompute(app: &TestApp, token: &str, fit: bool) -> Value {
    let r = app.post("/v1/scoring/recompute", token, json!({"fit": fit})).await;
    let id = r.assert_ok(202)["data"]["id"].as_i64().unwrap();
    let started = Instant::now();
    loop {
        let job = app.get(&format!("/v1/scoring/jobs/{id}"), token).await.body["data"].clone();
        if job["status"] == "done" {
            return job;
        }
        assert_ne!(job["status"], "failed", "{job}");
        assert!(started.elapsed() < Duration::from_secs(60), "recompute did not finish: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn customer_by_user(app: &TestApp, token: &str, user: &str) -> Value {
    let list = app.get(&format!("/v1/customers?search={user}&per_page=100"), token).await;
    let email = format!("{user}@example.com");
    let hit = list.body["data"].as_array().unwrap().iter().find(|c| c["email"] == email.as_str()).cloned();
    let id = hit.unwrap_or_else(|| panic!("no customer {user}"))["id"].as_i64().unwrap();
    app.get(&format!("/v1/customers/{id}"), token).await.body["data"].clone()
}

/// Waits until `check` holds for the customer, failing after `within`.
async fn eventually(app: &TestApp, token: &str, user: &str, within: Duration, check: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let c = customer_by_user(app, token, user).await;
        if check(&c) {
            return c;
        }
        assert!(started.elapsed() < within, "not within {within:?}: {c}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn close(name: &str, got: &Value, published: f64) {
    let got = got.as_f64().unwrap_or_else(|| panic!("{name} missing"));
    let off = (got - published).abs() / published;
    assert!(off <= 0.01, "{name} = {got}, published {published} ({:.2}% off)", off * 100.0);
}

async fn cdnow_fits_reproduce_the_published_parameters(app: TestApp) {
    let (token, key) = setup(&app).await;
    app.clock.set(Utc.with_ymd_and_hms(1997, 9, 30, 0, 0, 0).unwrap());
    let data = include_str!("../data/CDNOW_sample.txt");
    let mut events = Vec::new();
    for (n, line) in data.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let day = NaiveDate::parse_from_str(f[2], "%Y%m%d").unwrap();
        if day > NaiveDate::from_ymd_opt(1997, 9, 30).unwrap() {
            continue; // the holdout period
        }
        let at = format!("{day}T00:00:00Z");
        events.push(purchase(&format!("cdnow-{}", f[1]), &at, f[4].parse().unwrap(), &format!("cdnow-{n}")));
    }
    ingest(&app, &key, 1, events, 0).await;
    let job = recompute(&app, &token, true).await;
    assert_eq!(job["customers"], 2357, "{job}");
    assert_eq!(job["method"], "bgnbd_gamma_gamma");
    let m = app.get("/v1/analytics/clv/model", &token).await;
    let m = &m.assert_ok(200)["data"];
    assert_eq!(m["method"], "bgnbd_gamma_gamma");
    assert_eq!(m["customers"], 2357);
    assert!(m["fitted_at"].as_str().unwrap().starts_with("1997-09-30"), "{m}");
    close("r", &m["bgnbd"]["r"], 0.243);
    close("alpha", &m["bgnbd"]["alpha"], 4.414);
    close("a", &m["bgnbd"]["a"], 0.793);
    close("b", &m["bgnbd"]["b"], 2.426);
    close("p", &m["gamma_gamma"]["p"], 6.25);
    close("q", &m["gamma_gamma"]["q"], 3.74);
    close("gamma", &m["gamma_gamma"]["gamma"], 15.44);
    // Every purchaser is scored, with a probability of being alive and a prediction.
    let rfm = app.get("/v1/analytics/rfm", &token).await;
    assert_eq!(rfm.assert_ok(200)["data"]["scored"], 2357);
    let c = customer_by_user(&app, &token, "cdnow-0001").await;
    assert_eq!(c["clv_method"], "bgnbd_gamma_gamma");
    let p = c["p_alive"].as_f64().unwrap();
    assert!(p > 0.0 && p <= 1.0 && c["clv_predicted"].as_f64().unwrap() > 0.0, "{c}");
}

/// Five customers, one better than the next on every metric, plus a sixth who only refunds:
/// quintiles give 1..5, the segment follows the sum, refunds come off monetary, same-day
/// purchases are one transaction for the models but count as purchases for F.
async fn rfm_and_clv_follow_the_definitions(app: TestApp) {
    let (token, key) = setup(&app).await;
    app.clock.set(Utc.with_ymd_and_hms(2026, 6, 30, 12, 0, 0).unwrap());
    let mut events = Vec::new();
    for k in 1..=5u32 {
        let who = format!("rfm-{k}");
        // k purchases, the last on June (20 + k), each worth 10·k.
        for j in 0..k {
            let at = format!("2026-06-{:02}T10:00:00Z", 20 + k - j);
            events.push(purchase(&who, &at, 10.0 * k as f64, &format!("{who}-{j}")));
        }
    }
    // rfm-5 also refunds 15 and buys twice more on its first day (one transaction).
    events.push(json!({"type": "event", "customer_email": "rfm-5@example.com", "event": "refund", "timestamp": "2026-06-25T11:00:00Z",
                       "message_id": "rfm-5-refund", "properties": {"amount": 15, "currency": "USD"}}));
    events.push(purchase("rfm-5", "2026-06-21T18:00:00Z", 1.0, "rfm-5-x"));
    events.push(purchase("rfm-5", "2026-06-21T19:00:00Z", 1.0, "rfm-5-y"));
    let n = events.len() as u64;
    ingest(&app, &key, 1, events, 0).await;
    recompute(&app, &token, true).await;

    for k in 1..=5i64 {
        let c = customer_by_user(&app, &token, &format!("rfm-{k}")).await;
        assert_eq!(c["rfm_recency"], k, "rfm-{k}: {c}");
        assert_eq!(c["rfm_frequency"], k, "rfm-{k}: {c}");
        assert_eq!(c["rfm_monetary"], k, "rfm-{k}: {c}");
        assert_eq!(c["rfm_score"], 3 * k);
        let segment = match 3 * k {
            13.. => "Champions",
            9..=12 => "Loyal Customers",
            5..=8 => "At Risk",
            _ => "Lost",
        };
        assert_eq!(c["rfm_segment"], segment);
        assert_eq!(c["clv_method"], "simple", "five customers are too few to fit");
        assert!(c["p_alive"].is_null());
    }
    let five = customer_by_user(&app, &token, "rfm-5").await;
    assert_eq!(five["clv_order_count"], 7);
    assert_eq!(five["clv_total"], 5.0 * 50.0 + 2.0 - 15.0);
    assert_eq!(five["clv_average_order"], (250.0 + 2.0) / 7.0);
    let one = customer_by_user(&app, &token, "rfm-1").await;
    assert_eq!(one["clv_total"], 10.0);
    assert_eq!(one["last_purchase_at"], "2026-06-21T10:00:00Z");

    // An edit answers with the scores too.
    let id = five["id"].as_i64().unwrap();
    let edited = app.put(&format!("/v1/customers/{id}"), &token, json!({"name": "Five"})).await;
    assert_eq!(edited.assert_ok(200)["data"]["clv_total"], 237.0);
    assert_eq!(edited.body["data"]["rfm_segment"], "Champions");

    // The explanation shows the inputs, the cut points and the method.
    let e = app.get(&format!("/v1/customers/{id}/scores/explain"), &token).await;
    let e = &e.assert_ok(200)["data"];
    assert_eq!(e["recency"]["days_since_last_purchase"], 5);
    assert_eq!(e["frequency"]["purchases"], 7);
    assert_eq!(e["monetary"]["refunds"], 15.0);
    assert_eq!(e["frequency"]["boundaries"], json!([1.0, 2.0, 3.0, 4.0]));
    assert_eq!(e["clv"]["inputs"]["transactions"], 5, "two same-day purchases are one transaction");
    assert_eq!(e["clv"]["method"], "simple");
    assert_eq!(e["scored_against"], 5);

    // Lists filter by segment and by net spend; customers without purchases have spent 0.
    app.post("/v1/customers", &token, json!({"email": "new@example.com"})).await.assert_ok(201);
    let champions = app.get("/v1/customers?rfm_segment=Champions", &token).await;
    assert_eq!(champions.assert_ok(200)["pagination"]["total"], 1, "{}", champions.body);
    let rich = app.get("/v1/customers?clv_total_min=90", &token).await;
    assert_eq!(rich.body["pagination"]["total"], 3, "rfm-3 (90), rfm-4 (160), rfm-5 (237)");
    let poor = app.get("/v1/customers?clv_total_max=20", &token).await;
    assert_eq!(poor.body["pagination"]["total"], 2, "rfm-1 (10) and the one without purchases");
    let nobody = poor.body["data"].as_array().unwrap().iter().find(|c| c["email"] == "new@example.com").cloned();
    let nobody = nobody.expect("listed");
    assert!(nobody["rfm_segment"].is_null() && nobody["rfm_score"].is_null() && nobody["clv_total"] == 0.0);

    // Sorted by value: the biggest spender first, those without purchases last in RFM order.
    let by_spend = app.get("/v1/customers?sort=-clv_total&per_page=3", &token).await;
    let emails: Vec<&str> =
        by_spend.assert_ok(200)["data"].as_array().unwrap().iter().map(|c| c["email"].as_str().unwrap()).collect();
    assert_eq!(emails, ["rfm-5@example.com", "rfm-4@example.com", "rfm-3@example.com"]);
    let by_rfm = app.get("/v1/customers?sort=rfm_score", &token).await;
    let scores: Vec<Value> = by_rfm.body["data"].as_array().unwrap().iter().map(|c| c["rfm_score"].clone()).collect();
    assert_eq!(scores, [json!(3), json!(6), json!(9), json!(12), json!(15), Value::Null]);
    // An unfiltered sort by a score merges the scored and the unscored customers (no sort of the
    // whole workspace); a filter that keeps everyone takes the general query. Page by page, in
    // both directions, they agree.
    for sort in ["-clv_total", "clv_total", "-clv_predicted", "clv_predicted", "-rfm_score", "rfm_score"] {
        for page in 1..=4 {
            let url = format!("/v1/customers?sort={sort}&per_page=2&page={page}");
            let fast = app.get(&url, &token).await;
            let general = app.get(&format!("{url}&clv_total_min=-1000000000"), &token).await;
            let ids = |v: &Value| v["data"].as_array().unwrap().iter().map(|c| c["id"].clone()).collect::<Vec<_>>();
            assert_eq!(ids(&fast.assert_ok(200).clone()), ids(general.assert_ok(200)), "{sort}, page {page}");
            assert_eq!(fast.body["pagination"], general.body["pagination"], "{sort}, page {page}");
        }
    }

    // The grid and the segment sizes.
    let rfm = app.get("/v1/analytics/rfm", &token).await;
    let rfm = &rfm.assert_ok(200)["data"];
    assert_eq!(rfm["scored"], 5);
    for k in 0..5 {
        assert_eq!(rfm["grid"][k][k], 1, "{rfm}");
    }
    let sizes: Vec<(String, i64)> = rfm["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["segment"].as_str().unwrap().to_string(), s["customers"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        sizes,
        [("Champions".into(), 1), ("Loyal Customers".into(), 2), ("At Risk".into(), 1), ("Lost".into(), 1)]
    );
    assert_eq!(app.events.count(cairn_domain::TenantId(1)).await.unwrap(), n);
}

async fn each_purchase_rescores_its_customer_and_emits_rfm_changed(app: TestApp) {
    let (token, key) = setup(&app).await;
    app.clock.set(Utc.with_ymd_and_hms(2026, 6, 30, 12, 0, 0).unwrap());
    let mut events = Vec::new();
    for k in 1..=5u32 {
        events.push(purchase(
            &format!("u{k}"),
            &format!("2026-06-{:02}T10:00:00Z", 20 + k),
            10.0 * k as f64,
            &format!("m{k}"),
        ));
    }
    ingest(&app, &key, 1, events, 0).await;
    recompute(&app, &token, true).await;
    let before = customer_by_user(&app, &token, "u1").await;
    assert_eq!(before["rfm_score"], 3);

    // u1 buys big today: its scores change without any recompute.
    app.post("/v1/track/event", &key, purchase("u1", "2026-06-30T11:00:00Z", 500.0, "m-big")).await.assert_ok(200);
    let after = eventually(&app, &token, "u1", Duration::from_secs(5), |c| c["clv_total"] == 510.0).await;
    assert_eq!(after["clv_order_count"], 2);
    assert_eq!(after["rfm_recency"], 5, "the latest purchase of all");
    assert_eq!(after["rfm_monetary"], 5);
    assert_eq!(after["rfm_frequency"], 5, "more purchases than anyone");
    assert_eq!(after["rfm_segment"], "Champions");

    // The change is in the outbox for webhooks and automations, with old and new values.
    let tenant = cairn_domain::TenantId(1);
    let outbox = app.store.read().await.unwrap().outbox_after(tenant, 0, 1000).await.unwrap();
    let id = after["id"].as_i64().unwrap();
    let change = outbox
        .iter()
        .rfind(|e| e.event == "customer.rfm_changed" && e.payload["customer_id"] == id)
        .expect("customer.rfm_changed for u1");
    // The catalogue describes exactly the keys delivered.
    let catalogue = app.get("/v1/webhooks/events", &token).await;
    let entry =
        catalogue.body["data"].as_array().unwrap().iter().find(|e| e["event"] == "customer.rfm_changed").cloned();
    let schema = entry.expect("catalogued")["payload_schema"].clone();
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&schema["properties"]), keys(&change.payload));
    assert_eq!(keys(&schema["properties"]["new"]["properties"]), keys(&change.payload["new"]));
    assert_eq!(change.payload["old"]["rfm_segment"], "Lost");
    assert_eq!(change.payload["new"]["rfm_segment"], "Champions");
    assert_eq!(change.payload["new"]["rfm_score"], 15);

    // A refund brings the net spend down again.
    app.post(
        "/v1/track/event",
        &key,
        json!({"customer_email": "u1@example.com", "event": "refund", "message_id": "r1", "timestamp": "2026-06-30T11:30:00Z",
               "properties": {"amount": 500, "currency": "USD"}}),
    )
    .await
    .assert_ok(200);
    let refunded = eventually(&app, &token, "u1", Duration::from_secs(5), |c| c["clv_total"] == 10.0).await;
    assert_eq!(refunded["clv_order_count"], 2, "a refund is not a purchase");

    // Erasure removes the scores with the profile.
    app.delete(&format!("/v1/customers/{id}"), &token).await.assert_ok(200);
    let rfm = app.get("/v1/analytics/rfm", &token).await;
    assert_eq!(rfm.body["data"]["scored"], 4);
}

/// A purchase at 23:30 UTC is on the next day in Zagreb: with the workspace in that zone, two
/// purchases 30 minutes apart around UTC midnight are one transaction, not two.
async fn days_are_counted_in_the_workspace_time_zone(app: TestApp) {
    let (token, key) = setup(&app).await;
    app.clock.set(Utc.with_ymd_and_hms(2026, 6, 30, 12, 0, 0).unwrap());
    ingest(
        &app,
        &key,
        1,
        vec![purchase("tz", "2026-06-10T21:30:00Z", 10.0, "a"), purchase("tz", "2026-06-10T22:30:00Z", 10.0, "b")],
        0,
    )
    .await;
    recompute(&app, &token, true).await;
    let c = customer_by_user(&app, &token, "tz").await;
    let id = c["id"].as_i64().unwrap();
    let path = format!("/v1/customers/{id}/scores/explain");
    assert_eq!(app.get(&path, &token).await.body["data"]["clv"]["inputs"]["transactions"], 1, "same UTC day");
    let r = app.put("/v1/workspace", &token, json!({"time_zone": "Europe/Zagreb"})).await;
    assert_eq!(r.assert_ok(200)["data"]["time_zone"], "Europe/Zagreb");
    recompute(&app, &token, true).await;
    let e = app.get(&path, &token).await.body["data"].clone();
    assert_eq!(e["clv"]["inputs"]["transactions"], 2, "23:30 and 00:30 in Zagreb: {e}");
    assert_eq!(e["time_zone"], "Europe/Zagreb");
    assert_eq!(e["recency"]["last_purchase_date"], "2026-06-11");
}

async fn bad_scoring_requests_are_refused(app: TestApp) {
    let (token, _) = setup(&app).await;
    app.put("/v1/workspace", &token, json!({"time_zone": "Mars/Olympus"})).await.assert_error(400, "VALIDATION_ERROR");
    let r = app.get("/v1/customers?rfm_segment=Whales", &token).await;
    r.assert_error(400, "VALIDATION_ERROR");
    assert_eq!(r.body["field"], "rfm_segment", "{}", r.body);
    app.get("/v1/customers?clv_total_min=lots", &token).await.assert_error(400, "VALIDATION_ERROR");
    app.post("/v1/scoring/recompute", &token, json!({"fit": "yes"})).await.assert_error(400, "VALIDATION_ERROR");
    app.get("/v1/scoring/jobs/999999", &token).await.assert_error(404, "NOT_FOUND");
    // Before any purchase: no model, nobody scored, and the explanation says why.
    let m = app.get("/v1/analytics/clv/model", &token).await;
    assert!(m.assert_ok(200)["data"]["method"].is_null());
    let c = app.post("/v1/customers", &token, json!({"email": "a@example.com"})).await;
    let id = c.assert_ok(201)["data"]["id"].as_i64().unwrap();
    let e = app.get(&format!("/v1/customers/{id}/scores/explain"), &token).await;
    assert_eq!(e.assert_ok(200)["data"]["scored"], false);
    // An ingestion-only key reads none of it.
    let (_, ingest_only) =
        app.create_key(&token, json!({"name": "in", "type": "secret", "scopes": ["events:write"]})).await;
    app.get("/v1/analytics/rfm", &ingest_only).await.assert_error(403, "FORBIDDEN");
    app.post("/v1/scoring/recompute", &ingest_only, json!({})).await.assert_error(403, "FORBIDDEN");
}

/// The default schedule refreshes cut points every 10 minutes of the injected clock: moving the
/// clock past a slot queues and runs a recompute, which re-scores a customer whose recency has
/// aged without any new event.
async fn cut_points_refresh_on_their_schedule_as_the_clock_moves(app: TestApp) {
    let (token, key) = setup(&app).await;
    app.clock.set(Utc.with_ymd_and_hms(2026, 6, 30, 12, 1, 0).unwrap());
    let mut events = Vec::new();
    for k in 1..=5u32 {
        events.push(purchase(&format!("s{k}"), &format!("2026-06-{:02}T10:00:00Z", 20 + k), 10.0, &format!("s{k}")));
    }
    ingest(&app, &key, 1, events, 0).await;
    recompute(&app, &token, true).await;
    let before = app.get("/v1/analytics/rfm", &token).await.body["data"]["boundaries_at"].clone();
    assert_eq!(before, "2026-06-30T12:01:00Z");
    // Let the scorer notice the current time, then cross the 12:10 slot.
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.clock.advance(chrono::Duration::minutes(10));
    let started = Instant::now();
    loop {
        let rfm = app.get("/v1/analytics/rfm", &token).await.body["data"].clone();
        if rfm["boundaries_at"] == "2026-06-30T12:11:00Z" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no scheduled recompute: {rfm}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The models are refitted by their own (nightly) schedule, not by this one.
    let m = app.get("/v1/analytics/clv/model", &token).await.body["data"].clone();
    assert_eq!(m["fitted_at"], "2026-06-30T12:01:00Z");
}

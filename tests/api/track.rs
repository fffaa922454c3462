//! Seed 003's tracking endpoints end to end: acknowledged messages reach the customer's
//! profile and the event store; identity resolution links anonymous history; batches are all
//! or nothing; limits, CORS and scopes.

use cairn_domain::TenantId;
use reqwest::Method;
use serde_json::{json, Value};

use crate::common::{spawn_with, Backend, TestApp};

crate::on_both_backends!(
    seed_003s_server_side_purchase_shows_up_on_the_customer,
    identify_links_the_anonymous_history_to_the_new_customer,
    identify_merges_an_anonymous_visitor_into_an_existing_customer,
    a_batch_with_a_bad_message_is_refused_whole_and_names_it,
    a_retried_message_id_is_stored_once,
    traits_merge_and_the_latest_event_time_wins,
    events_more_than_a_day_ahead_or_for_unknown_customers_are_refused,
    browsers_may_call_the_ingestion_routes_from_any_origin,
    public_keys_ingest_but_nothing_else_and_scopes_are_enforced,
    a_key_revoked_here_stops_ingesting_at_once,
    ingestion_logs_every_failure_and_samples_successes,
);

crate::on_both_backends_raw!(messages_and_batches_over_their_limits_are_413);

async fn key(app: &TestApp, token: &str, body: Value) -> String {
    app.create_key(token, body).await.1
}

async fn only_customer(app: &TestApp, token: &str) -> Value {
    let list = app.get("/v1/customers", token).await;
    assert_eq!(list.assert_ok(200)["pagination"]["total"], 1, "{}", list.body);
    let id = list.body["data"][0]["id"].as_i64().unwrap();
    app.get(&format!("/v1/customers/{id}"), token).await.body["data"].clone()
}

async fn seed_003s_server_side_purchase_shows_up_on_the_customer(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let k = key(&app, &token, json!({"name": "server", "type": "secret"})).await;
    let r = app
        .call_with(
            Method::POST,
            "/v1/track/event",
            None,
            Some(json!({
                "customer_email": "marko@example.com",
                "event": "purchase",
                "properties": {"amount": 299.99, "currency": "EUR", "order_id": "ord_0001",
                               "items": [{"id": "prod_123", "name": "Enterprise Plan", "quantity": 1, "price": 299.99}]}
            })),
            &[("X-API-Key", &k)],
        )
        .await;
    assert_eq!(r.assert_ok(200)["data"]["accepted"], 1);
    app.wait_for_events(1, 1).await;
    let c = only_customer(&app, &token).await;
    assert_eq!(c["email"], "marko@example.com");
    assert_eq!(c["event_counts"], json!({"purchase": 1}));
    assert!(c["first_seen_at"].is_string() && c["last_seen_at"].is_string());
    let events = app.get(&format!("/v1/customers/{}/events", c["id"]), &token).await;
    let e = &events.body["data"][0];
    assert_eq!(e["event"], "purchase");
    assert_eq!(e["properties"]["order_id"], "ord_0001");
    assert_eq!(e["message_id"], r.body["data"]["message_ids"][0]);
    let outbox = app.store.read().await.unwrap().outbox_after(TenantId(1), 0, 10).await.unwrap();
    assert_eq!(outbox.iter().filter(|o| o.event == "customer.created").count(), 1);
}

async fn identify_links_the_anonymous_history_to_the_new_customer(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let pk = key(&app, &token, json!({"name": "site", "type": "public"})).await;
    for (i, url) in ["https://shop.example/", "https://shop.example/pricing"].iter().enumerate() {
        let body = json!({"anonymous_id": "visitor-1", "url": url, "title": format!("Page {i}"), "message_id": format!("p{i}")});
        app.post("/v1/track/page", &pk, body).await.assert_ok(200);
    }
    app.wait_for_events(1, 2).await;
    let outbox = app.store.read().await.unwrap().outbox_after(TenantId(1), 0, 10).await.unwrap();
    assert!(outbox.is_empty(), "an anonymous visitor is not yet a customer: {outbox:?}");
    let r = app
        .post("/v1/track/identify", &pk, json!({"email": "Ana@Example.com", "name": "Ana Kovač", "created_at": "2025-06-01", "anonymous_id": "visitor-1", "message_id": "i1"}))
        .await;
    r.assert_ok(200);
    app.wait_for_events(1, 3).await;
    let c = only_customer(&app, &token).await;
    assert_eq!(c["email"], "ana@example.com");
    assert_eq!(c["name"], "Ana Kovač");
    assert_eq!(c["event_counts"], json!({"pageview": 2, "identify": 1}), "the anonymous history is on the profile");
    let outbox = app.store.read().await.unwrap().outbox_after(TenantId(1), 0, 10).await.unwrap();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].event, "customer.created");
    assert_eq!(outbox[0].payload["customer_email"], "ana@example.com");
    // Later anonymous events of that browser land on the same profile.
    app.post(
        "/v1/track/event",
        &pk,
        json!({"anonymous_id": "visitor-1", "event": "add_to_cart", "properties": {"amount": 5}}),
    )
    .await
    .assert_ok(200);
    app.wait_for_events(1, 4).await;
    assert_eq!(only_customer(&app, &token).await["events_total"], 4);
}

async fn identify_merges_an_anonymous_visitor_into_an_existing_customer(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let created = app.post("/v1/customers", &token, json!({"email": "ana@example.com", "name": "Ana"})).await;
    let ana = created.assert_ok(201)["data"]["id"].as_i64().unwrap();
    let pk = key(&app, &token, json!({"name": "site", "type": "public"})).await;
    app.post("/v1/track/batch", &pk, json!([
        {"type": "page", "anonymous_id": "v2", "url": "https://shop.example/a"},
        {"type": "event", "anonymous_id": "v2", "event": "add_to_cart", "properties": {"amount": 20, "currency": "EUR"}},
    ])).await.assert_ok(200);
    app.wait_for_events(1, 2).await;
    assert_eq!(app.get("/v1/customers", &token).await.body["pagination"]["total"], 2, "an anonymous profile for v2");
    app.post(
        "/v1/track/identify",
        &pk,
        json!({"email": "ana@example.com", "anonymous_id": "v2", "traits": {"plan": "pro"}}),
    )
    .await
    .assert_ok(200);
    app.wait_for_events(1, 3).await;
    let c = only_customer(&app, &token).await;
    assert_eq!(c["id"], ana, "merged into the existing customer, no duplicate profile");
    assert_eq!(c["events_total"], 3);
    assert_eq!(c["traits"], json!({"plan": "pro"}));
    let outbox = app.store.read().await.unwrap().outbox_after(TenantId(1), 0, 10).await.unwrap();
    assert_eq!(outbox.iter().filter(|o| o.event == "customer.created").count(), 1, "only the API's create");
}

async fn a_batch_with_a_bad_message_is_refused_whole_and_names_it(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let k = key(&app, &token, json!({"name": "s", "type": "secret"})).await;
    let bad = json!({"batch": [
        {"type": "event", "user_id": "u1", "event": "login"},
        {"type": "event", "user_id": "u1", "properties": {}},
        {"type": "identify", "user_id": "u1", "email": "u1@example.com"},
    ]});
    let r = app.post("/v1/track/batch", &k, bad).await;
    r.assert_error(400, "VALIDATION_ERROR");
    assert_eq!(r.body["field"], "batch[1].event");
    let r = app
        .post(
            "/v1/track/batch",
            &k,
            json!([{"type": "event", "user_id": "u1", "event": "purchase", "properties": {"amount": -3}}]),
        )
        .await;
    assert_eq!(r.body["field"], "batch[0].properties.amount");
    let r = app.post("/v1/track/batch", &k, json!([{"type": "sms", "user_id": "u1"}])).await;
    assert_eq!(r.body["field"], "batch[0].type");
    let good = json!({"batch": [
        {"type": "event", "user_id": "u1", "event": "login"},
        {"type": "identify", "user_id": "u1", "email": "u1@example.com"},
        {"type": "page", "user_id": "u1", "url": "https://x.example"},
    ]});
    assert_eq!(app.post("/v1/track/batch", &k, good).await.assert_ok(200)["data"]["accepted"], 3);
    app.wait_for_events(1, 3).await;
    let c = only_customer(&app, &token).await;
    assert_eq!(c["user_id"], "u1");
    assert_eq!(c["email"], "u1@example.com");
}

async fn a_retried_message_id_is_stored_once(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let k = key(&app, &token, json!({"name": "s", "type": "secret"})).await;
    let body = json!({"user_id": "u9", "event": "purchase", "message_id": "order-77", "properties": {"amount": 10, "currency": "USD"}});
    for _ in 0..3 {
        app.post("/v1/track/event", &k, body.clone()).await.assert_ok(200);
    }
    app.post("/v1/track/event", &k, json!({"user_id": "u9", "event": "login", "message_id": "after"}))
        .await
        .assert_ok(200);
    app.wait_for_events(1, 2).await;
    assert_eq!(only_customer(&app, &token).await["event_counts"], json!({"login": 1, "purchase": 1}));
}

async fn traits_merge_and_the_latest_event_time_wins(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let k = key(&app, &token, json!({"name": "s", "type": "secret"})).await;
    app.clock.set("2026-03-16T12:00:00Z".parse().unwrap());
    let send = |body: Value| app.post("/v1/track/identify", &k, body);
    send(json!({"user_id": "u1", "traits": {"plan": "free", "seats": 1}, "timestamp": "2026-03-10T00:00:00Z"}))
        .await
        .assert_ok(200);
    send(json!({"user_id": "u1", "traits": {"plan": "pro"}, "timestamp": "2026-03-12T00:00:00Z"})).await.assert_ok(200);
    send(json!({"user_id": "u1", "traits": {"seats": null, "region": "eu"}, "timestamp": "2026-03-01T00:00:00Z"}))
        .await
        .assert_ok(200);
    app.wait_for_events(1, 3).await;
    let c = only_customer(&app, &token).await;
    assert_eq!(c["traits"], json!({"plan": "pro", "region": "eu"}));
    assert_eq!(c["first_seen_at"], "2026-03-01T00:00:00Z");
    assert_eq!(c["last_seen_at"], "2026-03-12T00:00:00Z", "an older event arriving late does not move last seen back");
}

async fn events_more_than_a_day_ahead_or_for_unknown_customers_are_refused(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let k = key(&app, &token, json!({"name": "s", "type": "secret"})).await;
    app.clock.set("2026-03-16T12:00:00Z".parse().unwrap());
    let r = app
        .post("/v1/track/event", &k, json!({"user_id": "u", "event": "x", "timestamp": "2026-03-17T13:00:00Z"}))
        .await;
    r.assert_error(400, "VALIDATION_ERROR");
    assert_eq!(r.body["field"], "timestamp");
    app.post("/v1/track/event", &k, json!({"user_id": "u", "event": "x", "timestamp": "2026-03-17T11:00:00Z"}))
        .await
        .assert_ok(200);
    let r = app.post("/v1/track/event", &k, json!({"customer_id": 424242, "event": "x"})).await;
    assert_eq!(r.body["field"], "customer_id");
    let r = app.post("/v1/track/event", &k, json!({"event": "x"})).await;
    assert_eq!(r.body["field"], "customer_email");
    let r = app
        .client
        .post(format!("{}/v1/track/event", app.base))
        .header("X-API-Key", &k)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

async fn browsers_may_call_the_ingestion_routes_from_any_origin(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let pk = key(&app, &token, json!({"name": "site", "type": "public"})).await;
    let pre = app
        .client
        .request(Method::OPTIONS, format!("{}/v1/track/event", app.base))
        .header("Origin", "https://shop.example")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type, x-api-key")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), 204);
    assert_eq!(pre.headers()["access-control-allow-origin"], "*");
    assert!(pre.headers()["access-control-allow-headers"].to_str().unwrap().contains("X-API-Key"));
    assert!(pre.headers().get("access-control-allow-credentials").is_none());
    // A beacon: text/plain body, key in a header.
    let r = app
        .client
        .post(format!("{}/v1/track/event", app.base))
        .header("Origin", "https://shop.example")
        .header("X-API-Key", &pk)
        .header("content-type", "text/plain;charset=UTF-8")
        .body(r#"{"anonymous_id": "v", "event": "pageview"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let other = app
        .client
        .get(format!("{}/v1/customers", app.base))
        .header("Origin", "https://shop.example")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none(), "CRM routes send no CORS headers");
}

async fn public_keys_ingest_but_nothing_else_and_scopes_are_enforced(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let pk = key(&app, &token, json!({"name": "site", "type": "public"})).await;
    let reader = key(&app, &token, json!({"name": "r", "type": "secret", "scopes": ["customers:read"]})).await;
    let ingest_only = key(&app, &token, json!({"name": "i", "type": "secret", "scopes": ["events:write"]})).await;
    app.post("/v1/track/event", &pk, json!({"anonymous_id": "v", "event": "x"})).await.assert_ok(200);
    app.post("/v1/track/event", &ingest_only, json!({"anonymous_id": "v", "event": "x"})).await.assert_ok(200);
    app.post("/v1/track/event", &reader, json!({"anonymous_id": "v", "event": "x"}))
        .await
        .assert_error(403, "FORBIDDEN");
    app.get("/v1/customers", &ingest_only).await.assert_error(403, "FORBIDDEN");
    app.get("/v1/customers", &pk).await.assert_error(403, "FORBIDDEN");
}

async fn messages_and_batches_over_their_limits_are_413(backend: Backend) {
    let app = spawn_with(backend, |s| {
        s.max_event_bytes = 2_000;
        s.max_batch_bytes = 10_000;
    })
    .await;
    let token = app.register("you@company.com", "Acme").await;
    let k = key(&app, &token, json!({"name": "s", "type": "secret"})).await;
    let big = json!({"user_id": "u", "event": "x", "properties": {"blob": "x".repeat(3_000)}});
    app.post("/v1/track/event", &k, big.clone()).await.assert_error(413, "PAYLOAD_TOO_LARGE");
    let mut batch: Vec<Value> = (0..3).map(|_| json!({"type": "event", "user_id": "u", "event": "x"})).collect();
    batch.push(json!({"type": "event", "user_id": "u", "event": "x", "properties": {"blob": "x".repeat(3_000)}}));
    let r = app.post("/v1/track/batch", &k, Value::Array(batch)).await;
    r.assert_error(413, "PAYLOAD_TOO_LARGE");
    assert!(r.body["error"].as_str().unwrap().starts_with("batch[3]"), "{}", r.body);
    let huge: Vec<Value> = (0..20)
        .map(|_| json!({"type": "event", "user_id": "u", "event": "x", "properties": {"p": "y".repeat(900)}}))
        .collect();
    app.post("/v1/track/batch", &k, Value::Array(huge)).await.assert_error(413, "PAYLOAD_TOO_LARGE");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(app.events.count(TenantId(1)).await.unwrap(), 0, "nothing was stored");
}

async fn a_key_revoked_here_stops_ingesting_at_once(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let (id, k) = app.create_key(&token, json!({"name": "s", "type": "secret"})).await;
    app.post("/v1/track/event", &k, json!({"user_id": "u", "event": "x"})).await.assert_ok(200);
    app.delete(&format!("/v1/api-keys/{id}"), &token).await.assert_ok(200);
    app.post("/v1/track/event", &k, json!({"user_id": "u", "event": "x"})).await.assert_error(401, "AUTH_REQUIRED");
}

async fn ingestion_logs_every_failure_and_samples_successes(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let (id, k) = app.create_key(&token, json!({"name": "s", "type": "secret"})).await;
    let started = std::time::Instant::now();
    for _ in 0..10 {
        app.post("/v1/track/event", &k, json!({"user_id": "u", "event": "x"})).await.assert_ok(200);
    }
    let window = started.elapsed().as_secs() as usize + 1;
    for _ in 0..3 {
        app.post("/v1/track/event", &k, json!({"user_id": "u"})).await.assert_error(400, "VALIDATION_ERROR");
    }
    let mut statuses: Vec<i64> = Vec::new();
    for _ in 0..100 {
        let logs = app.get(&format!("/v1/api-logs?api_key_id={id}"), &token).await.body;
        statuses = logs["data"].as_array().unwrap().iter().map(|l| l["status"].as_i64().unwrap()).collect();
        if statuses.iter().filter(|s| **s == 400).count() == 3 && statuses.contains(&200) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(statuses.iter().filter(|s| **s == 400).count(), 3, "every failure is logged: {statuses:?}");
    let successes = statuses.iter().filter(|s| **s == 200).count();
    assert!((1..=window).contains(&successes), "at most one success a second: {successes} in {window} s");
}

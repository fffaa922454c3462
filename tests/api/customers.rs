//! Customers (seed 003): create with the seed's body, read, list, search, sort, update,
//! erase (both stores), event history; `customer.created` in the outbox exactly once.

use cairn_domain::{CustomerId, TenantId};
use cairn_events::Event;
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use crate::common::TestApp;

crate::on_both_backends!(
    seed_003s_create_body_works_verbatim,
    a_new_customer_emits_customer_created_once_in_the_same_transaction,
    an_email_is_one_customer_per_workspace,
    invalid_fields_are_named_and_nothing_is_written,
    lists_search_sort_and_paginate,
    a_put_changes_only_what_it_names,
    the_profile_shows_event_counts_and_the_history_newest_first,
    erasure_removes_the_profile_and_every_event_in_both_stores,
    customer_routes_demand_customer_scopes,
);

async fn create(app: &TestApp, auth: &str, body: Value) -> i64 {
    let r = app.post("/v1/customers", auth, body).await;
    r.assert_ok(201)["data"]["id"].as_i64().unwrap()
}

fn event(tenant: i64, customer: i64, id: &str, name: &str, at: DateTime<Utc>) -> Event {
    Event {
        tenant_id: TenantId(tenant),
        message_id: id.into(),
        customer_id: CustomerId(customer),
        anonymous_id: None,
        user_id: None,
        kind: "track".into(),
        name: name.into(),
        properties: json!({"amount": 10.0}),
        context: json!({}),
        timestamp: at,
        sent_at: None,
        received_at: at,
        amount: Some(10.0),
        currency: Some("EUR".into()),
    }
}

async fn seed_003s_create_body_works_verbatim(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let r = app
        .post(
            "/v1/customers",
            &token,
            json!({"name": "Marko Horvatić", "email": "marko@example.com", "phone": "+385921234567", "city": "Zagreb", "country": "HR"}),
        )
        .await;
    let d = &r.assert_ok(201)["data"];
    assert_eq!(d["name"], "Marko Horvatić");
    assert_eq!(d["email"], "marko@example.com");
    assert_eq!(d["phone"], "+385921234567");
    assert_eq!(d["city"], "Zagreb");
    assert_eq!(d["country"], "HR");
    assert_eq!(d["traits"], json!({}));
    for score in [
        "rfm_recency",
        "rfm_frequency",
        "rfm_monetary",
        "rfm_score",
        "rfm_segment",
        "clv_average_order",
        "clv_predicted",
        "p_alive",
        "clv_method",
        "last_purchase_at",
    ] {
        assert!(d[score].is_null(), "{score} is null before the first purchase");
    }
    assert_eq!((d["clv_total"].as_f64(), d["clv_order_count"].as_i64()), (Some(0.0), Some(0)), "nothing spent yet");
    let got = app.get(&format!("/v1/customers/{}", d["id"]), &token).await;
    assert_eq!(got.assert_ok(200)["data"]["email"], "marko@example.com");
}

async fn a_new_customer_emits_customer_created_once_in_the_same_transaction(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let id = create(&app, &token, json!({"email": "ana@example.com", "name": "Ana"})).await;
    app.post("/v1/customers", &token, json!({"email": "ANA@example.com"})).await.assert_error(409, "DUPLICATE");
    let outbox = app.store.read().await.unwrap().outbox_after(TenantId(1), 0, 100).await.unwrap();
    assert_eq!(outbox.len(), 1, "{outbox:?}");
    assert_eq!(outbox[0].event, "customer.created");
    assert_eq!(outbox[0].payload["customer_id"], id);
    assert_eq!(outbox[0].payload["customer_email"], "ana@example.com");
}

async fn an_email_is_one_customer_per_workspace(app: TestApp) {
    let a = app.register("a@company.com", "Alpha").await;
    let b = app.register("b@company.com", "Beta").await;
    create(&app, &a, json!({"email": "same@example.com"})).await;
    create(&app, &b, json!({"email": "same@example.com"})).await;
    let r = app.post("/v1/customers", &a, json!({"email": " Same@Example.com "})).await;
    r.assert_error(409, "DUPLICATE");
    assert_eq!(r.body["field"], "email");
    create(&app, &a, json!({"user_id": "u-1"})).await;
    let r = app.post("/v1/customers", &a, json!({"user_id": "u-1"})).await;
    assert_eq!(r.body["field"], "user_id");
}

async fn invalid_fields_are_named_and_nothing_is_written(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    for (body, field) in [
        (json!({"email": "not-an-email"}), "email"),
        (json!({"email": "a@b.co", "phone": "call me maybe"}), "phone"),
        (json!({"email": "a@b.co", "country": "Croatia"}), "country"),
        (json!({"email": "a@b.co", "traits": "vip"}), "traits"),
        (json!({"email": "a@b.co", "name": "n".repeat(201)}), "name"),
        (json!({"email": "a@b.co", "rfm_score": 15}), "rfm_score"),
        (json!({"name": "No identifier"}), "email"),
    ] {
        let r = app.post("/v1/customers", &token, body).await;
        r.assert_error(400, "VALIDATION_ERROR");
        assert_eq!(r.body["field"], field);
    }
    let big = json!({"email": "a@b.co", "traits": {"blob": "x".repeat(40_000)}});
    assert_eq!(app.post("/v1/customers", &token, big).await.body["field"], "traits");
    assert_eq!(app.get("/v1/customers", &token).await.body["pagination"]["total"], 0);
    assert!(app.store.read().await.unwrap().outbox_after(TenantId(1), 0, 10).await.unwrap().is_empty());
}

async fn lists_search_sort_and_paginate(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    for (name, email) in
        [("Ana Kovač", "ana@example.com"), ("Marko Horvatić", "marko@example.com"), ("Iva 100%", "iva@other.org")]
    {
        create(&app, &token, json!({"name": name, "email": email})).await;
        app.clock.advance(Duration::seconds(1));
    }
    let names = |v: &Value| {
        v["data"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    let all = app.get("/v1/customers", &token).await;
    assert_eq!(names(&all.body), ["Iva 100%", "Marko Horvatić", "Ana Kovač"], "newest first");
    assert_eq!(all.body["pagination"]["total"], 3);
    assert_eq!(names(&app.get("/v1/customers?search=ANA", &token).await.body), ["Ana Kovač"]);
    assert_eq!(
        names(&app.get("/v1/customers?search=example.com&sort=name", &token).await.body),
        ["Ana Kovač", "Marko Horvatić"]
    );
    assert_eq!(names(&app.get("/v1/customers?search=100%25", &token).await.body), ["Iva 100%"], "% matches literally");
    assert_eq!(names(&app.get("/v1/customers?search=_", &token).await.body), Vec::<String>::new());
    let page = app.get("/v1/customers?sort=-name&per_page=2&page=2", &token).await;
    assert_eq!(names(&page.body), ["Ana Kovač"]);
    assert_eq!(page.body["pagination"]["total_pages"], 2);
    app.get("/v1/customers?sort=rank", &token).await.assert_error(400, "VALIDATION_ERROR");

    // count=none (the dashboard's search while typing): the same rows, no count; the total says
    // only whether another page follows.
    let first = app.get("/v1/customers?search=a&per_page=2&count=none", &token).await;
    assert_eq!(names(&first.body), ["Iva 100%", "Marko Horvatić"]);
    assert_eq!(first.body["pagination"]["total"], 3, "two rows and one more");
    assert_eq!(first.body["pagination"]["total_pages"], 2);
    let last = app.get("/v1/customers?search=a&per_page=2&page=2&count=none", &token).await;
    assert_eq!(names(&last.body), ["Ana Kovač"]);
    assert_eq!(last.body["pagination"]["total"], 3, "the last page: no more");
    assert_eq!(last.body["pagination"]["total_pages"], 2);
    let r = app.get("/v1/customers?count=approximate", &token).await;
    r.assert_error(400, "VALIDATION_ERROR");
    assert_eq!(r.body["field"], "count");
}

async fn a_put_changes_only_what_it_names(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let id = create(&app, &token, json!({"email": "m@example.com", "name": "Marko", "phone": "+385921234567", "traits": {"plan": "pro", "seats": 3}})).await;
    let r = app
        .put(
            &format!("/v1/customers/{id}"),
            &token,
            json!({"city": "Split", "phone": null, "traits": {"seats": null, "vip": true}}),
        )
        .await;
    let d = &r.assert_ok(200)["data"];
    assert_eq!(d["name"], "Marko");
    assert_eq!(d["city"], "Split");
    assert!(d["phone"].is_null());
    assert_eq!(d["traits"], json!({"plan": "pro", "vip": true}));
    create(&app, &token, json!({"email": "other@example.com"})).await;
    let r = app.put(&format!("/v1/customers/{id}"), &token, json!({"email": "other@example.com"})).await;
    r.assert_error(409, "DUPLICATE");
    let r = app.put(&format!("/v1/customers/{id}"), &token, json!({"email": null})).await;
    r.assert_error(400, "VALIDATION_ERROR");
    app.put("/v1/customers/999999", &token, json!({"city": "X"})).await.assert_error(404, "NOT_FOUND");
    assert_eq!(app.get(&format!("/v1/customers/{id}"), &token).await.body["data"]["email"], "m@example.com");
}

async fn the_profile_shows_event_counts_and_the_history_newest_first(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let id = create(&app, &token, json!({"email": "m@example.com"})).await;
    let t0: DateTime<Utc> = "2026-03-01T10:00:00Z".parse().unwrap();
    let events: Vec<Event> = (0..5)
        .map(|i| {
            event(1, id, &format!("m{i}"), if i % 2 == 0 { "pageview" } else { "purchase" }, t0 + Duration::days(i))
        })
        .collect();
    app.events.insert(&events).await.unwrap();
    let detail = app.get(&format!("/v1/customers/{id}"), &token).await;
    let d = &detail.assert_ok(200)["data"];
    assert_eq!(d["event_counts"], json!({"pageview": 3, "purchase": 2}));
    assert_eq!(d["events_total"], 5);
    let hist = app.get(&format!("/v1/customers/{id}/events?per_page=2"), &token).await;
    let ids: Vec<_> = hist.assert_ok(200)["data"].as_array().unwrap().iter().map(|e| e["message_id"].clone()).collect();
    assert_eq!(ids, [json!("m4"), json!("m3")]);
    assert_eq!(hist.body["pagination"]["total"], 5);
    let filtered = app
        .get(
            &format!("/v1/customers/{id}/events?event=pageview&from=2026-03-02T00:00:00Z&to=2026-03-05T12:00:00Z"),
            &token,
        )
        .await;
    let ids: Vec<_> = filtered.body["data"].as_array().unwrap().iter().map(|e| e["message_id"].clone()).collect();
    assert_eq!(ids, [json!("m4"), json!("m2")]);
    assert_eq!(filtered.body["data"][0]["type"], "track");
    assert_eq!(filtered.body["data"][0]["event"], "pageview");
    let bad = app.get(&format!("/v1/customers/{id}/events?from=yesterday"), &token).await;
    bad.assert_error(400, "VALIDATION_ERROR");
    assert_eq!(bad.body["field"], "from");
}

async fn erasure_removes_the_profile_and_every_event_in_both_stores(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let gone = create(&app, &token, json!({"email": "gone@example.com"})).await;
    let kept = create(&app, &token, json!({"email": "kept@example.com"})).await;
    let t0: DateTime<Utc> = "2026-03-01T10:00:00Z".parse().unwrap();
    app.events
        .insert(&[
            event(1, gone, "a", "login", t0),
            event(1, gone, "b", "purchase", t0),
            event(1, kept, "c", "login", t0),
        ])
        .await
        .unwrap();
    let r = app.delete(&format!("/v1/customers/{gone}"), &token).await;
    assert_eq!(r.assert_ok(200)["data"]["erased"], true);
    app.get(&format!("/v1/customers/{gone}"), &token).await.assert_error(404, "NOT_FOUND");
    let (left, _) =
        app.events.customer_events(TenantId(1), CustomerId(gone), &Default::default(), 10, 0).await.unwrap();
    assert!(left.is_empty(), "erased customer's events remain");
    assert_eq!(app.events.count(TenantId(1)).await.unwrap(), 1);
    assert_eq!(app.get(&format!("/v1/customers/{kept}"), &token).await.body["data"]["events_total"], 1);
    app.delete(&format!("/v1/customers/{gone}"), &token).await.assert_error(404, "NOT_FOUND");
    // The email is free again.
    create(&app, &token, json!({"email": "gone@example.com"})).await;
}

async fn customer_routes_demand_customer_scopes(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let (_, reader) =
        app.create_key(&token, json!({"name": "r", "type": "secret", "scopes": ["customers:read"]})).await;
    let (_, contacts) = app
        .create_key(&token, json!({"name": "c", "type": "secret", "scopes": ["contacts:write", "contacts:delete"]}))
        .await;
    let (_, pk) = app.create_key(&token, json!({"name": "p", "type": "public"})).await;
    app.post("/v1/customers", &reader, json!({"email": "x@example.com"})).await.assert_error(403, "FORBIDDEN");
    let id = create(&app, &contacts, json!({"email": "x@example.com"})).await;
    app.get("/v1/customers", &reader).await.assert_ok(200);
    app.delete(&format!("/v1/customers/{id}"), &reader).await.assert_error(403, "FORBIDDEN");
    app.get("/v1/customers", &pk).await.assert_error(403, "FORBIDDEN");
    app.delete(&format!("/v1/customers/{id}"), &contacts).await.assert_ok(200);
}

//! Segment's HTTP tracking API: Basic auth or `writeKey` in the body, Segment's field names,
//! the browser library's short routes, the settings analytics.js fetches, and the real
//! Segment Python SDK (segment-analytics-python from PyPI, installed by scripts/test.sh).

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::TestApp;

crate::on_both_backends!(
    segment_calls_with_basic_auth_reach_the_profile,
    analytics_js_short_routes_take_the_write_key_in_a_text_plain_body,
    alias_merges_the_previous_identity_into_the_user,
    analytics_js_finds_its_settings_for_a_write_key,
    the_official_segment_python_sdk_delivers_identify_and_track,
);

fn basic(key: &str) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{key}:")))
}

async fn segment(app: &TestApp, path: &str, key: &str, body: Value) -> crate::common::Resp {
    let auth = basic(key);
    app.call_with(Method::POST, path, None, Some(body), &[("Authorization", auth.as_str())]).await
}

async fn only_customer(app: &TestApp, token: &str) -> Value {
    let list = app.get("/v1/customers", token).await;
    assert_eq!(list.assert_ok(200)["pagination"]["total"], 1, "{}", list.body);
    let id = list.body["data"][0]["id"].as_i64().unwrap();
    app.get(&format!("/v1/customers/{id}"), token).await.body["data"].clone()
}

async fn segment_calls_with_basic_auth_reach_the_profile(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let (_, key) =
        app.create_key(&token, json!({"name": "server", "type": "secret", "scopes": ["events:write"]})).await;
    let r = segment(&app, "/v1/identify", &key, json!({
        "userId": "u-42", "traits": {"email": "Ana@Example.com", "name": "Ana", "plan": "pro"},
        "context": {"library": {"name": "analytics-node", "version": "2.0"}}, "integrations": {"All": true},
        "_metadata": {"nodeVersion": "20"}, "messageId": "m-1", "timestamp": "2026-03-16T10:00:00Z", "sentAt": "2026-03-16T10:00:00Z"
    })).await;
    assert_eq!(r.assert_ok(200), &json!({"success": true}));
    segment(
        &app,
        "/v1/track",
        &key,
        json!({"userId": "u-42", "event": "purchase", "properties": {"amount": 12.0, "currency": "eur"}}),
    )
    .await
    .assert_ok(200);
    segment(
        &app,
        "/v1/page",
        &key,
        json!({"userId": "u-42", "name": "Pricing", "properties": {"url": "https://x.example/pricing"}}),
    )
    .await
    .assert_ok(200);
    segment(&app, "/v1/group", &key, json!({"userId": "u-42", "groupId": "acme", "traits": {"employees": 40}}))
        .await
        .assert_ok(200);
    segment(&app, "/v1/screen", &key, json!({"userId": "u-42", "name": "Home"})).await.assert_ok(200);
    segment(
        &app,
        "/v1/batch",
        &key,
        json!({"batch": [
        {"type": "track", "userId": "u-42", "event": "login"},
        {"type": "track", "userId": "u-42", "event": "logout"}
    ], "context": {"ip": "203.0.113.9"}}),
    )
    .await
    .assert_ok(200);
    app.wait_for_events(1, 7).await;
    let c = only_customer(&app, &token).await;
    assert_eq!(c["user_id"], "u-42");
    assert_eq!(c["email"], "ana@example.com");
    assert_eq!(c["name"], "Ana");
    assert_eq!(c["traits"]["plan"], "pro");
    assert_eq!(
        c["event_counts"],
        json!({"group": 1, "identify": 1, "login": 1, "logout": 1, "pageview": 1, "purchase": 1, "screen": 1})
    );
    let bad = segment(&app, "/v1/track", &key, json!({"userId": "u-42"})).await;
    bad.assert_error(400, "VALIDATION_ERROR");
    assert_eq!(bad.body["field"], "event");
    segment(&app, "/v1/track", "eck_wrongwrongwrongwrongwrongwrongwrongwron", json!({"userId": "u", "event": "x"}))
        .await
        .assert_error(401, "AUTH_REQUIRED");
}

async fn analytics_js_short_routes_take_the_write_key_in_a_text_plain_body(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let (_, pk) = app.create_key(&token, json!({"name": "site", "type": "public"})).await;
    for (path, body) in [
        ("/v1/p", json!({"anonymousId": "a-1", "properties": {"url": "https://x.example/"}, "writeKey": pk})),
        ("/v1/t", json!({"anonymousId": "a-1", "event": "add_to_cart", "properties": {"amount": 3}, "writeKey": pk})),
        (
            "/v1/b",
            json!({"batch": [{"type": "identify", "anonymousId": "a-1", "userId": "u-7", "traits": {"email": "u7@example.com"}}], "writeKey": pk}),
        ),
    ] {
        let r = app
            .client
            .post(format!("{}{path}", app.base))
            .header("content-type", "text/plain")
            .header("Origin", "https://x.example")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["access-control-allow-origin"], "*");
        assert!(r.headers().get("x-ratelimit-limit").is_some(), "rate-limited by the body's key");
    }
    app.wait_for_events(1, 3).await;
    let c = only_customer(&app, &token).await;
    assert_eq!(c["user_id"], "u-7");
    assert_eq!(c["email"], "u7@example.com");
    assert_eq!(c["events_total"], 3, "the anonymous page and cart are on the identified profile");
    let r = app
        .client
        .post(format!("{}/v1/t", app.base))
        .header("content-type", "text/plain")
        .body(json!({"anonymousId": "a", "event": "x"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

async fn alias_merges_the_previous_identity_into_the_user(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let (_, key) = app.create_key(&token, json!({"name": "s", "type": "secret"})).await;
    segment(&app, "/v1/track", &key, json!({"userId": "old-id", "event": "login"})).await.assert_ok(200);
    segment(&app, "/v1/identify", &key, json!({"userId": "new-id", "traits": {"email": "n@example.com"}}))
        .await
        .assert_ok(200);
    app.wait_for_events(1, 2).await;
    assert_eq!(app.get("/v1/customers", &token).await.body["pagination"]["total"], 2);
    segment(&app, "/v1/alias", &key, json!({"previousId": "old-id", "userId": "new-id"})).await.assert_ok(200);
    app.wait_for_events(1, 3).await;
    let c = only_customer(&app, &token).await;
    assert_eq!(c["user_id"], "new-id");
    assert_eq!(c["event_counts"], json!({"alias": 1, "identify": 1, "login": 1}));
}

async fn analytics_js_finds_its_settings_for_a_write_key(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let (_, pk) = app.create_key(&token, json!({"name": "site", "type": "public"})).await;
    let r = app.call(Method::GET, &format!("/v1/projects/{pk}/settings"), None, None).await;
    let s = r.assert_ok(200);
    assert_eq!(s["integrations"]["Segment.io"]["apiKey"], pk.as_str());
    assert!(s["integrations"]["Segment.io"]["apiHost"].as_str().unwrap().ends_with("/v1"));
    app.call(Method::GET, "/v1/projects/pk_live_nosuchkeynosuchkeynosuchkeynosuchke/settings", None, None)
        .await
        .assert_error(404, "NOT_FOUND");
}

async fn the_official_segment_python_sdk_delivers_identify_and_track(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let (_, key) =
        app.create_key(&token, json!({"name": "python", "type": "secret", "scopes": ["events:write"]})).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/segment_python.py");
    let out =
        tokio::process::Command::new("python3").arg(script).arg(&app.base).arg(&key).output().await.expect("python3");
    assert!(
        out.status.success(),
        "the Segment SDK failed (scripts/test.sh installs segment-analytics-python): {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    app.wait_for_events(1, 5).await;
    let c = only_customer(&app, &token).await;
    assert_eq!(c["user_id"], "sdk-user-1");
    assert_eq!(c["email"], "sdk.user@example.com");
    assert_eq!(c["name"], "Sdk User");
    assert_eq!(c["event_counts"], json!({"alias": 1, "identify": 1, "pageview": 1, "purchase": 1, "signup": 1}));
    let events = app.get(&format!("/v1/customers/{}/events?event=purchase", c["id"]), &token).await;
    let e = &events.body["data"][0];
    assert_eq!(e["message_id"], "sdk-track-1");
    assert_eq!(e["properties"]["amount"], 42.5);
    assert_eq!(e["context"]["library"]["name"], "analytics-python");
}

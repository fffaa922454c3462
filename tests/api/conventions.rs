//! DESIGN.md's API conventions: envelope, pagination, rate limits, idempotency, request logs,
//! bad input, unknown routes, operational endpoints.

use reqwest::Method;
use serde_json::json;

use crate::common::{spawn_with, Backend, TestApp};

crate::on_both_backends!(
    lists_carry_the_pagination_envelope,
    every_response_carries_rate_limit_headers,
    a_retry_with_the_same_idempotency_key_replays_the_first_response,
    an_idempotency_key_reused_with_another_body_is_refused,
    malformed_json_is_a_validation_error_that_writes_nothing,
    wrong_types_and_unknown_fields_name_the_field,
    over_long_strings_are_refused,
    a_wrong_content_type_is_refused,
    a_malformed_path_id_names_the_parameter,
    unknown_routes_and_methods_answer_with_the_envelope,
    recent_requests_can_be_reviewed_per_key,
    health_readiness_and_metrics_answer,
);

crate::on_both_backends_raw!(
    a_key_past_its_limit_gets_429_with_retry_after,
    a_keys_own_rate_limit_overrides_the_default,
    a_body_over_the_limit_is_413,
    the_test_clock_route_does_not_exist_unless_enabled,
    probes_are_never_rate_limited_but_anonymous_api_calls_are,
);

async fn lists_carry_the_pagination_envelope(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    for i in 0..12 {
        app.create_key(&token, json!({"name": format!("k{i}"), "type": "secret"})).await;
    }
    let r = app.get("/v1/api-keys?page=2&per_page=5", &token).await;
    let b = r.assert_ok(200);
    assert_eq!(b["success"], true);
    assert_eq!(b["pagination"], json!({"page": 2, "per_page": 5, "total": 12, "total_pages": 3}));
    assert_eq!(b["data"].as_array().unwrap().len(), 5);
    assert_eq!(b["data"][0]["name"], "k6", "newest first");
    let r = app.get("/v1/api-keys?per_page=500", &token).await;
    assert_eq!(r.body["pagination"]["per_page"], 100, "per_page is capped at 100");
    let r = app.get("/v1/api-keys?page=abc", &token).await;
    r.assert_error(400, "VALIDATION_ERROR");
    assert_eq!(r.body["field"], "page");
}

async fn every_response_carries_rate_limit_headers(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let responses = [
        app.get("/v1/auth/me", &token).await,
        app.get("/v1/api-keys/12345", &token).await,
        app.call(Method::GET, "/v1/api-keys", None, None).await,
        app.get("/v1/api-keys", "eck_notarealkeynotarealkeynotarealkeynotarea").await,
        app.call(Method::POST, "/v1/auth/login", None, Some(json!({"email": "x@y.z", "password": "nope"}))).await,
    ];
    for r in responses {
        for h in ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"] {
            assert!(r.header(h).is_some(), "{h} missing on a {} response", r.status);
        }
    }
}

async fn a_key_past_its_limit_gets_429_with_retry_after(backend: Backend) {
    let app = spawn_with(backend, |s| s.secret_key_rate_limit = 5).await;
    let token = app.register("you@company.com", "Acme").await;
    let (_, key) = app.create_key(&token, json!({"name": "k", "type": "secret"})).await;
    for i in 0..5 {
        let r = app.get("/v1/auth/me", &key).await;
        r.assert_ok(200);
        assert_eq!(r.header("x-ratelimit-limit"), Some("5"));
        assert_eq!(r.header("x-ratelimit-remaining"), Some((4 - i).to_string().as_str()));
    }
    let r = app.get("/v1/auth/me", &key).await;
    r.assert_error(429, "RATE_LIMITED");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    // The sliding-window estimate may need up to 1.2 windows to decay (ratelimit.rs unit tests
    // check that a retry at exactly Retry-After succeeds).
    assert!((1..=72).contains(&retry), "retry-after {retry}");
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    // Another credential has its own window.
    app.get("/v1/auth/me", &token).await.assert_ok(200);
}

async fn a_keys_own_rate_limit_overrides_the_default(backend: Backend) {
    let app = spawn_with(backend, |s| s.secret_key_rate_limit = 1000).await;
    let token = app.register("you@company.com", "Acme").await;
    let (_, key) = app.create_key(&token, json!({"name": "k", "type": "secret", "rate_limit": 2})).await;
    app.get("/v1/auth/me", &key).await.assert_ok(200);
    app.get("/v1/auth/me", &key).await.assert_ok(200);
    app.get("/v1/auth/me", &key).await.assert_error(429, "RATE_LIMITED");
}

async fn a_retry_with_the_same_idempotency_key_replays_the_first_response(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let body = json!({"name": "once", "type": "secret"});
    let headers = [("Idempotency-Key", "create-once-1")];
    let first = app.call_with(Method::POST, "/v1/api-keys", Some(&token), Some(body.clone()), &headers).await;
    let second = app.call_with(Method::POST, "/v1/api-keys", Some(&token), Some(body), &headers).await;
    first.assert_ok(201);
    second.assert_ok(201);
    assert_eq!(first.body, second.body, "the retry gets the first response, key included");
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(app.get("/v1/api-keys", &token).await.body["pagination"]["total"], 1, "written once");
    // Another key is another request.
    let other = app
        .call_with(
            Method::POST,
            "/v1/api-keys",
            Some(&token),
            Some(json!({"name": "once", "type": "secret"})),
            &[("Idempotency-Key", "create-once-2")],
        )
        .await;
    assert_ne!(other.body["data"]["id"], first.body["data"]["id"]);
}

async fn an_idempotency_key_reused_with_another_body_is_refused(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let headers = [("Idempotency-Key", "k-1")];
    app.call_with(Method::POST, "/v1/api-keys", Some(&token), Some(json!({"name": "a", "type": "secret"})), &headers)
        .await
        .assert_ok(201);
    let r = app
        .call_with(Method::POST, "/v1/api-keys", Some(&token), Some(json!({"name": "b", "type": "secret"})), &headers)
        .await;
    r.assert_error(400, "VALIDATION_ERROR");
    assert_eq!(r.body["field"], "Idempotency-Key");
    assert_eq!(app.get("/v1/api-keys", &token).await.body["pagination"]["total"], 1);
    // A stored 4xx is replayed too, and still writes nothing.
    let bad = json!({"name": "", "type": "secret"});
    let h2 = [("Idempotency-Key", "k-2")];
    let a = app.call_with(Method::POST, "/v1/api-keys", Some(&token), Some(bad.clone()), &h2).await;
    let b = app.call_with(Method::POST, "/v1/api-keys", Some(&token), Some(bad), &h2).await;
    a.assert_error(400, "VALIDATION_ERROR");
    assert_eq!(a.body, b.body);
}

async fn malformed_json_is_a_validation_error_that_writes_nothing(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let r = app
        .client
        .post(format!("{}/v1/api-keys", app.base))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{\"name\": \"k\", \"type\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "VALIDATION_ERROR");
    assert!(body["error"].as_str().unwrap().contains("malformed JSON"));
    assert_eq!(app.get("/v1/api-keys", &token).await.body["pagination"]["total"], 0);
}

async fn wrong_types_and_unknown_fields_name_the_field(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let r = app.post("/v1/api-keys", &token, json!({"name": 42, "type": "secret"})).await;
    r.assert_error(400, "VALIDATION_ERROR");
    assert_eq!(r.body["field"], "name");
    let r = app.post("/v1/api-keys", &token, json!({"name": "k", "type": "secret", "tenant_id": 2})).await;
    r.assert_error(400, "VALIDATION_ERROR");
    assert_eq!(r.body["field"], "tenant_id", "no mass assignment: unknown fields are refused");
    let r = app.post("/v1/api-keys", &token, json!({"type": "secret"})).await;
    assert_eq!(r.body["field"], "name");
    let r = app.post("/v1/api-keys", &token, json!({"name": "k", "type": "secret", "scopes": "leads:read"})).await;
    assert_eq!(r.body["field"], "scopes");
    assert_eq!(app.get("/v1/api-keys", &token).await.body["pagination"]["total"], 0);
}

async fn over_long_strings_are_refused(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let r = app.post("/v1/api-keys", &token, json!({"name": "x".repeat(101), "type": "secret"})).await;
    r.assert_error(400, "VALIDATION_ERROR");
    assert_eq!(r.body["field"], "name");
    let r = app
        .call(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(json!({"email": "a@b.co", "password": "long enough", "name": "n".repeat(201), "workspace": "W"})),
        )
        .await;
    assert_eq!(r.body["field"], "name");
    let r = app.put("/v1/workspace", &token, json!({"name": "w".repeat(201)})).await;
    assert_eq!(r.body["field"], "name");
    assert_eq!(app.get("/v1/workspace", &token).await.body["data"]["name"], "Acme");
}

async fn a_body_over_the_limit_is_413(backend: Backend) {
    let app = spawn_with(backend, |s| s.max_body_bytes = 2048).await;
    let token = app.register("you@company.com", "Acme").await;
    let r = app.post("/v1/api-keys", &token, json!({"name": "x".repeat(4000), "type": "secret"})).await;
    r.assert_error(413, "PAYLOAD_TOO_LARGE");
    // The client can read the 413 while it is still uploading: the server reads and discards a
    // refused body up to a bound before answering, instead of resetting the connection under it.
    for _ in 0..5 {
        let r = app
            .client
            .post(format!("{}/v1/api-keys", app.base))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(vec![b' '; 1024 * 1024])
            .send()
            .await
            .expect("the 413 arrives, not a reset connection");
        assert_eq!(r.status(), 413);
        assert_eq!(r.json::<serde_json::Value>().await.unwrap()["code"], "PAYLOAD_TOO_LARGE");
    }
    // A body that lies about its length (chunked, no Content-Length) is cut off while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(b"{\"name\": \"".to_vec()), Ok(vec![b'y'; 5000]), Ok(b"\", \"type\": \"secret\"}".to_vec())];
    let r = app
        .client
        .post(format!("{}/v1/api-keys", app.base))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(app.get("/v1/api-keys", &token).await.body["pagination"]["total"], 0);
}

async fn a_wrong_content_type_is_refused(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let r = app
        .client
        .post(format!("{}/v1/api-keys", app.base))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body(r#"{"name": "k", "type": "secret"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "VALIDATION_ERROR");
    assert_eq!(body["field"], "Content-Type");
}

async fn a_malformed_path_id_names_the_parameter(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let r = app.get("/v1/api-keys/abc", &token).await;
    r.assert_error(400, "VALIDATION_ERROR");
    assert_eq!(r.body["field"], "id");
}

async fn unknown_routes_and_methods_answer_with_the_envelope(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    app.get("/v1/no-such-thing", &token).await.assert_error(404, "NOT_FOUND");
    let r = app.call(Method::PATCH, "/v1/api-keys", Some(&token), None).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.body["success"], false);
}

async fn recent_requests_can_be_reviewed_per_key(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let (id, key) =
        app.create_key(&token, json!({"name": "integration", "type": "secret", "scopes": ["leads:read"]})).await;
    app.get("/v1/auth/me", &key).await.assert_ok(200);
    app.get("/v1/api-keys?search=ana@example.com", &key).await.assert_error(403, "FORBIDDEN");
    let mut logs = serde_json::Value::Null;
    for _ in 0..100 {
        logs = app.get(&format!("/v1/api-logs?api_key_id={id}"), &token).await.body;
        if logs["data"].as_array().is_some_and(|d| d.len() == 2) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(logs["pagination"]["total"], 2, "{logs}");
    let newest = &logs["data"][0];
    assert_eq!(newest["method"], "GET");
    assert_eq!(newest["path"], "/v1/api-keys", "paths only: no query strings (they can carry personal data): {logs}");
    assert_eq!(newest["status"], 403);
    assert!(newest["latency_ms"].as_f64().unwrap() >= 0.0);
    assert!(newest["created_at"].is_string());
    assert!(!logs.to_string().contains("ana@example.com"));
    let only_errors = app.get(&format!("/v1/api-logs?api_key_id={id}&status=4xx"), &token).await;
    assert_eq!(only_errors.body["pagination"]["total"], 1);
    app.get("/v1/api-logs?status=9xx", &token).await.assert_error(400, "VALIDATION_ERROR");
}

async fn health_readiness_and_metrics_answer(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    app.get("/v1/auth/me", &token).await.assert_ok(200);
    assert_eq!(app.call(Method::GET, "/healthz", None, None).await.assert_ok(200)["status"], "ok");
    let ready = app.call(Method::GET, "/readyz", None, None).await;
    let expected = match app.backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres | Backend::PostgresClickHouse => "postgres",
    };
    assert_eq!(ready.assert_ok(200)["entity_store"], expected);
    let text = app.client.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    assert!(
        text.contains("cairn_http_requests_total{method=\"GET\",route=\"/v1/auth/me\",status=\"200\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("cairn_http_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/auth/me\",le=\"+Inf\"} 1")
    );
    assert!(text.contains("cairn_store_query_duration_seconds_count"));
    assert!(text.contains("cairn_queue_depth{queue=\"api_logs\"}"));
    assert!(!text.contains("you@company.com"));
}

async fn the_test_clock_route_does_not_exist_unless_enabled(backend: Backend) {
    let app = spawn_with(backend, |s| s.test_clock = false).await;
    let token = app.register("you@company.com", "Acme").await;
    app.get("/v1/test/clock", &token).await.assert_error(404, "NOT_FOUND");
    app.post("/v1/test/clock", &token, json!({"advance_seconds": 5})).await.assert_error(404, "NOT_FOUND");
}

async fn probes_are_never_rate_limited_but_anonymous_api_calls_are(backend: Backend) {
    let app = spawn_with(backend, |s| s.anonymous_rate_limit = 5).await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        for _ in 0..10 {
            let r = app.call(Method::GET, path, None, None).await;
            assert_eq!(r.status, 200, "{path}");
            assert!(r.header("x-ratelimit-limit").is_none());
        }
    }
    let login = json!({"email": "x@example.com", "password": "wrong password"});
    for _ in 0..5 {
        let r = app.call(Method::POST, "/v1/auth/login", None, Some(login.clone())).await;
        r.assert_error(401, "AUTH_REQUIRED");
    }
    let r = app.call(Method::POST, "/v1/auth/login", None, Some(login)).await;
    r.assert_error(429, "RATE_LIMITED");
    assert!(r.header("retry-after").is_some());
}

//! API keys: kinds, scopes, shown once, stored hashed, revocation, per-key limits.

use reqwest::Method;
use serde_json::json;

use crate::common::TestApp;

crate::on_both_backends!(
    a_secret_key_is_shown_once_and_authenticates_by_either_header,
    keys_are_stored_only_as_a_prefix_and_a_sha256_hash,
    revoking_a_key_stops_it_on_the_next_request,
    public_keys_get_pk_prefixes_and_only_ingestion_scopes,
    public_keys_are_refused_everywhere_but_ingestion_and_widget,
    a_missing_scope_is_forbidden,
    unknown_scopes_are_named_in_the_error,
    a_key_cannot_grant_scopes_it_does_not_hold,
    members_cannot_manage_keys,
    last_use_is_recorded,
);

async fn a_secret_key_is_shown_once_and_authenticates_by_either_header(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let r = app.post("/v1/api-keys", &token, json!({"name": "Production server", "type": "secret"})).await;
    let d = &r.assert_ok(201)["data"];
    let key = d["key"].as_str().unwrap();
    assert!(key.starts_with("eck_") && key.len() == 44, "{key}");
    assert!(key.starts_with(d["prefix"].as_str().unwrap()));
    assert_eq!(d["type"], "secret");
    // Every scope by default.
    assert!(d["scopes"].as_array().unwrap().len() > 40);

    let via_header = app.call_with(Method::GET, "/v1/auth/me", None, None, &[("X-API-Key", key)]).await;
    assert_eq!(via_header.assert_ok(200)["data"]["credential"]["type"], "api_key");
    app.get("/v1/auth/me", key).await.assert_ok(200);

    // Never shown again.
    let list = app.get("/v1/api-keys", &token).await;
    let listed = &list.assert_ok(200)["data"][0];
    assert_eq!(listed["prefix"], d["prefix"]);
    assert!(listed.get("key").is_none());
    let one = app.get(&format!("/v1/api-keys/{}", d["id"]), &token).await;
    assert!(one.assert_ok(200)["data"].get("key").is_none());
    assert!(!list.body.to_string().contains(key));
}

async fn keys_are_stored_only_as_a_prefix_and_a_sha256_hash(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let (id, key) = app.create_key(&token, json!({"name": "k", "type": "secret"})).await;
    let mut c = app.store.read().await.unwrap();
    let stored = c.api_key(cairn_domain::TenantId(1), cairn_domain::ApiKeyId(id)).await.unwrap();
    assert_eq!(stored.key_hash, cairn_domain::credential::hash_secret(&key));
    assert_eq!(stored.key_hash.len(), 64);
    assert!(key.starts_with(&stored.prefix) && stored.prefix.len() < key.len());
}

async fn revoking_a_key_stops_it_on_the_next_request(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let (id, key) = app.create_key(&token, json!({"name": "k", "type": "secret"})).await;
    app.get("/v1/auth/me", &key).await.assert_ok(200);
    let r = app.delete(&format!("/v1/api-keys/{id}"), &token).await;
    assert_eq!(r.assert_ok(200)["data"]["status"], "revoked");
    app.get("/v1/auth/me", &key).await.assert_error(401, "AUTH_REQUIRED");
    // Revoked keys are hidden unless asked for.
    let active = app.get("/v1/api-keys", &token).await;
    assert_eq!(active.body["pagination"]["total"], 0);
    let all = app.get("/v1/api-keys?include_revoked=true", &token).await;
    assert_eq!(all.body["pagination"]["total"], 1);
    app.delete("/v1/api-keys/999999", &token).await.assert_error(404, "NOT_FOUND");
}

async fn public_keys_get_pk_prefixes_and_only_ingestion_scopes(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let live = app.post("/v1/api-keys", &token, json!({"name": "site", "type": "public"})).await;
    let d = &live.assert_ok(201)["data"];
    assert!(d["key"].as_str().unwrap().starts_with("pk_live_"));
    assert_eq!(d["environment"], "live");
    assert_eq!(d["scopes"], json!(["events:write", "widget:access"]));
    let test =
        app.post("/v1/api-keys", &token, json!({"name": "staging", "type": "public", "environment": "test"})).await;
    assert!(test.assert_ok(201)["data"]["key"].as_str().unwrap().starts_with("pk_test_"));
    let bad = app
        .post("/v1/api-keys", &token, json!({"name": "x", "type": "public", "scopes": ["events:write", "leads:read"]}))
        .await;
    bad.assert_error(400, "VALIDATION_ERROR");
    assert_eq!(bad.body["field"], "scopes[1]");
}

async fn public_keys_are_refused_everywhere_but_ingestion_and_widget(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let (_, pk) = app.create_key(&token, json!({"name": "site", "type": "public"})).await;
    for path in ["/v1/auth/me", "/v1/api-keys", "/v1/users", "/v1/workspace", "/v1/api-logs", "/v1/invitations"] {
        app.get(path, &pk).await.assert_error(403, "FORBIDDEN");
    }
    app.post("/v1/api-keys", &pk, json!({"name": "x", "type": "secret"})).await.assert_error(403, "FORBIDDEN");
}

async fn a_missing_scope_is_forbidden(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let (_, key) = app.create_key(&token, json!({"name": "reader", "type": "secret", "scopes": ["leads:read"]})).await;
    let r = app.get("/v1/api-keys", &key).await;
    r.assert_error(403, "FORBIDDEN");
    assert!(r.body["error"].as_str().unwrap().contains("keys:manage"));
}

async fn unknown_scopes_are_named_in_the_error(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let r = app
        .post("/v1/api-keys", &token, json!({"name": "k", "type": "secret", "scopes": ["leads:read", "leads:fly"]}))
        .await;
    r.assert_error(400, "VALIDATION_ERROR");
    assert_eq!(r.body["field"], "scopes[1]");
    let r = app.post("/v1/api-keys", &token, json!({"name": "k", "type": "root"})).await;
    assert_eq!(r.body["field"], "type");
    let r = app.post("/v1/api-keys", &token, json!({"name": "k", "type": "secret", "rate_limit": 0})).await;
    assert_eq!(r.body["field"], "rate_limit");
    assert_eq!(app.get("/v1/api-keys", &token).await.body["pagination"]["total"], 0, "nothing was written");
}

async fn a_key_cannot_grant_scopes_it_does_not_hold(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let (_, manager) =
        app.create_key(&token, json!({"name": "m", "type": "secret", "scopes": ["keys:manage", "leads:read"]})).await;
    let r =
        app.post("/v1/api-keys", &manager, json!({"name": "wider", "type": "secret", "scopes": ["leads:write"]})).await;
    r.assert_error(403, "FORBIDDEN");
    // Without explicit scopes, a key made by a key inherits at most its creator's.
    let r = app.post("/v1/api-keys", &manager, json!({"name": "same", "type": "secret"})).await;
    assert_eq!(r.assert_ok(201)["data"]["scopes"], json!(["leads:read", "keys:manage"]));
}

async fn members_cannot_manage_keys(app: TestApp) {
    let owner = app.register("owner@company.com", "Acme").await;
    let inv = app.post("/v1/invitations", &owner, json!({"email": "member@company.com", "role": "member"})).await;
    let token = inv.assert_ok(201)["data"]["token"].as_str().unwrap().to_string();
    let joined = app
        .call(
            Method::POST,
            "/v1/auth/accept-invitation",
            None,
            Some(json!({"token": token, "name": "Mia", "password": "member password"})),
        )
        .await;
    let member = joined.assert_ok(201)["token"].as_str().unwrap().to_string();
    app.post("/v1/api-keys", &member, json!({"name": "k", "type": "secret"})).await.assert_error(403, "FORBIDDEN");
    app.get("/v1/api-keys", &member).await.assert_error(403, "FORBIDDEN");
}

async fn last_use_is_recorded(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let (id, key) = app.create_key(&token, json!({"name": "k", "type": "secret"})).await;
    app.get("/v1/auth/me", &key).await.assert_ok(200);
    let mut seen = serde_json::Value::Null;
    for _ in 0..50 {
        seen = app.get(&format!("/v1/api-keys/{id}"), &token).await.body["data"]["last_used_at"].clone();
        if !seen.is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(seen.is_string(), "last_used_at was not recorded");
}

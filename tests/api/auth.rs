//! Registration, login, sessions, logout, the test clock.

use reqwest::Method;
use serde_json::json;

use crate::common::TestApp;

crate::on_both_backends!(
    register_answers_like_login_with_token_user_and_tenant,
    login_returns_exactly_seed_003s_token_user_and_tenant,
    a_wrong_password_and_an_unknown_email_get_the_same_401,
    registering_an_email_twice_is_a_duplicate,
    me_describes_the_session_and_its_workspace,
    logout_ends_the_session_at_once,
    sessions_expire_when_the_clock_passes_their_lifetime,
    the_test_clock_can_be_set_and_advanced_by_an_owner,
    requests_without_credentials_get_auth_required,
    passwords_are_stored_as_argon2id_hashes,
);

async fn register_answers_like_login_with_token_user_and_tenant(app: TestApp) {
    let r = app
        .call(Method::POST, "/v1/auth/register", None,
              Some(json!({"email": "Ana@Example.com", "password": "correct horse battery", "name": "Ana Kovač", "workspace": "Acme d.o.o."})))
        .await;
    let body = r.assert_ok(201);
    assert!(body["token"].as_str().unwrap().starts_with("cst_"));
    assert_eq!(body["user"]["email"], "ana@example.com", "emails are normalised");
    assert_eq!(body["user"]["name"], "Ana Kovač");
    assert_eq!(body["user"]["role"], "owner");
    assert_eq!(body["tenant"]["name"], "Acme d.o.o.");
    assert_eq!(body["tenant"]["slug"], "acme-d-o-o");
    // The token works.
    let me = app.get("/v1/auth/me", body["token"].as_str().unwrap()).await;
    assert_eq!(me.assert_ok(200)["data"]["tenant"]["id"], body["tenant"]["id"]);
}

async fn login_returns_exactly_seed_003s_token_user_and_tenant(app: TestApp) {
    app.register("you@company.com", "Acme").await;
    let r = app
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({"email": "you@company.com", "password": "correct horse battery"})),
        )
        .await;
    let body = r.assert_ok(200);
    let mut keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["expires_at", "tenant", "token", "user"], "seed 003: {{token, user, tenant}} (plus expiry)");
    assert_eq!(body["user"]["email"], "you@company.com");
    assert_eq!(body["tenant"]["name"], "Acme");
    assert!(body["user"].get("password_hash").is_none());
}

async fn a_wrong_password_and_an_unknown_email_get_the_same_401(app: TestApp) {
    app.register("you@company.com", "Acme").await;
    let wrong = app
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({"email": "you@company.com", "password": "not the password"})),
        )
        .await;
    let unknown = app
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({"email": "nobody@company.com", "password": "not the password"})),
        )
        .await;
    wrong.assert_error(401, "AUTH_REQUIRED");
    unknown.assert_error(401, "AUTH_REQUIRED");
    assert_eq!(wrong.body, unknown.body, "the answer must not reveal which emails exist");
}

async fn registering_an_email_twice_is_a_duplicate(app: TestApp) {
    app.register("you@company.com", "Acme").await;
    let r = app
        .call(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(
                json!({"email": "YOU@company.com", "password": "another password", "name": "X", "workspace": "Other"}),
            ),
        )
        .await;
    r.assert_error(409, "DUPLICATE");
    assert_eq!(r.body["field"], "email");
}

async fn me_describes_the_session_and_its_workspace(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let me = app.get("/v1/auth/me", &token).await;
    let d = &me.assert_ok(200)["data"];
    assert_eq!(d["credential"]["type"], "session");
    assert_eq!(d["user"]["email"], "you@company.com");
    assert_eq!(d["user"]["role"], "owner");
    assert_eq!(d["workspaces"].as_array().unwrap().len(), 1);
    assert!(d["scopes"].as_array().unwrap().iter().any(|s| s == "keys:manage"));
}

async fn logout_ends_the_session_at_once(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    app.post("/v1/auth/logout", &token, json!({})).await.assert_ok(200);
    app.get("/v1/auth/me", &token).await.assert_error(401, "AUTH_REQUIRED");
}

async fn sessions_expire_when_the_clock_passes_their_lifetime(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    app.get("/v1/auth/me", &token).await.assert_ok(200);
    app.clock.advance(chrono::Duration::days(31));
    app.get("/v1/auth/me", &token).await.assert_error(401, "AUTH_REQUIRED");
}

async fn the_test_clock_can_be_set_and_advanced_by_an_owner(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let r = app.post("/v1/test/clock", &token, json!({"set": "1997-09-30T00:00:00Z"})).await;
    assert_eq!(r.assert_ok(200)["data"]["now"], "1997-09-30T00:00:00Z");
    let r = app.post("/v1/test/clock", &token, json!({"advance_seconds": 86400})).await;
    assert_eq!(r.assert_ok(200)["data"]["now"], "1997-10-01T00:00:00Z");
    assert_eq!(app.get("/v1/test/clock", &token).await.body["data"]["now"], "1997-10-01T00:00:00Z");
    app.post("/v1/test/clock", &token, json!({"set": "yesterday"})).await.assert_error(400, "VALIDATION_ERROR");
    app.post("/v1/test/clock", &token, json!({})).await.assert_error(400, "VALIDATION_ERROR");
    // Keys are not owners.
    let (_, key) = app.create_key(&token, json!({"name": "k", "type": "secret"})).await;
    app.get("/v1/test/clock", &key).await.assert_error(403, "FORBIDDEN");
}

async fn requests_without_credentials_get_auth_required(app: TestApp) {
    let r = app.call(Method::GET, "/v1/api-keys", None, None).await;
    r.assert_error(401, "AUTH_REQUIRED");
    let r = app.get("/v1/api-keys", "eck_notarealkeynotarealkeynotarealkeynotarea").await;
    r.assert_error(401, "AUTH_REQUIRED");
    let r = app.get("/v1/api-keys", "garbage").await;
    r.assert_error(401, "AUTH_REQUIRED");
}

async fn passwords_are_stored_as_argon2id_hashes(app: TestApp) {
    app.register("you@company.com", "Acme").await;
    let row = app.store.read().await.unwrap().user_by_email("you@company.com").await.unwrap().unwrap();
    assert!(row.password_hash.starts_with("$argon2id$"), "{}", row.password_hash);
    assert!(!row.password_hash.contains("correct horse"));
}

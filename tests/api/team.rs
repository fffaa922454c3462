//! Team and invitations (seed 000: invite your team), roles and their limits.

use reqwest::Method;
use serde_json::json;

use crate::common::TestApp;

crate::on_both_backends!(
    an_invited_person_joins_with_the_role_given_and_signs_in,
    an_invitation_works_once,
    revoked_and_expired_invitations_are_refused,
    only_owners_grant_the_owner_role,
    the_last_owner_cannot_leave_or_be_demoted,
    removing_a_member_ends_their_session_at_once,
    an_existing_user_joins_a_second_workspace_with_their_password,
    members_see_the_team_but_cannot_manage_it,
);

async fn invite(app: &TestApp, owner: &str, email: &str, role: &str) -> (i64, String) {
    let r = app.post("/v1/invitations", owner, json!({"email": email, "role": role})).await;
    let d = &r.assert_ok(201)["data"];
    (d["id"].as_i64().unwrap(), d["token"].as_str().unwrap().to_string())
}

async fn accept(app: &TestApp, token: &str, password: &str) -> crate::common::Resp {
    app.call(
        Method::POST,
        "/v1/auth/accept-invitation",
        None,
        Some(json!({"token": token, "name": "New Person", "password": password})),
    )
    .await
}

async fn an_invited_person_joins_with_the_role_given_and_signs_in(app: TestApp) {
    let owner = app.register("owner@company.com", "Acme").await;
    let (_, token) = invite(&app, &owner, "Admin@Company.com", "admin").await;
    assert!(token.starts_with("inv_"));
    let joined = accept(&app, &token, "admin password").await;
    let b = joined.assert_ok(201);
    assert_eq!(b["user"]["email"], "admin@company.com");
    assert_eq!(b["user"]["role"], "admin");
    assert_eq!(b["tenant"]["name"], "Acme");
    let login = app
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({"email": "admin@company.com", "password": "admin password"})),
        )
        .await;
    assert_eq!(login.assert_ok(200)["user"]["role"], "admin");
    let team = app.get("/v1/users", &owner).await;
    assert_eq!(team.assert_ok(200)["pagination"]["total"], 2);
    let list = app.get("/v1/invitations", &owner).await;
    assert_eq!(list.body["data"][0]["status"], "accepted");
    assert!(!list.body.to_string().contains(&token), "tokens are shown once");
}

async fn an_invitation_works_once(app: TestApp) {
    let owner = app.register("owner@company.com", "Acme").await;
    let (_, token) = invite(&app, &owner, "m@company.com", "member").await;
    accept(&app, &token, "member password").await.assert_ok(201);
    let again = accept(&app, &token, "member password").await;
    again.assert_error(400, "VALIDATION_ERROR");
    assert_eq!(again.body["field"], "token");
}

async fn revoked_and_expired_invitations_are_refused(app: TestApp) {
    let owner = app.register("owner@company.com", "Acme").await;
    let (id, token) = invite(&app, &owner, "m@company.com", "member").await;
    let r = app.delete(&format!("/v1/invitations/{id}"), &owner).await;
    assert_eq!(r.assert_ok(200)["data"]["status"], "revoked");
    accept(&app, &token, "member password").await.assert_error(400, "VALIDATION_ERROR");
    let (_, token2) = invite(&app, &owner, "n@company.com", "member").await;
    app.clock.advance(chrono::Duration::days(8));
    accept(&app, &token2, "member password").await.assert_error(400, "VALIDATION_ERROR");
}

async fn only_owners_grant_the_owner_role(app: TestApp) {
    let owner = app.register("owner@company.com", "Acme").await;
    let (_, token) = invite(&app, &owner, "admin@company.com", "admin").await;
    let admin = accept(&app, &token, "admin password").await.body["token"].as_str().unwrap().to_string();
    app.post("/v1/invitations", &admin, json!({"email": "x@company.com", "role": "owner"}))
        .await
        .assert_error(403, "FORBIDDEN");
    let r = app.post("/v1/invitations", &admin, json!({"email": "x@company.com", "role": "member"})).await;
    r.assert_ok(201);
    // The admin cannot demote the owner (user 1) either.
    app.put("/v1/users/1", &admin, json!({"role": "member"})).await.assert_error(403, "FORBIDDEN");
    app.post("/v1/invitations", &owner, json!({"email": "y@company.com", "role": "emperor"}))
        .await
        .assert_error(400, "VALIDATION_ERROR");
}

async fn the_last_owner_cannot_leave_or_be_demoted(app: TestApp) {
    let owner = app.register("owner@company.com", "Acme").await;
    let me = app.get("/v1/auth/me", &owner).await.body["data"]["user"]["id"].as_i64().unwrap();
    let r = app.put(&format!("/v1/users/{me}"), &owner, json!({"role": "admin"})).await;
    r.assert_error(400, "VALIDATION_ERROR");
    assert_eq!(r.body["field"], "role");
    app.delete(&format!("/v1/users/{me}"), &owner).await.assert_error(400, "VALIDATION_ERROR");
    // With a second owner, the first may step down.
    let (_, token) = invite(&app, &owner, "second@company.com", "owner").await;
    accept(&app, &token, "second password").await.assert_ok(201);
    let r = app.put(&format!("/v1/users/{me}"), &owner, json!({"role": "admin"})).await;
    assert_eq!(r.assert_ok(200)["data"]["role"], "admin");
}

async fn removing_a_member_ends_their_session_at_once(app: TestApp) {
    let owner = app.register("owner@company.com", "Acme").await;
    let (_, token) = invite(&app, &owner, "m@company.com", "member").await;
    let joined = accept(&app, &token, "member password").await;
    let member = joined.body["token"].as_str().unwrap().to_string();
    let id = joined.body["user"]["id"].as_i64().unwrap();
    app.get("/v1/auth/me", &member).await.assert_ok(200);
    app.delete(&format!("/v1/users/{id}"), &owner).await.assert_ok(200);
    app.get("/v1/auth/me", &member).await.assert_error(401, "AUTH_REQUIRED");
    app.get(&format!("/v1/users/{id}"), &owner).await.assert_error(404, "NOT_FOUND");
}

async fn an_existing_user_joins_a_second_workspace_with_their_password(app: TestApp) {
    let a = app.register("a@company.com", "Alpha").await;
    let _b = app.register("b@company.com", "Beta").await;
    let (_, token) = invite(&app, &a, "b@company.com", "member").await;
    accept(&app, &token, "wrong password").await.assert_error(401, "AUTH_REQUIRED");
    let r = accept(&app, &token, "correct horse battery").await;
    assert_eq!(r.assert_ok(201)["tenant"]["name"], "Alpha");
    // Login picks a workspace by slug; the default is the first joined.
    let login = |ws: Option<&str>| {
        let mut body = json!({"email": "b@company.com", "password": "correct horse battery"});
        if let Some(w) = ws {
            body["workspace"] = json!(w);
        }
        app.call(Method::POST, "/v1/auth/login", None, Some(body))
    };
    assert_eq!(login(None).await.body["tenant"]["name"], "Beta");
    assert_eq!(login(Some("alpha")).await.body["tenant"]["name"], "Alpha");
    login(Some("gamma")).await.assert_error(403, "FORBIDDEN");
    let me = app.get("/v1/auth/me", login(Some("alpha")).await.body["token"].as_str().unwrap()).await;
    assert_eq!(me.body["data"]["workspaces"].as_array().unwrap().len(), 2);
}

async fn members_see_the_team_but_cannot_manage_it(app: TestApp) {
    let owner = app.register("owner@company.com", "Acme").await;
    let (_, token) = invite(&app, &owner, "m@company.com", "member").await;
    let member = accept(&app, &token, "member password").await.body["token"].as_str().unwrap().to_string();
    app.get("/v1/users", &member).await.assert_ok(200);
    app.post("/v1/invitations", &member, json!({"email": "x@company.com"})).await.assert_error(403, "FORBIDDEN");
    app.put("/v1/users/1", &member, json!({"role": "member"})).await.assert_error(403, "FORBIDDEN");
    app.put("/v1/workspace", &member, json!({"name": "Mine"})).await.assert_error(403, "FORBIDDEN");
    app.get("/v1/api-logs", &member).await.assert_error(403, "FORBIDDEN");
}

//! Tenant isolation: a credential of workspace B can neither read, list, change nor delete
//! workspace A's objects — every such attempt is a 404, indistinguishable from a missing
//! object — nor widen its own scopes. The table below must name every route with an `{id}`:
//! a route missing from it fails `every_object_route_is_covered_by_the_isolation_table`.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::TestApp;

crate::on_both_backends!(
    another_workspaces_objects_are_404_to_every_credential,
    lists_never_show_another_workspaces_objects,
    every_object_route_is_covered_by_the_isolation_table,
);

/// Workspace A's objects, by the kind the routes' `{id}` names.
struct Fixture {
    a_owner: String,
    a_key: String,
    ids: Vec<(&'static str, i64)>,
    b_session: String,
    b_key: String,
}

/// Every route with an `{id}`, the kind of object it addresses, and a body for writes.
fn object_routes() -> Vec<(Method, &'static str, &'static str, Option<Value>)> {
    vec![
        (Method::GET, "/v1/api-keys/{id}", "api_key", None),
        (Method::DELETE, "/v1/api-keys/{id}", "api_key", None),
        (Method::GET, "/v1/users/{id}", "user", None),
        (Method::PUT, "/v1/users/{id}", "user", Some(json!({"role": "admin"}))),
        (Method::DELETE, "/v1/users/{id}", "user", None),
        (Method::GET, "/v1/invitations/{id}", "invitation", None),
        (Method::DELETE, "/v1/invitations/{id}", "invitation", None),
        (Method::GET, "/v1/customers/{id}", "customer", None),
        (Method::PUT, "/v1/customers/{id}", "customer", Some(json!({"name": "Changed"}))),
        (Method::DELETE, "/v1/customers/{id}", "customer", None),
        (Method::GET, "/v1/customers/{id}/events", "customer", None),
        (Method::GET, "/v1/customers/{id}/scores/explain", "customer", None),
        (Method::GET, "/v1/scoring/jobs/{id}", "scoring_job", None),
        (Method::GET, "/v1/customers/{id}/segments", "customer", None),
        (Method::GET, "/v1/customers/{id}/messages", "customer", None),
        (Method::GET, "/v1/segments/{id}", "segment", None),
        (Method::PUT, "/v1/segments/{id}", "segment", Some(json!({"name": "Changed"}))),
        (Method::GET, "/v1/segments/{id}/customers", "segment", None),
        (Method::GET, "/v1/segments/{id}/explain?customer_id=1", "segment", None),
        (Method::POST, "/v1/segments/{id}/members", "segment", Some(json!({"customer_ids": [1]}))),
        (Method::DELETE, "/v1/segments/{id}/members", "segment", Some(json!({"customer_ids": [1]}))),
        (Method::POST, "/v1/segments/{id}/members/import", "segment", None),
        (Method::DELETE, "/v1/segments/{id}", "segment", None),
        (Method::GET, "/v1/campaigns/{id}", "campaign", None),
        (Method::PUT, "/v1/campaigns/{id}", "campaign", Some(json!({"name": "Changed"}))),
        (Method::GET, "/v1/campaigns/{id}/stats", "campaign", None),
        (Method::GET, "/v1/campaigns/{id}/recipients", "campaign", None),
        (Method::GET, "/v1/campaigns/{id}/audience.csv", "campaign", None),
        (Method::POST, "/v1/campaigns/{id}/preview", "campaign", Some(json!({"customer_id": 1}))),
        (Method::POST, "/v1/campaigns/{id}/test", "campaign", Some(json!({"to": ["qa@beta.com"]}))),
        (Method::POST, "/v1/campaigns/{id}/schedule", "campaign", Some(json!({"send_at": "2999-01-01T00:00:00Z"}))),
        (Method::POST, "/v1/campaigns/{id}/send", "campaign", None),
        (Method::POST, "/v1/campaigns/{id}/cancel", "campaign", None),
        (Method::DELETE, "/v1/campaigns/{id}", "campaign", None),
        (Method::GET, "/v1/automations/{id}", "automation", None),
        (Method::PUT, "/v1/automations/{id}", "automation", Some(json!({"name": "Changed"}))),
        (Method::GET, "/v1/automations/{id}/design", "automation", None),
        (Method::POST, "/v1/automations/{id}/design", "automation", Some(json!({"nodes": [], "edges": []}))),
        (Method::POST, "/v1/automations/{id}/activate", "automation", None),
        (Method::POST, "/v1/automations/{id}/deactivate", "automation", None),
        (Method::POST, "/v1/automations/{id}/enroll", "automation", Some(json!({"customer_ids": [1]}))),
        (Method::GET, "/v1/automations/{id}/runs", "automation", None),
        (Method::GET, "/v1/automations/{id}/nodes", "automation", None),
        (Method::POST, "/v1/automations/{id}/migrate", "automation", Some(json!({"from_version": 1, "mapping": {}}))),
        (Method::POST, "/v1/automations/{id}/cancel-runs", "automation", Some(json!({}))),
        (Method::DELETE, "/v1/automations/{id}", "automation", None),
        (Method::GET, "/v1/automations/runs/{id}", "run", None),
        (Method::GET, "/v1/customers/{id}/automation-runs", "customer", None),
        (Method::GET, "/v1/webhooks/{id}", "webhook", None),
        (Method::PUT, "/v1/webhooks/{id}", "webhook", Some(json!({"status": "disabled"}))),
        (Method::POST, "/v1/webhooks/{id}/ping", "webhook", None),
        (Method::POST, "/v1/webhooks/{id}/rotate-secret", "webhook", None),
        (Method::GET, "/v1/webhooks/{id}/deliveries", "webhook", None),
        (Method::DELETE, "/v1/webhooks/{id}", "webhook", None),
        (Method::POST, "/v1/webhooks/deliveries/{id}/redeliver", "delivery", None),
        (Method::GET, "/v1/leads/{id}", "lead", None),
        (Method::PUT, "/v1/leads/{id}", "lead", Some(json!({"first_name": "Changed"}))),
        (Method::POST, "/v1/leads/{id}/convert", "lead", Some(json!({}))),
        (Method::GET, "/v1/leads/{id}/activities", "lead", None),
        (Method::POST, "/v1/leads/{id}/activities", "lead", Some(json!({"type": "call", "subject": "x"}))),
        (Method::DELETE, "/v1/leads/{id}", "lead", None),
        (Method::GET, "/v1/opportunities/{id}", "opportunity", None),
        (Method::PUT, "/v1/opportunities/{id}", "opportunity", Some(json!({"name": "Changed"}))),
        (Method::POST, "/v1/opportunities/{id}/advance-stage", "opportunity", Some(json!({}))),
        (Method::POST, "/v1/opportunities/{id}/won", "opportunity", Some(json!({}))),
        (Method::POST, "/v1/opportunities/{id}/lost", "opportunity", Some(json!({}))),
        (Method::DELETE, "/v1/opportunities/{id}", "opportunity", None),
        (Method::GET, "/v1/deals/{id}", "opportunity", None),
        (Method::PUT, "/v1/deals/{id}", "opportunity", Some(json!({"title": "Changed"}))),
        (Method::POST, "/v1/deals/{id}/advance-stage", "opportunity", Some(json!({}))),
        (Method::DELETE, "/v1/deals/{id}", "opportunity", None),
        (Method::GET, "/v1/pipelines/{id}", "pipeline", None),
        (Method::PUT, "/v1/pipelines/{id}", "pipeline", Some(json!({"name": "Changed"}))),
        (Method::GET, "/v1/pipelines/{id}/board", "pipeline", None),
        (Method::DELETE, "/v1/pipelines/{id}", "pipeline", None),
        (Method::GET, "/v1/people/{id}", "customer", None),
        (Method::PUT, "/v1/people/{id}", "customer", Some(json!({"name": "Changed"}))),
        (Method::DELETE, "/v1/people/{id}", "customer", None),
        (Method::GET, "/v1/prospects/{id}", "prospect", None),
        (Method::PUT, "/v1/prospects/{id}", "prospect", Some(json!({"name": "Changed"}))),
        (Method::POST, "/v1/prospects/{id}/convert", "prospect", None),
        (Method::DELETE, "/v1/prospects/{id}", "prospect", None),
        (Method::GET, "/v1/activities/{id}", "activity", None),
        (Method::PUT, "/v1/activities/{id}", "activity", Some(json!({"subject": "Changed"}))),
        (Method::DELETE, "/v1/activities/{id}", "activity", None),
        (Method::GET, "/v1/notes/{id}", "note", None),
        (Method::PUT, "/v1/notes/{id}", "note", Some(json!({"content": "Changed"}))),
        (Method::DELETE, "/v1/notes/{id}", "note", None),
        (Method::GET, "/v1/files/{id}", "file", None),
        (Method::GET, "/v1/files/{id}/content", "file", None),
        (Method::DELETE, "/v1/files/{id}", "file", None),
        (Method::GET, "/v1/leads/{id}/timeline", "lead", None),
        (Method::GET, "/analytics/leads/{id}", "lead", None),
        (Method::GET, "/v1/forms/{id}/submissions", "form", None),
        (Method::PUT, "/v1/forms/{id}/submissions/{submission_id}", "form", Some(json!({"crm_lead_id": "changed"}))),
        (Method::PUT, "/v1/custom-fields/{id}", "custom_field", Some(json!({"label": "Changed"}))),
        (Method::DELETE, "/v1/custom-fields/{id}", "custom_field", None),
        (Method::GET, "/v1/forms/{id}", "form", None),
        (Method::PUT, "/v1/forms/{id}", "form", Some(json!({"name": "Changed"}))),
        (Method::DELETE, "/v1/forms/{id}", "form", None),
        (Method::GET, "/v1/imports/{id}", "import", None),
    ]
}

async fn fixture(app: &TestApp) -> Fixture {
    let a_owner = app.register("owner@alpha.com", "Alpha").await;
    let (a_key_id, a_key) = app.create_key(&a_owner, json!({"name": "a", "type": "secret"})).await;
    let inv = app.post("/v1/invitations", &a_owner, json!({"email": "m@alpha.com", "role": "member"})).await;
    let inv_token = inv.body["data"]["token"].as_str().unwrap().to_string();
    let joined = app
        .call(
            Method::POST,
            "/v1/auth/accept-invitation",
            None,
            Some(json!({"token": inv_token, "name": "M", "password": "member password"})),
        )
        .await;
    let member_id = joined.assert_ok(201)["user"]["id"].as_i64().unwrap();
    let pending = app.post("/v1/invitations", &a_owner, json!({"email": "p@alpha.com", "role": "member"})).await;
    let pending_id = pending.body["data"]["id"].as_i64().unwrap();

    let customer =
        app.post("/v1/customers", &a_owner, json!({"email": "client@alpha.com", "name": "Alpha Client"})).await;
    let customer_id = customer.assert_ok(201)["data"]["id"].as_i64().unwrap();
    let hook = app.post("/v1/webhooks", &a_owner, json!({"url": "http://127.0.0.1:9/alpha", "events": ["*"]})).await;
    let webhook_id = hook.assert_ok(201)["data"]["id"].as_i64().unwrap();
    let ping = app.post(&format!("/v1/webhooks/{webhook_id}/ping"), &a_owner, json!({})).await;
    let delivery_id = ping.assert_ok(202)["data"]["delivery_id"].as_i64().unwrap();

    let segment = app.post("/v1/segments", &a_owner, json!({"name": "Alpha list", "type": "static"})).await;
    let segment_id = segment.assert_ok(201)["data"]["id"].as_i64().unwrap();
    let campaign = app
        .post(
            "/v1/campaigns",
            &a_owner,
            json!({"name": "Alpha news", "type": "email", "segment_id": segment_id,
            "subject": "Hi", "body": "<p>Hi</p>", "from_email": "news@alpha.com"}),
        )
        .await;
    let campaign_id = campaign.assert_ok(201)["data"]["id"].as_i64().unwrap();
    let automation = app
        .post(
            "/v1/automations",
            &a_owner,
            json!({"name": "Alpha flow", "trigger_type": "manual", "design": {
                "nodes": [{"id": "t", "type": "trigger"}, {"id": "d", "type": "delay", "data": {"duration": "1d"}}],
                "edges": [{"id": "e", "source": "t", "target": "d"}]}}),
        )
        .await;
    let automation_id = automation.assert_ok(201)["data"]["id"].as_i64().unwrap();
    app.post(&format!("/v1/automations/{automation_id}/activate"), &a_owner, json!({})).await.assert_ok(200);
    let enrolled = app
        .post(&format!("/v1/automations/{automation_id}/enroll"), &a_owner, json!({"customer_ids": [customer_id]}))
        .await;
    let run_id = enrolled.assert_ok(202)["data"][0]["run_id"].as_i64().unwrap();
    let recompute = app.post("/v1/scoring/recompute", &a_owner, json!({})).await;
    let scoring_job_id = recompute.assert_ok(202)["data"]["id"].as_i64().unwrap();

    let crm = crm_fixture(app, &a_owner, customer_id).await;

    let b_session = app.register("owner@beta.com", "Beta").await;
    let (_, b_key) = app.create_key(&b_session, json!({"name": "b", "type": "secret"})).await;
    let mut ids = vec![
        ("api_key", a_key_id),
        ("user", member_id),
        ("invitation", pending_id),
        ("customer", customer_id),
        ("webhook", webhook_id),
        ("delivery", delivery_id),
        ("scoring_job", scoring_job_id),
        ("segment", segment_id),
        ("campaign", campaign_id),
        ("automation", automation_id),
        ("run", run_id),
    ];
    ids.extend(crm);
    Fixture { a_owner, a_key, ids, b_session, b_key }
}

/// Workspace A's CRM objects.
async fn crm_fixture(app: &TestApp, a_owner: &str, customer_id: i64) -> Vec<(&'static str, i64)> {
    let id = |r: crate::common::Resp, status: u16| r.assert_ok(status)["data"]["id"].as_i64().unwrap();
    let lead = id(app.post("/v1/leads", a_owner, json!({"first_name": "Alpha", "email": "lead@alpha.com"})).await, 201);
    let prospect = id(app.post("/v1/prospects", a_owner, json!({"name": "Alpha Corp"})).await, 201);
    let opportunity =
        id(app.post("/v1/opportunities", a_owner, json!({"name": "Alpha deal", "prospect_id": prospect})).await, 201);
    let pipeline =
        id(app.post("/v1/pipelines", a_owner, json!({"name": "Alpha pipe", "stages": [{"name": "One"}]})).await, 201);
    let activity = id(
        app.post(
            "/v1/activities",
            a_owner,
            json!({"type": "call", "subject": "Alpha call", "entity_type": "lead", "entity_id": lead}),
        )
        .await,
        201,
    );
    let note = id(
        app.post(
            "/v1/notes",
            a_owner,
            json!({"entity_type": "contact", "entity_id": customer_id, "content": "Alpha note"}),
        )
        .await,
        201,
    );
    let form = reqwest::multipart::Form::new()
        .text("entity_type", "lead")
        .text("entity_id", lead.to_string())
        .part("file", reqwest::multipart::Part::bytes(b"alpha".to_vec()).file_name("alpha.txt"));
    let up =
        app.client.post(format!("{}/v1/files", app.base)).bearer_auth(a_owner).multipart(form).send().await.unwrap();
    let file = up.json::<Value>().await.unwrap()["data"]["id"].as_i64().unwrap();
    let field = id(
        app.post("/v1/custom-fields", a_owner, json!({"entity_type": "lead", "key": "alpha", "field_type": "text"}))
            .await,
        201,
    );
    let form =
        app.post("/v1/forms", a_owner, json!({"name": "Alpha form", "fields": [{"name": "email", "type": "email"}]}));
    let form = form.await.assert_ok(201)["data"].clone();
    let submit = format!("/v1/public/forms/{}/submissions", form["token"].as_str().unwrap());
    let sub = app.call(Method::POST, &submit, None, Some(json!({"email": "form@alpha.com"}))).await;
    let submission = sub.assert_ok(201)["data"]["submission_id"].as_i64().unwrap();
    let form = form["id"].as_i64().unwrap();
    let import =
        id(app.post("/v1/imports", a_owner, json!({"kind": "leads", "csv": "email\nimport@alpha.com\n"})).await, 202);
    vec![
        ("lead", lead),
        ("prospect", prospect),
        ("opportunity", opportunity),
        ("pipeline", pipeline),
        ("activity", activity),
        ("note", note),
        ("file", file),
        ("custom_field", field),
        ("form", form),
        ("submission", submission),
        ("import", import),
    ]
}

async fn another_workspaces_objects_are_404_to_every_credential(app: TestApp) {
    let f = fixture(&app).await;
    for (method, template, kind, body) in object_routes() {
        let id = f.ids.iter().find(|(k, _)| *k == kind).unwrap().1;
        // A nested object's own id is workspace A's real one: only the outer id differs.
        let submission = f.ids.iter().find(|(k, _)| *k == "submission").unwrap().1.to_string();
        let template = template.replace("{submission_id}", &submission);
        let path = template.replace("{id}", &id.to_string());
        for cred in [&f.b_session, &f.b_key] {
            let r = app.call(method.clone(), &path, Some(cred), body.clone()).await;
            assert_eq!(r.status.as_u16(), 404, "{method} {path} from workspace B: {}", r.body);
            assert_eq!(r.body["code"], "NOT_FOUND");
            // Indistinguishable from an id that does not exist at all.
            let missing =
                app.call(method.clone(), &template.replace("{id}", "987654321"), Some(cred), body.clone()).await;
            assert_eq!(missing.body, r.body, "{method} {template}: another workspace's object must look missing");
        }
    }
    // Nothing of A changed.
    app.get("/v1/auth/me", &f.a_key).await.assert_ok(200);
    let team = app.get("/v1/users", &f.a_owner).await;
    assert_eq!(team.body["pagination"]["total"], 2);
    assert!(team.body["data"].as_array().unwrap().iter().all(|m| m["role"] != "admin"));
    let customer = f.ids.iter().find(|(k, _)| *k == "customer").unwrap().1;
    let c = app.get(&format!("/v1/customers/{customer}"), &f.a_owner).await;
    assert_eq!(c.assert_ok(200)["data"]["name"], "Alpha Client", "B's PUT and DELETE changed nothing");
    let segment = f.ids.iter().find(|(k, _)| *k == "segment").unwrap().1;
    let s = app.get(&format!("/v1/segments/{segment}"), &f.a_owner).await;
    assert_eq!(s.assert_ok(200)["data"]["name"], "Alpha list", "B's PUT and DELETE changed nothing");
    let campaign = f.ids.iter().find(|(k, _)| *k == "campaign").unwrap().1;
    let c = app.get(&format!("/v1/campaigns/{campaign}"), &f.a_owner).await;
    assert_eq!(c.assert_ok(200)["data"]["name"], "Alpha news", "B changed nothing");
    assert_eq!(c.body["data"]["status"], "draft", "B could not send, schedule or cancel it");
    let automation = f.ids.iter().find(|(k, _)| *k == "automation").unwrap().1;
    let a = app.get(&format!("/v1/automations/{automation}"), &f.a_owner).await;
    assert_eq!(a.assert_ok(200)["data"]["name"], "Alpha flow", "B changed nothing");
    assert_eq!((a.body["data"]["is_active"].clone(), a.body["data"]["version"].clone()), (json!(true), json!(1)));
    assert_eq!(a.body["data"]["runs"]["waiting"], 1, "B could not cancel or add runs");
    let invs = app.get("/v1/invitations", &f.a_owner).await;
    assert!(invs.body["data"].as_array().unwrap().iter().any(|i| i["status"] == "pending"));
    // Nor can B widen its own scopes through a narrower key.
    let (_, narrow) =
        app.create_key(&f.b_session, json!({"name": "n", "type": "secret", "scopes": ["keys:manage"]})).await;
    app.post("/v1/api-keys", &narrow, json!({"name": "w", "type": "secret", "scopes": ["leads:read"]}))
        .await
        .assert_error(403, "FORBIDDEN");
}

async fn lists_never_show_another_workspaces_objects(app: TestApp) {
    let f = fixture(&app).await;
    app.get("/v1/auth/me", &f.a_key).await.assert_ok(200);
    // Give the request log a moment to write A's lines.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for path in [
        "/v1/api-keys?include_revoked=true",
        "/v1/users",
        "/v1/invitations",
        "/v1/api-logs",
        "/v1/workspace",
        "/v1/automations",
        "/v1/leads",
        "/v1/opportunities",
        "/v1/deals",
        "/v1/people",
        "/v1/prospects",
        "/v1/activities",
        "/v1/notes",
        "/v1/files",
        "/v1/custom-fields",
        "/v1/forms",
        "/v1/search?q=alpha",
        "/v1/reports/leads",
        "/v1/reports/opportunities?group_by=source",
    ] {
        for cred in [&f.b_session, &f.b_key] {
            let r = app.get(path, cred).await;
            let text = r.assert_ok(200).to_string();
            assert!(!text.contains("alpha"), "{path} from B shows A's data: {text}");
            assert!(!text.contains("Alpha"), "{path} from B shows A's data: {text}");
        }
    }
    let keys = app.get("/v1/api-keys", &f.b_session).await;
    let a_key_id = f.ids[0].1;
    assert!(keys.body["data"].as_array().unwrap().iter().all(|k| k["id"] != a_key_id));
}

async fn every_object_route_is_covered_by_the_isolation_table(app: TestApp) {
    let doc = app.call(Method::GET, "/v1/openapi.json", None, None).await.body;
    let mut routed = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.contains("{id}") {
            continue;
        }
        for method in item.as_object().unwrap().keys() {
            routed.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    let covered: BTreeSet<String> =
        object_routes().into_iter().map(|(m, p, _, _)| format!("{m} {}", p.split('?').next().unwrap_or(p))).collect();
    let missing: Vec<_> = routed.difference(&covered).collect();
    assert!(missing.is_empty(), "add these routes to the isolation table: {missing:?}");
}

//! Inbound webhooks: seed 002's CRM webhook exactly as documented (secrets from the environment
//! and per workspace, 401/503/400 and both 200 bodies, lookup in leads then in form submissions,
//! the body kept as the lead's CRM activity in its detail and timeline), and seed 000's rules
//! for signed senders (HMAC of `timestamp.body`, stale → 401, replayed delivery id → 409), on
//! the CRM webhook and on an automation's webhook trigger.

use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::common::{spawn_services, Backend, Resp, TestApp};

crate::on_both_backends!(
    crm_webhook_without_any_secret_is_503,
    crm_webhook_stores_events_on_the_lead_its_workspace_secret_names,
    signed_senders_are_verified_and_replays_refused,
);
crate::on_both_backends_raw!(the_environment_secret_serves_its_workspace);

const SEED_BODY: &str = r#"{"crm_lead_id":"crm-abc-456","event_type":"status_changed","status":"qualified","updated_at":"2026-03-05T10:00:00Z"}"#;

async fn hook(app: &TestApp, headers: &[(&str, &str)], body: &str) -> Resp {
    let mut req = app.client.post(format!("{}/webhooks/crm/lead", app.base)).header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.body(body.to_string()).send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    Resp { status, headers, body: serde_json::from_str(&text).unwrap_or(Value::String(text)) }
}

#[track_caller]
fn refused(r: &Resp, status: u16, code: &str) {
    r.assert_error(status, code);
    assert_eq!(r.body["ok"], json!(false), "seed 002's bodies carry ok: {}", r.body);
}

async fn lead(app: &TestApp, token: &str, body: Value) -> i64 {
    app.post("/v1/leads", token, body).await.assert_ok(201)["data"]["id"].as_i64().unwrap()
}

async fn crm_activity(app: &TestApp, token: &str, lead: i64) -> Vec<Value> {
    let d = app.get(&format!("/v1/leads/{lead}"), token).await.assert_ok(200)["data"].clone();
    d["crm_activity"].as_array().unwrap().clone()
}

async fn crm_webhook_without_any_secret_is_503(app: TestApp) {
    let token = app.register("owner@shop.test", "Shop").await;
    lead(&app, &token, json!({"email": "ana@example.com", "crm_lead_id": "crm-abc-456"})).await;
    let r = hook(&app, &[("authorization", "Bearer anything-at-all-here")], SEED_BODY).await;
    refused(&r, 503, "UNAVAILABLE");
    refused(&hook(&app, &[], SEED_BODY).await, 503, "UNAVAILABLE");
}

async fn crm_webhook_stores_events_on_the_lead_its_workspace_secret_names(app: TestApp) {
    let token = app.register("owner@shop.test", "Shop").await;
    let other = app.register("owner@rival.test", "Rival").await;

    // The secret is generated, shown once, and only its prefix is shown after.
    let r = app.post("/v1/settings/crm-webhook/secret", &token, json!({})).await;
    let made = r.assert_ok(201)["data"].clone();
    let secret = made["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("crmwh_") && secret.len() > 40, "{made}");
    assert!(made["crm_webhook_url"].as_str().unwrap().ends_with("/webhooks/crm/lead"), "{made}");
    let shown = app.get("/v1/settings/crm-webhook", &token).await.assert_ok(200)["data"].clone();
    assert_eq!(shown["secret_set"], json!(true));
    assert_eq!(shown["signing_secret_set"], json!(false));
    assert!(shown.get("secret").is_none() && !shown.to_string().contains(&secret[12..]), "{shown}");
    let rival_secret = app.post("/v1/settings/crm-webhook/secret", &other, json!({})).await.assert_ok(201)["data"]
        ["secret"]
        .as_str()
        .unwrap()
        .to_string();

    // A lead carries its CRM id (settable on create and update, filterable).
    let ana = lead(&app, &token, json!({"email": "ana@example.com", "crm_lead_id": "crm-abc-456"})).await;
    let ben = lead(&app, &token, json!({"email": "ben@example.com"})).await;
    let r = app.put(&format!("/v1/leads/{ben}"), &token, json!({"crmLeadId": "crm-ben-1"})).await;
    assert_eq!(r.assert_ok(200)["data"]["crm_lead_id"], "crm-ben-1");
    let r = app.get("/v1/leads?crm_lead_id=crm-abc-456", &token).await;
    let found: Vec<i64> =
        r.assert_ok(200)["data"].as_array().unwrap().iter().map(|l| l["id"].as_i64().unwrap()).collect();
    assert_eq!(found, vec![ana]);

    // Refusals change nothing: no secret, a wrong one, bad JSON, no or a bad crm_lead_id.
    let bearer = format!("Bearer {secret}");
    refused(&hook(&app, &[], SEED_BODY).await, 401, "AUTH_REQUIRED");
    refused(&hook(&app, &[("authorization", "Bearer crmwh_wrong")], SEED_BODY).await, 401, "AUTH_REQUIRED");
    refused(&hook(&app, &[("x-api-key", "nope")], SEED_BODY).await, 401, "AUTH_REQUIRED");
    refused(&hook(&app, &[("authorization", &bearer)], "{not json").await, 400, "VALIDATION_ERROR");
    refused(&hook(&app, &[("authorization", &bearer)], "[1, 2]").await, 400, "VALIDATION_ERROR");
    let r = hook(&app, &[("authorization", &bearer)], r#"{"event_type":"updated"}"#).await;
    refused(&r, 400, "VALIDATION_ERROR");
    assert_eq!(r.body["field"], "crm_lead_id");
    let r = hook(&app, &[("authorization", &bearer)], r#"{"crm_lead_id": ""}"#).await;
    refused(&r, 400, "VALIDATION_ERROR");
    let r = hook(&app, &[("authorization", &bearer)], r#"{"crm_lead_id": {"x": 1}}"#).await;
    assert_eq!(r.body["field"], "crm_lead_id");
    assert!(crm_activity(&app, &token, ana).await.is_empty());

    // Seed 002's example, with the secret as Bearer: stored on Ana's lead, the whole body kept.
    let r = hook(&app, &[("authorization", &bearer)], SEED_BODY).await;
    let expected = json!({"ok": true, "stored": true, "lead_id": ana});
    let got = r.assert_ok(200);
    assert_eq!(
        (&got["ok"], &got["stored"], &got["lead_id"]),
        (&expected["ok"], &expected["stored"], &expected["lead_id"])
    );
    let acts = crm_activity(&app, &token, ana).await;
    assert_eq!(acts.len(), 1, "{acts:?}");
    assert_eq!(acts[0]["payload"], serde_json::from_str::<Value>(SEED_BODY).unwrap());
    assert_eq!(acts[0]["event_type"], "status_changed");
    assert_eq!(acts[0]["matched_by"], "lead");
    assert_eq!(acts[0]["crm_lead_id"], "crm-abc-456");

    // As X-API-Key; event_type defaults to "updated"; extra fields are kept.
    let body = json!({"crm_lead_id": "crm-ben-1", "owner": {"name": "Zoe"}, "tags": ["a", "b"]}).to_string();
    let r = hook(&app, &[("x-api-key", &secret)], &body).await;
    assert_eq!(r.assert_ok(200)["lead_id"], json!(ben));
    let acts = crm_activity(&app, &token, ben).await;
    assert_eq!(acts[0]["event_type"], "updated");
    assert_eq!(acts[0]["payload"]["owner"]["name"], "Zoe");

    // Unknown id: 200 with stored false, so the CRM does not retry.
    let r = hook(&app, &[("authorization", &bearer)], r#"{"crm_lead_id":"crm-unknown"}"#).await;
    assert_eq!(
        r.assert_ok(200).clone(),
        json!({"ok": true, "stored": false, "reason": "No matching lead or submission for crm_lead_id"})
    );

    // Another workspace's secret never reaches this workspace's leads.
    let r = hook(&app, &[("authorization", &format!("Bearer {rival_secret}"))], SEED_BODY).await;
    assert_eq!(r.assert_ok(200)["stored"], json!(false));
    assert_eq!(crm_activity(&app, &token, ana).await.len(), 1);

    // Follow-up leads: looked up in form submissions (most recent first) when no lead matches.
    let form = app
        .post(
            "/v1/forms",
            &token,
            json!({"name": "Demo request", "fields": [{"name": "email", "type": "email", "maps_to": "email"}]}),
        )
        .await;
    let form = form.assert_ok(201)["data"].clone();
    let (form_id, submit) = (form["id"].as_i64().unwrap(), form["submit_url"].as_str().unwrap().to_string());
    let submit = &submit[submit.find("/v1/public/").unwrap()..];
    let sub = |email: &'static str, crm: Option<&'static str>| {
        let mut b = json!({"email": email});
        if let Some(c) = crm {
            b["crm_lead_id"] = json!(c);
        }
        app.call(Method::POST, submit, None, Some(b))
    };
    let cy = sub("cy@example.com", Some("crm-follow-1")).await.assert_ok(201)["data"]["lead_id"].as_i64().unwrap();
    let dee = sub("dee@example.com", None).await.assert_ok(201)["data"]["submission_id"].as_i64().unwrap();
    let r = hook(&app, &[("authorization", &bearer)], r#"{"crm_lead_id":"crm-follow-1","event_type":"created"}"#).await;
    assert_eq!(r.assert_ok(200)["lead_id"], json!(cy));
    assert_eq!(crm_activity(&app, &token, cy).await[0]["matched_by"], "submission");
    // A submission's CRM id can be recorded later (the CRM sync); the most recent submission wins.
    let subs = app.get(&format!("/v1/forms/{form_id}/submissions"), &token).await.assert_ok(200)["data"].clone();
    assert_eq!(subs.as_array().unwrap().len(), 2, "{subs}");
    assert_eq!(subs[1]["crm_lead_id"], "crm-follow-1");
    let r = app
        .put(&format!("/v1/forms/{form_id}/submissions/{dee}"), &token, json!({"crm_lead_id": "crm-follow-1"}))
        .await;
    let dee_lead = r.assert_ok(200)["data"]["lead_id"].as_i64().unwrap();
    app.put(&format!("/v1/forms/{form_id}/submissions/{dee}"), &token, json!({"crm_lead_id": 5.5}))
        .await
        .assert_error(400, "VALIDATION_ERROR");
    app.put(&format!("/v1/forms/{form_id}/submissions/999999"), &token, json!({"crm_lead_id": "x"}))
        .await
        .assert_error(404, "NOT_FOUND");
    let r = hook(&app, &[("authorization", &bearer)], r#"{"crm_lead_id":"crm-follow-1"}"#).await;
    assert_eq!(r.assert_ok(200)["lead_id"], json!(dee_lead));
    // A lead's own CRM id comes before any submission's.
    app.put(&format!("/v1/leads/{ana}"), &token, json!({"crm_lead_id": "crm-follow-1"})).await.assert_ok(200);
    let r = hook(&app, &[("authorization", &bearer)], r#"{"crm_lead_id":"crm-follow-1"}"#).await;
    assert_eq!(r.assert_ok(200)["lead_id"], json!(ana));

    // The detail on seed 002's own path, and the timeline with its "CRM" entries.
    let d = app.get(&format!("/analytics/leads/{ana}"), &token).await.assert_ok(200)["data"].clone();
    assert_eq!(d["crm_activity"].as_array().unwrap().len(), 2, "{d}");
    assert_eq!(d["crm_activity"][1]["event_type"], "status_changed", "newest first");
    app.get(&format!("/analytics/leads/{ana}"), &other).await.assert_error(404, "NOT_FOUND");
    app.call(Method::GET, &format!("/analytics/leads/{ana}"), None, None).await.assert_error(401, "AUTH_REQUIRED");
    let tl = app.get(&format!("/v1/leads/{ana}/timeline"), &token).await.assert_ok(200)["data"].clone();
    let kinds: Vec<(&str, &str)> =
        tl.as_array().unwrap().iter().map(|e| (e["kind"].as_str().unwrap(), e["label"].as_str().unwrap())).collect();
    assert_eq!(kinds, vec![("crm", "CRM: updated"), ("crm", "CRM: status_changed"), ("lead", "Lead created")]);
    let tl = app.get(&format!("/v1/leads/{cy}/timeline"), &token).await.assert_ok(200)["data"].clone();
    let kinds: Vec<&str> = tl.as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, vec!["crm", "form_submission", "lead"]);

    // Settings: own secrets (16+ characters), cleared with null; the old secret stops working.
    app.put("/v1/settings/crm-webhook", &token, json!({"secret": "short"})).await.assert_error(400, "VALIDATION_ERROR");
    app.put("/v1/settings/crm-webhook", &token, json!({"nope": 1})).await.assert_error(400, "VALIDATION_ERROR");
    let r = app.put("/v1/settings/crm-webhook", &token, json!({"secret": "my-own-crm-secret-123"})).await;
    assert_eq!(r.assert_ok(200)["data"]["secret_prefix"], "my-own");
    refused(&hook(&app, &[("authorization", &bearer)], SEED_BODY).await, 401, "AUTH_REQUIRED");
    let r = hook(&app, &[("authorization", "Bearer my-own-crm-secret-123")], r#"{"crm_lead_id":"crm-follow-1"}"#).await;
    assert_eq!(r.assert_ok(200)["lead_id"], json!(ana));
    let r = app.put("/v1/settings/crm-webhook", &other, json!({"secret": "my-own-crm-secret-123"})).await;
    r.assert_error(400, "VALIDATION_ERROR");
    app.put("/v1/settings/crm-webhook", &token, json!({"secret": null})).await.assert_ok(200);
    refused(&hook(&app, &[("authorization", "Bearer my-own-crm-secret-123")], SEED_BODY).await, 401, "AUTH_REQUIRED");

    // Managing the secrets takes the settings scope.
    let (_, narrow) =
        app.create_key(&token, json!({"name": "leads", "type": "secret", "scopes": ["leads:read"]})).await;
    app.get("/v1/settings/crm-webhook", &narrow).await.assert_error(403, "FORBIDDEN");
    app.post("/v1/settings/crm-webhook/secret", &narrow, json!({})).await.assert_error(403, "FORBIDDEN");
}

fn hmac_hex(key: &[u8], msg: &str) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(msg.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// Seed 000's headers for `body`, signed as a sender following its pseudo-code would.
fn trace_headers(secret: &str, delivery: &str, ts: i64, body: &str) -> Vec<(String, String)> {
    vec![
        ("x-tracecrm-event".into(), "lead.updated".into()),
        ("x-tracecrm-delivery".into(), delivery.into()),
        ("x-tracecrm-timestamp".into(), ts.to_string()),
        ("x-tracecrm-signature".into(), hmac_hex(secret.as_bytes(), &format!("{ts}.{body}"))),
    ]
}

fn refs(h: &[(String, String)]) -> Vec<(&str, &str)> {
    h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

async fn signed_senders_are_verified_and_replays_refused(app: TestApp) {
    let token = app.register("owner@shop.test", "Shop").await;
    let secret = app.post("/v1/settings/crm-webhook/secret", &token, json!({})).await.assert_ok(201)["data"]["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app.post("/v1/settings/crm-webhook/signing-secret", &token, json!({})).await;
    let signing = r.assert_ok(201)["data"]["secret"].as_str().unwrap().to_string();
    assert!(signing.starts_with("whsec_"));
    let ana = lead(&app, &token, json!({"email": "ana@example.com", "crm_lead_id": "crm-abc-456"})).await;
    let bearer = ("authorization".to_string(), format!("Bearer {secret}"));
    let now = chrono::Utc::now().timestamp();

    // Unsigned, wrongly signed, signed over another body, or stale: 401; nothing stored.
    refused(&hook(&app, &refs(&[bearer.clone()]), SEED_BODY).await, 401, "AUTH_REQUIRED");
    let mut h = trace_headers("whsec_not-the-secret", "d-1", now, SEED_BODY);
    h.push(bearer.clone());
    refused(&hook(&app, &refs(&h), SEED_BODY).await, 401, "AUTH_REQUIRED");
    let mut h = trace_headers(&signing, "d-1", now, r#"{"crm_lead_id":"crm-abc-456"}"#);
    h.push(bearer.clone());
    refused(&hook(&app, &refs(&h), SEED_BODY).await, 401, "AUTH_REQUIRED");
    for stale in [now - 301, now + 400] {
        let mut h = trace_headers(&signing, "d-stale", stale, SEED_BODY);
        h.push(bearer.clone());
        refused(&hook(&app, &refs(&h), SEED_BODY).await, 401, "AUTH_REQUIRED");
    }
    assert!(crm_activity(&app, &token, ana).await.is_empty());

    // Signed as seed 000 describes: stored; the same delivery id again: 409, not stored twice.
    let mut h = trace_headers(&signing, "d-1", now - 120, SEED_BODY);
    h.push(bearer.clone());
    assert_eq!(hook(&app, &refs(&h), SEED_BODY).await.assert_ok(200)["stored"], json!(true));
    refused(&hook(&app, &refs(&h), SEED_BODY).await, 409, "CONFLICT");
    let mut h = trace_headers(&signing, "d-1", now, SEED_BODY);
    h.push(bearer.clone());
    refused(&hook(&app, &refs(&h), SEED_BODY).await, 409, "CONFLICT");
    assert_eq!(crm_activity(&app, &token, ana).await.len(), 1);
    // An unmatched delivery is remembered too.
    let body = r#"{"crm_lead_id":"crm-nobody"}"#;
    let mut h = trace_headers(&signing, "d-2", now, body);
    h.push(bearer.clone());
    assert_eq!(hook(&app, &refs(&h), body).await.assert_ok(200)["stored"], json!(false));
    refused(&hook(&app, &refs(&h), body).await, 409, "CONFLICT");

    // Standard Webhooks' headers (what Cairn itself sends) verify as well.
    let key = STANDARD.decode(&signing["whsec_".len()..]).unwrap();
    let sig = hex::decode(hmac_hex(&key, &format!("msg_3.{now}.{SEED_BODY}"))).unwrap();
    let header = format!("v1,{}", STANDARD.encode(sig));
    let h = vec![
        bearer.clone(),
        ("webhook-id".to_string(), "msg_3".to_string()),
        ("webhook-timestamp".to_string(), now.to_string()),
        ("webhook-signature".to_string(), format!("v1,bm90LWl0 {header}")),
    ];
    assert_eq!(hook(&app, &refs(&h), SEED_BODY).await.assert_ok(200)["stored"], json!(true));
    refused(&hook(&app, &refs(&h), SEED_BODY).await, 409, "CONFLICT");
    assert_eq!(crm_activity(&app, &token, ana).await.len(), 2);

    // A database error while storing: 500 (seed 002), and the delivery id is not used up — the
    // sender's retry of the same delivery is stored.
    let rename = |from: &str, to: &str| {
        let (sql, store) = (format!("ALTER TABLE {from} RENAME TO {to}"), app.store.clone());
        async move { store.write().await.unwrap().execute_unchecked(&sql).await.unwrap() }
    };
    rename("lead_crm_activities", "lead_crm_activities_away").await;
    let mut h = trace_headers(&signing, "d-500", now, SEED_BODY);
    h.push(bearer.clone());
    refused(&hook(&app, &refs(&h), SEED_BODY).await, 500, "SERVER_ERROR");
    rename("lead_crm_activities_away", "lead_crm_activities").await;
    assert_eq!(hook(&app, &refs(&h), SEED_BODY).await.assert_ok(200)["stored"], json!(true));
    assert_eq!(crm_activity(&app, &token, ana).await.len(), 3);

    // An automation's webhook trigger in the same workspace follows the same rules.
    app.post("/v1/customers", &token, json!({"email": "ana@example.com"})).await.assert_ok(201);
    let design = json!({"nodes": [{"id": "t", "type": "trigger", "data": {}},
                                  {"id": "a", "type": "action", "data": {"action": "add_tag", "tag": "hooked"}}],
                        "edges": [{"id": "e", "source": "t", "target": "a"}]});
    let r =
        app.post("/v1/automations", &token, json!({"name": "In", "trigger_type": "webhook", "design": design})).await;
    let id = r.assert_ok(201)["data"]["id"].as_i64().unwrap();
    let a = app.post(&format!("/v1/automations/{id}/activate"), &token, json!({})).await.assert_ok(200)["data"].clone();
    let url = a["webhook_url"].as_str().unwrap();
    let path = &url[url.find("/hooks/").unwrap()..];
    let body = r#"{"email":"ana@example.com"}"#;
    let post = |h: Vec<(String, String)>| {
        let mut req = app.client.post(format!("{}{path}", app.base)).header("content-type", "application/json");
        for (k, v) in h {
            req = req.header(k, v);
        }
        req.body(body).send()
    };
    assert_eq!(post(vec![]).await.unwrap().status(), 401);
    assert_eq!(post(trace_headers(&signing, "a-1", now - 400, body)).await.unwrap().status(), 401);
    assert_eq!(post(trace_headers(&signing, "a-1", now, body)).await.unwrap().status(), 202);
    assert_eq!(post(trace_headers(&signing, "a-1", now, body)).await.unwrap().status(), 409);

    // Clearing the signing secret turns verification off again.
    app.put("/v1/settings/crm-webhook", &token, json!({"signing_secret": null})).await.assert_ok(200);
    assert_eq!(hook(&app, &refs(&[bearer]), SEED_BODY).await.assert_ok(200)["stored"], json!(true));
    assert_eq!(post(vec![]).await.unwrap().status(), 202);
}

async fn the_environment_secret_serves_its_workspace(backend: Backend) {
    let env = |workspace: Option<&str>| cairn_service::ServiceSettings {
        crm_webhook: cairn_service::inbound::CrmWebhookEnv::from_env(
            None,
            Some("env-callback-secret-0123456789".into()),
            None,
            workspace.map(str::to_string),
        ),
        ..Default::default()
    };
    let app = spawn_services(backend, |_| {}, Default::default(), env(None)).await;
    let first = app.register("owner@first.test", "First").await;
    let second = app.register("owner@second.test", "Second").await;
    let a = lead(&app, &first, json!({"email": "a@example.com", "crm_lead_id": "crm-1"})).await;
    let b = lead(&app, &second, json!({"email": "b@example.com", "crm_lead_id": "crm-1"})).await;
    let shown = app.get("/v1/settings/crm-webhook", &first).await.assert_ok(200)["data"].clone();
    assert_eq!((shown["environment_secret"].clone(), shown["secret_set"].clone()), (json!(true), json!(false)));
    let body = r#"{"crm_lead_id":"crm-1"}"#;
    // CRM_CALLBACK_SECRET stands in for CRM_WEBHOOK_SECRET; it serves the first workspace.
    let r = hook(&app, &[("authorization", "Bearer env-callback-secret-0123456789")], body).await;
    assert_eq!(r.assert_ok(200)["lead_id"], json!(a));
    refused(&hook(&app, &[("authorization", "Bearer env-callback-secret-01234567")], body).await, 401, "AUTH_REQUIRED");
    drop(app);

    // CRM_WEBHOOK_WORKSPACE names another (by slug here); CRM_WEBHOOK_SECRET wins over the callback.
    let settings = cairn_service::inbound::CrmWebhookEnv::from_env(
        Some("env-webhook-secret-0123456789".into()),
        Some("env-callback-secret-0123456789".into()),
        Some(String::new()),
        Some("second".into()),
    );
    assert_eq!(settings.secret.as_deref(), Some("env-webhook-secret-0123456789"));
    assert_eq!(settings.signing_secret, None, "an empty variable is unset");
    let app = spawn_services(
        backend,
        |_| {},
        Default::default(),
        cairn_service::ServiceSettings { crm_webhook: settings, ..Default::default() },
    )
    .await;
    let first = app.register("owner@first.test", "First").await;
    let second = app.register("owner@second.test", "Second").await;
    lead(&app, &first, json!({"email": "a@example.com", "crm_lead_id": "crm-1"})).await;
    let b2 = lead(&app, &second, json!({"email": "b@example.com", "crm_lead_id": "crm-1"})).await;
    let r = hook(&app, &[("x-api-key", "env-webhook-secret-0123456789")], body).await;
    assert_eq!(r.assert_ok(200)["lead_id"], json!(b2));
    refused(&hook(&app, &[("x-api-key", "env-callback-secret-0123456789")], body).await, 401, "AUTH_REQUIRED");
    let _ = b;
}

//! Automations end to end, on both entity stores (SQLite + SQLite events, PostgreSQL +
//! ClickHouse): seed 003's welcome flow down both branches with a real SMTP server (aiosmtpd),
//! every trigger and node kind, versions and migration, validation. Delays complete by moving
//! the injected clock.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{extract::State, http::HeaderMap, routing::post, Router};
use cairn_campaigns::settings::Defaults;
use cairn_channels::email::SmtpSettings;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};

use crate::common::{spawn_channels, Backend, TestApp};

use super::campaigns::smtp::SmtpSink;

crate::on_both_stores!(
    seed_welcome_flow_runs_down_both_branches_exactly_once,
    event_segment_manual_webhook_and_scores_triggers_with_every_node_kind,
    schedule_and_date_triggers_fire_on_the_clock,
    versions_migration_reentry_exit_goals_and_validation,
    runs_leave_when_the_customer_is_deleted_or_opts_out,
    trait_updates_of_one_batch_land_in_order,
    tag_steps_of_one_batch_land_as_one_at_a_time,
);

async fn wait<T, F: std::future::Future<Output = Option<T>>>(within: Duration, mut check: impl FnMut() -> F) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(started.elapsed() < within, "timed out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn customer(app: &TestApp, token: &str, body: Value) -> i64 {
    app.post("/v1/customers", token, body).await.assert_ok(201)["data"]["id"].as_i64().unwrap()
}

async fn track(app: &TestApp, key: &str, events: Vec<Value>) {
    app.post("/v1/track/batch", key, Value::Array(events)).await.assert_ok(200);
}

fn event(email: &str, name: &str, at: DateTime<Utc>, id: &str, properties: Value) -> Value {
    json!({"type": "event", "customer_email": email, "event": name, "timestamp": at.to_rfc3339(),
           "message_id": id, "properties": properties})
}

/// Waits until the automation has `n` runs of this status (on a timeout, shows all its runs).
async fn runs_with(app: &TestApp, token: &str, automation: i64, status: &str, n: i64) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let r = app.get(&format!("/v1/automations/{automation}/runs?status={status}&per_page=100"), token).await;
        let body = r.assert_ok(200).clone();
        // (The page and its total are two reads: both must agree.)
        if body["pagination"]["total"].as_i64() == Some(n) && body["data"].as_array().map(Vec::len) == Some(n as usize)
        {
            return body["data"].as_array().unwrap().clone();
        }
        if started.elapsed() > Duration::from_secs(30) {
            let all = app.get(&format!("/v1/automations/{automation}/runs?per_page=100"), token).await.body;
            eprintln!("engine tick: {:?}", app.engine.tick().await.err());
            panic!("wanted {n} {status} runs of automation {automation}; all runs: {all}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run_detail(app: &TestApp, token: &str, run: i64) -> Value {
    app.get(&format!("/v1/automations/runs/{run}"), token).await.assert_ok(200)["data"].clone()
}

fn outcomes(run: &Value) -> Vec<(String, String)> {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["node"].as_str().unwrap().to_string(), s["outcome"].as_str().unwrap().to_string()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

async fn outbox(app: &TestApp, event: &str) -> Vec<Value> {
    let mut c = app.store.read().await.unwrap();
    let all = c.outbox_after(cairn_domain::TenantId(1), 0, 100_000).await.unwrap();
    all.into_iter().filter(|e| e.event == event).map(|e| e.payload).collect()
}

/// Seed 003's design, exactly as the seed shows it (labels only).
pub(crate) fn seed_design() -> Value {
    json!({
        "nodes": [
          { "id": "t1", "type": "trigger", "data": { "label": "New Customer" }, "position": { "x": 250, "y": 0 } },
          { "id": "a1", "type": "action",  "data": { "label": "Send Welcome Email" }, "position": { "x": 250, "y": 120 } },
          { "id": "d1", "type": "delay",   "data": { "label": "Wait 3 Days" }, "position": { "x": 250, "y": 240 } },
          { "id": "c1", "type": "condition","data": { "label": "Made a Purchase?" }, "position": { "x": 250, "y": 360 } },
          { "id": "a2", "type": "action",  "data": { "label": "Send Reminder" }, "position": { "x": 80, "y": 480 } },
          { "id": "a3", "type": "action",  "data": { "label": "Send Thank You" }, "position": { "x": 420, "y": 480 } }
        ],
        "edges": [
          { "id": "e1", "source": "t1", "target": "a1" },
          { "id": "e2", "source": "a1", "target": "d1" },
          { "id": "e3", "source": "d1", "target": "c1" },
          { "id": "e4", "source": "c1", "target": "a2", "label": "No" },
          { "id": "e5", "source": "c1", "target": "a3", "label": "Yes" }
        ]
    })
}

/// The seed's design with its configuration filled in ("Wait 3 Days" stays a label).
pub fn welcome_design() -> Value {
    let mut d = seed_design();
    let fill = |d: &mut Value, id: &str, data: Value| {
        let node = d["nodes"].as_array_mut().unwrap().iter_mut().find(|n| n["id"] == id).unwrap();
        for (k, v) in data.as_object().unwrap() {
            node["data"][k] = v.clone();
        }
    };
    fill(
        &mut d,
        "a1",
        json!({"action": "send_email", "subject": "Welcome, {{ name }}!", "body": "<p>Hi {{name}}, welcome aboard.</p>", "from_email": "hello@shop.test"}),
    );
    fill(&mut d, "c1", json!({"filter": {"event": "purchase"}}));
    fill(
        &mut d,
        "a2",
        json!({"action": "send_email", "subject": "Still looking, {{ name }}?", "body": "<p>Here is 10% off.</p>", "from_email": "hello@shop.test"}),
    );
    fill(
        &mut d,
        "a3",
        json!({"action": "send_email", "subject": "Thank you, {{ name }}", "body": "<p>Thanks for your order.</p>", "from_email": "hello@shop.test"}),
    );
    d
}

fn subjects_to(sink: &SmtpSink, to: &str) -> Vec<String> {
    let mut s: Vec<String> = sink
        .messages()
        .iter()
        .filter(|m| m["rcpt_tos"].as_array().is_some_and(|r| r.iter().any(|a| a == to)))
        .map(|m| {
            let raw = m["data"].as_str().unwrap();
            raw.split("\r\n").find(|l| l.starts_with("Subject: ")).unwrap()["Subject: ".len()..].to_string()
        })
        .collect();
    s.sort();
    s
}

async fn seed_welcome_flow_runs_down_both_branches_exactly_once(backend: Backend) {
    let sink = SmtpSink::start(None);
    let smtp = SmtpSettings::parse(&sink.url()).unwrap();
    let app = spawn_channels(backend, Defaults { smtp: Some(smtp), sms: None }).await;
    let token = app.register("owner@shop.test", "Shop").await;
    let key = app.create_key(&token, json!({"name": "server", "type": "secret"})).await.1;
    let t0 = Utc.with_ymd_and_hms(2026, 6, 1, 10, 0, 0).unwrap();
    app.clock.set(t0);

    // Seed 003: create it active — without a design it stays a draft.
    let a = app
        .post(
            "/v1/automations",
            &token,
            json!({"name": "Welcome Series", "trigger_type": "customer_created", "is_active": true}),
        )
        .await;
    let a = a.assert_ok(201)["data"].clone();
    let id = a["id"].as_i64().unwrap();
    assert_eq!(a["is_active"], false);
    assert_eq!(a["version"], 0);

    // The seed's label-only design is accepted as a draft; activating it lists what is missing.
    app.post(&format!("/v1/automations/{id}/design"), &token, seed_design()).await.assert_ok(200);
    let got = app.get(&format!("/v1/automations/{id}/design"), &token).await;
    assert_eq!(got.assert_ok(200)["data"], seed_design(), "the design comes back as saved, positions included");
    let r = app.post(&format!("/v1/automations/{id}/activate"), &token, json!({})).await;
    r.assert_error(400, "VALIDATION_ERROR");
    let errors = r.body["errors"].as_array().unwrap();
    let nodes: Vec<&str> = errors.iter().filter_map(|e| e["node"].as_str()).collect();
    assert_eq!(nodes, ["a1", "c1", "a2", "a3"], "{}", r.body);
    let a1 = errors.iter().find(|e| e["node"] == "a1").unwrap();
    assert_eq!(a1["field"], "nodes.a1.data.action");
    assert!(a1["message"].as_str().unwrap().contains("send_email"), "{a1}");
    assert!(!errors.iter().any(|e| e["node"] == "d1"), "\"Wait 3 Days\" reads as a 3-day delay");
    assert_eq!(app.get(&format!("/v1/automations/{id}"), &token).await.body["data"]["is_active"], false);

    // Filled in, it validates and activates.
    let v = app.post("/v1/automations/validate", &token, welcome_design()).await;
    assert_eq!(v.assert_ok(200)["data"]["valid"], true);
    app.post(&format!("/v1/automations/{id}/design"), &token, welcome_design()).await.assert_ok(200);
    let a = app.post(&format!("/v1/automations/{id}/activate"), &token, json!({})).await.assert_ok(200)["data"].clone();
    assert_eq!(
        (a["is_active"].clone(), a["version"].clone(), a["active_version"].clone()),
        (json!(true), json!(1), json!(1))
    );

    // Two new customers enter; each gets the welcome email once and waits three days.
    let ana = customer(&app, &token, json!({"email": "ana@example.com", "name": "Ana"})).await;
    let ben = customer(&app, &token, json!({"email": "ben@example.com", "name": "Ben"})).await;
    let waiting = runs_with(&app, &token, id, "waiting", 2).await;
    assert!(waiting.iter().all(|r| r["node"] == "d1"), "{waiting:?}");
    let due: DateTime<Utc> = waiting[0]["due_at"].as_str().unwrap_or_else(|| panic!("{waiting:?}")).parse().unwrap();
    assert_eq!(due, t0 + chrono::Duration::days(3));
    sink.wait_for(2).await;
    assert_eq!(subjects_to(&sink, "ana@example.com"), ["Welcome, Ana!"]);
    assert_eq!(subjects_to(&sink, "ben@example.com"), ["Welcome, Ben!"]);
    assert_eq!(outbox(&app, "automation.triggered").await.len(), 2);

    // Ana buys during the delay.
    app.clock.set(t0 + chrono::Duration::hours(30));
    track(
        &app,
        &key,
        vec![event("ana@example.com", "purchase", t0 + chrono::Duration::hours(30), "p-ana", json!({"amount": 42.0}))],
    )
    .await;
    app.wait_for_events(1, 1).await;

    // Nothing moves before the three days are up.
    app.clock.set(t0 + chrono::Duration::days(3) - chrono::Duration::minutes(1));
    app.engine.drain().await.unwrap();
    runs_with(&app, &token, id, "waiting", 2).await;

    app.clock.set(t0 + chrono::Duration::days(3) + chrono::Duration::minutes(1));
    let done = runs_with(&app, &token, id, "completed", 2).await;
    sink.wait_for(4).await;
    assert_eq!(subjects_to(&sink, "ana@example.com"), ["Thank you, Ana", "Welcome, Ana!"]);
    assert_eq!(subjects_to(&sink, "ben@example.com"), ["Still looking, Ben?", "Welcome, Ben!"]);

    let ana_run = done.iter().find(|r| r["customer_id"] == ana).unwrap()["id"].as_i64().unwrap();
    let ben_run = done.iter().find(|r| r["customer_id"] == ben).unwrap()["id"].as_i64().unwrap();
    let detail = run_detail(&app, &token, ana_run).await;
    assert_eq!(
        outcomes(&detail),
        pairs(&[
            ("t1", "entered"),
            ("a1", "queued"),
            ("d1", "waiting"),
            ("d1", "waited"),
            ("c1", "yes"),
            ("a3", "queued")
        ])
    );
    let c1 = detail["steps"].as_array().unwrap().iter().find(|s| s["node"] == "c1").unwrap();
    assert_eq!(c1["detail"]["matched"], true);
    assert!(c1["detail"]["reason"].as_str().unwrap().contains("since the run started"), "{c1}");
    let detail = run_detail(&app, &token, ben_run).await;
    assert_eq!(outcomes(&detail)[4..], pairs(&[("c1", "no"), ("a2", "queued")]));

    // Per-node counts for the builder.
    let counts = app.get(&format!("/v1/automations/{id}/nodes"), &token).await.assert_ok(200)["data"].clone();
    let of = |n: &str| counts.as_array().unwrap().iter().find(|c| c["node"] == n).unwrap().clone();
    assert_eq!((of("t1")["entered"].clone(), of("c1")["completed"].clone()), (json!(2), json!(2)));
    assert_eq!((of("a2")["entered"].clone(), of("a3")["entered"].clone()), (json!(1), json!(1)));
    assert_eq!(of("d1")["waiting"], 0);

    // The customer's runs, and the automation's counters.
    let mine = app.get(&format!("/v1/customers/{ana}/automation-runs"), &token).await;
    assert_eq!(mine.assert_ok(200)["pagination"]["total"], 1);
    let a = app.get(&format!("/v1/automations/{id}"), &token).await.assert_ok(200)["data"].clone();
    assert_eq!(a["runs"]["completed"], 2);

    // Each step's email went through a triggered campaign whose stats count it.
    let campaigns = app.get("/v1/campaigns?status=triggered", &token).await.assert_ok(200)["data"].clone();
    assert_eq!(campaigns.as_array().unwrap().len(), 3, "{campaigns}");
    let welcome =
        campaigns.as_array().unwrap().iter().find(|c| c["name"] == "Welcome Series · Send Welcome Email").unwrap();
    assert_eq!(welcome["stats"]["sent"], 2, "{welcome}");
    let r = app.delete(&format!("/v1/campaigns/{}", welcome["id"]), &token).await;
    r.assert_error(409, "CONFLICT");

    // Nothing ran twice: more ticks change nothing.
    app.engine.drain().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.messages().len(), 4);
}

type Received = Arc<Mutex<Vec<(HeaderMap, String)>>>;

/// A local webhook receiver: records each request's headers and body.
async fn receiver() -> (String, Received) {
    let got: Received = Default::default();
    let app = Router::new()
        .route(
            "/hook",
            post(|State(got): State<Received>, headers: HeaderMap, body: String| async move {
                got.lock().unwrap().push((headers, body));
                "ok"
            }),
        )
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), got)
}

async fn create_active(app: &TestApp, token: &str, body: Value) -> Value {
    let r = app.post("/v1/automations", token, body).await;
    let a = r.assert_ok(201)["data"].clone();
    let id = a["id"].as_i64().unwrap();
    let r = app.post(&format!("/v1/automations/{id}/activate"), token, json!({})).await;
    r.assert_ok(200)["data"].clone()
}

fn linear(trigger_data: Value, steps: &[(&str, &str, Value)]) -> Value {
    let mut nodes = vec![json!({"id": "t", "type": "trigger", "data": trigger_data})];
    let mut edges = vec![];
    let mut prev = "t".to_string();
    for (i, (id, kind, data)) in steps.iter().enumerate() {
        nodes.push(json!({"id": id, "type": kind, "data": data}));
        edges.push(json!({"id": format!("e{i}"), "source": prev, "target": id}));
        prev = id.to_string();
    }
    json!({"nodes": nodes, "edges": edges})
}

async fn event_segment_manual_webhook_and_scores_triggers_with_every_node_kind(backend: Backend) {
    let app = spawn_channels(backend, Defaults::default()).await;
    let token = app.register("owner@shop.test", "Shop").await;
    let key = app.create_key(&token, json!({"name": "server", "type": "secret"})).await.1;
    let t0 = Utc.with_ymd_and_hms(2026, 6, 1, 10, 0, 0).unwrap();
    app.clock.set(t0);
    let (hook_url, hooks) = receiver().await;
    let reviewers = app.post("/v1/segments", &token, json!({"name": "Reviewers", "type": "static"})).await;
    let reviewers = reviewers.assert_ok(201)["data"]["id"].as_i64().unwrap();

    // Event trigger with a property filter → update_traits → add_tag → signed webhook → wait for
    // a review (Yes: into a static segment; No: a 50/50 split, each branch to an exit).
    let design = json!({
        "nodes": [
            {"id": "t", "type": "trigger", "data": {"label": "Big purchase"}},
            {"id": "traits", "type": "action", "data": {"action": "update_traits", "traits": {"vip": true}}},
            {"id": "tag", "type": "action", "data": {"action": "add_tag", "tag": "big-spender"}},
            {"id": "hook", "type": "action", "data": {"action": "webhook", "url": hook_url, "secret": "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXQ=", "body": {"source": "vip-flow"}}},
            {"id": "w", "type": "wait_for_event", "data": {"event": "review", "timeout": "P1D"}},
            {"id": "seg", "type": "action", "data": {"action": "add_to_static_segment", "segment_id": reviewers}},
            {"id": "s", "type": "split", "data": {"branches": [{"label": "A", "percent": 50}, {"label": "B", "percent": 50}]}},
            {"id": "xa", "type": "exit", "data": {}},
            {"id": "xb", "type": "exit", "data": {}}
        ],
        "edges": [
            {"id": "1", "source": "t", "target": "traits"},
            {"id": "2", "source": "traits", "target": "tag"},
            {"id": "3", "source": "tag", "target": "hook"},
            {"id": "4", "source": "hook", "target": "w"},
            {"id": "5", "source": "w", "target": "seg", "label": "Yes"},
            {"id": "6", "source": "w", "target": "s", "label": "No"},
            {"id": "7", "source": "s", "target": "xa", "label": "A"},
            {"id": "8", "source": "s", "target": "xb", "label": "B"}
        ]
    });
    let vip = create_active(
        &app,
        &token,
        json!({"name": "VIP", "trigger_type": "event", "reentry": "every_time",
               "trigger_config": {"event": "purchase", "where": [{"property": "amount", "op": "gt", "value": 100}]},
               "design": design}),
    )
    .await;
    let vip = vip["id"].as_i64().unwrap();
    let tagger =
        |tag: &str| linear(json!({"label": "go"}), &[("a", "action", json!({"action": "add_tag", "tag": tag}))]);
    let rfm = create_active(
        &app,
        &token,
        json!({"name": "RFM", "trigger_type": "rfm_changed", "reentry": "every_time", "design": tagger("scored")}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let ana = customer(&app, &token, json!({"email": "ana@example.com", "name": "Ana"})).await;
    let ben = customer(&app, &token, json!({"email": "ben@example.com", "name": "Ben"})).await;
    track(
        &app,
        &key,
        vec![
            event("ana@example.com", "purchase", t0, "p1", json!({"amount": 50.0})),
            event("ana@example.com", "purchase", t0, "p2", json!({"amount": 150.0})),
            event("ben@example.com", "purchase", t0, "p3", json!({"amount": 500.0})),
        ],
    )
    .await;
    let waiting = runs_with(&app, &token, vip, "waiting", 2).await;
    assert!(waiting.iter().all(|r| r["node"] == "w" && r["wait_event"] == "review"), "{waiting:?}");
    assert_eq!(
        waiting.iter().filter(|r| r["customer_id"] == ana).count(),
        1,
        "the 50.00 purchase does not match: {waiting:?}"
    );
    let profile = app.get(&format!("/v1/customers/{ana}"), &token).await.assert_ok(200)["data"].clone();
    assert_eq!(profile["traits"]["vip"], true, "{profile}");
    assert!(profile["traits"]["tags"].as_array().unwrap().contains(&json!("big-spender")), "{profile}");

    // The webhook step was delivered, signed with the node's secret (Standard Webhooks).
    let got = wait(Duration::from_secs(20), || async {
        let g = hooks.lock().unwrap().clone();
        (g.len() == 2).then_some(g)
    })
    .await;
    for (headers, body) in &got {
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["event"], "automation.webhook");
        assert_eq!(v["data"]["source"], "vip-flow");
        assert_eq!(v["data"]["automation_id"], vip);
        let id = headers["webhook-id"].to_str().unwrap();
        let ts: i64 = headers["webhook-timestamp"].to_str().unwrap().parse().unwrap();
        let expected = cairn_channels::signing::standard_signature("whsec_dGVzdHNlY3JldHRlc3RzZWNyZXQ=", id, ts, body);
        assert!(headers["webhook-signature"].to_str().unwrap().split(' ').any(|s| s == expected), "{headers:?}");
    }

    // Ana reviews: her wait ends on Yes. Ben's times out a day later: No → the split → an exit.
    track(
        &app,
        &key,
        vec![event("ana@example.com", "review", t0 + chrono::Duration::hours(2), "r1", json!({"stars": 5}))],
    )
    .await;
    app.clock.set(t0 + chrono::Duration::hours(3));
    let completed = runs_with(&app, &token, vip, "completed", 1).await;
    assert_eq!(completed[0]["customer_id"], ana);
    let members = app.get(&format!("/v1/segments/{reviewers}/customers"), &token).await.assert_ok(200)["data"].clone();
    assert_eq!(members.as_array().unwrap().len(), 1, "{members}");
    assert!(outbox(&app, "customer.segment_entered").await.iter().any(|p| p["segment_id"] == reviewers));
    app.clock.set(t0 + chrono::Duration::days(1) + chrono::Duration::minutes(1));
    let exited = runs_with(&app, &token, vip, "exited", 1).await;
    let detail = run_detail(&app, &token, exited[0]["id"].as_i64().unwrap()).await;
    let tail: Vec<(String, String)> = outcomes(&detail)[5..].to_vec();
    assert_eq!(tail[0], ("w".to_string(), "no".to_string()));
    assert_eq!(tail[1].0, "s");
    let branch = tail[1].1.clone();
    assert_eq!(tail[2], (format!("x{branch}"), "exited".to_string()), "the split's branch leads to its exit");
    assert_eq!(detail["steps"][6]["detail"]["branch"].as_str().unwrap().to_ascii_lowercase(), branch);

    // Segment entered (a static segment's new member), manual, webhook and RFM triggers.
    let club = app.post("/v1/segments", &token, json!({"name": "Club", "type": "static"})).await;
    let club = club.assert_ok(201)["data"]["id"].as_i64().unwrap();
    let joined = create_active(
        &app,
        &token,
        // The trigger's configuration kept in the trigger node's data, as a builder does.
        json!({"name": "Joined", "trigger_type": "segment_entered", "design": linear(json!({"label": "Joined the club",
               "segment_id": club}), &[("a", "action", json!({"action": "add_tag", "tag": "club"}))])}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let manual = create_active(
        &app,
        &token,
        json!({"name": "Manual", "trigger_type": "manual", "reentry": "once", "design": tagger("manual")}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let hooked = create_active(
        &app,
        &token,
        json!({"name": "Inbound", "trigger_type": "webhook", "design":
               linear(json!({}), &[("e", "action", json!({"action": "enroll", "automation_id": manual}))])}),
    )
    .await;
    let cy = customer(&app, &token, json!({"email": "cy@example.com", "name": "Cy"})).await;
    app.post(&format!("/v1/segments/{club}/members"), &token, json!({"customer_ids": [cy]})).await.assert_ok(200);
    runs_with(&app, &token, joined, "completed", 1).await;

    let r = app.post(&format!("/v1/automations/{manual}/enroll"), &token, json!({"customer_ids": [cy]})).await;
    assert_eq!(r.assert_ok(202)["data"][0]["customer_id"], cy);
    let r = app.post(&format!("/v1/automations/{manual}/enroll"), &token, json!({"customer_ids": [cy]})).await;
    assert_eq!(r.assert_ok(202)["data"], json!([]), "re-entry \"once\": never twice");
    app.post(&format!("/v1/automations/{manual}/enroll"), &token, json!({"customer_ids": [999_999]}))
        .await
        .assert_error(400, "VALIDATION_ERROR");

    let url = hooked["webhook_url"].as_str().unwrap();
    let path = &url[url.find("/hooks/").unwrap()..];
    let r = app.call(reqwest::Method::POST, path, None, Some(json!({"email": "ben@example.com"}))).await;
    assert_eq!(r.assert_ok(202)["data"][0]["customer_id"], ben);
    app.call(reqwest::Method::POST, "/hooks/automations/awh_nope", None, Some(json!({"email": "ben@example.com"})))
        .await
        .assert_error(404, "NOT_FOUND");
    // The inbound run enrolled Ben in the manual automation (the enroll action).
    runs_with(&app, &token, manual, "completed", 2).await;

    // Scores: Ana's and Ben's first purchases gave them RFM scores → rfm_changed.
    let scored = wait(Duration::from_secs(30), || async {
        let r = app.get(&format!("/v1/automations/{rfm}/runs?status=completed"), &token).await;
        (r.body["pagination"]["total"].as_i64() >= Some(2)).then_some(r.body["data"].clone())
    })
    .await;
    assert!(scored.as_array().unwrap().iter().any(|r| r["customer_id"] == ana), "{scored}");
    let cy_profile = app.get(&format!("/v1/customers/{cy}"), &token).await.assert_ok(200)["data"].clone();
    assert_eq!(cy_profile["traits"]["tags"], json!(["club", "manual"]), "{cy_profile}");
    let ana_profile = app.get(&format!("/v1/customers/{ana}"), &token).await.assert_ok(200)["data"].clone();
    let mut tags: Vec<&str> =
        ana_profile["traits"]["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    tags.sort();
    assert_eq!(tags, ["big-spender", "scored"], "{ana_profile}");
}

async fn schedule_and_date_triggers_fire_on_the_clock(backend: Backend) {
    let app = spawn_channels(backend, Defaults::default()).await;
    let token = app.register("owner@shop.test", "Shop").await;
    let t0 = Utc.with_ymd_and_hms(2026, 6, 1, 8, 0, 0).unwrap();
    app.clock.set(t0);
    let ana =
        customer(&app, &token, json!({"email": "ana@example.com", "traits": {"renewal_date": "2026-06-09"}})).await;
    let ben =
        customer(&app, &token, json!({"email": "ben@example.com", "traits": {"renewal_date": "2026-07-01"}})).await;
    let seg = app.post("/v1/segments", &token, json!({"name": "Newsletter", "type": "static"})).await;
    let seg = seg.assert_ok(201)["data"]["id"].as_i64().unwrap();
    app.post(&format!("/v1/segments/{seg}/members"), &token, json!({"customer_ids": [ana, ben]})).await.assert_ok(200);

    // Every day at 09:00 Paris time (07:00 UTC in June), enroll the segment; a delay until a
    // weekday and time in the customer's zone follows.
    let weekly = create_active(
        &app,
        &token,
        json!({"name": "Daily", "trigger_type": "schedule", "reentry": "every_time",
               "trigger_config": {"cron": "0 9 * * *", "timezone": "Europe/Paris", "segment_id": seg},
               "design": linear(json!({}), &[
                   ("d", "delay", json!({"until": {"time": "10:00", "weekdays": ["fri"], "timezone": "workspace"}})),
                   ("a", "action", json!({"action": "add_tag", "tag": "friday"}))])}),
    )
    .await;
    assert_eq!(weekly["next_tick_at"], "2026-06-02T07:00:00Z");
    let weekly = weekly["id"].as_i64().unwrap();
    // A week before the renewal date.
    let renewal = create_active(
        &app,
        &token,
        json!({"name": "Renewal", "trigger_type": "date_property",
               "trigger_config": {"trait": "renewal_date", "offset_days": -7},
               "design": linear(json!({}), &[("a", "action", json!({"action": "update_traits", "traits": {"renewal_reminded": true}}))])}),
    )
    .await["id"]
        .as_i64()
        .unwrap();

    app.clock.set(Utc.with_ymd_and_hms(2026, 6, 2, 7, 0, 30).unwrap());
    let waiting = runs_with(&app, &token, weekly, "waiting", 2).await;
    // Tuesday 2 June → Friday 5 June, 10:00 UTC.
    assert_eq!(waiting[0]["due_at"], "2026-06-05T10:00:00Z");
    // The date trigger ran at 00:05 on 2 June: Ana's renewal (9 June) is 7 days away.
    let done = runs_with(&app, &token, renewal, "completed", 1).await;
    assert_eq!(done[0]["customer_id"], ana);
    app.clock.set(Utc.with_ymd_and_hms(2026, 6, 5, 10, 0, 1).unwrap());
    // The tick of 3 June (fired late, at this clock jump) enrolled them again: they wait for
    // the next Friday; the first two are done.
    runs_with(&app, &token, weekly, "completed", 2).await;
    let profile = app.get(&format!("/v1/customers/{ana}"), &token).await.assert_ok(200)["data"].clone();
    assert_eq!(profile["traits"]["renewal_reminded"], true);
    assert_eq!(profile["traits"]["tags"], json!(["friday"]));
    let a = app.get(&format!("/v1/automations/{weekly}"), &token).await.assert_ok(200)["data"].clone();
    assert_eq!(a["next_tick_at"], "2026-06-06T07:00:00Z");
}

async fn versions_migration_reentry_exit_goals_and_validation(backend: Backend) {
    let app = spawn_channels(backend, Defaults::default()).await;
    let token = app.register("owner@shop.test", "Shop").await;
    let key = app.create_key(&token, json!({"name": "server", "type": "secret"})).await.1;
    let t0 = Utc.with_ymd_and_hms(2026, 6, 1, 10, 0, 0).unwrap();
    app.clock.set(t0);

    // Validation lists every problem with its node id, and changes nothing.
    let bad = json!({
        "nodes": [
            {"id": "t", "type": "trigger"}, {"id": "t2", "type": "trigger"},
            {"id": "d", "type": "delay", "data": {"duration": "later"}},
            {"id": "c", "type": "condition", "data": {"filter": {"field": "traits.plan", "op": "eq", "value": "pro"}}},
            {"id": "x", "type": "exit"}
        ],
        "edges": [
            {"id": "e1", "source": "t", "target": "d"}, {"id": "e2", "source": "d", "target": "c"},
            {"id": "e3", "source": "c", "target": "d", "label": "Yes"}, {"id": "e4", "source": "c", "target": "ghost", "label": "No"}
        ]
    });
    let r = app.post("/v1/automations/validate", &token, bad).await;
    r.assert_error(400, "VALIDATION_ERROR");
    let fields: Vec<&str> = r.body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    for f in
        ["nodes.d.data.duration", "nodes.t2.type", "edges.e4.target", "nodes.d.edges", "nodes.c.edges", "nodes.x.edges"]
    {
        assert!(fields.contains(&f), "{f} not in {fields:?}");
    }
    app.post("/v1/automations", &token, json!({"name": "x", "trigger_type": "telepathy"}))
        .await
        .assert_error(400, "VALIDATION_ERROR");
    let r = app
        .post(
            "/v1/automations",
            &token,
            json!({"name": "x", "trigger_type": "segment_entered",
        "design": linear(json!({}), &[("a", "action", json!({"action": "add_tag", "tag": "x"}))])}),
        )
        .await;
    let id = r.assert_ok(201)["data"]["id"].as_i64().unwrap();
    let r = app.post(&format!("/v1/automations/{id}/activate"), &token, json!({})).await;
    r.assert_error(400, "VALIDATION_ERROR");
    assert_eq!(r.body["field"], "trigger_config.segment_id");

    // Version 1: wait a day, then tag "v1". Exit goal: a purchase.
    let flow = |tag: &str| {
        linear(
            json!({}),
            &[("d", "delay", json!({"duration": "1d"})), ("a", "action", json!({"action": "add_tag", "tag": tag}))],
        )
    };
    let a = create_active(
        &app,
        &token,
        json!({"name": "Nurture", "trigger_type": "manual", "reentry": "once_at_a_time",
               "exit_filter": {"event": "purchase"}, "design": flow("v1")}),
    )
    .await;
    let id = a["id"].as_i64().unwrap();
    let ana = customer(&app, &token, json!({"email": "ana@example.com"})).await;
    let ben = customer(&app, &token, json!({"email": "ben@example.com"})).await;
    let cy = customer(&app, &token, json!({"email": "cy@example.com"})).await;
    let r = app.post(&format!("/v1/automations/{id}/enroll"), &token, json!({"customer_ids": [ana, ben, cy]})).await;
    assert_eq!(r.assert_ok(202)["data"].as_array().unwrap().len(), 3);
    let r = app.post(&format!("/v1/automations/{id}/enroll"), &token, json!({"customer_ids": [ana]})).await;
    assert_eq!(r.assert_ok(202)["data"], json!([]), "once at a time: not while a run is in flight");
    runs_with(&app, &token, id, "waiting", 3).await;

    // An invalid design on an active automation is refused; version 1 keeps running.
    let mut broken = flow("v2");
    broken["nodes"][1]["data"] = json!({"duration": "whenever"});
    app.post(&format!("/v1/automations/{id}/design"), &token, broken).await.assert_error(400, "VALIDATION_ERROR");
    assert_eq!(app.get(&format!("/v1/automations/{id}"), &token).await.body["data"]["version"], 1);
    // A valid edit publishes version 2; the runs in flight stay on version 1 …
    let a = app.post(&format!("/v1/automations/{id}/design"), &token, flow("v2")).await.assert_ok(200)["data"].clone();
    assert_eq!((a["version"].clone(), a["active_version"].clone()), (json!(2), json!(2)));
    let v1: Vec<Value> = runs_with(&app, &token, id, "waiting", 3).await;
    assert!(v1.iter().all(|r| r["version"] == 1));
    // … unless migrated: Ben's and Cy's move to version 2 at its delay node (Ana's too).
    let r = app
        .post(&format!("/v1/automations/{id}/migrate"), &token, json!({"from_version": 1, "mapping": {"d": "d"}}))
        .await;
    assert_eq!(r.assert_ok(200)["data"]["migrated"], 3);
    app.post(&format!("/v1/automations/{id}/migrate"), &token, json!({"from_version": 1, "mapping": {"d": "nowhere"}}))
        .await
        .assert_error(400, "VALIDATION_ERROR");

    // Ana buys (the goal): she leaves. Cy opts out of everything … this flow sends nothing, so
    // she stays. Ben is cancelled by hand.
    track(
        &app,
        &key,
        vec![event("ana@example.com", "purchase", t0 + chrono::Duration::hours(1), "p-ana", json!({"amount": 10.0}))],
    )
    .await;
    app.wait_for_events(1, 1).await;
    let r = app.post(&format!("/v1/automations/{id}/cancel-runs"), &token, json!({"customer_id": ben})).await;
    assert_eq!(r.assert_ok(200)["data"]["cancelled"], 1);
    app.clock.set(t0 + chrono::Duration::days(1) + chrono::Duration::seconds(5));
    let exited = runs_with(&app, &token, id, "exited", 1).await;
    assert_eq!(exited[0]["customer_id"], ana);
    let detail = run_detail(&app, &token, exited[0]["id"].as_i64().unwrap()).await;
    assert_eq!(outcomes(&detail).last().unwrap(), &("d".to_string(), "goal_reached".to_string()));
    let done = runs_with(&app, &token, id, "completed", 1).await;
    assert_eq!(done[0]["customer_id"], cy);
    let tags = app.get(&format!("/v1/customers/{cy}"), &token).await.body["data"]["traits"]["tags"].clone();
    assert_eq!(tags, json!(["v2"]), "migrated runs finish on version 2");
    runs_with(&app, &token, id, "cancelled", 1).await;

    // Once the run is over, Ana may enter again (once at a time); deactivated, nobody may.
    let r = app.post(&format!("/v1/automations/{id}/enroll"), &token, json!({"customer_ids": [ana]})).await;
    assert_eq!(r.assert_ok(202)["data"].as_array().unwrap().len(), 1);
    app.post(&format!("/v1/automations/{id}/deactivate"), &token, json!({})).await.assert_ok(200);
    app.post(&format!("/v1/automations/{id}/enroll"), &token, json!({"customer_ids": [ben]}))
        .await
        .assert_error(409, "CONFLICT");
    let r = app.get(&format!("/v1/automations/{id}/runs?status=bogus"), &token).await;
    r.assert_error(400, "VALIDATION_ERROR");
    let r = app.get(&format!("/v1/automations/{id}/runs?node=d"), &token).await;
    assert!(r.assert_ok(200)["pagination"]["total"].as_i64().unwrap() >= 1);
    app.delete(&format!("/v1/automations/{id}"), &token).await;
    app.get(&format!("/v1/automations/{id}"), &token).await.assert_error(404, "NOT_FOUND");
}

async fn runs_leave_when_the_customer_is_deleted_or_opts_out(backend: Backend) {
    let app = spawn_channels(backend, Defaults::default()).await;
    let token = app.register("owner@shop.test", "Shop").await;
    let t0 = Utc.with_ymd_and_hms(2026, 6, 1, 10, 0, 0).unwrap();
    app.clock.set(t0);
    let flow = linear(
        json!({}),
        &[
            ("d", "delay", json!({"duration": "1d"})),
            (
                "mail",
                "action",
                json!({"action": "send_email", "subject": "Hi", "body": "<p>Hi</p>", "from_email": "a@shop.test"}),
            ),
        ],
    );
    let id = create_active(&app, &token, json!({"name": "Mailer", "trigger_type": "manual", "design": flow})).await
        ["id"]
        .as_i64()
        .unwrap();
    let ana = customer(&app, &token, json!({"email": "ana@example.com"})).await;
    let ben = customer(&app, &token, json!({"email": "ben@example.com"})).await;
    let cy = customer(&app, &token, json!({"email": "cy@example.com"})).await;
    app.post(&format!("/v1/automations/{id}/enroll"), &token, json!({"customer_ids": [ana, ben, cy]}))
        .await
        .assert_ok(202);
    runs_with(&app, &token, id, "waiting", 3).await;
    app.put(&format!("/v1/customers/{ana}"), &token, json!({"traits": {"email_consent": false}})).await.assert_ok(200);
    app.delete(&format!("/v1/customers/{ben}"), &token).await;
    app.clock.set(t0 + chrono::Duration::days(1) + chrono::Duration::seconds(1));
    let exited = runs_with(&app, &token, id, "exited", 2).await;
    for r in &exited {
        let detail = run_detail(&app, &token, r["id"].as_i64().unwrap()).await;
        let last = outcomes(&detail).last().unwrap().1.clone();
        let want = if r["customer_id"] == ana { "unsubscribed" } else { "customer_deleted" };
        assert_eq!(last, want, "{detail}");
    }
    let done = runs_with(&app, &token, id, "completed", 1).await;
    assert_eq!(done[0]["customer_id"], cy);
}

/// Two automations update the same customers' traits at the same moment: their runs move in one
/// batch (on PostgreSQL the batch's patches are one statement, merged per customer in order),
/// and every patch lands, a later run's value winning for a key both set.
async fn trait_updates_of_one_batch_land_in_order(backend: Backend) {
    let app = spawn_channels(backend, Defaults::default()).await;
    let token = app.register("owner@shop.test", "Shop").await;
    let t0 = Utc.with_ymd_and_hms(2026, 6, 1, 10, 0, 0).unwrap();
    app.clock.set(t0);
    let ana = customer(&app, &token, json!({"email": "ana@example.com", "traits": {"plan": "pro"}})).await;
    let ben = customer(&app, &token, json!({"email": "ben@example.com"})).await;
    let mut flows = Vec::new();
    for (name, traits) in [("First", json!({"a": 1, "n": 1})), ("Second", json!({"b": 2, "n": 2}))] {
        let design = linear(
            json!({}),
            &[
                ("d", "delay", json!({"duration": "1d"})),
                ("set", "action", json!({"action": "update_traits", "traits": traits})),
            ],
        );
        let body = json!({"name": name, "trigger_type": "manual", "design": design});
        let id = create_active(&app, &token, body).await["id"].as_i64().unwrap();
        app.post(&format!("/v1/automations/{id}/enroll"), &token, json!({"customer_ids": [ana, ben]}))
            .await
            .assert_ok(202);
        runs_with(&app, &token, id, "waiting", 2).await;
        flows.push(id);
    }
    app.clock.set(t0 + chrono::Duration::days(1) + chrono::Duration::seconds(1));
    for id in &flows {
        runs_with(&app, &token, *id, "completed", 2).await;
    }
    for (c, plan) in [(ana, json!("pro")), (ben, Value::Null)] {
        let traits = app.get(&format!("/v1/customers/{c}"), &token).await.assert_ok(200)["data"]["traits"].clone();
        assert_eq!(
            (&traits["a"], &traits["b"], &traits["n"], &traits["plan"]),
            (&json!(1), &json!(2), &json!(2), &plan),
            "{traits}"
        );
    }
}

/// Tag steps of many runs in one batch (on PostgreSQL one statement for the customers whose only
/// trait change is one tag) leave every profile as the step-by-step path would: the tag moves to
/// the end of the list, a `tags` that is not a list counts as empty, other elements and traits
/// stay, and a customer with a tag and a patch in the same batch gets both.
async fn tag_steps_of_one_batch_land_as_one_at_a_time(backend: Backend) {
    let app = spawn_channels(backend, Defaults::default()).await;
    let token = app.register("owner@shop.test", "Shop").await;
    let t0 = Utc.with_ymd_and_hms(2026, 6, 1, 10, 0, 0).unwrap();
    app.clock.set(t0);
    let traits = [
        json!({"plan": "pro", "tags": ["vip", "new"]}),
        json!({"tags": "not-a-list"}),
        json!({}),
        json!({"tags": ["vip", "x", {"k": 1}, "vip"]}),
        json!({"plan": "free"}),
    ];
    let mut ids = Vec::new();
    for (i, t) in traits.into_iter().enumerate() {
        ids.push(customer(&app, &token, json!({"email": format!("c{i}@example.com"), "traits": t})).await);
    }
    let (ana, ben, cy, dee, ed) = (ids[0], ids[1], ids[2], ids[3], ids[4]);
    let mut flows = Vec::new();
    for (name, action, who) in [
        ("Tag", json!({"action": "add_tag", "tag": "vip"}), vec![ana, ben, cy, ed]),
        ("Untag", json!({"action": "remove_tag", "tag": "vip"}), vec![dee]),
        ("Patch", json!({"action": "update_traits", "traits": {"p": 1}}), vec![ed]),
    ] {
        let design = linear(json!({}), &[("d", "delay", json!({"duration": "1d"})), ("act", "action", action)]);
        let body = json!({"name": name, "trigger_type": "manual", "design": design});
        let id = create_active(&app, &token, body).await["id"].as_i64().unwrap();
        app.post(&format!("/v1/automations/{id}/enroll"), &token, json!({"customer_ids": who})).await.assert_ok(202);
        runs_with(&app, &token, id, "waiting", who.len() as i64).await;
        flows.push((id, who.len() as i64));
    }
    app.clock.set(t0 + chrono::Duration::days(1) + chrono::Duration::seconds(1));
    for (id, n) in &flows {
        runs_with(&app, &token, *id, "completed", *n).await;
    }
    let expected = [
        (ana, json!({"plan": "pro", "tags": ["new", "vip"]})),
        (ben, json!({"tags": ["vip"]})),
        (cy, json!({"tags": ["vip"]})),
        (dee, json!({"tags": ["x", {"k": 1}]})),
        (ed, json!({"plan": "free", "tags": ["vip"], "p": 1})),
    ];
    for (c, want) in expected {
        let traits = app.get(&format!("/v1/customers/{c}"), &token).await.assert_ok(200)["data"]["traits"].clone();
        assert_eq!(traits, want, "customer {c}");
    }
}

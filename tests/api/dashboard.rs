//! The dashboard (issue 11, docs/dashboard.md), in Debian's headless Chromium against a real
//! server on both stores, driven by tests/browser/dashboard.mjs: register, create a key, ingest
//! through the API and find the customer; build a segment with its live count; build seed 003's
//! welcome automation by dragging and clicking, save, reload and get the same JSON back; see the
//! draft's problems on its nodes, configure and activate it; create a campaign, preview it for the
//! customer and send it to a real SMTP server on loopback; convert a lead; drag a deal across the
//! Kanban; and open every other page without an error. What the clicks did is checked here
//! through the API and the SMTP server.

use std::{process::Command, time::Duration};

use cairn_campaigns::settings::Defaults;
use cairn_channels::email::SmtpSettings;
use reqwest::Method;
use serde_json::{json, Value};

use crate::{
    campaigns::smtp::SmtpSink,
    common::{spawn_channels, Backend, TestApp},
};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

crate::on_both_stores!(the_dashboard_works_end_to_end_in_a_real_browser);

/// Runs the browser script; returns what it saw. `shots`: where to keep screenshots.
pub async fn drive(app: &TestApp, shots: Option<&str>) -> Value {
    let base = app.base.clone();
    let shots = shots.map(str::to_string);
    let run = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new("node");
        cmd.arg(format!("{ROOT}/tests/browser/dashboard.mjs")).arg(&base);
        if let Some(dir) = shots {
            cmd.arg(dir);
        }
        cmd.output().expect("node")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "the browser run failed: {stderr}");
    serde_json::from_slice(run.stdout.trim_ascii())
        .unwrap_or_else(|_| panic!("{}\n{stderr}", String::from_utf8_lossy(&run.stdout)))
}

async fn the_dashboard_works_end_to_end_in_a_real_browser(backend: Backend) {
    let sink = SmtpSink::start(None);
    let smtp = SmtpSettings::parse(&format!("smtp://127.0.0.1:{}?tls=none", sink.port)).unwrap();
    let app = spawn_channels(backend, Defaults { smtp: Some(smtp), sms: None }).await;
    let shots = std::env::var("CAIRN_SCREENSHOTS").ok().filter(|_| backend == Backend::Sqlite);
    let seen = drive(&app, shots.as_deref()).await;
    assert!(seen.get("failure").is_none(), "the browser run stopped: {}\nsteps: {}", seen["failure"], seen["steps"]);
    assert_eq!(seen["errors"], json!([]), "errors in the page: {seen}");

    // Registration refused a short password with the field named, then signed in.
    let short = seen["short_password_error"].as_str().unwrap();
    assert!(short.contains("password"), "{short}");
    let login = app
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({"email": "ana@shop.test", "password": "correct horse battery"})),
        )
        .await;
    let token = login.assert_ok(200)["token"].as_str().unwrap().to_string();
    assert_eq!(seen["key_prefix"], "eck_");
    let keys = app.get("/v1/api-keys", &token).await;
    let keys = keys.assert_ok(200)["data"].as_array().unwrap().clone();
    let names: Vec<&str> = keys.iter().map(|k| k["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["backend"], "the second key was revoked from the list");

    // The customer the events made was found and opened.
    let customer = seen["customer_id"].as_i64().unwrap();
    let c = app.get(&format!("/v1/customers/{customer}"), &token).await;
    assert_eq!(c.assert_ok(200)["data"]["email"], "marko@example.com");
    assert_eq!(seen["profile_email"], "marko@example.com");
    assert_eq!(seen["profile_has_purchase"], true);

    // The segment built in the builder holds its filter and its member.
    assert_eq!(seen["preview_count"], "1");
    assert_eq!(seen["edit_value"], "marko", "the saved filter opens in the builder");
    assert_eq!(seen["rfm_cell_customers"], json!(["marko@example.com"]), "the R×F cell's customers");
    assert_eq!(seen["recompute"], "done", "a recompute started from the grid, followed to its end");
    let seg = app.get(&format!("/v1/segments/{}", seen["segment_id"]), &token).await;
    let seg = seg.assert_ok(200)["data"].clone();
    assert_eq!(seg["name"], "Marko fans");
    assert_eq!(
        seg["filters"],
        json!({"all": [
            {"field": "email", "op": "contains", "value": "marko"},
            {"event": "purchase", "last": {"within_days": 30}}
        ]})
    );
    assert_eq!(seen["preview_with_purchase"], "1", "{seen}");

    // Seed 003's automation: the JSON saved from the builder, read back after a reload, is the
    // seed's; the reloaded builder drew all of it.
    assert_eq!(seen["design_after_reload"]["data"], crate::automations::seed_design(), "{seen}");
    assert_eq!(seen["nodes_drawn_after_reload"], 6);
    assert_eq!(seen["edges_drawn_after_reload"], 5);
    assert_eq!(seen["edge_label_offered"], "Yes");
    // Activating the draft listed what is missing on the nodes that lack it.
    assert_eq!(seen["invalid_nodes"], json!(["a1", "a2", "a3", "c1"]), "{seen}");
    assert_eq!(seen["automation_active"], true);
    let design = app.get(&format!("/v1/automations/{}/design", seen["automation_id"]), &token).await;
    let design = design.assert_ok(200)["data"].clone();
    let a1 = design["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "a1").unwrap().clone();
    assert_eq!(a1["data"]["action"], "send_email");
    assert_eq!(a1["data"]["subject"], "Welcome, {{ name }}");
    assert_eq!(a1["position"], json!({"x": 250, "y": 120}), "configuring a node leaves where it stands");

    // The active automation ran for the customer created after: the builder counted them at
    // the welcome step and waiting at the delay, and the welcome email reached the SMTP server.
    assert_eq!(seen["counts_a1"], "1 in · 0 waiting · 1 done", "{seen}");
    assert_eq!(seen["counts_d1"], "1 in · 1 waiting · 0 done", "{seen}");
    assert_eq!(seen["run_steps"], json!(["t1", "a1", "d1"]), "the run's history, oldest first");
    let started = std::time::Instant::now();
    while !sink.messages().iter().any(|m| m["data"].as_str().unwrap_or("").contains("Subject: Welcome, Nina")) {
        assert!(started.elapsed() < Duration::from_secs(30), "no welcome email: {:?}", sink.messages());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The campaign: previewed for the customer, sent through the real SMTP server, once.
    assert_eq!(seen["preview_subject"], "Hello Marko Horvat");
    assert_eq!(seen["campaign_sent"], "1", "{}", seen["campaign_stats"]);
    sink.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sale: Vec<Value> = sink
        .messages()
        .into_iter()
        .filter(|m| m["data"].as_str().unwrap_or("").contains("Subject: Hello Marko Horvat"))
        .collect();
    assert_eq!(sale.len(), 1, "{sale:?}");
    assert_eq!(sale[0]["rcpt_tos"], json!(["marko@example.com"]));
    // The test send went to the address typed, marked as a test.
    assert_eq!(seen["test_send"], "Test sent to qa@shop.test.");
    let tests: Vec<Value> = sink.messages().into_iter().filter(|m| m["rcpt_tos"] == json!(["qa@shop.test"])).collect();
    assert_eq!(tests.len(), 1);
    // No customer has that address: `{{ name }}` prints nothing (never "none").
    assert!(tests[0]["data"].as_str().unwrap().contains("Subject: [Test] Hello\r\n"), "{tests:?}");
    // The second campaign was scheduled, then cancelled, and sent nothing.
    let second = app.get(&format!("/v1/campaigns/{}", seen["second_campaign"]), &token).await;
    assert_eq!(second.assert_ok(200)["data"]["status"], "cancelled");
    // The profile's "campaigns received" lists it.
    let msgs = app.get(&format!("/v1/customers/{customer}/messages"), &token).await;
    let msgs = msgs.assert_ok(200)["data"].clone();
    assert_eq!(
        (msgs[0]["campaign_name"].as_str(), msgs[0]["status"].as_str()),
        (Some("Autumn sale"), Some("sent")),
        "{msgs}"
    );
    assert_eq!(seen["profile_messages"], json!(["Autumn sale"]), "{seen}");

    // The lead was converted with a deal, and the deal was dragged to "proposal".
    let leads = app.get("/v1/leads?status=all&search=iva@acme.test", &token).await;
    let lead = leads.assert_ok(200)["data"][0].clone();
    assert_eq!(lead["status"], "converted");
    let acts = app.get(&format!("/v1/leads/{}/activities", lead["id"]), &token).await;
    assert!(acts.assert_ok(200)["data"].as_array().unwrap().iter().any(|a| a["subject"] == "Intro call"));
    // The import: one row written, the row without a usable email reported and skipped.
    assert_eq!(seen["import_status"], "completed", "{seen}");
    assert_eq!(seen["import_report"], "1 created, 0 updated, 1 skipped", "{seen}");
    let luka = app.get("/v1/leads?status=all&search=luka@acme.test", &token).await;
    assert_eq!(luka.assert_ok(200)["data"][0]["company_name"], "Acme");
    assert_eq!(seen["deal_stage_before"], "discovery");
    let deal = app.get(&format!("/v1/deals/{}", seen["deal_id"]), &token).await;
    let deal = deal.assert_ok(200)["data"].clone();
    assert_eq!(deal["name"], "Acme deal");
    assert_eq!(deal["stage"], "proposal");
    assert_eq!(deal["status"], "won", "marked won on its page");

    assert_eq!(seen["webhook_secret_shown"], true);
    let hooks = app.get("/v1/webhooks", &token).await;
    let hook = hooks.assert_ok(200)["data"][0].clone();
    assert_eq!(hook["events"], json!(["customer.created"]));
    let deliveries = app.get(&format!("/v1/webhooks/{}/deliveries", hook["id"]), &token).await;
    assert!(!deliveries.assert_ok(200)["data"].as_array().unwrap().is_empty(), "the ping is in the log");
    assert_eq!(seen["redeliver"], "Queued for redelivery.", "{seen}");

    // Settings and team.
    let ws = app.get("/v1/workspace", &token).await;
    assert_eq!(ws.assert_ok(200)["data"]["time_zone"], "Europe/Zagreb");
    let bad = seen["bad_time_zone"].as_str().unwrap();
    assert!(bad.contains("time zone"), "{bad}");
    let email = app.get("/v1/settings/email", &token).await;
    let email = email.assert_ok(200)["data"].clone();
    assert_eq!(
        (email["from_name"].as_str(), email["from_email"].as_str()),
        (Some("Shop News"), Some("news@shop.test"))
    );
    assert_eq!(seen["sms_saved"], "Saved.");
    let sms = app.get("/v1/settings/sms", &token).await;
    let sms = sms.assert_ok(200)["data"].clone();
    assert_eq!(sms["account_sid"], "AC123");
    assert_eq!(sms["auth_token_set"], true, "the token is kept, never shown back");
    let pipes = app.get("/v1/pipelines", &token).await;
    let partnerships =
        pipes.assert_ok(200)["data"].as_array().unwrap().iter().find(|p| p["name"] == "Partnerships").cloned();
    let stages: Vec<(Value, Value)> = partnerships.expect("added")["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["key"].clone(), s["probability"].clone()))
        .collect();
    assert_eq!(stages, [(json!("intro"), json!(10)), (json!("pilot"), json!(50)), (json!("signed"), json!(90))]);
    let fields = app.get("/v1/custom-fields?entity_type=lead", &token).await;
    assert_eq!(fields.assert_ok(200)["data"][0]["key"], "industry");
    let invites = app.get("/v1/invitations", &token).await;
    let invite = invites.assert_ok(200)["data"][0].clone();
    assert_eq!((invite["email"].as_str(), invite["role"].as_str()), (Some("colleague@shop.test"), Some("admin")));
    assert!(seen["invite_link"].as_str().unwrap().contains("/app#/invite/"), "{}", seen["invite_link"]);
    assert!(seen["colleague_nav"].as_str().unwrap().contains("colleague@shop.test"), "{seen}");
    let users = app.get("/v1/users", &token).await;
    let colleague =
        users.assert_ok(200)["data"].as_array().unwrap().iter().find(|u| u["email"] == "colleague@shop.test").cloned();
    assert_eq!(colleague.expect("the colleague joined")["role"], "admin");
}

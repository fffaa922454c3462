//! Outbound webhooks against a real HTTP receiver on loopback: fan-out from the outbox, the
//! payload, each seed's signature verified the way its receiver would, retries on the
//! schedule (driven by the test clock), 410, slow endpoints, ping, rotation, redelivery.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{body::Bytes, extract::State, http::HeaderMap, routing::post, Router};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::common::{spawn_channels, Backend, TestApp};

#[path = "../support/smtp.rs"]
mod smtp;
use smtp::SmtpSink;

crate::on_both_backends_raw!(a_disabled_endpoints_owners_are_emailed);

crate::on_both_backends!(
    a_new_customer_reaches_the_endpoint_signed_three_ways,
    a_failing_endpoint_is_retried_on_schedule_and_logged,
    a_410_disables_the_endpoint,
    a_slow_endpoint_does_not_delay_the_others,
    ping_rotation_and_redelivery,
    subscriptions_are_validated_against_the_catalogue,
    an_endpoint_failing_for_a_day_is_disabled_after_the_last_retry,
);

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, String)>>>,
    /// Status codes to answer, in order; 200 once exhausted.
    script: Arc<Mutex<Vec<u16>>>,
    delay: Arc<Mutex<Duration>>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> axum::http::StatusCode {
    let delay = *r.delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    r.got.lock().unwrap().push((headers, String::from_utf8_lossy(&body).into_owned()));
    let mut script = r.script.lock().unwrap();
    let code = if script.is_empty() { 200 } else { script.remove(0) };
    axum::http::StatusCode::from_u16(code).unwrap()
}

async fn receiver() -> (String, Receiver) {
    let r = Receiver::default();
    let app = Router::new().route("/hook", post(receive)).with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, r)
}

impl Receiver {
    async fn wait_for(&self, n: usize) -> Vec<(HeaderMap, String)> {
        let started = Instant::now();
        loop {
            let got = self.got.lock().unwrap().clone();
            if got.len() >= n {
                return got;
            }
            assert!(started.elapsed() < Duration::from_secs(15), "only {} of {n} deliveries arrived", got.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or_else(|| panic!("missing header {name}"))
}

async fn create_hook(app: &TestApp, token: &str, url: &str, events: Value) -> (i64, String) {
    let r = app.post("/v1/webhooks", token, json!({"url": url, "events": events})).await;
    let d = &r.assert_ok(201)["data"];
    (d["id"].as_i64().unwrap(), d["secret"].as_str().unwrap().to_string())
}

async fn a_new_customer_reaches_the_endpoint_signed_three_ways(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let (url, rx) = receiver().await;
    let (_, secret) = create_hook(&app, &token, &url, json!(["customer.*"])).await;
    assert!(secret.starts_with("whsec_"));
    assert!(app.get("/v1/webhooks", &token).await.body.to_string().find(&secret).is_none(), "the secret is shown once");
    app.post("/v1/customers", &token, json!({"email": "ana@example.com", "name": "Ana"})).await.assert_ok(201);
    let got = rx.wait_for(1).await;
    let (h, body) = &got[0];
    let v: Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["event"], "customer.created");
    assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v["data"]["customer_email"], "ana@example.com");
    assert!(!body.contains(": "), "compact JSON");

    // Seed 003: crypto.createHmac('sha256', WEBHOOK_SECRET).update(body).digest('hex')
    assert_eq!(header(h, "x-entercrm-signature"), hex::encode(hmac_sha256(secret.as_bytes(), body.as_bytes())));
    // Seed 000: hash_hmac('sha256', $timestamp . '.' . $rawBody, $endpointSecret), within 5 minutes.
    let ts = header(h, "x-tracecrm-timestamp");
    assert_eq!(
        header(h, "x-tracecrm-signature"),
        hex::encode(hmac_sha256(secret.as_bytes(), format!("{ts}.{body}").as_bytes()))
    );
    assert_eq!(header(h, "x-tracecrm-event"), "customer.created");
    assert_eq!(header(h, "x-tracecrm-delivery"), header(h, "webhook-id"));
    // Standard Webhooks: v1,base64(HMAC(base64-decoded secret, id.timestamp.body)).
    let key = base64::engine::general_purpose::STANDARD.decode(secret.trim_start_matches("whsec_")).unwrap();
    let signed = format!("{}.{}.{}", header(h, "webhook-id"), header(h, "webhook-timestamp"), body);
    let expected =
        format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(hmac_sha256(&key, signed.as_bytes())));
    assert!(header(h, "webhook-signature").split(' ').any(|s| s == expected));
}

async fn a_failing_endpoint_is_retried_on_schedule_and_logged(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let (url, rx) = receiver().await;
    *rx.script.lock().unwrap() = vec![500, 503];
    let (id, _) = create_hook(&app, &token, &url, json!(["*"])).await;
    app.post("/v1/customers", &token, json!({"email": "a@example.com"})).await.assert_ok(201);
    rx.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.got.lock().unwrap().len(), 1, "no retry before its time (5 s on the test clock)");
    app.clock.advance(chrono::Duration::seconds(6));
    rx.wait_for(2).await;
    app.clock.advance(chrono::Duration::seconds(301));
    let got = rx.wait_for(3).await;
    assert_eq!(got[0].1, got[2].1, "every attempt sends the same body");
    assert_eq!(header(&got[0].0, "webhook-id"), header(&got[2].0, "webhook-id"), "and the same id, to deduplicate");
    let mut log = Value::Null;
    for _ in 0..100 {
        log = app.get(&format!("/v1/webhooks/{id}/deliveries"), &token).await.body;
        if log["data"][0]["status"] == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let d = &log["data"][0];
    assert_eq!(d["status"], "succeeded", "{log}");
    assert_eq!(d["attempts"], 3);
    assert_eq!(d["status_code"], 200);
    assert!(d["latency_ms"].as_f64().unwrap() >= 0.0);
}

async fn a_410_disables_the_endpoint(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let (url, rx) = receiver().await;
    *rx.script.lock().unwrap() = vec![410];
    let (id, _) = create_hook(&app, &token, &url, json!(["*"])).await;
    app.post("/v1/customers", &token, json!({"email": "a@example.com"})).await.assert_ok(201);
    rx.wait_for(1).await;
    let mut hook = Value::Null;
    for _ in 0..100 {
        hook = app.get(&format!("/v1/webhooks/{id}"), &token).await.body;
        if hook["data"]["status"] == "disabled" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(hook["data"]["status"], "disabled", "{hook}");
    app.post("/v1/customers", &token, json!({"email": "b@example.com"})).await.assert_ok(201);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(rx.got.lock().unwrap().len(), 1, "a disabled endpoint receives nothing new");
    let r = app.put(&format!("/v1/webhooks/{id}"), &token, json!({"status": "active"})).await;
    assert_eq!(r.assert_ok(200)["data"]["status"], "active");

    // The owners are told: here no SMTP server is configured, so the notice stays listed, unsent,
    // saying why.
    let notice = wait_for_notice(&app, &token, "unsent").await;
    assert_eq!(notice["kind"], "webhook.disabled");
    assert!(notice["body"].as_str().unwrap().contains(&url), "{notice}");
    assert!(notice["body"].as_str().unwrap().contains("410 Gone"), "{notice}");
    assert!(notice["last_error"].as_str().unwrap().contains("SMTP"), "{notice}");
}

/// Waits for the workspace's newest notice to reach `status`.
async fn wait_for_notice(app: &TestApp, token: &str, status: &str) -> Value {
    let started = Instant::now();
    loop {
        let r = app.get("/v1/notifications", token).await;
        let list = r.assert_ok(200)["data"].clone();
        if list[0]["status"] == status {
            assert_eq!(list.as_array().unwrap().len(), 1, "one notice: {list}");
            return list[0].clone();
        }
        assert!(started.elapsed() < Duration::from_secs(15), "no {status} notice: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// With an SMTP server, a disabled endpoint's owners get an email (members do not).
async fn a_disabled_endpoints_owners_are_emailed(backend: Backend) {
    let sink = SmtpSink::start(None);
    let smtp = cairn_channels::email::SmtpSettings::parse(&sink.url()).unwrap();
    let app = spawn_channels(backend, cairn_campaigns::settings::Defaults { smtp: Some(smtp), sms: None }).await;
    let token = app.register("owner@company.com", "Acme").await;
    app.post("/v1/invitations", &token, json!({"email": "member@company.com", "role": "member"})).await.assert_ok(201);
    let (url, rx) = receiver().await;
    *rx.script.lock().unwrap() = vec![410];
    let (id, _) = create_hook(&app, &token, &url, json!(["*"])).await;
    app.post("/v1/customers", &token, json!({"email": "a@example.com"})).await.assert_ok(201);
    let notice = wait_for_notice(&app, &token, "sent").await;
    assert_eq!(notice["attempts"], 1);
    let mail = sink.wait_for(1).await;
    assert_eq!(mail.len(), 1, "one owner, one email: {mail:?}");
    assert_eq!(mail[0]["rcpt_tos"], json!(["owner@company.com"]));
    // (Quoted-printable: soft line breaks undone.)
    let data = mail[0]["data"].as_str().unwrap().replace("=\r\n", "").replace("=\n", "");
    assert!(data.contains(&format!("Subject: Webhook endpoint {id} disabled")), "{data}");
    assert!(data.contains(&url), "{data}");
    // Only the owner manages notices.
    let (_, narrow) =
        app.create_key(&token, json!({"name": "n", "type": "secret", "scopes": ["webhooks:manage"]})).await;
    app.get("/v1/notifications", &narrow).await.assert_error(403, "FORBIDDEN");
}

async fn a_slow_endpoint_does_not_delay_the_others(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let (slow_url, slow) = receiver().await;
    *slow.delay.lock().unwrap() = Duration::from_secs(8);
    let (fast_url, fast) = receiver().await;
    create_hook(&app, &token, &slow_url, json!(["*"])).await;
    create_hook(&app, &token, &fast_url, json!(["*"])).await;
    // More events than the whole delivery pool (64): without a per-endpoint share the slow
    // endpoint would hold every slot for 8 s at a time.
    let started = Instant::now();
    for i in 0..80 {
        app.post("/v1/customers", &token, json!({"email": format!("c{i}@example.com")})).await.assert_ok(201);
    }
    fast.wait_for(80).await;
    assert!(started.elapsed() < Duration::from_secs(5), "the healthy endpoint waited {:?}", started.elapsed());
}

async fn ping_rotation_and_redelivery(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let (url, rx) = receiver().await;
    let (id, old) = create_hook(&app, &token, &url, json!(["lead.*"])).await;
    let r = app.post(&format!("/v1/webhooks/{id}/ping"), &token, json!({})).await;
    let delivery = r.assert_ok(202)["data"]["delivery_id"].as_i64().unwrap();
    let got = rx.wait_for(1).await;
    assert_eq!(serde_json::from_str::<Value>(&got[0].1).unwrap()["event"], "webhook.ping");

    let rotated = app.post(&format!("/v1/webhooks/{id}/rotate-secret"), &token, json!({})).await;
    let new = rotated.assert_ok(200)["data"]["secret"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    app.post(&format!("/v1/webhooks/deliveries/{delivery}/redeliver"), &token, json!({})).await.assert_ok(202);
    let got = rx.wait_for(2).await;
    let (h, body) = &got[1];
    let sigs = header(h, "webhook-signature");
    assert_eq!(sigs.split(' ').count(), 2, "old and new secrets both sign for 24 hours");
    assert_eq!(header(h, "x-entercrm-signature"), hex::encode(hmac_sha256(new.as_bytes(), body.as_bytes())));
}

async fn subscriptions_are_validated_against_the_catalogue(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let catalogue = app.get("/v1/webhooks/events", &token).await;
    let names: Vec<&str> =
        catalogue.body["data"].as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap()).collect();
    for e in ["customer.created", "lead.stageChanged", "opportunity.won", "form.submission.created", "webhook.ping"] {
        assert!(names.contains(&e), "{e} missing from the catalogue");
    }
    let r = app
        .post(
            "/v1/webhooks",
            &token,
            json!({"url": "https://x.example/h", "events": ["lead.created", "lead.exploded"]}),
        )
        .await;
    r.assert_error(400, "VALIDATION_ERROR");
    assert_eq!(r.body["field"], "events[1]");
    let r = app.post("/v1/webhooks", &token, json!({"url": "ftp://x.example", "events": ["*"]})).await;
    assert_eq!(r.body["field"], "url");
    let (_, key) = app.create_key(&token, json!({"name": "k", "type": "secret", "scopes": ["leads:read"]})).await;
    app.get("/v1/webhooks", &key).await.assert_error(403, "FORBIDDEN");
}

async fn an_endpoint_failing_for_a_day_is_disabled_after_the_last_retry(app: TestApp) {
    let token = app.register("you@company.com", "Acme").await;
    let (url, rx) = receiver().await;
    *rx.script.lock().unwrap() = vec![500; 8];
    let (id, _) = create_hook(&app, &token, &url, json!(["*"])).await;
    app.post("/v1/customers", &token, json!({"email": "a@example.com"})).await.assert_ok(201);
    for (n, delay) in std::iter::once(0).chain(cairn_channels::webhooks::RETRY_DELAYS).enumerate() {
        app.clock.advance(chrono::Duration::seconds(delay + 1));
        rx.wait_for(n + 1).await;
    }
    let mut hook = Value::Null;
    for _ in 0..100 {
        hook = app.get(&format!("/v1/webhooks/{id}"), &token).await.body;
        if hook["data"]["status"] == "disabled" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(hook["data"]["status"], "disabled", "{hook}");
    assert!(hook["data"]["disabled_reason"].as_str().unwrap().contains("more than a day"));
    let log = app.get(&format!("/v1/webhooks/{id}/deliveries"), &token).await;
    assert_eq!(log.body["data"][0]["status"], "failed");
    assert_eq!(log.body["data"][0]["attempts"], 8);
    assert_eq!(rx.got.lock().unwrap().len(), 8, "eight attempts, no more");
    let notice = wait_for_notice(&app, &token, "unsent").await;
    assert!(notice["body"].as_str().unwrap().contains("more than a day"), "{notice}");
}

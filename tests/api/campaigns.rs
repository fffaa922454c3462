//! Campaigns end to end against real peers, on both entity stores (SQLite + SQLite events,
//! PostgreSQL + ClickHouse): a real SMTP server on loopback (aiosmtpd, tests/support/
//! smtp_sink.py) that stores what it accepts, and a Twilio-compatible provider stand-in (a local
//! HTTP server that records requests and posts signed status callbacks).

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{extract::State, http::HeaderMap, routing::post, Router};
use base64::Engine;
use cairn_campaigns::settings::Defaults;
use cairn_channels::{email::SmtpSettings, sms::SmsSettings};
use chrono::{TimeZone, Utc};
use serde_json::{json, Value};

use crate::common::{spawn_channels, Backend, TestApp};

#[path = "../support/smtp.rs"]
pub(crate) mod smtp;
use smtp::SmtpSink;

crate::on_both_stores!(
    email_campaign_goes_once_to_each_reachable_recipient_with_headers_tracking_and_unsubscribe,
    sms_campaign_goes_through_the_provider_and_callbacks_and_keywords_settle_it,
    drafts_schedules_cancels_settings_audience_and_bounce_intake,
    email_goes_over_starttls_and_implicit_tls_verifying_the_certificate,
);

/// The unfolded value of a header of a raw message.
fn header(raw: &str, name: &str) -> Option<String> {
    let head = raw.split("\r\n\r\n").next().unwrap_or(raw).replace("\r\n ", " ").replace("\r\n\t", " ");
    head.lines()
        .find(|l| l.to_ascii_lowercase().starts_with(&format!("{}:", name.to_ascii_lowercase())))
        .map(|l| l[name.len() + 1..].trim().to_string())
}

/// The decoded text of a MIME part of this content type (quoted-printable or base64).
fn part(raw: &str, content_type: &str) -> String {
    let i = raw.find(&format!("Content-Type: {content_type}")).unwrap_or_else(|| panic!("no {content_type} part"));
    let rest = &raw[i..];
    let (head, body) = rest.split_once("\r\n\r\n").unwrap();
    let body = body.split("\r\n--").next().unwrap();
    if head.contains("base64") {
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(body.replace("\r\n", "")).unwrap()).unwrap()
    } else if head.contains("quoted-printable") {
        let joined = body.replace("=\r\n", "");
        let mut out = Vec::new();
        let b = joined.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'=' && i + 2 < b.len() {
                out.push(u8::from_str_radix(&joined[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    } else {
        body.to_string()
    }
}

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

async fn wait_status(app: &TestApp, token: &str, id: i64, status: &str) -> Value {
    wait(Duration::from_secs(30), || async {
        let c = app.get(&format!("/v1/campaigns/{id}"), token).await.body["data"].clone();
        if std::env::var("CAIRN_TEST_DEBUG").is_ok() {
            eprintln!("{c}");
        }
        assert_ne!(c["status"], "failed", "{c}");
        (c["status"] == status).then_some(c)
    })
    .await
}

async fn customer(app: &TestApp, token: &str, body: Value) -> i64 {
    app.post("/v1/customers", token, body).await.assert_ok(201)["data"]["id"].as_i64().unwrap()
}

async fn static_segment(app: &TestApp, token: &str, ids: &[i64]) -> i64 {
    let s = app.post("/v1/segments", token, json!({"name": "Audience", "type": "static"})).await;
    let id = s.assert_ok(201)["data"]["id"].as_i64().unwrap();
    app.post(&format!("/v1/segments/{id}/members"), token, json!({"customer_ids": ids})).await.assert_ok(200);
    id
}

async fn outbox(app: &TestApp, event: &str) -> Vec<Value> {
    let mut c = app.store.read().await.unwrap();
    let all = c.outbox_after(cairn_domain::TenantId(1), 0, 10_000).await.unwrap();
    all.into_iter().filter(|e| e.event == event).map(|e| e.payload).collect()
}

async fn email_campaign_goes_once_to_each_reachable_recipient_with_headers_tracking_and_unsubscribe(backend: Backend) {
    // The sender pipelines MAIL, RCPT and DATA when the server offers PIPELINING and sends them
    // one by one when it does not: each store's run takes one of the two dialogues, and both meet
    // the same assertions (the refusals at RCPT included).
    let sink = match backend {
        Backend::Sqlite => SmtpSink::start(Some(("mailer", "s3cret"))),
        _ => SmtpSink::start_without_pipelining(Some(("mailer", "s3cret"))),
    };
    let smtp = SmtpSettings::parse(&format!("smtp://mailer:s3cret@127.0.0.1:{}?tls=none", sink.port)).unwrap();
    let app = spawn_channels(backend, Defaults { smtp: Some(smtp), sms: None }).await;
    let token = app.register("owner@shop.test", "Shop").await;
    app.clock.set(Utc.with_ymd_and_hms(2026, 6, 30, 12, 0, 0).unwrap());

    let ana =
        customer(&app, &token, json!({"email": "ana@example.com", "name": "Ana Kovač", "traits": {"plan": "pro"}}))
            .await;
    let ben = customer(&app, &token, json!({"email": "ben@example.com", "name": "Ben"})).await;
    let out =
        customer(&app, &token, json!({"email": "out@example.com", "name": "Out", "traits": {"email_consent": false}}))
            .await;
    let none =
        customer(&app, &token, json!({"user_id": "u-none", "name": "No Address", "phone": "+385911111111"})).await;
    let sup = customer(&app, &token, json!({"email": "suppressed@example.com"})).await;
    let bounce = customer(&app, &token, json!({"email": "bounce@example.com"})).await;
    let temp = customer(&app, &token, json!({"email": "tempfail@example.com", "name": "Tem"})).await;
    app.post("/v1/suppressions", &token, json!({"channel": "email", "address": "Suppressed@example.com"}))
        .await
        .assert_ok(204);
    let seg = static_segment(&app, &token, &[ana, ben, out, none, sup, bounce, temp]).await;

    // Template errors are refused when saved, with line and column.
    let bad = app
        .post(
            "/v1/campaigns",
            &token,
            json!({"name": "Bad", "type": "email", "segment_id": seg, "subject": "Hi",
            "body": "<p>Hi</p>\n<p>{{ name }</p>", "from_email": "hello@shop.test"}),
        )
        .await;
    bad.assert_error(400, "VALIDATION_ERROR");
    assert_eq!(bad.body["field"], "body", "{}", bad.body);
    assert!(bad.body["error"].as_str().unwrap().contains("line 2, column"), "{}", bad.body);
    app.post("/v1/campaigns", &token, json!({"name": "Bad", "type": "fax"}))
        .await
        .assert_error(400, "VALIDATION_ERROR");

    // Seed 003's body.
    let c = app
        .post("/v1/campaigns", &token, json!({
            "name": "Win-Back Offer", "type": "email", "segment_id": seg,
            "subject": "We miss you, {{ first_name | default('friend') }}",
            "body": "<p>Hi {{name}},</p>{% if plan == 'pro' %}<p>Pro perk</p>{% endif %}<p>Use code BACK20 for 20% off your next order. <a href=\"https://shop.test/sale?x=1&amp;y=2\">Shop now</a></p><p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p>",
            "from_name": "EnterCRM Team", "from_email": "hello@shop.test"}))
        .await;
    let c = c.assert_ok(201)["data"].clone();
    assert_eq!(c["status"], "draft");
    let id = c["id"].as_i64().unwrap();

    let preview = app.post(&format!("/v1/campaigns/{id}/preview"), &token, json!({"customer_id": ana})).await;
    let preview = preview.assert_ok(200)["data"].clone();
    assert_eq!(preview["subject"], "We miss you, Ana");
    assert!(preview["body"].as_str().unwrap().contains("<p>Hi Ana Kovač,</p><p>Pro perk</p>"), "{preview}");
    assert!(preview["text"].as_str().unwrap().contains("Shop now (https://shop.test/sale?x=1&y=2)"), "{preview}");

    // A test send goes out at once and records nothing.
    let t = app.post(&format!("/v1/campaigns/{id}/test"), &token, json!({"to": ["qa@shop.test"]})).await;
    assert_eq!(t.assert_ok(200)["data"][0]["sent"], true, "{}", t.body);
    let m = sink.wait_for(1).await;
    assert!(header(m[0]["data"].as_str().unwrap(), "Subject").unwrap().starts_with("[Test]"));
    app.post(&format!("/v1/campaigns/{id}/test"), &token, json!({"to": ["not-an-address"]}))
        .await
        .assert_error(400, "VALIDATION_ERROR");

    let sent = app.post(&format!("/v1/campaigns/{id}/send"), &token, json!({})).await;
    assert_eq!(sent.assert_ok(202)["data"]["status"], "sending");
    app.post(&format!("/v1/campaigns/{id}/send"), &token, json!({})).await.assert_error(409, "CONFLICT");
    let done = wait_status(&app, &token, id, "sent").await;
    let stats = app.get(&format!("/v1/campaigns/{id}/stats"), &token).await.assert_ok(200)["data"].clone();
    assert_eq!(stats["recipients"], 7, "{stats}");
    assert_eq!(stats["sent"], 3, "ana, ben and tempfail (after its 451): {stats}");
    assert_eq!(stats["bounced"], 1, "{stats}");
    assert_eq!(stats["skipped"], 3, "opted out, no address, suppressed: {stats}");
    assert_eq!(done["stats"]["failed"], 0);

    // At the sink: exactly one message per reachable recipient, rendered, with the headers.
    let all = sink.messages();
    let campaign_msgs: Vec<&Value> = all.iter().skip(1).collect();
    let mut by_rcpt: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for m in &campaign_msgs {
        by_rcpt.entry(m["rcpt_tos"][0].as_str().unwrap().to_string()).or_default().push(m);
    }
    assert_eq!(
        by_rcpt.keys().cloned().collect::<Vec<_>>(),
        vec!["ana@example.com", "ben@example.com", "tempfail@example.com"],
        "{all:?}"
    );
    assert!(by_rcpt.values().all(|v| v.len() == 1), "a duplicate reached the sink");
    let raw = by_rcpt["ana@example.com"][0]["data"].as_str().unwrap();
    assert_eq!(header(raw, "Subject").unwrap(), "We miss you, Ana");
    assert!(header(raw, "From").unwrap().contains("hello@shop.test"));
    let mid = header(raw, "Message-ID").unwrap();
    assert!(mid.starts_with(&format!("<c{id}.s")) && mid.ends_with("@shop.test>"), "{mid}");
    let lu = header(raw, "List-Unsubscribe").unwrap();
    assert!(lu.starts_with(&format!("<{}/u/", app.base)), "{lu}");
    assert_eq!(header(raw, "List-Unsubscribe-Post").unwrap(), "List-Unsubscribe=One-Click");
    assert!(header(raw, "Content-Type").unwrap().starts_with("multipart/alternative"));
    let html = part(raw, "text/html");
    let text = part(raw, "text/plain");
    assert!(html.contains("<p>Hi Ana Kovač,</p><p>Pro perk</p>"), "{html}");
    assert!(text.contains("Hi Ana Kovač,") && text.contains("Pro perk"), "{text}");
    assert!(!html.contains("href=\"https://shop.test/sale"), "links are tracked: {html}");

    // The click redirect leads to the original URL and records a click (and an open).
    let click =
        html.split("href=\"").find(|s| s.contains("/t/c/")).unwrap().split('"').next().unwrap().replace("&amp;", "&");
    let no_redirect = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = no_redirect.get(&click).send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "https://shop.test/sale?x=1&y=2");
    let tampered = click.replace("sale%3Fx", "evil%3Fx");
    assert_eq!(no_redirect.get(&tampered).send().await.unwrap().status(), 404, "no open redirect");
    // The open pixel.
    let pixel = html.split("src=\"").find(|s| s.contains("/t/o/")).unwrap().split('"').next().unwrap().to_string();
    let r = reqwest::get(&pixel).await.unwrap();
    assert_eq!(r.headers()["content-type"], "image/gif");
    let ben_raw = by_rcpt["ben@example.com"][0]["data"].as_str().unwrap().to_string();
    let ben_pixel = part(&ben_raw, "text/html")
        .split("src=\"")
        .find(|s| s.contains("/t/o/"))
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    reqwest::get(&ben_pixel).await.unwrap();
    reqwest::get(&ben_pixel).await.unwrap();
    // The opens and clicks are events on the customers (segments and automations see them).
    wait(Duration::from_secs(15), || async {
        let n = app.events.count(cairn_domain::TenantId(1)).await.unwrap();
        if std::env::var("CAIRN_TEST_DEBUG").is_ok() {
            eprintln!("events {n}");
        }
        (n == 3).then_some(())
    })
    .await;
    let stats = app.get(&format!("/v1/campaigns/{id}/stats"), &token).await.body["data"].clone();
    assert_eq!((stats["opened"].as_i64(), stats["clicked"].as_i64()), (Some(2), Some(1)), "{stats}");

    // One-click unsubscribe (RFC 8058): the GET is only a page; the POST takes effect at once.
    let unsub = lu.trim_start_matches('<').split('>').next().unwrap().to_string();
    let page = reqwest::get(&unsub).await.unwrap().text().await.unwrap();
    assert!(page.contains("Win-Back Offer") && page.contains("<form method=\"post\">"), "{page}");
    let form = [("List-Unsubscribe", "One-Click")];
    for _ in 0..2 {
        let r = reqwest::Client::new().post(&unsub).form(&form).send().await.unwrap();
        assert_eq!(r.status(), 200, "idempotent");
    }
    let cu = app.get(&format!("/v1/customers/{ana}"), &token).await.body["data"].clone();
    assert_eq!(cu["traits"]["email_consent"], false, "{cu}");
    let stats = app.get(&format!("/v1/campaigns/{id}/stats"), &token).await.body["data"].clone();
    assert_eq!(stats["unsubscribed"], 1);
    let forged = unsub.replace(&unsub[unsub.len() - 4..], "0000");
    assert_eq!(reqwest::Client::new().post(&forged).send().await.unwrap().status(), 404);
    let sup_list = app.get("/v1/suppressions", &token).await.body["data"].clone();
    let reasons: HashMap<String, String> = sup_list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["address"].as_str().unwrap().to_string(), s["reason"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(reasons.get("ana@example.com").map(String::as_str), Some("unsubscribed"));
    assert_eq!(reasons.get("bounce@example.com").map(String::as_str), Some("hard_bounce"));
    assert_eq!(reasons.get("suppressed@example.com").map(String::as_str), Some("manual"));

    // Recipients say what happened to each.
    let rec = app.get(&format!("/v1/campaigns/{id}/recipients?per_page=100"), &token).await.assert_ok(200).clone();
    let status_of: HashMap<i64, (String, Option<String>)> = rec["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["customer_id"].as_i64().unwrap(),
                (r["status"].as_str().unwrap().into(), r["reason"].as_str().map(Into::into)),
            )
        })
        .collect();
    assert_eq!(status_of[&out], ("skipped".into(), Some("opted_out".into())));
    assert_eq!(status_of[&none], ("skipped".into(), Some("no_address".into())));
    assert_eq!(status_of[&sup], ("skipped".into(), Some("suppressed".into())));
    assert_eq!(status_of[&bounce].0, "bounced");
    assert_eq!(rec["pagination"]["total"], 7);

    // campaign.sent went into the outbox with the counts.
    let ev = outbox(&app, "campaign.sent").await;
    assert_eq!(ev.len(), 1);
    assert_eq!(
        (ev[0]["campaign_id"].as_i64(), ev[0]["sent"].as_i64(), ev[0]["bounced"].as_i64()),
        (Some(id), Some(3), Some(1))
    );

    // A second campaign to the same segment: the unsubscribed and the bounced are skipped now.
    let c2 = app
        .post("/v1/campaigns", &token, json!({"name": "Again", "type": "email", "segment_id": seg, "subject": "Again",
            "body": "<p>Again {{name}}</p>", "from_email": "hello@shop.test", "track_opens": false, "track_clicks": false}))
        .await;
    let id2 = c2.assert_ok(201)["data"]["id"].as_i64().unwrap();
    app.post(&format!("/v1/campaigns/{id2}/send"), &token, json!({})).await.assert_ok(202);
    let done2 = wait_status(&app, &token, id2, "sent").await;
    assert_eq!(done2["stats"]["sent"], 2, "ben and tempfail only: {done2}");
    let latest = sink.messages();
    let again: Vec<&Value> =
        latest.iter().filter(|m| header(m["data"].as_str().unwrap(), "Subject").as_deref() == Some("Again")).collect();
    assert_eq!(again.len(), 2);
    assert!(!part(again[0]["data"].as_str().unwrap(), "text/html").contains("/t/o/"), "tracking was off");
}

/// The provider stand-in: Twilio's Messages API shape; numbers ending in 0000 are refused
/// (400, code 21211); every accepted message gets signed `sent` then `delivered` callbacks.
/// A request the provider got: its form fields and its Authorization header.
type ProviderRequest = (HashMap<String, String>, String);

#[derive(Clone, Default)]
struct Provider {
    requests: Arc<Mutex<Vec<ProviderRequest>>>,
}

const SID: &str = "ACtest0000000000000000000000000000";
const AUTH_TOKEN: &str = "provider-auth-token";

async fn messages_api(
    State(p): State<Provider>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (axum::http::StatusCode, axum::Json<Value>) {
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let n = {
        let mut r = p.requests.lock().unwrap();
        r.push((form.clone(), auth));
        r.len()
    };
    let to = form.get("To").cloned().unwrap_or_default();
    if to.ends_with("0000") {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            axum::Json(
                json!({"code": 21211, "message": "The 'To' number is not a valid phone number.", "status": 400}),
            ),
        );
    }
    let sid = format!("SM{n:032}");
    if let Some(cb) = form.get("StatusCallback").cloned() {
        let sid = sid.clone();
        tokio::spawn(async move {
            for status in ["sent", "delivered"] {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let params: Vec<(String, String)> = vec![
                    ("AccountSid".into(), SID.into()),
                    ("MessageSid".into(), sid.clone()),
                    ("MessageStatus".into(), status.into()),
                    ("To".into(), to.clone()),
                ];
                let sig = cairn_channels::sms::signature(AUTH_TOKEN, &cb, &params);
                let r = reqwest::Client::new()
                    .post(&cb)
                    .header("X-Twilio-Signature", sig)
                    .form(&params)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 204, "callback refused");
            }
        });
    }
    (axum::http::StatusCode::CREATED, axum::Json(json!({"sid": sid, "status": "queued", "to": form.get("To")})))
}

async fn sms_campaign_goes_through_the_provider_and_callbacks_and_keywords_settle_it(backend: Backend) {
    let provider = Provider::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_url = format!("http://{}", listener.local_addr().unwrap());
    let router = Router::new()
        .route("/2010-04-01/Accounts/{sid}/Messages.json", post(messages_api))
        .with_state(provider.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let sms =
        SmsSettings { api_url, account_sid: SID.into(), auth_token: AUTH_TOKEN.into(), from: "+15005550006".into() };
    let app = spawn_channels(backend, Defaults { smtp: None, sms: Some(sms) }).await;
    let token = app.register("owner@shop.test", "Shop").await;

    let ana = customer(&app, &token, json!({"user_id": "u-ana", "phone": "+385911234567", "name": "Ana"})).await;
    let ben = customer(&app, &token, json!({"user_id": "u-ben", "phone": "+385917654321", "name": "Ben"})).await;
    let local = customer(&app, &token, json!({"user_id": "u-local", "phone": "0911234567", "name": "Local"})).await;
    let refused =
        customer(&app, &token, json!({"user_id": "u-refused", "phone": "+385910000000", "name": "Refused"})).await;
    let stopped = customer(
        &app,
        &token,
        json!({"user_id": "u-stopped", "phone": "+385915555555", "name": "Stopped", "traits": {"sms_consent": false}}),
    )
    .await;
    let seg = static_segment(&app, &token, &[ana, ben, local, refused, stopped]).await;
    let long = "Ć".repeat(71); // UCS-2: two segments
    let c = app
        .post(
            "/v1/campaigns",
            &token,
            json!({"name": "Flash sale", "type": "sms", "segment_id": seg,
            "body": format!("Hi {{{{name}}}}, flash sale today! {long}")}),
        )
        .await;
    let id = c.assert_ok(201)["data"]["id"].as_i64().unwrap();
    let pv = app.post(&format!("/v1/campaigns/{id}/preview"), &token, json!({"customer_id": ana})).await;
    assert_eq!(pv.assert_ok(200)["data"]["segments"], 2);
    app.post(&format!("/v1/campaigns/{id}/send"), &token, json!({})).await.assert_ok(202);
    wait_status(&app, &token, id, "sent").await;

    // The provider got exactly one request per reachable number, with Basic auth and the form.
    let reqs = provider.requests.lock().unwrap().clone();
    let mut tos: Vec<String> = reqs.iter().map(|(f, _)| f["To"].clone()).collect();
    tos.sort();
    assert_eq!(tos, vec!["+385910000000", "+385911234567", "+385917654321"]);
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{AUTH_TOKEN}")));
    for (f, auth) in &reqs {
        assert_eq!(auth, &basic);
        assert_eq!(f["From"], "+15005550006");
        assert!(f["StatusCallback"].starts_with(&format!("{}/hooks/sms/status/", app.base)));
    }
    let ana_body = &reqs.iter().find(|(f, _)| f["To"] == "+385911234567").unwrap().0["Body"];
    assert!(ana_body.starts_with("Hi Ana, flash sale today!"), "{ana_body}");

    // Status callbacks (signed) settle the messages as delivered.
    let stats = wait(Duration::from_secs(15), || async {
        let s = app.get(&format!("/v1/campaigns/{id}/stats"), &token).await.body["data"].clone();
        (s["delivered"] == 2).then_some(s)
    })
    .await;
    assert_eq!((stats["failed"].as_i64(), stats["skipped"].as_i64()), (Some(1), Some(2)), "{stats}");
    let rec = app.get(&format!("/v1/campaigns/{id}/recipients?status=delivered"), &token).await.body.clone();
    assert!(rec["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["segments"] == 2 && r["provider_id"].as_str().unwrap().starts_with("SM")));
    let skipped = app.get(&format!("/v1/campaigns/{id}/recipients?status=skipped"), &token).await.body["data"].clone();
    let reasons: HashMap<i64, String> = skipped
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["customer_id"].as_i64().unwrap(), r["reason"].as_str().unwrap().into()))
        .collect();
    assert_eq!(reasons[&local], "invalid_address");
    assert_eq!(reasons[&stopped], "opted_out");

    // A callback with a bad signature is refused and changes nothing.
    let cb = reqs[0].0["StatusCallback"].clone();
    let r = reqwest::Client::new()
        .post(&cb)
        .header("X-Twilio-Signature", "bm90IGEgc2lnbmF0dXJl")
        .form(&[("MessageSid", "SMx"), ("MessageStatus", "failed")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // Inbound STOP and START change the customer's SMS consent.
    let inbound = format!("{}/hooks/sms/inbound/1", app.base);
    let say = |body: &'static str| {
        let inbound = inbound.clone();
        async move {
            let params: Vec<(String, String)> = vec![
                ("From".into(), "+385911234567".into()),
                ("To".into(), "+15005550006".into()),
                ("Body".into(), body.into()),
            ];
            let sig = cairn_channels::sms::signature(AUTH_TOKEN, &inbound, &params);
            reqwest::Client::new().post(&inbound).header("X-Twilio-Signature", sig).form(&params).send().await.unwrap()
        }
    };
    assert_eq!(say("Stop").await.status(), 200);
    let cu = app.get(&format!("/v1/customers/{ana}"), &token).await.body["data"].clone();
    assert_eq!(cu["traits"]["sms_consent"], false);
    let sup = app.get("/v1/suppressions", &token).await.body["data"].clone();
    assert!(
        sup.as_array().unwrap().iter().any(|s| s["address"] == "+385911234567" && s["reason"] == "stop_keyword"),
        "{sup}"
    );
    assert_eq!(say("START").await.status(), 200);
    let cu = app.get(&format!("/v1/customers/{ana}"), &token).await.body["data"].clone();
    assert_eq!(cu["traits"]["sms_consent"], true);
    let sup = app.get("/v1/suppressions", &token).await.body["data"].clone();
    assert!(sup.as_array().unwrap().is_empty(), "{sup}");
    let unsigned = reqwest::Client::new()
        .post(&inbound)
        .form(&[("From", "+385917654321"), ("Body", "STOP")])
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 403);
    let cu = app.get(&format!("/v1/customers/{ben}"), &token).await.body["data"].clone();
    assert!(cu["traits"].get("sms_consent").is_none());
}

async fn drafts_schedules_cancels_settings_audience_and_bounce_intake(backend: Backend) {
    let sink = SmtpSink::start(None);
    let app =
        spawn_channels(backend, Defaults { smtp: Some(SmtpSettings::parse(&sink.url()).unwrap()), sms: None }).await;
    let token = app.register("owner@shop.test", "Shop").await;
    app.clock.set(Utc.with_ymd_and_hms(2026, 6, 30, 12, 0, 0).unwrap());
    let ana = customer(&app, &token, json!({"email": " Ana@Example.com", "phone": "+385 91 123 4567"})).await;
    let ben = customer(&app, &token, json!({"email": "ben@example.com"})).await;
    let seg = static_segment(&app, &token, &[ana, ben]).await;

    // Sender settings per workspace; secrets are never shown back.
    let bad = app.put("/v1/settings/email", &token, json!({"smtp_url": "http://nope"})).await;
    bad.assert_error(400, "VALIDATION_ERROR");
    assert_eq!(bad.body["field"], "smtp_url");
    let s = app
        .put(
            "/v1/settings/email",
            &token,
            json!({"from_name": "Shop", "from_email": "news@shop.test",
            "smtp_url": format!("smtp://u:topsecret@127.0.0.1:{}?tls=none", sink.port)}),
        )
        .await;
    let s = s.assert_ok(200)["data"].clone();
    assert!(!s.to_string().contains("topsecret"), "{s}");
    // The workspace's server wins over the default; its credentials are wrong on purpose: the
    // sink has no AUTH, so restore the default before sending.
    app.put("/v1/settings/email", &token, json!({"from_name": "Shop", "from_email": "news@shop.test"}))
        .await
        .assert_ok(200);
    let g = app.get("/v1/settings/email", &token).await.body["data"].clone();
    assert_eq!((g["from_email"].as_str(), g["smtp_url"].as_str()), (Some("news@shop.test"), None));
    app.put("/v1/settings/sms", &token, json!({"api_url": "ftp://x"})).await.assert_error(400, "VALIDATION_ERROR");
    let sms = app
        .put("/v1/settings/sms", &token, json!({"account_sid": "AC1", "auth_token": "tok", "from": "+15005550006"}))
        .await;
    let sms = sms.assert_ok(200)["data"].clone();
    assert_eq!((sms["auth_token_set"].as_bool(), sms.get("auth_token")), (Some(true), None));

    // Draft → scheduled (send_at in the future, by the workspace clock) → sent when it comes.
    let c = app
        .post(
            "/v1/campaigns",
            &token,
            json!({"name": "Scheduled", "type": "email", "segment_id": seg,
            "subject": "Hello {{ email }}", "body": "<p>Hi</p>"}),
        )
        .await;
    let id = c.assert_ok(201)["data"]["id"].as_i64().unwrap();
    app.post(&format!("/v1/campaigns/{id}/schedule"), &token, json!({"send_at": "2026-06-30T11:00:00Z"}))
        .await
        .assert_error(400, "VALIDATION_ERROR");
    let sch =
        app.post(&format!("/v1/campaigns/{id}/schedule"), &token, json!({"send_at": "2026-06-30T13:00:00Z"})).await;
    assert_eq!(sch.assert_ok(200)["data"]["status"], "scheduled");
    app.put(&format!("/v1/campaigns/{id}"), &token, json!({"subject": "Hello again {{ email }}"})).await.assert_ok(200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(sink.messages().len(), 0, "not before its time");
    app.clock.set(Utc.with_ymd_and_hms(2026, 6, 30, 13, 0, 1).unwrap());
    wait_status(&app, &token, id, "sent").await;
    let msgs = sink.wait_for(2).await;
    assert!(msgs.iter().all(|m| header(m["data"].as_str().unwrap(), "Subject").unwrap().starts_with("Hello again")));
    assert!(header(msgs[0]["data"].as_str().unwrap(), "From").unwrap().contains("news@shop.test"), "workspace sender");
    app.put(&format!("/v1/campaigns/{id}"), &token, json!({"name": "x"})).await.assert_error(409, "CONFLICT");

    // Cancel a scheduled campaign: it never goes.
    let c = app
        .post(
            "/v1/campaigns",
            &token,
            json!({"name": "Cancelled", "type": "email", "segment_id": seg, "subject": "S", "body": "B"}),
        )
        .await;
    let cid = c.assert_ok(201)["data"]["id"].as_i64().unwrap();
    app.post(&format!("/v1/campaigns/{cid}/schedule"), &token, json!({"send_at": "2026-07-01T00:00:00Z"}))
        .await
        .assert_ok(200);
    let r = app.post(&format!("/v1/campaigns/{cid}/cancel"), &token, json!({})).await;
    assert_eq!(r.assert_ok(200)["data"]["status"], "cancelled");
    app.clock.set(Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 1).unwrap());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(sink.messages().len(), 2);
    app.post(&format!("/v1/campaigns/{cid}/send"), &token, json!({})).await.assert_error(409, "CONFLICT");

    // An ad campaign exports the segment as a hashed audience and is never sent.
    let ad = app.post("/v1/campaigns", &token, json!({"name": "Lookalike", "type": "ad", "segment_id": seg})).await;
    let ad = ad.assert_ok(201)["data"]["id"].as_i64().unwrap();
    app.post(&format!("/v1/campaigns/{ad}/send"), &token, json!({})).await.assert_error(400, "VALIDATION_ERROR");
    let csv = app
        .client
        .get(format!("{}/v1/campaigns/{ad}/audience.csv", app.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(csv.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let csv = csv.text().await.unwrap();
    let sha = |s: &str| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(s.as_bytes()))
    };
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "email_sha256,phone_sha256");
    assert!(lines.contains(&format!("{},{}", sha("ana@example.com"), sha("+385911234567")).as_str()), "{csv}");
    assert!(lines.contains(&format!("{},", sha("ben@example.com")).as_str()), "{csv}");

    // Bounce and complaint intake: a hard bounce by our Message-ID marks the send bounced and
    // suppresses; a soft one does not; a complaint suppresses and opts out.
    let mid = header(
        msgs.iter().find(|m| m["rcpt_tos"][0] == "ben@example.com").unwrap()["data"].as_str().unwrap(),
        "Message-ID",
    )
    .unwrap();
    let r = app
        .post("/v1/email-events", &token, json!([
            {"type": "bounce", "email": "ben@example.com", "bounce_type": "hard", "message_id": mid, "reason": "550 mailbox gone"},
            {"type": "bounce", "email": "ana@example.com", "bounce_type": "soft"},
        ]))
        .await;
    assert_eq!(r.assert_ok(200)["data"]["applied"], 2);
    app.post("/v1/email-events", &token, json!({"type": "complaint", "email": "ana@example.com"})).await.assert_ok(200);
    app.post("/v1/email-events", &token, json!({"type": "explode", "email": "ana@example.com"}))
        .await
        .assert_error(400, "VALIDATION_ERROR");
    let stats = app.get(&format!("/v1/campaigns/{id}/stats"), &token).await.body["data"].clone();
    assert_eq!(stats["bounced"], 1, "{stats}");
    let sup = app.get("/v1/suppressions", &token).await.body["data"].clone();
    let mut got: Vec<(String, String)> = sup
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["address"].as_str().unwrap().into(), s["reason"].as_str().unwrap().into()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![("ana@example.com".into(), "complaint".into()), ("ben@example.com".into(), "hard_bounce".into())]
    );
    let cu = app.get(&format!("/v1/customers/{ana}"), &token).await.body["data"].clone();
    assert_eq!(cu["traits"]["email_consent"], false);

    // Another workspace sees none of it.
    let other = app.register("eve@other.test", "Other").await;
    app.get(&format!("/v1/campaigns/{id}"), &other).await.assert_error(404, "NOT_FOUND");
    app.get(&format!("/v1/campaigns/{id}/recipients"), &other).await.assert_error(404, "NOT_FOUND");
    assert_eq!(app.get("/v1/campaigns", &other).await.body["pagination"]["total"], 0);
}

/// A CA and a certificate for `localhost` signed by it (openssl), in `dir`: (ca, cert, key).
fn test_pki(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Cairn Test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key"))
}

/// Issue 7's TLS modes against a real TLS SMTP server: STARTTLS (port 587's way) and implicit
/// TLS (SMTPS), the server's certificate verified — trusted through `ca=`, refused without it.
async fn email_goes_over_starttls_and_implicit_tls_verifying_the_certificate(backend: Backend) {
    let dir = cairn_testkit::TempDir::new();
    let (ca, cert, key) = test_pki(&dir.0);
    for (mode, scheme) in
        [("starttls", "smtp://localhost:{port}?tls=starttls"), ("implicit", "smtps://localhost:{port}")]
    {
        let sink = SmtpSink::start_tls(mode, &cert, &key);
        let url = scheme.replace("{port}", &sink.port.to_string());
        let sep = if url.contains('?') { '&' } else { '?' };
        let smtp = SmtpSettings::parse(&format!("{url}{sep}ca={}", ca.display())).unwrap();
        let app = spawn_channels(backend, Defaults { smtp: Some(smtp), sms: None }).await;
        let token = app.register("owner@shop.test", "Shop").await;
        let c = app
            .post(
                "/v1/campaigns",
                &token,
                json!({"name": "TLS", "type": "email", "subject": "Over {{ 'TLS' }}",
                                                   "body": "<p>Hi</p>", "from_email": "hello@shop.test"}),
            )
            .await;
        let id = c.assert_ok(201)["data"]["id"].as_i64().unwrap();
        let t = app.post(&format!("/v1/campaigns/{id}/test"), &token, json!({"to": ["qa@shop.test"]})).await;
        assert_eq!(t.assert_ok(200)["data"][0]["sent"], true, "{mode}: {}", t.body);
        let m = sink.wait_for(1).await;
        assert_eq!(m[0]["rcpt_tos"], json!(["qa@shop.test"]), "{mode}");

        // Without the CA the certificate is not trusted: nothing is sent.
        app.put("/v1/settings/email", &token, json!({"smtp_url": url})).await.assert_ok(200);
        let t = app.post(&format!("/v1/campaigns/{id}/test"), &token, json!({"to": ["qa@shop.test"]})).await;
        let r = t.assert_ok(200)["data"][0].clone();
        assert_eq!(r["sent"], false, "{mode}: an untrusted certificate must be refused: {r}");
        assert!(r["error"].as_str().unwrap().to_ascii_lowercase().contains("certificate"), "{mode}: {r}");
        assert_eq!(sink.messages().len(), 1, "{mode}");
        // A workspace cannot point at files on the server.
        let with_ca = format!("{url}{sep}ca={}", ca.display());
        app.put("/v1/settings/email", &token, json!({"smtp_url": with_ca})).await.assert_error(400, "VALIDATION_ERROR");
    }
}

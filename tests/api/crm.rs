//! The CRM (seeds 004, 000, 001): a client following seed 004's examples verbatim; leads with
//! their filters, conversion and linked profile; pipelines, the board, stage moves, won and
//! lost; people, prospects, activities, notes, files; custom fields; forms and their public
//! submissions; imports; reports; search; scopes; and every change's event at a real receiver.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{body::Bytes, extract::State, http::HeaderMap, routing::post, Router};
use reqwest::Method;
use serde_json::{json, Value};

use crate::common::TestApp;

crate::on_both_backends!(
    a_client_following_seed_004_verbatim_works,
    crm_changes_reach_webhooks_under_every_seeds_names,
    leads_filter_sort_and_page_as_seed_004_lists_them,
    a_lead_shows_its_profiles_events_and_scores,
    pipelines_board_stage_moves_and_closing,
    custom_fields_are_checked_on_every_write_and_filterable,
    public_form_submissions_create_or_update_leads,
    files_notes_and_activities_hang_off_any_entity,
    csv_imports_dedupe_by_email_and_report_row_errors,
    people_are_customer_profiles_with_crm_fields,
    reports_group_by_source_stage_owner_and_month,
    search_ranks_across_entity_types,
    scopes_are_enforced_on_crm_routes,
    automations_create_activities_for_sales,
);

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> axum::http::StatusCode {
    r.got.lock().unwrap().push((headers, serde_json::from_slice(&body).unwrap_or(Value::Null)));
    axum::http::StatusCode::OK
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
    /// Waits until a delivery named `event` whose data satisfies `pred` arrives.
    async fn wait_for(&self, event: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            let found = self.got.lock().unwrap().iter().find(|(_, b)| b["event"] == event && pred(&b["data"])).cloned();
            if let Some((_, body)) = found {
                return body;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "no {event} delivery; got {:?}", self.names());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn names(&self) -> Vec<String> {
        self.got.lock().unwrap().iter().map(|(_, b)| b["event"].as_str().unwrap_or("").to_string()).collect()
    }
}

/// The owner's user id (a valid `assigned_to`).
async fn me(app: &TestApp, auth: &str) -> i64 {
    app.get("/v1/auth/me", auth).await.assert_ok(200)["data"]["user"]["id"].as_i64().expect("user id")
}

/// A request with seed 004's `X-API-Key` header.
async fn x_api_key(app: &TestApp, method: Method, path: &str, key: &str, body: Option<Value>) -> crate::common::Resp {
    app.call_with(method, path, None, body, &[("X-API-Key", key)]).await
}

async fn a_client_following_seed_004_verbatim_works(app: TestApp) {
    let owner = app.register("owner@valethon.test", "Valethon").await;
    let (_, key) = app.create_key(&owner, json!({"name": "crm server", "type": "secret"})).await;
    let user = me(&app, &owner).await;

    // POST /leads with the seed's body.
    let created = x_api_key(
        &app,
        Method::POST,
        "/v1/leads",
        &key,
        Some(json!({
            "first_name": "Jane",
            "last_name": "Smith",
            "email": "jane@company.com",
            "phone": "+1-555-9876",
            "company_name": "Globex Corp",
            "source": "website_form",
            "form_type": "contact_us",
            "raw_payload": {
                "role": "IT Director",
                "technicianCount": "11-25",
                "industry": "MSP",
                "message": "Looking for a PSA solution"
            }
        })),
    )
    .await;
    let lead = created.assert_ok(201)["data"].clone();
    assert_eq!(created.body["success"], true);
    let lead_id = lead["lead_id"].as_i64().expect("lead_id");
    assert_eq!(lead["status"], "new");
    assert!(lead["created_at"].as_str().unwrap().ends_with('Z'), "{lead}");
    assert_eq!(lead["raw_payload"]["technicianCount"], "11-25");
    assert!(created.header("x-ratelimit-limit").is_some(), "seed 004's rate limit headers");

    // GET /leads with the seed's parameters and its list shape.
    let list = x_api_key(
        &app,
        Method::GET,
        "/v1/leads?page=1&per_page=25&status=all&source=website_form&search=globex&sort=created_at&order=desc",
        &key,
        None,
    )
    .await;
    let body = list.assert_ok(200);
    assert_eq!(body["pagination"], json!({"page": 1, "per_page": 25, "total": 1, "total_pages": 1}));
    let row = &body["data"][0];
    for field in [
        "lead_id",
        "first_name",
        "last_name",
        "email",
        "phone",
        "company_name",
        "status",
        "source",
        "score",
        "assigned_to",
        "created_at",
        "updated_at",
    ] {
        assert!(row.get(field).is_some(), "seed 004's list row has {field}: {row}");
    }
    assert_eq!(row["phone"], "+1-555-9876");

    // PUT /leads/{id}: status, assignment, score.
    let updated = x_api_key(
        &app,
        Method::PUT,
        &format!("/v1/leads/{lead_id}"),
        &key,
        Some(json!({"status": "qualified", "assigned_to": user, "score": 75})),
    )
    .await;
    let u = &updated.assert_ok(200)["data"];
    assert_eq!(
        (u["status"].clone(), u["assigned_to"].clone(), u["score"].clone()),
        (json!("qualified"), json!(user), json!(75))
    );

    // POST /leads/{id}/activities and GET them.
    x_api_key(
        &app,
        Method::POST,
        &format!("/v1/leads/{lead_id}/activities"),
        &key,
        Some(json!({"type": "call", "subject": "First call", "duration_minutes": 15})),
    )
    .await
    .assert_ok(201);
    let acts = x_api_key(&app, Method::GET, &format!("/v1/leads/{lead_id}/activities"), &key, None).await;
    assert_eq!(acts.assert_ok(200)["data"][0]["subject"], "First call");

    // POST /notes with the seed's body (on this lead), GET /notes?entity_type=&entity_id=.
    x_api_key(
        &app,
        Method::POST,
        "/v1/notes",
        &key,
        Some(json!({
            "entity_type": "lead",
            "entity_id": lead_id,
            "content": "Spoke with John. Interested in managed services for 50 endpoints.",
            "is_pinned": false
        })),
    )
    .await
    .assert_ok(201);
    let notes =
        x_api_key(&app, Method::GET, &format!("/v1/notes?entity_type=lead&entity_id={lead_id}"), &key, None).await;
    assert_eq!(notes.assert_ok(200)["pagination"]["total"], 1);

    // POST /leads/{id}/convert with the seed's body → the seed's response.
    let conv = x_api_key(
        &app,
        Method::POST,
        &format!("/v1/leads/{lead_id}/convert"),
        &key,
        Some(json!({
            "create_contact": true,
            "create_prospect": true,
            "create_opportunity": true,
            "opportunity_name": "Acme Corp - Managed IT Services",
            "opportunity_value": 50000
        })),
    )
    .await;
    let c = conv.assert_ok(200)["data"].clone();
    assert_eq!(c["lead_status"], "converted");
    let (contact_id, prospect_id, opportunity_id) =
        (c["contact_id"].as_i64().unwrap(), c["prospect_id"].as_i64().unwrap(), c["opportunity_id"].as_i64().unwrap());
    x_api_key(&app, Method::POST, &format!("/v1/leads/{lead_id}/convert"), &key, Some(json!({})))
        .await
        .assert_error(409, "CONFLICT");

    // GET /leads/{id}: activity history and linked entities.
    let detail = x_api_key(&app, Method::GET, &format!("/v1/leads/{lead_id}"), &key, None).await;
    let d = &detail.assert_ok(200)["data"];
    assert_eq!(d["status"], "converted");
    assert_eq!(d["activities"].as_array().unwrap().len(), 1);
    assert_eq!(d["notes"].as_array().unwrap().len(), 1);
    assert_eq!(d["linked"]["prospect"]["name"], "Globex Corp");
    assert_eq!(d["linked"]["opportunity"]["name"], "Acme Corp - Managed IT Services");
    assert_eq!(d["linked"]["customer"]["id"], contact_id, "the contact is the profile of the lead's email");

    // POST /opportunities with the seed's body (our ids).
    let opp = x_api_key(
        &app,
        Method::POST,
        "/v1/opportunities",
        &key,
        Some(json!({
            "name": "Acme Corp - Managed Services",
            "prospect_id": prospect_id,
            "stage": "discovery",
            "value": 50000,
            "expected_close_date": "2026-06-30",
            "probability": 30,
            "assigned_to": user
        })),
    )
    .await;
    let o = opp.assert_ok(201)["data"].clone();
    let second_opp = o["opportunity_id"].as_i64().unwrap();
    assert_eq!(
        (o["stage"].clone(), o["status"].clone(), o["value"].clone()),
        (json!("discovery"), json!("open"), json!(50000.0))
    );
    let filtered = x_api_key(&app, Method::GET, &format!("/v1/opportunities?stage=discovery&status=open&prospect_id={prospect_id}&min_value=40000&max_value=60000&assigned_to={user}"), &key, None).await;
    let ids: Vec<i64> =
        filtered.assert_ok(200)["data"].as_array().unwrap().iter().map(|o| o["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![second_opp, opportunity_id], "newest first; the converted one took the lead's owner");
    let adv = x_api_key(&app, Method::POST, &format!("/v1/opportunities/{second_opp}/advance-stage"), &key, None).await;
    assert_eq!(adv.assert_ok(200)["data"]["stage"], "qualification");
    let got = x_api_key(&app, Method::GET, &format!("/v1/opportunities/{opportunity_id}"), &key, None).await;
    assert_eq!(got.assert_ok(200)["data"]["value"], 50000.0);

    // POST /activities with the seed's body.
    let act = x_api_key(
        &app,
        Method::POST,
        "/v1/activities",
        &key,
        Some(json!({
            "type": "call",
            "subject": "Discovery call with Acme Corp",
            "description": "Discuss current IT infrastructure and pain points",
            "entity_type": "opportunity",
            "entity_id": second_opp,
            "assigned_to": user,
            "due_date": "2026-03-15T14:00:00Z",
            "duration_minutes": 30
        })),
    )
    .await;
    let a = act.assert_ok(201)["data"].clone();
    assert_eq!(a["due_date"], "2026-03-15T14:00:00Z");
    let listed = x_api_key(&app, Method::GET, &format!("/v1/activities?type=call&entity_type=opportunity&entity_id={second_opp}&assigned_to={user}&completed=false"), &key, None).await;
    assert_eq!(listed.assert_ok(200)["pagination"]["total"], 1);

    // People and prospects.
    let people =
        x_api_key(&app, Method::GET, &format!("/v1/people?search=jane&prospect_id={prospect_id}"), &key, None).await;
    assert_eq!(people.assert_ok(200)["data"][0]["id"], contact_id);
    let prospects = x_api_key(&app, Method::GET, "/v1/prospects?search=globex&status=active", &key, None).await;
    assert_eq!(prospects.assert_ok(200)["data"][0]["prospect_id"], prospect_id);
    let p = x_api_key(&app, Method::GET, &format!("/v1/prospects/{prospect_id}"), &key, None).await;
    let p = p.assert_ok(200)["data"].clone();
    assert_eq!(p["contacts"][0]["id"], contact_id);
    assert_eq!(p["opportunities"].as_array().unwrap().len(), 2);
    let conv = x_api_key(&app, Method::POST, &format!("/v1/prospects/{prospect_id}/convert"), &key, None).await;
    assert_eq!(conv.assert_ok(200)["data"]["status"], "converted");

    // GET /search with the seed's response shape.
    let found = x_api_key(&app, Method::GET, "/v1/search?q=globex&types=lead,prospect&limit=20", &key, None).await;
    let s = found.assert_ok(200)["data"].clone();
    assert_eq!(s["total"], 2, "{s}");
    for r in s["results"].as_array().unwrap() {
        for f in ["type", "id", "title", "subtitle", "score", "url"] {
            assert!(r.get(f).is_some(), "search result has {f}: {r}");
        }
    }

    // Custom fields, and POST /webhooks with the seed's body.
    x_api_key(
        &app,
        Method::POST,
        "/v1/custom-fields",
        &key,
        Some(json!({"entity_type": "lead", "key": "industry", "label": "Industry", "field_type": "text"})),
    )
    .await
    .assert_ok(201);
    let fields = x_api_key(&app, Method::GET, "/v1/custom-fields?entity_type=lead", &key, None).await;
    assert_eq!(fields.assert_ok(200)["data"][0]["key"], "industry");
    x_api_key(
        &app,
        Method::POST,
        "/v1/webhooks",
        &key,
        Some(json!({
            "url": "https://your-app.com/webhooks/crm",
            "events": ["lead.created", "lead.converted", "opportunity.won"],
            "secret": "your_webhook_secret"
        })),
    )
    .await
    .assert_ok(201);

    // The seed's errors.
    let bad = x_api_key(&app, Method::POST, "/v1/leads", &key, Some(json!({"email": "not an email"}))).await;
    bad.assert_error(400, "VALIDATION_ERROR");
    assert_eq!(bad.body["field"], "email");
    x_api_key(&app, Method::GET, "/v1/leads/987654", &key, None).await.assert_error(404, "NOT_FOUND");
    x_api_key(&app, Method::GET, "/v1/leads", "eck_wrong", None).await.assert_error(401, "AUTH_REQUIRED");
    let del = x_api_key(&app, Method::DELETE, &format!("/v1/leads/{lead_id}"), &key, None).await;
    assert_eq!(del.assert_ok(200)["data"]["deleted"], true);
    x_api_key(&app, Method::GET, &format!("/v1/leads/{lead_id}"), &key, None).await.assert_error(404, "NOT_FOUND");
    let none =
        x_api_key(&app, Method::GET, &format!("/v1/notes?entity_type=lead&entity_id={lead_id}"), &key, None).await;
    assert_eq!(none.assert_ok(200)["pagination"]["total"], 0, "a deleted lead's notes go with it");
}

async fn crm_changes_reach_webhooks_under_every_seeds_names(app: TestApp) {
    let owner = app.register("owner@hooks.test", "Hooks").await;
    let user = me(&app, &owner).await;
    let (url_all, all) = receiver().await;
    let (url_001, camel) = receiver().await;
    let (url_000, trace) = receiver().await;
    app.post("/v1/webhooks", &owner, json!({"url": url_all, "events": ["*"]})).await.assert_ok(201);
    app.post("/v1/webhooks", &owner, json!({"url": url_001, "events": ["lead.stageChanged", "deal.created", "deal.stageChanged", "client.created", "form.response.created"]})).await.assert_ok(201);
    app.post("/v1/webhooks", &owner, json!({"url": url_000, "events": ["deal.*", "lead.stage_changed"]}))
        .await
        .assert_ok(201);

    let lead = app
        .post(
            "/v1/leads",
            &owner,
            json!({"first_name": "Ana", "last_name": "Horvat", "email": "ana@acme.hr",
        "company_name": "Acme", "source": "Website", "value": 5000, "assigned_to": user}),
        )
        .await;
    let lead_id = lead.assert_ok(201)["data"]["id"].as_i64().unwrap();
    let created = all.wait_for("lead.created", |d| d["lead_id"] == lead_id).await;
    let d = &created["data"];
    // Seed 004's fields and seed 001's.
    assert_eq!((d["email"].clone(), d["source"].clone()), (json!("ana@acme.hr"), json!("Website")));
    assert_eq!(
        (d["id"].clone(), d["name"].clone(), d["stage"].clone(), d["ownerName"].clone()),
        (json!(lead_id), json!("Ana Horvat"), json!("New"), json!("Owner"))
    );
    assert_eq!(d["value"], 5000.0);
    assert!(created["timestamp"].as_str().is_some());

    app.put(&format!("/v1/leads/{lead_id}"), &owner, json!({"status": "contacted"})).await.assert_ok(200);
    all.wait_for("lead.updated", |d| d["status"] == "contacted").await;
    all.wait_for("lead.stage_changed", |d| d["stage"] == "Contacted").await;
    camel.wait_for("lead.stageChanged", |d| d["lead_id"] == lead_id).await;
    trace.wait_for("lead.stage_changed", |d| d["lead_id"] == lead_id).await;

    let conv = app.post(&format!("/v1/leads/{lead_id}/convert"), &owner,
        json!({"create_contact": true, "create_prospect": true, "create_opportunity": true, "opportunity_value": 7000})).await;
    let c = conv.assert_ok(200)["data"].clone();
    let opp = c["opportunity_id"].as_i64().unwrap();
    let converted = all.wait_for("lead.converted", |d| d["lead_id"] == lead_id).await;
    assert_eq!(converted["data"]["opportunity_id"], opp);
    all.wait_for("contact.created", |d| d["contact_id"] == c["contact_id"]).await;
    all.wait_for("prospect.created", |d| d["prospect_id"] == c["prospect_id"]).await;
    let client = camel.wait_for("client.created", |d| d["id"] == c["prospect_id"]).await;
    assert_eq!((client["data"]["name"].clone(), client["data"]["type"].clone()), (json!("Acme"), json!("company")));
    assert!(client["data"]["number"].as_str().unwrap().starts_with("CL-"));
    let deal = camel.wait_for("deal.created", |d| d["id"] == opp).await;
    let dd = &deal["data"];
    assert!(dd["number"].as_str().unwrap().starts_with("DL-"), "{dd}");
    assert_eq!(
        (dd["title"].clone(), dd["price"].clone(), dd["leadId"].clone(), dd["leadName"].clone()),
        (json!("Acme opportunity"), json!(7000.0), json!(lead_id), json!("Ana Horvat"))
    );
    assert_eq!(dd["client"]["name"], "Acme");
    assert_eq!(dd["stage"], "Discovery");
    all.wait_for("opportunity.created", |d| d["id"] == opp).await;
    trace.wait_for("deal.created", |d| d["id"] == opp).await;

    app.post(&format!("/v1/opportunities/{opp}/advance-stage"), &owner, json!({})).await.assert_ok(200);
    all.wait_for("opportunity.stage_changed", |d| d["stage"] == "Qualification").await;
    camel.wait_for("deal.stageChanged", |d| d["stage"] == "Qualification").await;
    trace.wait_for("deal.stage_changed", |d| d["stage"] == "Qualification").await;
    trace.wait_for("deal.updated", |d| d["stage"] == "Qualification").await;

    app.post(&format!("/v1/opportunities/{opp}/won"), &owner, json!({"reason": "Best price"})).await.assert_ok(200);
    let won = all.wait_for("opportunity.won", |d| d["id"] == opp).await;
    assert_eq!(
        (won["data"]["status"].clone(), won["data"]["close_reason"].clone()),
        (json!("won"), json!("Best price"))
    );
    trace.wait_for("deal.status_changed", |d| d["status"] == "won").await;

    let act = app
        .post(
            "/v1/activities",
            &owner,
            json!({"type": "task", "subject": "Send contract", "entity_type": "deal", "entity_id": opp}),
        )
        .await;
    let act_id = act.assert_ok(201)["data"]["id"].as_i64().unwrap();
    app.put(&format!("/v1/activities/{act_id}"), &owner, json!({"completed": true})).await.assert_ok(200);
    app.put(&format!("/v1/activities/{act_id}"), &owner, json!({"completed": true})).await.assert_ok(200);
    all.wait_for("activity.completed", |d| d["activity_id"] == act_id).await;

    let form = app
        .post(
            "/v1/forms",
            &owner,
            json!({"name": "Contact us", "fields": [{"name": "email", "type": "email", "required": true}]}),
        )
        .await;
    let token = form.assert_ok(201)["data"]["token"].as_str().unwrap().to_string();
    app.call(
        Method::POST,
        &format!("/v1/public/forms/{token}/submissions"),
        None,
        Some(json!({"email": "new@visitor.io"})),
    )
    .await
    .assert_ok(201);
    let response = camel.wait_for("form.response.created", |d| d["data"]["email"] == "new@visitor.io").await;
    assert!(response["data"]["formId"].is_i64());
    all.wait_for("form.submission.created", |d| d["data"]["email"] == "new@visitor.io").await;

    app.delete(&format!("/v1/opportunities/{opp}"), &owner).await.assert_ok(200);
    trace.wait_for("deal.deleted", |d| d["id"] == opp).await;
    app.delete(&format!("/v1/leads/{lead_id}"), &owner).await.assert_ok(200);
    all.wait_for("lead.deleted", |d| d["lead_id"] == lead_id).await;
    // An endpoint subscribed to two names of one happening gets it once; a `*` endpoint gets
    // every event under its canonical name only.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let names = all.names();
    assert_eq!(
        names.iter().filter(|n| *n == "activity.completed").count(),
        1,
        "completing twice emits once: {names:?}"
    );
    assert!(
        !names.iter().any(|n| n == "deal.created" || n == "client.created" || n == "form.response.created"),
        "{names:?}"
    );
    assert_eq!(camel.names().iter().filter(|n| n.starts_with("form.")).count(), 1);
}

async fn leads_filter_sort_and_page_as_seed_004_lists_them(app: TestApp) {
    let owner = app.register("owner@filters.test", "Filters").await;
    let user = me(&app, &owner).await;
    let t0 = chrono::Utc::now();
    let specs = [
        ("Ana", "Kovač", "ana@a.hr", "Acme", "website_form", "new", 10),
        ("Ben", "Lee", "ben@b.com", "Beta LLC", "referral", "contacted", 90),
        ("Cleo", "Ng", "cleo@c.io", "Acme", "website_form", "qualified", 50),
        ("Dan", "O'Neil", "dan@d.io", "Delta_Co", "import", "unqualified", 30),
    ];
    for (i, (first, last, email, company, source, status, score)) in specs.iter().enumerate() {
        let mut body = json!({"first_name": first, "last_name": last, "email": email, "company_name": company,
                              "source": source, "status": status, "score": score});
        if i % 2 == 0 {
            body["assigned_to"] = json!(user);
        }
        app.post("/v1/leads", &owner, body).await.assert_ok(201);
    }
    let names = |r: &crate::common::Resp| -> Vec<String> {
        r.assert_ok(200)["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["first_name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&app.get("/v1/leads", &owner).await), ["Dan", "Cleo", "Ben", "Ana"], "newest first by default");
    assert_eq!(names(&app.get("/v1/leads?sort=score&order=asc", &owner).await), ["Ana", "Dan", "Cleo", "Ben"]);
    assert_eq!(names(&app.get("/v1/leads?status=qualified", &owner).await), ["Cleo"]);
    assert_eq!(names(&app.get("/v1/leads?status=all&source=website_form", &owner).await), ["Cleo", "Ana"]);
    assert_eq!(names(&app.get(&format!("/v1/leads?assigned_to={user}"), &owner).await), ["Cleo", "Ana"]);
    assert_eq!(names(&app.get("/v1/leads?search=ACME", &owner).await), ["Cleo", "Ana"], "company, case-insensitive");
    assert_eq!(names(&app.get("/v1/leads?search=b.com", &owner).await), ["Ben"], "email");
    assert_eq!(names(&app.get("/v1/leads?search=ana%20kova", &owner).await), ["Ana"], "name");
    assert_eq!(names(&app.get("/v1/leads?search=_", &owner).await), ["Dan"], "literal, not a wildcard");
    let after = (t0 - chrono::Duration::minutes(5)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let before = (t0 - chrono::Duration::minutes(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(names(&app.get(&format!("/v1/leads?created_after={after}"), &owner).await).len(), 4);
    assert!(names(&app.get(&format!("/v1/leads?created_before={before}"), &owner).await).is_empty());
    let page = app.get("/v1/leads?per_page=3&page=2", &owner).await;
    assert_eq!(names(&page), ["Ana"]);
    assert_eq!(page.body["pagination"], json!({"page": 2, "per_page": 3, "total": 4, "total_pages": 2}));
    let capped = app.get("/v1/leads?per_page=500", &owner).await;
    assert_eq!(capped.assert_ok(200)["pagination"]["per_page"], 100);
    for (q, field) in [
        ("status=won", "status"),
        ("sort=password", "sort"),
        ("order=up", "order"),
        ("created_after=yesterday", "created_after"),
    ] {
        let r = app.get(&format!("/v1/leads?{q}"), &owner).await;
        r.assert_error(400, "VALIDATION_ERROR");
        assert_eq!(r.body["field"], field);
    }
    // Bad writes name the field and change nothing.
    for (body, field) in [
        (json!({"email": "x@y.z", "score": 101}), "score"),
        (json!({"email": "x@y.z", "status": "converted"}), "status"),
        (json!({"email": "x@y.z", "assigned_to": 999999}), "assigned_to"),
        (json!({"email": "x@y.z", "colour": "red"}), "colour"),
        (json!({"company_name": "Nobody"}), "email"),
        (json!({"email": "x@y.z", "phone": "call me"}), "phone"),
    ] {
        let r = app.post("/v1/leads", &owner, body.clone()).await;
        r.assert_error(400, "VALIDATION_ERROR");
        assert_eq!(r.body["field"], field, "{body}");
    }
    assert_eq!(app.get("/v1/leads", &owner).await.body["pagination"]["total"], 4);
}

async fn a_lead_shows_its_profiles_events_and_scores(app: TestApp) {
    let owner = app.register("owner@linked.test", "Linked").await;
    let (_, ingest) = app.create_key(&owner, json!({"name": "i", "type": "secret", "scopes": ["events:write"]})).await;
    let lead = app.post("/v1/leads", &owner, json!({"first_name": "Iva", "email": "Iva@Shop.hr"})).await;
    let lead_id = lead.assert_ok(201)["data"]["id"].as_i64().unwrap();
    assert_eq!(lead.body["data"]["customer_id"], Value::Null, "no profile yet");
    // The visitor is tracked after the lead exists: the lead finds the profile of its email.
    for (event, amount) in [("pageview", None), ("purchase", Some(120.0))] {
        let mut props = json!({});
        if let Some(a) = amount {
            props["amount"] = json!(a);
        }
        app.post(
            "/v1/track/event",
            &ingest,
            json!({"customer_email": "iva@shop.hr", "event": event, "properties": props}),
        )
        .await
        .assert_ok(200);
    }
    let started = Instant::now();
    let detail = loop {
        let d = app.get(&format!("/v1/leads/{lead_id}"), &owner).await;
        let body = d.assert_ok(200)["data"].clone();
        if body["recent_events"].as_array().is_some_and(|e| e.len() == 2)
            && body["linked"]["customer"]["clv_total"] == 120.0
        {
            break body;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "events and scores never showed: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(detail["linked"]["customer"]["email"], "iva@shop.hr");
    assert_eq!(detail["recent_events"][0]["event"], "purchase", "newest first");
    assert!(detail["linked"]["customer"]["rfm_segment"].is_string());
}

async fn pipelines_board_stage_moves_and_closing(app: TestApp) {
    let owner = app.register("owner@pipes.test", "Pipes").await;
    let pipes = app.get("/v1/pipelines", &owner).await;
    let list = pipes.assert_ok(200)["data"].as_array().unwrap().clone();
    assert_eq!(list.len(), 2, "a default opportunity pipeline and the contact lifecycle: {list:?}");
    let lifecycle = list.iter().find(|p| p["kind"] == "lifecycle").unwrap();
    assert!(lifecycle["stages"].as_array().unwrap().iter().any(|s| s["key"] == "customer"));

    let made = app.post("/v1/pipelines", &owner, json!({"name": "Enterprise", "stages": [
        {"name": "Lead in", "probability": 10}, {"name": "Demo", "probability": 40}, {"name": "Contract", "probability": 80}]})).await;
    let pipe = made.assert_ok(201)["data"].clone();
    let pid = pipe["id"].as_i64().unwrap();
    assert_eq!(
        pipe["stages"].as_array().unwrap().iter().map(|s| s["key"].as_str().unwrap()).collect::<Vec<_>>(),
        ["lead_in", "demo", "contract"]
    );
    let bad = app
        .post("/v1/pipelines", &owner, json!({"name": "Broken", "stages": [{"name": "A", "probability": 120}]}))
        .await;
    bad.assert_error(400, "VALIDATION_ERROR");
    assert_eq!(bad.body["field"], "stages[0].probability");

    let mut ids = Vec::new();
    for (name, value, stage) in [("Big", 1000.0, "lead_in"), ("Bigger", 3000.0, "lead_in"), ("Small", 500.0, "Demo")] {
        let r = app
            .post(
                "/v1/opportunities",
                &owner,
                json!({"name": name, "value": value, "pipeline_id": pid, "stage": stage}),
            )
            .await;
        ids.push(r.assert_ok(201)["data"]["id"].as_i64().unwrap());
    }
    let wrong =
        app.post("/v1/opportunities", &owner, json!({"name": "X", "pipeline_id": pid, "stage": "discovery"})).await;
    wrong.assert_error(400, "VALIDATION_ERROR");
    assert_eq!(wrong.body["field"], "stage");

    let board = app.get(&format!("/v1/pipelines/{pid}/board"), &owner).await;
    let b = board.assert_ok(200)["data"].clone();
    let cols = b["stages"].as_array().unwrap();
    assert_eq!(cols[0]["count"], 2);
    assert_eq!(cols[0]["total_value"], 4000.0);
    assert_eq!(cols[0]["weighted_value"], 400.0);
    assert_eq!(cols[0]["opportunities"][0]["name"], "Bigger", "highest value first");
    assert_eq!(cols[1]["weighted_value"], 200.0);
    assert_eq!(cols[2]["count"], 0);
    assert_eq!(b["totals"]["total_value"], 4500.0);

    // Advance through the stages; the last one asks for won or lost.
    let small = ids[2];
    let r = app.post(&format!("/v1/opportunities/{small}/advance-stage"), &owner, json!({})).await;
    assert_eq!(r.assert_ok(200)["data"]["stage"], "contract");
    app.post(&format!("/v1/opportunities/{small}/advance-stage"), &owner, json!({}))
        .await
        .assert_error(409, "CONFLICT");
    let lost =
        app.post(&format!("/v1/opportunities/{small}/lost"), &owner, json!({"reason": "Went with a competitor"})).await;
    let l = lost.assert_ok(200)["data"].clone();
    assert_eq!((l["status"].clone(), l["close_reason"].clone()), (json!("lost"), json!("Went with a competitor")));
    assert!(l["closed_at"].is_string());
    app.post(&format!("/v1/opportunities/{small}/advance-stage"), &owner, json!({}))
        .await
        .assert_error(409, "CONFLICT");
    let reopened = app.put(&format!("/v1/opportunities/{small}"), &owner, json!({"status": "open"})).await;
    assert_eq!(reopened.assert_ok(200)["data"]["close_reason"], Value::Null);
    app.put(&format!("/v1/deals/{}", ids[0]), &owner, json!({"status": "won", "price": 1200})).await.assert_ok(200);
    let status = |s: &str| format!("/v1/opportunities?pipeline_id={pid}&status={s}");
    assert_eq!(app.get(&status("won"), &owner).await.body["pagination"]["total"], 1);
    assert_eq!(app.get(&status("open"), &owner).await.body["pagination"]["total"], 2);
    assert_eq!(app.get(&status("all"), &owner).await.body["pagination"]["total"], 3);
    let won = app.get(&format!("/v1/deals/{}", ids[0]), &owner).await;
    let w = won.assert_ok(200)["data"].clone();
    assert_eq!(
        (w["price"].clone(), w["value"].clone(), w["number"].clone()),
        (json!(1200.0), json!(1200.0), json!(format!("DL-{:04}", ids[0])))
    );

    // Stages in use cannot be dropped; renaming keeps the deals.
    let stages = app.get(&format!("/v1/pipelines/{pid}"), &owner).await.body["data"]["stages"].clone();
    let keep: Vec<Value> = stages
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|s| json!({"id": s["id"], "name": s["name"], "probability": s["probability"]}))
        .collect();
    let r = app.put(&format!("/v1/pipelines/{pid}"), &owner, json!({"stages": keep})).await;
    r.assert_error(400, "VALIDATION_ERROR");
    let mut renamed: Vec<Value> = stages
        .as_array()
        .unwrap()
        .iter()
        .map(|s| json!({"id": s["id"], "name": s["name"], "probability": s["probability"]}))
        .collect();
    renamed[0]["name"] = json!("Inbound");
    let r = app.put(&format!("/v1/pipelines/{pid}"), &owner, json!({"stages": renamed})).await;
    assert_eq!(r.assert_ok(200)["data"]["stages"][0]["key"], "inbound");
    assert_eq!(
        app.get(&format!("/v1/opportunities?stage=inbound&pipeline_id={pid}"), &owner).await.body["pagination"]
            ["total"],
        2,
        "the renamed stage keeps its two deals"
    );
    app.delete(&format!("/v1/pipelines/{pid}"), &owner).await.assert_error(409, "CONFLICT");
}

async fn custom_fields_are_checked_on_every_write_and_filterable(app: TestApp) {
    let owner = app.register("owner@fields.test", "Fields").await;
    for def in [
        json!({"entity_type": "lead", "key": "employees", "label": "Employees", "field_type": "number"}),
        json!({"entity_type": "lead", "key": "plan", "label": "Plan", "field_type": "select", "options": ["basic", "pro"], "required": true}),
        json!({"entity_type": "lead", "key": "tools", "label": "Tools", "field_type": "multi_select", "options": ["psa", "rmm"]}),
        json!({"entity_type": "lead", "key": "renewal", "label": "Renewal", "field_type": "date"}),
        json!({"entity_type": "lead", "key": "managed", "label": "Managed", "field_type": "boolean"}),
        json!({"entity_type": "lead", "key": "site", "label": "Site", "field_type": "url"}),
        json!({"entity_type": "lead", "key": "billing", "label": "Billing", "field_type": "email"}),
        json!({"entity_type": "contact", "key": "shoe_size", "label": "Shoe size", "field_type": "number"}),
    ] {
        app.post("/v1/custom-fields", &owner, def).await.assert_ok(201);
    }
    let dup = app
        .post("/v1/custom-fields", &owner, json!({"entity_type": "lead", "key": "plan", "field_type": "text"}))
        .await;
    dup.assert_error(409, "DUPLICATE");
    let r =
        app.post("/v1/custom-fields", &owner, json!({"entity_type": "lead", "key": "x", "field_type": "colour"})).await;
    assert_eq!(r.body["field"], "field_type");

    let ok = app
        .post(
            "/v1/leads",
            &owner,
            json!({"email": "a@cf.io", "custom_fields": {
        "employees": "42", "plan": "pro", "tools": ["psa"], "renewal": "2027-01-31T10:00:00Z", "managed": true,
        "site": "https://cf.io", "billing": "Billing@CF.io"}}),
        )
        .await;
    let cf = ok.assert_ok(201)["data"]["custom_fields"].clone();
    assert_eq!(
        cf,
        json!({"employees": 42.0, "plan": "pro", "tools": ["psa"], "renewal": "2027-01-31", "managed": true,
                          "site": "https://cf.io", "billing": "billing@cf.io"})
    );
    app.post("/v1/leads", &owner, json!({"email": "b@cf.io", "custom_fields": {"plan": "basic", "managed": false}}))
        .await
        .assert_ok(201);
    for (custom, field) in [
        (json!({}), "custom_fields.plan"),
        (json!({"plan": "gold"}), "custom_fields.plan"),
        (json!({"plan": "pro", "employees": "many"}), "custom_fields.employees"),
        (json!({"plan": "pro", "tools": ["fax"]}), "custom_fields.tools"),
        (json!({"plan": "pro", "renewal": "soon"}), "custom_fields.renewal"),
        (json!({"plan": "pro", "managed": "yes"}), "custom_fields.managed"),
        (json!({"plan": "pro", "site": "ftp://x"}), "custom_fields.site"),
        (json!({"plan": "pro", "billing": "nope"}), "custom_fields.billing"),
        (json!({"plan": "pro", "unknown": 1}), "custom_fields.unknown"),
    ] {
        let r = app.post("/v1/leads", &owner, json!({"email": "c@cf.io", "custom_fields": custom})).await;
        r.assert_error(400, "VALIDATION_ERROR");
        assert_eq!(r.body["field"], field, "{custom}");
    }
    let lead_id = ok.body["data"]["id"].as_i64().unwrap();
    let r = app.put(&format!("/v1/leads/{lead_id}"), &owner, json!({"custom_fields": {"plan": null}})).await;
    assert_eq!(r.body["field"], "custom_fields.plan", "a required field cannot be cleared");
    app.put(&format!("/v1/leads/{lead_id}"), &owner, json!({"custom_fields": {"employees": 50}})).await.assert_ok(200);
    let emails = |r: crate::common::Resp| -> Vec<String> {
        r.assert_ok(200)["data"].as_array().unwrap().iter().map(|l| l["email"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(emails(app.get("/v1/leads?custom_fields.plan=pro", &owner).await), ["a@cf.io"]);
    assert_eq!(emails(app.get("/v1/leads?custom_fields.managed=false", &owner).await), ["b@cf.io"]);
    assert_eq!(emails(app.get("/v1/leads?custom_fields.employees=50", &owner).await), ["a@cf.io"]);

    // A contact's custom fields live in its traits, where segment filters see them.
    let person = app
        .post("/v1/people", &owner, json!({"email": "p@cf.io", "name": "Pat", "custom_fields": {"shoe_size": 44}}))
        .await;
    let pid = person.assert_ok(201)["data"]["id"].as_i64().unwrap();
    assert_eq!(person.body["data"]["traits"]["shoe_size"], 44);
    let bad = app.post("/v1/people", &owner, json!({"email": "q@cf.io", "custom_fields": {"shoe_size": "big"}})).await;
    assert_eq!(bad.body["field"], "custom_fields.shoe_size");
    let listed = app.get("/v1/people?custom_fields.shoe_size=44", &owner).await;
    assert_eq!(listed.assert_ok(200)["data"][0]["id"], pid);
    let preview = app
        .post(
            "/v1/segments/preview",
            &owner,
            json!({"filters": {"all": [{"field": "traits.shoe_size", "op": "gte", "value": 40}]}}),
        )
        .await;
    assert_eq!(preview.assert_ok(200)["data"]["count"], 1, "segment filters see contact custom fields");
}

async fn public_form_submissions_create_or_update_leads(app: TestApp) {
    let owner = app.register("owner@forms.test", "Forms").await;
    let form = app
        .post(
            "/v1/forms",
            &owner,
            json!({
            "name": "Demo request", "source": "landing_page", "lead_status": "contacted", "honeypot": "website_url",
            "fields": [
                {"name": "name", "type": "text", "required": true},
                {"name": "email", "type": "email", "required": true},
                {"name": "company", "type": "text", "maps_to": "company_name"},
                {"name": "size", "type": "select", "options": ["1-10", "11-50"]},
                {"name": "message", "type": "textarea", "max_length": 20}
            ]}),
        )
        .await;
    let f = form.assert_ok(201)["data"].clone();
    let token = f["token"].as_str().unwrap().to_string();
    assert!(f["submit_url"].as_str().unwrap().ends_with(&format!("/v1/public/forms/{token}/submissions")));
    let url = format!("/v1/public/forms/{token}/submissions");

    let def = app.call(Method::GET, &format!("/v1/public/forms/{token}"), None, None).await;
    assert_eq!(def.assert_ok(200)["data"]["fields"].as_array().unwrap().len(), 5);
    assert_eq!(def.header("access-control-allow-origin"), Some("*"), "websites read it cross-origin");

    let r = app.call(Method::POST, &url, None, Some(json!({"name": "Mia Novak", "email": "mia@novak.hr", "company": "Novak d.o.o.", "size": "1-10", "message": "Call me"}))).await;
    let sub = r.assert_ok(201)["data"].clone();
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let lead_id = sub["lead_id"].as_i64().unwrap();
    assert_eq!(sub["updated_existing"], false);
    let lead = app.get(&format!("/v1/leads/{lead_id}"), &owner).await.body["data"].clone();
    assert_eq!(
        (lead["first_name"].clone(), lead["last_name"].clone(), lead["company_name"].clone()),
        (json!("Mia"), json!("Novak"), json!("Novak d.o.o."))
    );
    assert_eq!(
        (lead["source"].clone(), lead["status"].clone(), lead["form_type"].clone()),
        (json!("landing_page"), json!("contacted"), json!("Demo request"))
    );
    assert_eq!(lead["raw_payload"], json!({"size": "1-10", "message": "Call me"}));

    // An HTML form's urlencoded body, same email: the lead is updated, not duplicated.
    let resp = app
        .client
        .post(format!("{}{url}", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("name=Mia+N&email=MIA%40novak.hr&size=11-50&message=Again")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let again: Value = resp.json().await.unwrap();
    assert_eq!(
        (again["data"]["lead_id"].as_i64(), again["data"]["updated_existing"].clone()),
        (Some(lead_id), json!(true))
    );
    let lead = app.get(&format!("/v1/leads/{lead_id}"), &owner).await.body["data"].clone();
    assert_eq!(lead["first_name"], "Mia", "what sales had is not overwritten");
    assert_eq!(lead["raw_payload"], json!({"size": "11-50", "message": "Again"}), "answers merged, newest wins");
    assert_eq!(app.get("/v1/leads", &owner).await.body["pagination"]["total"], 1);

    // Bad submissions name the field; the honeypot is answered like success and stores nothing.
    for (body, field) in [
        (json!({"email": "x@y.io"}), "name"),
        (json!({"name": "X", "email": "nope"}), "email"),
        (json!({"name": "X", "email": "x@y.io", "size": "huge"}), "size"),
        (json!({"name": "X", "email": "x@y.io", "message": "far too long a message to accept"}), "message"),
    ] {
        let r = app.call(Method::POST, &url, None, Some(body)).await;
        r.assert_error(400, "VALIDATION_ERROR");
        assert_eq!(r.body["field"], field);
    }
    let bot = app
        .call(
            Method::POST,
            &url,
            None,
            Some(json!({"name": "Bot", "email": "bot@spam.io", "website_url": "http://spam"})),
        )
        .await;
    assert_eq!(bot.assert_ok(201)["data"]["lead_id"], Value::Null);
    assert_eq!(app.get("/v1/leads", &owner).await.body["pagination"]["total"], 1);
    let forms = app.get("/v1/forms", &owner).await;
    assert_eq!(forms.assert_ok(200)["data"][0]["submissions"], 2);

    // Unknown or deactivated forms are 404; the definition is validated.
    app.call(Method::POST, "/v1/public/forms/frm_nope/submissions", None, Some(json!({})))
        .await
        .assert_error(404, "NOT_FOUND");
    let fid = f["id"].as_i64().unwrap();
    app.put(&format!("/v1/forms/{fid}"), &owner, json!({"is_active": false})).await.assert_ok(200);
    app.call(Method::POST, &url, None, Some(json!({"name": "Z", "email": "z@z.io"})))
        .await
        .assert_error(404, "NOT_FOUND");
    let bad = app.post("/v1/forms", &owner, json!({"name": "Bad", "fields": [{"name": "x", "type": "select"}]})).await;
    assert_eq!(bad.body["field"], "fields[0].options");
    let bad =
        app.post("/v1/forms", &owner, json!({"name": "Bad", "fields": [{"name": "x", "maps_to": "password"}]})).await;
    assert_eq!(bad.body["field"], "fields[0].maps_to");
}

async fn files_notes_and_activities_hang_off_any_entity(app: TestApp) {
    let owner = app.register("owner@files.test", "Files").await;
    let prospect = app.post("/v1/prospects", &owner, json!({"name": "Initech", "industry": "Software"})).await;
    let pid = prospect.assert_ok(201)["data"]["id"].as_i64().unwrap();
    let content = b"%PDF-1.4 proposal".to_vec();
    let form = reqwest::multipart::Form::new().text("entity_type", "prospect").text("entity_id", pid.to_string()).part(
        "file",
        reqwest::multipart::Part::bytes(content.clone()).file_name("proposal.pdf").mime_str("application/pdf").unwrap(),
    );
    let up =
        app.client.post(format!("{}/v1/files", app.base)).bearer_auth(&owner).multipart(form).send().await.unwrap();
    assert_eq!(up.status().as_u16(), 201);
    let meta: Value = up.json().await.unwrap();
    let fid = meta["data"]["id"].as_i64().unwrap();
    assert_eq!(
        (meta["data"]["size"].clone(), meta["data"]["content_type"].clone()),
        (json!(content.len()), json!("application/pdf"))
    );
    let down = app.client.get(format!("{}/v1/files/{fid}/content", app.base)).bearer_auth(&owner).send().await.unwrap();
    assert_eq!(down.headers()["content-type"], "application/pdf");
    assert!(down.headers()["content-disposition"].to_str().unwrap().contains("proposal.pdf"));
    assert_eq!(down.bytes().await.unwrap().to_vec(), content);
    let listed = app.get(&format!("/v1/files?entity_type=prospect&entity_id={pid}"), &owner).await;
    assert_eq!(listed.assert_ok(200)["pagination"]["total"], 1);
    // Past the size limit (10 MB): 413, nothing stored.
    let big = reqwest::multipart::Form::new()
        .text("entity_type", "prospect")
        .text("entity_id", pid.to_string())
        .part("file", reqwest::multipart::Part::bytes(vec![7u8; 10 * 1024 * 1024 + 1]).file_name("big.bin"));
    let r = app.client.post(format!("{}/v1/files", app.base)).bearer_auth(&owner).multipart(big).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let missing = reqwest::multipart::Form::new()
        .text("entity_type", "prospect")
        .text("entity_id", "999999")
        .part("file", reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("x.txt"));
    let r =
        app.client.post(format!("{}/v1/files", app.base)).bearer_auth(&owner).multipart(missing).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(
        app.get(&format!("/v1/files?entity_type=prospect&entity_id={pid}"), &owner).await.body["pagination"]["total"],
        1
    );
    app.delete(&format!("/v1/files/{fid}"), &owner).await.assert_ok(200);
    app.get(&format!("/v1/files/{fid}/content"), &owner).await.assert_error(404, "NOT_FOUND");

    // Notes: pinned first; edit and delete.
    let n1 = app.post("/v1/notes", &owner, json!({"entity_type": "client", "entity_id": pid, "content": "old"})).await;
    let n1 = n1.assert_ok(201)["data"]["id"].as_i64().unwrap();
    app.post("/v1/notes", &owner, json!({"entity_type": "prospect", "entity_id": pid, "content": "newer"}))
        .await
        .assert_ok(201);
    app.put(&format!("/v1/notes/{n1}"), &owner, json!({"is_pinned": true, "content": "old, pinned"}))
        .await
        .assert_ok(200);
    let notes = app.get(&format!("/v1/notes?entity_type=prospect&entity_id={pid}"), &owner).await;
    assert_eq!(notes.assert_ok(200)["data"][0]["content"], "old, pinned");
    let r = app.post("/v1/notes", &owner, json!({"entity_type": "invoice", "entity_id": pid, "content": "x"})).await;
    assert_eq!(r.body["field"], "entity_type");
    let r = app.post("/v1/notes", &owner, json!({"entity_type": "lead", "entity_id": 999999, "content": "x"})).await;
    assert_eq!(r.body["field"], "entity_id");

    // Activities: reschedule, reassign, complete; filters.
    let a = app.post("/v1/activities", &owner, json!({"type": "meeting", "subject": "Kick-off", "entity_type": "prospect", "entity_id": pid, "due_date": "2026-12-01"})).await;
    let aid = a.assert_ok(201)["data"]["id"].as_i64().unwrap();
    assert_eq!(a.body["data"]["due_date"], "2026-12-01T00:00:00Z");
    let done = app
        .put(
            &format!("/v1/activities/{aid}"),
            &owner,
            json!({"due_date": "2026-12-02T09:30:00+01:00", "completed": true, "outcome": "Agreed scope"}),
        )
        .await;
    let d = done.assert_ok(200)["data"].clone();
    assert_eq!((d["due_date"].clone(), d["completed"].clone()), (json!("2026-12-02T08:30:00Z"), json!(true)));
    assert!(d["completed_at"].is_string());
    assert_eq!(app.get("/v1/activities?completed=true", &owner).await.body["pagination"]["total"], 1);
    assert_eq!(app.get("/v1/activities?type=call", &owner).await.body["pagination"]["total"], 0);
    let r = app.post("/v1/activities", &owner, json!({"type": "fax", "subject": "x"})).await;
    assert_eq!(r.body["field"], "type");
    let detail = app.get(&format!("/v1/prospects/{pid}"), &owner).await;
    assert_eq!(detail.assert_ok(200)["data"]["activities"][0]["id"], aid);
    app.delete(&format!("/v1/prospects/{pid}"), &owner).await.assert_ok(200);
    assert_eq!(
        app.get("/v1/activities", &owner).await.body["pagination"]["total"],
        0,
        "a deleted entity's activities go with it"
    );
}

async fn wait_import(app: &TestApp, auth: &str, id: i64) -> Value {
    let started = Instant::now();
    loop {
        let r = app.get(&format!("/v1/imports/{id}"), auth).await;
        let body = r.assert_ok(200)["data"].clone();
        if body["status"] != "running" {
            return body;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "import never finished: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn csv_imports_dedupe_by_email_and_report_row_errors(app: TestApp) {
    let owner = app.register("owner@imports.test", "Imports").await;
    app.post("/v1/leads", &owner, json!({"email": "known@x.io", "first_name": "Known"})).await.assert_ok(201);
    let csv = "First Name,Last Name,E-mail,Company,Score,Notes\n\
               Ana,Kovač,ana@x.io,Acme,80,likes tea\n\
               Ben,,not-an-email,Beta,10,\n\
               Known,Person,KNOWN@x.io,Kappa,55,\n\
               Ana,K,ana@x.io,Acme2,,dup\n\
               Cleo,Ng,cleo@x.io,,200,\n";
    let r = app.post("/v1/imports", &owner, json!({"kind": "leads", "csv": csv, "mapping": {"Notes": null}, "source": "trade_show", "stage": "contacted"})).await;
    let id = r.assert_ok(202)["data"]["id"].as_i64().unwrap();
    let done = wait_import(&app, &owner, id).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(
        (done["total_rows"].clone(), done["processed"].clone(), done["created"].clone(), done["updated"].clone()),
        (json!(5), json!(5), json!(1), json!(1)),
        "{done}"
    );
    let errors = done["errors"].as_array().unwrap();
    let at = |row: i64| errors.iter().find(|e| e["row"] == row).cloned().unwrap_or(Value::Null);
    assert_eq!(at(3)["field"], "email", "{errors:?}");
    assert_eq!(at(5)["field"], "email", "the repeated email is merged: {errors:?}");
    assert_eq!(at(6)["field"], "score", "{errors:?}");
    let leads = app.get("/v1/leads?sort=email&order=asc", &owner).await;
    let rows = leads.assert_ok(200)["data"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let ana = rows.iter().find(|l| l["email"] == "ana@x.io").unwrap();
    assert_eq!(
        (ana["source"].clone(), ana["status"].clone(), ana["score"].clone(), ana["company_name"].clone()),
        (json!("trade_show"), json!("contacted"), json!(80), json!("Acme"))
    );
    assert_eq!(ana["raw_payload"], Value::Null, "the skipped column is not kept");
    let known = rows.iter().find(|l| l["email"] == "known@x.io").unwrap();
    assert_eq!(
        (known["first_name"].clone(), known["last_name"].clone(), known["company_name"].clone()),
        (json!("Known"), json!("Person"), json!("Kappa"))
    );

    // People: by email, lifecycle stage given, existing profiles updated.
    app.post("/v1/customers", &owner, json!({"email": "old@x.io", "name": "Old"})).await.assert_ok(201);
    let csv = "email,name,title\nold@x.io,Ignored,CTO\nnew@x.io,New Person,CEO\n,No Email,\n";
    let r = app.post("/v1/imports", &owner, json!({"kind": "people", "csv": csv, "stage": "lead"})).await;
    let id = r.assert_ok(202)["data"]["id"].as_i64().unwrap();
    let done = wait_import(&app, &owner, id).await;
    assert_eq!(
        (done["created"].clone(), done["updated"].clone(), done["failed"].clone()),
        (json!(1), json!(1), json!(1)),
        "{done}"
    );
    let people = app.get("/v1/people?lifecycle_stage=lead", &owner).await;
    assert_eq!(people.assert_ok(200)["pagination"]["total"], 2);
    let old = app.get("/v1/people?search=old", &owner).await.body["data"][0].clone();
    assert_eq!((old["name"].clone(), old["designation"].clone()), (json!("Old"), json!("CTO")));

    for (body, field) in [
        (json!({"kind": "deals", "csv": "a\n1\n"}), "kind"),
        (json!({"kind": "leads", "csv": "email\nx@y.io\n", "mapping": {"Nope": "email"}}), "mapping.Nope"),
        (json!({"kind": "leads", "csv": "email\nx@y.io\n", "mapping": {"email": "password"}}), "mapping.email"),
        (json!({"kind": "leads", "csv": "email\nx@y.io\n", "stage": "won"}), "stage"),
        (json!({"kind": "people", "csv": "name\nX\n"}), "mapping"),
    ] {
        let r = app.post("/v1/imports", &owner, body.clone()).await;
        r.assert_error(400, "VALIDATION_ERROR");
        assert_eq!(r.body["field"], field, "{body}");
    }
}

async fn people_are_customer_profiles_with_crm_fields(app: TestApp) {
    let owner = app.register("owner@people.test", "People").await;
    let acme =
        app.post("/v1/prospects", &owner, json!({"name": "Acme"})).await.assert_ok(201)["data"]["id"].as_i64().unwrap();
    let r = app
        .post(
            "/v1/people",
            &owner,
            json!({"firstName": "Lu", "lastName": "Zhang", "email": "lu@acme.io", "mobile": "+1 555 0100",
        "designation": "CTO", "clientId": acme, "lifecycle_stage": "sales_qualified", "tags": ["vip", "beta", "vip"]}),
        )
        .await;
    let p = r.assert_ok(201)["data"].clone();
    let id = p["id"].as_i64().unwrap();
    assert_eq!(
        (p["name"].clone(), p["first_name"].clone(), p["prospect_id"].clone(), p["tags"].clone()),
        (json!("Lu Zhang"), json!("Lu"), json!(acme), json!(["vip", "beta"]))
    );
    // The same record through seed 003's customers.
    let c = app.get(&format!("/v1/customers/{id}"), &owner).await;
    assert_eq!(c.assert_ok(200)["data"]["email"], "lu@acme.io");
    app.post("/v1/people", &owner, json!({"email": "LU@acme.io"})).await.assert_error(409, "DUPLICATE");
    app.post("/v1/people", &owner, json!({"email": "x@acme.io", "prospect_id": 999999}))
        .await
        .assert_error(400, "VALIDATION_ERROR");
    let r = app.post("/v1/people", &owner, json!({"email": "x@acme.io", "lifecycle_stage": "royalty"})).await;
    assert_eq!(r.body["field"], "lifecycle_stage");
    app.post("/v1/people", &owner, json!({"email": "solo@else.io", "name": "Solo"})).await.assert_ok(201);
    let ids = |r: crate::common::Resp| -> Vec<i64> {
        r.assert_ok(200)["data"].as_array().unwrap().iter().map(|x| x["id"].as_i64().unwrap()).collect()
    };
    assert_eq!(ids(app.get("/v1/people?tag=vip", &owner).await), [id]);
    assert_eq!(ids(app.get(&format!("/v1/people?prospect_id={acme}"), &owner).await), [id]);
    assert_eq!(ids(app.get("/v1/people?search=zhang", &owner).await), [id]);
    assert_eq!(app.get("/v1/people", &owner).await.body["pagination"]["total"], 2);
    let u = app
        .put(
            &format!("/v1/people/{id}"),
            &owner,
            json!({"lifecycle_stage": "customer", "tags": ["vip"], "city": "Zagreb"}),
        )
        .await;
    let u = u.assert_ok(200)["data"].clone();
    assert_eq!(
        (u["lifecycle_stage"].clone(), u["tags"].clone(), u["city"].clone(), u["designation"].clone()),
        (json!("customer"), json!(["vip"]), json!("Zagreb"), json!("CTO"))
    );
    app.delete(&format!("/v1/people/{id}"), &owner).await.assert_ok(200);
    app.get(&format!("/v1/customers/{id}"), &owner).await.assert_error(404, "NOT_FOUND");
}

async fn reports_group_by_source_stage_owner_and_month(app: TestApp) {
    let owner = app.register("owner@reports.test", "Reports").await;
    let user = me(&app, &owner).await;
    for (email, source, value) in [("a@r.io", "ads", 100.0), ("b@r.io", "ads", 200.0), ("c@r.io", "referral", 50.0)] {
        app.post("/v1/leads", &owner, json!({"email": email, "source": source, "value": value, "assigned_to": user}))
            .await
            .assert_ok(201);
    }
    let leads = app.get("/v1/leads?source=ads", &owner).await.body["data"].clone();
    let first = leads[0]["id"].as_i64().unwrap();
    app.post(
        &format!("/v1/leads/{first}/convert"),
        &owner,
        json!({"create_opportunity": true, "opportunity_value": 1000}),
    )
    .await
    .assert_ok(200);
    let r = app.get("/v1/reports/leads?group_by=source", &owner).await;
    let rep = r.assert_ok(200)["data"].clone();
    let ads = rep["groups"].as_array().unwrap().iter().find(|g| g["key"] == "ads").unwrap().clone();
    assert_eq!(
        (ads["count"].clone(), ads["converted"].clone(), ads["conversion_rate"].clone(), ads["value"].clone()),
        (json!(2), json!(1), json!(0.5), json!(300.0))
    );
    assert_eq!(rep["totals"]["conversion_rate"], json!(0.3333));
    let by_owner = app.get("/v1/reports/leads?group_by=owner", &owner).await.body["data"]["groups"].clone();
    assert_eq!(
        (by_owner[0]["key"].clone(), by_owner[0]["label"].clone(), by_owner[0]["count"].clone()),
        (json!(user), json!("Owner"), json!(3))
    );
    let month = chrono::Utc::now().format("%Y-%m").to_string();
    let by_month = app.get("/v1/reports/leads?group_by=month", &owner).await.body["data"]["groups"].clone();
    assert_eq!((by_month[0]["key"].clone(), by_month[0]["count"].clone()), (json!(month), json!(3)));
    let stage = app.get("/v1/reports/leads?group_by=stage", &owner).await.body["data"]["groups"].clone();
    assert_eq!(stage.as_array().unwrap().len(), 2, "converted and new: {stage}");

    for (name, value, status) in [("W", 500.0, "won"), ("L", 300.0, "lost"), ("O", 100.0, "open")] {
        app.post("/v1/opportunities", &owner, json!({"name": name, "value": value, "status": status, "source": "ads"}))
            .await
            .assert_ok(201);
    }
    let r = app.get("/v1/reports/opportunities?group_by=source", &owner).await;
    let g = r.assert_ok(200)["data"]["groups"].as_array().unwrap().iter().find(|g| g["key"] == "ads").unwrap().clone();
    assert_eq!(
        (
            g["count"].clone(),
            g["won"].clone(),
            g["lost"].clone(),
            g["open"].clone(),
            g["win_rate"].clone(),
            g["won_value"].clone()
        ),
        (json!(4), json!(1), json!(1), json!(2), json!(0.5), json!(500.0)),
        "the converted lead's opportunity is from ads too: {g}"
    );
    let by_stage = app.get("/v1/reports/opportunities", &owner).await.body["data"].clone();
    assert_eq!(by_stage["group_by"], "stage");
    assert_eq!(by_stage["totals"]["count"], 4);
    let r = app.get("/v1/reports/leads?group_by=colour", &owner).await;
    assert_eq!(r.body["field"], "group_by");
}

async fn search_ranks_across_entity_types(app: TestApp) {
    let owner = app.register("owner@search.test", "Search").await;
    app.post("/v1/leads", &owner, json!({"first_name": "Acme", "email": "buyer@acme.com"})).await.assert_ok(201);
    app.post("/v1/prospects", &owner, json!({"name": "Acme"})).await.assert_ok(201);
    app.post("/v1/opportunities", &owner, json!({"name": "Renewal for Acme Corp"})).await.assert_ok(201);
    app.post("/v1/people", &owner, json!({"email": "someone@acme-partner.io"})).await.assert_ok(201);
    let r = app.get("/v1/search?q=acme", &owner).await;
    let s = r.assert_ok(200)["data"].clone();
    let kinds: Vec<&str> = s["results"].as_array().unwrap().iter().map(|h| h["type"].as_str().unwrap()).collect();
    assert_eq!(s["total"], 4, "{s}");
    assert_eq!(kinds.len(), 4);
    assert_eq!(s["results"][0]["score"], 1.0, "exact title first: {s}");
    let last = s["results"][3].clone();
    assert_eq!(last["type"], "contact", "a match in the email only ranks last: {s}");
    let urls: Vec<&str> = s["results"].as_array().unwrap().iter().map(|h| h["url"].as_str().unwrap()).collect();
    assert!(urls.iter().any(|u| u.starts_with("/crm/prospects/")));
    let only = app.get("/v1/search?q=acme&types=opportunity&limit=5", &owner).await;
    assert_eq!(only.assert_ok(200)["data"]["results"][0]["type"], "opportunity");
    app.get("/v1/search?q=", &owner).await.assert_error(400, "VALIDATION_ERROR");
    let r = app.get("/v1/search?q=a&types=invoice", &owner).await;
    assert_eq!(r.body["field"], "types");
}

async fn scopes_are_enforced_on_crm_routes(app: TestApp) {
    let owner = app.register("owner@scopes.test", "Scopes").await;
    let (_, reader) = app.create_key(&owner, json!({"name": "r", "type": "secret", "scopes": ["leads:read"]})).await;
    let (_, deals) =
        app.create_key(&owner, json!({"name": "d", "type": "secret", "scopes": ["deals:read", "deals:write"]})).await;
    let (_, public) = app.create_key(&owner, json!({"name": "p", "type": "public", "environment": "live"})).await;
    let lead =
        app.post("/v1/leads", &owner, json!({"email": "s@s.io"})).await.assert_ok(201)["data"]["id"].as_i64().unwrap();
    app.get("/v1/leads", &reader).await.assert_ok(200);
    app.post("/v1/leads", &reader, json!({"email": "t@s.io"})).await.assert_error(403, "FORBIDDEN");
    app.delete(&format!("/v1/leads/{lead}"), &reader).await.assert_error(403, "FORBIDDEN");
    app.post(&format!("/v1/leads/{lead}/convert"), &reader, json!({})).await.assert_error(403, "FORBIDDEN");
    app.get("/v1/opportunities", &reader).await.assert_error(403, "FORBIDDEN");
    app.get("/v1/people", &reader).await.assert_error(403, "FORBIDDEN");
    app.get("/v1/activities", &reader).await.assert_error(403, "FORBIDDEN");
    app.get("/v1/forms", &reader).await.assert_error(403, "FORBIDDEN");
    app.get("/v1/reports/opportunities", &reader).await.assert_error(403, "FORBIDDEN");
    // Search shows only what the key may read.
    let s = app.get("/v1/search?q=s.io", &reader).await;
    assert!(s.assert_ok(200)["data"]["results"].as_array().unwrap().iter().all(|h| h["type"] == "lead"));
    // Seed 000's deals:* scopes are seed 004's opportunities:*.
    app.post("/v1/deals", &deals, json!({"title": "Via deals scope", "price": 10})).await.assert_ok(201);
    app.get("/v1/opportunities", &deals).await.assert_ok(200);
    app.get("/v1/leads", &deals).await.assert_error(403, "FORBIDDEN");
    // A public key found in a web page can do nothing here.
    for path in ["/v1/leads", "/v1/people", "/v1/deals", "/v1/search?q=s", "/v1/custom-fields"] {
        app.get(path, &public).await.assert_error(403, "FORBIDDEN");
    }
}

/// An automation's `create_activity` step: a call for the owner on the customer's open lead, a
/// task on the contact; its configuration checked node by node; a non-member assignee fails the
/// step, not the engine.
async fn automations_create_activities_for_sales(app: TestApp) {
    let owner = app.register("owner@sales.test", "Sales").await;
    let owner_id = me(&app, &owner).await;
    let t0 = chrono::Utc::now();
    app.clock.set(t0);
    let customer = app.post("/v1/customers", &owner, json!({"email": "ana@example.com", "name": "Ana"})).await;
    let customer = customer.assert_ok(201)["data"]["id"].as_i64().unwrap();
    let lead = app.post("/v1/leads", &owner, json!({"email": "ana@example.com", "first_name": "Ana"})).await;
    let lead = lead.assert_ok(201)["data"]["id"].as_i64().unwrap();

    let design = |call: Value, task: Value| {
        json!({"nodes": [{"id": "t", "type": "trigger", "data": {"label": "Signed up"}},
                         {"id": "call", "type": "action", "data": call},
                         {"id": "task", "type": "action", "data": task}],
               "edges": [{"id": "e1", "source": "t", "target": "call"}, {"id": "e2", "source": "call", "target": "task"}]})
    };
    let bad = design(
        json!({"action": "create_activity", "type": "fax", "due_in": "soon", "entity": "deal"}),
        json!({"action": "create_activity", "subject": "x", "assigned_to": "me"}),
    );
    let r = app.post("/v1/automations/validate", &owner, bad).await;
    r.assert_error(400, "VALIDATION_ERROR");
    let fields: Vec<&str> = r.body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    for f in [
        "nodes.call.data.type",
        "nodes.call.data.subject",
        "nodes.call.data.due_in",
        "nodes.call.data.entity",
        "nodes.task.data.assigned_to",
    ] {
        assert!(fields.contains(&f), "{f} not in {fields:?}");
    }

    let good = design(
        json!({"action": "create_activity", "type": "call", "subject": "Call the new signup", "due_in": "2d",
               "assigned_to": owner_id, "entity": "lead", "description": "From the welcome flow"}),
        json!({"action": "create_activity", "subject": "Send the welcome pack"}),
    );
    let a = app
        .post("/v1/automations", &owner, json!({"name": "Sales follow-up", "trigger_type": "manual", "design": good}))
        .await;
    let id = a.assert_ok(201)["data"]["id"].as_i64().unwrap();
    app.post(&format!("/v1/automations/{id}/activate"), &owner, json!({})).await.assert_ok(200);
    app.post(&format!("/v1/automations/{id}/enroll"), &owner, json!({"customer_ids": [customer]})).await.assert_ok(202);
    let started = Instant::now();
    loop {
        let r = app.get(&format!("/v1/automations/{id}/runs?status=completed"), &owner).await;
        if r.assert_ok(200)["pagination"]["total"] == 1 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "the run did not complete: {}", r.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let calls = app.get(&format!("/v1/leads/{lead}/activities"), &owner).await.assert_ok(200)["data"].clone();
    assert_eq!(calls.as_array().unwrap().len(), 1, "{calls}");
    let call = &calls[0];
    assert_eq!((call["type"].as_str(), call["subject"].as_str()), (Some("call"), Some("Call the new signup")));
    assert_eq!(call["assigned_to"], owner_id);
    assert_eq!(call["description"], "From the welcome flow");
    let due: chrono::DateTime<chrono::Utc> = call["due_date"].as_str().unwrap().parse().unwrap();
    assert!((due - (t0 + chrono::Duration::days(2))).num_seconds().abs() <= 1, "{due} vs {t0}");
    let tasks = app.get(&format!("/v1/activities?entity_type=contact&entity_id={customer}"), &owner).await;
    let tasks = tasks.assert_ok(200)["data"].clone();
    assert_eq!(tasks.as_array().unwrap().len(), 1, "{tasks}");
    assert_eq!(
        (tasks[0]["type"].as_str(), tasks[0]["subject"].as_str()),
        (Some("task"), Some("Send the welcome pack"))
    );
    assert_eq!(tasks[0]["completed"], false);

    // Assigned to someone who is not a member: that step fails, with the reason on the run.
    let stray = design(
        json!({"action": "create_activity", "subject": "Call", "assigned_to": 987654}),
        json!({"action": "create_activity", "subject": "never"}),
    );
    let a =
        app.post("/v1/automations", &owner, json!({"name": "Stray", "trigger_type": "manual", "design": stray})).await;
    let id = a.assert_ok(201)["data"]["id"].as_i64().unwrap();
    app.post(&format!("/v1/automations/{id}/activate"), &owner, json!({})).await.assert_ok(200);
    app.post(&format!("/v1/automations/{id}/enroll"), &owner, json!({"customer_ids": [customer]})).await.assert_ok(202);
    let started = Instant::now();
    loop {
        let r = app.get(&format!("/v1/automations/{id}/runs?status=failed"), &owner).await;
        let body = r.assert_ok(200).clone();
        if body["pagination"]["total"] == 1 {
            assert!(body["data"][0]["error"].as_str().unwrap().contains("not a member"), "{body}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "the run did not fail: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all = app.get(&format!("/v1/activities?entity_type=contact&entity_id={customer}"), &owner).await;
    assert_eq!(all.assert_ok(200)["data"].as_array().unwrap().len(), 1, "the failed run created nothing");
}

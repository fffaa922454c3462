//! The tracking snippet (issue 10, docs/snippet.md): how `cairn serve` serves it (hashed URLs,
//! caching, ETag, MIME types, brotli and gzip), its size budget, that the committed build
//! matches its sources, and — in Debian's headless Chromium, driven by tests/browser/snippet.mjs
//! — that a real page's identify, track and pageviews (automatic, SPA, UTM), pre-load calls,
//! offline queueing, reset and consent arrive at Cairn as they should.

use std::{io::Write, process::Command};

use axum::{extract::State, response::Html, routing::get, Router};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::common::TestApp;

crate::on_both_backends!(the_snippet_is_served_hashed_cached_and_compressed, a_real_browser_tracks_through_the_snippet);

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn dist(name: &str) -> Vec<u8> {
    std::fs::read(format!("{ROOT}/snippet/dist/{name}")).unwrap_or_else(|e| panic!("snippet/dist/{name}: {e}"))
}

fn gzip9(bytes: &[u8]) -> usize {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(bytes).unwrap();
    e.finish().unwrap().len()
}

fn hash12(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))[..12].to_string()
}

#[test]
fn the_snippet_fits_its_size_budget() {
    let loader = gzip9(&dist("snippet.js"));
    let all = loader + gzip9(&dist("core.js")) + gzip9(&dist("core.wasm"));
    println!("gzip -9: loader {loader} bytes, everything {all} bytes");
    assert!(loader <= 1536, "the loader is {loader} bytes gzipped: the budget is 1.5 KB");
    assert!(all <= 12 * 1024, "the page downloads {all} bytes gzipped: the budget is 12 KB");
}

#[test]
fn the_committed_build_matches_its_sources() {
    // snippet/dist/SOURCES lists `sha256  path` for every source the build read.
    let listed = String::from_utf8(dist("SOURCES")).unwrap();
    let mut paths = Vec::new();
    for line in listed.lines() {
        let (sum, path) = line.split_once("  ").expect("sha256sum format");
        let bytes = std::fs::read(format!("{ROOT}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            sum,
            "{path} changed since snippet/dist was built: run `bash scripts/build-snippet.sh` and commit snippet/dist"
        );
        paths.push(path.to_string());
    }
    for dir in ["snippet/src", "snippet/js"] {
        for entry in std::fs::read_dir(format!("{ROOT}/{dir}")).unwrap() {
            let path = format!("{dir}/{}", entry.unwrap().file_name().to_string_lossy());
            assert!(paths.contains(&path), "{path} is not in snippet/dist/SOURCES: rebuild the snippet");
        }
    }
    // The loader points at the core files by their content hashes, and the precompressed
    // copies are of the same bytes.
    let loader = String::from_utf8(dist("snippet.js")).unwrap();
    assert!(loader.contains(&format!("/snippet/core-{}.js", hash12(&dist("core.js")))), "{loader}");
    assert!(loader.contains(&format!("/snippet/core-{}.wasm", hash12(&dist("core.wasm")))), "{loader}");
    for name in ["snippet.js", "core.js", "core.wasm"] {
        let gz = dist(&format!("{name}.gz"));
        let mut d = flate2::read::GzDecoder::new(&gz[..]);
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut d, &mut plain).unwrap();
        assert_eq!(plain, dist(name), "{name}.gz");
    }
}

async fn fetch(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = app.client.get(format!("{}{path}", app.base));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

async fn the_snippet_is_served_hashed_cached_and_compressed(app: TestApp) {
    let core_js = format!("/snippet/core-{}.js", hash12(&dist("core.js")));
    let core_wasm = format!("/snippet/core-{}.wasm", hash12(&dist("core.wasm")));
    for (path, mime, cache, file) in [
        ("/snippet.js", "text/javascript; charset=utf-8", "public, max-age=300", "snippet.js"),
        ("/enter-track.js", "text/javascript; charset=utf-8", "public, max-age=300", "snippet.js"),
        (core_js.as_str(), "text/javascript; charset=utf-8", "public, max-age=31536000, immutable", "core.js"),
        (core_wasm.as_str(), "application/wasm", "public, max-age=31536000, immutable", "core.wasm"),
    ] {
        let plain = fetch(&app, path, &[("accept-encoding", "identity")]).await;
        assert_eq!(plain.status(), 200, "{path}");
        let h = plain.headers().clone();
        assert_eq!(h["content-type"], mime, "{path}");
        assert_eq!(h["cache-control"], cache, "{path}");
        assert_eq!(h["access-control-allow-origin"], "*", "{path}: pages on other sites load it");
        assert_eq!(h["vary"], "Accept-Encoding");
        assert!(h.get("content-encoding").is_none());
        let etag = h["etag"].to_str().unwrap().to_string();
        assert_eq!(plain.bytes().await.unwrap().to_vec(), dist(file), "{path}");
        for (accept, coding, stored) in [("gzip, deflate", "gzip", ".gz"), ("gzip, deflate, br", "br", ".br")] {
            let r = fetch(&app, path, &[("accept-encoding", accept)]).await;
            assert_eq!(r.headers()["content-encoding"], coding, "{path}");
            assert_eq!(r.bytes().await.unwrap().to_vec(), dist(&format!("{file}{stored}")), "{path} {coding}");
        }
        let r = fetch(&app, path, &[("accept-encoding", "br;q=0, gzip")]).await;
        assert_eq!(r.headers()["content-encoding"], "gzip", "q=0 refuses a coding");
        let r = fetch(&app, path, &[("if-none-match", &etag)]).await;
        assert_eq!(r.status(), 304, "{path}");
        assert!(r.bytes().await.unwrap().is_empty());
    }
    let r = app.call(Method::GET, "/snippet/core-000000000000.js", None, None).await;
    r.assert_error(404, "NOT_FOUND");
}

const STUB: &str = "(function(e,n,t){e.EnterCRM=e.EnterCRM||{};e.EnterCRM.apiKey='KEY';e.EnterCRM.q=[];\
'identify track page reset optIn optOut flush'.split(' ').forEach(function(m){e.EnterCRM[m]=function(){\
e.EnterCRM.q.push([m,[].slice.call(arguments)])}});var s=n.createElement(t);s.async=1;s.src='CAIRN/snippet.js';\
n.head.appendChild(s)})(window,document,'script');";

/// Seed 003's snippet, word for word but for the script's address.
const SEED: &str = "(function(e,n,t,r,c,r,m){
    e.EnterCRM = e.EnterCRM || {};
    e.EnterCRM.apiKey = 'KEY';
    var s = n.createElement(t);
    s.async = 1;
    s.src = 'CAIRN/enter-track.js';
    n.head.appendChild(s);
  })(window, document, 'script');";

#[derive(Clone)]
struct Site {
    cairn: String,
    key: String,
    seed_key: String,
}

fn html(site: &Site, title: &str, before: &str, snippet: &str, after: &str) -> Html<String> {
    let s = snippet.replace("CAIRN", &site.cairn).replace("KEY", &site.key);
    Html(format!(
        "<!doctype html><html><head><title>{title}</title><script>{before}</script><script>{s}</script>\
         <script>{after}</script></head><body><h1>{title}</h1></body></html>"
    ))
}

/// A website on another origin that embeds the snippet.
async fn site(cairn: &str, key: &str, seed_key: &str) -> String {
    let s = Site { cairn: cairn.to_string(), key: key.to_string(), seed_key: seed_key.to_string() };
    let app =
        Router::new()
            .route(
                "/",
                get(|State(s): State<Site>| async move {
                    html(&s, "Shop home", "", STUB, "EnterCRM.track('early', {n: 1});")
                }),
            )
            .route("/pricing", get(|State(s): State<Site>| async move { html(&s, "Pricing", "", STUB, "") }))
            .route("/second", get(|State(s): State<Site>| async move { html(&s, "Second page", "", STUB, "") }))
            .route(
                "/gpc",
                get(|State(s): State<Site>| async move { html(&s, "GPC", "", STUB, "EnterCRM.honorGPC = true;") }),
            )
            .route(
            "/consent",
            get(|State(s): State<Site>| async move { html(&s, "Consent", "", STUB, "EnterCRM.requireConsent = true;") }),
        )
        .route(
            "/seed",
            get(|State(s): State<Site>| async move {
                // An eck_ key limited to ingestion, as seed 003 describes for the snippet.
                let s = Site { key: s.seed_key.clone(), ..s };
                html(&s, "Seed snippet", "", SEED, "")
            }),
        )
            .with_state(s);
    // The GPC page sets its option before the script loads (the stub runs first).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://localhost:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

async fn events_of(app: &TestApp, token: &str, customer: i64) -> Vec<Value> {
    let r = app.get(&format!("/v1/customers/{customer}/events?per_page=100"), token).await;
    r.assert_ok(200)["data"].as_array().unwrap().clone()
}

async fn customer_by(app: &TestApp, token: &str, query: &str) -> Option<i64> {
    let r = app.get(&format!("/v1/customers?{query}"), token).await;
    r.assert_ok(200)["data"].as_array().unwrap().first().map(|c| c["id"].as_i64().unwrap())
}

/// The profile whose events carry this anonymous id.
async fn customer_with_anon(app: &TestApp, token: &str, anon: &str) -> Option<i64> {
    let r = app.get("/v1/customers?per_page=100", token).await;
    for c in r.assert_ok(200)["data"].as_array().unwrap() {
        let id = c["id"].as_i64().unwrap();
        if events_of(app, token, id).await.iter().any(|e| e["anonymous_id"] == anon) {
            return Some(id);
        }
    }
    None
}

async fn a_real_browser_tracks_through_the_snippet(app: TestApp) {
    let token = app.register("owner@shop.test", "Shop").await;
    let key = app.create_key(&token, json!({"name": "website", "type": "public_live"})).await.1;
    let tenant = app.get("/v1/workspace", &token).await.assert_ok(200)["data"]["id"].as_i64().unwrap();
    // The page's origin differs from Cairn's (127.0.0.1 vs localhost): CORS is exercised.
    let (_, ingest_only) =
        app.create_key(&token, json!({"name": "seed page", "type": "secret", "scopes": ["events:write"]})).await;
    let site = site(&app.base, &key, &ingest_only).await;
    let run = tokio::task::spawn_blocking(move || {
        Command::new("node").arg(format!("{ROOT}/tests/browser/snippet.mjs")).arg(&site).output().expect("node")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "the browser run failed: {stderr}");
    let seen: Value = serde_json::from_slice(run.stdout.trim_ascii())
        .unwrap_or_else(|_| panic!("{}\n{stderr}", String::from_utf8_lossy(&run.stdout)));
    assert_eq!(seen["errors"], json!([]), "nothing thrown into the page");
    assert_eq!(seen["saved_while_offline"], json!(true), "{seen}");
    assert_eq!(seen["gpc_requests"], json!(0), "GPC honoured: nothing sent");
    assert!(seen["batched_requests"].as_i64().unwrap() >= 1, "{seen}");
    let anon1 = seen["anon1"].as_str().unwrap();
    assert_eq!(seen["cookie"].as_str(), Some(anon1), "the anonymous id is in a first-party cookie too");
    assert_ne!(seen["anon2"], seen["anon1"], "reset() starts a new visitor");

    // Every message the browser sent reached the event store (counted below, once each).
    let ana = customer_by(&app, &token, "search=ana@example.com").await.expect("Ana's profile");
    let mut names: Vec<String> = Vec::new();
    let mut first_page = Value::Null;
    for _ in 0..100 {
        let events = events_of(&app, &token, ana).await;
        names = events.iter().map(|e| e["event"].as_str().unwrap_or("").to_string()).collect();
        if names.iter().any(|n| n == "offline_2") {
            first_page = events.into_iter().filter(|e| e["event"] == "pageview").last().unwrap_or_default();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let count = |n: &str| names.iter().filter(|x| x.as_str() == n).count();
    // identify: the campaign landing's first/last touch, then Ana's own.
    for (name, n) in [("early", 1), ("identify", 2), ("purchase", 1), ("offline_1", 1), ("offline_2", 1)] {
        assert_eq!(count(name), n, "{name} in {names:?}");
    }
    // Pageviews: automatic on load, pushState ×2 (/pricing, its #plans), popstate, the manual
    // page(null), and the second page's.
    assert_eq!(count("pageview"), 6, "{names:?}");
    assert_eq!(count("circular"), 0, "an unserialisable call is dropped, not thrown");
    for n in ["after_reset", "opted_out", "opted_in", "gpc_event", "seed_form"] {
        assert_eq!(count(n), 0, "{n} is not Ana's: {names:?}");
    }
    let ctx = &first_page["context"];
    assert_eq!(ctx["campaign"], json!({"source": "news", "medium": "email", "name": "launch"}), "{first_page}");
    assert!(ctx["session_id"].as_str().is_some_and(|s| !s.is_empty()), "{first_page}");
    assert!(first_page["properties"]["url"].as_str().unwrap().contains("utm_source=news"), "{first_page}");
    let profile = app.get(&format!("/v1/customers/{ana}"), &token).await.assert_ok(200)["data"].clone();
    assert_eq!(profile["name"], "Ana Kovač");
    let traits = &profile["traits"];
    assert_eq!(traits["first_touch"]["source"], "news", "{profile}");
    assert_eq!(traits["last_touch"]["name"], "launch", "{profile}");
    assert_eq!(traits["created_at"], "2025-06-01", "{profile}");

    // After reset: a different visitor; what was sent while opted out never arrived.
    let after = customer_with_anon(&app, &token, seen["anon2"].as_str().unwrap()).await;
    let total = app.events.count(cairn_domain::TenantId(tenant)).await.unwrap();
    let after = after.expect("the visitor after reset() has a profile");
    let others: Vec<String> =
        events_of(&app, &token, after).await.iter().map(|e| e["event"].as_str().unwrap().to_string()).collect();
    assert!(others.contains(&"after_reset".to_string()) && others.contains(&"opted_in".to_string()), "{others:?}");
    assert!(!others.contains(&"opted_out".to_string()), "opted out: never sent");
    assert!(customer_by(&app, &token, "search=nobody@example.com").await.is_none(), "opted out: identify not sent");
    // Seed 003's plain snippet works too.
    let seed = customer_with_anon(&app, &token, seen["anon3"].as_str().unwrap()).await;
    let seed_events = events_of(&app, &token, seed.expect("the seed page's visitor")).await;
    assert!(seed_events.iter().any(|e| e["event"] == "seed_form"), "{seed_events:?}");
    // The ingestion-only eck_ key found in that page can do nothing else.
    app.get("/v1/customers", &ingest_only).await.assert_error(403, "FORBIDDEN");
    // Consent required: nothing before optIn(), then only what followed.
    assert_eq!(seen["requests_before_consent"], json!(0), "{seen}");
    let consented = customer_with_anon(&app, &token, seen["anon4"].as_str().unwrap()).await;
    let names: Vec<Value> = events_of(&app, &token, consented.expect("the consenting visitor"))
        .await
        .iter()
        .map(|e| e["event"].clone())
        .collect();
    assert!(names.contains(&json!("after_consent")) && !names.contains(&json!("before_consent")), "{names:?}");
    assert!(total >= 12, "{total} events in all");
}

//! Webhook delivery benchmark (issue 8): `cargo bench --bench webhooks`.
//!
//! In one process, against real HTTP receivers on loopback and the embedded SQLite store (or
//! PostgreSQL with `CAIRN_BENCH_DATABASE_URL`):
//! 1. throughput: 20,000 events queued at once to one healthy endpoint — deliveries/s;
//! 2. isolation: events produced at a steady 400/s for 15 s to three endpoints — one healthy,
//!    one answering 500, one taking 5 s — and the healthy endpoint's delivery latency (from
//!    the event's creation to its arrival) at p50/p99.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::{body::Bytes, extract::State, http::StatusCode, routing::post, Router};
use cairn_channels::webhooks::{Dispatcher, WebhookSettings};
use cairn_domain::{Clock, TenantId};
use cairn_store::{Store, StoreConfig};
use serde_json::{json, Value};

#[derive(Clone, Default)]
struct Rx {
    latencies_ms: Arc<Mutex<Vec<f64>>>,
}

fn now_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64() * 1e3).unwrap_or(0.0)
}

async fn ok(State(rx): State<Rx>, body: Bytes) -> StatusCode {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Some(sent) = v["data"]["created_ms"].as_f64() {
        rx.latencies_ms.lock().unwrap().push(now_ms() - sent);
    }
    StatusCode::OK
}

async fn fail() -> StatusCode {
    StatusCode::INTERNAL_SERVER_ERROR
}

async fn slow() -> StatusCode {
    tokio::time::sleep(Duration::from_secs(5)).await;
    StatusCode::OK
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn enqueue(store: &Store, tenant: TenantId, n: usize) {
    let mut tx = store.begin().await.unwrap();
    let now = chrono::Utc::now();
    for i in 0..n {
        let payload = json!({"seq": i, "created_ms": now_ms()});
        tx.insert_outbox(tenant, "customer.created", &payload, now).await.unwrap();
    }
    tx.commit().await.unwrap();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = cairn_testkit::TempDir::new();
    let config = match std::env::var("CAIRN_BENCH_DATABASE_URL") {
        Ok(url) => StoreConfig::Postgres { url, max_connections: 16 },
        Err(_) => StoreConfig::Sqlite { path: dir.0.join("cairn.db") },
    };
    let store = Store::connect(&config).await.unwrap();
    store.migrate().await.unwrap();
    let tenant = store.begin().await.unwrap();
    let mut tenant = tenant;
    let t = tenant.insert_tenant("Bench", &format!("bench-{}", std::process::id()), chrono::Utc::now()).await.unwrap();
    tenant.commit().await.unwrap();

    let rx = Rx::default();
    let app = Router::new()
        .route("/ok", post(ok))
        .route("/fail", post(fail))
        .route("/slow", post(slow))
        .with_state(rx.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let clock = Clock::system();
    let settings = WebhookSettings { allow_private: true, ..Default::default() };
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(Dispatcher::new(store.clone(), clock.clone(), settings).unwrap().run(stop));
    let secret = "whsec_YmVuY2htYXJrYmVuY2htYXJrYmVuY2htYXJr";

    // 1. Throughput.
    let healthy = {
        let mut c = store.write().await.unwrap();
        c.insert_webhook(t.id, &format!("{base}/ok"), "*", secret, chrono::Utc::now()).await.unwrap()
    };
    let n = 20_000;
    let started = Instant::now();
    enqueue(&store, t.id, n).await;
    while rx.latencies_ms.lock().unwrap().len() < n {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    println!("throughput: {n} deliveries to one endpoint in {secs:.2} s = {:.0} deliveries/s", n as f64 / secs);
    rx.latencies_ms.lock().unwrap().clear();

    // 2. Isolation: a failing and a slow endpoint beside the healthy one.
    {
        let mut c = store.write().await.unwrap();
        c.insert_webhook(t.id, &format!("{base}/fail"), "*", secret, chrono::Utc::now()).await.unwrap();
        c.insert_webhook(t.id, &format!("{base}/slow"), "*", secret, chrono::Utc::now()).await.unwrap();
    }
    let rate = 400;
    let seconds = 15;
    for _ in 0..seconds * 10 {
        enqueue(&store, t.id, rate / 10).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let expected = rate * seconds;
    let wait = Instant::now();
    while rx.latencies_ms.lock().unwrap().len() < expected && wait.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut l = rx.latencies_ms.lock().unwrap().clone();
    l.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "isolation: {rate} events/s for {seconds} s to a healthy, a failing (500) and a slow (5 s) endpoint; \
         healthy endpoint got {} of {expected}: latency p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        l.len(),
        percentile(&l, 0.5),
        percentile(&l, 0.99),
        l.last().copied().unwrap_or(f64::NAN)
    );
    let _ = healthy;
}

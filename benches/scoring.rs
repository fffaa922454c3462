//! Scoring benchmark (issue 4): `cargo bench --bench scoring`.
//!
//! 1. Full recompute at scale, in process, on real stores: PostgreSQL + ClickHouse with
//!    1,000,000 customers and 20,000,000 purchase events, the embedded default (SQLite +
//!    SQLite) with 100,000 customers and 2,000,000 purchase events. Each is timed twice: the
//!    first recompute (every customer new: one row and one `customer.rfm_changed` each) and a
//!    second one (cut points refreshed, nothing changed). Beside them, in the same run, the bare
//!    ClickHouse aggregation `SELECT customer_id, max(timestamp), count(), sum(amount) … GROUP BY
//!    customer_id`.
//! 2. Freshness through the real binary: `cairn serve` on PostgreSQL + ClickHouse, purchases
//!    posted at 1,000 events/s to `/v1/track/event`, and for a probe every 100 ms the time from
//!    the acknowledgement until the probe customer's scores are in the entity store.
//!
//! `CAIRN_BENCH_SCALE` (default 1.0) scales the data sizes down for a quick run;
//! `CAIRN_BENCH_ONLY=scale|freshness` runs one part.

use std::{
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use cairn_domain::{Clock, TenantId};
use cairn_events::{ClickHouseConfig, ClickHouseStore, EventStore, SqliteEventStore};
use cairn_scoring::{enqueue_recompute, Progress, Scorer, ScoringSettings};
use cairn_store::{Store, StoreConfig};
use cairn_testkit::{FreshClickHouse, FreshPg, TempDir};
use serde_json::{json, Value};

fn scale() -> f64 {
    std::env::var("CAIRN_BENCH_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1.0)
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1));
    kb.and_then(|k| k.parse::<f64>().ok()).unwrap_or(0.0) / 1024.0
}

/// Generates `events` purchases over `customers` customers in ClickHouse. Each customer is
/// active from a start day in the first half of 2025 for 1 to 365 days (some stop buying, as
/// real customers do) and buys within that span, around an average order value of its own.
fn fill_clickhouse(ch: &FreshClickHouse, customers: u64, events: u64) {
    ch.query(&format!(
        "INSERT INTO {db}.events SELECT 1, concat('m', toString(number)), c, '', '', 'track', 'purchase', '{{}}', '{{}}',
             1735689600000 + (intHash64(c) % 180) * 86400000 + intHash64(number) % ((1 + intHash64(c * 7) % 365) * 86400000),
             0, 1767225600000, toNullable(toFloat64((5 + intHash64(c * 3) % 100) * (50 + intHash64(number * 3) % 100) / 100)), 'EUR'
         FROM (SELECT number, (number % {customers}) + 1 AS c FROM system.numbers LIMIT {events})",
        db = ch.database
    ));
}

async fn time_job(store: &Store, scorer: &Scorer, tenant: TenantId, fit: bool) -> (f64, Progress) {
    let started = Instant::now();
    let job = enqueue_recompute(store, tenant, fit, None).await.unwrap();
    assert_eq!(scorer.work_one(None).await.unwrap(), Some(job));
    let elapsed = started.elapsed().as_secs_f64();
    let j = store.read().await.unwrap().job(job).await.unwrap();
    assert_eq!(j.status, "done", "{:?}", j.last_error);
    (elapsed, serde_json::from_str(j.progress.as_deref().unwrap()).unwrap())
}

/// Times the first recompute (fit, every row new) and a second one (nothing changed).
async fn first_and_second_recompute(store: &Store, scorer: &Scorer) {
    let (first, p) = time_job(store, scorer, TenantId(1), true).await;
    println!(
        "   first full recompute (fit + {} rows and events written): {first:.2} s  [method {:?}; summaries {} ms, fit {} ms, score+write {} ms (of which scoring {} ms, reading stored rows {} ms)]",
        p.changed, p.method, p.summarise_ms, p.fit_ms, p.write_ms, p.score_ms, p.read_ms
    );
    let (second, p) = time_job(store, scorer, TenantId(1), false).await;
    println!(
        "   second full recompute (cut points refreshed, {} changed): {second:.2} s  [summaries {} ms, scoring {} ms, reading stored rows {} ms, all writing {} ms]",
        p.changed, p.summarise_ms, p.score_ms, p.read_ms, p.write_ms
    );
    println!("   peak RSS of the bench process: {:.0} MB", peak_rss_mb());
}

/// The first recompute again, from no scores, in a workspace with an active webhook endpoint:
/// its million `customer.rfm_changed` entries are then owed to the dispatcher (written
/// unsettled, into the outbox's partial index) instead of settled at birth.
async fn first_recompute_owed_to_a_webhook(store: &Store, admin: &sqlx::PgPool, scorer: &Scorer) {
    for sql in [
        "DELETE FROM customer_scores",
        "DELETE FROM scoring_models",
        "VACUUM ANALYZE customer_scores",
        "INSERT INTO webhooks (tenant_id, url, events, secret, status, created_at, updated_at)
         VALUES (1, 'https://hooks.bench.test/rfm', '[\"customer.rfm_changed\"]', 'whsec_bench', 'active', now(), now())",
    ] {
        sqlx::query(sql).execute(admin).await.unwrap();
    }
    let (took, p) = time_job(store, scorer, TenantId(1), true).await;
    println!(
        "   first full recompute again, owed to an active webhook endpoint ({} rows and events written): {took:.2} s  [summaries {} ms, fit {} ms, score+write {} ms]",
        p.changed, p.summarise_ms, p.fit_ms, p.write_ms
    );
    sqlx::query("DELETE FROM webhooks").execute(admin).await.unwrap();
}

async fn scale_out(customers: u64, events: u64) {
    println!("== PostgreSQL + ClickHouse: {customers} customers, {events} purchase events");
    let pg = FreshPg::create().await;
    let store = Store::connect(&StoreConfig::Postgres { url: pg.url.clone(), max_connections: 8 }).await.unwrap();
    store.migrate().await.unwrap();
    let ch = FreshClickHouse::new("cairn_bench_scoring");
    let config = ClickHouseConfig { url: ch.url.clone(), database: ch.database.clone(), user: None, password: None };
    let events_store: Arc<dyn EventStore> = Arc::new(ClickHouseStore::new(config));
    events_store.migrate().await.unwrap();

    let t = Instant::now();
    let admin = sqlx::PgPool::connect(&pg.url).await.unwrap();
    sqlx::query("INSERT INTO tenants (name, slug, created_at) VALUES ('Bench', 'bench', now())")
        .execute(&admin)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO customers (tenant_id, email, traits, created_at, updated_at)
         SELECT 1, 'c' || g || '@bench.test', '{}', now(), now() FROM generate_series(1, $1) g",
    )
    .bind(customers as i64)
    .execute(&admin)
    .await
    .unwrap();
    // The profiles as autovacuum leaves them on a live system: the first reader of a freshly
    // inserted row sets its hint bits (dirtying and writing its page again), and autovacuum
    // would otherwise work through the million new rows beside the first recompute.
    sqlx::query("VACUUM ANALYZE customers").execute(&admin).await.unwrap();
    let ch2 = FreshClickHouse { url: ch.url.clone(), database: ch.database.clone() };
    tokio::task::spawn_blocking(move || {
        fill_clickhouse(&ch2, customers, events);
        std::mem::forget(ch2); // the original drops the database
    })
    .await
    .unwrap();
    // Let ClickHouse finish merging the freshly inserted parts, as it would have long since on a
    // live system (its background merges would otherwise compete for the two cores).
    let settle = FreshClickHouse { url: ch.url.clone(), database: ch.database.clone() };
    let db = ch.database.clone();
    tokio::task::spawn_blocking(move || {
        settle.query(&format!("OPTIMIZE TABLE {db}.events FINAL"));
        settle.query(&format!("OPTIMIZE TABLE {db}.purchases FINAL"));
        std::mem::forget(settle);
    })
    .await
    .unwrap();
    println!("   data generated and merged in {:.1} s", t.elapsed().as_secs_f64());

    let bare = |sql: String| {
        let ch = FreshClickHouse { url: ch.url.clone(), database: ch.database.clone() };
        async move {
            let started = Instant::now();
            let out = tokio::task::spawn_blocking(move || {
                let out = ch.query(&sql);
                std::mem::forget(ch);
                out
            })
            .await
            .unwrap();
            assert!(!out.contains("Exception"), "{out}");
            started.elapsed().as_secs_f64()
        }
    };
    let db = ch.database.clone();
    let bare_s = bare(format!(
        "SELECT customer_id, max(timestamp), count(), sum(amount) FROM {db}.events
         WHERE tenant_id = 1 AND name = 'purchase' GROUP BY customer_id FORMAT Null"
    ))
    .await;
    println!("   bare ClickHouse aggregation (GROUP BY customer): {bare_s:.2} s");

    let clock = Clock::system();
    let summarise = Instant::now();
    let n = events_store
        .purchase_summaries(TenantId(1), cairn_events::Customers::All, chrono_tz::UTC, clock.now())
        .await
        .unwrap()
        .len();
    println!(
        "   Cairn's summaries alone (per day then per customer, duplicate check, into Rust): {:.2} s, {n} customers",
        summarise.elapsed().as_secs_f64()
    );
    let scorer = Arc::new(Scorer::new(store.clone(), events_store.clone(), clock, ScoringSettings::default()));
    first_and_second_recompute(&store, &scorer).await;
    first_recompute_owed_to_a_webhook(&store, &admin, &scorer).await;
    freshness_during_recompute(&store, &events_store, &admin, customers, scorer).await;
    drop(admin);
}

/// While a scheduled recompute of the big workspace runs, purchases arrive at 1,000/s for
/// existing customers and, every 100 ms, a probe: a new customer's first purchase. Each is
/// stored and marked exactly as the ingest processor does; the probe's latency runs from its
/// mark to its scores being stored.
async fn freshness_during_recompute(
    store: &Store,
    events: &Arc<dyn EventStore>,
    admin: &sqlx::PgPool,
    customers: u64,
    scorer: Arc<Scorer>,
) {
    let tenant = TenantId(1);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(scorer.clone().run(stopped));
    let job = enqueue_recompute(store, tenant, false, None).await.unwrap();
    let purchase = |customer: i64, id: String| cairn_events::Event {
        tenant_id: tenant,
        message_id: id,
        customer_id: cairn_domain::CustomerId(customer),
        anonymous_id: None,
        user_id: None,
        kind: "track".into(),
        name: "purchase".into(),
        properties: json!({"amount": 20.0}),
        context: json!({}),
        timestamp: chrono::Utc::now(),
        sent_at: None,
        received_at: chrono::Utc::now(),
        amount: Some(20.0),
        currency: Some("EUR".into()),
    };
    let mut latencies = Vec::new();
    let mut n = 0u64;
    let started = Instant::now();
    let mut done_at: Option<Instant> = None;
    // Bounded, so that a recompute starved by the incremental path shows as unfinished.
    while done_at.is_none_or(|t| t.elapsed() < Duration::from_secs(1)) && started.elapsed() < Duration::from_secs(300) {
        let tick = Instant::now();
        // 100 purchases of existing customers, as one processor batch.
        let batch: Vec<_> = (0..100)
            .map(|_| {
                n += 1;
                purchase(1 + ((n * 7919) % customers) as i64, format!("live-{n}"))
            })
            .collect();
        let marks: Vec<_> = batch.iter().map(|e| (tenant, e.customer_id)).collect();
        events.insert(&batch).await.unwrap();
        store.write().await.unwrap().mark_scoring_dirty(&marks, chrono::Utc::now()).await.unwrap();
        // The probe: a new customer's first purchase.
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO customers (tenant_id, email, traits, created_at, updated_at)
             VALUES (1, $1, '{}', now(), now()) RETURNING id",
        )
        .bind(format!("probe{n}@bench.test"))
        .fetch_one(admin)
        .await
        .unwrap();
        events.insert(&[purchase(id, format!("probe-{n}"))]).await.unwrap();
        store
            .write()
            .await
            .unwrap()
            .mark_scoring_dirty(&[(tenant, cairn_domain::CustomerId(id))], chrono::Utc::now())
            .await
            .unwrap();
        scorer.wake().notify_one();
        let marked = Instant::now();
        let admin2 = admin.clone();
        latencies.push(tokio::spawn(async move {
            loop {
                let found: Option<i64> =
                    // By the primary key: without the workspace this is a scan of a million rows,
                    // and a dozen probes polling it every 10 ms took both cores from what they time.
                    sqlx::query_scalar("SELECT customer_id FROM customer_scores WHERE tenant_id = 1 AND customer_id = $1")
                        .bind(id)
                        .fetch_optional(&admin2)
                        .await
                        .unwrap();
                if found.is_some() || marked.elapsed() > Duration::from_secs(60) {
                    return marked.elapsed().as_secs_f64() * 1e3;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
        if done_at.is_none() {
            let status = store.read().await.unwrap().job(job).await.unwrap().status;
            if status == "done" {
                done_at = Some(Instant::now());
            }
        }
        tokio::time::sleep(Duration::from_millis(100).saturating_sub(tick.elapsed())).await;
    }
    let recompute = match done_at {
        Some(t) => format!("{:.1} s", (t - started).as_secs_f64()),
        None => "NOT FINISHED within 300 s".to_string(),
    };
    let mut lat = Vec::new();
    for l in latencies {
        lat.push(l.await.unwrap());
    }
    let _ = stop.send(true);
    let _ = worker.await;
    lat.sort_by(f64::total_cmp);
    println!(
        "   freshness while a scheduled recompute runs ({recompute}, {} purchases/s beside it): {} probes, mark → scores stored p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        1_000,
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    );
}

async fn embedded(customers: u64, events: u64) {
    println!("== SQLite + SQLite: {customers} customers, {events} purchase events");
    let dir = TempDir::new();
    let store = Store::connect(&StoreConfig::Sqlite { path: dir.0.join("cairn.db") }).await.unwrap();
    store.migrate().await.unwrap();
    let events_path = dir.0.join("events.db");
    let events_store: Arc<dyn EventStore> = Arc::new(SqliteEventStore::open(&events_path).await.unwrap());
    events_store.migrate().await.unwrap();

    let t = Instant::now();
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.0.join("cairn.db").display())).await.unwrap();
    sqlx::query("INSERT INTO tenants (name, slug, created_at) VALUES ('Bench', 'bench', '2026-01-01T00:00:00Z')")
        .execute(&db)
        .await
        .unwrap();
    sqlx::query(
        "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < $1)
         INSERT INTO customers (tenant_id, email, traits, created_at, updated_at)
         SELECT 1, 'c' || n || '@bench.test', '{}', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z' FROM g",
    )
    .bind(customers as i64)
    .execute(&db)
    .await
    .unwrap();
    let ev = sqlx::SqlitePool::connect(&format!("sqlite://{}", events_path.display())).await.unwrap();
    sqlx::query(
        "WITH RECURSIVE g(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM g WHERE n < $1 - 1)
         INSERT INTO events (tenant_id, message_id, customer_id, kind, name, properties, context, timestamp,
                             received_at, amount, currency)
         SELECT 1, 'm' || n, (n % $2) + 1, 'track', 'purchase', '{}', '{}',
                1735689600000 + (((n % $2) * 7919) % 180) * 86400000
                    + ((n * 2654435761) % ((1 + ((n % $2) * 104729) % 365) * 86400000)),
                1767225600000, (5 + ((n % $2) * 40503) % 100) * (50 + (n * 7907) % 100) / 100.0, 'EUR'
         FROM g",
    )
    .bind(events as i64)
    .bind(customers as i64)
    .execute(&ev)
    .await
    .unwrap();
    println!("   data generated in {:.1} s", t.elapsed().as_secs_f64());

    let scorer = Scorer::new(store.clone(), events_store.clone(), Clock::system(), ScoringSettings::default());
    first_and_second_recompute(&store, &scorer).await;
}

/// Reads a customer's stored order count straight from the entity store.
enum Probe {
    Pg(sqlx::PgPool),
    Lite(sqlx::SqlitePool),
}

impl Probe {
    async fn order_count(&self, email: &str) -> Option<i64> {
        const SQL: &str = "SELECT s.clv_order_count FROM customer_scores s JOIN customers c ON c.id = s.customer_id
                           WHERE c.email = $1";
        match self {
            Probe::Pg(p) => sqlx::query_scalar(SQL).bind(email).fetch_optional(p).await.unwrap(),
            Probe::Lite(p) => sqlx::query_scalar(SQL).bind(email).fetch_optional(p).await.unwrap(),
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Posts purchases at `rate`/s for `secs` to a running binary and measures, for one probe
/// every 100 ms, the time from acknowledgement to the probe's scores being stored.
async fn freshness(rate: u64, secs: u64, scale_out: bool) {
    let what = if scale_out { "PostgreSQL + ClickHouse" } else { "the embedded default (SQLite + SQLite)" };
    println!("== freshness: `cairn serve` on {what}, {rate} purchase events/s for {secs} s");
    let pg = if scale_out { Some(FreshPg::create().await) } else { None };
    let ch = if scale_out { Some(FreshClickHouse::new("cairn_bench_fresh")) } else { None };
    let dir = TempDir::new();
    let port = 20_000 + (std::process::id() % 20_000) as u16;
    let base = format!("http://127.0.0.1:{port}");
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_cairn"));
    if let (Some(pg), Some(ch)) = (&pg, &ch) {
        command
            .env("CAIRN_DATABASE_URL", &pg.url)
            .env("CAIRN_CLICKHOUSE_URL", &ch.url)
            .env("CAIRN_CLICKHOUSE_DATABASE", &ch.database);
    }
    let mut child = command
        .arg("serve")
        .env("CAIRN_LISTEN", format!("127.0.0.1:{port}"))
        .env("CAIRN_DATA_DIR", &dir.0)
        .env("CAIRN_ALLOW_REGISTRATION", "true")
        .env("CAIRN_RATE_LIMIT_SECRET", "1000000")
        .env("CAIRN_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start cairn");
    let http = reqwest::Client::new();
    let started = Instant::now();
    while http.get(format!("{base}/readyz")).send().await.map(|r| !r.status().is_success()).unwrap_or(true) {
        assert!(started.elapsed() < Duration::from_secs(30), "cairn did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let post = |path: &str, auth: Option<&str>, body: Value| {
        let mut r = http.post(format!("{base}{path}")).json(&body);
        if let Some(token) = auth {
            r = r.bearer_auth(token);
        }
        async move { r.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let body = json!({"email": "bench@example.com", "password": "bench password 1", "name": "B", "workspace": "Bench"});
    let reg = post("/v1/auth/register", None, body).await;
    let token = reg["token"].as_str().expect("token").to_string();
    let key = post("/v1/api-keys", Some(&token), json!({"name": "bench", "type": "secret"})).await;
    let key = key["data"]["key"].as_str().expect("key").to_string();
    let send = {
        let (http, base, key) = (http.clone(), base.clone(), key.clone());
        move |email: String, amount: f64| {
            let (http, base, key) = (http.clone(), base.clone(), key.clone());
            async move {
                let r = http
                    .post(format!("{base}/v1/track/event"))
                    .header("X-API-Key", &key)
                    .json(&json!({"customer_email": email, "event": "purchase",
                                  "properties": {"amount": amount, "currency": "EUR"}}))
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "{}", r.status());
            }
        }
    };
    // A base of 2,000 customers with purchases and a first recompute, so cut points exist.
    let mut warm = Vec::new();
    for i in 0..2_000 {
        warm.push(tokio::spawn(send(format!("base{i}@bench.test"), 10.0 + (i % 90) as f64)));
    }
    for w in warm {
        w.await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    let pool = Arc::new(match &pg {
        Some(pg) => Probe::Pg(sqlx::PgPool::connect(&pg.url).await.unwrap()),
        None => Probe::Lite(
            sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", dir.0.join("cairn.db").display())).await.unwrap(),
        ),
    });
    let load = {
        let send = send.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let per_tick = rate / 100;
            let mut n = 0u64;
            let end = Instant::now() + Duration::from_secs(secs);
            while Instant::now() < end {
                tick.tick().await;
                for _ in 0..per_tick {
                    n += 1;
                    tokio::spawn(send(format!("base{}@bench.test", n % 2_000), 1.0 + (n % 50) as f64));
                }
            }
            n
        })
    };
    let mut probes = Vec::new();
    let end = Instant::now() + Duration::from_secs(secs);
    let mut i = 0;
    while Instant::now() < end {
        i += 1;
        let (send, pool) = (send.clone(), pool.clone());
        probes.push(tokio::spawn(async move {
            let email = format!("probe{i}@bench.test");
            send(email.clone(), 42.0).await;
            let acked = Instant::now();
            loop {
                let found = pool.order_count(&email).await;
                if found == Some(1) {
                    return acked.elapsed().as_secs_f64() * 1e3;
                }
                if acked.elapsed() > Duration::from_secs(30) {
                    return f64::INFINITY;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sent = load.await.unwrap();
    let mut lat: Vec<f64> = Vec::new();
    for p in probes {
        lat.push(p.await.unwrap());
    }
    lat.sort_by(f64::total_cmp);
    println!(
        "   {sent} load events + {} probes; ack → scores stored: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    );
    let _ = child.kill().await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let only = std::env::var("CAIRN_BENCH_ONLY").unwrap_or_default();
    let s = scale();
    if only.is_empty() || only == "scale" {
        scale_out((1_000_000.0 * s) as u64, (20_000_000.0 * s) as u64).await;
        embedded((100_000.0 * s) as u64, (2_000_000.0 * s) as u64).await;
    }
    if only.is_empty() || only == "freshness" {
        freshness(1_000, 30, true).await;
        freshness(1_000, 30, false).await;
    }
}

//! Segments benchmark (issue 5): `cargo bench --bench segments`.
//!
//! On PostgreSQL + ClickHouse with 1,000,000 customers (traits, scores) and 20,000,000
//! purchase events over 2025, the clock at 2026-01-01:
//! 1. Baselines in the same run: the bare ClickHouse aggregation behind "purchase ≥ 2 times in
//!    the last 30 days" and the bare PostgreSQL query behind the trait and RFM conditions.
//! 2. One segment of three conditions (a trait, an RFM score, purchase ≥ 2 in 30 days):
//!    evaluation over every customer (as a preview does), median of three; then created, its
//!    evaluation job with every member and event written.
//! 3. 100 such segments (different plans, scores and windows): their first evaluation, then a
//!    refresh of all 100 with nothing changed.
//! 4. Incremental upkeep: purchases for random customers (each a different customer: the worst
//!    case) at 1,000 and then 5,000 events/s for 20 s each, stored and marked exactly as the
//!    ingest processor does, with all 101 segments defined; every 200 ms a probe customer gets
//!    the purchases that put them in the first segment, timed from the mark to the membership
//!    row.
//!
//! `CAIRN_BENCH_SCALE` (default 1.0) scales the data down for a quick run.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use cairn_domain::{Clock, CustomerId, TenantId};
use cairn_events::{ClickHouseConfig, ClickHouseStore, EventStore};
use cairn_segments::{eval::Evaluator, EvaluationProgress, SegmentSettings, Segmenter};
use cairn_store::{segments::SegmentFields, Store, StoreConfig};
use cairn_testkit::{FreshClickHouse, FreshPg};
use chrono::{TimeZone, Utc};
use serde_json::json;

fn scale() -> f64 {
    std::env::var("CAIRN_BENCH_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

const THREE: &str = r#"{"all": [{"field": "traits.plan", "op": "eq", "value": "pro"}, {"rfm_score_min": 9},
    {"event": "purchase", "count": {"at_least": 2}, "within_days": 30}]}"#;

/// Runs a ClickHouse statement off the async threads; returns the seconds it took.
async fn ch_query(ch: &FreshClickHouse, sql: String) -> f64 {
    let ch = FreshClickHouse { url: ch.url.clone(), database: ch.database.clone() };
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        let out = ch.query(&sql);
        std::mem::forget(ch); // the original drops the database
        out
    })
    .await
    .unwrap();
    assert!(!out.contains("Exception"), "{out}");
    started.elapsed().as_secs_f64()
}

async fn fill(admin: &sqlx::PgPool, ch: &FreshClickHouse, customers: u64, events: u64) {
    sqlx::query("INSERT INTO tenants (name, slug, created_at) VALUES ('Bench', 'bench', now())")
        .execute(admin)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO customers (tenant_id, email, traits, created_at, updated_at)
         SELECT 1, 'c' || g || '@bench.test',
                jsonb_build_object('plan', (ARRAY['free', 'pro', 'team'])[1 + g % 3], 'seats', g % 50), now(), now()
         FROM generate_series(1, $1) g",
    )
    .bind(customers as i64)
    .execute(admin)
    .await
    .unwrap();
    // Scores as the scorer would store them; the RFM score spread over 3–15.
    sqlx::query(
        "INSERT INTO customer_scores (tenant_id, customer_id, transactions, first_purchase_day, last_purchase_day,
             last_purchase_at, gross, first_day_gross, refunds, rfm_recency, rfm_frequency, rfm_monetary, rfm_score,
             rfm_segment, clv_total, clv_order_count, clv_average_order, clv_predicted, p_alive, clv_method, updated_at)
         SELECT 1, g, 20, 20089, 20450, now(), 1000, 50, 0, r, f, m, r + f + m,
                CASE WHEN r + f + m >= 13 THEN 'Champions' WHEN r + f + m >= 9 THEN 'Loyal Customers'
                     WHEN r + f + m >= 5 THEN 'At Risk' ELSE 'Lost' END,
                1000, 20, 50, 300, 0.5, 'bgnbd_gamma_gamma', now()
         FROM (SELECT g, 1 + (g * 7919 % 10007) % 5 AS r, 1 + (g * 104729 % 10009) % 5 AS f,
                      1 + (g * 1299709 % 10037) % 5 AS m FROM generate_series(1, $1) g) x",
    )
    .bind(customers as i64)
    .execute(admin)
    .await
    .unwrap();
    sqlx::query("ANALYZE").execute(admin).await.unwrap();
    ch_query(
        ch,
        format!(
            "INSERT INTO {db}.events SELECT 1, concat('m', toString(number)), (number % {customers}) + 1, '', '', 'track',
                 'purchase', '{{\"amount\": 20}}', '{{}}', 1735689600000 + intHash64(number) % (365 * 86400000), 0,
                 1767225600000, toNullable(toFloat64(20)), 'EUR'
             FROM system.numbers LIMIT {events}",
            db = ch.database
        ),
    )
    .await;
    ch_query(ch, format!("OPTIMIZE TABLE {}.events FINAL", ch.database)).await;
}

async fn run_jobs(store: &Store, worker: &Segmenter) -> EvaluationProgress {
    let mut last = EvaluationProgress::default();
    while let Some(id) = worker.work_one(None).await.unwrap() {
        let job = store.read().await.unwrap().job(id).await.unwrap();
        assert_eq!(job.status, "done", "{:?}", job.last_error);
        last = serde_json::from_str(job.progress.as_deref().unwrap()).unwrap();
    }
    last
}

fn hundred() -> Vec<String> {
    let mut out = Vec::new();
    for days in [14, 30, 60] {
        for plan in ["free", "pro", "team"] {
            for score in 3..=15 {
                out.push(format!(
                    r#"{{"all": [{{"field": "traits.plan", "op": "eq", "value": "{plan}"}}, {{"field": "rfm_score", "op": "eq", "value": {score}}},
                        {{"event": "purchase", "count": {{"at_least": 2}}, "within_days": {days}}}]}}"#
                ));
            }
        }
    }
    out.truncate(100);
    out
}

#[tokio::main]
async fn main() {
    // `RUST_LOG=cairn_segments=debug` shows where each incremental batch spends its time.
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let customers = (1_000_000.0 * scale()) as u64;
    let events = (20_000_000.0 * scale()) as u64;
    println!("== PostgreSQL + ClickHouse: {customers} customers, {events} purchase events");
    let pg = FreshPg::create().await;
    let store = Store::connect(&StoreConfig::Postgres { url: pg.url.clone(), max_connections: 8 }).await.unwrap();
    store.migrate().await.unwrap();
    let ch = FreshClickHouse::new("cairn_bench_segments");
    let config = ClickHouseConfig { url: ch.url.clone(), database: ch.database.clone(), user: None, password: None };
    let events_store: Arc<dyn EventStore> = Arc::new(ClickHouseStore::new(config));
    events_store.migrate().await.unwrap();
    let admin = sqlx::PgPool::connect(&pg.url).await.unwrap();
    let t = Instant::now();
    fill(&admin, &ch, customers, events).await;
    println!("   data generated in {:.1} s", t.elapsed().as_secs_f64());

    let clock = Clock::test();
    clock.set(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
    let window_from = clock.now().timestamp_millis() - 30 * 86_400_000;
    let bare_ch = ch_query(
        &ch,
        format!(
            "SELECT customer_id FROM {}.events WHERE tenant_id = 1 AND name = 'purchase' AND timestamp >= {window_from}
             GROUP BY customer_id HAVING count() >= 2 FORMAT Null",
            ch.database
        ),
    )
    .await;
    let started = Instant::now();
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM customers c JOIN customer_scores s ON s.customer_id = c.id
         WHERE c.tenant_id = 1 AND c.traits ->> 'plan' = 'pro' AND s.rfm_score >= 9",
    )
    .fetch_one(&admin)
    .await
    .unwrap();
    let bare_pg = started.elapsed().as_secs_f64();
    println!("   baselines: bare ClickHouse 'purchase ≥ 2 in 30 days' GROUP BY {bare_ch:.2} s; bare PostgreSQL trait + RFM query {bare_pg:.2} s ({n} rows)");

    // 2. One segment of three conditions.
    let filter = cairn_segments::parse(&serde_json::from_str(THREE).unwrap(), "filters").unwrap();
    let mut runs = Vec::new();
    let mut members = 0;
    for _ in 0..3 {
        let overrides = Default::default();
        let mut ev =
            Evaluator::new(&store, events_store.as_ref(), TenantId(1), clock.now(), chrono_tz::UTC, &overrides);
        let started = Instant::now();
        members = ev.members(&filter, None).await.unwrap().len();
        runs.push(started.elapsed().as_secs_f64());
    }
    runs.sort_by(f64::total_cmp);
    println!(
        "   three-condition segment, evaluated over every customer: median {:.2} s (runs {:.2} / {:.2} / {:.2}), {members} members",
        runs[1], runs[0], runs[1], runs[2]
    );
    // One worker throughout, as one instance has: it holds the workspace's lease.
    let worker =
        Arc::new(Segmenter::new(store.clone(), events_store.clone(), clock.clone(), SegmentSettings::default()));
    let mut conn = store.write().await.unwrap();
    let fields = SegmentFields { name: "Three", kind: "dynamic", filters: Some(THREE), ..Default::default() };
    let first = conn.insert_segment(TenantId(1), &fields, None, Utc::now()).await.unwrap().id;
    cairn_segments::enqueue_evaluation(&mut conn, TenantId(1), first, Utc::now()).await.unwrap();
    drop(conn);
    let started = Instant::now();
    let p = run_jobs(&store, &worker).await;
    println!(
        "   created: evaluation job {:.2} s (evaluation {} ms, then {} members and {} customer.segment_entered written)",
        started.elapsed().as_secs_f64(),
        p.evaluate_ms,
        p.entered,
        p.entered
    );

    // 3. A hundred segments.
    let filters = hundred();
    let mut ids = Vec::new();
    let mut conn = store.write().await.unwrap();
    for (k, f) in filters.iter().enumerate() {
        let name = format!("segment {k}");
        let fields = SegmentFields { name: &name, kind: "dynamic", filters: Some(f), ..Default::default() };
        ids.push(conn.insert_segment(TenantId(1), &fields, None, Utc::now()).await.unwrap().id);
    }
    for id in &ids {
        cairn_segments::enqueue_evaluation(&mut conn, TenantId(1), *id, Utc::now()).await.unwrap();
    }
    drop(conn);
    let started = Instant::now();
    run_jobs(&store, &worker).await;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM segment_members").fetch_one(&admin).await.unwrap();
    println!(
        "   100 segments, first evaluation (writing their members): {:.1} s; {total} memberships in all",
        started.elapsed().as_secs_f64()
    );
    let mut conn = store.write().await.unwrap();
    for id in &ids {
        cairn_segments::enqueue_evaluation(&mut conn, TenantId(1), *id, Utc::now()).await.unwrap();
    }
    drop(conn);
    let started = Instant::now();
    run_jobs(&store, &worker).await;
    println!("   100 segments refreshed (nothing changed): {:.1} s", started.elapsed().as_secs_f64());

    // 4. Incremental upkeep at 5,000 events/s.
    for rate in [1_000, 5_000] {
        incremental(&store, &events_store, &admin, &clock, customers, first, worker.clone(), rate).await;
    }
    drop(admin);
}

async fn incremental(
    store: &Store,
    events: &Arc<dyn EventStore>,
    admin: &sqlx::PgPool,
    clock: &Clock,
    customers: u64,
    segment: i64,
    worker: Arc<Segmenter>,
    rate: u64,
) {
    let secs = 20u64;
    let tenant = TenantId(1);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(worker.clone().run(stopped));
    // Probes: pro customers with an RFM score of 9 or more who are not members yet.
    let probes: Vec<i64> = sqlx::query_scalar(
        "SELECT c.id FROM customers c JOIN customer_scores s ON s.customer_id = c.id
         WHERE c.traits ->> 'plan' = 'pro' AND s.rfm_score >= 9
           AND c.id NOT IN (SELECT customer_id FROM segment_members WHERE segment_id = $1) LIMIT 200",
    )
    .bind(segment)
    .fetch_all(admin)
    .await
    .unwrap();
    let now = clock.now();
    let purchase = |customer: i64, id: String| cairn_events::Event {
        tenant_id: tenant,
        message_id: id,
        customer_id: CustomerId(customer),
        anonymous_id: None,
        user_id: None,
        kind: "track".into(),
        name: "purchase".into(),
        properties: json!({"amount": 20.0}),
        context: json!({}),
        timestamp: now - chrono::Duration::hours(1),
        sent_at: None,
        received_at: now,
        amount: Some(20.0),
        currency: Some("EUR".into()),
    };
    let mut latencies = Vec::new();
    let mut backlog = Vec::new();
    let mut n = 0u64;
    let started = Instant::now();
    let per_tick = rate / 5;
    let first_probe = if rate == 1_000 { 0 } else { 100 };
    let mut probe = first_probe;
    while started.elapsed() < Duration::from_secs(secs) {
        let tick = Instant::now();
        // A processor batch: 1,000 purchases of random existing customers.
        let batch: Vec<_> = (0..per_tick)
            .map(|_| {
                n += 1;
                purchase(1 + ((n * 7919) % customers) as i64, format!("live-{rate}-{n}"))
            })
            .collect();
        let mut marks: Vec<_> = batch.iter().map(|e| (tenant, e.customer_id, 1 | 4)).collect();
        events.insert(&batch).await.unwrap();
        // The probe: two purchases that put the customer in the segment.
        let p = probes[probe % probes.len()];
        probe += 1;
        events
            .insert(&[purchase(p, format!("probe-{rate}-{n}-a")), purchase(p, format!("probe-{rate}-{n}-b"))])
            .await
            .unwrap();
        marks.push((tenant, CustomerId(p), 1 | 4));
        marks.sort_unstable_by_key(|m| m.1 .0);
        marks.dedup_by_key(|m| m.1 .0);
        store.write().await.unwrap().mark_segments_dirty(&marks, Utc::now()).await.unwrap();
        worker.wake().notify_one();
        let marked = Instant::now();
        let admin2 = admin.clone();
        latencies.push(tokio::spawn(async move {
            loop {
                let found: Option<i64> = sqlx::query_scalar(
                    "SELECT customer_id FROM segment_members WHERE segment_id = $1 AND customer_id = $2",
                )
                .bind(segment)
                .bind(p)
                .fetch_optional(&admin2)
                .await
                .unwrap();
                if found.is_some() || marked.elapsed() > Duration::from_secs(120) {
                    return marked.elapsed().as_secs_f64() * 1e3;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
        if n % rate < per_tick {
            let left: i64 = sqlx::query_scalar("SELECT count(*) FROM segment_dirty").fetch_one(admin).await.unwrap();
            backlog.push(left);
        }
        tokio::time::sleep(Duration::from_millis(200).saturating_sub(tick.elapsed())).await;
    }
    let load_s = started.elapsed().as_secs_f64();
    let drain = Instant::now();
    loop {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM segment_dirty").fetch_one(admin).await.unwrap();
        if left == 0 || drain.elapsed() > Duration::from_secs(300) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drain_s = drain.elapsed().as_secs_f64();
    let mut lat = Vec::new();
    for l in latencies {
        lat.push(l.await.unwrap());
    }
    let _ = stop.send(true);
    let _ = running.await;
    lat.sort_by(f64::total_cmp);
    println!(
        "   incremental at {} events/s for {load_s:.0} s (101 segments): marks waiting each second {backlog:?}; drained {drain_s:.1} s after the load stopped; {} probes, mark → member p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        rate,
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    );
}

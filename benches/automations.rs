//! The automation benchmark (docs/benchmarks.md), in process, on SQLite (default) or PostgreSQL
//! (`CAIRN_BENCH_PG=1`):
//!
//! 1. N customers (default 100,000; `CAIRN_BENCH_RUNS`) enrolled in a 6-node flow — trigger →
//!    update traits → 1 h delay → condition on a trait → add a tag (Yes) or exit (No) — run to
//!    the delay: node executions per second, durable (every batch a committed transaction).
//! 2. N waiting runs for 5 s: the engine's CPU time while they wait.
//! 3. The clock moves past the delay: the N runs fall due at once and finish; executions per
//!    second, and every run checked (traits, tags, exits).
//! 4. Latency: 20,000 runs whose delays end at times spread over 10 s of real time, with the
//!    engine on the system clock; for each run, from its due time to the moment a poller (every
//!    2 ms) first sees it finished — an upper bound of due → executed, commit included.
//!
//!     cargo bench --bench automations
//!     CAIRN_BENCH_PG=1 cargo bench --bench automations

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use cairn_automations::engine::{start_runs, Engine, EngineConfig};
use cairn_domain::{Clock, TenantId};
use cairn_events::{EventStore, SqliteEventStore};
use cairn_store::{
    automations::{AutomationFields, NewRun},
    Store, StoreConfig,
};
use cairn_testkit::{FreshPg, TempDir};
use chrono::{DateTime, SubsecRound, Utc};
use serde_json::{json, Value};

fn runs() -> usize {
    std::env::var("CAIRN_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// CPU seconds this process has used (user + system), from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

enum Raw {
    Sqlite(sqlx::SqlitePool),
    Pg(sqlx::PgPool),
}

impl Raw {
    async fn exec(&self, sql: &str) {
        match self {
            Raw::Sqlite(p) => sqlx::query(sql).execute(p).await.map(|_| ()).unwrap(),
            Raw::Pg(p) => sqlx::query(sql).execute(p).await.map(|_| ()).unwrap(),
        }
    }

    async fn count(&self, sql: &str) -> i64 {
        match self {
            Raw::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
            Raw::Pg(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
        }
    }

    /// The steps written after step `after` for one automation's runs: (step id, customer, the
    /// run's status). A range scan of new step rows only — a poller that scanned the runs table
    /// for finished runs cost more CPU than the engine it was timing (`+ 0` keeps SQLite off
    /// the per-automation index, which would scan every step of the automation; the subqueries
    /// keep PostgreSQL from hashing the whole runs table for a join, and the `LIMIT` makes it
    /// walk the primary key instead of scanning the table).
    /// PostgreSQL's checkpoint counters (`pg_stat_bgwriter`): timed and requested checkpoints,
    /// buffers the checkpointer wrote, its write and sync milliseconds, buffers backends wrote.
    async fn checkpointer(&self) -> Option<Vec<i64>> {
        let Raw::Pg(p) = self else { return None };
        let row: (i64, i64, i64, f64, f64, i64) = sqlx::query_as(
            "SELECT checkpoints_timed, checkpoints_req, buffers_checkpoint, checkpoint_write_time,
                    checkpoint_sync_time, buffers_backend FROM pg_stat_bgwriter",
        )
        .fetch_one(p)
        .await
        .unwrap();
        Some(vec![row.0, row.1, row.2, row.3 as i64, row.4 as i64, row.5])
    }

    async fn new_steps(&self, automation: i64, after: i64) -> Vec<(i64, i64, String)> {
        let sql = format!(
            "SELECT s.id, (SELECT r.customer_id FROM automation_runs r WHERE r.id = s.run_id),
                    (SELECT r.status FROM automation_runs r WHERE r.id = s.run_id)
             FROM automation_steps s WHERE s.id > {after} AND s.automation_id + 0 = {automation}
             ORDER BY s.id LIMIT 10000"
        );
        match self {
            Raw::Sqlite(p) => sqlx::query_as(&sql).fetch_all(p).await.unwrap(),
            Raw::Pg(p) => sqlx::query_as(&sql).fetch_all(p).await.unwrap(),
        }
    }
}

fn design(nodes: Value, edges: Value) -> Value {
    json!({"nodes": nodes, "edges": edges})
}

async fn automation(store: &Store, name: &str, d: Value, now: DateTime<Utc>) -> i64 {
    let mut tx = store.begin().await.unwrap();
    let f = AutomationFields {
        name: name.into(),
        trigger_type: "manual".into(),
        trigger_config: json!({}),
        reentry: "every_time".into(),
        exit_filter: None,
        design: d,
    };
    let a = tx.insert_automation(TenantId(1), &f, &format!("tok-{name}"), now).await.unwrap();
    tx.publish_automation(&a, &json!({}), &[], None, now).await.unwrap();
    tx.commit().await.unwrap();
    a.id
}

async fn enroll(store: &Store, automation: i64, customers: &[i64], now: DateTime<Utc>) {
    for chunk in customers.chunks(5_000) {
        let runs: Vec<NewRun> = chunk
            .iter()
            .map(|c| NewRun {
                tenant_id: 1,
                automation_id: automation,
                version: 1,
                customer_id: *c,
                occurrence: "bench".into(),
                exclusive: false,
                node: "t".into(),
                context: json!({"trigger": {"type": "manual"}}),
            })
            .collect();
        let mut tx = store.begin().await.unwrap();
        start_runs(&mut tx, &runs, now).await.unwrap();
        tx.commit().await.unwrap();
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = runs();
    let dir = TempDir::new();
    let pg = if std::env::var("CAIRN_BENCH_PG").is_ok() { Some(FreshPg::create().await) } else { None };
    let (config, raw, backend) = match &pg {
        Some(pg) => {
            let pool = sqlx::PgPool::connect(&pg.url).await.unwrap();
            (StoreConfig::Postgres { url: pg.url.clone(), max_connections: 8 }, Raw::Pg(pool), "PostgreSQL")
        }
        None => {
            let path = dir.0.join("cairn.db");
            (
                StoreConfig::Sqlite { path: path.clone() },
                Raw::Sqlite(sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap()),
                "SQLite",
            )
        }
    };
    let store = Store::connect(&config).await.unwrap();
    store.migrate().await.unwrap();
    let raw = match raw {
        Raw::Sqlite(_) => Raw::Sqlite(
            sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.0.join("cairn.db").display())).await.unwrap(),
        ),
        r => r,
    };
    let events: Arc<dyn EventStore> = Arc::new(SqliteEventStore::open(&dir.0.join("events.db")).await.unwrap());
    events.migrate().await.unwrap();
    println!("automation benchmark: {n} runs, entity store {backend}");

    // Customers: a third on the pro plan; 20,000 more for the latency phase, each with its own
    // due time (set below).
    raw.exec("INSERT INTO tenants (name, slug, created_at) VALUES ('Bench', 'bench', '2026-01-01T00:00:00Z')").await;
    let total = n + 20_000;
    let gen = match &raw {
        Raw::Pg(_) => format!(
            "INSERT INTO customers (tenant_id, email, traits, created_at, updated_at)
             SELECT 1, 'c' || g || '@bench.test', jsonb_build_object('plan', CASE WHEN g % 3 = 0 THEN 'pro' ELSE 'free' END),
                    now(), now() FROM generate_series(1, {total}) g"
        ),
        Raw::Sqlite(_) => format!(
            "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < {total})
             INSERT INTO customers (tenant_id, email, traits, created_at, updated_at)
             SELECT 1, 'c' || x || '@bench.test', json_object('plan', CASE WHEN x % 3 = 0 THEN 'pro' ELSE 'free' END),
                    '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z' FROM g"
        ),
    };
    raw.exec(&gen).await;

    let clock = Clock::test();
    let t0: DateTime<Utc> = "2026-06-01T10:00:00Z".parse().unwrap();
    clock.set(t0);
    let flow = automation(
        &store,
        "six",
        design(
            json!([
                {"id": "t", "type": "trigger", "data": {}},
                {"id": "a1", "type": "action", "data": {"action": "update_traits", "traits": {"welcomed": true}}},
                {"id": "d", "type": "delay", "data": {"duration": "1h"}},
                {"id": "c", "type": "condition", "data": {"filter": {"field": "traits.plan", "op": "eq", "value": "pro"}}},
                {"id": "a2", "type": "action", "data": {"action": "add_tag", "tag": "pro-nurtured"}},
                {"id": "x", "type": "exit", "data": {}}
            ]),
            json!([
                {"id": "1", "source": "t", "target": "a1"}, {"id": "2", "source": "a1", "target": "d"},
                {"id": "3", "source": "d", "target": "c"}, {"id": "4", "source": "c", "target": "a2", "label": "Yes"},
                {"id": "5", "source": "c", "target": "x", "label": "No"}
            ]),
        ),
        t0,
    )
    .await;
    let engine = Engine::new(store.clone(), events.clone(), clock.clone(), EngineConfig::default());

    // 1. Enrollment, then every run to its delay.
    let ids: Vec<i64> = (1..=n as i64).collect();
    let started = Instant::now();
    enroll(&store, flow, &ids, t0).await;
    let enroll_s = started.elapsed().as_secs_f64();
    println!("enrolled {n} runs in {enroll_s:.2} s: {:.0} runs/s", n as f64 / enroll_s);
    let started = Instant::now();
    engine.drain().await.unwrap();
    let first_s = started.elapsed().as_secs_f64();
    let waiting = raw
        .count(&format!("SELECT COUNT(*) FROM automation_runs WHERE automation_id = {flow} AND status = 'waiting'"))
        .await;
    assert_eq!(waiting, n as i64);
    println!(
        "to the delay: {} node executions (trigger, update_traits, delay) in {first_s:.2} s: {:.0} executions/s",
        3 * n,
        3.0 * n as f64 / first_s
    );

    // 2. Waiting costs nothing: the engine's loop, idle with N parked runs, for 5 s.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let idle = Arc::new(Engine::new(store.clone(), events.clone(), clock.clone(), EngineConfig::default()));
    let cpu0 = cpu_seconds();
    let handle = tokio::spawn(idle.clone().run(stop_rx));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let cpu = cpu_seconds() - cpu0;
    stop_tx.send(true).unwrap();
    idle.waker().notify_one();
    let _ = handle.await;
    println!("{n} waiting runs for 5 s: {cpu:.3} CPU seconds for the whole process ({:.1} %)", cpu / 5.0 * 100.0);

    // 3. They all fall due at once.
    clock.set(t0 + chrono::Duration::hours(1) + chrono::Duration::seconds(1));
    let started = Instant::now();
    engine.drain().await.unwrap();
    let second_s = started.elapsed().as_secs_f64();
    println!(
        "falling due: {} node executions (delay, condition, tag or exit) in {second_s:.2} s: {:.0} executions/s",
        3 * n,
        3.0 * n as f64 / second_s
    );
    let completed = raw
        .count(&format!("SELECT COUNT(*) FROM automation_runs WHERE automation_id = {flow} AND status = 'completed'"))
        .await;
    let exited = raw
        .count(&format!("SELECT COUNT(*) FROM automation_runs WHERE automation_id = {flow} AND status = 'exited'"))
        .await;
    let pro = (1..=n).filter(|g| g % 3 == 0).count() as i64;
    assert_eq!((completed, exited), (pro, n as i64 - pro), "Yes for the pro plan, No (exit) for the others");
    let steps = raw.count(&format!("SELECT COUNT(*) FROM automation_steps WHERE automation_id = {flow}")).await;
    assert_eq!(steps, 6 * n as i64, "one step per node per run");
    let tagged = match &raw {
        Raw::Pg(_) => "SELECT COUNT(*) FROM customers WHERE traits -> 'tags' @> '[\"pro-nurtured\"]' AND traits ->> 'welcomed' = 'true'",
        Raw::Sqlite(_) => "SELECT COUNT(*) FROM customers WHERE traits -> '$.tags' = '[\"pro-nurtured\"]' AND json_extract(traits, '$.welcomed') = 1",
    };
    assert_eq!(raw.count(tagged).await, pro);
    println!(
        "whole flow: {} executions in {:.2} s: {:.0} executions/s; all {n} runs checked",
        6 * n,
        first_s + second_s,
        6.0 * n as f64 / (first_s + second_s)
    );

    // 4. Latency from due time to execution, on the system clock.
    let lat_n = 20_000usize;
    let latency = automation(
        &store,
        "latency",
        design(
            json!([
                {"id": "t", "type": "trigger", "data": {}},
                {"id": "d", "type": "delay", "data": {"until_trait": {"trait": "due"}}},
                {"id": "a", "type": "action", "data": {"action": "update_traits", "traits": {"reached": true}}}
            ]),
            json!([{"id": "1", "source": "t", "target": "d"}, {"id": "2", "source": "d", "target": "a"}]),
        ),
        Utc::now(),
    )
    .await;
    let system = Arc::new(Engine::new(
        store.clone(),
        events.clone(),
        Clock::system(),
        EngineConfig { poll: Duration::from_millis(200), ..Default::default() },
    ));
    // What an idle tick costs over the table the phases above left (the floor of due → executed).
    let idle_tick = || async {
        let t = Instant::now();
        for _ in 0..20 {
            system.tick().await.unwrap();
        }
        t.elapsed().as_secs_f64() * 1000.0 / 20.0
    };
    let idle_ms = idle_tick().await;
    let finished = raw.count("SELECT COUNT(*) FROM automation_runs").await;
    println!("idle tick over {finished} finished runs, straight after the phases above: {idle_ms:.2} ms");
    // Planner statistics and vacuumed tables, as autovacuum would have left them on a live
    // PostgreSQL after the bulk phases above: without statistics it estimates a third of any
    // range and scans whole tables; without the vacuum, the runs' and outbox's indexes hold a
    // dead entry for every row the phases moved, and autovacuum works through a million of them
    // on the same two cores while the latency is measured.
    if let Raw::Pg(_) = &raw {
        let t = Instant::now();
        raw.exec("VACUUM ANALYZE").await;
        println!("VACUUM ANALYZE: {:.1} s; idle tick after it: {:.2} ms", t.elapsed().as_secs_f64(), idle_tick().await);
        // `CAIRN_BENCH_CHECKPOINT=1`: the bulk phases' dirty pages written out before the
        // window, as a checkpoint long since would have on a live system (otherwise the
        // checkpointer spreads them over the next minutes, and each page's first change after
        // it also writes a full-page image into the WAL).
        if std::env::var("CAIRN_BENCH_CHECKPOINT").is_ok() {
            let t = Instant::now();
            raw.exec("CHECKPOINT").await;
            println!("CHECKPOINT: {:.1} s", t.elapsed().as_secs_f64());
        }
    }
    // The poller reads only steps written from now on.
    let steps_before = raw.count("SELECT CAST(COALESCE(MAX(id), 0) AS BIGINT) FROM automation_steps").await;
    let t = Instant::now();
    for _ in 0..20 {
        raw.new_steps(latency, steps_before).await;
    }
    println!("poller query {:.2} ms", t.elapsed().as_secs_f64() * 1000.0 / 20.0);
    // The due times are set only now, after the set-up above (the vacuum of a million-run table
    // takes a minute on PostgreSQL): the window opens 15 s from here, time enough to enroll the
    // 20,000 runs and for the engine to park each at its delay before the first falls due.
    let window_start = Utc::now().trunc_subsecs(3) + chrono::Duration::seconds(15);
    let spacing_us = 10_000_000 / lat_n as i64;
    let mut due: HashMap<i64, DateTime<Utc>> = HashMap::new();
    let lat_ids: Vec<i64> = (n as i64 + 1..=total as i64).collect();
    for (i, id) in lat_ids.iter().enumerate() {
        due.insert(*id, window_start + chrono::Duration::microseconds(i as i64 * spacing_us));
    }
    for chunk in lat_ids.chunks(1_000) {
        let mut sql = String::from("UPDATE customers SET traits = CASE id ");
        for id in chunk {
            let t = due[id].to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
            match &raw {
                Raw::Pg(_) => {
                    sql.push_str(&format!("WHEN {id} THEN jsonb_build_object('plan', 'free', 'due', '{t}') "))
                }
                Raw::Sqlite(_) => sql.push_str(&format!("WHEN {id} THEN json_object('plan', 'free', 'due', '{t}') ")),
            }
        }
        sql.push_str(&format!("END WHERE id BETWEEN {} AND {}", chunk[0], chunk[chunk.len() - 1]));
        raw.exec(&sql).await;
    }
    enroll(&store, latency, &lat_ids, Utc::now().trunc_subsecs(6)).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let handle = tokio::spawn(system.clone().run(stop_rx));
    // Every run parked at its delay before the window opens, or the figure would time the set-up.
    let parked_sql =
        format!("SELECT COUNT(*) FROM automation_runs WHERE automation_id = {latency} AND status = 'waiting'");
    while raw.count(&parked_sql).await < lat_n as i64 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lead = (window_start - Utc::now()).num_milliseconds() as f64 / 1000.0;
    assert!(lead > 0.0, "the runs were parked {:.1} s after the window opened", -lead);
    println!("{lat_n} runs parked at their delay {lead:.1} s before the first falls due");
    let checkpoints_before = raw.checkpointer().await;
    let mut seen: Vec<f64> = Vec::with_capacity(lat_n);
    let mut done: std::collections::HashSet<i64> = std::collections::HashSet::new();
    let mut last = steps_before;
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.len() < lat_n {
        assert!(Instant::now() < deadline, "only {} of {lat_n} latency runs finished", seen.len());
        let at = Utc::now();
        for (step, customer, status) in raw.new_steps(latency, last).await {
            last = last.max(step);
            if status == "completed" && done.insert(customer) {
                seen.push((at - due[&customer]).num_microseconds().unwrap() as f64 / 1000.0);
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    if let (Some(before), Some(after)) = (checkpoints_before, raw.checkpointer().await) {
        let d: Vec<i64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        println!(
            "PostgreSQL checkpointer over the window: {} timed + {} requested checkpoints, {} buffers written ({} ms writing, {} ms syncing), {} written by backends",
            d[0], d[1], d[2], d[3], d[4], d[5]
        );
    }
    stop_tx.send(true).unwrap();
    system.waker().notify_one();
    let _ = handle.await;
    seen.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "due → executed (upper bound, seen by a 2 ms poller) over {lat_n} runs due across 10 s: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&seen, 0.5),
        percentile(&seen, 0.99),
        seen.last().unwrap()
    );
}

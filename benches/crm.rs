//! The CRM benchmark (docs/benchmarks.md), in process through the service layer (what a request
//! runs, minus HTTP framing):
//!
//! 1. 1,000,000 leads in PostgreSQL (status, source, owner, score, creation times over two years,
//!    realistic names), then filtered pages of `GET /v1/leads` — each call is the page and its
//!    total — with random parameters: p50 / p99 per query shape. Target: p99 ≤ 100 ms.
//! 2. A 100,000-row CSV of leads imported (`POST /v1/imports`), on PostgreSQL and on SQLite:
//!    seconds from the request to `completed`. Target: ≤ 30 s.
//!
//!     cargo bench --bench crm                  # both parts
//!     CAIRN_BENCH_LEADS=200000 cargo bench --bench crm
//!     CAIRN_BENCH_PARTS=list cargo bench --bench crm   # the list part only

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use cairn_domain::{credential::KeyKind, ApiKeyId, Clock, ScopeSet, TenantId};
use cairn_events::{EventStore, SqliteEventStore};
use cairn_service::{crm::imports::ImportRequest, Actor, Principal, ServiceSettings, Services};
use cairn_store::{crm::leads::LeadFilter, Store, StoreConfig};
use cairn_testkit::{FreshPg, TempDir};
use chrono::Utc;
use rand::{Rng, SeedableRng};

fn leads() -> usize {
    std::env::var("CAIRN_BENCH_LEADS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

const FIRST: &[&str] = &[
    "Ana", "Ben", "Cleo", "Dan", "Eva", "Filip", "Goran", "Hana", "Ivan", "Jana", "Karlo", "Lea", "Marko", "Nina",
    "Oskar", "Petra",
];
const LAST: &[&str] = &[
    "Smith", "Horvat", "Kovač", "Novak", "Jones", "Babić", "Marić", "Brown", "Lee", "Garcia", "Müller", "Rossi",
    "Silva", "Kim", "Nguyen", "Taylor",
];
const SOURCES: &[&str] =
    &["website_form", "referral", "ads", "import", "trade_show", "webinar", "partner", "cold_call"];
const STATUSES: &[&str] = &["new", "contacted", "qualified", "unqualified", "converted"];

async fn services(store: Store, dir: &TempDir) -> (Services, Principal) {
    store.migrate().await.unwrap();
    let events: Arc<dyn EventStore> = Arc::new(SqliteEventStore::open(&dir.0.join("events.db")).await.unwrap());
    let tenant = store
        .write()
        .await
        .unwrap()
        .insert_tenant("Bench", &format!("bench-{}", std::process::id()), Utc::now())
        .await
        .unwrap();
    let svc = Services::new(store, events, Clock::system(), ServiceSettings::default());
    let p = Principal {
        tenant_id: tenant.id,
        scopes: ScopeSet::all(),
        actor: Actor::Key { id: ApiKeyId(1), kind: KeyKind::Secret, rate_limit: None, ingest_rate_limit: None },
    };
    (svc, p)
}

async fn load_leads(url: &str, tenant: TenantId, n: usize) {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let first = FIRST.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(",");
    let last = LAST.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(",");
    let sources = SOURCES.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(",");
    let statuses = STATUSES.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(",");
    let sql = format!(
        "INSERT INTO leads (tenant_id, first_name, last_name, email, company_name, status, source, score, value,
                            assigned_to, custom_fields, search_text, created_at, updated_at)
         SELECT {tenant}, f, l, lower(f) || '.' || lower(l) || i || '@example' || (i % 997) || '.com', 'Company ' || (i % 50000),
                (ARRAY[{statuses}])[1 + (i * 7) % 5], (ARRAY[{sources}])[1 + (i * 13) % 8], (i * 31) % 101,
                ((i * 17) % 1000) * 10, CASE WHEN i % 3 = 0 THEN NULL ELSE 1 + (i % 20) END, '{{}}',
                lower(f || ' ' || l || ' ' || lower(f) || '.' || lower(l) || i || '@example' || (i % 997) || '.com company ' || (i % 50000)),
                t, t
         FROM (SELECT i, (ARRAY[{first}])[1 + i % 16] AS f, (ARRAY[{last}])[1 + (i / 16) % 16] AS l,
                      now() - make_interval(secs => (i * 63.0)) AS t
               FROM generate_series(1, {n}) AS i) g",
        tenant = tenant.0
    );
    sqlx::query(&sql).execute(&pool).await.unwrap();
    sqlx::query("VACUUM ANALYZE leads").execute(&pool).await.unwrap();
    pool.close().await;
}

async fn timed<F, Fut>(label: &str, runs: usize, mut f: F)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = i64>,
{
    let mut ms = Vec::with_capacity(runs);
    let mut total = 0;
    for i in 0..runs {
        let t = Instant::now();
        total = f(i).await;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    println!(
        "  {label:<58} p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms  (last total {total})",
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms[ms.len() - 1]
    );
}

async fn list_bench(n: usize) {
    let pg = FreshPg::create().await;
    let dir = TempDir::new();
    let store = Store::connect(&StoreConfig::Postgres { url: pg.url.clone(), max_connections: 8 }).await.unwrap();
    let (svc, p) = services(store, &dir).await;
    let t = Instant::now();
    load_leads(&pg.url, p.tenant_id, n).await;
    println!(
        "loaded {n} leads into PostgreSQL in {:.1} s (one INSERT … SELECT, then VACUUM ANALYZE)",
        t.elapsed().as_secs_f64()
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let runs = 200;
    let statuses: Vec<String> = (0..runs).map(|_| STATUSES[rng.random_range(0..5)].to_string()).collect();
    let sources: Vec<String> = (0..runs).map(|_| SOURCES[rng.random_range(0..8)].to_string()).collect();
    let owners: Vec<i64> = (0..runs).map(|_| rng.random_range(1..=20)).collect();
    let pages: Vec<i64> = (0..runs).map(|_| rng.random_range(0..20)).collect();
    let names: Vec<String> = (0..runs).map(|_| LAST[rng.random_range(0..16)].to_lowercase()).collect();
    let call = |f: LeadFilter, sort: &'static str, desc: bool, offset: i64| {
        let svc = svc.clone();
        let p = p.clone();
        async move { svc.leads(&p, &f, sort, desc, 25, offset).await.unwrap().1 }
    };
    println!("GET /v1/leads on {n} leads (PostgreSQL 15, {runs} calls each, page + total):");
    timed("no filter, newest first, page 1", runs, |_| call(LeadFilter::default(), "created_at", true, 0)).await;
    timed("status=<random>, page 1", runs, |i| {
        call(LeadFilter { status: Some(statuses[i].clone()), ..Default::default() }, "created_at", true, 0)
    })
    .await;
    timed("status & source, random page 1–20", runs, |i| {
        call(
            LeadFilter { status: Some(statuses[i].clone()), source: Some(sources[i].clone()), ..Default::default() },
            "created_at",
            true,
            pages[i] * 25,
        )
    })
    .await;
    timed("assigned_to & created_after (last 90 days)", runs, |i| {
        call(
            LeadFilter {
                assigned_to: Some(owners[i]),
                created_after: Some(Utc::now() - chrono::Duration::days(90)),
                ..Default::default()
            },
            "created_at",
            true,
            0,
        )
    })
    .await;
    timed("status, sort=score asc", runs, |i| {
        call(LeadFilter { status: Some(statuses[i].clone()), ..Default::default() }, "score", false, 0)
    })
    .await;
    timed("search=<last name> (1 in 16 leads match)", runs, |i| {
        call(LeadFilter { search: Some(names[i].clone()), ..Default::default() }, "created_at", true, 0)
    })
    .await;
    timed("search=<an email> (1 lead matches)", runs, |i| {
        let n = 1000 + i * 37;
        let term = format!("{}.{}{n}@", FIRST[n % 16].to_lowercase(), LAST[(n / 16) % 16].to_lowercase());
        call(LeadFilter { search: Some(term), ..Default::default() }, "created_at", true, 0)
    })
    .await;
    svc.store.close().await;
}

async fn import_bench(label: &str, store: Store, dir: &TempDir, rows: usize) {
    let (svc, p) = services(store, dir).await;
    let mut csv = String::from("First Name,Last Name,Email,Company,Score,Notes\n");
    for i in 0..rows {
        csv.push_str(&format!(
            "{},{},lead{i}@import{}.com,Company {},{},row {i}\n",
            FIRST[i % 16],
            LAST[(i / 16) % 16],
            i % 1000,
            i % 5000,
            i % 101
        ));
    }
    let t = Instant::now();
    let import = svc
        .start_import(
            &p,
            ImportRequest { kind: "leads".into(), csv, mapping: None, source: Some("bench".into()), stage: None },
        )
        .await
        .unwrap();
    loop {
        let i = svc.import(&p, import.id).await.unwrap();
        if i.status != "running" {
            println!(
                "import of {rows} CSV rows on {label}: {:.1} s ({} created, {} failed) — {:.0} rows/s",
                t.elapsed().as_secs_f64(),
                i.created,
                i.failed,
                rows as f64 / t.elapsed().as_secs_f64()
            );
            assert_eq!(i.created as usize, rows);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    svc.store.close().await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!("machine: {} cores", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let rows = 100_000;
    if std::env::var("CAIRN_BENCH_PARTS").as_deref() == Ok("list") {
        list_bench(leads()).await;
        return;
    }
    let dir = TempDir::new();
    let store = Store::connect(&StoreConfig::Sqlite { path: dir.0.join("cairn.db") }).await.unwrap();
    import_bench("SQLite", store, &dir, rows).await;
    let pg = FreshPg::create().await;
    let dir = TempDir::new();
    let store = Store::connect(&StoreConfig::Postgres { url: pg.url.clone(), max_connections: 8 }).await.unwrap();
    import_bench("PostgreSQL", store, &dir, rows).await;
    list_bench(leads()).await;
}

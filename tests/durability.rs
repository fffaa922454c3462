//! Durability of ingestion, against the built binary: a kill -9 at any moment loses no
//! acknowledged event and duplicates none; with ClickHouse down, ingestion keeps
//! acknowledging, answers 503 with Retry-After once the local log reaches its budget, and
//! every acknowledged event arrives when ClickHouse is back; after the kills, every stored
//! purchase is in its customer's scores exactly once, and every change of segment membership
//! is in the outbox exactly once.

use std::{
    collections::HashSet,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use cairn_testkit::{FreshClickHouse, TempDir};
use serde_json::{json, Value};
use sqlx::{Connection, SqliteConnection};

const BIN: &str = env!("CARGO_BIN_EXE_cairn");

fn cairn(dir: &TempDir) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CAIRN_DATA_DIR", dir.0.join("data"))
        .env("CAIRN_LOG", "warn");
    c
}

fn setup_key(dir: &TempDir, extra: &[(&str, &str)]) -> String {
    let run = |args: &[&str]| {
        let mut c = cairn(dir);
        for (k, v) in extra {
            c.env(k, v);
        }
        let out = c.args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    run(&["tenants", "create", "--name", "Acme"]);
    let out = run(&["keys", "create", "--tenant", "acme", "--name", "s"]);
    out.lines().find(|l| l.starts_with("eck_")).unwrap().to_string()
}

/// A server process, killed (SIGKILL) when dropped, so a failing test leaves none behind.
struct Server(Child);

impl Server {
    fn kill(&mut self) -> std::io::Result<()> {
        self.0.kill()?;
        self.0.wait().map(|_| ())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &TempDir, port: u16, extra: &[(&str, &str)]) -> Server {
    let mut c = cairn(dir);
    c.arg("serve").env("CAIRN_LISTEN", format!("127.0.0.1:{port}")).stdout(Stdio::null()).stderr(Stdio::null());
    for (k, v) in extra {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(child.try_wait().unwrap().is_none(), "cairn serve exited");
        assert!(started.elapsed() < Duration::from_secs(30), "cairn serve did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server(child)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Sends events from `workers` concurrent clients until `stop`; returns the acknowledged ids.
async fn flood(
    base: String,
    key: String,
    workers: usize,
    stop: Arc<AtomicBool>,
    prefix: &'static str,
) -> HashSet<String> {
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (client, base, key, stop, acked) = (client.clone(), base.clone(), key.clone(), stop.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("{prefix}-{w}-{n}");
                n += 1;
                let body = json!({"user_id": format!("u{}", n % 25), "event": "purchase", "message_id": id,
                                  "properties": {"amount": 1.5, "currency": "EUR"}});
                match client.post(format!("{base}/v1/track/event")).header("X-API-Key", &key).json(&body).send().await {
                    Ok(r) if r.status() == 200 => {
                        acked.lock().unwrap().insert(id);
                    }
                    Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let set = acked.lock().unwrap().clone();
    set
}

/// Three rounds of load, each ended by a SIGKILL of the server mid-traffic; returns every
/// event id that was acknowledged.
async fn acked_across_kills(dir: &TempDir, key: &str, port: u16, env: &[(&str, &str)]) -> HashSet<String> {
    let base = format!("http://127.0.0.1:{port}");
    let mut acked = HashSet::new();
    for round in 0..3 {
        let mut server = start(dir, port, env);
        let stop = Arc::new(AtomicBool::new(false));
        let prefix: &'static str = ["r0", "r1", "r2"][round];
        let sending = tokio::spawn(flood(base.clone(), key.to_string(), 8, stop.clone(), prefix));
        tokio::time::sleep(Duration::from_millis(700 + 300 * round as u64)).await;
        server.kill().unwrap(); // SIGKILL, in the middle of the traffic
        stop.store(true, Ordering::Relaxed);
        acked.extend(sending.await.unwrap());
    }
    assert!(acked.len() > 100, "the load was too small to mean anything: {}", acked.len());
    eprintln!("{} events acknowledged across three kill -9s", acked.len());
    acked
}

/// Waits until every acknowledged id is stored; returns the stored ids (with repeats, if any).
async fn stored_after_restart<F, Fut>(acked: &HashSet<String>, mut stored: F) -> Vec<String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    let started = Instant::now();
    loop {
        let ids = stored().await;
        let have: HashSet<&String> = ids.iter().collect();
        if acked.iter().all(|a| have.contains(a)) {
            return ids;
        }
        let missing = acked.iter().filter(|a| !have.contains(a)).count();
        assert!(started.elapsed() < Duration::from_secs(60), "{missing} acknowledged events missing after restart");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// No profile twice, and `customer.created` exactly once per profile.
async fn profiles_are_whole(dir: &TempDir) {
    let entities = dir.0.join("data").join("cairn.db");
    let mut c = SqliteConnection::connect(&format!("sqlite://{}", entities.display())).await.unwrap();
    let dup_profiles: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT external_id FROM customers GROUP BY external_id HAVING COUNT(*) > 1)",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(dup_profiles, 0, "a customer was created twice");
    let profiles: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM customers").fetch_one(&mut c).await.unwrap();
    let created: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE event = 'customer.created'")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(created, profiles, "customer.created exactly once per profile");
}

/// Every stored purchase is in its customer's scores once the restarted server has caught up:
/// marks for re-scoring survive the kills (each is written after its events and before the log
/// checkpoint), and no purchase is counted twice.
async fn scores_count_every_purchase_once(dir: &TempDir, purchases: usize) {
    let entities = dir.0.join("data").join("cairn.db");
    let mut c = SqliteConnection::connect(&format!("sqlite://{}", entities.display())).await.unwrap();
    let started = Instant::now();
    loop {
        let (orders, total): (Option<i64>, Option<f64>) =
            sqlx::query_as("SELECT SUM(clv_order_count), SUM(clv_total) FROM customer_scores")
                .fetch_one(&mut c)
                .await
                .unwrap();
        if orders == Some(purchases as i64) {
            assert_eq!(total, Some(1.5 * purchases as f64), "each purchase is worth 1.5");
            let dirty: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM scoring_dirty").fetch_one(&mut c).await.unwrap();
            assert_eq!(dirty, 0, "nothing left to score");
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "scores count {orders:?} of {purchases} purchases");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// After the kills, once upkeep has caught up: for every (customer, segment) the outbox holds
/// entered and exited alternately, starting with entered, ending with entered exactly when the
/// customer is a member (the built-in RFM segments move as purchases are scored).
async fn segment_events_match_memberships(dir: &TempDir) {
    let entities = dir.0.join("data").join("cairn.db");
    let mut c = SqliteConnection::connect(&format!("sqlite://{}", entities.display())).await.unwrap();
    let started = Instant::now();
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM segment_dirty) + (SELECT COUNT(*) FROM scoring_dirty)
                    + (SELECT COUNT(*) FROM jobs WHERE status IN ('pending', 'running'))",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        if waiting == 0 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{waiting} marks or jobs still waiting");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events: Vec<(String, String)> =
        sqlx::query_as("SELECT event, payload FROM outbox WHERE event LIKE 'customer.segment_%' ORDER BY id")
            .fetch_all(&mut c)
            .await
            .unwrap();
    let mut state: std::collections::HashMap<(i64, i64), bool> = Default::default();
    for (event, payload) in &events {
        let p: serde_json::Value = serde_json::from_str(payload).unwrap();
        let key = (p["customer_id"].as_i64().unwrap(), p["segment_id"].as_i64().unwrap());
        let entered = event == "customer.segment_entered";
        let was = state.insert(key, entered).unwrap_or(false);
        assert_ne!(was, entered, "{event} twice in a row for {key:?}");
    }
    let members: Vec<(i64, i64)> =
        sqlx::query_as("SELECT customer_id, segment_id FROM segment_members").fetch_all(&mut c).await.unwrap();
    let inside: HashSet<(i64, i64)> = state.iter().filter(|(_, v)| **v).map(|(k, _)| *k).collect();
    assert_eq!(inside, members.into_iter().collect::<HashSet<_>>(), "the events replay to the stored membership");
    assert!(!inside.is_empty(), "the purchases put customers in RFM segments");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_loses_no_acknowledged_event_and_duplicates_none_on_sqlite() {
    let dir = TempDir::new();
    let key = setup_key(&dir, &[]);
    let port = free_port();
    let acked = acked_across_kills(&dir, &key, port, &[]).await;
    let _server = start(&dir, port, &[]);
    let db = dir.0.join("data").join("events.db");
    let conn = Arc::new(tokio::sync::Mutex::new(
        SqliteConnection::connect(&format!("sqlite://{}", db.display())).await.unwrap(),
    ));
    let stored = stored_after_restart(&acked, || {
        let conn = conn.clone();
        async move {
            let mut c = conn.lock().await;
            sqlx::query_scalar("SELECT message_id FROM events").fetch_all(&mut *c).await.unwrap()
        }
    })
    .await;
    let distinct: HashSet<&String> = stored.iter().collect();
    assert_eq!(distinct.len(), stored.len(), "an event was stored twice");
    profiles_are_whole(&dir).await;
    scores_count_every_purchase_once(&dir, stored.len()).await;
    segment_events_match_memberships(&dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_loses_no_acknowledged_event_and_duplicates_none_on_clickhouse() {
    let ch = FreshClickHouse::new("cairn_kill");
    let env = [("CAIRN_CLICKHOUSE_URL", ch.url.as_str()), ("CAIRN_CLICKHOUSE_DATABASE", ch.database.as_str())];
    let dir = TempDir::new();
    let key = setup_key(&dir, &env);
    let port = free_port();
    let acked = acked_across_kills(&dir, &key, port, &env).await;
    let _server = start(&dir, port, &env);
    let query = format!("SELECT message_id FROM {}.events FINAL", ch.database);
    let stored = stored_after_restart(&acked, || {
        let ids: Vec<String> = ch.query(&query).lines().map(str::to_string).collect();
        async move { ids }
    })
    .await;
    let distinct: HashSet<&String> = stored.iter().collect();
    assert_eq!(distinct.len(), stored.len(), "an event counts twice in ClickHouse");
    profiles_are_whole(&dir).await;
    scores_count_every_purchase_once(&dir, stored.len()).await;
    segment_events_match_memberships(&dir).await;
}

/// A TCP forwarder to ClickHouse that can be switched off (cutting open connections too).
struct Switch {
    port: u16,
    up: tokio::sync::watch::Sender<bool>,
}

async fn switch_to(target: &str) -> Switch {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (up, rx) = tokio::sync::watch::channel(true);
    let target = target.trim_start_matches("http://").to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            let mut rx = rx.clone();
            if !*rx.borrow() {
                continue; // dropped: connection refused in effect
            }
            let target = target.clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = rx.wait_for(|up| !*up) => {}
                }
            });
        }
    });
    Switch { port, up }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_clickhouse_down_ingestion_keeps_acknowledging_and_catches_up() {
    let ch = FreshClickHouse::new("cairn_outage");
    let switch = switch_to(&ch.url).await;
    let dir = TempDir::new();
    let ch_url = format!("http://127.0.0.1:{}", switch.port);
    let env = [
        ("CAIRN_CLICKHOUSE_URL", ch_url.as_str()),
        ("CAIRN_CLICKHOUSE_DATABASE", ch.database.as_str()),
        ("CAIRN_INGEST_LOG_BUDGET_MB", "1"),
    ];
    let key = setup_key(&dir, &env);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = start(&dir, port, &env);
    let client = reqwest::Client::new();
    let count =
        || ch.query(&format!("SELECT count() FROM {}.events FINAL", ch.database)).trim().parse::<u64>().unwrap_or(0);

    let send_batch = |i: usize, pad: usize| {
        let items: Vec<Value> = (0..50)
            .map(|j| {
                json!({"type": "event", "user_id": format!("u{j}"), "event": "view", "message_id": format!("b{i}-{j}"),
                            "properties": {"pad": "x".repeat(pad)}})
            })
            .collect();
        client.post(format!("{base}/v1/track/batch")).header("X-API-Key", &key).json(&Value::Array(items)).send()
    };
    assert_eq!(send_batch(0, 0).await.unwrap().status(), 200);
    let started = Instant::now();
    while count() < 50 {
        assert!(started.elapsed() < Duration::from_secs(20), "events did not reach ClickHouse");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    switch.up.send(false).unwrap();
    let mut acked = 50u64;
    let mut refused = None;
    for i in 1..100 {
        let r = send_batch(i, 400).await.unwrap();
        match r.status().as_u16() {
            200 => acked += 50,
            503 => {
                refused = Some(r.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string));
                break;
            }
            s => panic!("unexpected status {s}"),
        }
    }
    assert!(acked > 100, "ingestion kept acknowledging while ClickHouse was down");
    eprintln!("{acked} events acknowledged, {} of them while ClickHouse was down", acked - 50);
    let retry_after = refused.expect("a full log answers 503");
    assert!(retry_after.is_some(), "503 carries Retry-After");
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503, "readiness reports the event store down");
    assert_eq!(count(), 50, "nothing reached ClickHouse while it was down");

    switch.up.send(true).unwrap();
    let started = Instant::now();
    while count() < acked {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "only {} of {acked} events arrived after recovery",
            count()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(count(), acked, "every acknowledged event once");
    // The budget frees when the processor commits its checkpoint, just after the last insert.
    let started = Instant::now();
    loop {
        let status = send_batch(1000, 0).await.unwrap().status();
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        assert!(started.elapsed() < Duration::from_secs(10), "still refusing 10 s after the backlog drained");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = server.kill();
}

/// Webhooks: a SIGKILL while deliveries are in flight loses none; a delivery may arrive twice
/// (at least once), but then with the same `webhook-id`, so receivers can drop the repeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_during_webhook_delivery_loses_none_and_repeats_are_recognisable() {
    kill_9_during_webhook_delivery(None).await;
}

/// The same with the entity store on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_during_webhook_delivery_on_postgres_loses_none() {
    let pg = cairn_testkit::FreshPg::create().await;
    kill_9_during_webhook_delivery(Some(&pg.url)).await;
}

async fn kill_9_during_webhook_delivery(database_url: Option<&str>) {
    use axum::{body::Bytes, extract::State, http::HeaderMap, routing::post, Router};
    type Seen = Arc<Mutex<Vec<(String, String)>>>;
    async fn receive(State(seen): State<Seen>, h: HeaderMap, body: Bytes) -> &'static str {
        // Slow enough that the kill below lands while a batch of deliveries is in flight.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let v: Value = serde_json::from_slice(&body).unwrap();
        let id = h.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        seen.lock().unwrap().push((id, v["data"]["customer_email"].as_str().unwrap_or_default().to_string()));
        "ok"
    }
    let seen: Seen = Arc::default();
    let app = Router::new().route("/hook", post(receive)).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = TempDir::new();
    let mut env = vec![("CAIRN_WEBHOOK_ALLOW_PRIVATE", "1"), ("CAIRN_RATE_LIMIT_SECRET", "1000000")];
    if let Some(url) = database_url {
        env.push(("CAIRN_DATABASE_URL", url));
    }
    let key = setup_key(&dir, &env);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut server = start(&dir, port, &env);
    let r = client
        .post(format!("{base}/v1/webhooks"))
        .header("X-API-Key", &key)
        .json(&json!({"url": hook_url, "events": ["customer.created"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let total = 150;
    for i in 0..total {
        let r = client
            .post(format!("{base}/v1/customers"))
            .header("X-API-Key", &key)
            .json(&json!({"email": format!("c{i}@example.com")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    // Let some deliveries through, then kill the server while others are in flight.
    let started = Instant::now();
    while seen.lock().unwrap().len() < 20 {
        assert!(started.elapsed() < Duration::from_secs(20), "no deliveries before the kill");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill().unwrap();
    let before_restart = seen.lock().unwrap().len();
    assert!(before_restart < total, "the kill came too late to mean anything");
    let _server = start(&dir, port, &env);
    let started = Instant::now();
    loop {
        let got = seen.lock().unwrap().clone();
        let emails: HashSet<&String> = got.iter().map(|(_, e)| e).collect();
        if emails.len() == total {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{} of {total} deliveries arrived", emails.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Any repeat carries the same webhook-id as the first copy.
    let got = seen.lock().unwrap().clone();
    let mut id_of: std::collections::HashMap<&String, &String> = Default::default();
    for (id, email) in &got {
        assert_eq!(*id_of.entry(email).or_insert(id), id, "a repeat of {email} came with another webhook-id");
    }
    eprintln!("{before_restart} of {total} delivered before the kill; {} copies received in all", got.len());
}

//! A campaign survives kill -9, against the built binary and a real SMTP server (aiosmtpd): the
//! server is killed in the middle of sending, restarted, and finishes; at the sink every
//! recipient has exactly one message — no duplicate, no loss. On SQLite and on PostgreSQL.

use std::{
    collections::HashMap,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use cairn_testkit::{FreshPg, TempDir};
use serde_json::{json, Value};

#[path = "support/smtp.rs"]
mod smtp;
use smtp::SmtpSink;

const BIN: &str = env!("CARGO_BIN_EXE_cairn");
const RECIPIENTS: usize = 3_000;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cairn(dir: &TempDir, env: &[(String, String)]) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CAIRN_DATA_DIR", dir.0.join("data"))
        .env("CAIRN_LOG", "warn");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn start(dir: &TempDir, port: u16, env: &[(String, String)]) -> Server {
    let mut child = cairn(dir, env)
        .arg("serve")
        .env("CAIRN_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(child.try_wait().unwrap().is_none(), "cairn serve exited");
        assert!(started.elapsed() < Duration::from_secs(30), "cairn serve did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server(child)
}

async fn wait<T, F: std::future::Future<Output = Option<T>>>(within: Duration, mut check: impl FnMut() -> F) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(started.elapsed() < within, "timed out");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn crash_in_the_middle(database_url: Option<String>) {
    let sink = SmtpSink::start(None);
    let dir = TempDir::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut env = vec![
        ("CAIRN_SMTP_URL".to_string(), sink.url()),
        ("CAIRN_RATE_LIMIT_SECRET".to_string(), "1000000".to_string()),
    ];
    if let Some(url) = database_url {
        env.push(("CAIRN_DATABASE_URL".into(), url));
    }
    let out = cairn(&dir, &env).args(["tenants", "create", "--name", "Shop"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cairn(&dir, &env).args(["keys", "create", "--tenant", "shop", "--name", "s"]).output().unwrap();
    let key = String::from_utf8(out.stdout).unwrap().lines().find(|l| l.starts_with("eck_")).unwrap().to_string();
    let mut server = start(&dir, port, &env);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut r = http.request(method, format!("{base}{path}")).header("X-API-Key", &key);
        if let Some(b) = body {
            r = r.json(&b);
        }
        async move {
            let r = r.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    // The audience: identified through ingestion, gathered by a dynamic segment.
    for chunk in (0..RECIPIENTS).collect::<Vec<_>>().chunks(500) {
        let batch: Vec<Value> = chunk
            .iter()
            .map(|i| {
                json!({"type": "identify", "email": format!("r{i}@example.com"), "traits": {"cohort": "crash"},
                            "message_id": format!("id-{i}")})
            })
            .collect();
        let (s, b) = call(reqwest::Method::POST, "/v1/track/batch", Some(Value::Array(batch))).await;
        assert_eq!(s, 200, "{b}");
    }
    let (s, b) = call(
        reqwest::Method::POST,
        "/v1/segments",
        Some(json!({"name": "Crash cohort", "filters": {"field": "traits.cohort", "op": "eq", "value": "crash"}})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let seg = b["data"]["id"].as_i64().unwrap();
    wait(Duration::from_secs(60), || async {
        let (_, b) = call(reqwest::Method::GET, &format!("/v1/segments/{seg}"), None).await;
        (b["data"]["member_count"].as_u64() == Some(RECIPIENTS as u64)).then_some(())
    })
    .await;

    // A throttled campaign (so that the kill lands in the middle).
    let (s, b) = call(
        reqwest::Method::POST,
        "/v1/campaigns",
        Some(json!({"name": "Crash", "type": "email", "segment_id": seg, "subject": "Hello {{ email }}",
                    "body": "<p>Hi {{ email }}</p>", "from_email": "news@shop.test", "rate_limit": 600})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let id = b["data"]["id"].as_i64().unwrap();
    let (s, b) = call(reqwest::Method::POST, &format!("/v1/campaigns/{id}/send"), None).await;
    assert_eq!(s, 202, "{b}");
    // Mid-batch (the sender takes 1,000 records at a time), while messages are in flight.
    wait(Duration::from_secs(60), || async { (sink.messages().len() >= 1_234).then_some(()) }).await;
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    let at_kill = sink.messages().len();
    assert!(at_kill < RECIPIENTS, "the kill came too late to test anything");

    let _server = start(&dir, port, &env);
    let done = wait(Duration::from_secs(120), || async {
        let (_, b) = call(reqwest::Method::GET, &format!("/v1/campaigns/{id}"), None).await;
        assert_ne!(b["data"]["status"], "failed", "{b}");
        (b["data"]["status"] == "sent").then_some(b["data"].clone())
    })
    .await;

    // Count at the sink. Strictly: no duplicate; every message recorded as sent is at the sink;
    // every recipient is at the sink or recorded `unknown` (interrupted: its record was
    // committed and the process died before its outcome was — at most two per SMTP
    // connection); the sink holds exactly the sent messages and those of the unknown ones that
    // left.
    let messages = sink.messages();
    let mut per_rcpt: HashMap<String, usize> = HashMap::new();
    for m in &messages {
        *per_rcpt.entry(m["rcpt_tos"][0].as_str().unwrap().to_string()).or_default() += 1;
    }
    let duplicates: Vec<_> = per_rcpt.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "duplicates at the sink: {duplicates:?}");
    let mut status: HashMap<String, (String, Option<String>)> = HashMap::new();
    let mut page = 1;
    loop {
        let (_, b) =
            call(reqwest::Method::GET, &format!("/v1/campaigns/{id}/recipients?per_page=100&page={page}"), None).await;
        let rows = b["data"].as_array().cloned().unwrap_or_default();
        for r in &rows {
            status.insert(
                r["address"].as_str().unwrap().to_string(),
                (r["status"].as_str().unwrap().to_string(), r["reason"].as_str().map(str::to_string)),
            );
        }
        if rows.len() < 100 {
            break;
        }
        page += 1;
    }
    assert_eq!(status.len(), RECIPIENTS, "one record per recipient");
    let mut unknown = 0;
    let mut unknown_arrived = 0;
    for i in 0..RECIPIENTS {
        let a = format!("r{i}@example.com");
        let arrived = per_rcpt.contains_key(&a);
        match status[&a].0.as_str() {
            "sent" => assert!(arrived, "{a} is recorded sent but never reached the sink"),
            "unknown" => {
                assert_eq!(status[&a].1.as_deref(), Some("interrupted"));
                unknown += 1;
                unknown_arrived += arrived as usize;
            }
            other => panic!("{a}: {other}"),
        }
    }
    // In flight: committed and not yet answered (one per connection), answered and not yet
    // written (written with the next group commit, so at most one more per connection).
    assert!(unknown <= 16, "{unknown} messages in flight at the kill, with 8 SMTP connections");
    let sent = done["stats"]["sent"].as_u64().unwrap() as usize;
    assert_eq!(sent + unknown, RECIPIENTS, "{done}");
    assert_eq!(messages.len(), sent + unknown_arrived);
    eprintln!(
        "killed after {at_kill} of {RECIPIENTS} messages; resumed: {sent} sent, {unknown} interrupted ({unknown_arrived} of \
         them had reached the sink), 0 duplicates"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_resumes_after_kill_9_without_duplicates_or_losses_sqlite() {
    crash_in_the_middle(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_resumes_after_kill_9_without_duplicates_or_losses_postgres() {
    let pg = FreshPg::create().await;
    crash_in_the_middle(Some(pg.url.clone())).await;
}

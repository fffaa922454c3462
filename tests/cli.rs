//! End-to-end tests of the built `cairn` binary: the README's quick start, configuration
//! errors, migrations on all three backends, first-run bootstrap, graceful shutdown, logs.

mod common;

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use cairn_testkit::FreshClickHouse;
use common::{FreshPg, TempDir};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_cairn");

fn cairn(dir: &TempDir) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CAIRN_DATA_DIR", dir.0.join("data"))
        .env("CAIRN_LOG", "info");
    c
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run cairn");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "cairn failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

fn run_err(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run cairn");
    assert!(!out.status.success(), "cairn should have failed: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A `cairn serve` child process, killed when dropped.
struct Server {
    child: Child,
    base: String,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    fn start(mut cmd: Command) -> Server {
        let port = free_port();
        cmd.arg("serve").env("CAIRN_LISTEN", format!("127.0.0.1:{port}"));
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start cairn serve");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = stderr.clone();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || for _ in BufReader::new(out).lines() {});
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("cairn serve exited with {status}: {}", stderr.lock().unwrap());
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "cairn serve did not start: {}",
                stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Server { child, base, stderr }
    }

    fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits for the exit status.
    fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let started = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "cairn did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        std::thread::sleep(Duration::from_millis(100));
        (status, self.logs())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn get(url: &str, auth: &str) -> (u16, Value) {
    let r = reqwest::Client::new().get(url).bearer_auth(auth).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// POSTs JSON (with an optional Bearer credential); returns the status and the JSON body.
async fn post(url: &str, auth: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = reqwest::Client::new().post(url).json(&body);
    if let Some(a) = auth {
        req = req.bearer_auth(a);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn key_from(stdout: &str) -> String {
    stdout.lines().find(|l| l.starts_with("eck_") || l.starts_with("pk_")).expect("a key line").trim().to_string()
}

#[test]
fn version_and_help_describe_every_subcommand() {
    let dir = TempDir::new();
    let v = run_ok(cairn(&dir).arg("--version"));
    assert!(v.starts_with("cairn "), "{v}");
    let help = run_ok(cairn(&dir).arg("--help"));
    for sub in ["serve", "migrate", "tenants", "users", "keys"] {
        assert!(help.contains(sub), "--help does not mention {sub}");
    }
    let keys = run_ok(cairn(&dir).args(["keys", "--help"]));
    for sub in ["create", "list", "revoke"] {
        assert!(keys.contains(sub));
    }
    assert!(run_ok(cairn(&dir).args(["serve", "--help"])).contains("CAIRN_LISTEN"));
}

#[test]
fn a_bad_setting_stops_start_up_and_names_the_setting() {
    let dir = TempDir::new();
    let cases: [(&str, &str, &str); 6] = [
        ("CAIRN_LISTEN", "not-an-address", "CAIRN_LISTEN"),
        ("CAIRN_DATABASE_URL", "mysql://localhost/db", "CAIRN_DATABASE_URL"),
        ("CAIRN_DATABASE_URL", "postgres://nobody:s3cret@127.0.0.1:1/none", "CAIRN_DATABASE_URL"),
        ("CAIRN_CLICKHOUSE_URL", "localhost:8123", "CAIRN_CLICKHOUSE_URL"),
        ("CAIRN_RATE_LIMIT_SECRET", "lots", "CAIRN_RATE_LIMIT_SECRET"),
        ("CAIRN_TEST_CLOCK", "perhaps", "CAIRN_TEST_CLOCK"),
    ];
    for (var, value, named) in cases {
        let err = run_err(cairn(&dir).env(var, value).arg("serve"));
        assert!(
            err.contains(named)
                || err.contains(&format!("--{}", named.trim_start_matches("CAIRN_").to_lowercase().replace('_', "-"))),
            "{var}={value}: the error does not name the setting: {err}"
        );
        assert!(!err.contains("s3cret"), "database passwords are not echoed: {err}");
    }
    // A data directory that cannot be created.
    let file = dir.0.join("a-file");
    std::fs::write(&file, "x").unwrap();
    let err = run_err(cairn(&dir).env("CAIRN_DATA_DIR", file.join("sub")).arg("migrate"));
    assert!(err.contains("CAIRN_DATA_DIR"), "{err}");
}

#[test]
fn migrate_is_idempotent_on_sqlite() {
    let dir = TempDir::new();
    let first = run_ok(cairn(&dir).arg("migrate"));
    let second = run_ok(cairn(&dir).arg("migrate"));
    assert_eq!(first, second, "a second run changes nothing");
    assert!(first.contains("Sqlite"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_is_idempotent_on_postgres_and_clickhouse() {
    let dir = TempDir::new();
    let pg = FreshPg::create().await;
    let ch = FreshClickHouse::new("cairn_cli");
    let cmd = || {
        let mut c = cairn(&dir);
        c.env("CAIRN_DATABASE_URL", &pg.url)
            .env("CAIRN_CLICKHOUSE_URL", &ch.url)
            .env("CAIRN_CLICKHOUSE_DATABASE", &ch.database);
        c.arg("migrate");
        c
    };
    let first = run_ok(&mut cmd());
    let second = run_ok(&mut cmd());
    assert_eq!(first, second);
    assert!(first.contains("Postgres") && first.contains("clickhouse"), "{first}");
    let tables = ch.query(&format!("SELECT name FROM system.tables WHERE database = '{}' ORDER BY name", ch.database));
    assert_eq!(tables, "event_ids\nevents\npurchases\npurchases_feed\nschema_migrations\n");
}

/// README's quick start, on the embedded default: a workspace, a key, a 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_gets_a_workspace_a_key_and_a_200_from_the_cli() {
    let dir = TempDir::new();
    let out = run_ok(cairn(&dir).args(["tenants", "create", "--name", "Acme"]));
    assert!(out.contains("slug acme"), "{out}");
    let out = run_ok(cairn(&dir).args(["keys", "create", "--tenant", "acme", "--name", "server"]));
    let key = key_from(&out);
    assert!(key.starts_with("eck_"));
    let listed = run_ok(cairn(&dir).args(["keys", "list", "--tenant", "acme"]));
    assert!(listed.contains(&key[..12]) && !listed.contains(&key), "keys are listed by prefix only");

    let server = Server::start(cairn(&dir));
    let (status, me) = get(&format!("{}/v1/auth/me", server.base), &key).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["data"]["tenant"]["slug"], "acme");

    let id = listed.lines().nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    run_ok(cairn(&dir).args(["keys", "revoke", "--tenant", "acme", &id]));
    let (status, _) = get(&format!("{}/v1/auth/me", server.base), &key).await;
    assert_eq!(status, 401, "a key revoked from the CLI stops working in the running server at once");
    let err = run_err(cairn(&dir).args(["keys", "create", "--tenant", "nope", "--name", "x"]));
    assert!(err.contains("--tenant"), "{err}");
}

/// The same quick start over HTTP: register, create a key, call with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_gets_a_workspace_a_key_and_a_200_over_http() {
    let dir = TempDir::new();
    let server = Server::start(cairn(&dir));
    let (_, reg) = post(
        &format!("{}/v1/auth/register", server.base),
        None,
        json!({"email": "you@example.com", "password": "a-long-password", "name": "You", "workspace": "Acme"}),
    )
    .await;
    let token = reg["token"].as_str().unwrap();
    let (_, created) =
        post(&format!("{}/v1/api-keys", server.base), Some(token), json!({"name": "server", "type": "secret"})).await;
    let key = created["data"]["key"].as_str().unwrap();
    let (status, _) = get(&format!("{}/v1/auth/me", server.base), key).await;
    assert_eq!(status, 200);
    let logs = server.logs();
    assert!(!logs.contains("you@example.com"), "personal data in the logs: {logs}");
    assert!(!logs.contains(key) && !logs.contains(token), "credentials in the logs");
}

/// All three backends at once: PostgreSQL entities, ClickHouse events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_on_postgresql_and_clickhouse() {
    let dir = TempDir::new();
    let pg = FreshPg::create().await;
    let ch = FreshClickHouse::new("cairn_serve");
    let mut cmd = cairn(&dir);
    cmd.env("CAIRN_DATABASE_URL", &pg.url)
        .env("CAIRN_CLICKHOUSE_URL", &ch.url)
        .env("CAIRN_CLICKHOUSE_DATABASE", &ch.database);
    let server = Server::start(cmd);
    let ready: Value = reqwest::get(format!("{}/readyz", server.base)).await.unwrap().json().await.unwrap();
    assert_eq!(ready, json!({"status": "ready", "entity_store": "postgres", "event_store": "clickhouse"}));
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_run_bootstraps_the_admin_workspace() {
    let dir = TempDir::new();
    let mut cmd = cairn(&dir);
    cmd.env("CAIRN_ADMIN_EMAIL", "admin@example.com")
        .env("CAIRN_ADMIN_PASSWORD", "admin password 1")
        .env("CAIRN_ADMIN_WORKSPACE", "Ops");
    let server = Server::start(cmd);
    let (_, r) = post(
        &format!("{}/v1/auth/login", server.base),
        None,
        json!({"email": "admin@example.com", "password": "admin password 1"}),
    )
    .await;
    assert_eq!(r["tenant"]["name"], "Ops");
    assert_eq!(r["user"]["role"], "owner");
    assert!(!server.logs().contains("admin@example.com"));
}

/// SIGTERM: stop accepting, finish, flush the request log, exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_gracefully_and_flushes_the_request_log() {
    let dir = TempDir::new();
    run_ok(cairn(&dir).args(["tenants", "create", "--name", "Acme"]));
    let key = key_from(&run_ok(cairn(&dir).args(["keys", "create", "--tenant", "acme", "--name", "s"])));
    let server = Server::start(cairn(&dir));
    for _ in 0..20 {
        assert_eq!(get(&format!("{}/v1/workspace", server.base), &key).await.0, 200);
    }
    let (status, logs) = server.terminate();
    assert!(status.success(), "exit status {status}: {logs}");
    assert!(logs.contains("stopped"), "{logs}");

    let server = Server::start(cairn(&dir));
    let (_, logs) = get(&format!("{}/v1/api-logs?per_page=100", server.base), &key).await;
    let flushed = logs["data"].as_array().unwrap().iter().filter(|l| l["path"] == "/v1/workspace").count();
    assert_eq!(flushed, 20, "every request logged before the shutdown was written: {logs}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = TempDir::new();
    let mut cmd = cairn(&dir);
    cmd.env("CAIRN_LOG_FORMAT", "json")
        .env("CAIRN_ADMIN_EMAIL", "admin@example.com")
        .env("CAIRN_ADMIN_PASSWORD", "admin password 1");
    let server = Server::start(cmd);
    let (status, logs) = server.terminate();
    assert!(status.success(), "exit status {status}: {logs}");
    let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 3, "{logs}");
    for line in lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{line}");
    }
    assert!(!logs.contains("admin@example.com"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_adds_people_from_the_cli_and_can_close_registration() {
    let dir = TempDir::new();
    run_ok(cairn(&dir).args(["tenants", "create", "--name", "Acme"]));
    let users_create = |email: &str, password: &str, extra: &[&str]| {
        let mut c = cairn(&dir);
        c.args(["users", "create", "--tenant", "acme", "--email", email, "--name", "Ops", "--password", password]);
        c.args(extra);
        c
    };
    let out = run_ok(&mut users_create("Ops@Example.com", "ops password 1", &["--role", "admin"]));
    assert!(out.contains("as admin"), "{out}");
    let err = run_err(&mut users_create("ops@example.com", "ops password 1", &[]));
    assert!(err.contains("--email"), "a second membership is refused and names the option: {err}");
    let err = run_err(&mut users_create("x@example.com", "short", &[]));
    assert!(err.contains("--password"), "{err}");

    let mut cmd = cairn(&dir);
    cmd.env("CAIRN_ALLOW_REGISTRATION", "false");
    let server = Server::start(cmd);
    let (_, login) = post(
        &format!("{}/v1/auth/login", server.base),
        None,
        json!({"email": "ops@example.com", "password": "ops password 1"}),
    )
    .await;
    assert_eq!(login["user"]["role"], "admin");
    assert_eq!(login["tenant"]["slug"], "acme");
    let (status, body) = post(
        &format!("{}/v1/auth/register", server.base),
        None,
        json!({"email": "new@example.com", "password": "a-long-password", "name": "N", "workspace": "New"}),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(body["code"], "FORBIDDEN");
}

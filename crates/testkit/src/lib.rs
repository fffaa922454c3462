//! Fixtures for tests that need real services. Each gives a fresh, uniquely named database and
//! removes it when dropped — even when the test fails. A missing service makes the test fail
//! with a message saying what to start; nothing here ever skips a test.

use std::{io::Write, net::TcpStream};

use sqlx::{Connection, Executor, PgConnection};

/// The server used for PostgreSQL tests (`CAIRN_TEST_DATABASE_URL`, default the local trust
/// account `postgres`).
pub fn pg_admin_url() -> String {
    std::env::var("CAIRN_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The ClickHouse HTTP interface used for tests (`CAIRN_TEST_CLICKHOUSE_URL`).
pub fn clickhouse_url() -> String {
    std::env::var("CAIRN_TEST_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".into())
}

/// A name no other test (or test process) uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}_{}", std::process::id(), rand::random::<u32>())
}

/// A fresh PostgreSQL database, dropped (with its connections) when this goes out of scope.
pub struct FreshPg {
    pub url: String,
    name: String,
}

impl FreshPg {
    pub async fn create() -> FreshPg {
        let admin = pg_admin_url();
        let name = unique("cairn_test");
        let mut c = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!("PostgreSQL at {admin} must be running for this test (scripts/test.sh starts it): {e}")
        });
        c.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("create test database");
        let base = admin.rsplit_once('/').map(|(b, _)| b).expect("CAIRN_TEST_DATABASE_URL needs a database path");
        FreshPg { url: format!("{base}/{name}"), name }
    }
}

impl Drop for FreshPg {
    fn drop(&mut self) {
        let admin = pg_admin_url();
        let name = self.name.clone();
        // Drop may run while the test's runtime shuts down: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let mut c = PgConnection::connect(&admin).await.ok()?;
                c.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await.ok()
            })
        })
        .join();
    }
}

/// A fresh ClickHouse database name, dropped when this goes out of scope. The code under test
/// creates the database (its migrations do).
pub struct FreshClickHouse {
    pub url: String,
    pub database: String,
}

impl FreshClickHouse {
    pub fn new(prefix: &str) -> FreshClickHouse {
        FreshClickHouse { url: clickhouse_url(), database: unique(prefix) }
    }

    /// Runs one statement over plain HTTP and returns the body (no async runtime needed).
    pub fn query(&self, sql: &str) -> String {
        let addr = self.url.trim_start_matches("http://").trim_end_matches('/');
        let mut s = TcpStream::connect(addr)
            .unwrap_or_else(|e| panic!("ClickHouse at {} must be running (scripts/test.sh starts it): {e}", self.url));
        write!(s, "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{sql}", sql.len())
            .expect("send to ClickHouse");
        let mut out = String::new();
        std::io::Read::read_to_string(&mut s, &mut out).expect("read from ClickHouse");
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        if out.contains("Transfer-Encoding: chunked") {
            dechunk(body)
        } else {
            body.to_string()
        }
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

impl Drop for FreshClickHouse {
    fn drop(&mut self) {
        let addr = self.url.trim_start_matches("http://").trim_end_matches('/').to_string();
        let sql = format!("DROP DATABASE IF EXISTS {}", self.database);
        if let Ok(mut s) = TcpStream::connect(addr.as_str()) {
            let _ = write!(
                s,
                "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{sql}",
                sql.len()
            );
            let _ = std::io::Read::read_to_end(&mut s, &mut Vec::new());
        }
    }
}

/// A temporary directory, removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let p = std::env::temp_dir().join(unique("cairn_test"));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

//! A real SMTP server on loopback for tests and benchmarks: aiosmtpd running
//! tests/support/smtp_sink.py, which stores each accepted message as a JSON line.
#![allow(dead_code)]

use std::{
    io::BufRead,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use cairn_testkit::TempDir;
use serde_json::Value;

/// A real SMTP server (aiosmtpd) on loopback, storing each accepted message as a JSON line.
pub struct SmtpSink {
    child: Child,
    pub port: u16,
    path: std::path::PathBuf,
    _dir: TempDir,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SmtpSink {
    pub fn start(auth: Option<(&str, &str)>) -> SmtpSink {
        SmtpSink::start_with(auth, None, true)
    }

    /// A server that does not offer PIPELINING (RFC 2920): clients send one command at a time.
    pub fn start_without_pipelining(auth: Option<(&str, &str)>) -> SmtpSink {
        SmtpSink::start_with(auth, None, false)
    }

    /// With TLS: `mode` `starttls` or `implicit`, and the server's certificate and key files.
    pub fn start_tls(mode: &str, cert: &std::path::Path, key: &std::path::Path) -> SmtpSink {
        SmtpSink::start_with(None, Some((mode, cert, key)), true)
    }

    fn start_with(
        auth: Option<(&str, &str)>,
        tls: Option<(&str, &std::path::Path, &std::path::Path)>,
        pipelining: bool,
    ) -> SmtpSink {
        let dir = TempDir::new();
        let path = dir.0.join("messages.jsonl");
        let mut cmd = Command::new("python3");
        cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/smtp_sink.py")).arg(&path);
        if let Some((u, p)) = auth {
            cmd.args(["--user", u, "--password", p]);
        }
        if !pipelining {
            cmd.arg("--no-pipelining");
        }
        if let Some((mode, cert, key)) = tls {
            cmd.arg("--tls").arg(mode).arg("--cert").arg(cert).arg("--key").arg(key);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 tests/support/smtp_sink.py (scripts/test.sh installs aiosmtpd)");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| panic!("the SMTP sink did not start: {line:?}"));
        SmtpSink { child, port, path, _dir: dir }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}?tls=none", self.port)
    }

    pub fn messages(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        // Only whole lines: the sink may be writing the last one right now.
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    pub async fn wait_for(&self, n: usize) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let m = self.messages();
            if m.len() >= n {
                return m;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "only {} of {n} messages arrived", m.len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

//! The request log behind `GET /v1/api-logs`: lines go through a bounded channel to one writer
//! task that inserts them in batches, so logging never adds a store write to a request.
//! These are diagnostics, not acknowledged data: when the writer falls behind, lines are
//! dropped and counted (`cairn_api_logs_dropped_total`), never queued without bound.

use std::{sync::Arc, time::Duration};

use cairn_store::{api_logs::NewApiLog, Store};
use tokio::{sync::mpsc, task::JoinHandle};

use crate::metrics::Metrics;

const CAPACITY: usize = 10_000;
const BATCH: usize = 500;

#[derive(Clone)]
pub struct ApiLogSink {
    tx: mpsc::Sender<NewApiLog>,
    metrics: Arc<Metrics>,
    /// When each credential last had a successful ingestion request logged.
    sampled: Arc<std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>>,
}

impl ApiLogSink {
    /// Starts the writer. It ends, after writing what it holds, when every sink is dropped.
    pub fn start(store: Store, metrics: Arc<Metrics>) -> (ApiLogSink, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(CAPACITY);
        let handle = tokio::spawn(writer(store, rx));
        (ApiLogSink { tx, metrics, sampled: Default::default() }, handle)
    }

    pub fn push(&self, line: NewApiLog) {
        if self.tx.try_send(line).is_err() {
            self.metrics.api_logs_dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// For ingestion, which can run at tens of thousands of requests per second: every
    /// failure is logged, successes at most once a second per credential. The line is only
    /// built when it will be kept.
    pub fn push_sampled(&self, credential: &str, status: u16, line: impl FnOnce() -> NewApiLog) {
        if (200..300).contains(&status) {
            let mut sampled = self.sampled.lock().unwrap_or_else(|p| p.into_inner());
            let now = std::time::Instant::now();
            match sampled.get(credential) {
                Some(last) if now.duration_since(*last) < Duration::from_secs(1) => return,
                _ => {
                    if sampled.len() > 10_000 {
                        sampled.clear();
                    }
                    sampled.insert(credential.to_string(), now);
                }
            }
        }
        self.push(line());
    }

    pub fn depth(&self) -> usize {
        CAPACITY - self.tx.capacity()
    }
}

async fn writer(store: Store, mut rx: mpsc::Receiver<NewApiLog>) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let n = rx.recv_many(&mut batch, BATCH).await;
        if n == 0 {
            return; // every sender is gone and the channel is drained
        }
        let res = async { store.write().await?.insert_api_logs(&batch).await }.await;
        if let Err(e) = res {
            tracing::warn!(error = %e, lines = batch.len(), "could not write API log lines");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        batch.clear();
    }
}

/// Hides credentials that some routes carry in the path (Segment's
/// `/v1/projects/{writeKey}/settings`), so the log never holds a key.
pub fn redact_path(path: &str) -> String {
    const SECRET_PREFIXES: &[&str] = &["eck_", "pk_live_", "pk_test_", "cst_", "inv_", "whsec_"];
    path.split('/')
        .map(|seg| if SECRET_PREFIXES.iter().any(|p| seg.starts_with(p)) { "***" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    #[test]
    fn credentials_in_paths_are_redacted() {
        assert_eq!(super::redact_path("/v1/projects/pk_live_abc/settings"), "/v1/projects/***/settings");
        assert_eq!(super::redact_path("/v1/api-keys/12"), "/v1/api-keys/12");
    }
}

//! The loop every background worker runs (scoring, segments): tick; again at once while a tick
//! reports more work; otherwise wait for a wake-up or the poll interval, backing off up to 10 s
//! while ticks fail; return when `stop` turns true.

use std::{fmt::Display, future::Future, time::Duration};

use tokio::sync::{watch, Notify};

pub async fn poll_loop<F, Fut, E>(
    what: &'static str,
    poll: Duration,
    wake: &Notify,
    mut stop: watch::Receiver<bool>,
    mut tick: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, E>>,
    E: Display,
{
    let mut backoff = poll;
    while !*stop.borrow() {
        match tick().await {
            Ok(busy) => {
                backoff = poll;
                if busy {
                    continue;
                }
            }
            Err(e) => {
                tracing::warn!(worker = what, error = %e, "background work failed; will retry");
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => {}
        }
    }
}

//! The webhook dispatcher: fans the outbox out to subscribed endpoints as durable deliveries,
//! and sends due deliveries — signed, concurrently (a slow endpoint holds one slot, never the
//! queue), with a 10-second timeout, no redirects, retried on a schedule of about a day.
//!
//! Delivery is at least once: a crash after an endpoint answered but before the result was
//! recorded sends that delivery again, with the same `webhook-id`, which receivers use to
//! drop the repeat. A crash can never lose one: deliveries are rows, created in the same
//! transaction that marks their outbox entry dispatched.

use std::{net::IpAddr, sync::Arc, time::Duration};

use cairn_domain::{Clock, TenantId};
use cairn_store::{
    webhooks::{AttemptRecord, Delivery, Webhook},
    Store, StoreError,
};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use tokio::sync::{watch, Semaphore};

use crate::signing;

/// Seconds to wait after failed attempt N (1-based) before attempt N+1: immediately, then
/// 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h — eight attempts over about 28 hours.
pub const RETRY_DELAYS: [i64; 7] = [5, 300, 1800, 7200, 18000, 36000, 36000];

#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Allow endpoints on private, loopback and link-local addresses (tests, on-premise).
    pub allow_private: bool,
    pub timeout: Duration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Deliveries in flight at once to one endpoint.
    pub per_endpoint: usize,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings { allow_private: false, timeout: Duration::from_secs(10), concurrency: 64, per_endpoint: 16 }
    }
}

/// The body every endpoint receives: `{"event", "timestamp", "data"}` (seed 003), compact.
pub fn body(event: &str, at: DateTime<Utc>, data: &Value) -> String {
    format!(
        r#"{{"event":{},"timestamp":{},"data":{}}}"#,
        Value::String(event.to_string()),
        Value::String(at.to_rfc3339_opts(SecondsFormat::Secs, true)),
        data
    )
}

/// Whether an address is one a public webhook must not reach (SSRF guard).
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.octets()[0] == 100 && (64..128).contains(&v4.octets()[1]) // carrier-grade NAT
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00 // unique local
                || (v6.segments()[0] & 0xffc0) == 0xfe80 // link local
                || v6.to_ipv4_mapped().is_some_and(|v4| is_private(IpAddr::V4(v4)))
        }
    }
}

/// A resolver that only returns public addresses (the SSRF guard for host names; IP literals
/// are checked before sending, since they are never resolved).
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<std::net::SocketAddr> = addrs.into_iter().filter(|a| !is_private(a.ip())).collect();
            if public.is_empty() {
                return Err(format!("refused: {host} resolves only to private addresses").into());
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[derive(Clone)]
pub struct Dispatcher {
    store: Store,
    clock: Clock,
    http: reqwest::Client,
    settings: WebhookSettings,
    slots: Arc<Semaphore>,
    /// Deliveries in flight per endpoint: each may hold at most `per_endpoint` slots, so a
    /// slow endpoint can never take the whole pool from the others.
    in_flight: Arc<std::sync::Mutex<std::collections::HashMap<i64, usize>>>,
    finished: Arc<tokio::sync::Notify>,
    /// Wakes the notifier when an endpoint is disabled (absent: it finds the notice at its poll).
    notify: Option<Arc<tokio::sync::Notify>>,
    recorded: Arc<Recorded>,
}

/// Outcomes waiting to be written, and the writer's turn (see [`Dispatcher::record`]).
#[derive(Default)]
struct Recorded {
    queue: std::sync::Mutex<Vec<(AttemptRecord, tokio::sync::oneshot::Sender<()>)>>,
    writer: tokio::sync::Mutex<()>,
}

/// What one attempt came to.
struct Outcome {
    http_status: Option<u16>,
    error: Option<String>,
    excerpt: Option<String>,
    latency_ms: f64,
}

impl Dispatcher {
    pub fn new(store: Store, clock: Clock, settings: WebhookSettings) -> Result<Dispatcher, reqwest::Error> {
        let mut http = reqwest::Client::builder();
        if !settings.allow_private {
            // Resolve through the guard, so the address connected to is the address checked
            // (no second lookup that DNS rebinding could answer differently).
            http = http.dns_resolver(Arc::new(PublicOnly));
        }
        let http = http
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.timeout)
            .user_agent(concat!("Cairn-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let slots = Arc::new(Semaphore::new(settings.concurrency));
        Ok(Dispatcher {
            store,
            clock,
            http,
            settings,
            slots,
            in_flight: Default::default(),
            finished: Default::default(),
            notify: None,
            recorded: Default::default(),
        })
    }

    /// Wakes this notifier when an endpoint is disabled and its owners are to be told.
    pub fn with_notifier_wake(mut self, wake: Arc<tokio::sync::Notify>) -> Dispatcher {
        self.notify = Some(wake);
        self
    }

    /// Runs until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut clock_moved = self.clock.subscribe();
        loop {
            if *stop.borrow() {
                return;
            }
            let fanned = self.fan_out().await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "webhook fan-out failed");
                0
            });
            let sent = self.send_due().await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "claiming webhook deliveries failed");
                0
            });
            if fanned > 0 || sent > 0 {
                // More may be waiting: go round again at once (after letting the sends start).
                tokio::task::yield_now().await;
                continue;
            }
            let moved = async {
                match clock_moved.as_mut() {
                    Some(rx) => {
                        let _ = rx.changed().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = moved => {}
                _ = stop.changed() => {}
                // A delivery finished: its slot (and its endpoint's share) is free again. Others
                // finishing at about the same time are taken in the same round.
                _ = self.finished.notified() => tokio::time::sleep(Duration::from_millis(3)).await,
            }
        }
    }

    /// Turns undispatched outbox entries into deliveries for every subscribed endpoint.
    pub async fn fan_out(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let entries = tx.undispatched_outbox(500).await?;
        if entries.is_empty() {
            return Ok(0);
        }
        let mut hooks_by_tenant = std::collections::HashMap::new();
        let mut rows = Vec::new();
        for e in &entries {
            if let std::collections::hash_map::Entry::Vacant(slot) = hooks_by_tenant.entry(e.tenant_id) {
                slot.insert(tx.active_webhooks(cairn_domain::TenantId(e.tenant_id)).await?);
            }
            for h in hooks_by_tenant[&e.tenant_id].iter() {
                // One delivery per endpoint, under the first name it subscribed to (aliases).
                if let Some(name) = crate::catalogue::delivered_as(&e.event, |n| h.subscribed_to(n)) {
                    let payload = body(name, e.created_at, &e.payload.0);
                    rows.push((e.tenant_id, h.id, e.id, name.to_string(), payload));
                }
            }
        }
        tx.insert_deliveries(&rows, now).await?;
        let ids: Vec<i64> = entries.iter().map(|e| e.id).collect();
        tx.mark_dispatched(&ids, now).await?;
        tx.commit().await?;
        Ok(entries.len())
    }

    /// Claims due deliveries (as many as there are free slots) and sends each in its own task.
    pub async fn send_due(&self) -> Result<usize, StoreError> {
        let free = self.slots.available_permits();
        if free == 0 {
            return Ok(0);
        }
        let now = self.clock.now();
        // Long enough for one attempt (the HTTP timeout) and its bookkeeping; after that a
        // crashed instance's claimed deliveries are taken over by whoever runs next.
        let lease = now + chrono::Duration::seconds(self.settings.timeout.as_secs() as i64 + 5);
        // Endpoints with deliveries in flight get only what their share has room for, each by
        // its own claim; the general claim leaves them out. (Claiming freely and giving back
        // the excess cost a write per excess row on every round.)
        let in_flight: Vec<(i64, usize)> = {
            let in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            in_flight.iter().map(|(id, n)| (*id, *n)).collect()
        };
        let mut tx = self.store.begin().await?;
        let mut claimed = Vec::new();
        let mut left = free as i64;
        // Topped up a few at a time: a round per finished delivery would cost more store round
        // trips than the deliveries themselves.
        let step = (self.settings.per_endpoint as i64 / 4).max(1);
        for (webhook, n) in &in_flight {
            let room = (self.settings.per_endpoint.saturating_sub(*n) as i64).min(left);
            if room >= step {
                let got = tx.claim_deliveries_of(now, lease, *webhook, room).await?;
                left -= got.len() as i64;
                claimed.extend(got);
            }
        }
        if left > 0 {
            let busy: Vec<i64> = in_flight.iter().map(|(id, _)| *id).collect();
            claimed.extend(tx.claim_deliveries(now, lease, left, &busy).await?);
        }
        // Keep each endpoint within its share; give the rest back for the next round.
        let (mut keep, mut give_back) = (Vec::new(), Vec::new());
        {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            for d in claimed {
                let n = in_flight.entry(d.webhook_id).or_insert(0);
                if *n < self.settings.per_endpoint {
                    *n += 1;
                    keep.push(d);
                } else {
                    give_back.push(d.id);
                }
            }
        }
        tx.release_deliveries(&give_back).await?;
        tx.commit().await?;
        let n = keep.len();
        // The endpoints of this round, read once (not once per delivery).
        let mut hooks: std::collections::HashMap<i64, Option<Arc<Webhook>>> = Default::default();
        {
            let mut c = self.store.read().await?;
            for d in &keep {
                if let std::collections::hash_map::Entry::Vacant(slot) = hooks.entry(d.webhook_id) {
                    let w = match c.webhook(cairn_domain::TenantId(d.tenant_id), d.webhook_id).await {
                        Ok(w) => Some(Arc::new(w)),
                        Err(StoreError::NotFound) => None, // deleted meanwhile: its deliveries went too
                        Err(e) => return Err(e),
                    };
                    slot.insert(w);
                }
            }
        }
        for d in keep {
            let Ok(permit) = self.slots.clone().acquire_owned().await else { break };
            let me = self.clone();
            let hook = hooks.get(&d.webhook_id).cloned().flatten();
            tokio::spawn(async move {
                let webhook = d.webhook_id;
                if let Err(e) = me.deliver(d, hook).await {
                    tracing::warn!(error = %e, "recording a webhook attempt failed");
                }
                let mut in_flight = me.in_flight.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(n) = in_flight.get_mut(&webhook) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        in_flight.remove(&webhook);
                    }
                }
                drop(permit);
                me.finished.notify_one();
            });
        }
        Ok(n)
    }

    async fn deliver(&self, d: Delivery, webhook: Option<Arc<Webhook>>) -> Result<(), StoreError> {
        let Some(webhook) = webhook else { return Ok(()) };
        let now = self.clock.now();
        let mut secrets = vec![webhook.secret.as_str()];
        if let (Some(old), Some(until)) = (&webhook.previous_secret, webhook.previous_secret_until) {
            if until > now {
                secrets.push(old.as_str());
            }
        }
        let id = format!("msg_{}", d.id);
        let outcome = if webhook.status != "active" {
            Outcome {
                http_status: None,
                error: Some("the endpoint is disabled".into()),
                excerpt: None,
                latency_ms: 0.0,
            }
        } else {
            self.attempt(&webhook.url, &secrets, &id, &d, now.timestamp()).await
        };
        let attempt = d.attempts + 1;
        let succeeded = outcome.http_status.is_some_and(|s| (200..300).contains(&s));
        let gone = outcome.http_status == Some(410);
        let refused = outcome.error.as_deref().is_some_and(|e| e.starts_with("refused"));
        let (status, next) = if succeeded {
            ("succeeded", None)
        } else if gone || refused || webhook.status != "active" || attempt as usize > RETRY_DELAYS.len() {
            ("failed", None)
        } else {
            ("pending", Some(now + chrono::Duration::seconds(RETRY_DELAYS[attempt as usize - 1])))
        };
        let record = AttemptRecord {
            id: d.id,
            status: status.to_string(),
            http_status: outcome.http_status.map(i32::from),
            latency_ms: outcome.latency_ms,
            error: outcome.error.clone(),
            excerpt: outcome.excerpt.clone(),
            next,
        };
        // The slot is free as soon as the endpoint has answered: the outcome is recorded in the
        // background (the delivery stays leased until then, so nobody sends it meanwhile; a
        // crash before the commit sends it again, with the same webhook-id). Waiting for the
        // commit here would make every send wait for an fsync.
        tracing::debug!(delivery.id = d.id, webhook.id = webhook.id, status, attempt, "webhook attempt");
        let me = self.clone();
        tokio::spawn(async move {
            let (tenant, id) = (d.tenant_id, d.id);
            if let Err(e) = me.settle(record, &webhook, gone, refused, now, tenant).await {
                tracing::warn!(delivery.id = id, error = %e, "recording a webhook attempt failed; it will be sent again");
            }
        });
        Ok(())
    }

    /// Records an attempt and, when it calls for it, disables the endpoint.
    async fn settle(
        &self,
        record: AttemptRecord,
        webhook: &Webhook,
        gone: bool,
        refused: bool,
        now: DateTime<Utc>,
        tenant: i64,
    ) -> Result<(), StoreError> {
        let failed = record.status == "failed";
        self.record(record).await?;
        if gone {
            self.disable(webhook, "the endpoint answered 410 Gone").await?;
        } else if failed && !refused && webhook.status == "active" {
            // A delivery exhausted its day of retries: if nothing got through for a day either,
            // the endpoint is gone in all but name.
            let last = self.store.read().await?.last_webhook_success(webhook.id).await?;
            if last.is_none_or(|t| t < now - chrono::Duration::days(1)) {
                let reason = "every delivery failed for more than a day; fix the endpoint, then set status to active";
                self.disable(webhook, reason).await?;
                tracing::warn!(
                    webhook.id = webhook.id,
                    tenant.id = tenant,
                    "webhook endpoint disabled after a day of failures"
                );
            }
        }
        Ok(())
    }

    /// Records an attempt's outcome, committed together with the outcomes other sends are
    /// recording at the same moment (group commit): whoever takes the writer's turn writes
    /// everyone's queued outcomes in one transaction, so the store's commit rate does not cap
    /// the delivery rate. Returns once this outcome is durable.
    async fn record(&self, a: AttemptRecord) -> Result<(), StoreError> {
        let (done, mut written) = tokio::sync::oneshot::channel();
        self.recorded.queue.lock().unwrap_or_else(|p| p.into_inner()).push((a, done));
        let _turn = self.recorded.writer.lock().await;
        if written.try_recv().is_ok() {
            return Ok(()); // the previous writer took ours along
        }
        let batch: Vec<_> = std::mem::take(&mut *self.recorded.queue.lock().unwrap_or_else(|p| p.into_inner()));
        let now = self.clock.now();
        let rows: Vec<AttemptRecord> = batch.iter().map(|(a, _)| a.clone()).collect();
        let written = async {
            let mut tx = self.store.begin().await?;
            tx.record_attempts(&rows, now).await?;
            tx.commit().await
        }
        .await;
        match written {
            Ok(()) => {
                for (_, done) in batch {
                    let _ = done.send(());
                }
                Ok(())
            }
            Err(e) => {
                // Back in the queue for the next writer; this caller reports the failure.
                self.recorded.queue.lock().unwrap_or_else(|p| p.into_inner()).extend(batch);
                Err(e)
            }
        }
    }

    /// Disables an endpoint and, in the same transaction, leaves its workspace's owners a
    /// notice (emailed by the notifier, listed at `GET /v1/notifications`).
    async fn disable(&self, webhook: &Webhook, reason: &str) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        tx.disable_webhook(webhook.id, reason, now).await?;
        let subject = format!("Webhook endpoint {} disabled", webhook.id);
        let body = format!(
            "Cairn stopped delivering events to your webhook endpoint {} (id {}): {reason}.\n\n\
             Events that happen while it is disabled are not queued for it. Once the endpoint works \
             again, turn it back on with PUT /v1/webhooks/{} {{\"status\": \"active\"}} (or in the \
             dashboard); its delivery log is at GET /v1/webhooks/{}/deliveries.",
            webhook.url, webhook.id, webhook.id, webhook.id
        );
        tx.insert_notification(TenantId(webhook.tenant_id), "webhook.disabled", &subject, &body, now).await?;
        tx.commit().await?;
        if let Some(w) = &self.notify {
            w.notify_one();
        }
        Ok(())
    }

    async fn attempt(&self, url: &str, secrets: &[&str], id: &str, d: &Delivery, ts: i64) -> Outcome {
        let started = std::time::Instant::now();
        let done = |http_status, error: Option<String>, excerpt| Outcome {
            http_status,
            error,
            excerpt,
            latency_ms: started.elapsed().as_secs_f64() * 1e3,
        };
        if !self.settings.allow_private {
            if let Err(e) = self.check_public(url).await {
                return done(None, Some(e), None);
            }
        }
        let mut req = self.http.post(url).header("content-type", "application/json").body(d.body.clone());
        for (k, v) in signing::headers(secrets, id, &d.event, ts, &d.body) {
            req = req.header(k, v);
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let text = resp.text().await.unwrap_or_default();
                let excerpt: String = text.chars().take(500).collect();
                done(Some(status), (!(200..300).contains(&status)).then(|| format!("HTTP {status}")), Some(excerpt))
            }
            Err(e) if e.is_timeout() => done(None, Some("timed out".into()), None),
            Err(e) => done(None, Some(format!("could not deliver: {}", e.without_url())), None),
        }
    }

    /// Refuses endpoints that resolve to private, loopback or link-local addresses.
    async fn check_public(&self, url: &str) -> Result<(), String> {
        let parsed = url::Url::parse(url).map_err(|_| "refused: not a valid URL".to_string())?;
        let host = parsed.host_str().ok_or("refused: no host")?.trim_start_matches('[').trim_end_matches(']');
        let port = parsed.port_or_known_default().unwrap_or(443);
        let addrs = tokio::net::lookup_host((host, port)).await.map_err(|_| format!("could not resolve {host}"))?;
        for a in addrs {
            if is_private(a.ip()) {
                return Err(
                    "refused: the endpoint resolves to a private address (CAIRN_WEBHOOK_ALLOW_PRIVATE=1 allows it)"
                        .into(),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_are_recognised() {
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:2800:220:1::1", "100.128.0.1"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn bodies_are_compact_and_ordered_as_seed_003_shows() {
        let at: DateTime<Utc> = "2026-03-16T10:00:00Z".parse().unwrap();
        let b = body("customer.segment_entered", at, &serde_json::json!({"customer_id": 42}));
        assert_eq!(
            b,
            r#"{"event":"customer.segment_entered","timestamp":"2026-03-16T10:00:00Z","data":{"customer_id":42}}"#
        );
    }

    #[test]
    fn the_retry_schedule_spans_about_a_day() {
        let total: i64 = RETRY_DELAYS.iter().sum();
        assert_eq!(RETRY_DELAYS.len() + 1, 8, "eight attempts");
        assert!((24 * 3600..=30 * 3600).contains(&total), "{total}");
    }
}

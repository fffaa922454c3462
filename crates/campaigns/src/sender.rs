//! The sender. Each instance runs one; a workspace's campaigns are sent by one instance at a
//! time (`campaign_locks`, a lease renewed per batch).
//!
//! Leases and retry times follow the system clock; what a campaign means (send_at, the stamps
//! of sends) follows the injected [`Clock`].
//!
//! Exactly once per recipient (docs/campaigns.md):
//!
//! 1. When sending starts the audience is resolved into send records, one per (campaign,
//!    customer, channel), `queued` or `skipped` with the reason — inserted with `ON CONFLICT DO
//!    NOTHING`, so a resumed resolution adds only what is missing.
//! 2. A queued message is prepared (SMTP: MAIL, RCPT, DATA — nothing is committed by the
//!    server yet), then its record moves to `committing` (a group commit for all lanes, which
//!    does not wait for the disk: see [`Sender::commit_point`]), then the data and its final
//!    dot go out (SMS: the provider request). A crash before the `committing` commit leaves it
//!    `queued`: the server discarded the unfinished transaction, so it is sent again, once. A
//!    crash after it leaves it `committing`: the message may have left, so a restart settles it
//!    as `unknown` (reason `interrupted`) and never sends it again; a delivery or bounce report
//!    (SMS status callbacks, `POST /v1/email-events`) settles it later. No protocol can do
//!    better: the database commit and the final dot are two separate effects, and a crash
//!    between them leaves one without the other. The window is one in-flight message per
//!    connection for the time between the commit and the write (docs/campaigns.md measures how
//!    often a kill -9 lands in it).
//! 3. Outcomes are written with the next group commit (and, synced, at the end):
//!    `sent`, `bounced` (5xx at RCPT; the address is suppressed), `failed`, or `queued` again
//!    with a backoff (4xx, no connection).
//!
//! Suppressions and opt-outs are checked when a batch is rendered (at most two batches before
//! it goes out), and suppressions once more at each message's commit point.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use cairn_channels::{
    email::{Outgoing, SmtpFailure, SmtpLane},
    sms::{self, SmsOutcome, SmsSettings},
};
use cairn_domain::{Clock, TenantId};
use cairn_store::{
    campaigns::{CampaignRow, NewSend, SendOutcome, SendRow},
    customers::Customer,
    Store,
};
use chrono::Utc;
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch, Notify};

use crate::{
    address_of, compose_email, compose_sms, normalise,
    settings::{self, Defaults, EmailSettings, SmsWorkspaceSettings},
    skip_reason, templates, EmailSender, Links,
};

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Store(#[from] cairn_store::StoreError),
}

/// How the sender works.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// Concurrent SMTP connections (or SMS requests) per campaign.
    pub lanes: usize,
    /// Send records taken per batch.
    pub batch: i64,
    /// How often to look for work when idle.
    pub poll: Duration,
    /// Attempts before a message that keeps failing transiently is given up.
    pub max_attempts: i64,
    /// First retry delay; doubled per attempt, at most an hour.
    pub retry_base: Duration,
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            lanes: 8,
            batch: 1000,
            poll: Duration::from_millis(500),
            max_attempts: 5,
            retry_base: Duration::from_secs(30),
        }
    }
}

pub struct Sender {
    store: Store,
    clock: Clock,
    holder: String,
    defaults: Defaults,
    links: Links,
    http: reqwest::Client,
    config: SenderConfig,
    wake: Arc<Notify>,
    /// Campaigns whose leftover `committing` records this process has settled.
    settled: Mutex<HashSet<i64>>,
}

/// One message ready for its channel.
enum Msg {
    Email(Outgoing),
    Sms { to: String, body: String, callback: String, parts: i64 },
}

struct Job {
    send: SendRow,
    msg: Msg,
}

type Lease = (TenantId, Instant);

impl Sender {
    pub fn new(
        store: Store,
        clock: Clock,
        holder: String,
        defaults: Defaults,
        links: Links,
        config: SenderConfig,
    ) -> Sender {
        let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).build().expect("an HTTP client");
        Sender {
            store,
            clock,
            holder,
            defaults,
            links,
            http,
            config,
            wake: Arc::new(Notify::new()),
            settled: Mutex::new(HashSet::new()),
        }
    }

    /// Wakes the sender (a campaign was sent or scheduled).
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    pub async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) {
        let wake = self.wake.clone();
        cairn_domain::worker::poll_loop("campaigns", self.config.poll, &wake, stop, || self.tick()).await
    }

    /// One round: due scheduled campaigns start; every sending campaign of a workspace this
    /// instance holds advances. True when there is more to do at once.
    pub async fn tick(&self) -> Result<bool, SendError> {
        let now = self.clock.now();
        self.store.write().await?.start_due_campaigns(now).await?;
        let tenants = self.store.read().await?.sending_tenants().await?;
        let mut busy = false;
        for tenant in tenants {
            let mut lease = (tenant, Instant::now());
            if !self.renew(&mut lease, true).await? {
                continue;
            }
            let campaigns = self.store.read().await?.sending_campaigns(tenant).await?;
            for c in campaigns {
                busy |= self.work(c, &mut lease).await?;
            }
        }
        Ok(busy)
    }

    /// Takes or renews the workspace's lease (at most every few seconds unless `force`).
    async fn renew(&self, lease: &mut Lease, force: bool) -> Result<bool, SendError> {
        if !force && lease.1.elapsed() < Duration::from_secs(5) {
            return Ok(true);
        }
        let now = Utc::now();
        let ok = self
            .store
            .write()
            .await?
            .take_campaign_lease(lease.0, &self.holder, now, now + chrono::Duration::seconds(30))
            .await?;
        lease.1 = Instant::now();
        Ok(ok)
    }

    /// Fails a campaign; for an automation's triggered campaign, fails the messages waiting
    /// instead (the next run's message may find the channel configured).
    async fn fail(&self, c: &CampaignRow, error: &str) -> Result<(), SendError> {
        if c.status == "triggered" {
            let n = self.store.write().await?.fail_queued_sends(c.id, error, self.clock.now()).await?;
            tracing::warn!(campaign.id = c.id, messages = n, error, "automation messages failed");
            return Ok(());
        }
        tracing::warn!(campaign.id = c.id, error, "campaign failed");
        self.store.write().await?.fail_campaign(TenantId(c.tenant_id), c.id, error, self.clock.now()).await?;
        Ok(())
    }

    /// Advances one sending campaign for up to ten seconds. True when it should be called again
    /// at once.
    async fn work(&self, c: CampaignRow, lease: &mut Lease) -> Result<bool, SendError> {
        let tenant = TenantId(c.tenant_id);
        let channel = match c.kind.as_str() {
            "email" | "sms" => c.kind.clone(),
            _ => {
                self.fail(&c, "ad campaigns are exported (audience.csv), not sent").await?;
                return Ok(false);
            }
        };
        if self.settled.lock().expect("not poisoned").insert(c.id) {
            let n = self.store.write().await?.settle_committing(c.id, "unknown", self.clock.now()).await?;
            if n > 0 {
                tracing::info!(campaign.id = c.id, settled = n, "messages in flight at a restart settled, not resent");
            }
        }
        let t = match templates(&c) {
            Ok(t) => t,
            Err(e) => {
                self.fail(&c, &e.to_string()).await?;
                return Ok(false);
            }
        };
        // The channel's settings.
        let mut conn = self.store.read().await?;
        let email: EmailSettings = settings::load(&mut conn, tenant, "email").await?;
        let sms_settings: SmsWorkspaceSettings = settings::load(&mut conn, tenant, "sms").await?;
        drop(conn);
        let (mut transport, composer, workspace_rate) = if channel == "email" {
            let Some(smtp) = email.smtp(&self.defaults) else {
                self.fail(&c, "no SMTP server is configured (CAIRN_SMTP_URL or PUT /v1/settings/email)").await?;
                return Ok(false);
            };
            let from_email = c.from_email.clone().or(email.from_email.clone());
            let Some(from_email) = from_email else {
                self.fail(&c, "no from_email: set it on the campaign or in /v1/settings/email").await?;
                return Ok(false);
            };
            let sender = EmailSender {
                from_name: c.from_name.clone().or(email.from_name.clone()),
                from_email,
                reply_to: c.reply_to.clone().or(email.reply_to.clone()),
                unsubscribe_mailto: email.unsubscribe_mailto.clone(),
            };
            let lanes = (0..self.config.lanes).map(|_| SmtpLane::new(smtp.clone())).collect();
            (Transport::Email(lanes), Composer::Email(sender, email.dkim()), email.rate_limit)
        } else {
            let Some(s) = sms_settings.resolve(&self.defaults) else {
                self.fail(&c, "no SMS provider is configured (CAIRN_SMS_* or PUT /v1/settings/sms)").await?;
                return Ok(false);
            };
            (Transport::Sms(s), Composer::Sms, sms_settings.rate_limit)
        };
        let rate = [c.rate_limit, workspace_rate].into_iter().flatten().filter(|r| *r > 0).min();
        let limiter = Limiter::new(rate);
        let deadline = Instant::now() + Duration::from_secs(10);
        let renderer =
            Arc::new(Renderer { c: c.clone(), channel: channel.clone(), t, composer, links: self.links.clone() });
        // A new audience is resolved while the first records it writes are already being sent
        // (its chunks commit in id order, so the stream's cursor never passes a record it has not
        // seen); the stream does not take "nothing due" for the end until it is resolved.
        let resolving = AtomicBool::new(!c.audience_ready);
        let resolve = async {
            if !c.audience_ready {
                let resolved = self.resolve_audience(&c, &channel).await;
                resolving.store(false, Ordering::Release);
                resolved?;
                // Cancelled while it was resolving: what it wrote after the cancel is cancelled too.
                if self.store.read().await?.campaign(tenant, c.id).await?.status == "cancelled" {
                    self.store.write().await?.cancel_queued_sends(c.id, self.clock.now()).await?;
                }
            }
            Ok::<_, SendError>(())
        };
        let (resolved, streamed) =
            tokio::join!(resolve, self.stream(&renderer, &mut transport, &limiter, lease, deadline, &resolving));
        if let Transport::Email(lanes) = &mut transport {
            for l in lanes {
                l.quit().await;
            }
        }
        resolved?;
        if let Some(again) = streamed? {
            return Ok(again);
        }
        // Nothing was due any more.
        if c.status == "triggered" {
            // An automation's campaign never finishes: the next run may reach it.
            return Ok(false);
        }
        let counts = self.store.read().await?.send_counts(c.id).await?;
        if counts.queued == 0 && counts.in_flight == 0 {
            self.finish(&c).await?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Creates every recipient's send record, 2,000 to a transaction (sending starts after the first).
    async fn resolve_audience(&self, c: &CampaignRow, channel: &str) -> Result<(), SendError> {
        let tenant = TenantId(c.tenant_id);
        let ids = match c.segment_id {
            Some(s) => self.store.read().await?.segment_member_ids(tenant, s, None).await?,
            None => vec![],
        };
        let mut total = 0i64;
        for chunk in ids.chunks(2_000) {
            let customers = self.store.read().await?.customers_by_ids(tenant, chunk).await?;
            let addresses: Vec<String> = customers.iter().filter_map(|cu| address_of(channel, cu)).collect();
            let suppressed = self.store.read().await?.suppressed(tenant, channel, &addresses).await?;
            let sends: Vec<NewSend> = customers
                .iter()
                .map(|cu| {
                    let address = address_of(channel, cu);
                    let reason = skip_reason(channel, cu, c.require_consent)
                        .or_else(|| address.as_ref().filter(|a| suppressed.contains(*a)).map(|_| "suppressed"));
                    NewSend {
                        customer_id: cu.id.0,
                        address,
                        status: if reason.is_some() { "skipped" } else { "queued" },
                        reason,
                        occurrence: 0,
                    }
                })
                .collect();
            total += sends.len() as i64;
            let mut tx = self.store.begin().await?;
            tx.insert_sends(tenant, c.id, channel, &sends, self.clock.now(), Utc::now()).await?;
            tx.commit().await?;
        }
        self.store.write().await?.set_audience_ready(c.id, total, self.clock.now()).await?;
        tracing::info!(campaign.id = c.id, recipients = total, "campaign audience resolved");
        Ok(())
    }

    async fn finish(&self, c: &CampaignRow) -> Result<(), SendError> {
        let tenant = TenantId(c.tenant_id);
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        if tx.transition_campaign(tenant, c.id, &["sending"], "sent", None, now).await? {
            let n = tx.send_counts(c.id).await?;
            let payload = json!({
                "campaign_id": c.id,
                "campaign_name": c.name,
                "type": c.kind,
                "segment_id": c.segment_id,
                "recipients": n.recipients,
                "sent": n.sent + n.delivered,
                "failed": n.failed,
                "bounced": n.bounced,
                "skipped": n.skipped,
                "unknown": n.unknown,
                "finished_at": now,
            });
            tx.insert_outbox(tenant, "campaign.sent", &payload, now).await?;
        }
        tx.commit().await?;
        tracing::info!(campaign.id = c.id, "campaign sent");
        Ok(())
    }

    /// Sends the campaign's due records until the deadline, a status change or the end: a
    /// producer reads the records a batch at a time (by id, after the last one read) and renders
    /// them while the lanes send what it rendered before, so no lane waits for a batch boundary.
    /// Returns `Some(again)` when it stopped early, `None` when nothing was due any more.
    async fn stream(
        &self,
        renderer: &Arc<Renderer>,
        transport: &mut Transport,
        limiter: &Limiter,
        lease: &mut Lease,
        deadline: Instant,
        resolving: &AtomicBool,
    ) -> Result<Option<bool>, SendError> {
        let (c, channel) = (&renderer.c, renderer.channel.as_str());
        let tenant = TenantId(c.tenant_id);
        let batch = self.config.batch.max(1);
        // Rendered messages waiting for a lane: at most a batch, so rendering runs at most one
        // batch ahead of sending.
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>(batch as usize);
        let jobs_rx = tokio::sync::Mutex::new(jobs_rx);
        // Outcomes not yet written: each group commit writes them with the next records it
        // moves to `committing`, so that few finished messages are ever left `committing`.
        let unflushed = Mutex::new(Unflushed::default());
        let failure: Mutex<Option<SendError>> = Mutex::new(None);
        let (commit_tx, mut commit_rx) = mpsc::unbounded_channel::<(i64, oneshot::Sender<bool>)>();

        let producer = async {
            let jobs_tx = jobs_tx;
            let mut after = 0i64;
            loop {
                if failure.lock().expect("not poisoned").is_some() {
                    return Ok(Some(false));
                }
                if Instant::now() > deadline {
                    return Ok(Some(true));
                }
                if !self.renew(lease, false).await? {
                    return Ok(Some(false));
                }
                let current = self.store.read().await?.campaign(tenant, c.id).await?;
                if current.status != "sending" && current.status != "triggered" {
                    if current.status == "cancelled" {
                        self.store.write().await?.cancel_queued_sends(c.id, self.clock.now()).await?;
                    }
                    return Ok(Some(false));
                }
                // Read before the records: if the audience was resolved by then, an empty read
                // means the end.
                let was_resolving = resolving.load(Ordering::Acquire);
                let due = self.store.read().await?.due_sends(c.id, after, Utc::now(), batch).await?;
                let Some(last) = due.last() else {
                    if was_resolving {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    return Ok(None);
                };
                after = last.id;
                let (jobs, skipped) = self.render(renderer, due).await?;
                unflushed.lock().expect("not poisoned").outcomes.extend(skipped);
                for job in jobs {
                    if jobs_tx.send(job).await.is_err() {
                        return Ok(Some(false));
                    }
                }
            }
        };
        let committer = async {
            let mut last_sync = Instant::now();
            while let Some(first) = commit_rx.recv().await {
                let mut waiting = vec![first];
                while let Ok(more) = commit_rx.try_recv() {
                    waiting.push(more);
                }
                let ids: Vec<i64> = waiting.iter().map(|w| w.0).collect();
                let finished = std::mem::take(&mut *unflushed.lock().expect("not poisoned"));
                let moved = match self.commit_point(tenant, channel, &ids, finished).await {
                    Ok(m) => m,
                    Err(e) => {
                        *failure.lock().expect("not poisoned") = Some(e);
                        HashSet::new()
                    }
                };
                for (id, reply) in waiting {
                    let _ = reply.send(moved.contains(&id));
                }
                // While those messages go out: what the commit points wrote reaches the disk at
                // least every SYNC_EVERY.
                if last_sync.elapsed() >= SYNC_EVERY {
                    if let Err(e) = self.store.sync().await {
                        *failure.lock().expect("not poisoned") = Some(e.into());
                    }
                    last_sync = Instant::now();
                }
            }
        };
        let next_job = || async { jobs_rx.lock().await.recv().await };
        // Passes the commit point: true when the record moved to `committing` (false: cancelled
        // meanwhile, or the store failed — the message must not leave).
        // Each lane holds a sender; the committer stops when every lane has.
        type CommitTx = mpsc::UnboundedSender<(i64, oneshot::Sender<bool>)>;
        let commit_point = |commit_tx: &CommitTx, id: i64| {
            let (otx, orx) = oneshot::channel();
            let _ = commit_tx.send((id, otx));
            async move { orx.await.unwrap_or(false) }
        };
        let finished = |o: SendOutcome, address: Option<&str>| {
            let mut u = unflushed.lock().expect("not poisoned");
            if o.status == "bounced" {
                if let Some(a) = address {
                    u.bounced.push(normalise(channel, a));
                }
            }
            u.outcomes.push(o);
        };
        let retry = |s: &SendRow, error: String| -> SendOutcome {
            let attempts = s.attempts + 1;
            let give_up = attempts >= self.config.max_attempts;
            let delay =
                self.config.retry_base.saturating_mul(1 << attempts.clamp(0, 7) as u32).min(Duration::from_secs(3600));
            SendOutcome {
                id: s.id,
                status: if give_up { "failed" } else { "queued" },
                reason: Some(if give_up { "retries_exhausted".into() } else { "retry".into() }),
                provider_id: None,
                error: Some(error),
                parts: None,
                attempts,
                next_attempt_at: Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default(),
            }
        };
        let done = |s: &SendRow,
                    status: &'static str,
                    reason: Option<&str>,
                    provider: Option<String>,
                    error: Option<String>,
                    parts: Option<i64>| SendOutcome {
            id: s.id,
            status,
            reason: reason.map(str::to_string),
            provider_id: provider,
            error,
            parts,
            attempts: s.attempts + 1,
            next_attempt_at: self.clock.now(),
        };
        let (next_job, commit_point, finished, retry, done) = (&next_job, &commit_point, &finished, &retry, &done);
        let workers: Vec<futures::future::BoxFuture<'_, ()>> = match transport {
            Transport::Email(lanes) => lanes
                .iter_mut()
                .map(|lane| {
                    let commit_tx = commit_tx.clone();
                    Box::pin(async move {
                        while let Some(job) = next_job().await {
                            let Msg::Email(out) = &job.msg else { unreachable!("email transport") };
                            let s = &job.send;
                            limiter.acquire().await;
                            let outcome = match lane.prepare(out).await {
                                Err(SmtpFailure::Transient(e)) => retry(s, e),
                                Err(SmtpFailure::Rejected(e)) => {
                                    done(s, "bounced", Some("hard_bounce"), None, Some(e), None)
                                }
                                Err(SmtpFailure::Permanent(e)) => {
                                    done(s, "failed", Some("rejected"), None, Some(e), None)
                                }
                                Ok(()) if commit_point(&commit_tx, s.id).await => match lane.commit(out).await {
                                    Ok(true) => done(s, "sent", None, None, None, None),
                                    Ok(false) => done(s, "sent", Some("unconfirmed"), None, None, None),
                                    // Refused after the data: nothing was accepted.
                                    Err(SmtpFailure::Transient(e)) => retry(s, e),
                                    Err(f) => done(s, "failed", Some("rejected"), None, Some(f.message().into()), None),
                                },
                                Ok(()) => {
                                    lane.reset().await;
                                    continue;
                                }
                            };
                            finished(outcome, s.address.as_deref());
                        }
                    }) as futures::future::BoxFuture<'_, ()>
                })
                .collect(),
            Transport::Sms(settings) => (0..self.config.lanes)
                .map(|_| {
                    let settings = &*settings;
                    let commit_tx = commit_tx.clone();
                    Box::pin(async move {
                        while let Some(job) = next_job().await {
                            let Msg::Sms { to, body, callback, parts } = &job.msg else {
                                unreachable!("sms transport")
                            };
                            let s = &job.send;
                            limiter.acquire().await;
                            if !commit_point(&commit_tx, s.id).await {
                                continue;
                            }
                            let outcome = match sms::send(&self.http, settings, to, body, Some(callback)).await {
                                SmsOutcome::Accepted(sid) => done(s, "sent", None, Some(sid), None, Some(*parts)),
                                SmsOutcome::Rejected(e) => {
                                    done(s, "failed", Some("rejected"), None, Some(e), Some(*parts))
                                }
                                SmsOutcome::Retry(e) => retry(s, e),
                                SmsOutcome::Unknown(e) => {
                                    done(s, "unknown", Some("no_answer"), None, Some(e), Some(*parts))
                                }
                            };
                            finished(outcome, None);
                        }
                    }) as futures::future::BoxFuture<'_, ()>
                })
                .collect(),
        };
        drop(commit_tx);
        let (produced, (), _) = tokio::join!(producer, committer, futures::future::join_all(workers));
        if let Some(e) = failure.into_inner().expect("not poisoned") {
            // Messages that did leave keep their `committing` records and are settled at the
            // next start, never resent.
            return Err(e);
        }
        // What finished after the last group commit.
        let rest = std::mem::take(&mut *unflushed.lock().expect("not poisoned"));
        self.flush(tenant, channel, rest).await?;
        produced
    }

    /// Re-checks one batch of records against the profiles and the suppression list and renders
    /// the messages on a blocking thread (so that rendering never holds up a lane between its
    /// commit point and its write); returns the messages to send and the outcomes of those not
    /// to send.
    async fn render(
        &self,
        renderer: &Arc<Renderer>,
        due: Vec<SendRow>,
    ) -> Result<(Vec<Job>, Vec<SendOutcome>), SendError> {
        let (c, channel) = (&renderer.c, renderer.channel.as_str());
        let tenant = TenantId(c.tenant_id);
        let ids: Vec<i64> = due.iter().map(|s| s.customer_id).collect();
        let customers: HashMap<i64, Customer> = self
            .store
            .read()
            .await?
            .customers_by_ids(tenant, &ids)
            .await?
            .into_iter()
            .map(|cu| (cu.id.0, cu))
            .collect();
        let addresses: Vec<String> = due.iter().filter_map(|s| s.address.clone()).collect();
        let suppressed = self.store.read().await?.suppressed(tenant, channel, &addresses).await?;
        let now = self.clock.now();
        let renderer = renderer.clone();
        Ok(tokio::task::spawn_blocking(move || renderer.render(due, &customers, &suppressed, now))
            .await
            .expect("rendering does not panic"))
    }

    /// The commit point of every message waiting at it (a group commit): their records move to
    /// `committing` — returns those really moved — with the outcomes finished since the last
    /// one (and the suppressions their hard bounces cause). Unsynced
    /// ([`Store::begin_unsynced`]): what it wrote survives a kill -9 when it returns, and the
    /// lanes send at once instead of after an fsync, so a kill -9 finds a message in doubt only
    /// for the microseconds between this commit and its write, not for the fsync's
    /// milliseconds. The committer syncs at least every [`SYNC_EVERY`]; a power cut can undo
    /// the commit points of that long (those messages would be sent again), never more.
    async fn commit_point(
        &self,
        tenant: TenantId,
        channel: &str,
        ids: &[i64],
        finished: Unflushed,
    ) -> Result<HashSet<i64>, SendError> {
        let now = self.clock.now();
        let mut tx = self.store.begin_unsynced().await?;
        finished.write(&mut tx, tenant, channel, now).await?;
        let moved = tx.commit_sends(ids, now).await?;
        tx.commit().await?;
        Ok(moved.into_iter().collect())
    }

    /// Writes finished messages' outcomes, with the suppressions their hard bounces cause, in an
    /// ordinary (synced) transaction.
    async fn flush(&self, tenant: TenantId, channel: &str, finished: Unflushed) -> Result<(), SendError> {
        if finished.outcomes.is_empty() {
            return Ok(());
        }
        let mut tx = self.store.begin().await?;
        finished.write(&mut tx, tenant, channel, self.clock.now()).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// How long the group commits' writes may wait for the disk (see [`Sender::commit_point`]).
const SYNC_EVERY: Duration = Duration::from_millis(200);

/// Outcomes waiting for the next group commit, and the addresses of hard bounces among them.
#[derive(Default)]
struct Unflushed {
    outcomes: Vec<SendOutcome>,
    bounced: Vec<String>,
}

impl Unflushed {
    /// Writes the outcomes and suppresses the hard-bounced addresses, in the caller's transaction.
    async fn write(
        &self,
        tx: &mut cairn_store::Conn,
        tenant: TenantId,
        channel: &str,
        now: chrono::DateTime<Utc>,
    ) -> Result<(), SendError> {
        tx.finish_sends(&self.outcomes, now).await?;
        for a in &self.bounced {
            tx.suppress(tenant, channel, a, "hard_bounce", now).await?;
        }
        Ok(())
    }
}

enum Composer {
    Email(EmailSender, Option<cairn_channels::email::Dkim>),
    Sms,
}

/// Everything rendering a campaign's messages needs, owned, for a blocking thread.
struct Renderer {
    c: CampaignRow,
    channel: String,
    t: crate::Templates,
    composer: Composer,
    links: Links,
}

impl Renderer {
    fn render(
        &self,
        due: Vec<SendRow>,
        customers: &HashMap<i64, Customer>,
        suppressed: &HashSet<String>,
        now: chrono::DateTime<Utc>,
    ) -> (Vec<Job>, Vec<SendOutcome>) {
        let (c, channel) = (&self.c, self.channel.as_str());
        let mut outcomes = Vec::new();
        let mut jobs = Vec::with_capacity(due.len());
        for s in due {
            let skip = |reason: &str| SendOutcome {
                id: s.id,
                status: "skipped",
                reason: Some(reason.to_string()),
                provider_id: None,
                error: None,
                parts: None,
                attempts: s.attempts,
                next_attempt_at: now,
            };
            let Some(cu) = customers.get(&s.customer_id) else {
                outcomes.push(skip("deleted"));
                continue;
            };
            let to = s.address.clone().unwrap_or_default();
            if let Some(reason) = skip_reason(channel, cu, c.require_consent) {
                outcomes.push(skip(reason));
                continue;
            }
            if suppressed.contains(&normalise(channel, &to)) {
                outcomes.push(skip("suppressed"));
                continue;
            }
            let msg = match &self.composer {
                Composer::Email(sender, dkim) => compose_email(c, &self.t, sender, cu, &to, s.id, &self.links)
                    .map_err(|e| e.to_string())
                    .and_then(|e| e.build(dkim.as_ref()))
                    .map(Msg::Email),
                Composer::Sms => compose_sms(c, &self.t, cu, s.id, &self.links)
                    .map(|(body, parts)| Msg::Sms {
                        to: to.clone(),
                        body,
                        callback: self.links.sms_status_url(s.id),
                        parts: parts as i64,
                    })
                    .map_err(|e| e.to_string()),
            };
            match msg {
                Ok(msg) => jobs.push(Job { send: s, msg }),
                Err(e) => outcomes.push(SendOutcome {
                    status: "failed",
                    reason: Some("render".into()),
                    error: Some(e),
                    ..skip("render")
                }),
            }
        }
        (jobs, outcomes)
    }
}

/// How messages leave: SMTP lanes (a connection each), or requests to the SMS provider.
enum Transport {
    Email(Vec<SmtpLane>),
    Sms(SmsSettings),
}

/// Spaces messages to a rate (messages per second); no limit when `None`.
pub struct Limiter {
    interval: Option<Duration>,
    next: tokio::sync::Mutex<Instant>,
}

impl Limiter {
    pub fn new(per_second: Option<i64>) -> Limiter {
        Limiter {
            interval: per_second.map(|r| Duration::from_secs_f64(1.0 / r as f64)),
            next: tokio::sync::Mutex::new(Instant::now()),
        }
    }

    pub async fn acquire(&self) {
        let Some(interval) = self.interval else { return };
        let slot = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + interval;
            slot
        };
        tokio::time::sleep_until(slot.into()).await;
    }
}

//! The scoring worker. Each instance runs one; they share the work through the entity store:
//!
//! - **Incremental**: the ingest processor marks customers whose purchases changed
//!   (`scoring_dirty`); the worker re-summarises just those from the event store, scores them
//!   against the workspace's stored cut points and models, and writes the changed rows, their
//!   `customer.rfm_changed` events and the removal of the marks in one transaction.
//! - **Recompute** (`scoring.recompute` jobs, on demand or by cron): summarise every customer,
//!   compute new cut points (and, when asked, fit the models), save them as the model, then
//!   re-score every customer in chunks by id. Each chunk commits its rows, events and the job's
//!   cursor together, so a crash leaves every customer's row whole and the job resumes after
//!   the last committed chunk with the same model.
//!
//! A workspace is scored by one instance at a time (`scoring_locks`, a lease renewed as it
//! works), so two instances never write the same customer concurrently. Leases and job
//! timing use the system clock; everything the scores mean (today, recency, tenure) uses the
//! injected [`Clock`].

use std::{
    collections::{HashMap, HashSet},
    str::FromStr,
    sync::Arc,
    time::Duration,
};

use cairn_domain::{Clock, CustomerId, TenantId};
use cairn_events::{Customers, EventStore, PurchaseSummary};
use cairn_store::{jobs::NewJob, scores::ScoreRow, Conn, Store, StoreError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};

use crate::{day_number, rfm::Boundaries, rfm_differs, rfm_inputs, rfm_view, Model};

pub const RECOMPUTE_JOB: &str = "scoring.recompute";
const DIRTY_BATCH: i64 = 2_000;

#[derive(Debug, Clone)]
pub struct ScoringSettings {
    /// How far `clv_predicted` looks ahead.
    pub horizon_months: f64,
    /// When cut points are refreshed (and every customer re-scored).
    pub boundaries_schedule: cron::Schedule,
    /// When the CLV models are refitted.
    pub fit_schedule: cron::Schedule,
    /// Customers per recompute transaction.
    pub chunk: usize,
    /// A recompute chunk that changes at least this many customers, and at least half of its
    /// customers, does not mark them one by one for the segment engine: the job queues one
    /// evaluation of each segment on scores when it completes instead. A first recompute
    /// changes everyone, and a million marks cost seconds of writes and the segment engine a
    /// million incremental evaluations, where one pass over the workspace per segment takes
    /// under a second.
    pub defer_segments_at: usize,
    pub lease: Duration,
    pub poll: Duration,
}

impl Default for ScoringSettings {
    fn default() -> ScoringSettings {
        ScoringSettings {
            horizon_months: 12.0,
            boundaries_schedule: parse_schedule("*/10 * * * *").expect("valid default"),
            fit_schedule: parse_schedule("0 3 * * *").expect("valid default"),
            chunk: 10_000,
            defer_segments_at: 1_000,
            lease: Duration::from_secs(30),
            poll: Duration::from_millis(250),
        }
    }
}

/// Parses a cron expression: five fields (minute hour day month weekday) or six with seconds
/// first.
pub fn parse_schedule(expr: &str) -> Result<cron::Schedule, String> {
    let fields = expr.split_whitespace().count();
    let full = if fields == 5 { format!("0 {expr}") } else { expr.to_string() };
    cron::Schedule::from_str(&full).map_err(|e| format!("not a cron expression ({e})"))
}

#[derive(Debug, thiserror::Error)]
pub enum ScoringError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Events(#[from] cairn_events::EventStoreError),
    #[error("the job's lease was taken over by another worker")]
    LeaseLost,
    #[error("the workspace is being scored by another instance")]
    Busy,
    #[error("malformed scoring state: {0}")]
    Corrupt(String),
}

type Result<T, E = ScoringError> = std::result::Result<T, E>;

/// What a recompute job was asked to do.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct RecomputeRequest {
    /// Refit the CLV models too (else only the cut points are refreshed).
    #[serde(default)]
    pub fit: bool,
}

/// A recompute job's progress, stored on the job row (`GET /v1/scoring/jobs/{id}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub phase: String,
    pub customers: u64,
    pub scored: u64,
    pub changed: u64,
    /// The last customer id whose chunk is committed.
    pub cursor: Option<i64>,
    pub method: Option<String>,
    pub took_ms: Option<u64>,
    /// Where the time went: reading the summaries, fitting, scoring and writing.
    #[serde(default)]
    pub summarise_ms: u64,
    #[serde(default)]
    pub fit_ms: u64,
    #[serde(default)]
    pub write_ms: u64,
    /// Of the scoring and writing: computing scores, and reading the stored rows to compare.
    #[serde(default)]
    pub score_ms: u64,
    #[serde(default)]
    pub read_ms: u64,
    /// Some chunk left its customers to whole-segment evaluations at the end (see
    /// [`ScoringSettings::defer_segments_at`]).
    #[serde(default)]
    pub segments_deferred: bool,
}

pub struct Scorer {
    store: Store,
    events: Arc<dyn EventStore>,
    clock: Clock,
    settings: ScoringSettings,
    holder: String,
    wake: Arc<Notify>,
    last_tick: std::sync::Mutex<Option<DateTime<Utc>>>,
}

/// Reads a workspace's model; `None` before its first recompute.
pub async fn load_model(conn: &mut Conn, tenant: TenantId) -> Result<Option<(Model, Option<i64>)>> {
    match conn.scoring_model(tenant).await? {
        None => Ok(None),
        Some((json, job)) => {
            let model = serde_json::from_str(&json).map_err(|e| ScoringError::Corrupt(e.to_string()))?;
            Ok(Some((model, job)))
        }
    }
}

/// The workspace's time zone (UTC when it names none Cairn knows).
pub async fn time_zone(conn: &mut Conn, tenant: TenantId) -> Result<chrono_tz::Tz> {
    Ok(conn.tenant(tenant).await?.time_zone.parse().unwrap_or(chrono_tz::UTC))
}

/// Queues a recompute of a workspace; returns the job id.
pub async fn enqueue_recompute(store: &Store, tenant: TenantId, fit: bool, dedupe: Option<&str>) -> Result<i64> {
    let now = Utc::now();
    let payload = serde_json::to_string(&RecomputeRequest { fit }).expect("serialisable");
    let job = NewJob {
        tenant_id: Some(tenant),
        kind: RECOMPUTE_JOB,
        dedupe_key: dedupe,
        payload: &payload,
        run_at: now,
        now,
    };
    Ok(store.write().await?.enqueue_job(&job).await?)
}

impl Scorer {
    pub fn new(store: Store, events: Arc<dyn EventStore>, clock: Clock, settings: ScoringSettings) -> Scorer {
        let holder = format!("scorer-{:016x}", rand::random::<u64>());
        Scorer { store, events, clock, settings, holder, wake: Arc::new(Notify::new()), last_tick: Default::default() }
    }

    /// Notified by the ingest processor when customers were marked.
    pub fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    pub fn settings(&self) -> &ScoringSettings {
        &self.settings
    }

    /// Works until `stop` turns true.
    pub async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) {
        let wake = self.wake.clone();
        cairn_domain::worker::poll_loop("scoring", self.settings.poll, &wake, stop, || self.tick()).await
    }

    /// One pass: scheduled recomputes, marked customers, then one recompute job. Returns true
    /// when there may be more to do right away.
    pub async fn tick(&self) -> Result<bool> {
        self.enqueue_scheduled().await?;
        let mut busy = false;
        let tenants = self.store.read().await?.scoring_dirty_tenants().await?;
        for tenant in tenants {
            if self.lock(tenant).await? {
                busy |= self.score_dirty(tenant).await?.len() == DIRTY_BATCH as usize;
            }
        }
        busy |= self.work_one(None).await?.is_some();
        Ok(busy)
    }

    /// Claims the next due recompute job (a new one, or one whose worker's lease ran out) and
    /// runs it; returns its id. `max_chunks` as in [`Scorer::run_job`].
    pub async fn work_one(&self, max_chunks: Option<usize>) -> Result<Option<i64>> {
        let now = Utc::now();
        let lease = now + self.settings.lease;
        let Some(job) = self.store.write().await?.claim_jobs(RECOMPUTE_JOB, &self.holder, now, lease, 1).await?.pop()
        else {
            return Ok(None);
        };
        if let Err(e) = self.run_job(job.id, max_chunks).await {
            tracing::warn!(job.id = job.id, error = %e, "scoring recompute failed; will retry");
            let retry = Utc::now() + Duration::from_secs(5);
            self.store.write().await?.fail_job(job.id, &self.holder, &e.to_string(), Some(retry), Utc::now()).await?;
        }
        Ok(Some(job.id))
    }

    async fn lock(&self, tenant: TenantId) -> Result<bool> {
        let now = Utc::now();
        Ok(self.store.write().await?.lock_scoring(tenant, &self.holder, now, now + self.settings.lease).await?)
    }

    /// Queues the recomputes whose cron time has come since the last tick (per workspace, once
    /// across all instances: the job's dedupe key names the slot).
    async fn enqueue_scheduled(&self) -> Result<()> {
        let now = self.clock.now();
        let last = {
            let mut last = self.last_tick.lock().unwrap_or_else(|p| p.into_inner());
            let prev = last.replace(now);
            match prev {
                Some(p) if p < now => p,
                _ => return Ok(()),
            }
        };
        for (schedule, fit) in [(&self.settings.boundaries_schedule, false), (&self.settings.fit_schedule, true)] {
            let Some(slot) = schedule.after(&last).next().filter(|s| *s <= now) else { continue };
            let tenants = self.store.read().await?.list_tenants().await?;
            for t in tenants {
                // A workspace without a model has never had a purchase: nothing to refresh (its
                // first purchase queues its first recompute).
                if self.store.read().await?.scoring_model(t.id).await?.is_none() {
                    continue;
                }
                let key = format!("scoring:{}:{}:{}", if fit { "fit" } else { "cuts" }, t.id.0, slot.timestamp());
                enqueue_recompute(&self.store, t.id, fit, Some(&key)).await?;
            }
        }
        Ok(())
    }

    /// Re-scores up to a batch of a workspace's marked customers (this instance must hold the
    /// workspace's lease). Returns the customers it scored.
    pub async fn score_dirty(&self, tenant: TenantId) -> Result<Vec<i64>> {
        let (marks, model, tz) = {
            let mut conn = self.store.read().await?;
            let marks = conn.scoring_dirty(tenant, DIRTY_BATCH).await?;
            if marks.is_empty() {
                return Ok(Vec::new());
            }
            (marks, load_model(&mut conn, tenant).await?, time_zone(&mut conn, tenant).await?)
        };
        let Some((model, _)) = model else {
            // No cut points yet: the workspace's first recompute scores everyone (the marks
            // stay and are worked off once it has saved a model).
            enqueue_recompute(&self.store, tenant, true, Some(&format!("scoring:first:{}", tenant.0))).await?;
            return Ok(Vec::new());
        };
        let ids: Vec<CustomerId> = marks.iter().map(|m| CustomerId(m.customer_id)).collect();
        let now = self.clock.now();
        let today = day_number(now, tz);
        let summaries = self.events.purchase_summaries(tenant, Customers::Only(&ids), tz, now).await?;
        let existing = self.store.read().await?.scores_for(tenant, &ids).await?;
        let fresh: Vec<ScoreRow> =
            summaries.iter().map(|s| model.score(s, today, self.settings.horizon_months)).collect();
        let mut tx = self.store.begin().await?;
        let changed = apply(&mut tx, tenant, existing, fresh, now).await?;
        mark_segments(&mut tx, tenant, &changed, now).await?;
        tx.clear_scoring_dirty(tenant, &marks).await?;
        let lease = Utc::now() + self.settings.lease;
        if !tx.lock_scoring(tenant, &self.holder, Utc::now(), lease).await? {
            return Err(ScoringError::LeaseLost);
        }
        tx.commit().await?;
        Ok(ids.iter().map(|c| c.0).collect())
    }

    /// Awaits `work` while keeping the workspace's customers fresh: marked customers are scored
    /// every poll interval meanwhile (their ids go into `touched`), and the job's and the
    /// workspace's leases are renewed.
    async fn meanwhile<T>(
        &self,
        tenant: TenantId,
        job_id: i64,
        touched: &mut HashSet<i64>,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = tokio::time::sleep(self.settings.poll) => {
                    touched.extend(self.score_dirty(tenant).await?);
                    let lease = Utc::now() + self.settings.lease;
                    let mut conn = self.store.write().await?;
                    if !conn.heartbeat_job(job_id, &self.holder, lease, None, Utc::now()).await?
                        || !conn.lock_scoring(tenant, &self.holder, Utc::now(), lease).await?
                    {
                        return Err(ScoringError::LeaseLost);
                    }
                }
            }
        }
    }

    /// Runs (or resumes) a claimed recompute job. `max_chunks` stops it early, as a crash would
    /// (tests use it to prove that the job resumes).
    pub async fn run_job(&self, job_id: i64, max_chunks: Option<usize>) -> Result<()> {
        let started = std::time::Instant::now();
        let job = self.store.read().await?.job(job_id).await?;
        let tenant = TenantId(job.tenant_id.ok_or_else(|| ScoringError::Corrupt("job without workspace".into()))?);
        if !self.lock(tenant).await? {
            return Err(ScoringError::Busy);
        }
        let request: RecomputeRequest = serde_json::from_str(&job.payload).unwrap_or_default();
        let mut progress: Progress =
            job.progress.as_deref().and_then(|p| serde_json::from_str(p).ok()).unwrap_or_default();
        self.heartbeat(job_id, &Progress { phase: "summarising".into(), ..progress.clone() }).await?;

        let (stored, tz) = {
            let mut conn = self.store.read().await?;
            (load_model(&mut conn, tenant).await?, time_zone(&mut conn, tenant).await?)
        };
        let now = self.clock.now();
        let today = day_number(now, tz);
        // Customers scored by the incremental path while this job runs have rows fresher than
        // the job's snapshot: its chunks leave them alone.
        let mut touched = HashSet::new();
        // Spawned, so that the scan streams on while this task scores marked customers.
        let events = self.events.clone();
        let mut scan =
            AbortOnDrop(tokio::spawn(async move { events.purchase_summaries(tenant, Customers::All, tz, now).await }));
        let read = async move {
            let summaries =
                (&mut scan.0).await.map_err(|e| ScoringError::Corrupt(format!("the summary scan failed: {e}")))?;
            Ok(summaries?)
        };
        let summaries = Arc::new(self.meanwhile(tenant, job_id, &mut touched, read).await?);
        let summarise_ms = started.elapsed().as_millis() as u64;

        // The model this job scores with: saved once, before the first chunk, and reused on resume.
        let model = match stored {
            Some((model, Some(id))) if id == job_id => model,
            stored => {
                self.heartbeat(job_id, &Progress { phase: "fitting".into(), ..progress.clone() }).await?;
                let mut model = stored.map(|(m, _)| m).unwrap_or_default();
                model.boundaries_at = Some(now);
                model.horizon_months = self.settings.horizon_months;
                let fitting = std::time::Instant::now();
                let fit = request.fit || model.fitted_at.is_none();
                let all = summaries.clone();
                // Sorting a million values and fitting take seconds of CPU: off the async threads.
                let compute = async move {
                    tokio::task::spawn_blocking(move || {
                        // The cut points (three sorts of a million values) beside the fit.
                        let boundaries = std::thread::scope(|s| {
                            let cuts = s.spawn(|| Boundaries::compute(&all.iter().map(rfm_inputs).collect::<Vec<_>>()));
                            if fit {
                                model.fit(&all, today, now);
                            }
                            cuts.join().expect("computing cut points does not panic")
                        });
                        model.boundaries = boundaries;
                        model
                    })
                    .await
                    .map_err(|e| ScoringError::Corrupt(format!("the fit panicked: {e}")))
                };
                let model = self.meanwhile(tenant, job_id, &mut touched, compute).await?;
                progress.fit_ms = fitting.elapsed().as_millis() as u64;
                let json = serde_json::to_string(&model).expect("serialisable");
                self.store.write().await?.save_scoring_model(tenant, &json, Some(job_id), now).await?;
                progress = Progress { fit_ms: progress.fit_ms, ..Progress::default() };
                model
            }
        };
        progress.phase = "scoring".into();
        progress.summarise_ms = summarise_ms;
        let writing = std::time::Instant::now();
        progress.customers = summaries.len() as u64;
        progress.method = Some(model.method.as_str().into());

        let start = progress.cursor.map_or(0, |c| summaries.partition_point(|s| s.customer_id.0 <= c));
        let rest = &summaries[start..];
        let chunk = self.settings.chunk.max(1);
        let chunks: Vec<&[PurchaseSummary]> = if rest.is_empty() { vec![&[]] } else { rest.chunks(chunk).collect() };
        let last = chunks.len() - 1;
        for (i, part) in chunks.into_iter().enumerate() {
            if max_chunks.is_some_and(|m| i >= m) {
                return Ok(());
            }
            let after = progress.cursor;
            let upto = if i == last { None } else { part.last().map(|s| s.customer_id.0) };
            touched.extend(self.score_dirty(tenant).await?);
            let t = std::time::Instant::now();
            let mut existing = self.store.read().await?.scores_in_range(tenant, after, upto).await?;
            existing.retain(|r| !touched.contains(&r.customer_id));
            progress.read_ms += t.elapsed().as_millis() as u64;
            let t = std::time::Instant::now();
            let fresh: Vec<ScoreRow> = part
                .iter()
                .filter(|s| !touched.contains(&s.customer_id.0))
                .map(|s| model.score(s, today, self.settings.horizon_months))
                .collect();
            progress.score_ms += t.elapsed().as_millis() as u64;
            // A chunk's commit does not wait for the disk: its rows, events and the job's cursor
            // commit together, so a power cut that loses the last chunks loses their cursor with
            // them and the job redoes them; the completing transaction below is synced, which
            // makes every chunk before it durable too.
            let mut tx = self.store.begin_unsynced().await?;
            let changed = apply(&mut tx, tenant, existing, fresh, now).await?;
            if changed.len() >= self.settings.defer_segments_at && changed.len() * 2 >= part.len() {
                progress.segments_deferred = true;
            } else {
                mark_segments(&mut tx, tenant, &changed, now).await?;
            }
            progress.scored += part.len() as u64;
            progress.changed += changed.len() as u64;
            progress.cursor = upto.or(part.last().map(|s| s.customer_id.0)).or(after);
            let json = serde_json::to_string(&progress).expect("serialisable");
            let lease = Utc::now() + self.settings.lease;
            // The job's lease and the workspace's are renewed in the chunk's own transaction.
            if !tx.heartbeat_job(job_id, &self.holder, lease, Some(&json), Utc::now()).await?
                || !tx.lock_scoring(tenant, &self.holder, Utc::now(), lease).await?
            {
                return Err(ScoringError::LeaseLost);
            }
            tx.commit().await?;
        }
        // The end, in one transaction: the segments on scores are queued for evaluation if any
        // chunk left its customers to them, and the job completes.
        let mut tx = self.store.begin().await?;
        if progress.segments_deferred {
            for segment in tx.segments_depending_on(tenant, SCORES_CHANGED).await? {
                tx.enqueue_segment_evaluation(tenant, segment, now).await?;
            }
        }
        progress.phase = "done".into();
        progress.write_ms += writing.elapsed().as_millis() as u64;
        progress.took_ms = Some(started.elapsed().as_millis() as u64);
        let json = serde_json::to_string(&progress).expect("serialisable");
        if !tx.heartbeat_job(job_id, &self.holder, Utc::now(), Some(&json), Utc::now()).await? {
            return Err(ScoringError::LeaseLost);
        }
        tx.complete_job(job_id, &self.holder, Utc::now()).await?;
        tx.commit().await?;
        tracing::info!(tenant.id = %tenant, customers = progress.customers, changed = progress.changed,
            took_ms = progress.took_ms, "scores recomputed");
        Ok(())
    }

    async fn heartbeat(&self, job_id: i64, progress: &Progress) -> Result<()> {
        let json = serde_json::to_string(progress).expect("serialisable");
        let lease = Utc::now() + self.settings.lease;
        if !self.store.write().await?.heartbeat_job(job_id, &self.holder, lease, Some(&json), Utc::now()).await? {
            return Err(ScoringError::LeaseLost);
        }
        Ok(())
    }
}

/// A spawned task that stops when its handle is dropped (a recompute that fails mid-way does not
/// leave its scan running).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The segment engine's "scores changed" bit (docs/segments.md).
const SCORES_CHANGED: i64 = 2;

/// Writes what changed between a set of customers' stored and fresh scores: upserts, removals
/// (customers who no longer have a purchase), and `customer.rfm_changed` for every change of
/// R, F, M or segment. Returns the customers who changed.
async fn apply(
    tx: &mut Conn,
    tenant: TenantId,
    existing: Vec<ScoreRow>,
    fresh: Vec<ScoreRow>,
    now: DateTime<Utc>,
) -> Result<Vec<i64>> {
    let mut old: HashMap<i64, ScoreRow> = existing.into_iter().map(|r| (r.customer_id, r)).collect();
    // Customers without stored scores get a plain insert: `existing` was read under the
    // workspace's scoring lease, so no other writer can have added theirs since.
    let (mut updates, mut inserts) = (Vec::new(), Vec::new());
    let mut events: Vec<(&str, Value)> = Vec::new();
    for row in fresh {
        let before = old.remove(&row.customer_id);
        if before.as_ref() == Some(&row) {
            continue;
        }
        if before.as_ref().is_none_or(|b| rfm_differs(b, &row)) {
            events.push(("customer.rfm_changed", change(row.customer_id, before.as_ref(), Some(&row))));
        }
        if before.is_some() {
            updates.push(row)
        } else {
            inserts.push(row)
        }
    }
    let gone: Vec<i64> = old.keys().copied().collect();
    for before in old.values() {
        events.push(("customer.rfm_changed", change(before.customer_id, Some(before), None)));
    }
    tx.upsert_scores(tenant, &updates, now).await?;
    tx.insert_new_scores(tenant, &inserts, now).await?;
    tx.delete_scores(tenant, &gone).await?;
    tx.insert_outbox_many(tenant, &events, now).await?;
    Ok(updates.iter().chain(&inserts).map(|r| r.customer_id).chain(gone).collect())
}

/// Marks customers whose scores changed for the segment engine (segments on scores follow).
async fn mark_segments(tx: &mut Conn, tenant: TenantId, customers: &[i64], now: DateTime<Utc>) -> Result<()> {
    let marks: Vec<(TenantId, CustomerId, i64)> =
        customers.iter().map(|c| (tenant, CustomerId(*c), SCORES_CHANGED)).collect();
    Ok(tx.mark_segments_dirty(&marks, now).await?)
}

fn change(customer: i64, old: Option<&ScoreRow>, new: Option<&ScoreRow>) -> Value {
    json!({
        "customer_id": customer,
        "old": old.map(rfm_view),
        "new": new.map(rfm_view),
    })
}

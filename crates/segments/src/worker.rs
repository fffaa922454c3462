//! The segment worker. Each instance runs one; they share the work through the entity store:
//!
//! - **Incremental**: whatever changes a customer (the ingest processor, profile edits, the
//!   scorer, static membership changes, crossings coming due) marks them in `segment_dirty`
//!   with what changed. The worker takes a batch of marks, re-evaluates for each customer the
//!   segments that depend on what changed (in reference order, so a segment sees the new
//!   membership of the segments it refers to), and writes membership changes, their
//!   `customer.segment_entered` / `customer.segment_exited` events, the customers' next
//!   crossings and the removal of the marks in one transaction.
//! - **Evaluation** (`segments.evaluate` jobs, queued when a segment is created or its filter
//!   edited): evaluate the filter over every customer, then write the difference with the stored
//!   membership in chunks, each chunk's changes, events and progress in one transaction.
//!   Inserts and deletes report the rows they really changed, and only those get events, so a
//!   resumed or repeated job never emits a transition twice.
//!
//! A workspace is maintained by one instance at a time (`segment_locks`, a lease renewed as it
//! works). Leases use the system clock; what conditions mean (now, today) uses the injected
//! [`Clock`].

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use cairn_domain::{Clock, CustomerId, TenantId};
use cairn_events::EventStore;
use cairn_store::{segments::SegmentMark, Conn, Store};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};

use crate::{
    changed,
    eval::{difference, intersect, is_relative, union, Evaluator, Snapshot, WholeCache},
    plan, Definition, Result, SegmentError,
};

pub use cairn_store::segments::EVALUATE_JOB;

#[derive(Debug, Clone)]
pub struct SegmentSettings {
    /// Membership changes per evaluation transaction.
    pub chunk: usize,
    /// Marked customers per incremental pass.
    pub batch: i64,
    pub lease: Duration,
    pub poll: Duration,
}

impl Default for SegmentSettings {
    fn default() -> SegmentSettings {
        SegmentSettings {
            chunk: 10_000,
            batch: 5_000,
            lease: Duration::from_secs(30),
            poll: Duration::from_millis(250),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct EvaluateRequest {
    segment_id: i64,
}

/// An evaluation job's progress, stored on the job row (shown on the segment).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvaluationProgress {
    /// `evaluating`, `writing`, `done`.
    pub phase: String,
    pub members: u64,
    pub entered: u64,
    pub exited: u64,
    /// Membership changes to write, and how many are written.
    pub changes: u64,
    pub written: u64,
    pub evaluate_ms: u64,
    pub took_ms: Option<u64>,
}

/// The workspace's time zone (UTC when it names none Cairn knows).
pub async fn time_zone(conn: &mut Conn, tenant: TenantId) -> Result<chrono_tz::Tz> {
    Ok(conn.tenant(tenant).await?.time_zone.parse().unwrap_or(chrono_tz::UTC))
}

/// Queues the evaluation of a segment over every customer; returns the job id.
pub async fn enqueue_evaluation(conn: &mut Conn, tenant: TenantId, segment: i64, now: DateTime<Utc>) -> Result<i64> {
    Ok(conn.enqueue_segment_evaluation(tenant, segment, now).await?)
}

pub struct Segmenter {
    store: Store,
    events: Arc<dyn EventStore>,
    clock: Clock,
    settings: SegmentSettings,
    holder: String,
    wake: Arc<Notify>,
}

/// A membership change with its event.
struct Transition {
    segment_id: i64,
    segment_name: String,
    entered: Vec<i64>,
    exited: Vec<i64>,
}

impl Segmenter {
    pub fn new(store: Store, events: Arc<dyn EventStore>, clock: Clock, settings: SegmentSettings) -> Segmenter {
        let holder = format!("segmenter-{:016x}", rand::random::<u64>());
        Segmenter { store, events, clock, settings, holder, wake: Arc::new(Notify::new()) }
    }

    /// Notified when customers were marked.
    pub fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Works until `stop` turns true.
    pub async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) {
        let wake = self.wake.clone();
        cairn_domain::worker::poll_loop("segments", self.settings.poll, &wake, stop, || self.tick()).await
    }

    /// One pass: due crossings become marks, marked customers are re-evaluated, then one
    /// evaluation job runs. Returns true when there may be more to do right away.
    pub async fn tick(&self) -> Result<bool> {
        let mut busy = self.take_due_crossings().await? == 5_000;
        let tenants = self.store.read().await?.segment_dirty_tenants().await?;
        for tenant in tenants {
            if self.lock(tenant).await? {
                let (n, _) = self.process_dirty(tenant).await?;
                busy |= n == self.settings.batch as usize;
            }
        }
        busy |= self.work_one(None).await?.is_some();
        Ok(busy)
    }

    /// Turns crossings that came due into marks; returns how many.
    async fn take_due_crossings(&self) -> Result<usize> {
        let mut tx = self.store.begin().await?;
        let n = tx.take_due_crossings(self.clock.now(), changed::TIME, 5_000).await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn lock(&self, tenant: TenantId) -> Result<bool> {
        let now = Utc::now();
        Ok(self.store.write().await?.lock_segments(tenant, &self.holder, now, now + self.settings.lease).await?)
    }

    async fn definitions(&self, conn: &mut Conn, tenant: TenantId) -> Result<Vec<Definition>> {
        let rows = conn.list_segments(tenant).await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| match Definition::from_row(r) {
                Ok(d) => Some(d),
                Err(e) => {
                    tracing::error!(tenant.id = %tenant, error = %e, "segment skipped");
                    None
                }
            })
            .collect())
    }

    /// Re-evaluates up to a batch of a workspace's marked customers (this instance must hold
    /// the workspace's lease). Returns how many marks it took and, per segment, the customers
    /// it evaluated.
    pub async fn process_dirty(&self, tenant: TenantId) -> Result<(usize, HashMap<i64, Vec<i64>>)> {
        let t0 = std::time::Instant::now();
        let (marks, defs, tz) = {
            let mut conn = self.store.read().await?;
            let marks: Vec<SegmentMark> = conn.segment_dirty(tenant, self.settings.batch).await?;
            if marks.is_empty() {
                return Ok((0, HashMap::new()));
            }
            let defs = self.definitions(&mut conn, tenant).await?;
            (marks, defs, time_zone(&mut conn, tenant).await?)
        };
        let now = self.clock.now();
        let mut ids: Vec<i64> = marks.iter().map(|m| m.customer_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let kinds: HashMap<i64, i64> = marks.iter().map(|m| (m.customer_id, m.kinds)).collect();
        let plan = plan(&defs);
        // Customers whose events or scores changed (or whose crossing came due) get their next
        // crossing recomputed over every time-relative segment (if there is any).
        let any_relative = plan.iter().any(|(d, _)| d.filter.as_ref().is_some_and(is_relative));
        let refresh: Vec<i64> = if any_relative {
            ids.iter()
                .copied()
                .filter(|c| kinds[c] & (changed::EVENTS | changed::SCORES | changed::TIME) != 0)
                .collect()
        } else {
            Vec::new()
        };
        // Per planned segment, the customers it is re-evaluated for.
        let scopes: Vec<Vec<i64>> = plan
            .iter()
            .map(|(def, bits)| {
                let relative = def.filter.as_ref().is_some_and(is_relative);
                ids.iter()
                    .copied()
                    .filter(|c| kinds[c] & bits != 0 || (relative && refresh.binary_search(c).is_ok()))
                    .collect()
            })
            .collect();
        let mut current: HashMap<i64, Vec<i64>> = HashMap::new();
        let mut snapshot = None;
        let t_marks = t0.elapsed();
        let mut t_read = t_marks;
        if scopes.iter().any(|s| !s.is_empty()) {
            for (segment, customer) in self.store.read().await?.segment_memberships_of(tenant, &ids).await? {
                current.entry(segment).or_default().push(customer);
            }
            current.values_mut().for_each(|v| v.sort_unstable());
            let mut snap = Snapshot::read(&self.store, tenant, ids.clone()).await?;
            t_read = t0.elapsed();
            let filters: Vec<&crate::Filter> = plan
                .iter()
                .zip(&scopes)
                .filter(|(_, scope)| !scope.is_empty())
                .filter_map(|((d, _), _)| d.filter.as_ref())
                .collect();
            snap.prefetch(self.events.as_ref(), tenant, now, &filters).await?;
            snapshot = Some(snap);
        }
        let t_prefetch = t0.elapsed();
        // Every segment's membership among the batch, updated as segments are evaluated in
        // reference order (a segment sees the new membership of those it refers to).
        let mut overrides: HashMap<i64, Vec<i64>> = defs.iter().map(|d| (d.row.id, Vec::new())).collect();
        overrides.extend(current.clone());
        let mut evaluated: HashMap<i64, Vec<i64>> = HashMap::new();
        let mut transitions = Vec::new();
        let mut crossings: Vec<(i64, DateTime<Utc>)> = Vec::new();
        for ((def, _), scope) in plan.iter().zip(scopes) {
            let filter = def.filter.as_ref().expect("planned segments are dynamic");
            let old_all = current.get(&def.row.id).cloned().unwrap_or_default();
            if scope.is_empty() {
                overrides.insert(def.row.id, old_all);
                continue;
            }
            let mut ev = Evaluator::new(&self.store, self.events.as_ref(), tenant, now, tz, &overrides);
            ev.snapshot = snapshot.take();
            let new = ev.members(filter, Some(&scope)).await;
            snapshot = ev.snapshot.take();
            let new = new?;
            crossings.extend(ev.crossings);
            let old = intersect(&old_all, &scope);
            transitions.push(Transition {
                segment_id: def.row.id,
                segment_name: def.row.name.clone(),
                entered: difference(&new, &old),
                exited: difference(&old, &new),
            });
            overrides.insert(def.row.id, union(&difference(&old_all, &scope), &new));
            evaluated.insert(def.row.id, scope);
        }
        let mut next: HashMap<i64, DateTime<Utc>> = HashMap::new();
        for (c, at) in crossings {
            if at > now && refresh.binary_search(&c).is_ok() {
                let e = next.entry(c).or_insert(at);
                *e = (*e).min(at);
            }
        }
        let due: Vec<(i64, Option<DateTime<Utc>>)> = refresh.iter().map(|c| (*c, next.get(c).copied())).collect();

        let t_eval = t0.elapsed();
        let emails = self.emails(tenant, &transitions).await?;
        let mut tx = self.store.begin().await?;
        write_transitions(&mut tx, tenant, &transitions, &emails, false, now).await?;
        tx.set_crossings(tenant, &due).await?;
        tx.clear_segment_dirty(tenant, &marks).await?;
        let lease = Utc::now() + self.settings.lease;
        if !tx.lock_segments(tenant, &self.holder, Utc::now(), lease).await? {
            return Err(SegmentError::LeaseLost);
        }
        tx.commit().await?;
        tracing::debug!(
            tenant.id = %tenant,
            customers = ids.len(),
            marks_ms = t_marks.as_millis() as u64,
            read_ms = (t_read - t_marks).as_millis() as u64,
            behaviour_ms = (t_prefetch - t_read).as_millis() as u64,
            evaluate_ms = (t_eval - t_prefetch).as_millis() as u64,
            write_ms = (t0.elapsed() - t_eval).as_millis() as u64,
            "segment marks processed"
        );
        Ok((marks.len(), evaluated))
    }

    async fn emails(&self, tenant: TenantId, transitions: &[Transition]) -> Result<HashMap<i64, Option<String>>> {
        let mut who: Vec<i64> = transitions.iter().flat_map(|t| t.entered.iter().chain(&t.exited)).copied().collect();
        who.sort_unstable();
        who.dedup();
        if who.is_empty() {
            return Ok(HashMap::new());
        }
        Ok(self.store.read().await?.customer_emails(tenant, &who).await?)
    }

    /// Claims the next due evaluation job and runs it; returns its id. `max_chunks` as in
    /// [`Segmenter::run_job`].
    ///
    /// Up to 100 due jobs are claimed together and run one after another at one instant, sharing
    /// what they read of the whole workspace (customer ids, behaviour per condition): refreshing
    /// many segments reads each behaviour condition once.
    pub async fn work_one(&self, max_chunks: Option<usize>) -> Result<Option<i64>> {
        let now = Utc::now();
        let lease = now + self.settings.lease;
        let mut jobs = self.store.write().await?.claim_jobs(EVALUATE_JOB, &self.holder, now, lease, 100).await?;
        let Some(first) = jobs.first().map(|j| j.id) else { return Ok(None) };
        jobs.sort_by_key(|j| (j.tenant_id, j.id));
        let at = self.clock.now();
        let mut shared: Option<(Option<i64>, WholeCache)> = None;
        // Per segment, the customers re-evaluated incrementally since `at`: their stored
        // membership is fresher than anything these jobs read, which they leave alone.
        let mut touched: HashMap<i64, HashSet<i64>> = HashMap::new();
        for (k, job) in jobs.iter().enumerate() {
            if shared.as_ref().is_none_or(|(t, _)| *t != job.tenant_id) {
                shared = Some((job.tenant_id, WholeCache::default()));
            }
            let cache = &mut shared.as_mut().expect("set above").1;
            // Upkeep goes on between jobs: many jobs claimed together can take minutes.
            if let Some(t) = job.tenant_id.map(TenantId) {
                self.take_due_crossings().await?;
                if self.lock(t).await? {
                    let (_, evaluated) = self.process_dirty(t).await?;
                    for (segment, ids) in evaluated {
                        touched.entry(segment).or_default().extend(ids);
                    }
                }
            }
            if let Err(e) = self.run_job_with(job.id, max_chunks, cache, at, &mut touched).await {
                tracing::warn!(job.id = job.id, error = %e, "segment evaluation failed; will retry");
                let retry = Utc::now() + Duration::from_secs(5);
                self.store
                    .write()
                    .await?
                    .fail_job(job.id, &self.holder, &e.to_string(), Some(retry), Utc::now())
                    .await?;
            }
            // The jobs still waiting keep their leases.
            let lease = Utc::now() + self.settings.lease;
            let mut conn = self.store.write().await?;
            for waiting in &jobs[k + 1..] {
                conn.heartbeat_job(waiting.id, &self.holder, lease, None, Utc::now()).await?;
            }
        }
        Ok(Some(first))
    }

    /// Runs (or resumes) a claimed evaluation job. `max_chunks` stops it after that many
    /// chunks, as a crash would (tests use it to prove a resumed job emits nothing twice).
    pub async fn run_job(&self, job_id: i64, max_chunks: Option<usize>) -> Result<()> {
        self.run_job_with(job_id, max_chunks, &mut WholeCache::default(), self.clock.now(), &mut HashMap::new()).await
    }

    async fn run_job_with(
        &self,
        job_id: i64,
        max_chunks: Option<usize>,
        cache: &mut WholeCache,
        now: DateTime<Utc>,
        touched: &mut HashMap<i64, HashSet<i64>>,
    ) -> Result<()> {
        let started = std::time::Instant::now();
        let job = self.store.read().await?.job(job_id).await?;
        let tenant = TenantId(job.tenant_id.ok_or_else(|| SegmentError::Corrupt("job without workspace".into()))?);
        let request: EvaluateRequest =
            serde_json::from_str(&job.payload).map_err(|e| SegmentError::Corrupt(e.to_string()))?;
        if !self.lock(tenant).await? {
            return Err(SegmentError::Busy);
        }
        let (defs, tz) = {
            let mut conn = self.store.read().await?;
            (self.definitions(&mut conn, tenant).await?, time_zone(&mut conn, tenant).await?)
        };
        let Some(def) = defs.iter().find(|d| d.row.id == request.segment_id && d.filter.is_some()) else {
            // Deleted, or static: nothing to evaluate.
            return self.finish(job_id, &EvaluationProgress { phase: "done".into(), ..Default::default() }).await;
        };
        let filter = def.filter.as_ref().expect("dynamic");
        let referenced = defs.iter().any(|d| {
            let mut refs = Vec::new();
            if let Some(f) = &d.filter {
                crate::filter::referenced_segments(f, &mut refs);
            }
            refs.contains(&def.row.id)
        });
        let mut progress = EvaluationProgress { phase: "evaluating".into(), ..Default::default() };
        self.heartbeat(job_id, &progress).await?;

        let no_overrides = HashMap::new();
        let mut ev = Evaluator::new(&self.store, self.events.as_ref(), tenant, now, tz, &no_overrides);
        ev.whole = std::mem::take(cache);
        let members = ev.members(filter, None).await;
        *cache = std::mem::take(&mut ev.whole);
        let members = members?;
        progress.evaluate_ms = started.elapsed().as_millis() as u64;
        progress.members = members.len() as u64;

        // Crossings only move earlier here: another segment may need a customer sooner, and a
        // crossing that changes nothing costs one re-evaluation.
        let mut next: HashMap<i64, DateTime<Utc>> = HashMap::new();
        for (c, at) in std::mem::take(&mut ev.crossings) {
            if at > now {
                let e = next.entry(c).or_insert(at);
                *e = (*e).min(at);
            }
        }
        let mut due: Vec<(i64, DateTime<Utc>)> = next.into_iter().collect();
        due.sort_unstable();
        self.store.write().await?.lower_crossings(tenant, &due).await?;

        let current = self.store.read().await?.segment_member_ids(tenant, def.row.id, None).await?;
        let entered = difference(&members, &current);
        let exited = difference(&current, &members);
        progress.phase = "writing".into();
        progress.changes = (entered.len() + exited.len()) as u64;
        self.heartbeat(job_id, &progress).await?;

        // Changes in customer order, in chunks; customers re-evaluated incrementally meanwhile
        // are fresher than this job's snapshot and are left alone.
        let mut changes: Vec<(i64, bool)> =
            entered.iter().map(|c| (*c, true)).chain(exited.iter().map(|c| (*c, false))).collect();
        changes.sort_unstable();
        for (i, part) in changes.chunks(self.settings.chunk.max(1)).enumerate() {
            if max_chunks.is_some_and(|m| i >= m) {
                return Ok(());
            }
            let (_, evaluated) = self.process_dirty(tenant).await?;
            for (segment, ids) in evaluated {
                touched.entry(segment).or_default().extend(ids);
            }
            let touched = touched.entry(def.row.id).or_default();
            let t = Transition {
                segment_id: def.row.id,
                segment_name: def.row.name.clone(),
                entered: part.iter().filter(|(c, e)| *e && !touched.contains(c)).map(|(c, _)| *c).collect(),
                exited: part.iter().filter(|(c, e)| !*e && !touched.contains(c)).map(|(c, _)| *c).collect(),
            };
            let emails = self.emails(tenant, std::slice::from_ref(&t)).await?;
            let mut tx = self.store.begin().await?;
            let (entered, exited) =
                write_transitions(&mut tx, tenant, std::slice::from_ref(&t), &emails, referenced, now).await?;
            progress.entered += entered;
            progress.exited += exited;
            progress.written += part.len() as u64;
            let json = serde_json::to_string(&progress).expect("serialisable");
            let lease = Utc::now() + self.settings.lease;
            if !tx.heartbeat_job(job_id, &self.holder, lease, Some(&json), Utc::now()).await?
                || !tx.lock_segments(tenant, &self.holder, Utc::now(), lease).await?
            {
                return Err(SegmentError::LeaseLost);
            }
            tx.commit().await?;
        }
        progress.phase = "done".into();
        progress.took_ms = Some(started.elapsed().as_millis() as u64);
        tracing::info!(tenant.id = %tenant, segment.id = def.row.id, members = progress.members,
            entered = progress.entered, exited = progress.exited, took_ms = progress.took_ms, "segment evaluated");
        self.finish(job_id, &progress).await
    }

    async fn heartbeat(&self, job_id: i64, progress: &EvaluationProgress) -> Result<()> {
        let json = serde_json::to_string(progress).expect("serialisable");
        let lease = Utc::now() + self.settings.lease;
        if !self.store.write().await?.heartbeat_job(job_id, &self.holder, lease, Some(&json), Utc::now()).await? {
            return Err(SegmentError::LeaseLost);
        }
        Ok(())
    }

    async fn finish(&self, job_id: i64, progress: &EvaluationProgress) -> Result<()> {
        let mut conn = self.store.write().await?;
        let json = serde_json::to_string(progress).expect("serialisable");
        conn.heartbeat_job(job_id, &self.holder, Utc::now(), Some(&json), Utc::now()).await?;
        conn.complete_job(job_id, &self.holder, Utc::now()).await?;
        Ok(())
    }
}

/// Adds and removes members of a (static) segment by hand, in the caller's transaction, with
/// one event per real change; segments that refer to it follow. Returns (added, removed).
pub async fn change_members(
    tx: &mut Conn,
    tenant: TenantId,
    segment: &cairn_store::segments::SegmentRow,
    add: &[i64],
    remove: &[i64],
    now: DateTime<Utc>,
) -> Result<(u64, u64)> {
    let mut who: Vec<i64> = add.iter().chain(remove).copied().collect();
    who.sort_unstable();
    who.dedup();
    let emails = tx.customer_emails(tenant, &who).await?;
    let t = Transition {
        segment_id: segment.id,
        segment_name: segment.name.clone(),
        entered: add.to_vec(),
        exited: remove.to_vec(),
    };
    write_transitions(tx, tenant, &[t], &emails, true, now).await
}

/// Writes membership changes and one event per row that really changed. With `referenced`
/// (segments refer to these ones, and are not evaluated in the same pass), the changed
/// customers are marked so those segments follow. Returns (entered, exited).
async fn write_transitions(
    tx: &mut Conn,
    tenant: TenantId,
    transitions: &[Transition],
    emails: &HashMap<i64, Option<String>>,
    referenced: bool,
    now: DateTime<Utc>,
) -> Result<(u64, u64)> {
    let mut events: Vec<(&str, Value)> = Vec::new();
    let (mut n_in, mut n_out) = (0, 0);
    let mut moved = Vec::new();
    for t in transitions {
        let entered = tx.add_segment_members(tenant, t.segment_id, &t.entered, now).await?;
        let exited = tx.remove_segment_members(tenant, t.segment_id, &t.exited).await?;
        n_in += entered.len() as u64;
        n_out += exited.len() as u64;
        let payload = |c: i64| {
            json!({
                "customer_id": c,
                "customer_email": emails.get(&c).cloned().flatten(),
                "segment_id": t.segment_id,
                "segment_name": t.segment_name,
            })
        };
        events.extend(entered.iter().map(|c| ("customer.segment_entered", payload(*c))));
        events.extend(exited.iter().map(|c| ("customer.segment_exited", payload(*c))));
        if referenced {
            moved.extend(entered.iter().chain(&exited).map(|c| (tenant, CustomerId(*c), changed::MEMBERSHIP)));
        }
    }
    tx.insert_outbox_many(tenant, &events, now).await?;
    if !moved.is_empty() {
        tx.mark_segments_dirty(&moved, now).await?;
    }
    Ok((n_in, n_out))
}

//! The engine: enrolls customers when a trigger fires and walks each run through its nodes.
//!
//! Every tick it
//! 1. reads the outbox entries it has not seen (`customer.created`, `customer.segment_*`,
//!    `customer.rfm_changed`) and starts the runs of the automations they trigger;
//! 2. reads the tracked-event signals (event triggers start runs, waits are woken);
//! 3. fires due schedule and date triggers;
//! 4. takes due runs (due times on the injected clock) inside a transaction — row locks that
//!    other instances skip on PostgreSQL, the write lock on SQLite —, works out in memory where
//!    each goes (conditions and exit filters evaluated per batch), and writes each run's move,
//!    its steps and its side effects in that transaction, guarded by the run's `rev`. Nothing
//!    is written unless all of it is, so each step happens once across crashes, restarts and
//!    several instances.
//!
//! A waiting run is a row with a due time: no task, no memory.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration as StdDuration,
};

use cairn_domain::{Clock, CustomerId, TenantId};
use cairn_events::EventStore;
use cairn_segments::{
    eval::Evaluator,
    filter::{Filter, Window},
};
use cairn_store::{
    automations::{AutomationRow, AutomationsStamp, NewRun, NewStep, RunRow, RunUpdate, VersionRow},
    campaigns::NewSend,
    customers::{Customer, CustomerFields},
    Conn, Store, StoreError,
};
use chrono::{DateTime, Datelike, Duration, NaiveTime, TimeZone, Utc};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::{watch, Notify};

use crate::{
    design::{Action, Delay, Design, Plan, Step, Zone},
    trigger::{self, Trigger},
};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Segments(#[from] cairn_segments::SegmentError),
}

type Result<T> = std::result::Result<T, EngineError>;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Runs claimed per batch.
    pub batch: i64,
    /// Longest sleep between ticks when nothing wakes the engine.
    pub poll: StdDuration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig { batch: 1_000, poll: StdDuration::from_secs(1) }
    }
}

/// A published version, compiled once.
pub struct Compiled {
    pub automation_id: i64,
    pub tenant_id: i64,
    pub version: i64,
    pub plan: Plan,
    pub exit: Option<Filter>,
    /// Node → the campaign (email, SMS) or webhook endpoint it sends through.
    pub bindings: HashMap<String, i64>,
}

impl Compiled {
    pub fn from_version(v: &VersionRow) -> std::result::Result<Compiled, String> {
        let design: Design = serde_json::from_value(v.design.0.clone()).map_err(|e| e.to_string())?;
        let plan = crate::compile(&design).map_err(|p| format!("{} problems", p.len()))?;
        let exit = match &v.exit_filter {
            Some(f) if !f.0.is_null() => Some(cairn_segments::parse(&f.0, "exit_filter").map_err(|e| e.to_string())?),
            _ => None,
        };
        let bindings = v
            .bindings
            .0
            .as_object()
            .map(|m| m.iter().filter_map(|(k, v)| v.as_i64().map(|id| (k.clone(), id))).collect())
            .unwrap_or_default();
        Ok(Compiled {
            automation_id: v.automation_id,
            tenant_id: v.tenant_id,
            version: v.version,
            plan,
            exit,
            bindings,
        })
    }
}

/// An active automation as the intake sees it.
struct Active {
    row: AutomationRow,
    trigger: Trigger,
}

pub struct Engine {
    store: Store,
    events: Arc<dyn EventStore>,
    clock: Clock,
    config: EngineConfig,
    wake: Arc<Notify>,
    /// Woken when a step queued a message.
    campaigns_wake: Option<Arc<Notify>>,
    plans: Mutex<HashMap<(i64, i64), Arc<Compiled>>>,
    active: Mutex<(Option<AutomationsStamp>, Arc<Vec<Active>>)>,
}

/// What one run came to in this tick.
struct Moved {
    run: RunRow,
    update: RunUpdate,
    steps: Vec<NewStep>,
    effects: Vec<Effect>,
}

/// A side effect written in the run's transaction.
enum Effect {
    Send { campaign: i64, channel: &'static str, send: NewSend },
    Webhook { endpoint: i64, body: String },
    Traits(Map<String, Value>),
    Tag { tag: String, add: bool },
    StaticSegment { segment: i64, add: bool },
    Enroll { automation: i64 },
    Activity(Box<cairn_store::crm::records::Activity>, bool),
}

/// Where a run stands while a tick works it out.
struct Walk {
    run: RunRow,
    plan: Arc<Compiled>,
    node: String,
    parked: bool,
    matched: bool,
    status: &'static str,
    wait_event: Option<String>,
    due_at: Option<DateTime<Utc>>,
    parked_at: Option<DateTime<Utc>>,
    error: Option<String>,
    steps: Vec<NewStep>,
    effects: Vec<Effect>,
    done: bool,
    hops: u32,
}

/// Nodes a run may pass in one tick (a design has no cycles; this only bounds a huge one).
const MAX_HOPS: u32 = 600;

impl Engine {
    pub fn new(store: Store, events: Arc<dyn EventStore>, clock: Clock, config: EngineConfig) -> Engine {
        Engine {
            store,
            events,
            clock,
            config,
            wake: Arc::new(Notify::new()),
            campaigns_wake: None,
            plans: Default::default(),
            active: Mutex::new((None, Arc::new(Vec::new()))),
        }
    }

    pub fn with_campaigns_wake(mut self, wake: Arc<Notify>) -> Engine {
        self.campaigns_wake = Some(wake);
        self
    }

    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Runs until `stop` turns true: ticks while there is work, then sleeps until the next run
    /// falls due, a wake-up, a change of the test clock, or the poll interval.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut clock_changes = self.clock.subscribe();
        let mut backoff = self.config.poll;
        while !*stop.borrow() {
            let sleep = match self.tick().await {
                Ok(true) => continue,
                Ok(false) => {
                    backoff = self.config.poll;
                    self.until_next_due().await.unwrap_or(self.config.poll)
                }
                Err(e) => {
                    tracing::warn!(worker = "automations", error = %e, "automation tick failed; will retry");
                    backoff = (backoff * 2).min(StdDuration::from_secs(10));
                    backoff
                }
            };
            let clock_changed = async {
                match clock_changes.as_mut() {
                    Some(rx) => {
                        let _ = rx.changed().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
                _ = clock_changed => {}
                _ = stop.changed() => {}
            }
        }
    }

    async fn until_next_due(&self) -> Result<StdDuration> {
        let next = self.store.read().await?.next_run_due().await?;
        let poll = self.config.poll;
        Ok(match next {
            Some(at) => (at - self.clock.now()).to_std().unwrap_or(StdDuration::ZERO).min(poll),
            None => poll,
        })
    }

    /// One round of intake and execution. True when there is more to do at once.
    pub async fn tick(&self) -> Result<bool> {
        // One round trip says which intakes have work; each that has opens its transaction.
        let pending = self.store.read().await?.intake_pending(self.clock.now()).await?;
        let mut busy = false;
        if pending.outbox || pending.signals {
            let actives = self.actives().await?;
            if pending.outbox {
                busy |= self.intake_outbox(&actives).await?;
            }
            if pending.signals {
                busy |= self.intake_signals(&actives).await?;
            }
        }
        if pending.ticks {
            busy |= self.fire_ticks().await?;
        }
        busy |= self.execute().await?;
        Ok(busy)
    }

    /// Works until nothing is due (tests and benchmarks).
    pub async fn drain(&self) -> Result<()> {
        while self.tick().await? {}
        Ok(())
    }

    // ---- intake ----

    async fn actives(&self) -> Result<Arc<Vec<Active>>> {
        let stamp = self.store.read().await?.automations_stamp().await?;
        {
            let cached = self.active.lock().expect("not poisoned");
            if cached.0 == Some(stamp) {
                return Ok(cached.1.clone());
            }
        }
        let rows = self.store.read().await?.active_automations().await?;
        let list: Vec<Active> = rows
            .into_iter()
            .filter_map(|row| {
                let config = trigger::config_of(&row.trigger_config.0, &row.design.0);
                match trigger::parse(&row.trigger_type, &config) {
                    Ok(trigger) => Some(Active { row, trigger }),
                    Err(_) => None,
                }
            })
            .collect();
        let list = Arc::new(list);
        *self.active.lock().expect("not poisoned") = (Some(stamp), list.clone());
        Ok(list)
    }

    /// The compiled version, from the cache or the store.
    pub async fn compiled(&self, automation: i64, version: i64) -> Result<Option<Arc<Compiled>>> {
        if let Some(c) = self.plans.lock().expect("not poisoned").get(&(automation, version)) {
            return Ok(Some(c.clone()));
        }
        let row = match self.store.read().await?.automation_version(automation, version).await {
            Ok(r) => r,
            Err(StoreError::NotFound) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match Compiled::from_version(&row) {
            Ok(c) => {
                let c = Arc::new(c);
                self.plans.lock().expect("not poisoned").insert((automation, version), c.clone());
                Ok(Some(c))
            }
            Err(e) => {
                tracing::error!(automation.id = automation, version, error = %e, "a published version does not compile");
                Ok(None)
            }
        }
    }

    async fn intake_outbox(&self, actives: &[Active]) -> Result<bool> {
        let mut tx = self.store.begin().await?;
        let rows = tx.unautomated_outbox(1_000).await?;
        if rows.is_empty() {
            return Ok(false);
        }
        let now = self.clock.now();
        let mut runs = Vec::new();
        for r in &rows {
            for a in actives.iter().filter(|a| a.row.tenant_id == r.tenant_id) {
                let listens = a.trigger.outbox_event() == Some(r.event.as_str());
                let after_activation = a.row.activated_at.is_none_or(|t| r.created_at >= t);
                if !listens || !after_activation || !a.trigger.matches_outbox(&r.payload.0) {
                    continue;
                }
                let Some(customer) = r.payload.0["customer_id"].as_i64() else { continue };
                let context = json!({"trigger": {"type": a.row.trigger_type, "event": r.event, "data": r.payload.0}});
                if let Some(run) = self.new_run(a, customer, &format!("outbox:{}", r.id), context).await? {
                    runs.push(run);
                }
            }
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let started = start_runs(&mut tx, &runs, now).await?.len();
        tx.mark_automated(&ids, now).await?;
        tx.commit().await?;
        if started > 0 {
            tracing::debug!(runs = started, "automation runs started from the outbox");
        }
        Ok(rows.len() == 1_000 || started > 0)
    }

    /// The run an occurrence of a trigger starts, by the automation's re-entry policy.
    async fn new_run(&self, a: &Active, customer: i64, key: &str, context: Value) -> Result<Option<NewRun>> {
        let Some(version) = a.row.active_version else { return Ok(None) };
        let Some(plan) = self.compiled(a.row.id, version).await? else { return Ok(None) };
        Ok(Some(run_for(&a.row, version, &plan.plan.trigger, customer, key, context)))
    }

    async fn intake_signals(&self, actives: &[Active]) -> Result<bool> {
        let mut tx = self.store.begin().await?;
        let signals = tx.take_signals(1_000).await?;
        if signals.is_empty() {
            return Ok(false);
        }
        let now = self.clock.now();
        let mut runs = Vec::new();
        let mut woken = 0;
        for s in &signals {
            for a in actives.iter().filter(|a| a.row.tenant_id == s.tenant_id) {
                let Trigger::Event { name, conditions } = &a.trigger else { continue };
                let fires = *name == s.name
                    && a.row.activated_at.is_none_or(|t| s.at >= t)
                    && conditions.iter().all(|c| cairn_segments::eval::property_holds(c, &s.properties.0));
                if !fires {
                    continue;
                }
                let context = json!({"trigger": {"type": "event", "event": s.name, "message_id": s.message_id,
                                                 "properties": s.properties.0}});
                if let Some(run) = self.new_run(a, s.customer_id, &format!("event:{}", s.message_id), context).await? {
                    runs.push(run);
                }
            }
            woken += tx.match_waiting_runs(s.tenant_id, s.customer_id, &s.name, s.at, now).await?;
        }
        let started = start_runs(&mut tx, &runs, now).await?.len();
        tx.delete_signals(&signals.iter().map(|s| s.id).collect::<Vec<_>>()).await?;
        tx.commit().await?;
        tracing::debug!(runs = started, woken, "automation signals taken");
        Ok(true)
    }

    /// Schedule and date triggers whose time has come.
    async fn fire_ticks(&self) -> Result<bool> {
        let now = self.clock.now();
        let due = self.store.read().await?.due_automation_ticks(now).await?;
        let mut fired = false;
        for row in due {
            let config = trigger::config_of(&row.trigger_config.0, &row.design.0);
            let Ok(trigger) = trigger::parse(&row.trigger_type, &config) else { continue };
            let tenant = TenantId(row.tenant_id);
            let tz = cairn_segments::worker::time_zone(&mut self.store.read().await?, tenant).await?;
            let Some(at) = row.next_tick_at else { continue };
            let next = trigger.next_tick(now, tz);
            let members: Vec<i64> = match &trigger {
                Trigger::Schedule { segment, .. } => {
                    self.store.read().await?.segment_member_ids(tenant, *segment, None).await?
                }
                Trigger::DateProperty { name, offset_days } => {
                    self.date_matches(tenant, name, *offset_days, now, tz).await?
                }
                _ => vec![],
            };
            let Some(version) = row.active_version else { continue };
            let Some(plan) = self.compiled(row.id, version).await? else { continue };
            let key = format!("tick:{}", at.timestamp());
            let runs: Vec<NewRun> = members
                .iter()
                .map(|c| {
                    let context = json!({"trigger": {"type": row.trigger_type, "tick": at}});
                    run_for(&row, version, &plan.plan.trigger, *c, &key, context)
                })
                .collect();
            let mut tx = self.store.begin().await?;
            if !tx.advance_tick(row.id, at, next).await? {
                continue;
            }
            let started = start_runs(&mut tx, &runs, now).await?.len();
            tx.commit().await?;
            tracing::info!(automation.id = row.id, runs = started, "scheduled trigger fired");
            fired = true;
        }
        Ok(fired)
    }

    /// Customers whose date trait is `offset_days` days away from today (negative: the date is
    /// that many days ahead).
    async fn date_matches(
        &self,
        tenant: TenantId,
        name: &str,
        offset_days: i64,
        now: DateTime<Utc>,
        tz: chrono_tz::Tz,
    ) -> Result<Vec<i64>> {
        let today = now.with_timezone(&tz).date_naive();
        let want = today - Duration::days(offset_days);
        let ids = self.store.read().await?.customer_ids(tenant, None).await?;
        let mut out = Vec::new();
        for chunk in ids.chunks(5_000) {
            let customers = self.store.read().await?.customers_by_ids(tenant, chunk).await?;
            for c in customers {
                let date = c.traits.get(name).and_then(Value::as_str).and_then(|s| trait_date(s, tz));
                if date == Some(want) {
                    out.push(c.id.0);
                }
            }
        }
        Ok(out)
    }

    // ---- execution ----

    async fn execute(&self) -> Result<bool> {
        let now = self.clock.now();
        // The runs are taken inside the transaction that moves them: a crash anywhere before
        // its commit leaves them as they were.
        let mut tx = self.store.begin().await?;
        let claimed = tx.due_runs(now, self.config.batch).await?;
        if claimed.is_empty() {
            return Ok(false);
        }
        let n = claimed.len();
        let moved = self.advance(claimed, now).await?;
        self.write(&mut tx, moved, now).await?;
        tx.commit().await?;
        Ok(n as i64 == self.config.batch)
    }

    /// Works out where each claimed run goes.
    async fn advance(&self, claimed: Vec<RunRow>, now: DateTime<Utc>) -> Result<Vec<Moved>> {
        // Profiles, per workspace.
        let mut by_tenant: HashMap<i64, Vec<i64>> = HashMap::new();
        for r in &claimed {
            by_tenant.entry(r.tenant_id).or_default().push(r.customer_id);
        }
        let mut customers: HashMap<(i64, i64), Customer> = HashMap::new();
        let mut zones: HashMap<i64, chrono_tz::Tz> = HashMap::new();
        for (t, ids) in by_tenant.iter_mut() {
            ids.sort_unstable();
            ids.dedup();
            let mut conn = self.store.read().await?;
            for c in conn.customers_by_ids(TenantId(*t), ids).await? {
                customers.insert((*t, c.id.0), c);
            }
            zones.insert(*t, cairn_segments::worker::time_zone(&mut conn, TenantId(*t)).await?);
        }
        let mut walks = Vec::with_capacity(claimed.len());
        let mut moved = Vec::new();
        for run in claimed {
            let Some(plan) = self.compiled(run.automation_id, run.version).await? else {
                let mut w = Walk::start(run, None);
                w.finish("failed", Some("the run's version is missing or does not compile".into()));
                moved.push(w.into_moved());
                continue;
            };
            let mut w = Walk::start(run, Some(plan));
            if !customers.contains_key(&(w.run.tenant_id, w.run.customer_id)) {
                w.step("exit", "customer_deleted", json!({"reason": "the customer no longer exists"}), now);
                w.finish("exited", None);
            }
            walks.push(w);
        }
        // Exit filters and opt-outs, once per run per tick (nothing else happens in between).
        self.check_exits(&mut walks, &customers, &zones, now).await?;
        // Node by node; conditions evaluated per node for every run at it.
        loop {
            let pending: Vec<usize> = (0..walks.len()).filter(|i| !walks[*i].done).collect();
            if pending.is_empty() {
                break;
            }
            let verdicts = self.conditions(&walks, &pending, &zones, now).await?;
            for i in pending {
                let w = &mut walks[i];
                let customer = &customers[&(w.run.tenant_id, w.run.customer_id)];
                let tz = zones[&w.run.tenant_id];
                let verdict = verdicts.get(&i).copied();
                self.hop(w, customer, tz, verdict, now).await?;
            }
        }
        // Suppressed addresses of the messages queued.
        self.suppress(&mut walks).await?;
        moved.extend(walks.into_iter().map(Walk::into_moved));
        Ok(moved)
    }

    async fn check_exits(
        &self,
        walks: &mut [Walk],
        customers: &HashMap<(i64, i64), Customer>,
        zones: &HashMap<i64, chrono_tz::Tz>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut groups: HashMap<(i64, i64), Vec<usize>> = HashMap::new();
        #[allow(clippy::needless_range_loop)] // walks[i] is finished inside the loop
        for i in 0..walks.len() {
            let w = &walks[i];
            if w.done {
                continue;
            }
            let plan = w.plan.clone();
            // Opted out of every channel the flow sends on.
            let channels = plan.plan.channels();
            let customer = &customers[&(w.run.tenant_id, w.run.customer_id)];
            let opted_out = !channels.is_empty()
                && channels
                    .iter()
                    .all(|ch| customer.traits.get(format!("{ch}_consent")).and_then(Value::as_bool) == Some(false));
            if opted_out {
                let w = &mut walks[i];
                w.step(
                    "exit",
                    "unsubscribed",
                    json!({"reason": "the customer opted out of every channel this flow sends on"}),
                    now,
                );
                w.finish("exited", None);
                continue;
            }
            if plan.exit.is_some() && w.node != plan.plan.trigger {
                groups.entry((w.run.automation_id, w.run.version)).or_default().push(i);
            }
        }
        for (_, members) in groups {
            let plan = walks[members[0]].plan.clone();
            let filter = plan.exit.as_ref().expect("grouped by having one");
            let tenant = plan.tenant_id;
            let ids: Vec<i64> = sorted_ids(members.iter().map(|i| walks[*i].run.customer_id));
            let hits = self.members(tenant, filter, &ids, zones[&tenant], now).await?;
            for i in members {
                if hits.contains(&walks[i].run.customer_id) {
                    let w = &mut walks[i];
                    w.step("exit", "goal_reached", json!({"reason": "the automation's exit filter matched"}), now);
                    w.finish("exited", None);
                }
            }
        }
        Ok(())
    }

    async fn members(
        &self,
        tenant: i64,
        f: &Filter,
        ids: &[i64],
        tz: chrono_tz::Tz,
        now: DateTime<Utc>,
    ) -> Result<HashSet<i64>> {
        let overrides = HashMap::new();
        let mut ev = Evaluator::new(&self.store, self.events.as_ref(), TenantId(tenant), now, tz, &overrides);
        Ok(ev.members(f, Some(ids)).await?.into_iter().collect())
    }

    /// Yes/No for every pending run standing at a condition.
    async fn conditions(
        &self,
        walks: &[Walk],
        pending: &[usize],
        zones: &HashMap<i64, chrono_tz::Tz>,
        now: DateTime<Utc>,
    ) -> Result<HashMap<usize, bool>> {
        // (automation, version, node, run start when behaviour is counted since then) → runs.
        type Group = (i64, i64, String, Option<DateTime<Utc>>);
        let mut groups: HashMap<Group, Vec<usize>> = HashMap::new();
        for &i in pending {
            let w = &walks[i];
            if let Some(Step::Condition { filter, since_start }) = w.plan.plan.steps.get(&w.node) {
                let windowed = *since_start && has_open_behaviour(filter);
                let key = (w.run.automation_id, w.run.version, w.node.clone(), windowed.then_some(w.run.started_at));
                groups.entry(key).or_default().push(i);
            }
        }
        let mut out = HashMap::new();
        for ((_, _, node, since), members) in groups {
            let plan = walks[members[0]].plan.clone();
            let Some(Step::Condition { filter, .. }) = plan.plan.steps.get(&node) else { continue };
            let filter = match since {
                Some(from) => since_run_start(filter, from, now),
                None => filter.clone(),
            };
            let ids = sorted_ids(members.iter().map(|i| walks[*i].run.customer_id));
            let hits = self.members(plan.tenant_id, &filter, &ids, zones[&plan.tenant_id], now).await?;
            for i in members {
                out.insert(i, hits.contains(&walks[i].run.customer_id));
            }
        }
        Ok(out)
    }

    /// Moves one run through one node.
    async fn hop(
        &self,
        w: &mut Walk,
        customer: &Customer,
        tz: chrono_tz::Tz,
        verdict: Option<bool>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        w.hops += 1;
        if w.hops > MAX_HOPS {
            // Resume in the next tick.
            w.status = "active";
            w.due_at = Some(now);
            w.done = true;
            return Ok(());
        }
        let plan = w.plan.clone();
        let node = w.node.clone();
        let Some(step) = plan.plan.steps.get(&node) else {
            w.finish("failed", Some(format!("node {node:?} is not in version {}", w.run.version)));
            return Ok(());
        };
        let next = |branch: &str| plan.plan.after(&node, branch).map(str::to_string);
        match step {
            Step::Trigger => {
                let detail = w.run.context.0.get("trigger").cloned().unwrap_or(Value::Null);
                w.step("trigger", "entered", detail, now);
                w.go(next(""));
            }
            Step::Exit => {
                w.step("exit", "exited", json!({"reason": "reached an exit node"}), now);
                w.finish("exited", None);
            }
            Step::Delay(delay) => {
                if w.parked {
                    w.step("delay", "waited", json!({"since": w.parked_at}), now);
                    w.parked = false;
                    w.go(next(""));
                } else {
                    match delay_until(delay, customer, tz, now) {
                        Some(until) if until > now => {
                            w.step("delay", "waiting", json!({"until": until}), now);
                            w.park(until, None, now);
                        }
                        Some(until) => {
                            w.step(
                                "delay",
                                "passed",
                                json!({"until": until, "reason": "the time had already come"}),
                                now,
                            );
                            w.go(next(""));
                        }
                        None => {
                            w.step(
                                "delay",
                                "passed",
                                json!({"reason": "the customer has no usable date in that trait"}),
                                now,
                            );
                            w.go(next(""));
                        }
                    }
                }
            }
            Step::WaitForEvent { event, timeout } => {
                if w.parked {
                    let (branch, why) = if w.matched {
                        ("yes", format!("{event} happened"))
                    } else {
                        ("no", format!("{event} did not happen within the timeout"))
                    };
                    w.step("wait_for_event", branch, json!({"reason": why, "since": w.parked_at}), now);
                    w.parked = false;
                    w.matched = false;
                    w.go(next(branch));
                } else {
                    let until = now + *timeout;
                    w.step("wait_for_event", "waiting", json!({"event": event, "until": until}), now);
                    w.park(until, Some(event.clone()), now);
                }
            }
            Step::Condition { since_start, .. } => {
                let yes = verdict.unwrap_or(false);
                let branch = if yes { "yes" } else { "no" };
                let window = if *since_start { "since the run started" } else { "ever" };
                w.step(
                    "condition",
                    branch,
                    json!({"matched": yes, "reason": format!("the filter {} at {} (behaviour counted {window})",
                        if yes { "matched" } else { "did not match" }, now.to_rfc3339())}),
                    now,
                );
                w.go(next(branch));
            }
            Step::Split(branches) => {
                let roll = roll(w.run.id, &node);
                let mut acc = 0;
                let mut chosen = branches.last().map(|b| b.0.clone()).unwrap_or_default();
                for (label, pct) in branches {
                    acc += *pct;
                    if roll < acc {
                        chosen = label.clone();
                        break;
                    }
                }
                w.step("split", &chosen.to_ascii_lowercase(), json!({"roll": roll, "branch": chosen}), now);
                w.go(next(&chosen));
            }
            Step::Action { action, continue_on_failure } => match self.action(w, action, customer, now).await? {
                Ok((outcome, detail, effect)) => {
                    if let Some(e) = effect {
                        w.effects.push(e);
                    }
                    w.step("action", outcome, detail, now);
                    w.go(next(""));
                }
                Err(error) => {
                    w.step("action", "failed", json!({"error": error}), now);
                    if *continue_on_failure {
                        w.go(next(""));
                    } else {
                        w.finish("failed", Some(error));
                    }
                }
            },
        }
        Ok(())
    }

    /// What an action writes. The outer error is the store's; the inner one the action's own
    /// failure (which the run records).
    #[allow(clippy::type_complexity)]
    async fn action(
        &self,
        w: &Walk,
        action: &Action,
        customer: &Customer,
        now: DateTime<Utc>,
    ) -> Result<std::result::Result<(&'static str, Value, Option<Effect>), String>> {
        let binding = w.plan.bindings.get(&w.node).copied();
        Ok(Ok(match action {
            Action::SendEmail { .. } | Action::SendSms { .. } => {
                let channel = if matches!(action, Action::SendEmail { .. }) { "email" } else { "sms" };
                let Some(campaign) = binding else { return Ok(Err("the step has no campaign bound".into())) };
                let address = cairn_campaigns::address_of(channel, customer);
                let reason = cairn_campaigns::skip_reason(channel, customer, false);
                let send = NewSend {
                    customer_id: customer.id.0,
                    address,
                    status: if reason.is_some() { "skipped" } else { "queued" },
                    reason,
                    occurrence: w.run.id,
                };
                let outcome = if reason.is_some() { "skipped" } else { "queued" };
                let detail = json!({"action": format!("send_{channel}"), "campaign_id": campaign, "reason": reason});
                (outcome, detail, Some(Effect::Send { campaign, channel, send }))
            }
            Action::Webhook { body, .. } => {
                let Some(endpoint) = binding else { return Ok(Err("the step has no webhook endpoint bound".into())) };
                let mut data = json!({
                    "automation_id": w.run.automation_id,
                    "version": w.run.version,
                    "run_id": w.run.id,
                    "node": w.node,
                    "customer_id": customer.id.0,
                    "customer_email": customer.email,
                    "user_id": customer.external_id,
                });
                if let (Some(extra), Some(obj)) = (body.as_object(), data.as_object_mut()) {
                    for (k, v) in extra {
                        obj.entry(k.clone()).or_insert(v.clone());
                    }
                }
                let body = cairn_channels::webhooks::body("automation.webhook", now, &data);
                (
                    "queued",
                    json!({"action": "webhook", "endpoint_id": endpoint}),
                    Some(Effect::Webhook { endpoint, body }),
                )
            }
            Action::UpdateTraits(t) => {
                ("done", json!({"action": "update_traits", "traits": t}), Some(Effect::Traits(t.clone())))
            }
            Action::AddTag(tag) => {
                ("done", json!({"action": "add_tag", "tag": tag}), Some(Effect::Tag { tag: tag.clone(), add: true }))
            }
            Action::RemoveTag(tag) => (
                "done",
                json!({"action": "remove_tag", "tag": tag}),
                Some(Effect::Tag { tag: tag.clone(), add: false }),
            ),
            Action::AddToStaticSegment(s) | Action::RemoveFromStaticSegment(s) => {
                let add = matches!(action, Action::AddToStaticSegment(_));
                let name = if add { "add_to_static_segment" } else { "remove_from_static_segment" };
                ("done", json!({"action": name, "segment_id": s}), Some(Effect::StaticSegment { segment: *s, add }))
            }
            Action::Enroll(other) => {
                let row = match self.store.read().await?.automation(TenantId(w.run.tenant_id), *other).await {
                    Ok(r) => r,
                    Err(StoreError::NotFound) => return Ok(Err(format!("automation {other} does not exist"))),
                    Err(e) => return Err(e.into()),
                };
                if !row.is_active {
                    return Ok(Err(format!("automation {other} is not active")));
                }
                (
                    "done",
                    json!({"action": "enroll", "automation_id": other}),
                    Some(Effect::Enroll { automation: *other }),
                )
            }
            Action::CreateActivity(spec) => {
                let tenant = TenantId(w.run.tenant_id);
                if let Some(user) = spec.assigned_to {
                    if self.store.read().await?.member_name(tenant, Some(user)).await?.is_none() {
                        return Ok(Err(format!("user {user} is not a member of this workspace")));
                    }
                }
                let a = cairn_store::crm::records::Activity {
                    id: 0,
                    tenant_id: tenant.0,
                    kind: spec.kind.clone(),
                    subject: spec.subject.clone(),
                    description: spec.description.clone(),
                    entity_type: Some("contact".into()),
                    entity_id: Some(customer.id.0),
                    assigned_to: spec.assigned_to,
                    due_date: spec.due_in.map(|d| now + d),
                    duration_minutes: None,
                    completed: false,
                    completed_at: None,
                    outcome: None,
                    created_by: None,
                    created_at: now,
                    updated_at: now,
                };
                let detail = json!({"action": "create_activity", "type": spec.kind, "due_date": a.due_date,
                                    "entity": if spec.on_lead { "lead" } else { "contact" }});
                ("done", detail, Some(Effect::Activity(Box::new(a), spec.on_lead)))
            }
        }))
    }

    /// Skips queued messages to suppressed addresses.
    async fn suppress(&self, walks: &mut [Walk]) -> Result<()> {
        let mut wanted: HashMap<(i64, &'static str), Vec<String>> = HashMap::new();
        for w in walks.iter() {
            for e in &w.effects {
                if let Effect::Send { channel, send, .. } = e {
                    if let (Some(a), "queued") = (&send.address, send.status) {
                        wanted.entry((w.run.tenant_id, channel)).or_default().push(a.clone());
                    }
                }
            }
        }
        let mut suppressed: HashSet<(i64, &'static str, String)> = HashSet::new();
        for ((tenant, channel), addresses) in wanted {
            for a in self.store.read().await?.suppressed(TenantId(tenant), channel, &addresses).await? {
                suppressed.insert((tenant, channel, a));
            }
        }
        if suppressed.is_empty() {
            return Ok(());
        }
        for w in walks.iter_mut() {
            let tenant = w.run.tenant_id;
            for e in &mut w.effects {
                if let Effect::Send { channel, send, .. } = e {
                    if send.address.as_ref().is_some_and(|a| suppressed.contains(&(tenant, *channel, a.clone()))) {
                        send.status = "skipped";
                        send.reason = Some("suppressed");
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes every move whose run is still as it was read, with its steps and effects, in the
    /// transaction that took the runs.
    async fn write(&self, tx: &mut Conn, moved: Vec<Moved>, now: DateTime<Utc>) -> Result<()> {
        let mut steps = Vec::new();
        let mut sent = false;
        let mut dirty: Vec<(TenantId, CustomerId, i64)> = Vec::new();
        let updates: Vec<RunUpdate> = moved.iter().map(|m| m.update.clone()).collect();
        let done = tx.update_runs(&updates, now).await?;
        let batched = batch_trait_changes(tx, &moved, &done, now).await?;
        for m in moved {
            if !done.contains(&m.run.id) {
                tracing::debug!(run.id = m.run.id, "run moved by another worker; skipped");
                continue;
            }
            let tenant = TenantId(m.run.tenant_id);
            let customer = CustomerId(m.run.customer_id);
            for e in m.effects {
                match e {
                    Effect::Send { campaign, channel, send } => {
                        sent |= send.status == "queued";
                        tx.insert_sends(tenant, campaign, channel, &[send], now, Utc::now()).await?;
                    }
                    Effect::Webhook { endpoint, body } => {
                        tx.insert_delivery(tenant.0, endpoint, None, "automation.webhook", &body, now).await?;
                    }
                    Effect::Traits(patch) => {
                        dirty.push((tenant, customer, cairn_segments::changed::PROFILE));
                        if batched.contains(&(tenant.0, customer.0)) {
                            continue;
                        }
                        let patch = Value::Object(patch);
                        if tx.merge_traits(tenant, customer.0, &patch, now).await? {
                            continue;
                        }
                        let Value::Object(patch) = patch else { unreachable!("built as an object") };
                        change_traits(tx, tenant, customer, now, |t| {
                            for (k, v) in patch {
                                t.insert(k, v);
                            }
                        })
                        .await?;
                    }
                    Effect::Tag { tag, add } => {
                        dirty.push((tenant, customer, cairn_segments::changed::PROFILE));
                        if batched.contains(&(tenant.0, customer.0)) {
                            continue;
                        }
                        change_traits(tx, tenant, customer, now, |t| {
                            let mut tags: Vec<Value> =
                                t.get("tags").and_then(Value::as_array).cloned().unwrap_or_default();
                            tags.retain(|v| v.as_str() != Some(tag.as_str()));
                            if add {
                                tags.push(Value::String(tag));
                            }
                            t.insert("tags".into(), Value::Array(tags));
                        })
                        .await?;
                    }
                    Effect::StaticSegment { segment, add } => {
                        let (changed, event) = if add {
                            (
                                tx.add_segment_members(tenant, segment, &[customer.0], now).await?,
                                "customer.segment_entered",
                            )
                        } else {
                            (
                                tx.remove_segment_members(tenant, segment, &[customer.0]).await?,
                                "customer.segment_exited",
                            )
                        };
                        if !changed.is_empty() {
                            let name = tx.segment(tenant, segment).await.map(|s| s.name).unwrap_or_default();
                            let payload =
                                json!({"customer_id": customer.0, "segment_id": segment, "segment_name": name});
                            tx.insert_outbox(tenant, event, &payload, now).await?;
                            dirty.push((tenant, customer, cairn_segments::changed::MEMBERSHIP));
                        }
                    }
                    Effect::Activity(mut a, on_lead) => {
                        if on_lead {
                            if let Some(lead) = tx.open_lead_of_customer(tenant, customer.0).await? {
                                (a.entity_type, a.entity_id) = (Some("lead".into()), Some(lead));
                            }
                        }
                        tx.insert_activity(tenant, &a).await?;
                    }
                    Effect::Enroll { automation } => {
                        let Ok(row) = tx.automation(tenant, automation).await else { continue };
                        let (Some(version), true) = (row.active_version, row.is_active) else { continue };
                        let Some(plan) = self.compiled(automation, version).await? else { continue };
                        let context = json!({"trigger": {"type": "enroll", "automation_id": m.run.automation_id,
                                                         "run_id": m.run.id}});
                        let key = format!("run:{}:{}", m.run.id, m.update.node);
                        let run = run_for(&row, version, &plan.plan.trigger, customer.0, &key, context);
                        start_runs(tx, &[run], now).await?;
                    }
                }
            }
            steps.extend(m.steps);
        }
        tx.insert_steps(&steps).await?;
        if !dirty.is_empty() {
            // One mark per customer (PostgreSQL's upsert refuses to touch a row twice).
            dirty.sort_unstable_by_key(|(t, c, _)| (t.0, c.0));
            dirty.dedup_by(|b, a| {
                let same = a.0 == b.0 && a.1 == b.1;
                if same {
                    a.2 |= b.2;
                }
                same
            });
            tx.mark_segments_dirty(&dirty, now).await?;
        }
        if sent {
            if let Some(w) = &self.campaigns_wake {
                w.notify_one();
            }
        }
        Ok(())
    }
}

/// On PostgreSQL, writes a batch's trait changes in two statements: one for the customers
/// whose only trait-changing steps in the batch are patches (merged in the batch's order; a
/// later value for a key wins, as `||` applied one by one would leave it), one for those whose
/// only such step is a single tag added or removed. A customer with anything else (a tag and a
/// patch, two tags) keeps the order of its steps by going one statement at a time. Returns the
/// (workspace, customer) pairs written here; none on SQLite.
async fn batch_trait_changes(
    tx: &mut Conn,
    moved: &[Moved],
    done: &HashSet<i64>,
    now: DateTime<Utc>,
) -> Result<HashSet<(i64, i64)>> {
    if tx.backend() != cairn_store::Backend::Postgres {
        return Ok(HashSet::new());
    }
    let mut changes: HashMap<(i64, i64), Vec<&Effect>> = HashMap::new();
    for m in moved.iter().filter(|m| done.contains(&m.run.id)) {
        for e in m.effects.iter().filter(|e| matches!(e, Effect::Traits(_) | Effect::Tag { .. })) {
            changes.entry((m.run.tenant_id, m.run.customer_id)).or_default().push(e);
        }
    }
    let mut patches = Vec::new();
    let mut tags = Vec::new();
    let mut written = HashSet::new();
    for (key, effects) in changes {
        match effects.as_slice() {
            [Effect::Tag { tag, add }] => tags.push((key.0, key.1, tag.clone(), *add)),
            all if all.iter().all(|e| matches!(e, Effect::Traits(_))) => {
                let mut merged = Map::new();
                for e in all {
                    if let Effect::Traits(patch) = e {
                        merged.extend(patch.iter().map(|(k, v)| (k.clone(), v.clone())));
                    }
                }
                patches.push((key.0, key.1, Value::Object(merged)));
            }
            _ => continue,
        }
        written.insert(key);
    }
    // In key order, so that two instances writing overlapping customers lock them alike.
    patches.sort_unstable_by_key(|p| (p.0, p.1));
    tags.sort_unstable_by_key(|t| (t.0, t.1));
    if !patches.is_empty() {
        tx.merge_traits_many(&patches, now).await?;
    }
    if !tags.is_empty() {
        tx.tag_many(&tags, now).await?;
    }
    Ok(written)
}

/// Starts runs and puts `automation.triggered` in the outbox for each new one.
/// Returns the new runs' (id, index into `runs`).
pub async fn start_runs(
    tx: &mut Conn,
    runs: &[NewRun],
    now: DateTime<Utc>,
) -> std::result::Result<Vec<(i64, usize)>, StoreError> {
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    let started = tx.insert_runs(runs, now).await?;
    let mut by_tenant: HashMap<i64, Vec<(&str, Value)>> = HashMap::new();
    for (id, i) in &started {
        let r = &runs[*i];
        by_tenant.entry(r.tenant_id).or_default().push((
            "automation.triggered",
            json!({
                "automation_id": r.automation_id,
                "version": r.version,
                "run_id": id,
                "customer_id": r.customer_id,
                "trigger": r.context.get("trigger").and_then(|t| t.get("type")).cloned().unwrap_or(Value::Null),
                "started_at": now,
            }),
        ));
    }
    for (tenant, events) in by_tenant {
        tx.insert_outbox_many(TenantId(tenant), &events, now).await?;
    }
    Ok(started)
}

/// The run a trigger occurrence (`key`) starts, by the automation's re-entry policy: `once`
/// (one run per customer ever), `once_at_a_time` (a new run only when none is in flight) or
/// `every_time`.
pub fn run_for(a: &AutomationRow, version: i64, trigger: &str, customer: i64, key: &str, context: Value) -> NewRun {
    let (occurrence, exclusive) = match a.reentry.as_str() {
        "once" => ("once".to_string(), false),
        "every_time" => (key.to_string(), false),
        _ => (key.to_string(), true),
    };
    NewRun {
        tenant_id: a.tenant_id,
        automation_id: a.id,
        version,
        customer_id: customer,
        occurrence,
        exclusive,
        node: trigger.to_string(),
        context,
    }
}

impl Walk {
    fn start(run: RunRow, plan: Option<Arc<Compiled>>) -> Walk {
        let plan = plan.unwrap_or_else(|| {
            Arc::new(Compiled {
                automation_id: run.automation_id,
                tenant_id: run.tenant_id,
                version: run.version,
                plan: Plan { trigger: String::new(), steps: HashMap::new(), next: HashMap::new(), order: vec![] },
                exit: None,
                bindings: HashMap::new(),
            })
        });
        Walk {
            node: run.node.clone(),
            parked: run.parked,
            matched: run.matched,
            status: "active",
            wait_event: run.wait_event.clone(),
            due_at: run.due_at,
            parked_at: run.parked_at,
            error: None,
            steps: Vec::new(),
            effects: Vec::new(),
            done: false,
            hops: 0,
            plan,
            run,
        }
    }

    fn step(&mut self, kind: &'static str, outcome: &str, detail: Value, at: DateTime<Utc>) {
        self.steps.push(NewStep {
            run_id: self.run.id,
            automation_id: self.run.automation_id,
            version: self.run.version,
            node: self.node.clone(),
            kind,
            outcome: outcome.to_string(),
            detail,
            at,
        });
    }

    fn go(&mut self, next: Option<String>) {
        match next {
            Some(n) => {
                self.node = n;
                self.parked = false;
                self.wait_event = None;
            }
            None => self.finish("completed", None),
        }
    }

    fn park(&mut self, until: DateTime<Utc>, event: Option<String>, now: DateTime<Utc>) {
        self.parked = true;
        self.matched = false;
        self.status = "waiting";
        self.due_at = Some(until);
        self.parked_at = Some(now);
        self.wait_event = event;
        self.done = true;
    }

    fn finish(&mut self, status: &'static str, error: Option<String>) {
        self.status = status;
        self.error = error;
        self.due_at = None;
        self.wait_event = None;
        self.parked = false;
        self.done = true;
    }

    fn into_moved(self) -> Moved {
        let update = RunUpdate {
            id: self.run.id,
            rev: self.run.rev,
            status: self.status,
            node: self.node,
            parked: self.parked,
            matched: self.matched,
            wait_event: self.wait_event,
            due_at: match self.status {
                "active" | "waiting" => self.due_at,
                _ => None,
            },
            parked_at: self.parked_at,
            error: self.error,
        };
        Moved { run: self.run, update, steps: self.steps, effects: self.effects }
    }
}

async fn change_traits(
    tx: &mut Conn,
    tenant: TenantId,
    customer: CustomerId,
    now: DateTime<Utc>,
    f: impl FnOnce(&mut Map<String, Value>),
) -> std::result::Result<(), StoreError> {
    let c = match tx.customer(tenant, customer).await {
        Ok(c) => c,
        Err(StoreError::NotFound) => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut traits = c.traits.as_object().cloned().unwrap_or_default();
    f(&mut traits);
    let fields = CustomerFields {
        email: c.email,
        external_id: c.external_id,
        name: c.name,
        phone: c.phone,
        city: c.city,
        country: c.country,
        traits: Value::Object(traits),
    };
    tx.update_customer(tenant, customer, &fields, now).await?;
    Ok(())
}

fn sorted_ids(ids: impl Iterator<Item = i64>) -> Vec<i64> {
    let mut v: Vec<i64> = ids.collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// A stable roll in 0..100 for a run at a split (the same on every retry).
fn roll(run: i64, node: &str) -> u32 {
    let h = Sha256::digest(format!("{run}:{node}").as_bytes());
    (u32::from_be_bytes([h[0], h[1], h[2], h[3]]) % 100) as u32
}

/// Whether a filter counts behaviour without a window (what "since the run started" narrows).
fn has_open_behaviour(f: &Filter) -> bool {
    match f {
        Filter::All(c) | Filter::Any(c) => c.iter().any(has_open_behaviour),
        Filter::Not(c) => has_open_behaviour(c),
        Filter::Event(e) => e.window == Window::Ever,
        _ => false,
    }
}

/// The filter with every windowless behaviour condition narrowed to [run start, now].
fn since_run_start(f: &Filter, from: DateTime<Utc>, now: DateTime<Utc>) -> Filter {
    match f {
        Filter::All(c) => Filter::All(c.iter().map(|c| since_run_start(c, from, now)).collect()),
        Filter::Any(c) => Filter::Any(c.iter().map(|c| since_run_start(c, from, now)).collect()),
        Filter::Not(c) => Filter::Not(Box::new(since_run_start(c, from, now))),
        Filter::Event(e) if e.window == Window::Ever => {
            let mut e = e.clone();
            e.window = Window::Between(from, now + Duration::milliseconds(1));
            Filter::Event(e)
        }
        other => other.clone(),
    }
}

/// A date trait: an ISO date (midnight in `tz`) or an RFC 3339 time.
fn trait_date(s: &str, tz: chrono_tz::Tz) -> Option<chrono::NaiveDate> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(d);
    }
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&tz).date_naive())
}

fn trait_time(s: &str, tz: chrono_tz::Tz) -> Option<DateTime<Utc>> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return tz.from_local_datetime(&d.and_time(NaiveTime::MIN)).earliest().map(|t| t.with_timezone(&Utc));
    }
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

/// When a delay ends for this customer; `None` when a trait it needs is missing.
pub fn delay_until(
    d: &Delay,
    customer: &Customer,
    workspace: chrono_tz::Tz,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    match d {
        Delay::For(dur) => Some(now + *dur),
        Delay::UntilTrait { name, offset } => {
            let at = customer.traits.get(name).and_then(Value::as_str).and_then(|s| trait_time(s, workspace))?;
            Some(at + *offset)
        }
        Delay::Until { time, weekdays, zone } => {
            let tz = match zone {
                Zone::Workspace => workspace,
                Zone::Named(z) => *z,
                Zone::Customer => customer
                    .traits
                    .get("timezone")
                    .and_then(Value::as_str)
                    .and_then(|z| z.parse().ok())
                    .unwrap_or(workspace),
            };
            let local = now.with_timezone(&tz);
            let at = NaiveTime::from_num_seconds_from_midnight_opt(*time, 0)?;
            for ahead in 0..8 {
                let day = local.date_naive() + Duration::days(ahead);
                if !weekdays.is_empty() && !weekdays.contains(&day.weekday().num_days_from_monday()) {
                    continue;
                }
                let Some(candidate) = tz.from_local_datetime(&day.and_time(at)).earliest() else { continue };
                let candidate = candidate.with_timezone(&Utc);
                if candidate > now {
                    return Some(candidate);
                }
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customer(traits: Value) -> Customer {
        let t: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        Customer {
            id: CustomerId(1),
            tenant_id: TenantId(1),
            email: None,
            external_id: None,
            name: None,
            phone: None,
            city: None,
            country: None,
            traits,
            first_seen_at: None,
            last_seen_at: None,
            created_at: t,
            updated_at: t,
        }
    }

    #[test]
    fn delays_until_a_time_of_day_on_chosen_weekdays_in_the_customers_zone() {
        // Thursday 2026-06-04 10:00 UTC.
        let now: DateTime<Utc> = "2026-06-04T10:00:00Z".parse().unwrap();
        let d = Delay::Until { time: 9 * 3600, weekdays: vec![0], zone: Zone::Customer };
        let c = customer(json!({"timezone": "America/New_York"}));
        // Next Monday 09:00 in New York (UTC-4 in June) = 13:00 UTC.
        assert_eq!(delay_until(&d, &c, chrono_tz::UTC, now).unwrap().to_rfc3339(), "2026-06-08T13:00:00+00:00");
        let any_day = Delay::Until { time: 9 * 3600, weekdays: vec![], zone: Zone::Workspace };
        assert_eq!(delay_until(&any_day, &c, chrono_tz::UTC, now).unwrap().to_rfc3339(), "2026-06-05T09:00:00+00:00");
    }

    #[test]
    fn delays_until_a_date_trait_with_an_offset() {
        let now: DateTime<Utc> = "2026-06-04T10:00:00Z".parse().unwrap();
        let d = Delay::UntilTrait { name: "renewal_date".into(), offset: -Duration::days(7) };
        let c = customer(json!({"renewal_date": "2026-07-01"}));
        assert_eq!(delay_until(&d, &c, chrono_tz::UTC, now).unwrap().to_rfc3339(), "2026-06-24T00:00:00+00:00");
        assert_eq!(delay_until(&d, &customer(json!({})), chrono_tz::UTC, now), None);
    }

    #[test]
    fn splits_roll_the_same_for_a_run_every_time_and_spread_evenly() {
        assert_eq!(roll(42, "s1"), roll(42, "s1"));
        let below_half = (0..10_000).filter(|r| roll(*r, "s1") < 50).count();
        assert!((4_700..5_300).contains(&below_half), "{below_half}");
    }
}

//! Evaluating a filter: each maximal group of profile conditions becomes one SQL query in the
//! entity store, each behaviour condition one aggregation in the event store, and `all` / `any`
//! / `not` combine the resulting sets of customer ids (sorted vectors). The same code serves a
//! whole workspace (a new or edited segment) and a batch of customers (incremental upkeep).
//!
//! Alongside the members, evaluation collects **crossings**: for every condition relative to
//! now (`within_days`, `last_purchase_days`), the next instant at which its truth could change
//! for a customer with nothing else happening. They are conservative (a crossing may turn out
//! to change nothing) and never late.

use std::collections::HashMap;

use cairn_domain::{CustomerId, TenantId};
use cairn_events::{BehaviourQuery, BehaviourStats, Customers, EventStore, PropertyPredicate};
use cairn_store::{customers::Customer, scores::ScoreRow, Store};
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{json, Value};

use crate::{
    filter::{
        Count, EventCondition, EventTimeCondition, Field, FieldCondition, Filter, Occurrence, Op, Operand,
        ProfileField, PropertyCondition, ScoreField, When, Window,
    },
    sql::{self, in_entity_store, Context},
    Result,
};

/// Below this many candidates, later conditions of an `all` are evaluated only for them.
const NARROW: usize = 20_000;
const DAY_MS: i64 = 86_400_000;

pub struct Evaluator<'a> {
    pub store: &'a Store,
    pub events: &'a dyn EventStore,
    pub tenant: TenantId,
    pub now: DateTime<Utc>,
    pub tz: chrono_tz::Tz,
    pub overrides: &'a HashMap<i64, Vec<i64>>,
    /// Reads over the whole workspace, kept for the next segment evaluated at the same instant.
    pub whole: WholeCache,
    /// (customer, instant) pairs; several per customer possible.
    pub crossings: Vec<(i64, DateTime<Utc>)>,
    /// Incremental upkeep: the batch's profiles, scores and behaviour, read once and shared by
    /// every segment evaluated for the batch.
    pub snapshot: Option<Snapshot>,
}

/// What evaluations over the whole workspace read (every customer id, last purchase days,
/// behaviour per condition), shared by the segments evaluated together at one instant.
#[derive(Default)]
pub struct WholeCache {
    universe: Option<Vec<i64>>,
    last_purchase: Option<HashMap<i64, i64>>,
    stats: HashMap<String, Vec<BehaviourStats>>,
}

/// A batch of customers as read once for incremental upkeep: profile and score conditions are
/// decided in memory (the same rules as the SQL of [`crate::sql`]), behaviour is read once per
/// distinct condition for the whole batch and filtered to each scope.
pub struct Snapshot {
    pub ids: Vec<i64>,
    pub rows: HashMap<i64, (Customer, Option<ScoreRow>)>,
    stats: HashMap<String, Vec<BehaviourStats>>,
}

impl Snapshot {
    /// Reads the profiles and scores of `ids` (sorted).
    pub async fn read(store: &Store, tenant: TenantId, ids: Vec<i64>) -> Result<Snapshot> {
        let mut conn = store.read().await?;
        let customers = conn.customers_by_ids(tenant, &ids).await?;
        let keys: Vec<CustomerId> = customers.iter().map(|c| c.id).collect();
        let mut scores: HashMap<i64, ScoreRow> =
            conn.scores_for(tenant, &keys).await?.into_iter().map(|s| (s.customer_id, s)).collect();
        let rows = customers
            .into_iter()
            .map(|c| {
                (c.id.0, {
                    let s = scores.remove(&c.id.0);
                    (c, s)
                })
            })
            .collect();
        Ok(Snapshot { ids, rows, stats: HashMap::new() })
    }

    /// Reads the behaviour every condition of `filters` needs for the batch, in one pass where
    /// the event store can.
    pub async fn prefetch(
        &mut self,
        events: &dyn EventStore,
        tenant: TenantId,
        now: DateTime<Utc>,
        filters: &[&Filter],
    ) -> Result<()> {
        let mut leaves: Vec<(String, String, Window, Vec<PropertyCondition>)> = Vec::new();
        for f in filters {
            behaviour_leaves(f, &mut |name, window, conditions| {
                let key = stats_key(name, window, conditions);
                if !self.stats.contains_key(&key) && !leaves.iter().any(|l| l.0 == key) {
                    leaves.push((key, name.to_string(), window, conditions.to_vec()));
                }
            });
        }
        if leaves.is_empty() || self.ids.is_empty() {
            return Ok(());
        }
        let predicates: Vec<Box<PropertyPredicate<'_>>> = leaves
            .iter()
            .map(|l| {
                let conditions = l.3.clone();
                Box::new(move |p: &Value| conditions.iter().all(|c| property_holds(c, p))) as Box<PropertyPredicate<'_>>
            })
            .collect();
        let queries: Vec<BehaviourQuery<'_>> = leaves
            .iter()
            .zip(&predicates)
            .map(|(l, p)| {
                let (from_ms, to_ms) = window_ms(l.2, now);
                BehaviourQuery {
                    name: &l.1,
                    from_ms,
                    to_ms,
                    predicate: if l.3.is_empty() { None } else { Some(p.as_ref()) },
                }
            })
            .collect();
        let all: Vec<CustomerId> = self.ids.iter().map(|c| CustomerId(*c)).collect();
        let results = events.behaviour_many(tenant, &queries, Customers::Only(&all)).await?;
        drop(queries);
        for (l, stats) in leaves.into_iter().zip(results) {
            self.stats.insert(l.0, stats);
        }
        Ok(())
    }
}

fn stats_key(name: &str, window: Window, conditions: &[PropertyCondition]) -> String {
    format!("{name}\u{0}{window:?}\u{0}{conditions:?}")
}

pub(crate) fn window_ms(window: Window, now: DateTime<Utc>) -> (Option<i64>, Option<i64>) {
    match window {
        Window::Ever => (None, None),
        Window::LastDays(d) => (Some(now.timestamp_millis() - d as i64 * DAY_MS), None),
        Window::Between(a, b) => (Some(a.timestamp_millis()), Some(b.timestamp_millis())),
    }
}

/// Calls `f` with (event, window, property conditions) of every behaviour condition.
fn behaviour_leaves(f: &Filter, out: &mut dyn FnMut(&str, Window, &[PropertyCondition])) {
    match f {
        Filter::All(c) | Filter::Any(c) => c.iter().for_each(|c| behaviour_leaves(c, out)),
        Filter::Not(c) => behaviour_leaves(c, out),
        Filter::Event(e) => out(&e.event, e.window, &e.conditions),
        Filter::EventTime(e) => out(&e.event, Window::Ever, &[]),
        _ => {}
    }
}

impl<'a> Evaluator<'a> {
    pub fn new(
        store: &'a Store,
        events: &'a dyn EventStore,
        tenant: TenantId,
        now: DateTime<Utc>,
        tz: chrono_tz::Tz,
        overrides: &'a HashMap<i64, Vec<i64>>,
    ) -> Evaluator<'a> {
        Evaluator {
            store,
            events,
            tenant,
            now,
            tz,
            overrides,
            whole: WholeCache::default(),
            crossings: Vec::new(),
            snapshot: None,
        }
    }

    pub fn today(&self) -> i64 {
        cairn_scoring::day_number(self.now, self.tz)
    }

    /// The customers matching `f`, among `scope` (all of the workspace's when `None`). Sorted.
    pub async fn members(&mut self, f: &Filter, scope: Option<&[i64]>) -> Result<Vec<i64>> {
        let found = self.eval(f, scope).await?;
        // Event-store results may name customers erased since; a result that went through the
        // entity store is already restricted to existing customers.
        let checked = in_entity_store(f) || matches!(f, Filter::All(c) if c.iter().any(in_entity_store));
        if checked {
            return Ok(found);
        }
        let universe = self.universe(scope).await?;
        Ok(intersect(&found, &universe))
    }

    async fn universe(&mut self, scope: Option<&[i64]>) -> Result<Vec<i64>> {
        if let (Some(snap), Some(ids)) = (&self.snapshot, scope) {
            return Ok(ids.iter().copied().filter(|c| snap.rows.contains_key(c)).collect());
        }
        match scope {
            Some(ids) => Ok(self.store.read().await?.customer_ids(self.tenant, Some(ids)).await?),
            None => {
                if self.whole.universe.is_none() {
                    self.whole.universe = Some(self.store.read().await?.customer_ids(self.tenant, None).await?);
                }
                Ok(self.whole.universe.clone().unwrap_or_default())
            }
        }
    }

    fn eval<'s>(
        &'s mut self,
        f: &'s Filter,
        scope: Option<&'s [i64]>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<i64>>> + Send + 's>>
    where
        'a: 's,
    {
        Box::pin(async move {
            if in_entity_store(f) {
                return self.entity(std::slice::from_ref(f), " AND ", scope).await;
            }
            match f {
                Filter::All(children) => {
                    let (local, rest): (Vec<&Filter>, Vec<&Filter>) = children.iter().partition(|c| in_entity_store(c));
                    let mut acc = if local.is_empty() {
                        None
                    } else {
                        let local: Vec<Filter> = local.into_iter().cloned().collect();
                        Some(self.entity(&local, " AND ", scope).await?)
                    };
                    for child in rest {
                        if acc.as_ref().is_some_and(Vec::is_empty) {
                            break;
                        }
                        let narrowed = acc.as_deref().filter(|a| a.len() < NARROW);
                        let before = self.crossings.len();
                        let found = self.eval(child, narrowed.or(scope)).await?;
                        // A customer the conditions so far exclude is out whatever this child
                        // becomes: its crossings for them are not needed (the conditions so far
                        // record their own).
                        if let Some(a) = &acc {
                            let mut kept = self.crossings.split_off(before);
                            kept.retain(|(c, _)| a.binary_search(c).is_ok());
                            self.crossings.extend(kept);
                        }
                        acc = Some(match acc {
                            None => found,
                            Some(a) => intersect(&a, &found),
                        });
                    }
                    Ok(acc.unwrap_or_default())
                }
                Filter::Any(children) => {
                    let (local, rest): (Vec<&Filter>, Vec<&Filter>) = children.iter().partition(|c| in_entity_store(c));
                    let mut acc = if local.is_empty() {
                        Vec::new()
                    } else {
                        let local: Vec<Filter> = local.into_iter().cloned().collect();
                        self.entity(&local, " OR ", scope).await?
                    };
                    for child in rest {
                        let found = self.eval(child, scope).await?;
                        acc = union(&acc, &found);
                    }
                    Ok(acc)
                }
                Filter::Not(child) => {
                    let universe = self.universe(scope).await?;
                    let found = self.eval(child, scope).await?;
                    Ok(difference(&universe, &found))
                }
                Filter::Event(e) => self.event(e, scope).await,
                Filter::EventTime(e) => self.event_time(e, scope).await,
                Filter::Field(_) | Filter::Segment(_) | Filter::Consent(_) => unreachable!("entity-store leaves"),
            }
        })
    }

    /// A group of entity-store conditions joined by `sep`, as one query.
    async fn entity(&mut self, group: &[Filter], sep: &str, scope: Option<&[i64]>) -> Result<Vec<i64>> {
        if let (Some(snap), Some(ids)) = (&self.snapshot, scope) {
            let today = self.today();
            let all = sep.trim() == "AND";
            let found = ids
                .iter()
                .copied()
                .filter(|c| {
                    snap.rows.get(c).is_some_and(|(customer, scores)| {
                        let holds = |f: &Filter| self.holds(f, customer, scores.as_ref(), today);
                        if all {
                            group.iter().all(holds)
                        } else {
                            group.iter().any(holds)
                        }
                    })
                })
                .collect();
            let mut relative = Vec::new();
            for f in group {
                relative_days(f, &mut relative);
            }
            if !relative.is_empty() {
                self.day_crossings(&relative, scope).await?;
            }
            return Ok(found);
        }
        let mut conn = self.store.read().await?;
        let cx = Context { backend: conn.backend(), today: self.today(), overrides: self.overrides };
        let condition = sql::join(group, sep, &cx);
        let found = conn.customer_ids_where(self.tenant, &condition, scope).await?;
        drop(conn);
        let mut relative = Vec::new();
        for f in group {
            relative_days(f, &mut relative);
        }
        if !relative.is_empty() {
            self.day_crossings(&relative, scope).await?;
        }
        Ok(found)
    }

    /// An entity-store condition decided in memory for one customer (snapshot mode).
    fn holds(&self, f: &Filter, c: &Customer, scores: Option<&ScoreRow>, today: i64) -> bool {
        match f {
            Filter::All(children) => children.iter().all(|f| self.holds(f, c, scores, today)),
            Filter::Any(children) => children.iter().any(|f| self.holds(f, c, scores, today)),
            Filter::Not(child) => !self.holds(child, c, scores, today),
            Filter::Field(fc) => {
                let v = field_value(fc, c, scores, today);
                value_holds(fc.op, &fc.value, Some(&v).filter(|v| !v.is_null()))
            }
            Filter::Consent(ch) => {
                let key = match ch {
                    crate::filter::Channel::Email => "email_consent",
                    crate::filter::Channel::Sms => "sms_consent",
                };
                c.traits.get(key) == Some(&Value::Bool(true))
            }
            Filter::Segment(id) => self.overrides.get(id).is_some_and(|m| m.binary_search(&c.id.0).is_ok()),
            Filter::Event(_) | Filter::EventTime(_) => unreachable!("event conditions run in the event store"),
        }
    }

    /// Crossings of `last_purchase_days` conditions: the next local midnight at which the
    /// condition's truth changes for each scored customer.
    async fn day_crossings(&mut self, conditions: &[&FieldCondition], scope: Option<&[i64]>) -> Result<()> {
        let from_snapshot: Option<Vec<(i64, i64)>> = self.snapshot.as_ref().zip(scope).map(|(snap, ids)| {
            ids.iter()
                .filter_map(|c| snap.rows.get(c).and_then(|(_, s)| s.as_ref()).map(|s| (*c, s.last_purchase_day)))
                .collect()
        });
        let rows: Vec<(i64, i64)> = match (scope, &self.whole.last_purchase) {
            _ if from_snapshot.is_some() => from_snapshot.unwrap_or_default(),
            (None, Some(all)) => all.iter().map(|(c, d)| (*c, *d)).collect(),
            _ => {
                let rows = self.store.read().await?.last_purchase_days(self.tenant, scope).await?;
                if scope.is_none() {
                    self.whole.last_purchase = Some(rows.iter().copied().collect());
                }
                rows
            }
        };
        let today = self.today();
        for fc in conditions {
            for &(customer, last_day) in &rows {
                if let Some(day) = next_change(fc, today - last_day).map(|d| last_day + d) {
                    self.crossings.push((customer, local_midnight(day, self.tz)));
                }
            }
        }
        Ok(())
    }

    async fn stats(
        &mut self,
        name: &str,
        window: Window,
        conditions: &[PropertyCondition],
        scope: Option<&[i64]>,
    ) -> Result<Vec<BehaviourStats>> {
        let (from_ms, to_ms) = window_ms(window, self.now);
        if let (Some(snap), Some(ids)) = (&mut self.snapshot, scope) {
            let key = stats_key(name, window, conditions);
            if !snap.stats.contains_key(&key) {
                let all: Vec<CustomerId> = snap.ids.iter().map(|c| CustomerId(*c)).collect();
                let predicate = |props: &Value| conditions.iter().all(|c| property_holds(c, props));
                let query = BehaviourQuery {
                    name,
                    from_ms,
                    to_ms,
                    predicate: if conditions.is_empty() { None } else { Some(&predicate) },
                };
                let stats = self.events.behaviour(self.tenant, &query, Customers::Only(&all)).await?;
                snap.stats.insert(key.clone(), stats);
            }
            let stats = &snap.stats[&key];
            return Ok(stats.iter().filter(|s| ids.binary_search(&s.customer_id).is_ok()).copied().collect());
        }
        let key = stats_key(name, window, conditions);
        if let Some(cached) = self.whole.stats.get(&key) {
            return Ok(match scope {
                None => cached.clone(),
                Some(ids) => cached.iter().filter(|s| ids.binary_search(&s.customer_id).is_ok()).copied().collect(),
            });
        }
        let predicate = |props: &Value| conditions.iter().all(|c| property_holds(c, props));
        let query = BehaviourQuery {
            name,
            from_ms,
            to_ms,
            predicate: if conditions.is_empty() { None } else { Some(&predicate) },
        };
        let ids: Vec<CustomerId>;
        let customers = match scope {
            None => Customers::All,
            Some(s) => {
                ids = s.iter().map(|c| CustomerId(*c)).collect();
                Customers::Only(&ids)
            }
        };
        let stats = self.events.behaviour(self.tenant, &query, customers).await?;
        if scope.is_none() {
            self.whole.stats.insert(key, stats.clone());
        }
        Ok(stats)
    }

    async fn event(&mut self, e: &EventCondition, scope: Option<&[i64]>) -> Result<Vec<i64>> {
        let stats = self.stats(&e.event, e.window, &e.conditions, scope).await?;
        if let Window::LastDays(d) = e.window {
            // The count only drops as time passes, when the oldest counted event leaves the
            // window: only customers whose count can still cross the condition's bound get a
            // crossing.
            let can_change = |count: u64| match e.count {
                Count::AtLeast(n) | Count::Exactly(n) => count >= n,
                Count::AtMost(n) => count > n,
            };
            for s in stats.iter().filter(|s| can_change(s.count)) {
                self.crossings.push((s.customer_id, at_ms(s.first_ms + d as i64 * DAY_MS + 1)));
            }
        }
        let with = |pred: &dyn Fn(u64) -> bool| {
            stats.iter().filter(|s| pred(s.count)).map(|s| s.customer_id).collect::<Vec<_>>()
        };
        Ok(match e.count {
            Count::AtLeast(0) => self.universe(scope).await?,
            Count::AtLeast(n) => with(&|c| c >= n),
            Count::Exactly(0) => difference(&self.universe(scope).await?, &with(&|_| true)),
            Count::Exactly(n) => with(&|c| c == n),
            Count::AtMost(n) => difference(&self.universe(scope).await?, &with(&|c| c > n)),
        })
    }

    async fn event_time(&mut self, e: &EventTimeCondition, scope: Option<&[i64]>) -> Result<Vec<i64>> {
        let stats = self.stats(&e.event, Window::Ever, &[], scope).await?;
        let now_ms = self.now.timestamp_millis();
        let mut out = Vec::new();
        for s in &stats {
            let at = match e.occurrence {
                Occurrence::First => s.first_ms,
                Occurrence::Last => s.last_ms,
            };
            let holds = match e.when {
                When::Before(t) => at < t.timestamp_millis(),
                When::After(t) => at > t.timestamp_millis(),
                When::WithinDays(d) => {
                    let holds = at >= now_ms - d as i64 * DAY_MS;
                    if holds {
                        self.crossings.push((s.customer_id, at_ms(at + d as i64 * DAY_MS + 1)));
                    }
                    holds
                }
            };
            if holds {
                out.push(s.customer_id);
            }
        }
        Ok(out)
    }
}

/// A field's value for a customer as JSON (null when missing; net spend and orders are 0
/// before the first purchase, as profiles show them).
pub(crate) fn field_value(fc: &FieldCondition, c: &Customer, s: Option<&ScoreRow>, today: i64) -> Value {
    use ProfileField as P;
    use ScoreField as S;
    match &fc.field {
        Field::Profile(p) => match p {
            P::Email => json!(c.email),
            P::Name => json!(c.name),
            P::Phone => json!(c.phone),
            P::City => json!(c.city),
            P::Country => json!(c.country),
            P::UserId => json!(c.external_id),
            P::CreatedAt => json!(c.created_at),
            P::FirstSeenAt => json!(c.first_seen_at),
            P::LastSeenAt => json!(c.last_seen_at),
        },
        Field::Trait(k) => c.traits.get(k).cloned().unwrap_or(Value::Null),
        Field::Score(f) => match (f, s) {
            (S::ClvTotal, None) => json!(0.0),
            (S::ClvOrderCount, None) => json!(0),
            (_, None) => Value::Null,
            (S::RfmRecency, Some(s)) => json!(s.rfm_recency),
            (S::RfmFrequency, Some(s)) => json!(s.rfm_frequency),
            (S::RfmMonetary, Some(s)) => json!(s.rfm_monetary),
            (S::RfmScore, Some(s)) => json!(s.rfm_score),
            (S::RfmSegment, Some(s)) => json!(s.rfm_segment),
            (S::ClvTotal, Some(s)) => json!(s.clv_total),
            (S::ClvOrderCount, Some(s)) => json!(s.clv_order_count),
            (S::ClvAverageOrder, Some(s)) => json!(s.clv_average_order),
            (S::ClvPredicted, Some(s)) => json!(s.clv_predicted),
            (S::PAlive, Some(s)) => json!(s.p_alive),
            (S::LastPurchaseDays, Some(s)) => json!(today - s.last_purchase_day),
            (S::LastPurchaseAt, Some(s)) => json!(s.last_purchase_at),
        },
    }
}

fn relative_days<'f>(f: &'f Filter, out: &mut Vec<&'f FieldCondition>) {
    match f {
        Filter::All(c) | Filter::Any(c) => c.iter().for_each(|c| relative_days(c, out)),
        Filter::Not(c) => relative_days(c, out),
        Filter::Field(fc) if fc.field == Field::Score(ScoreField::LastPurchaseDays) => out.push(fc),
        _ => {}
    }
}

/// Whether a filter has conditions relative to now (whose truth changes as time passes).
pub fn is_relative(f: &Filter) -> bool {
    match f {
        Filter::All(c) | Filter::Any(c) => c.iter().any(is_relative),
        Filter::Not(c) => is_relative(c),
        Filter::Field(fc) => fc.field == Field::Score(ScoreField::LastPurchaseDays),
        Filter::Event(e) => matches!(e.window, Window::LastDays(_)),
        Filter::EventTime(e) => matches!(e.when, When::WithinDays(_)),
        Filter::Segment(_) | Filter::Consent(_) => false,
    }
}

/// For a `last_purchase_days` condition that reads `days` today: after how many days since the
/// last purchase its truth first differs (None: never, as days only grow).
pub(crate) fn next_change(fc: &FieldCondition, days: i64) -> Option<i64> {
    let mut thresholds = Vec::new();
    let mut push = |o: &Operand| {
        if let Operand::Number(n) = o {
            thresholds.extend([n.floor() as i64, n.floor() as i64 + 1, n.ceil() as i64]);
        }
    };
    match &fc.value {
        Operand::List(items) => items.iter().for_each(&mut push),
        Operand::Range(lo, hi) => {
            push(lo);
            push(hi);
        }
        v => push(v),
    }
    thresholds.sort_unstable();
    thresholds.dedup();
    let now = number_holds(fc.op, &fc.value, days as f64);
    thresholds.into_iter().filter(|d| *d > days).find(|d| number_holds(fc.op, &fc.value, *d as f64) != now)
}

fn number_holds(op: Op, v: &Operand, x: f64) -> bool {
    match (op, v) {
        (Op::Eq, Operand::Number(n)) => x == *n,
        (Op::Neq, Operand::Number(n)) => x != *n,
        (Op::In, Operand::List(items)) => items.iter().any(|i| matches!(i, Operand::Number(n) if x == *n)),
        (Op::Gt, Operand::Number(n)) => x > *n,
        (Op::Gte, Operand::Number(n)) => x >= *n,
        (Op::Lt, Operand::Number(n)) => x < *n,
        (Op::Lte, Operand::Number(n)) => x <= *n,
        (Op::Between, Operand::Range(lo, hi)) => match (lo.as_ref(), hi.as_ref()) {
            (Operand::Number(a), Operand::Number(b)) => x >= *a && x <= *b,
            _ => false,
        },
        (Op::Exists, Operand::Present(p)) => *p,
        _ => false,
    }
}

fn at_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The first instant of a calendar day (days since 1970-01-01) in `tz`.
pub(crate) fn local_midnight(day: i64, tz: chrono_tz::Tz) -> DateTime<Utc> {
    let date = chrono::NaiveDate::default() + Duration::days(day);
    let midnight = date.and_hms_opt(0, 0, 0).expect("midnight");
    tz.from_local_datetime(&midnight)
        .earliest()
        // A day that starts in a DST gap starts an hour later.
        .unwrap_or_else(|| tz.from_utc_datetime(&midnight))
        .with_timezone(&Utc)
}

/// Whether an event's properties satisfy a `where` condition (the same rules as field
/// conditions on traits: types compare strictly; a missing property satisfies only `neq` and
/// `exists: false`).
pub fn property_holds(c: &PropertyCondition, props: &Value) -> bool {
    let v = props.get(&c.property).filter(|v| !v.is_null());
    value_holds(c.op, &c.value, v)
}

pub(crate) fn value_holds(op: Op, operand: &Operand, v: Option<&Value>) -> bool {
    let eq = |o: &Operand| match (o, v) {
        (Operand::Number(n), Some(Value::Number(x))) => x.as_f64() == Some(*n),
        (Operand::Text(t), Some(Value::String(s))) => s == t,
        (Operand::Bool(b), Some(Value::Bool(x))) => b == x,
        (Operand::Date(t), Some(Value::String(s))) => parse_time(s) == Some(*t),
        _ => false,
    };
    let ord = |o: &Operand| -> Option<std::cmp::Ordering> {
        match (o, v) {
            (Operand::Number(n), Some(Value::Number(x))) => x.as_f64()?.partial_cmp(n),
            (Operand::Date(t), Some(Value::String(s))) => Some(parse_time(s)?.cmp(t)),
            (Operand::Text(t), Some(Value::String(s))) => Some(s.as_str().cmp(t.as_str())),
            _ => None,
        }
    };
    use std::cmp::Ordering::*;
    match (op, operand) {
        (Op::Exists, Operand::Present(p)) => v.is_some() == *p,
        (Op::Eq, o) => eq(o),
        (Op::Neq, o) => !eq(o),
        (Op::In, Operand::List(items)) => items.iter().any(eq),
        (Op::Contains, Operand::Text(t)) => {
            v.and_then(Value::as_str).is_some_and(|s| s.to_ascii_lowercase().contains(&t.to_ascii_lowercase()))
        }
        (Op::StartsWith, Operand::Text(t)) => {
            v.and_then(Value::as_str).is_some_and(|s| s.to_ascii_lowercase().starts_with(&t.to_ascii_lowercase()))
        }
        (Op::Gt, o) => ord(o) == Some(Greater),
        (Op::Gte, o) => matches!(ord(o), Some(Greater | Equal)),
        (Op::Lt, o) => ord(o) == Some(Less),
        (Op::Lte, o) => matches!(ord(o), Some(Less | Equal)),
        (Op::Between, Operand::Range(lo, hi)) => {
            matches!(ord(lo), Some(Greater | Equal)) && matches!(ord(hi), Some(Less | Equal))
        }
        _ => false,
    }
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)).ok().or_else(|| {
        chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
    })
}

pub(crate) fn intersect(a: &[i64], b: &[i64]) -> Vec<i64> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

pub(crate) fn union(a: &[i64], b: &[i64]) -> Vec<i64> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if j == b.len() || (i < a.len() && a[i] < b[j]) {
            out.push(a[i]);
            i += 1;
        } else if i == a.len() || b[j] < a[i] {
            out.push(b[j]);
            j += 1;
        } else {
            out.push(a[i]);
            i += 1;
            j += 1;
        }
    }
    out
}

/// `a` without `b`.
pub(crate) fn difference(a: &[i64], b: &[i64]) -> Vec<i64> {
    let mut j = 0;
    a.iter()
        .copied()
        .filter(|x| {
            while j < b.len() && b[j] < *x {
                j += 1;
            }
            !(j < b.len() && b[j] == *x)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn set_operations_on_sorted_ids() {
        assert_eq!(intersect(&[1, 3, 5, 7], &[3, 4, 5]), vec![3, 5]);
        assert_eq!(union(&[1, 5], &[2, 5, 9]), vec![1, 2, 5, 9]);
        assert_eq!(difference(&[1, 2, 3, 4], &[2, 4, 6]), vec![1, 3]);
    }

    #[test]
    fn days_since_purchase_change_truth_at_their_thresholds() {
        let fc = |v: serde_json::Value| match crate::parse(&v, "f").unwrap() {
            Filter::Field(fc) => fc,
            _ => unreachable!(),
        };
        // At most 30 days: true until day 30, false from day 31.
        assert_eq!(next_change(&fc(json!({"last_purchase_days_max": 30})), 10), Some(31));
        assert_eq!(next_change(&fc(json!({"last_purchase_days_max": 30})), 31), None);
        // At least 30 days: turns true on day 30.
        assert_eq!(next_change(&fc(json!({"last_purchase_days_min": 30})), 3), Some(30));
        let between = fc(json!({"field": "last_purchase_days", "op": "between", "value": [7, 14]}));
        assert_eq!(next_change(&between, 2), Some(7));
        assert_eq!(next_change(&between, 7), Some(15));
    }

    #[test]
    fn property_conditions_compare_strictly_by_type() {
        let c = |v: serde_json::Value| match crate::parse(&json!({"event": "x", "where": [v]}), "f").unwrap() {
            Filter::Event(e) => e.conditions[0].clone(),
            _ => unreachable!(),
        };
        let props = json!({"amount": 120, "sku": "A-1", "gift": true, "at": "2026-03-01"});
        assert!(property_holds(&c(json!({"property": "amount", "op": "gt", "value": 100})), &props));
        assert!(!property_holds(&c(json!({"property": "amount", "op": "eq", "value": "120"})), &props));
        assert!(property_holds(&c(json!({"property": "sku", "op": "starts_with", "value": "a-"})), &props));
        assert!(property_holds(&c(json!({"property": "gift", "op": "eq", "value": true})), &props));
        assert!(property_holds(&c(json!({"property": "at", "op": "lt", "value": "2026-04-01"})), &props));
        assert!(property_holds(&c(json!({"property": "missing", "op": "neq", "value": 1})), &props));
        assert!(!property_holds(&c(json!({"property": "missing", "op": "lt", "value": 1})), &props));
    }
}

//! The processor: the one consumer of the ingest log. For each batch of messages it resolves
//! every message to a customer profile (finding, creating, linking or merging profiles in one
//! entity-store transaction, with `customer.created` in the outbox), writes the events to the
//! event store, and only then commits the log checkpoint.
//!
//! Every step is idempotent, so a crash anywhere means the batch is simply processed again:
//! profiles are found by unique identities instead of created twice, `customer.created` is
//! written only in the transaction that gives a profile its first identity, merges are
//! recorded and re-applied until marked done, and the event store keeps one copy per
//! `(workspace, message_id)`.

use std::{collections::HashMap, sync::Arc, time::Duration};

use cairn_domain::{Clock, CustomerId, TenantId};
use cairn_events::{Event, EventStore};
use cairn_store::{
    automations::NewSignal,
    customers::CustomerFields,
    identity::{Found, IdentityKind, ProfileTouch},
    Conn, Store,
};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::{log::LogReader, message::IngestMessage};

/// Messages per batch: one entity-store transaction and one event-store insert each.
const BATCH: usize = 5_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Ident {
    Email(String),
    User(String),
    Anon(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(transparent)]
    Store(#[from] cairn_store::StoreError),
    #[error(transparent)]
    Events(#[from] cairn_events::EventStoreError),
    #[error("ingest log: {0}")]
    Log(#[from] std::io::Error),
}

/// Profile changes gathered over a batch, applied once per profile.
#[derive(Default)]
struct Touch {
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
    traits: Option<serde_json::Map<String, Value>>,
    name: Option<String>,
    phone: Option<String>,
}

pub struct Processor {
    reader: LogReader,
    store: Store,
    events: Arc<dyn EventStore>,
    clock: Clock,
    cache: HashMap<(i64, Ident), Found>,
    /// Identities known not to exist, for the current batch only.
    absent: std::collections::HashSet<(i64, Ident)>,
    epoch: u64,
    /// Woken when customers were marked for re-scoring.
    scoring_wake: Option<Arc<tokio::sync::Notify>>,
    /// Woken when customers were marked for segment re-evaluation.
    segments_wake: Option<Arc<tokio::sync::Notify>>,
    /// Profiles created by the batch in progress (every segment is evaluated for them).
    created: Vec<(TenantId, CustomerId)>,
    /// Woken when a batch signalled events some automation listens for.
    automations_wake: Option<Arc<tokio::sync::Notify>>,
}

impl Processor {
    pub fn new(reader: LogReader, store: Store, events: Arc<dyn EventStore>, clock: Clock) -> Processor {
        let epoch = store.identity_epoch();
        Processor {
            reader,
            store,
            events,
            clock,
            cache: HashMap::new(),
            absent: Default::default(),
            epoch,
            scoring_wake: None,
            segments_wake: None,
            created: Vec::new(),
            automations_wake: None,
        }
    }

    /// Wakes the scorer whenever a batch changed someone's purchases.
    pub fn with_scoring_wake(mut self, wake: Arc<tokio::sync::Notify>) -> Processor {
        self.scoring_wake = Some(wake);
        self
    }

    /// Wakes the segment worker whenever a batch marked customers.
    pub fn with_segments_wake(mut self, wake: Arc<tokio::sync::Notify>) -> Processor {
        self.segments_wake = Some(wake);
        self
    }

    /// Wakes the automation engine whenever a batch signalled events.
    pub fn with_automations_wake(mut self, wake: Arc<tokio::sync::Notify>) -> Processor {
        self.automations_wake = Some(wake);
        self
    }

    /// Signals the events some automation listens for (an event trigger, a wait), after they
    /// are stored; a crash in between reprocesses the batch, and a signal is kept once per
    /// message id.
    async fn signal_automations(&mut self, events: &[Event]) -> Result<(), ProcessError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tenants: Vec<i64> = events.iter().map(|e| e.tenant_id.0).collect();
        tenants.sort_unstable();
        tenants.dedup();
        let listens = self.store.read().await?.automation_listens(&tenants).await?;
        if listens.is_empty() {
            return Ok(());
        }
        let signals: Vec<NewSignal> = events
            .iter()
            .filter(|e| listens.get(&e.tenant_id.0).is_some_and(|names| names.contains(&e.name)))
            .map(|e| NewSignal {
                tenant_id: e.tenant_id.0,
                customer_id: e.customer_id.0,
                name: e.name.clone(),
                message_id: e.message_id.clone(),
                properties: e.properties.clone(),
                at: e.timestamp,
            })
            .collect();
        if signals.is_empty() {
            return Ok(());
        }
        self.store.write().await?.insert_signals(&signals).await?;
        if let Some(wake) = &self.automations_wake {
            wake.notify_one();
        }
        Ok(())
    }

    /// Marks customers for segment re-evaluation (after their events are stored, like scoring
    /// marks): those with new events for profile and event conditions, new profiles for all.
    ///
    /// Only changes some dynamic segment of the workspace depends on are marked (read after the
    /// events are stored: a segment saved later is evaluated over a snapshot that has them).
    async fn mark_for_segments(&mut self, mut marks: Vec<(TenantId, CustomerId, i64)>) -> Result<(), ProcessError> {
        if marks.is_empty() {
            return Ok(());
        }
        let mut tenants: Vec<i64> = marks.iter().map(|m| m.0 .0).collect();
        tenants.sort_unstable();
        tenants.dedup();
        let deps = self.store.read().await?.segment_deps(&tenants).await?;
        for m in marks.iter_mut() {
            m.2 &= deps.get(&m.0 .0).copied().unwrap_or(0);
        }
        marks.retain(|m| m.2 != 0);
        if marks.is_empty() {
            return Ok(());
        }
        marks.sort_unstable_by_key(|(t, c, _)| (t.0, c.0));
        marks.dedup_by(|b, a| {
            let same = a.0 == b.0 && a.1 == b.1;
            if same {
                a.2 |= b.2;
            }
            same
        });
        self.store.write().await?.mark_segments_dirty(&marks, self.clock.now()).await?;
        if let Some(wake) = &self.segments_wake {
            wake.notify_one();
        }
        Ok(())
    }

    /// Marks customers whose purchases or refunds changed for re-scoring, after their events are
    /// stored (a crash in between reprocesses the batch, so the mark is never lost).
    async fn mark_for_scoring(&mut self, mut marks: Vec<(TenantId, CustomerId)>) -> Result<(), ProcessError> {
        if marks.is_empty() {
            return Ok(());
        }
        marks.sort_unstable_by_key(|(t, c)| (t.0, c.0));
        marks.dedup();
        self.store.write().await?.mark_scoring_dirty(&marks, self.clock.now()).await?;
        if let Some(wake) = &self.scoring_wake {
            wake.notify_one();
        }
        Ok(())
    }

    /// Runs until `stop` turns true, then processes what is left and returns.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let stopping = *stop.borrow();
            match self.process_batch().await {
                Ok(0) if stopping => return,
                Ok(0) => {
                    tokio::select! {
                        _ = self.reader.wait() => {}
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = stop.changed() => {}
                    }
                }
                Ok(_) => backoff = Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "ingest processing failed; will retry");
                    if stopping {
                        return;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Processes one batch from the log. Returns how many messages it handled (0: none waiting).
    pub async fn process_batch(&mut self) -> Result<usize, ProcessError> {
        self.apply_pending_merges().await?;
        let from = self.reader.position();
        let (records, to) = tokio::task::block_in_place(|| self.reader.read(BATCH))?;
        if records.is_empty() {
            return Ok(0);
        }
        let n = records.len();
        match self.process(records).await {
            Ok(()) => {
                tokio::task::block_in_place(|| self.reader.commit(from, to))?;
                Ok(n)
            }
            Err(e) => {
                self.reader.rewind(from);
                // What the failed transaction cached may not exist.
                self.cache.clear();
                Err(e)
            }
        }
    }

    async fn process(&mut self, records: Vec<Vec<u8>>) -> Result<(), ProcessError> {
        let epoch = self.store.identity_epoch();
        if epoch != self.epoch {
            self.cache.clear();
            self.epoch = epoch;
        }
        let messages: Vec<IngestMessage> = records
            .iter()
            .filter_map(|r| match serde_json::from_slice(r) {
                Ok(m) => Some(m),
                Err(e) => {
                    tracing::error!(error = %e, "unreadable ingest record skipped");
                    None
                }
            })
            .collect();
        let now = self.clock.now();
        let t0 = std::time::Instant::now();
        let mut tx = self.store.begin().await?;
        self.created.clear();
        self.prefetch(&mut tx, &messages).await?;
        let t_prefetch = t0.elapsed();
        let mut events: Vec<Event> = Vec::with_capacity(messages.len());
        let mut touches: HashMap<(i64, CustomerId), Touch> = HashMap::new();
        for m in messages {
            let tenant = TenantId(m.tenant_id);
            let Some((customer, merged)) = self.resolve(&mut tx, &m, now).await? else {
                tracing::warn!(tenant.id = %tenant, "event for an unknown customer id dropped");
                continue;
            };
            if let Some(from) = merged {
                // Events and changes of this batch that went to the merged profile follow it.
                for e in events.iter_mut().filter(|e| e.tenant_id == tenant && e.customer_id == from) {
                    e.customer_id = customer;
                }
                if let Some(old) = touches.remove(&(m.tenant_id, from)) {
                    let t = touches.entry((m.tenant_id, customer)).or_default();
                    merge_touch(t, old);
                }
            }
            let t = touches.entry((m.tenant_id, customer)).or_default();
            t.first = Some(t.first.map_or(m.timestamp, |f| f.min(m.timestamp)));
            t.last = Some(t.last.map_or(m.timestamp, |l| l.max(m.timestamp)));
            if let Some(Value::Object(patch)) = &m.traits {
                let traits = t.traits.get_or_insert_with(Default::default);
                for (k, v) in patch {
                    traits.insert(k.clone(), v.clone());
                }
            }
            if m.profile_name.is_some() {
                t.name = m.profile_name.clone();
            }
            if m.profile_phone.is_some() {
                t.phone = m.profile_phone.clone();
            }
            events.push(Event {
                tenant_id: tenant,
                message_id: m.message_id,
                customer_id: customer,
                anonymous_id: m.anonymous_id,
                user_id: m.user_id,
                kind: m.kind,
                name: m.name,
                properties: m.properties,
                context: m.context,
                timestamp: m.timestamp,
                sent_at: m.sent_at,
                received_at: m.received_at,
                amount: m.amount,
                currency: m.currency,
            });
        }
        // First/last seen for every profile in one statement per 500; the rarer identify
        // changes (traits, name, phone) one by one.
        let mut seen = Vec::with_capacity(touches.len());
        for ((tenant, id), t) in &touches {
            let (Some(first), Some(last)) = (t.first, t.last) else { continue };
            if t.traits.is_none() && t.name.is_none() && t.phone.is_none() {
                seen.push((TenantId(*tenant), *id, first, last));
                continue;
            }
            let traits = t.traits.clone().map(Value::Object);
            let touch = ProfileTouch {
                first,
                last,
                traits: traits.as_ref(),
                name: t.name.as_deref(),
                phone: t.phone.as_deref(),
            };
            tx.touch_customer(TenantId(*tenant), *id, &touch, now).await?;
        }
        tx.touch_seen_many(&seen, now).await?;
        let t_resolved = t0.elapsed();
        tx.commit().await?;
        self.apply_pending_merges().await?;
        let t_committed = t0.elapsed();
        self.events.insert(&events).await?;
        let marks = events
            .iter()
            .filter(|e| e.amount.is_some() && (e.name == "purchase" || e.name == "refund"))
            .map(|e| (e.tenant_id, e.customer_id))
            .collect();
        self.mark_for_scoring(marks).await?;
        // Segment marks: what changed is the profile (seen times, traits) and the events.
        const PROFILE_AND_EVENTS: i64 = 1 | 4;
        const EVERYTHING: i64 = 31;
        let mut marks: Vec<(TenantId, CustomerId, i64)> =
            events.iter().map(|e| (e.tenant_id, e.customer_id, PROFILE_AND_EVENTS)).collect();
        marks.extend(self.created.drain(..).map(|(t, c)| (t, c, EVERYTHING)));
        self.mark_for_segments(marks).await?;
        self.signal_automations(&events).await?;
        tracing::debug!(
            messages = events.len(),
            prefetch_ms = t_prefetch.as_millis() as u64,
            resolve_ms = (t_resolved - t_prefetch).as_millis() as u64,
            commit_ms = (t_committed - t_resolved).as_millis() as u64,
            events_ms = (t0.elapsed() - t_committed).as_millis() as u64,
            "batch processed"
        );
        Ok(())
    }

    /// Moves the events of merged profiles in the event store, and marks the merges done.
    async fn apply_pending_merges(&mut self) -> Result<(), ProcessError> {
        let pending = self.store.read().await?.pending_merges(100).await?;
        for m in pending {
            let (tenant, into) = (TenantId(m.tenant_id), CustomerId(m.into_id));
            self.events.reassign_customer(tenant, CustomerId(m.from_id), into).await?;
            // The surviving profile's purchases may have grown; the merged one is gone.
            self.mark_for_scoring(vec![(tenant, into)]).await?;
            self.mark_for_segments(vec![(tenant, into, 31)]).await?;
            self.store.write().await?.mark_merge_applied(m.id, self.clock.now()).await?;
        }
        Ok(())
    }

    async fn lookup(&mut self, tx: &mut Conn, tenant: TenantId, ident: Ident) -> Result<Option<Found>, ProcessError> {
        let key = (tenant.0, ident);
        if let Some(f) = self.cache.get(&key) {
            return Ok(Some(*f));
        }
        if self.absent.contains(&key) {
            return Ok(None);
        }
        let (kind, value) = match &key.1 {
            Ident::Email(e) => (IdentityKind::Email, e),
            Ident::User(u) => (IdentityKind::ExternalId, u),
            Ident::Anon(a) => (IdentityKind::AnonymousId, a),
        };
        let found = tx.customers_by_identities(tenant, kind, std::slice::from_ref(value)).await?.pop().map(|(_, f)| f);
        if let Some(f) = found {
            self.cache.insert(key, f);
        }
        Ok(found)
    }

    /// Looks up, in a few queries, every identity of the batch that is not cached, and notes
    /// the ones that do not exist (for this batch only), so resolution rarely queries per
    /// message.
    async fn prefetch(&mut self, tx: &mut Conn, messages: &[IngestMessage]) -> Result<(), ProcessError> {
        self.absent.clear();
        let mut wanted: HashMap<(i64, u8), std::collections::BTreeSet<String>> = HashMap::new();
        for m in messages {
            let idents = [
                (0u8, m.email.as_ref()),
                (1u8, m.user_id.as_ref()),
                (2u8, m.anonymous_id.as_ref()),
                (1u8, m.previous_id.as_ref()),
                (2u8, m.previous_id.as_ref()),
            ];
            for (kind, v) in idents {
                if let Some(v) = v {
                    if !self.cache.contains_key(&(m.tenant_id, ident(kind, v))) {
                        wanted.entry((m.tenant_id, kind)).or_default().insert(v.clone());
                    }
                }
            }
        }
        for ((tenant, kind), keys) in wanted {
            let keys: Vec<String> = keys.into_iter().collect();
            let store_kind = match kind {
                0 => IdentityKind::Email,
                1 => IdentityKind::ExternalId,
                _ => IdentityKind::AnonymousId,
            };
            let found = tx.customers_by_identities(TenantId(tenant), store_kind, &keys).await?;
            let mut hit = std::collections::HashSet::new();
            for (k, f) in found {
                hit.insert(k.clone());
                self.cache.insert((tenant, ident(kind, &k)), f);
            }
            for k in keys.into_iter().filter(|k| !hit.contains(k)) {
                self.absent.insert((tenant, ident(kind, &k)));
            }
        }
        Ok(())
    }

    fn remember(&mut self, tenant: TenantId, ident: Ident, found: Found) {
        self.cache.insert((tenant.0, ident), found);
    }

    /// Finds the message's profile, creating, linking, upgrading or merging as needed.
    /// Returns the profile and, when an anonymous profile was merged into it, that one's id.
    async fn resolve(
        &mut self,
        tx: &mut Conn,
        m: &IngestMessage,
        now: DateTime<Utc>,
    ) -> Result<Option<(CustomerId, Option<CustomerId>)>, ProcessError> {
        let tenant = TenantId(m.tenant_id);
        if let Some(id) = m.customer_id {
            return Ok(tx.customer_exists(tenant, CustomerId(id)).await?.map(|f| (f.id, None)));
        }
        if m.kind == "alias" {
            let (Some(previous), Some(user)) = (m.previous_id.clone(), m.user_id.clone()) else {
                return Ok(None); // validation requires both; a record without them is corrupt
            };
            return self.resolve_alias(tx, tenant, previous, user, now).await.map(Some);
        }
        let by_user = match &m.user_id {
            Some(u) => self.lookup(tx, tenant, Ident::User(u.clone())).await?,
            None => None,
        };
        let by_email = match &m.email {
            Some(e) => self.lookup(tx, tenant, Ident::Email(e.clone())).await?,
            None => None,
        };
        let anon = match &m.anonymous_id {
            Some(a) => self.lookup(tx, tenant, Ident::Anon(a.clone())).await?,
            None => None,
        };
        // The user id decides when both are known; an email of another profile is not taken.
        let known = by_user.or(by_email);
        let email_free = by_email.is_none();
        let user_free = by_user.is_none();
        let mut merged = None;
        let mut created = false;
        let target = match (known, anon) {
            (Some(k), Some(a)) if a.id != k.id && !a.known => {
                tx.merge_customers(tenant, a.id, k.id, now).await?;
                self.cache.retain(|_, f| f.id != a.id);
                merged = Some(a.id);
                k
            }
            (Some(k), _) => k,
            (None, Some(a)) if !a.known || (m.email.is_none() && m.user_id.is_none()) => a,
            // A known profile on this device, and a new identity: a new profile takes the
            // anonymous id from here on.
            (None, Some(_)) | (None, None) => {
                // Neither identity is taken (both lookups missed): the profile gets them now.
                let fields = CustomerFields {
                    email: m.email.clone(),
                    external_id: m.user_id.clone(),
                    traits: json!({}),
                    ..Default::default()
                };
                let c = tx.insert_customer(tenant, &fields, now).await?;
                self.created.push((tenant, c.id));
                let f = Found { id: c.id, known: c.email.is_some() || c.external_id.is_some() };
                if f.known {
                    tx.insert_outbox(tenant, "customer.created", &c.created_payload(), now).await?;
                }
                if let Some(e) = c.email {
                    self.remember(tenant, Ident::Email(e), f);
                }
                if let Some(u) = c.external_id {
                    self.remember(tenant, Ident::User(u), f);
                }
                created = true;
                f
            }
        };
        // Give the profile the identities it lacks (never one that belongs to another).
        let add_email = m.email.as_deref().filter(|_| email_free && !created);
        let add_user = m.user_id.as_deref().filter(|_| user_free && !created);
        let mut target = target;
        if add_email.is_some() || add_user.is_some() {
            tx.set_customer_identity(tenant, target.id, add_email, add_user, now).await?;
            let c = tx.customer(tenant, target.id).await?;
            let known_now = c.email.is_some() || c.external_id.is_some();
            if known_now && !target.known {
                // Its first identity: the moment a profile becomes a customer.
                tx.insert_outbox(tenant, "customer.created", &c.created_payload(), now).await?;
            }
            target.known = known_now;
            for f in self.cache.values_mut().filter(|f| f.id == target.id) {
                f.known = known_now;
            }
            if let Some(e) = c.email.filter(|e| Some(e.as_str()) == add_email) {
                self.remember(tenant, Ident::Email(e), target);
            }
            if let Some(u) = c.external_id.filter(|u| Some(u.as_str()) == add_user) {
                self.remember(tenant, Ident::User(u), target);
            }
        }
        if let Some(a) = &m.anonymous_id {
            if anon.map(|f| f.id) != Some(target.id) {
                tx.link_anonymous_id(tenant, a, target.id, now).await?;
            }
            self.remember(tenant, Ident::Anon(a.clone()), target);
        }
        Ok(Some((target.id, merged)))
    }
}

impl Processor {
    /// Segment's `alias`: the profile known by `previous_id` (a user id, else an anonymous
    /// id) and the one known by `user_id` become one, under `user_id`.
    async fn resolve_alias(
        &mut self,
        tx: &mut Conn,
        tenant: TenantId,
        previous: String,
        user: String,
        now: DateTime<Utc>,
    ) -> Result<(CustomerId, Option<CustomerId>), ProcessError> {
        let prev = match self.lookup(tx, tenant, Ident::User(previous.clone())).await? {
            Some(f) => Some(f),
            None => self.lookup(tx, tenant, Ident::Anon(previous.clone())).await?,
        };
        let current = self.lookup(tx, tenant, Ident::User(user.clone())).await?;
        let (target, merged) = match (prev, current) {
            (Some(p), Some(u)) if p.id != u.id => {
                let old = tx.customer(tenant, p.id).await?;
                tx.merge_customers(tenant, p.id, u.id, now).await?;
                // The merged profile's email lives on, if the survivor has none.
                tx.set_customer_identity(tenant, u.id, old.email.as_deref(), None, now).await?;
                self.cache.retain(|_, f| f.id != p.id);
                (u, Some(p.id))
            }
            (_, Some(u)) => (u, None),
            (Some(p), None) => {
                tx.set_customer_identity(tenant, p.id, None, Some(&user), now).await?;
                let c = tx.customer(tenant, p.id).await?;
                if c.external_id.as_deref() == Some(user.as_str()) {
                    if !p.known {
                        tx.insert_outbox(tenant, "customer.created", &c.created_payload(), now).await?;
                    }
                    (Found { id: p.id, known: true }, None)
                } else {
                    (self.create_known(tx, tenant, &user, now).await?, None)
                }
            }
            (None, None) => {
                let f = self.create_known(tx, tenant, &user, now).await?;
                tx.link_anonymous_id(tenant, &previous, f.id, now).await?;
                self.remember(tenant, Ident::Anon(previous), f);
                (f, None)
            }
        };
        self.remember(tenant, Ident::User(user), target);
        Ok((target.id, merged))
    }

    async fn create_known(
        &mut self,
        tx: &mut Conn,
        tenant: TenantId,
        user: &str,
        now: DateTime<Utc>,
    ) -> Result<Found, ProcessError> {
        let fields = CustomerFields { external_id: Some(user.to_string()), traits: json!({}), ..Default::default() };
        let c = tx.insert_customer(tenant, &fields, now).await?;
        self.created.push((tenant, c.id));
        tx.insert_outbox(tenant, "customer.created", &c.created_payload(), now).await?;
        Ok(Found { id: c.id, known: true })
    }
}

fn ident(kind: u8, v: &str) -> Ident {
    match kind {
        0 => Ident::Email(v.to_string()),
        1 => Ident::User(v.to_string()),
        _ => Ident::Anon(v.to_string()),
    }
}

fn merge_touch(into: &mut Touch, from: Touch) {
    into.first = match (into.first, from.first) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    into.last = match (into.last, from.last) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    if let Some(t) = from.traits {
        let traits = into.traits.get_or_insert_with(Default::default);
        for (k, v) in t {
            traits.entry(k).or_insert(v);
        }
    }
    into.name = into.name.take().or(from.name);
    into.phone = into.phone.take().or(from.phone);
}

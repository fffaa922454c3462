//! Automations (seed 003, docs/automations.md): definitions, seed 003's node-edge designs,
//! validation, activation (which publishes an immutable version), manual and webhook
//! enrollment, and inspection of runs and per-node counts.
//!
//! Activating publishes the automation's current design as its next version. Editing the design
//! of an active automation publishes again at once (a design that does not validate is refused
//! and the running version stays); runs in flight finish on the version they started on unless
//! migrated with a node mapping.

use std::sync::Arc;

use cairn_automations::{
    design::{self, Action, Design, Problem, Step},
    engine::{run_for, start_runs},
    trigger::{self, Trigger},
};
use cairn_domain::{CustomerId, FieldError, Scope, TenantId};
use cairn_store::{
    automations::{AutomationFields, AutomationRow, NodeCounts, RunRow, StepRow},
    campaigns::CampaignFields,
    customers::Customer,
    identity::IdentityKind,
    Json,
};
use serde_json::{json, Map, Value};
use tokio::sync::Notify;

use crate::{found, Principal, Result, ServiceError, Services};

pub const REENTRY: &[&str] = &["once", "once_at_a_time", "every_time"];

/// What a create or update says; absent fields stay (update) or take their defaults.
#[derive(Debug, Default, Clone)]
pub struct AutomationInput {
    pub name: Option<String>,
    pub trigger_type: Option<String>,
    pub trigger_config: Option<Map<String, Value>>,
    pub is_active: Option<bool>,
    pub reentry: Option<String>,
    pub exit_filter: Option<Option<Value>>,
    pub design: Option<Design>,
}

/// An automation with its run counts.
pub struct AutomationView {
    pub row: AutomationRow,
    pub runs: std::collections::HashMap<String, i64>,
}

/// A run with its step history.
pub struct RunView {
    pub run: RunRow,
    pub steps: Vec<StepRow>,
}

fn problems(list: Vec<Problem>) -> ServiceError {
    ServiceError::Problems(
        list.into_iter()
            .map(|p| crate::Problem { node: p.node, edge: p.edge, field: p.field, message: p.message })
            .collect(),
    )
}

impl Services {
    /// Wakes the automation engine (enrollments, activations).
    pub fn with_automations(mut self, wake: Arc<Notify>) -> Services {
        self.automations_wake = Some(wake);
        self
    }

    fn wake_automations(&self) {
        if let Some(w) = &self.automations_wake {
            w.notify_one();
        }
    }

    async fn automation_row(&self, p: &Principal, id: i64) -> Result<AutomationRow> {
        found(self.store.read().await?.automation(p.tenant_id, id).await, "automation")
    }

    async fn automation_view(&self, row: AutomationRow) -> Result<AutomationView> {
        let runs = self.store.read().await?.run_counts(row.id).await?;
        Ok(AutomationView { row, runs })
    }

    /// Merges an input over the current fields and checks what can be checked on a draft.
    fn automation_fields(current: Option<&AutomationRow>, i: &AutomationInput) -> Result<AutomationFields> {
        let name = match (&i.name, current) {
            (Some(n), _) => n.trim().to_string(),
            (None, Some(c)) => c.name.clone(),
            (None, None) => return Err(ServiceError::invalid("name", "is required")),
        };
        if name.is_empty() || name.chars().count() > 200 {
            return Err(ServiceError::invalid("name", "must be 1 to 200 characters"));
        }
        let trigger_type = match (&i.trigger_type, current) {
            (Some(t), _) => t.clone(),
            (None, Some(c)) => c.trigger_type.clone(),
            (None, None) => return Err(ServiceError::invalid("trigger_type", "is required")),
        };
        if !trigger::TYPES.contains(&trigger_type.as_str()) {
            return Err(ServiceError::invalid("trigger_type", format!("must be one of {}", trigger::TYPES.join(", "))));
        }
        let trigger_config = match (&i.trigger_config, current) {
            (Some(c), _) => Value::Object(c.clone()),
            (None, Some(c)) if i.trigger_type.is_none() => c.trigger_config.0.clone(),
            _ => json!({}),
        };
        let reentry = match (&i.reentry, current) {
            (Some(r), _) => r.clone(),
            (None, Some(c)) => c.reentry.clone(),
            (None, None) => "once_at_a_time".into(),
        };
        if !REENTRY.contains(&reentry.as_str()) {
            return Err(ServiceError::invalid("reentry", format!("must be one of {}", REENTRY.join(", "))));
        }
        let exit_filter = match (&i.exit_filter, current) {
            (Some(f), _) => f.clone().filter(|f| !f.is_null()),
            (None, Some(c)) => c.exit_filter.as_ref().map(|f| f.0.clone()),
            (None, None) => None,
        };
        if let Some(f) = &exit_filter {
            cairn_segments::parse(f, "exit_filter")?;
        }
        let design = match (&i.design, current) {
            (Some(d), _) => serde_json::to_value(d).expect("a design serialises"),
            (None, Some(c)) => c.design.0.clone(),
            (None, None) => json!({"nodes": [], "edges": []}),
        };
        Ok(AutomationFields { name, trigger_type, trigger_config, reentry, exit_filter, design })
    }

    pub async fn create_automation(&self, p: &Principal, input: AutomationInput) -> Result<AutomationView> {
        p.require_private()?;
        p.require(Scope::AutomationsWrite)?;
        let f = Self::automation_fields(None, &input)?;
        if let Some(d) = &input.design {
            let draft = design::check_draft(d);
            if !draft.is_empty() {
                return Err(problems(draft));
            }
        }
        let token = cairn_domain::credential::generate_token("awh_");
        let now = self.clock.now();
        let row = self.store.write().await?.insert_automation(p.tenant_id, &f, &token, now).await?;
        tracing::info!(automation.id = row.id, trigger = %row.trigger_type, "automation created");
        let row = if input.is_active == Some(true) {
            // Seed 003 creates the welcome automation active, before its design exists: it is
            // kept as a draft until a design can be activated.
            match self.activate_row(p, row.clone()).await {
                Ok(r) => r,
                Err(ServiceError::Problems(_)) => row,
                Err(e) => return Err(e),
            }
        } else {
            row
        };
        self.automation_view(row).await
    }

    pub async fn automations(&self, p: &Principal, limit: i64, offset: i64) -> Result<(Vec<AutomationView>, i64)> {
        p.require_private()?;
        p.require(Scope::AutomationsRead)?;
        let (rows, total) = self.store.read().await?.list_automations(p.tenant_id, limit, offset).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(self.automation_view(r).await?);
        }
        Ok((out, total))
    }

    pub async fn automation(&self, p: &Principal, id: i64) -> Result<AutomationView> {
        p.require_private()?;
        p.require(Scope::AutomationsRead)?;
        let row = self.automation_row(p, id).await?;
        self.automation_view(row).await
    }

    /// Changes an automation. On an active one, anything that changes how it runs publishes a
    /// new version (refused, with every problem listed, when it does not validate).
    pub async fn update_automation(&self, p: &Principal, id: i64, input: AutomationInput) -> Result<AutomationView> {
        p.require_private()?;
        p.require(Scope::AutomationsWrite)?;
        let current = self.automation_row(p, id).await?;
        let f = Self::automation_fields(Some(&current), &input)?;
        if let Some(d) = &input.design {
            let draft = design::check_draft(d);
            if !draft.is_empty() {
                return Err(problems(draft));
            }
        }
        let behaviour_changed = f.design != current.design.0
            || f.trigger_type != current.trigger_type
            || f.trigger_config != current.trigger_config.0
            || f.reentry != current.reentry
            || f.exit_filter != current.exit_filter.as_ref().map(|e| e.0.clone());
        let republish = current.is_active && behaviour_changed && input.is_active != Some(false);
        if republish {
            // Check before anything is written: the running version stays if this fails.
            let candidate = AutomationRow {
                design: sqlx_json(f.design.clone()),
                trigger_type: f.trigger_type.clone(),
                trigger_config: sqlx_json(f.trigger_config.clone()),
                ..current.clone()
            };
            self.check_activatable(p, &candidate).await?;
        }
        let now = self.clock.now();
        let mut row = self.store.write().await?.update_automation(p.tenant_id, id, &f, now).await?;
        match input.is_active {
            Some(true) if !row.is_active || republish => row = self.activate_row(p, row).await?,
            Some(false) if row.is_active => row = self.deactivate_row(p, row).await?,
            _ if republish => row = self.activate_row(p, row).await?,
            _ => {}
        }
        self.automation_view(row).await
    }

    pub async fn delete_automation(&self, p: &Principal, id: i64) -> Result<()> {
        p.require_private()?;
        p.require(Scope::AutomationsDelete)?;
        self.automation_row(p, id).await?;
        let mut tx = self.store.begin().await?;
        tx.delete_automation(p.tenant_id, id).await?;
        tx.commit().await?;
        tracing::info!(automation.id = id, "automation deleted");
        Ok(())
    }

    /// Saves seed 003's design. A draft may be incomplete; on an active automation the design
    /// must validate and is published as a new version.
    pub async fn save_design(&self, p: &Principal, id: i64, d: Design) -> Result<AutomationView> {
        self.update_automation(p, id, AutomationInput { design: Some(d), ..Default::default() }).await
    }

    pub async fn design(&self, p: &Principal, id: i64) -> Result<Value> {
        p.require_private()?;
        p.require(Scope::AutomationsRead)?;
        Ok(self.automation_row(p, id).await?.design.0)
    }

    /// Checks a design (and, when given, a trigger) without saving anything: every problem, with
    /// node ids.
    pub async fn validate_design(
        &self,
        p: &Principal,
        d: &Design,
        trigger: Option<(&str, &Map<String, Value>)>,
    ) -> Result<()> {
        p.require_private()?;
        p.require(Scope::AutomationsRead)?;
        let mut list = match design::compile(d) {
            Ok(plan) => self.check_references(p, &plan).await?,
            Err(list) => list,
        };
        if let Some((kind, config)) = trigger {
            if let Err(mut more) = trigger::parse(
                kind,
                &trigger::config_of(
                    &Value::Object(config.clone()),
                    &serde_json::to_value(d).expect("a design serialises"),
                ),
            ) {
                list.append(&mut more);
            }
        }
        if list.is_empty() {
            Ok(())
        } else {
            Err(problems(list))
        }
    }

    /// What compiles but points at things that do not exist: segments, templates, automations.
    async fn check_references(&self, p: &Principal, plan: &cairn_automations::Plan) -> Result<Vec<Problem>> {
        let mut out = Vec::new();
        let mut conn = self.store.read().await?;
        for node in &plan.order {
            let Some(Step::Action { action, .. }) = plan.steps.get(node) else { continue };
            let bad = |field: &str, message: String| Problem {
                node: Some(node.clone()),
                edge: None,
                field: format!("nodes.{node}.data.{field}"),
                message,
            };
            match action {
                Action::SendEmail { template: Some(t), .. } | Action::SendSms { template: Some(t), .. }
                    if conn.campaign(p.tenant_id, *t).await.is_err() =>
                {
                    out.push(bad("template_id", format!("campaign {t} does not exist")));
                }
                Action::SendEmail { template: Some(_), .. } | Action::SendSms { template: Some(_), .. } => {}
                Action::SendEmail { subject, body, .. } => {
                    if let Err(e) = cairn_campaigns::compile("email", subject.as_deref(), body.as_deref()) {
                        out.push(bad(if e.field == "subject" { "subject" } else { "body" }, template_problem(&e)));
                    }
                }
                Action::SendSms { message, .. } => {
                    if let Err(e) = cairn_campaigns::compile("sms", None, message.as_deref()) {
                        out.push(bad("message", template_problem(&e)));
                    }
                }
                Action::AddToStaticSegment(s) | Action::RemoveFromStaticSegment(s) => {
                    match conn.segment(p.tenant_id, *s).await {
                        Ok(seg) if seg.kind == "static" => {}
                        Ok(_) => out
                            .push(bad("segment_id", format!("segment {s} is dynamic: its filter decides its members"))),
                        Err(_) => out.push(bad("segment_id", format!("segment {s} does not exist"))),
                    }
                }
                Action::Enroll(a) if conn.automation(p.tenant_id, *a).await.is_err() => {
                    out.push(bad("automation_id", format!("automation {a} does not exist")));
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// Everything that must hold before a version is published.
    async fn check_activatable(
        &self,
        p: &Principal,
        row: &AutomationRow,
    ) -> Result<(cairn_automations::Plan, Trigger)> {
        let d: Design = serde_json::from_value(row.design.0.clone())
            .map_err(|e| ServiceError::invalid("design", format!("is not a design: {e}")))?;
        let mut list = Vec::new();
        let plan = match design::compile(&d) {
            Ok(plan) => {
                list.extend(self.check_references(p, &plan).await?);
                Some(plan)
            }
            Err(l) => {
                list.extend(l);
                None
            }
        };
        let trig = match trigger::parse(&row.trigger_type, &trigger::config_of(&row.trigger_config.0, &row.design.0)) {
            Ok(t) => Some(t),
            Err(l) => {
                list.extend(l);
                None
            }
        };
        if let Some(Trigger::SegmentEntered(s) | Trigger::SegmentExited(s) | Trigger::Schedule { segment: s, .. }) =
            &trig
        {
            if self.store.read().await?.segment(p.tenant_id, *s).await.is_err() {
                list.push(Problem {
                    node: None,
                    edge: None,
                    field: "trigger_config.segment_id".into(),
                    message: format!("segment {s} does not exist"),
                });
            }
        }
        match (plan, trig) {
            (Some(plan), Some(t)) if list.is_empty() => Ok((plan, t)),
            _ => Err(problems(list)),
        }
    }

    /// Publishes the current design as the next version and turns the automation on: binds
    /// each email and SMS step to a triggered campaign and each webhook step to an endpoint.
    async fn activate_row(&self, p: &Principal, row: AutomationRow) -> Result<AutomationRow> {
        let (plan, trig) = self.check_activatable(p, &row).await?;
        let d: Design = serde_json::from_value(row.design.0.clone()).expect("checked");
        let now = self.clock.now();
        let tz = cairn_segments::worker::time_zone(&mut self.store.read().await?, p.tenant_id).await?;
        let next_tick = trig.next_tick(now, tz);
        let mut listens = plan.waited_events();
        if let Trigger::Event { name, .. } = &trig {
            listens.push(name.clone());
        }
        let mut tx = self.store.begin().await?;
        let mut bindings = Map::new();
        for node in &plan.order {
            let Some(Step::Action { action, .. }) = plan.steps.get(node) else { continue };
            let label =
                d.nodes.iter().find(|n| &n.id == node).and_then(|n| n.data.get("label")).and_then(Value::as_str);
            let data = &d.nodes.iter().find(|n| &n.id == node).expect("compiled from it").data;
            let title = format!("{} · {}", row.name, label.unwrap_or(node));
            let id = match action {
                Action::SendEmail { subject, body, template } => {
                    let (subject, body) = match template {
                        Some(t) => {
                            let c = tx.campaign(p.tenant_id, *t).await?;
                            (c.subject, c.body)
                        }
                        None => (subject.clone(), body.clone()),
                    };
                    let f = CampaignFields {
                        name: title,
                        kind: "email".into(),
                        segment_id: None,
                        subject,
                        body,
                        from_name: text(data, "from_name"),
                        from_email: text(data, "from_email"),
                        reply_to: text(data, "reply_to"),
                        track_opens: data.get("track_opens").and_then(Value::as_bool).unwrap_or(true),
                        track_clicks: data.get("track_clicks").and_then(Value::as_bool).unwrap_or(true),
                        rate_limit: None,
                        require_consent: false,
                    };
                    tx.insert_triggered_campaign(p.tenant_id, row.id, &f, now).await?
                }
                Action::SendSms { message, template } => {
                    let body = match template {
                        Some(t) => tx.campaign(p.tenant_id, *t).await?.body,
                        None => message.clone(),
                    };
                    let f = CampaignFields {
                        name: title,
                        kind: "sms".into(),
                        body,
                        track_opens: false,
                        track_clicks: false,
                        ..Default::default()
                    };
                    tx.insert_triggered_campaign(p.tenant_id, row.id, &f, now).await?
                }
                Action::Webhook { url, .. } => {
                    let secret = text(data, "secret").unwrap_or_else(cairn_channels::signing::new_secret);
                    // Subscribed to no event: it receives this step's deliveries only.
                    tx.insert_webhook(p.tenant_id, url, "", &secret, now).await?.id
                }
                _ => continue,
            };
            bindings.insert(node.clone(), json!(id));
        }
        let version = tx.publish_automation(&row, &Value::Object(bindings), &listens, next_tick, now).await?;
        let row = tx.automation(p.tenant_id, row.id).await?;
        tx.commit().await?;
        tracing::info!(automation.id = row.id, version, "automation activated");
        self.wake_automations();
        Ok(row)
    }

    async fn deactivate_row(&self, p: &Principal, row: AutomationRow) -> Result<AutomationRow> {
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        tx.set_automation_active(p.tenant_id, row.id, false, None, now).await?;
        let row = tx.automation(p.tenant_id, row.id).await?;
        tx.commit().await?;
        tracing::info!(automation.id = row.id, "automation deactivated");
        Ok(row)
    }

    /// Turns an automation on: 400 with every problem (per node id) when its design or trigger
    /// is incomplete.
    pub async fn activate_automation(&self, p: &Principal, id: i64) -> Result<AutomationView> {
        p.require_private()?;
        p.require(Scope::AutomationsWrite)?;
        let row = self.automation_row(p, id).await?;
        let row = self.activate_row(p, row).await?;
        self.automation_view(row).await
    }

    /// Stops new enrollments; runs in flight go on to their end (cancel them with
    /// `cancel_runs`).
    pub async fn deactivate_automation(&self, p: &Principal, id: i64) -> Result<AutomationView> {
        p.require_private()?;
        p.require(Scope::AutomationsWrite)?;
        let row = self.automation_row(p, id).await?;
        let row = if row.is_active { self.deactivate_row(p, row).await? } else { row };
        self.automation_view(row).await
    }

    /// Enrolls customers by hand (manual trigger; any active automation accepts it). Returns the
    /// ids of the runs started (customers already in it, by its re-entry policy, are left out).
    pub async fn enroll(&self, p: &Principal, id: i64, customers: &[i64]) -> Result<Vec<(i64, i64)>> {
        p.require_private()?;
        p.require(Scope::AutomationsWrite)?;
        if customers.is_empty() || customers.len() > 1_000 {
            return Err(ServiceError::invalid("customer_ids", "must list 1 to 1000 customer ids"));
        }
        let row = self.automation_row(p, id).await?;
        let found = self.store.read().await?.customers_by_ids(p.tenant_id, customers).await?;
        if let Some(missing) = customers.iter().find(|c| !found.iter().any(|f| f.id.0 == **c)) {
            return Err(ServiceError::invalid("customer_ids", format!("customer {missing} does not exist")));
        }
        let key = format!("manual:{}", cairn_domain::credential::generate_token(""));
        self.start(&row, found.iter().map(|c| c.id.0).collect(), &key, json!({"type": "manual"})).await
    }

    async fn start(
        &self,
        row: &AutomationRow,
        customers: Vec<i64>,
        key: &str,
        trigger: Value,
    ) -> Result<Vec<(i64, i64)>> {
        let Some(version) = row.active_version.filter(|_| row.is_active) else {
            return Err(ServiceError::Conflict("the automation is not active: activate it first".into()));
        };
        let v = self.store.read().await?.automation_version(row.id, version).await?;
        let d: Design = serde_json::from_value(v.design.0).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let plan =
            design::compile(&d).map_err(|_| ServiceError::Internal("the active version does not compile".into()))?;
        let now = self.clock.now();
        let runs: Vec<_> = customers
            .iter()
            .map(|c| run_for(row, version, &plan.trigger, *c, key, json!({"trigger": trigger})))
            .collect();
        let mut tx = self.store.begin().await?;
        let inserted = start_runs(&mut tx, &runs, now).await?;
        tx.commit().await?;
        let started: Vec<(i64, i64)> = inserted.iter().map(|(id, i)| (runs[*i].customer_id, *id)).collect();
        self.wake_automations();
        Ok(started)
    }

    /// The inbound URL of a webhook trigger: enrolls the customer the body names
    /// (`customer_id`, `email` or `user_id`). The token in the URL is the credential.
    /// A webhook trigger's inbound call. When the workspace has an inbound signing secret the
    /// call must be signed (seed 000's rules, docs/webhooks.md).
    pub async fn webhook_enroll(
        &self,
        token: &str,
        sig: &crate::inbound::InboundSignature,
        raw: &[u8],
    ) -> Result<Vec<(i64, i64)>> {
        let row = found(self.store.read().await?.automation_by_token(token).await, "automation")?;
        if row.trigger_type != "webhook" {
            return Err(ServiceError::NotFound("automation"));
        }
        let tenant = TenantId(row.tenant_id);
        let delivery = self.verify_inbound(tenant, sig, raw).await?;
        let body: Value = serde_json::from_slice(raw)
            .map_err(|e| ServiceError::invalid("body", format!("is not valid JSON: {e}")))?;
        let started = self.webhook_enroll_body(&row, tenant, &body).await?;
        if let Some(id) = delivery {
            self.remember_delivery(tenant, &id).await?;
        }
        Ok(started)
    }

    async fn webhook_enroll_body(
        &self,
        row: &cairn_store::automations::AutomationRow,
        tenant: TenantId,
        body: &Value,
    ) -> Result<Vec<(i64, i64)>> {
        let customer: Customer = if let Some(id) = body.get("customer_id").and_then(Value::as_i64) {
            found(self.store.read().await?.customer(tenant, CustomerId(id)).await, "customer")?
        } else if let Some(email) = body.get("email").and_then(Value::as_str) {
            let email = cairn_domain::Email::parse("email", email)?;
            self.customer_by_identity(tenant, IdentityKind::Email, email.as_str()).await?
        } else if let Some(user) = body.get("user_id").and_then(Value::as_str) {
            self.customer_by_identity(tenant, IdentityKind::ExternalId, user).await?
        } else {
            return Err(ServiceError::invalid("customer_id", "name the customer: customer_id, email or user_id"));
        };
        let key = match body.get("idempotency_key").and_then(Value::as_str) {
            Some(k) if !k.is_empty() && k.len() <= 200 => format!("webhook:{k}"),
            _ => format!("webhook:{}", cairn_domain::credential::generate_token("")),
        };
        let data = body.get("data").cloned().unwrap_or(Value::Null);
        self.start(row, vec![customer.id.0], &key, json!({"type": "webhook", "data": data})).await
    }

    async fn customer_by_identity(&self, tenant: TenantId, kind: IdentityKind, key: &str) -> Result<Customer> {
        let mut conn = self.store.read().await?;
        let hit = conn.customers_by_identities(tenant, kind, &[key.to_string()]).await?;
        let Some((_, f)) = hit.into_iter().next() else { return Err(ServiceError::NotFound("customer")) };
        found(conn.customer(tenant, f.id).await, "customer")
    }

    pub async fn automation_runs(
        &self,
        p: &Principal,
        id: i64,
        status: Option<&str>,
        node: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<RunRow>, i64)> {
        p.require_private()?;
        p.require(Scope::AutomationsRead)?;
        self.automation_row(p, id).await?;
        if let Some(s) = status {
            if !["active", "waiting", "completed", "exited", "failed", "cancelled"].contains(&s) {
                return Err(ServiceError::invalid(
                    "status",
                    "must be active, waiting, completed, exited, failed or cancelled",
                ));
            }
        }
        Ok(self.store.read().await?.list_runs(id, status, node, limit, offset).await?)
    }

    pub async fn automation_run(&self, p: &Principal, run: i64) -> Result<RunView> {
        p.require_private()?;
        p.require(Scope::AutomationsRead)?;
        let mut conn = self.store.read().await?;
        let run = found(conn.run(p.tenant_id, run).await, "run")?;
        let steps = conn.run_steps(run.id).await?;
        Ok(RunView { run, steps })
    }

    pub async fn customer_automation_runs(
        &self,
        p: &Principal,
        customer: i64,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<RunRow>, i64)> {
        p.require_private()?;
        p.require(Scope::AutomationsRead)?;
        found(self.store.read().await?.customer(p.tenant_id, CustomerId(customer)).await, "customer")?;
        Ok(self.store.read().await?.customer_runs(p.tenant_id, customer, limit, offset).await?)
    }

    /// Per-node counts (entered, waiting, completed, failed) for every node of the current
    /// design.
    pub async fn node_counts(&self, p: &Principal, id: i64) -> Result<Vec<(String, NodeCounts)>> {
        p.require_private()?;
        p.require(Scope::AutomationsRead)?;
        let row = self.automation_row(p, id).await?;
        let mut counts = self.store.read().await?.node_counts(id).await?;
        let d: Design = serde_json::from_value(row.design.0).unwrap_or_default();
        let mut out: Vec<(String, NodeCounts)> =
            d.nodes.iter().map(|n| (n.id.clone(), counts.remove(&n.id).unwrap_or_default())).collect();
        // Nodes of older versions that runs still stand at.
        let mut rest: Vec<_> = counts.into_iter().collect();
        rest.sort_by(|a, b| a.0.cmp(&b.0));
        out.extend(rest);
        Ok(out)
    }

    /// Moves the runs in flight on `from_version` to the active version, each from its node to
    /// the mapped node (runs at unmapped nodes stay where they are).
    pub async fn migrate_runs(
        &self,
        p: &Principal,
        id: i64,
        from_version: i64,
        mapping: &Map<String, Value>,
    ) -> Result<u64> {
        p.require_private()?;
        p.require(Scope::AutomationsWrite)?;
        let row = self.automation_row(p, id).await?;
        let Some(to) = row.active_version else {
            return Err(ServiceError::Conflict("the automation is not active".into()));
        };
        if from_version == to || from_version < 1 || from_version > row.version {
            return Err(ServiceError::invalid("from_version", format!("must be an earlier version (1 to {})", to - 1)));
        }
        let v = self.store.read().await?.automation_version(id, to).await?;
        let d: Design = serde_json::from_value(v.design.0).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let mut pairs = Vec::new();
        for (old, new) in mapping {
            let Some(new) = new.as_str() else {
                return Err(ServiceError::invalid(&format!("mapping.{old}"), "must name a node of the active version"));
            };
            if !d.nodes.iter().any(|n| n.id == new) {
                return Err(ServiceError::invalid(
                    &format!("mapping.{old}"),
                    format!("{new:?} is not a node of version {to}"),
                ));
            }
            pairs.push((old.clone(), new.to_string()));
        }
        let now = self.clock.now();
        let n = self.store.write().await?.migrate_runs(id, from_version, to, &pairs, now).await?;
        tracing::info!(automation.id = id, from_version, to, runs = n, "runs migrated");
        self.wake_automations();
        Ok(n)
    }

    /// Cancels the runs in flight (of one customer, or all).
    pub async fn cancel_automation_runs(&self, p: &Principal, id: i64, customer: Option<i64>) -> Result<u64> {
        p.require_private()?;
        p.require(Scope::AutomationsWrite)?;
        self.automation_row(p, id).await?;
        Ok(self.store.write().await?.cancel_runs(id, customer, self.clock.now()).await?)
    }
}

fn text(data: &Map<String, Value>, key: &str) -> Option<String> {
    data.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

fn template_problem(e: &cairn_campaigns::TemplateError) -> String {
    match (e.line, e.column) {
        (Some(l), Some(c)) => format!("template error at line {l}, column {c}: {}", e.message),
        (Some(l), None) => format!("template error at line {l}: {}", e.message),
        _ => format!("template error: {}", e.message),
    }
}

fn sqlx_json(v: Value) -> Json<Value> {
    Json(v)
}

impl From<FieldError> for crate::Problem {
    fn from(e: FieldError) -> Self {
        crate::Problem { node: None, edge: None, field: e.field, message: e.message }
    }
}

//! Opportunities (seed 004) — seed 000's and seed 001's deals — and the pipelines they move
//! through: several per workspace, ordered stages with win probabilities, a Kanban board.

use cairn_domain::{Scope, TenantId};
use cairn_store::{
    crm::{
        opportunities::{Opportunity, OpportunityFilter},
        records::ActivityFilter,
        settings::{Pipeline, Stage},
        EntityType,
    },
    Conn,
};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{body::Body, check_owner, emit, fields::apply_custom, require};
use crate::{found, Principal, Result, ServiceError, Services};

pub const STATUSES: &[&str] = &["open", "won", "lost"];
pub const PRIORITIES: &[&str] = &["low", "medium", "high", "urgent"];

/// The stages a workspace's first pipeline starts with.
pub const DEFAULT_STAGES: &[(&str, &str, i32)] = &[
    ("discovery", "Discovery", 10),
    ("qualification", "Qualification", 25),
    ("proposal", "Proposal", 50),
    ("negotiation", "Negotiation", 75),
];

/// A pipeline with its stages.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PipelineView {
    #[serde(flatten)]
    pub pipeline: Pipeline,
    pub stages: Vec<Stage>,
}

fn stage_key(name: &str) -> String {
    cairn_domain::text::slugify(name).replace('-', "_")
}

/// An opportunity's webhook payload: seed 001's deal (`title`, `number`, `price`, `client`,
/// `stageId`, `ownerName`, …) and seed 004's fields (`opportunity_id`, `name`, `value`, `stage`).
pub(crate) async fn payload(c: &mut Conn, tenant: TenantId, o: &Opportunity) -> Result<Value> {
    let stages = c.stages(o.pipeline_id).await?;
    let stage = stages.iter().find(|s| s.id == o.stage_id);
    let client = match o.prospect_id {
        Some(id) => c.prospect(tenant, id).await.ok().map(|x| super::prospects::payload(&x)),
        None => None,
    };
    let lead_name = match o.lead_id {
        Some(id) => c.lead(tenant, id).await.ok().map(|l| l.name()),
        None => None,
    };
    let owner = c.member_name(tenant, o.assigned_to).await?;
    Ok(json!({
        "opportunity_id": o.id,
        "id": o.id,
        "name": o.name,
        "title": o.name,
        "number": super::number("DL", o.id),
        "value": o.value,
        "price": o.value,
        "currency": o.currency,
        "status": o.status,
        "priority": o.priority.as_deref().map(str::to_uppercase),
        "probability": effective_probability(o, stage),
        "expected_close_date": o.expected_close_date,
        "expectedCloseDate": o.expected_close_date.as_deref().map(|d| format!("{d}T00:00:00.000Z")),
        "close_reason": o.close_reason,
        "client": client,
        "prospect_id": o.prospect_id,
        "contact_id": o.contact_id,
        "stage": stage.map(|s| s.name.clone()),
        "stage_key": o.stage,
        "stageId": o.stage_id,
        "pipelineId": o.pipeline_id,
        "source": o.source,
        "leadId": o.lead_id,
        "leadName": lead_name,
        "ownerId": o.assigned_to,
        "ownerName": owner,
        "customFields": o.custom_fields,
        "createdAt": o.created_at,
        "updated_at": o.updated_at,
    }))
}

pub fn effective_probability(o: &Opportunity, stage: Option<&Stage>) -> i32 {
    match o.status.as_str() {
        "won" => 100,
        "lost" => 0,
        _ => o.probability.or(stage.map(|s| s.probability)).unwrap_or(0),
    }
}

/// An opportunity with what its detail view adds.
#[derive(Debug, serde::Serialize)]
pub struct OpportunityDetail {
    #[serde(flatten)]
    pub opportunity: Opportunity,
    pub opportunity_id: i64,
    pub number: String,
    pub activities: Vec<cairn_store::crm::records::Activity>,
    pub notes: Vec<cairn_store::crm::records::Note>,
    pub prospect: Option<cairn_store::crm::prospects::Prospect>,
    pub contact: Option<Value>,
}

/// What an update changed that has its own event.
struct Moves {
    stage: bool,
    status: bool,
}

impl Services {
    /// The workspace's default pipeline of `kind`, created with the default stages on first use.
    pub(crate) async fn default_pipeline(&self, c: &mut Conn, tenant: TenantId, kind: &str) -> Result<PipelineView> {
        let pipelines = c.pipelines(tenant, Some(kind)).await?;
        if let Some(pl) = pipelines.iter().find(|p| p.is_default).or(pipelines.first()) {
            let stages = c.stages(pl.id).await?;
            return Ok(PipelineView { pipeline: pl.clone(), stages });
        }
        let now = self.clock.now();
        let (name, defaults): (&str, Vec<(&str, &str, i32)>) = if kind == "lifecycle" {
            ("Contact lifecycle", super::people::DEFAULT_LIFECYCLE.iter().map(|(k, n)| (*k, *n, 0)).collect())
        } else {
            ("Sales pipeline", DEFAULT_STAGES.to_vec())
        };
        let pl = c.insert_pipeline(tenant, kind, name, true, now).await?;
        let stages: Vec<Stage> = defaults
            .iter()
            .enumerate()
            .map(|(i, (k, n, pr))| Stage {
                id: 0,
                pipeline_id: pl.id,
                key: k.to_string(),
                name: n.to_string(),
                position: i as i32,
                probability: *pr,
            })
            .collect();
        let stages = c.replace_stages(tenant, pl.id, &stages).await?;
        Ok(PipelineView { pipeline: pl, stages })
    }

    async fn pipeline_of(&self, c: &mut Conn, tenant: TenantId, id: Option<i64>) -> Result<PipelineView> {
        match id {
            None => self.default_pipeline(c, tenant, "deals").await,
            Some(id) => {
                let pl = c
                    .pipeline(tenant, id)
                    .await
                    .map_err(|_| ServiceError::invalid("pipeline_id", format!("pipeline {id} does not exist")))?;
                if pl.kind != "deals" {
                    return Err(ServiceError::invalid(
                        "pipeline_id",
                        "is a lifecycle pipeline, not an opportunity pipeline",
                    ));
                }
                let stages = c.stages(id).await?;
                Ok(PipelineView { pipeline: pl, stages })
            }
        }
    }

    /// A new open opportunity on a pipeline (the default one when `pipeline` is none), at
    /// `stage` (a key, name or id) or the first stage.
    pub(crate) async fn blank_opportunity(
        &self,
        c: &mut Conn,
        tenant: TenantId,
        name: &str,
        pipeline: Option<i64>,
        stage: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Opportunity> {
        let pl = self.pipeline_of(c, tenant, pipeline).await?;
        let stage = find_stage(&pl.stages, stage)?;
        Ok(Opportunity {
            id: 0,
            tenant_id: tenant.0,
            name: name.into(),
            prospect_id: None,
            contact_id: None,
            lead_id: None,
            pipeline_id: pl.pipeline.id,
            stage_id: stage.id,
            stage: stage.key.clone(),
            value: 0.0,
            currency: None,
            probability: None,
            expected_close_date: None,
            status: "open".into(),
            priority: None,
            source: None,
            assigned_to: None,
            close_reason: None,
            closed_at: None,
            custom_fields: json!({}),
            created_at: now,
            updated_at: now,
        })
    }

    pub(crate) async fn insert_opportunity_in(
        &self,
        c: &mut Conn,
        tenant: TenantId,
        o: Opportunity,
        now: DateTime<Utc>,
    ) -> Result<Opportunity> {
        let o = c.insert_opportunity(tenant, &o).await?;
        let body = payload(c, tenant, &o).await?;
        emit(c, tenant, "opportunity.created", &body, now).await?;
        Ok(o)
    }

    /// Reads a body into `o` (seed 004's names, seed 001's aliases), checking references.
    async fn apply_opportunity(
        &self,
        c: &mut Conn,
        tenant: TenantId,
        b: &mut Body,
        o: &mut Opportunity,
        now: DateTime<Utc>,
    ) -> Result<Moves> {
        b.alias("title", "name").alias("price", "value").alias("expectedCloseDate", "expected_close_date");
        b.alias("ownerId", "assigned_to").alias("clientId", "prospect_id").alias("leadId", "lead_id");
        b.alias("stageId", "stage").alias("pipelineId", "pipeline_id").alias("customFields", "custom_fields");
        b.alias("reason", "close_reason").alias("lost_reason", "close_reason").alias("won_reason", "close_reason");
        b.alias("contactId", "contact_id").alias("person_id", "contact_id");
        if let Some(n) = b.required_text("name", 200)? {
            o.name = n;
        }
        if let Some(v) = b.num("value")? {
            let v = v.unwrap_or(0.0);
            if v < 0.0 {
                return Err(ServiceError::invalid("value", "must be at least 0"));
            }
            o.value = v;
        }
        super::body::set(&mut o.currency, b.text("currency", 3)?.map(|c| c.map(|c| c.to_uppercase())));
        if let Some(pr) = b.int("probability", 0, 100)? {
            o.probability = pr.map(|p| p as i32);
        }
        super::body::set(&mut o.expected_close_date, b.date("expected_close_date")?);
        if let Some(pr) = b.text("priority", 20)? {
            o.priority = match pr.map(|s| s.to_lowercase()) {
                Some(s) if PRIORITIES.contains(&s.as_str()) => Some(s),
                None => None,
                Some(_) => {
                    return Err(ServiceError::invalid("priority", format!("must be one of {}", PRIORITIES.join(", "))))
                }
            };
        }
        super::body::set(&mut o.source, b.text("source", 100)?);
        super::body::set(&mut o.assigned_to, b.int("assigned_to", 1, i64::MAX)?);
        for (key, ty) in
            [("prospect_id", EntityType::Prospect), ("contact_id", EntityType::Contact), ("lead_id", EntityType::Lead)]
        {
            if let Some(change) = b.int(key, 1, i64::MAX)? {
                if let Some(id) = change {
                    if !c.entity_exists(tenant, ty, id).await? {
                        return Err(ServiceError::invalid(key, format!("{} {id} does not exist", ty.as_str())));
                    }
                }
                match ty {
                    EntityType::Prospect => o.prospect_id = change,
                    EntityType::Contact => o.contact_id = change,
                    _ => o.lead_id = change,
                }
            }
        }
        let before_stage = o.stage_id;
        let pipeline = b.int("pipeline_id", 1, i64::MAX)?.flatten();
        let stage = b.text("stage", 100)?.flatten();
        if pipeline.is_some_and(|p| p != o.pipeline_id) || stage.is_some() {
            let pl = self.pipeline_of(c, tenant, pipeline.or(Some(o.pipeline_id))).await?;
            let s = find_stage(&pl.stages, stage.as_deref())?;
            o.pipeline_id = pl.pipeline.id;
            o.stage_id = s.id;
            o.stage = s.key.clone();
        }
        let before_status = o.status.clone();
        super::body::set(&mut o.close_reason, b.text("close_reason", 500)?);
        if let Some(s) = b.choice("status", STATUSES)? {
            if s != o.status {
                o.status = s;
                o.closed_at = (o.status != "open").then_some(now);
                if o.status == "open" {
                    o.close_reason = None;
                }
            }
        }
        let custom = b.object("custom_fields")?;
        apply_custom(c, tenant, EntityType::Opportunity, &mut o.custom_fields, custom, o.id == 0, "custom_fields")
            .await?;
        check_owner(c, tenant, "assigned_to", o.assigned_to).await?;
        Ok(Moves { stage: o.stage_id != before_stage, status: o.status != before_status })
    }

    pub async fn create_opportunity(&self, p: &Principal, body: Value) -> Result<Opportunity> {
        require(p, Scope::OpportunitiesWrite)?;
        let now = self.clock.now();
        let mut b = Body::new(body)?;
        b.alias("title", "name");
        let name = b.required_text("name", 200)?.ok_or_else(|| ServiceError::invalid("name", "is required"))?;
        b.alias("pipelineId", "pipeline_id").alias("stageId", "stage");
        let pipeline = b.int("pipeline_id", 1, i64::MAX)?.flatten();
        let stage = b.text("stage", 100)?.flatten();
        let mut tx = self.store.begin().await?;
        let mut o = self.blank_opportunity(&mut tx, p.tenant_id, &name, pipeline, stage.as_deref(), now).await?;
        let moves = self.apply_opportunity(&mut tx, p.tenant_id, &mut b, &mut o, now).await?;
        b.finish()?;
        let o = self.insert_opportunity_in(&mut tx, p.tenant_id, o, now).await?;
        if moves.status {
            let body = payload(&mut tx, p.tenant_id, &o).await?;
            emit(&mut tx, p.tenant_id, status_event(&o.status), &body, now).await?;
        }
        tx.commit().await?;
        Ok(o)
    }

    pub async fn opportunities(
        &self,
        p: &Principal,
        f: &OpportunityFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Opportunity>, i64)> {
        require(p, Scope::OpportunitiesRead)?;
        Ok(self.store.read().await?.list_opportunities(p.tenant_id, f, limit, offset).await?)
    }

    pub async fn opportunity(&self, p: &Principal, id: i64) -> Result<OpportunityDetail> {
        require(p, Scope::OpportunitiesRead)?;
        let mut c = self.store.read().await?;
        let o = found(c.opportunity(p.tenant_id, id).await, "opportunity")?;
        let af =
            ActivityFilter { entity_type: Some(EntityType::Opportunity), entity_id: Some(id), ..Default::default() };
        let (activities, _) = c.list_activities(p.tenant_id, &af, 50, 0).await?;
        let (notes, _) = c.list_notes(p.tenant_id, (Some(EntityType::Opportunity), Some(id)), 50, 0).await?;
        let prospect = match o.prospect_id {
            Some(x) => c.prospect(p.tenant_id, x).await.ok(),
            None => None,
        };
        let contact = match o.contact_id {
            Some(x) => c
                .person(p.tenant_id, cairn_domain::CustomerId(x))
                .await
                .ok()
                .map(|(cu, crm)| super::people::view(&cu, &crm)),
            None => None,
        };
        Ok(OpportunityDetail {
            opportunity_id: o.id,
            number: super::number("DL", o.id),
            opportunity: o,
            activities,
            notes,
            prospect,
            contact,
        })
    }

    pub async fn update_opportunity(&self, p: &Principal, id: i64, body: Value) -> Result<Opportunity> {
        require(p, Scope::OpportunitiesWrite)?;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let mut o = found(tx.opportunity(p.tenant_id, id).await, "opportunity")?;
        let mut b = Body::new(body)?;
        let moves = self.apply_opportunity(&mut tx, p.tenant_id, &mut b, &mut o, now).await?;
        b.finish()?;
        o.updated_at = now;
        let o = self.save_opportunity(&mut tx, p.tenant_id, o, moves, now).await?;
        tx.commit().await?;
        Ok(o)
    }

    async fn save_opportunity(
        &self,
        c: &mut Conn,
        tenant: TenantId,
        o: Opportunity,
        moves: Moves,
        now: DateTime<Utc>,
    ) -> Result<Opportunity> {
        let o = c.update_opportunity(tenant, &o).await?;
        let body = payload(c, tenant, &o).await?;
        emit(c, tenant, "deal.updated", &body, now).await?;
        if moves.stage {
            emit(c, tenant, "opportunity.stage_changed", &body, now).await?;
        }
        if moves.status {
            emit(c, tenant, status_event(&o.status), &body, now).await?;
        }
        Ok(o)
    }

    pub async fn delete_opportunity(&self, p: &Principal, id: i64) -> Result<()> {
        require(p, Scope::OpportunitiesDelete)?;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let o = found(tx.opportunity(p.tenant_id, id).await, "opportunity")?;
        let body = payload(&mut tx, p.tenant_id, &o).await?;
        tx.delete_attachments(p.tenant_id, EntityType::Opportunity, id).await?;
        tx.delete_opportunity(p.tenant_id, id).await?;
        emit(&mut tx, p.tenant_id, "deal.deleted", &body, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// `POST /v1/opportunities/{id}/advance-stage`: the next stage of its pipeline (or the one
    /// named by `stage`). An opportunity at the last stage is closed with `won`/`lost` instead.
    pub async fn advance_opportunity(&self, p: &Principal, id: i64, body: Value) -> Result<Opportunity> {
        require(p, Scope::OpportunitiesWrite)?;
        let mut b = Body::new(body)?;
        let target = b.text("stage", 100)?.flatten();
        b.finish()?;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let mut o = found(tx.opportunity(p.tenant_id, id).await, "opportunity")?;
        if o.status != "open" {
            return Err(ServiceError::Conflict(format!("opportunity {id} is {}; reopen it first", o.status)));
        }
        let stages = tx.stages(o.pipeline_id).await?;
        let next = match target {
            Some(t) => find_stage(&stages, Some(&t))?.clone(),
            None => {
                let at = stages.iter().position(|s| s.id == o.stage_id).unwrap_or(0);
                match stages.get(at + 1) {
                    Some(s) => s.clone(),
                    None => {
                        return Err(ServiceError::Conflict(format!(
                            "opportunity {id} is at the last stage; mark it won or lost"
                        )))
                    }
                }
            }
        };
        o.stage_id = next.id;
        o.stage = next.key;
        o.updated_at = now;
        let o = self.save_opportunity(&mut tx, p.tenant_id, o, Moves { stage: true, status: false }, now).await?;
        tx.commit().await?;
        Ok(o)
    }

    /// Marks an opportunity won or lost (`POST /v1/opportunities/{id}/won|lost` {reason}).
    pub async fn close_opportunity(&self, p: &Principal, id: i64, status: &str, body: Value) -> Result<Opportunity> {
        let mut b = Body::new(body)?;
        b.alias("reason", "close_reason").alias("lost_reason", "close_reason").alias("won_reason", "close_reason");
        let reason = b.text("close_reason", 500)?.flatten();
        b.finish()?;
        self.update_opportunity(p, id, json!({"status": status, "close_reason": reason})).await
    }

    pub async fn pipelines(&self, p: &Principal, kind: Option<&str>) -> Result<Vec<PipelineView>> {
        require(p, Scope::OpportunitiesRead)?;
        let mut tx = self.store.begin().await?;
        self.default_pipeline(&mut tx, p.tenant_id, "deals").await?;
        self.default_pipeline(&mut tx, p.tenant_id, "lifecycle").await?;
        let mut out = Vec::new();
        for pl in tx.pipelines(p.tenant_id, kind).await? {
            let stages = tx.stages(pl.id).await?;
            out.push(PipelineView { pipeline: pl, stages });
        }
        tx.commit().await?;
        Ok(out)
    }

    pub async fn pipeline(&self, p: &Principal, id: i64) -> Result<PipelineView> {
        require(p, Scope::OpportunitiesRead)?;
        let mut c = self.store.read().await?;
        let pipeline = found(c.pipeline(p.tenant_id, id).await, "pipeline")?;
        let stages = c.stages(id).await?;
        Ok(PipelineView { pipeline, stages })
    }

    /// `POST /v1/pipelines` {name, kind?, is_default?, stages: [{key?, name, probability}]}.
    pub async fn create_pipeline(&self, p: &Principal, body: Value) -> Result<PipelineView> {
        require(p, Scope::SettingsManage)?;
        let mut b = Body::new(body)?;
        let name = b.required_text("name", 100)?.ok_or_else(|| ServiceError::invalid("name", "is required"))?;
        let kind = b.choice("kind", &["deals", "lifecycle"])?.unwrap_or_else(|| "deals".into());
        let is_default = b.flag("is_default")?.unwrap_or(false);
        let stages = read_stages(b.take("stages"), &[])?;
        b.finish()?;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        if kind == "lifecycle" && !tx.pipelines(p.tenant_id, Some("lifecycle")).await?.is_empty() {
            return Err(ServiceError::Conflict("a workspace has one lifecycle; change its stages with PUT".into()));
        }
        let pl = tx.insert_pipeline(p.tenant_id, &kind, &name, false, now).await.map_err(|e| match e {
            cairn_store::StoreError::Duplicate(_) => {
                ServiceError::duplicate("name", "a pipeline with this name exists")
            }
            e => e.into(),
        })?;
        if is_default {
            tx.rename_pipeline(p.tenant_id, pl.id, &name, true, now).await?;
        }
        tx.replace_stages(p.tenant_id, pl.id, &stages).await?;
        tx.commit().await?;
        self.pipeline(p, pl.id).await
    }

    /// `PUT /v1/pipelines/{id}` {name?, is_default?, stages?}: stages given by `id` keep their
    /// opportunities; a stage left out must be empty.
    pub async fn update_pipeline(&self, p: &Principal, id: i64, body: Value) -> Result<PipelineView> {
        require(p, Scope::SettingsManage)?;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let pl = found(tx.pipeline(p.tenant_id, id).await, "pipeline")?;
        let current = tx.stages(id).await?;
        let mut b = Body::new(body)?;
        let name = b.required_text("name", 100)?.unwrap_or(pl.name.clone());
        let is_default = b.flag("is_default")?.unwrap_or(pl.is_default);
        let stages = b.take("stages");
        b.finish()?;
        tx.rename_pipeline(p.tenant_id, id, &name, is_default, now).await?;
        if stages.is_some() {
            let stages = read_stages(stages, &current)?;
            for gone in current.iter().filter(|s| !stages.iter().any(|n| n.id == s.id)) {
                if tx.stage_usage(gone.id).await? > 0 {
                    return Err(ServiceError::invalid(
                        "stages",
                        format!("stage {:?} still has opportunities; move them first", gone.key),
                    ));
                }
            }
            tx.replace_stages(p.tenant_id, id, &stages).await?;
        }
        tx.commit().await?;
        self.pipeline(p, id).await
    }

    pub async fn delete_pipeline(&self, p: &Principal, id: i64) -> Result<()> {
        require(p, Scope::SettingsManage)?;
        let mut tx = self.store.begin().await?;
        let pl = found(tx.pipeline(p.tenant_id, id).await, "pipeline")?;
        if tx.pipeline_usage(id).await? > 0 {
            return Err(ServiceError::Conflict(format!("pipeline {:?} still has opportunities", pl.name)));
        }
        tx.delete_row(p.tenant_id, cairn_store::crm::records::Table::Pipelines, id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// `GET /v1/pipelines/{id}/board`: each stage with its open opportunities (highest value
    /// first, at most `per_stage`) and totals: count, value, and value weighted by probability.
    pub async fn board(&self, p: &Principal, id: i64, per_stage: i64) -> Result<Value> {
        require(p, Scope::OpportunitiesRead)?;
        let mut c = self.store.read().await?;
        let pipeline = found(c.pipeline(p.tenant_id, id).await, "pipeline")?;
        let stages = c.stages(id).await?;
        let (deals, totals) = c.board(p.tenant_id, id, per_stage).await?;
        let mut columns = Vec::new();
        let (mut all_count, mut all_value, mut all_weighted) = (0i64, 0f64, 0f64);
        for s in &stages {
            let (count, value) = totals.iter().find(|t| t.0 == s.id).map(|t| (t.1, t.2)).unwrap_or((0, 0.0));
            let items: Vec<&Opportunity> = deals.iter().filter(|o| o.stage_id == s.id).collect();
            // Weighted by each deal's own probability where it has one: all of them are loaded
            // when the column is complete, otherwise the stage's probability stands in.
            let weighted = if items.len() as i64 == count {
                items.iter().map(|o| o.value * effective_probability(o, Some(s)) as f64 / 100.0).sum()
            } else {
                value * s.probability as f64 / 100.0
            };
            all_count += count;
            all_value += value;
            all_weighted += weighted;
            columns.push(json!({
                "stage": s,
                "count": count,
                "total_value": value,
                "weighted_value": weighted,
                "opportunities": items,
            }));
        }
        Ok(json!({
            "pipeline": pipeline,
            "stages": columns,
            "totals": {"count": all_count, "total_value": all_value, "weighted_value": all_weighted},
        }))
    }
}

fn status_event(status: &str) -> &'static str {
    match status {
        "won" => "opportunity.won",
        "lost" => "opportunity.lost",
        _ => "deal.status_changed",
    }
}

/// A stage by key, name or id; the first stage when none is named.
fn find_stage<'a>(stages: &'a [Stage], want: Option<&str>) -> Result<&'a Stage> {
    let Some(w) = want else {
        return stages.first().ok_or_else(|| ServiceError::invalid("stage", "the pipeline has no stages"));
    };
    let key = stage_key(w);
    stages
        .iter()
        .find(|s| s.key == w || s.key == key || s.name.eq_ignore_ascii_case(w) || s.id.to_string() == w)
        .ok_or_else(|| {
            ServiceError::invalid(
                "stage",
                format!(
                    "no stage {w:?}; the pipeline has {}",
                    stages.iter().map(|s| s.key.as_str()).collect::<Vec<_>>().join(", ")
                ),
            )
        })
}

/// `[{id?, key?, name, probability?}]` in order.
fn read_stages(v: Option<Value>, current: &[Stage]) -> Result<Vec<Stage>> {
    let Some(Value::Array(items)) = v else {
        return Err(ServiceError::invalid("stages", "must be a list of at least one stage"));
    };
    if items.is_empty() || items.len() > 50 {
        return Err(ServiceError::invalid("stages", "must hold 1 to 50 stages"));
    }
    let mut out: Vec<Stage> = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let field = format!("stages[{i}]");
        let mut b = Body::new(item).map_err(|_| ServiceError::invalid(&field, "must be an object"))?;
        let id = b
            .int("id", 1, i64::MAX)
            .map_err(|_| ServiceError::invalid(&format!("{field}.id"), "must be a stage id"))?
            .flatten();
        if let Some(id) = id {
            if !current.iter().any(|s| s.id == id) {
                return Err(ServiceError::invalid(
                    &format!("{field}.id"),
                    format!("stage {id} is not in this pipeline"),
                ));
            }
        }
        let name = b
            .required_text("name", 100)
            .map_err(|_| ServiceError::invalid(&format!("{field}.name"), "must be 1 to 100 characters"))?;
        let name = name.ok_or_else(|| ServiceError::invalid(&format!("{field}.name"), "is required"))?;
        let key = b.text("key", 50)?.flatten().map(|k| stage_key(&k)).unwrap_or_else(|| stage_key(&name));
        if key.is_empty() {
            return Err(ServiceError::invalid(&format!("{field}.key"), "must contain a letter or digit"));
        }
        let probability = b
            .int("probability", 0, 100)
            .map_err(|_| ServiceError::invalid(&format!("{field}.probability"), "must be an integer from 0 to 100"))?
            .flatten()
            .unwrap_or(0) as i32;
        b.finish().map_err(|e| match e {
            ServiceError::Invalid(fe) => ServiceError::invalid(&format!("{field}.{}", fe.field), fe.message),
            e => e,
        })?;
        if out.iter().any(|s| s.key == key) {
            return Err(ServiceError::invalid(&format!("{field}.key"), format!("{key:?} is used twice")));
        }
        out.push(Stage { id: id.unwrap_or(0), pipeline_id: 0, key, name, position: i as i32, probability });
    }
    Ok(out)
}

//! Leads (seed 004): create (seed 004's body, `form_type` and `raw_payload` included), list with
//! seed 004's filters, read with activities, notes and linked entities, update, delete, convert.

use cairn_domain::{Email, Scope, TenantId};
use cairn_store::{
    crm::{
        leads::{Lead, LeadFilter},
        records::{Activity, ActivityFilter, Note},
        EntityType,
    },
    inbound::CrmActivity,
    Conn,
};
use serde_json::{json, Value};

use super::{body::Body, check_owner, emit, fields::apply_custom, require, title_case};
use crate::{found, Principal, Result, ServiceError, Services};

pub const STATUSES: &[&str] = &["new", "contacted", "qualified", "unqualified", "converted"];

/// A lead's webhook payload: seed 004's fields (`lead_id`, `email`, `source`) and seed 001's
/// (`id`, `name`, `mobile`, `stage`, `ownerName`, …).
pub fn payload(l: &Lead, owner_name: Option<&str>) -> Value {
    json!({
        "lead_id": l.id,
        "id": l.id,
        "name": l.name(),
        "first_name": l.first_name,
        "last_name": l.last_name,
        "email": l.email,
        "phone": l.phone,
        "mobile": l.phone,
        "secondaryMobile": null,
        "company_name": l.company_name,
        "title": l.title,
        "value": l.value,
        "source": l.source,
        "status": l.status,
        "stage": title_case(&l.status),
        "stageId": STATUSES.iter().position(|s| *s == l.status).map(|i| i + 1),
        "score": l.score,
        "form_type": l.form_type,
        "website": l.website,
        "archived": false,
        "customFields": l.custom_fields,
        "custom_fields": l.custom_fields,
        "ownerId": l.assigned_to,
        "assigned_to": l.assigned_to,
        "ownerName": owner_name,
        "customer_id": l.customer_id,
        "createdAt": l.created_at,
        "created_at": l.created_at,
        "updated_at": l.updated_at,
    })
}

/// A lead with what its detail view adds.
#[derive(Debug, serde::Serialize)]
pub struct LeadDetail {
    #[serde(flatten)]
    pub lead: Lead,
    pub lead_id: i64,
    /// Activities logged against the lead, newest first (at most 50).
    pub activities: Vec<Activity>,
    pub notes: Vec<Note>,
    /// Events an external CRM sent about the lead (seed 002's webhook), newest first (at most 50).
    pub crm_activity: Vec<CrmActivity>,
    /// The customer profile, contact, prospect account and opportunity the lead is linked to.
    pub linked: Value,
    /// The linked profile's most recent tracked events (at most 20): what the lead did on the
    /// website and in the product.
    pub recent_events: Vec<Value>,
}

/// Reads a lead's fields from a body into `l`. Returns the custom field changes.
pub(crate) fn apply_body(b: &mut Body, l: &mut Lead, creating: bool) -> Result<Option<Value>> {
    b.alias("firstName", "first_name").alias("lastName", "last_name").alias("company", "company_name");
    b.alias("mobile", "phone").alias("ownerId", "assigned_to").alias("customFields", "custom_fields");
    b.alias("formType", "form_type").alias("rawPayload", "raw_payload").alias("crmLeadId", "crm_lead_id");
    if b.has("name") && !b.has("first_name") && !b.has("last_name") {
        // Seed 001's single `name`: the last word is the last name.
        if let Some(Some(name)) = b.text("name", 200)? {
            match name.rsplit_once(' ') {
                Some((first, last)) => {
                    l.first_name = Some(first.to_string());
                    l.last_name = Some(last.to_string());
                }
                None => l.first_name = Some(name),
            }
        }
    }
    b.take("name");
    super::body::set(&mut l.first_name, b.text("first_name", 100)?);
    super::body::set(&mut l.last_name, b.text("last_name", 100)?);
    if let Some(email) = b.text("email", 254)? {
        l.email = email.map(|e| Email::parse("email", &e).map(Email::into_string)).transpose()?;
    }
    if let Some(phone) = b.text("phone", 40)? {
        if let Some(ph) = &phone {
            cairn_domain::text::phone("phone", ph)?;
        }
        l.phone = phone;
    }
    super::body::set(&mut l.company_name, b.text("company_name", 200)?);
    super::body::set(&mut l.title, b.text("title", 200)?);
    super::body::set(&mut l.website, b.text("website", 2048)?);
    if let Some(status) = b.choice("status", STATUSES)? {
        if status == "converted" && l.status != "converted" {
            return Err(ServiceError::invalid("status", "use POST /v1/leads/{id}/convert to convert a lead"));
        }
        l.status = status;
    }
    super::body::set(&mut l.source, b.text("source", 100)?);
    super::body::set(&mut l.form_type, b.text("form_type", 100)?);
    super::body::set(&mut l.crm_lead_id, b.text("crm_lead_id", 200)?);
    if let Some(raw) = b.take("raw_payload") {
        if raw.to_string().len() > 64 * 1024 {
            return Err(ServiceError::invalid("raw_payload", "must be at most 64 KB as JSON"));
        }
        l.raw_payload = (!raw.is_null()).then_some(raw);
    }
    if let Some(score) = b.int("score", 0, 100)? {
        l.score = score.map(|s| s as i32);
    }
    super::body::set(&mut l.value, b.num("value")?);
    super::body::set(&mut l.assigned_to, b.int("assigned_to", 1, i64::MAX)?);
    let custom = b.object("custom_fields")?;
    if creating && l.first_name.is_none() && l.last_name.is_none() && l.email.is_none() && l.phone.is_none() {
        return Err(ServiceError::invalid("email", "a lead needs a name, an email or a phone"));
    }
    Ok(custom)
}

/// Checks the references of a lead about to be written and links its profile.
pub(crate) async fn prepare_lead(
    c: &mut Conn,
    tenant: TenantId,
    l: &mut Lead,
    custom: Option<Value>,
    creating: bool,
) -> Result<Option<String>> {
    apply_custom(c, tenant, EntityType::Lead, &mut l.custom_fields, custom, creating, "custom_fields").await?;
    let owner = check_owner(c, tenant, "assigned_to", l.assigned_to).await?;
    if l.customer_id.is_none() || creating {
        l.customer_id = super::customer_by_email(c, tenant, l.email.as_deref()).await?;
    }
    Ok(owner)
}

pub(crate) fn blank_lead(tenant: TenantId, now: chrono::DateTime<chrono::Utc>) -> Lead {
    Lead {
        id: 0,
        tenant_id: tenant.0,
        first_name: None,
        last_name: None,
        email: None,
        phone: None,
        company_name: None,
        title: None,
        website: None,
        status: "new".into(),
        source: None,
        form_type: None,
        raw_payload: None,
        score: None,
        value: None,
        assigned_to: None,
        customer_id: None,
        custom_fields: json!({}),
        contact_id: None,
        prospect_id: None,
        opportunity_id: None,
        crm_lead_id: None,
        converted_at: None,
        created_at: now,
        updated_at: now,
    }
}

/// What converting a lead created.
#[derive(Debug, serde::Serialize)]
pub struct Conversion {
    pub lead_id: i64,
    pub contact_id: Option<i64>,
    pub prospect_id: Option<i64>,
    pub opportunity_id: Option<i64>,
    pub lead_status: String,
}

impl Services {
    pub async fn create_lead(&self, p: &Principal, body: Value) -> Result<Lead> {
        require(p, Scope::LeadsWrite)?;
        let now = self.clock.now();
        let mut l = blank_lead(p.tenant_id, now);
        let mut b = Body::new(body)?;
        let custom = apply_body(&mut b, &mut l, true)?;
        b.finish()?;
        let mut tx = self.store.begin().await?;
        let owner = prepare_lead(&mut tx, p.tenant_id, &mut l, custom, true).await?;
        let l = tx.insert_lead(p.tenant_id, &l).await?;
        emit(&mut tx, p.tenant_id, "lead.created", &payload(&l, owner.as_deref()), now).await?;
        tx.commit().await?;
        Ok(l)
    }

    pub async fn leads(
        &self,
        p: &Principal,
        filter: &LeadFilter,
        sort: &str,
        descending: bool,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Lead>, i64)> {
        require(p, Scope::LeadsRead)?;
        Ok(self.store.read().await?.list_leads(p.tenant_id, filter, sort, descending, limit, offset).await?)
    }

    pub async fn lead(&self, p: &Principal, id: i64) -> Result<LeadDetail> {
        require(p, Scope::LeadsRead)?;
        let mut c = self.store.read().await?;
        let mut lead = found(c.lead(p.tenant_id, id).await, "lead")?;
        if lead.customer_id.is_none() {
            // The profile may have appeared after the lead (a visitor who identified later).
            lead.customer_id = super::customer_by_email(&mut c, p.tenant_id, lead.email.as_deref()).await?;
        }
        let filter = ActivityFilter { entity_type: Some(EntityType::Lead), entity_id: Some(id), ..Default::default() };
        let (activities, _) = c.list_activities(p.tenant_id, &filter, 50, 0).await?;
        let (notes, _) = c.list_notes(p.tenant_id, (Some(EntityType::Lead), Some(id)), 50, 0).await?;
        let crm_activity = c.crm_activities(p.tenant_id, id, 50).await?;
        let mut customer = Value::Null;
        let mut recent_events = Vec::new();
        if let Some(cid) = lead.customer_id {
            let cid = cairn_domain::CustomerId(cid);
            if let Ok(profile) = c.customer(p.tenant_id, cid).await {
                let scores = c.scores_for(p.tenant_id, &[cid]).await?.pop();
                customer = json!({
                    "id": profile.id,
                    "email": profile.email,
                    "name": profile.name,
                    "last_seen_at": profile.last_seen_at,
                    "rfm_segment": scores.as_ref().map(|s| s.rfm_segment.clone()),
                    "rfm_score": scores.as_ref().map(|s| s.rfm_score),
                    "clv_total": scores.as_ref().map(|s| s.clv_total),
                    "clv_predicted": scores.as_ref().map(|s| s.clv_predicted),
                });
                let filter = cairn_events::EventFilter::default();
                let (events, _) = self.events.customer_events(p.tenant_id, cid, &filter, 20, 0).await?;
                recent_events = events
                    .into_iter()
                    .map(|e| json!({"event": e.name, "properties": e.properties, "timestamp": e.timestamp}))
                    .collect();
            }
        }
        let prospect = match lead.prospect_id {
            Some(pid) => {
                c.prospect(p.tenant_id, pid).await.ok().map(|x| json!({"id": x.id, "name": x.name, "status": x.status}))
            }
            None => None,
        };
        let opportunity =
            match lead.opportunity_id {
                Some(oid) => c.opportunity(p.tenant_id, oid).await.ok().map(
                    |o| json!({"id": o.id, "name": o.name, "stage": o.stage, "status": o.status, "value": o.value}),
                ),
                None => None,
            };
        let linked = json!({
            "customer": customer,
            "contact_id": lead.contact_id,
            "prospect": prospect,
            "opportunity": opportunity,
        });
        Ok(LeadDetail { lead_id: lead.id, lead, activities, notes, crm_activity, linked, recent_events })
    }

    /// Everything that happened to a lead, newest first: activities, notes, form submissions and
    /// CRM activity (labelled `CRM`), each as `{kind, label, at, data}`.
    pub async fn lead_timeline(&self, p: &Principal, id: i64, limit: i64) -> Result<Vec<Value>> {
        require(p, Scope::LeadsRead)?;
        let mut c = self.store.read().await?;
        let lead = found(c.lead(p.tenant_id, id).await, "lead")?;
        let filter = ActivityFilter { entity_type: Some(EntityType::Lead), entity_id: Some(id), ..Default::default() };
        let (activities, _) = c.list_activities(p.tenant_id, &filter, limit, 0).await?;
        let (notes, _) = c.list_notes(p.tenant_id, (Some(EntityType::Lead), Some(id)), limit, 0).await?;
        let submissions = c.lead_submissions(p.tenant_id, id, limit).await?;
        let crm = c.crm_activities(p.tenant_id, id, limit).await?;
        let entry = |kind: &str, label: String, at: chrono::DateTime<chrono::Utc>, data: Value| {
            (at, json!({"kind": kind, "label": label, "at": at, "data": data}))
        };
        let mut items = Vec::new();
        for a in activities {
            let label = format!("{}: {}", title_case(&a.kind), a.subject);
            items.push(entry("activity", label, a.created_at, serde_json::to_value(&a).unwrap_or_default()));
        }
        for n in notes {
            items.push(entry("note", "Note".into(), n.created_at, serde_json::to_value(&n).unwrap_or_default()));
        }
        for s in submissions {
            items.push(entry(
                "form_submission",
                "Form".into(),
                s.created_at,
                serde_json::to_value(&s).unwrap_or_default(),
            ));
        }
        for a in crm {
            let label = format!("CRM: {}", a.event_type);
            items.push(entry("crm", label, a.created_at, serde_json::to_value(&a).unwrap_or_default()));
        }
        // Last before a stable sort: what happened in the same instant follows the creation.
        items.push(entry("lead", "Lead created".into(), lead.created_at, json!({"source": lead.source})));
        items.sort_by(|a, b| b.0.cmp(&a.0));
        Ok(items.into_iter().take(limit as usize).map(|(_, v)| v).collect())
    }

    pub async fn update_lead(&self, p: &Principal, id: i64, body: Value) -> Result<Lead> {
        require(p, Scope::LeadsWrite)?;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let before = found(tx.lead(p.tenant_id, id).await, "lead")?;
        let mut l = before.clone();
        let mut b = Body::new(body)?;
        let custom = apply_body(&mut b, &mut l, false)?;
        b.finish()?;
        let email_changed = l.email != before.email;
        if email_changed {
            l.customer_id = None;
        }
        let owner = prepare_lead(&mut tx, p.tenant_id, &mut l, custom, false).await?;
        l.updated_at = now;
        let l = tx.update_lead(p.tenant_id, &l).await?;
        let body = payload(&l, owner.as_deref());
        emit(&mut tx, p.tenant_id, "lead.updated", &body, now).await?;
        if l.status != before.status {
            emit(&mut tx, p.tenant_id, "lead.stage_changed", &body, now).await?;
        }
        tx.commit().await?;
        Ok(l)
    }

    pub async fn delete_lead(&self, p: &Principal, id: i64) -> Result<()> {
        require(p, Scope::LeadsDelete)?;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let l = found(tx.lead(p.tenant_id, id).await, "lead")?;
        let owner = tx.member_name(p.tenant_id, l.assigned_to).await?;
        tx.delete_attachments(p.tenant_id, EntityType::Lead, id).await?;
        tx.delete_lead(p.tenant_id, id).await?;
        emit(&mut tx, p.tenant_id, "lead.deleted", &payload(&l, owner.as_deref()), now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// `POST /v1/leads/{id}/convert` (seed 004): a contact (the profile of the lead's email,
    /// created when missing), a prospect account (the lead's company), an opportunity — each
    /// optional — and the lead marked converted, all in one transaction.
    pub async fn convert_lead(&self, p: &Principal, id: i64, body: Value) -> Result<Conversion> {
        require(p, Scope::LeadsWrite)?;
        let mut b = Body::new(body)?;
        let create_contact = b.flag("create_contact")?.unwrap_or(true);
        let create_prospect = b.flag("create_prospect")?.unwrap_or(false);
        let create_opportunity = b.flag("create_opportunity")?.unwrap_or(false);
        let prospect_name = b.text("prospect_name", 200)?.flatten();
        let existing_prospect = b.int("prospect_id", 1, i64::MAX)?.flatten();
        let opportunity_name = b.text("opportunity_name", 200)?.flatten();
        let opportunity_value = b.num("opportunity_value")?.flatten();
        let pipeline_id = b.int("pipeline_id", 1, i64::MAX)?.flatten();
        let stage = b.text("stage", 100)?.flatten();
        b.finish()?;
        if opportunity_value.is_some_and(|v| v < 0.0) {
            return Err(ServiceError::invalid("opportunity_value", "must be at least 0"));
        }
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let mut l = found(tx.lead(p.tenant_id, id).await, "lead")?;
        if l.status == "converted" {
            return Err(ServiceError::Conflict(format!("lead {id} is already converted")));
        }
        let mut prospect_id = existing_prospect;
        if let Some(pid) = existing_prospect {
            if !tx.entity_exists(p.tenant_id, EntityType::Prospect, pid).await? {
                return Err(ServiceError::invalid("prospect_id", format!("prospect {pid} does not exist")));
            }
        } else if create_prospect {
            p.require(Scope::ProspectsWrite)?;
            let name = prospect_name.or_else(|| l.company_name.clone()).ok_or_else(|| {
                ServiceError::invalid("create_prospect", "the lead has no company_name; give prospect_name")
            })?;
            let mut x = super::prospects::blank(p.tenant_id, &name, now);
            x.website = l.website.clone();
            x.assigned_to = l.assigned_to;
            let x = self.insert_prospect_in(&mut tx, p.tenant_id, x, now).await?;
            prospect_id = Some(x.id);
        }
        let mut contact_id = None;
        if create_contact {
            p.require(Scope::ContactsWrite)?;
            let crm = cairn_store::crm::people::PersonCrm {
                prospect_id,
                lifecycle_stage: Some("customer".into()),
                designation: l.title.clone(),
            };
            let cid = self.upsert_person_from_lead(&mut tx, p.tenant_id, &l, crm, now).await?;
            contact_id = Some(cid);
        }
        let mut opportunity_id = None;
        if create_opportunity {
            p.require(Scope::OpportunitiesWrite)?;
            let who = l.company_name.clone().unwrap_or_else(|| l.name());
            let name = opportunity_name.unwrap_or_else(|| format!("{who} opportunity"));
            let mut o = self.blank_opportunity(&mut tx, p.tenant_id, &name, pipeline_id, stage.as_deref(), now).await?;
            o.value = opportunity_value.or(l.value).unwrap_or(0.0);
            o.prospect_id = prospect_id;
            o.contact_id = contact_id;
            o.lead_id = Some(l.id);
            o.source = l.source.clone();
            o.assigned_to = l.assigned_to;
            let o = self.insert_opportunity_in(&mut tx, p.tenant_id, o, now).await?;
            opportunity_id = Some(o.id);
        }
        l.status = "converted".into();
        l.converted_at = Some(now);
        l.contact_id = contact_id;
        l.prospect_id = prospect_id;
        l.opportunity_id = opportunity_id;
        if contact_id.is_some() {
            l.customer_id = contact_id;
        }
        l.updated_at = now;
        let l = tx.update_lead(p.tenant_id, &l).await?;
        let owner = tx.member_name(p.tenant_id, l.assigned_to).await?;
        let mut body = payload(&l, owner.as_deref());
        body["contact_id"] = json!(contact_id);
        body["prospect_id"] = json!(prospect_id);
        body["opportunity_id"] = json!(opportunity_id);
        emit(&mut tx, p.tenant_id, "lead.converted", &body, now).await?;
        tx.commit().await?;
        Ok(Conversion { lead_id: id, contact_id, prospect_id, opportunity_id, lead_status: "converted".into() })
    }
}

//! Prospect accounts (seed 004), served also as seed 001's clients: list, create, read with
//! contacts, opportunities and activities, update, delete, convert to a customer company.

use cairn_domain::{Scope, TenantId};
use cairn_store::{
    crm::{
        opportunities::OpportunityFilter,
        people::PersonFilter,
        prospects::{Prospect, ProspectFilter},
        records::ActivityFilter,
        EntityType,
    },
    Conn,
};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{body::Body, check_owner, emit, fields::apply_custom, require};
use crate::{found, Principal, Result, ServiceError, Services};

pub const STATUSES: &[&str] = &["active", "inactive", "converted"];

/// Seed 001's client payload, with seed 004's `prospect_id` and fields.
pub fn payload(x: &Prospect) -> Value {
    json!({
        "prospect_id": x.id,
        "id": x.id,
        "name": x.name,
        "number": super::number("CL", x.id),
        "taxNumber": x.tax_number,
        "website": x.website,
        "customFields": x.custom_fields,
        "type": "company",
        "firstName": null,
        "lastName": null,
        "email": x.email,
        "phone": x.phone,
        "industry": x.industry,
        "status": x.status,
        "assigned_to": x.assigned_to,
        "createdAt": x.created_at,
    })
}

pub(crate) fn blank(tenant: TenantId, name: &str, now: DateTime<Utc>) -> Prospect {
    Prospect {
        id: 0,
        tenant_id: tenant.0,
        name: name.into(),
        industry: None,
        website: None,
        email: None,
        phone: None,
        tax_number: None,
        status: "active".into(),
        assigned_to: None,
        custom_fields: json!({}),
        converted_at: None,
        created_at: now,
        updated_at: now,
    }
}

fn apply(b: &mut Body, x: &mut Prospect) -> Result<Option<Value>> {
    b.alias("taxNumber", "tax_number").alias("customFields", "custom_fields").alias("ownerId", "assigned_to");
    b.alias("company_name", "name");
    if let Some(n) = b.required_text("name", 200)? {
        x.name = n;
    }
    super::body::set(&mut x.industry, b.text("industry", 100)?);
    super::body::set(&mut x.website, b.text("website", 2048)?);
    if let Some(e) = b.text("email", 254)? {
        x.email =
            e.map(|e| cairn_domain::Email::parse("email", &e).map(cairn_domain::Email::into_string)).transpose()?;
    }
    if let Some(ph) = b.text("phone", 40)? {
        if let Some(v) = &ph {
            cairn_domain::text::phone("phone", v)?;
        }
        x.phone = ph;
    }
    super::body::set(&mut x.tax_number, b.text("tax_number", 100)?);
    if let Some(s) = b.choice("status", STATUSES)? {
        x.status = s;
    }
    super::body::set(&mut x.assigned_to, b.int("assigned_to", 1, i64::MAX)?);
    b.take("type");
    b.object("custom_fields")
}

/// A prospect with its contacts, opportunities and activities.
#[derive(Debug, serde::Serialize)]
pub struct ProspectDetail {
    #[serde(flatten)]
    pub prospect: Prospect,
    pub prospect_id: i64,
    pub number: String,
    pub contacts: Vec<Value>,
    pub opportunities: Vec<cairn_store::crm::opportunities::Opportunity>,
    pub activities: Vec<cairn_store::crm::records::Activity>,
}

impl Services {
    pub(crate) async fn insert_prospect_in(
        &self,
        c: &mut Conn,
        tenant: TenantId,
        x: Prospect,
        now: DateTime<Utc>,
    ) -> Result<Prospect> {
        let x = c.insert_prospect(tenant, &x).await?;
        emit(c, tenant, "prospect.created", &payload(&x), now).await?;
        Ok(x)
    }

    pub async fn create_prospect(&self, p: &Principal, body: Value) -> Result<Prospect> {
        require(p, Scope::ProspectsWrite)?;
        let now = self.clock.now();
        let mut x = blank(p.tenant_id, "", now);
        let mut b = Body::new(body)?;
        let custom = apply(&mut b, &mut x)?;
        b.finish()?;
        if x.name.is_empty() {
            return Err(ServiceError::invalid("name", "is required"));
        }
        let mut tx = self.store.begin().await?;
        apply_custom(&mut tx, p.tenant_id, EntityType::Prospect, &mut x.custom_fields, custom, true, "custom_fields")
            .await?;
        check_owner(&mut tx, p.tenant_id, "assigned_to", x.assigned_to).await?;
        let x = self.insert_prospect_in(&mut tx, p.tenant_id, x, now).await?;
        tx.commit().await?;
        Ok(x)
    }

    pub async fn prospects(
        &self,
        p: &Principal,
        f: &ProspectFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Prospect>, i64)> {
        require(p, Scope::ProspectsRead)?;
        Ok(self.store.read().await?.list_prospects(p.tenant_id, f, limit, offset).await?)
    }

    pub async fn prospect(&self, p: &Principal, id: i64) -> Result<ProspectDetail> {
        require(p, Scope::ProspectsRead)?;
        let mut c = self.store.read().await?;
        let prospect = found(c.prospect(p.tenant_id, id).await, "prospect")?;
        let pf = PersonFilter { prospect_id: Some(id), ..Default::default() };
        let (people, _) = c.list_people(p.tenant_id, &pf, 100, 0).await?;
        let contacts = people.iter().map(|(cu, crm)| super::people::view(cu, crm)).collect();
        let of = OpportunityFilter { prospect_id: Some(id), ..Default::default() };
        let (opportunities, _) = c.list_opportunities(p.tenant_id, &of, 100, 0).await?;
        let af = ActivityFilter { entity_type: Some(EntityType::Prospect), entity_id: Some(id), ..Default::default() };
        let (activities, _) = c.list_activities(p.tenant_id, &af, 50, 0).await?;
        Ok(ProspectDetail {
            prospect_id: id,
            number: super::number("CL", id),
            prospect,
            contacts,
            opportunities,
            activities,
        })
    }

    pub async fn update_prospect(&self, p: &Principal, id: i64, body: Value) -> Result<Prospect> {
        require(p, Scope::ProspectsWrite)?;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let mut x = found(tx.prospect(p.tenant_id, id).await, "prospect")?;
        let mut b = Body::new(body)?;
        let custom = apply(&mut b, &mut x)?;
        b.finish()?;
        apply_custom(&mut tx, p.tenant_id, EntityType::Prospect, &mut x.custom_fields, custom, false, "custom_fields")
            .await?;
        check_owner(&mut tx, p.tenant_id, "assigned_to", x.assigned_to).await?;
        x.updated_at = now;
        let x = tx.update_prospect(p.tenant_id, &x).await?;
        emit(&mut tx, p.tenant_id, "client.updated", &payload(&x), now).await?;
        tx.commit().await?;
        Ok(x)
    }

    /// Deletes the account; its people and opportunities stay, unlinked.
    pub async fn delete_prospect(&self, p: &Principal, id: i64) -> Result<()> {
        require(p, Scope::ProspectsDelete)?;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let x = found(tx.prospect(p.tenant_id, id).await, "prospect")?;
        tx.delete_attachments(p.tenant_id, EntityType::Prospect, id).await?;
        tx.delete_prospect(p.tenant_id, id).await?;
        emit(&mut tx, p.tenant_id, "client.deleted", &payload(&x), now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// `POST /v1/prospects/{id}/convert`: the account becomes a customer company (status
    /// `converted`); its people move to lifecycle stage `customer`.
    pub async fn convert_prospect(&self, p: &Principal, id: i64) -> Result<Prospect> {
        require(p, Scope::ProspectsWrite)?;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let mut x = found(tx.prospect(p.tenant_id, id).await, "prospect")?;
        if x.status == "converted" {
            return Err(ServiceError::Conflict(format!("prospect {id} is already converted")));
        }
        x.status = "converted".into();
        x.converted_at = Some(now);
        x.updated_at = now;
        let x = tx.update_prospect(p.tenant_id, &x).await?;
        let pf = PersonFilter { prospect_id: Some(id), ..Default::default() };
        let (people, _) = tx.list_people(p.tenant_id, &pf, 10_000, 0).await?;
        for (cu, mut crm) in people {
            if crm.lifecycle_stage.as_deref() != Some("customer") {
                crm.lifecycle_stage = Some("customer".into());
                tx.set_person_crm(p.tenant_id, cu.id, &crm).await?;
                emit(&mut tx, p.tenant_id, "contact.stageChanged", &super::people::payload(&cu, &crm), now).await?;
            }
        }
        let mut body = payload(&x);
        body["converted_at"] = json!(now);
        emit(&mut tx, p.tenant_id, "prospect.converted", &body, now).await?;
        tx.commit().await?;
        Ok(x)
    }
}

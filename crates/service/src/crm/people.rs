//! People (seed 004) and contacts (seed 001) are customer profiles (seed 003): one record, so a
//! contact's tracked events, scores and segments are the profile's. The CRM adds a prospect
//! account, a lifecycle stage (seed 000's contact lifecycle, apart from opportunity pipelines),
//! a job title, tags (`traits.tags`) and custom fields (kept in `traits`, where segment filters
//! see them).

use cairn_domain::{CustomerId, Email, Scope, TenantId};
use cairn_store::{
    crm::{
        leads::Lead,
        people::{PersonCrm, PersonFilter},
        EntityType,
    },
    customers::{Customer, CustomerFields},
    Conn,
};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{body::Body, emit, fields::apply_custom, require};
use crate::{found, Principal, Result, ServiceError, Services};

/// The lifecycle stages a workspace starts with (Settings → Pipeline Stages changes them).
pub const DEFAULT_LIFECYCLE: &[(&str, &str)] = &[
    ("subscriber", "Subscriber"),
    ("lead", "Lead"),
    ("marketing_qualified", "Marketing qualified"),
    ("sales_qualified", "Sales qualified"),
    ("opportunity", "Opportunity"),
    ("customer", "Customer"),
    ("evangelist", "Evangelist"),
    ("other", "Other"),
];

fn split_name(name: Option<&str>) -> (Option<String>, Option<String>) {
    match name.map(str::trim).filter(|n| !n.is_empty()) {
        None => (None, None),
        Some(n) => match n.rsplit_once(' ') {
            Some((f, l)) => (Some(f.to_string()), Some(l.to_string())),
            None => (Some(n.to_string()), None),
        },
    }
}

fn tags_of(c: &Customer) -> Value {
    c.traits.get("tags").cloned().unwrap_or_else(|| json!([]))
}

/// A person as the API shows it.
pub fn view(c: &Customer, crm: &PersonCrm) -> Value {
    let (first, last) = split_name(c.name.as_deref());
    json!({
        "id": c.id,
        "contact_id": c.id,
        "person_id": c.id,
        "name": c.name,
        "first_name": first,
        "last_name": last,
        "email": c.email,
        "phone": c.phone,
        "city": c.city,
        "country": c.country,
        "user_id": c.external_id,
        "prospect_id": crm.prospect_id,
        "lifecycle_stage": crm.lifecycle_stage,
        "designation": crm.designation,
        "tags": tags_of(c),
        "traits": c.traits,
        "last_seen_at": c.last_seen_at,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
    })
}

/// Seed 001's contact payload, with seed 004's `contact_id`.
pub fn payload(c: &Customer, crm: &PersonCrm) -> Value {
    let (first, last) = split_name(c.name.as_deref());
    json!({
        "contact_id": c.id,
        "id": c.id,
        "firstName": first,
        "lastName": last,
        "email": c.email,
        "mobile": c.phone,
        "designation": crm.designation,
        "clientId": crm.prospect_id,
        "lifecycle_stage": crm.lifecycle_stage,
        "tags": tags_of(c),
        "createdAt": c.created_at,
    })
}

struct PersonInput {
    patch: crate::customers::CustomerPatch,
    crm: Option<Change>,
    custom: Option<Value>,
    tags: Option<Vec<String>>,
}

#[derive(Default)]
struct Change {
    prospect_id: Option<Option<i64>>,
    lifecycle_stage: Option<Option<String>>,
    designation: Option<Option<String>>,
}

fn read(body: Value) -> Result<PersonInput> {
    let mut b = Body::new(body)?;
    b.alias("firstName", "first_name").alias("lastName", "last_name").alias("mobile", "phone");
    b.alias("clientId", "prospect_id").alias("title", "designation").alias("job_title", "designation");
    b.alias("customFields", "custom_fields")
        .alias("lifecycleStage", "lifecycle_stage")
        .alias("stage", "lifecycle_stage");
    let first = b.text("first_name", 100)?;
    let last = b.text("last_name", 100)?;
    let mut name = b.text("name", 200)?;
    if name.is_none() && (first.is_some() || last.is_some()) {
        let joined = [first.flatten(), last.flatten()].into_iter().flatten().collect::<Vec<_>>().join(" ");
        name = Some((!joined.is_empty()).then_some(joined));
    }
    let patch = crate::customers::CustomerPatch {
        email: b.text("email", 254)?,
        user_id: b.text("user_id", 255)?,
        name,
        phone: b.text("phone", 40)?,
        city: b.text("city", 100)?,
        country: b.text("country", 2)?,
        traits: b.object("traits")?,
    };
    let crm = Change {
        prospect_id: b.int("prospect_id", 1, i64::MAX)?,
        lifecycle_stage: b.text("lifecycle_stage", 50)?,
        designation: b.text("designation", 200)?,
    };
    let any = crm.prospect_id.is_some() || crm.lifecycle_stage.is_some() || crm.designation.is_some();
    let custom = b.object("custom_fields")?;
    let tags = b.strings("tags", 100, 100)?;
    b.finish()?;
    Ok(PersonInput { patch, crm: any.then_some(crm), custom, tags })
}

/// A person's profile fields and CRM columns from a body, without touching the store (imports):
/// `prospect_id` is not accepted here.
pub(crate) fn person_fields(body: Value, lifecycle: &[String]) -> Result<(CustomerFields, PersonCrm)> {
    let input = read(body)?;
    let mut fields = CustomerFields { traits: json!({}), ..Default::default() };
    crate::customers::apply(&mut fields, input.patch)?;
    let mut crm = PersonCrm::default();
    if let Some(ch) = input.crm {
        if let Some(Some(stage)) = ch.lifecycle_stage {
            if !lifecycle.contains(&stage) {
                return Err(ServiceError::invalid(
                    "lifecycle_stage",
                    format!("must be one of {}", lifecycle.join(", ")),
                ));
            }
            crm.lifecycle_stage = Some(stage);
        }
        crm.designation = ch.designation.flatten();
    }
    Ok((fields, crm))
}

impl Services {
    /// The workspace's lifecycle stage keys (the default set until configured).
    pub(crate) async fn lifecycle_keys_in(&self, c: &mut Conn, tenant: TenantId) -> Result<Vec<String>> {
        let pipelines = c.pipelines(tenant, Some("lifecycle")).await?;
        match pipelines.first() {
            Some(pl) => Ok(c.stages(pl.id).await?.into_iter().map(|s| s.key).collect()),
            None => Ok(DEFAULT_LIFECYCLE.iter().map(|(k, _)| k.to_string()).collect()),
        }
    }

    async fn apply_crm(
        &self,
        c: &mut Conn,
        tenant: TenantId,
        crm: &mut PersonCrm,
        change: Option<Change>,
    ) -> Result<()> {
        let Some(ch) = change else { return Ok(()) };
        if let Some(pid) = ch.prospect_id {
            if let Some(id) = pid {
                if !c.entity_exists(tenant, EntityType::Prospect, id).await? {
                    return Err(ServiceError::invalid("prospect_id", format!("prospect {id} does not exist")));
                }
            }
            crm.prospect_id = pid;
        }
        if let Some(stage) = ch.lifecycle_stage {
            if let Some(s) = &stage {
                let keys = self.lifecycle_keys_in(c, tenant).await?;
                if !keys.contains(s) {
                    return Err(ServiceError::invalid(
                        "lifecycle_stage",
                        format!("must be one of {}", keys.join(", ")),
                    ));
                }
            }
            crm.lifecycle_stage = stage;
        }
        if let Some(d) = ch.designation {
            crm.designation = d;
        }
        Ok(())
    }

    /// Custom fields and tags go into traits (checked against the contact definitions).
    async fn contact_traits(
        &self,
        c: &mut Conn,
        tenant: TenantId,
        input: &mut PersonInput,
        current: &Value,
        creating: bool,
    ) -> Result<()> {
        let mut traits = current.clone();
        apply_custom(c, tenant, EntityType::Contact, &mut traits, input.custom.take(), creating, "custom_fields")
            .await?;
        if let Some(tags) = input.tags.take() {
            let mut unique: Vec<String> = Vec::new();
            for t in tags {
                if !unique.contains(&t) {
                    unique.push(t);
                }
            }
            traits["tags"] = json!(unique);
        }
        if &traits != current {
            let mut merged = input.patch.traits.take().unwrap_or_else(|| json!({}));
            for (k, v) in traits.as_object().into_iter().flatten() {
                if current.get(k) != Some(v) {
                    merged[k] = v.clone();
                }
            }
            input.patch.traits = Some(merged);
        }
        Ok(())
    }

    pub async fn create_person(&self, p: &Principal, body: Value) -> Result<(Customer, PersonCrm)> {
        require(p, Scope::ContactsWrite)?;
        let mut input = read(body)?;
        let now = self.clock.now();
        let mut fields = CustomerFields { traits: json!({}), ..Default::default() };
        let mut tx = self.store.begin().await?;
        self.contact_traits(&mut tx, p.tenant_id, &mut input, &json!({}), true).await?;
        crate::customers::apply(&mut fields, std::mem::take(&mut input.patch))?;
        if fields.email.is_none() && fields.external_id.is_none() {
            return Err(ServiceError::invalid("email", "a person needs an email or a user_id"));
        }
        let mut crm = PersonCrm::default();
        self.apply_crm(&mut tx, p.tenant_id, &mut crm, input.crm).await?;
        let customer = tx.insert_customer(p.tenant_id, &fields, now).await.map_err(crate::customers::duplicate)?;
        tx.set_person_crm(p.tenant_id, customer.id, &crm).await?;
        tx.insert_outbox(p.tenant_id, "customer.created", &customer.created_payload(), now).await?;
        emit(&mut tx, p.tenant_id, "contact.created", &payload(&customer, &crm), now).await?;
        tx.mark_segments_dirty(&[(p.tenant_id, customer.id, cairn_segments::changed::ALL)], now).await?;
        if let Some(email) = &customer.email {
            tx.link_leads_to_customer(p.tenant_id, email, customer.id.0).await?;
        }
        tx.commit().await?;
        Ok((customer, crm))
    }

    pub async fn people(
        &self,
        p: &Principal,
        f: &PersonFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<(Customer, PersonCrm)>, i64)> {
        require(p, Scope::ContactsRead)?;
        Ok(self.store.read().await?.list_people(p.tenant_id, f, limit, offset).await?)
    }

    pub async fn person(&self, p: &Principal, id: i64) -> Result<(Customer, PersonCrm)> {
        require(p, Scope::ContactsRead)?;
        found(self.store.read().await?.person(p.tenant_id, CustomerId(id)).await, "person")
    }

    pub async fn update_person(&self, p: &Principal, id: i64, body: Value) -> Result<(Customer, PersonCrm)> {
        require(p, Scope::ContactsWrite)?;
        let mut input = read(body)?;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let (current, mut crm) = found(tx.person(p.tenant_id, CustomerId(id)).await, "person")?;
        let before = crm.clone();
        self.contact_traits(&mut tx, p.tenant_id, &mut input, &current.traits, false).await?;
        let mut fields = CustomerFields {
            email: current.email.clone(),
            external_id: current.external_id.clone(),
            name: current.name.clone(),
            phone: current.phone.clone(),
            city: current.city.clone(),
            country: current.country.clone(),
            traits: current.traits.clone(),
        };
        crate::customers::apply(&mut fields, std::mem::take(&mut input.patch))?;
        if fields.email.is_none() && fields.external_id.is_none() {
            return Err(ServiceError::invalid("email", "a person needs an email or a user_id"));
        }
        self.apply_crm(&mut tx, p.tenant_id, &mut crm, input.crm).await?;
        let customer =
            tx.update_customer(p.tenant_id, current.id, &fields, now).await.map_err(crate::customers::duplicate)?;
        tx.set_person_crm(p.tenant_id, customer.id, &crm).await?;
        let body = payload(&customer, &crm);
        emit(&mut tx, p.tenant_id, "contact.updated", &body, now).await?;
        if crm.lifecycle_stage != before.lifecycle_stage {
            emit(&mut tx, p.tenant_id, "contact.stageChanged", &body, now).await?;
        }
        tx.mark_segments_dirty(&[(p.tenant_id, customer.id, cairn_segments::changed::PROFILE)], now).await?;
        tx.commit().await?;
        Ok((customer, crm))
    }

    /// Deletes the person: the profile is erased with its events (as `DELETE /v1/customers`).
    pub async fn delete_person(&self, p: &Principal, id: i64) -> Result<()> {
        require(p, Scope::ContactsDelete)?;
        let (customer, crm) = found(self.store.read().await?.person(p.tenant_id, CustomerId(id)).await, "person")?;
        self.events.delete_customer(p.tenant_id, customer.id).await?;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        tx.delete_attachments(p.tenant_id, EntityType::Contact, id).await?;
        tx.delete_customer(p.tenant_id, customer.id).await?;
        emit(&mut tx, p.tenant_id, "contact.deleted", &payload(&customer, &crm), now).await?;
        tx.commit().await?;
        self.store.bump_identity_epoch();
        Ok(())
    }

    /// The contact a converted lead becomes: the profile of its email when there is one (its
    /// CRM columns filled in), otherwise a new profile.
    pub(crate) async fn upsert_person_from_lead(
        &self,
        tx: &mut Conn,
        tenant: TenantId,
        l: &Lead,
        crm: PersonCrm,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        let existing = super::customer_by_email(tx, tenant, l.email.as_deref()).await?;
        if let Some(id) = existing {
            let (cu, mut current) = tx.person(tenant, CustomerId(id)).await?;
            current.prospect_id = current.prospect_id.or(crm.prospect_id);
            current.designation = current.designation.or(crm.designation);
            current.lifecycle_stage = crm.lifecycle_stage;
            tx.set_person_crm(tenant, cu.id, &current).await?;
            emit(tx, tenant, "contact.updated", &payload(&cu, &current), now).await?;
            return Ok(id);
        }
        let Some(email) = &l.email else {
            return Err(ServiceError::invalid("create_contact", "the lead has no email; a contact needs one"));
        };
        let name = l.name();
        let fields = CustomerFields {
            email: Some(Email::parse("email", email)?.into_string()),
            name: (!name.is_empty()).then_some(name),
            phone: l.phone.as_deref().map(|ph| cairn_domain::text::phone("phone", ph)).transpose()?,
            traits: json!({}),
            ..Default::default()
        };
        let customer = tx.insert_customer(tenant, &fields, now).await.map_err(crate::customers::duplicate)?;
        tx.set_person_crm(tenant, customer.id, &crm).await?;
        tx.insert_outbox(tenant, "customer.created", &customer.created_payload(), now).await?;
        emit(tx, tenant, "contact.created", &payload(&customer, &crm), now).await?;
        tx.mark_segments_dirty(&[(tenant, customer.id, cairn_segments::changed::ALL)], now).await?;
        Ok(customer.id.0)
    }
}

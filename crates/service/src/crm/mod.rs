//! The CRM (seeds 000, 001 and 004) on the entity store: leads, opportunities (deals) on
//! pipelines, people (customer profiles), prospect accounts (clients), activities, notes, files,
//! custom fields, forms, search, imports and reports. Every change writes its seed events into
//! the outbox in the same transaction (docs/crm.md lists them with their payloads).

pub mod body;
pub mod fields;
pub mod forms;
pub mod imports;
pub mod leads;
pub mod opportunities;
pub mod people;
pub mod prospects;
pub mod records;
pub mod reports;

use cairn_domain::{Scope, TenantId};
use cairn_store::{crm::EntityType, Conn};
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::{Principal, Result, ServiceError};

/// The read, write and delete scopes of an entity type.
pub fn scopes(ty: EntityType) -> [Scope; 3] {
    match ty {
        EntityType::Lead => [Scope::LeadsRead, Scope::LeadsWrite, Scope::LeadsDelete],
        EntityType::Contact => [Scope::ContactsRead, Scope::ContactsWrite, Scope::ContactsDelete],
        EntityType::Opportunity => [Scope::OpportunitiesRead, Scope::OpportunitiesWrite, Scope::OpportunitiesDelete],
        EntityType::Prospect => [Scope::ProspectsRead, Scope::ProspectsWrite, Scope::ProspectsDelete],
    }
}

pub(crate) fn require(p: &Principal, scope: Scope) -> Result<()> {
    p.require_private()?;
    p.require(scope)
}

pub fn parse_entity_type(field: &str, s: &str) -> Result<EntityType> {
    EntityType::parse(s).ok_or_else(|| ServiceError::invalid(field, "must be lead, contact, opportunity or prospect"))
}

/// Checks `assigned_to` names a member of the workspace; returns their name.
pub(crate) async fn check_owner(
    c: &mut Conn,
    tenant: TenantId,
    field: &str,
    user: Option<i64>,
) -> Result<Option<String>> {
    match user {
        None => Ok(None),
        Some(id) => match c.member_name(tenant, Some(id)).await? {
            Some(name) => Ok(Some(name)),
            None => Err(ServiceError::invalid(field, format!("user {id} is not a member of this workspace"))),
        },
    }
}

/// The id of the profile with this email, if any.
pub(crate) async fn customer_by_email(c: &mut Conn, tenant: TenantId, email: Option<&str>) -> Result<Option<i64>> {
    let Some(email) = email else { return Ok(None) };
    Ok(c.customer_id_by_email(tenant, &email.to_lowercase()).await?)
}

pub(crate) async fn emit(
    c: &mut Conn,
    tenant: TenantId,
    event: &str,
    payload: &Value,
    now: DateTime<Utc>,
) -> Result<()> {
    c.insert_outbox(tenant, event, payload, now).await?;
    Ok(())
}

/// Seed 001's `DL-0001` style numbers.
pub fn number(prefix: &str, id: i64) -> String {
    format!("{prefix}-{id:04}")
}

/// The display form of a lowercase status (`qualified` → `Qualified`).
pub fn title_case(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// `custom_fields[key]=value` query filters: the value parsed as JSON when it is JSON
/// (`true`, `5`), as a string otherwise.
pub fn custom_filters(pairs: &[(String, String)]) -> Vec<(String, Value)> {
    pairs
        .iter()
        .map(|(k, v)| {
            let value = match serde_json::from_str::<Value>(v) {
                Ok(j @ (Value::Bool(_) | Value::Number(_))) => j,
                _ => Value::String(v.clone()),
            };
            (k.clone(), value)
        })
        .collect()
}

//! Custom fields (seed 004): typed definitions per entity type, and the check every write of a
//! lead, person, opportunity or prospect goes through.

use cairn_domain::{Email, Scope, TenantId};
use cairn_store::crm::{settings::CustomField, EntityType};
use serde_json::{Map, Value};

use super::body::Body;
use crate::{found, Principal, Result, ServiceError, Services};

pub const TYPES: &[&str] = &["text", "number", "date", "boolean", "select", "multi_select", "url", "email"];

fn key_ok(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 64
        && k.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && k.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Checks one value against its definition; returns it normalised.
fn check_value(def: &CustomField, field: &str, v: Value) -> Result<Value> {
    let bad = |m: &str| ServiceError::invalid(field, m.to_string());
    let options: Vec<&str> =
        def.options.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    Ok(match def.field_type.as_str() {
        "text" => match v {
            Value::String(s) if s.chars().count() <= 10_000 => Value::String(s),
            _ => return Err(bad("must be a string of at most 10000 characters")),
        },
        "number" => match &v {
            Value::Number(_) => v,
            Value::String(s) => match s.trim().parse::<f64>() {
                Ok(n) if n.is_finite() => serde_json::json!(n),
                _ => return Err(bad("must be a number")),
            },
            _ => return Err(bad("must be a number")),
        },
        "boolean" => match v {
            Value::Bool(_) => v,
            _ => return Err(bad("must be true or false")),
        },
        "date" => match &v {
            Value::String(s) => Value::String(super::body::parse_time(field, s)?.date_naive().to_string()),
            _ => return Err(bad("must be a date such as 2026-06-30")),
        },
        "select" => match &v {
            Value::String(s) if options.contains(&s.as_str()) => v,
            _ => return Err(bad(&format!("must be one of {}", options.join(", ")))),
        },
        "multi_select" => match &v {
            Value::Array(items) if items.iter().all(|i| i.as_str().is_some_and(|s| options.contains(&s))) => v,
            _ => return Err(bad(&format!("must be a list of values among {}", options.join(", ")))),
        },
        "url" => match &v {
            Value::String(s) if (s.starts_with("http://") || s.starts_with("https://")) && s.len() <= 2048 => v,
            _ => return Err(bad("must be an http:// or https:// URL")),
        },
        "email" => match &v {
            Value::String(s) => Value::String(Email::parse(field, s)?.into_string()),
            _ => return Err(bad("must be an email address")),
        },
        _ => v,
    })
}

/// Applies `patch` (an object of key → value, `null` removing a key) to `current`, checking every
/// key against the workspace's definitions for `ty`; on create, required fields must be present.
pub(crate) async fn apply_custom(
    c: &mut cairn_store::Conn,
    tenant: TenantId,
    ty: EntityType,
    current: &mut Value,
    patch: Option<Value>,
    creating: bool,
    prefix: &str,
) -> Result<()> {
    let defs = c.custom_fields(tenant, Some(ty.as_str())).await?;
    apply_custom_with(&defs, ty, current, patch, creating, prefix)
}

/// [`apply_custom`] with the definitions at hand (imports check many rows against them).
pub(crate) fn apply_custom_with(
    defs: &[CustomField],
    ty: EntityType,
    current: &mut Value,
    patch: Option<Value>,
    creating: bool,
    prefix: &str,
) -> Result<()> {
    if !current.is_object() {
        *current = Value::Object(Map::new());
    }
    let obj = current.as_object_mut().expect("an object");
    if let Some(Value::Object(patch)) = patch {
        for (k, v) in patch {
            let field = format!("{prefix}.{k}");
            let Some(def) = defs.iter().find(|d| d.key == k) else {
                return Err(ServiceError::invalid(
                    &field,
                    format!("no custom field {k:?} is defined for {}s", ty.as_str()),
                ));
            };
            if v.is_null() {
                if def.required {
                    return Err(ServiceError::invalid(&field, "is required"));
                }
                obj.remove(&k);
            } else {
                obj.insert(k, check_value(def, &field, v)?);
            }
        }
    }
    if creating {
        if let Some(d) = defs.iter().find(|d| d.required && !obj.contains_key(&d.key)) {
            return Err(ServiceError::invalid(&format!("{prefix}.{}", d.key), "is required"));
        }
    }
    Ok(())
}

impl Services {
    pub async fn custom_fields(&self, p: &Principal, entity_type: Option<&str>) -> Result<Vec<CustomField>> {
        p.require_private()?;
        let ty = entity_type.map(|t| super::parse_entity_type("entity_type", t)).transpose()?;
        Ok(self.store.read().await?.custom_fields(p.tenant_id, ty.map(|t| t.as_str())).await?)
    }

    pub async fn create_custom_field(&self, p: &Principal, body: Value) -> Result<CustomField> {
        super::require(p, Scope::SettingsManage)?;
        let mut b = Body::new(body)?;
        b.alias("type", "field_type").alias("name", "key");
        let ty = super::parse_entity_type("entity_type", &b.required_text("entity_type", 20)?.unwrap_or_default())?;
        let key = b.required_text("key", 64)?.ok_or_else(|| ServiceError::invalid("key", "is required"))?;
        if !key_ok(&key) {
            return Err(ServiceError::invalid(
                "key",
                "must be lower-case letters, digits and _, starting with a letter",
            ));
        }
        let label = b.required_text("label", 100)?.unwrap_or_else(|| key.clone());
        let field_type =
            b.choice("field_type", TYPES)?.ok_or_else(|| ServiceError::invalid("field_type", "is required"))?;
        let options = b.strings("options", 200, 100)?.unwrap_or_default();
        if field_type.ends_with("select") && options.is_empty() {
            return Err(ServiceError::invalid("options", "a select field needs at least one option"));
        }
        let required = b.flag("required")?.unwrap_or(false);
        let position = b.int("position", 0, 10_000)?.flatten().unwrap_or(0) as i32;
        b.finish()?;
        let now = self.clock.now();
        let f = CustomField {
            id: 0,
            tenant_id: p.tenant_id.0,
            entity_type: ty.as_str().into(),
            key,
            label,
            field_type,
            options: serde_json::json!(options),
            required,
            position,
            created_at: now,
            updated_at: now,
        };
        self.store.write().await?.insert_custom_field(p.tenant_id, &f).await.map_err(|e| match e {
            cairn_store::StoreError::Duplicate(_) => {
                ServiceError::duplicate("key", "this entity type already has a custom field with this key")
            }
            e => e.into(),
        })
    }

    /// Changes a definition's label, options, required flag or position (its key and type are
    /// fixed: stored values were checked against them).
    pub async fn update_custom_field(&self, p: &Principal, id: i64, body: Value) -> Result<CustomField> {
        super::require(p, Scope::SettingsManage)?;
        let mut c = self.store.write().await?;
        let mut f = found(c.custom_field(p.tenant_id, id).await, "custom field")?;
        let mut b = Body::new(body)?;
        if let Some(l) = b.required_text("label", 100)? {
            f.label = l;
        }
        if let Some(o) = b.strings("options", 200, 100)? {
            f.options = serde_json::json!(o);
        }
        if let Some(r) = b.flag("required")? {
            f.required = r;
        }
        if let Some(Some(pos)) = b.int("position", 0, 10_000)? {
            f.position = pos as i32;
        }
        for fixed in ["key", "field_type", "type", "entity_type"] {
            if b.take(fixed).is_some() {
                return Err(ServiceError::invalid(fixed, "cannot be changed; create another field"));
            }
        }
        b.finish()?;
        f.updated_at = self.clock.now();
        Ok(c.update_custom_field(p.tenant_id, &f).await?)
    }

    /// Removes a definition; values already stored stay on the records until they are edited.
    pub async fn delete_custom_field(&self, p: &Principal, id: i64) -> Result<()> {
        super::require(p, Scope::SettingsManage)?;
        let mut c = self.store.write().await?;
        if !c.delete_row(p.tenant_id, cairn_store::crm::records::Table::CustomFields, id).await? {
            return Err(ServiceError::NotFound("custom field"));
        }
        Ok(())
    }
}

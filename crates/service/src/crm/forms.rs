//! Forms (seed 000): definitions whose public submissions create or update leads, emitting
//! `form.submission.created` (seed 000) — `form.response.created` for seed 001's subscribers.

use cairn_domain::{Email, Scope};
use cairn_store::{
    crm::{records::Table, settings::Form},
    inbound::Submission,
};
use serde_json::{json, Map, Value};

use super::{body::Body, emit, leads, require};
use crate::{found, inbound::crm_lead_id, Principal, Result, ServiceError, Services};

pub const FIELD_TYPES: &[&str] =
    &["text", "textarea", "email", "phone", "number", "select", "checkbox", "hidden", "url", "date"];

/// Lead fields a form field can fill (`maps_to`); anything else goes to `raw_payload`, and
/// `custom_fields.<key>` to the lead's custom field.
pub const LEAD_FIELDS: &[&str] =
    &["first_name", "last_name", "name", "email", "phone", "company_name", "title", "website"];

/// What a submission answers.
#[derive(Debug, serde::Serialize)]
pub struct Submitted {
    pub submission_id: i64,
    pub lead_id: Option<i64>,
    /// True when an existing lead with the email was updated rather than a new one created.
    pub updated_existing: bool,
}

fn check_fields(v: Option<Value>) -> Result<Value> {
    let Some(Value::Array(items)) = v else {
        return Err(ServiceError::invalid("fields", "must be a list of fields"));
    };
    if items.is_empty() || items.len() > 100 {
        return Err(ServiceError::invalid("fields", "must hold 1 to 100 fields"));
    }
    let mut out = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let at = |k: &str| format!("fields[{i}].{k}");
        let mut b = Body::new(item).map_err(|_| ServiceError::invalid(&format!("fields[{i}]"), "must be an object"))?;
        let name = b
            .required_text("name", 64)
            .map_err(|_| ServiceError::invalid(&at("name"), "must be 1 to 64 characters"))?;
        let name = name.ok_or_else(|| ServiceError::invalid(&at("name"), "is required"))?;
        if names.contains(&name) {
            return Err(ServiceError::invalid(&at("name"), format!("{name:?} is used twice")));
        }
        let ty = match b.text("type", 20)?.flatten() {
            None => "text".to_string(),
            Some(t) if FIELD_TYPES.contains(&t.as_str()) => t,
            Some(_) => {
                return Err(ServiceError::invalid(&at("type"), format!("must be one of {}", FIELD_TYPES.join(", "))))
            }
        };
        let label = b.text("label", 200)?.flatten().unwrap_or_else(|| name.clone());
        let required = b.flag("required")?.unwrap_or(false);
        let options = b.strings("options", 200, 200)?.unwrap_or_default();
        if ty == "select" && options.is_empty() {
            return Err(ServiceError::invalid(&at("options"), "a select field needs options"));
        }
        let default_map = if LEAD_FIELDS.contains(&name.as_str()) { Some(name.clone()) } else { None };
        let maps_to = b.text("maps_to", 100)?.flatten().or(default_map);
        if let Some(m) = &maps_to {
            if !LEAD_FIELDS.contains(&m.as_str()) && !m.starts_with("custom_fields.") {
                return Err(ServiceError::invalid(
                    &at("maps_to"),
                    format!("must be one of {} or custom_fields.<key>", LEAD_FIELDS.join(", ")),
                ));
            }
        }
        let max_length = b.int("max_length", 1, 10_000)?.flatten();
        b.finish().map_err(|e| match e {
            ServiceError::Invalid(fe) => ServiceError::invalid(&at(&fe.field), fe.message),
            e => e,
        })?;
        names.push(name.clone());
        out.push(json!({"name": name, "label": label, "type": ty, "required": required, "options": options,
                        "maps_to": maps_to, "max_length": max_length}));
    }
    Ok(Value::Array(out))
}

fn apply(b: &mut Body, f: &mut Form) -> Result<()> {
    b.alias("stage", "lead_status").alias("status", "lead_status");
    if let Some(n) = b.required_text("name", 200)? {
        f.name = n;
    }
    if b.has("fields") {
        f.fields = check_fields(b.take("fields"))?;
    }
    super::body::set(&mut f.source, b.text("source", 100)?);
    if let Some(s) = b.choice("lead_status", &leads::STATUSES[..4])? {
        f.lead_status = s;
    }
    super::body::set(&mut f.form_type, b.text("form_type", 100)?);
    super::body::set(&mut f.honeypot, b.text("honeypot", 64)?);
    if let Some(a) = b.flag("is_active")? {
        f.is_active = a;
    }
    Ok(())
}

/// Checks a submission against the form's fields: every error names the field.
fn check_submission(fields: &Value, data: &Map<String, Value>) -> Result<Map<String, Value>> {
    let mut clean = Map::new();
    for f in fields.as_array().into_iter().flatten() {
        let name = f["name"].as_str().unwrap_or_default();
        let ty = f["type"].as_str().unwrap_or("text");
        let value = match data.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(v) => Some(v.clone()),
        };
        let Some(value) = value else {
            if f["required"].as_bool() == Some(true) {
                return Err(ServiceError::invalid(name, "is required"));
            }
            continue;
        };
        let text = match &value {
            Value::String(s) => s.trim().to_string(),
            other => other.to_string(),
        };
        let max = f["max_length"].as_u64().unwrap_or(if ty == "textarea" { 10_000 } else { 1_000 }) as usize;
        if text.chars().count() > max {
            return Err(ServiceError::invalid(name, format!("must be at most {max} characters")));
        }
        let v = match ty {
            "email" => json!(Email::parse(name, &text)?.into_string()),
            "phone" => {
                cairn_domain::text::phone(name, &text)?;
                json!(text)
            }
            "number" => json!(text.parse::<f64>().map_err(|_| ServiceError::invalid(name, "must be a number"))?),
            "checkbox" => json!(matches!(text.as_str(), "true" | "on" | "1" | "yes")),
            "select" => {
                let ok = f["options"].as_array().into_iter().flatten().any(|o| o.as_str() == Some(text.as_str()));
                if !ok {
                    return Err(ServiceError::invalid(name, "is not one of the choices"));
                }
                json!(text)
            }
            "url" if !(text.starts_with("http://") || text.starts_with("https://")) => {
                return Err(ServiceError::invalid(name, "must be an http:// or https:// URL"))
            }
            _ => json!(text),
        };
        clean.insert(name.to_string(), v);
    }
    Ok(clean)
}

impl Services {
    pub async fn create_form(&self, p: &Principal, body: Value) -> Result<Form> {
        require(p, Scope::FormsWrite)?;
        let now = self.clock.now();
        let mut f = Form {
            id: 0,
            tenant_id: p.tenant_id.0,
            name: String::new(),
            token: format!("frm_{}", cairn_domain::credential::random_string(24)),
            fields: Value::Null,
            source: None,
            lead_status: "new".into(),
            form_type: None,
            honeypot: None,
            is_active: true,
            submissions: 0,
            created_at: now,
            updated_at: now,
        };
        let mut b = Body::new(body)?;
        apply(&mut b, &mut f)?;
        b.finish()?;
        if f.name.is_empty() {
            return Err(ServiceError::invalid("name", "is required"));
        }
        if f.fields.is_null() {
            return Err(ServiceError::invalid("fields", "is required"));
        }
        Ok(self.store.write().await?.insert_form(p.tenant_id, &f).await?)
    }

    pub async fn forms(&self, p: &Principal, limit: i64, offset: i64) -> Result<(Vec<Form>, i64)> {
        require(p, Scope::FormsRead)?;
        Ok(self.store.read().await?.forms(p.tenant_id, limit, offset).await?)
    }

    pub async fn form(&self, p: &Principal, id: i64) -> Result<Form> {
        require(p, Scope::FormsRead)?;
        found(self.store.read().await?.form(p.tenant_id, id).await, "form")
    }

    /// A form's submissions, newest first.
    pub async fn form_submissions(
        &self,
        p: &Principal,
        id: i64,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Submission>, i64)> {
        require(p, Scope::FormsRead)?;
        let mut c = self.store.read().await?;
        found(c.form(p.tenant_id, id).await, "form")?;
        Ok(c.form_submissions(p.tenant_id, id, limit, offset).await?)
    }

    /// Records the external CRM's id for a submission's (follow-up) lead: seed 002's webhook
    /// finds the lead through it. Body: `{crm_lead_id}` (null clears it).
    pub async fn update_submission(&self, p: &Principal, form: i64, id: i64, body: Value) -> Result<Submission> {
        require(p, Scope::FormsWrite)?;
        let mut b = Body::new(body)?;
        b.alias("crmLeadId", "crm_lead_id");
        let crm = match b.take("crm_lead_id") {
            None => return Err(ServiceError::invalid("crm_lead_id", "is required (null clears it)")),
            Some(Value::Null) => None,
            Some(v) => Some(crm_lead_id(&v).ok_or_else(|| {
                ServiceError::invalid("crm_lead_id", "must be a non-empty string of at most 200 characters")
            })?),
        };
        b.finish()?;
        let mut c = self.store.write().await?;
        found(c.form(p.tenant_id, form).await, "form")?;
        c.set_submission_crm_id(p.tenant_id, form, id, crm.as_deref())
            .await?
            .ok_or(ServiceError::NotFound("submission"))
    }

    pub async fn update_form(&self, p: &Principal, id: i64, body: Value) -> Result<Form> {
        require(p, Scope::FormsWrite)?;
        let mut c = self.store.write().await?;
        let mut f = found(c.form(p.tenant_id, id).await, "form")?;
        let mut b = Body::new(body)?;
        apply(&mut b, &mut f)?;
        b.finish()?;
        f.updated_at = self.clock.now();
        Ok(c.update_form(p.tenant_id, &f).await?)
    }

    pub async fn delete_form(&self, p: &Principal, id: i64) -> Result<()> {
        require(p, Scope::FormsDelete)?;
        if !self.store.write().await?.delete_row(p.tenant_id, Table::Forms, id).await? {
            return Err(ServiceError::NotFound("form"));
        }
        Ok(())
    }

    /// A form's definition for a website to render (by its public token).
    pub async fn public_form(&self, token: &str) -> Result<Form> {
        let f = found(self.store.read().await?.form_by_token(token).await, "form")?;
        if !f.is_active {
            return Err(ServiceError::NotFound("form"));
        }
        Ok(f)
    }

    /// A website's submission to a form's public URL. A filled honeypot is answered like a
    /// success and stored nowhere (bots learn nothing). An open lead with the submitted email
    /// is updated (fields it lacks filled in, the answers merged into `raw_payload`); otherwise
    /// a lead is created with the form's source and status.
    pub async fn submit_form(&self, token: &str, data: Map<String, Value>) -> Result<Submitted> {
        let mut c = self.store.read().await?;
        let form = found(c.form_by_token(token).await, "form")?;
        drop(c);
        if !form.is_active {
            return Err(ServiceError::NotFound("form"));
        }
        if let Some(h) = &form.honeypot {
            if data.get(h).is_some_and(|v| !v.is_null() && v.as_str() != Some("")) {
                tracing::info!(form.id = form.id, "honeypot submission dropped");
                return Ok(Submitted { submission_id: 0, lead_id: None, updated_existing: false });
            }
        }
        let clean = check_submission(&form.fields, &data)?;
        // A reserved hidden field: the follow-up lead's id in an external CRM (seed 002).
        let crm_lead_id = match data.get("crm_lead_id") {
            None | Some(Value::Null) => None,
            Some(v) => Some(crm_lead_id(v).ok_or_else(|| {
                ServiceError::invalid("crm_lead_id", "must be a non-empty string of at most 200 characters")
            })?),
        };
        let tenant = cairn_domain::TenantId(form.tenant_id);
        let now = self.clock.now();
        let mut lead_body = Map::new();
        let mut custom = Map::new();
        let mut raw = Map::new();
        for f in form.fields.as_array().into_iter().flatten() {
            let name = f["name"].as_str().unwrap_or_default();
            let Some(v) = clean.get(name) else { continue };
            match f["maps_to"].as_str() {
                Some(m) if m.starts_with("custom_fields.") => {
                    custom.insert(m["custom_fields.".len()..].to_string(), v.clone());
                }
                Some(m) => {
                    lead_body.insert(m.to_string(), v.clone());
                }
                None => {
                    raw.insert(name.to_string(), v.clone());
                }
            }
        }
        let email = lead_body.get("email").and_then(Value::as_str).map(str::to_string);
        let mut tx = self.store.begin().await?;
        let existing = match &email {
            Some(e) => {
                tx.leads_by_emails(tenant, &[e.clone()]).await?.into_iter().rev().find(|l| l.status != "converted")
            }
            None => None,
        };
        let updated_existing = existing.is_some();
        let mut l = existing.unwrap_or_else(|| {
            let mut l = leads::blank_lead(tenant, now);
            l.status = form.lead_status.clone();
            l.source = form.source.clone().or(Some("website_form".into()));
            l.form_type = form.form_type.clone().or(Some(form.name.clone()));
            l
        });
        let before = l.clone();
        // Fill only what the lead lacks: a later form must not overwrite what sales corrected.
        let current = serde_json::to_value(&l).unwrap_or_default();
        lead_body.retain(|k, _| k == "name" || current.get(k).is_none_or(Value::is_null));
        if lead_body.contains_key("name") && (l.first_name.is_some() || l.last_name.is_some()) {
            lead_body.remove("name");
        }
        if !custom.is_empty() {
            lead_body.insert("custom_fields".into(), Value::Object(custom));
        }
        let mut merged_raw = l.raw_payload.clone().and_then(|v| v.as_object().cloned()).unwrap_or_default();
        merged_raw.extend(raw);
        let mut b = Body::new(Value::Object(lead_body))?;
        let custom = leads::apply_body(&mut b, &mut l, !updated_existing)?;
        b.finish()?;
        l.raw_payload = (!merged_raw.is_empty()).then_some(Value::Object(merged_raw));
        let owner = leads::prepare_lead(&mut tx, tenant, &mut l, custom, !updated_existing).await?;
        l.updated_at = now;
        let l = if updated_existing { tx.update_lead(tenant, &l).await? } else { tx.insert_lead(tenant, &l).await? };
        let lead_event = if updated_existing { "lead.updated" } else { "lead.created" };
        if !updated_existing || l != before {
            emit(&mut tx, tenant, lead_event, &leads::payload(&l, owner.as_deref()), now).await?;
        }
        let data = Value::Object(clean);
        let sid = tx.insert_form_submission(tenant, form.id, Some(l.id), &data, crm_lead_id.as_deref(), now).await?;
        let payload = json!({
            "id": sid,
            "submission_id": sid,
            "formId": form.id,
            "form_id": form.id,
            "form_name": form.name,
            "lead_id": l.id,
            "data": data,
            "createdAt": now,
        });
        emit(&mut tx, tenant, "form.submission.created", &payload, now).await?;
        tx.commit().await?;
        Ok(Submitted { submission_id: sid, lead_id: Some(l.id), updated_existing })
    }
}

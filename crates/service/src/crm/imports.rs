//! CSV imports of leads or people (seed 000: "import contacts and assign sources/stages"): a
//! column mapping, the source and stage to give, duplicates by email updated rather than
//! repeated, progress and per-row errors readable while it runs.
//!
//! The rows are checked and written in chunks of 1,000, each chunk in one transaction with its
//! events. An import interrupted by a crash is marked failed at the next start; running it
//! again is safe, because rows whose email exists update instead of inserting.

use std::collections::HashMap;

use cairn_domain::{Scope, TenantId};
use cairn_store::crm::{leads::Lead, settings::Import, EntityType};
use serde_json::{json, Map, Value};

use super::{body::Body, fields::apply_custom_with, leads, require};
use crate::{found, Principal, Result, ServiceError, Services};

const CHUNK: usize = 1_000;
/// A column mapped to null: neither a field nor kept in `raw_payload`.
const SKIP: &str = "-";
const MAX_ERRORS: usize = 1_000;
pub const MAX_ROWS: usize = 1_000_000;

/// What the caller asks for.
#[derive(Debug, Default)]
pub struct ImportRequest {
    /// `leads` or `people`.
    pub kind: String,
    pub csv: String,
    /// CSV column → field (`email`, `first_name`, `custom_fields.industry`, …); columns not
    /// mapped are matched by name (`First Name` → `first_name`) or, for leads, kept in
    /// `raw_payload`.
    pub mapping: Option<Map<String, Value>>,
    pub source: Option<String>,
    /// Leads: the status to give; people: the lifecycle stage.
    pub stage: Option<String>,
}

fn normalise(header: &str) -> String {
    let h = header.trim().to_lowercase().replace([' ', '-'], "_");
    match h.as_str() {
        "firstname" | "first" | "given_name" => "first_name".into(),
        "lastname" | "last" | "surname" | "family_name" => "last_name".into(),
        "e_mail" | "email_address" | "mail" => "email".into(),
        "mobile" | "phone_number" | "telephone" => "phone".into(),
        "company" | "organization" | "organisation" | "account" => "company_name".into(),
        "job_title" | "position" | "role" => "title".into(),
        "full_name" => "name".into(),
        _ => h,
    }
}

const LEAD_FIELDS: &[&str] = &[
    "first_name",
    "last_name",
    "name",
    "email",
    "phone",
    "company_name",
    "title",
    "website",
    "source",
    "status",
    "score",
    "value",
];
const PERSON_FIELDS: &[&str] = &[
    "first_name",
    "last_name",
    "name",
    "email",
    "phone",
    "city",
    "country",
    "user_id",
    "designation",
    "title",
    "lifecycle_stage",
];

impl Services {
    /// Checks the request, records the import and starts it in the background. Answers at once
    /// with the import (status `running`).
    pub async fn start_import(&self, p: &Principal, req: ImportRequest) -> Result<Import> {
        let kind = match req.kind.as_str() {
            "leads" | "lead" => "leads",
            "people" | "contacts" | "contact" | "person" => "people",
            _ => return Err(ServiceError::invalid("kind", "must be leads or people")),
        };
        require(p, if kind == "leads" { Scope::LeadsWrite } else { Scope::ContactsWrite })?;
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(req.csv.as_bytes());
        let headers: Vec<String> = reader
            .headers()
            .map_err(|e| ServiceError::invalid("csv", format!("cannot read the header row: {e}")))?
            .iter()
            .map(str::to_string)
            .collect();
        if headers.is_empty() || headers.iter().all(|h| h.trim().is_empty()) {
            return Err(ServiceError::invalid("csv", "needs a header row"));
        }
        let allowed = if kind == "leads" { LEAD_FIELDS } else { PERSON_FIELDS };
        let mut columns: Vec<Option<String>> = Vec::with_capacity(headers.len());
        let mapping = req.mapping.unwrap_or_default();
        for (col, _) in &mapping {
            if !headers.contains(col) {
                return Err(ServiceError::invalid(&format!("mapping.{col}"), "is not a column of the CSV"));
            }
        }
        for h in &headers {
            let target = match mapping.get(h) {
                Some(Value::String(f)) => Some(f.clone()),
                Some(Value::Null) => {
                    columns.push(Some(SKIP.to_string()));
                    continue;
                }
                Some(_) => return Err(ServiceError::invalid(&format!("mapping.{h}"), "must be a field name or null")),
                None => Some(normalise(h)),
            };
            let target = target.filter(|t| allowed.contains(&t.as_str()) || t.starts_with("custom_fields."));
            if let (Some(Value::String(f)), None) = (mapping.get(h), &target) {
                return Err(ServiceError::invalid(
                    &format!("mapping.{h}"),
                    format!("{f:?} is not a field; use one of {} or custom_fields.<key>", allowed.join(", ")),
                ));
            }
            columns.push(target);
        }
        if !columns.iter().any(|c| c.as_deref() == Some("email")) && kind == "people" {
            return Err(ServiceError::invalid("mapping", "people need an email column"));
        }
        let mut rows = Vec::new();
        for (i, rec) in reader.records().enumerate() {
            let rec = rec.map_err(|e| ServiceError::invalid("csv", format!("row {}: {e}", i + 2)))?;
            rows.push(rec.iter().map(str::to_string).collect::<Vec<_>>());
            if rows.len() > MAX_ROWS {
                return Err(ServiceError::invalid("csv", format!("at most {MAX_ROWS} rows per import")));
            }
        }
        let source = req.source.as_deref().map(|s| cairn_domain::text::required("source", s, 100)).transpose()?;
        let stage = match (&req.stage, kind) {
            (None, _) => None,
            (Some(s), "leads") if leads::STATUSES[..4].contains(&s.as_str()) => Some(s.clone()),
            (Some(_), "leads") => {
                return Err(ServiceError::invalid("stage", "must be new, contacted, qualified or unqualified"))
            }
            (Some(s), _) => Some(s.clone()),
        };
        let now = self.clock.now();
        let import = self
            .store
            .write()
            .await?
            .insert_import(p.tenant_id, kind, rows.len() as i64, source.as_deref(), stage.as_deref(), now)
            .await?;
        let svc = self.clone();
        let job = import.clone();
        let principal = p.clone();
        tokio::spawn(async move {
            let id = job.id;
            if let Err(e) = svc.run_import(&principal, job, headers, columns, rows).await {
                tracing::error!(import.id = id, error = %e, "import failed");
                if let Ok(mut c) = svc.store.write().await {
                    if let Ok(mut i) = c.import(principal.tenant_id, id).await {
                        i.status = "failed".into();
                        i.finished_at = Some(svc.clock.now());
                        let _ = c.update_import(&i, svc.clock.now()).await;
                    }
                }
            }
        });
        Ok(import)
    }

    pub async fn import(&self, p: &Principal, id: i64) -> Result<Import> {
        p.require_private()?;
        found(self.store.read().await?.import(p.tenant_id, id).await, "import")
    }

    async fn run_import(
        &self,
        p: &Principal,
        mut job: Import,
        headers: Vec<String>,
        columns: Vec<Option<String>>,
        rows: Vec<Vec<String>>,
    ) -> Result<()> {
        let tenant = p.tenant_id;
        let ty = if job.kind == "leads" { EntityType::Lead } else { EntityType::Contact };
        let defs = self.store.read().await?.custom_fields(tenant, Some(ty.as_str())).await?;
        let mut errors: Vec<Value> = Vec::new();
        for (chunk_no, chunk) in rows.chunks(CHUNK).enumerate() {
            let first_row = chunk_no * CHUNK + 2; // the header is row 1
            let result = if ty == EntityType::Lead {
                self.import_leads(tenant, &job, &defs, &headers, &columns, chunk, first_row, &mut errors).await?
            } else {
                self.import_people(tenant, &job, &defs, &columns, chunk, first_row, &mut errors).await?
            };
            job.processed += chunk.len() as i64;
            job.created += result.0;
            job.updated += result.1;
            job.failed = job.processed - job.created - job.updated;
            errors.truncate(MAX_ERRORS);
            job.errors = json!(errors);
            self.store.write().await?.update_import(&job, self.clock.now()).await?;
        }
        job.status = "completed".into();
        job.finished_at = Some(self.clock.now());
        self.store.write().await?.update_import(&job, self.clock.now()).await?;
        tracing::info!(import.id = job.id, rows = job.processed, "import finished");
        Ok(())
    }

    /// One chunk of lead rows: returns (created, updated).
    #[allow(clippy::too_many_arguments)]
    async fn import_leads(
        &self,
        tenant: TenantId,
        job: &Import,
        defs: &[cairn_store::crm::settings::CustomField],
        headers: &[String],
        columns: &[Option<String>],
        chunk: &[Vec<String>],
        first_row: usize,
        errors: &mut Vec<Value>,
    ) -> Result<(i64, i64)> {
        let now = self.clock.now();
        let mut parsed: Vec<(usize, Lead)> = Vec::with_capacity(chunk.len());
        for (i, row) in chunk.iter().enumerate() {
            let row_no = first_row + i;
            let mut body = Map::new();
            let mut custom = Map::new();
            let mut raw = Map::new();
            for (j, cell) in row.iter().enumerate() {
                let cell = cell.trim();
                if cell.is_empty() {
                    continue;
                }
                match columns.get(j).cloned().flatten() {
                    Some(f) if f == SKIP => {}
                    Some(f) if f.starts_with("custom_fields.") => {
                        custom.insert(f["custom_fields.".len()..].to_string(), json!(cell));
                    }
                    Some(f) => {
                        body.insert(f, json!(cell));
                    }
                    None => {
                        if let Some(h) = headers.get(j) {
                            raw.insert(h.clone(), json!(cell));
                        }
                    }
                }
            }
            let mut l = leads::blank_lead(tenant, now);
            l.source = job.source.clone();
            if let Some(s) = &job.stage {
                l.status = s.clone();
            }
            let outcome = (|| -> Result<()> {
                let mut b = Body::new(Value::Object(body))?;
                leads::apply_body(&mut b, &mut l, true)?;
                b.finish()?;
                apply_custom_with(
                    defs,
                    EntityType::Lead,
                    &mut l.custom_fields,
                    Some(Value::Object(custom)),
                    true,
                    "custom_fields",
                )?;
                Ok(())
            })();
            match outcome {
                Ok(()) => {
                    l.raw_payload = (!raw.is_empty()).then_some(Value::Object(raw));
                    parsed.push((row_no, l));
                }
                Err(ServiceError::Invalid(fe)) => {
                    errors.push(json!({"row": row_no, "field": fe.field, "message": fe.message}))
                }
                Err(e) => return Err(e),
            }
        }
        let mut tx = self.store.begin().await?;
        let emails: Vec<String> = parsed.iter().filter_map(|(_, l)| l.email.clone()).collect();
        let mut existing: HashMap<String, Lead> = HashMap::new();
        for l in tx.leads_by_emails(tenant, &emails).await? {
            if let Some(e) = l.email.clone() {
                existing.entry(e).or_insert(l);
            }
        }
        let mut new_leads: Vec<Lead> = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut updated = 0i64;
        let mut events: Vec<(&str, Value)> = Vec::new();
        for (row_no, mut l) in parsed {
            let key = l.email.clone();
            if let Some(e) = &key {
                if let Some(current) = existing.get_mut(e) {
                    fill(current, &l);
                    current.updated_at = now;
                    let saved = tx.update_lead(tenant, current).await?;
                    events.push(("lead.updated", leads::payload(&saved, None)));
                    updated += 1;
                    continue;
                }
                if let Some(&at) = seen.get(e) {
                    // The same email twice in the file: the later row fills the earlier one.
                    let later = l.clone();
                    fill(&mut new_leads[at], &later);
                    errors.push(json!({"row": row_no, "field": "email", "message": "duplicate of an earlier row; merged into it"}));
                    continue;
                }
                seen.insert(e.clone(), new_leads.len());
            }
            l.customer_id = None;
            new_leads.push(l);
        }
        // Link each new lead to the profile of its email.
        for l in new_leads.iter_mut() {
            l.customer_id = super::customer_by_email(&mut tx, tenant, l.email.as_deref()).await?;
        }
        let ids = tx.insert_leads(tenant, &new_leads).await?;
        for (l, id) in new_leads.iter_mut().zip(&ids) {
            l.id = *id;
            events.push(("lead.created", leads::payload(l, None)));
        }
        tx.insert_outbox_many(tenant, &events, now).await?;
        tx.commit().await?;
        Ok((ids.len() as i64, updated))
    }

    /// One chunk of people rows: returns (created, updated).
    #[allow(clippy::too_many_arguments)]
    async fn import_people(
        &self,
        tenant: TenantId,
        job: &Import,
        defs: &[cairn_store::crm::settings::CustomField],
        columns: &[Option<String>],
        chunk: &[Vec<String>],
        first_row: usize,
        errors: &mut Vec<Value>,
    ) -> Result<(i64, i64)> {
        let now = self.clock.now();
        let (mut created, mut updated) = (0, 0);
        let mut tx = self.store.begin().await?;
        let lifecycle = self.lifecycle_keys_in(&mut tx, tenant).await?;
        for (i, row) in chunk.iter().enumerate() {
            let row_no = first_row + i;
            let mut body = Map::new();
            let mut custom = Map::new();
            for (j, cell) in row.iter().enumerate() {
                let cell = cell.trim();
                if cell.is_empty() {
                    continue;
                }
                match columns.get(j).cloned().flatten() {
                    Some(f) if f == SKIP => {}
                    Some(f) if f.starts_with("custom_fields.") => {
                        custom.insert(f["custom_fields.".len()..].to_string(), json!(cell));
                    }
                    Some(f) => {
                        body.insert(f, json!(cell));
                    }
                    None => {}
                }
            }
            if let (Some(stage), false) = (&job.stage, body.contains_key("lifecycle_stage")) {
                body.insert("lifecycle_stage".into(), json!(stage));
            }
            let mut traits = json!({});
            let checked = apply_custom_with(
                defs,
                EntityType::Contact,
                &mut traits,
                Some(Value::Object(custom)),
                false,
                "custom_fields",
            )
            .and_then(|_| super::people::person_fields(Value::Object(body), &lifecycle));
            let (fields, crm) = match checked {
                Ok(x) => x,
                Err(ServiceError::Invalid(fe)) => {
                    errors.push(json!({"row": row_no, "field": fe.field, "message": fe.message}));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut fields = fields;
            if let Value::Object(t) = traits {
                if let Value::Object(ft) = &mut fields.traits {
                    ft.extend(t);
                }
            }
            if job.source.is_some() {
                fields.traits["source"] = json!(job.source);
            }
            let Some(email) = fields.email.clone() else {
                errors.push(json!({"row": row_no, "field": "email", "message": "is required"}));
                continue;
            };
            match tx.customer_id_by_email(tenant, &email).await? {
                Some(id) => {
                    let cid = cairn_domain::CustomerId(id);
                    let (cu, mut current) = tx.person(tenant, cid).await?;
                    let mut merged = cairn_store::customers::CustomerFields {
                        email: cu.email.clone(),
                        external_id: cu.external_id.clone().or(fields.external_id),
                        name: cu.name.clone().or(fields.name),
                        phone: cu.phone.clone().or(fields.phone),
                        city: cu.city.clone().or(fields.city),
                        country: cu.country.clone().or(fields.country),
                        traits: cu.traits.clone(),
                    };
                    for (k, v) in fields.traits.as_object().into_iter().flatten() {
                        merged.traits[k] = v.clone();
                    }
                    let saved = match tx.update_customer(tenant, cid, &merged, now).await {
                        Ok(s) => s,
                        Err(cairn_store::StoreError::Duplicate(_)) => {
                            errors.push(json!({"row": row_no, "field": "user_id", "message": "another person has this user_id"}));
                            continue;
                        }
                        Err(e) => return Err(e.into()),
                    };
                    current.designation = current.designation.or(crm.designation);
                    current.lifecycle_stage = crm.lifecycle_stage.or(current.lifecycle_stage);
                    tx.set_person_crm(tenant, cid, &current).await?;
                    tx.insert_outbox(tenant, "contact.updated", &super::people::payload(&saved, &current), now).await?;
                    tx.mark_segments_dirty(&[(tenant, cid, cairn_segments::changed::PROFILE)], now).await?;
                    updated += 1;
                }
                None => {
                    let customer = match tx.insert_customer(tenant, &fields, now).await {
                        Ok(c) => c,
                        Err(cairn_store::StoreError::Duplicate(_)) => {
                            errors.push(json!({"row": row_no, "field": "user_id", "message": "another person has this user_id"}));
                            continue;
                        }
                        Err(e) => return Err(e.into()),
                    };
                    tx.set_person_crm(tenant, customer.id, &crm).await?;
                    tx.insert_outbox(tenant, "customer.created", &customer.created_payload(), now).await?;
                    tx.insert_outbox(tenant, "contact.created", &super::people::payload(&customer, &crm), now).await?;
                    tx.mark_segments_dirty(&[(tenant, customer.id, cairn_segments::changed::ALL)], now).await?;
                    tx.link_leads_to_customer(tenant, &email, customer.id.0).await?;
                    created += 1;
                }
            }
        }
        tx.commit().await?;
        Ok((created, updated))
    }
}

/// Fills the fields `target` lacks from `from` (an import never overwrites what is there).
fn fill(target: &mut Lead, from: &Lead) {
    macro_rules! keep {
        ($($f:ident),*) => {$( if target.$f.is_none() { target.$f = from.$f.clone(); } )*};
    }
    keep!(first_name, last_name, phone, company_name, title, website, source, score, value, assigned_to, raw_payload);
    if let (Value::Object(t), Value::Object(f)) = (&mut target.custom_fields, &from.custom_fields) {
        for (k, v) in f {
            t.entry(k.clone()).or_insert(v.clone());
        }
    }
}

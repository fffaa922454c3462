//! Leads (seed 004): people who may become customers, with status, source, score and owner.

use cairn_domain::TenantId;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::{bind_all, page, Arg, Where};
use crate::{Conn, Result, StoreError};

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Lead {
    pub id: i64,
    #[serde(skip)]
    pub tenant_id: i64,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub company_name: Option<String>,
    /// Job title.
    pub title: Option<String>,
    pub website: Option<String>,
    /// new, contacted, qualified, unqualified or converted.
    pub status: String,
    pub source: Option<String>,
    pub form_type: Option<String>,
    #[sqlx(json(nullable))]
    #[schema(value_type = Option<Object>)]
    pub raw_payload: Option<Value>,
    pub score: Option<i32>,
    pub value: Option<f64>,
    pub assigned_to: Option<i64>,
    /// The customer profile with this lead's email (tracked events and scores).
    pub customer_id: Option<i64>,
    #[sqlx(json)]
    #[schema(value_type = Object)]
    pub custom_fields: Value,
    pub contact_id: Option<i64>,
    pub prospect_id: Option<i64>,
    pub opportunity_id: Option<i64>,
    /// The lead's id in an external CRM: seed 002's webhook finds the lead by it.
    pub crm_lead_id: Option<String>,
    pub converted_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Lead {
    pub fn name(&self) -> String {
        [self.first_name.as_deref(), self.last_name.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(" ")
    }

    /// What `search` matches: name, email and company, lower-cased.
    pub fn search_text(&self) -> String {
        [Some(self.name()), self.email.clone(), self.company_name.clone()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    }
}

const COLS: &str = "id, tenant_id, first_name, last_name, email, phone, company_name, title, website, status, source, \
    form_type, raw_payload, score, value, assigned_to, customer_id, custom_fields, contact_id, prospect_id, \
    opportunity_id, crm_lead_id, converted_at, created_at, updated_at";

/// Which leads a list shows (seed 004's query parameters).
#[derive(Debug, Default, Clone)]
pub struct LeadFilter {
    pub status: Option<String>,
    pub source: Option<String>,
    pub assigned_to: Option<i64>,
    pub search: Option<String>,
    pub crm_lead_id: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    /// `custom_fields.<key>` equal to this JSON value.
    pub custom: Vec<(String, Value)>,
}

/// Sortable columns (validated by the service).
pub const SORTS: &[&str] =
    &["created_at", "updated_at", "score", "value", "last_name", "first_name", "email", "status"];

fn values(l: &Lead) -> Vec<Arg> {
    vec![
        l.first_name.clone().into(),
        l.last_name.clone().into(),
        l.email.clone().into(),
        l.phone.clone().into(),
        l.company_name.clone().into(),
        l.title.clone().into(),
        l.website.clone().into(),
        l.status.clone().into(),
        l.source.clone().into(),
        l.form_type.clone().into(),
        Arg::JsonOpt(l.raw_payload.clone()),
        Arg::I64(l.score.map(i64::from)),
        l.value.into(),
        l.assigned_to.into(),
        l.customer_id.into(),
        Arg::Json(l.custom_fields.clone()),
        l.contact_id.into(),
        l.prospect_id.into(),
        l.opportunity_id.into(),
        l.crm_lead_id.clone().into(),
        l.converted_at.into(),
        l.search_text().into(),
        l.updated_at.into(),
    ]
}

const WRITE_COLS: &[&str] = &[
    "first_name",
    "last_name",
    "email",
    "phone",
    "company_name",
    "title",
    "website",
    "status",
    "source",
    "form_type",
    "raw_payload",
    "score",
    "value",
    "assigned_to",
    "customer_id",
    "custom_fields",
    "contact_id",
    "prospect_id",
    "opportunity_id",
    "crm_lead_id",
    "converted_at",
    "search_text",
    "updated_at",
];

impl Conn {
    /// Inserts a lead as given (its `id` is ignored).
    pub async fn insert_lead(&mut self, tenant: TenantId, l: &Lead) -> Result<Lead> {
        let mut args = values(l);
        args.push(tenant.0.into());
        args.push(l.created_at.into());
        let placeholders = super::placeholders(args.len());
        let sql = format!(
            "INSERT INTO leads ({}, tenant_id, created_at) VALUES ({placeholders}) RETURNING {COLS}",
            WRITE_COLS.join(", ")
        );
        Ok(on!(self, |c| bind_all!(sqlx::query_as(&sql), args).fetch_one(c).await)?)
    }

    /// Inserts many leads in few statements (imports). Returns their ids in order.
    pub async fn insert_leads(&mut self, tenant: TenantId, leads: &[Lead]) -> Result<Vec<i64>> {
        let mut ids = Vec::with_capacity(leads.len());
        if self.backend() == crate::Backend::Sqlite {
            // sqlx looks each `$N` up by name in SQLite, quadratic in a statement's parameters:
            // one prepared single-row insert per lead is much faster there (no network round
            // trips to save, and the statement is cached).
            for l in leads {
                ids.push(self.insert_lead(tenant, l).await?.id);
            }
            return Ok(ids);
        }
        let width = WRITE_COLS.len() + 2;
        for chunk in leads.chunks(30_000 / width) {
            let mut args = Vec::with_capacity(chunk.len() * width);
            let mut rows = Vec::with_capacity(chunk.len());
            for l in chunk {
                let start = args.len();
                args.extend(values(l));
                args.push(tenant.0.into());
                args.push(l.created_at.into());
                rows.push(format!(
                    "({})",
                    (start + 1..=start + width).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
                ));
            }
            let sql = format!(
                "INSERT INTO leads ({}, tenant_id, created_at) VALUES {} RETURNING id",
                WRITE_COLS.join(", "),
                rows.join(", ")
            );
            let mut got: Vec<i64> =
                on!(self, |c| bind_all!(sqlx::query_scalar(&sql).persistent(false), args).fetch_all(c).await)?;
            got.sort_unstable();
            ids.extend(got);
        }
        Ok(ids)
    }

    pub async fn lead(&mut self, tenant: TenantId, id: i64) -> Result<Lead> {
        let sql = format!("SELECT {COLS} FROM leads WHERE tenant_id = $1 AND id = $2");
        let row: Option<Lead> = on!(self, |c| sqlx::query_as(&sql).bind(tenant.0).bind(id).fetch_optional(c).await)?;
        row.ok_or(StoreError::NotFound)
    }

    /// The workspace's leads with one of these (lower-cased) emails, oldest first per email.
    pub async fn leads_by_emails(&mut self, tenant: TenantId, emails: &[String]) -> Result<Vec<Lead>> {
        let mut out = Vec::new();
        for chunk in emails.chunks(500) {
            let mut w = Where::tenant(tenant);
            let list = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect::<Vec<_>>().join(", ");
            w.raw(&format!("email IN ({list})"));
            w.args.extend(chunk.iter().map(|e| Arg::Text(Some(e.clone()))));
            let sql = format!("SELECT {COLS} FROM leads WHERE {} ORDER BY id", w.sql());
            let rows: Vec<Lead> =
                on!(self, |c| bind_all!(sqlx::query_as(&sql).persistent(false), w.args).fetch_all(c).await)?;
            out.extend(rows);
        }
        Ok(out)
    }

    pub async fn list_leads(
        &mut self,
        tenant: TenantId,
        f: &LeadFilter,
        sort: &str,
        descending: bool,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Lead>, i64)> {
        let mut w = Where::tenant(tenant);
        w.opt("status = ?", f.status.clone());
        w.opt("source = ?", f.source.clone());
        w.opt("assigned_to = ?", f.assigned_to);
        w.opt("crm_lead_id = ?", f.crm_lead_id.clone());
        w.opt("search_text LIKE ? ESCAPE '\\'", f.search.as_deref().map(super::contains_pattern));
        w.opt("created_at >= ?", f.created_after);
        w.opt("created_at < ?", f.created_before);
        custom_conditions(&mut w, self.backend(), &f.custom);
        let sort = if SORTS.contains(&sort) { sort } else { "created_at" };
        let dir = if descending { "DESC" } else { "ASC" };
        let order = format!("{sort} {dir}, id {dir}");
        page(self, COLS, &format!("FROM leads WHERE {}", w.sql()), &order, &w.args, limit, offset).await
    }

    /// Writes every field of `l` back.
    pub async fn update_lead(&mut self, tenant: TenantId, l: &Lead) -> Result<Lead> {
        let mut args = values(l);
        let sets = super::assignments(WRITE_COLS);
        let n = args.len();
        args.push(tenant.0.into());
        args.push(l.id.into());
        let sql = format!("UPDATE leads SET {sets} WHERE tenant_id = ${} AND id = ${} RETURNING {COLS}", n + 1, n + 2);
        let row: Option<Lead> = on!(self, |c| bind_all!(sqlx::query_as(&sql), args).fetch_optional(c).await)?;
        row.ok_or(StoreError::NotFound)
    }

    /// The newest lead linked to this customer profile that is not converted.
    pub async fn open_lead_of_customer(&mut self, tenant: TenantId, customer: i64) -> Result<Option<i64>> {
        Ok(on!(self, |c| sqlx::query_scalar(
            "SELECT id FROM leads WHERE tenant_id = $1 AND customer_id = $2 AND status <> 'converted'
             ORDER BY created_at DESC, id DESC LIMIT 1"
        )
        .bind(tenant.0)
        .bind(customer)
        .fetch_optional(c)
        .await)?)
    }

    pub async fn delete_lead(&mut self, tenant: TenantId, id: i64) -> Result<bool> {
        let n = on!(self, |c| sqlx::query("DELETE FROM leads WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.0)
            .bind(id)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }

    /// Links leads without a profile to the profile of their email.
    pub async fn link_leads_to_customer(&mut self, tenant: TenantId, email: &str, customer: i64) -> Result<u64> {
        Ok(on!(self, |c| sqlx::query(
            "UPDATE leads SET customer_id = $3 WHERE tenant_id = $1 AND email = $2 AND customer_id IS NULL"
        )
        .bind(tenant.0)
        .bind(email)
        .bind(customer)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?)
    }
}

/// `custom_fields.<key> = value` conditions, comparing the JSON text of the value.
pub(crate) fn custom_conditions(w: &mut Where, backend: crate::Backend, custom: &[(String, Value)]) {
    for (key, value) in custom {
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match backend {
            crate::Backend::Postgres => {
                let n = w.next();
                w.raw(&format!("custom_fields ->> ${n} = ${}", n + 1));
                w.args.push(Arg::Text(Some(key.clone())));
                w.args.push(Arg::Text(Some(text)));
            }
            crate::Backend::Sqlite => {
                // json_extract gives SQLite values (1 for true); compare through their text.
                let n = w.next();
                w.raw(&format!(
                    "CAST(CASE json_type(custom_fields, ${n}) WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' \
                     ELSE json_extract(custom_fields, ${n}) END AS TEXT) = ${}",
                    n + 1
                ));
                w.args.push(Arg::Text(Some(format!("$.\"{}\"", key.replace('"', "")))));
                w.args.push(Arg::Text(Some(text)));
            }
        }
    }
}

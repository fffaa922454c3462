//! Prospect accounts (seed 004), which are seed 001's clients: the companies leads and people
//! work for. Converting one makes it a customer company.

use cairn_domain::TenantId;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::{bind_all, leads::custom_conditions, page, Arg, Where};
use crate::{Conn, Result, StoreError};

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Prospect {
    pub id: i64,
    #[serde(skip)]
    pub tenant_id: i64,
    pub name: String,
    pub industry: Option<String>,
    pub website: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub tax_number: Option<String>,
    /// active, inactive or converted.
    pub status: String,
    pub assigned_to: Option<i64>,
    #[sqlx(json)]
    #[schema(value_type = Object)]
    pub custom_fields: Value,
    pub converted_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLS: &str = "id, tenant_id, name, industry, website, email, phone, tax_number, status, assigned_to, \
    custom_fields, converted_at, created_at, updated_at";
const WRITE_COLS: &[&str] = &[
    "name",
    "industry",
    "website",
    "email",
    "phone",
    "tax_number",
    "status",
    "assigned_to",
    "custom_fields",
    "converted_at",
    "updated_at",
];

fn values(p: &Prospect) -> Vec<Arg> {
    vec![
        p.name.clone().into(),
        p.industry.clone().into(),
        p.website.clone().into(),
        p.email.clone().into(),
        p.phone.clone().into(),
        p.tax_number.clone().into(),
        p.status.clone().into(),
        p.assigned_to.into(),
        Arg::Json(p.custom_fields.clone()),
        p.converted_at.into(),
        p.updated_at.into(),
    ]
}

#[derive(Debug, Default, Clone)]
pub struct ProspectFilter {
    pub search: Option<String>,
    pub status: Option<String>,
    pub industry: Option<String>,
    pub custom: Vec<(String, Value)>,
}

impl Conn {
    pub async fn insert_prospect(&mut self, tenant: TenantId, p: &Prospect) -> Result<Prospect> {
        let mut args = values(p);
        args.push(tenant.0.into());
        args.push(p.created_at.into());
        let placeholders = super::placeholders(args.len());
        let sql = format!(
            "INSERT INTO prospects ({}, tenant_id, created_at) VALUES ({placeholders}) RETURNING {COLS}",
            WRITE_COLS.join(", ")
        );
        Ok(on!(self, |c| bind_all!(sqlx::query_as(&sql), args).fetch_one(c).await)?)
    }

    pub async fn prospect(&mut self, tenant: TenantId, id: i64) -> Result<Prospect> {
        let sql = format!("SELECT {COLS} FROM prospects WHERE tenant_id = $1 AND id = $2");
        let row: Option<Prospect> =
            on!(self, |c| sqlx::query_as(&sql).bind(tenant.0).bind(id).fetch_optional(c).await)?;
        row.ok_or(StoreError::NotFound)
    }

    pub async fn list_prospects(
        &mut self,
        tenant: TenantId,
        f: &ProspectFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Prospect>, i64)> {
        let mut w = Where::tenant(tenant);
        w.opt("LOWER(name) LIKE ? ESCAPE '\\'", f.search.as_deref().map(super::contains_pattern));
        w.opt("status = ?", f.status.clone());
        w.opt("LOWER(industry) = ?", f.industry.as_deref().map(str::to_lowercase));
        custom_conditions(&mut w, self.backend(), &f.custom);
        page(
            self,
            COLS,
            &format!("FROM prospects WHERE {}", w.sql()),
            "created_at DESC, id DESC",
            &w.args,
            limit,
            offset,
        )
        .await
    }

    pub async fn update_prospect(&mut self, tenant: TenantId, p: &Prospect) -> Result<Prospect> {
        let mut args = values(p);
        let sets = super::assignments(WRITE_COLS);
        let n = args.len();
        args.push(tenant.0.into());
        args.push(p.id.into());
        let sql =
            format!("UPDATE prospects SET {sets} WHERE tenant_id = ${} AND id = ${} RETURNING {COLS}", n + 1, n + 2);
        let row: Option<Prospect> = on!(self, |c| bind_all!(sqlx::query_as(&sql), args).fetch_optional(c).await)?;
        row.ok_or(StoreError::NotFound)
    }

    pub async fn delete_prospect(&mut self, tenant: TenantId, id: i64) -> Result<bool> {
        let n = on!(self, |c| sqlx::query("DELETE FROM prospects WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.0)
            .bind(id)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }
}

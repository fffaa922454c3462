//! People (seed 004), which are seed 001's contacts and seed 003's customers: one profile, with
//! the CRM's prospect account, lifecycle stage and job title next to it. Tags are the profile's
//! `traits.tags` (the automation engine's add_tag/remove_tag write the same list).

use cairn_domain::{CustomerId, TenantId};
use serde::Serialize;

use super::{page, Where};
use crate::{customers::Customer, Conn, Result, StoreError};

/// The CRM's columns of a profile.
#[derive(Debug, Clone, Default, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct PersonCrm {
    pub prospect_id: Option<i64>,
    pub lifecycle_stage: Option<String>,
    /// Job title (seed 001's `designation`).
    pub designation: Option<String>,
}

#[derive(sqlx::FromRow)]
struct Row {
    #[sqlx(flatten)]
    customer: crate::customers::Row,
    #[sqlx(flatten)]
    crm: PersonCrm,
}

#[derive(Debug, Default, Clone)]
pub struct PersonFilter {
    pub search: Option<String>,
    pub prospect_id: Option<i64>,
    pub tag: Option<String>,
    pub lifecycle_stage: Option<String>,
    /// `traits.<key>` equal to this value (contact custom fields live in traits).
    pub custom: Vec<(String, serde_json::Value)>,
}

fn cols() -> String {
    format!("{}, prospect_id, lifecycle_stage, designation", crate::customers::COLS)
}

impl Conn {
    pub async fn person(&mut self, tenant: TenantId, id: CustomerId) -> Result<(Customer, PersonCrm)> {
        let sql = format!("SELECT {} FROM customers WHERE tenant_id = $1 AND id = $2", cols());
        let row: Option<Row> = on!(self, |c| sqlx::query_as(&sql).bind(tenant.0).bind(id.0).fetch_optional(c).await)?;
        row.map(|r| (r.customer.into(), r.crm)).ok_or(StoreError::NotFound)
    }

    pub async fn set_person_crm(&mut self, tenant: TenantId, id: CustomerId, crm: &PersonCrm) -> Result<()> {
        let n = on!(self, |c| {
            sqlx::query(
            "UPDATE customers SET prospect_id = $3, lifecycle_stage = $4, designation = $5 WHERE tenant_id = $1 AND id = $2"
        )
        .bind(tenant.0)
        .bind(id.0)
        .bind(crm.prospect_id)
        .bind(crm.lifecycle_stage.as_deref())
        .bind(crm.designation.as_deref())
        .execute(c)
        .await
        .map(|r| r.rows_affected())
        })?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    pub async fn list_people(
        &mut self,
        tenant: TenantId,
        f: &PersonFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<(Customer, PersonCrm)>, i64)> {
        let mut w = Where::tenant(tenant);
        w.opt(
            "(email LIKE ? ESCAPE '\\' OR LOWER(name) LIKE ? ESCAPE '\\')",
            f.search.as_deref().map(super::contains_pattern),
        );
        w.opt("prospect_id = ?", f.prospect_id);
        w.opt("lifecycle_stage = ?", f.lifecycle_stage.clone());
        if let Some(tag) = &f.tag {
            let n = w.next();
            w.raw(&match self.backend() {
                crate::Backend::Postgres => format!("jsonb_exists(traits -> 'tags', ${n})"),
                crate::Backend::Sqlite => {
                    format!("EXISTS (SELECT 1 FROM json_each(customers.traits, '$.tags') t WHERE t.value = ${n})")
                }
            });
            w.args.push(tag.clone().into());
        }
        let mut custom = Where::default();
        super::leads::custom_conditions(&mut custom, self.backend(), &f.custom);
        if !f.custom.is_empty() {
            // Contact custom fields are traits: the same conditions, on the traits column, with
            // their placeholders renumbered after ours.
            let offset = w.args.len();
            let mut sql = custom.sql().replace("custom_fields", "traits");
            for i in (1..=custom.args.len()).rev() {
                sql = sql.replace(&format!("${i}"), &format!("${}", i + offset));
            }
            w.raw(&sql);
            w.args.extend(custom.args);
        }
        let (rows, total): (Vec<Row>, i64) = page(
            self,
            &cols(),
            &format!("FROM customers WHERE {}", w.sql()),
            "created_at DESC, id DESC",
            &w.args,
            limit,
            offset,
        )
        .await?;
        Ok((rows.into_iter().map(|r| (r.customer.into(), r.crm)).collect(), total))
    }
}

//! Opportunities (seed 004), which are seed 000's and seed 001's deals: a value moving through
//! the stages of a pipeline until it is won or lost.

use cairn_domain::TenantId;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::{bind_all, leads::custom_conditions, page, Arg, Where};
use crate::{Conn, Result, StoreError};

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Opportunity {
    pub id: i64,
    #[serde(skip)]
    pub tenant_id: i64,
    pub name: String,
    pub prospect_id: Option<i64>,
    pub contact_id: Option<i64>,
    pub lead_id: Option<i64>,
    pub pipeline_id: i64,
    pub stage_id: i64,
    /// The stage's key (`discovery`); filled from the stage on reads.
    pub stage: String,
    pub value: f64,
    pub currency: Option<String>,
    /// Win probability in percent; the stage's when not set.
    pub probability: Option<i32>,
    /// `YYYY-MM-DD`.
    pub expected_close_date: Option<String>,
    /// open, won or lost.
    pub status: String,
    pub priority: Option<String>,
    pub source: Option<String>,
    pub assigned_to: Option<i64>,
    /// Why it was won or lost.
    pub close_reason: Option<String>,
    pub closed_at: Option<DateTime<Utc>>,
    #[sqlx(json)]
    #[schema(value_type = Object)]
    pub custom_fields: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLS: &str = "o.id, o.tenant_id, o.name, o.prospect_id, o.contact_id, o.lead_id, o.pipeline_id, o.stage_id, \
    s.key AS stage, o.value, o.currency, o.probability, o.expected_close_date, o.status, o.priority, o.source, \
    o.assigned_to, o.close_reason, o.closed_at, o.custom_fields, o.created_at, o.updated_at";
const FROM: &str = "FROM opportunities o JOIN pipeline_stages s ON s.id = o.stage_id";

const WRITE_COLS: &[&str] = &[
    "name",
    "prospect_id",
    "contact_id",
    "lead_id",
    "pipeline_id",
    "stage_id",
    "value",
    "currency",
    "probability",
    "expected_close_date",
    "status",
    "priority",
    "source",
    "assigned_to",
    "close_reason",
    "closed_at",
    "custom_fields",
    "updated_at",
];

fn values(o: &Opportunity) -> Vec<Arg> {
    vec![
        o.name.clone().into(),
        o.prospect_id.into(),
        o.contact_id.into(),
        o.lead_id.into(),
        o.pipeline_id.into(),
        o.stage_id.into(),
        o.value.into(),
        o.currency.clone().into(),
        Arg::I64(o.probability.map(i64::from)),
        o.expected_close_date.clone().into(),
        o.status.clone().into(),
        o.priority.clone().into(),
        o.source.clone().into(),
        o.assigned_to.into(),
        o.close_reason.clone().into(),
        o.closed_at.into(),
        Arg::Json(o.custom_fields.clone()),
        o.updated_at.into(),
    ]
}

/// Which opportunities a list shows (seed 004's query parameters).
#[derive(Debug, Default, Clone)]
pub struct OpportunityFilter {
    /// A stage key or id.
    pub stage: Option<String>,
    pub status: Option<String>,
    pub assigned_to: Option<i64>,
    pub prospect_id: Option<i64>,
    pub contact_id: Option<i64>,
    pub lead_id: Option<i64>,
    pub pipeline_id: Option<i64>,
    pub min_value: Option<f64>,
    pub max_value: Option<f64>,
    pub search: Option<String>,
    pub custom: Vec<(String, Value)>,
}

impl Conn {
    pub async fn insert_opportunity(&mut self, tenant: TenantId, o: &Opportunity) -> Result<Opportunity> {
        let mut args = values(o);
        args.push(tenant.0.into());
        args.push(o.created_at.into());
        let placeholders = super::placeholders(args.len());
        let sql = format!(
            "INSERT INTO opportunities ({}, tenant_id, created_at) VALUES ({placeholders}) RETURNING id",
            WRITE_COLS.join(", ")
        );
        let id: i64 = on!(self, |c| bind_all!(sqlx::query_scalar(&sql), args).fetch_one(c).await)?;
        self.opportunity(tenant, id).await
    }

    pub async fn opportunity(&mut self, tenant: TenantId, id: i64) -> Result<Opportunity> {
        let sql = format!("SELECT {COLS} {FROM} WHERE o.tenant_id = $1 AND o.id = $2");
        let row: Option<Opportunity> =
            on!(self, |c| sqlx::query_as(&sql).bind(tenant.0).bind(id).fetch_optional(c).await)?;
        row.ok_or(StoreError::NotFound)
    }

    pub async fn list_opportunities(
        &mut self,
        tenant: TenantId,
        f: &OpportunityFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Opportunity>, i64)> {
        let mut w = Where::default();
        w.push("o.tenant_id = ?", tenant.0);
        if let Some(stage) = &f.stage {
            match stage.parse::<i64>() {
                Ok(id) => w.push("o.stage_id = ?", id),
                Err(_) => w.push("s.key = ?", stage.clone()),
            }
        }
        w.opt("o.status = ?", f.status.clone());
        w.opt("o.assigned_to = ?", f.assigned_to);
        w.opt("o.prospect_id = ?", f.prospect_id);
        w.opt("o.contact_id = ?", f.contact_id);
        w.opt("o.lead_id = ?", f.lead_id);
        w.opt("o.pipeline_id = ?", f.pipeline_id);
        w.opt("o.value >= ?", f.min_value);
        w.opt("o.value <= ?", f.max_value);
        w.opt("LOWER(o.name) LIKE ? ESCAPE '\\'", f.search.as_deref().map(super::contains_pattern));
        custom_conditions(&mut w, self.backend(), &f.custom);
        let from = format!("{FROM} WHERE {}", w.sql()).replace("custom_fields", "o.custom_fields");
        page(self, COLS, &from, "o.created_at DESC, o.id DESC", &w.args, limit, offset).await
    }

    pub async fn update_opportunity(&mut self, tenant: TenantId, o: &Opportunity) -> Result<Opportunity> {
        let mut args = values(o);
        let sets = super::assignments(WRITE_COLS);
        let n = args.len();
        args.push(tenant.0.into());
        args.push(o.id.into());
        let sql = format!("UPDATE opportunities SET {sets} WHERE tenant_id = ${} AND id = ${}", n + 1, n + 2);
        let done = on!(self, |c| bind_all!(sqlx::query(&sql), args).execute(c).await.map(|r| r.rows_affected()))?;
        if done == 0 {
            return Err(StoreError::NotFound);
        }
        self.opportunity(tenant, o.id).await
    }

    pub async fn delete_opportunity(&mut self, tenant: TenantId, id: i64) -> Result<bool> {
        let n = on!(self, |c| sqlx::query("DELETE FROM opportunities WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.0)
            .bind(id)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }

    /// Open opportunities of a pipeline's stages, by stage, highest value first, at most
    /// `per_stage` each; and per stage the count and value of all of them.
    pub async fn board(
        &mut self,
        tenant: TenantId,
        pipeline: i64,
        per_stage: i64,
    ) -> Result<(Vec<Opportunity>, Vec<(i64, i64, f64)>)> {
        let sql = format!(
            "SELECT {COLS} {FROM} WHERE o.tenant_id = $1 AND o.pipeline_id = $2 AND o.status = 'open'
             AND (SELECT COUNT(*) FROM opportunities x WHERE x.stage_id = o.stage_id AND x.status = 'open'
                  AND (x.value > o.value OR (x.value = o.value AND x.id < o.id))) < $3
             ORDER BY s.position, o.value DESC, o.id"
        );
        let rows: Vec<Opportunity> =
            on!(self, |c| sqlx::query_as(&sql).bind(tenant.0).bind(pipeline).bind(per_stage).fetch_all(c).await)?;
        let totals: Vec<(i64, i64, f64)> = on!(self, |c| sqlx::query_as(
            "SELECT stage_id, COUNT(*), CAST(COALESCE(SUM(value), 0) AS DOUBLE PRECISION) FROM opportunities
             WHERE tenant_id = $1 AND pipeline_id = $2 AND status = 'open' GROUP BY stage_id"
        )
        .bind(tenant.0)
        .bind(pipeline)
        .fetch_all(c)
        .await)?;
        Ok((rows, totals))
    }
}

//! Aggregates for reports (seed 000: by source, stage, owner and month) and the rows behind
//! cross-entity search.

use cairn_domain::TenantId;
use chrono::{DateTime, Utc};

use super::{bind_all, contains_pattern, Where};
use crate::{Backend, Conn, Result};

/// One group of a report.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ReportRow {
    pub key: Option<String>,
    pub count: i64,
    /// Leads: converted; opportunities: won.
    pub hits: i64,
    /// Opportunities: lost (leads: unqualified).
    pub misses: i64,
    pub value: f64,
    pub hit_value: f64,
}

/// What a report groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Source,
    Stage,
    Owner,
    Month,
    Pipeline,
}

fn month(backend: Backend, col: &str) -> String {
    match backend {
        Backend::Postgres => format!("to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM')"),
        Backend::Sqlite => format!("substr({col}, 1, 7)"),
    }
}

/// A search hit before scoring: id, title, subtitle.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct SearchRow {
    pub id: i64,
    pub title: Option<String>,
    pub subtitle: Option<String>,
}

impl Conn {
    pub async fn lead_report(
        &mut self,
        tenant: TenantId,
        by: GroupBy,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Vec<ReportRow>> {
        let key = match by {
            GroupBy::Source => "source".to_string(),
            GroupBy::Stage | GroupBy::Pipeline => "status".to_string(),
            GroupBy::Owner => "CAST(assigned_to AS TEXT)".to_string(),
            GroupBy::Month => month(self.backend(), "created_at"),
        };
        let mut w = Where::tenant(tenant);
        w.opt("created_at >= ?", from);
        w.opt("created_at < ?", to);
        let sql = format!(
            "SELECT {key} AS key, COUNT(*) AS count,
                    CAST(SUM(CASE WHEN status = 'converted' THEN 1 ELSE 0 END) AS BIGINT) AS hits,
                    CAST(SUM(CASE WHEN status = 'unqualified' THEN 1 ELSE 0 END) AS BIGINT) AS misses,
                    CAST(COALESCE(SUM(value), 0) AS DOUBLE PRECISION) AS value,
                    CAST(COALESCE(SUM(CASE WHEN status = 'converted' THEN value END), 0) AS DOUBLE PRECISION) AS hit_value
             FROM leads WHERE {} GROUP BY {key} ORDER BY 1",
            w.sql()
        );
        Ok(on!(self, |c| bind_all!(sqlx::query_as(&sql), w.args).fetch_all(c).await)?)
    }

    pub async fn opportunity_report(
        &mut self,
        tenant: TenantId,
        by: GroupBy,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Vec<ReportRow>> {
        let key = match by {
            GroupBy::Source => "o.source".to_string(),
            GroupBy::Stage => "s.key".to_string(),
            GroupBy::Owner => "CAST(o.assigned_to AS TEXT)".to_string(),
            GroupBy::Month => month(self.backend(), "o.created_at"),
            GroupBy::Pipeline => "CAST(o.pipeline_id AS TEXT)".to_string(),
        };
        let mut w = Where::default();
        w.push("o.tenant_id = ?", tenant.0);
        w.opt("o.created_at >= ?", from);
        w.opt("o.created_at < ?", to);
        let sql = format!(
            "SELECT {key} AS key, COUNT(*) AS count,
                    CAST(SUM(CASE WHEN o.status = 'won' THEN 1 ELSE 0 END) AS BIGINT) AS hits,
                    CAST(SUM(CASE WHEN o.status = 'lost' THEN 1 ELSE 0 END) AS BIGINT) AS misses,
                    CAST(COALESCE(SUM(o.value), 0) AS DOUBLE PRECISION) AS value,
                    CAST(COALESCE(SUM(CASE WHEN o.status = 'won' THEN o.value END), 0) AS DOUBLE PRECISION) AS hit_value
             FROM opportunities o JOIN pipeline_stages s ON s.id = o.stage_id
             WHERE {} GROUP BY {key} ORDER BY 1",
            w.sql()
        );
        Ok(on!(self, |c| bind_all!(sqlx::query_as(&sql), w.args).fetch_all(c).await)?)
    }

    /// Up to `limit` rows of one entity type whose searchable text contains `q`.
    pub async fn search_rows(
        &mut self,
        tenant: TenantId,
        ty: super::EntityType,
        q: &str,
        limit: i64,
    ) -> Result<Vec<SearchRow>> {
        let (select, cond) = match ty {
            super::EntityType::Lead => (
                "id, TRIM(COALESCE(first_name, '') || ' ' || COALESCE(last_name, '')) AS title, \
                 COALESCE(company_name, email) AS subtitle",
                "search_text LIKE $2 ESCAPE '\\'",
            ),
            super::EntityType::Contact => (
                "id, COALESCE(name, email) AS title, email AS subtitle",
                "(email LIKE $2 ESCAPE '\\' OR LOWER(name) LIKE $2 ESCAPE '\\')",
            ),
            super::EntityType::Prospect => {
                ("id, name AS title, industry AS subtitle", "LOWER(name) LIKE $2 ESCAPE '\\'")
            }
            super::EntityType::Opportunity => {
                ("id, name AS title, status AS subtitle", "LOWER(name) LIKE $2 ESCAPE '\\'")
            }
        };
        let sql =
            format!("SELECT {select} FROM {} WHERE tenant_id = $1 AND {cond} ORDER BY id DESC LIMIT $3", ty.table());
        let pattern = contains_pattern(q);
        Ok(on!(self, |c| sqlx::query_as(&sql).bind(tenant.0).bind(&pattern).bind(limit).fetch_all(c).await)?)
    }
}

//! The CRM's configuration and intake: pipelines with their stages, custom field definitions,
//! forms with their submissions, and CSV imports.

use cairn_domain::TenantId;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::{Conn, Result, StoreError};

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Pipeline {
    pub id: i64,
    #[serde(skip)]
    pub tenant_id: i64,
    /// `deals` (opportunity pipelines) or `lifecycle` (contact lifecycle stages).
    pub kind: String,
    pub name: String,
    pub is_default: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Stage {
    pub id: i64,
    #[serde(skip)]
    pub pipeline_id: i64,
    /// Stable key used in filters and bodies (`discovery`).
    pub key: String,
    pub name: String,
    pub position: i32,
    /// Win probability in percent.
    pub probability: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct CustomField {
    pub id: i64,
    #[serde(skip)]
    pub tenant_id: i64,
    pub entity_type: String,
    pub key: String,
    pub label: String,
    /// text, number, date, boolean, select, multi_select, url or email.
    pub field_type: String,
    #[sqlx(json)]
    #[schema(value_type = Vec<String>)]
    pub options: Value,
    pub required: bool,
    pub position: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Form {
    pub id: i64,
    #[serde(skip)]
    pub tenant_id: i64,
    pub name: String,
    /// The public token of its submission URL.
    pub token: String,
    #[sqlx(json)]
    #[schema(value_type = Vec<Object>)]
    pub fields: Value,
    /// Source given to the leads it creates.
    pub source: Option<String>,
    /// Status given to the leads it creates.
    pub lead_status: String,
    pub form_type: Option<String>,
    /// Name of the hidden field that only bots fill in.
    pub honeypot: Option<String>,
    pub is_active: bool,
    pub submissions: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Import {
    pub id: i64,
    #[serde(skip)]
    pub tenant_id: i64,
    /// `leads` or `people`.
    pub kind: String,
    /// `running`, `completed` or `failed`.
    pub status: String,
    pub total_rows: i64,
    pub processed: i64,
    pub created: i64,
    pub updated: i64,
    pub failed: i64,
    /// `[{row, field, message}]`, at most 1,000.
    #[sqlx(json)]
    #[schema(value_type = Vec<Object>)]
    pub errors: Value,
    pub source: Option<String>,
    pub stage: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

const PIPELINE_COLS: &str = "id, tenant_id, kind, name, is_default, created_at, updated_at";
const STAGE_COLS: &str = "id, pipeline_id, key, name, position, probability";
const FIELD_COLS: &str =
    "id, tenant_id, entity_type, key, label, field_type, options, required, position, created_at, updated_at";
const FORM_COLS: &str = "id, tenant_id, name, token, fields, source, lead_status, form_type, honeypot, is_active, \
    submissions, created_at, updated_at";
const IMPORT_COLS: &str = "id, tenant_id, kind, status, total_rows, processed, created, updated, failed, errors, \
    source, stage, created_at, finished_at";

impl Conn {
    pub async fn insert_pipeline(
        &mut self,
        tenant: TenantId,
        kind: &str,
        name: &str,
        is_default: bool,
        now: DateTime<Utc>,
    ) -> Result<Pipeline> {
        let sql = format!(
            "INSERT INTO pipelines (tenant_id, kind, name, is_default, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5) RETURNING {PIPELINE_COLS}"
        );
        Ok(on!(self, |c| sqlx::query_as(&sql)
            .bind(tenant.0)
            .bind(kind)
            .bind(name)
            .bind(is_default)
            .bind(now)
            .fetch_one(c)
            .await)?)
    }

    pub async fn pipelines(&mut self, tenant: TenantId, kind: Option<&str>) -> Result<Vec<Pipeline>> {
        let sql = format!(
            "SELECT {PIPELINE_COLS} FROM pipelines WHERE tenant_id = $1 AND ($2 IS NULL OR kind = $2) ORDER BY kind, id"
        );
        Ok(on!(self, |c| sqlx::query_as(&sql).bind(tenant.0).bind(kind).fetch_all(c).await)?)
    }

    pub async fn pipeline(&mut self, tenant: TenantId, id: i64) -> Result<Pipeline> {
        let sql = format!("SELECT {PIPELINE_COLS} FROM pipelines WHERE tenant_id = $1 AND id = $2");
        let row: Option<Pipeline> =
            on!(self, |c| sqlx::query_as(&sql).bind(tenant.0).bind(id).fetch_optional(c).await)?;
        row.ok_or(StoreError::NotFound)
    }

    pub async fn rename_pipeline(
        &mut self,
        tenant: TenantId,
        id: i64,
        name: &str,
        is_default: bool,
        now: DateTime<Utc>,
    ) -> Result<()> {
        if is_default {
            on!(self, |c| {
                sqlx::query(
                "UPDATE pipelines SET is_default = FALSE WHERE tenant_id = $1 AND kind = (SELECT kind FROM pipelines WHERE id = $2)"
            )
            .bind(tenant.0)
            .bind(id)
            .execute(c).await.map(|r| r.rows_affected())
            })?;
        }
        on!(self, |c| sqlx::query(
            "UPDATE pipelines SET name = $3, is_default = $4, updated_at = $5 WHERE tenant_id = $1 AND id = $2"
        )
        .bind(tenant.0)
        .bind(id)
        .bind(name)
        .bind(is_default)
        .bind(now)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn stages(&mut self, pipeline: i64) -> Result<Vec<Stage>> {
        let sql = format!("SELECT {STAGE_COLS} FROM pipeline_stages WHERE pipeline_id = $1 ORDER BY position, id");
        Ok(on!(self, |c| sqlx::query_as(&sql).bind(pipeline).fetch_all(c).await)?)
    }

    /// Replaces a pipeline's stages: stages with an id that exists keep it (their deals stay),
    /// new ones are added, and missing ones are removed (the service checks they are empty).
    pub async fn replace_stages(&mut self, tenant: TenantId, pipeline: i64, stages: &[Stage]) -> Result<Vec<Stage>> {
        let keep: Vec<i64> = stages.iter().map(|s| s.id).filter(|id| *id > 0).collect();
        let existing = self.stages(pipeline).await?;
        for s in existing.iter().filter(|s| !keep.contains(&s.id)) {
            on!(self, |c| sqlx::query("DELETE FROM pipeline_stages WHERE id = $1")
                .bind(s.id)
                .execute(c)
                .await
                .map(|r| r.rows_affected()))?;
        }
        // Keys are unique per pipeline: park the kept ones first so that swapping keys works.
        for s in existing.iter().filter(|s| keep.contains(&s.id)) {
            on!(self, |c| sqlx::query("UPDATE pipeline_stages SET key = $2 WHERE id = $1")
                .bind(s.id)
                .bind(format!("__{}", s.id))
                .execute(c)
                .await
                .map(|r| r.rows_affected()))?;
        }
        for s in stages {
            if s.id > 0 {
                on!(self, |c| {
                    sqlx::query(
                    "UPDATE pipeline_stages SET key = $2, name = $3, position = $4, probability = $5 WHERE id = $1 AND pipeline_id = $6"
                )
                .bind(s.id)
                .bind(&s.key)
                .bind(&s.name)
                .bind(s.position)
                .bind(s.probability)
                .bind(pipeline)
                .execute(c).await.map(|r| r.rows_affected())
                })?;
            } else {
                on!(self, |c| {
                    sqlx::query(
                    "INSERT INTO pipeline_stages (tenant_id, pipeline_id, key, name, position, probability) VALUES ($1, $2, $3, $4, $5, $6)"
                )
                .bind(tenant.0)
                .bind(pipeline)
                .bind(&s.key)
                .bind(&s.name)
                .bind(s.position)
                .bind(s.probability)
                .execute(c).await.map(|r| r.rows_affected())
                })?;
            }
        }
        self.stages(pipeline).await
    }

    /// How many opportunities sit in each of these stages (any status).
    pub async fn stage_usage(&mut self, stage: i64) -> Result<i64> {
        Ok(on!(self, |c| sqlx::query_scalar("SELECT COUNT(*) FROM opportunities WHERE stage_id = $1")
            .bind(stage)
            .fetch_one(c)
            .await)?)
    }

    pub async fn pipeline_usage(&mut self, pipeline: i64) -> Result<i64> {
        Ok(on!(self, |c| sqlx::query_scalar("SELECT COUNT(*) FROM opportunities WHERE pipeline_id = $1")
            .bind(pipeline)
            .fetch_one(c)
            .await)?)
    }

    pub async fn insert_custom_field(&mut self, tenant: TenantId, f: &CustomField) -> Result<CustomField> {
        let sql = format!(
            "INSERT INTO custom_fields (tenant_id, entity_type, key, label, field_type, options, required, position, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING {FIELD_COLS}"
        );
        Ok(on!(self, |c| sqlx::query_as(&sql)
            .bind(tenant.0)
            .bind(&f.entity_type)
            .bind(&f.key)
            .bind(&f.label)
            .bind(&f.field_type)
            .bind(crate::Json(&f.options))
            .bind(f.required)
            .bind(f.position)
            .bind(f.created_at)
            .fetch_one(c)
            .await)?)
    }

    pub async fn update_custom_field(&mut self, tenant: TenantId, f: &CustomField) -> Result<CustomField> {
        let sql = format!(
            "UPDATE custom_fields SET label = $3, options = $4, required = $5, position = $6, updated_at = $7
             WHERE tenant_id = $1 AND id = $2 RETURNING {FIELD_COLS}"
        );
        let row: Option<CustomField> = on!(self, |c| sqlx::query_as(&sql)
            .bind(tenant.0)
            .bind(f.id)
            .bind(&f.label)
            .bind(crate::Json(&f.options))
            .bind(f.required)
            .bind(f.position)
            .bind(f.updated_at)
            .fetch_optional(c)
            .await)?;
        row.ok_or(StoreError::NotFound)
    }

    pub async fn custom_field(&mut self, tenant: TenantId, id: i64) -> Result<CustomField> {
        let sql = format!("SELECT {FIELD_COLS} FROM custom_fields WHERE tenant_id = $1 AND id = $2");
        let row: Option<CustomField> =
            on!(self, |c| sqlx::query_as(&sql).bind(tenant.0).bind(id).fetch_optional(c).await)?;
        row.ok_or(StoreError::NotFound)
    }

    pub async fn custom_fields(&mut self, tenant: TenantId, entity_type: Option<&str>) -> Result<Vec<CustomField>> {
        let sql = format!(
            "SELECT {FIELD_COLS} FROM custom_fields WHERE tenant_id = $1 AND ($2 IS NULL OR entity_type = $2)
             ORDER BY entity_type, position, id"
        );
        Ok(on!(self, |c| sqlx::query_as(&sql).bind(tenant.0).bind(entity_type).fetch_all(c).await)?)
    }

    pub async fn insert_form(&mut self, tenant: TenantId, f: &Form) -> Result<Form> {
        let sql = format!(
            "INSERT INTO forms (tenant_id, name, token, fields, source, lead_status, form_type, honeypot, is_active, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING {FORM_COLS}"
        );
        Ok(on!(self, |c| sqlx::query_as(&sql)
            .bind(tenant.0)
            .bind(&f.name)
            .bind(&f.token)
            .bind(crate::Json(&f.fields))
            .bind(&f.source)
            .bind(&f.lead_status)
            .bind(&f.form_type)
            .bind(&f.honeypot)
            .bind(f.is_active)
            .bind(f.created_at)
            .fetch_one(c)
            .await)?)
    }

    pub async fn update_form(&mut self, tenant: TenantId, f: &Form) -> Result<Form> {
        let sql = format!(
            "UPDATE forms SET name = $3, fields = $4, source = $5, lead_status = $6, form_type = $7, honeypot = $8,
                 is_active = $9, updated_at = $10
             WHERE tenant_id = $1 AND id = $2 RETURNING {FORM_COLS}"
        );
        let row: Option<Form> = on!(self, |c| sqlx::query_as(&sql)
            .bind(tenant.0)
            .bind(f.id)
            .bind(&f.name)
            .bind(crate::Json(&f.fields))
            .bind(&f.source)
            .bind(&f.lead_status)
            .bind(&f.form_type)
            .bind(&f.honeypot)
            .bind(f.is_active)
            .bind(f.updated_at)
            .fetch_optional(c)
            .await)?;
        row.ok_or(StoreError::NotFound)
    }

    pub async fn form(&mut self, tenant: TenantId, id: i64) -> Result<Form> {
        let sql = format!("SELECT {FORM_COLS} FROM forms WHERE tenant_id = $1 AND id = $2");
        let row: Option<Form> = on!(self, |c| sqlx::query_as(&sql).bind(tenant.0).bind(id).fetch_optional(c).await)?;
        row.ok_or(StoreError::NotFound)
    }

    /// A form by its public token, whichever workspace it belongs to.
    pub async fn form_by_token(&mut self, token: &str) -> Result<Form> {
        let sql = format!("SELECT {FORM_COLS} FROM forms WHERE token = $1");
        let row: Option<Form> = on!(self, |c| sqlx::query_as(&sql).bind(token).fetch_optional(c).await)?;
        row.ok_or(StoreError::NotFound)
    }

    pub async fn forms(&mut self, tenant: TenantId, limit: i64, offset: i64) -> Result<(Vec<Form>, i64)> {
        let w = super::Where::tenant(tenant);
        super::page(self, FORM_COLS, &format!("FROM forms WHERE {}", w.sql()), "id DESC", &w.args, limit, offset).await
    }

    pub async fn insert_form_submission(
        &mut self,
        tenant: TenantId,
        form: i64,
        lead: Option<i64>,
        data: &Value,
        crm_lead_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        let id = on!(self, |c| {
            sqlx::query_scalar(
                "INSERT INTO form_submissions (tenant_id, form_id, lead_id, data, crm_lead_id, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(tenant.0)
            .bind(form)
            .bind(lead)
            .bind(crate::Json(data))
            .bind(crm_lead_id)
            .bind(now)
            .fetch_one(c)
            .await
        })?;
        on!(self, |c| sqlx::query("UPDATE forms SET submissions = submissions + 1 WHERE id = $1")
            .bind(form)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(id)
    }

    pub async fn insert_import(
        &mut self,
        tenant: TenantId,
        kind: &str,
        total: i64,
        source: Option<&str>,
        stage: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Import> {
        let sql = format!(
            "INSERT INTO imports (tenant_id, kind, status, total_rows, source, stage, created_at, heartbeat_at)
             VALUES ($1, $2, 'running', $3, $4, $5, $6, $6) RETURNING {IMPORT_COLS}"
        );
        Ok(on!(self, |c| sqlx::query_as(&sql)
            .bind(tenant.0)
            .bind(kind)
            .bind(total)
            .bind(source)
            .bind(stage)
            .bind(now)
            .fetch_one(c)
            .await)?)
    }

    /// Records an import's progress (and, with `finished_at`, its end).
    pub async fn update_import(&mut self, i: &Import, now: DateTime<Utc>) -> Result<()> {
        on!(self, |c| sqlx::query(
            "UPDATE imports SET status = $2, processed = $3, created = $4, updated = $5, failed = $6, errors = $7,
                 finished_at = $8, heartbeat_at = $9
             WHERE id = $1"
        )
        .bind(i.id)
        .bind(&i.status)
        .bind(i.processed)
        .bind(i.created)
        .bind(i.updated)
        .bind(i.failed)
        .bind(crate::Json(&i.errors))
        .bind(i.finished_at)
        .bind(now)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Marks failed the running imports without progress since `before` (their instance died).
    pub async fn fail_stale_imports(&mut self, before: DateTime<Utc>, now: DateTime<Utc>) -> Result<u64> {
        Ok(on!(self, |c| sqlx::query(
            "UPDATE imports SET status = 'failed', finished_at = $2 WHERE status = 'running' AND heartbeat_at < $1"
        )
        .bind(before)
        .bind(now)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?)
    }

    pub async fn import(&mut self, tenant: TenantId, id: i64) -> Result<Import> {
        let sql = format!("SELECT {IMPORT_COLS} FROM imports WHERE tenant_id = $1 AND id = $2");
        let row: Option<Import> = on!(self, |c| sqlx::query_as(&sql).bind(tenant.0).bind(id).fetch_optional(c).await)?;
        row.ok_or(StoreError::NotFound)
    }
}

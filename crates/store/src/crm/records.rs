//! What hangs off any CRM entity: activities (calls, emails, meetings, tasks, notes to do),
//! notes, and files.

use cairn_domain::TenantId;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{bind_all, page, Arg, EntityType, Where};
use crate::{Conn, Result, StoreError};

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Activity {
    pub id: i64,
    #[serde(skip)]
    pub tenant_id: i64,
    /// call, email, meeting, task or note.
    #[serde(rename = "type")]
    pub kind: String,
    pub subject: String,
    pub description: Option<String>,
    pub entity_type: Option<String>,
    pub entity_id: Option<i64>,
    pub assigned_to: Option<i64>,
    pub due_date: Option<DateTime<Utc>>,
    pub duration_minutes: Option<i32>,
    pub completed: bool,
    pub completed_at: Option<DateTime<Utc>>,
    pub outcome: Option<String>,
    pub created_by: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const ACTIVITY_COLS: &str = "id, tenant_id, type AS kind, subject, description, entity_type, entity_id, assigned_to, \
    due_date, duration_minutes, completed, completed_at, outcome, created_by, created_at, updated_at";
const ACTIVITY_WRITE: &[&str] = &[
    "type",
    "subject",
    "description",
    "entity_type",
    "entity_id",
    "assigned_to",
    "due_date",
    "duration_minutes",
    "completed",
    "completed_at",
    "outcome",
    "updated_at",
];

fn activity_values(a: &Activity) -> Vec<Arg> {
    vec![
        a.kind.clone().into(),
        a.subject.clone().into(),
        a.description.clone().into(),
        a.entity_type.clone().into(),
        a.entity_id.into(),
        a.assigned_to.into(),
        a.due_date.into(),
        Arg::I64(a.duration_minutes.map(i64::from)),
        a.completed.into(),
        a.completed_at.into(),
        a.outcome.clone().into(),
        a.updated_at.into(),
    ]
}

#[derive(Debug, Default, Clone)]
pub struct ActivityFilter {
    pub kind: Option<String>,
    pub entity_type: Option<EntityType>,
    pub entity_id: Option<i64>,
    pub assigned_to: Option<i64>,
    pub completed: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Note {
    pub id: i64,
    #[serde(skip)]
    pub tenant_id: i64,
    pub entity_type: String,
    pub entity_id: i64,
    pub content: String,
    pub is_pinned: bool,
    pub author_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const NOTE_COLS: &str = "id, tenant_id, entity_type, entity_id, content, is_pinned, author_id, created_at, updated_at";

/// A stored file's description (its bytes are read separately).
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct FileMeta {
    pub id: i64,
    #[serde(skip)]
    pub tenant_id: i64,
    pub entity_type: String,
    pub entity_id: i64,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    pub uploaded_by: Option<i64>,
    pub created_at: DateTime<Utc>,
}

const FILE_COLS: &str =
    "id, tenant_id, entity_type, entity_id, filename, content_type, size, sha256, uploaded_by, created_at";

impl Conn {
    pub async fn insert_activity(&mut self, tenant: TenantId, a: &Activity) -> Result<Activity> {
        let mut args = activity_values(a);
        args.push(a.created_by.into());
        args.push(tenant.0.into());
        args.push(a.created_at.into());
        let placeholders = super::placeholders(args.len());
        let sql = format!(
            "INSERT INTO activities ({}, created_by, tenant_id, created_at) VALUES ({placeholders}) RETURNING {ACTIVITY_COLS}",
            ACTIVITY_WRITE.join(", ")
        );
        Ok(on!(self, |c| bind_all!(sqlx::query_as(&sql), args).fetch_one(c).await)?)
    }

    pub async fn activity(&mut self, tenant: TenantId, id: i64) -> Result<Activity> {
        let sql = format!("SELECT {ACTIVITY_COLS} FROM activities WHERE tenant_id = $1 AND id = $2");
        let row: Option<Activity> =
            on!(self, |c| sqlx::query_as(&sql).bind(tenant.0).bind(id).fetch_optional(c).await)?;
        row.ok_or(StoreError::NotFound)
    }

    pub async fn list_activities(
        &mut self,
        tenant: TenantId,
        f: &ActivityFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Activity>, i64)> {
        let mut w = Where::tenant(tenant);
        w.opt("type = ?", f.kind.clone());
        w.opt("entity_type = ?", f.entity_type.map(|t| t.as_str()));
        w.opt("entity_id = ?", f.entity_id);
        w.opt("assigned_to = ?", f.assigned_to);
        w.opt("completed = ?", f.completed);
        let from = format!("FROM activities WHERE {}", w.sql());
        page(self, ACTIVITY_COLS, &from, "COALESCE(due_date, created_at) DESC, id DESC", &w.args, limit, offset).await
    }

    pub async fn update_activity(&mut self, tenant: TenantId, a: &Activity) -> Result<Activity> {
        let mut args = activity_values(a);
        let sets = super::assignments(ACTIVITY_WRITE);
        let n = args.len();
        args.push(tenant.0.into());
        args.push(a.id.into());
        let sql = format!(
            "UPDATE activities SET {sets} WHERE tenant_id = ${} AND id = ${} RETURNING {ACTIVITY_COLS}",
            n + 1,
            n + 2
        );
        let row: Option<Activity> = on!(self, |c| bind_all!(sqlx::query_as(&sql), args).fetch_optional(c).await)?;
        row.ok_or(StoreError::NotFound)
    }

    pub async fn delete_row(&mut self, tenant: TenantId, table: Table, id: i64) -> Result<bool> {
        let sql = format!("DELETE FROM {} WHERE tenant_id = $1 AND id = $2", table.name());
        let n = on!(self, |c| sqlx::query(&sql).bind(tenant.0).bind(id).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }

    pub async fn insert_note(&mut self, tenant: TenantId, n: &Note) -> Result<Note> {
        let sql = format!(
            "INSERT INTO notes (tenant_id, entity_type, entity_id, content, is_pinned, author_id, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING {NOTE_COLS}"
        );
        Ok(on!(self, |c| sqlx::query_as(&sql)
            .bind(tenant.0)
            .bind(&n.entity_type)
            .bind(n.entity_id)
            .bind(&n.content)
            .bind(n.is_pinned)
            .bind(n.author_id)
            .bind(n.created_at)
            .fetch_one(c)
            .await)?)
    }

    pub async fn note(&mut self, tenant: TenantId, id: i64) -> Result<Note> {
        let sql = format!("SELECT {NOTE_COLS} FROM notes WHERE tenant_id = $1 AND id = $2");
        let row: Option<Note> = on!(self, |c| sqlx::query_as(&sql).bind(tenant.0).bind(id).fetch_optional(c).await)?;
        row.ok_or(StoreError::NotFound)
    }

    /// Notes of an entity (or of every entity of a type, or all), pinned first, newest first.
    pub async fn list_notes(
        &mut self,
        tenant: TenantId,
        entity: (Option<EntityType>, Option<i64>),
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Note>, i64)> {
        let mut w = Where::tenant(tenant);
        w.opt("entity_type = ?", entity.0.map(|t| t.as_str()));
        w.opt("entity_id = ?", entity.1);
        let from = format!("FROM notes WHERE {}", w.sql());
        page(self, NOTE_COLS, &from, "is_pinned DESC, created_at DESC, id DESC", &w.args, limit, offset).await
    }

    pub async fn update_note(&mut self, tenant: TenantId, n: &Note) -> Result<Note> {
        let sql = format!(
            "UPDATE notes SET content = $3, is_pinned = $4, updated_at = $5 WHERE tenant_id = $1 AND id = $2 RETURNING {NOTE_COLS}"
        );
        let row: Option<Note> = on!(self, |c| sqlx::query_as(&sql)
            .bind(tenant.0)
            .bind(n.id)
            .bind(&n.content)
            .bind(n.is_pinned)
            .bind(n.updated_at)
            .fetch_optional(c)
            .await)?;
        row.ok_or(StoreError::NotFound)
    }

    pub async fn insert_file(&mut self, tenant: TenantId, f: &FileMeta, content: &[u8]) -> Result<FileMeta> {
        let sql = format!(
            "INSERT INTO files (tenant_id, entity_type, entity_id, filename, content_type, size, sha256, content, uploaded_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {FILE_COLS}"
        );
        Ok(on!(self, |c| sqlx::query_as(&sql)
            .bind(tenant.0)
            .bind(&f.entity_type)
            .bind(f.entity_id)
            .bind(&f.filename)
            .bind(&f.content_type)
            .bind(f.size)
            .bind(&f.sha256)
            .bind(content)
            .bind(f.uploaded_by)
            .bind(f.created_at)
            .fetch_one(c)
            .await)?)
    }

    pub async fn file_meta(&mut self, tenant: TenantId, id: i64) -> Result<FileMeta> {
        let sql = format!("SELECT {FILE_COLS} FROM files WHERE tenant_id = $1 AND id = $2");
        let row: Option<FileMeta> =
            on!(self, |c| sqlx::query_as(&sql).bind(tenant.0).bind(id).fetch_optional(c).await)?;
        row.ok_or(StoreError::NotFound)
    }

    pub async fn file_content(&mut self, tenant: TenantId, id: i64) -> Result<Vec<u8>> {
        let row: Option<Vec<u8>> =
            on!(self, |c| sqlx::query_scalar("SELECT content FROM files WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.0)
                .bind(id)
                .fetch_optional(c)
                .await)?;
        row.ok_or(StoreError::NotFound)
    }

    pub async fn list_files(
        &mut self,
        tenant: TenantId,
        entity: (Option<EntityType>, Option<i64>),
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<FileMeta>, i64)> {
        let mut w = Where::tenant(tenant);
        w.opt("entity_type = ?", entity.0.map(|t| t.as_str()));
        w.opt("entity_id = ?", entity.1);
        let from = format!("FROM files WHERE {}", w.sql());
        page(self, FILE_COLS, &from, "created_at DESC, id DESC", &w.args, limit, offset).await
    }
}

/// Tables whose rows are deleted by id alone.
#[derive(Debug, Clone, Copy)]
pub enum Table {
    Activities,
    Notes,
    Files,
    CustomFields,
    Forms,
    Pipelines,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Activities => "activities",
            Table::Notes => "notes",
            Table::Files => "files",
            Table::CustomFields => "custom_fields",
            Table::Forms => "forms",
            Table::Pipelines => "pipelines",
        }
    }
}

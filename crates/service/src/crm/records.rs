//! Activities (seed 004: calls, emails, meetings, tasks, notes to do), notes and files on any
//! CRM entity. Each checks the entity it hangs off exists in the workspace and the caller may
//! read (to list) or write (to add) that entity.

use cairn_domain::Scope;
use cairn_store::crm::{
    records::{Activity, ActivityFilter, FileMeta, Note, Table},
    EntityType,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{body::Body, emit, parse_entity_type, require, scopes};
use crate::{found, Principal, Result, ServiceError, Services};

pub const ACTIVITY_TYPES: &[&str] = &["call", "email", "meeting", "task", "note"];

/// Largest file accepted by default (seed 000's "files"): 10 MB.
pub const MAX_FILE_BYTES: usize = 10 * 1024 * 1024;

pub fn activity_payload(a: &Activity) -> Value {
    let mut v = serde_json::to_value(a).unwrap_or_default();
    v["activity_id"] = json!(a.id);
    v
}

impl Services {
    /// Checks the entity exists and the caller holds the entity's scope (`which`: 0 read, 1 write).
    async fn check_entity(
        &self,
        p: &Principal,
        c: &mut cairn_store::Conn,
        ty: EntityType,
        id: i64,
        which: usize,
    ) -> Result<()> {
        p.require(scopes(ty)[which])?;
        if !c.entity_exists(p.tenant_id, ty, id).await? {
            return Err(ServiceError::invalid("entity_id", format!("{} {id} does not exist", ty.as_str())));
        }
        Ok(())
    }

    fn apply_activity(&self, b: &mut Body, a: &mut Activity) -> Result<()> {
        b.alias("dueDate", "due_date").alias("title", "subject").alias("durationMinutes", "duration_minutes");
        if let Some(t) = b.choice("type", ACTIVITY_TYPES)? {
            a.kind = t;
        }
        if let Some(s) = b.required_text("subject", 300)? {
            a.subject = s;
        }
        super::body::set(&mut a.description, b.text("description", 10_000)?);
        super::body::set(&mut a.due_date, b.time("due_date")?);
        if let Some(d) = b.int("duration_minutes", 0, 24 * 60 * 7)? {
            a.duration_minutes = d.map(|d| d as i32);
        }
        super::body::set(&mut a.assigned_to, b.int("assigned_to", 1, i64::MAX)?);
        super::body::set(&mut a.outcome, b.text("outcome", 2000)?);
        Ok(())
    }

    pub async fn create_activity(&self, p: &Principal, body: Value) -> Result<Activity> {
        require(p, Scope::ActivitiesWrite)?;
        let mut b = Body::new(body)?;
        let entity_type = b.text("entity_type", 20)?.flatten();
        let entity_id = b.int("entity_id", 1, i64::MAX)?.flatten();
        self.create_activity_on(p, entity_type, entity_id, b).await
    }

    /// `POST /v1/leads/{id}/activities` and friends: the entity comes from the path.
    pub async fn create_entity_activity(
        &self,
        p: &Principal,
        ty: EntityType,
        id: i64,
        body: Value,
    ) -> Result<Activity> {
        require(p, Scope::ActivitiesWrite)?;
        let mut b = Body::new(body)?;
        b.take("entity_type");
        b.take("entity_id");
        self.create_activity_on(p, Some(ty.as_str().into()), Some(id), b).await
    }

    async fn create_activity_on(
        &self,
        p: &Principal,
        entity_type: Option<String>,
        entity_id: Option<i64>,
        mut b: Body,
    ) -> Result<Activity> {
        let now = self.clock.now();
        let mut a = Activity {
            id: 0,
            tenant_id: p.tenant_id.0,
            kind: String::new(),
            subject: String::new(),
            description: None,
            entity_type: None,
            entity_id: None,
            assigned_to: None,
            due_date: None,
            duration_minutes: None,
            completed: false,
            completed_at: None,
            outcome: None,
            created_by: p.user_id().map(|u| u.0),
            created_at: now,
            updated_at: now,
        };
        self.apply_activity(&mut b, &mut a)?;
        let completed = b.flag("completed")?.unwrap_or(false);
        b.finish()?;
        if a.kind.is_empty() {
            return Err(ServiceError::invalid("type", format!("is required: one of {}", ACTIVITY_TYPES.join(", "))));
        }
        if a.subject.is_empty() {
            return Err(ServiceError::invalid("subject", "is required"));
        }
        let mut tx = self.store.begin().await?;
        match (entity_type, entity_id) {
            (Some(t), Some(id)) => {
                let ty = parse_entity_type("entity_type", &t)?;
                self.check_entity(p, &mut tx, ty, id, 0).await?;
                a.entity_type = Some(ty.as_str().into());
                a.entity_id = Some(id);
            }
            (None, None) => {}
            (Some(_), None) => return Err(ServiceError::invalid("entity_id", "is required with entity_type")),
            (None, Some(_)) => return Err(ServiceError::invalid("entity_type", "is required with entity_id")),
        }
        super::check_owner(&mut tx, p.tenant_id, "assigned_to", a.assigned_to).await?;
        if completed {
            a.completed = true;
            a.completed_at = Some(now);
        }
        let a = tx.insert_activity(p.tenant_id, &a).await?;
        if a.completed {
            emit(&mut tx, p.tenant_id, "activity.completed", &activity_payload(&a), now).await?;
        }
        tx.commit().await?;
        Ok(a)
    }

    pub async fn activities(
        &self,
        p: &Principal,
        f: &ActivityFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Activity>, i64)> {
        require(p, Scope::ActivitiesRead)?;
        let mut c = self.store.read().await?;
        if let (Some(ty), Some(id)) = (f.entity_type, f.entity_id) {
            p.require(scopes(ty)[0])?;
            if !c.entity_exists(p.tenant_id, ty, id).await? {
                return Err(ServiceError::NotFound(match ty {
                    EntityType::Lead => "lead",
                    EntityType::Contact => "person",
                    EntityType::Opportunity => "opportunity",
                    EntityType::Prospect => "prospect",
                }));
            }
        }
        Ok(c.list_activities(p.tenant_id, f, limit, offset).await?)
    }

    pub async fn activity(&self, p: &Principal, id: i64) -> Result<Activity> {
        require(p, Scope::ActivitiesRead)?;
        found(self.store.read().await?.activity(p.tenant_id, id).await, "activity")
    }

    /// Mark complete (emits `activity.completed` once), reschedule, reassign, edit.
    pub async fn update_activity(&self, p: &Principal, id: i64, body: Value) -> Result<Activity> {
        require(p, Scope::ActivitiesWrite)?;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let mut a = found(tx.activity(p.tenant_id, id).await, "activity")?;
        let mut b = Body::new(body)?;
        self.apply_activity(&mut b, &mut a)?;
        let completed = b.flag("completed")?;
        for fixed in ["entity_type", "entity_id"] {
            if b.take(fixed).is_some() {
                return Err(ServiceError::invalid(fixed, "cannot be changed; log a new activity"));
            }
        }
        b.finish()?;
        super::check_owner(&mut tx, p.tenant_id, "assigned_to", a.assigned_to).await?;
        let newly_completed = completed == Some(true) && !a.completed;
        if let Some(done) = completed {
            if done != a.completed {
                a.completed = done;
                a.completed_at = done.then_some(now);
            }
        }
        a.updated_at = now;
        let a = tx.update_activity(p.tenant_id, &a).await?;
        if newly_completed {
            emit(&mut tx, p.tenant_id, "activity.completed", &activity_payload(&a), now).await?;
        }
        tx.commit().await?;
        Ok(a)
    }

    pub async fn delete_activity(&self, p: &Principal, id: i64) -> Result<()> {
        require(p, Scope::ActivitiesDelete)?;
        if !self.store.write().await?.delete_row(p.tenant_id, Table::Activities, id).await? {
            return Err(ServiceError::NotFound("activity"));
        }
        Ok(())
    }

    pub async fn create_note(&self, p: &Principal, body: Value) -> Result<Note> {
        require(p, Scope::NotesWrite)?;
        let mut b = Body::new(body)?;
        b.alias("isPinned", "is_pinned").alias("body", "content");
        let ty = parse_entity_type("entity_type", &b.text("entity_type", 20)?.flatten().unwrap_or_default())?;
        let entity_id = b
            .int("entity_id", 1, i64::MAX)?
            .flatten()
            .ok_or_else(|| ServiceError::invalid("entity_id", "is required"))?;
        let content =
            b.required_text("content", 50_000)?.ok_or_else(|| ServiceError::invalid("content", "is required"))?;
        let is_pinned = b.flag("is_pinned")?.unwrap_or(false);
        b.finish()?;
        let now = self.clock.now();
        let mut c = self.store.write().await?;
        self.check_entity(p, &mut c, ty, entity_id, 0).await?;
        let n = Note {
            id: 0,
            tenant_id: p.tenant_id.0,
            entity_type: ty.as_str().into(),
            entity_id,
            content,
            is_pinned,
            author_id: p.user_id().map(|u| u.0),
            created_at: now,
            updated_at: now,
        };
        Ok(c.insert_note(p.tenant_id, &n).await?)
    }

    pub async fn notes(
        &self,
        p: &Principal,
        ty: Option<&str>,
        id: Option<i64>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Note>, i64)> {
        require(p, Scope::NotesRead)?;
        let ty = ty.map(|t| parse_entity_type("entity_type", t)).transpose()?;
        if let Some(t) = ty {
            p.require(scopes(t)[0])?;
        }
        Ok(self.store.read().await?.list_notes(p.tenant_id, (ty, id), limit, offset).await?)
    }

    pub async fn note(&self, p: &Principal, id: i64) -> Result<Note> {
        require(p, Scope::NotesRead)?;
        found(self.store.read().await?.note(p.tenant_id, id).await, "note")
    }

    pub async fn update_note(&self, p: &Principal, id: i64, body: Value) -> Result<Note> {
        require(p, Scope::NotesWrite)?;
        let mut c = self.store.write().await?;
        let mut n = found(c.note(p.tenant_id, id).await, "note")?;
        let mut b = Body::new(body)?;
        b.alias("isPinned", "is_pinned").alias("body", "content");
        if let Some(content) = b.required_text("content", 50_000)? {
            n.content = content;
        }
        if let Some(pin) = b.flag("is_pinned")? {
            n.is_pinned = pin;
        }
        b.finish()?;
        n.updated_at = self.clock.now();
        Ok(c.update_note(p.tenant_id, &n).await?)
    }

    pub async fn delete_note(&self, p: &Principal, id: i64) -> Result<()> {
        require(p, Scope::NotesDelete)?;
        if !self.store.write().await?.delete_row(p.tenant_id, Table::Notes, id).await? {
            return Err(ServiceError::NotFound("note"));
        }
        Ok(())
    }

    /// Stores a file on an entity (kept in the entity store, so every instance serves it).
    pub async fn upload_file(
        &self,
        p: &Principal,
        entity_type: &str,
        entity_id: i64,
        filename: &str,
        content_type: &str,
        content: &[u8],
    ) -> Result<FileMeta> {
        require(p, Scope::NotesWrite)?;
        let ty = parse_entity_type("entity_type", entity_type)?;
        if content.len() > MAX_FILE_BYTES {
            return Err(ServiceError::invalid("file", format!("must be at most {} bytes", MAX_FILE_BYTES)));
        }
        let filename = filename.rsplit(['/', '\\']).next().unwrap_or("").trim();
        if filename.is_empty() || filename.chars().count() > 255 || filename.chars().any(char::is_control) {
            return Err(ServiceError::invalid("file", "needs a file name of 1 to 255 characters"));
        }
        let content_type =
            if content_type.is_empty() || content_type.len() > 255 { "application/octet-stream" } else { content_type };
        let now = self.clock.now();
        let mut c = self.store.write().await?;
        self.check_entity(p, &mut c, ty, entity_id, 0).await?;
        let meta = FileMeta {
            id: 0,
            tenant_id: p.tenant_id.0,
            entity_type: ty.as_str().into(),
            entity_id,
            filename: filename.into(),
            content_type: content_type.into(),
            size: content.len() as i64,
            sha256: hex(&Sha256::digest(content)),
            uploaded_by: p.user_id().map(|u| u.0),
            created_at: now,
        };
        Ok(c.insert_file(p.tenant_id, &meta, content).await?)
    }

    pub async fn files(
        &self,
        p: &Principal,
        ty: Option<&str>,
        id: Option<i64>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<FileMeta>, i64)> {
        require(p, Scope::NotesRead)?;
        let ty = ty.map(|t| parse_entity_type("entity_type", t)).transpose()?;
        Ok(self.store.read().await?.list_files(p.tenant_id, (ty, id), limit, offset).await?)
    }

    pub async fn file(&self, p: &Principal, id: i64) -> Result<(FileMeta, Vec<u8>)> {
        require(p, Scope::NotesRead)?;
        let mut c = self.store.read().await?;
        let meta = found(c.file_meta(p.tenant_id, id).await, "file")?;
        let content = found(c.file_content(p.tenant_id, id).await, "file")?;
        Ok((meta, content))
    }

    pub async fn delete_file(&self, p: &Principal, id: i64) -> Result<()> {
        require(p, Scope::NotesDelete)?;
        if !self.store.write().await?.delete_row(p.tenant_id, Table::Files, id).await? {
            return Err(ServiceError::NotFound("file"));
        }
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

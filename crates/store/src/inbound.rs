//! Inbound webhooks (docs/webhooks.md): per-workspace inbound secrets, the delivery ids already
//! processed (replay protection), CRM activity stored by seed 002's webhook, and the lookups
//! that find the lead a `crm_lead_id` names.

use cairn_domain::TenantId;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::{Conn, Result};

/// A workspace's own inbound secrets.
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct InboundHook {
    pub tenant_id: i64,
    pub secret_hash: Option<String>,
    pub secret_prefix: Option<String>,
    pub signing_secret: Option<String>,
}

/// One event received for a lead from an external CRM.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct CrmActivity {
    pub id: i64,
    #[serde(skip)]
    pub tenant_id: i64,
    pub lead_id: i64,
    pub crm_lead_id: String,
    /// The body's `event_type` (`updated` when it had none).
    pub event_type: String,
    /// `lead` (the lead's own crm_lead_id matched) or `submission` (a form submission's did).
    pub matched_by: String,
    /// The whole request body as received.
    #[sqlx(json)]
    #[schema(value_type = Object)]
    pub payload: Value,
    pub delivery_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A form submission as listed under its form.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Submission {
    pub id: i64,
    #[serde(skip)]
    pub tenant_id: i64,
    pub form_id: i64,
    pub lead_id: Option<i64>,
    #[sqlx(json)]
    #[schema(value_type = Object)]
    pub data: Value,
    /// The follow-up lead's id in an external CRM (seed 002's webhook looks it up here).
    pub crm_lead_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

const CRM_COLS: &str = "id, tenant_id, lead_id, crm_lead_id, event_type, matched_by, payload, delivery_id, created_at";
const SUBMISSION_COLS: &str = "id, tenant_id, form_id, lead_id, data, crm_lead_id, created_at";

impl Conn {
    pub async fn inbound_hook(&mut self, tenant: TenantId) -> Result<Option<InboundHook>> {
        Ok(on!(self, |c| sqlx::query_as(
            "SELECT tenant_id, secret_hash, secret_prefix, signing_secret FROM inbound_hooks WHERE tenant_id = $1"
        )
        .bind(tenant.0)
        .fetch_optional(c)
        .await)?)
    }

    /// The workspace whose inbound secret hashes to this.
    pub async fn inbound_hook_by_secret_hash(&mut self, hash: &str) -> Result<Option<InboundHook>> {
        Ok(on!(self, |c| sqlx::query_as(
            "SELECT tenant_id, secret_hash, secret_prefix, signing_secret FROM inbound_hooks WHERE secret_hash = $1"
        )
        .bind(hash)
        .fetch_optional(c)
        .await)?)
    }

    /// Whether any workspace has an inbound secret (otherwise the CRM webhook is unconfigured).
    pub async fn any_inbound_secret(&mut self) -> Result<bool> {
        let n: Option<i64> = on!(self, |c| sqlx::query_scalar(
            "SELECT CAST(1 AS BIGINT) FROM inbound_hooks WHERE secret_hash IS NOT NULL LIMIT 1"
        )
        .fetch_optional(c)
        .await)?;
        Ok(n.is_some())
    }

    pub async fn put_inbound_hook(&mut self, h: &InboundHook, now: DateTime<Utc>) -> Result<()> {
        on!(self, |c| sqlx::query(
            "INSERT INTO inbound_hooks (tenant_id, secret_hash, secret_prefix, signing_secret, updated_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (tenant_id) DO UPDATE SET secret_hash = excluded.secret_hash,
                 secret_prefix = excluded.secret_prefix, signing_secret = excluded.signing_secret,
                 updated_at = excluded.updated_at"
        )
        .bind(h.tenant_id)
        .bind(&h.secret_hash)
        .bind(&h.secret_prefix)
        .bind(&h.signing_secret)
        .bind(now)
        .execute(c)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// Records a delivery id; false when it was already recorded (a replay).
    pub async fn record_inbound_delivery(&mut self, tenant: TenantId, id: &str, now: DateTime<Utc>) -> Result<bool> {
        let n = on!(self, |c| sqlx::query(
            "INSERT INTO inbound_deliveries (tenant_id, delivery_id, received_at) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING"
        )
        .bind(tenant.0)
        .bind(id)
        .bind(now)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }

    pub async fn inbound_delivery_seen(&mut self, tenant: TenantId, id: &str) -> Result<bool> {
        let n: Option<i64> = on!(self, |c| sqlx::query_scalar(
            "SELECT CAST(1 AS BIGINT) FROM inbound_deliveries WHERE tenant_id = $1 AND delivery_id = $2"
        )
        .bind(tenant.0)
        .bind(id)
        .fetch_optional(c)
        .await)?;
        Ok(n.is_some())
    }

    /// Forgets delivery ids received before `before` (older deliveries are refused as stale).
    pub async fn prune_inbound_deliveries(&mut self, before: DateTime<Utc>) -> Result<u64> {
        Ok(on!(self, |c| sqlx::query("DELETE FROM inbound_deliveries WHERE received_at < $1")
            .bind(before)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?)
    }

    /// The most recently updated lead with this CRM id.
    pub async fn lead_id_by_crm_id(&mut self, tenant: TenantId, crm: &str) -> Result<Option<i64>> {
        Ok(on!(self, |c| sqlx::query_scalar(
            "SELECT id FROM leads WHERE tenant_id = $1 AND crm_lead_id = $2 ORDER BY updated_at DESC, id DESC LIMIT 1"
        )
        .bind(tenant.0)
        .bind(crm)
        .fetch_optional(c)
        .await)?)
    }

    /// The lead of the most recent form submission with this CRM id.
    pub async fn submission_lead_id_by_crm_id(&mut self, tenant: TenantId, crm: &str) -> Result<Option<i64>> {
        Ok(on!(self, |c| sqlx::query_scalar(
            "SELECT lead_id FROM form_submissions
             WHERE tenant_id = $1 AND crm_lead_id = $2 AND lead_id IS NOT NULL
             ORDER BY created_at DESC, id DESC LIMIT 1"
        )
        .bind(tenant.0)
        .bind(crm)
        .fetch_optional(c)
        .await)?)
    }

    pub async fn insert_crm_activity(&mut self, tenant: TenantId, a: &CrmActivity) -> Result<CrmActivity> {
        let sql = format!(
            "INSERT INTO lead_crm_activities (tenant_id, lead_id, crm_lead_id, event_type, matched_by, payload,
                 delivery_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {CRM_COLS}"
        );
        Ok(on!(self, |c| sqlx::query_as(&sql)
            .bind(tenant.0)
            .bind(a.lead_id)
            .bind(&a.crm_lead_id)
            .bind(&a.event_type)
            .bind(&a.matched_by)
            .bind(crate::Json(&a.payload))
            .bind(&a.delivery_id)
            .bind(a.created_at)
            .fetch_one(c)
            .await)?)
    }

    /// A lead's CRM activity, newest first.
    pub async fn crm_activities(&mut self, tenant: TenantId, lead: i64, limit: i64) -> Result<Vec<CrmActivity>> {
        let sql = format!(
            "SELECT {CRM_COLS} FROM lead_crm_activities WHERE tenant_id = $1 AND lead_id = $2 ORDER BY id DESC LIMIT $3"
        );
        Ok(on!(self, |c| sqlx::query_as(&sql).bind(tenant.0).bind(lead).bind(limit).fetch_all(c).await)?)
    }

    /// A form's submissions, newest first.
    pub async fn form_submissions(
        &mut self,
        tenant: TenantId,
        form: i64,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Submission>, i64)> {
        let mut w = crate::crm::Where::tenant(tenant);
        w.opt("form_id = ?", Some(form));
        crate::crm::page(
            self,
            SUBMISSION_COLS,
            &format!("FROM form_submissions WHERE {}", w.sql()),
            "id DESC",
            &w.args,
            limit,
            offset,
        )
        .await
    }

    /// The form submissions that created or updated a lead, newest first.
    pub async fn lead_submissions(&mut self, tenant: TenantId, lead: i64, limit: i64) -> Result<Vec<Submission>> {
        let sql = format!(
            "SELECT {SUBMISSION_COLS} FROM form_submissions WHERE tenant_id = $1 AND lead_id = $2 ORDER BY id DESC LIMIT $3"
        );
        Ok(on!(self, |c| sqlx::query_as(&sql).bind(tenant.0).bind(lead).bind(limit).fetch_all(c).await)?)
    }

    /// Sets a submission's CRM id; None when the form has no such submission.
    pub async fn set_submission_crm_id(
        &mut self,
        tenant: TenantId,
        form: i64,
        id: i64,
        crm: Option<&str>,
    ) -> Result<Option<Submission>> {
        let sql = format!(
            "UPDATE form_submissions SET crm_lead_id = $4 WHERE tenant_id = $1 AND form_id = $2 AND id = $3
             RETURNING {SUBMISSION_COLS}"
        );
        Ok(on!(self, |c| sqlx::query_as(&sql).bind(tenant.0).bind(form).bind(id).bind(crm).fetch_optional(c).await)?)
    }
}

impl Conn {
    /// The first workspace registered (the one the environment's CRM webhook secret serves when
    /// `CRM_WEBHOOK_WORKSPACE` does not name another).
    pub async fn first_tenant_id(&mut self) -> Result<Option<TenantId>> {
        let id: Option<i64> =
            on!(self, |c| sqlx::query_scalar("SELECT id FROM tenants ORDER BY id LIMIT 1").fetch_optional(c).await)?;
        Ok(id.map(TenantId))
    }
}

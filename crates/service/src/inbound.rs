//! Inbound webhooks (docs/webhooks.md): seed 002's CRM webhook (`POST /webhooks/crm/lead`), the
//! workspace's inbound secrets, and seed 000's verification rules for signed senders (HMAC of
//! `timestamp.body`, stale deliveries refused, replayed delivery ids refused), which also guard
//! automation webhook triggers.
//!
//! Which workspace a CRM webhook call is for follows from its secret: a workspace's own secret
//! (`POST /v1/settings/crm-webhook/secret`, stored hashed) names it; the environment's
//! `CRM_WEBHOOK_SECRET` (or `CRM_CALLBACK_SECRET`) serves the workspace `CRM_WEBHOOK_WORKSPACE`
//! names (an id or slug), or else the first one registered.

use cairn_channels::signing;
use cairn_domain::{
    credential::{constant_time_eq, generate_token, hash_secret},
    Scope, TenantId,
};
use cairn_store::inbound::{CrmActivity, InboundHook};
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::{Principal, Result, ServiceError, Services};

/// Deliveries signed longer ago (or further ahead) than this are refused (seed 000: 5 minutes).
pub const SIGNATURE_TOLERANCE_SECS: i64 = 300;
/// How long delivery ids are remembered: far past the tolerance, so a replay is always caught.
pub const DELIVERY_MEMORY: chrono::Duration = chrono::Duration::hours(24);

/// The server-wide CRM webhook settings from the environment.
#[derive(Debug, Clone, Default)]
pub struct CrmWebhookEnv {
    /// `CRM_WEBHOOK_SECRET`, or `CRM_CALLBACK_SECRET` when that is unset.
    pub secret: Option<String>,
    /// `CRM_WEBHOOK_SIGNING_SECRET`: when set, calls made with the environment's secret must be
    /// signed (seed 000's rules).
    pub signing_secret: Option<String>,
    /// `CRM_WEBHOOK_WORKSPACE`: the workspace (id or slug) the environment's secret serves.
    pub workspace: Option<String>,
}

impl CrmWebhookEnv {
    /// From the environment's values: `CRM_WEBHOOK_SECRET`, else `CRM_CALLBACK_SECRET` (seed
    /// 002); empty values count as unset.
    pub fn from_env(
        webhook_secret: Option<String>,
        callback_secret: Option<String>,
        signing_secret: Option<String>,
        workspace: Option<String>,
    ) -> CrmWebhookEnv {
        let set = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        CrmWebhookEnv {
            secret: set(webhook_secret).or(set(callback_secret)),
            signing_secret: set(signing_secret),
            workspace: set(workspace),
        }
    }
}

/// The signature headers of an inbound call, in either scheme Cairn itself sends: seed 000's
/// (`X-TraceCRM-Delivery`, `-Timestamp`, `-Signature`: hex HMAC of `timestamp.body`) or
/// Standard Webhooks' (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
#[derive(Debug, Clone, Default)]
pub struct InboundSignature {
    pub standard: bool,
    pub delivery_id: Option<String>,
    pub timestamp: Option<String>,
    pub signature: Option<String>,
}

/// What the CRM webhook did with an event.
#[derive(Debug, Clone, PartialEq)]
pub enum CrmHookOutcome {
    Stored {
        lead_id: i64,
        activity_id: i64,
    },
    /// No lead or submission carries the `crm_lead_id` (answered 200 so the CRM does not retry).
    Unmatched,
}

/// A workspace's inbound webhook settings as shown (secrets never are, after creation).
#[derive(Debug, Clone, PartialEq)]
pub struct InboundSettings {
    pub secret_set: bool,
    pub secret_prefix: Option<String>,
    pub signing_secret_set: bool,
    /// Whether the environment's `CRM_WEBHOOK_SECRET` serves this workspace.
    pub environment_secret: bool,
}

/// A new secret, shown once.
#[derive(Debug, Clone)]
pub struct NewInboundSecret {
    pub secret: String,
    pub settings: InboundSettings,
}

fn unauthenticated(m: &str) -> ServiceError {
    ServiceError::Unauthenticated(m.to_string())
}

/// Checks a signed call against `secret` at `now`; returns the delivery id to remember.
pub fn verify_signature(secret: &str, sig: &InboundSignature, body: &[u8], now: DateTime<Utc>) -> Result<String> {
    let names = if sig.standard {
        ("webhook-id", "webhook-timestamp", "webhook-signature")
    } else {
        ("X-TraceCRM-Delivery", "X-TraceCRM-Timestamp", "X-TraceCRM-Signature")
    };
    let (Some(id), Some(ts), Some(given)) = (&sig.delivery_id, &sig.timestamp, &sig.signature) else {
        return Err(unauthenticated(&format!(
            "this webhook must be signed: send {}, {} and {} (docs/webhooks.md)",
            names.0, names.1, names.2
        )));
    };
    if id.is_empty() || id.len() > 200 {
        return Err(unauthenticated(&format!("{} must be 1 to 200 characters", names.0)));
    }
    let ts: i64 = ts.trim().parse().map_err(|_| unauthenticated(&format!("{} must be Unix seconds", names.1)))?;
    let body = String::from_utf8_lossy(body);
    let valid = if sig.standard {
        let expected = signing::standard_signature(secret, id, ts, &body);
        given.split_whitespace().any(|s| constant_time_eq(s, &expected))
    } else {
        let expected = signing::tracecrm_signature(secret, ts, &body);
        let given = given.trim();
        let given = given.strip_prefix("sha256=").unwrap_or(given).to_ascii_lowercase();
        constant_time_eq(&given, &expected)
    };
    if !valid {
        return Err(unauthenticated(&format!("{} does not match the body", names.2)));
    }
    // Only a genuine signature reaches the clock check: a forger learns nothing from it.
    if (now.timestamp() - ts).abs() > SIGNATURE_TOLERANCE_SECS {
        return Err(unauthenticated(&format!(
            "{} is more than 5 minutes from the server's time: a stale or replayed delivery",
            names.1
        )));
    }
    Ok(id.clone())
}

fn replayed() -> ServiceError {
    ServiceError::Conflict("this delivery id was already processed".into())
}

/// `crm_lead_id` as text: a non-empty string (or an integer) of at most 200 characters.
pub(crate) fn crm_lead_id(v: &Value) -> Option<String> {
    let s = match v {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        _ => return None,
    };
    (!s.is_empty() && s.chars().count() <= 200).then_some(s)
}

impl Services {
    /// Seed 002's `POST /webhooks/crm/lead`: authenticates by secret, checks the signature
    /// when the workspace requires one, and stores the whole body as CRM activity of the lead
    /// the `crm_lead_id` names (the lead's own id first, then its most recent form submission's).
    pub async fn crm_webhook(
        &self,
        presented: Option<&str>,
        sig: &InboundSignature,
        body: &[u8],
    ) -> Result<CrmHookOutcome> {
        let env = &self.settings.crm_webhook;
        let (tenant, signing_secret) = {
            let mut c = self.store.read().await?;
            if env.secret.is_none() && !c.any_inbound_secret().await? {
                return Err(ServiceError::Unavailable(
                    "the CRM webhook has no secret: set CRM_WEBHOOK_SECRET, or create a workspace secret \
                     with POST /v1/settings/crm-webhook/secret"
                        .into(),
                ));
            }
            let Some(presented) = presented.filter(|s| !s.is_empty()) else {
                return Err(unauthenticated("send the CRM webhook secret as Authorization: Bearer or X-API-Key"));
            };
            match env.secret.as_deref().filter(|s| constant_time_eq(&hash_secret(s), &hash_secret(presented))) {
                Some(_) => {
                    let tenant = self.env_workspace(&mut c).await?;
                    let own = c.inbound_hook(tenant).await?.and_then(|h| h.signing_secret);
                    (tenant, env.signing_secret.clone().or(own))
                }
                None => match c.inbound_hook_by_secret_hash(&hash_secret(presented)).await? {
                    Some(h) => (TenantId(h.tenant_id), h.signing_secret),
                    None => return Err(unauthenticated("the CRM webhook secret is not valid")),
                },
            }
        };
        let now = self.clock.now();
        let delivery_id = match &signing_secret {
            Some(secret) => Some(verify_signature(secret, sig, body, now)?),
            None => None,
        };
        let payload: Value = serde_json::from_slice(body)
            .map_err(|e| ServiceError::invalid("body", format!("is not valid JSON: {e}")))?;
        if !payload.is_object() {
            return Err(ServiceError::invalid("body", "must be a JSON object"));
        }
        let crm = payload
            .get("crm_lead_id")
            .and_then(crm_lead_id)
            .ok_or_else(|| ServiceError::invalid("crm_lead_id", "is required: a non-empty string"))?;
        let event_type = match payload.get("event_type") {
            None | Some(Value::Null) => "updated".to_string(),
            Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 100 => s.trim().to_string(),
            Some(_) => return Err(ServiceError::invalid("event_type", "must be a string of at most 100 characters")),
        };
        let mut tx = self.store.begin().await?;
        if let Some(id) = &delivery_id {
            if !tx.record_inbound_delivery(tenant, id, now).await? {
                return Err(replayed());
            }
        }
        let (lead_id, matched_by) = match tx.lead_id_by_crm_id(tenant, &crm).await? {
            Some(id) => (Some(id), "lead"),
            None => (tx.submission_lead_id_by_crm_id(tenant, &crm).await?, "submission"),
        };
        let Some(lead_id) = lead_id else {
            // Committed so that a replay of this delivery id is still refused.
            tx.commit().await?;
            tracing::info!(tenant = tenant.0, event_type, "CRM webhook: no lead or submission has this crm_lead_id");
            return Ok(CrmHookOutcome::Unmatched);
        };
        let a = CrmActivity {
            id: 0,
            tenant_id: tenant.0,
            lead_id,
            crm_lead_id: crm,
            event_type,
            matched_by: matched_by.into(),
            payload,
            delivery_id,
            created_at: now,
        };
        let a = tx.insert_crm_activity(tenant, &a).await?;
        tx.commit().await?;
        Ok(CrmHookOutcome::Stored { lead_id, activity_id: a.id })
    }

    /// The workspace the environment's CRM webhook secret serves.
    async fn env_workspace(&self, c: &mut cairn_store::Conn) -> Result<TenantId> {
        match &self.settings.crm_webhook.workspace {
            Some(r) => match c.tenant_by_ref(r).await {
                Ok(t) => Ok(t.id),
                Err(cairn_store::StoreError::NotFound) => {
                    Err(ServiceError::Unavailable("CRM_WEBHOOK_WORKSPACE names no workspace".into()))
                }
                Err(e) => Err(e.into()),
            },
            None => {
                c.first_tenant_id().await?.ok_or_else(|| ServiceError::Unavailable("no workspace exists yet".into()))
            }
        }
    }

    /// Verifies a signed call to one of the workspace's inbound URLs (an automation's webhook
    /// trigger) when the workspace has a signing secret. Returns the delivery id to remember
    /// once the call has been handled ([`Services::remember_delivery`]).
    pub async fn verify_inbound(
        &self,
        tenant: TenantId,
        sig: &InboundSignature,
        body: &[u8],
    ) -> Result<Option<String>> {
        let mut c = self.store.read().await?;
        let Some(secret) = c.inbound_hook(tenant).await?.and_then(|h| h.signing_secret) else { return Ok(None) };
        let id = verify_signature(&secret, sig, body, self.clock.now())?;
        if c.inbound_delivery_seen(tenant, &id).await? {
            return Err(replayed());
        }
        Ok(Some(id))
    }

    pub async fn remember_delivery(&self, tenant: TenantId, id: &str) -> Result<()> {
        if !self.store.write().await?.record_inbound_delivery(tenant, id, self.clock.now()).await? {
            return Err(replayed());
        }
        Ok(())
    }

    // ---- settings ----

    async fn inbound_row(&self, p: &Principal) -> Result<InboundHook> {
        p.require_private()?;
        p.require(Scope::SettingsManage)?;
        let row = self.store.read().await?.inbound_hook(p.tenant_id).await?;
        Ok(row.unwrap_or(InboundHook { tenant_id: p.tenant_id.0, ..Default::default() }))
    }

    async fn inbound_view(&self, h: &InboundHook) -> Result<InboundSettings> {
        let environment_secret = match self.settings.crm_webhook.secret {
            Some(_) => self.env_workspace(&mut self.store.read().await?).await.ok() == Some(TenantId(h.tenant_id)),
            None => false,
        };
        Ok(InboundSettings {
            secret_set: h.secret_hash.is_some(),
            secret_prefix: h.secret_prefix.clone(),
            signing_secret_set: h.signing_secret.is_some(),
            environment_secret,
        })
    }

    pub async fn inbound_settings(&self, p: &Principal) -> Result<InboundSettings> {
        let h = self.inbound_row(p).await?;
        self.inbound_view(&h).await
    }

    async fn save_inbound(&self, h: &InboundHook) -> Result<()> {
        let mut c = self.store.write().await?;
        if let Some(hash) = &h.secret_hash {
            if c.inbound_hook_by_secret_hash(hash).await?.is_some_and(|o| o.tenant_id != h.tenant_id) {
                return Err(ServiceError::invalid("secret", "is in use by another workspace: choose another"));
            }
        }
        c.put_inbound_hook(h, self.clock.now()).await?;
        Ok(())
    }

    /// Generates the workspace's CRM webhook secret (replacing any), shown once.
    pub async fn rotate_inbound_secret(&self, p: &Principal) -> Result<NewInboundSecret> {
        let mut h = self.inbound_row(p).await?;
        let secret = generate_token("crmwh_");
        h.secret_hash = Some(hash_secret(&secret));
        h.secret_prefix = Some(secret[..12].to_string());
        self.save_inbound(&h).await?;
        Ok(NewInboundSecret { secret, settings: self.inbound_view(&h).await? })
    }

    /// Generates the workspace's inbound signing secret (replacing any), shown once.
    pub async fn rotate_inbound_signing_secret(&self, p: &Principal) -> Result<NewInboundSecret> {
        let mut h = self.inbound_row(p).await?;
        let secret = signing::new_secret();
        h.signing_secret = Some(secret.clone());
        self.save_inbound(&h).await?;
        Ok(NewInboundSecret { secret, settings: self.inbound_view(&h).await? })
    }

    /// Sets (a value) or clears (null) either secret; an absent field keeps its secret.
    pub async fn put_inbound_settings(
        &self,
        p: &Principal,
        secret: Option<Option<String>>,
        signing_secret: Option<Option<String>>,
    ) -> Result<InboundSettings> {
        let mut h = self.inbound_row(p).await?;
        let check = |field: &str, s: &str| -> Result<()> {
            if s.chars().count() < 16 || s.len() > 200 || s.chars().any(char::is_whitespace) {
                return Err(ServiceError::invalid(field, "must be 16 to 200 characters without spaces"));
            }
            Ok(())
        };
        if let Some(s) = secret {
            if let Some(s) = &s {
                check("secret", s)?;
            }
            h.secret_prefix = s.as_ref().map(|s| s.chars().take(6).collect());
            h.secret_hash = s.as_deref().map(hash_secret);
        }
        if let Some(s) = signing_secret {
            if let Some(s) = &s {
                check("signing_secret", s)?;
            }
            h.signing_secret = s;
        }
        self.save_inbound(&h).await?;
        self.inbound_view(&h).await
    }

    /// A lead's CRM activity, newest first.
    pub async fn lead_crm_activity(&self, p: &Principal, lead: i64, limit: i64) -> Result<Vec<CrmActivity>> {
        crate::crm::require(p, Scope::LeadsRead)?;
        Ok(self.store.read().await?.crm_activities(p.tenant_id, lead, limit).await?)
    }
}

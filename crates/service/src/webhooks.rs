//! Webhook endpoints (seed 004's shape): register, list, change, remove, ping, rotate the
//! secret, read the delivery log, redeliver. Delivery itself is `cairn_channels::webhooks`.

use cairn_channels::{catalogue, signing, webhooks::body};
use cairn_domain::Scope;
use cairn_store::webhooks::{Delivery, Webhook};
use serde_json::json;

use crate::{found, Principal, Result, ServiceError, Services};

/// How long the old secret keeps signing after a rotation.
const ROTATION_OVERLAP_HOURS: i64 = 24;

fn require(p: &Principal) -> Result<()> {
    p.require_private()?;
    p.require(Scope::WebhooksManage)
}

fn check_url(url: &str) -> Result<String> {
    let url = url.trim();
    let ok = (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() <= 2048
        && !url.contains(char::is_whitespace);
    if !ok {
        return Err(ServiceError::invalid("url", "must be an http:// or https:// URL of at most 2048 characters"));
    }
    Ok(url.to_string())
}

fn check_events(events: &[String]) -> Result<String> {
    if events.is_empty() {
        return Err(ServiceError::invalid("events", "subscribe to at least one event (\"*\" for all)"));
    }
    for (i, e) in events.iter().enumerate() {
        if !catalogue::is_valid_pattern(e) {
            return Err(ServiceError::invalid(
                &format!("events[{i}]"),
                format!("unknown event {e:?}; see GET /v1/webhooks/events"),
            ));
        }
    }
    Ok(events.join(" "))
}

fn check_secret(secret: Option<&str>) -> Result<String> {
    match secret.map(str::trim) {
        None | Some("") => Ok(signing::new_secret()),
        Some(s) if s.len() < 16 || s.len() > 256 => {
            Err(ServiceError::invalid("secret", "must be 16 to 256 characters"))
        }
        Some(s) => Ok(s.to_string()),
    }
}

/// What a caller may change on an endpoint.
#[derive(Debug, Default)]
pub struct WebhookPatch {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    /// `active` or `disabled`.
    pub status: Option<String>,
}

impl Services {
    pub async fn create_webhook(
        &self,
        p: &Principal,
        url: &str,
        events: &[String],
        secret: Option<&str>,
    ) -> Result<Webhook> {
        require(p)?;
        let url = check_url(url)?;
        let events = check_events(events)?;
        let secret = check_secret(secret)?;
        Ok(self.store.write().await?.insert_webhook(p.tenant_id, &url, &events, &secret, self.clock.now()).await?)
    }

    /// The notices left for the workspace's owners (an endpoint disabled), newest first.
    pub async fn notifications(
        &self,
        p: &Principal,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<cairn_store::notifications::Notification>, i64)> {
        p.require_private()?;
        p.require(Scope::SettingsManage)?;
        Ok(self.store.read().await?.notifications(p.tenant_id, limit, offset).await?)
    }

    pub async fn webhooks(&self, p: &Principal, limit: i64, offset: i64) -> Result<(Vec<Webhook>, i64)> {
        require(p)?;
        Ok(self.store.read().await?.list_webhooks(p.tenant_id, limit, offset).await?)
    }

    pub async fn webhook(&self, p: &Principal, id: i64) -> Result<Webhook> {
        require(p)?;
        found(self.store.read().await?.webhook(p.tenant_id, id).await, "webhook")
    }

    pub async fn update_webhook(&self, p: &Principal, id: i64, patch: WebhookPatch) -> Result<Webhook> {
        require(p)?;
        let mut tx = self.store.begin().await?;
        let mut w = found(tx.webhook(p.tenant_id, id).await, "webhook")?;
        if let Some(url) = patch.url {
            w.url = check_url(&url)?;
        }
        if let Some(events) = patch.events {
            w.events = check_events(&events)?;
        }
        match patch.status.as_deref() {
            None => {}
            Some("active") => {
                w.status = "active".into();
                w.disabled_reason = None;
            }
            Some("disabled") => {
                w.status = "disabled".into();
                w.disabled_reason = Some("disabled through the API".into());
            }
            Some(_) => return Err(ServiceError::invalid("status", "must be active or disabled")),
        }
        let w = tx.update_webhook(p.tenant_id, &w, self.clock.now()).await?;
        tx.commit().await?;
        Ok(w)
    }

    pub async fn delete_webhook(&self, p: &Principal, id: i64) -> Result<()> {
        require(p)?;
        if !self.store.write().await?.delete_webhook(p.tenant_id, id).await? {
            return Err(ServiceError::NotFound("webhook"));
        }
        Ok(())
    }

    /// Queues a `webhook.ping` delivery to the endpoint.
    pub async fn ping_webhook(&self, p: &Principal, id: i64) -> Result<i64> {
        require(p)?;
        let now = self.clock.now();
        let mut c = self.store.write().await?;
        let w = found(c.webhook(p.tenant_id, id).await, "webhook")?;
        let payload = body("webhook.ping", now, &json!({"webhook_id": w.id, "message": "ping from Cairn"}));
        let id = c.insert_delivery(p.tenant_id.0, w.id, None, "webhook.ping", &payload, now).await?;
        id.ok_or_else(|| ServiceError::Internal("ping delivery not created".into()))
    }

    /// A new secret (returned once); the old one keeps signing for 24 hours.
    pub async fn rotate_webhook_secret(&self, p: &Principal, id: i64) -> Result<Webhook> {
        require(p)?;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let mut w = found(tx.webhook(p.tenant_id, id).await, "webhook")?;
        w.previous_secret = Some(std::mem::replace(&mut w.secret, signing::new_secret()));
        w.previous_secret_until = Some(now + chrono::Duration::hours(ROTATION_OVERLAP_HOURS));
        let w = tx.update_webhook(p.tenant_id, &w, now).await?;
        tx.commit().await?;
        Ok(w)
    }

    pub async fn webhook_deliveries(
        &self,
        p: &Principal,
        id: i64,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Delivery>, i64)> {
        require(p)?;
        let mut c = self.store.read().await?;
        found(c.webhook(p.tenant_id, id).await, "webhook")?;
        Ok(c.list_deliveries(p.tenant_id, id, limit, offset).await?)
    }

    /// Sends a delivery again now (whatever its state).
    pub async fn redeliver(&self, p: &Principal, delivery: i64) -> Result<Delivery> {
        require(p)?;
        let mut c = self.store.write().await?;
        if !c.requeue_delivery(p.tenant_id, delivery, self.clock.now()).await? {
            return Err(ServiceError::NotFound("delivery"));
        }
        found(c.delivery(p.tenant_id, delivery).await, "delivery")
    }
}

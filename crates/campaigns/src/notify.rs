//! The notifier: emails a workspace's owners the notices the platform leaves them (a webhook
//! endpoint disabled), through the workspace's SMTP settings or the server's default.
//!
//! Notices are rows written in the transaction of the change they report, so none is lost; each
//! is claimed with a compare-and-set lease, so two instances do not both send it. A transient
//! SMTP failure is retried (5 attempts, backing off from 1 minute); with no SMTP server or no
//! owner the notice is marked `unsent` with the reason, and stays listed in the API.

use std::{sync::Arc, time::Duration};

use cairn_channels::email::{Email, SmtpFailure, SmtpLane};
use cairn_domain::{Clock, TenantId};
use cairn_store::{notifications::Notification, Store, StoreError};
use tokio::sync::{watch, Notify};

use crate::settings::{self, Defaults, EmailSettings};

/// Attempts before a notice that keeps failing is given up.
pub const MAX_ATTEMPTS: i32 = 5;

pub struct Notifier {
    store: Store,
    clock: Clock,
    defaults: Defaults,
    /// The sender address when the workspace has set none (`cairn@<public host>`).
    fallback_from: String,
    poll: Duration,
    wake: Arc<Notify>,
}

impl Notifier {
    pub fn new(store: Store, clock: Clock, defaults: Defaults, fallback_from: String, poll: Duration) -> Notifier {
        Notifier { store, clock, defaults, fallback_from, poll, wake: Arc::new(Notify::new()) }
    }

    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    pub async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) {
        let wake = self.wake.clone();
        cairn_domain::worker::poll_loop("notifier", self.poll, &wake, stop, || self.tick()).await
    }

    /// Sends the notices that are due. True when there may be more at once.
    pub async fn tick(&self) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let due = self.store.write().await?.claim_notifications(now, now + chrono::Duration::minutes(2), 20).await?;
        let busy = due.len() == 20;
        for n in due {
            let (status, error, retry) = self.send(&n).await?;
            let retry_at = retry.then(|| now + chrono::Duration::minutes(1 << n.attempts.min(10)));
            self.store
                .write()
                .await?
                .finish_notification(n.id, status, error.as_deref(), retry_at, self.clock.now())
                .await?;
            if status == "sent" {
                tracing::info!(notification.id = n.id, tenant.id = n.tenant_id, kind = n.kind, "owners notified");
            } else {
                tracing::warn!(notification.id = n.id, tenant.id = n.tenant_id, status, "owners not notified yet");
            }
        }
        Ok(busy)
    }

    /// One attempt: (status, error, whether to try again).
    async fn send(&self, n: &Notification) -> Result<(&'static str, Option<String>, bool), StoreError> {
        let tenant = TenantId(n.tenant_id);
        let (owners, s) = {
            let mut c = self.store.read().await?;
            let owners = c.owner_emails(tenant).await?;
            let s: EmailSettings = settings::load(&mut c, tenant, "email").await?;
            (owners, s)
        };
        if owners.is_empty() {
            return Ok(("unsent", Some("the workspace has no owner to tell".into()), false));
        }
        let Some(smtp) = s.smtp(&self.defaults) else {
            return Ok((
                "unsent",
                Some("no SMTP server is configured (CAIRN_SMTP_URL or PUT /v1/settings/email)".into()),
                false,
            ));
        };
        let mut lane = SmtpLane::new(smtp);
        let mut failure = None;
        for (i, to) in owners.iter().enumerate() {
            let e = Email {
                from_name: Some(s.from_name.clone().unwrap_or_else(|| "Cairn".into())),
                from_email: s.from_email.clone().unwrap_or_else(|| self.fallback_from.clone()),
                reply_to: None,
                to: to.clone(),
                subject: n.subject.clone(),
                html: format!("<p>{}</p>", html_escape(&n.body).replace("\n\n", "</p><p>")),
                text: n.body.clone(),
                message_id: format!("notice-{}-{i}.{}@cairn", n.id, n.attempts),
                unsubscribe_url: None,
                unsubscribe_mailto: None,
            };
            let sent = match e.build(s.dkim().as_ref()) {
                Ok(m) => lane.send(&m).await,
                Err(e) => Err(SmtpFailure::Permanent(e)),
            };
            if let Err(f) = sent {
                failure = Some(f);
            }
        }
        lane.quit().await;
        Ok(match failure {
            None => ("sent", None, false),
            Some(SmtpFailure::Transient(e)) if n.attempts + 1 < MAX_ATTEMPTS => ("pending", Some(e), true),
            Some(f) => ("unsent", Some(f.message().to_string()), false),
        })
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

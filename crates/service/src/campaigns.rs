//! Campaigns (seed 003, docs/campaigns.md): definitions and their life cycle (draft →
//! scheduled → sending → sent, or cancelled, or failed), previews, test sends, stats and
//! recipients, the hashed ad audience, channel settings, the suppression list, and the public
//! side of a message: one-click unsubscribe, opens, clicks, "view in browser", SMS status
//! callbacks and inbound keywords, bounce and complaint intake.

use std::sync::Arc;

use cairn_campaigns::{
    compose_email, compose_sms, normalise,
    settings::{self, Defaults, EmailSettings, SmsWorkspaceSettings},
    templates, EmailSender, LinkKind, Links, TemplateError, TEST_SEND,
};
use cairn_channels::{
    email::{SmtpLane, SmtpSettings},
    sms,
};
use cairn_domain::{CustomerId, Email, Scope, TenantId};
use cairn_store::{
    campaigns::{CampaignFields, CampaignRow, CustomerSend, SendCounts, SendRow, SendStamp},
    customers::{Customer, CustomerFields},
};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::{found, Principal, Result, ServiceError, Services};

/// What campaigns need from the running server.
pub struct CampaignKit {
    pub links: Links,
    pub defaults: Defaults,
    /// Wakes the sender when a campaign starts.
    pub wake: Arc<Notify>,
}

/// What a create or update says; absent fields are left as they are (update) or defaulted.
#[derive(Debug, Default, Clone)]
pub struct CampaignInput {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub segment_id: Option<Option<i64>>,
    pub subject: Option<Option<String>>,
    pub body: Option<Option<String>>,
    pub from_name: Option<Option<String>>,
    pub from_email: Option<Option<String>>,
    pub reply_to: Option<Option<String>>,
    pub track_opens: Option<bool>,
    pub track_clicks: Option<bool>,
    pub rate_limit: Option<Option<i64>>,
    pub require_consent: Option<bool>,
}

/// A campaign with its counters.
pub struct CampaignView {
    pub row: CampaignRow,
    pub counts: SendCounts,
}

/// What one test address got.
pub struct TestResult {
    pub to: String,
    pub sent: bool,
    pub error: Option<String>,
}

/// A message rendered for one customer.
pub struct PreviewView {
    pub subject: Option<String>,
    pub body: String,
    pub text: Option<String>,
    pub segments: Option<u32>,
}

/// What a public link did, for the page or redirect the handler answers with.
pub enum Tracked {
    /// A valid link of a test send or preview: nothing is recorded.
    Test,
    /// Recorded; the events to track on the customer (name, message id, properties). Their
    /// message ids are fixed per message (and link), so repeats are one event.
    Recorded { tenant: TenantId, customer: i64, events: Vec<(String, String, Value)> },
}

const KINDS: [&str; 3] = ["email", "sms", "ad"];
const MAX_BODY: usize = 256 * 1024;

fn template_error(e: TemplateError) -> ServiceError {
    let place = match (e.line, e.column) {
        (Some(l), Some(c)) => format!("line {l}, column {c}: "),
        (Some(l), None) => format!("line {l}: "),
        _ => String::new(),
    };
    ServiceError::invalid(e.field, format!("template error at {place}{}", e.message))
}

fn check_email(field: &str, v: Option<String>) -> Result<Option<String>> {
    match v.filter(|s| !s.trim().is_empty()) {
        Some(s) => Ok(Some(Email::parse(field, s.trim())?.as_str().to_string())),
        None => Ok(None),
    }
}

fn check_text(field: &str, v: Option<String>, max: usize) -> Result<Option<String>> {
    match v {
        Some(s) if s.len() > max => Err(ServiceError::invalid(field, format!("must be at most {max} bytes"))),
        v => Ok(v),
    }
}

impl Services {
    fn kit(&self) -> Result<&CampaignKit> {
        self.campaigns
            .as_deref()
            .ok_or_else(|| ServiceError::Unavailable("campaigns are not enabled on this server".into()))
    }

    async fn campaign_view(&self, row: CampaignRow) -> Result<CampaignView> {
        let counts = self.store.read().await?.send_counts(row.id).await?;
        Ok(CampaignView { row, counts })
    }

    /// Merges an input over the current fields and checks the result.
    async fn campaign_fields(
        &self,
        p: &Principal,
        current: Option<&CampaignRow>,
        i: CampaignInput,
    ) -> Result<CampaignFields> {
        let pick = |new: Option<Option<String>>, old: Option<&Option<String>>| match new {
            Some(v) => v,
            None => old.cloned().flatten(),
        };
        let name = match (i.name, current) {
            (Some(n), _) => n,
            (None, Some(c)) => c.name.clone(),
            (None, None) => return Err(ServiceError::invalid("name", "is required")),
        };
        let name = name.trim().to_string();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(ServiceError::invalid("name", "must be 1 to 200 characters"));
        }
        let kind = match (i.kind, current) {
            (Some(k), _) => k,
            (None, Some(c)) => c.kind.clone(),
            (None, None) => return Err(ServiceError::invalid("type", "is required: email, sms or ad")),
        };
        if !KINDS.contains(&kind.as_str()) {
            return Err(ServiceError::invalid("type", "must be email, sms or ad"));
        }
        let segment_id = match i.segment_id {
            Some(v) => v,
            None => current.and_then(|c| c.segment_id),
        };
        if let Some(s) = segment_id {
            let exists = self.store.read().await?.segment(p.tenant_id, s).await;
            if matches!(exists, Err(cairn_store::StoreError::NotFound)) {
                return Err(ServiceError::invalid("segment_id", "no such segment"));
            }
            exists?;
        }
        let subject = check_text("subject", pick(i.subject, current.map(|c| &c.subject)), 998)?;
        let body = check_text("body", pick(i.body, current.map(|c| &c.body)), MAX_BODY)?;
        let rate_limit = match i.rate_limit {
            Some(v) => v,
            None => current.and_then(|c| c.rate_limit),
        };
        if rate_limit.is_some_and(|r| !(1..=100_000).contains(&r)) {
            return Err(ServiceError::invalid("rate_limit", "must be 1 to 100000 messages per second"));
        }
        let f = CampaignFields {
            name,
            kind,
            segment_id,
            subject,
            body,
            from_name: check_text("from_name", pick(i.from_name, current.map(|c| &c.from_name)), 200)?,
            from_email: check_email("from_email", pick(i.from_email, current.map(|c| &c.from_email)))?,
            reply_to: check_email("reply_to", pick(i.reply_to, current.map(|c| &c.reply_to)))?,
            track_opens: i.track_opens.or(current.map(|c| c.track_opens)).unwrap_or(true),
            track_clicks: i.track_clicks.or(current.map(|c| c.track_clicks)).unwrap_or(true),
            rate_limit,
            require_consent: i.require_consent.or(current.map(|c| c.require_consent)).unwrap_or(false),
        };
        // Syntax errors are refused when saved.
        cairn_campaigns::compile(&f.kind, f.subject.as_deref(), f.body.as_deref()).map_err(template_error)?;
        Ok(f)
    }

    pub async fn create_campaign(&self, p: &Principal, input: CampaignInput) -> Result<CampaignView> {
        p.require_private()?;
        p.require(Scope::CampaignsWrite)?;
        let f = self.campaign_fields(p, None, input).await?;
        let row = self.store.write().await?.insert_campaign(p.tenant_id, &f, self.clock.now()).await?;
        tracing::info!(campaign.id = row.id, kind = %row.kind, "campaign created");
        self.campaign_view(row).await
    }

    pub async fn campaigns(
        &self,
        p: &Principal,
        status: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<CampaignView>, i64)> {
        p.require_private()?;
        p.require(Scope::CampaignsRead)?;
        let (rows, total) = self.store.read().await?.list_campaigns(p.tenant_id, status, limit, offset).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(self.campaign_view(r).await?);
        }
        Ok((out, total))
    }

    async fn campaign_row(&self, p: &Principal, id: i64) -> Result<CampaignRow> {
        found(self.store.read().await?.campaign(p.tenant_id, id).await, "campaign")
    }

    pub async fn campaign(&self, p: &Principal, id: i64) -> Result<CampaignView> {
        p.require_private()?;
        p.require(Scope::CampaignsRead)?;
        let row = self.campaign_row(p, id).await?;
        self.campaign_view(row).await
    }

    pub async fn update_campaign(&self, p: &Principal, id: i64, input: CampaignInput) -> Result<CampaignView> {
        p.require_private()?;
        p.require(Scope::CampaignsWrite)?;
        let current = self.campaign_row(p, id).await?;
        if !matches!(current.status.as_str(), "draft" | "scheduled") {
            return Err(ServiceError::Conflict(format!("a {} campaign cannot be edited", current.status)));
        }
        let f = self.campaign_fields(p, Some(&current), input).await?;
        let row =
            found(self.store.write().await?.update_campaign(p.tenant_id, id, &f, self.clock.now()).await, "campaign")?;
        self.campaign_view(row).await
    }

    pub async fn delete_campaign(&self, p: &Principal, id: i64) -> Result<()> {
        p.require_private()?;
        p.require(Scope::CampaignsDelete)?;
        let current = self.campaign_row(p, id).await?;
        if current.status == "sending" {
            return Err(ServiceError::Conflict("a sending campaign cannot be deleted: cancel it first".into()));
        }
        if current.status == "triggered" {
            return Err(ServiceError::Conflict(
                "this campaign belongs to an automation's step: delete the automation instead".into(),
            ));
        }
        self.store.write().await?.delete_campaign(p.tenant_id, id).await?;
        Ok(())
    }

    /// What a campaign needs before it can go out.
    fn check_sendable(c: &CampaignRow) -> Result<()> {
        if c.kind == "ad" {
            return Err(ServiceError::invalid("type", "ad campaigns are not sent: download audience.csv instead"));
        }
        if c.segment_id.is_none() {
            return Err(ServiceError::invalid("segment_id", "is required to send"));
        }
        if c.body.as_deref().is_none_or(|b| b.trim().is_empty()) {
            return Err(ServiceError::invalid("body", "is required to send"));
        }
        if c.kind == "email" && c.subject.as_deref().is_none_or(|s| s.trim().is_empty()) {
            return Err(ServiceError::invalid("subject", "is required to send an email"));
        }
        Ok(())
    }

    /// Starts sending now (seed 003's `POST /v1/campaigns/{id}/send`).
    pub async fn send_campaign(&self, p: &Principal, id: i64) -> Result<CampaignView> {
        p.require_private()?;
        p.require(Scope::CampaignsWrite)?;
        let kit = self.kit()?;
        let c = self.campaign_row(p, id).await?;
        Self::check_sendable(&c)?;
        let now = self.clock.now();
        if !self
            .store
            .write()
            .await?
            .transition_campaign(p.tenant_id, id, &["draft", "scheduled"], "sending", None, now)
            .await?
        {
            return Err(ServiceError::Conflict(format!("a {} campaign cannot be sent", c.status)));
        }
        kit.wake.notify_one();
        tracing::info!(campaign.id = id, "campaign sending");
        self.campaign(p, id).await
    }

    pub async fn schedule_campaign(&self, p: &Principal, id: i64, send_at: DateTime<Utc>) -> Result<CampaignView> {
        p.require_private()?;
        p.require(Scope::CampaignsWrite)?;
        self.kit()?;
        let c = self.campaign_row(p, id).await?;
        Self::check_sendable(&c)?;
        let now = self.clock.now();
        if send_at <= now {
            return Err(ServiceError::invalid("send_at", "must be in the future"));
        }
        if !self
            .store
            .write()
            .await?
            .transition_campaign(p.tenant_id, id, &["draft", "scheduled"], "scheduled", Some(send_at), now)
            .await?
        {
            return Err(ServiceError::Conflict(format!("a {} campaign cannot be scheduled", c.status)));
        }
        self.campaign(p, id).await
    }

    pub async fn cancel_campaign(&self, p: &Principal, id: i64) -> Result<CampaignView> {
        p.require_private()?;
        p.require(Scope::CampaignsWrite)?;
        let c = self.campaign_row(p, id).await?;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        if !tx.transition_campaign(p.tenant_id, id, &["draft", "scheduled", "sending"], "cancelled", None, now).await? {
            return Err(ServiceError::Conflict(format!("a {} campaign cannot be cancelled", c.status)));
        }
        tx.cancel_queued_sends(id, now).await?;
        tx.commit().await?;
        self.campaign(p, id).await
    }

    async fn customer_for(&self, p: &Principal, id: i64) -> Result<Customer> {
        match self.store.read().await?.customer(p.tenant_id, CustomerId(id)).await {
            Err(cairn_store::StoreError::NotFound) => Err(ServiceError::invalid("customer_id", "no such customer")),
            r => Ok(r?),
        }
    }

    /// The subject and body one customer would get (links are the test kind: they record nothing).
    pub async fn preview_campaign(&self, p: &Principal, id: i64, customer_id: i64) -> Result<PreviewView> {
        p.require_private()?;
        p.require(Scope::CampaignsRead)?;
        let kit = self.kit()?;
        let c = self.campaign_row(p, id).await?;
        let customer = self.customer_for(p, customer_id).await?;
        let t = templates(&c).map_err(template_error)?;
        match c.kind.as_str() {
            "email" => {
                let sender = EmailSender {
                    from_name: None,
                    from_email: c.from_email.clone().unwrap_or_else(|| "preview@cairn.localhost".into()),
                    reply_to: None,
                    unsubscribe_mailto: None,
                };
                let to = customer.email.clone().unwrap_or_default();
                let e =
                    compose_email(&c, &t, &sender, &customer, &to, TEST_SEND, &kit.links).map_err(template_error)?;
                Ok(PreviewView { subject: Some(e.subject), body: e.html, text: Some(e.text), segments: None })
            }
            _ => {
                let (body, parts) = compose_sms(&c, &t, &customer, TEST_SEND, &kit.links).map_err(template_error)?;
                Ok(PreviewView { subject: None, body, text: None, segments: Some(parts) })
            }
        }
    }

    async fn email_settings(&self, tenant: TenantId) -> Result<EmailSettings> {
        Ok(settings::load(&mut self.store.read().await?, tenant, "email").await?)
    }

    async fn sms_settings(&self, tenant: TenantId) -> Result<SmsWorkspaceSettings> {
        Ok(settings::load(&mut self.store.read().await?, tenant, "sms").await?)
    }

    /// Sends the campaign to a few addresses now, rendered for the customer with that address
    /// (or with an empty profile). Nothing is recorded; links lead to "this was a test" pages.
    pub async fn test_campaign(&self, p: &Principal, id: i64, to: Vec<String>) -> Result<Vec<TestResult>> {
        p.require_private()?;
        p.require(Scope::CampaignsWrite)?;
        let kit = self.kit()?;
        let c = self.campaign_row(p, id).await?;
        if c.kind == "ad" {
            return Err(ServiceError::invalid("type", "ad campaigns are not sent"));
        }
        if to.is_empty() || to.len() > 10 {
            return Err(ServiceError::invalid("to", "must list 1 to 10 addresses or numbers"));
        }
        for (i, a) in to.iter().enumerate() {
            let ok = if c.kind == "email" { Email::parse("to", a).is_ok() } else { sms::is_e164(a) };
            if !ok {
                let what = if c.kind == "email" { "an email address" } else { "an E.164 number (+385911234567)" };
                return Err(ServiceError::invalid(&format!("to[{i}]"), format!("must be {what}")));
            }
        }
        let t = templates(&c).map_err(template_error)?;
        let mut out = Vec::new();
        if c.kind == "email" {
            let s = self.email_settings(p.tenant_id).await?;
            let smtp = s
                .smtp(&kit.defaults)
                .ok_or_else(|| ServiceError::Unavailable("no SMTP server is configured".into()))?;
            let from_email = c.from_email.clone().or(s.from_email.clone()).ok_or_else(|| {
                ServiceError::invalid("from_email", "is required: set it on the campaign or in /v1/settings/email")
            })?;
            let sender = EmailSender {
                from_name: c.from_name.clone().or(s.from_name.clone()),
                from_email,
                reply_to: c.reply_to.clone().or(s.reply_to.clone()),
                unsubscribe_mailto: s.unsubscribe_mailto.clone(),
            };
            let mut lane = SmtpLane::new(smtp);
            for a in to {
                let a = normalise("email", &a);
                let customer = self.sample_customer(p.tenant_id, "email", &a).await?;
                let sent = match compose_email(&c, &t, &sender, &customer, &a, TEST_SEND, &kit.links) {
                    Ok(mut e) => {
                        e.subject = format!("[Test] {}", e.subject);
                        match e.build(s.dkim().as_ref()) {
                            Ok(m) => lane.send(&m).await.map_err(|f| f.message().to_string()),
                            Err(e) => Err(e),
                        }
                    }
                    Err(e) => Err(e.to_string()),
                };
                out.push(TestResult { to: a, sent: sent.is_ok(), error: sent.err() });
            }
            lane.quit().await;
        } else {
            let s = self.sms_settings(p.tenant_id).await?;
            let provider = s
                .resolve(&kit.defaults)
                .ok_or_else(|| ServiceError::Unavailable("no SMS provider is configured".into()))?;
            let http = reqwest::Client::new();
            for a in to {
                let customer = self.sample_customer(p.tenant_id, "sms", &a).await?;
                let result = match compose_sms(&c, &t, &customer, TEST_SEND, &kit.links) {
                    Ok((body, _)) => match sms::send(&http, &provider, &a, &body, None).await {
                        sms::SmsOutcome::Accepted(_) => Ok(()),
                        sms::SmsOutcome::Rejected(e) | sms::SmsOutcome::Retry(e) | sms::SmsOutcome::Unknown(e) => {
                            Err(e)
                        }
                    },
                    Err(e) => Err(e.to_string()),
                };
                out.push(TestResult { to: a, sent: result.is_ok(), error: result.err() });
            }
        }
        Ok(out)
    }

    async fn sample_customer(&self, tenant: TenantId, channel: &str, address: &str) -> Result<Customer> {
        let mut conn = self.store.read().await?;
        let ids = conn.customer_ids_by_address(tenant, channel, address).await?;
        if let Some(id) = ids.first() {
            return Ok(conn.customer(tenant, CustomerId(*id)).await?);
        }
        let now = self.clock.now();
        Ok(Customer {
            id: CustomerId(0),
            tenant_id: tenant,
            email: (channel == "email").then(|| address.to_string()),
            external_id: None,
            name: None,
            phone: (channel == "sms").then(|| address.to_string()),
            city: None,
            country: None,
            traits: json!({}),
            first_seen_at: None,
            last_seen_at: None,
            created_at: now,
            updated_at: now,
        })
    }

    pub async fn campaign_stats(&self, p: &Principal, id: i64) -> Result<CampaignView> {
        self.campaign(p, id).await
    }

    /// The messages a customer was sent (campaigns and automation steps), newest first.
    pub async fn customer_messages(
        &self,
        p: &Principal,
        customer: CustomerId,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<CustomerSend>, i64)> {
        p.require_private()?;
        p.require(Scope::CustomersRead)?;
        p.require(Scope::CampaignsRead)?;
        let mut conn = self.store.read().await?;
        found(conn.customer(p.tenant_id, customer).await, "customer")?;
        Ok(conn.customer_sends(p.tenant_id, customer.0, limit, offset).await?)
    }

    pub async fn campaign_recipients(
        &self,
        p: &Principal,
        id: i64,
        status: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<SendRow>, i64)> {
        p.require_private()?;
        p.require(Scope::CampaignsRead)?;
        let c = self.campaign_row(p, id).await?;
        let mut conn = self.store.read().await?;
        let rows = conn.list_sends(c.id, status, limit, offset).await?;
        let counts = conn.send_counts(c.id).await?;
        let total = match status {
            None => counts.recipients,
            Some("queued") => counts.queued,
            Some("committing") => counts.in_flight,
            Some("sent") => counts.sent,
            Some("delivered") => counts.delivered,
            Some("failed") => counts.failed,
            Some("bounced") => counts.bounced,
            Some("unknown") => counts.unknown,
            Some("skipped") => counts.skipped,
            Some(_) => counts.cancelled,
        };
        Ok((rows, total))
    }

    /// The segment as a hashed audience file (ad campaigns; any campaign with a segment).
    /// Header `email_sha256,phone_sha256`: SHA-256 (hex) of the trimmed, lower-cased email and
    /// of the E.164 phone number (`+` and digits only), the form Google's and Meta's customer
    /// match uploads take. Customers who opted out of both channels are left out.
    pub async fn campaign_audience_csv(&self, p: &Principal, id: i64) -> Result<String> {
        p.require_private()?;
        p.require(Scope::CampaignsRead)?;
        let c = self.campaign_row(p, id).await?;
        let Some(segment) = c.segment_id else {
            return Err(ServiceError::invalid("segment_id", "the campaign has no segment"));
        };
        let mut conn = self.store.read().await?;
        let ids = conn.segment_member_ids(p.tenant_id, segment, None).await?;
        let mut out = String::from("email_sha256,phone_sha256\n");
        let hash = |s: &str| hex::encode(Sha256::digest(s.as_bytes()));
        for chunk in ids.chunks(5_000) {
            for cu in conn.customers_by_ids(p.tenant_id, chunk).await? {
                let opted_out = |k: &str| cu.traits.get(k).and_then(Value::as_bool) == Some(false);
                if opted_out("email_consent") && opted_out("sms_consent") {
                    continue;
                }
                let email = cu.email.as_deref().map(|e| hash(&e.trim().to_lowercase())).unwrap_or_default();
                let phone = cu
                    .phone
                    .as_deref()
                    .map(|ph| ph.chars().filter(|ch| ch.is_ascii_digit() || *ch == '+').collect::<String>())
                    .filter(|ph| sms::is_e164(ph))
                    .map(|ph| hash(&ph))
                    .unwrap_or_default();
                if email.is_empty() && phone.is_empty() {
                    continue;
                }
                out.push_str(&format!("{email},{phone}\n"));
            }
        }
        Ok(out)
    }

    // ---- settings ----

    pub async fn get_email_settings(&self, p: &Principal) -> Result<EmailSettings> {
        p.require_private()?;
        p.require(Scope::CampaignsRead)?;
        self.email_settings(p.tenant_id).await
    }

    /// Replaces the workspace's email settings (secrets omitted from the body are kept).
    pub async fn put_email_settings(&self, p: &Principal, mut s: EmailSettings) -> Result<EmailSettings> {
        p.require_private()?;
        p.require(Scope::SettingsManage)?;
        let current = self.email_settings(p.tenant_id).await?;
        s.from_email = check_email("from_email", s.from_email)?;
        s.reply_to = check_email("reply_to", s.reply_to)?;
        if let Some(u) = &s.smtp_url {
            // (Checked before parsing: parsing reads the named file.)
            if url::Url::parse(u).is_ok_and(|u| u.query_pairs().any(|(k, _)| k == "ca")) {
                return Err(ServiceError::invalid(
                    "smtp_url",
                    "ca= names a file on the server: only CAIRN_SMTP_URL may use it",
                ));
            }
            SmtpSettings::parse(u).map_err(|e| ServiceError::invalid("smtp_url", e))?;
        }
        if s.rate_limit.is_some_and(|r| !(1..=100_000).contains(&r)) {
            return Err(ServiceError::invalid("rate_limit", "must be 1 to 100000 messages per second"));
        }
        if let Some(m) = &s.unsubscribe_mailto {
            if !m.starts_with("mailto:") {
                return Err(ServiceError::invalid("unsubscribe_mailto", "must be a mailto: URL"));
            }
        }
        if s.dkim_private_key.is_none() {
            s.dkim_private_key = current.dkim_private_key;
        }
        if let Some(d) = s.dkim() {
            d.check().map_err(|e| ServiceError::invalid("dkim_private_key", e))?;
        }
        let text = serde_json::to_string(&s).map_err(|e| ServiceError::Internal(e.to_string()))?;
        self.store.write().await?.put_channel_settings(p.tenant_id, "email", &text, self.clock.now()).await?;
        Ok(s)
    }

    pub async fn get_sms_settings(&self, p: &Principal) -> Result<SmsWorkspaceSettings> {
        p.require_private()?;
        p.require(Scope::CampaignsRead)?;
        self.sms_settings(p.tenant_id).await
    }

    pub async fn put_sms_settings(&self, p: &Principal, mut s: SmsWorkspaceSettings) -> Result<SmsWorkspaceSettings> {
        p.require_private()?;
        p.require(Scope::SettingsManage)?;
        let current = self.sms_settings(p.tenant_id).await?;
        if let Some(u) = &s.api_url {
            let ok = url::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
            if !ok {
                return Err(ServiceError::invalid("api_url", "must be an http(s) URL"));
            }
        }
        if s.from.as_deref().is_some_and(|f| !sms::is_e164(f) && !f.chars().all(|c| c.is_ascii_alphanumeric())) {
            return Err(ServiceError::invalid("from", "must be an E.164 number or an alphanumeric sender id"));
        }
        if s.rate_limit.is_some_and(|r| !(1..=100_000).contains(&r)) {
            return Err(ServiceError::invalid("rate_limit", "must be 1 to 100000 messages per second"));
        }
        if s.auth_token.is_none() {
            s.auth_token = current.auth_token;
        }
        let text = serde_json::to_string(&s).map_err(|e| ServiceError::Internal(e.to_string()))?;
        self.store.write().await?.put_channel_settings(p.tenant_id, "sms", &text, self.clock.now()).await?;
        Ok(s)
    }

    // ---- suppressions ----

    pub async fn suppressions(
        &self,
        p: &Principal,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<(String, String, String, DateTime<Utc>)>> {
        p.require_private()?;
        p.require(Scope::CampaignsRead)?;
        Ok(self.store.read().await?.list_suppressions(p.tenant_id, limit, offset).await?)
    }

    pub async fn add_suppression(&self, p: &Principal, channel: &str, address: &str) -> Result<()> {
        p.require_private()?;
        p.require(Scope::CampaignsWrite)?;
        let address = check_address(channel, address)?;
        self.store.write().await?.suppress(p.tenant_id, channel, &address, "manual", self.clock.now()).await?;
        Ok(())
    }

    pub async fn remove_suppression(&self, p: &Principal, channel: &str, address: &str) -> Result<bool> {
        p.require_private()?;
        p.require(Scope::CampaignsWrite)?;
        let address = check_address(channel, address)?;
        Ok(self.store.write().await?.unsuppress(p.tenant_id, channel, &address).await?)
    }

    // ---- the public side of messages ----

    fn verify(&self, kind: LinkKind, token: &str, extra: &str) -> Result<i64> {
        self.kit()?.links.verify(kind, token, extra).ok_or(ServiceError::NotFound("link"))
    }

    async fn send_of(&self, id: i64) -> Result<SendRow> {
        found(self.store.read().await?.send_record(id).await, "link")
    }

    /// Sets a consent trait and suppresses (or, for `START`, releases) the address; marks the
    /// customer for segments. Idempotent.
    async fn set_consent(
        &self,
        tenant: TenantId,
        customer: Option<i64>,
        channel: &str,
        address: &str,
        consent: bool,
        reason: &str,
    ) -> Result<()> {
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        if consent {
            tx.unsuppress(tenant, channel, address).await?;
        } else {
            tx.suppress(tenant, channel, address, reason, now).await?;
        }
        let ids = match customer {
            Some(c) => vec![c],
            None => tx.customer_ids_by_address(tenant, channel, address).await?,
        };
        let key = format!("{channel}_consent");
        for id in ids {
            let Ok(cu) = tx.customer(tenant, CustomerId(id)).await else { continue };
            if cu.traits.get(&key).and_then(Value::as_bool) == Some(consent) {
                continue;
            }
            let mut traits = cu.traits.clone();
            if let Value::Object(m) = &mut traits {
                m.insert(key.clone(), Value::Bool(consent));
            }
            let fields = CustomerFields {
                email: cu.email.clone(),
                external_id: cu.external_id.clone(),
                name: cu.name.clone(),
                phone: cu.phone.clone(),
                city: cu.city.clone(),
                country: cu.country.clone(),
                traits,
            };
            tx.update_customer(tenant, cu.id, &fields, now).await?;
            tx.mark_segments_dirty(&[(tenant, cu.id, cairn_segments::changed::PROFILE)], now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The one-click unsubscribe (RFC 8058): effective at once, idempotent, no login.
    pub async fn unsubscribe(&self, token: &str) -> Result<Tracked> {
        let id = self.verify(LinkKind::Unsubscribe, token, "")?;
        if id == TEST_SEND {
            return Ok(Tracked::Test);
        }
        let s = self.send_of(id).await?;
        let tenant = TenantId(s.tenant_id);
        let address = s.address.clone().unwrap_or_default();
        self.set_consent(tenant, Some(s.customer_id), &s.channel, &address, false, "unsubscribed").await?;
        let first = self.store.write().await?.stamp_send(s.id, SendStamp::Unsubscribed, self.clock.now()).await?;
        tracing::info!(send.id = s.id, first, "unsubscribed");
        // Emitted every time under one message id: the event store keeps one, and a failed
        // append is made good by the next request.
        let props = json!({"campaign_id": s.campaign_id, "channel": s.channel});
        let events = vec![("unsubscribed".to_string(), format!("unsubscribed:{}", s.id), props)];
        Ok(Tracked::Recorded { tenant, customer: s.customer_id, events })
    }

    /// Checks an unsubscribe link for the confirmation page: the campaign's name, or None for a test.
    pub async fn unsubscribe_page(&self, token: &str) -> Result<Option<String>> {
        let id = self.verify(LinkKind::Unsubscribe, token, "")?;
        if id == TEST_SEND {
            return Ok(None);
        }
        let s = self.send_of(id).await?;
        let c = found(self.store.read().await?.campaign(TenantId(s.tenant_id), s.campaign_id).await, "link")?;
        Ok(Some(c.name))
    }

    /// An open (the pixel): the first one per message is recorded and tracked.
    pub async fn track_open(&self, token: &str) -> Result<Tracked> {
        let id = self.verify(LinkKind::Open, token, "")?;
        if id == TEST_SEND {
            return Ok(Tracked::Test);
        }
        let s = self.send_of(id).await?;
        self.store.write().await?.stamp_send(s.id, SendStamp::Opened, self.clock.now()).await?;
        // Every open is tracked under the message's one id: the event store keeps the first.
        let events = vec![opened(&s)];
        Ok(Tracked::Recorded { tenant: TenantId(s.tenant_id), customer: s.customer_id, events })
    }

    /// A click: the target, and the click tracked once per (message, link). A click counts as
    /// an open too (images are often blocked).
    pub async fn track_click(&self, token: &str, target: &str) -> Result<Tracked> {
        let id = self.verify(LinkKind::Click, token, target)?;
        if id == TEST_SEND {
            return Ok(Tracked::Test);
        }
        let s = self.send_of(id).await?;
        let now = self.clock.now();
        let mut w = self.store.write().await?;
        w.stamp_send(s.id, SendStamp::Clicked, now).await?;
        w.stamp_send(s.id, SendStamp::Opened, now).await?;
        let link = hex::encode(&Sha256::digest(target.as_bytes())[..8]);
        let mut events = vec![opened(&s)];
        events.push((
            "email_clicked".to_string(),
            format!("email_clicked:{}:{link}", s.id),
            json!({"campaign_id": s.campaign_id, "url": target}),
        ));
        Ok(Tracked::Recorded { tenant: TenantId(s.tenant_id), customer: s.customer_id, events })
    }

    /// The email of a send as a web page (no tracking).
    pub async fn view_in_browser(&self, token: &str) -> Result<String> {
        let kit = self.kit()?;
        let id = self.verify(LinkKind::View, token, "")?;
        if id == TEST_SEND {
            return Ok("<p>This was a test message.</p>".into());
        }
        let s = self.send_of(id).await?;
        let tenant = TenantId(s.tenant_id);
        let mut conn = self.store.read().await?;
        let c = found(conn.campaign(tenant, s.campaign_id).await, "link")?;
        let cu = found(conn.customer(tenant, CustomerId(s.customer_id)).await, "link")?;
        let t = templates(&c).map_err(template_error)?;
        Ok(cairn_campaigns::render_email(&c, &t, &cu, s.id, &kit.links).map_err(template_error)?.body)
    }

    /// A provider's status callback (Twilio's form fields), verified by `X-Twilio-Signature`
    /// under the workspace's auth token. `url` is the URL the provider posted to.
    pub async fn sms_status(&self, token: &str, url: &str, params: &[(String, String)], signature: &str) -> Result<()> {
        let kit = self.kit()?;
        let id = self.verify(LinkKind::SmsStatus, token, "")?;
        let s = self.send_of(id).await?;
        let tenant = TenantId(s.tenant_id);
        let provider = self.sms_settings(tenant).await?.resolve(&kit.defaults);
        let Some(provider) = provider else { return Err(ServiceError::Forbidden("no SMS provider".into())) };
        if !sms::verify(&provider.auth_token, url, params, signature) {
            return Err(ServiceError::Forbidden("invalid X-Twilio-Signature".into()));
        }
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let status = match get("MessageStatus").or(get("SmsStatus")) {
            Some("delivered") => "delivered",
            Some("failed" | "undelivered") => "failed",
            Some("sent") => "sent",
            // queued, accepted, sending: nothing settled yet.
            _ => return Ok(()),
        };
        let error = get("ErrorCode").map(|c| format!("provider error {c}"));
        self.store
            .write()
            .await?
            .settle_send(s.id, status, get("MessageSid"), error.as_deref(), self.clock.now())
            .await?;
        Ok(())
    }

    /// An inbound SMS to the workspace's number: STOP / UNSUBSCRIBE (and the other standard
    /// opt-out words) opt the sender out, START / UNSTOP opt them back in.
    pub async fn sms_inbound(
        &self,
        workspace: i64,
        url: &str,
        params: &[(String, String)],
        signature: &str,
    ) -> Result<Option<bool>> {
        let kit = self.kit()?;
        let tenant = TenantId(workspace);
        let provider = self.sms_settings(tenant).await?.resolve(&kit.defaults);
        let Some(provider) = provider else { return Err(ServiceError::NotFound("workspace")) };
        if !sms::verify(&provider.auth_token, url, params, signature) {
            return Err(ServiceError::Forbidden("invalid X-Twilio-Signature".into()));
        }
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.trim().to_string());
        let (Some(from), Some(body)) = (get("From"), get("Body")) else {
            return Err(ServiceError::invalid("From", "From and Body are required"));
        };
        let word = body.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
        let consent = match word.as_str() {
            "STOP" | "STOPALL" | "UNSUBSCRIBE" | "CANCEL" | "END" | "QUIT" => false,
            "START" | "UNSTOP" | "YES" => true,
            _ => return Ok(None),
        };
        self.set_consent(tenant, None, "sms", &from, consent, "stop_keyword").await?;
        tracing::info!(tenant.id = workspace, consent, "sms keyword");
        Ok(Some(consent))
    }

    /// Bounce and complaint reports (`POST /v1/email-events`): each names the address, and
    /// optionally our Message-ID; hard bounces and complaints suppress the address.
    pub async fn email_events(&self, p: &Principal, events: Vec<EmailEvent>) -> Result<usize> {
        p.require_private()?;
        p.require(Scope::CampaignsWrite)?;
        let now = self.clock.now();
        let mut applied = 0;
        for e in events {
            let address = normalise("email", &e.email);
            let send = match e.message_id.as_deref().and_then(send_id_of_message_id) {
                Some(id) => {
                    self.store.read().await?.send_record(id).await.ok().filter(|s| s.tenant_id == p.tenant_id.0)
                }
                None => self.store.read().await?.latest_send_to(p.tenant_id, "email", &address).await?,
            };
            let mut tx = self.store.begin().await?;
            match e.kind.as_str() {
                "bounce" if !e.soft => {
                    tx.suppress(p.tenant_id, "email", &address, "hard_bounce", now).await?;
                    if let Some(s) = &send {
                        tx.settle_send(s.id, "bounced", None, e.reason.as_deref(), now).await?;
                    }
                }
                "bounce" => {
                    if let Some(s) = &send {
                        tx.settle_send(s.id, "failed", None, e.reason.as_deref(), now).await?;
                    }
                }
                "complaint" => {
                    tx.suppress(p.tenant_id, "email", &address, "complaint", now).await?;
                }
                "delivered" => {
                    if let Some(s) = &send {
                        tx.settle_send(s.id, "delivered", None, None, now).await?;
                    }
                }
                _ => {}
            }
            tx.commit().await?;
            if e.kind == "complaint" {
                self.set_consent(
                    p.tenant_id,
                    send.as_ref().map(|s| s.customer_id),
                    "email",
                    &address,
                    false,
                    "complaint",
                )
                .await?;
            }
            applied += 1;
        }
        Ok(applied)
    }
}

/// One bounce, complaint or delivery report.
#[derive(Debug, Clone)]
pub struct EmailEvent {
    /// `bounce`, `complaint` or `delivered`.
    pub kind: String,
    pub email: String,
    /// A soft (temporary) bounce does not suppress.
    pub soft: bool,
    pub message_id: Option<String>,
    pub reason: Option<String>,
}

fn opened(s: &SendRow) -> (String, String, Value) {
    ("email_opened".to_string(), format!("email_opened:{}", s.id), json!({"campaign_id": s.campaign_id}))
}

/// Our Message-IDs are `c{campaign}.s{send}@domain`.
fn send_id_of_message_id(m: &str) -> Option<i64> {
    let m = m.trim().trim_start_matches('<').trim_end_matches('>');
    let local = m.split('@').next()?;
    local.split('.').find_map(|p| p.strip_prefix('s')).and_then(|n| n.parse().ok())
}

fn check_address(channel: &str, address: &str) -> Result<String> {
    match channel {
        "email" => Ok(Email::parse("address", address.trim())?.as_str().to_lowercase()),
        "sms" if sms::is_e164(address.trim()) => Ok(address.trim().to_string()),
        "sms" => Err(ServiceError::invalid("address", "must be an E.164 number")),
        _ => Err(ServiceError::invalid("channel", "must be email or sms")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn message_ids() {
        assert_eq!(super::send_id_of_message_id("<c3.s42@shop.test>"), Some(42));
        assert_eq!(super::send_id_of_message_id("c3.test.9@shop.test"), None);
    }
}

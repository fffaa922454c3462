//! Channel settings: the server-wide defaults (`CAIRN_SMTP_URL`, `CAIRN_SMS_*`) and each
//! workspace's own (`GET/PUT /v1/settings/email|sms`, stored in `channel_settings`), which
//! win field by field.

use cairn_channels::{
    email::{Dkim, SmtpSettings},
    sms::SmsSettings,
};
use serde::{Deserialize, Serialize};

/// Server-wide defaults, from configuration.
#[derive(Debug, Clone, Default)]
pub struct Defaults {
    pub smtp: Option<SmtpSettings>,
    pub sms: Option<SmsSettings>,
}

/// A workspace's email settings as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmailSettings {
    pub from_name: Option<String>,
    pub from_email: Option<String>,
    pub reply_to: Option<String>,
    /// The workspace's own SMTP server (secret: never shown back in full).
    pub smtp_url: Option<String>,
    /// Messages per second across the workspace's email campaigns.
    pub rate_limit: Option<i64>,
    /// `mailto:` address offered in `List-Unsubscribe` beside the URL.
    pub unsubscribe_mailto: Option<String>,
    pub dkim_domain: Option<String>,
    pub dkim_selector: Option<String>,
    /// Secret: never shown back.
    pub dkim_private_key: Option<String>,
}

/// A workspace's SMS settings as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SmsWorkspaceSettings {
    pub api_url: Option<String>,
    pub account_sid: Option<String>,
    /// Secret: never shown back.
    pub auth_token: Option<String>,
    pub from: Option<String>,
    pub rate_limit: Option<i64>,
}

impl EmailSettings {
    pub fn smtp(&self, defaults: &Defaults) -> Option<SmtpSettings> {
        match &self.smtp_url {
            Some(u) => SmtpSettings::parse(u).ok(),
            None => defaults.smtp.clone(),
        }
    }

    pub fn dkim(&self) -> Option<Dkim> {
        Some(Dkim {
            domain: self.dkim_domain.clone()?,
            selector: self.dkim_selector.clone()?,
            private_key: self.dkim_private_key.clone()?,
        })
    }
}

impl SmsWorkspaceSettings {
    /// The workspace's fields over the server's.
    pub fn resolve(&self, defaults: &Defaults) -> Option<SmsSettings> {
        let d = defaults.sms.as_ref();
        Some(SmsSettings {
            api_url: self.api_url.clone().or_else(|| d.map(|d| d.api_url.clone()))?,
            account_sid: self.account_sid.clone().or_else(|| d.map(|d| d.account_sid.clone()))?,
            auth_token: self.auth_token.clone().or_else(|| d.map(|d| d.auth_token.clone()))?,
            from: self.from.clone().or_else(|| d.map(|d| d.from.clone()))?,
        })
    }
}

/// Reads a workspace's settings of one channel (defaults when none are stored).
pub async fn load<T: for<'de> Deserialize<'de> + Default>(
    conn: &mut cairn_store::Conn,
    tenant: cairn_domain::TenantId,
    channel: &str,
) -> cairn_store::Result<T> {
    Ok(conn.channel_settings(tenant, channel).await?.and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default())
}

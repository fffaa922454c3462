//! Campaigns (docs/campaigns.md): templates, the audience, the composition of each message
//! (tracking links, unsubscribe, plain-text part) and the [`sender::Sender`], which sends every
//! recipient exactly once through the channel layer of `cairn-channels`.

pub mod links;
pub mod notify;
pub mod sender;
pub mod settings;
pub mod template;
pub mod text;

use cairn_channels::{email::Email, sms};
use cairn_store::{campaigns::CampaignRow, customers::Customer};
use serde_json::Value;

pub use links::{LinkKind, Links};
pub use template::{Rendered, TemplateError, Templates};

/// The send record id used for test sends and previews: their links lead to pages that say
/// so, and record nothing.
pub const TEST_SEND: i64 = 0;

/// Compiles a campaign's templates (email bodies are HTML).
pub fn templates(c: &CampaignRow) -> Result<Templates, TemplateError> {
    compile(&c.kind, c.subject.as_deref(), c.body.as_deref())
}

/// Compiles the templates of a campaign of this kind (email: subject and HTML body; SMS: body).
pub fn compile(kind: &str, subject: Option<&str>, body: Option<&str>) -> Result<Templates, TemplateError> {
    let body = body.unwrap_or("");
    match kind {
        "email" => Templates::compile(Some(subject.unwrap_or("")), body, true),
        _ => Templates::compile(None, body, false),
    }
}

/// The template context of one recipient of a campaign.
pub fn context(c: &CampaignRow, customer: &Customer, send: i64, links: &Links) -> Value {
    template::context(
        customer,
        &[
            ("unsubscribe_url", links.unsubscribe_url(send).into()),
            ("view_in_browser_url", links.view_url(send).into()),
            ("campaign_name", c.name.clone().into()),
        ],
    )
}

/// An email as a recipient sees it in a browser (no tracking).
pub fn render_email(
    c: &CampaignRow,
    t: &Templates,
    customer: &Customer,
    send: i64,
    links: &Links,
) -> Result<Rendered, TemplateError> {
    t.render(&context(c, customer, send, links))
}

/// Everything about the sender of an email that is not per recipient.
#[derive(Debug, Clone)]
pub struct EmailSender {
    pub from_name: Option<String>,
    pub from_email: String,
    pub reply_to: Option<String>,
    pub unsubscribe_mailto: Option<String>,
}

/// Composes one recipient's email: rendered, links tracked (when the campaign tracks clicks),
/// the open pixel (when it tracks opens), a plain-text part from the HTML, the RFC 8058
/// headers.
pub fn compose_email(
    c: &CampaignRow,
    t: &Templates,
    sender: &EmailSender,
    customer: &Customer,
    to: &str,
    send: i64,
    links: &Links,
) -> Result<Email, TemplateError> {
    let r = render_email(c, t, customer, send, links)?;
    let text = text::html_to_text(&r.body);
    let unsubscribe = links.unsubscribe_url(send);
    let view = links.view_url(send);
    let mut html = r.body;
    if c.track_clicks && send != TEST_SEND {
        html = links::rewrite_links(&html, &[&unsubscribe, &view], |u| links.click_url(send, u));
    }
    if c.track_opens && send != TEST_SEND {
        html = links::add_pixel(&html, &links.open_url(send));
    }
    let domain = sender.from_email.rsplit_once('@').map(|(_, d)| d).unwrap_or("cairn.localhost");
    let message_id = if send == TEST_SEND {
        format!("c{}.test.{}@{domain}", c.id, rand::random::<u64>())
    } else {
        format!("c{}.s{send}@{domain}", c.id)
    };
    Ok(Email {
        from_name: sender.from_name.clone(),
        from_email: sender.from_email.clone(),
        reply_to: sender.reply_to.clone(),
        to: to.to_string(),
        subject: r.subject,
        html,
        text,
        message_id,
        unsubscribe_url: Some(unsubscribe),
        unsubscribe_mailto: sender.unsubscribe_mailto.clone(),
    })
}

/// One recipient's SMS body and how many segments it takes.
pub fn compose_sms(
    c: &CampaignRow,
    t: &Templates,
    customer: &Customer,
    send: i64,
    links: &Links,
) -> Result<(String, u32), TemplateError> {
    let body = t.render(&context(c, customer, send, links))?.body.trim().to_string();
    let parts = sms::segments(&body);
    Ok((body, parts))
}

/// Normalises an address for a channel: lower-cased email, or the phone as given (E.164).
pub fn normalise(channel: &str, address: &str) -> String {
    match channel {
        "email" => address.trim().to_lowercase(),
        _ => address.trim().to_string(),
    }
}

/// Why a customer is not sent to on a channel, if they are not: no address, an invalid one,
/// opted out (`email_consent` / `sms_consent` false), or no consent when it is required.
pub fn skip_reason(channel: &str, customer: &Customer, require_consent: bool) -> Option<&'static str> {
    let address = match channel {
        "email" => customer.email.as_deref(),
        _ => customer.phone.as_deref(),
    };
    let Some(address) = address.filter(|a| !a.trim().is_empty()) else { return Some("no_address") };
    let valid = match channel {
        "email" => cairn_domain::Email::parse("email", address).is_ok(),
        _ => sms::is_e164(address.trim()),
    };
    if !valid {
        return Some("invalid_address");
    }
    let consent = customer.traits.get(format!("{channel}_consent")).and_then(Value::as_bool);
    match consent {
        Some(false) => Some("opted_out"),
        None if require_consent => Some("no_consent"),
        _ => None,
    }
}

/// The address a customer is reached at on a channel.
pub fn address_of(channel: &str, customer: &Customer) -> Option<String> {
    match channel {
        "email" => customer.email.as_deref().map(|a| normalise(channel, a)),
        _ => customer.phone.as_deref().map(|a| normalise(channel, a)),
    }
}

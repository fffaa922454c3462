//! SMS through a Twilio-compatible Messages API (docs/campaigns.md): sending (Basic auth, form
//! fields To, From, Body, StatusCallback), `X-Twilio-Signature` checks on callbacks, E.164
//! numbers and message segments (GSM-7 or UCS-2).

use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};

/// Where and as whom messages are sent.
#[derive(Clone, PartialEq, Eq)]
pub struct SmsSettings {
    /// The API's base URL (`https://api.twilio.com` for Twilio itself).
    pub api_url: String,
    pub account_sid: String,
    pub auth_token: String,
    pub from: String,
}

impl std::fmt::Debug for SmsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SmsSettings({}, {})", self.api_url, self.account_sid)
    }
}

/// What the provider said about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmsOutcome {
    /// Accepted, with the provider's message id (`SM…`).
    Accepted(String),
    /// Refused (4xx: an invalid number, a blocked destination); never accepted.
    Rejected(String),
    /// Not reached (no connection): safe to try again.
    Retry(String),
    /// Sent but unanswered (a timeout, a 5xx): the message may exist; its status callback
    /// settles it, it is never sent again blindly.
    Unknown(String),
}

/// Sends one message.
pub async fn send(
    http: &reqwest::Client,
    s: &SmsSettings,
    to: &str,
    body: &str,
    status_callback: Option<&str>,
) -> SmsOutcome {
    let url = format!("{}/2010-04-01/Accounts/{}/Messages.json", s.api_url.trim_end_matches('/'), s.account_sid);
    let mut form = vec![("To", to), ("From", s.from.as_str()), ("Body", body)];
    if let Some(cb) = status_callback {
        form.push(("StatusCallback", cb));
    }
    let res = http
        .post(&url)
        .basic_auth(&s.account_sid, Some(&s.auth_token))
        .form(&form)
        .timeout(Duration::from_secs(30))
        .send()
        .await;
    let res = match res {
        Ok(r) => r,
        Err(e) if e.is_connect() => return SmsOutcome::Retry(format!("connect: {e}")),
        Err(e) => return SmsOutcome::Unknown(format!("no answer: {e}")),
    };
    let status = res.status();
    let body: serde_json::Value = res.json().await.unwrap_or_default();
    if status.is_success() {
        match body.get("sid").and_then(|v| v.as_str()) {
            Some(sid) => SmsOutcome::Accepted(sid.to_string()),
            None => SmsOutcome::Unknown("accepted without a message sid".into()),
        }
    } else if status.as_u16() == 429 {
        SmsOutcome::Retry("rate limited (429)".into())
    } else if status.is_client_error() {
        let msg = body.get("message").and_then(|v| v.as_str()).unwrap_or("refused");
        let code = body.get("code").map(|c| c.to_string()).unwrap_or_default();
        SmsOutcome::Rejected(format!("{status} {code} {msg}").trim().to_string())
    } else {
        SmsOutcome::Unknown(format!("provider answered {status}"))
    }
}

/// `X-Twilio-Signature`: base64 of HMAC-SHA1 over the full URL followed by every POST
/// parameter's name and value, sorted by name.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut data = url.to_string();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes()).expect("any key length");
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Checks a callback's signature in constant time.
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], given: &str) -> bool {
    let want = signature(auth_token, url, params);
    want.len() == given.len() && want.bytes().zip(given.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// An E.164 number: `+`, a non-zero digit, 7 to 15 digits in all.
pub fn is_e164(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else { return false };
    (7..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0')
}

const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
const GSM7_EXTENDED: &str = "^{}\\[~]|€\u{000C}";

/// How many messages a body takes: 160 GSM-7 characters in one (153 per part when split;
/// extension characters count twice), else 70 UCS-2 code units in one (67 per part).
pub fn segments(body: &str) -> u32 {
    let mut septets = 0usize;
    let mut gsm = true;
    for ch in body.chars() {
        if GSM7_BASIC.contains(ch) {
            septets += 1;
        } else if GSM7_EXTENDED.contains(ch) {
            septets += 2;
        } else {
            gsm = false;
            break;
        }
    }
    let (units, single, part) = if gsm { (septets, 160, 153) } else { (body.encode_utf16().count(), 70, 67) };
    if units <= single {
        1
    } else {
        units.div_ceil(part) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting() {
        assert_eq!(segments(&"a".repeat(160)), 1);
        assert_eq!(segments(&"a".repeat(161)), 2);
        assert_eq!(segments(&"a".repeat(306)), 2);
        assert_eq!(segments(&"a".repeat(307)), 3);
        assert_eq!(segments(&"€".repeat(80)), 1);
        assert_eq!(segments(&"€".repeat(81)), 2);
        assert_eq!(segments(&"ć".repeat(70)), 1);
        assert_eq!(segments(&"ć".repeat(71)), 2);
        assert_eq!(segments(&"😀".repeat(35)), 1);
        assert_eq!(segments(&"😀".repeat(36)), 2);
    }

    #[test]
    fn numbers() {
        assert!(is_e164("+385911234567"));
        assert!(!is_e164("385911234567"));
        assert!(!is_e164("+0911234567"));
        assert!(!is_e164("+38591 123"));
        assert!(!is_e164("+1234567890123456"));
    }

    #[test]
    fn twilio_signature() {
        // The expected value was computed independently with Python: base64(hmac.new(token,
        // url + "".join(k + v for k, v in sorted(params)), sha1)).
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let sig = signature("12345", "https://example.com/myapp.php?foo=1&bar=2", &params);
        assert_eq!(sig, "vNe7KK2kJwCsxc9K3OLkkKB3qqI=");
        assert!(verify("12345", "https://example.com/myapp.php?foo=1&bar=2", &params, &sig));
    }
}

//! Webhook signatures, in every scheme a seed's receiver verifies:
//! - Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature:
//!   v1,<base64 HMAC-SHA256 of "id.timestamp.body">` (key: the base64 after `whsec_`).
//! - Seed 003: `X-EnterCRM-Signature: <hex HMAC-SHA256 of the body>` (key: the secret as text).
//! - Seed 000: `X-TraceCRM-Event`, `-Delivery`, `-Timestamp`, `-Signature: <hex HMAC-SHA256 of
//!   "timestamp.body">` (key: the secret as text).
//!
//! During a rotation both the new and the old secret sign (Standard Webhooks lists both
//! signatures; the single-valued headers carry the new secret's).

use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// A fresh endpoint secret: `whsec_` and 32 random bytes in base64.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("whsec_{}", STANDARD.encode(bytes))
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC accepts keys of any length: new_from_slice cannot fail for it.
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

/// The key Standard Webhooks signs with: the decoded part after `whsec_`, or the raw text.
fn standard_key(secret: &str) -> Vec<u8> {
    secret.strip_prefix("whsec_").and_then(|b| STANDARD.decode(b).ok()).unwrap_or_else(|| secret.as_bytes().to_vec())
}

pub fn standard_signature(secret: &str, id: &str, timestamp: i64, body: &str) -> String {
    let ts = timestamp.to_string();
    format!(
        "v1,{}",
        STANDARD.encode(hmac(&standard_key(secret), &[id.as_bytes(), b".", ts.as_bytes(), b".", body.as_bytes()]))
    )
}

pub fn entercrm_signature(secret: &str, body: &str) -> String {
    hex::encode(hmac(secret.as_bytes(), &[body.as_bytes()]))
}

pub fn tracecrm_signature(secret: &str, timestamp: i64, body: &str) -> String {
    let ts = timestamp.to_string();
    hex::encode(hmac(secret.as_bytes(), &[ts.as_bytes(), b".", body.as_bytes()]))
}

/// All the signature headers for one attempt.
pub fn headers(secrets: &[&str], id: &str, event: &str, timestamp: i64, body: &str) -> Vec<(&'static str, String)> {
    let standard: Vec<String> = secrets.iter().map(|s| standard_signature(s, id, timestamp, body)).collect();
    let primary = secrets.first().copied().unwrap_or("");
    vec![
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", standard.join(" ")),
        ("x-entercrm-signature", entercrm_signature(primary, body)),
        ("x-tracecrm-event", event.to_string()),
        ("x-tracecrm-delivery", id.to_string()),
        ("x-tracecrm-timestamp", timestamp.to_string()),
        ("x-tracecrm-signature", tracecrm_signature(primary, timestamp, body)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_reference_vector() {
        // From the Standard Webhooks specification's example.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = r#"{"test": 2432232314}"#;
        let sig = standard_signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn seed_003s_verification_accepts_our_signature() {
        // crypto.createHmac('sha256', WEBHOOK_SECRET).update(body).digest('hex')
        let body = r#"{"event":"customer.created","timestamp":"2026-03-16T10:00:00Z","data":{}}"#;
        let sig = entercrm_signature("whsec_abc", body);
        assert_eq!(sig.len(), 64);
        assert_eq!(sig, hex::encode(hmac(b"whsec_abc", &[body.as_bytes()])));
    }

    #[test]
    fn rotation_lists_both_signatures() {
        let h = headers(&["whsec_bmV3", "whsec_b2xk"], "msg_1", "webhook.ping", 1, "{}");
        let sig = &h.iter().find(|(k, _)| *k == "webhook-signature").unwrap().1;
        assert_eq!(sig.split(' ').count(), 2);
    }
}

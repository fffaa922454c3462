//! Messages as they travel through the ingest log, and their validation from seed 003's
//! tracking bodies. Tracking routes keep or ignore fields they do not know (SDKs send their
//! own); only known fields are validated, and an error names the field (with the batch index).

use cairn_domain::{text, Email, FieldError};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One message in the log: everything the processor needs, already validated and normalised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestMessage {
    pub tenant_id: i64,
    /// `track`, `identify`, `page`, `screen`, `group` or `alias`.
    pub kind: String,
    pub message_id: String,
    /// The event name: the tracked name, `pageview` for pages, the message kind otherwise.
    pub name: String,
    pub customer_id: Option<i64>,
    pub email: Option<String>,
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    /// For `alias`: the id (a previous user id or an anonymous id) to merge into `user_id`.
    #[serde(default)]
    pub previous_id: Option<String>,
    /// Traits to merge into the profile (identify).
    pub traits: Option<Value>,
    /// Identify's top-level name and phone.
    pub profile_name: Option<String>,
    pub profile_phone: Option<String>,
    pub properties: Value,
    pub context: Value,
    /// Event time, corrected for client clock skew.
    pub timestamp: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
    pub amount: Option<f64>,
    pub currency: Option<String>,
}

/// Seed 003's standard events; the money-carrying ones have their `amount` and `currency`
/// checked.
pub const STANDARD_EVENTS: &[&str] =
    &["purchase", "pageview", "signup", "login", "add_to_cart", "checkout_start", "subscription", "refund"];

/// Events whose `amount` must be present (the scoring issue sums them).
const AMOUNT_REQUIRED: &[&str] = &["purchase", "refund"];
/// Events whose `amount`, when present, must be valid.
const AMOUNT_CHECKED: &[&str] = &["purchase", "refund", "subscription", "add_to_cart", "checkout_start"];

/// ISO 4217 active codes.
const CURRENCIES: &str = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP \
    BYN BZD CAD CDF CHF CLP CNY COP CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF \
    GTQ GYD HKD HNL HRK HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD \
    LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN \
    PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD \
    TWD TZS UAH UGX USD UYU UYW UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG ZWL";

pub fn is_currency(code: &str) -> bool {
    code.len() == 3 && CURRENCIES.split_whitespace().any(|c| c == code)
}

/// Largest accepted clock lead: events more than a day in the future are refused.
const MAX_FUTURE: i64 = 24 * 3600;

/// Reads fields of one JSON object, naming errors with a path prefix (`batch[3].`).
pub struct Fields<'a> {
    obj: &'a Map<String, Value>,
    prefix: String,
}

impl<'a> Fields<'a> {
    pub fn new(v: &'a Value, prefix: &str) -> Result<Fields<'a>, FieldError> {
        match v.as_object() {
            Some(obj) => Ok(Fields { obj, prefix: prefix.to_string() }),
            None => Err(FieldError::new(prefix.trim_end_matches('.'), "must be a JSON object")),
        }
    }

    pub fn path(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// An optional string field (null and "" count as absent), bounded in length.
    pub fn string(&self, name: &str, max: usize) -> Result<Option<String>, FieldError> {
        match self.obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => text::bounded(&self.path(name), s.trim(), max).map(Some),
            Some(_) => Err(FieldError::new(self.path(name), "must be a string")),
        }
    }

    /// An id that SDKs may send as a string or a number.
    pub fn id(&self, name: &str) -> Result<Option<String>, FieldError> {
        match self.obj.get(name) {
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            _ => self.string(name, 255),
        }
    }

    pub fn object(&self, name: &str) -> Result<Option<Value>, FieldError> {
        match self.obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v @ Value::Object(_)) => Ok(Some(v.clone())),
            Some(_) => Err(FieldError::new(self.path(name), "must be a JSON object")),
        }
    }

    pub fn integer(&self, name: &str) -> Result<Option<i64>, FieldError> {
        match self.obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => {
                n.as_i64().map(Some).ok_or_else(|| FieldError::new(self.path(name), "must be a whole number"))
            }
            Some(Value::String(s)) => {
                s.parse().map(Some).map_err(|_| FieldError::new(self.path(name), "must be a whole number"))
            }
            Some(_) => Err(FieldError::new(self.path(name), "must be a whole number")),
        }
    }

    pub fn time(&self, name: &str) -> Result<Option<DateTime<Utc>>, FieldError> {
        match self.string(name, 64)? {
            None => Ok(None),
            Some(s) => parse_time(&s).map(Some).ok_or_else(|| {
                FieldError::new(self.path(name), "must be an ISO 8601 time such as 2026-03-16T10:00:00Z")
            }),
        }
    }

    pub fn email(&self, name: &str) -> Result<Option<String>, FieldError> {
        match self.string(name, Email::MAX_LEN + 10)? {
            None => Ok(None),
            Some(s) => Email::parse(&self.path(name), &s).map(|e| Some(e.into_string())),
        }
    }
}

/// RFC 3339, or a bare date (`2025-06-01`, midnight UTC), as SDKs and the seed's examples send.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc())
}

/// When a message happened: the client's timestamp moved by the client's clock skew
/// (Segment's rule: `timestamp + (received_at − sent_at)`), or the receive time. Refused when
/// more than a day in the future.
pub fn event_time(
    f: &Fields<'_>,
    timestamp: Option<DateTime<Utc>>,
    sent_at: Option<DateTime<Utc>>,
    received_at: DateTime<Utc>,
) -> Result<DateTime<Utc>, FieldError> {
    let t = match (timestamp, sent_at) {
        (Some(t), Some(s)) => t + (received_at - s),
        (Some(t), None) => t,
        (None, _) => received_at,
    };
    if t > received_at + Duration::seconds(MAX_FUTURE) {
        return Err(FieldError::new(f.path("timestamp"), "is more than a day in the future"));
    }
    Ok(t)
}

/// Checks `amount` and `currency` of money-carrying standard events and extracts them.
pub fn money(name: &str, properties: &Value, f: &Fields<'_>) -> Result<(Option<f64>, Option<String>), FieldError> {
    let props = properties.as_object();
    let amount_path = f.path("properties.amount");
    let amount = match props.and_then(|p| p.get("amount")) {
        None | Some(Value::Null) if AMOUNT_REQUIRED.contains(&name) => {
            return Err(FieldError::new(amount_path, format!("is required for {name} events")));
        }
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(a) if a >= 0.0 && a.is_finite() => Some(a),
            _ if AMOUNT_CHECKED.contains(&name) => return Err(FieldError::new(amount_path, "must be a number ≥ 0")),
            other => other,
        },
        Some(_) if AMOUNT_CHECKED.contains(&name) => return Err(FieldError::new(amount_path, "must be a number ≥ 0")),
        Some(_) => None,
    };
    let currency = match props.and_then(|p| p.get("currency")) {
        None | Some(Value::Null) => None,
        Some(Value::String(c)) if is_currency(&c.to_ascii_uppercase()) => Some(c.to_ascii_uppercase()),
        Some(_) if AMOUNT_CHECKED.contains(&name) => {
            return Err(FieldError::new(
                f.path("properties.currency"),
                "must be an ISO 4217 currency code such as EUR",
            ));
        }
        Some(_) => None,
    };
    Ok((amount, currency))
}

/// A fresh message id for clients that send none.
pub fn new_message_id() -> String {
    format!("cairn-{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>())
}

/// What a message must carry to find its customer.
pub fn require_identity(m: &IngestMessage, f: &Fields<'_>, first: &str) -> Result<(), FieldError> {
    if m.customer_id.is_none() && m.email.is_none() && m.user_id.is_none() && m.anonymous_id.is_none() {
        return Err(FieldError::new(
            f.path(first),
            "say who this is about: customer_email, customer_id, user_id or anonymous_id",
        ));
    }
    Ok(())
}

/// Parses one message of Segment's HTTP tracking API (`/v1/track`, `/v1/identify`, …, or a
/// batch item), with Segment's field names. `defaults` is a batch's shared `context`.
pub fn parse_segment(
    kind: &str,
    v: &Value,
    prefix: &str,
    tenant_id: i64,
    received_at: DateTime<Utc>,
    batch_context: Option<&Value>,
) -> Result<IngestMessage, FieldError> {
    let f = Fields::new(v, prefix)?;
    let timestamp = f.time("timestamp")?.or(f.time("originalTimestamp")?);
    let sent_at = f.time("sentAt")?;
    let timestamp = event_time(&f, timestamp, sent_at, received_at)?;
    let mut properties = f.object("properties")?.unwrap_or_else(|| Value::Object(Map::new()));
    let mut context = f.object("context")?.unwrap_or_else(|| Value::Object(Map::new()));
    if let (Some(Value::Object(shared)), Value::Object(own)) = (batch_context, &mut context) {
        for (k, v) in shared {
            own.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    let message_id = f.string("messageId", 200)?.unwrap_or_else(new_message_id);
    let user_id = f.id("userId")?;
    let anonymous_id = f.id("anonymousId")?;
    let traits_in = f.object("traits")?;
    // `properties` is an object: `Fields::object` returns only objects, the default is one.
    let props = properties.as_object_mut().expect("properties is an object");
    let mut email = None;
    let (name, traits, profile_name, profile_phone, previous_id) = match kind {
        "track" => {
            let name = f.string("event", 200)?.ok_or_else(|| FieldError::new(f.path("event"), "is required"))?;
            (name, None, None, None, None)
        }
        "page" | "screen" => {
            for key in ["name", "category"] {
                if let Some(v) = f.string(key, 500)? {
                    props.insert(key.to_string(), Value::String(v));
                }
            }
            let name = if kind == "page" { "pageview" } else { "screen" };
            (name.to_string(), None, None, None, None)
        }
        "identify" => {
            let traits = traits_in.unwrap_or_else(|| Value::Object(Map::new()));
            let t = Fields::new(&traits, &f.path("traits."))?;
            email = t.email("email")?;
            let name = t.string("name", 200)?;
            let phone = t.string("phone", 40)?.map(|p| text::phone(&t.path("phone"), &p)).transpose()?;
            ("identify".to_string(), Some(traits), name, phone, None)
        }
        "group" => {
            let group = f.id("groupId")?.ok_or_else(|| FieldError::new(f.path("groupId"), "is required"))?;
            props.insert("group_id".into(), Value::String(group));
            if let Some(t) = traits_in {
                props.insert("traits".into(), t);
            }
            ("group".to_string(), None, None, None, None)
        }
        "alias" => {
            let previous = f.id("previousId")?.ok_or_else(|| FieldError::new(f.path("previousId"), "is required"))?;
            if user_id.is_none() {
                return Err(FieldError::new(f.path("userId"), "is required"));
            }
            ("alias".to_string(), None, None, None, Some(previous))
        }
        other => return Err(FieldError::new(f.path("type"), format!("unknown message type {other:?}"))),
    };
    let (amount, currency) = money(&name, &properties, &f)?;
    if user_id.is_none() && anonymous_id.is_none() {
        return Err(FieldError::new(f.path("userId"), "either userId or anonymousId is required"));
    }
    Ok(IngestMessage {
        tenant_id,
        kind: kind.to_string(),
        message_id,
        name,
        customer_id: None,
        email,
        user_id,
        anonymous_id,
        previous_id,
        traits,
        profile_name,
        profile_phone,
        properties,
        context,
        timestamp,
        sent_at,
        received_at,
        amount,
        currency,
    })
}

/// Parses one seed 003 message (`/v1/track/event`, `/identify`, `/page`, or a batch item)
/// of the given kind.
pub fn parse_seed(
    kind: &str,
    v: &Value,
    prefix: &str,
    tenant_id: i64,
    received_at: DateTime<Utc>,
) -> Result<IngestMessage, FieldError> {
    let f = Fields::new(v, prefix)?;
    let timestamp = f.time("timestamp")?;
    let sent_at = f.time("sent_at")?;
    let timestamp = event_time(&f, timestamp, sent_at, received_at)?;
    let mut properties = f.object("properties")?.unwrap_or_else(|| Value::Object(Map::new()));
    let context = f.object("context")?.unwrap_or_else(|| Value::Object(Map::new()));
    let message_id = f.string("message_id", 200)?.unwrap_or_else(new_message_id);
    let email = match kind {
        "identify" => f.email("email")?.or(f.email("customer_email")?),
        _ => f.email("customer_email")?.or(f.email("email")?),
    };
    let (name, traits, profile_name, profile_phone) = match kind {
        "track" => {
            let name = f.string("event", 200)?.ok_or_else(|| FieldError::new(f.path("event"), "is required"))?;
            (name, None, None, None)
        }
        "page" => {
            // `properties` is an object: `Fields::object` returns only objects, the default is one.
            let props = properties.as_object_mut().expect("properties is an object");
            for key in ["url", "title", "referrer", "path"] {
                if let Some(v) = f.string(key, 2048)? {
                    props.insert(key.to_string(), Value::String(v));
                }
            }
            ("pageview".to_string(), None, None, None)
        }
        "identify" => {
            let traits = f.object("traits")?.unwrap_or_else(|| Value::Object(Map::new()));
            let name = f.string("name", 200)?;
            let phone = f.string("phone", 40)?.map(|p| text::phone(&f.path("phone"), &p)).transpose()?;
            ("identify".to_string(), Some(traits), name, phone)
        }
        other => return Err(FieldError::new(f.path("type"), format!("unknown message type {other:?}"))),
    };
    let (amount, currency) = money(&name, &properties, &f)?;
    let m = IngestMessage {
        tenant_id,
        kind: kind.to_string(),
        message_id,
        name,
        customer_id: f.integer("customer_id")?,
        email,
        user_id: f.id("user_id")?,
        anonymous_id: f.id("anonymous_id")?,
        previous_id: None,
        traits,
        profile_name,
        profile_phone,
        properties,
        context,
        timestamp,
        sent_at,
        received_at,
        amount,
        currency,
    };
    let first = match kind {
        "identify" => "email",
        _ => "customer_email",
    };
    require_identity(&m, &f, first)?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        "2026-03-16T10:00:00Z".parse().unwrap()
    }

    fn err(kind: &str, v: Value) -> String {
        parse_seed(kind, &v, "", 1, now()).unwrap_err().field
    }

    #[test]
    fn seed_003s_purchase_parses_with_its_money() {
        let v = json!({
            "customer_email": "Marko@Example.com", "event": "purchase",
            "properties": {"amount": 299.99, "currency": "EUR", "order_id": "ord_0001",
                           "items": [{"id": "prod_123", "name": "Enterprise Plan", "quantity": 1, "price": 299.99}]}
        });
        let m = parse_seed("track", &v, "", 7, now()).unwrap();
        assert_eq!(m.email.as_deref(), Some("marko@example.com"));
        assert_eq!((m.amount, m.currency.as_deref()), (Some(299.99), Some("EUR")));
        assert_eq!(m.name, "purchase");
        assert_eq!(m.timestamp, now(), "no timestamp: the receive time");
        assert!(m.message_id.starts_with("cairn-"));
    }

    #[test]
    fn bad_fields_are_named() {
        assert_eq!(err("track", json!({"customer_email": "x@y.co"})), "event");
        assert_eq!(err("track", json!({"event": "x"})), "customer_email");
        assert_eq!(err("track", json!({"customer_email": "nope", "event": "x"})), "customer_email");
        assert_eq!(
            err("track", json!({"user_id": "u", "event": "purchase", "properties": {"amount": -1}})),
            "properties.amount"
        );
        assert_eq!(
            err("track", json!({"user_id": "u", "event": "purchase", "properties": {"amount": "9"}})),
            "properties.amount"
        );
        assert_eq!(err("track", json!({"user_id": "u", "event": "purchase", "properties": {}})), "properties.amount");
        assert_eq!(
            err("track", json!({"user_id": "u", "event": "refund", "properties": {"amount": 1, "currency": "EURO"}})),
            "properties.currency"
        );
        assert_eq!(err("track", json!({"user_id": "u", "event": 5})), "event");
        assert_eq!(err("track", json!({"user_id": "u", "event": "x", "properties": [1]})), "properties");
        assert_eq!(
            err("track", json!({"user_id": "u", "event": "x", "timestamp": "2026-03-18T10:00:00Z"})),
            "timestamp"
        );
        assert_eq!(err("identify", json!({"email": "a@b.co", "phone": "call me"})), "phone");
        let e = parse_seed("track", &json!({"event": "x"}), "batch[3].", 1, now()).unwrap_err();
        assert_eq!(e.field, "batch[3].customer_email");
    }

    #[test]
    fn custom_events_carry_anything_and_clock_skew_is_corrected() {
        let v = json!({"anonymous_id": "v1", "event": "played", "properties": {"amount": "lots"},
                       "timestamp": "2026-03-16T09:00:00Z", "sent_at": "2026-03-16T09:59:00Z", "extra": true});
        let m = parse_seed("track", &v, "", 1, now()).unwrap();
        assert_eq!(m.amount, None);
        assert_eq!(
            m.timestamp,
            "2026-03-16T09:01:00Z".parse::<DateTime<Utc>>().unwrap(),
            "the client clock was a minute slow"
        );
    }

    #[test]
    fn segment_messages_map_onto_the_same_model() {
        let v = json!({"type": "identify", "userId": 42, "anonymousId": "a1", "messageId": "m1",
                       "traits": {"email": "Ana@X.io", "name": "Ana", "plan": "pro"},
                       "context": {"library": {"name": "analytics-python"}}, "integrations": {}, "_metadata": {}});
        let m = parse_segment("identify", &v, "", 1, now(), Some(&json!({"ip": "203.0.113.1"}))).unwrap();
        assert_eq!((m.user_id.as_deref(), m.email.as_deref()), (Some("42"), Some("ana@x.io")));
        assert_eq!(m.profile_name.as_deref(), Some("Ana"));
        assert_eq!(m.context["ip"], "203.0.113.1", "a batch's context fills in");
        let a = parse_segment("alias", &json!({"previousId": "a1", "userId": "u1"}), "", 1, now(), None).unwrap();
        assert_eq!(a.previous_id.as_deref(), Some("a1"));
        assert_eq!(
            parse_segment("track", &json!({"event": "x"}), "batch[0].", 1, now(), None).unwrap_err().field,
            "batch[0].userId"
        );
        assert_eq!(parse_segment("group", &json!({"userId": "u"}), "", 1, now(), None).unwrap_err().field, "groupId");
        let p = parse_segment(
            "page",
            &json!({"anonymousId": "a", "name": "Pricing", "properties": {"url": "https://x"}}),
            "",
            1,
            now(),
            None,
        )
        .unwrap();
        assert_eq!(p.properties, json!({"url": "https://x", "name": "Pricing"}));
    }

    #[test]
    fn pages_and_identifies_normalise_their_fields() {
        let p = parse_seed("page", &json!({"anonymous_id": "v1", "url": "https://x.io/a", "title": "A"}), "", 1, now())
            .unwrap();
        assert_eq!(p.name, "pageview");
        assert_eq!(p.properties, json!({"url": "https://x.io/a", "title": "A"}));
        let i = parse_seed(
            "identify",
            &json!({"email": "Ana@X.io", "name": "Ana Kovač", "phone": "+385 92 123 4567",
                                                 "traits": {"created_at": "2025-06-01"}, "anonymous_id": "v1"}),
            "",
            1,
            now(),
        )
        .unwrap();
        assert_eq!(i.email.as_deref(), Some("ana@x.io"));
        assert_eq!(i.profile_phone.as_deref(), Some("+385921234567"));
        assert_eq!(i.traits, Some(json!({"created_at": "2025-06-01"})));
    }
}

//! Reading CRM request bodies field by field: each field absent (leave it), `null` (clear it) or
//! a value (check it and set it), every error naming its field, unknown fields refused. Other
//! seeds' names for a field (`price` for `value`) are renamed first.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Map, Value};

use crate::{Result, ServiceError};

pub struct Body {
    map: Map<String, Value>,
}

/// `None`: absent; `Some(None)`: null or empty; `Some(Some(v))`: a value.
pub type Change<T> = Option<Option<T>>;

impl Body {
    pub fn new(v: Value) -> Result<Body> {
        match v {
            Value::Object(map) => Ok(Body { map }),
            _ => Err(ServiceError::invalid("body", "must be a JSON object")),
        }
    }

    /// Renames another seed's word for a field (the canonical name wins when both are sent).
    pub fn alias(&mut self, from: &str, to: &str) -> &mut Self {
        if let Some(v) = self.map.remove(from) {
            self.map.entry(to.to_string()).or_insert(v);
        }
        self
    }

    pub fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    pub fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key)
    }

    pub fn text(&mut self, key: &str, max: usize) -> Result<Change<String>> {
        Ok(match self.take(key) {
            None => None,
            Some(Value::Null) => Some(None),
            Some(Value::String(s)) if s.trim().is_empty() => Some(None),
            Some(Value::String(s)) => Some(Some(cairn_domain::text::bounded(key, s.trim(), max)?)),
            Some(Value::Number(n)) => Some(Some(n.to_string())),
            Some(_) => return Err(ServiceError::invalid(key, "must be a string")),
        })
    }

    /// A text that, once given, must not be empty.
    pub fn required_text(&mut self, key: &str, max: usize) -> Result<Option<String>> {
        match self.text(key, max)? {
            None => Ok(None),
            Some(None) => Err(ServiceError::invalid(key, "must not be empty")),
            Some(Some(s)) => Ok(Some(s)),
        }
    }

    /// One of `allowed` (case-insensitive; stored lower-case).
    pub fn choice(&mut self, key: &str, allowed: &[&str]) -> Result<Option<String>> {
        match self.text(key, 50)? {
            None => Ok(None),
            Some(None) => Err(ServiceError::invalid(key, format!("must be one of {}", allowed.join(", ")))),
            Some(Some(s)) => {
                let s = s.to_lowercase();
                if allowed.contains(&s.as_str()) {
                    Ok(Some(s))
                } else {
                    Err(ServiceError::invalid(key, format!("must be one of {}", allowed.join(", "))))
                }
            }
        }
    }

    pub fn int(&mut self, key: &str, min: i64, max: i64) -> Result<Change<i64>> {
        Ok(match self.take(key) {
            None => None,
            Some(Value::Null) => Some(None),
            Some(v) => {
                let n = match &v {
                    Value::Number(n) => {
                        n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
                    }
                    Value::String(s) => s.trim().parse().ok(),
                    _ => None,
                };
                match n {
                    Some(n) if (min..=max).contains(&n) => Some(Some(n)),
                    _ => return Err(ServiceError::invalid(key, format!("must be an integer from {min} to {max}"))),
                }
            }
        })
    }

    pub fn num(&mut self, key: &str) -> Result<Change<f64>> {
        Ok(match self.take(key) {
            None => None,
            Some(Value::Null) => Some(None),
            Some(v) => {
                let n = match &v {
                    Value::Number(n) => n.as_f64(),
                    Value::String(s) => s.trim().parse().ok(),
                    _ => None,
                };
                match n {
                    Some(n) if n.is_finite() && n.abs() < 1e15 => Some(Some(n)),
                    _ => return Err(ServiceError::invalid(key, "must be a number")),
                }
            }
        })
    }

    pub fn flag(&mut self, key: &str) -> Result<Option<bool>> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(_) => Err(ServiceError::invalid(key, "must be true or false")),
        }
    }

    /// An RFC 3339 time or a `YYYY-MM-DD` date (midnight UTC).
    pub fn time(&mut self, key: &str) -> Result<Change<DateTime<Utc>>> {
        match self.text(key, 64)? {
            None => Ok(None),
            Some(None) => Ok(Some(None)),
            Some(Some(s)) => Ok(Some(Some(parse_time(key, &s)?))),
        }
    }

    /// A `YYYY-MM-DD` date (a time is cut to its date).
    pub fn date(&mut self, key: &str) -> Result<Change<String>> {
        match self.text(key, 64)? {
            None => Ok(None),
            Some(None) => Ok(Some(None)),
            Some(Some(s)) => Ok(Some(Some(parse_time(key, &s)?.date_naive().to_string()))),
        }
    }

    pub fn object(&mut self, key: &str) -> Result<Option<Value>> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v @ Value::Object(_)) => Ok(Some(v)),
            Some(_) => Err(ServiceError::invalid(key, "must be a JSON object")),
        }
    }

    pub fn strings(&mut self, key: &str, max_items: usize, max_len: usize) -> Result<Option<Vec<String>>> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) if items.len() <= max_items => {
                let mut out = Vec::with_capacity(items.len());
                for (i, v) in items.into_iter().enumerate() {
                    let field = format!("{key}[{i}]");
                    match v {
                        Value::String(s) if !s.trim().is_empty() => {
                            out.push(cairn_domain::text::bounded(&field, s.trim(), max_len)?)
                        }
                        _ => return Err(ServiceError::invalid(&field, "must be a non-empty string")),
                    }
                }
                Ok(Some(out))
            }
            Some(_) => Err(ServiceError::invalid(key, format!("must be a list of at most {max_items} strings"))),
        }
    }

    /// Refuses whatever was not read.
    pub fn finish(self) -> Result<()> {
        match self.map.keys().next() {
            None => Ok(()),
            Some(k) => Err(ServiceError::invalid(k, "unknown field")),
        }
    }

    /// Ignores the rest (seed payloads that carry extra fields).
    pub fn ignore_rest(self) {}
}

pub fn parse_time(field: &str, s: &str) -> Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    Err(ServiceError::invalid(field, "must be an ISO 8601 date (2026-03-15) or time (2026-03-15T14:00:00Z)"))
}

/// Sets `target` from a change.
pub fn set<T>(target: &mut Option<T>, change: Change<T>) {
    if let Some(v) = change {
        *target = v;
    }
}

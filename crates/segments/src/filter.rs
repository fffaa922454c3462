//! The segment filter language (docs/segments.md): JSON in, a validated tree out, every error
//! naming the path of the node at fault (`filters.all[2].value`).
//!
//! General form: `all` / `any` / `not` over conditions on profile fields and traits, scores,
//! behaviour (events), membership of other segments, and consent. Seed 003's flat keys
//! (`clv_total_min`, `last_purchase_days_max`, `rfm_segment`, `country`, `created_after`, …) are
//! shorthand: an object of them is the `all` of the conditions they stand for.

use cairn_domain::FieldError;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Map, Value};

/// Deeper or bigger filters are refused: evaluation cost grows with both.
pub const MAX_DEPTH: usize = 12;
pub const MAX_CONDITIONS: usize = 200;

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    All(Vec<Filter>),
    Any(Vec<Filter>),
    Not(Box<Filter>),
    Field(FieldCondition),
    Event(EventCondition),
    EventTime(EventTimeCondition),
    /// Member of another segment.
    Segment(i64),
    Consent(Channel),
}

/// What a field condition reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Profile(ProfileField),
    /// A custom trait, by key (`traits.plan`).
    Trait(String),
    Score(ScoreField),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileField {
    Email,
    Name,
    Phone,
    City,
    Country,
    UserId,
    CreatedAt,
    FirstSeenAt,
    LastSeenAt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreField {
    RfmRecency,
    RfmFrequency,
    RfmMonetary,
    RfmScore,
    RfmSegment,
    ClvTotal,
    ClvOrderCount,
    ClvAverageOrder,
    ClvPredicted,
    PAlive,
    /// Days since the last purchase (relative to now: flips as days pass).
    LastPurchaseDays,
    LastPurchaseAt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Number,
    Date,
    /// A trait or event property: whatever JSON the value is.
    Any,
}

impl Field {
    fn parse(name: &str) -> Option<Field> {
        if let Some(key) = name.strip_prefix("traits.") {
            // Keys are quoted into SQL JSON paths: quotes, backslashes and control characters
            // are refused rather than escaped.
            let plain = !key.chars().any(|c| matches!(c, '"' | '\\' | '\'') || c.is_control());
            return (!key.is_empty() && key.len() <= 100 && plain).then(|| Field::Trait(key.to_string()));
        }
        use ProfileField as P;
        use ScoreField as S;
        Some(match name {
            "email" => Field::Profile(P::Email),
            "name" => Field::Profile(P::Name),
            "phone" => Field::Profile(P::Phone),
            "city" => Field::Profile(P::City),
            "country" => Field::Profile(P::Country),
            "user_id" => Field::Profile(P::UserId),
            "created_at" => Field::Profile(P::CreatedAt),
            "first_seen_at" => Field::Profile(P::FirstSeenAt),
            "last_seen_at" => Field::Profile(P::LastSeenAt),
            "rfm_recency" => Field::Score(S::RfmRecency),
            "rfm_frequency" => Field::Score(S::RfmFrequency),
            "rfm_monetary" => Field::Score(S::RfmMonetary),
            "rfm_score" => Field::Score(S::RfmScore),
            "rfm_segment" => Field::Score(S::RfmSegment),
            "clv_total" => Field::Score(S::ClvTotal),
            "clv_order_count" | "order_count" => Field::Score(S::ClvOrderCount),
            "clv_average_order" => Field::Score(S::ClvAverageOrder),
            "clv_predicted" => Field::Score(S::ClvPredicted),
            "p_alive" => Field::Score(S::PAlive),
            "last_purchase_days" => Field::Score(S::LastPurchaseDays),
            "last_purchase_at" => Field::Score(S::LastPurchaseAt),
            _ => return None,
        })
    }

    fn kind(&self) -> Kind {
        use ProfileField as P;
        use ScoreField as S;
        match self {
            Field::Trait(_) => Kind::Any,
            Field::Profile(P::CreatedAt | P::FirstSeenAt | P::LastSeenAt) => Kind::Date,
            Field::Profile(_) => Kind::Text,
            Field::Score(S::RfmSegment) => Kind::Text,
            Field::Score(S::LastPurchaseAt) => Kind::Date,
            Field::Score(_) => Kind::Number,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Neq,
    In,
    Contains,
    StartsWith,
    Exists,
    Gt,
    Gte,
    Lt,
    Lte,
    Between,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "eq" => Op::Eq,
            "neq" => Op::Neq,
            "in" => Op::In,
            "contains" => Op::Contains,
            "starts_with" => Op::StartsWith,
            "exists" => Op::Exists,
            "gt" => Op::Gt,
            "gte" => Op::Gte,
            "lt" => Op::Lt,
            "lte" => Op::Lte,
            "between" => Op::Between,
            _ => return None,
        })
    }
}

/// A value a condition compares with, checked against the field's kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Text(String),
    Number(f64),
    Bool(bool),
    Date(DateTime<Utc>),
    List(Vec<Operand>),
    Range(Box<Operand>, Box<Operand>),
    /// `exists`: whether the field must be present (true) or absent (false).
    Present(bool),
}

#[derive(Debug, Clone, PartialEq)]
pub struct FieldCondition {
    pub field: Field,
    pub op: Op,
    pub value: Operand,
}

/// A condition on one property of an event (`where`).
#[derive(Debug, Clone, PartialEq)]
pub struct PropertyCondition {
    pub property: String,
    pub op: Op,
    pub value: Operand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    AtLeast(u64),
    AtMost(u64),
    Exactly(u64),
}

/// Which events count: all of them, those of the last D days, or those between two instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Ever,
    LastDays(u32),
    Between(DateTime<Utc>, DateTime<Utc>),
}

/// Performed `event` a number of times within a window, counting only events whose properties
/// satisfy `conditions`. "Has not performed X in the last D days" is `Exactly(0)`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventCondition {
    pub event: String,
    pub count: Count,
    pub window: Window,
    pub conditions: Vec<PropertyCondition>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occurrence {
    First,
    Last,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Before(DateTime<Utc>),
    After(DateTime<Utc>),
    WithinDays(u32),
}

/// The first or last time `event` happened is before / after an instant, or within the last D
/// days. A customer who never performed it does not match.
#[derive(Debug, Clone, PartialEq)]
pub struct EventTimeCondition {
    pub event: String,
    pub occurrence: Occurrence,
    pub when: When,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Email,
    Sms,
}

/// Seed 003's flat keys: `<key>` → (field, operator).
fn shorthand(key: &str) -> Option<(Field, Op)> {
    let (base, op) = if let Some(b) = key.strip_suffix("_min") {
        (b, Op::Gte)
    } else if let Some(b) = key.strip_suffix("_max") {
        (b, Op::Lte)
    } else if let Some(b) = key.strip_suffix("_after") {
        (b, Op::Gt)
    } else if let Some(b) = key.strip_suffix("_before") {
        (b, Op::Lt)
    } else {
        (key, Op::Eq)
    };
    let field = match (base, op) {
        ("created" | "first_seen" | "last_seen" | "last_purchase", Op::Gt | Op::Lt) => {
            Field::parse(&format!("{base}_at"))?
        }
        (_, Op::Gt | Op::Lt) => return None,
        (b, _) => Field::parse(b)?,
    };
    match (field.kind(), op) {
        (Kind::Number, Op::Gte | Op::Lte) | (Kind::Text, Op::Eq) | (Kind::Date, Op::Gt | Op::Lt) => Some((field, op)),
        _ => None,
    }
}

struct Parser {
    conditions: usize,
}

/// Parses and validates a filter. `path` names the root in errors (`filters`).
pub fn parse(value: &Value, path: &str) -> Result<Filter, FieldError> {
    Parser { conditions: 0 }.node(value, path, 0)
}

fn err(path: &str, message: impl Into<String>) -> FieldError {
    FieldError::new(path, message)
}

const NODE_KEYS: &str = "all, any, not, field, event, not_performed, segment, consent, or seed 003's shorthand keys \
                         (clv_total_min, last_purchase_days_max, rfm_segment, country, created_after, …)";

impl Parser {
    fn node(&mut self, v: &Value, path: &str, depth: usize) -> Result<Filter, FieldError> {
        if depth > MAX_DEPTH {
            return Err(err(path, format!("is nested more than {MAX_DEPTH} levels deep")));
        }
        let Value::Object(o) = v else { return Err(err(path, "must be an object")) };
        if o.is_empty() {
            return Err(err(path, format!("must hold a condition: {NODE_KEYS}")));
        }
        let tree_key = ["all", "any", "not", "field", "event", "not_performed", "segment", "consent"]
            .into_iter()
            .find(|k| o.contains_key(*k));
        match tree_key {
            Some("all") | Some("any") | Some("not") if o.len() > 1 => {
                let extra = o.keys().find(|k| !matches!(k.as_str(), "all" | "any" | "not")).or(o.keys().nth(1));
                Err(err(
                    &format!("{path}.{}", extra.map(String::as_str).unwrap_or("")),
                    "is not allowed beside all/any/not",
                ))
            }
            Some(k @ ("all" | "any")) => {
                let p = format!("{path}.{k}");
                let Value::Array(items) = &o[k] else { return Err(err(&p, "must be an array of conditions")) };
                if items.is_empty() {
                    return Err(err(&p, "must hold at least one condition"));
                }
                let children = items
                    .iter()
                    .enumerate()
                    .map(|(i, c)| self.node(c, &format!("{p}[{i}]"), depth + 1))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(if k == "all" { Filter::All(children) } else { Filter::Any(children) })
            }
            Some("not") => Ok(Filter::Not(Box::new(self.node(&o["not"], &format!("{path}.not"), depth + 1)?))),
            Some("field") => self.count(path).and_then(|_| field_condition(o, path)).map(Filter::Field),
            Some("event") if o.contains_key("first") || o.contains_key("last") => {
                self.count(path)?;
                event_time(o, path).map(Filter::EventTime)
            }
            Some("event") | Some("not_performed") => self.count(path).and_then(|_| event(o, path)).map(Filter::Event),
            Some("segment") => {
                self.count(path)?;
                only_keys(o, path, &["segment"])?;
                match o["segment"].as_i64() {
                    Some(id) if id > 0 => Ok(Filter::Segment(id)),
                    _ => Err(err(&format!("{path}.segment"), "must be a segment id")),
                }
            }
            Some("consent") => {
                self.count(path)?;
                only_keys(o, path, &["consent"])?;
                match o["consent"].as_str() {
                    Some("email") => Ok(Filter::Consent(Channel::Email)),
                    Some("sms") => Ok(Filter::Consent(Channel::Sms)),
                    _ => Err(err(&format!("{path}.consent"), "must be \"email\" or \"sms\"")),
                }
            }
            _ => {
                // Seed 003's flat keys, each a condition; together their `all`.
                let mut all = Vec::with_capacity(o.len());
                for (k, v) in o {
                    let p = format!("{path}.{k}");
                    let Some((field, op)) = shorthand(k) else {
                        return Err(err(&p, format!("is not a condition; expected {NODE_KEYS}")));
                    };
                    self.count(&p)?;
                    let op = if op == Op::Eq && v.is_array() { Op::In } else { op };
                    let value = operand(&field, op, Some(v), &p)?;
                    all.push(Filter::Field(FieldCondition { field, op, value }));
                }
                Ok(if all.len() == 1 { all.pop().expect("one") } else { Filter::All(all) })
            }
        }
    }

    fn count(&mut self, path: &str) -> Result<(), FieldError> {
        self.conditions += 1;
        if self.conditions > MAX_CONDITIONS {
            return Err(err(path, format!("a filter holds at most {MAX_CONDITIONS} conditions")));
        }
        Ok(())
    }
}

fn only_keys(o: &Map<String, Value>, path: &str, allowed: &[&str]) -> Result<(), FieldError> {
    match o.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(err(&format!("{path}.{k}"), format!("is not allowed here (expected {})", allowed.join(", ")))),
        None => Ok(()),
    }
}

fn field_condition(o: &Map<String, Value>, path: &str) -> Result<FieldCondition, FieldError> {
    only_keys(o, path, &["field", "op", "value"])?;
    let fp = format!("{path}.field");
    let name = o["field"].as_str().ok_or_else(|| err(&fp, "must be a field name"))?;
    let field = Field::parse(name).ok_or_else(|| {
        err(&fp, "is not a known field (profile fields, traits.<key>, rfm_*, clv_*, p_alive, last_purchase_days)")
    })?;
    let op_path = format!("{path}.op");
    let op = o.get("op").and_then(Value::as_str).and_then(Op::parse).ok_or_else(|| {
        err(&op_path, "must be one of eq, neq, in, contains, starts_with, exists, gt, gte, lt, lte, between")
    })?;
    let value = operand(&field, op, o.get("value"), &format!("{path}.value"))?;
    Ok(FieldCondition { field, op, value })
}

/// Checks a value against an operator and the field's kind.
fn operand(field: &Field, op: Op, v: Option<&Value>, path: &str) -> Result<Operand, FieldError> {
    typed(field.kind(), op, v, path, field == &Field::Score(ScoreField::RfmSegment))
}

fn typed(kind: Kind, op: Op, v: Option<&Value>, path: &str, segment_name: bool) -> Result<Operand, FieldError> {
    if op == Op::Exists {
        return match v {
            None | Some(Value::Bool(true)) => Ok(Operand::Present(true)),
            Some(Value::Bool(false)) => Ok(Operand::Present(false)),
            Some(_) => Err(err(path, "must be true or false (or absent) with exists")),
        };
    }
    let Some(v) = v else { return Err(err(path, "is required")) };
    let scalar = |v: &Value, path: &str| -> Result<Operand, FieldError> { scalar(kind, op, v, path, segment_name) };
    match op {
        Op::In => {
            let Value::Array(items) = v else { return Err(err(path, "must be an array with in")) };
            if items.is_empty() || items.len() > 1000 {
                return Err(err(path, "must hold 1 to 1000 values"));
            }
            let list: Result<Vec<_>, _> =
                items.iter().enumerate().map(|(i, x)| scalar(x, &format!("{path}[{i}]"))).collect();
            list.map(Operand::List)
        }
        Op::Between => match v {
            Value::Array(pair) if pair.len() == 2 => {
                let lo = scalar(&pair[0], &format!("{path}[0]"))?;
                let hi = scalar(&pair[1], &format!("{path}[1]"))?;
                Ok(Operand::Range(Box::new(lo), Box::new(hi)))
            }
            _ => Err(err(path, "must be a [low, high] pair with between")),
        },
        Op::Contains | Op::StartsWith => match v {
            Value::String(s) if kind != Kind::Number && kind != Kind::Date && !s.is_empty() => {
                Ok(Operand::Text(s.clone()))
            }
            _ => Err(err(path, "must be non-empty text, on a text field")),
        },
        _ => scalar(v, path),
    }
}

fn scalar(kind: Kind, op: Op, v: &Value, path: &str, segment_name: bool) -> Result<Operand, FieldError> {
    if v.as_str().is_some_and(|s| s.contains('\0')) {
        return Err(err(path, "must not contain a NUL character"));
    }
    if v.as_f64().is_some_and(|n| !n.is_finite()) {
        return Err(err(path, "must be a finite number"));
    }
    let ordered = matches!(op, Op::Gt | Op::Gte | Op::Lt | Op::Lte | Op::Between);
    match (kind, v) {
        (Kind::Number | Kind::Any, Value::Number(n)) => Ok(Operand::Number(n.as_f64().unwrap_or(f64::NAN))),
        (Kind::Date, Value::String(s)) | (Kind::Any, Value::String(s)) if kind == Kind::Date || ordered => {
            match date(s) {
                Some(t) => Ok(Operand::Date(t)),
                None if kind == Kind::Any => Ok(Operand::Text(s.clone())),
                None => Err(err(path, "must be a date (2026-03-16) or an RFC 3339 time (2026-03-16T10:00:00Z)")),
            }
        }
        (Kind::Text, Value::String(s)) if segment_name && !cairn_scoring::rfm::SEGMENTS.contains(&s.as_str()) => {
            Err(err(path, "must be Champions, Loyal Customers, At Risk or Lost"))
        }
        (Kind::Text | Kind::Any, Value::String(s)) if !ordered || kind == Kind::Any => Ok(Operand::Text(s.clone())),
        (Kind::Any, Value::Bool(b)) if !ordered => Ok(Operand::Bool(*b)),
        (Kind::Number, _) => Err(err(path, "must be a number")),
        (Kind::Date, _) => Err(err(path, "must be a date (2026-03-16) or an RFC 3339 time (2026-03-16T10:00:00Z)")),
        (Kind::Text, Value::String(_)) => {
            Err(err(path, "text fields compare with eq, neq, in, contains, starts_with, exists"))
        }
        (Kind::Text, _) => Err(err(path, "must be text")),
        (Kind::Any, _) => Err(err(path, "must be a number, text, a date or true/false")),
    }
}

fn date(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)).ok().or_else(|| {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
    })
}

fn event_name(v: &Value, path: &str) -> Result<String, FieldError> {
    match v.as_str() {
        Some(s) if !s.trim().is_empty() && s.len() <= 200 => Ok(s.to_string()),
        _ => Err(err(path, "must be an event name")),
    }
}

fn days(v: &Value, path: &str) -> Result<u32, FieldError> {
    match v.as_u64() {
        Some(d) if (1..=36_500).contains(&d) => Ok(d as u32),
        _ => Err(err(path, "must be a whole number of days, 1 to 36500")),
    }
}

fn window(o: &Map<String, Value>, path: &str) -> Result<Window, FieldError> {
    match (o.get("within_days"), o.get("between")) {
        (Some(_), Some(_)) => Err(err(&format!("{path}.between"), "cannot be given with within_days")),
        (Some(d), None) => Ok(Window::LastDays(days(d, &format!("{path}.within_days"))?)),
        (None, Some(Value::Array(pair))) if pair.len() == 2 => {
            let at = |i: usize| {
                pair[i]
                    .as_str()
                    .and_then(date)
                    .ok_or_else(|| err(&format!("{path}.between[{i}]"), "must be a date or an RFC 3339 time"))
            };
            let (from, to) = (at(0)?, at(1)?);
            if from >= to {
                return Err(err(&format!("{path}.between"), "must go from an earlier to a later time"));
            }
            Ok(Window::Between(from, to))
        }
        (None, Some(_)) => Err(err(&format!("{path}.between"), "must be a [from, to] pair of dates")),
        (None, None) => Ok(Window::Ever),
    }
}

fn event(o: &Map<String, Value>, path: &str) -> Result<EventCondition, FieldError> {
    if let Some(name) = o.get("not_performed") {
        only_keys(o, path, &["not_performed", "within_days", "between", "where"])?;
        let event = event_name(name, &format!("{path}.not_performed"))?;
        let conditions = properties(o.get("where"), &format!("{path}.where"))?;
        return Ok(EventCondition { event, count: Count::Exactly(0), window: window(o, path)?, conditions });
    }
    only_keys(o, path, &["event", "count", "within_days", "between", "where"])?;
    let event = event_name(&o["event"], &format!("{path}.event"))?;
    let cp = format!("{path}.count");
    let count = match o.get("count") {
        None => Count::AtLeast(1),
        Some(Value::Object(c)) if c.len() == 1 => {
            let (k, v) = c.iter().next().expect("one");
            let n = v
                .as_u64()
                .filter(|n| *n <= 1_000_000)
                .ok_or_else(|| err(&format!("{cp}.{k}"), "must be a whole number"))?;
            match k.as_str() {
                "at_least" => Count::AtLeast(n),
                "at_most" => Count::AtMost(n),
                "exactly" => Count::Exactly(n),
                _ => return Err(err(&format!("{cp}.{k}"), "must be at_least, at_most or exactly")),
            }
        }
        Some(_) => return Err(err(&cp, "must be one of {\"at_least\": n}, {\"at_most\": n}, {\"exactly\": n}")),
    };
    let conditions = properties(o.get("where"), &format!("{path}.where"))?;
    Ok(EventCondition { event, count, window: window(o, path)?, conditions })
}

fn properties(v: Option<&Value>, path: &str) -> Result<Vec<PropertyCondition>, FieldError> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let Value::Array(items) = v else { return Err(err(path, "must be an array of property conditions")) };
    if items.len() > 20 {
        return Err(err(path, "holds at most 20 property conditions"));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let p = format!("{path}[{i}]");
            let Value::Object(o) = c else { return Err(err(&p, "must be an object")) };
            only_keys(o, &p, &["property", "op", "value"])?;
            let property = match o.get("property").and_then(Value::as_str) {
                Some(s) if !s.is_empty() && s.len() <= 100 => s.to_string(),
                _ => return Err(err(&format!("{p}.property"), "must be a property name")),
            };
            let op = o.get("op").and_then(Value::as_str).and_then(Op::parse).ok_or_else(|| {
                err(
                    &format!("{p}.op"),
                    "must be one of eq, neq, in, contains, starts_with, exists, gt, gte, lt, lte, between",
                )
            })?;
            let value = typed(Kind::Any, op, o.get("value"), &format!("{p}.value"), false)?;
            Ok(PropertyCondition { property, op, value })
        })
        .collect()
}

fn event_time(o: &Map<String, Value>, path: &str) -> Result<EventTimeCondition, FieldError> {
    only_keys(o, path, &["event", "first", "last"])?;
    let event = event_name(&o["event"], &format!("{path}.event"))?;
    let (occurrence, key) = match (o.get("first"), o.get("last")) {
        (Some(_), Some(_)) => return Err(err(&format!("{path}.last"), "cannot be given with first")),
        (Some(_), None) => (Occurrence::First, "first"),
        _ => (Occurrence::Last, "last"),
    };
    let p = format!("{path}.{key}");
    let Some(Value::Object(w)) = o.get(key) else {
        return Err(err(&p, "must be one of {\"before\": time}, {\"after\": time}, {\"within_days\": n}"));
    };
    if w.len() != 1 {
        return Err(err(&p, "must hold exactly one of before, after, within_days"));
    }
    let (k, v) = w.iter().next().expect("one");
    let wp = format!("{p}.{k}");
    let at = || v.as_str().and_then(date).ok_or_else(|| err(&wp, "must be a date or an RFC 3339 time"));
    let when = match k.as_str() {
        "before" => When::Before(at()?),
        "after" => When::After(at()?),
        "within_days" => When::WithinDays(days(v, &wp)?),
        _ => return Err(err(&wp, "must be before, after or within_days")),
    };
    Ok(EventTimeCondition { event, occurrence, when })
}

/// The segments a filter refers to (for cycle checks).
pub fn referenced_segments(f: &Filter, out: &mut Vec<i64>) {
    match f {
        Filter::All(c) | Filter::Any(c) => c.iter().for_each(|c| referenced_segments(c, out)),
        Filter::Not(c) => referenced_segments(c, out),
        Filter::Segment(id) => out.push(*id),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn bad(v: Value) -> (String, String) {
        let e = parse(&v, "filters").expect_err("refused");
        (e.field, e.message)
    }

    #[test]
    fn seed_003s_example_is_the_all_of_its_keys() {
        let f = parse(&json!({"clv_total_min": 500, "last_purchase_days_max": 30}), "filters").unwrap();
        assert_eq!(
            f,
            Filter::All(vec![
                Filter::Field(FieldCondition {
                    field: Field::Score(ScoreField::ClvTotal),
                    op: Op::Gte,
                    value: Operand::Number(500.0)
                }),
                Filter::Field(FieldCondition {
                    field: Field::Score(ScoreField::LastPurchaseDays),
                    op: Op::Lte,
                    value: Operand::Number(30.0)
                }),
            ])
        );
        let one = parse(&json!({"rfm_segment": ["Champions", "Loyal Customers"]}), "filters").unwrap();
        assert!(matches!(one, Filter::Field(FieldCondition { op: Op::In, .. })));
        let dated = parse(&json!({"created_after": "2026-01-01", "country": "HR"}), "filters").unwrap();
        let Filter::All(parts) = dated else { panic!() };
        assert!(parts
            .iter()
            .any(|p| matches!(p, Filter::Field(FieldCondition { op: Op::Gt, value: Operand::Date(_), .. }))));
    }

    #[test]
    fn the_general_form_covers_every_condition_kind() {
        let f = json!({"all": [
            {"field": "traits.plan", "op": "in", "value": ["pro", "team"]},
            {"field": "rfm_score", "op": "between", "value": [9, 15]},
            {"field": "email", "op": "exists"},
            {"event": "purchase", "count": {"at_least": 2}, "within_days": 30,
             "where": [{"property": "amount", "op": "gt", "value": 100}]},
            {"not_performed": "login", "within_days": 14},
            {"event": "purchase", "count": {"exactly": 1}, "between": ["2026-01-01", "2026-02-01T00:00:00Z"]},
            {"event": "signup", "first": {"before": "2026-01-01"}},
            {"event": "purchase", "last": {"within_days": 7}},
            {"any": [{"segment": 4}, {"not": {"consent": "email"}}]}
        ]});
        let parsed = parse(&f, "filters").unwrap();
        let Filter::All(parts) = &parsed else { panic!() };
        assert_eq!(parts.len(), 9);
        assert!(matches!(
            &parts[4],
            Filter::Event(EventCondition { count: Count::Exactly(0), window: Window::LastDays(14), .. })
        ));
        assert!(matches!(&parts[6], Filter::EventTime(EventTimeCondition { occurrence: Occurrence::First, .. })));
        let mut refs = Vec::new();
        referenced_segments(&parsed, &mut refs);
        assert_eq!(refs, [4]);
    }

    #[test]
    fn errors_name_the_path_of_the_bad_node() {
        let cases = [
            (
                json!({"all": [{"field": "country", "op": "eq", "value": "HR"}, {"field": "rfm_score", "op": "gt", "value": "high"}]}),
                "filters.all[1].value",
            ),
            (json!({"all": [{"field": "colour", "op": "eq", "value": 1}]}), "filters.all[0].field"),
            (json!({"any": [{"field": "city", "op": "like", "value": "Z"}]}), "filters.any[0].op"),
            (json!({"clv_total_min": "lots"}), "filters.clv_total_min"),
            (json!({"clv_total_minimum": 5}), "filters.clv_total_minimum"),
            (json!({"rfm_segment": "Whales"}), "filters.rfm_segment"),
            (json!({"not": {"event": "purchase", "count": {"more_than": 2}}}), "filters.not.count.more_than"),
            (json!({"all": [{"event": "purchase", "within_days": 0}]}), "filters.all[0].within_days"),
            (
                json!({"all": [{"event": "x", "where": [{"property": "a", "op": "between", "value": [1]}]}]}),
                "filters.all[0].where[0].value",
            ),
            (json!({"all": []}), "filters.all"),
            (json!({"all": [{"segment": "four"}]}), "filters.all[0].segment"),
            (json!({"event": "purchase", "last": {"around": "2026-01-01"}}), "filters.last.around"),
            (json!({"all": [{"field": "created_at", "op": "gt", "value": "yesterday"}]}), "filters.all[0].value"),
            (json!({"all": [{"field": "country", "op": "eq", "value": "HR", "colour": 1}]}), "filters.all[0].colour"),
            (json!([1]), "filters"),
        ];
        for (filter, path) in cases {
            let (field, message) = bad(filter.clone());
            assert_eq!(field, path, "{filter} → {message}");
        }
    }

    #[test]
    fn size_and_depth_are_bounded() {
        let mut deep = json!({"field": "country", "op": "eq", "value": "HR"});
        for _ in 0..=MAX_DEPTH {
            deep = json!({"not": deep});
        }
        assert!(bad(deep).1.contains("nested"));
        let many: Vec<Value> =
            (0..=MAX_CONDITIONS).map(|_| json!({"field": "city", "op": "eq", "value": "Z"})).collect();
        assert!(bad(json!({"any": many})).1.contains("at most"));
    }
}

//! Triggers: what enrolls a customer in an automation, read from the automation's
//! `trigger_type` and `trigger_config` (docs/automations.md).

use std::str::FromStr;

use cairn_segments::filter::PropertyCondition;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::design::Problem;

pub const TYPES: &[&str] = &[
    "customer_created",
    "event",
    "segment_entered",
    "segment_exited",
    "rfm_changed",
    "schedule",
    "date_property",
    "manual",
    "webhook",
];

#[derive(Debug, Clone)]
pub enum Trigger {
    CustomerCreated,
    /// A tracked event of this name whose properties satisfy every condition.
    Event {
        name: String,
        conditions: Vec<PropertyCondition>,
    },
    SegmentEntered(i64),
    SegmentExited(i64),
    /// Any change of R, F, M or the RFM segment; with `to`, only changes into that segment.
    RfmChanged {
        to: Option<String>,
    },
    /// Each tick of `cron` in `tz` enrolls the members of `segment`.
    Schedule {
        cron: Box<cron::Schedule>,
        tz: chrono_tz::Tz,
        segment: i64,
    },
    /// Enrolls, once a day, the customers whose date trait `name` falls `offset_days` from today
    /// (negative: before the date, e.g. -7 for a week before a renewal).
    DateProperty {
        name: String,
        offset_days: i64,
    },
    Manual,
    Webhook,
}

fn problem(field: &str, message: impl Into<String>) -> Problem {
    Problem { node: None, edge: None, field: format!("trigger_config.{field}"), message: message.into() }
}

/// Reads a trigger; every problem at once.
pub fn parse(kind: &str, config: &Map<String, Value>) -> Result<Trigger, Vec<Problem>> {
    let mut out = Vec::new();
    let int = |key: &str, out: &mut Vec<Problem>| {
        let v = config.get(key).and_then(Value::as_i64);
        if v.is_none() {
            out.push(problem(key, format!("is required for a {kind} trigger")));
        }
        v
    };
    let t = match kind {
        "customer_created" => Some(Trigger::CustomerCreated),
        "manual" => Some(Trigger::Manual),
        "webhook" => Some(Trigger::Webhook),
        "event" => {
            let name = config.get("event").and_then(Value::as_str).filter(|s| !s.trim().is_empty());
            if name.is_none() {
                out.push(problem("event", "is required for an event trigger: the event name"));
            }
            let mut conditions = Vec::new();
            if let (Some(name), Some(w)) = (name, config.get("where")) {
                match cairn_segments::parse(&json!({"event": name, "where": w}), "trigger_config") {
                    Ok(cairn_segments::Filter::Event(e)) => conditions = e.conditions,
                    Ok(_) => {}
                    Err(e) => out.push(Problem { node: None, edge: None, field: e.field, message: e.message }),
                }
            }
            name.map(|n| Trigger::Event { name: n.trim().to_string(), conditions })
        }
        "segment_entered" => int("segment_id", &mut out).map(Trigger::SegmentEntered),
        "segment_exited" => int("segment_id", &mut out).map(Trigger::SegmentExited),
        "rfm_changed" => {
            let to = config.get("to_segment").and_then(Value::as_str).map(str::to_string);
            if let Some(s) = &to {
                if !["Champions", "Loyal Customers", "At Risk", "Lost"].contains(&s.as_str()) {
                    out.push(problem("to_segment", "must be Champions, Loyal Customers, At Risk or Lost"));
                }
            }
            Some(Trigger::RfmChanged { to })
        }
        "schedule" => {
            let cron = config.get("cron").and_then(Value::as_str).map(cron_schedule);
            let cron = match cron {
                Some(Ok(c)) => Some(c),
                Some(Err(e)) => {
                    out.push(problem("cron", e));
                    None
                }
                None => {
                    out.push(problem("cron", "is required for a schedule trigger, e.g. \"0 9 * * MON\""));
                    None
                }
            };
            let tz = match config.get("timezone").and_then(Value::as_str) {
                None => Some(chrono_tz::UTC),
                Some(z) => {
                    let tz = z.parse::<chrono_tz::Tz>().ok();
                    if tz.is_none() {
                        out.push(problem("timezone", "must be an IANA time zone such as Europe/Paris"));
                    }
                    tz
                }
            };
            let segment = int("segment_id", &mut out);
            match (cron, tz, segment) {
                (Some(cron), Some(tz), Some(segment)) => Some(Trigger::Schedule { cron: Box::new(cron), tz, segment }),
                _ => None,
            }
        }
        "date_property" => {
            let name = config.get("trait").and_then(Value::as_str).filter(|s| !s.trim().is_empty());
            if name.is_none() {
                out.push(problem(
                    "trait",
                    "is required for a date_property trigger: a date trait such as renewal_date",
                ));
            }
            let offset = match config.get("offset_days") {
                None => Some(0),
                Some(v) => {
                    let o = v.as_i64().filter(|d| d.abs() <= 3660);
                    if o.is_none() {
                        out.push(problem("offset_days", "must be a whole number of days (negative: before the date)"));
                    }
                    o
                }
            };
            match (name, offset) {
                (Some(n), Some(o)) => Some(Trigger::DateProperty { name: n.trim().to_string(), offset_days: o }),
                _ => None,
            }
        }
        other => {
            return Err(vec![Problem {
                node: None,
                edge: None,
                field: "trigger_type".into(),
                message: format!("unknown trigger {other:?}: one of {}", TYPES.join(", ")),
            }])
        }
    };
    match t {
        Some(t) if out.is_empty() => Ok(t),
        _ => Err(out),
    }
}

/// A trigger's configuration: the automation's `trigger_config`, with what the design's trigger
/// node carries in its `data` (a builder keeps it there) filling the gaps.
pub fn config_of(config: &Value, design: &Value) -> Map<String, Value> {
    let mut out = config.as_object().cloned().unwrap_or_default();
    let nodes = design.get("nodes").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    if let Some(data) =
        nodes.iter().find(|n| n["type"] == "trigger").and_then(|n| n.get("data")).and_then(Value::as_object)
    {
        for (k, v) in data {
            if k != "label" {
                out.entry(k.clone()).or_insert(v.clone());
            }
        }
    }
    out
}

/// A cron expression of five fields (minute hour day month weekday, as crontab has them) or the
/// `cron` crate's six or seven (with seconds, and years).
pub fn cron_schedule(expr: &str) -> Result<cron::Schedule, String> {
    let fields = expr.split_whitespace().count();
    let full = if fields == 5 { format!("0 {expr}") } else { expr.to_string() };
    cron::Schedule::from_str(&full).map_err(|e| format!("is not a valid cron expression: {e}"))
}

impl Trigger {
    /// When a schedule or date trigger next fires after `now` (`None` for the others).
    pub fn next_tick(&self, now: DateTime<Utc>, workspace_tz: chrono_tz::Tz) -> Option<DateTime<Utc>> {
        match self {
            Trigger::Schedule { cron, tz, .. } => {
                cron.after(&now.with_timezone(tz)).next().map(|t| t.with_timezone(&Utc))
            }
            Trigger::DateProperty { .. } => {
                // Shortly after the next local midnight.
                let local = now.with_timezone(&workspace_tz).date_naive().succ_opt()?;
                let at = local.and_hms_opt(0, 5, 0)?;
                at.and_local_timezone(workspace_tz).earliest().map(|t| t.with_timezone(&Utc))
            }
            _ => None,
        }
    }

    /// The outbox event this trigger listens to.
    pub fn outbox_event(&self) -> Option<&'static str> {
        Some(match self {
            Trigger::CustomerCreated => "customer.created",
            Trigger::SegmentEntered(_) => "customer.segment_entered",
            Trigger::SegmentExited(_) => "customer.segment_exited",
            Trigger::RfmChanged { .. } => "customer.rfm_changed",
            _ => return None,
        })
    }

    /// Whether an outbox event of the name this trigger listens to enrolls its customer.
    pub fn matches_outbox(&self, payload: &Value) -> bool {
        match self {
            Trigger::CustomerCreated => true,
            Trigger::SegmentEntered(s) | Trigger::SegmentExited(s) => payload["segment_id"].as_i64() == Some(*s),
            Trigger::RfmChanged { to } => match to {
                None => true,
                Some(seg) => {
                    payload["new"]["rfm_segment"].as_str() == Some(seg.as_str())
                        && payload["old"]["rfm_segment"].as_str() != Some(seg.as_str())
                }
            },
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn every_type_parses_and_problems_name_the_field() {
        assert!(matches!(parse("customer_created", &Map::new()), Ok(Trigger::CustomerCreated)));
        let e = parse(
            "event",
            &cfg(json!({"event": "purchase", "where": [{"property": "amount", "op": "gt", "value": 100}]})),
        )
        .unwrap();
        assert!(matches!(e, Trigger::Event { ref conditions, .. } if conditions.len() == 1));
        let p = parse("segment_entered", &Map::new()).unwrap_err();
        assert_eq!(p[0].field, "trigger_config.segment_id");
        let p = parse("schedule", &cfg(json!({"cron": "nonsense", "timezone": "Mars/Base"}))).unwrap_err();
        let fields: Vec<&str> = p.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["trigger_config.cron", "trigger_config.timezone", "trigger_config.segment_id"]);
        assert_eq!(parse("telepathy", &Map::new()).unwrap_err()[0].field, "trigger_type");
    }

    #[test]
    fn schedules_tick_in_their_time_zone() {
        let t =
            parse("schedule", &cfg(json!({"cron": "0 9 * * *", "timezone": "Europe/Paris", "segment_id": 1}))).unwrap();
        let now: DateTime<Utc> = "2026-06-01T08:00:00Z".parse().unwrap();
        // 09:00 in Paris (UTC+2 in summer) is 07:00 UTC: already past today, so tomorrow.
        assert_eq!(t.next_tick(now, chrono_tz::UTC).unwrap().to_rfc3339(), "2026-06-02T07:00:00+00:00");
    }

    #[test]
    fn rfm_trigger_fires_on_entering_its_segment_only() {
        let t = parse("rfm_changed", &cfg(json!({"to_segment": "At Risk"}))).unwrap();
        assert!(
            t.matches_outbox(&json!({"old": {"rfm_segment": "Loyal Customers"}, "new": {"rfm_segment": "At Risk"}}))
        );
        assert!(!t.matches_outbox(&json!({"old": {"rfm_segment": "At Risk"}, "new": {"rfm_segment": "At Risk"}})));
        assert!(!t.matches_outbox(&json!({"old": null, "new": {"rfm_segment": "Champions"}})));
    }
}

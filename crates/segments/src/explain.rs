//! Why a customer is or is not in a segment: the filter as a tree in the general form, each node
//! with whether it held for the customer and, for conditions, the value seen.

use std::collections::HashMap;

use cairn_domain::{CustomerId, TenantId};
use cairn_events::EventStore;
use cairn_store::{customers::Customer, scores::ScoreRow, Store};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::{
    eval::Evaluator,
    filter::{
        Channel, Count, Field, Filter, Occurrence, Op, Operand, ProfileField, PropertyCondition, ScoreField, When,
        Window,
    },
    Result,
};

pub struct Explainer<'a> {
    pub store: &'a Store,
    pub events: &'a dyn EventStore,
    pub tenant: TenantId,
    pub now: DateTime<Utc>,
    pub tz: chrono_tz::Tz,
}

impl Explainer<'_> {
    /// The explanation tree for one customer.
    pub async fn explain(&self, f: &Filter, customer: &Customer) -> Result<Value> {
        let scores = self.store.read().await?.scores_for(self.tenant, &[customer.id]).await?.pop();
        let no_overrides = HashMap::new();
        let mut ev = Evaluator::new(self.store, self.events, self.tenant, self.now, self.tz, &no_overrides);
        let today = ev.today();
        self.node(&mut ev, f, customer, scores.as_ref(), today).await
    }

    fn node<'s>(
        &'s self,
        ev: &'s mut Evaluator<'_>,
        f: &'s Filter,
        c: &'s Customer,
        scores: Option<&'s ScoreRow>,
        today: i64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Value>> + Send + 's>> {
        Box::pin(async move {
            let held = !ev.members(f, Some(&[c.id.0])).await?.is_empty();
            Ok(match f {
                Filter::All(children) | Filter::Any(children) => {
                    let mut out = Vec::new();
                    for child in children {
                        out.push(self.node(ev, child, c, scores, today).await?);
                    }
                    let key = if matches!(f, Filter::All(_)) { "all" } else { "any" };
                    json!({ key: out, "held": held })
                }
                Filter::Not(child) => json!({"not": self.node(ev, child, c, scores, today).await?, "held": held}),
                Filter::Field(fc) => {
                    let mut v = describe(f);
                    v["held"] = json!(held);
                    v["seen"] = crate::eval::field_value(fc, c, scores, today);
                    v
                }
                Filter::Consent(ch) => {
                    let key = match ch {
                        Channel::Email => "email_consent",
                        Channel::Sms => "sms_consent",
                    };
                    json!({"consent": describe(f)["consent"], "held": held,
                           "seen": c.traits.get(key).cloned().unwrap_or(Value::Null)})
                }
                Filter::Segment(id) => json!({"segment": id, "held": held}),
                Filter::Event(e) => {
                    let mut v = describe(f);
                    let stats = self.matching(&e.event, e.window, &e.conditions, c.id).await?;
                    v["held"] = json!(held);
                    v["seen"] = json!({"count": stats.0, "first_at": stats.1, "last_at": stats.2});
                    v
                }
                Filter::EventTime(e) => {
                    let mut v = describe(f);
                    let stats = self.matching(&e.event, Window::Ever, &[], c.id).await?;
                    v["held"] = json!(held);
                    v["seen"] = match e.occurrence {
                        Occurrence::First => json!({"first_at": stats.1}),
                        Occurrence::Last => json!({"last_at": stats.2}),
                    };
                    v
                }
            })
        })
    }

    /// A customer's count, first and last time of matching events.
    async fn matching(
        &self,
        name: &str,
        window: Window,
        conditions: &[PropertyCondition],
        customer: CustomerId,
    ) -> Result<(u64, Option<DateTime<Utc>>, Option<DateTime<Utc>>)> {
        let predicate = |p: &Value| conditions.iter().all(|c| crate::eval::property_holds(c, p));
        let (from_ms, to_ms) = crate::eval::window_ms(window, self.now);
        let query = cairn_events::BehaviourQuery {
            name,
            from_ms,
            to_ms,
            predicate: if conditions.is_empty() { None } else { Some(&predicate) },
        };
        let stats = self.events.behaviour(self.tenant, &query, cairn_events::Customers::Only(&[customer])).await?;
        let at = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms);
        Ok(stats.first().map_or((0, None, None), |s| (s.count, at(s.first_ms), at(s.last_ms))))
    }
}

fn field_name(f: &Field) -> String {
    use ProfileField as P;
    use ScoreField as S;
    match f {
        Field::Trait(k) => format!("traits.{k}"),
        Field::Profile(p) => match p {
            P::Email => "email",
            P::Name => "name",
            P::Phone => "phone",
            P::City => "city",
            P::Country => "country",
            P::UserId => "user_id",
            P::CreatedAt => "created_at",
            P::FirstSeenAt => "first_seen_at",
            P::LastSeenAt => "last_seen_at",
        }
        .into(),
        Field::Score(s) => match s {
            S::RfmRecency => "rfm_recency",
            S::RfmFrequency => "rfm_frequency",
            S::RfmMonetary => "rfm_monetary",
            S::RfmScore => "rfm_score",
            S::RfmSegment => "rfm_segment",
            S::ClvTotal => "clv_total",
            S::ClvOrderCount => "clv_order_count",
            S::ClvAverageOrder => "clv_average_order",
            S::ClvPredicted => "clv_predicted",
            S::PAlive => "p_alive",
            S::LastPurchaseDays => "last_purchase_days",
            S::LastPurchaseAt => "last_purchase_at",
        }
        .into(),
    }
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::Eq => "eq",
        Op::Neq => "neq",
        Op::In => "in",
        Op::Contains => "contains",
        Op::StartsWith => "starts_with",
        Op::Exists => "exists",
        Op::Gt => "gt",
        Op::Gte => "gte",
        Op::Lt => "lt",
        Op::Lte => "lte",
        Op::Between => "between",
    }
}

fn operand(o: &Operand) -> Value {
    match o {
        Operand::Text(s) => json!(s),
        Operand::Number(n) => json!(n),
        Operand::Bool(b) => json!(b),
        Operand::Date(t) => json!(t),
        Operand::List(items) => Value::Array(items.iter().map(operand).collect()),
        Operand::Range(lo, hi) => json!([operand(lo), operand(hi)]),
        Operand::Present(p) => json!(p),
    }
}

/// A filter in the general form (the shorthand expanded).
pub fn describe(f: &Filter) -> Value {
    match f {
        Filter::All(c) => json!({"all": c.iter().map(describe).collect::<Vec<_>>()}),
        Filter::Any(c) => json!({"any": c.iter().map(describe).collect::<Vec<_>>()}),
        Filter::Not(c) => json!({"not": describe(c)}),
        Filter::Field(fc) => json!({"field": field_name(&fc.field), "op": op_name(fc.op), "value": operand(&fc.value)}),
        Filter::Consent(Channel::Email) => json!({"consent": "email"}),
        Filter::Consent(Channel::Sms) => json!({"consent": "sms"}),
        Filter::Segment(id) => json!({"segment": id}),
        Filter::Event(e) => {
            let mut v = json!({"event": e.event});
            v["count"] = match e.count {
                Count::AtLeast(n) => json!({"at_least": n}),
                Count::AtMost(n) => json!({"at_most": n}),
                Count::Exactly(n) => json!({"exactly": n}),
            };
            match e.window {
                Window::Ever => {}
                Window::LastDays(d) => v["within_days"] = json!(d),
                Window::Between(a, b) => v["between"] = json!([a, b]),
            }
            if !e.conditions.is_empty() {
                v["where"] = Value::Array(
                    e.conditions
                        .iter()
                        .map(|c| json!({"property": c.property, "op": op_name(c.op), "value": operand(&c.value)}))
                        .collect(),
                );
            }
            v
        }
        Filter::EventTime(e) => {
            let when = match e.when {
                When::Before(t) => json!({"before": t}),
                When::After(t) => json!({"after": t}),
                When::WithinDays(d) => json!({"within_days": d}),
            };
            let key = if e.occurrence == Occurrence::First { "first" } else { "last" };
            json!({"event": e.event, key: when})
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn described_filters_parse_back_to_themselves() {
        for v in [
            json!({"clv_total_min": 500, "last_purchase_days_max": 30}),
            json!({"any": [{"not": {"consent": "sms"}}, {"segment": 3},
                {"event": "purchase", "count": {"exactly": 2}, "between": ["2026-01-01", "2026-02-01"],
                 "where": [{"property": "amount", "op": "between", "value": [10, 20]}]},
                {"event": "signup", "first": {"before": "2026-01-01T00:00:00Z"}},
                {"field": "traits.plan", "op": "in", "value": ["a", "b"]}]}),
        ] {
            let f = crate::parse(&v, "filters").unwrap();
            assert_eq!(crate::parse(&super::describe(&f), "filters").unwrap(), f);
        }
    }
}

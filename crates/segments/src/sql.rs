//! Profile, trait, score, consent and membership conditions compiled to one SQL condition over
//! `customers c LEFT JOIN customer_scores s` ([`cairn_store::Conn::customer_ids_where`]), in
//! the dialect of the entity store in use.
//!
//! Values are written into the SQL as literals: numbers as Rust prints finite floats, text
//! with quotes doubled (NUL refused by the parser), trait keys only without quotes, backslashes
//! or control characters (also refused by the parser). Every leaf is two-valued — `CASE WHEN
//! … THEN 1 ELSE 0 END = 1` — so a missing value makes a leaf false and `not` of it true, the
//! same on both backends.

use std::collections::HashMap;

use cairn_store::Backend;
use chrono::{DateTime, SecondsFormat, Utc};

use crate::filter::{Channel, Field, FieldCondition, Filter, Op, Operand, ProfileField, ScoreField};

/// What a compiled condition needs besides the filter.
pub struct Context<'a> {
    pub backend: Backend,
    /// Today in the workspace's time zone (days since 1970-01-01), for `last_purchase_days`.
    pub today: i64,
    /// Segments whose membership is being decided in the same pass: their new members among
    /// the customers evaluated.
    pub overrides: &'a HashMap<i64, Vec<i64>>,
}

/// Whether a node is decided by the entity store alone.
pub fn in_entity_store(f: &Filter) -> bool {
    match f {
        Filter::All(c) | Filter::Any(c) => c.iter().all(in_entity_store),
        Filter::Not(c) => in_entity_store(c),
        Filter::Field(_) | Filter::Segment(_) | Filter::Consent(_) => true,
        Filter::Event(_) | Filter::EventTime(_) => false,
    }
}

/// Compiles an entity-store node (see [`in_entity_store`]).
pub fn compile(f: &Filter, cx: &Context<'_>) -> String {
    match f {
        Filter::All(c) => join(c, " AND ", cx),
        Filter::Any(c) => join(c, " OR ", cx),
        Filter::Not(c) => format!("(NOT {})", compile(c, cx)),
        Filter::Field(fc) => leaf(&field(fc, cx)),
        Filter::Consent(ch) => {
            let key = match ch {
                Channel::Email => "email_consent",
                Channel::Sms => "sms_consent",
            };
            leaf(&trait_bool(key, true, cx.backend))
        }
        Filter::Segment(id) => match cx.overrides.get(id) {
            Some(members) if members.is_empty() => "(1 = 0)".into(),
            Some(members) => {
                format!("(c.id IN ({}))", members.iter().map(i64::to_string).collect::<Vec<_>>().join(","))
            }
            None => format!("(c.id IN (SELECT m.customer_id FROM segment_members m WHERE m.segment_id = {id}))"),
        },
        Filter::Event(_) | Filter::EventTime(_) => unreachable!("event conditions run in the event store"),
    }
}

pub(crate) fn join(children: &[Filter], sep: &str, cx: &Context<'_>) -> String {
    format!("({})", children.iter().map(|c| compile(c, cx)).collect::<Vec<_>>().join(sep))
}

fn leaf(expr: &str) -> String {
    format!("(CASE WHEN {expr} THEN 1 ELSE 0 END = 1)")
}

pub(crate) fn text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn number(n: f64) -> String {
    if n.is_finite() {
        format!("{n}")
    } else {
        "NULL".into()
    }
}

fn time(t: &DateTime<Utc>) -> String {
    text(&t.to_rfc3339_opts(SecondsFormat::Micros, true))
}

/// How a value of one kind reads in SQL.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Text,
    Number,
    Date,
}

/// A field's SQL expression for values of `kind`.
fn column(field: &Field, kind: Kind, cx: &Context<'_>) -> Option<String> {
    use ProfileField as P;
    use ScoreField as S;
    let b = cx.backend;
    Some(match field {
        Field::Profile(p) => {
            let col = match p {
                P::Email => "c.email",
                P::Name => "c.name",
                P::Phone => "c.phone",
                P::City => "c.city",
                P::Country => "c.country",
                P::UserId => "c.external_id",
                P::CreatedAt => "c.created_at",
                P::FirstSeenAt => "c.first_seen_at",
                P::LastSeenAt => "c.last_seen_at",
            };
            if kind == Kind::Date {
                date_of(col, b)
            } else {
                col.to_string()
            }
        }
        Field::Score(sf) => {
            let col = match sf {
                S::RfmRecency => "s.rfm_recency".to_string(),
                S::RfmFrequency => "s.rfm_frequency".into(),
                S::RfmMonetary => "s.rfm_monetary".into(),
                S::RfmScore => "s.rfm_score".into(),
                S::RfmSegment => "s.rfm_segment".into(),
                // Net spend and orders are 0 before the first purchase, as profiles show them.
                S::ClvTotal => "COALESCE(s.clv_total, 0)".into(),
                S::ClvOrderCount => "COALESCE(s.clv_order_count, 0)".into(),
                S::ClvAverageOrder => "s.clv_average_order".into(),
                S::ClvPredicted => "s.clv_predicted".into(),
                S::PAlive => "s.p_alive".into(),
                S::LastPurchaseDays => format!("({} - s.last_purchase_day)", cx.today),
                S::LastPurchaseAt => "s.last_purchase_at".into(),
            };
            if kind == Kind::Date {
                date_of(&col, b)
            } else {
                col
            }
        }
        Field::Trait(key) => trait_value(key, kind, b)?,
    })
}

fn date_of(col: &str, b: Backend) -> String {
    match b {
        Backend::Sqlite => format!("julianday({col})"),
        Backend::Postgres => col.to_string(),
    }
}

fn date_literal(t: &DateTime<Utc>, b: Backend) -> String {
    match b {
        Backend::Sqlite => format!("julianday({})", time(t)),
        Backend::Postgres => format!("{}::timestamptz", time(t)),
    }
}

fn trait_value(key: &str, kind: Kind, b: Backend) -> Option<String> {
    Some(match b {
        Backend::Sqlite => {
            let (j, t) =
                (format!("json_extract(c.traits, '$.\"{key}\"')"), format!("json_type(c.traits, '$.\"{key}\"')"));
            match kind {
                Kind::Number => format!("(CASE WHEN {t} IN ('integer', 'real') THEN {j} END)"),
                Kind::Text => format!("(CASE WHEN {t} = 'text' THEN {j} END)"),
                Kind::Date => format!("julianday(CASE WHEN {t} = 'text' THEN {j} END)"),
            }
        }
        Backend::Postgres => {
            let k = text(key);
            let t = format!("jsonb_typeof(c.traits -> {k})");
            match kind {
                Kind::Number => format!("(CASE WHEN {t} = 'number' THEN (c.traits ->> {k})::float8 END)"),
                Kind::Text => format!("(CASE WHEN {t} = 'string' THEN c.traits ->> {k} END)"),
                Kind::Date => format!("cairn_try_timestamptz(CASE WHEN {t} = 'string' THEN c.traits ->> {k} END)"),
            }
        }
    })
}

fn trait_bool(key: &str, value: bool, b: Backend) -> String {
    match b {
        Backend::Sqlite => format!("json_type(c.traits, '$.\"{key}\"') = '{value}'"),
        Backend::Postgres => format!("c.traits -> {} = '{value}'::jsonb", text(key)),
    }
}

fn trait_exists(key: &str, b: Backend) -> String {
    match b {
        Backend::Sqlite => format!("COALESCE(json_type(c.traits, '$.\"{key}\"'), 'null') <> 'null'"),
        Backend::Postgres => format!("COALESCE(jsonb_typeof(c.traits -> {}), 'null') <> 'null'", text(key)),
    }
}

fn kind_of(o: &Operand) -> Kind {
    match o {
        Operand::Number(_) => Kind::Number,
        Operand::Date(_) => Kind::Date,
        Operand::Range(lo, _) => kind_of(lo),
        _ => Kind::Text,
    }
}

fn literal(o: &Operand, b: Backend) -> String {
    match o {
        Operand::Text(s) => text(s),
        Operand::Number(n) => number(*n),
        Operand::Date(t) => date_literal(t, b),
        Operand::Bool(v) => v.to_string(),
        Operand::List(_) | Operand::Range(..) | Operand::Present(_) => "NULL".into(),
    }
}

/// `LIKE` pattern text (lower-cased, wildcards escaped with `\`).
fn like(term: &str, prefix_only: bool) -> String {
    let mut p = String::new();
    for c in term.to_ascii_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    if !prefix_only {
        p.insert(0, '%');
    }
    format!("{} ESCAPE '\\'", text(&p))
}

/// A field condition as a (possibly three-valued) SQL expression; [`leaf`] makes it two-valued.
fn field(fc: &FieldCondition, cx: &Context<'_>) -> String {
    let b = cx.backend;
    let eq = |v: &Operand| -> String {
        match v {
            Operand::Bool(x) => match &fc.field {
                Field::Trait(k) => trait_bool(k, *x, b),
                _ => "1 = 0".into(),
            },
            v => match column(&fc.field, kind_of(v), cx) {
                Some(col) => format!("{col} = {}", literal(v, b)),
                None => "1 = 0".into(),
            },
        }
    };
    // Text orders by code point on both backends (PostgreSQL would otherwise use the
    // database's collation).
    let collate = |o: &Operand| if b == Backend::Postgres && kind_of(o) == Kind::Text { " COLLATE \"C\"" } else { "" };
    let cmp = |sym: &str| -> String {
        match column(&fc.field, kind_of(&fc.value), cx) {
            Some(col) => format!("{col}{} {sym} {}", collate(&fc.value), literal(&fc.value, b)),
            None => "1 = 0".into(),
        }
    };
    match (fc.op, &fc.value) {
        (Op::Exists, Operand::Present(present)) => {
            let e = match &fc.field {
                Field::Trait(k) => trait_exists(k, b),
                f => format!("{} IS NOT NULL", column(f, Kind::Text, cx).unwrap_or_else(|| "NULL".into())),
            };
            if *present {
                e
            } else {
                format!("NOT ({})", leaf(&e))
            }
        }
        (Op::Eq, v) => eq(v),
        // Not equal is the negation of equal: a missing value is not equal.
        (Op::Neq, v) => format!("NOT {}", leaf(&eq(v))),
        (Op::In, Operand::List(items)) => {
            format!("({})", items.iter().map(|v| leaf(&eq(v))).collect::<Vec<_>>().join(" OR "))
        }
        (Op::Contains | Op::StartsWith, Operand::Text(t)) => match column(&fc.field, Kind::Text, cx) {
            // ASCII letters fold, nothing else: SQLite's LOWER and LIKE know no more, and
            // PostgreSQL is made to match.
            Some(col) if b == Backend::Postgres => format!(
                "translate({col}, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz') LIKE {}",
                like(t, fc.op == Op::StartsWith)
            ),
            Some(col) => format!("LOWER({col}) LIKE {}", like(t, fc.op == Op::StartsWith)),
            None => "1 = 0".into(),
        },
        (Op::Gt, _) => cmp(">"),
        (Op::Gte, _) => cmp(">="),
        (Op::Lt, _) => cmp("<"),
        (Op::Lte, _) => cmp("<="),
        (Op::Between, Operand::Range(lo, hi)) => match column(&fc.field, kind_of(lo), cx) {
            Some(col) => {
                let c = collate(lo);
                format!("({col}{c} >= {} AND {col}{c} <= {})", literal(lo, b), literal(hi, b))
            }
            None => "1 = 0".into(),
        },
        _ => "1 = 0".into(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sql(v: serde_json::Value, backend: Backend) -> String {
        let f = crate::parse(&v, "filters").unwrap();
        let overrides = HashMap::new();
        compile(&f, &Context { backend, today: 20_000, overrides: &overrides })
    }

    #[test]
    fn text_is_quoted_and_wildcards_escaped() {
        let s = sql(json!({"field": "name", "op": "contains", "value": "O'Brien_%"}), Backend::Postgres);
        assert!(s.contains(r"LIKE '%o''brien\_\%%' ESCAPE '\'"), "{s}");
        let s = sql(json!({"field": "traits.plan", "op": "eq", "value": "x' OR 1=1 --"}), Backend::Sqlite);
        assert!(s.contains("= 'x'' OR 1=1 --'"), "{s}");
    }

    #[test]
    fn relative_days_use_today() {
        let s = sql(json!({"last_purchase_days_max": 30}), Backend::Sqlite);
        assert!(s.contains("(20000 - s.last_purchase_day) <= 30"), "{s}");
    }
}

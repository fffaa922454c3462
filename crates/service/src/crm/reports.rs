//! Reports (seed 000: by source, stage, owner and conversion trends) and search across leads,
//! people, prospects and opportunities (seed 004).

use cairn_domain::Scope;
use cairn_store::crm::{
    reports::{GroupBy, ReportRow},
    EntityType,
};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{require, scopes};
use crate::{Principal, Result, ServiceError, Services};

pub fn parse_group(s: Option<&str>, default: GroupBy) -> Result<GroupBy> {
    Ok(match s {
        None => default,
        Some("source") => GroupBy::Source,
        Some("stage" | "status") => GroupBy::Stage,
        Some("owner" | "assigned_to") => GroupBy::Owner,
        Some("month") => GroupBy::Month,
        Some("pipeline") => GroupBy::Pipeline,
        Some(_) => return Err(ServiceError::invalid("group_by", "must be source, stage, owner, month or pipeline")),
    })
}

fn rate(n: i64, d: i64) -> Option<f64> {
    (d > 0).then(|| (n as f64 / d as f64 * 10_000.0).round() / 10_000.0)
}

/// One search result (seed 004's shape).
#[derive(Debug, serde::Serialize)]
pub struct SearchHit {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: i64,
    pub title: String,
    pub subtitle: Option<String>,
    pub score: f64,
    pub url: String,
}

/// How well `title` matches `q`: 1 exact, 0.9 a prefix, 0.8 a word's prefix, 0.6 elsewhere
/// (the subtitle, the email).
fn score(q: &str, title: &str) -> f64 {
    let (q, t) = (q.to_lowercase(), title.to_lowercase());
    if t == q {
        1.0
    } else if t.starts_with(&q) {
        0.9
    } else if t.split_whitespace().any(|w| w.starts_with(&q)) {
        0.8
    } else if t.contains(&q) {
        0.7
    } else {
        0.6
    }
}

impl Services {
    pub async fn lead_report(
        &self,
        p: &Principal,
        group_by: Option<&str>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Value> {
        require(p, Scope::LeadsRead)?;
        let by = parse_group(group_by, GroupBy::Source)?;
        let mut c = self.store.read().await?;
        let rows = c.lead_report(p.tenant_id, by, from, to).await?;
        let groups = self.label(&mut c, p, by, &rows).await?;
        let out: Vec<Value> = rows
            .iter()
            .zip(groups)
            .map(|(r, (key, label))| {
                json!({
                    "key": key, "label": label, "count": r.count, "converted": r.hits, "unqualified": r.misses,
                    "conversion_rate": rate(r.hits, r.count), "value": r.value, "converted_value": r.hit_value,
                })
            })
            .collect();
        let total: i64 = rows.iter().map(|r| r.count).sum();
        let converted: i64 = rows.iter().map(|r| r.hits).sum();
        Ok(json!({"group_by": group_name(by), "groups": out,
                  "totals": {"count": total, "converted": converted, "conversion_rate": rate(converted, total)}}))
    }

    pub async fn opportunity_report(
        &self,
        p: &Principal,
        group_by: Option<&str>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Value> {
        require(p, Scope::OpportunitiesRead)?;
        let by = parse_group(group_by, GroupBy::Stage)?;
        let mut c = self.store.read().await?;
        let rows = c.opportunity_report(p.tenant_id, by, from, to).await?;
        let groups = self.label(&mut c, p, by, &rows).await?;
        let out: Vec<Value> = rows
            .iter()
            .zip(groups)
            .map(|(r, (key, label))| {
                json!({
                    "key": key, "label": label, "count": r.count, "open": r.count - r.hits - r.misses,
                    "won": r.hits, "lost": r.misses, "win_rate": rate(r.hits, r.hits + r.misses),
                    "value": r.value, "won_value": r.hit_value,
                })
            })
            .collect();
        let (count, won, lost) = rows.iter().fold((0, 0, 0), |a, r| (a.0 + r.count, a.1 + r.hits, a.2 + r.misses));
        let value: f64 = rows.iter().map(|r| r.value).sum();
        let won_value: f64 = rows.iter().map(|r| r.hit_value).sum();
        Ok(json!({"group_by": group_name(by), "groups": out,
                  "totals": {"count": count, "won": won, "lost": lost, "win_rate": rate(won, won + lost),
                             "value": value, "won_value": won_value}}))
    }

    /// Keys and display labels of report groups (owners by name, pipelines by name).
    async fn label(
        &self,
        c: &mut cairn_store::Conn,
        p: &Principal,
        by: GroupBy,
        rows: &[ReportRow],
    ) -> Result<Vec<(Value, String)>> {
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let label = match (by, &r.key) {
                (_, None) => "(none)".to_string(),
                (GroupBy::Owner, Some(k)) => {
                    c.member_name(p.tenant_id, k.parse().ok()).await?.unwrap_or_else(|| format!("user {k}"))
                }
                (GroupBy::Pipeline, Some(k)) => match c.pipeline(p.tenant_id, k.parse().unwrap_or(0)).await {
                    Ok(pl) => pl.name,
                    Err(_) => k.clone(),
                },
                (_, Some(k)) => k.clone(),
            };
            let key = match (by, &r.key) {
                (GroupBy::Owner | GroupBy::Pipeline, Some(k)) => json!(k.parse::<i64>().ok()),
                (_, k) => json!(k),
            };
            out.push((key, label));
        }
        Ok(out)
    }

    /// `GET /v1/search?q=&types=&limit=` over the entity types the caller may read.
    pub async fn search(&self, p: &Principal, q: &str, types: Option<&str>, limit: i64) -> Result<Vec<SearchHit>> {
        p.require_private()?;
        let q = q.trim();
        if q.is_empty() || q.chars().count() > 200 {
            return Err(ServiceError::invalid("q", "must be 1 to 200 characters"));
        }
        let wanted: Vec<EntityType> = match types {
            None | Some("") => {
                vec![EntityType::Lead, EntityType::Contact, EntityType::Prospect, EntityType::Opportunity]
            }
            Some(list) => {
                list.split(',').map(|t| super::parse_entity_type("types", t.trim())).collect::<Result<Vec<_>>>()?
            }
        };
        let readable: Vec<EntityType> = wanted.into_iter().filter(|t| p.scopes.allows(scopes(*t)[0])).collect();
        if readable.is_empty() {
            return Err(ServiceError::Forbidden("this credential may read none of the requested types".into()));
        }
        let mut c = self.store.read().await?;
        let mut hits = Vec::new();
        for ty in readable {
            for r in c.search_rows(p.tenant_id, ty, q, limit).await? {
                let title = r.title.clone().filter(|t| !t.is_empty()).or(r.subtitle.clone()).unwrap_or_default();
                let best = score(q, &title).max(r.subtitle.as_deref().map(|s| score(q, s) - 0.1).unwrap_or(0.0));
                let (kind, path) = match ty {
                    EntityType::Lead => ("lead", "leads"),
                    EntityType::Contact => ("contact", "people"),
                    EntityType::Prospect => ("prospect", "prospects"),
                    EntityType::Opportunity => ("opportunity", "opportunities"),
                };
                hits.push(SearchHit {
                    kind,
                    id: r.id,
                    title,
                    subtitle: r.subtitle,
                    score: best,
                    url: format!("/crm/{path}/{}", r.id),
                });
            }
        }
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(b.id.cmp(&a.id)));
        hits.truncate(limit as usize);
        Ok(hits)
    }
}

fn group_name(by: GroupBy) -> &'static str {
    match by {
        GroupBy::Source => "source",
        GroupBy::Stage => "stage",
        GroupBy::Owner => "owner",
        GroupBy::Month => "month",
        GroupBy::Pipeline => "pipeline",
    }
}

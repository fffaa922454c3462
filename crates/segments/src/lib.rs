//! Segments (docs/segments.md): the filter language ([`filter`]), its evaluation in the entity
//! and event stores ([`eval`], [`sql`]), and the worker that keeps stored membership current and
//! emits `customer.segment_entered` / `customer.segment_exited` ([`worker`]).

pub mod eval;
pub mod explain;
pub mod filter;
pub mod sql;
pub mod worker;

use std::collections::{HashMap, HashSet};

use cairn_domain::FieldError;
use cairn_store::{segments::SegmentRow, StoreError};
pub use filter::{parse, Filter};
pub use worker::{enqueue_evaluation, EvaluationProgress, SegmentSettings, Segmenter, EVALUATE_JOB};

/// What changed about a customer, as bits of a mark; a segment is re-evaluated for a customer
/// when the bits it depends on meet the bits of the mark.
pub mod changed {
    /// Profile fields, traits, consent.
    pub const PROFILE: i64 = 1;
    /// Scores (RFM, CLV, last purchase).
    pub const SCORES: i64 = 2;
    /// New events.
    pub const EVENTS: i64 = 4;
    /// Time passed a crossing.
    pub const TIME: i64 = 8;
    /// Membership of a segment that others refer to.
    pub const MEMBERSHIP: i64 = 16;
    pub const ALL: i64 = 31;
}

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Events(#[from] cairn_events::EventStoreError),
    #[error("the job's lease was taken over by another worker")]
    LeaseLost,
    #[error("the workspace's segments are maintained by another instance")]
    Busy,
    #[error("malformed segment state: {0}")]
    Corrupt(String),
}

pub type Result<T, E = SegmentError> = std::result::Result<T, E>;

/// A stored segment with its parsed filter (dynamic segments).
#[derive(Debug, Clone)]
pub struct Definition {
    pub row: SegmentRow,
    pub filter: Option<Filter>,
}

impl Definition {
    pub fn from_row(row: SegmentRow) -> Result<Definition> {
        let filter = match (&row.kind[..], &row.filters) {
            ("dynamic", Some(text)) => {
                let v: serde_json::Value = serde_json::from_str(text)
                    .map_err(|e| SegmentError::Corrupt(format!("segment {}: {e}", row.id)))?;
                Some(parse(&v, "filters").map_err(|e| SegmentError::Corrupt(format!("segment {}: {e}", row.id)))?)
            }
            _ => None,
        };
        Ok(Definition { row, filter })
    }

    /// The changes this segment's own conditions depend on (not those of segments it refers to).
    fn own_deps(&self) -> i64 {
        self.filter.as_ref().map_or(changed::MEMBERSHIP, deps)
    }
}

/// The bits of [`changed`] a filter depends on.
pub fn deps(f: &Filter) -> i64 {
    use changed::*;
    match f {
        Filter::All(c) | Filter::Any(c) => c.iter().fold(0, |acc, c| acc | deps(c)),
        Filter::Not(c) => deps(c),
        Filter::Field(fc) => match fc.field {
            filter::Field::Score(filter::ScoreField::LastPurchaseDays) => SCORES | TIME,
            filter::Field::Score(_) => SCORES,
            _ => PROFILE,
        },
        Filter::Consent(_) => PROFILE,
        Filter::Event(_) | Filter::EventTime(_) => EVENTS | if eval::is_relative(f) { TIME } else { 0 },
        Filter::Segment(_) => MEMBERSHIP,
    }
}

/// A workspace's dynamic segments in evaluation order (a segment after those it refers to),
/// each with everything it depends on, transitively.
pub fn plan(defs: &[Definition]) -> Vec<(Definition, i64)> {
    let by_id: HashMap<i64, &Definition> = defs.iter().map(|d| (d.row.id, d)).collect();
    let mut order: Vec<i64> = Vec::new();
    let mut done: HashSet<i64> = HashSet::new();
    fn visit(id: i64, by_id: &HashMap<i64, &Definition>, done: &mut HashSet<i64>, order: &mut Vec<i64>, depth: usize) {
        if depth > 64 || !done.insert(id) {
            return;
        }
        if let Some(Some(f)) = by_id.get(&id).map(|d| &d.filter) {
            let mut refs = Vec::new();
            filter::referenced_segments(f, &mut refs);
            for r in refs {
                visit(r, by_id, done, order, depth + 1);
            }
        }
        order.push(id);
    }
    for d in defs {
        visit(d.row.id, &by_id, &mut done, &mut order, 0);
    }
    let mut total: HashMap<i64, i64> = HashMap::new();
    let mut out = Vec::new();
    for id in order {
        let Some(d) = by_id.get(&id) else { continue };
        let mut bits = d.own_deps();
        if let Some(f) = &d.filter {
            let mut refs = Vec::new();
            filter::referenced_segments(f, &mut refs);
            for r in refs {
                bits |= total.get(&r).copied().unwrap_or(changed::MEMBERSHIP);
            }
        }
        total.insert(id, bits);
        if d.filter.is_some() {
            out.push(((*d).clone(), bits));
        }
    }
    out
}

/// Checks a filter's references to other segments: each must exist in the workspace, and
/// following them must never lead back to `saving` (the segment being saved, if it exists).
pub fn check_references(
    f: &Filter,
    saving: Option<i64>,
    defs: &[Definition],
    path: &str,
) -> std::result::Result<(), FieldError> {
    let by_id: HashMap<i64, &Definition> = defs.iter().map(|d| (d.row.id, d)).collect();
    let mut refs = Vec::new();
    filter::referenced_segments(f, &mut refs);
    for r in refs {
        if !by_id.contains_key(&r) {
            return Err(FieldError::new(path, format!("refers to segment {r}, which does not exist")));
        }
        let Some(me) = saving else { continue };
        // Depth-first from r: reaching `me` is a cycle.
        let mut stack = vec![r];
        let mut seen = HashSet::new();
        while let Some(id) = stack.pop() {
            if id == me {
                return Err(FieldError::new(
                    path,
                    format!("refers to segment {r}, which refers back to this segment (a cycle)"),
                ));
            }
            if !seen.insert(id) {
                continue;
            }
            if let Some(Some(f)) = by_id.get(&id).map(|d| &d.filter) {
                let mut next = Vec::new();
                filter::referenced_segments(f, &mut next);
                stack.extend(next);
            }
        }
    }
    Ok(())
}

//! Designs: seed 003's node-edge JSON (`{nodes: [{id, type, data, position}], edges: [{id,
//! source, target, label}]}`), each node's configuration read from its `data`, and the checks a
//! design passes before it can be activated (docs/automations.md lists every field).
//!
//! A design is stored as it was sent (positions and whatever else a builder keeps in it); it is
//! compiled into a [`Plan`] — the graph the engine walks — only when it passes [`compile`].

use std::collections::{HashMap, HashSet};

use cairn_segments::Filter;
use chrono::Duration;
use petgraph::{graph::DiGraph, visit::Dfs};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::duration;

/// Seed 003's design body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Design {
    #[serde(default)]
    pub nodes: Vec<Node>,
    #[serde(default)]
    pub edges: Vec<Edge>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Node {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub data: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Edge {
    #[serde(default)]
    pub id: String,
    pub source: String,
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// One thing wrong with a design: the node (or edge) it concerns, the field, what to fix.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edge: Option<String>,
    pub field: String,
    pub message: String,
}

impl Problem {
    fn node(id: &str, field: &str, message: impl Into<String>) -> Problem {
        Problem {
            node: Some(id.to_string()),
            edge: None,
            field: format!("nodes.{id}.{field}"),
            message: message.into(),
        }
    }
    fn edge(id: &str, field: &str, message: impl Into<String>) -> Problem {
        Problem {
            node: None,
            edge: Some(id.to_string()),
            field: format!("edges.{id}.{field}"),
            message: message.into(),
        }
    }
    fn design(field: &str, message: impl Into<String>) -> Problem {
        Problem { node: None, edge: None, field: field.to_string(), message: message.into() }
    }
}

/// When a delay ends.
#[derive(Debug, Clone, PartialEq)]
pub enum Delay {
    /// A fixed duration.
    For(Duration),
    /// The next time the clock shows `time` (seconds after midnight) on one of `weekdays`
    /// (0 = Monday; empty = any day), in the customer's time zone (trait `timezone`) or the
    /// workspace's.
    Until { time: u32, weekdays: Vec<u32>, zone: Zone },
    /// A date or time trait of the customer, shifted by `offset` (negative: before).
    UntilTrait { name: String, offset: Duration },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Zone {
    Workspace,
    Customer,
    Named(chrono_tz::Tz),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Through the node's triggered campaign; `template` copies a campaign's subject and body at
    /// activation.
    SendEmail {
        subject: Option<String>,
        body: Option<String>,
        template: Option<i64>,
    },
    SendSms {
        message: Option<String>,
        template: Option<i64>,
    },
    /// A signed POST to `url`, with `body` (an object) merged into the payload's data.
    Webhook {
        url: String,
        body: Value,
    },
    UpdateTraits(Map<String, Value>),
    AddTag(String),
    RemoveTag(String),
    AddToStaticSegment(i64),
    RemoveFromStaticSegment(i64),
    /// Enrolls the customer in another (active) automation.
    Enroll(i64),
    /// A CRM activity (a task for sales, say) on the customer's contact record, or on their
    /// newest open lead.
    CreateActivity(ActivitySpec),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ActivitySpec {
    /// call, email, meeting, task or note.
    pub kind: String,
    pub subject: String,
    pub description: Option<String>,
    /// Due this long after the step runs.
    pub due_in: Option<chrono::Duration>,
    pub assigned_to: Option<i64>,
    /// On the newest open lead linked to the customer (else on the contact).
    pub on_lead: bool,
}

pub const ACTIVITY_TYPES: &[&str] = &["call", "email", "meeting", "task", "note"];

#[derive(Debug, Clone)]
pub enum Step {
    Trigger,
    Action {
        action: Action,
        continue_on_failure: bool,
    },
    Delay(Delay),
    /// Yes/No on a segment filter; `since_start` counts behaviour (event conditions without a
    /// window) since the run started.
    Condition {
        filter: Filter,
        since_start: bool,
    },
    WaitForEvent {
        event: String,
        timeout: Duration,
    },
    /// Random A/B: (label, percent), summing to 100.
    Split(Vec<(String, u32)>),
    Exit,
}

impl Step {
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Trigger => "trigger",
            Step::Action { .. } => "action",
            Step::Delay(_) => "delay",
            Step::Condition { .. } => "condition",
            Step::WaitForEvent { .. } => "wait_for_event",
            Step::Split(_) => "split",
            Step::Exit => "exit",
        }
    }
}

/// A compiled design: each node's step and where each of its outcomes leads.
#[derive(Debug, Clone)]
pub struct Plan {
    pub trigger: String,
    pub steps: HashMap<String, Step>,
    /// (node, branch label lower-cased or "" for the one plain edge) → target.
    pub next: HashMap<(String, String), String>,
    /// Nodes in design order (for counts).
    pub order: Vec<String>,
}

impl Plan {
    /// Where a node's outcome leads; `None`: the run is complete.
    pub fn after(&self, node: &str, branch: &str) -> Option<&str> {
        self.next.get(&(node.to_string(), branch.to_ascii_lowercase())).map(String::as_str)
    }

    /// The channels the plan sends on (a run exits when the customer opts out of all of them).
    pub fn channels(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        for s in self.steps.values() {
            match s {
                Step::Action { action: Action::SendEmail { .. }, .. } if !out.contains(&"email") => out.push("email"),
                Step::Action { action: Action::SendSms { .. }, .. } if !out.contains(&"sms") => out.push("sms"),
                _ => {}
            }
        }
        out
    }

    /// Event names the plan waits for.
    pub fn waited_events(&self) -> Vec<String> {
        self.steps
            .values()
            .filter_map(|s| match s {
                Step::WaitForEvent { event, .. } => Some(event.clone()),
                _ => None,
            })
            .collect()
    }
}

pub const ACTIONS: &[&str] = &[
    "send_email",
    "send_sms",
    "webhook",
    "update_traits",
    "add_tag",
    "remove_tag",
    "add_to_static_segment",
    "remove_from_static_segment",
    "enroll",
    "create_activity",
];

const MAX_NODES: usize = 500;

fn text<'a>(data: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    data.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
}

fn label(n: &Node) -> String {
    text(&n.data, "label").unwrap_or("").to_string()
}

/// What an action label suggests it sends, to say what is missing in the seed's label-only
/// designs.
fn guess_action(label: &str) -> Option<&'static str> {
    let l = label.to_ascii_lowercase();
    if l.contains("sms") || l.contains("text message") {
        Some("send_sms")
    } else if l.contains("email") || l.contains("e-mail") || l.contains("mail") {
        Some("send_email")
    } else if l.contains("webhook") {
        Some("webhook")
    } else {
        None
    }
}

fn parse_action(n: &Node, out: &mut Vec<Problem>) -> Option<Action> {
    let d = &n.data;
    let id = n.id.as_str();
    let Some(kind) = text(d, "action") else {
        let hint = match guess_action(&label(n)) {
            Some("send_email") => {
                " — for an email (\"send_email\"), also data.subject and data.body, or data.template_id".to_string()
            }
            Some("send_sms") => " — for an SMS (\"send_sms\"), also data.message, or data.template_id".to_string(),
            Some("webhook") => " — for a webhook, also data.url".to_string(),
            _ => String::new(),
        };
        out.push(Problem::node(id, "data.action", format!("is required: one of {}{hint}", ACTIONS.join(", "))));
        return None;
    };
    let template = d.get("template_id").and_then(Value::as_i64);
    let before = out.len();
    let action = match kind {
        "send_email" => {
            let (subject, body) = (text(d, "subject"), text(d, "body"));
            if template.is_none() {
                if subject.is_none() {
                    out.push(Problem::node(id, "data.subject", "is required for send_email (or data.template_id)"));
                }
                if body.is_none() {
                    out.push(Problem::node(id, "data.body", "is required for send_email (or data.template_id)"));
                }
            }
            Action::SendEmail { subject: subject.map(Into::into), body: body.map(Into::into), template }
        }
        "send_sms" => {
            let message = text(d, "message");
            if template.is_none() && message.is_none() {
                out.push(Problem::node(id, "data.message", "is required for send_sms (or data.template_id)"));
            }
            Action::SendSms { message: message.map(Into::into), template }
        }
        "webhook" => {
            let url = text(d, "url").unwrap_or("");
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                out.push(Problem::node(id, "data.url", "is required for webhook: an http(s) URL"));
            }
            let body = d.get("body").cloned().unwrap_or(Value::Object(Map::new()));
            if !body.is_object() {
                out.push(Problem::node(id, "data.body", "must be a JSON object"));
            }
            Action::Webhook { url: url.to_string(), body }
        }
        "update_traits" => match d.get("traits") {
            Some(Value::Object(t)) if !t.is_empty() => Action::UpdateTraits(t.clone()),
            _ => {
                out.push(Problem::node(id, "data.traits", "is required for update_traits: a non-empty object"));
                return None;
            }
        },
        "add_tag" | "remove_tag" => {
            let Some(tag) = text(d, "tag").filter(|t| t.len() <= 100) else {
                out.push(Problem::node(id, "data.tag", format!("is required for {kind}: 1 to 100 characters")));
                return None;
            };
            if kind == "add_tag" {
                Action::AddTag(tag.to_string())
            } else {
                Action::RemoveTag(tag.to_string())
            }
        }
        "add_to_static_segment" | "remove_from_static_segment" => {
            let Some(s) = d.get("segment_id").and_then(Value::as_i64) else {
                out.push(Problem::node(id, "data.segment_id", format!("is required for {kind}: a static segment id")));
                return None;
            };
            if kind == "add_to_static_segment" {
                Action::AddToStaticSegment(s)
            } else {
                Action::RemoveFromStaticSegment(s)
            }
        }
        "enroll" => {
            let Some(a) = d.get("automation_id").and_then(Value::as_i64) else {
                out.push(Problem::node(id, "data.automation_id", "is required for enroll: another automation's id"));
                return None;
            };
            Action::Enroll(a)
        }
        "create_activity" => {
            let kind = text(d, "type").unwrap_or("task");
            if !ACTIVITY_TYPES.contains(&kind) {
                out.push(Problem::node(id, "data.type", format!("must be one of {}", ACTIVITY_TYPES.join(", "))));
            }
            let subject = text(d, "subject").filter(|t| t.chars().count() <= 200);
            if subject.is_none() {
                out.push(Problem::node(id, "data.subject", "is required for create_activity: 1 to 200 characters"));
            }
            let due_in = match d.get("due_in") {
                None | Some(Value::Null) => None,
                Some(v) => {
                    let parsed = v.as_str().and_then(duration::parse);
                    if parsed.is_none() {
                        out.push(Problem::node(
                            id,
                            "data.due_in",
                            "must be a duration such as \"2d\", \"4h\" or \"P1D\"",
                        ));
                    }
                    parsed
                }
            };
            let assigned_to = match d.get("assigned_to") {
                None | Some(Value::Null) => None,
                Some(v) => {
                    if v.as_i64().is_none() {
                        out.push(Problem::node(id, "data.assigned_to", "must be a member's user id"));
                    }
                    v.as_i64()
                }
            };
            let on_lead = match text(d, "entity") {
                None | Some("contact") => false,
                Some("lead") => true,
                Some(_) => {
                    out.push(Problem::node(id, "data.entity", "must be contact or lead"));
                    false
                }
            };
            Action::CreateActivity(ActivitySpec {
                kind: kind.to_string(),
                subject: subject.unwrap_or_default().to_string(),
                description: text(d, "description").map(str::to_string),
                due_in,
                assigned_to,
                on_lead,
            })
        }
        other => {
            out.push(Problem::node(
                id,
                "data.action",
                format!("unknown action {other:?}: one of {}", ACTIONS.join(", ")),
            ));
            return None;
        }
    };
    (out.len() == before).then_some(action)
}

fn parse_time_of_day(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.get(..2).unwrap_or(m).parse().ok()?);
    (h < 24 && m < 60).then_some(h * 3600 + m * 60)
}

fn parse_zone(v: Option<&str>) -> Option<Zone> {
    match v {
        None | Some("workspace") => Some(Zone::Workspace),
        Some("customer") => Some(Zone::Customer),
        Some(name) => name.parse().ok().map(Zone::Named),
    }
}

const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn parse_delay(n: &Node, out: &mut Vec<Problem>) -> Option<Delay> {
    let d = &n.data;
    let id = n.id.as_str();
    if let Some(v) = d.get("duration") {
        let parsed = v.as_str().and_then(duration::parse);
        if parsed.is_none() {
            out.push(Problem::node(
                id,
                "data.duration",
                "must be a duration such as \"3d\", \"2h\", \"90s\" or \"P3D\"",
            ));
        }
        return parsed.map(Delay::For);
    }
    if let Some(until) = d.get("until") {
        let time = until.get("time").and_then(Value::as_str).and_then(parse_time_of_day);
        if time.is_none() {
            out.push(Problem::node(id, "data.until.time", "is required: a time of day such as \"09:00\""));
        }
        let mut weekdays = Vec::new();
        if let Some(list) = until.get("weekdays") {
            match list.as_array() {
                Some(a) => {
                    for w in a {
                        let day = w.as_str().map(|s| s.to_ascii_lowercase());
                        match day.and_then(|s| WEEKDAYS.iter().position(|d| s.starts_with(d))) {
                            Some(i) => weekdays.push(i as u32),
                            None => out.push(Problem::node(
                                id,
                                "data.until.weekdays",
                                "must list days such as \"mon\", \"fri\"",
                            )),
                        }
                    }
                }
                None => out.push(Problem::node(id, "data.until.weekdays", "must be an array of days")),
            }
        }
        let zone = parse_zone(until.get("timezone").and_then(Value::as_str));
        if zone.is_none() {
            out.push(Problem::node(id, "data.until.timezone", "must be \"workspace\", \"customer\" or an IANA zone"));
        }
        return Some(Delay::Until { time: time?, weekdays, zone: zone? });
    }
    if let Some(t) = d.get("until_trait") {
        let name = t.get("trait").and_then(Value::as_str).filter(|s| !s.is_empty());
        if name.is_none() {
            out.push(Problem::node(id, "data.until_trait.trait", "is required: the name of a date trait"));
        }
        let offset = match t.get("offset") {
            None => Some(Duration::zero()),
            Some(v) => v.as_str().and_then(|s| match s.strip_prefix('-') {
                Some(rest) => duration::parse(rest).map(|d| -d),
                None => duration::parse(s),
            }),
        };
        if offset.is_none() {
            out.push(Problem::node(id, "data.until_trait.offset", "must be a duration, negative for before (\"-7d\")"));
        }
        return Some(Delay::UntilTrait { name: name?.to_string(), offset: offset? });
    }
    match duration::from_label(&label(n)) {
        Some(dur) => Some(Delay::For(dur)),
        None => {
            out.push(Problem::node(
                id,
                "data.duration",
                "is required: how long to wait (\"3d\", \"2h\", \"P3D\"), or data.until / data.until_trait",
            ));
            None
        }
    }
}

fn parse_step(n: &Node, out: &mut Vec<Problem>) -> Option<Step> {
    let d = &n.data;
    let id = n.id.as_str();
    match n.kind.as_str() {
        "trigger" => Some(Step::Trigger),
        "action" => {
            let continue_on_failure = match text(d, "on_failure") {
                None | Some("stop") => false,
                Some("continue") => true,
                Some(_) => {
                    out.push(Problem::node(id, "data.on_failure", "must be \"stop\" or \"continue\""));
                    false
                }
            };
            parse_action(n, out).map(|action| Step::Action { action, continue_on_failure })
        }
        "delay" => parse_delay(n, out).map(Step::Delay),
        "condition" => {
            let Some(f) = d.get("filter") else {
                out.push(Problem::node(
                    id,
                    "data.filter",
                    "is required: a segment filter, e.g. {\"event\": \"purchase\"} for \"Made a Purchase?\"",
                ));
                return None;
            };
            let since_start = match text(d, "since") {
                None | Some("run_start") => true,
                Some("ever") => false,
                Some(_) => {
                    out.push(Problem::node(id, "data.since", "must be \"run_start\" or \"ever\""));
                    return None;
                }
            };
            match cairn_segments::parse(f, &format!("nodes.{id}.data.filter")) {
                Ok(filter) => Some(Step::Condition { filter, since_start }),
                Err(e) => {
                    out.push(Problem { node: Some(id.to_string()), edge: None, field: e.field, message: e.message });
                    None
                }
            }
        }
        "wait_for_event" | "wait" => {
            let event = text(d, "event");
            if event.is_none() {
                out.push(Problem::node(id, "data.event", "is required: the event to wait for"));
            }
            let timeout = text(d, "timeout").and_then(duration::parse);
            if timeout.is_none() {
                out.push(Problem::node(id, "data.timeout", "is required: how long to wait (\"3d\", \"P1D\")"));
            }
            Some(Step::WaitForEvent { event: event?.to_string(), timeout: timeout? })
        }
        "split" => {
            let Some(list) = d.get("branches").and_then(Value::as_array).filter(|a| a.len() >= 2) else {
                out.push(Problem::node(id, "data.branches", "is required: at least two {label, percent}"));
                return None;
            };
            let mut branches = Vec::new();
            for (i, b) in list.iter().enumerate() {
                let label = b.get("label").and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
                let pct = b.get("percent").and_then(Value::as_u64).filter(|p| *p <= 100);
                match (label, pct) {
                    (Some(l), Some(p)) => branches.push((l.to_string(), p as u32)),
                    _ => out.push(Problem::node(
                        id,
                        &format!("data.branches[{i}]"),
                        "needs a label and a percent (0–100)",
                    )),
                }
            }
            if branches.len() == list.len() && branches.iter().map(|b| b.1).sum::<u32>() != 100 {
                out.push(Problem::node(id, "data.branches", "percentages must add up to 100"));
                return None;
            }
            (branches.len() == list.len()).then_some(Step::Split(branches))
        }
        "exit" => Some(Step::Exit),
        other => {
            out.push(Problem::node(
                id,
                "type",
                format!(
                    "unknown node type {other:?}: trigger, action, delay, condition, wait_for_event, split or exit"
                ),
            ));
            None
        }
    }
}

/// Checks the shape a draft must have to be stored at all: at most 500 nodes, ids unique and
/// non-empty. Configuration is checked by [`compile`] (drafts may be incomplete).
pub fn check_draft(d: &Design) -> Vec<Problem> {
    let mut out = Vec::new();
    if d.nodes.len() > MAX_NODES {
        out.push(Problem::design("nodes", format!("at most {MAX_NODES} nodes")));
    }
    let mut seen = HashSet::new();
    for (i, n) in d.nodes.iter().enumerate() {
        if n.id.trim().is_empty() || n.id.len() > 100 {
            out.push(Problem::design(&format!("nodes[{i}].id"), "is required: 1 to 100 characters"));
        } else if !seen.insert(n.id.as_str()) {
            out.push(Problem::node(&n.id, "id", "is used by more than one node"));
        }
    }
    out
}

/// Compiles a design, or lists everything wrong with it: exactly one trigger, edges between
/// existing nodes, no cycles, every node reachable from the trigger, a condition's or wait's
/// one "Yes" and one "No" edge, a split's one edge per branch, one way on from the other nodes,
/// and every node's configuration complete.
pub fn compile(d: &Design) -> Result<Plan, Vec<Problem>> {
    let mut out = check_draft(d);
    let mut steps = HashMap::new();
    for n in &d.nodes {
        if let Some(s) = parse_step(n, &mut out) {
            steps.insert(n.id.clone(), s);
        }
    }
    let triggers: Vec<&Node> = d.nodes.iter().filter(|n| n.kind == "trigger").collect();
    match triggers.len() {
        0 => out.push(Problem::design("nodes", "a design needs exactly one trigger node; it has none")),
        1 => {}
        n => {
            for t in &triggers[1..] {
                out.push(Problem::node(&t.id, "type", format!("a design needs exactly one trigger node; it has {n}")));
            }
        }
    }
    let index: HashMap<&str, usize> = d.nodes.iter().enumerate().map(|(i, n)| (n.id.as_str(), i)).collect();
    let mut g: DiGraph<&str, ()> = DiGraph::new();
    let idx: Vec<_> = d.nodes.iter().map(|n| g.add_node(n.id.as_str())).collect();
    let mut outgoing: HashMap<&str, Vec<&Edge>> = HashMap::new();
    let mut edge_ids = HashSet::new();
    for (i, e) in d.edges.iter().enumerate() {
        let eid = if e.id.is_empty() { format!("#{i}") } else { e.id.clone() };
        if !edge_ids.insert(eid.clone()) {
            out.push(Problem::edge(&eid, "id", "is used by more than one edge"));
        }
        let (Some(&s), Some(&t)) = (index.get(e.source.as_str()), index.get(e.target.as_str())) else {
            if !index.contains_key(e.source.as_str()) {
                out.push(Problem::edge(&eid, "source", format!("points at {:?}, which is not a node", e.source)));
            }
            if !index.contains_key(e.target.as_str()) {
                out.push(Problem::edge(&eid, "target", format!("points at {:?}, which is not a node", e.target)));
            }
            continue;
        };
        if d.nodes[t].kind == "trigger" {
            out.push(Problem::edge(&eid, "target", "a trigger cannot have incoming edges"));
        }
        g.add_edge(idx[s], idx[t], ());
        outgoing.entry(d.nodes[s].id.as_str()).or_default().push(e);
    }
    if petgraph::algo::is_cyclic_directed(&g) {
        let sccs = petgraph::algo::tarjan_scc(&g);
        let mut in_cycle: Vec<&str> =
            sccs.iter().filter(|c| c.len() > 1).flatten().map(|i| *g.node_weight(*i).expect("node")).collect();
        in_cycle.extend(g.node_indices().filter(|i| g.contains_edge(*i, *i)).map(|i| *g.node_weight(i).expect("node")));
        in_cycle.sort_unstable();
        in_cycle.dedup();
        for n in in_cycle {
            out.push(Problem::node(n, "edges", "is part of a cycle; a flow must not loop back"));
        }
    }
    if let Some(t) = triggers.first() {
        // From the first trigger (with several, the others are reported as unreachable too).
        let mut reached = HashSet::new();
        let mut dfs = Dfs::new(&g, idx[index[t.id.as_str()]]);
        while let Some(i) = dfs.next(&g) {
            reached.insert(i);
        }
        for (i, n) in d.nodes.iter().enumerate() {
            if !reached.contains(&idx[i]) {
                out.push(Problem::node(&n.id, "edges", "cannot be reached from the trigger"));
            }
        }
    }
    let mut next = HashMap::new();
    for n in &d.nodes {
        let edges = outgoing.get(n.id.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        let labelled = |want: &str| {
            edges
                .iter()
                .filter(|e| e.label.as_deref().map(str::trim).is_some_and(|l| l.eq_ignore_ascii_case(want)))
                .count()
        };
        match n.kind.as_str() {
            "condition" | "wait_for_event" | "wait" => {
                for want in ["Yes", "No"] {
                    let k = labelled(want);
                    if k != 1 {
                        out.push(Problem::node(
                            &n.id,
                            "edges",
                            format!("needs exactly one \"{want}\" edge; it has {k}"),
                        ));
                    }
                }
                if edges.len() > 2 {
                    out.push(Problem::node(&n.id, "edges", "may only have its \"Yes\" and \"No\" edges"));
                }
            }
            "split" => {
                if let Some(Step::Split(branches)) = steps.get(&n.id) {
                    for (l, _) in branches {
                        let k = labelled(l);
                        if k != 1 {
                            out.push(Problem::node(
                                &n.id,
                                "edges",
                                format!("needs exactly one edge labelled {l:?}; it has {k}"),
                            ));
                        }
                    }
                }
            }
            "exit" => {
                if !edges.is_empty() {
                    out.push(Problem::node(&n.id, "edges", "an exit node ends the run; it cannot lead anywhere"));
                }
            }
            _ => {
                if edges.len() > 1 {
                    out.push(Problem::node(
                        &n.id,
                        "edges",
                        format!("may lead to one node only; it has {} edges", edges.len()),
                    ));
                }
            }
        }
        for e in edges {
            let key = match n.kind.as_str() {
                "condition" | "wait_for_event" | "wait" | "split" => {
                    e.label.clone().unwrap_or_default().trim().to_ascii_lowercase()
                }
                _ => String::new(),
            };
            next.insert((n.id.clone(), key), e.target.clone());
        }
    }
    if !out.is_empty() {
        return Err(out);
    }
    Ok(Plan { trigger: triggers[0].id.clone(), steps, next, order: d.nodes.iter().map(|n| n.id.clone()).collect() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seed() -> Design {
        serde_json::from_value(json!({
            "nodes": [
              { "id": "t1", "type": "trigger", "data": { "label": "New Customer" }, "position": { "x": 250, "y": 0 } },
              { "id": "a1", "type": "action",  "data": { "label": "Send Welcome Email" }, "position": { "x": 250, "y": 120 } },
              { "id": "d1", "type": "delay",   "data": { "label": "Wait 3 Days" }, "position": { "x": 250, "y": 240 } },
              { "id": "c1", "type": "condition","data": { "label": "Made a Purchase?" }, "position": { "x": 250, "y": 360 } },
              { "id": "a2", "type": "action",  "data": { "label": "Send Reminder" }, "position": { "x": 80, "y": 480 } },
              { "id": "a3", "type": "action",  "data": { "label": "Send Thank You" }, "position": { "x": 420, "y": 480 } }
            ],
            "edges": [
              { "id": "e1", "source": "t1", "target": "a1" },
              { "id": "e2", "source": "a1", "target": "d1" },
              { "id": "e3", "source": "d1", "target": "c1" },
              { "id": "e4", "source": "c1", "target": "a2", "label": "No" },
              { "id": "e5", "source": "c1", "target": "a3", "label": "Yes" }
            ]
        }))
        .unwrap()
    }

    #[test]
    fn the_seeds_label_only_design_lists_what_each_node_misses() {
        let problems = compile(&seed()).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            ["nodes.a1.data.action", "nodes.c1.data.filter", "nodes.a2.data.action", "nodes.a3.data.action"]
        );
        assert!(problems[0].message.contains("send_email"), "{}", problems[0].message);
        assert_eq!(problems[0].node.as_deref(), Some("a1"));
    }

    #[test]
    fn the_seeds_design_filled_in_compiles() {
        let mut d = seed();
        let set = |d: &mut Design, id: &str, data: Value| {
            let n = d.nodes.iter_mut().find(|n| n.id == id).unwrap();
            n.data.extend(data.as_object().unwrap().clone());
        };
        set(&mut d, "a1", json!({"action": "send_email", "subject": "Welcome", "body": "<p>Hi {{name}}</p>"}));
        set(&mut d, "c1", json!({"filter": {"event": "purchase"}}));
        set(&mut d, "a2", json!({"action": "send_sms", "message": "Still thinking?"}));
        set(&mut d, "a3", json!({"action": "add_tag", "tag": "buyer"}));
        let p = compile(&d).unwrap();
        assert!(matches!(p.steps["d1"], Step::Delay(Delay::For(x)) if x == Duration::days(3)));
        assert_eq!(p.after("c1", "Yes"), Some("a3"));
        assert_eq!(p.after("c1", "no"), Some("a2"));
        assert_eq!(p.after("a3", ""), None);
        assert_eq!(p.channels().len(), 2);
    }

    #[test]
    fn graph_problems_are_all_reported_with_node_ids() {
        let d: Design = serde_json::from_value(json!({
            "nodes": [
              {"id": "t1", "type": "trigger", "data": {}},
              {"id": "t2", "type": "trigger", "data": {}},
              {"id": "x", "type": "delay", "data": {"duration": "1h"}},
              {"id": "y", "type": "delay", "data": {"duration": "1h"}},
              {"id": "c", "type": "condition", "data": {"filter": {"field": "traits.plan", "op": "eq", "value": "pro"}}},
              {"id": "lonely", "type": "exit", "data": {}}
            ],
            "edges": [
              {"id": "e1", "source": "t1", "target": "x"},
              {"id": "e2", "source": "x", "target": "y"},
              {"id": "e3", "source": "y", "target": "x"},
              {"id": "e4", "source": "t1", "target": "c", "label": "Yes"},
              {"id": "e5", "source": "c", "target": "ghost", "label": "Yes"}
            ]
        }))
        .unwrap();
        let problems = compile(&d).unwrap_err();
        let has = |field: &str, words: &str| problems.iter().any(|p| p.field == field && p.message.contains(words));
        assert!(has("nodes.t2.type", "exactly one trigger"), "{problems:#?}");
        assert!(has("edges.e5.target", "not a node"));
        assert!(has("nodes.x.edges", "cycle") && has("nodes.y.edges", "cycle"));
        assert!(has("nodes.lonely.edges", "cannot be reached"));
        assert!(has("nodes.t2.edges", "cannot be reached"));
        assert!(has("nodes.c.edges", "exactly one \"No\" edge; it has 0"));
        assert!(has("nodes.t1.edges", "one node only"));
    }

    #[test]
    fn node_configuration_is_checked() {
        let d: Design = serde_json::from_value(json!({
            "nodes": [
              {"id": "t", "type": "trigger"},
              {"id": "d", "type": "delay", "data": {"duration": "soon"}},
              {"id": "w", "type": "wait_for_event", "data": {"event": "purchase"}},
              {"id": "s", "type": "split", "data": {"branches": [{"label": "A", "percent": 60}, {"label": "B", "percent": 30}]}},
              {"id": "h", "type": "action", "data": {"action": "webhook", "url": "ftp://x"}},
              {"id": "q", "type": "teleport"}
            ],
            "edges": []
        }))
        .unwrap();
        let problems = compile(&d).unwrap_err();
        let fields: HashSet<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        for f in [
            "nodes.d.data.duration",
            "nodes.w.data.timeout",
            "nodes.s.data.branches",
            "nodes.h.data.url",
            "nodes.q.type",
        ] {
            assert!(fields.contains(f), "{f} missing from {fields:?}");
        }
    }
}

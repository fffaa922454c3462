//! Every event name an endpoint can subscribe to, from all the seeds (plus `*` and
//! `category.*` patterns). Where seeds name one happening differently (`deal.created` and
//! `opportunity.created`, `lead.stage_changed` and `lead.stageChanged`), Cairn emits one
//! canonical event and [`aliases`] lists the other names: an endpoint subscribed to any of them
//! receives the event once, under the first of the names it subscribed to.

pub const EVENTS: &[(&str, &str)] = &[
    ("customer.created", "a profile gets its first email or user id (seed 003)"),
    ("customer.segment_entered", "a customer enters a segment (seed 003)"),
    ("customer.segment_exited", "a customer leaves a segment (seed 003)"),
    ("customer.rfm_changed", "a customer's RFM scores or segment changed"),
    ("campaign.sent", "a campaign finished sending (seed 003)"),
    ("automation.triggered", "an automation run started (seed 003)"),
    ("lead.created", "seeds 000, 001, 004"),
    ("lead.updated", "seeds 000, 001, 004"),
    ("lead.deleted", "seeds 000, 001, 004"),
    ("lead.stage_changed", "seed 000"),
    ("lead.stageChanged", "seed 001"),
    ("lead.converted", "seed 004"),
    ("deal.created", "seeds 000, 001"),
    ("deal.updated", "seeds 000, 001"),
    ("deal.deleted", "seeds 000, 001"),
    ("deal.stage_changed", "seed 000"),
    ("deal.stageChanged", "seed 001"),
    ("deal.status_changed", "seed 000"),
    ("opportunity.created", "seed 004"),
    ("opportunity.updated", "an opportunity's fields changed (deal.updated under seed 004's word)"),
    ("opportunity.deleted", "an opportunity was deleted (deal.deleted under seed 004's word)"),
    ("opportunity.stage_changed", "seed 004"),
    ("opportunity.won", "seed 004"),
    ("opportunity.lost", "seed 004"),
    ("contact.created", "seeds 001, 004"),
    ("contact.updated", "seeds 001, 004"),
    ("contact.deleted", "seed 001"),
    ("client.created", "seed 001"),
    ("client.updated", "seed 001"),
    ("client.deleted", "seed 001"),
    ("prospect.created", "seed 004"),
    ("prospect.converted", "seed 004"),
    ("prospect.updated", "a prospect account changed (client.updated under seed 004's word)"),
    ("prospect.deleted", "a prospect account was deleted (client.deleted under seed 004's word)"),
    ("contact.stage_changed", "a contact's lifecycle stage changed (contact.stageChanged, snake_case)"),
    ("activity.completed", "seed 004"),
    ("invoice.created", "seed 001"),
    ("invoice.updated", "seed 001"),
    ("invoice.paid", "seed 001"),
    ("quotation.created", "seed 001"),
    ("quotation.updated", "seed 001"),
    ("quotation.accepted", "seed 001"),
    ("payment.received", "seed 001"),
    ("form.submission.created", "seed 000"),
    ("form.response.created", "seed 001"),
    ("webhook.ping", "a test delivery (POST /v1/webhooks/{id}/ping)"),
];

/// The other seeds' names of an emitted event (see the module's documentation).
pub fn aliases(event: &str) -> &'static [&'static str] {
    match event {
        "lead.stage_changed" => &["lead.stageChanged"],
        "opportunity.created" => &["deal.created"],
        "deal.updated" => &["opportunity.updated"],
        "deal.deleted" => &["opportunity.deleted"],
        "opportunity.stage_changed" => &["deal.stage_changed", "deal.stageChanged"],
        "opportunity.won" | "opportunity.lost" | "deal.status_changed" => &["deal.status_changed"],
        "prospect.created" => &["client.created"],
        "client.updated" => &["prospect.updated"],
        "client.deleted" => &["prospect.deleted"],
        "contact.stageChanged" => &["contact.stage_changed"],
        "form.submission.created" => &["form.response.created"],
        _ => &[],
    }
}

/// The name under which an endpoint with `subscribed` receives `event`, if it receives it.
pub fn delivered_as(event: &str, subscribed: impl Fn(&str) -> bool) -> Option<&str> {
    std::iter::once(event).chain(aliases(event).iter().copied()).find(|n| subscribed(n))
}

/// The JSON Schema of the `data` object of the events Cairn emits so far; `None` for events of
/// entities that are not built yet (they can be subscribed to already, and arrive once they are).
pub fn payload_schema(event: &str) -> Option<serde_json::Value> {
    use serde_json::json;
    let rfm = json!({"type": ["object", "null"], "required": ["rfm_recency", "rfm_frequency", "rfm_monetary", "rfm_score", "rfm_segment"],
        "properties": {
            "rfm_recency": {"type": "integer", "minimum": 1, "maximum": 5},
            "rfm_frequency": {"type": "integer", "minimum": 1, "maximum": 5},
            "rfm_monetary": {"type": "integer", "minimum": 1, "maximum": 5},
            "rfm_score": {"type": "integer", "minimum": 3, "maximum": 15},
            "rfm_segment": {"enum": ["Champions", "Loyal Customers", "At Risk", "Lost"]}}});
    Some(match event {
        "customer.created" => json!({"type": "object", "required": ["customer_id", "created_at"], "properties": {
            "customer_id": {"type": "integer"},
            "customer_email": {"type": ["string", "null"], "format": "email"},
            "user_id": {"type": ["string", "null"]},
            "name": {"type": ["string", "null"]},
            "created_at": {"type": "string", "format": "date-time"}}}),
        "customer.rfm_changed" => json!({"type": "object", "required": ["customer_id", "old", "new"], "properties": {
            "customer_id": {"type": "integer"},
            "old": rfm,
            "new": rfm}}),
        "customer.segment_entered" | "customer.segment_exited" => json!({"type": "object",
            "required": ["customer_id", "customer_email", "segment_id", "segment_name"], "properties": {
            "customer_id": {"type": "integer"},
            "customer_email": {"type": ["string", "null"], "format": "email"},
            "segment_id": {"type": "integer"},
            "segment_name": {"type": "string"}}}),
        e if crm_schema(e).is_some() => return crm_schema(e),
        "webhook.ping" => json!({"type": "object", "required": ["webhook_id", "message"], "properties": {
            "webhook_id": {"type": "integer"},
            "message": {"type": "string"}}}),
        _ => return None,
    })
}

/// Payload schemas of the CRM's events (docs/crm.md describes each field).
fn crm_schema(event: &str) -> Option<serde_json::Value> {
    use serde_json::json;
    let id = json!({"type": "integer"});
    let (required, props) = match event.split('.').next()? {
        "lead" => (
            vec!["lead_id", "id", "email", "source", "status", "stage"],
            json!({
            "lead_id": id, "id": id, "name": {"type": "string"}, "email": {"type": ["string", "null"]},
            "mobile": {"type": ["string", "null"]}, "source": {"type": ["string", "null"]},
            "status": {"enum": ["new", "contacted", "qualified", "unqualified", "converted"]},
            "stage": {"type": "string"}, "stageId": {"type": ["integer", "null"]}, "value": {"type": ["number", "null"]},
            "customFields": {"type": "object"}, "ownerId": {"type": ["integer", "null"]},
            "ownerName": {"type": ["string", "null"]}, "createdAt": {"type": "string", "format": "date-time"},
            "contact_id": {"type": ["integer", "null"]}, "prospect_id": {"type": ["integer", "null"]},
            "opportunity_id": {"type": ["integer", "null"]}}),
        ),
        "deal" | "opportunity" => (
            vec!["opportunity_id", "id", "name", "number", "value", "status", "stageId", "pipelineId"],
            json!({
            "opportunity_id": id, "id": id, "name": {"type": "string"}, "title": {"type": "string"},
            "number": {"type": "string", "pattern": "^DL-\\d{4,}$"}, "value": {"type": "number"}, "price": {"type": "number"},
            "status": {"enum": ["open", "won", "lost"]}, "priority": {"type": ["string", "null"]},
            "expectedCloseDate": {"type": ["string", "null"]}, "client": {"type": ["object", "null"]},
            "stage": {"type": ["string", "null"]}, "stageId": id, "pipelineId": id, "leadId": {"type": ["integer", "null"]},
            "ownerId": {"type": ["integer", "null"]}, "ownerName": {"type": ["string", "null"]},
            "close_reason": {"type": ["string", "null"]}, "customFields": {"type": "object"}}),
        ),
        "client" | "prospect" => (
            vec!["prospect_id", "id", "name", "number", "type"],
            json!({
            "prospect_id": id, "id": id, "name": {"type": "string"}, "number": {"type": "string"},
            "taxNumber": {"type": ["string", "null"]}, "website": {"type": ["string", "null"]},
            "customFields": {"type": "object"}, "type": {"const": "company"}, "email": {"type": ["string", "null"]},
            "phone": {"type": ["string", "null"]}, "status": {"enum": ["active", "inactive", "converted"]}}),
        ),
        "contact" => (
            vec!["contact_id", "id", "email"],
            json!({
            "contact_id": id, "id": id, "firstName": {"type": ["string", "null"]}, "lastName": {"type": ["string", "null"]},
            "email": {"type": ["string", "null"]}, "mobile": {"type": ["string", "null"]},
            "designation": {"type": ["string", "null"]}, "clientId": {"type": ["integer", "null"]},
            "lifecycle_stage": {"type": ["string", "null"]}, "createdAt": {"type": "string", "format": "date-time"}}),
        ),
        "activity" => (
            vec!["activity_id", "id", "type", "subject", "completed"],
            json!({
            "activity_id": id, "id": id, "type": {"enum": ["call", "email", "meeting", "task", "note"]},
            "subject": {"type": "string"}, "entity_type": {"type": ["string", "null"]},
            "entity_id": {"type": ["integer", "null"]}, "completed": {"type": "boolean"},
            "completed_at": {"type": ["string", "null"]}}),
        ),
        "form" => (
            vec!["id", "formId", "data", "createdAt"],
            json!({
            "id": id, "submission_id": id, "formId": id, "form_id": id, "form_name": {"type": "string"},
            "lead_id": {"type": ["integer", "null"]}, "data": {"type": "object"},
            "createdAt": {"type": "string", "format": "date-time"}}),
        ),
        _ => return None,
    };
    if event.starts_with("invoice") || event.starts_with("quotation") || event.starts_with("payment") {
        return None;
    }
    Some(json!({"type": "object", "required": required, "properties": props}))
}

/// Whether a subscription pattern names catalogued events: an exact name, `*`, or
/// `category.*` for a category that exists.
pub fn is_valid_pattern(p: &str) -> bool {
    if p == "*" {
        return true;
    }
    if let Some(cat) = p.strip_suffix(".*") {
        return EVENTS.iter().any(|(n, _)| n.starts_with(cat) && n[cat.len()..].starts_with('.'));
    }
    EVENTS.iter().any(|(n, _)| *n == p)
}

#[cfg(test)]
mod tests {
    #[test]
    fn patterns_are_checked_against_the_catalogue() {
        for ok in ["*", "lead.*", "lead.created", "form.*", "deal.stageChanged"] {
            assert!(super::is_valid_pattern(ok), "{ok}");
        }
        for bad in ["lead", "leads.*", "lead.exploded", ""] {
            assert!(!super::is_valid_pattern(bad), "{bad}");
        }
    }
}

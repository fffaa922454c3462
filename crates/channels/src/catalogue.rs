//! Every event name an endpoint can subscribe to, from all the seeds (plus `*` and
//! `category.*` patterns). Seed 001's camelCase names are listed as well as the snake_case
//! ones: both are accepted and delivered under the name the event is emitted with.

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
        "webhook.ping" => json!({"type": "object", "required": ["webhook_id", "message"], "properties": {
            "webhook_id": {"type": "integer"},
            "message": {"type": "string"}}}),
        _ => return None,
    })
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

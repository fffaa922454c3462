-- Inbound webhooks (docs/webhooks.md): seed 002's CRM webhook stores each event as CRM
-- activity of the lead its `crm_lead_id` names (a field of leads and of form submissions);
-- per-workspace inbound secrets; delivery ids already processed (replay protection).

ALTER TABLE leads ADD COLUMN crm_lead_id TEXT;
CREATE INDEX leads_crm_lead_id ON leads (tenant_id, crm_lead_id) WHERE crm_lead_id IS NOT NULL;

ALTER TABLE form_submissions ADD COLUMN crm_lead_id TEXT;
CREATE INDEX form_submissions_crm_lead_id ON form_submissions (tenant_id, crm_lead_id, created_at)
    WHERE crm_lead_id IS NOT NULL;

CREATE TABLE lead_crm_activities (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id       INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    lead_id         INTEGER NOT NULL REFERENCES leads(id) ON DELETE CASCADE,
    crm_lead_id     TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    -- 'lead' (the lead's own crm_lead_id) or 'submission' (a follow-up form submission's)
    matched_by      TEXT NOT NULL,
    -- the whole request body, as received
    payload         TEXT NOT NULL,
    delivery_id     TEXT,
    created_at      TEXT NOT NULL
);
CREATE INDEX lead_crm_activities_lead ON lead_crm_activities (lead_id, id);

-- One row per workspace that configured its own inbound secrets.
CREATE TABLE inbound_hooks (
    tenant_id       INTEGER PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    -- SHA-256 (hex) of the bearer secret; the secret itself is shown once
    secret_hash     TEXT UNIQUE,
    secret_prefix   TEXT,
    -- the HMAC key senders sign `timestamp.body` with (kept: verification needs it)
    signing_secret  TEXT,
    updated_at      TEXT NOT NULL
);

CREATE TABLE inbound_deliveries (
    tenant_id       INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    delivery_id     TEXT NOT NULL,
    received_at     TEXT NOT NULL,
    PRIMARY KEY (tenant_id, delivery_id)
);
CREATE INDEX inbound_deliveries_received ON inbound_deliveries (received_at);

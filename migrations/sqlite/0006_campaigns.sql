-- Campaigns (docs/campaigns.md): definitions, one send record per (campaign, customer,
-- channel), the per-workspace suppression list, channel settings per workspace, the lease of
-- the instance that sends a workspace's campaigns, and server-wide signing secrets.

CREATE TABLE campaigns (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id        INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    kind             TEXT NOT NULL,
    segment_id       INTEGER,
    subject          TEXT,
    body             TEXT,
    from_name        TEXT,
    from_email       TEXT,
    reply_to         TEXT,
    status           TEXT NOT NULL,
    send_at          TEXT,
    track_opens      INTEGER NOT NULL DEFAULT 1,
    track_clicks     INTEGER NOT NULL DEFAULT 1,
    rate_limit       INTEGER,
    require_consent  INTEGER NOT NULL DEFAULT 0,
    audience_ready   INTEGER NOT NULL DEFAULT 0,
    recipients       INTEGER NOT NULL DEFAULT 0,
    error            TEXT,
    started_at       TEXT,
    finished_at      TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
CREATE INDEX campaigns_tenant ON campaigns (tenant_id, id);
CREATE INDEX campaigns_status ON campaigns (status, send_at);

CREATE TABLE campaign_sends (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id        INTEGER NOT NULL,
    campaign_id      INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    customer_id      INTEGER NOT NULL,
    channel          TEXT NOT NULL,
    address          TEXT,
    -- queued, committing, sent, delivered, failed, bounced, unknown, skipped, cancelled
    status           TEXT NOT NULL,
    reason           TEXT,
    provider_id      TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT NOT NULL,
    parts            INTEGER,
    error            TEXT,
    sent_at          TEXT,
    delivered_at     TEXT,
    opened_at        TEXT,
    clicked_at       TEXT,
    unsubscribed_at  TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
CREATE UNIQUE INDEX campaign_sends_once ON campaign_sends (campaign_id, customer_id, channel);
CREATE INDEX campaign_sends_queue ON campaign_sends (campaign_id, status, id);
CREATE INDEX campaign_sends_provider ON campaign_sends (provider_id) WHERE provider_id IS NOT NULL;

CREATE TABLE suppressions (
    tenant_id   INTEGER NOT NULL,
    channel     TEXT NOT NULL,
    address     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, channel, address)
);

CREATE TABLE channel_settings (
    tenant_id   INTEGER NOT NULL,
    channel     TEXT NOT NULL,
    settings    TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, channel)
);

CREATE TABLE campaign_locks (
    tenant_id     INTEGER PRIMARY KEY,
    holder        TEXT NOT NULL,
    locked_until  TEXT NOT NULL
);

CREATE TABLE server_secrets (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

-- Campaigns (docs/campaigns.md): definitions, one send record per (campaign, customer,
-- channel), the per-workspace suppression list, channel settings per workspace, the lease of
-- the instance that sends a workspace's campaigns, and server-wide signing secrets.

CREATE TABLE campaigns (
    id               BIGSERIAL PRIMARY KEY,
    tenant_id        BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    kind             TEXT NOT NULL,
    segment_id       BIGINT,
    subject          TEXT,
    body             TEXT,
    from_name        TEXT,
    from_email       TEXT,
    reply_to         TEXT,
    status           TEXT NOT NULL,
    send_at          TIMESTAMPTZ,
    track_opens      BOOLEAN NOT NULL DEFAULT TRUE,
    track_clicks     BOOLEAN NOT NULL DEFAULT TRUE,
    rate_limit       BIGINT,
    require_consent  BOOLEAN NOT NULL DEFAULT FALSE,
    audience_ready   BOOLEAN NOT NULL DEFAULT FALSE,
    recipients       BIGINT NOT NULL DEFAULT 0,
    error            TEXT,
    started_at       TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX campaigns_tenant ON campaigns (tenant_id, id);
CREATE INDEX campaigns_status ON campaigns (status, send_at);

CREATE TABLE campaign_sends (
    id               BIGSERIAL PRIMARY KEY,
    tenant_id        BIGINT NOT NULL,
    campaign_id      BIGINT NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    customer_id      BIGINT NOT NULL,
    channel          TEXT NOT NULL,
    address          TEXT,
    -- queued, committing, sent, delivered, failed, bounced, unknown, skipped, cancelled
    status           TEXT NOT NULL,
    reason           TEXT,
    provider_id      TEXT,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL,
    parts            BIGINT,
    error            TEXT,
    sent_at          TIMESTAMPTZ,
    delivered_at     TIMESTAMPTZ,
    opened_at        TIMESTAMPTZ,
    clicked_at       TIMESTAMPTZ,
    unsubscribed_at  TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX campaign_sends_once ON campaign_sends (campaign_id, customer_id, channel);
CREATE INDEX campaign_sends_queue ON campaign_sends (campaign_id, status, id);
CREATE INDEX campaign_sends_provider ON campaign_sends (provider_id) WHERE provider_id IS NOT NULL;

CREATE TABLE suppressions (
    tenant_id   BIGINT NOT NULL,
    channel     TEXT NOT NULL,
    address     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, channel, address)
);

CREATE TABLE channel_settings (
    tenant_id   BIGINT NOT NULL,
    channel     TEXT NOT NULL,
    settings    TEXT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, channel)
);

CREATE TABLE campaign_locks (
    tenant_id     BIGINT PRIMARY KEY,
    holder        TEXT NOT NULL,
    locked_until  TIMESTAMPTZ NOT NULL
);

CREATE TABLE server_secrets (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);

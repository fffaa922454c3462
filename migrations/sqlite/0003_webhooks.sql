-- Outbound webhooks: endpoints, and one delivery per (endpoint, outbox event), retried until
-- it succeeds or the schedule runs out.
ALTER TABLE outbox ADD COLUMN dispatched_at TEXT;
CREATE INDEX outbox_undispatched ON outbox (dispatched_at, id);

CREATE TABLE webhooks (
    id                     INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id              INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    url                    TEXT NOT NULL,
    events                 TEXT NOT NULL,
    secret                 TEXT NOT NULL,
    previous_secret        TEXT,
    previous_secret_until  TEXT,
    status                 TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
    disabled_reason        TEXT,
    created_at             TEXT NOT NULL,
    updated_at             TEXT NOT NULL
);
CREATE INDEX webhooks_tenant ON webhooks (tenant_id, id);

CREATE TABLE webhook_deliveries (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id         INTEGER NOT NULL,
    webhook_id        INTEGER NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    outbox_id         INTEGER,
    event             TEXT NOT NULL,
    body              TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   TEXT NOT NULL,
    locked_until      TEXT,
    last_status       INTEGER,
    last_latency_ms   REAL,
    last_error        TEXT,
    response_excerpt  TEXT,
    created_at        TEXT NOT NULL,
    delivered_at      TEXT,
    UNIQUE (webhook_id, outbox_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook_id, id);

-- Notices to a workspace's owners (docs/webhooks.md): written in the transaction of the change
-- they report (a webhook endpoint disabled), emailed by the notifier, listed by the API.

CREATE TABLE notifications (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id       INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    -- what happened: 'webhook.disabled'
    kind            TEXT NOT NULL,
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,
    -- 'pending' (to be emailed), 'sent', or 'unsent' (no SMTP server, no owner, or it kept failing)
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    -- when the notifier may (next) try it; also its claim while sending
    next_attempt_at TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    sent_at         TEXT
);
CREATE INDEX notifications_tenant ON notifications (tenant_id, id);
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE status = 'pending';

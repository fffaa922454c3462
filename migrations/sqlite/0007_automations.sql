-- Automations (docs/automations.md): definitions with their draft design, immutable published
-- versions, durable per-customer runs with their step history, event signals for triggers and
-- waits, and the outbox marker of the trigger intake. Automation email and SMS steps send through
-- campaigns of status 'triggered' (one per action node and version), whose send records carry the
-- run as their occurrence so that a customer can receive the same step once per run.

CREATE TABLE automations (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id       INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    trigger_type    TEXT NOT NULL,
    trigger_config  TEXT NOT NULL,
    reentry         TEXT NOT NULL,
    exit_filter     TEXT,
    design          TEXT NOT NULL,
    is_active       INTEGER NOT NULL DEFAULT 0,
    version         INTEGER NOT NULL DEFAULT 0,
    active_version  INTEGER,
    webhook_token   TEXT NOT NULL UNIQUE,
    -- event names its versions listen for (event triggers, waits), for the ingest processor
    listens         TEXT NOT NULL DEFAULT '[]',
    next_tick_at    TEXT,
    activated_at    TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX automations_tenant ON automations (tenant_id, id);
CREATE INDEX automations_ticks ON automations (next_tick_at) WHERE next_tick_at IS NOT NULL;

CREATE TABLE automation_versions (
    automation_id   INTEGER NOT NULL REFERENCES automations(id) ON DELETE CASCADE,
    version         INTEGER NOT NULL,
    tenant_id       INTEGER NOT NULL,
    design          TEXT NOT NULL,
    trigger_type    TEXT NOT NULL,
    trigger_config  TEXT NOT NULL,
    reentry         TEXT NOT NULL,
    exit_filter     TEXT,
    bindings        TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    PRIMARY KEY (automation_id, version)
);

CREATE TABLE automation_runs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id       INTEGER NOT NULL,
    automation_id   INTEGER NOT NULL REFERENCES automations(id) ON DELETE CASCADE,
    version         INTEGER NOT NULL,
    customer_id     INTEGER NOT NULL,
    occurrence      TEXT NOT NULL,
    -- 1 while a once-at-a-time run is in flight, else NULL (NULLs never collide)
    live            INTEGER,
    -- active (due), waiting (delay or wait), completed, exited, failed, cancelled
    status          TEXT NOT NULL,
    node            TEXT NOT NULL,
    parked          INTEGER NOT NULL DEFAULT 0,
    matched         INTEGER NOT NULL DEFAULT 0,
    wait_event      TEXT,
    due_at          TEXT,
    rev             INTEGER NOT NULL DEFAULT 0,
    context         TEXT NOT NULL,
    error           TEXT,
    started_at      TEXT NOT NULL,
    parked_at       TEXT,
    updated_at      TEXT NOT NULL,
    finished_at     TEXT,
    UNIQUE (automation_id, customer_id, occurrence),
    UNIQUE (automation_id, customer_id, live)
);
CREATE INDEX automation_runs_due ON automation_runs (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX automation_runs_list ON automation_runs (automation_id, id);
CREATE INDEX automation_runs_customer ON automation_runs (tenant_id, customer_id, id);
CREATE INDEX automation_runs_waiting ON automation_runs (tenant_id, customer_id, wait_event) WHERE wait_event IS NOT NULL;

CREATE TABLE automation_steps (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id          INTEGER NOT NULL REFERENCES automation_runs(id) ON DELETE CASCADE,
    automation_id   INTEGER NOT NULL,
    version         INTEGER NOT NULL,
    node            TEXT NOT NULL,
    kind            TEXT NOT NULL,
    outcome         TEXT NOT NULL,
    detail          TEXT NOT NULL,
    at              TEXT NOT NULL
);
CREATE INDEX automation_steps_run ON automation_steps (run_id, id);
CREATE INDEX automation_steps_node ON automation_steps (automation_id, node);

-- Tracked events some automation listens for (an event trigger, a wait), written by the ingest
-- processor after the events are stored; one per message id.
CREATE TABLE automation_signals (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id       INTEGER NOT NULL,
    customer_id     INTEGER NOT NULL,
    name            TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    properties      TEXT NOT NULL,
    at              TEXT NOT NULL,
    UNIQUE (tenant_id, message_id)
);

ALTER TABLE outbox ADD COLUMN automated_at TEXT;
UPDATE outbox SET automated_at = created_at;
CREATE INDEX outbox_unautomated ON outbox (id) WHERE automated_at IS NULL;

ALTER TABLE campaigns ADD COLUMN automation_id INTEGER;
ALTER TABLE campaign_sends ADD COLUMN occurrence INTEGER NOT NULL DEFAULT 0;
DROP INDEX campaign_sends_once;
CREATE UNIQUE INDEX campaign_sends_once ON campaign_sends (campaign_id, customer_id, channel, occurrence);

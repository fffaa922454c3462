-- Automations (docs/automations.md): definitions with their draft design, immutable published
-- versions, durable per-customer runs with their step history, event signals for triggers and
-- waits, and the outbox marker of the trigger intake. Automation email and SMS steps send through
-- campaigns of status 'triggered' (one per action node and version), whose send records carry the
-- run as their occurrence so that a customer can receive the same step once per run.

CREATE TABLE automations (
    id              BIGSERIAL PRIMARY KEY,
    tenant_id       BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    trigger_type    TEXT NOT NULL,
    trigger_config  JSONB NOT NULL,
    reentry         TEXT NOT NULL,
    exit_filter     JSONB,
    design          JSONB NOT NULL,
    is_active       BOOLEAN NOT NULL DEFAULT FALSE,
    version         BIGINT NOT NULL DEFAULT 0,
    active_version  BIGINT,
    webhook_token   TEXT NOT NULL UNIQUE,
    -- event names its versions listen for (event triggers, waits), for the ingest processor
    listens         TEXT NOT NULL DEFAULT '[]',
    next_tick_at    TIMESTAMPTZ,
    activated_at    TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX automations_tenant ON automations (tenant_id, id);
CREATE INDEX automations_ticks ON automations (next_tick_at) WHERE next_tick_at IS NOT NULL;

CREATE TABLE automation_versions (
    automation_id   BIGINT NOT NULL REFERENCES automations(id) ON DELETE CASCADE,
    version         BIGINT NOT NULL,
    tenant_id       BIGINT NOT NULL,
    design          JSONB NOT NULL,
    trigger_type    TEXT NOT NULL,
    trigger_config  JSONB NOT NULL,
    reentry         TEXT NOT NULL,
    exit_filter     JSONB,
    bindings        JSONB NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (automation_id, version)
);

CREATE TABLE automation_runs (
    id              BIGSERIAL PRIMARY KEY,
    tenant_id       BIGINT NOT NULL,
    automation_id   BIGINT NOT NULL REFERENCES automations(id) ON DELETE CASCADE,
    version         BIGINT NOT NULL,
    customer_id     BIGINT NOT NULL,
    occurrence      TEXT NOT NULL,
    -- 1 while a once-at-a-time run is in flight, else NULL (NULLs never collide)
    live            BIGINT,
    -- active (due), waiting (delay or wait), completed, exited, failed, cancelled
    status          TEXT NOT NULL,
    node            TEXT NOT NULL,
    parked          BOOLEAN NOT NULL DEFAULT FALSE,
    matched         BOOLEAN NOT NULL DEFAULT FALSE,
    wait_event      TEXT,
    due_at          TIMESTAMPTZ,
    rev             BIGINT NOT NULL DEFAULT 0,
    context         JSONB NOT NULL,
    error           TEXT,
    started_at      TIMESTAMPTZ NOT NULL,
    parked_at       TIMESTAMPTZ,
    updated_at      TIMESTAMPTZ NOT NULL,
    finished_at     TIMESTAMPTZ,
    UNIQUE (automation_id, customer_id, occurrence),
    UNIQUE (automation_id, customer_id, live)
);
CREATE INDEX automation_runs_due ON automation_runs (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX automation_runs_list ON automation_runs (automation_id, id);
CREATE INDEX automation_runs_customer ON automation_runs (tenant_id, customer_id, id);
CREATE INDEX automation_runs_waiting ON automation_runs (tenant_id, customer_id, wait_event) WHERE wait_event IS NOT NULL;

CREATE TABLE automation_steps (
    id              BIGSERIAL PRIMARY KEY,
    run_id          BIGINT NOT NULL REFERENCES automation_runs(id) ON DELETE CASCADE,
    automation_id   BIGINT NOT NULL,
    version         BIGINT NOT NULL,
    node            TEXT NOT NULL,
    kind            TEXT NOT NULL,
    outcome         TEXT NOT NULL,
    detail          JSONB NOT NULL,
    at              TIMESTAMPTZ NOT NULL
);
CREATE INDEX automation_steps_run ON automation_steps (run_id, id);
CREATE INDEX automation_steps_node ON automation_steps (automation_id, node);

-- Tracked events some automation listens for (an event trigger, a wait), written by the ingest
-- processor after the events are stored; one per message id.
CREATE TABLE automation_signals (
    id              BIGSERIAL PRIMARY KEY,
    tenant_id       BIGINT NOT NULL,
    customer_id     BIGINT NOT NULL,
    name            TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    properties      JSONB NOT NULL,
    at              TIMESTAMPTZ NOT NULL,
    UNIQUE (tenant_id, message_id)
);

ALTER TABLE outbox ADD COLUMN automated_at TIMESTAMPTZ;
UPDATE outbox SET automated_at = created_at;
CREATE INDEX outbox_unautomated ON outbox (id) WHERE automated_at IS NULL;

ALTER TABLE campaigns ADD COLUMN automation_id BIGINT;
ALTER TABLE campaign_sends ADD COLUMN occurrence BIGINT NOT NULL DEFAULT 0;
DROP INDEX campaign_sends_once;
CREATE UNIQUE INDEX campaign_sends_once ON campaign_sends (campaign_id, customer_id, channel, occurrence);

-- Customer profiles (seed 003's customers, seed 004's people) and the outbox of domain events.

CREATE TABLE customers (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id      INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    email          TEXT,
    external_id    TEXT,
    name           TEXT,
    phone          TEXT,
    city           TEXT,
    country        TEXT,
    traits         TEXT NOT NULL DEFAULT '{}',
    first_seen_at  TEXT,
    last_seen_at   TEXT,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);
CREATE UNIQUE INDEX customers_email ON customers (tenant_id, email) WHERE email IS NOT NULL;
CREATE UNIQUE INDEX customers_external_id ON customers (tenant_id, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX customers_tenant_created ON customers (tenant_id, created_at, id);

-- Anonymous ids (browser cookies) linked to a profile by identify.
CREATE TABLE customer_anonymous_ids (
    tenant_id     INTEGER NOT NULL,
    anonymous_id  TEXT NOT NULL,
    customer_id   INTEGER NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    created_at    TEXT NOT NULL,
    PRIMARY KEY (tenant_id, anonymous_id)
);
CREATE INDEX customer_anonymous_ids_customer ON customer_anonymous_ids (customer_id);

-- Domain events (customer.created, lead.*, …), written in the same transaction as the change
-- that caused them; webhooks and automations consume them.
CREATE TABLE outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   INTEGER NOT NULL,
    event       TEXT NOT NULL,
    payload     TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX outbox_tenant ON outbox (tenant_id, id);

-- Profiles merged into others (identify linking an anonymous visitor to a known customer, or
-- alias). The event store rewrites `from_id`'s events to `into_id`; `applied_at` is set once
-- it has, so a crash in between is finished on restart.
CREATE TABLE customer_merges (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   INTEGER NOT NULL,
    from_id     INTEGER NOT NULL,
    into_id     INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    applied_at  TEXT
);
CREATE INDEX customer_merges_pending ON customer_merges (applied_at, id);

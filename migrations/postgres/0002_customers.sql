-- Customer profiles (seed 003's customers, seed 004's people) and the outbox of domain events.

CREATE TABLE customers (
    id             BIGSERIAL PRIMARY KEY,
    tenant_id      BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    email          TEXT,
    external_id    TEXT,
    name           TEXT,
    phone          TEXT,
    city           TEXT,
    country        TEXT,
    traits         JSONB NOT NULL DEFAULT '{}',
    first_seen_at  TIMESTAMPTZ,
    last_seen_at   TIMESTAMPTZ,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX customers_email ON customers (tenant_id, email) WHERE email IS NOT NULL;
CREATE UNIQUE INDEX customers_external_id ON customers (tenant_id, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX customers_tenant_created ON customers (tenant_id, created_at, id);

CREATE TABLE customer_anonymous_ids (
    tenant_id     BIGINT NOT NULL,
    anonymous_id  TEXT NOT NULL,
    customer_id   BIGINT NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    created_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, anonymous_id)
);
CREATE INDEX customer_anonymous_ids_customer ON customer_anonymous_ids (customer_id);

CREATE TABLE outbox (
    id          BIGSERIAL PRIMARY KEY,
    tenant_id   BIGINT NOT NULL,
    event       TEXT NOT NULL,
    payload     JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX outbox_tenant ON outbox (tenant_id, id);

CREATE TABLE customer_merges (
    id          BIGSERIAL PRIMARY KEY,
    tenant_id   BIGINT NOT NULL,
    from_id     BIGINT NOT NULL,
    into_id     BIGINT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    applied_at  TIMESTAMPTZ
);
CREATE INDEX customer_merges_pending ON customer_merges (applied_at, id);

-- CRM entities (docs/crm.md): pipelines and their stages (opportunity pipelines and the contact
-- lifecycle), prospect accounts, leads, opportunities, activities, notes, files, custom field
-- definitions, forms and their submissions, and CSV imports. People are the customer profiles,
-- which gain a prospect account, a lifecycle stage and a job title. Ids are integers on the wire.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE pipelines (
    id              BIGSERIAL PRIMARY KEY,
    tenant_id       BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    -- 'deals' (opportunity pipelines) or 'lifecycle' (contact lifecycle stages; one per workspace)
    kind            TEXT NOT NULL,
    name            TEXT NOT NULL,
    is_default      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX pipelines_name ON pipelines (tenant_id, kind, name);

CREATE TABLE pipeline_stages (
    id              BIGSERIAL PRIMARY KEY,
    tenant_id       BIGINT NOT NULL,
    pipeline_id     BIGINT NOT NULL REFERENCES pipelines(id) ON DELETE CASCADE,
    key             TEXT NOT NULL,
    name            TEXT NOT NULL,
    position        INTEGER NOT NULL,
    probability     INTEGER NOT NULL
);
CREATE UNIQUE INDEX pipeline_stages_key ON pipeline_stages (pipeline_id, key);

CREATE TABLE prospects (
    id              BIGSERIAL PRIMARY KEY,
    tenant_id       BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    industry        TEXT,
    website         TEXT,
    email           TEXT,
    phone           TEXT,
    tax_number      TEXT,
    status          TEXT NOT NULL,
    assigned_to     BIGINT,
    custom_fields   JSONB NOT NULL DEFAULT '{}',
    converted_at    TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX prospects_tenant ON prospects (tenant_id, created_at, id);

ALTER TABLE customers ADD COLUMN prospect_id BIGINT REFERENCES prospects(id) ON DELETE SET NULL;
ALTER TABLE customers ADD COLUMN lifecycle_stage TEXT;
ALTER TABLE customers ADD COLUMN designation TEXT;
CREATE INDEX customers_prospect ON customers (prospect_id) WHERE prospect_id IS NOT NULL;

CREATE TABLE leads (
    id              BIGSERIAL PRIMARY KEY,
    tenant_id       BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    first_name      TEXT,
    last_name       TEXT,
    email           TEXT,
    phone           TEXT,
    company_name    TEXT,
    title           TEXT,
    website         TEXT,
    status          TEXT NOT NULL,
    source          TEXT,
    form_type       TEXT,
    raw_payload     JSONB,
    score           INTEGER,
    value           DOUBLE PRECISION,
    assigned_to     BIGINT,
    customer_id     BIGINT REFERENCES customers(id) ON DELETE SET NULL,
    custom_fields   JSONB NOT NULL DEFAULT '{}',
    contact_id      BIGINT,
    prospect_id     BIGINT,
    opportunity_id  BIGINT,
    converted_at    TIMESTAMPTZ,
    -- lower-cased name, email and company, for `search`
    search_text     TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX leads_created ON leads (tenant_id, created_at, id);
CREATE INDEX leads_status ON leads (tenant_id, status, created_at, id);
CREATE INDEX leads_source ON leads (tenant_id, source, created_at, id);
CREATE INDEX leads_status_source ON leads (tenant_id, status, source, created_at, id);
CREATE INDEX leads_score ON leads (tenant_id, score, id);
CREATE INDEX leads_status_score ON leads (tenant_id, status, score, id);
CREATE INDEX leads_assigned ON leads (tenant_id, assigned_to, created_at, id);
CREATE INDEX leads_email ON leads (tenant_id, email);
CREATE INDEX leads_customer ON leads (customer_id) WHERE customer_id IS NOT NULL;
CREATE INDEX leads_search ON leads USING gin (search_text gin_trgm_ops);

CREATE TABLE opportunities (
    id                  BIGSERIAL PRIMARY KEY,
    tenant_id           BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name                TEXT NOT NULL,
    prospect_id         BIGINT REFERENCES prospects(id) ON DELETE SET NULL,
    contact_id          BIGINT REFERENCES customers(id) ON DELETE SET NULL,
    lead_id             BIGINT REFERENCES leads(id) ON DELETE SET NULL,
    pipeline_id         BIGINT NOT NULL REFERENCES pipelines(id),
    stage_id            BIGINT NOT NULL REFERENCES pipeline_stages(id),
    value               DOUBLE PRECISION NOT NULL DEFAULT 0,
    currency            TEXT,
    probability         INTEGER,
    expected_close_date TEXT,
    status              TEXT NOT NULL,
    priority            TEXT,
    source              TEXT,
    assigned_to         BIGINT,
    close_reason        TEXT,
    closed_at           TIMESTAMPTZ,
    custom_fields       JSONB NOT NULL DEFAULT '{}',
    created_at          TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL
);
CREATE INDEX opportunities_tenant ON opportunities (tenant_id, created_at, id);
CREATE INDEX opportunities_stage ON opportunities (stage_id, status);
CREATE INDEX opportunities_prospect ON opportunities (prospect_id) WHERE prospect_id IS NOT NULL;
CREATE INDEX opportunities_lead ON opportunities (lead_id) WHERE lead_id IS NOT NULL;
CREATE INDEX opportunities_contact ON opportunities (contact_id) WHERE contact_id IS NOT NULL;

-- Activities, notes and files hang off any entity: (entity_type, entity_id) with entity_type
-- one of lead, contact, opportunity, prospect. Deleting the entity deletes them (the service).
CREATE TABLE activities (
    id               BIGSERIAL PRIMARY KEY,
    tenant_id        BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    type             TEXT NOT NULL,
    subject          TEXT NOT NULL,
    description      TEXT,
    entity_type      TEXT,
    entity_id        BIGINT,
    assigned_to      BIGINT,
    due_date         TIMESTAMPTZ,
    duration_minutes INTEGER,
    completed        BOOLEAN NOT NULL DEFAULT FALSE,
    completed_at     TIMESTAMPTZ,
    outcome          TEXT,
    created_by       BIGINT,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX activities_tenant ON activities (tenant_id, created_at, id);
CREATE INDEX activities_entity ON activities (tenant_id, entity_type, entity_id);

CREATE TABLE notes (
    id              BIGSERIAL PRIMARY KEY,
    tenant_id       BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    entity_type     TEXT NOT NULL,
    entity_id       BIGINT NOT NULL,
    content         TEXT NOT NULL,
    is_pinned       BOOLEAN NOT NULL DEFAULT FALSE,
    author_id       BIGINT,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX notes_entity ON notes (tenant_id, entity_type, entity_id);

CREATE TABLE files (
    id              BIGSERIAL PRIMARY KEY,
    tenant_id       BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    entity_type     TEXT NOT NULL,
    entity_id       BIGINT NOT NULL,
    filename        TEXT NOT NULL,
    content_type    TEXT NOT NULL,
    size            BIGINT NOT NULL,
    sha256          TEXT NOT NULL,
    content         BYTEA NOT NULL,
    uploaded_by     BIGINT,
    created_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX files_entity ON files (tenant_id, entity_type, entity_id);

CREATE TABLE custom_fields (
    id              BIGSERIAL PRIMARY KEY,
    tenant_id       BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    entity_type     TEXT NOT NULL,
    key             TEXT NOT NULL,
    label           TEXT NOT NULL,
    field_type      TEXT NOT NULL,
    options         JSONB NOT NULL DEFAULT '[]',
    required        BOOLEAN NOT NULL DEFAULT FALSE,
    position        INTEGER NOT NULL DEFAULT 0,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX custom_fields_key ON custom_fields (tenant_id, entity_type, key);

CREATE TABLE forms (
    id              BIGSERIAL PRIMARY KEY,
    tenant_id       BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    token           TEXT NOT NULL UNIQUE,
    fields          JSONB NOT NULL,
    source          TEXT,
    lead_status     TEXT NOT NULL,
    form_type       TEXT,
    honeypot        TEXT,
    is_active       BOOLEAN NOT NULL DEFAULT TRUE,
    submissions     BIGINT NOT NULL DEFAULT 0,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX forms_tenant ON forms (tenant_id, id);

CREATE TABLE form_submissions (
    id              BIGSERIAL PRIMARY KEY,
    tenant_id       BIGINT NOT NULL,
    form_id         BIGINT NOT NULL REFERENCES forms(id) ON DELETE CASCADE,
    lead_id         BIGINT,
    data            JSONB NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX form_submissions_form ON form_submissions (form_id, id);

CREATE TABLE imports (
    id              BIGSERIAL PRIMARY KEY,
    tenant_id       BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    kind            TEXT NOT NULL,
    status          TEXT NOT NULL,
    total_rows      BIGINT NOT NULL DEFAULT 0,
    processed       BIGINT NOT NULL DEFAULT 0,
    created         BIGINT NOT NULL DEFAULT 0,
    updated         BIGINT NOT NULL DEFAULT 0,
    failed          BIGINT NOT NULL DEFAULT 0,
    errors          JSONB NOT NULL DEFAULT '[]',
    source          TEXT,
    stage           TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    -- progress is recorded at least once per chunk; a running import whose heartbeat is old
    -- belonged to an instance that died (housekeeping marks it failed)
    heartbeat_at    TIMESTAMPTZ NOT NULL,
    finished_at     TIMESTAMPTZ
);
CREATE INDEX imports_tenant ON imports (tenant_id, id);

-- Segments (docs/segments.md): their definitions, stored membership, the customers waiting to
-- be re-evaluated (with what changed about them), each customer's next time-driven crossing,
-- and which instance maintains which workspace's segments.

CREATE TABLE segments (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id     INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    description   TEXT,
    color         TEXT,
    kind          TEXT NOT NULL,
    builtin       TEXT,
    filters       TEXT,
    -- What the filter depends on (bits of the segment engine's `changed`): the ingest
    -- processor marks customers only for changes some segment of the workspace can see.
    deps          INTEGER NOT NULL DEFAULT 31,
    member_count  INTEGER NOT NULL DEFAULT 0,
    job_id        INTEGER,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX segments_tenant ON segments (tenant_id, id);
CREATE UNIQUE INDEX segments_builtin ON segments (tenant_id, builtin) WHERE builtin IS NOT NULL;

CREATE TABLE segment_members (
    tenant_id    INTEGER NOT NULL,
    segment_id   INTEGER NOT NULL REFERENCES segments(id) ON DELETE CASCADE,
    customer_id  INTEGER NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    since        TEXT NOT NULL,
    PRIMARY KEY (segment_id, customer_id)
);
CREATE INDEX segment_members_customer ON segment_members (customer_id);

CREATE TABLE segment_dirty (
    tenant_id    INTEGER NOT NULL,
    customer_id  INTEGER NOT NULL,
    version      INTEGER NOT NULL,
    kinds        INTEGER NOT NULL,
    marked_at    TEXT NOT NULL,
    PRIMARY KEY (tenant_id, customer_id)
);
CREATE INDEX segment_dirty_order ON segment_dirty (tenant_id, marked_at, customer_id);

CREATE TABLE segment_crossings (
    tenant_id    INTEGER NOT NULL,
    customer_id  INTEGER NOT NULL,
    due_at       TEXT NOT NULL,
    PRIMARY KEY (tenant_id, customer_id)
);
CREATE INDEX segment_crossings_due ON segment_crossings (due_at);

CREATE TABLE segment_locks (
    tenant_id     INTEGER PRIMARY KEY,
    holder        TEXT NOT NULL,
    locked_until  TEXT NOT NULL
);

-- The RFM segments exist in every workspace (new workspaces get them when they are created).
INSERT INTO segments (tenant_id, name, description, color, kind, builtin, filters, deps, created_at, updated_at)
SELECT t.id, b.column1, b.column2, b.column3, 'dynamic', b.column1, b.column4, 2,
       strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
FROM tenants t CROSS JOIN (VALUES
    ('Champions', 'RFM score 13-15', '#16a34a', '{"rfm_segment":"Champions"}'),
    ('Loyal Customers', 'RFM score 9-12', '#2563eb', '{"rfm_segment":"Loyal Customers"}'),
    ('At Risk', 'RFM score 5-8', '#d97706', '{"rfm_segment":"At Risk"}'),
    ('Lost', 'RFM score 3-4', '#dc2626', '{"rfm_segment":"Lost"}')
) AS b;

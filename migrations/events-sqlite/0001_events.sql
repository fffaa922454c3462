-- Every tracked event. Times are Unix milliseconds (the same representation as ClickHouse's
-- UInt64 columns). Rows are appended in rowid order (cheap inserts); the unique index on
-- (tenant_id, message_id) deduplicates retried events.
CREATE TABLE events (
    seq           INTEGER PRIMARY KEY,
    tenant_id     INTEGER NOT NULL,
    message_id    TEXT NOT NULL,
    customer_id   INTEGER NOT NULL,
    anonymous_id  TEXT,
    user_id       TEXT,
    kind          TEXT NOT NULL,
    name          TEXT NOT NULL,
    properties    TEXT NOT NULL,
    context       TEXT NOT NULL,
    timestamp     INTEGER NOT NULL,
    sent_at       INTEGER,
    received_at   INTEGER NOT NULL,
    amount        REAL,
    currency      TEXT
);
CREATE UNIQUE INDEX events_message ON events (tenant_id, message_id);
CREATE INDEX events_customer ON events (tenant_id, customer_id, timestamp);
CREATE INDEX events_name ON events (tenant_id, name, timestamp);

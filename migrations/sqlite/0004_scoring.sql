-- Scoring: each customer's purchase summary, RFM scores and CLV, the workspace's model (RFM
-- cut points and the fitted BG/NBD and Gamma-Gamma parameters), the customers waiting to be
-- re-scored, and which instance scores which workspace.

CREATE TABLE customer_scores (
    tenant_id           INTEGER NOT NULL,
    customer_id         INTEGER NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    transactions        INTEGER NOT NULL,
    first_purchase_day  INTEGER NOT NULL,
    last_purchase_day   INTEGER NOT NULL,
    last_purchase_at    TEXT NOT NULL,
    gross               REAL NOT NULL,
    first_day_gross     REAL NOT NULL,
    refunds             REAL NOT NULL,
    rfm_recency         INTEGER NOT NULL,
    rfm_frequency       INTEGER NOT NULL,
    rfm_monetary        INTEGER NOT NULL,
    rfm_score           INTEGER NOT NULL,
    rfm_segment         TEXT NOT NULL,
    clv_total           REAL NOT NULL,
    clv_order_count     INTEGER NOT NULL,
    clv_average_order   REAL NOT NULL,
    clv_predicted       REAL NOT NULL,
    p_alive             REAL,
    clv_method          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    PRIMARY KEY (tenant_id, customer_id)
);

CREATE TABLE scoring_models (
    tenant_id   INTEGER PRIMARY KEY,
    model       TEXT NOT NULL,
    job_id      INTEGER,
    updated_at  TEXT NOT NULL
);

CREATE TABLE scoring_dirty (
    tenant_id    INTEGER NOT NULL,
    customer_id  INTEGER NOT NULL,
    version      INTEGER NOT NULL,
    marked_at    TEXT NOT NULL,
    PRIMARY KEY (tenant_id, customer_id)
);

CREATE TABLE scoring_locks (
    tenant_id     INTEGER PRIMARY KEY,
    holder        TEXT NOT NULL,
    locked_until  TEXT NOT NULL
);

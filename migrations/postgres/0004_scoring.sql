-- Scoring: each customer's purchase summary, RFM scores and CLV, the workspace's model (RFM
-- cut points and the fitted BG/NBD and Gamma-Gamma parameters), the customers waiting to be
-- re-scored, and which instance scores which workspace.

CREATE TABLE customer_scores (
    tenant_id           BIGINT NOT NULL,
    customer_id         BIGINT NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    transactions        BIGINT NOT NULL,
    first_purchase_day  BIGINT NOT NULL,
    last_purchase_day   BIGINT NOT NULL,
    last_purchase_at    TIMESTAMPTZ NOT NULL,
    gross               DOUBLE PRECISION NOT NULL,
    first_day_gross     DOUBLE PRECISION NOT NULL,
    refunds             DOUBLE PRECISION NOT NULL,
    rfm_recency         BIGINT NOT NULL,
    rfm_frequency       BIGINT NOT NULL,
    rfm_monetary        BIGINT NOT NULL,
    rfm_score           BIGINT NOT NULL,
    rfm_segment         TEXT NOT NULL,
    clv_total           DOUBLE PRECISION NOT NULL,
    clv_order_count     BIGINT NOT NULL,
    clv_average_order   DOUBLE PRECISION NOT NULL,
    clv_predicted       DOUBLE PRECISION NOT NULL,
    p_alive             DOUBLE PRECISION,
    clv_method          TEXT NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, customer_id)
);

CREATE TABLE scoring_models (
    tenant_id   BIGINT PRIMARY KEY,
    model       TEXT NOT NULL,
    job_id      BIGINT,
    updated_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE scoring_dirty (
    tenant_id    BIGINT NOT NULL,
    customer_id  BIGINT NOT NULL,
    version      BIGINT NOT NULL,
    marked_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, customer_id)
);

CREATE TABLE scoring_locks (
    tenant_id     BIGINT PRIMARY KEY,
    holder        TEXT NOT NULL,
    locked_until  TIMESTAMPTZ NOT NULL
);

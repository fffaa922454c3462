-- Every tracked event. Times are Unix milliseconds (18.16 has no DateTime64).
-- ReplacingMergeTree collapses a retried event (same message id, same key) into one row;
-- reads use FINAL so that the duplicate never shows, even before the merge.
CREATE TABLE IF NOT EXISTS events (
    tenant_id     UInt64,
    message_id    String,
    customer_id   UInt64,
    anonymous_id  String,
    user_id       String,
    kind          String,
    name          String,
    properties    String,
    context       String,
    timestamp     UInt64,
    sent_at       UInt64,
    received_at   UInt64,
    amount        Nullable(Float64),
    currency      String
)
ENGINE = ReplacingMergeTree(received_at)
PARTITION BY toYYYYMM(toDateTime(intDiv(timestamp, 1000)))
ORDER BY (tenant_id, customer_id, timestamp, message_id);

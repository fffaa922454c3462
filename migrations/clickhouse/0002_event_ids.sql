-- Every stored event's message id, keyed for lookup by (tenant_id, message_id): before an
-- insert, the store drops messages already here, so a retry counts once even when its
-- timestamp or resolved customer differ from the first delivery's (the events table's key
-- would keep both). Rows older than 30 days may be dropped by a TTL on newer servers;
-- 18.16 keeps them.
CREATE TABLE IF NOT EXISTS event_ids (
    tenant_id    UInt64,
    message_id   String,
    received_at  UInt64
)
ENGINE = ReplacingMergeTree(received_at)
PARTITION BY toYYYYMM(toDateTime(intDiv(received_at, 1000)))
ORDER BY (tenant_id, message_id);

-- Claims of one endpoint's due deliveries (the dispatcher tops up an endpoint's share by it).
CREATE INDEX webhook_deliveries_endpoint_due ON webhook_deliveries (webhook_id, status, next_attempt_at);

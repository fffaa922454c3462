-- A customer's messages (the dashboard's "campaigns received", GET /v1/customers/{id}/messages)
-- newest first, without scanning every campaign's send records.
CREATE INDEX campaign_sends_customer ON campaign_sends (customer_id, id);

-- The PostgreSQL twin of benches/dashboard_seed.py (same rows): run by benches/dashboard.sh with
-- psql -v tenant=… -v n=… when CAIRN_BENCH_PG=1.
\set ON_ERROR_STOP on
SET synchronous_commit = off;
CREATE TEMP TABLE before AS SELECT COALESCE(MAX(id), 0) AS id FROM customers;
INSERT INTO customers (tenant_id, email, name, traits, first_seen_at, last_seen_at, created_at, updated_at)
SELECT :tenant, 'user' || i || '@example.com', 'User ' || i,
       jsonb_build_object('plan', CASE i % 3 WHEN 0 THEN 'pro' ELSE 'free' END), t, t, t, t
FROM (SELECT i, timestamptz '2025-01-01 00:00:00+00' + i * interval '30 seconds' AS t FROM generate_series(1, :n) i) k;
INSERT INTO customer_scores (tenant_id, customer_id, transactions, first_purchase_day, last_purchase_day,
    last_purchase_at, gross, first_day_gross, refunds, rfm_recency, rfm_frequency, rfm_monetary, rfm_score,
    rfm_segment, clv_total, clv_order_count, clv_average_order, clv_predicted, p_alive, clv_method, updated_at)
SELECT tenant_id, id, 1 + id % 7, 20000, 20000 + id % 700, timestamptz '2026-01-01 00:00:00+00', 10.0 * (1 + id % 97),
       10.0, 0.0, r, f, m, r + f + m,
       CASE WHEN r + f + m >= 13 THEN 'Champions' WHEN r + f + m >= 9 THEN 'Loyal Customers'
            WHEN r + f + m >= 5 THEN 'At Risk' ELSE 'Lost' END,
       10.0 * (1 + id % 97), 1 + id % 7, 10.0, 12.5 * (1 + id % 13), 0.5, 'bgnbd', created_at
FROM (SELECT tenant_id, id, created_at, 1 + (id / 125) % 5 AS r, 1 + (id / 5) % 5 AS f, 1 + (id / 25) % 5 AS m
      FROM customers WHERE tenant_id = :tenant AND id > (SELECT id FROM before) AND id % 5 < 2) s;
INSERT INTO segment_members (tenant_id, segment_id, customer_id, since)
SELECT s.tenant_id, g.id, s.customer_id, s.updated_at
FROM customer_scores s JOIN segments g ON g.tenant_id = s.tenant_id AND g.builtin IS NOT NULL AND g.name = s.rfm_segment
WHERE s.tenant_id = :tenant
ON CONFLICT DO NOTHING;
UPDATE segments g SET member_count = (SELECT COUNT(*) FROM segment_members m WHERE m.segment_id = g.id)
WHERE g.tenant_id = :tenant AND g.builtin IS NOT NULL;
ANALYZE;
SELECT COUNT(*) AS customers FROM customers WHERE tenant_id = :tenant;

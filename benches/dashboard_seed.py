"""Seeds a workspace of an embedded (SQLite) Cairn data directory with N customer profiles, scores
for 40 % of them (every R×F cell, every RFM segment), and the built-in RFM segments' members —
the shape of a 1,000,000-customer workspace after a recompute — for benches/dashboard.sh.

    python3 benches/dashboard_seed.py DATA_DIR TENANT_ID N
"""
import sqlite3
import sys

data_dir, tenant, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
db = sqlite3.connect(f"{data_dir}/cairn.db")
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA synchronous=OFF")
with db:
    before = db.execute("SELECT COALESCE(MAX(id), 0) FROM customers").fetchone()[0]
    # One profile every 30 s from 2025-01-01: created_at orders them as ingestion would.
    db.execute(
        """WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < ?)
           INSERT INTO customers (tenant_id, email, name, traits, first_seen_at, last_seen_at, created_at, updated_at)
           SELECT ?, 'user' || i || '@example.com', 'User ' || i,
                  '{"plan":"' || CASE i % 3 WHEN 0 THEN 'pro' ELSE 'free' END || '"}', t, t, t, t
           FROM (SELECT i, strftime('%Y-%m-%dT%H:%M:%S', '2025-01-01', '+' || (i * 30) || ' seconds') || '.000000+00:00' AS t FROM k)""",
        (n, tenant),
    )
    db.execute(
        """INSERT INTO customer_scores (tenant_id, customer_id, transactions, first_purchase_day, last_purchase_day,
               last_purchase_at, gross, first_day_gross, refunds, rfm_recency, rfm_frequency, rfm_monetary, rfm_score,
               rfm_segment, clv_total, clv_order_count, clv_average_order, clv_predicted, p_alive, clv_method, updated_at)
           SELECT tenant_id, id, 1 + id % 7, 20000, 20000 + id % 700, '2026-01-01T00:00:00+00:00', 10.0 * (1 + id % 97),
                  10.0, 0.0, r, f, m, r + f + m,
                  CASE WHEN r + f + m >= 13 THEN 'Champions' WHEN r + f + m >= 9 THEN 'Loyal Customers'
                       WHEN r + f + m >= 5 THEN 'At Risk' ELSE 'Lost' END,
                  10.0 * (1 + id % 97), 1 + id % 7, 10.0, 12.5 * (1 + id % 13), 0.5, 'bgnbd', created_at
           FROM (SELECT tenant_id, id, created_at, 1 + (id / 125) % 5 AS r, 1 + (id / 5) % 5 AS f, 1 + (id / 25) % 5 AS m
                 FROM customers WHERE tenant_id = ? AND id > ? AND id % 5 < 2)""",
        (tenant, before),
    )
    for (seg_id, name) in db.execute("SELECT id, name FROM segments WHERE tenant_id = ? AND builtin IS NOT NULL", (tenant,)).fetchall():
        db.execute(
            """INSERT OR IGNORE INTO segment_members (tenant_id, segment_id, customer_id, since)
               SELECT tenant_id, ?, customer_id, updated_at FROM customer_scores WHERE tenant_id = ? AND rfm_segment = ?""",
            (seg_id, tenant, name),
        )
        db.execute(
            "UPDATE segments SET member_count = (SELECT COUNT(*) FROM segment_members WHERE segment_id = ?) WHERE id = ?",
            (seg_id, seg_id),
        )
db.execute("ANALYZE")
print(db.execute("SELECT COUNT(*) FROM customers WHERE tenant_id = ?", (tenant,)).fetchone()[0], "customers")

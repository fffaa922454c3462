-- A recompute writes a score row per customer; the foreign key to customers made PostgreSQL
-- lock each customer row (FOR KEY SHARE) and dirty its page for every score written, which
-- doubled the cost of a first recompute's million-row write (1.55 s against 0.70 s per
-- 200,000 rows). The store deletes a customer's scores itself when it erases or merges the
-- customer, the writes skip customers that no longer exist, and a row a racing scorer wrote
-- anyway has no purchases behind it, so the next recompute removes it (docs/scoring.md).
ALTER TABLE customer_scores DROP CONSTRAINT customer_scores_customer_id_fkey;

-- The scheduler takes due runs `ORDER BY due_at, id`. SQLite's index on due_at already ends in
-- the rowid (= id); this names it, as on PostgreSQL, where it was missing.
DROP INDEX automation_runs_due;
CREATE INDEX automation_runs_due ON automation_runs (due_at, id) WHERE due_at IS NOT NULL;

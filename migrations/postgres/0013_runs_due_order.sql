-- The scheduler takes due runs `ORDER BY due_at, id`. With the index on due_at alone,
-- PostgreSQL read every run due at the same instant (a million enrolled at once) and sorted
-- them by id for each batch of 1,000; with id in the index it reads the batch and stops.
DROP INDEX automation_runs_due;
CREATE INDEX automation_runs_due ON automation_runs (due_at, id) WHERE due_at IS NOT NULL;

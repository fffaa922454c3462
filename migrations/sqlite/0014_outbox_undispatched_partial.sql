-- The dispatcher reads `WHERE dispatched_at IS NULL ORDER BY id`; a full index on
-- (dispatched_at, id) also held an entry for every dispatched row, forever. Partial, like
-- outbox_unautomated: an entry written with the row settled at birth (no active webhook in its
-- workspace) never enters it, and a dispatched row's entry leaves at the next vacuum.
DROP INDEX outbox_undispatched;
CREATE INDEX outbox_undispatched ON outbox (id) WHERE dispatched_at IS NULL;

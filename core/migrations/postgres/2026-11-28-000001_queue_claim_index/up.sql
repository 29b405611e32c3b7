-- The claim reads each status's due runs in (next_attempt_at, id) order and stops at the first:
-- with id in the index that order needs no sort on PostgreSQL (SQLite keys every index by rowid
-- already, so there it is the same index under a name that says what it is for).
DROP INDEX pipeline_runs_status_next;
CREATE INDEX pipeline_runs_claim ON pipeline_runs (status, next_attempt_at, id);

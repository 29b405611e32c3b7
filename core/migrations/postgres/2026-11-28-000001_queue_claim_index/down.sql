DROP INDEX pipeline_runs_claim;
CREATE INDEX pipeline_runs_status_next ON pipeline_runs (status, next_attempt_at);

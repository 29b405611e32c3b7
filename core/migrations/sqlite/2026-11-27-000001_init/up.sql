-- Generated from one table list so both backends keep one schema.
CREATE TABLE incidents (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    title TEXT NOT NULL,
    status TEXT NOT NULL,
    severity TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    summary TEXT NOT NULL DEFAULT '',
    metadata TEXT NOT NULL DEFAULT '{}',
    group_key TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    acknowledged_at TIMESTAMP,
    resolved_at TIMESTAMP,
    closed_at TIMESTAMP
);
CREATE INDEX incidents_status_severity ON incidents (status, severity);
CREATE INDEX incidents_created_at ON incidents (created_at);
CREATE INDEX incidents_group_key_status ON incidents (group_key, status);

CREATE TABLE alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    fingerprint TEXT NOT NULL,
    source TEXT NOT NULL,
    name TEXT NOT NULL,
    severity TEXT NOT NULL,
    status TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    labels TEXT NOT NULL DEFAULT '{}',
    annotations TEXT NOT NULL DEFAULT '{}',
    raw_payload TEXT NOT NULL DEFAULT '{}',
    trace_id TEXT NOT NULL DEFAULT '',
    started_at TIMESTAMP NOT NULL,
    ended_at TIMESTAMP,
    received_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    incident_id BIGINT REFERENCES incidents (id) ON DELETE SET NULL
);
CREATE UNIQUE INDEX alerts_source_fingerprint ON alerts (source, fingerprint);
CREATE INDEX alerts_status_severity ON alerts (status, severity);
CREATE INDEX alerts_received_at ON alerts (received_at);
CREATE INDEX alerts_incident_id ON alerts (incident_id);
CREATE INDEX alerts_trace_id ON alerts (trace_id);

CREATE TABLE alert_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    alert_id BIGINT NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    event TEXT NOT NULL,
    old_status TEXT NOT NULL DEFAULT '',
    new_status TEXT NOT NULL DEFAULT '',
    details TEXT NOT NULL DEFAULT '{}',
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX alert_history_alert_id ON alert_history (alert_id, created_at);

CREATE TABLE incident_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    incident_id BIGINT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    event TEXT NOT NULL,
    old_status TEXT NOT NULL DEFAULT '',
    new_status TEXT NOT NULL DEFAULT '',
    actor TEXT NOT NULL DEFAULT 'system',
    details TEXT NOT NULL DEFAULT '{}',
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX incident_events_incident_id ON incident_events (incident_id, created_at);

CREATE TABLE check_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    checker_name TEXT NOT NULL,
    hostname TEXT NOT NULL,
    status TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    metrics TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    warning_threshold DOUBLE PRECISION,
    critical_threshold DOUBLE PRECISION,
    duration_ms DOUBLE PRECISION NOT NULL,
    executed_at TIMESTAMP NOT NULL,
    trace_id TEXT NOT NULL DEFAULT '',
    run_id TEXT
);
CREATE INDEX check_runs_checker_executed ON check_runs (checker_name, executed_at);
CREATE INDEX check_runs_executed_at ON check_runs (executed_at);
CREATE INDEX check_runs_trace_id ON check_runs (trace_id);

CREATE TABLE analysis_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    trace_id TEXT NOT NULL DEFAULT '',
    run_id TEXT,
    provider TEXT NOT NULL,
    provider_config TEXT NOT NULL DEFAULT '{}',
    model_name TEXT,
    status TEXT NOT NULL,
    incident_id BIGINT REFERENCES incidents (id) ON DELETE SET NULL,
    input_summary TEXT NOT NULL DEFAULT '',
    recommendations TEXT NOT NULL DEFAULT '[]',
    recommendations_count INTEGER NOT NULL DEFAULT 0,
    prompt_tokens BIGINT,
    completion_tokens BIGINT,
    total_tokens BIGINT,
    error_message TEXT,
    fallback_used BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMP NOT NULL,
    started_at TIMESTAMP,
    completed_at TIMESTAMP,
    duration_ms DOUBLE PRECISION
);
CREATE INDEX analysis_runs_created_at ON analysis_runs (created_at);
CREATE INDEX analysis_runs_incident_id ON analysis_runs (incident_id);
CREATE INDEX analysis_runs_trace_id ON analysis_runs (trace_id);

CREATE TABLE pipeline_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    run_id TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    status TEXT NOT NULL,
    current_stage TEXT,
    definition_name TEXT,
    incident_id BIGINT REFERENCES incidents (id) ON DELETE SET NULL,
    source TEXT NOT NULL DEFAULT 'unknown',
    environment TEXT NOT NULL DEFAULT 'production',
    attempts INTEGER NOT NULL DEFAULT 0,
    max_retries INTEGER NOT NULL DEFAULT 3,
    last_error_type TEXT,
    last_error_message TEXT,
    last_error_retryable BOOLEAN NOT NULL DEFAULT FALSE,
    inbound_payload TEXT NOT NULL DEFAULT '{}',
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    started_at TIMESTAMP,
    completed_at TIMESTAMP,
    total_duration_ms DOUBLE PRECISION,
    lease_owner TEXT,
    lease_expires_at TIMESTAMP,
    next_attempt_at TIMESTAMP,
    resumed_at TIMESTAMP
);
CREATE UNIQUE INDEX pipeline_runs_run_id ON pipeline_runs (run_id);
CREATE INDEX pipeline_runs_status_next ON pipeline_runs (status, next_attempt_at);
CREATE INDEX pipeline_runs_created_at ON pipeline_runs (created_at);
CREATE INDEX pipeline_runs_trace_id ON pipeline_runs (trace_id);
CREATE INDEX pipeline_runs_incident_id ON pipeline_runs (incident_id);

CREATE TABLE stage_executions (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    pipeline_run_id BIGINT NOT NULL REFERENCES pipeline_runs (id) ON DELETE CASCADE,
    node_id TEXT NOT NULL,
    stage TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    input_snapshot TEXT NOT NULL DEFAULT '{}',
    output_snapshot TEXT NOT NULL DEFAULT '{}',
    error_type TEXT,
    error_message TEXT,
    error_retryable BOOLEAN NOT NULL DEFAULT FALSE,
    skip_reason TEXT,
    started_at TIMESTAMP,
    completed_at TIMESTAMP,
    duration_ms DOUBLE PRECISION
);
CREATE UNIQUE INDEX stage_executions_run_node_attempt ON stage_executions (pipeline_run_id, node_id, attempt);

CREATE TABLE notification_channels (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    name TEXT NOT NULL,
    driver TEXT NOT NULL,
    config TEXT NOT NULL DEFAULT '{}',
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    description TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX notification_channels_name ON notification_channels (name);

CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    channel_name TEXT,
    driver TEXT NOT NULL,
    status TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL,
    message_id TEXT,
    response TEXT,
    error TEXT,
    trace_id TEXT NOT NULL DEFAULT '',
    run_id TEXT,
    incident_id BIGINT REFERENCES incidents (id) ON DELETE SET NULL,
    created_at TIMESTAMP NOT NULL,
    duration_ms DOUBLE PRECISION
);
CREATE INDEX deliveries_created_at ON deliveries (created_at);
CREATE INDEX deliveries_idempotency_key ON deliveries (idempotency_key);
CREATE INDEX deliveries_run_id ON deliveries (run_id);

CREATE TABLE pipeline_definitions (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    version INTEGER NOT NULL DEFAULT 1,
    config TEXT NOT NULL,
    active BOOLEAN NOT NULL DEFAULT TRUE,
    tags TEXT NOT NULL DEFAULT '[]',
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX pipeline_definitions_name ON pipeline_definitions (name);

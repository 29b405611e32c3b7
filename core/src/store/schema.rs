//! Diesel schema, written from the migrations (both backends share it).
#![allow(missing_docs)]

diesel::table! {
    incidents (id) {
        id -> BigInt,
        title -> Text,
        status -> Text,
        severity -> Text,
        description -> Text,
        summary -> Text,
        metadata -> Text,
        group_key -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        acknowledged_at -> Nullable<Timestamp>,
        resolved_at -> Nullable<Timestamp>,
        closed_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    alerts (id) {
        id -> BigInt,
        fingerprint -> Text,
        source -> Text,
        name -> Text,
        severity -> Text,
        status -> Text,
        description -> Text,
        labels -> Text,
        annotations -> Text,
        raw_payload -> Text,
        trace_id -> Text,
        started_at -> Timestamp,
        ended_at -> Nullable<Timestamp>,
        received_at -> Timestamp,
        updated_at -> Timestamp,
        incident_id -> Nullable<BigInt>,
    }
}

diesel::table! {
    alert_history (id) {
        id -> BigInt,
        alert_id -> BigInt,
        event -> Text,
        old_status -> Text,
        new_status -> Text,
        details -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    incident_events (id) {
        id -> BigInt,
        incident_id -> BigInt,
        event -> Text,
        old_status -> Text,
        new_status -> Text,
        actor -> Text,
        details -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    check_runs (id) {
        id -> BigInt,
        checker_name -> Text,
        hostname -> Text,
        status -> Text,
        message -> Text,
        metrics -> Text,
        error -> Nullable<Text>,
        warning_threshold -> Nullable<Double>,
        critical_threshold -> Nullable<Double>,
        duration_ms -> Double,
        executed_at -> Timestamp,
        trace_id -> Text,
        run_id -> Nullable<Text>,
    }
}

diesel::table! {
    analysis_runs (id) {
        id -> BigInt,
        trace_id -> Text,
        run_id -> Nullable<Text>,
        provider -> Text,
        provider_config -> Text,
        model_name -> Nullable<Text>,
        status -> Text,
        incident_id -> Nullable<BigInt>,
        input_summary -> Text,
        recommendations -> Text,
        recommendations_count -> Integer,
        prompt_tokens -> Nullable<BigInt>,
        completion_tokens -> Nullable<BigInt>,
        total_tokens -> Nullable<BigInt>,
        error_message -> Nullable<Text>,
        fallback_used -> Bool,
        created_at -> Timestamp,
        started_at -> Nullable<Timestamp>,
        completed_at -> Nullable<Timestamp>,
        duration_ms -> Nullable<Double>,
    }
}

diesel::table! {
    pipeline_runs (id) {
        id -> BigInt,
        run_id -> Text,
        trace_id -> Text,
        status -> Text,
        current_stage -> Nullable<Text>,
        definition_name -> Nullable<Text>,
        incident_id -> Nullable<BigInt>,
        source -> Text,
        environment -> Text,
        attempts -> Integer,
        max_retries -> Integer,
        last_error_type -> Nullable<Text>,
        last_error_message -> Nullable<Text>,
        last_error_retryable -> Bool,
        inbound_payload -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        started_at -> Nullable<Timestamp>,
        completed_at -> Nullable<Timestamp>,
        total_duration_ms -> Nullable<Double>,
        lease_owner -> Nullable<Text>,
        lease_expires_at -> Nullable<Timestamp>,
        next_attempt_at -> Nullable<Timestamp>,
        resumed_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    stage_executions (id) {
        id -> BigInt,
        pipeline_run_id -> BigInt,
        node_id -> Text,
        stage -> Text,
        attempt -> Integer,
        status -> Text,
        idempotency_key -> Text,
        input_snapshot -> Text,
        output_snapshot -> Text,
        error_type -> Nullable<Text>,
        error_message -> Nullable<Text>,
        error_retryable -> Bool,
        skip_reason -> Nullable<Text>,
        started_at -> Nullable<Timestamp>,
        completed_at -> Nullable<Timestamp>,
        duration_ms -> Nullable<Double>,
    }
}

diesel::table! {
    notification_channels (id) {
        id -> BigInt,
        name -> Text,
        driver -> Text,
        config -> Text,
        enabled -> Bool,
        description -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    deliveries (id) {
        id -> BigInt,
        channel_name -> Nullable<Text>,
        driver -> Text,
        status -> Text,
        attempt -> Integer,
        idempotency_key -> Text,
        message_id -> Nullable<Text>,
        response -> Nullable<Text>,
        error -> Nullable<Text>,
        trace_id -> Text,
        run_id -> Nullable<Text>,
        incident_id -> Nullable<BigInt>,
        created_at -> Timestamp,
        duration_ms -> Nullable<Double>,
    }
}

diesel::table! {
    pipeline_definitions (id) {
        id -> BigInt,
        name -> Text,
        description -> Text,
        version -> Integer,
        config -> Text,
        active -> Bool,
        tags -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::joinable!(alerts -> incidents (incident_id));
diesel::joinable!(alert_history -> alerts (alert_id));
diesel::joinable!(incident_events -> incidents (incident_id));
diesel::joinable!(stage_executions -> pipeline_runs (pipeline_run_id));

diesel::allow_tables_to_appear_in_same_query!(
    incidents,
    alerts,
    alert_history,
    incident_events,
    check_runs,
    analysis_runs,
    pipeline_runs,
    stage_executions,
    notification_channels,
    deliveries,
    pipeline_definitions,
);

#![allow(missing_docs)]
//! Row types as diesel reads them, and their conversion to the domain types.
//!
//! JSON is stored as text and timestamps as UTC without a zone, so one schema serves SQLite and
//! PostgreSQL alike; the conversion to typed domain values happens here, in one place.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::*;
use super::{json_from, ts};
use crate::domain::*;
use crate::error::Error;

/// A `incidents` row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = incidents)]
pub struct IncidentRow {
    pub id: i64,
    pub title: String,
    pub status: String,
    pub severity: String,
    pub description: String,
    pub summary: String,
    pub metadata: String,
    pub group_key: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub acknowledged_at: Option<NaiveDateTime>,
    pub resolved_at: Option<NaiveDateTime>,
    pub closed_at: Option<NaiveDateTime>,
}

impl TryFrom<IncidentRow> for Incident {
    type Error = Error;

    fn try_from(row: IncidentRow) -> Result<Self, Error> {
        Ok(Self {
            id: row.id,
            title: row.title,
            status: row.status.parse()?,
            severity: row.severity.parse()?,
            description: row.description,
            summary: row.summary,
            metadata: json_from(&row.metadata, "incidents.metadata")?,
            group_key: row.group_key,
            created_at: ts(row.created_at),
            updated_at: ts(row.updated_at),
            acknowledged_at: row.acknowledged_at.map(ts),
            resolved_at: row.resolved_at.map(ts),
            closed_at: row.closed_at.map(ts),
        })
    }
}

/// A `alerts` row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = alerts)]
pub struct AlertRow {
    pub id: i64,
    pub fingerprint: String,
    pub source: String,
    pub name: String,
    pub severity: String,
    pub status: String,
    pub description: String,
    pub labels: String,
    pub annotations: String,
    pub raw_payload: String,
    pub trace_id: String,
    pub started_at: NaiveDateTime,
    pub ended_at: Option<NaiveDateTime>,
    pub received_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub incident_id: Option<i64>,
}

impl TryFrom<AlertRow> for Alert {
    type Error = Error;

    fn try_from(row: AlertRow) -> Result<Self, Error> {
        Ok(Self {
            id: row.id,
            fingerprint: row.fingerprint,
            source: row.source,
            name: row.name,
            severity: row.severity.parse()?,
            status: row.status.parse()?,
            description: row.description,
            labels: json_from(&row.labels, "alerts.labels")?,
            annotations: json_from(&row.annotations, "alerts.annotations")?,
            raw_payload: json_from(&row.raw_payload, "alerts.raw_payload")?,
            trace_id: row.trace_id,
            started_at: ts(row.started_at),
            ended_at: row.ended_at.map(ts),
            received_at: ts(row.received_at),
            updated_at: ts(row.updated_at),
            incident_id: row.incident_id,
        })
    }
}

/// The columns of an `alerts` row that a re-sent alert is compared with
/// ([`super::ingest::AlertState`]).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = alerts)]
pub struct AlertStateRow {
    #[diesel(embed)]
    pub matched: AlertMatchRow,
    pub started_at: NaiveDateTime,
    pub ended_at: Option<NaiveDateTime>,
}

/// The columns of an `alerts` row that decide whether a re-send changes it, labels and
/// annotations as their stored text ([`super::ingest::AlertMatch`]).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = alerts)]
pub struct AlertMatchRow {
    pub id: i64,
    pub severity: String,
    pub status: String,
    pub description: String,
    pub labels: String,
    pub annotations: String,
    pub incident_id: Option<i64>,
}

/// A `alert_history` row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = alert_history)]
pub struct AlertHistoryRow {
    pub id: i64,
    pub alert_id: i64,
    pub event: String,
    pub old_status: String,
    pub new_status: String,
    pub details: String,
    pub created_at: NaiveDateTime,
}

impl TryFrom<AlertHistoryRow> for AlertHistory {
    type Error = Error;

    fn try_from(row: AlertHistoryRow) -> Result<Self, Error> {
        Ok(Self {
            id: row.id,
            alert_id: row.alert_id,
            event: row.event,
            old_status: row.old_status,
            new_status: row.new_status,
            details: json_from(&row.details, "alert_history.details")?,
            created_at: ts(row.created_at),
        })
    }
}

/// A `incident_events` row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = incident_events)]
pub struct IncidentEventRow {
    pub id: i64,
    pub incident_id: i64,
    pub event: String,
    pub old_status: String,
    pub new_status: String,
    pub actor: String,
    pub details: String,
    pub created_at: NaiveDateTime,
}

impl TryFrom<IncidentEventRow> for IncidentEvent {
    type Error = Error;

    fn try_from(row: IncidentEventRow) -> Result<Self, Error> {
        Ok(Self {
            id: row.id,
            incident_id: row.incident_id,
            event: row.event,
            old_status: row.old_status,
            new_status: row.new_status,
            actor: row.actor,
            details: json_from(&row.details, "incident_events.details")?,
            created_at: ts(row.created_at),
        })
    }
}

/// A `check_runs` row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = check_runs)]
pub struct CheckRunRow {
    pub id: i64,
    pub checker_name: String,
    pub hostname: String,
    pub status: String,
    pub message: String,
    pub metrics: String,
    pub error: Option<String>,
    pub warning_threshold: Option<f64>,
    pub critical_threshold: Option<f64>,
    pub duration_ms: f64,
    pub executed_at: NaiveDateTime,
    pub trace_id: String,
    pub run_id: Option<String>,
}

impl TryFrom<CheckRunRow> for CheckRun {
    type Error = Error;

    fn try_from(row: CheckRunRow) -> Result<Self, Error> {
        Ok(Self {
            id: row.id,
            checker_name: row.checker_name,
            hostname: row.hostname,
            status: row.status.parse()?,
            message: row.message,
            metrics: json_from(&row.metrics, "check_runs.metrics")?,
            error: row.error,
            warning_threshold: row.warning_threshold,
            critical_threshold: row.critical_threshold,
            duration_ms: row.duration_ms,
            executed_at: ts(row.executed_at),
            trace_id: row.trace_id,
            run_id: row.run_id,
        })
    }
}

/// A `analysis_runs` row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = analysis_runs)]
pub struct AnalysisRunRow {
    pub id: i64,
    pub trace_id: String,
    pub run_id: Option<String>,
    pub provider: String,
    pub provider_config: String,
    pub model_name: Option<String>,
    pub status: String,
    pub incident_id: Option<i64>,
    pub input_summary: String,
    pub recommendations: String,
    pub recommendations_count: i32,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub total_tokens: Option<i64>,
    pub error_message: Option<String>,
    pub fallback_used: bool,
    pub created_at: NaiveDateTime,
    pub started_at: Option<NaiveDateTime>,
    pub completed_at: Option<NaiveDateTime>,
    pub duration_ms: Option<f64>,
}

impl TryFrom<AnalysisRunRow> for AnalysisRun {
    type Error = Error;

    fn try_from(row: AnalysisRunRow) -> Result<Self, Error> {
        Ok(Self {
            id: row.id,
            trace_id: row.trace_id,
            run_id: row.run_id,
            provider: row.provider,
            provider_config: json_from(&row.provider_config, "analysis_runs.provider_config")?,
            model_name: row.model_name,
            status: row.status.parse()?,
            incident_id: row.incident_id,
            input_summary: row.input_summary,
            recommendations: json_from(&row.recommendations, "analysis_runs.recommendations")?,
            recommendations_count: row.recommendations_count,
            prompt_tokens: row.prompt_tokens,
            completion_tokens: row.completion_tokens,
            total_tokens: row.total_tokens,
            error_message: row.error_message,
            fallback_used: row.fallback_used,
            created_at: ts(row.created_at),
            started_at: row.started_at.map(ts),
            completed_at: row.completed_at.map(ts),
            duration_ms: row.duration_ms,
        })
    }
}

/// A `pipeline_runs` row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = pipeline_runs)]
pub struct PipelineRunRow {
    pub id: i64,
    pub run_id: String,
    pub trace_id: String,
    pub status: String,
    pub current_stage: Option<String>,
    pub definition_name: Option<String>,
    pub incident_id: Option<i64>,
    pub source: String,
    pub environment: String,
    pub attempts: i32,
    pub max_retries: i32,
    pub last_error_type: Option<String>,
    pub last_error_message: Option<String>,
    pub last_error_retryable: bool,
    pub inbound_payload: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub started_at: Option<NaiveDateTime>,
    pub completed_at: Option<NaiveDateTime>,
    pub total_duration_ms: Option<f64>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<NaiveDateTime>,
    pub next_attempt_at: Option<NaiveDateTime>,
    pub resumed_at: Option<NaiveDateTime>,
}

impl TryFrom<PipelineRunRow> for PipelineRun {
    type Error = Error;

    fn try_from(row: PipelineRunRow) -> Result<Self, Error> {
        Ok(Self {
            id: row.id,
            run_id: row.run_id,
            trace_id: row.trace_id,
            status: row.status.parse()?,
            current_stage: row.current_stage,
            definition_name: row.definition_name,
            incident_id: row.incident_id,
            source: row.source,
            environment: row.environment,
            attempts: row.attempts,
            max_retries: row.max_retries,
            last_error_type: row.last_error_type,
            last_error_message: row.last_error_message,
            last_error_retryable: row.last_error_retryable,
            inbound_payload: json_from(&row.inbound_payload, "pipeline_runs.inbound_payload")?,
            created_at: ts(row.created_at),
            updated_at: ts(row.updated_at),
            started_at: row.started_at.map(ts),
            completed_at: row.completed_at.map(ts),
            total_duration_ms: row.total_duration_ms,
            lease_owner: row.lease_owner,
            lease_expires_at: row.lease_expires_at.map(ts),
            next_attempt_at: row.next_attempt_at.map(ts),
            resumed_at: row.resumed_at.map(ts),
        })
    }
}

/// A `stage_executions` row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = stage_executions)]
pub struct StageExecutionRow {
    pub id: i64,
    pub pipeline_run_id: i64,
    pub node_id: String,
    pub stage: String,
    pub attempt: i32,
    pub status: String,
    pub idempotency_key: String,
    pub input_snapshot: String,
    pub output_snapshot: String,
    pub error_type: Option<String>,
    pub error_message: Option<String>,
    pub error_retryable: bool,
    pub skip_reason: Option<String>,
    pub started_at: Option<NaiveDateTime>,
    pub completed_at: Option<NaiveDateTime>,
    pub duration_ms: Option<f64>,
}

impl TryFrom<StageExecutionRow> for StageExecution {
    type Error = Error;

    fn try_from(row: StageExecutionRow) -> Result<Self, Error> {
        Ok(Self {
            id: row.id,
            pipeline_run_id: row.pipeline_run_id,
            node_id: row.node_id,
            stage: row.stage,
            attempt: row.attempt,
            status: row.status.parse()?,
            idempotency_key: row.idempotency_key,
            input_snapshot: json_from(&row.input_snapshot, "stage_executions.input_snapshot")?,
            output_snapshot: json_from(&row.output_snapshot, "stage_executions.output_snapshot")?,
            error_type: row.error_type,
            error_message: row.error_message,
            error_retryable: row.error_retryable,
            skip_reason: row.skip_reason,
            started_at: row.started_at.map(ts),
            completed_at: row.completed_at.map(ts),
            duration_ms: row.duration_ms,
        })
    }
}

/// A `notification_channels` row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = notification_channels)]
pub struct NotificationChannelRow {
    pub id: i64,
    pub name: String,
    pub driver: String,
    pub config: String,
    pub enabled: bool,
    pub description: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl TryFrom<NotificationChannelRow> for NotificationChannel {
    type Error = Error;

    fn try_from(row: NotificationChannelRow) -> Result<Self, Error> {
        Ok(Self {
            id: row.id,
            name: row.name,
            driver: row.driver,
            config: json_from(&row.config, "notification_channels.config")?,
            enabled: row.enabled,
            description: row.description,
            created_at: ts(row.created_at),
            updated_at: ts(row.updated_at),
        })
    }
}

/// A `deliveries` row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = deliveries)]
pub struct DeliveryRow {
    pub id: i64,
    pub channel_name: Option<String>,
    pub driver: String,
    pub status: String,
    pub attempt: i32,
    pub idempotency_key: String,
    pub message_id: Option<String>,
    pub response: Option<String>,
    pub error: Option<String>,
    pub trace_id: String,
    pub run_id: Option<String>,
    pub incident_id: Option<i64>,
    pub created_at: NaiveDateTime,
    pub duration_ms: Option<f64>,
}

impl TryFrom<DeliveryRow> for Delivery {
    type Error = Error;

    fn try_from(row: DeliveryRow) -> Result<Self, Error> {
        Ok(Self {
            id: row.id,
            channel_name: row.channel_name,
            driver: row.driver,
            status: row.status.parse()?,
            attempt: row.attempt,
            idempotency_key: row.idempotency_key,
            message_id: row.message_id,
            response: row.response,
            error: row.error,
            trace_id: row.trace_id,
            run_id: row.run_id,
            incident_id: row.incident_id,
            created_at: ts(row.created_at),
            duration_ms: row.duration_ms,
        })
    }
}

/// A `pipeline_definitions` row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = pipeline_definitions)]
pub struct PipelineDefinitionRow {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub version: i32,
    pub config: String,
    pub active: bool,
    pub tags: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl TryFrom<PipelineDefinitionRow> for PipelineDefinition {
    type Error = Error;

    fn try_from(row: PipelineDefinitionRow) -> Result<Self, Error> {
        Ok(Self {
            id: row.id,
            name: row.name,
            description: row.description,
            version: row.version,
            config: json_from(&row.config, "pipeline_definitions.config")?,
            active: row.active,
            tags: json_from(&row.tags, "pipeline_definitions.tags")?,
            created_at: ts(row.created_at),
            updated_at: ts(row.updated_at),
        })
    }
}

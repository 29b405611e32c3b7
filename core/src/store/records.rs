//! Record-level operations, as synchronous functions over a connection so that callers compose
//! them inside one transaction (`store.write(|c| { insert_alert(c, ..)?; add_alert_history(c, ..) })`).
//!
//! Each `New*` type carries what the caller decides; ids and `created_at`/`updated_at` are set here.
//!
//! Lookups by a unique key use `get_result` rather than `first`: `first` binds its `LIMIT 1` as a
//! parameter, and SQLite re-prepares a statement whose `LIMIT` parameter is bound again, on every
//! execution (about a tenth of the ingest path's CPU time before this was changed).

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde_json::Value;

use super::rows::*;
use super::schema::*;
use super::{AnyConnection, Stamp, json_to, now, ts};
use crate::domain::*;
use crate::error::{Error, Result};

/// A caller's timestamp as stored: microseconds, which both backends keep exactly, so a record
/// built from what was written equals the record read back.
fn naive(t: DateTime<Utc>) -> chrono::NaiveDateTime {
    use chrono::Timelike;
    let n = t.naive_utc();
    n.with_nanosecond(n.nanosecond() / 1_000 * 1_000)
        .unwrap_or(n)
}

/// Clamps a caller's page size: listing endpoints never load unbounded sets.
pub fn clamp_limit(limit: i64) -> i64 {
    limit.clamp(1, 1000)
}

// ---------------------------------------------------------------------------------------------
// Incidents

/// A new incident.
#[derive(Debug, Clone)]
pub struct NewIncident {
    /// Title.
    pub title: String,
    /// Severity.
    pub severity: Severity,
    /// Description.
    pub description: String,
    /// Grouping key (alert name and instance).
    pub group_key: String,
    /// Metadata.
    pub metadata: Value,
}

/// Inserts an incident in status `open` and returns it: `new` with its id and timestamps.
pub fn insert_incident(conn: &mut AnyConnection, new: NewIncident) -> Result<Incident> {
    let t = now();
    // Only the id comes back, and `new`'s fields move into the incident: nothing is parsed back
    // or copied (issue 8).
    let metadata = json_to(&new.metadata)?;
    let id: i64 = super::insert_id!(
        conn,
        incidents::table,
        incidents::id,
        (
            incidents::title.eq(&new.title),
            incidents::status.eq(IncidentStatus::Open.as_str()),
            incidents::severity.eq(new.severity.as_str()),
            incidents::description.eq(&new.description),
            incidents::summary.eq(""),
            incidents::metadata.eq(&metadata),
            incidents::group_key.eq(&new.group_key),
            incidents::created_at.eq(Stamp(t)),
            incidents::updated_at.eq(Stamp(t)),
        )
    )?;
    Ok(Incident {
        id,
        title: new.title,
        status: IncidentStatus::Open,
        severity: new.severity,
        description: new.description,
        summary: String::new(),
        metadata: new.metadata,
        group_key: new.group_key,
        created_at: ts(t),
        updated_at: ts(t),
        acknowledged_at: None,
        resolved_at: None,
        closed_at: None,
    })
}

/// One incident.
pub fn get_incident(conn: &mut AnyConnection, id: i64) -> Result<Incident> {
    super::direct!(conn, |c| incidents::table
        .find(id)
        .select(incidents::all_columns)
        .get_result::<IncidentRow>(c)
        .optional())?
    .ok_or_else(|| Error::not_found(format!("incident {id} not found")))?
    .try_into()
}

/// Filters for listing incidents.
#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    /// Only this status.
    pub status: Option<IncidentStatus>,
    /// Only this severity.
    pub severity: Option<Severity>,
    /// At most this many (clamped to 1..=1000; 0 means 100).
    pub limit: i64,
    /// Skip this many.
    pub offset: i64,
}

/// Incidents, newest first.
pub fn list_incidents(conn: &mut AnyConnection, f: &IncidentFilter) -> Result<Vec<Incident>> {
    let mut q = incidents::table.select(incidents::all_columns).into_boxed();
    if let Some(s) = f.status {
        q = q.filter(incidents::status.eq(s.as_str()));
    }
    if let Some(s) = f.severity {
        q = q.filter(incidents::severity.eq(s.as_str()));
    }
    let limit = if f.limit == 0 {
        100
    } else {
        clamp_limit(f.limit)
    };
    q.order((incidents::created_at.desc(), incidents::id.desc()))
        .limit(limit)
        .offset(f.offset.max(0))
        .load::<IncidentRow>(conn)?
        .into_iter()
        .map(TryInto::try_into)
        .collect()
}

/// Changes an incident's status, stamping the matching timestamp and recording the transition.
pub fn set_incident_status(
    conn: &mut AnyConnection,
    id: i64,
    status: IncidentStatus,
    actor: &str,
    details: Value,
) -> Result<Incident> {
    let before = get_incident(conn, id)?;
    let t = now();
    let target = incidents::table.find(id);
    match status {
        IncidentStatus::Open => diesel::update(target)
            .set((
                incidents::status.eq(status.as_str()),
                incidents::updated_at.eq(t),
                incidents::resolved_at.eq(None::<chrono::NaiveDateTime>),
                incidents::closed_at.eq(None::<chrono::NaiveDateTime>),
            ))
            .execute(conn)?,
        IncidentStatus::Acknowledged => diesel::update(target)
            .set((
                incidents::status.eq(status.as_str()),
                incidents::updated_at.eq(t),
                incidents::acknowledged_at.eq(t),
            ))
            .execute(conn)?,
        IncidentStatus::Resolved => diesel::update(target)
            .set((
                incidents::status.eq(status.as_str()),
                incidents::updated_at.eq(t),
                incidents::resolved_at.eq(t),
            ))
            .execute(conn)?,
        IncidentStatus::Closed => diesel::update(target)
            .set((
                incidents::status.eq(status.as_str()),
                incidents::updated_at.eq(t),
                incidents::closed_at.eq(t),
            ))
            .execute(conn)?,
    };
    let event = match (before.status, status) {
        (IncidentStatus::Resolved | IncidentStatus::Closed, IncidentStatus::Open) => "reopened",
        (_, s) => s.as_str(),
    };
    add_incident_event(
        conn,
        id,
        event,
        before.status.as_str(),
        status.as_str(),
        actor,
        details,
    )?;
    get_incident(conn, id)
}

/// Records a transition or note on an incident.
pub fn add_incident_event(
    conn: &mut AnyConnection,
    incident_id: i64,
    event: &str,
    old_status: &str,
    new_status: &str,
    actor: &str,
    details: Value,
) -> Result<IncidentEvent> {
    let t = now();
    let details_text = json_to(&details)?;
    let id: i64 = super::insert_id!(
        conn,
        incident_events::table,
        incident_events::id,
        (
            incident_events::incident_id.eq(incident_id),
            incident_events::event.eq(event),
            incident_events::old_status.eq(old_status),
            incident_events::new_status.eq(new_status),
            incident_events::actor.eq(actor),
            incident_events::details.eq(&details_text),
            incident_events::created_at.eq(Stamp(t)),
        )
    )?;
    Ok(IncidentEvent {
        id,
        incident_id,
        event: event.to_owned(),
        old_status: old_status.to_owned(),
        new_status: new_status.to_owned(),
        actor: actor.to_owned(),
        details,
        created_at: ts(t),
    })
}

/// An incident's events, oldest first.
pub fn list_incident_events(
    conn: &mut AnyConnection,
    incident_id: i64,
) -> Result<Vec<IncidentEvent>> {
    incident_events::table
        .filter(incident_events::incident_id.eq(incident_id))
        .order((incident_events::created_at.asc(), incident_events::id.asc()))
        .select(incident_events::all_columns)
        .load::<IncidentEventRow>(conn)?
        .into_iter()
        .map(TryInto::try_into)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Alerts

/// A new alert.
#[derive(Debug, Clone)]
pub struct NewAlert {
    /// Fingerprint (unique per source).
    pub fingerprint: String,
    /// Source driver.
    pub source: String,
    /// Name.
    pub name: String,
    /// Severity.
    pub severity: Severity,
    /// Status.
    pub status: AlertStatus,
    /// Description.
    pub description: String,
    /// Labels.
    pub labels: Labels,
    /// Annotations.
    pub annotations: Labels,
    /// Raw payload.
    pub raw_payload: RawPayload,
    /// Trace id.
    pub trace_id: String,
    /// Started.
    pub started_at: DateTime<Utc>,
    /// Ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// Incident.
    pub incident_id: Option<i64>,
}

/// Inserts an alert and returns it: `new` with its id and timestamps. A second alert with the
/// same (source, fingerprint) is a `Conflict`.
pub fn insert_alert(conn: &mut AnyConnection, new: NewAlert) -> Result<Alert> {
    let (id, t) = insert_alert_row(conn, &new)?;
    Ok(Alert {
        id,
        raw_payload: new.raw_payload.to_value(),
        fingerprint: new.fingerprint,
        source: new.source,
        name: new.name,
        severity: new.severity,
        status: new.status,
        description: new.description,
        labels: new.labels,
        annotations: new.annotations,
        trace_id: new.trace_id,
        // As stored: microsecond precision.
        started_at: ts(naive(new.started_at)),
        ended_at: new.ended_at.map(|e| ts(naive(e))),
        received_at: ts(t),
        updated_at: ts(t),
        incident_id: new.incident_id,
    })
}

/// [`insert_alert`] for a caller that needs only the new alert's id (the ingest path), without
/// building the [`Alert`] back (its raw payload decoded from text).
pub fn insert_alert_id(conn: &mut AnyConnection, new: &NewAlert) -> Result<i64> {
    insert_alert_row(conn, new).map(|(id, _)| id)
}

/// The insert itself: the new id and the time stamped as received.
fn insert_alert_row(conn: &mut AnyConnection, new: &NewAlert) -> Result<(i64, NaiveDateTime)> {
    let t = now();
    let started_at = naive(new.started_at);
    let ended_at = new.ended_at.map(naive);
    let (labels, annotations) = (json_to(&new.labels)?, json_to(&new.annotations)?);
    let id: i64 = super::insert_id!(
        conn,
        alerts::table,
        alerts::id,
        (
            alerts::fingerprint.eq(&new.fingerprint),
            alerts::source.eq(&new.source),
            alerts::name.eq(&new.name),
            alerts::severity.eq(new.severity.as_str()),
            alerts::status.eq(new.status.as_str()),
            alerts::description.eq(&new.description),
            alerts::labels.eq(&labels),
            alerts::annotations.eq(&annotations),
            alerts::raw_payload.eq(new.raw_payload.as_str()),
            alerts::trace_id.eq(&new.trace_id),
            alerts::started_at.eq(Stamp(started_at)),
            alerts::ended_at.eq(ended_at.map(Stamp)),
            alerts::received_at.eq(Stamp(t)),
            alerts::updated_at.eq(Stamp(t)),
            alerts::incident_id.eq(new.incident_id),
        )
    )?;
    Ok((id, t))
}

/// One alert.
pub fn get_alert(conn: &mut AnyConnection, id: i64) -> Result<Alert> {
    super::direct!(conn, |c| alerts::table
        .find(id)
        .select(alerts::all_columns)
        .get_result::<AlertRow>(c)
        .optional())?
    .ok_or_else(|| Error::not_found(format!("alert {id} not found")))?
    .try_into()
}

/// The query of [`alert_by_identity`].
pub(crate) type ByIdentity<'a> = diesel::dsl::Filter<
    alerts::table,
    diesel::dsl::And<
        diesel::dsl::Eq<alerts::source, &'a str>,
        diesel::dsl::Eq<alerts::fingerprint, &'a str>,
    >,
>;

/// The `alerts` row with this identity: the unique `(source, fingerprint)` index. Every lookup
/// of one alert by its identity starts here, so each renders the same SQL.
pub(crate) fn alert_by_identity<'a>(source: &'a str, fingerprint: &'a str) -> ByIdentity<'a> {
    alerts::table.filter(
        alerts::source
            .eq(source)
            .and(alerts::fingerprint.eq(fingerprint)),
    )
}

/// The alert with this identity, if any.
pub fn find_alert(
    conn: &mut AnyConnection,
    source: &str,
    fingerprint: &str,
) -> Result<Option<Alert>> {
    super::direct!(conn, |c| alert_by_identity(source, fingerprint)
        .select(alerts::all_columns)
        .get_result::<AlertRow>(c)
        .optional())?
    .map(TryInto::try_into)
    .transpose()
}

/// Filters for listing alerts.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    /// Only this status.
    pub status: Option<AlertStatus>,
    /// Only this severity.
    pub severity: Option<Severity>,
    /// Only this source.
    pub source: Option<String>,
    /// Only this incident.
    pub incident_id: Option<i64>,
    /// At most this many (clamped; 0 means 100).
    pub limit: i64,
    /// Skip this many.
    pub offset: i64,
}

/// Alerts, most recently received first.
pub fn list_alerts(conn: &mut AnyConnection, f: &AlertFilter) -> Result<Vec<Alert>> {
    let mut q = alerts::table.select(alerts::all_columns).into_boxed();
    if let Some(s) = f.status {
        q = q.filter(alerts::status.eq(s.as_str()));
    }
    if let Some(s) = f.severity {
        q = q.filter(alerts::severity.eq(s.as_str()));
    }
    if let Some(s) = &f.source {
        q = q.filter(alerts::source.eq(s.clone()));
    }
    if let Some(i) = f.incident_id {
        q = q.filter(alerts::incident_id.eq(i));
    }
    let limit = if f.limit == 0 {
        100
    } else {
        clamp_limit(f.limit)
    };
    q.order((alerts::received_at.desc(), alerts::id.desc()))
        .limit(limit)
        .offset(f.offset.max(0))
        .load::<AlertRow>(conn)?
        .into_iter()
        .map(TryInto::try_into)
        .collect()
}

/// The `cap` alerts of an incident received last, most recent first: what a notification
/// carries. `cap` must be a constant (see [`super::capped`]): it is written into the SQL, so the
/// statement stays prepared.
pub fn latest_alerts_of_incident(
    conn: &mut AnyConnection,
    incident_id: i64,
    cap: u32,
) -> Result<Vec<Alert>> {
    let q = alerts::table
        .select(alerts::all_columns)
        .filter(alerts::incident_id.eq(incident_id))
        .order((alerts::received_at.desc(), alerts::id.desc()));
    let q = super::capped::Capped::new(q, cap);
    super::direct!(conn, |c| q.load::<AlertRow>(c))?
        .into_iter()
        .map(TryInto::try_into)
        .collect()
}

/// Records a material change of an alert.
pub fn add_alert_history(
    conn: &mut AnyConnection,
    alert_id: i64,
    event: &str,
    old_status: &str,
    new_status: &str,
    details: Value,
) -> Result<AlertHistory> {
    let t = now();
    let details_text = json_to(&details)?;
    let id: i64 = super::insert_id!(
        conn,
        alert_history::table,
        alert_history::id,
        (
            alert_history::alert_id.eq(alert_id),
            alert_history::event.eq(event),
            alert_history::old_status.eq(old_status),
            alert_history::new_status.eq(new_status),
            alert_history::details.eq(&details_text),
            alert_history::created_at.eq(Stamp(t)),
        )
    )?;
    Ok(AlertHistory {
        id,
        alert_id,
        event: event.to_owned(),
        old_status: old_status.to_owned(),
        new_status: new_status.to_owned(),
        details,
        created_at: ts(t),
    })
}

/// An alert's history, oldest first.
pub fn list_alert_history(conn: &mut AnyConnection, alert_id: i64) -> Result<Vec<AlertHistory>> {
    alert_history::table
        .filter(alert_history::alert_id.eq(alert_id))
        .order((alert_history::created_at.asc(), alert_history::id.asc()))
        .select(alert_history::all_columns)
        .load::<AlertHistoryRow>(conn)?
        .into_iter()
        .map(TryInto::try_into)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Check runs

/// Records one checker execution.
pub fn insert_check_run(
    conn: &mut AnyConnection,
    result: &CheckResult,
    hostname: &str,
    trace_id: &str,
    run_id: Option<&str>,
) -> Result<CheckRun> {
    let t = now();
    let metrics = json_to(&result.metrics)?;
    // The record is built from what was written: nothing is read or parsed back.
    let id: i64 = super::insert_id!(
        conn,
        check_runs::table,
        check_runs::id,
        (
            check_runs::checker_name.eq(&result.checker),
            check_runs::hostname.eq(hostname),
            check_runs::status.eq(result.status.as_str()),
            check_runs::message.eq(&result.message),
            check_runs::metrics.eq(&metrics),
            check_runs::error.eq(result.error.as_deref()),
            check_runs::warning_threshold.eq(result.warning_threshold),
            check_runs::critical_threshold.eq(result.critical_threshold),
            check_runs::duration_ms.eq(result.duration_ms),
            check_runs::executed_at.eq(t),
            check_runs::trace_id.eq(trace_id),
            check_runs::run_id.eq(run_id),
        )
    )?;
    Ok(CheckRun {
        id,
        checker_name: result.checker.clone(),
        hostname: hostname.to_owned(),
        status: result.status,
        message: result.message.clone(),
        metrics: result.metrics.clone(),
        error: result.error.clone(),
        warning_threshold: result.warning_threshold,
        critical_threshold: result.critical_threshold,
        duration_ms: result.duration_ms,
        executed_at: ts(t),
        trace_id: trace_id.to_owned(),
        run_id: run_id.map(str::to_owned),
    })
}

/// Check runs, newest first, optionally of one checker.
pub fn list_check_runs(
    conn: &mut AnyConnection,
    checker: Option<&str>,
    limit: i64,
) -> Result<Vec<CheckRun>> {
    let mut q = check_runs::table
        .select(check_runs::all_columns)
        .into_boxed();
    if let Some(c) = checker {
        q = q.filter(check_runs::checker_name.eq(c.to_owned()));
    }
    q.order((check_runs::executed_at.desc(), check_runs::id.desc()))
        .limit(clamp_limit(limit))
        .load::<CheckRunRow>(conn)?
        .into_iter()
        .map(TryInto::try_into)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Analysis runs

/// A finished (or failed) analysis to record.
#[derive(Debug, Clone)]
pub struct NewAnalysisRun {
    /// Trace id.
    pub trace_id: String,
    /// Pipeline run id.
    pub run_id: Option<String>,
    /// Provider.
    pub provider: String,
    /// Provider config, already redacted.
    pub provider_config: Value,
    /// Model.
    pub model_name: Option<String>,
    /// Status.
    pub status: AnalysisStatus,
    /// Incident.
    pub incident_id: Option<i64>,
    /// Input summary.
    pub input_summary: String,
    /// Recommendations.
    pub recommendations: Vec<Recommendation>,
    /// Token usage.
    pub usage: Option<crate::plugin::TokenUsage>,
    /// Error.
    pub error_message: Option<String>,
    /// Whether the fallback provider was used.
    pub fallback_used: bool,
    /// Started.
    pub started_at: DateTime<Utc>,
    /// Completed.
    pub completed_at: Option<DateTime<Utc>>,
}

/// Records an analysis.
pub fn insert_analysis_run(conn: &mut AnyConnection, new: &NewAnalysisRun) -> Result<AnalysisRun> {
    let t = now();
    let duration = new
        .completed_at
        .map(|c| (c - new.started_at).num_microseconds().unwrap_or(0) as f64 / 1000.0);
    let count = i32::try_from(new.recommendations.len()).unwrap_or(i32::MAX);
    let config = crate::secret::redact(&new.provider_config);
    let provider_config = json_to(&config)?;
    let recommendations = serde_json::to_value(&new.recommendations)
        .map_err(|e| Error::internal(format!("cannot serialise JSON: {e}")))?;
    let recommendations_text = json_to(&recommendations)?;
    let (started_at, completed_at) = (naive(new.started_at), new.completed_at.map(naive));
    // The record is built from what was written: nothing is read or parsed back.
    let id: i64 = super::insert_id!(
        conn,
        analysis_runs::table,
        analysis_runs::id,
        (
            analysis_runs::trace_id.eq(&new.trace_id),
            analysis_runs::run_id.eq(new.run_id.as_deref()),
            analysis_runs::provider.eq(&new.provider),
            analysis_runs::provider_config.eq(&provider_config),
            analysis_runs::model_name.eq(new.model_name.as_deref()),
            analysis_runs::status.eq(new.status.as_str()),
            analysis_runs::incident_id.eq(new.incident_id),
            analysis_runs::input_summary.eq(&new.input_summary),
            analysis_runs::recommendations.eq(&recommendations_text),
            analysis_runs::recommendations_count.eq(count),
            analysis_runs::prompt_tokens.eq(new.usage.map(|u| u.prompt_tokens)),
            analysis_runs::completion_tokens.eq(new.usage.map(|u| u.completion_tokens)),
            analysis_runs::total_tokens.eq(new.usage.map(|u| u.total_tokens)),
            analysis_runs::error_message.eq(new.error_message.as_deref()),
            analysis_runs::fallback_used.eq(new.fallback_used),
            analysis_runs::created_at.eq(t),
            analysis_runs::started_at.eq(Some(started_at)),
            analysis_runs::completed_at.eq(completed_at),
            analysis_runs::duration_ms.eq(duration),
        )
    )?;
    Ok(AnalysisRun {
        id,
        trace_id: new.trace_id.clone(),
        run_id: new.run_id.clone(),
        provider: new.provider.clone(),
        provider_config: config,
        model_name: new.model_name.clone(),
        status: new.status,
        incident_id: new.incident_id,
        input_summary: new.input_summary.clone(),
        recommendations,
        recommendations_count: count,
        prompt_tokens: new.usage.map(|u| u.prompt_tokens),
        completion_tokens: new.usage.map(|u| u.completion_tokens),
        total_tokens: new.usage.map(|u| u.total_tokens),
        error_message: new.error_message.clone(),
        fallback_used: new.fallback_used,
        created_at: ts(t),
        started_at: Some(ts(started_at)),
        completed_at: completed_at.map(ts),
        duration_ms: duration,
    })
}

/// Analysis runs, newest first.
pub fn list_analysis_runs(
    conn: &mut AnyConnection,
    incident_id: Option<i64>,
    limit: i64,
) -> Result<Vec<AnalysisRun>> {
    let mut q = analysis_runs::table
        .select(analysis_runs::all_columns)
        .into_boxed();
    if let Some(i) = incident_id {
        q = q.filter(analysis_runs::incident_id.eq(i));
    }
    q.order((analysis_runs::created_at.desc(), analysis_runs::id.desc()))
        .limit(clamp_limit(limit))
        .load::<AnalysisRunRow>(conn)?
        .into_iter()
        .map(TryInto::try_into)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Pipeline runs and stage executions

/// A new pipeline run, queued as `pending`.
#[derive(Debug, Clone)]
pub struct NewPipelineRun {
    /// Run id (see [`crate::domain::new_id`]).
    pub run_id: String,
    /// Trace id.
    pub trace_id: String,
    /// Definition name (`None`: the built-in default pipeline).
    pub definition_name: Option<String>,
    /// Incident.
    pub incident_id: Option<i64>,
    /// Source.
    pub source: String,
    /// Environment.
    pub environment: String,
    /// Retries per node.
    pub max_retries: i32,
    /// Inbound payload.
    pub inbound_payload: Value,
}

/// Inserts a pipeline run in status `pending`, ready to be claimed now.
pub fn insert_pipeline_run(conn: &mut AnyConnection, new: &NewPipelineRun) -> Result<PipelineRun> {
    insert_run(conn, new, None)
}

/// Inserts a pipeline run already claimed by `owner` until `lease_until`: the row a claim of a
/// freshly queued run leaves (`processing`, attempt 1, started now), written at once instead of
/// inserted and then updated.
pub fn insert_claimed_pipeline_run(
    conn: &mut AnyConnection,
    new: &NewPipelineRun,
    owner: &str,
    lease_until: NaiveDateTime,
) -> Result<PipelineRun> {
    insert_run(conn, new, Some((owner, lease_until)))
}

fn insert_run(
    conn: &mut AnyConnection,
    new: &NewPipelineRun,
    claim: Option<(&str, NaiveDateTime)>,
) -> Result<PipelineRun> {
    let t = now();
    let status = match claim {
        Some(_) => PipelineStatus::Processing,
        None => PipelineStatus::Pending,
    };
    let attempts = i32::from(claim.is_some());
    let started_at = claim.map(|_| t);
    let payload = json_to(&new.inbound_payload)?;
    let id: i64 = super::insert_id!(
        conn,
        pipeline_runs::table,
        pipeline_runs::id,
        (
            pipeline_runs::run_id.eq(&new.run_id),
            pipeline_runs::trace_id.eq(&new.trace_id),
            pipeline_runs::status.eq(status.as_str()),
            pipeline_runs::lease_owner.eq(claim.map(|(o, _)| o)),
            pipeline_runs::lease_expires_at.eq(claim.map(|(_, until)| Stamp(until))),
            pipeline_runs::started_at.eq(started_at.map(Stamp)),
            pipeline_runs::definition_name.eq(new.definition_name.as_deref()),
            pipeline_runs::incident_id.eq(new.incident_id),
            pipeline_runs::source.eq(&new.source),
            pipeline_runs::environment.eq(&new.environment),
            pipeline_runs::attempts.eq(attempts),
            pipeline_runs::max_retries.eq(new.max_retries),
            pipeline_runs::last_error_retryable.eq(false),
            pipeline_runs::inbound_payload.eq(&payload),
            pipeline_runs::created_at.eq(Stamp(t)),
            pipeline_runs::updated_at.eq(Stamp(t)),
            pipeline_runs::next_attempt_at.eq(Some(Stamp(t))),
        )
    )?;
    Ok(PipelineRun {
        id,
        run_id: new.run_id.clone(),
        trace_id: new.trace_id.clone(),
        status,
        current_stage: None,
        definition_name: new.definition_name.clone(),
        incident_id: new.incident_id,
        source: new.source.clone(),
        environment: new.environment.clone(),
        attempts,
        max_retries: new.max_retries,
        last_error_type: None,
        last_error_message: None,
        last_error_retryable: false,
        inbound_payload: new.inbound_payload.clone(),
        created_at: ts(t),
        updated_at: ts(t),
        started_at: started_at.map(ts),
        completed_at: None,
        total_duration_ms: None,
        lease_owner: claim.map(|(o, _)| o.to_owned()),
        lease_expires_at: claim.map(|(_, until)| ts(until)),
        next_attempt_at: Some(ts(t)),
        resumed_at: None,
    })
}

/// One run by its run id.
pub fn get_pipeline_run(conn: &mut AnyConnection, run_id: &str) -> Result<PipelineRun> {
    pipeline_runs::table
        .filter(pipeline_runs::run_id.eq(run_id))
        .select(pipeline_runs::all_columns)
        .get_result::<PipelineRunRow>(conn)
        .optional()?
        .ok_or_else(|| Error::not_found(format!("pipeline run {run_id:?} not found")))?
        .try_into()
}

/// Filters for listing runs.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only this status.
    pub status: Option<PipelineStatus>,
    /// Only this source.
    pub source: Option<String>,
    /// At most this many (clamped; 0 means 100).
    pub limit: i64,
}

/// Runs, newest first.
pub fn list_pipeline_runs(conn: &mut AnyConnection, f: &RunFilter) -> Result<Vec<PipelineRun>> {
    let mut q = pipeline_runs::table
        .select(pipeline_runs::all_columns)
        .into_boxed();
    if let Some(s) = f.status {
        q = q.filter(pipeline_runs::status.eq(s.as_str()));
    }
    if let Some(s) = &f.source {
        q = q.filter(pipeline_runs::source.eq(s.clone()));
    }
    let limit = if f.limit == 0 {
        100
    } else {
        clamp_limit(f.limit)
    };
    q.order((pipeline_runs::created_at.desc(), pipeline_runs::id.desc()))
        .limit(limit)
        .load::<PipelineRunRow>(conn)?
        .into_iter()
        .map(TryInto::try_into)
        .collect()
}

/// A stage execution to record.
#[derive(Debug, Clone)]
pub struct NewStageExecution {
    /// The run's database id.
    pub pipeline_run_id: i64,
    /// Node id.
    pub node_id: String,
    /// Node type.
    pub stage: String,
    /// Attempt.
    pub attempt: i32,
    /// Status.
    pub status: StageStatus,
    /// Idempotency key.
    pub idempotency_key: String,
    /// Input snapshot, redacted.
    pub input_snapshot: super::Snapshot,
}

/// Records the start of a node attempt and returns its id; the (run, node, attempt) triple is
/// unique.
pub fn insert_stage_execution(conn: &mut AnyConnection, new: &NewStageExecution) -> Result<i64> {
    insert_execution(conn, new, "{}", None, None)
}

/// Records a node attempt that ended before anything was written for it (a node run in the
/// claim's transaction, or one a skip control passed over), in its final `new.status`, and
/// returns its id: one statement where a start and a finish took two.
pub fn insert_finished_stage_execution(
    conn: &mut AnyConnection,
    new: &NewStageExecution,
    output: &super::Snapshot,
    skip_reason: Option<&str>,
    duration_ms: f64,
) -> Result<i64> {
    insert_execution(conn, new, output.as_str(), skip_reason, Some(duration_ms))
}

/// One insert for both: the same statement, so the connection keeps one prepared. `finished`:
/// the attempt's duration when it has ended.
fn insert_execution(
    conn: &mut AnyConnection,
    new: &NewStageExecution,
    output: &str,
    skip_reason: Option<&str>,
    finished: Option<f64>,
) -> Result<i64> {
    let t = now();
    // The id only: `RETURNING *` parsed the input snapshot (the whole run state) back, on the
    // writer, for a record whose every field the caller already has.
    Ok(super::insert_id!(
        conn,
        stage_executions::table,
        stage_executions::id,
        (
            stage_executions::pipeline_run_id.eq(new.pipeline_run_id),
            stage_executions::node_id.eq(&new.node_id),
            stage_executions::stage.eq(&new.stage),
            stage_executions::attempt.eq(new.attempt),
            stage_executions::status.eq(new.status.as_str()),
            stage_executions::idempotency_key.eq(&new.idempotency_key),
            stage_executions::input_snapshot.eq(new.input_snapshot.as_str()),
            stage_executions::output_snapshot.eq(output),
            stage_executions::error_retryable.eq(false),
            stage_executions::skip_reason.eq(skip_reason),
            stage_executions::started_at.eq(Some(Stamp(t))),
            stage_executions::completed_at.eq(finished.map(|_| Stamp(t))),
            stage_executions::duration_ms.eq(finished),
        )
    )?)
}

/// A run's stage executions in execution order.
pub fn list_stage_executions(
    conn: &mut AnyConnection,
    pipeline_run_id: i64,
) -> Result<Vec<StageExecution>> {
    stage_executions::table
        .filter(stage_executions::pipeline_run_id.eq(pipeline_run_id))
        .order(stage_executions::id.asc())
        .select(stage_executions::all_columns)
        .load::<StageExecutionRow>(conn)?
        .into_iter()
        .map(TryInto::try_into)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Notification channels and deliveries

/// Creates a channel; a name already taken is a `Conflict`.
pub fn insert_channel(
    conn: &mut AnyConnection,
    name: &str,
    driver: &str,
    config: &Value,
    description: &str,
) -> Result<NotificationChannel> {
    let t = now();
    let row: NotificationChannelRow = diesel::insert_into(notification_channels::table)
        .values((
            notification_channels::name.eq(name),
            notification_channels::driver.eq(driver),
            notification_channels::config.eq(json_to(config)?),
            notification_channels::enabled.eq(true),
            notification_channels::description.eq(description),
            notification_channels::created_at.eq(t),
            notification_channels::updated_at.eq(t),
        ))
        .returning(notification_channels::all_columns)
        .get_result(conn)?;
    row.try_into()
}

/// One channel by name.
pub fn get_channel(conn: &mut AnyConnection, name: &str) -> Result<NotificationChannel> {
    notification_channels::table
        .filter(notification_channels::name.eq(name))
        .select(notification_channels::all_columns)
        .get_result::<NotificationChannelRow>(conn)
        .optional()?
        .ok_or_else(|| Error::not_found(format!("notification channel {name:?} not found")))?
        .try_into()
}

/// Every channel, by name.
pub fn list_channels(
    conn: &mut AnyConnection,
    only_enabled: bool,
) -> Result<Vec<NotificationChannel>> {
    let mut q = notification_channels::table
        .select(notification_channels::all_columns)
        .into_boxed();
    if only_enabled {
        q = q.filter(notification_channels::enabled.eq(true));
    }
    q.order(notification_channels::name.asc())
        .load::<NotificationChannelRow>(conn)?
        .into_iter()
        .map(TryInto::try_into)
        .collect()
}

/// Enables or disables a channel.
pub fn set_channel_enabled(
    conn: &mut AnyConnection,
    name: &str,
    enabled: bool,
) -> Result<NotificationChannel> {
    let n =
        diesel::update(notification_channels::table.filter(notification_channels::name.eq(name)))
            .set((
                notification_channels::enabled.eq(enabled),
                notification_channels::updated_at.eq(now()),
            ))
            .execute(conn)?;
    if n == 0 {
        return Err(Error::not_found(format!(
            "notification channel {name:?} not found"
        )));
    }
    get_channel(conn, name)
}

/// Replaces a channel's driver config and description.
pub fn update_channel(
    conn: &mut AnyConnection,
    name: &str,
    config: &Value,
    description: &str,
) -> Result<NotificationChannel> {
    let n =
        diesel::update(notification_channels::table.filter(notification_channels::name.eq(name)))
            .set((
                notification_channels::config.eq(json_to(config)?),
                notification_channels::description.eq(description),
                notification_channels::updated_at.eq(now()),
            ))
            .execute(conn)?;
    if n == 0 {
        return Err(Error::not_found(format!(
            "notification channel {name:?} not found"
        )));
    }
    get_channel(conn, name)
}

/// Deletes a channel.
pub fn delete_channel(conn: &mut AnyConnection, name: &str) -> Result<()> {
    let n =
        diesel::delete(notification_channels::table.filter(notification_channels::name.eq(name)))
            .execute(conn)?;
    if n == 0 {
        return Err(Error::not_found(format!(
            "notification channel {name:?} not found"
        )));
    }
    Ok(())
}

/// A delivery attempt to record.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    /// Channel name.
    pub channel_name: Option<String>,
    /// Driver.
    pub driver: String,
    /// Outcome.
    pub status: DeliveryStatus,
    /// Attempt.
    pub attempt: i32,
    /// Idempotency key.
    pub idempotency_key: String,
    /// Provider message id.
    pub message_id: Option<String>,
    /// HTTP status or SMTP reply.
    pub response: Option<String>,
    /// Error.
    pub error: Option<String>,
    /// Trace id.
    pub trace_id: String,
    /// Run id.
    pub run_id: Option<String>,
    /// Incident.
    pub incident_id: Option<i64>,
    /// Duration.
    pub duration_ms: Option<f64>,
}

/// Records a delivery attempt.
pub fn insert_delivery(conn: &mut AnyConnection, new: &NewDelivery) -> Result<Delivery> {
    let t = now();
    // The record is built from what was written: nothing is read back.
    let id: i64 = super::insert_id!(
        conn,
        deliveries::table,
        deliveries::id,
        (
            deliveries::channel_name.eq(new.channel_name.as_deref()),
            deliveries::driver.eq(&new.driver),
            deliveries::status.eq(new.status.as_str()),
            deliveries::attempt.eq(new.attempt),
            deliveries::idempotency_key.eq(&new.idempotency_key),
            deliveries::message_id.eq(new.message_id.as_deref()),
            deliveries::response.eq(new.response.as_deref()),
            deliveries::error.eq(new.error.as_deref()),
            deliveries::trace_id.eq(&new.trace_id),
            deliveries::run_id.eq(new.run_id.as_deref()),
            deliveries::incident_id.eq(new.incident_id),
            deliveries::created_at.eq(t),
            deliveries::duration_ms.eq(new.duration_ms),
        )
    )?;
    Ok(Delivery {
        id,
        channel_name: new.channel_name.clone(),
        driver: new.driver.clone(),
        status: new.status,
        attempt: new.attempt,
        idempotency_key: new.idempotency_key.clone(),
        message_id: new.message_id.clone(),
        response: new.response.clone(),
        error: new.error.clone(),
        trace_id: new.trace_id.clone(),
        run_id: new.run_id.clone(),
        incident_id: new.incident_id,
        created_at: ts(t),
        duration_ms: new.duration_ms,
    })
}

/// Deliveries, newest first, optionally of one run.
pub fn list_deliveries(
    conn: &mut AnyConnection,
    run_id: Option<&str>,
    limit: i64,
) -> Result<Vec<Delivery>> {
    let mut q = deliveries::table
        .select(deliveries::all_columns)
        .into_boxed();
    if let Some(r) = run_id {
        q = q.filter(deliveries::run_id.eq(r.to_owned()));
    }
    q.order((deliveries::created_at.desc(), deliveries::id.desc()))
        .limit(clamp_limit(limit))
        .load::<DeliveryRow>(conn)?
        .into_iter()
        .map(TryInto::try_into)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Pipeline definitions

/// Creates a definition, or replaces it and bumps its version.
pub fn upsert_definition(
    conn: &mut AnyConnection,
    name: &str,
    description: &str,
    config: &Value,
    tags: &[String],
) -> Result<PipelineDefinition> {
    let t = now();
    let existing = pipeline_definitions::table
        .filter(pipeline_definitions::name.eq(name))
        .select(pipeline_definitions::all_columns)
        .get_result::<PipelineDefinitionRow>(conn)
        .optional()?;
    match existing {
        Some(row) => {
            diesel::update(pipeline_definitions::table.find(row.id))
                .set((
                    pipeline_definitions::description.eq(description),
                    pipeline_definitions::config.eq(json_to(config)?),
                    pipeline_definitions::tags.eq(json_to(tags)?),
                    pipeline_definitions::version.eq(row.version + 1),
                    pipeline_definitions::updated_at.eq(t),
                ))
                .execute(conn)?;
        }
        None => {
            diesel::insert_into(pipeline_definitions::table)
                .values((
                    pipeline_definitions::name.eq(name),
                    pipeline_definitions::description.eq(description),
                    pipeline_definitions::version.eq(1),
                    pipeline_definitions::config.eq(json_to(config)?),
                    pipeline_definitions::active.eq(true),
                    pipeline_definitions::tags.eq(json_to(tags)?),
                    pipeline_definitions::created_at.eq(t),
                    pipeline_definitions::updated_at.eq(t),
                ))
                .execute(conn)?;
        }
    }
    get_definition(conn, name)
}

/// One definition by name.
pub fn get_definition(conn: &mut AnyConnection, name: &str) -> Result<PipelineDefinition> {
    super::direct!(conn, |c| pipeline_definitions::table
        .filter(pipeline_definitions::name.eq(name))
        .select(pipeline_definitions::all_columns)
        .get_result::<PipelineDefinitionRow>(c)
        .optional())?
    .ok_or_else(|| Error::not_found(format!("pipeline definition {name:?} not found")))?
    .try_into()
}

/// Every definition, by name.
pub fn list_definitions(conn: &mut AnyConnection) -> Result<Vec<PipelineDefinition>> {
    pipeline_definitions::table
        .order(pipeline_definitions::name.asc())
        .select(pipeline_definitions::all_columns)
        .load::<PipelineDefinitionRow>(conn)?
        .into_iter()
        .map(TryInto::try_into)
        .collect()
}

/// Activates or deactivates a definition.
pub fn set_definition_active(
    conn: &mut AnyConnection,
    name: &str,
    active: bool,
) -> Result<PipelineDefinition> {
    let n = diesel::update(pipeline_definitions::table.filter(pipeline_definitions::name.eq(name)))
        .set((
            pipeline_definitions::active.eq(active),
            pipeline_definitions::updated_at.eq(now()),
        ))
        .execute(conn)?;
    if n == 0 {
        return Err(Error::not_found(format!(
            "pipeline definition {name:?} not found"
        )));
    }
    get_definition(conn, name)
}

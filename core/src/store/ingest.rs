//! Storage functions of the INGEST write path (deduplication and incident grouping), used by
//! `tocsin-ingest`. Like [`super::records`] they are synchronous functions over a connection, so the
//! caller composes them inside one transaction.
//!
//! None of them scans a table: every lookup goes through an index (`alerts (source, fingerprint)`,
//! `alerts (incident_id)`, `incidents (group_key, status)`).

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::records::alert_by_identity;
use super::rows::{AlertMatchRow, AlertRow, AlertStateRow, IncidentRow};
use super::schema::{alerts, incidents};
use super::update::Update;
use super::{AnyConnection, json_from, json_to, now, ts};
use crate::domain::{Alert, AlertStatus, Incident, IncidentStatus, Labels, Severity};
use crate::error::{Error, Result};

/// The newest incident with this grouping key that is still open or acknowledged.
pub fn find_active_incident_by_group(
    conn: &mut AnyConnection,
    group_key: &str,
) -> Result<Option<Incident>> {
    super::direct!(conn, |c| incidents::table
        .filter(incidents::group_key.eq(group_key))
        // Two equalities rather than `IN (...)`: diesel caches the prepared statement of a query
        // whose SQL is fixed, never one with a list.
        .filter(
            incidents::status
                .eq(IncidentStatus::Open.as_str())
                .or(incidents::status.eq(IncidentStatus::Acknowledged.as_str())),
        )
        .order((incidents::created_at.desc(), incidents::id.desc()))
        .select(incidents::all_columns)
        // The first row in that order; no `LIMIT ?` (see `records`: it defeats the statement cache).
        .get_result::<IncidentRow>(c)
        .optional())?
    .map(TryInto::try_into)
    .transpose()
}

/// A stored alert as a re-sent one is compared with: its id and the fields the comparison reads.
///
/// # Why not [`Alert`]
/// A re-send reads the stored alert on the writer thread, inside the webhook's transaction. The
/// whole row costs more to decode than to find: its raw payload is JSON to parse (a sixth of the
/// read, on the dedupe path), and four timestamps go through chrono's format parser; the
/// comparison reads neither the payload nor the bookkeeping fields (issue 8).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertState {
    /// Primary key.
    pub id: i64,
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
    /// When the condition started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// The incident that groups it.
    pub incident_id: Option<i64>,
}

impl TryFrom<AlertStateRow> for AlertState {
    type Error = Error;

    fn try_from(row: AlertStateRow) -> Result<Self> {
        let m = AlertMatch::try_from(row.matched)?;
        Ok(Self {
            id: m.id,
            severity: m.severity,
            status: m.status,
            description: m.description,
            labels: json_from(&m.labels_json, "alerts.labels")?,
            annotations: json_from(&m.annotations_json, "alerts.annotations")?,
            started_at: ts(row.started_at),
            ended_at: row.ended_at.map(ts),
            incident_id: m.incident_id,
        })
    }
}

/// The state of the alert with this identity, if any (the unique `alerts (source, fingerprint)`
/// index).
pub fn find_alert_state(
    conn: &mut AnyConnection,
    source: &str,
    fingerprint: &str,
) -> Result<Option<AlertState>> {
    super::direct!(conn, |c| alert_by_identity(source, fingerprint)
        .select(AlertStateRow::as_select())
        .get_result::<AlertStateRow>(c)
        .optional())?
    .map(TryInto::try_into)
    .transpose()
}

/// A stored alert as the answer to an identical re-send needs it, read without decoding: the
/// labels and annotations stay the JSON text they were stored as ([`json_to`] of the maps, whose
/// keys are sorted), so a re-send compares its own maps' text with them.
///
/// # Why not [`AlertState`]
/// On the dedupe path the read is most of tocsin's storage work, and decoding two JSON maps and
/// two timestamps was half of it (issue 8). Text that differs while the maps are equal (a row
/// written by another tool) only sends the re-send down the write path, which compares decoded
/// maps: slower, never wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertMatch {
    /// Primary key.
    pub id: i64,
    /// Severity.
    pub severity: Severity,
    /// Status.
    pub status: AlertStatus,
    /// Description.
    pub description: String,
    /// Labels, as stored (JSON text).
    pub labels_json: String,
    /// Annotations, as stored (JSON text).
    pub annotations_json: String,
    /// The incident that groups it.
    pub incident_id: Option<i64>,
}

/// The [`AlertMatch`] of the alert with this identity, if any.
pub fn find_alert_match(
    conn: &mut AnyConnection,
    source: &str,
    fingerprint: &str,
) -> Result<Option<AlertMatch>> {
    super::direct!(conn, |c| alert_by_identity(source, fingerprint)
        .select(AlertMatchRow::as_select())
        .get_result::<AlertMatchRow>(c)
        .optional())?
    .map(TryInto::try_into)
    .transpose()
}

impl TryFrom<AlertMatchRow> for AlertMatch {
    type Error = Error;

    fn try_from(r: AlertMatchRow) -> Result<Self> {
        Ok(Self {
            id: r.id,
            severity: r.severity.parse()?,
            status: r.status.parse()?,
            description: r.description,
            labels_json: r.labels,
            annotations_json: r.annotations,
            incident_id: r.incident_id,
        })
    }
}

/// Every mutable field of a stored alert, written at once by [`update_alert`].
#[derive(Debug, Clone)]
pub struct AlertUpdate {
    /// Alert name.
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
    /// This alert's part of the latest body.
    pub raw_payload: crate::domain::RawPayload,
    /// Correlation id of the request that changed it.
    pub trace_id: String,
    /// When the condition started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// The incident that groups it.
    pub incident_id: Option<i64>,
}

/// Replaces an alert's mutable fields and stamps `updated_at`.
pub fn update_alert(conn: &mut AnyConnection, id: i64, u: &AlertUpdate) -> Result<Alert> {
    let (labels, annotations) = (json_to(&u.labels)?, json_to(&u.annotations)?);
    let n = Update::by_id("alerts", id)
        .set(alerts::name, &u.name)
        .set(alerts::severity, u.severity.as_str())
        .set(alerts::status, u.status.as_str())
        .set(alerts::description, &u.description)
        .set(alerts::labels, &labels)
        .set(alerts::annotations, &annotations)
        .set(alerts::raw_payload, u.raw_payload.as_str())
        .set(alerts::trace_id, &u.trace_id)
        .set(alerts::started_at, u.started_at.naive_utc())
        .set(alerts::ended_at, u.ended_at.map(|t| t.naive_utc()))
        .set(alerts::updated_at, now())
        .set(alerts::incident_id, u.incident_id)
        .execute(conn)?;
    if n == 0 {
        return Err(Error::not_found(format!("alert {id} not found")));
    }
    get_alert_row(conn, id)
}

fn get_alert_row(conn: &mut AnyConnection, id: i64) -> Result<Alert> {
    super::direct!(conn, |c| alerts::table
        .find(id)
        .select(alerts::all_columns)
        .get_result::<AlertRow>(c)
        .optional())?
    .ok_or_else(|| Error::not_found(format!("alert {id} not found")))?
    .try_into()
}

/// Stamps an alert's `updated_at` and nothing else (an identical re-send).
pub fn touch_alert(conn: &mut AnyConnection, id: i64) -> Result<()> {
    Update::by_id("alerts", id)
        .set(alerts::updated_at, now())
        .execute(conn)?;
    Ok(())
}

/// How many alerts of an incident are firing, leaving out one alert (the one being resolved).
pub fn count_firing_alerts(
    conn: &mut AnyConnection,
    incident_id: i64,
    except_alert: Option<i64>,
) -> Result<i64> {
    let mut q = alerts::table
        .filter(alerts::incident_id.eq(incident_id))
        .filter(alerts::status.eq(AlertStatus::Firing.as_str()))
        .into_boxed();
    if let Some(id) = except_alert {
        q = q.filter(alerts::id.ne(id));
    }
    Ok(q.count().get_result(conn)?)
}

/// Sets an incident's severity and stamps `updated_at` (the caller records the event).
pub fn set_incident_severity(
    conn: &mut AnyConnection,
    incident_id: i64,
    severity: Severity,
) -> Result<()> {
    let n = Update::by_id("incidents", incident_id)
        .set(incidents::severity, severity.as_str())
        .set(incidents::updated_at, now())
        .execute(conn)?;
    if n == 0 {
        return Err(Error::not_found(format!(
            "incident {incident_id} not found"
        )));
    }
    Ok(())
}

/// Stamps an incident's `updated_at`.
pub fn touch_incident(conn: &mut AnyConnection, incident_id: i64) -> Result<()> {
    Update::by_id("incidents", incident_id)
        .set(incidents::updated_at, now())
        .execute(conn)?;
    Ok(())
}

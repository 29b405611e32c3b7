//! Queries of the operator console: filtered lists with their total counts (so a page can say
//! how many pages there are) and the dashboard's aggregates.
//!
//! Every filter runs in the database, over every row: nothing here looks through "the newest N"
//! rows and filters in memory, so an old incident is as findable as a new one. Each list is a
//! filtered query built once and run twice, as a `COUNT(*)` and as one ordered page.
//!
//! Text filters are a case-insensitive `LIKE` of `lower(column)` against the lowered needle, with
//! `%`, `_` and `\` in the needle escaped so they match themselves. PostgreSQL lowers any letter;
//! SQLite's `lower()` only folds ASCII, so there a non-ASCII letter matches only in its own case.

use chrono::{DateTime, Utc};
use diesel::dsl::count_star;
use diesel::prelude::*;
use diesel::sql_types::Text;

use super::rows::{AlertRow, DeliveryRow, IncidentRow, PipelineRunRow};
use super::schema::{alerts, deliveries, incidents, pipeline_runs};
use super::{AnyConnection, clamp_limit};
use crate::domain::{
    Alert, AlertStatus, Delivery, DeliveryStatus, Incident, IncidentStatus, PipelineRun,
    PipelineStatus, Severity,
};
use crate::error::Result;

/// The backend type of [`AnyConnection`], which boxed queries are built for.
type Db = <AnyConnection as Connection>::Backend;

diesel::define_sql_function! {
    /// SQL `lower(text)`, the same on both backends.
    fn lower(x: Text) -> Text;
}

/// The escape character of every `LIKE` pattern built here.
const LIKE_ESCAPE: char = '\\';

/// `%needle%` for a case-insensitive substring match: lowered, with `LIKE`'s wildcards and the
/// escape character escaped so that a user typing `50%` or `a_b` finds exactly that.
pub fn like_pattern(needle: &str) -> String {
    let mut p = String::with_capacity(needle.len() + 2);
    p.push('%');
    for ch in needle.to_lowercase().chars() {
        if matches!(ch, '%' | '_' | LIKE_ESCAPE) {
            p.push(LIKE_ESCAPE);
        }
        p.push(ch);
    }
    p.push('%');
    p
}

/// An empty or blank filter value means "no filter".
fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// One page of a filtered list, with how many rows match in all.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing<T> {
    /// The rows of the requested page, in the list's order.
    pub rows: Vec<T>,
    /// How many rows match the filter, over every page.
    pub total: i64,
}

/// Which page of a list to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Rows per page (clamped to 1..=1000).
    pub limit: i64,
    /// Rows to skip (negative is 0).
    pub offset: i64,
}

impl Default for PageRequest {
    /// The first 50 rows.
    fn default() -> Self {
        Self {
            limit: 50,
            offset: 0,
        }
    }
}

impl PageRequest {
    /// Page `page` (from 1; 0 is read as 1) of `size` rows.
    pub fn page(page: i64, size: i64) -> Self {
        let size = clamp_limit(size);
        Self {
            limit: size,
            offset: (page.max(1) - 1).saturating_mul(size),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Incidents

/// Filters of the incident list; `None` (or a blank string) does not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncidentQuery {
    /// Only this status.
    pub status: Option<IncidentStatus>,
    /// Only this severity.
    pub severity: Option<Severity>,
    /// Only incidents with at least one alert from this ingest source (exact name).
    pub source: Option<String>,
    /// Only incidents whose title, description or group key contains this text, in any case.
    pub text: Option<String>,
}

fn incident_query(f: &IncidentQuery) -> incidents::BoxedQuery<'static, Db> {
    let mut q = incidents::table.into_boxed();
    if let Some(s) = f.status {
        q = q.filter(incidents::status.eq(s.as_str()));
    }
    if let Some(s) = f.severity {
        q = q.filter(incidents::severity.eq(s.as_str()));
    }
    if let Some(src) = given(&f.source) {
        // The source is a fact of the alerts, not of the incident: an incident grouped from two
        // sources has both. `alerts (source, fingerprint)` is indexed, so the sub-select reads only
        // that source's alerts; a copy in `incidents.metadata` would need JSON functions that
        // differ between the backends and index on neither.
        let ids = alerts::table
            .filter(alerts::source.eq(src.to_owned()))
            .filter(alerts::incident_id.is_not_null())
            .select(alerts::incident_id);
        q = q.filter(incidents::id.nullable().eq_any(ids));
    }
    if let Some(text) = given(&f.text) {
        let p = like_pattern(text);
        q = q.filter(
            lower(incidents::title)
                .like(p.clone())
                .escape(LIKE_ESCAPE)
                .or(lower(incidents::description)
                    .like(p.clone())
                    .escape(LIKE_ESCAPE))
                .or(lower(incidents::group_key).like(p).escape(LIKE_ESCAPE)),
        );
    }
    q
}

/// Incidents matching `f`, newest first, and how many match in all.
pub fn incidents(
    conn: &mut AnyConnection,
    f: &IncidentQuery,
    page: PageRequest,
) -> Result<Listing<Incident>> {
    let total = incident_query(f).count().get_result::<i64>(conn)?;
    let rows = incident_query(f)
        .select(incidents::all_columns)
        .order((incidents::created_at.desc(), incidents::id.desc()))
        .limit(clamp_limit(page.limit))
        .offset(page.offset.max(0))
        .load::<IncidentRow>(conn)?
        .into_iter()
        .map(TryInto::try_into)
        .collect::<Result<_>>()?;
    Ok(Listing { rows, total })
}

// ---------------------------------------------------------------------------------------------
// Alerts

/// Filters of the alert list; `None` (or a blank string) does not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertQuery {
    /// Only this status.
    pub status: Option<AlertStatus>,
    /// Only this severity.
    pub severity: Option<Severity>,
    /// Only this ingest source (exact name).
    pub source: Option<String>,
    /// Only alerts whose name, description or fingerprint contains this text, in any case.
    pub text: Option<String>,
    /// Only alerts grouped into this incident.
    pub incident_id: Option<i64>,
}

fn alert_query(f: &AlertQuery) -> alerts::BoxedQuery<'static, Db> {
    let mut q = alerts::table.into_boxed();
    if let Some(s) = f.status {
        q = q.filter(alerts::status.eq(s.as_str()));
    }
    if let Some(s) = f.severity {
        q = q.filter(alerts::severity.eq(s.as_str()));
    }
    if let Some(src) = given(&f.source) {
        q = q.filter(alerts::source.eq(src.to_owned()));
    }
    if let Some(id) = f.incident_id {
        q = q.filter(alerts::incident_id.eq(id));
    }
    if let Some(text) = given(&f.text) {
        let p = like_pattern(text);
        q = q.filter(
            lower(alerts::name)
                .like(p.clone())
                .escape(LIKE_ESCAPE)
                .or(lower(alerts::description)
                    .like(p.clone())
                    .escape(LIKE_ESCAPE))
                .or(lower(alerts::fingerprint).like(p).escape(LIKE_ESCAPE)),
        );
    }
    q
}

/// Alerts matching `f`, most recently received first, and how many match in all.
pub fn alerts(
    conn: &mut AnyConnection,
    f: &AlertQuery,
    page: PageRequest,
) -> Result<Listing<Alert>> {
    let total = alert_query(f).count().get_result::<i64>(conn)?;
    let rows = alert_query(f)
        .select(alerts::all_columns)
        .order((alerts::received_at.desc(), alerts::id.desc()))
        .limit(clamp_limit(page.limit))
        .offset(page.offset.max(0))
        .load::<AlertRow>(conn)?
        .into_iter()
        .map(TryInto::try_into)
        .collect::<Result<_>>()?;
    Ok(Listing { rows, total })
}

// ---------------------------------------------------------------------------------------------
// Pipeline runs

/// The name the built-in pipeline is listed under; its runs store no definition name.
pub const DEFAULT_DEFINITION: &str = "default";

/// Filters of the run list; `None` (or a blank string) does not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunQuery {
    /// Only this status.
    pub status: Option<PipelineStatus>,
    /// Only runs of this definition ([`DEFAULT_DEFINITION`] also matches runs stored without a
    /// name, which the engine runs as the built-in default).
    pub definition: Option<String>,
    /// Only runs caused by this incident.
    pub incident_id: Option<i64>,
}

fn run_query(f: &RunQuery) -> pipeline_runs::BoxedQuery<'static, Db> {
    let mut q = pipeline_runs::table.into_boxed();
    if let Some(s) = f.status {
        q = q.filter(pipeline_runs::status.eq(s.as_str()));
    }
    if let Some(name) = given(&f.definition) {
        let named = pipeline_runs::definition_name.eq(name.to_owned());
        q = if name == DEFAULT_DEFINITION {
            q.filter(named.or(pipeline_runs::definition_name.is_null()))
        } else {
            q.filter(named)
        };
    }
    if let Some(id) = f.incident_id {
        q = q.filter(pipeline_runs::incident_id.eq(id));
    }
    q
}

/// Runs matching `f`, newest first, and how many match in all.
pub fn runs(
    conn: &mut AnyConnection,
    f: &RunQuery,
    page: PageRequest,
) -> Result<Listing<PipelineRun>> {
    let total = run_query(f).count().get_result::<i64>(conn)?;
    let rows = run_query(f)
        .select(pipeline_runs::all_columns)
        .order((pipeline_runs::created_at.desc(), pipeline_runs::id.desc()))
        .limit(clamp_limit(page.limit))
        .offset(page.offset.max(0))
        .load::<PipelineRunRow>(conn)?
        .into_iter()
        .map(TryInto::try_into)
        .collect::<Result<_>>()?;
    Ok(Listing { rows, total })
}

// ---------------------------------------------------------------------------------------------
// Dashboard

/// How many incidents of one severity are still active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveIncidents {
    /// The severity.
    pub severity: Severity,
    /// In status `open`.
    pub open: i64,
    /// In status `acknowledged`.
    pub acknowledged: i64,
}

/// Open and acknowledged incidents per severity, highest severity first, every severity listed
/// (with zeros) so the dashboard's table keeps its shape.
pub fn active_incidents_by_severity(conn: &mut AnyConnection) -> Result<Vec<ActiveIncidents>> {
    let active = [
        IncidentStatus::Open.as_str(),
        IncidentStatus::Acknowledged.as_str(),
    ];
    // `incidents (status, severity)` is indexed: this reads the index range of two statuses.
    let counts = incidents::table
        .filter(incidents::status.eq_any(active))
        .group_by((incidents::status, incidents::severity))
        .select((incidents::status, incidents::severity, count_star()))
        .load::<(String, String, i64)>(conn)?;
    let mut out: Vec<ActiveIncidents> = Severity::ALL
        .iter()
        .rev()
        .map(|&severity| ActiveIncidents {
            severity,
            open: 0,
            acknowledged: 0,
        })
        .collect();
    for (status, severity, n) in counts {
        let Some(row) = out.iter_mut().find(|r| r.severity.as_str() == severity) else {
            continue;
        };
        match status.parse::<IncidentStatus>()? {
            IncidentStatus::Open => row.open += n,
            IncidentStatus::Acknowledged => row.acknowledged += n,
            IncidentStatus::Resolved | IncidentStatus::Closed => {}
        }
    }
    Ok(out)
}

/// Runs created at or after `since`, counted per status, in the order of
/// [`PipelineStatus::ALL`]; statuses with no run are left out.
pub fn runs_by_status_since(
    conn: &mut AnyConnection,
    since: DateTime<Utc>,
) -> Result<Vec<(PipelineStatus, i64)>> {
    let counts = pipeline_runs::table
        .filter(pipeline_runs::created_at.ge(since.naive_utc()))
        .group_by(pipeline_runs::status)
        .select((pipeline_runs::status, count_star()))
        .load::<(String, i64)>(conn)?;
    let mut out = Vec::with_capacity(counts.len());
    for (status, n) in counts {
        out.push((status.parse::<PipelineStatus>()?, n));
    }
    out.sort_by_key(|(s, _)| PipelineStatus::ALL.iter().position(|a| a == s));
    Ok(out)
}

/// Failed delivery attempts since a time: how many, and the newest of them.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedDeliveries {
    /// Failed attempts created at or after the time asked for.
    pub total: i64,
    /// The newest of them, newest first.
    pub recent: Vec<Delivery>,
}

/// Failed delivery attempts created at or after `since`: their count and the newest `limit`.
pub fn failed_deliveries_since(
    conn: &mut AnyConnection,
    since: DateTime<Utc>,
    limit: i64,
) -> Result<FailedDeliveries> {
    let failed = || {
        deliveries::table
            .filter(deliveries::status.eq(DeliveryStatus::Failed.as_str()))
            .filter(deliveries::created_at.ge(since.naive_utc()))
            .into_boxed::<Db>()
    };
    let total = failed().count().get_result::<i64>(conn)?;
    let recent = failed()
        .select(deliveries::all_columns)
        .order((deliveries::created_at.desc(), deliveries::id.desc()))
        .limit(clamp_limit(limit))
        .load::<DeliveryRow>(conn)?
        .into_iter()
        .map(TryInto::try_into)
        .collect::<Result<_>>()?;
    Ok(FailedDeliveries { total, recent })
}

/// Everything the console's dashboard shows, read in one go.
#[derive(Debug, Clone, PartialEq)]
pub struct Dashboard {
    /// Open and acknowledged incidents per severity, highest first.
    pub active_incidents: Vec<ActiveIncidents>,
    /// Runs per status since the time asked for.
    pub runs_by_status: Vec<(PipelineStatus, i64)>,
    /// Runs waiting for a worker (pending or retrying).
    pub queue_depth: i64,
    /// Age in seconds of the oldest waiting run.
    pub oldest_waiting_seconds: Option<f64>,
    /// Failed delivery attempts since the time asked for.
    pub failed_deliveries: FailedDeliveries,
}

/// The dashboard: incidents still active, and runs and failed deliveries since `since` (with at
/// most `failed_limit` failed deliveries listed).
pub fn dashboard(
    conn: &mut AnyConnection,
    since: DateTime<Utc>,
    failed_limit: i64,
) -> Result<Dashboard> {
    let active_incidents = active_incidents_by_severity(conn)?;
    let runs_by_status = runs_by_status_since(conn, since)?;
    // The engine owns what "waiting" means; the dashboard shows the same figure as `/metrics`.
    let (queue_depth, oldest_waiting_seconds) = crate::engine::queue::depth(conn)?;
    let failed_deliveries = failed_deliveries_since(conn, since, failed_limit)?;
    Ok(Dashboard {
        active_incidents,
        runs_by_status,
        queue_depth,
        oldest_waiting_seconds,
        failed_deliveries,
    })
}

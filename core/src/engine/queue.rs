//! The durable work queue: runs are rows of `pipeline_runs`, claimed with a lease.
//!
//! A claim is one atomic `UPDATE ... WHERE id = (SELECT ... LIMIT 1)`; on PostgreSQL the inner
//! select takes `FOR UPDATE SKIP LOCKED`, so any number of workers on any number of machines share
//! the queue without two taking the same run. A run whose lease ran out (its worker died) is
//! claimable again.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{Nullable, Text, Timestamp};

use crate::domain::{PipelineRun, PipelineStatus};
use crate::error::{Error, Result};
use crate::store::rows::PipelineRunRow;
use crate::store::schema::pipeline_runs;
use crate::store::{AnyConnection, now};

const CLAIMABLE: &str = "(((status = 'pending' OR status = 'retrying') \
     AND (next_attempt_at IS NULL OR next_attempt_at <= {now})) \
     OR (status = 'processing' AND lease_expires_at < {now}))";

/// Claims the next due run (or the given one, if due) for `owner` until `lease_until`.
pub fn claim(
    conn: &mut AnyConnection,
    owner: &str,
    lease_until: NaiveDateTime,
    run_id: Option<&str>,
) -> Result<Option<PipelineRun>> {
    let t = now();
    // Always bound (null for "any run"): both backends reject parameters the SQL does not use.
    let by_id = " AND ({run} IS NULL OR run_id = {run})";
    let sql = match conn {
        AnyConnection::Postgres(_) =>
            format!(
                "UPDATE pipeline_runs SET status = 'processing', lease_owner = $1, lease_expires_at = $2, \
                 updated_at = $3, attempts = attempts + 1, started_at = COALESCE(started_at, $3) \
                 WHERE id = (SELECT id FROM pipeline_runs WHERE {CLAIMABLE}{by_id} \
                 ORDER BY next_attempt_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)"
            )
            .replace("{now}", "$3")
            .replace("{run}", "$4"),
        AnyConnection::Sqlite(_) =>
            format!(
                "UPDATE pipeline_runs SET status = 'processing', lease_owner = ?1, lease_expires_at = ?2, \
                 updated_at = ?3, attempts = attempts + 1, started_at = COALESCE(started_at, ?3) \
                 WHERE id = (SELECT id FROM pipeline_runs WHERE {CLAIMABLE}{by_id} \
                 ORDER BY next_attempt_at, id LIMIT 1)"
            )
            .replace("{now}", "?3")
            .replace("{run}", "?4"),
    };
    let q = diesel::sql_query(sql)
        .bind::<Text, _>(owner)
        .bind::<Timestamp, _>(lease_until)
        .bind::<Timestamp, _>(t)
        .bind::<Nullable<Text>, _>(run_id);
    let claimed = match conn {
        AnyConnection::Postgres(c) => q.execute(c)?,
        AnyConnection::Sqlite(c) => q.execute(c)?,
    };
    if claimed == 0 {
        return Ok(None);
    }
    let row: PipelineRunRow = pipeline_runs::table
        .filter(pipeline_runs::lease_owner.eq(owner))
        .select(pipeline_runs::all_columns)
        .first::<PipelineRunRow>(conn)?;
    Ok(Some(row.try_into()?))
}

/// Extends a lease the caller holds; false when the lease was lost.
pub fn renew(
    conn: &mut AnyConnection,
    run_pk: i64,
    owner: &str,
    lease_until: NaiveDateTime,
) -> Result<bool> {
    let n = diesel::update(
        pipeline_runs::table
            .find(run_pk)
            .filter(pipeline_runs::lease_owner.eq(owner)),
    )
    .set((
        pipeline_runs::lease_expires_at.eq(Some(lease_until)),
        pipeline_runs::updated_at.eq(now()),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// Makes a failed run claimable again. Only one of several concurrent callers succeeds.
pub fn resume(conn: &mut AnyConnection, run_id: &str) -> Result<PipelineRun> {
    let t = now();
    let n = diesel::update(
        pipeline_runs::table
            .filter(pipeline_runs::run_id.eq(run_id))
            .filter(pipeline_runs::status.eq(PipelineStatus::Failed.as_str())),
    )
    .set((
        pipeline_runs::status.eq(PipelineStatus::Pending.as_str()),
        pipeline_runs::next_attempt_at.eq(Some(t)),
        pipeline_runs::resumed_at.eq(Some(t)),
        pipeline_runs::completed_at.eq(None::<NaiveDateTime>),
        pipeline_runs::lease_owner.eq(None::<String>),
        pipeline_runs::lease_expires_at.eq(None::<NaiveDateTime>),
        pipeline_runs::updated_at.eq(t),
    ))
    .execute(conn)?;
    let run = crate::store::get_pipeline_run(conn, run_id)?;
    if n == 0 {
        return Err(Error::invalid_input(format!(
            "pipeline run {run_id:?} is {} and cannot be resumed; only failed runs can",
            run.status
        )));
    }
    Ok(run)
}

/// How many runs wait, and the age in seconds of the oldest due one.
pub fn depth(conn: &mut AnyConnection) -> Result<(i64, Option<f64>)> {
    let waiting = [
        PipelineStatus::Pending.as_str(),
        PipelineStatus::Retrying.as_str(),
    ];
    let count: i64 = pipeline_runs::table
        .filter(pipeline_runs::status.eq_any(waiting))
        .count()
        .get_result(conn)?;
    let oldest: Option<NaiveDateTime> = pipeline_runs::table
        .filter(pipeline_runs::status.eq_any(waiting))
        .select(diesel::dsl::min(pipeline_runs::created_at))
        .first(conn)?;
    Ok((
        count,
        oldest.map(|o| (now() - o).num_milliseconds() as f64 / 1000.0),
    ))
}

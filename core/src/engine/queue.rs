//! The durable work queue: runs are rows of `pipeline_runs`, claimed with a lease.
//!
//! A claim is one atomic `UPDATE ... WHERE id = (SELECT ... LIMIT 1)`; on PostgreSQL the inner
//! select takes `FOR UPDATE SKIP LOCKED`, so any number of workers on any number of machines share
//! the queue without two taking the same run. A run whose lease ran out (its worker died) is
//! claimable again.
//!
//! The inner select is a `UNION ALL` of one `LIMIT 1` branch per kind of claimable run, each an
//! ordered range of the index `(status, next_attempt_at, id)`: an expired lease first, then a due
//! retry, then the oldest due pending run. One `WHERE` over all three (an `OR` of statuses) cannot use that index
//! for its order: both backends then read and sort every waiting run on every claim, which took
//! ~120 ms per claim at 300,000 pending runs. The outer `LIMIT 1` stops at the first branch that
//! has a run, so later branches are not even read. Every waiting run has `next_attempt_at` set
//! (queueing, retrying and resuming all set it); a run without one would never be claimed.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Timestamp};

use crate::domain::{PipelineRun, PipelineStatus};
use crate::error::{Error, Result};
use crate::store::rows::PipelineRunRow;
use crate::store::schema::pipeline_runs;
use crate::store::{AnyConnection, now};

/// The branches of the claim, in the order they are preferred. `{lock}` is the backend's row
/// lock (empty on SQLite, where the write transaction is exclusive anyway); `{now}` the time.
const DUE_BRANCHES: [&str; 3] = [
    // A dead worker's run: few rows are ever `processing` (one per live worker), so reading
    // them all is cheap and no order is needed.
    "SELECT id FROM pipeline_runs WHERE status = 'processing' AND lease_expires_at < {now} \
     LIMIT 1{lock}",
    "SELECT id FROM pipeline_runs WHERE status = 'retrying' AND next_attempt_at <= {now} \
     ORDER BY next_attempt_at, id LIMIT 1{lock}",
    "SELECT id FROM pipeline_runs WHERE status = 'pending' AND next_attempt_at <= {now} \
     ORDER BY next_attempt_at, id LIMIT 1{lock}",
];

/// Whether the run of a given id may be claimed now (it is found by its unique id first, so
/// this `OR` reads one row).
const CLAIMABLE: &str = "(((status = 'pending' OR status = 'retrying') \
     AND (next_attempt_at IS NULL OR next_attempt_at <= {now})) \
     OR (status = 'processing' AND lease_expires_at < {now}))";

/// The id of the row a claim took.
#[derive(QueryableByName)]
struct Claimed {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// The select of the next due run's id, on one backend.
fn next_due_sql(postgres: bool) -> String {
    // PostgreSQL refuses a row lock directly in a UNION member, but accepts it in a subquery.
    let (lock, now) = if postgres {
        (" FOR UPDATE SKIP LOCKED", "$3")
    } else {
        ("", "?3")
    };
    let branches: Vec<String> = DUE_BRANCHES
        .iter()
        .enumerate()
        .map(|(i, b)| {
            format!(
                "SELECT id FROM ({}) AS due{i}",
                b.replace("{lock}", lock).replace("{now}", now)
            )
        })
        .collect();
    format!(
        "SELECT id FROM ({}) AS due LIMIT 1",
        branches.join(" UNION ALL ")
    )
}

/// Claims the next due run (or the given one, if due) for `owner` until `lease_until`.
pub fn claim(
    conn: &mut AnyConnection,
    owner: &str,
    lease_until: NaiveDateTime,
    run_id: Option<&str>,
) -> Result<Option<PipelineRun>> {
    let t = now();
    let postgres = matches!(conn, AnyConnection::Postgres(_));
    let (p, lock) = if postgres {
        (["$1", "$2", "$3", "$4"], " FOR UPDATE SKIP LOCKED")
    } else {
        (["?1", "?2", "?3", "?4"], "")
    };
    let target = match run_id {
        Some(_) => format!(
            "SELECT id FROM pipeline_runs WHERE run_id = {} AND {}{lock}",
            p[3],
            CLAIMABLE.replace("{now}", p[2])
        ),
        None => next_due_sql(postgres),
    };
    let sql = format!(
        "UPDATE pipeline_runs SET status = 'processing', lease_owner = {o}, lease_expires_at = {l}, \
         updated_at = {n}, attempts = attempts + 1, started_at = COALESCE(started_at, {n}) \
         WHERE id = ({target}) RETURNING id",
        o = p[0],
        l = p[1],
        n = p[2],
    );
    let q = diesel::sql_query(sql)
        .bind::<Text, _>(owner)
        .bind::<Timestamp, _>(lease_until)
        .bind::<Timestamp, _>(t);
    let claimed: Vec<Claimed> = match (&mut *conn, run_id) {
        (AnyConnection::Postgres(c), Some(id)) => q.bind::<Text, _>(id).load(c)?,
        (AnyConnection::Sqlite(c), Some(id)) => q.bind::<Text, _>(id).load(c)?,
        (AnyConnection::Postgres(c), None) => q.load(c)?,
        (AnyConnection::Sqlite(c), None) => q.load(c)?,
    };
    let Some(Claimed { id }) = claimed.into_iter().next() else {
        return Ok(None);
    };
    let row: PipelineRunRow = pipeline_runs::table
        .find(id)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing;

    #[derive(QueryableByName)]
    struct PlanLine {
        #[diesel(sql_type = Text)]
        detail: String,
    }

    /// Regression: the claim sorted every waiting run (`USE TEMP B-TREE FOR ORDER BY` over a
    /// multi-index OR), so a claim got slower with every queued run.
    #[tokio::test]
    async fn the_claim_reads_the_status_index_in_order_without_sorting() {
        let db = testing::sqlite().await;
        let plan = db
            .store
            .run(|c| {
                let AnyConnection::Sqlite(c) = c else {
                    unreachable!("a SQLite test database")
                };
                let sql = format!(
                    "EXPLAIN QUERY PLAN {}",
                    next_due_sql(false).replace("?3", "'2026-11-28 00:00:00'")
                );
                Ok(diesel::sql_query(sql).load::<PlanLine>(c)?)
            })
            .await
            .unwrap();
        let lines: Vec<&str> = plan.iter().map(|l| l.detail.as_str()).collect();
        assert!(
            !lines.iter().any(|l| l.contains("TEMP B-TREE")),
            "{lines:#?}"
        );
        let by_index = lines
            .iter()
            .filter(|l| l.contains("USING") && l.contains("INDEX pipeline_runs_claim"))
            .count();
        assert_eq!(by_index, DUE_BRANCHES.len(), "{lines:#?}");
        assert!(
            !lines.iter().any(|l| l.starts_with("SCAN pipeline_runs")),
            "{lines:#?}"
        );
    }
}

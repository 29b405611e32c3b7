//! The durable work queue: runs are rows of `pipeline_runs`, claimed with a lease.
//!
//! A claim is one atomic `UPDATE ... WHERE id IN (SELECT ... LIMIT n)`; on PostgreSQL the inner
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

/// The select of the ids of up to `limit` due runs, on one backend.
fn next_due_sql(postgres: bool, limit: usize) -> String {
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
                b.replace("LIMIT 1", &format!("LIMIT {limit}"))
                    .replace("{lock}", lock)
                    .replace("{now}", now)
            )
        })
        .collect();
    format!(
        "SELECT id FROM ({}) AS due LIMIT {limit}",
        branches.join(" UNION ALL ")
    )
}

/// The placeholders of the claim's four parameters (owner, lease end, now, run id).
fn placeholders(postgres: bool) -> [&'static str; 4] {
    if postgres {
        ["$1", "$2", "$3", "$4"]
    } else {
        ["?1", "?2", "?3", "?4"]
    }
}

/// The claim's `UPDATE` of the rows `target` selects; each row's lease owner is `owner`
/// followed by `suffix` (an SQL expression).
fn claim_sql(postgres: bool, target: &str, suffix: &str) -> String {
    let [o, l, n, _] = placeholders(postgres);
    format!(
        "UPDATE pipeline_runs SET status = 'processing', lease_owner = {o}{suffix}, \
         lease_expires_at = {l}, updated_at = {n}, attempts = attempts + 1, \
         started_at = COALESCE(started_at, {n}) WHERE id IN ({target}) RETURNING id"
    )
}

fn load_claimed(conn: &mut AnyConnection, claimed: Vec<Claimed>) -> Result<Vec<PipelineRun>> {
    let mut ids: Vec<i64> = claimed.into_iter().map(|c| c.id).collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // Claimed together, started in queue order.
    ids.sort_unstable();
    let rows: Vec<PipelineRunRow> = pipeline_runs::table
        .filter(pipeline_runs::id.eq_any(&ids))
        .order(pipeline_runs::id)
        .select(pipeline_runs::all_columns)
        .load::<PipelineRunRow>(conn)?;
    rows.into_iter().map(TryInto::try_into).collect()
}

/// Claims the next due run (or the given one, if due) for `owner` until `lease_until`.
pub fn claim(
    conn: &mut AnyConnection,
    owner: &str,
    lease_until: NaiveDateTime,
    run_id: Option<&str>,
) -> Result<Option<PipelineRun>> {
    let Some(run_id) = run_id else {
        return Ok(claim_due(conn, owner, lease_until, 1)?.into_iter().next());
    };
    let postgres = matches!(conn, AnyConnection::Postgres(_));
    let [_, _, n, r] = placeholders(postgres);
    let lock = if postgres {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let target = format!(
        "SELECT id FROM pipeline_runs WHERE run_id = {r} AND {}{lock}",
        CLAIMABLE.replace("{now}", n)
    );
    let q = diesel::sql_query(claim_sql(postgres, &target, ""))
        .bind::<Text, _>(owner)
        .bind::<Timestamp, _>(lease_until)
        .bind::<Timestamp, _>(now())
        .bind::<Text, _>(run_id);
    let claimed: Vec<Claimed> = match &mut *conn {
        AnyConnection::Postgres(c) => q.load(c)?,
        AnyConnection::Sqlite(c) => q.load(c)?,
    };
    Ok(load_claimed(conn, claimed)?.into_iter().next())
}

/// Claims a run that was queued in the transaction still open on `conn` (so it is `pending`, has
/// never started, and no other worker can see it yet); `None` if it is not pending.
pub fn claim_queued(
    conn: &mut AnyConnection,
    run_pk: i64,
    owner: &str,
    lease_until: NaiveDateTime,
) -> Result<Option<PipelineRun>> {
    let t = now();
    let n = diesel::update(
        pipeline_runs::table
            .find(run_pk)
            .filter(pipeline_runs::status.eq(PipelineStatus::Pending.as_str())),
    )
    .set((
        pipeline_runs::status.eq(PipelineStatus::Processing.as_str()),
        pipeline_runs::lease_owner.eq(Some(owner)),
        pipeline_runs::lease_expires_at.eq(Some(lease_until)),
        pipeline_runs::updated_at.eq(t),
        pipeline_runs::attempts.eq(pipeline_runs::attempts + 1),
        // Queued in this transaction: it has never started.
        pipeline_runs::started_at.eq(Some(t)),
    ))
    .execute(conn)?;
    if n == 0 {
        return Ok(None);
    }
    let row: PipelineRunRow = pipeline_runs::table
        .find(run_pk)
        .select(pipeline_runs::all_columns)
        .get_result(conn)?;
    row.try_into().map(Some)
}

/// Claims up to `limit` due runs at once (in the order [`claim`] would take them one by one),
/// each with its own lease owner: `owner` followed by `#` and the run's row id.
pub fn claim_due(
    conn: &mut AnyConnection,
    owner: &str,
    lease_until: NaiveDateTime,
    limit: usize,
) -> Result<Vec<PipelineRun>> {
    let postgres = matches!(conn, AnyConnection::Postgres(_));
    let sql = claim_sql(
        postgres,
        &next_due_sql(postgres, limit.max(1)),
        " || '#' || CAST(id AS TEXT)",
    );
    let q = diesel::sql_query(sql)
        .bind::<Text, _>(owner)
        .bind::<Timestamp, _>(lease_until)
        .bind::<Timestamp, _>(now());
    let claimed: Vec<Claimed> = match &mut *conn {
        AnyConnection::Postgres(c) => q.load(c)?,
        AnyConnection::Sqlite(c) => q.load(c)?,
    };
    load_claimed(conn, claimed)
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
                    next_due_sql(false, 4).replace("?3", "'2026-11-28 00:00:00'")
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
    #[tokio::test]
    async fn a_batch_claim_takes_due_runs_in_queue_order_each_once_with_its_own_owner() {
        for db in testing::all().await {
            let queued: Vec<i64> = db
                .store
                .write(|c| {
                    (0..5)
                        .map(|_| {
                            crate::store::insert_pipeline_run(
                                c,
                                &crate::store::NewPipelineRun {
                                    run_id: crate::domain::new_id(),
                                    trace_id: crate::domain::new_id(),
                                    definition_name: None,
                                    incident_id: None,
                                    source: "test".into(),
                                    environment: "test".into(),
                                    max_retries: 0,
                                    inbound_payload: serde_json::json!({}),
                                },
                            )
                            .map(|r| r.id)
                        })
                        .collect()
                })
                .await
                .unwrap();
            let until = now() + chrono::Duration::seconds(60);
            let claim = |limit| db.store.write(move |c| claim_due(c, "w", until, limit));
            let first = claim(3).await.unwrap();
            let ids: Vec<i64> = first.iter().map(|r| r.id).collect();
            assert_eq!(ids, queued[..3], "{}", db.label);
            let owners: std::collections::BTreeSet<_> =
                first.iter().map(|r| r.lease_owner.clone()).collect();
            assert_eq!(owners.len(), 3, "{}: {owners:?}", db.label);
            assert!(first.iter().all(|r| r.status == PipelineStatus::Processing));
            let rest: Vec<i64> = claim(3).await.unwrap().iter().map(|r| r.id).collect();
            assert_eq!(rest, queued[3..], "{}", db.label);
            assert!(claim(3).await.unwrap().is_empty(), "{}", db.label);
        }
    }
}

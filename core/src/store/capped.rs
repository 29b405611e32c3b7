//! `SELECT`s whose `LIMIT` is written into the SQL, not bound.
//!
//! # Why
//! diesel binds `.limit(n)` as a parameter. SQLite's planner reads the value of a bound `LIMIT`
//! and so marks the statement to be prepared again whenever that parameter is bound, which is
//! every time it runs: a cached statement parsed and planned anew on every call (about 100 us
//! for the alerts of an incident, on the way to every notification). A [`Capped`] query has a
//! fixed cap in its text, so the statement cache keeps it prepared. Use it only with a constant
//! cap: every distinct cap is a statement of its own in each connection's cache.

use diesel::backend::Backend;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::query_dsl::RunQueryDsl;

/// `query LIMIT cap`, for a `query` without a `LIMIT` or `OFFSET` of its own.
#[derive(Debug, Clone, Copy)]
pub struct Capped<Q> {
    query: Q,
    cap: u32,
}

impl<Q> Capped<Q> {
    /// `query`, returning at most `cap` rows.
    pub fn new(query: Q, cap: u32) -> Self {
        Self { query, cap }
    }
}

impl<DB: Backend, Q: QueryFragment<DB>> QueryFragment<DB> for Capped<Q> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> diesel::QueryResult<()> {
        self.query.walk_ast(out.reborrow())?;
        out.push_sql(" LIMIT ");
        out.push_sql(&self.cap.to_string());
        Ok(())
    }
}

impl<Q: Query> Query for Capped<Q> {
    type SqlType = Q::SqlType;
}

impl<Q> QueryId for Capped<Q> {
    type QueryId = ();
    // Not static: the cache keys the statement by its SQL text, which includes the cap.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q, Conn> RunQueryDsl<Conn> for Capped<Q> {}

#[cfg(test)]
mod tests {
    use diesel::pg::Pg;
    use diesel::prelude::*;
    use diesel::sqlite::Sqlite;

    use super::*;
    use crate::store::any::MultiBackend;
    use crate::store::schema::pipeline_runs;
    use crate::store::{self, NewPipelineRun, testing};

    #[test]
    fn it_is_safe_to_keep_prepared() {
        let q = Capped::new(
            pipeline_runs::table
                .select(pipeline_runs::id)
                .filter(pipeline_runs::source.eq("x"))
                .order(pipeline_runs::id.desc()),
            2,
        );
        for backend in [
            MultiBackend::Sqlite(Default::default()),
            MultiBackend::Postgres(Default::default()),
        ] {
            assert!(q.is_safe_to_cache_prepared(&backend).unwrap());
        }
        // And on the connections behind `AnyConnection`, where `store::direct!` runs it.
        assert!(QueryFragment::<Sqlite>::is_safe_to_cache_prepared(&q, &Sqlite).unwrap());
        assert!(QueryFragment::<Pg>::is_safe_to_cache_prepared(&q, &Pg).unwrap());
    }

    #[tokio::test]
    async fn it_returns_the_first_rows_of_its_order_up_to_the_cap() {
        for db in testing::all().await {
            let (ids, got) = db
                .store
                .write(|c| {
                    let mut ids = Vec::new();
                    for n in 0..4 {
                        let new = NewPipelineRun {
                            run_id: format!("cap-{n}"),
                            trace_id: "t".to_owned(),
                            definition_name: None,
                            incident_id: None,
                            source: "capped".to_owned(),
                            environment: "test".to_owned(),
                            max_retries: 3,
                            inbound_payload: serde_json::json!({}),
                        };
                        ids.push(store::insert_pipeline_run(c, &new)?.id);
                    }
                    let query = |source: &'static str| {
                        Capped::new(
                            pipeline_runs::table
                                .select(pipeline_runs::id)
                                .filter(pipeline_runs::source.eq(source))
                                .order(pipeline_runs::id.desc()),
                            2,
                        )
                    };
                    let got: Vec<i64> = query("capped").load(c)?;
                    // The same statement again, other binds.
                    let none: Vec<i64> = query("other").load(c)?;
                    assert!(none.is_empty());
                    Ok((ids, got))
                })
                .await
                .unwrap();
            assert_eq!(got, vec![ids[3], ids[2]], "{}", db.label);
        }
    }
}

//! `UPDATE` statements that the database keeps prepared.
//!
//! # Why
//! diesel's own `UpdateStatement` marks itself unsafe to cache (its `SET` list may leave out
//! `None`s, so its SQL is not fixed by its type), so SQLite parsed and planned every engine and
//! dedupe-path update again: about 12% of the writer thread at idle, more per statement than the
//! statement itself did. An [`Update`] always produces the same SQL for the same columns, so the
//! connection's statement cache keeps it prepared (keyed by its SQL text).
//!
//! Columns are diesel's own column types, so a renamed column stops the build; the value's SQL
//! type is that of the [`Bind`] it converts to, which must match the column's (the storage
//! suites run every update on both backends).

use chrono::NaiveDateTime;
use diesel::Column;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::query_dsl::RunQueryDsl;
use diesel::sql_types::{BigInt, Bool, Double, Integer, Nullable, Text, Timestamp};
use diesel::sqlite::Sqlite;

use super::AnyConnection;
use super::any::MultiBackend;

/// One bound value.
#[derive(Debug, Clone, Copy)]
pub enum Bind<'a> {
    /// `TEXT`.
    Text(&'a str),
    /// Nullable `TEXT`.
    OptText(Option<&'a str>),
    /// `BIGINT`.
    BigInt(i64),
    /// Nullable `BIGINT`.
    OptBigInt(Option<i64>),
    /// `INTEGER`.
    Int(i32),
    /// `BOOLEAN`.
    Bool(bool),
    /// `DOUBLE`.
    Double(f64),
    /// Nullable `DOUBLE`.
    OptDouble(Option<f64>),
    /// `TIMESTAMP`.
    Ts(NaiveDateTime),
    /// Nullable `TIMESTAMP`.
    OptTs(Option<NaiveDateTime>),
}

macro_rules! bind_from {
    ($($t:ty => $v:ident),* $(,)?) => {
        $(impl<'a> From<$t> for Bind<'a> {
            fn from(v: $t) -> Self {
                Bind::$v(v)
            }
        })*
    };
}

bind_from!(
    &'a str => Text,
    Option<&'a str> => OptText,
    i64 => BigInt,
    Option<i64> => OptBigInt,
    i32 => Int,
    bool => Bool,
    f64 => Double,
    Option<f64> => OptDouble,
    NaiveDateTime => Ts,
    Option<NaiveDateTime> => OptTs,
);

impl<'a> From<&'a String> for Bind<'a> {
    fn from(v: &'a String) -> Self {
        Bind::Text(v)
    }
}

/// A value bound on one backend.
trait PushBind<DB: diesel::backend::Backend> {
    fn push_to<'b>(&'b self, out: &mut AstPass<'_, 'b, DB>) -> diesel::QueryResult<()>;
}

// Implements the query for one backend: `MultiBackend` for the plain `AnyConnection`, the
// concrete ones for `Update::execute`, which runs on the connection behind it (`direct!`).
macro_rules! update_for_backend {
    ($($db:ty),*) => {$(
        impl PushBind<$db> for Bind<'_> {
            fn push_to<'b>(&'b self, out: &mut AstPass<'_, 'b, $db>) -> diesel::QueryResult<()> {
                match self {
                    Bind::Text(v) => out.push_bind_param::<Text, _>(v),
                    Bind::OptText(v) => out.push_bind_param::<Nullable<Text>, _>(v),
                    Bind::BigInt(v) => out.push_bind_param::<BigInt, _>(v),
                    Bind::OptBigInt(v) => out.push_bind_param::<Nullable<BigInt>, _>(v),
                    Bind::Int(v) => out.push_bind_param::<Integer, _>(v),
                    Bind::Bool(v) => out.push_bind_param::<Bool, _>(v),
                    Bind::Double(v) => out.push_bind_param::<Double, _>(v),
                    Bind::OptDouble(v) => out.push_bind_param::<Nullable<Double>, _>(v),
                    Bind::Ts(v) => out.push_bind_param::<Timestamp, _>(v),
                    Bind::OptTs(v) => out.push_bind_param::<Nullable<Timestamp>, _>(v),
                }
            }
        }

        impl QueryFragment<$db> for Update<'_> {
            fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, $db>) -> diesel::QueryResult<()> {
                out.push_sql("UPDATE ");
                out.push_identifier(self.table)?;
                for (i, (column, value)) in self.set.iter().enumerate() {
                    out.push_sql(if i == 0 { " SET " } else { ", " });
                    out.push_identifier(column)?;
                    out.push_sql(" = ");
                    value.push_to(&mut out)?;
                }
                for (i, (column, test)) in self.filter.iter().enumerate() {
                    out.push_sql(if i == 0 { " WHERE " } else { " AND " });
                    out.push_identifier(column)?;
                    match test {
                        Test::Eq(value) => {
                            out.push_sql(" = ");
                            value.push_to(&mut out)?;
                        }
                        Test::IsNull => out.push_sql(" IS NULL"),
                    }
                }
                Ok(())
            }
        }
    )*};
}

/// What a condition compares a column with.
#[derive(Debug, Clone, Copy)]
enum Test<'a> {
    Eq(Bind<'a>),
    IsNull,
}

/// `UPDATE table SET col = ?, ... WHERE col = ? AND ...`, run with [`RunQueryDsl::execute`]
/// (which returns the number of rows changed).
#[derive(Debug, Clone)]
pub struct Update<'a> {
    table: &'static str,
    set: Vec<(&'static str, Bind<'a>)>,
    filter: Vec<(&'static str, Test<'a>)>,
}

impl<'a> Update<'a> {
    /// An update of the rows of `table` (its SQL name) whose `id` is `id`.
    pub fn by_id(table: &'static str, id: i64) -> Self {
        Self {
            table,
            set: Vec::with_capacity(8),
            filter: vec![("id", Test::Eq(Bind::BigInt(id)))],
        }
    }

    /// Sets `column` to `value`.
    pub fn set<C: Column>(mut self, _column: C, value: impl Into<Bind<'a>>) -> Self {
        self.set.push((C::NAME, value.into()));
        self
    }

    /// Only rows whose `column` equals `value`.
    pub fn filter_eq<C: Column>(mut self, _column: C, value: impl Into<Bind<'a>>) -> Self {
        self.filter.push((C::NAME, Test::Eq(value.into())));
        self
    }

    /// Only rows whose `column` is `NULL`.
    pub fn filter_null<C: Column>(mut self, _column: C) -> Self {
        self.filter.push((C::NAME, Test::IsNull));
        self
    }
}

update_for_backend!(MultiBackend, Sqlite, Pg);

impl QueryId for Update<'_> {
    type QueryId = ();
    // Not static: the cache keys the statement by its SQL text, which the columns fix.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Conn> RunQueryDsl<Conn> for Update<'_> {}

impl Update<'_> {
    /// Runs the update and returns the number of rows it changed. On the connection behind
    /// `conn`, so the statement is only bound, not rendered again (see [`super::direct`]).
    pub fn execute(self, conn: &mut AnyConnection) -> diesel::QueryResult<usize> {
        super::direct!(conn, |c| RunQueryDsl::execute(self, c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PipelineStatus;
    use crate::store::schema::pipeline_runs;
    use crate::store::{self, NewPipelineRun, testing};

    #[test]
    fn it_is_safe_to_keep_prepared() {
        let u = Update::by_id("pipeline_runs", 1).set(pipeline_runs::status, "failed");
        for backend in [
            MultiBackend::Sqlite(Default::default()),
            MultiBackend::Postgres(Default::default()),
        ] {
            assert!(u.is_safe_to_cache_prepared(&backend).unwrap());
        }
        assert!(QueryFragment::<Sqlite>::is_safe_to_cache_prepared(&u, &Sqlite).unwrap());
        assert!(QueryFragment::<Pg>::is_safe_to_cache_prepared(&u, &Pg).unwrap());
    }

    #[tokio::test]
    async fn it_changes_only_the_rows_its_conditions_name_and_counts_them() {
        for db in testing::all().await {
            let (changed, unchanged, run, other) = db
                .store
                .write(|c| {
                    let new = |run_id: &str| NewPipelineRun {
                        run_id: run_id.to_owned(),
                        trace_id: "t".to_owned(),
                        definition_name: None,
                        incident_id: None,
                        source: "test".to_owned(),
                        environment: "test".to_owned(),
                        max_retries: 3,
                        inbound_payload: serde_json::json!({}),
                    };
                    let until = chrono::Utc::now().naive_utc();
                    let a = store::insert_claimed_pipeline_run(c, &new("upd-a"), "me", until)?;
                    let b = store::insert_claimed_pipeline_run(c, &new("upd-b"), "me", until)?;
                    let update = |pk: i64, owner: &'static str| {
                        Update::by_id("pipeline_runs", pk)
                            .set(pipeline_runs::current_stage, Some("notify"))
                            .set(pipeline_runs::lease_expires_at, None::<NaiveDateTime>)
                            .set(pipeline_runs::total_duration_ms, Some(1.5))
                            .filter_eq(pipeline_runs::lease_owner, owner)
                            .filter_null(pipeline_runs::completed_at)
                    };
                    let changed = update(a.id, "me").execute(c)?;
                    // Same SQL, other binds: another owner matches nothing.
                    let unchanged = update(b.id, "someone else").execute(c)?;
                    Ok((
                        changed,
                        unchanged,
                        store::get_pipeline_run(c, "upd-a")?,
                        store::get_pipeline_run(c, "upd-b")?,
                    ))
                })
                .await
                .unwrap();
            assert_eq!((changed, unchanged), (1, 0), "{}", db.label);
            assert_eq!(run.current_stage.as_deref(), Some("notify"), "{}", db.label);
            assert_eq!(run.lease_expires_at, None, "{}", db.label);
            assert_eq!(run.total_duration_ms, Some(1.5), "{}", db.label);
            assert_eq!(run.status, PipelineStatus::Processing, "{}", db.label);
            assert_eq!(other.current_stage, None, "{}", db.label);
            assert!(other.lease_expires_at.is_some(), "{}", db.label);
        }
    }
}

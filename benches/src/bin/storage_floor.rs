//! The storage floor of issue 8's load harness: what the database's own work on a new alert's
//! rows costs, with everything around it taken away.
//!
//! It reads a database that `tocsin serve` filled under the distinct-alert load (the harness
//! passes the ones of its SQLite and PostgreSQL runs) and copies its alerts, with their history,
//! incidents, incident events, pipeline runs and stage executions, several times into tables of
//! the same schema, one `INSERT ... SELECT` per table and one transaction per copy, each copy with
//! new unique keys and ids that follow the last. No statement is prepared per alert, nothing is
//! bound, decoded, sent or handed between threads, and one commit serves tens of thousands of
//! alerts: what remains is the inserts, index maintenance and foreign key checks of the same rows
//! tocsin writes. Its CPU time per alert is a lower bound on what any write path that keeps those
//! rows costs, to set beside what a throughput line leaves for storage (`benches/load/report.py`
//! does, `docs/performance.md` explains).
//!
//! - SQLite (`--from PATH`): a new database file with tocsin's settings (WAL,
//!   `synchronous = NORMAL`, foreign keys on), in the bundled SQLite tocsin links (built with the
//!   workspace's `LIBSQLITE3_FLAGS`); the CPU time of this thread, which runs SQLite.
//! - PostgreSQL (`--from postgres://...`, a server on this machine): tables made `LIKE` tocsin's
//!   (indexes, defaults) with the same foreign keys, in a schema `tocsin_floor` dropped at the
//!   end; the CPU time of the server process serving the connection (read from `/proc`).
//!
//! ```text
//! storage_floor --from tocsin.db|postgres://... [--copies 3] [--out floor.json]
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

/// A table a new alert writes.
struct Table {
    name: &'static str,
    /// The unique (or per-alert) text columns a copy suffixes, so that each copy inserts new keys
    /// as new alerts would.
    unique: &'static [&'static str],
    /// The columns holding a row id of a table of [`TABLES`] (column, table), shifted with the
    /// ids of the copy.
    refs: &'static [(&'static str, &'static str)],
}

/// The tables a new alert writes on the default pipeline, parents first (foreign keys are on).
const TABLES: &[Table] = &[
    Table {
        name: "incidents",
        unique: &["group_key"],
        refs: &[],
    },
    Table {
        name: "incident_events",
        unique: &[],
        refs: &[("incident_id", "incidents")],
    },
    Table {
        name: "alerts",
        unique: &["fingerprint", "trace_id"],
        refs: &[("incident_id", "incidents")],
    },
    Table {
        name: "alert_history",
        unique: &[],
        refs: &[("alert_id", "alerts")],
    },
    Table {
        name: "pipeline_runs",
        unique: &["run_id", "trace_id"],
        refs: &[("incident_id", "incidents")],
    },
    Table {
        name: "stage_executions",
        unique: &["idempotency_key"],
        refs: &[("pipeline_run_id", "pipeline_runs")],
    },
];

#[derive(QueryableByName)]
struct Sql {
    #[diesel(sql_type = Text)]
    sql: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Column {
    #[diesel(sql_type = Text)]
    name: String,
}

/// Time on CPU in nanoseconds from a Linux `schedstat` file (its first field).
fn schedstat_ns(path: &str) -> u64 {
    let s = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path} (Linux, same machine) is needed to measure CPU: {e}"));
    s.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .expect("schedstat starts with the time on CPU in ns")
}

/// One backend: where the copies go, and whose CPU time is the database's work.
trait Target {
    fn exec(&mut self, sql: &str);
    fn count(&mut self, sql: &str) -> i64;
    /// The source table's columns, in order.
    fn columns(&mut self, table: &str) -> Vec<String>;
    /// The source and the target table of that name.
    fn source(&self, table: &str) -> String;
    fn target(&self, table: &str) -> String;
    /// CPU time of the process or thread doing the database's work, ns.
    fn cpu_ns(&self) -> u64;
    fn version(&mut self) -> String;
}

/// [`Target::exec`] and [`Target::count`] over a diesel connection in `self.conn`: the same text
/// for either backend's connection type.
macro_rules! connection_methods {
    () => {
        fn exec(&mut self, sql: &str) {
            self.conn
                .batch_execute(sql)
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        fn count(&mut self, sql: &str) -> i64 {
            diesel::sql_query(sql)
                .get_result::<Count>(&mut self.conn)
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .n
        }
    };
}

/// The column names a `columns` query returned.
fn names(rows: QueryResult<Vec<Column>>) -> Vec<String> {
    rows.expect("the table's columns")
        .into_iter()
        .map(|c| c.name)
        .collect()
}

struct Sqlite {
    conn: SqliteConnection,
    _dir: tempfile::TempDir,
}

impl Sqlite {
    fn open(from: &str) -> Self {
        let from = PathBuf::from(from)
            .canonicalize()
            .expect("the --from database exists");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let target = dir.path().join("floor.db");
        let mut conn =
            SqliteConnection::establish(&target.to_string_lossy()).expect("a new database");
        // tocsin's connection settings (`Manager::open` in core/src/store/mod.rs; keep the two
        // alike); the source attached, only read.
        conn.batch_execute(
            "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; \
             PRAGMA synchronous = NORMAL; PRAGMA temp_store = MEMORY;",
        )
        .expect("tocsin's settings");
        diesel::sql_query("ATTACH DATABASE ? AS src")
            .bind::<Text, _>(from.to_string_lossy())
            .execute(&mut conn)
            .expect("the source database attaches");
        // The schema as the source has it: the six tables, their indexes, and the rest (foreign
        // keys name tables outside the list).
        let schema: Vec<Sql> = diesel::sql_query(
            "SELECT sql FROM src.sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' \
             ORDER BY CASE type WHEN 'table' THEN 0 ELSE 1 END, rowid",
        )
        .load(&mut conn)
        .expect("the source's schema");
        for s in &schema {
            conn.batch_execute(&s.sql)
                .unwrap_or_else(|e| panic!("{}: {e}", s.sql));
        }
        Self { conn, _dir: dir }
    }
}

impl Target for Sqlite {
    connection_methods!();
    fn columns(&mut self, table: &str) -> Vec<String> {
        names(
            diesel::sql_query("SELECT name FROM pragma_table_info(?, 'src')")
                .bind::<Text, _>(table)
                .load(&mut self.conn),
        )
    }
    fn source(&self, table: &str) -> String {
        format!("src.{table}")
    }
    fn target(&self, table: &str) -> String {
        format!("main.{table}")
    }
    fn cpu_ns(&self) -> u64 {
        schedstat_ns("/proc/thread-self/schedstat")
    }
    fn version(&mut self) -> String {
        diesel::select(diesel::dsl::sql::<Text>("'SQLite ' || sqlite_version()"))
            .get_result(&mut self.conn)
            .unwrap_or_default()
    }
}

/// The schema the PostgreSQL copies go to (dropped at the end, and first if a run left it).
const PG_SCHEMA: &str = "tocsin_floor";

struct Postgres {
    conn: PgConnection,
    schedstat: String,
}

impl Postgres {
    fn open(url: &str) -> Self {
        let mut conn = PgConnection::establish(url).expect("the PostgreSQL database");
        let pid = diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>(
            "pg_backend_pid()",
        ))
        .get_result::<i32>(&mut conn)
        .expect("the server process's pid");
        let mut pg = Self {
            conn,
            schedstat: format!("/proc/{pid}/schedstat"),
        };
        // Fails here, before any table is made, when the server is not on this machine.
        let _ = pg.cpu_ns();
        pg.exec(&format!(
            "SET client_min_messages = warning; DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE; \
             CREATE SCHEMA {PG_SCHEMA}"
        ));
        for t in TABLES {
            pg.exec(&format!(
                "CREATE TABLE {PG_SCHEMA}.{0} (LIKE public.{0} INCLUDING ALL)",
                t.name
            ));
        }
        for t in TABLES {
            for (col, parent) in t.refs {
                pg.exec(&format!(
                    "ALTER TABLE {PG_SCHEMA}.{} ADD FOREIGN KEY ({col}) REFERENCES \
                     {PG_SCHEMA}.{parent} (id)",
                    t.name
                ));
            }
        }
        pg
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .conn
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE"));
    }
}

impl Target for Postgres {
    connection_methods!();
    fn columns(&mut self, table: &str) -> Vec<String> {
        names(
            diesel::sql_query(
                "SELECT column_name::text AS name FROM information_schema.columns \
                 WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
            )
            .bind::<Text, _>(table)
            .load(&mut self.conn),
        )
    }
    fn source(&self, table: &str) -> String {
        format!("public.{table}")
    }
    fn target(&self, table: &str) -> String {
        format!("{PG_SCHEMA}.{table}")
    }
    fn cpu_ns(&self) -> u64 {
        schedstat_ns(&self.schedstat)
    }
    fn version(&mut self) -> String {
        diesel::select(diesel::dsl::sql::<Text>(
            "'PostgreSQL ' || current_setting('server_version')",
        ))
        .get_result(&mut self.conn)
        .unwrap_or_default()
    }
}

/// Copies the source's rows `copies` times; the figures as JSON.
fn measure(db: &mut dyn Target, copies: u32) -> serde_json::Value {
    let alerts = db.count(&format!(
        "SELECT COUNT(*) AS n FROM {}",
        db.source("alerts")
    ));
    assert!(alerts > 0, "the source database holds no alert");
    let mut rows_per_alert = BTreeMap::new();
    let mut offsets = BTreeMap::new();
    let mut columns = BTreeMap::new();
    for Table { name: table, .. } in TABLES {
        let src = db.source(table);
        let n = db.count(&format!("SELECT COUNT(*) AS n FROM {src}"));
        rows_per_alert.insert(*table, n as f64 / alerts as f64);
        let max = db.count(&format!(
            "SELECT CAST(COALESCE(MAX(id), 0) AS BIGINT) AS n FROM {src}"
        ));
        offsets.insert(*table, max + 1);
        columns.insert(*table, db.columns(table));
    }
    let mut per_table_ns: BTreeMap<&str, u64> = BTreeMap::new();
    let mut commit_ns = 0;
    let mut per_copy_ns = Vec::new();
    for copy in 0..i64::from(copies) {
        let start = db.cpu_ns();
        db.exec("BEGIN");
        for Table {
            name: table,
            unique,
            refs,
        } in TABLES
        {
            let cols = &columns[table];
            let select: Vec<String> = cols
                .iter()
                .map(|c| {
                    if c == "id" {
                        format!("id + {}", copy * offsets[table])
                    } else if unique.contains(&c.as_str()) {
                        format!("{c} || '#{copy}'")
                    } else if let Some((_, parent)) = refs.iter().find(|(col, _)| col == c) {
                        format!("{c} + {}", copy * offsets[parent])
                    } else {
                        c.clone()
                    }
                })
                .collect();
            let sql = format!(
                "INSERT INTO {} ({}) SELECT {} FROM {} ORDER BY id",
                db.target(table),
                cols.join(", "),
                select.join(", "),
                db.source(table)
            );
            let t = db.cpu_ns();
            db.exec(&sql);
            *per_table_ns.entry(table).or_default() += db.cpu_ns() - t;
        }
        let t = db.cpu_ns();
        db.exec("COMMIT");
        commit_ns += db.cpu_ns() - t;
        per_copy_ns.push(db.cpu_ns() - start);
    }
    let n = (alerts * i64::from(copies)) as f64;
    let us = |ns: u64| ns as f64 / 1000.0 / n;
    let tables: serde_json::Map<String, serde_json::Value> = TABLES
        .iter()
        .map(|Table { name: t, .. }| {
            (
                (*t).to_owned(),
                serde_json::json!({
                    "rows_per_alert": rows_per_alert[t],
                    "us_per_alert": us(per_table_ns[t]),
                }),
            )
        })
        .collect();
    let total: u64 = per_copy_ns.iter().sum();
    serde_json::json!({
        "database": db.version(),
        "alerts_per_copy": alerts,
        "copies": copies,
        "us_per_alert": us(total),
        "commit_us_per_alert": us(commit_ns),
        // Each copy's own figure: later copies insert into larger trees, and the spread shows
        // how steady the machine was.
        "copies_us_per_alert": per_copy_ns
            .iter()
            .map(|ns| *ns as f64 / 1000.0 / alerts as f64)
            .collect::<Vec<_>>(),
        "tables": tables,
    })
}

fn main() {
    let mut from: Option<String> = None;
    let mut copies: u32 = 3;
    let mut out: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--from" => from = args.next(),
            "--copies" => {
                copies = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|n| *n > 0)
                    .expect("--copies takes a positive number")
            }
            "--out" => out = args.next().map(PathBuf::from),
            _ => {
                eprintln!(
                    "usage: storage_floor --from tocsin.db|postgres://... [--copies N] [--out FILE.json]"
                );
                std::process::exit(2);
            }
        }
    }
    let from = from.expect("--from: a database `tocsin serve` filled");
    let result = if from.starts_with("postgres://") || from.starts_with("postgresql://") {
        measure(&mut Postgres::open(&from), copies)
    } else {
        measure(&mut Sqlite::open(&from), copies)
    };
    println!(
        "{}'s own work for a new alert's rows: {:.1} us of CPU per alert ({} alerts x {} copies)",
        result["database"].as_str().unwrap_or("the database"),
        result["us_per_alert"].as_f64().unwrap_or_default(),
        result["alerts_per_copy"],
        copies
    );
    for Table { name: t, .. } in TABLES {
        let x = &result["tables"][t];
        println!(
            "  {t:<17} {:>5.2} rows/alert  {:>6.1} us",
            x["rows_per_alert"].as_f64().unwrap_or_default(),
            x["us_per_alert"].as_f64().unwrap_or_default()
        );
    }
    println!(
        "  {:<17} {:>17.1} us",
        "commit",
        result["commit_us_per_alert"].as_f64().unwrap_or_default()
    );
    if let Some(out) = out {
        std::fs::write(&out, format!("{result}\n")).expect("--out is writable");
    }
}

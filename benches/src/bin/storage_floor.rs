//! The storage floor of issue 8's load harness: what SQLite's own work on a new alert's rows
//! costs, with everything around it taken away.
//!
//! It reads a database that `tocsin serve` filled under the distinct-alert load (the harness
//! passes the one of its SQLite run) and copies its alerts, with their history, incidents,
//! incident events, pipeline runs and stage executions, several times into a new database of the
//! same schema and settings (WAL, `synchronous = NORMAL`, foreign keys on), one
//! `INSERT ... SELECT` per table and one transaction per copy, each copy with new unique keys and
//! ids that follow the last. No statement is prepared per alert, nothing is bound, decoded or
//! handed between threads, and one commit serves tens of thousands of alerts: what remains is the
//! b-tree inserts, index maintenance and foreign key checks of the same rows tocsin writes, in the
//! same bundled SQLite (built with the workspace's `LIBSQLITE3_FLAGS`). Its CPU time per alert is a
//! lower bound on what any write path that keeps those rows costs, to set beside what a throughput
//! line leaves for storage (`benches/load/report.py` does, `docs/performance.md` explains).
//!
//! ```text
//! storage_floor --from tocsin.db [--copies 5] [--out floor.json]
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

/// CPU time this thread has used, in nanoseconds (Linux: `/proc/thread-self/schedstat`).
fn thread_cpu_ns() -> u64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat")
        .expect("/proc/thread-self/schedstat (Linux) is needed to measure CPU time");
    s.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .expect("schedstat starts with the time on CPU in ns")
}

fn count(conn: &mut SqliteConnection, sql: &str) -> i64 {
    diesel::sql_query(sql)
        .get_result::<Count>(conn)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .n
}

fn main() {
    let mut from: Option<PathBuf> = None;
    let mut copies: u32 = 5;
    let mut out: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--from" => from = args.next().map(PathBuf::from),
            "--copies" => {
                copies = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|n| *n > 0)
                    .expect("--copies takes a positive number")
            }
            "--out" => out = args.next().map(PathBuf::from),
            _ => {
                eprintln!("usage: storage_floor --from tocsin.db [--copies N] [--out FILE.json]");
                std::process::exit(2);
            }
        }
    }
    let from = from.expect("--from: a database `tocsin serve` filled");
    let from = from.canonicalize().expect("the --from database exists");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let target = dir.path().join("floor.db");
    let mut conn = SqliteConnection::establish(&target.to_string_lossy()).expect("a new database");
    // tocsin's connection settings (core/src/store/mod.rs), and the source attached (only read).
    conn.batch_execute(
        "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; \
         PRAGMA synchronous = NORMAL; PRAGMA temp_store = MEMORY;",
    )
    .expect("tocsin's settings");
    diesel::sql_query("ATTACH DATABASE ? AS src")
        .bind::<Text, _>(from.to_string_lossy())
        .execute(&mut conn)
        .expect("the source database attaches");
    // The schema as the source has it: the six tables, their indexes, and the rest (foreign keys
    // name tables outside the list).
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
    let alerts = count(&mut conn, "SELECT COUNT(*) AS n FROM src.alerts");
    assert!(alerts > 0, "the source database holds no alert");
    let mut rows_per_alert = BTreeMap::new();
    let mut offsets = BTreeMap::new();
    let mut columns = BTreeMap::new();
    for Table { name: table, .. } in TABLES {
        let n = count(&mut conn, &format!("SELECT COUNT(*) AS n FROM src.{table}"));
        rows_per_alert.insert(*table, n as f64 / alerts as f64);
        let max = count(
            &mut conn,
            &format!("SELECT COALESCE(MAX(id), 0) AS n FROM src.{table}"),
        );
        offsets.insert(*table, max + 1);
        let cols: Vec<Column> = diesel::sql_query(format!(
            "SELECT name FROM pragma_table_info('{table}', 'src')"
        ))
        .load(&mut conn)
        .expect("the table's columns");
        columns.insert(*table, cols.into_iter().map(|c| c.name).collect::<Vec<_>>());
    }
    let mut per_table_ns: BTreeMap<&str, u64> = BTreeMap::new();
    let mut commit_ns = 0;
    let mut total_ns = 0;
    let mut per_copy_ns = Vec::new();
    for copy in 0..i64::from(copies) {
        let start = thread_cpu_ns();
        conn.batch_execute("BEGIN IMMEDIATE").expect("begin");
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
                "INSERT INTO main.{table} ({}) SELECT {} FROM src.{table} ORDER BY id",
                cols.join(", "),
                select.join(", ")
            );
            let t = thread_cpu_ns();
            conn.batch_execute(&sql)
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            *per_table_ns.entry(table).or_default() += thread_cpu_ns() - t;
        }
        let t = thread_cpu_ns();
        conn.batch_execute("COMMIT").expect("commit");
        commit_ns += thread_cpu_ns() - t;
        per_copy_ns.push(thread_cpu_ns() - start);
        total_ns += per_copy_ns.last().copied().unwrap_or_default();
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
    let result = serde_json::json!({
        "alerts_per_copy": alerts,
        "copies": copies,
        "us_per_alert": us(total_ns),
        "commit_us_per_alert": us(commit_ns),
        // Each copy's own figure: the spread shows how steady the machine was.
        "copies_us_per_alert": per_copy_ns
            .iter()
            .map(|ns| *ns as f64 / 1000.0 / alerts as f64)
            .collect::<Vec<_>>(),
        "tables": tables,
        "sqlite_version": diesel::select(diesel::dsl::sql::<Text>("sqlite_version()"))
            .get_result::<String>(&mut conn)
            .unwrap_or_default(),
    });
    println!(
        "SQLite's own work for a new alert's rows: {:.1} us of CPU per alert ({} alerts x {} copies)",
        us(total_ns),
        alerts,
        copies
    );
    for Table { name: t, .. } in TABLES {
        println!(
            "  {t:<17} {:>5.2} rows/alert  {:>6.1} us",
            rows_per_alert[t],
            us(per_table_ns[t])
        );
    }
    println!("  {:<17} {:>17.1} us", "commit", us(commit_ns));
    if let Some(out) = out {
        std::fs::write(&out, format!("{result}\n")).expect("--out is writable");
    }
}

//! Aggregates for `GET /metrics`, computed from the database so every node reports the same
//! figures and nothing is lost on restart.

use diesel::dsl::{count_star, sum};
use diesel::prelude::*;
use serde::Serialize;

use super::AnyConnection;
use super::schema::{alerts, deliveries, pipeline_runs, stage_executions};
use crate::error::Result;

/// The figures behind `/metrics`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    /// (source, status, count) of stored alerts.
    pub alerts: Vec<(String, String, i64)>,
    /// (status, count) of pipeline runs.
    pub runs: Vec<(String, i64)>,
    /// (stage, status, count, total milliseconds) of stage executions.
    pub stages: Vec<(String, String, i64, f64)>,
    /// (driver, status, count) of delivery attempts.
    pub deliveries: Vec<(String, String, i64)>,
    /// Runs waiting (pending or retrying).
    pub queue_depth: i64,
    /// Age in seconds of the oldest waiting run.
    pub oldest_pending_seconds: Option<f64>,
}

/// Reads every aggregate.
pub fn snapshot(c: &mut AnyConnection) -> Result<Snapshot> {
    let alerts = alerts::table
        .group_by((alerts::source, alerts::status))
        .select((alerts::source, alerts::status, count_star()))
        .load::<(String, String, i64)>(c)?;
    let runs = pipeline_runs::table
        .group_by(pipeline_runs::status)
        .select((pipeline_runs::status, count_star()))
        .load::<(String, i64)>(c)?;
    let stages = stage_executions::table
        .group_by((stage_executions::stage, stage_executions::status))
        .select((
            stage_executions::stage,
            stage_executions::status,
            count_star(),
            sum(stage_executions::duration_ms),
        ))
        .load::<(String, String, i64, Option<f64>)>(c)?
        .into_iter()
        .map(|(s, st, n, ms)| (s, st, n, ms.unwrap_or(0.0)))
        .collect();
    let deliveries = deliveries::table
        .group_by((deliveries::driver, deliveries::status))
        .select((deliveries::driver, deliveries::status, count_star()))
        .load::<(String, String, i64)>(c)?;
    let (queue_depth, oldest_pending_seconds) = crate::engine::queue::depth(c)?;
    Ok(Snapshot {
        alerts,
        runs,
        stages,
        deliveries,
        queue_depth,
        oldest_pending_seconds,
    })
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Snapshot {
    /// The Prometheus text exposition format.
    pub fn to_prometheus(&self) -> String {
        use std::fmt::Write;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "# HELP tocsin_alerts Stored alerts by source and status.\n# TYPE tocsin_alerts gauge"
        );
        for (src, st, n) in &self.alerts {
            let _ = writeln!(
                o,
                "tocsin_alerts{{source=\"{}\",status=\"{}\"}} {n}",
                label(src),
                label(st)
            );
        }
        let _ = writeln!(
            o,
            "# HELP tocsin_pipeline_runs Pipeline runs by status.\n# TYPE tocsin_pipeline_runs gauge"
        );
        for (st, n) in &self.runs {
            let _ = writeln!(o, "tocsin_pipeline_runs{{status=\"{}\"}} {n}", label(st));
        }
        let _ = writeln!(
            o,
            "# HELP tocsin_stage_duration_seconds Time spent in pipeline stages.\n# TYPE tocsin_stage_duration_seconds summary"
        );
        for (stage, st, n, ms) in &self.stages {
            let (stage, st) = (label(stage), label(st));
            let _ = writeln!(
                o,
                "tocsin_stage_duration_seconds_sum{{stage=\"{stage}\",status=\"{st}\"}} {}",
                ms / 1000.0
            );
            let _ = writeln!(
                o,
                "tocsin_stage_duration_seconds_count{{stage=\"{stage}\",status=\"{st}\"}} {n}"
            );
        }
        let _ = writeln!(
            o,
            "# HELP tocsin_queue_depth Runs waiting for a worker.\n# TYPE tocsin_queue_depth gauge"
        );
        let _ = writeln!(o, "tocsin_queue_depth {}", self.queue_depth);
        let _ = writeln!(
            o,
            "# HELP tocsin_queue_oldest_pending_seconds Age of the oldest waiting run.\n# TYPE tocsin_queue_oldest_pending_seconds gauge"
        );
        let _ = writeln!(
            o,
            "tocsin_queue_oldest_pending_seconds {}",
            self.oldest_pending_seconds.unwrap_or(0.0)
        );
        let _ = writeln!(
            o,
            "# HELP tocsin_deliveries Delivery attempts by driver and outcome.\n# TYPE tocsin_deliveries gauge"
        );
        for (d, st, n) in &self.deliveries {
            let _ = writeln!(
                o,
                "tocsin_deliveries{{driver=\"{}\",status=\"{}\"}} {n}",
                label(d),
                label(st)
            );
        }
        o
    }
}

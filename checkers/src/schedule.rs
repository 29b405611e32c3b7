//! Health checks on a schedule (`TOCSIN_CHECK_INTERVAL`): local server monitoring with no cron.
//!
//! Every interval the checks run (a `CheckRun` each), their alerts are planned against the stored
//! ones, and the plan's alerts go to a sink the caller supplies: the INGEST write path in
//! `tocsin serve` (this crate does not depend on the ingest crate).

use std::future::Future;
use std::time::Duration;

use tocsin_core::domain::{CheckResult, Labels, new_id};
use tocsin_core::plugin::NormalizedAlert;
use tocsin_core::{Error, Result, Tocsin};

use crate::alerts;
use crate::run::{self, CheckRequest};

/// The variable that turns scheduled checks on.
pub const CHECK_INTERVAL_ENV: &str = "TOCSIN_CHECK_INTERVAL";

/// Parses an interval: `300`, `300s`, `5m`, `1h`; `""`, `0` and `off` mean off. At least 1 s.
pub fn parse_interval(value: &str) -> Result<Option<Duration>> {
    let v = value.trim().to_ascii_lowercase();
    if v.is_empty() || v == "0" || v == "off" || v == "false" {
        return Ok(None);
    }
    let (num, unit) = match v.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => v.split_at(i),
        None => (v.as_str(), "s"),
    };
    let factor = match unit.trim() {
        "s" | "sec" | "secs" => 1.0,
        "m" | "min" | "mins" => 60.0,
        "h" => 3600.0,
        _ => f64::NAN,
    };
    let secs = num.parse::<f64>().map(|n| n * factor).unwrap_or(f64::NAN);
    if !secs.is_finite() || !(1.0..=7.0 * 86400.0).contains(&secs) {
        return Err(Error::invalid_config(format!(
            "invalid {CHECK_INTERVAL_ENV}={value:?}: expected seconds (300), or 300s / 5m / 1h, from 1 s to 7 days, or 0/off"
        )));
    }
    Ok(Some(Duration::from_secs_f64(secs)))
}

/// `TOCSIN_CHECK_INTERVAL` from the environment (`None`: unset or off).
pub fn check_interval_from_env() -> Result<Option<Duration>> {
    match std::env::var(CHECK_INTERVAL_ENV) {
        Ok(v) => parse_interval(&v),
        Err(_) => Ok(None),
    }
}

/// What a scheduled round runs.
#[derive(Debug, Clone)]
pub struct ScheduleConfig {
    /// Time between rounds (the first runs one interval after start).
    pub interval: Duration,
    /// The checkers and their options (skip controls apply).
    pub request: CheckRequest,
    /// Host name on the alerts; default the process's (`Tocsin::hostname`).
    pub hostname: Option<String>,
    /// Extra labels on the alerts.
    pub labels: Labels,
}

impl ScheduleConfig {
    /// Every checker with default options, every `interval`.
    pub fn every(interval: Duration) -> Self {
        Self {
            interval,
            request: CheckRequest::all(),
            hostname: None,
            labels: Labels::new(),
        }
    }
}

/// What one round did.
#[derive(Debug, Clone)]
pub struct RoundReport {
    /// Trace id of the round.
    pub trace_id: String,
    /// The results.
    pub results: Vec<CheckResult>,
    /// How many alerts went to the sink.
    pub alerts_sent: usize,
}

/// Runs one round: checks (recorded), plan, sink.
pub async fn run_round<F, Fut>(
    tocsin: &Tocsin,
    config: &ScheduleConfig,
    sink: &F,
) -> Result<RoundReport>
where
    F: Fn(Tocsin, Vec<NormalizedAlert>, String) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let trace_id = new_id();
    let results = run::run_request(tocsin, &config.request, &trace_id, None).await?;
    let hostname = config
        .hostname
        .clone()
        .unwrap_or_else(|| tocsin.hostname().to_owned());
    let plan = alerts::plan_alerts(tocsin.store(), &results, &hostname, &config.labels).await?;
    let to_send = alerts::alerts_to_ingest(&plan);
    let alerts_sent = to_send.len();
    if alerts_sent > 0 {
        sink(tocsin.clone(), to_send, trace_id.clone()).await?;
    }
    Ok(RoundReport {
        trace_id,
        results,
        alerts_sent,
    })
}

/// Scheduled checks running in the background; dropping this stops them.
#[derive(Debug)]
pub struct ScheduledChecks {
    task: tokio::task::JoinHandle<()>,
}

impl ScheduledChecks {
    /// Stops the schedule (a round in progress is abandoned; its records so far stay).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for ScheduledChecks {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts running check rounds every `config.interval` on the current tokio runtime; each round's
/// alerts go to `sink(tocsin, alerts, trace_id)`. A failing round is logged and the schedule goes
/// on.
///
/// ```ignore
/// // In `tocsin serve`:
/// let _checks = match tocsin_checkers::schedule::check_interval_from_env()? {
///     Some(every) => Some(tocsin_checkers::spawn_scheduled_checks(
///         tocsin.clone(),
///         ScheduleConfig::every(every),
///         |t, alerts, trace| async move {
///             tocsin_ingest::service::ingest_alerts(&t, tocsin_checkers::ALERT_SOURCE, alerts, Some(trace), None).await.map(|_| ())
///         },
///     )),
///     None => None,
/// };
/// ```
pub fn spawn_scheduled_checks<F, Fut>(
    tocsin: Tocsin,
    config: ScheduleConfig,
    sink: F,
) -> ScheduledChecks
where
    F: Fn(Tocsin, Vec<NormalizedAlert>, String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let task = tokio::spawn(async move {
        let mut ticker = tokio::time::interval_at(
            tokio::time::Instant::now() + config.interval,
            config.interval,
        );
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!(
            interval_s = config.interval.as_secs_f64(),
            "Scheduled health checks started."
        );
        loop {
            ticker.tick().await;
            match run_round(&tocsin, &config, &sink).await {
                Ok(r) => {
                    let s = run::summarize(&r.results);
                    tracing::info!(
                        trace_id = %r.trace_id, ok = s.ok, warning = s.warning, critical = s.critical,
                        unknown = s.unknown, skipped = s.skipped, alerts = r.alerts_sent,
                        "Scheduled health checks ran."
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Scheduled health checks failed; trying again next interval.")
                }
            }
        }
    });
    ScheduledChecks { task }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse() {
        assert_eq!(parse_interval("").unwrap(), None);
        assert_eq!(parse_interval("off").unwrap(), None);
        assert_eq!(parse_interval("0").unwrap(), None);
        assert_eq!(
            parse_interval("300").unwrap(),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            parse_interval("45s").unwrap(),
            Some(Duration::from_secs(45))
        );
        assert_eq!(
            parse_interval("5m").unwrap(),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            parse_interval("1h").unwrap(),
            Some(Duration::from_secs(3600))
        );
        for bad in ["-5", "0.5", "5x", "m", "9999999"] {
            let err = parse_interval(bad).unwrap_err();
            assert!(err.message().contains(CHECK_INTERVAL_ENV), "{bad}: {err}");
        }
    }
}

//! `cpu`: CPU usage and load averages of this machine, read through
//! [sysinfo](https://docs.rs/sysinfo/0.40/sysinfo/struct.System.html) from the kernel's
//! `/proc/stat` and `/proc/loadavg` on Linux ([proc_stat(5)](https://man7.org/linux/man-pages/man5/proc_stat.5.html),
//! [proc_loadavg(5)](https://man7.org/linux/man-pages/man5/proc_loadavg.5.html)).
//!
//! Usage is a difference of two counter readings, so a one-shot check must wait one
//! `sample_interval` (default 0.25 s) per sample. When a [`crate::sampler`] is running (as in
//! `tocsin serve`), the checker answers at once from its rolling window instead.
//!
//! Options (all optional): `warning_threshold` (70), `critical_threshold` (90), `samples` (1),
//! `sample_interval` (seconds, 0.25), `per_cpu` (false: status from the busiest core when true),
//! `use_sampler` (true). Setting `samples` or `sample_interval` asks for a fresh one-shot
//! measurement even when a sampler runs.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sysinfo::System;
use tocsin_core::plugin::{BuildContext, CheckOutcome, Checker, CheckerDescriptor};
use tocsin_core::{Error, Result};

use crate::common::{self, Direction, Thresholds};

/// The checker's name.
pub const NAME: &str = "cpu";

/// Options of the `cpu` checker.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuOptions {
    /// Percent busy at or above which the check warns. Default 70.
    pub warning_threshold: Option<f64>,
    /// Percent busy at or above which the check is critical. Default 90.
    pub critical_threshold: Option<f64>,
    /// Readings averaged in a one-shot run, 1 to 60. Default 1.
    pub samples: Option<u32>,
    /// Seconds each one-shot reading spans, 0.01 to 10. Default 0.25.
    pub sample_interval: Option<f64>,
    /// Take the status from the busiest core rather than the average of all. Default false.
    pub per_cpu: Option<bool>,
    /// Answer from the running background sampler, if any. Default true.
    pub use_sampler: Option<bool>,
}

/// Default seconds per one-shot reading.
pub const DEFAULT_SAMPLE_INTERVAL: f64 = 0.25;

/// One reading: percent busy over one interval, overall and per core.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CpuReading {
    /// All cores together, 0 to 100.
    pub total: f64,
    /// Each core, 0 to 100.
    pub per_core: Vec<f64>,
}

/// Load averages over 1, 5 and 15 minutes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LoadAverage {
    /// One minute.
    pub one: f64,
    /// Five minutes.
    pub five: f64,
    /// Fifteen minutes.
    pub fifteen: f64,
}

/// Where the readings came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Source {
    /// Measured now: `samples` readings of `interval` each.
    OneShot {
        /// Seconds per reading.
        interval: Duration,
    },
    /// The background sampler's rolling window.
    Sampler {
        /// How much time the readings span.
        window: Duration,
    },
}

/// The figures derived from a series of readings.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuSummary {
    /// The value the status is taken from: the average, or the busiest core's average.
    pub value: f64,
    /// Average of all cores over the readings.
    pub average: f64,
    /// Lowest reading (overall, or of the busiest core per reading with `per_cpu`).
    pub min: f64,
    /// Highest reading (same).
    pub max: f64,
    /// Each core's average over the readings.
    pub per_core: Vec<f64>,
    /// The busiest core (index into `per_core`), if cores were reported.
    pub busiest_core: Option<usize>,
}

/// Summarises readings; `None` when there are none.
pub fn summarize(readings: &[CpuReading], per_cpu: bool) -> Option<CpuSummary> {
    if readings.is_empty() {
        return None;
    }
    let n = readings.len() as f64;
    let average = readings.iter().map(|r| r.total).sum::<f64>() / n;
    let cores = readings.iter().map(|r| r.per_core.len()).max().unwrap_or(0);
    let per_core: Vec<f64> = (0..cores)
        .map(|i| {
            let vals: Vec<f64> = readings
                .iter()
                .filter_map(|r| r.per_core.get(i).copied())
                .collect();
            if vals.is_empty() {
                0.0
            } else {
                vals.iter().sum::<f64>() / vals.len() as f64
            }
        })
        .collect();
    let busiest_core = per_core
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i);
    let per_sample: Vec<f64> = if per_cpu && cores > 0 {
        readings
            .iter()
            .map(|r| r.per_core.iter().copied().fold(f64::NEG_INFINITY, f64::max))
            .collect()
    } else {
        readings.iter().map(|r| r.total).collect()
    };
    let value = match (per_cpu, busiest_core) {
        (true, Some(i)) => per_core[i],
        _ => average,
    };
    Some(CpuSummary {
        value,
        average,
        min: per_sample.iter().copied().fold(f64::INFINITY, f64::min),
        max: per_sample.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        per_core,
        busiest_core,
    })
}

/// The outcome for readings taken elsewhere: the checker's whole rule, without I/O.
pub fn evaluate(
    readings: &[CpuReading],
    per_cpu: bool,
    t: Thresholds,
    load: Option<LoadAverage>,
    source: Source,
) -> CheckOutcome {
    let Some(s) = summarize(readings, per_cpu) else {
        return common::unknown("CPU usage could not be measured", "no CPU readings", t);
    };
    let status = t.status(Direction::HigherIsWorse, s.value);
    let (how, source_name, extra) = match source {
        Source::OneShot { interval } => (
            format!(
                "avg of {} sample{} of {:.2} s",
                readings.len(),
                if readings.len() == 1 { "" } else { "s" },
                interval.as_secs_f64()
            ),
            "one_shot",
            json!({ "sample_interval": interval.as_secs_f64() }),
        ),
        Source::Sampler { window } => (
            format!("avg over the last {:.0} s", window.as_secs_f64()),
            "sampler",
            json!({ "window_seconds": common::round(window.as_secs_f64(), 1) }),
        ),
    };
    let busiest = if per_cpu {
        s.busiest_core
            .map(|i| format!(", busiest core cpu{i}"))
            .unwrap_or_default()
    } else {
        String::new()
    };
    let message = format!("CPU usage: {:.1}% ({how}{busiest})", s.value);
    let mut metrics = json!({
        "percent": common::round(s.value, 1),
        "average_percent": common::round(s.average, 1),
        "min": common::round(s.min, 1),
        "max": common::round(s.max, 1),
        "per_core": s.per_core.iter().map(|v| common::round(*v, 1)).collect::<Vec<_>>(),
        "core_count": s.per_core.len(),
        "per_cpu": per_cpu,
        "busiest_core": s.busiest_core,
        "samples": readings.len(),
        "source": source_name,
        "load_average": load.map(|l| json!({"one": l.one, "five": l.five, "fifteen": l.fifteen})),
    });
    if let (Value::Object(m), Value::Object(e)) = (&mut metrics, extra) {
        m.extend(e);
    }
    common::outcome(status, message, metrics, None, t)
}

/// Reads the usage computed by the last refresh of `sys`.
pub(crate) fn read(sys: &System) -> CpuReading {
    CpuReading {
        total: f64::from(sys.global_cpu_usage()),
        per_core: sys.cpus().iter().map(|c| f64::from(c.usage())).collect(),
    }
}

/// Reads the load averages (`/proc/loadavg`).
pub(crate) fn read_load() -> Option<LoadAverage> {
    System::load_average().ok().map(|l| LoadAverage {
        one: l.one,
        five: l.five,
        fifteen: l.fifteen,
    })
}

/// The `cpu` checker.
#[derive(Debug, Clone)]
pub struct CpuChecker {
    thresholds: Thresholds,
    samples: u32,
    interval: Duration,
    per_cpu: bool,
    use_sampler: bool,
}

impl CpuChecker {
    /// Validates options, without I/O.
    pub fn new(opts: CpuOptions) -> Result<Self> {
        let thresholds = Thresholds::new(
            NAME,
            opts.warning_threshold.unwrap_or(70.0),
            opts.critical_threshold.unwrap_or(90.0),
            Direction::HigherIsWorse,
        )?;
        let samples = opts.samples.unwrap_or(1);
        if !(1..=60).contains(&samples) {
            return Err(Error::invalid_config(format!(
                "{NAME}: samples must be from 1 to 60, got {samples}"
            )));
        }
        let interval = common::seconds(
            NAME,
            "sample_interval",
            opts.sample_interval.unwrap_or(DEFAULT_SAMPLE_INTERVAL),
            0.01,
            10.0,
        )?;
        // Asking for a particular measurement means measuring now, not reading the window.
        let explicit = opts.samples.is_some() || opts.sample_interval.is_some();
        Ok(Self {
            thresholds,
            samples,
            interval,
            per_cpu: opts.per_cpu.unwrap_or(false),
            use_sampler: opts.use_sampler.unwrap_or(true) && !explicit,
        })
    }

    async fn one_shot(
        &self,
    ) -> std::result::Result<(Vec<CpuReading>, Option<LoadAverage>), String> {
        let mut sys = common::blocking(|| {
            System::new().map(|mut s| {
                s.refresh_cpu_usage();
                s
            })
        })
        .await?
        .map_err(|e| format!("cannot read CPU counters: {e}"))?;
        let mut readings = Vec::with_capacity(self.samples as usize);
        for _ in 0..self.samples {
            tokio::time::sleep(self.interval).await;
            let (s, r) = common::blocking(move || {
                sys.refresh_cpu_usage();
                let r = read(&sys);
                (sys, r)
            })
            .await?;
            sys = s;
            readings.push(r);
        }
        let load = common::blocking(read_load).await?;
        Ok((readings, load))
    }
}

#[async_trait]
impl Checker for CpuChecker {
    async fn check(&self) -> CheckOutcome {
        if self.use_sampler
            && let Some(w) = crate::sampler::current_window()
        {
            return evaluate(
                &w.readings,
                self.per_cpu,
                self.thresholds,
                w.load,
                Source::Sampler { window: w.span },
            );
        }
        match self.one_shot().await {
            Ok((readings, _)) if readings.iter().all(|r| r.per_core.is_empty()) => common::unknown(
                "CPU usage could not be measured",
                "the kernel reported no CPUs",
                self.thresholds,
            ),
            Ok((readings, load)) => evaluate(
                &readings,
                self.per_cpu,
                self.thresholds,
                load,
                Source::OneShot {
                    interval: self.interval,
                },
            ),
            Err(e) => common::unknown("CPU usage could not be measured", e, self.thresholds),
        }
    }
}

fn build(config: &Value, _: &BuildContext) -> Result<Arc<dyn Checker>> {
    Ok(Arc::new(CpuChecker::new(common::parse_options(
        NAME, config,
    )?)?))
}

const DESCRIPTOR: CheckerDescriptor = CheckerDescriptor {
    name: NAME,
    description: "CPU usage (average or busiest core) and load averages.",
    config_example: r#"{"warning_threshold": 70, "critical_threshold": 90, "samples": 1, "sample_interval": 0.25, "per_cpu": false}"#,
    build,
};

tocsin_core::register_checker!(DESCRIPTOR);

/// The registration of the `cpu` checker, for [`crate::register_all`].
pub static REGISTRATION: CheckerDescriptor = DESCRIPTOR;

#[cfg(test)]
mod tests {
    use super::*;
    use tocsin_core::domain::CheckStatus;

    const T: Thresholds = Thresholds {
        warning: 70.0,
        critical: 90.0,
    };

    fn r(total: f64, cores: &[f64]) -> CpuReading {
        CpuReading {
            total,
            per_core: cores.to_vec(),
        }
    }

    fn shot() -> Source {
        Source::OneShot {
            interval: Duration::from_millis(250),
        }
    }

    #[test]
    fn average_drives_status_at_and_around_the_thresholds() {
        for (v, want) in [
            (69.9, CheckStatus::Ok),
            (70.0, CheckStatus::Warning),
            (89.9, CheckStatus::Warning),
            (90.0, CheckStatus::Critical),
            (100.0, CheckStatus::Critical),
        ] {
            let o = evaluate(&[r(v, &[v, v])], false, T, None, shot());
            assert_eq!(o.status, want, "at {v}");
        }
    }

    #[test]
    fn average_of_samples_with_min_and_max() {
        let o = evaluate(
            &[r(60.0, &[50.0, 70.0]), r(80.0, &[70.0, 90.0])],
            false,
            T,
            None,
            shot(),
        );
        assert_eq!(o.status, CheckStatus::Warning);
        assert_eq!(o.metrics["percent"], 70.0);
        assert_eq!(o.metrics["min"], 60.0);
        assert_eq!(o.metrics["max"], 80.0);
        assert_eq!(o.metrics["per_core"], json!([60.0, 80.0]));
        assert_eq!(o.metrics["core_count"], 2);
        assert_eq!(o.metrics["samples"], 2);
        assert_eq!(o.metrics["source"], "one_shot");
        assert!(
            o.message.starts_with("CPU usage: 70.0% (avg of 2 samples"),
            "{}",
            o.message
        );
    }

    #[test]
    fn per_cpu_takes_the_busiest_core() {
        // Average 50 % is fine, but core 1 is pinned at 95 %.
        let readings = [r(50.0, &[5.0, 95.0]), r(50.0, &[5.0, 95.0])];
        assert_eq!(
            evaluate(&readings, false, T, None, shot()).status,
            CheckStatus::Ok
        );
        let o = evaluate(&readings, true, T, None, shot());
        assert_eq!(o.status, CheckStatus::Critical);
        assert_eq!(o.metrics["percent"], 95.0);
        assert_eq!(o.metrics["busiest_core"], 1);
        assert!(o.message.contains("busiest core cpu1"), "{}", o.message);
    }

    #[test]
    fn sampler_source_and_load_are_reported() {
        let load = LoadAverage {
            one: 0.5,
            five: 0.25,
            fifteen: 0.125,
        };
        let o = evaluate(
            &[r(10.0, &[10.0])],
            false,
            T,
            Some(load),
            Source::Sampler {
                window: Duration::from_secs(5),
            },
        );
        assert_eq!(o.metrics["source"], "sampler");
        assert_eq!(o.metrics["window_seconds"], 5.0);
        assert_eq!(o.metrics["load_average"]["five"], 0.25);
        assert!(o.message.contains("last 5 s"), "{}", o.message);
        assert_eq!(o.warning_threshold, Some(70.0));
    }

    #[test]
    fn no_readings_is_unknown_not_a_panic() {
        let o = evaluate(&[], false, T, None, shot());
        assert_eq!(o.status, CheckStatus::Unknown);
        assert!(o.error.is_some());
    }

    #[test]
    fn options_are_validated_without_io() {
        let c = |v: Value| build(&v, &BuildContext::default()).map(|_| ());
        assert!(c(Value::Null).is_ok());
        assert!(c(json!({"samples": 3, "sample_interval": 0.1, "per_cpu": true})).is_ok());
        let err = c(json!({"sampels": 3})).unwrap_err();
        assert!(err.message().contains("sampels"), "{err}");
        assert!(c(json!({"samples": 0})).is_err());
        assert!(c(json!({"sample_interval": -1})).is_err());
        assert!(c(json!({"warning_threshold": 95, "critical_threshold": 90})).is_err());
    }

    #[test]
    fn explicit_sampling_bypasses_the_sampler() {
        assert!(CpuChecker::new(CpuOptions::default()).unwrap().use_sampler);
        assert!(
            !CpuChecker::new(CpuOptions {
                samples: Some(2),
                ..Default::default()
            })
            .unwrap()
            .use_sampler
        );
    }

    #[tokio::test]
    async fn one_shot_on_this_machine_reads_every_core() {
        let checker = CpuChecker::new(CpuOptions {
            sample_interval: Some(0.05),
            ..Default::default()
        })
        .unwrap();
        let o = checker.check().await;
        assert_ne!(o.status, CheckStatus::Unknown, "{o:?}");
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        assert_eq!(
            o.metrics["core_count"].as_u64(),
            Some(cores as u64),
            "{o:?}"
        );
        let p = o.metrics["percent"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&p), "{p}");
        assert!(o.metrics["load_average"]["one"].is_number(), "{o:?}");
    }
}

//! What every checker shares: thresholds and the two status rules, config parsing, formatting,
//! and running blocking reads off the async executor.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;
use tocsin_core::domain::CheckStatus;
use tocsin_core::plugin::CheckOutcome;
use tocsin_core::{Error, Result};

/// Which way a measured value gets worse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A usage percentage: at or above a threshold is bad (`cpu`, `memory`, `disk`).
    HigherIsWorse,
    /// A healthy share: below a threshold is bad (`network` reachable, `process` running).
    LowerIsWorse,
}

/// The warning and critical thresholds in force for one checker, in percent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Warning threshold.
    pub warning: f64,
    /// Critical threshold.
    pub critical: f64,
}

impl Thresholds {
    /// Checks that both are percentages in the right order for `direction`, without I/O.
    pub fn new(checker: &str, warning: f64, critical: f64, direction: Direction) -> Result<Self> {
        for (name, v) in [
            ("warning_threshold", warning),
            ("critical_threshold", critical),
        ] {
            if !v.is_finite() || !(0.0..=100.0).contains(&v) {
                return Err(Error::invalid_config(format!(
                    "{checker}: {name} must be a percentage from 0 to 100, got {v}"
                )));
            }
        }
        match direction {
            Direction::HigherIsWorse if warning > critical => Err(Error::invalid_config(format!(
                "{checker}: warning_threshold ({warning}) must not be above critical_threshold ({critical}): \
                 a higher value is worse for this checker"
            ))),
            Direction::LowerIsWorse if warning < critical => Err(Error::invalid_config(format!(
                "{checker}: warning_threshold ({warning}) must not be below critical_threshold ({critical}): \
                 a lower value is worse for this checker"
            ))),
            _ => Ok(Self { warning, critical }),
        }
    }

    /// The status of `value` under these thresholds.
    pub fn status(self, direction: Direction, value: f64) -> CheckStatus {
        match direction {
            Direction::HigherIsWorse => status_higher_is_worse(value, self),
            Direction::LowerIsWorse => status_lower_is_worse(value, self),
        }
    }
}

/// `value >= critical` is critical, `value >= warning` is warning, anything else ok.
/// A value that is not a number is unknown.
pub fn status_higher_is_worse(value: f64, t: Thresholds) -> CheckStatus {
    if value.is_nan() {
        CheckStatus::Unknown
    } else if value >= t.critical {
        CheckStatus::Critical
    } else if value >= t.warning {
        CheckStatus::Warning
    } else {
        CheckStatus::Ok
    }
}

/// `value < critical` is critical, `value < warning` is warning, anything else ok.
/// A value that is not a number is unknown.
pub fn status_lower_is_worse(value: f64, t: Thresholds) -> CheckStatus {
    if value.is_nan() {
        CheckStatus::Unknown
    } else if value < t.critical {
        CheckStatus::Critical
    } else if value < t.warning {
        CheckStatus::Warning
    } else {
        CheckStatus::Ok
    }
}

/// How bad a status is, for picking the worst: ok < warning < unknown < critical.
///
/// An unknown outranks a warning (we cannot vouch for that part) but never hides a critical.
pub fn rank(status: CheckStatus) -> u8 {
    match status {
        CheckStatus::Ok => 0,
        CheckStatus::Warning => 1,
        CheckStatus::Unknown => 2,
        CheckStatus::Critical => 3,
    }
}

/// Parses a checker's options; `null` means all defaults. Unknown keys are an error naming them.
pub fn parse_options<T: DeserializeOwned>(checker: &str, config: &Value) -> Result<T> {
    let value = if config.is_null() {
        Value::Object(serde_json::Map::new())
    } else {
        config.clone()
    };
    serde_json::from_value(value)
        .map_err(|e| Error::invalid_config(format!("{checker} options: {e}")))
}

/// A duration in seconds from an option, checked to lie in `min..=max`.
pub fn seconds(checker: &str, name: &str, value: f64, min: f64, max: f64) -> Result<Duration> {
    if !value.is_finite() || value < min || value > max {
        return Err(Error::invalid_config(format!(
            "{checker}: {name} must be from {min} to {max} seconds, got {value}"
        )));
    }
    Ok(Duration::from_secs_f64(value))
}

/// An outcome for a checker that could not measure.
pub fn unknown(
    message: impl Into<String>,
    error: impl Into<String>,
    t: Thresholds,
) -> CheckOutcome {
    CheckOutcome {
        status: CheckStatus::Unknown,
        message: message.into(),
        metrics: Value::Object(serde_json::Map::new()),
        error: Some(error.into()),
        warning_threshold: Some(t.warning),
        critical_threshold: Some(t.critical),
    }
}

/// An outcome with thresholds filled in.
pub fn outcome(
    status: CheckStatus,
    message: String,
    metrics: Value,
    error: Option<String>,
    t: Thresholds,
) -> CheckOutcome {
    CheckOutcome {
        status,
        message,
        metrics,
        error,
        warning_threshold: Some(t.warning),
        critical_threshold: Some(t.critical),
    }
}

/// Runs a blocking read (procfs, statvfs, sockets) on tokio's blocking pool. A panic inside is
/// returned as an error message, never propagated.
pub async fn blocking<T, F>(f: F) -> std::result::Result<T, String>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        if e.is_panic() {
            format!("measurement panicked: {e}")
        } else {
            format!("measurement task failed: {e}")
        }
    })
}

/// Rounds to `places` decimals (for metrics people read).
pub fn round(value: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (value * f).round() / f
}

/// `used / total` as a percentage; `NaN` when `total` is zero.
pub fn percent(used: f64, total: f64) -> f64 {
    if total > 0.0 {
        used / total * 100.0
    } else {
        f64::NAN
    }
}

/// Bytes in binary units, as `free -h` and `df -h` print them (`9.8 GiB`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        warning: 70.0,
        critical: 90.0,
    };
    const INV: Thresholds = Thresholds {
        warning: 70.0,
        critical: 50.0,
    };

    #[test]
    fn higher_is_worse_at_and_around_the_thresholds() {
        assert_eq!(status_higher_is_worse(0.0, T), CheckStatus::Ok);
        assert_eq!(status_higher_is_worse(69.99, T), CheckStatus::Ok);
        assert_eq!(status_higher_is_worse(70.0, T), CheckStatus::Warning);
        assert_eq!(status_higher_is_worse(89.99, T), CheckStatus::Warning);
        assert_eq!(status_higher_is_worse(90.0, T), CheckStatus::Critical);
        assert_eq!(status_higher_is_worse(100.0, T), CheckStatus::Critical);
        assert_eq!(status_higher_is_worse(f64::NAN, T), CheckStatus::Unknown);
    }

    #[test]
    fn lower_is_worse_at_and_around_the_thresholds() {
        assert_eq!(status_lower_is_worse(100.0, INV), CheckStatus::Ok);
        assert_eq!(status_lower_is_worse(70.0, INV), CheckStatus::Ok);
        assert_eq!(status_lower_is_worse(69.99, INV), CheckStatus::Warning);
        assert_eq!(status_lower_is_worse(50.0, INV), CheckStatus::Warning);
        assert_eq!(status_lower_is_worse(49.99, INV), CheckStatus::Critical);
        assert_eq!(status_lower_is_worse(0.0, INV), CheckStatus::Critical);
        assert_eq!(status_lower_is_worse(f64::NAN, INV), CheckStatus::Unknown);
    }

    #[test]
    fn thresholds_are_checked_for_range_and_order() {
        assert!(Thresholds::new("cpu", 70.0, 90.0, Direction::HigherIsWorse).is_ok());
        assert!(Thresholds::new("cpu", 90.0, 90.0, Direction::HigherIsWorse).is_ok());
        let err = Thresholds::new("cpu", 95.0, 90.0, Direction::HigherIsWorse).unwrap_err();
        assert!(
            err.message().contains("cpu") && err.message().contains("must not be above"),
            "{err}"
        );
        let err = Thresholds::new("network", 40.0, 50.0, Direction::LowerIsWorse).unwrap_err();
        assert!(err.message().contains("must not be below"), "{err}");
        let err = Thresholds::new("disk", 80.0, 101.0, Direction::HigherIsWorse).unwrap_err();
        assert!(err.message().contains("critical_threshold"), "{err}");
        assert!(Thresholds::new("disk", f64::NAN, 90.0, Direction::HigherIsWorse).is_err());
    }

    #[test]
    fn human_bytes_uses_binary_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(16 * 1024 * 1024 * 1024), "16.0 GiB");
    }

    #[test]
    fn unknown_outranks_warning_but_not_critical() {
        assert!(rank(CheckStatus::Critical) > rank(CheckStatus::Unknown));
        assert!(rank(CheckStatus::Unknown) > rank(CheckStatus::Warning));
        assert!(rank(CheckStatus::Warning) > rank(CheckStatus::Ok));
    }
}

//! `memory`: memory (and optionally swap) usage, read through
//! [sysinfo](https://docs.rs/sysinfo/0.40/sysinfo/struct.System.html#method.available_memory) from
//! the kernel's `/proc/meminfo` ([proc_meminfo(5)](https://man7.org/linux/man-pages/man5/proc_meminfo.5.html)).
//!
//! "Used" is `MemTotal - MemAvailable`, as `free` computes it: page cache the kernel can drop at
//! once is not counted as used.
//!
//! Options (all optional): `warning_threshold` (70), `critical_threshold` (90), `include_swap`
//! (false). The status follows memory alone; swap is reported when asked.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use sysinfo::System;
use tocsin_core::Result;
use tocsin_core::plugin::{BuildContext, CheckOutcome, Checker, CheckerDescriptor};

use crate::common::{self, Direction, Thresholds, human_bytes};

/// The checker's name.
pub const NAME: &str = "memory";

/// Options of the `memory` checker.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryOptions {
    /// Percent used at or above which the check warns. Default 70.
    pub warning_threshold: Option<f64>,
    /// Percent used at or above which the check is critical. Default 90.
    pub critical_threshold: Option<f64>,
    /// Report swap usage too. Default false.
    pub include_swap: Option<bool>,
}

/// One reading of the kernel's memory figures, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryReading {
    /// `MemTotal`.
    pub total: u64,
    /// `MemAvailable`.
    pub available: u64,
    /// `SwapTotal`.
    pub swap_total: u64,
    /// `SwapFree`.
    pub swap_free: u64,
}

/// The outcome for a reading taken elsewhere: the checker's whole rule, without I/O.
pub fn evaluate(m: MemoryReading, include_swap: bool, t: Thresholds) -> CheckOutcome {
    if m.total == 0 {
        return common::unknown(
            "Memory usage could not be measured",
            "the kernel reported no memory (MemTotal is 0)",
            t,
        );
    }
    let available = m.available.min(m.total);
    let used = m.total - available;
    let pct = common::percent(used as f64, m.total as f64);
    let status = t.status(Direction::HigherIsWorse, pct);
    let mut metrics = json!({
        "percent": common::round(pct, 1),
        "total_bytes": m.total,
        "used_bytes": used,
        "available_bytes": available,
        "total_human": human_bytes(m.total),
        "used_human": human_bytes(used),
        "available_human": human_bytes(available),
    });
    let mut message = format!(
        "Memory usage: {pct:.1}% ({} of {} used)",
        human_bytes(used),
        human_bytes(m.total)
    );
    if include_swap {
        let swap_free = m.swap_free.min(m.swap_total);
        let swap_used = m.swap_total - swap_free;
        let swap_pct = if m.swap_total == 0 {
            0.0
        } else {
            common::percent(swap_used as f64, m.swap_total as f64)
        };
        metrics["swap"] = json!({
            "percent": common::round(swap_pct, 1),
            "total_bytes": m.swap_total,
            "used_bytes": swap_used,
            "free_bytes": swap_free,
            "total_human": human_bytes(m.swap_total),
            "used_human": human_bytes(swap_used),
        });
        if m.swap_total == 0 {
            message.push_str("; no swap");
        } else {
            message.push_str(&format!("; swap {swap_pct:.1}%"));
        }
    }
    common::outcome(status, message, metrics, None, t)
}

/// Reads `/proc/meminfo` (blocking).
pub fn read() -> std::result::Result<MemoryReading, String> {
    let mut sys = System::new().map_err(|e| format!("cannot read memory figures: {e}"))?;
    sys.refresh_memory();
    Ok(MemoryReading {
        total: sys.total_memory(),
        available: sys.available_memory(),
        swap_total: sys.total_swap(),
        swap_free: sys.free_swap(),
    })
}

/// The `memory` checker.
#[derive(Debug, Clone)]
pub struct MemoryChecker {
    thresholds: Thresholds,
    include_swap: bool,
}

impl MemoryChecker {
    /// Validates options, without I/O.
    pub fn new(opts: MemoryOptions) -> Result<Self> {
        Ok(Self {
            thresholds: Thresholds::new(
                NAME,
                opts.warning_threshold.unwrap_or(70.0),
                opts.critical_threshold.unwrap_or(90.0),
                Direction::HigherIsWorse,
            )?,
            include_swap: opts.include_swap.unwrap_or(false),
        })
    }
}

#[async_trait]
impl Checker for MemoryChecker {
    async fn check(&self) -> CheckOutcome {
        match common::blocking(read).await.and_then(|r| r) {
            Ok(reading) => evaluate(reading, self.include_swap, self.thresholds),
            Err(e) => common::unknown("Memory usage could not be measured", e, self.thresholds),
        }
    }
}

fn build(config: &Value, _: &BuildContext) -> Result<Arc<dyn Checker>> {
    Ok(Arc::new(MemoryChecker::new(common::parse_options(
        NAME, config,
    )?)?))
}

const DESCRIPTOR: CheckerDescriptor = CheckerDescriptor {
    name: NAME,
    description: "Memory usage (used = total - MemAvailable), optionally swap.",
    config_example: r#"{"warning_threshold": 70, "critical_threshold": 90, "include_swap": true}"#,
    build,
};

tocsin_core::register_checker!(DESCRIPTOR);

/// The registration of the `memory` checker, for [`crate::register_all`].
pub static REGISTRATION: CheckerDescriptor = DESCRIPTOR;

#[cfg(test)]
mod tests {
    use super::*;
    use tocsin_core::domain::CheckStatus;

    const T: Thresholds = Thresholds {
        warning: 70.0,
        critical: 90.0,
    };
    const GIB: u64 = 1024 * 1024 * 1024;

    fn used(pct_tenths: u64) -> MemoryReading {
        // 1000 units of total, so tenths of a percent are exact.
        MemoryReading {
            total: 1000 * GIB / 100,
            available: (1000 - pct_tenths) * GIB / 100,
            swap_total: 0,
            swap_free: 0,
        }
    }

    #[test]
    fn status_at_and_around_the_thresholds() {
        assert_eq!(evaluate(used(699), false, T).status, CheckStatus::Ok);
        assert_eq!(evaluate(used(700), false, T).status, CheckStatus::Warning);
        assert_eq!(evaluate(used(899), false, T).status, CheckStatus::Warning);
        assert_eq!(evaluate(used(900), false, T).status, CheckStatus::Critical);
    }

    #[test]
    fn used_is_total_minus_available_and_swap_is_reported_when_asked() {
        let m = MemoryReading {
            total: 16 * GIB,
            available: 6 * GIB,
            swap_total: 4 * GIB,
            swap_free: 3 * GIB,
        };
        let o = evaluate(m, true, T);
        assert_eq!(o.metrics["used_bytes"], 10 * GIB);
        assert_eq!(o.metrics["percent"], 62.5);
        assert_eq!(o.metrics["total_human"], "16.0 GiB");
        assert_eq!(o.metrics["swap"]["percent"], 25.0);
        assert_eq!(
            o.message,
            "Memory usage: 62.5% (10.0 GiB of 16.0 GiB used); swap 25.0%"
        );
        assert!(evaluate(m, false, T).metrics.get("swap").is_none());
    }

    #[test]
    fn zero_total_is_unknown() {
        let o = evaluate(
            MemoryReading {
                total: 0,
                available: 0,
                swap_total: 0,
                swap_free: 0,
            },
            false,
            T,
        );
        assert_eq!(o.status, CheckStatus::Unknown);
    }

    #[test]
    fn options_are_validated() {
        assert!(build(&json!({"include_swap": true}), &BuildContext::default()).is_ok());
        assert!(build(&json!({"swap": true}), &BuildContext::default()).is_err());
        assert!(build(&json!({"critical_threshold": 50}), &BuildContext::default()).is_err());
    }
}

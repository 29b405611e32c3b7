//! `disk`: space and inode usage of the filesystems holding the given paths, read with
//! [statvfs(3)](https://man7.org/linux/man-pages/man3/statvfs.3.html) (through
//! [rustix](https://docs.rs/rustix/1/rustix/fs/fn.statvfs.html)).
//!
//! Figures follow `df`: `used = (f_blocks - f_bfree) * f_frsize`, `free = f_bavail * f_frsize`
//! (what an unprivileged user may still write), `percent = used / (used + free)`. The inode
//! percent is `(f_files - f_ffree) / f_files`; a path's value is the higher of the two, since a
//! filesystem out of inodes is as full as one out of blocks. The worst path drives the status. A
//! missing or unreadable path is `unknown` for that path and named in the message; it never hides
//! a critical path (critical > unknown > warning > ok).
//!
//! Options (all optional): `warning_threshold` (80), `critical_threshold` (95), `paths` (`["/"]`,
//! absolute paths), `timeout` (seconds per path, 5: a hung network mount is reported, not waited on).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use tocsin_core::domain::CheckStatus;
use tocsin_core::plugin::{BuildContext, CheckOutcome, Checker, CheckerDescriptor};
use tocsin_core::{Error, Result};

use crate::common::{self, Direction, Thresholds, human_bytes, rank};

/// The checker's name.
pub const NAME: &str = "disk";

/// Options of the `disk` checker.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskOptions {
    /// Percent used at or above which the check warns. Default 80.
    pub warning_threshold: Option<f64>,
    /// Percent used at or above which the check is critical. Default 95.
    pub critical_threshold: Option<f64>,
    /// Absolute paths whose filesystems are checked. Default `["/"]`.
    pub paths: Option<Vec<String>>,
    /// Seconds to wait for one path's figures, 0.1 to 60. Default 5.
    pub timeout: Option<f64>,
}

/// The figures of the filesystem holding one path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiskFigures {
    /// Size in bytes.
    pub total: u64,
    /// Bytes in use.
    pub used: u64,
    /// Bytes an unprivileged user may still write.
    pub free: u64,
    /// Inodes in all (0 when the filesystem does not count them).
    pub inodes_total: u64,
    /// Inodes free.
    pub inodes_free: u64,
}

impl DiskFigures {
    /// From a `statvfs` result.
    pub fn from_statvfs(
        blocks: u64,
        bfree: u64,
        bavail: u64,
        frsize: u64,
        files: u64,
        ffree: u64,
    ) -> Self {
        Self {
            total: blocks.saturating_mul(frsize),
            used: blocks.saturating_sub(bfree).saturating_mul(frsize),
            free: bavail.saturating_mul(frsize),
            inodes_total: files,
            inodes_free: ffree.min(files),
        }
    }

    /// Percent of space used, as `df` shows it (0 for a filesystem of no size).
    pub fn percent(&self) -> f64 {
        let denom = self.used as f64 + self.free as f64;
        if denom > 0.0 {
            self.used as f64 / denom * 100.0
        } else {
            0.0
        }
    }

    /// Percent of inodes used, when the filesystem counts them.
    pub fn inode_percent(&self) -> Option<f64> {
        (self.inodes_total > 0).then(|| {
            (self.inodes_total - self.inodes_free) as f64 / self.inodes_total as f64 * 100.0
        })
    }
}

/// The outcome for figures read elsewhere (`Err` = why a path could not be read): the checker's
/// whole rule, without I/O.
pub fn evaluate(
    paths: &[(String, std::result::Result<DiskFigures, String>)],
    t: Thresholds,
) -> CheckOutcome {
    if paths.is_empty() {
        return common::unknown("Disk usage could not be measured", "no paths to check", t);
    }
    let mut per_path = BTreeMap::new();
    let mut worst: Option<(&str, f64, bool)> = None; // path, value, driven by inodes
    let mut worst_status = CheckStatus::Ok;
    let mut by_status: BTreeMap<u8, Vec<String>> = BTreeMap::new();
    let mut unreadable = Vec::new();
    let mut errors = Vec::new();
    for (path, figures) in paths {
        match figures {
            Ok(f) => {
                let pct = f.percent();
                let ipct = f.inode_percent();
                let value = ipct.map_or(pct, |i| i.max(pct));
                let status = t.status(Direction::HigherIsWorse, value);
                if worst.is_none_or(|(_, v, _)| value > v) {
                    worst = Some((path, value, ipct.is_some_and(|i| i > pct)));
                }
                by_status
                    .entry(rank(status))
                    .or_default()
                    .push(path.clone());
                worst_status = if rank(status) > rank(worst_status) {
                    status
                } else {
                    worst_status
                };
                per_path.insert(
                    path.clone(),
                    json!({
                        "status": status,
                        "percent": common::round(pct, 1),
                        "total_bytes": f.total,
                        "used_bytes": f.used,
                        "free_bytes": f.free,
                        "total_human": human_bytes(f.total),
                        "used_human": human_bytes(f.used),
                        "free_human": human_bytes(f.free),
                        "inodes_percent": ipct.map(|i| common::round(i, 1)),
                        "inodes_total": f.inodes_total,
                        "inodes_used": f.inodes_total - f.inodes_free,
                    }),
                );
            }
            Err(e) => {
                unreadable.push(path.clone());
                errors.push(format!("path '{path}' not accessible: {e}"));
                worst_status = if rank(CheckStatus::Unknown) > rank(worst_status) {
                    CheckStatus::Unknown
                } else {
                    worst_status
                };
                per_path.insert(
                    path.clone(),
                    json!({ "status": CheckStatus::Unknown, "error": e }),
                );
            }
        }
    }
    let mut message = match worst {
        Some((path, value, inodes)) => {
            let what = if inodes { " inodes" } else { "" };
            if paths.len() - unreadable.len() > 1 {
                format!(
                    "Disk usage: worst {path}{what} at {value:.1}% ({} paths)",
                    paths.len() - unreadable.len()
                )
            } else {
                format!("Disk usage: {path}{what} at {value:.1}%")
            }
        }
        None => "Disk usage could not be measured".to_owned(),
    };
    if let Some(critical) = by_status.get(&rank(CheckStatus::Critical))
        && worst.is_some_and(|(p, _, _)| critical.len() > 1 || critical[0] != p)
    {
        message.push_str(&format!("; critical: {}", critical.join(", ")));
    }
    if !unreadable.is_empty() {
        message.push_str(&format!("; not accessible: {}", unreadable.join(", ")));
    }
    let metrics = json!({
        "paths": per_path,
        "worst_path": worst.map(|(p, _, _)| p),
        "worst_percent": worst.map(|(_, v, _)| common::round(v, 1)),
        "unreadable_paths": unreadable,
    });
    let error = (!errors.is_empty()).then(|| errors.join("; "));
    common::outcome(worst_status, message, metrics, error, t)
}

/// Reads the figures of the filesystem holding `path` (blocking).
pub fn read(path: &str) -> std::result::Result<DiskFigures, String> {
    let s = rustix::fs::statvfs(path).map_err(|e| std::io::Error::from(e).to_string())?;
    let frsize = if s.f_frsize > 0 {
        s.f_frsize
    } else {
        s.f_bsize
    };
    Ok(DiskFigures::from_statvfs(
        s.f_blocks, s.f_bfree, s.f_bavail, frsize, s.f_files, s.f_ffree,
    ))
}

/// The `disk` checker.
#[derive(Debug, Clone)]
pub struct DiskChecker {
    thresholds: Thresholds,
    paths: Vec<String>,
    timeout: Duration,
}

impl DiskChecker {
    /// Validates options, without I/O.
    pub fn new(opts: DiskOptions) -> Result<Self> {
        let thresholds = Thresholds::new(
            NAME,
            opts.warning_threshold.unwrap_or(80.0),
            opts.critical_threshold.unwrap_or(95.0),
            Direction::HigherIsWorse,
        )?;
        let mut paths = opts.paths.unwrap_or_else(|| vec!["/".to_owned()]);
        if paths.is_empty() {
            return Err(Error::invalid_config(format!(
                "{NAME}: paths must name at least one path"
            )));
        }
        if paths.len() > 256 {
            return Err(Error::invalid_config(format!(
                "{NAME}: at most 256 paths, got {}",
                paths.len()
            )));
        }
        for p in &paths {
            if !p.starts_with('/') || p.contains('\0') {
                return Err(Error::invalid_config(format!(
                    "{NAME}: paths must be absolute, got {p:?}"
                )));
            }
        }
        let mut seen = std::collections::HashSet::new();
        paths.retain(|p| seen.insert(p.clone()));
        let timeout = common::seconds(NAME, "timeout", opts.timeout.unwrap_or(5.0), 0.1, 60.0)?;
        Ok(Self {
            thresholds,
            paths,
            timeout,
        })
    }
}

#[async_trait]
impl Checker for DiskChecker {
    async fn check(&self) -> CheckOutcome {
        let deadline = tokio::time::Instant::now() + self.timeout;
        // One blocking task per path: a hung mount delays only its own answer, up to the timeout.
        let tasks: Vec<_> = self
            .paths
            .iter()
            .map(|p| {
                let path = p.clone();
                (p.clone(), tokio::task::spawn_blocking(move || read(&path)))
            })
            .collect();
        let mut results = Vec::with_capacity(tasks.len());
        for (path, task) in tasks {
            let r = match tokio::time::timeout_at(deadline, task).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => Err(format!("measurement task failed: {e}")),
                Err(_) => Err(format!(
                    "no answer within {:.1} s (hung mount?)",
                    self.timeout.as_secs_f64()
                )),
            };
            results.push((path, r));
        }
        evaluate(&results, self.thresholds)
    }
}

fn build(config: &Value, _: &BuildContext) -> Result<Arc<dyn Checker>> {
    Ok(Arc::new(DiskChecker::new(common::parse_options(
        NAME, config,
    )?)?))
}

const DESCRIPTOR: CheckerDescriptor = CheckerDescriptor {
    name: NAME,
    description: "Space and inode usage per path; the worst path drives the status.",
    config_example: r#"{"warning_threshold": 80, "critical_threshold": 95, "paths": ["/", "/var"]}"#,
    build,
};

tocsin_core::register_checker!(DESCRIPTOR);

/// The registration of the `disk` checker, for [`crate::register_all`].
pub static REGISTRATION: CheckerDescriptor = DESCRIPTOR;

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        warning: 80.0,
        critical: 95.0,
    };

    /// A filesystem of 1000 blocks of 1 KiB with `used` blocks in use and plenty of inodes.
    fn fs(used: u64) -> DiskFigures {
        DiskFigures::from_statvfs(1000, 1000 - used, 1000 - used, 1024, 100, 90)
    }

    fn one(f: DiskFigures) -> CheckOutcome {
        evaluate(&[("/".to_owned(), Ok(f))], T)
    }

    #[test]
    fn status_at_and_around_the_thresholds() {
        assert_eq!(one(fs(799)).status, CheckStatus::Ok);
        assert_eq!(one(fs(800)).status, CheckStatus::Warning);
        assert_eq!(one(fs(949)).status, CheckStatus::Warning);
        assert_eq!(one(fs(950)).status, CheckStatus::Critical);
        assert_eq!(one(fs(800)).message, "Disk usage: / at 80.0%");
    }

    #[test]
    fn percent_follows_df_reserved_blocks_count_as_unavailable() {
        // 1000 blocks, 500 free, but only 450 available to users (5 % reserved for root).
        let f = DiskFigures::from_statvfs(1000, 500, 450, 4096, 0, 0);
        assert!((f.percent() - 500.0 / 950.0 * 100.0).abs() < 1e-9);
        assert_eq!(f.free, 450 * 4096);
        assert_eq!(f.inode_percent(), None);
    }

    #[test]
    fn inode_exhaustion_drives_the_status() {
        let f = DiskFigures::from_statvfs(1000, 900, 900, 1024, 1000, 20);
        let o = one(f);
        assert_eq!(o.status, CheckStatus::Critical);
        assert!(o.message.contains("/ inodes at 98.0%"), "{}", o.message);
        assert_eq!(o.metrics["paths"]["/"]["inodes_percent"], 98.0);
        assert_eq!(o.metrics["paths"]["/"]["percent"], 10.0);
    }

    #[test]
    fn the_worst_path_drives_the_status() {
        let o = evaluate(
            &[("/".into(), Ok(fs(100))), ("/var".into(), Ok(fs(850)))],
            T,
        );
        assert_eq!(o.status, CheckStatus::Warning);
        assert_eq!(o.metrics["worst_path"], "/var");
        assert_eq!(o.metrics["worst_percent"], 85.0);
        assert!(
            o.message.contains("worst /var at 85.0% (2 paths)"),
            "{}",
            o.message
        );
    }

    #[test]
    fn an_unreadable_path_is_unknown_and_named() {
        let o = evaluate(
            &[
                ("/".into(), Ok(fs(100))),
                ("/nope".into(), Err("No such file or directory".into())),
            ],
            T,
        );
        assert_eq!(o.status, CheckStatus::Unknown);
        assert!(o.message.contains("not accessible: /nope"), "{}", o.message);
        assert!(o.error.as_deref().unwrap().contains("'/nope'"), "{o:?}");
        assert_eq!(o.metrics["paths"]["/nope"]["status"], "unknown");
        assert_eq!(o.metrics["paths"]["/"]["status"], "ok");
    }

    #[test]
    fn an_unreadable_path_never_hides_a_critical_one() {
        let o = evaluate(
            &[
                ("/nope".into(), Err("denied".into())),
                ("/".into(), Ok(fs(990))),
            ],
            T,
        );
        assert_eq!(o.status, CheckStatus::Critical);
        assert!(
            o.message.contains("/ at 99.0%") && o.message.contains("not accessible: /nope"),
            "{}",
            o.message
        );
        assert!(o.error.is_some());
    }

    #[test]
    fn options_are_validated_without_io() {
        let ctx = BuildContext::default();
        assert!(
            build(&json!({"paths": ["/", "/does/not/exist"]}), &ctx).is_ok(),
            "existence is checked at run time"
        );
        assert!(build(&json!({"paths": ["relative"]}), &ctx).is_err());
        assert!(build(&json!({"paths": []}), &ctx).is_err());
        assert!(build(&json!({"path": ["/"]}), &ctx).is_err());
    }
}

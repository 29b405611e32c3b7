//! `process`: whether named processes run, read through
//! [sysinfo](https://docs.rs/sysinfo/0.40/sysinfo/struct.Process.html) from the kernel's
//! `/proc/<pid>/` files ([proc_pid_stat(5)](https://man7.org/linux/man-pages/man5/proc_pid_stat.5.html)).
//!
//! A name matches a process when it equals, ignoring case, the process's name (`comm`, which the
//! kernel cuts to 15 bytes), the file name of its executable, or the file name of its first
//! argument. A name containing `*` is a glob in which only `*` is special (any run of characters),
//! matched the same way. Never a substring: `py` does not match `python`.
//!
//! The status is the running share of the names: all running is ok, below the warning threshold
//! (100 %) warns, below the critical one (50 %) is critical. No names configured is ok.
//!
//! Options (all optional): `warning_threshold` (100), `critical_threshold` (50), `names` (`[]`),
//! `sample_interval` (seconds over which matched processes' CPU usage is measured, 0.2; 0 skips it).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use globset::{GlobBuilder, GlobMatcher};
use serde::Deserialize;
use serde_json::{Value, json};
use sysinfo::{
    MemoryRefreshKind, Pid, ProcessRefreshKind, ProcessesToUpdate, System, ThreadKind, UpdateKind,
};
use tocsin_core::domain::CheckStatus;
use tocsin_core::plugin::{BuildContext, CheckOutcome, Checker, CheckerDescriptor};
use tocsin_core::{Error, Result};

use crate::common::{self, Direction, Thresholds, human_bytes};

/// The checker's name.
pub const NAME: &str = "process";

/// Options of the `process` checker.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessOptions {
    /// Running percent below which the check warns. Default 100.
    pub warning_threshold: Option<f64>,
    /// Running percent below which the check is critical. Default 50.
    pub critical_threshold: Option<f64>,
    /// Process names (exact, case-insensitive) or globs with `*`. Default none.
    pub names: Option<Vec<String>>,
    /// Seconds over which matched processes' CPU usage is measured, 0 to 5 (0: not measured). Default 0.2.
    pub sample_interval: Option<f64>,
}

/// One configured name, ready to match.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// As configured.
    pub name: String,
    matcher: Matcher,
}

#[derive(Debug, Clone)]
enum Matcher {
    Exact(String),
    Glob(GlobMatcher),
}

impl Pattern {
    /// Compiles a name, without I/O. Only `*` is special; everything else is literal.
    pub fn new(name: &str) -> Result<Self> {
        let trimmed = name.trim();
        if trimmed.is_empty() {
            return Err(Error::invalid_config(format!(
                "{NAME}: names must not be empty"
            )));
        }
        let matcher = if trimmed.contains('*') {
            let glob = globset::escape(trimmed).replace("[*]", "*");
            let g = GlobBuilder::new(&glob)
                .case_insensitive(true)
                .literal_separator(false)
                .build()
                .map_err(|e| {
                    Error::invalid_config(format!("{NAME}: invalid pattern {trimmed:?}: {e}"))
                })?;
            Matcher::Glob(g.compile_matcher())
        } else {
            Matcher::Exact(trimmed.to_lowercase())
        };
        Ok(Self {
            name: trimmed.to_owned(),
            matcher,
        })
    }

    /// Whether this pattern matches any of a process's names.
    pub fn matches<'a>(&self, candidates: impl IntoIterator<Item = &'a str>) -> bool {
        candidates.into_iter().any(|c| match &self.matcher {
            Matcher::Exact(n) => c.to_lowercase() == *n,
            Matcher::Glob(g) => g.is_match(c),
        })
    }

    /// `exact` or `glob`.
    pub fn kind(&self) -> &'static str {
        match self.matcher {
            Matcher::Exact(_) => "exact",
            Matcher::Glob(_) => "glob",
        }
    }
}

/// One running process as the checker sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessInfo {
    /// Process id.
    pub pid: u32,
    /// The names it answers to: `comm`, executable file name, first argument's file name.
    pub names: Vec<String>,
    /// CPU usage in percent of one core, when measured.
    pub cpu_percent: Option<f64>,
    /// Resident memory in bytes.
    pub memory_bytes: u64,
}

/// The outcome for processes listed elsewhere: the checker's whole rule, without I/O.
pub fn evaluate(
    patterns: &[Pattern],
    processes: &[ProcessInfo],
    total_memory: u64,
    t: Thresholds,
) -> CheckOutcome {
    if patterns.is_empty() {
        return common::outcome(
            CheckStatus::Ok,
            "No processes configured to monitor".to_owned(),
            json!({"processes": {}, "running_count": 0, "total_count": 0, "running_percent": null}),
            None,
            t,
        );
    }
    let mut per_name = BTreeMap::new();
    let mut missing = Vec::new();
    let mut running = 0usize;
    for p in patterns {
        let matched: Vec<&ProcessInfo> = processes
            .iter()
            .filter(|pr| p.matches(pr.names.iter().map(String::as_str)))
            .collect();
        let mut pids: Vec<u32> = matched.iter().map(|m| m.pid).collect();
        pids.sort_unstable();
        let memory: u64 = matched.iter().map(|m| m.memory_bytes).sum();
        // Nothing running has no CPU figure (and an empty f64 sum would print as -0.0).
        let cpu: Option<f64> = if matched.is_empty() {
            None
        } else {
            matched.iter().map(|m| m.cpu_percent).sum()
        };
        if matched.is_empty() {
            missing.push(p.name.as_str());
        } else {
            running += 1;
        }
        per_name.insert(
            p.name.clone(),
            json!({
                "running": !matched.is_empty(),
                "pids": pids,
                "count": matched.len(),
                "match": p.kind(),
                "cpu_percent": cpu.map(|c| common::round(c, 1)),
                "memory_bytes": memory,
                "memory_human": human_bytes(memory),
                "memory_percent": (total_memory > 0).then(|| common::round(memory as f64 / total_memory as f64 * 100.0, 2)),
            }),
        );
    }
    let total = patterns.len();
    let pct = running as f64 / total as f64 * 100.0;
    let status = t.status(Direction::LowerIsWorse, pct);
    let mut message = format!("Processes: {running}/{total} running");
    if !missing.is_empty() {
        message.push_str(&format!(". Missing: {}", missing.join(", ")));
    }
    let metrics = json!({
        "processes": per_name,
        "running_count": running,
        "total_count": total,
        "running_percent": common::round(pct, 1),
    });
    common::outcome(status, message, metrics, None, t)
}

fn file_name(s: &std::ffi::OsStr) -> Option<String> {
    std::path::Path::new(s)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

/// Lists processes (blocking), keeping only those some pattern matches.
fn list(sys: &mut System, patterns: &[Pattern]) -> Vec<ProcessInfo> {
    sys.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
    sys.refresh_processes_specifics(
        ProcessesToUpdate::All,
        true,
        ProcessRefreshKind::nothing()
            .with_memory()
            .with_cpu()
            .with_exe(UpdateKind::OnlyIfNotSet)
            .with_cmd(UpdateKind::OnlyIfNotSet),
    );
    sys.processes()
        .values()
        .filter(|p| p.thread_kind() != Some(ThreadKind::Userland))
        .map(|p| {
            let mut names = vec![p.name().to_string_lossy().into_owned()];
            names.extend(p.exe().and_then(|e| file_name(e.as_os_str())));
            names.extend(p.cmd().first().and_then(|c| file_name(c)));
            names.dedup();
            ProcessInfo {
                pid: p.pid().as_u32(),
                names,
                cpu_percent: None,
                memory_bytes: p.memory(),
            }
        })
        .filter(|info| {
            patterns
                .iter()
                .any(|pat| pat.matches(info.names.iter().map(String::as_str)))
        })
        .collect()
}

/// The `process` checker.
#[derive(Debug, Clone)]
pub struct ProcessChecker {
    thresholds: Thresholds,
    patterns: Vec<Pattern>,
    interval: Duration,
}

impl ProcessChecker {
    /// Validates options and compiles the names, without I/O.
    pub fn new(opts: ProcessOptions) -> Result<Self> {
        let thresholds = Thresholds::new(
            NAME,
            opts.warning_threshold.unwrap_or(100.0),
            opts.critical_threshold.unwrap_or(50.0),
            Direction::LowerIsWorse,
        )?;
        let mut patterns: Vec<Pattern> = Vec::new();
        for n in opts.names.unwrap_or_default() {
            let p = Pattern::new(&n)?;
            if !patterns.iter().any(|q| q.name == p.name) {
                patterns.push(p);
            }
        }
        let interval = common::seconds(
            NAME,
            "sample_interval",
            opts.sample_interval.unwrap_or(0.2),
            0.0,
            5.0,
        )?;
        Ok(Self {
            thresholds,
            patterns,
            interval,
        })
    }

    async fn measure(&self) -> std::result::Result<(Vec<ProcessInfo>, u64), String> {
        let patterns = self.patterns.clone();
        let (mut sys, mut found) = common::blocking(move || {
            let mut sys = System::new().map_err(|e| format!("cannot list processes: {e}"))?;
            let found = list(&mut sys, &patterns);
            Ok::<_, String>((sys, found))
        })
        .await??;
        if !found.is_empty() && !self.interval.is_zero() {
            // CPU usage is a difference of two readings; measure only the processes we report.
            tokio::time::sleep(self.interval).await;
            let (s, f) = common::blocking(move || {
                let pids: Vec<Pid> = found.iter().map(|p| Pid::from_u32(p.pid)).collect();
                sys.refresh_processes_specifics(
                    ProcessesToUpdate::Some(&pids),
                    true,
                    ProcessRefreshKind::nothing().with_cpu().with_memory(),
                );
                // A process that exited in between is no longer running.
                found.retain(|p| sys.process(Pid::from_u32(p.pid)).is_some());
                for p in &mut found {
                    if let Some(proc_) = sys.process(Pid::from_u32(p.pid)) {
                        p.cpu_percent = Some(f64::from(proc_.cpu_usage()));
                        p.memory_bytes = proc_.memory();
                    }
                }
                (sys, found)
            })
            .await?;
            sys = s;
            found = f;
        }
        Ok((found, sys.total_memory()))
    }
}

#[async_trait]
impl Checker for ProcessChecker {
    async fn check(&self) -> CheckOutcome {
        if self.patterns.is_empty() {
            return evaluate(&[], &[], 0, self.thresholds);
        }
        match self.measure().await {
            Ok((found, total_memory)) => {
                evaluate(&self.patterns, &found, total_memory, self.thresholds)
            }
            Err(e) => common::unknown("Processes could not be listed", e, self.thresholds),
        }
    }
}

fn build(config: &Value, _: &BuildContext) -> Result<Arc<dyn Checker>> {
    Ok(Arc::new(ProcessChecker::new(common::parse_options(
        NAME, config,
    )?)?))
}

const DESCRIPTOR: CheckerDescriptor = CheckerDescriptor {
    name: NAME,
    description: "Running share of named processes (exact name, or a glob with *).",
    config_example: r#"{"warning_threshold": 100, "critical_threshold": 50, "names": ["nginx", "postgres*"]}"#,
    build,
};

tocsin_core::register_checker!(DESCRIPTOR);

/// The registration of the `process` checker, for [`crate::register_all`].
pub static REGISTRATION: CheckerDescriptor = DESCRIPTOR;

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        warning: 100.0,
        critical: 50.0,
    };

    fn proc_(pid: u32, names: &[&str]) -> ProcessInfo {
        ProcessInfo {
            pid,
            names: names.iter().map(|s| s.to_string()).collect(),
            cpu_percent: Some(1.5),
            memory_bytes: 1024,
        }
    }

    fn pats(names: &[&str]) -> Vec<Pattern> {
        names.iter().map(|n| Pattern::new(n).unwrap()).collect()
    }

    #[test]
    fn exact_names_ignore_case_and_never_match_substrings() {
        let p = Pattern::new("Python3").unwrap();
        assert!(p.matches(["python3"]));
        assert!(!p.matches(["python3.11"]));
        let py = Pattern::new("py").unwrap();
        assert!(
            !py.matches(["python"]),
            "regression: the original matched substrings"
        );
        assert!(
            !Pattern::new("python").unwrap().matches(["py"]),
            "nor the other way round"
        );
    }

    #[test]
    fn globs_match_whole_names_and_only_star_is_special() {
        let p = Pattern::new("postgres*").unwrap();
        assert!(p.matches(["postgres"]) && p.matches(["PostgreSQL"]));
        assert!(!p.matches(["my-postgres"]));
        assert_eq!(p.kind(), "glob");
        let lit = Pattern::new("a?b*").unwrap();
        assert!(lit.matches(["a?bc"]));
        assert!(!lit.matches(["axbc"]), "? is literal");
        assert!(Pattern::new("  ").is_err());
    }

    #[test]
    fn any_of_comm_exe_and_argv0_may_match() {
        // comm is cut to 15 bytes; the executable's file name is whole.
        let long = proc_(7, &["tocsin-test-sle", "tocsin-test-sleeper"]);
        let o = evaluate(&pats(&["tocsin-test-sleeper"]), &[long], 0, T);
        assert_eq!(o.status, CheckStatus::Ok);
        assert_eq!(
            o.metrics["processes"]["tocsin-test-sleeper"]["pids"],
            json!([7])
        );
    }

    #[test]
    fn status_at_and_around_the_thresholds() {
        let procs = [proc_(1, &["a"]), proc_(2, &["b"]), proc_(3, &["c"])];
        assert_eq!(
            evaluate(&pats(&["a", "b"]), &procs, 0, T).status,
            CheckStatus::Ok,
            "100 %"
        );
        assert_eq!(
            evaluate(&pats(&["a", "b", "c", "x"]), &procs, 0, T).status,
            CheckStatus::Warning,
            "75 %"
        );
        assert_eq!(
            evaluate(&pats(&["a", "x"]), &procs, 0, T).status,
            CheckStatus::Warning,
            "50 % is not below 50"
        );
        assert_eq!(
            evaluate(&pats(&["a", "x", "y"]), &procs, 0, T).status,
            CheckStatus::Critical,
            "33 %"
        );
        assert_eq!(
            evaluate(&pats(&["x"]), &procs, 0, T).status,
            CheckStatus::Critical
        );
        let none = evaluate(&[], &procs, 0, T);
        assert_eq!(none.status, CheckStatus::Ok);
        assert_eq!(none.message, "No processes configured to monitor");
    }

    #[test]
    fn metrics_sum_every_matching_process() {
        let procs = [
            proc_(10, &["nginx"]),
            proc_(11, &["nginx"]),
            proc_(12, &["sshd"]),
        ];
        let o = evaluate(&pats(&["nginx", "redis"]), &procs, 1024 * 100, T);
        let n = &o.metrics["processes"]["nginx"];
        assert_eq!(n["running"], true);
        assert_eq!(n["pids"], json!([10, 11]));
        assert_eq!(n["cpu_percent"], 3.0);
        assert_eq!(n["memory_bytes"], 2048);
        assert_eq!(n["memory_percent"], 2.0);
        assert_eq!(o.metrics["processes"]["redis"]["running"], false);
        assert!(o.metrics["processes"]["redis"]["cpu_percent"].is_null());
        assert_eq!(o.message, "Processes: 1/2 running. Missing: redis");
        assert_eq!(o.metrics["running_percent"], 50.0);
    }

    #[test]
    fn options_are_validated_without_io() {
        let ctx = BuildContext::default();
        assert!(build(&json!({"names": ["nginx", "php-fpm*"]}), &ctx).is_ok());
        assert!(build(&json!({"names": [""]}), &ctx).is_err());
        assert!(build(&json!({"processes": ["x"]}), &ctx).is_err());
        assert!(
            build(&json!({"warning_threshold": 40}), &ctx).is_err(),
            "warning below critical on a lower-is-worse share"
        );
    }
}

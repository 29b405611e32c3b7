//! Memory and CPU evidence: processes measured with sysinfo, and the recommendations built on it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};
use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System, UpdateKind};
use tocsin_core::domain::{Priority, Recommendation, RecommendationType};
use tocsin_core::{Error, Result};

use crate::text::{cut, human, mib, round1, round2};

/// One process as measured.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessInfo {
    /// Process id.
    pub pid: u32,
    /// Name.
    pub name: String,
    /// Resident memory in bytes.
    pub memory_bytes: u64,
    /// Resident memory in MiB.
    pub memory_mb: f64,
    /// Share of physical RAM, in percent.
    pub memory_percent: f64,
    /// CPU over the measured window, in percent of one core (CPU analysis only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<f64>,
    /// Command line, cut to 200 characters, credentials redacted.
    pub cmdline: String,
}

/// System memory as measured.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryFacts {
    /// Physical RAM.
    pub total_bytes: u64,
    /// Available RAM (what new work can use without swapping).
    pub available_bytes: u64,
    /// `total - available`.
    pub used_bytes: u64,
    /// `used / total`, percent.
    pub used_percent: f64,
    /// Swap size.
    pub swap_total_bytes: u64,
    /// Swap in use.
    pub swap_used_bytes: u64,
}

fn system() -> Result<System> {
    System::new().map_err(|e| Error::internal(format!("cannot read system information: {e}")))
}

fn memory_facts(sys: &mut System) -> MemoryFacts {
    sys.refresh_memory();
    let total = sys.total_memory();
    let available = sys.available_memory();
    let used = total.saturating_sub(available);
    MemoryFacts {
        total_bytes: total,
        available_bytes: available,
        used_bytes: used,
        used_percent: if total == 0 {
            0.0
        } else {
            round1(used as f64 * 100.0 / total as f64)
        },
        swap_total_bytes: sys.total_swap(),
        swap_used_bytes: sys.used_swap(),
    }
}

/// System RAM use in percent (for the general scan's decision).
pub fn memory_used_percent() -> Result<f64> {
    Ok(memory_facts(&mut system()?).used_percent)
}

fn processes(sys: &System, total_memory: u64, with_cpu: bool) -> Vec<ProcessInfo> {
    sys.processes()
        .values()
        .filter(|p| p.thread_kind().is_none())
        .map(|p| {
            let rss = p.memory();
            ProcessInfo {
                pid: p.pid().as_u32(),
                name: p.name().to_string_lossy().into_owned(),
                memory_bytes: rss,
                memory_mb: mib(rss),
                memory_percent: if total_memory == 0 {
                    0.0
                } else {
                    round2(rss as f64 * 100.0 / total_memory as f64)
                },
                cpu_percent: with_cpu.then(|| round1(f64::from(p.cpu_usage()))),
                cmdline: cmdline(p.cmd()),
            }
        })
        .collect()
}

/// Joins and cuts a command line, replacing values of credential-like flags and URL passwords.
fn cmdline(args: &[std::ffi::OsString]) -> String {
    let mut out = Vec::with_capacity(args.len());
    let mut hide_next = false;
    for a in args {
        let a = a.to_string_lossy();
        if hide_next {
            out.push(tocsin_core::secret::REDACTED.to_owned());
            hide_next = false;
            continue;
        }
        let flag = a.trim_start_matches('-');
        if a.starts_with('-') {
            if let Some((k, _)) = flag.split_once('=') {
                if tocsin_core::secret::is_secret_key(k) {
                    out.push(format!(
                        "{}={}",
                        &a[..a.len() - flag.len() + k.len()],
                        tocsin_core::secret::REDACTED
                    ));
                    continue;
                }
            } else if tocsin_core::secret::is_secret_key(flag) {
                hide_next = true;
            }
        }
        out.push(tocsin_core::config::redact_url(&a));
    }
    cut(&out.join(" "), 200)
}

fn memory_priority(used_percent: f64) -> Priority {
    if used_percent > 90.0 {
        Priority::Critical
    } else if used_percent > 80.0 {
        Priority::High
    } else if used_percent > 70.0 {
        Priority::Medium
    } else {
        Priority::Low
    }
}

/// A measurement taken once for every analysis that asked while the one before it was taken.
///
/// An alert storm asks for the same evidence many times a second, and each measurement reads
/// every process (twice, a window apart, for CPU), formats and redacts every command line, and
/// holds a thread: measured per run, the evidence cost more CPU than the alerts. Measurements
/// run one at a time, each on one blocking thread; the callers that asked meanwhile wait
/// without holding a thread, and then share the next one. A caller is never given a sample that
/// started before it asked, so the evidence is always measured after the alert (and a process
/// started before the request is in it).
struct Shared<T> {
    last: tokio::sync::Mutex<Option<(Instant, Arc<T>)>>,
}

impl<T: Send + Sync + 'static> Shared<T> {
    const fn new() -> Self {
        Self {
            last: tokio::sync::Mutex::const_new(None),
        }
    }

    /// The first sample that started at or after `asked`, measuring it if none has.
    async fn get(
        &self,
        asked: Instant,
        measure: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<Arc<T>> {
        // Held while measuring: that is what makes the callers who arrive meanwhile wait.
        let mut last = self.last.lock().await;
        if let Some((started, sample)) = &*last
            && *started >= asked
        {
            return Ok(sample.clone());
        }
        let started = Instant::now();
        let sample = Arc::new(
            tokio::task::spawn_blocking(measure)
                .await
                .map_err(|e| Error::internal(format!("process measurement failed: {e}")))??,
        );
        *last = Some((started, sample.clone()));
        Ok(sample)
    }
}

/// Every process by resident memory, with the system's memory figures.
pub struct MemorySample {
    facts: MemoryFacts,
    /// Largest first.
    procs: Vec<ProcessInfo>,
    measured_at: chrono::DateTime<chrono::Utc>,
}

static MEMORY_SAMPLES: Shared<MemorySample> = Shared::new();

fn measure_memory() -> Result<MemorySample> {
    let mut sys = system()?;
    let facts = memory_facts(&mut sys);
    sys.refresh_processes_specifics(
        ProcessesToUpdate::All,
        true,
        ProcessRefreshKind::nothing()
            .with_memory()
            .with_cmd(UpdateKind::OnlyIfNotSet)
            .without_tasks(),
    );
    let mut procs = processes(&sys, facts.total_bytes, false);
    procs.sort_by(|a, b| b.memory_bytes.cmp(&a.memory_bytes).then(a.pid.cmp(&b.pid)));
    Ok(MemorySample {
        facts,
        procs,
        measured_at: chrono::Utc::now(),
    })
}

/// A memory sample taken after this call (shared with the callers of the moment).
pub async fn memory_sample() -> Result<Arc<MemorySample>> {
    MEMORY_SAMPLES.get(Instant::now(), measure_memory).await
}

/// The memory recommendation from `sample`: the top `top_n` processes by resident memory.
pub fn memory(sample: &MemorySample, top_n: usize, reasons: &[String]) -> Recommendation {
    let facts = &sample.facts;
    let procs: Vec<&ProcessInfo> = sample.procs.iter().take(top_n).collect();
    let held: u64 = procs.iter().map(|p| p.memory_bytes).sum();
    let priority = memory_priority(facts.used_percent);
    let title = match procs.first() {
        Some(p) => format!(
            "Memory {:.1}% used; largest process {} (PID {}) holds {}",
            facts.used_percent,
            p.name,
            p.pid,
            human(p.memory_bytes)
        ),
        None => format!("Memory {:.1}% used", facts.used_percent),
    };
    let names: Vec<String> = procs
        .iter()
        .take(3)
        .map(|p| {
            format!(
                "{} (PID {}, {}, {:.1}%)",
                p.name,
                p.pid,
                human(p.memory_bytes),
                p.memory_percent
            )
        })
        .collect();
    let description = format!(
        "{} of {} RAM in use ({:.1}%), {} available. The top {} processes by resident memory hold {}. Largest: {}.",
        human(facts.used_bytes),
        human(facts.total_bytes),
        facts.used_percent,
        human(facts.available_bytes),
        procs.len(),
        human(held),
        if names.is_empty() {
            "none readable".to_owned()
        } else {
            names.join(", ")
        }
    );
    let mut actions = Vec::new();
    if let Some(p) = procs.first() {
        actions.push(format!(
            "Check whether {} (PID {}) should hold {}: `ps -o pid,rss,vsz,etime,cmd -p {}` and `pmap -x {} | tail -1`.",
            p.name,
            p.pid,
            human(p.memory_bytes),
            p.pid,
            p.pid
        ));
        actions.push(format!(
            "If {} keeps growing, restart it in a maintenance window and look for a leak in its own metrics.",
            p.name
        ));
    }
    if facts.swap_used_bytes > 0 {
        actions.push(format!(
            "{} of swap is in use: `vmstat 1 5` shows whether the system is swapping now.",
            human(facts.swap_used_bytes)
        ));
    }
    if crate::analyze::priority_rank(priority) >= crate::analyze::priority_rank(Priority::High) {
        actions.push(
            "Cap heavy services (systemd `MemoryMax=`, container memory limits) or add RAM."
                .to_owned(),
        );
    } else {
        actions.push("No action is urgent; watch the trend of the largest processes.".to_owned());
    }
    Recommendation {
        kind: RecommendationType::Memory,
        priority,
        title,
        description,
        details: json!({
            "memory": facts,
            "top_processes": procs,
            "top_processes_bytes": held,
            "measured_at": sample.measured_at,
            "why": reasons,
        }),
        actions,
        incident_id: None,
    }
}

/// CPU over one window: every process that used some, busiest first, and the system figures.
pub struct CpuSample {
    window: Duration,
    measured_ms: u64,
    cores: usize,
    busy: f64,
    load: Option<sysinfo::LoadAvg>,
    procs: Vec<ProcessInfo>,
    measured_at: chrono::DateTime<chrono::Utc>,
}

static CPU_SAMPLES: Shared<CpuSample> = Shared::new();

fn measure_cpu(window: Duration) -> Result<CpuSample> {
    let mut sys = system()?;
    let kind = ProcessRefreshKind::nothing().with_cpu().without_tasks();
    sys.refresh_cpu_usage();
    sys.refresh_processes_specifics(ProcessesToUpdate::All, true, kind);
    let start = Instant::now();
    std::thread::sleep(window.max(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL));
    sys.refresh_cpu_usage();
    sys.refresh_processes_specifics(
        ProcessesToUpdate::All,
        true,
        kind.with_memory().with_cmd(UpdateKind::OnlyIfNotSet),
    );
    let measured_ms = start.elapsed().as_millis() as u64;
    let facts = memory_facts(&mut sys);
    let mut procs: Vec<ProcessInfo> = processes(&sys, facts.total_bytes, true)
        .into_iter()
        .filter(|p| p.cpu_percent.unwrap_or(0.0) > 0.0)
        .collect();
    procs.sort_by(|a, b| {
        b.cpu_percent
            .unwrap_or(0.0)
            .total_cmp(&a.cpu_percent.unwrap_or(0.0))
            .then(a.pid.cmp(&b.pid))
    });
    Ok(CpuSample {
        window,
        measured_ms,
        cores: sys.cpus().len().max(1),
        busy: round1(f64::from(sys.global_cpu_usage())),
        load: System::load_average().ok(),
        procs,
        measured_at: chrono::Utc::now(),
    })
}

/// A CPU sample over `window` that started after this call (shared with the callers of the
/// moment).
pub async fn cpu_sample(window: Duration) -> Result<Arc<CpuSample>> {
    let asked = Instant::now();
    let sample = CPU_SAMPLES.get(asked, move || measure_cpu(window)).await?;
    if sample.window == window {
        return Ok(sample);
    }
    // Shared with a caller that asked for another window: measure this one (the sample just
    // taken started after `asked`, so this measures anew).
    CPU_SAMPLES
        .get(Instant::now(), move || measure_cpu(window))
        .await
}

/// The CPU recommendation from `sample`: the top `top_n` processes by CPU over its window, and
/// load averages.
pub fn cpu(sample: &CpuSample, top_n: usize, reasons: &[String]) -> Recommendation {
    let (measured_ms, cores, busy) = (sample.measured_ms, sample.cores, sample.busy);
    let load = sample.load.as_ref();
    let procs: Vec<&ProcessInfo> = sample.procs.iter().take(top_n).collect();

    let by_busy = if busy > 90.0 {
        Priority::Critical
    } else if busy > 80.0 {
        Priority::High
    } else if busy > 70.0 {
        Priority::Medium
    } else {
        Priority::Low
    };
    let per_core = load.map(|l| l.one / cores as f64).unwrap_or(0.0);
    let by_load = if per_core > 2.0 {
        Priority::Critical
    } else if per_core > 1.5 {
        Priority::High
    } else if per_core > 1.0 {
        Priority::Medium
    } else {
        Priority::Low
    };
    let priority =
        if crate::analyze::priority_rank(by_busy) >= crate::analyze::priority_rank(by_load) {
            by_busy
        } else {
            by_load
        };
    let load_text = load
        .map(|l| {
            format!(
                "load average {:.2} / {:.2} / {:.2} on {cores} cores",
                l.one, l.five, l.fifteen
            )
        })
        .unwrap_or_else(|| format!("load average unavailable, {cores} cores"));
    let title = match procs.first() {
        Some(p) => format!(
            "CPU {busy:.1}% busy over {:.1} s; top process {} (PID {}) at {:.1}% of a core",
            measured_ms as f64 / 1000.0,
            p.name,
            p.pid,
            p.cpu_percent.unwrap_or(0.0)
        ),
        None => format!(
            "CPU {busy:.1}% busy over {:.1} s; no process used CPU",
            measured_ms as f64 / 1000.0
        ),
    };
    let names: Vec<String> = procs
        .iter()
        .take(3)
        .map(|p| {
            format!(
                "{} (PID {}, {:.1}%)",
                p.name,
                p.pid,
                p.cpu_percent.unwrap_or(0.0)
            )
        })
        .collect();
    let description = format!(
        "All cores together were {busy:.1}% busy during a {} ms window; {load_text}. Top by CPU: {}.",
        measured_ms,
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    );
    let mut actions = Vec::new();
    if let Some(p) = procs.first() {
        actions.push(format!(
            "See what {} (PID {}) is doing: `top -H -p {}` for its threads, `cat /proc/{}/status` for its state.",
            p.name, p.pid, p.pid, p.pid
        ));
    }
    if per_core > 1.0 {
        actions.push(format!(
            "The 1-minute load ({:.2}) exceeds the {cores} cores: work is queueing. `vmstat 1 5` tells CPU-bound (r) from I/O wait (wa).",
            load.map(|l| l.one).unwrap_or(0.0)
        ));
    }
    if crate::analyze::priority_rank(priority) >= crate::analyze::priority_rank(Priority::High) {
        actions.push(
            "Throttle or move batch work (`nice`, `systemd-run -p CPUQuota=`), or add cores."
                .to_owned(),
        );
    } else {
        actions.push("No action is urgent; CPU headroom remains.".to_owned());
    }
    Recommendation {
        kind: RecommendationType::Cpu,
        priority,
        title,
        description,
        details: json!({
            "cpu_percent": busy,
            "cpu_count": cores,
            "window_ms": measured_ms,
            "load_avg": load.map(|l| json!({"one": l.one, "five": l.five, "fifteen": l.fifteen})).unwrap_or(Value::Null),
            "top_processes": procs,
            "measured_at": sample.measured_at,
            "why": reasons,
        }),
        actions,
        incident_id: None,
    }
}

/// `(load1, cores)`, for the general scan's decision.
pub fn load_per_core() -> Option<f64> {
    let load = System::load_average().ok()?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    Some(load.one / cores as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_lose_their_credentials() {
        let args: Vec<std::ffi::OsString> = [
            "app",
            "--password",
            "hunter2",
            "--api-key=sk-1",
            "--db",
            "postgres://u:pw@h/db",
            "--port",
            "5",
        ]
        .iter()
        .map(Into::into)
        .collect();
        let c = cmdline(&args);
        assert!(
            !c.contains("hunter2") && !c.contains("sk-1") && !c.contains(":pw@"),
            "{c}"
        );
        assert!(
            c.contains("--port 5") && c.contains("--api-key=**REDACTED**"),
            "{c}"
        );
    }

    #[test]
    fn priority_follows_ram_use() {
        assert_eq!(memory_priority(95.0), Priority::Critical);
        assert_eq!(memory_priority(85.0), Priority::High);
        assert_eq!(memory_priority(75.0), Priority::Medium);
        assert_eq!(memory_priority(40.0), Priority::Low);
    }
}

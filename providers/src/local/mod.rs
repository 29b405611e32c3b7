//! `local`: recommendations from evidence measured on this machine — processes by resident
//! memory and by CPU (via [sysinfo](https://docs.rs/sysinfo/0.40)), load averages, and a parallel
//! disk scan. No network, no model: every figure is a measurement.
//!
//! Operator configuration (`build`), every key optional:
//! `{"roots": ["/"], "top_n": 10, "threshold_mb": 100, "old_days": 30, "scan_timeout_secs": 30,
//! "cpu_window_ms": 1000, "max_depth": 3, "disk_percent": 80, "memory_percent": 70, "workers": 0}`.
//! Requests tune `analyses`, `top_n`, `path`, `threshold_mb` and `old_days` ([`RequestOptions`]).

pub mod disk;
pub mod plan;
pub mod procs;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tocsin_core::domain::{Priority, Recommendation, RecommendationType};
use tocsin_core::plugin::{
    AnalysisInput, AnalysisOutput, BuildContext, Provider, ProviderDescriptor,
};
use tocsin_core::{Error, Result};

use crate::analyze::priority_rank;
use crate::options::{AnalysisKind, RequestOptions};
use crate::text::{human, round1};

/// The operator's settings of the local provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    /// Folders a disk scan may read. Default: none (disk scans refused); the library's
    /// `OperatorConfig::from_env` sets `TOCSIN_ANALYZE_ROOTS` or `/`.
    #[serde(default)]
    pub roots: Vec<PathBuf>,
    /// Processes, directories and files listed. Default 10.
    #[serde(default = "d_top_n")]
    pub top_n: usize,
    /// Size from which files and directories are listed, MiB. Default 100.
    #[serde(default = "d_threshold")]
    pub threshold_mb: u64,
    /// Age from which log/temp/cache files are listed, days. Default 30.
    #[serde(default = "d_old_days")]
    pub old_days: u64,
    /// Deadline of one analysis's disk scans, seconds. Default 30.
    #[serde(default = "d_timeout")]
    pub scan_timeout_secs: f64,
    /// CPU measuring window, milliseconds. Default 1000.
    #[serde(default = "d_window")]
    pub cpu_window_ms: u64,
    /// Directory depth below the scanned folder that is listed. Default 3.
    #[serde(default = "d_depth")]
    pub max_depth: usize,
    /// A general scan looks at filesystems above this use, percent. Default 80.
    #[serde(default = "d_disk_percent")]
    pub disk_percent: f64,
    /// A general scan looks at memory above this use, percent. Default 70.
    #[serde(default = "d_memory_percent")]
    pub memory_percent: f64,
    /// Disk walker threads; 0 picks from the CPU count (2 to 8). Default 0.
    #[serde(default)]
    pub workers: usize,
}

fn d_top_n() -> usize {
    10
}
fn d_threshold() -> u64 {
    100
}
fn d_old_days() -> u64 {
    30
}
fn d_timeout() -> f64 {
    30.0
}
fn d_window() -> u64 {
    1000
}
fn d_depth() -> usize {
    3
}
fn d_disk_percent() -> f64 {
    80.0
}
fn d_memory_percent() -> f64 {
    70.0
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            roots: Vec::new(),
            top_n: d_top_n(),
            threshold_mb: d_threshold(),
            old_days: d_old_days(),
            scan_timeout_secs: d_timeout(),
            cpu_window_ms: d_window(),
            max_depth: d_depth(),
            disk_percent: d_disk_percent(),
            memory_percent: d_memory_percent(),
            workers: 0,
        }
    }
}

impl LocalConfig {
    /// Parses and validates, without I/O.
    pub fn from_value(v: &Value) -> Result<Self> {
        let cfg: Self = match v {
            Value::Null => Self::default(),
            other => serde_json::from_value(other.clone()).map_err(|e| {
                Error::invalid_config(format!("invalid local provider config: {e}"))
            })?,
        };
        if !(1..=100).contains(&cfg.top_n) {
            return Err(Error::invalid_config(
                "local provider: top_n must be from 1 to 100",
            ));
        }
        if !(cfg.scan_timeout_secs.is_finite()
            && cfg.scan_timeout_secs > 0.0
            && cfg.scan_timeout_secs <= 3600.0)
        {
            return Err(Error::invalid_config(
                "local provider: scan_timeout_secs must be from 0 to 3600",
            ));
        }
        if cfg.cpu_window_ms > 60_000 {
            return Err(Error::invalid_config(
                "local provider: cpu_window_ms must be at most 60000",
            ));
        }
        if cfg.roots.iter().any(|r| !r.is_absolute()) {
            return Err(Error::invalid_config(
                "local provider: roots must be absolute paths",
            ));
        }
        Ok(cfg)
    }
}

/// Analyses walking a disk at once in this process (the HTTP endpoints included): walks are
/// heavy. Only the walks wait for a slot: the rest of an analysis (memory, the CPU window,
/// filesystem figures) runs beside them, so that analyses which walk nothing never queue
/// behind one that does.
static DISK_WALKS: Gate = Gate::new(2);

/// A counting semaphore for blocking code (the analysis runs on a blocking thread).
struct Gate {
    free: Mutex<usize>,
    freed: Condvar,
}

impl Gate {
    const fn new(slots: usize) -> Self {
        Self {
            free: Mutex::new(slots),
            freed: Condvar::new(),
        }
    }

    /// Waits for a free slot and takes it until the returned guard drops.
    fn acquire(&self) -> GateSlot<'_> {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        while *free == 0 {
            free = self
                .freed
                .wait(free)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *free -= 1;
        GateSlot(self)
    }
}

struct GateSlot<'a>(&'a Gate);

impl Drop for GateSlot<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.0.freed.notify_one();
    }
}

/// The disk walks of one analysis. They share one walk slot, taken at the first walk, and one
/// deadline (`scan_timeout_secs`) that starts once that slot is held.
struct Walks {
    timeout: Duration,
    slot: Option<(GateSlot<'static>, Instant)>,
}

impl Walks {
    fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            slot: None,
        }
    }

    /// Walks `root`, waiting for a walk slot first if this analysis holds none yet.
    fn scan(&mut self, eff: &Effective, root: &Path) -> Result<disk::ScanReport> {
        let timeout = self.timeout;
        let (_, deadline) = self
            .slot
            .get_or_insert_with(|| (DISK_WALKS.acquire(), Instant::now() + timeout));
        disk::scan(&scan_params(eff, root, *deadline))
    }

    /// Whether this analysis's scan deadline has passed.
    fn expired(&self) -> bool {
        self.slot
            .as_ref()
            .is_some_and(|(_, deadline)| Instant::now() >= *deadline)
    }
}

/// The local provider.
#[derive(Debug, Clone)]
pub struct LocalProvider {
    config: LocalConfig,
}

impl LocalProvider {
    /// A provider with these settings.
    pub fn new(config: LocalConfig) -> Self {
        Self { config }
    }
}

/// The settings of one analysis: operator defaults overridden by the request.
#[derive(Debug, Clone)]
struct Effective {
    cfg: LocalConfig,
    top_n: usize,
    threshold_mb: u64,
    old_days: u64,
}

#[async_trait]
impl Provider for LocalProvider {
    async fn analyze(&self, input: &AnalysisInput) -> Result<AnalysisOutput> {
        let opts: RequestOptions = match &input.options {
            Value::Null => RequestOptions::default(),
            v => RequestOptions::from_value(v)?,
        };
        let plan = plan::decide(input, &opts);
        let eff = Effective {
            top_n: opts.top_n.unwrap_or(self.config.top_n),
            threshold_mb: opts.threshold_mb.unwrap_or(self.config.threshold_mb),
            old_days: opts.old_days.unwrap_or(self.config.old_days),
            cfg: self.config.clone(),
        };
        tracing::debug!(kinds = ?plan.kinds, path = ?plan.disk_path, "Local analysis planned.");
        let evidence = Evidence::gather(&eff, &plan).await?;
        let recs = tokio::task::spawn_blocking(move || run(&eff, &plan, &evidence))
            .await
            .map_err(|e| Error::internal(format!("local analysis task failed: {e}")))??;
        Ok(AnalysisOutput {
            recommendations: recs,
            model: None,
            usage: None,
            summary: None,
        })
    }

    fn redacted_config(&self) -> Value {
        serde_json::to_value(&self.config).unwrap_or(Value::Null)
    }
}

/// The process measurements an analysis needs, taken before its blocking part.
///
/// Waiting for a measurement holds no thread: an alert storm puts dozens of analyses in the
/// CPU window at once, and a thread each (with a malloc arena each) was most of the server's
/// memory under load (issue 8).
#[derive(Default)]
struct Evidence {
    memory: Option<Arc<procs::MemorySample>>,
    cpu: Option<Arc<procs::CpuSample>>,
    /// The general analysis's reasons to look at memory and at CPU.
    memory_why: Option<String>,
    cpu_why: Option<String>,
    memory_used_percent: f64,
}

impl Evidence {
    async fn gather(eff: &Effective, plan: &plan::Plan) -> Result<Self> {
        let mut ev = Evidence::default();
        let (want_memory, want_cpu) = if plan.kinds.is_empty() {
            // The general analysis looks where there is pressure; reading it is file I/O
            // (`/proc/meminfo`, `/proc/loadavg`), so it runs on the blocking pool.
            let (mem, load) = tokio::task::spawn_blocking(|| {
                Ok::<_, Error>((procs::memory_used_percent()?, procs::load_per_core()))
            })
            .await
            .map_err(|e| Error::internal(format!("local analysis task failed: {e}")))??;
            ev.memory_used_percent = mem;
            if mem > eff.cfg.memory_percent {
                ev.memory_why = Some(format!(
                    "RAM use {mem:.1}% is above {:.0}%",
                    eff.cfg.memory_percent
                ));
            }
            if let Some(load) = load.filter(|l| *l > 1.0) {
                ev.cpu_why = Some(format!("the 1-minute load is {load:.2} per core"));
            }
            (ev.memory_why.is_some(), ev.cpu_why.is_some())
        } else {
            (
                plan.kinds.contains(&AnalysisKind::Memory),
                plan.kinds.contains(&AnalysisKind::Cpu),
            )
        };
        let window = Duration::from_millis(eff.cfg.cpu_window_ms);
        let (memory, cpu) = tokio::join!(
            async {
                match want_memory {
                    true => procs::memory_sample().await.map(Some),
                    false => Ok(None),
                }
            },
            async {
                match want_cpu {
                    true => procs::cpu_sample(window).await.map(Some),
                    false => Ok(None),
                }
            }
        );
        ev.memory = memory?;
        ev.cpu = cpu?;
        Ok(ev)
    }

    fn memory(&self) -> Result<&procs::MemorySample> {
        self.memory
            .as_deref()
            .ok_or_else(|| Error::internal("the memory sample was not taken"))
    }

    fn cpu(&self) -> Result<&procs::CpuSample> {
        self.cpu
            .as_deref()
            .ok_or_else(|| Error::internal("the CPU sample was not taken"))
    }
}

fn run(eff: &Effective, plan: &plan::Plan, ev: &Evidence) -> Result<Vec<Recommendation>> {
    let mut walks = Walks::new(Duration::from_secs_f64(eff.cfg.scan_timeout_secs));
    if plan.kinds.is_empty() {
        return general(eff, plan, ev, &mut walks);
    }
    let mut recs = Vec::new();
    for kind in &plan.kinds {
        match kind {
            AnalysisKind::Memory => {
                recs.push(procs::memory(ev.memory()?, eff.top_n, &plan.reasons))
            }
            AnalysisKind::Cpu => recs.push(procs::cpu(ev.cpu()?, eff.top_n, &plan.reasons)),
            AnalysisKind::Disk => recs.extend(disk_for_plan(eff, plan, &mut walks)?),
        }
    }
    Ok(recs)
}

/// The disk analysis of a plan. A path the request named must be scannable; a path taken from
/// the incident (an alert's `mountpoint`, possibly of another host) that cannot be scanned here
/// falls back to the first root, or to the filesystem figures alone when no root is configured.
fn disk_for_plan(
    eff: &Effective,
    plan: &plan::Plan,
    walks: &mut Walks,
) -> Result<Vec<Recommendation>> {
    let mut reasons = plan.reasons.clone();
    let resolved = match &plan.disk_path {
        Some(p) => disk::resolve_under_roots(p, &eff.cfg.roots),
        None => {
            first_root(&eff.cfg.roots).and_then(|p| disk::resolve_under_roots(&p, &eff.cfg.roots))
        }
    };
    let root = match resolved {
        Ok(root) => root,
        Err(e) if plan.path_requested => return Err(e),
        Err(e) => {
            let fallback = first_root(&eff.cfg.roots)
                .and_then(|p| disk::resolve_under_roots(&p, &eff.cfg.roots));
            match fallback {
                Ok(root) => {
                    reasons.push(format!(
                        "{}; scanning {} instead",
                        e.message(),
                        root.display()
                    ));
                    root
                }
                Err(_) => {
                    reasons.push(e.message().to_owned());
                    let all = filesystems();
                    let target = plan.disk_path.as_deref().unwrap_or("/");
                    let fs = filesystem_of(Path::new(target), &all)
                        .or_else(|| filesystem_of(Path::new("/"), &all));
                    return Ok(fs
                        .map(|f| vec![usage_only(&f, e.message(), &reasons)])
                        .unwrap_or_default());
                }
            }
        }
    };
    disk_recommendations(eff, &root, &reasons, walks)
}

/// A disk recommendation with the filesystem's figures only (nothing was walked).
fn usage_only(fs: &FsUsage, why: &str, reasons: &[String]) -> Recommendation {
    Recommendation {
        kind: RecommendationType::Disk,
        priority: disk_priority(fs.used_percent),
        title: format!(
            "Disk: {} is {:.1}% used ({} free)",
            fs.mount_point,
            fs.used_percent,
            human(fs.available_bytes)
        ),
        description: format!("{}. It was not scanned: {why}.", fs_sentence(fs)),
        details: json!({"filesystem": fs, "why": reasons}),
        actions: vec![format!(
            "Find what fills it: `du -xh --max-depth=2 {} | sort -h | tail -20`.",
            fs.mount_point
        )],
        incident_id: None,
    }
}

fn fs_sentence(fs: &FsUsage) -> String {
    format!(
        "{} is {:.1}% used: {} used, {} available of {}",
        fs.mount_point,
        fs.used_percent,
        human(fs.used_bytes),
        human(fs.available_bytes),
        human(fs.total_bytes)
    )
}

fn first_root(roots: &[PathBuf]) -> Result<String> {
    roots
        .first()
        .map(|r| r.display().to_string())
        .ok_or_else(|| {
            Error::invalid_input(format!(
                "disk scans are not allowed here: no scan roots are configured (set {})",
                crate::analyze::ROOTS_ENV
            ))
        })
}

/// A mounted filesystem and its use, as `df` computes it.
#[derive(Debug, Clone, Serialize)]
pub struct FsUsage {
    /// Mount point.
    pub mount_point: String,
    /// Filesystem type.
    pub file_system: String,
    /// Size.
    pub total_bytes: u64,
    /// In use (`size - free`).
    pub used_bytes: u64,
    /// Available to unprivileged users.
    pub available_bytes: u64,
    /// `used / (used + available)`, percent: `df`'s `Use%` (reserved blocks do not count as
    /// room).
    pub used_percent: f64,
}

const PSEUDO_FS: &[&str] = &[
    "tmpfs", "devtmpfs", "proc", "sysfs", "squashfs", "overlay", "cgroup", "cgroup2", "devpts",
    "mqueue", "nsfs", "ramfs",
];

/// `statvfs` figures of the filesystem holding `path`.
fn usage_of(path: &Path, file_system: &str) -> Option<FsUsage> {
    let st = rustix::fs::statvfs(path).ok()?;
    let unit = st.f_frsize.max(1);
    let total = st.f_blocks.saturating_mul(unit);
    let used = st.f_blocks.saturating_sub(st.f_bfree).saturating_mul(unit);
    let available = st.f_bavail.saturating_mul(unit);
    if total == 0 {
        return None;
    }
    let room = used + available;
    Some(FsUsage {
        mount_point: path.display().to_string(),
        file_system: file_system.to_owned(),
        total_bytes: total,
        used_bytes: used,
        available_bytes: available,
        used_percent: if room == 0 {
            0.0
        } else {
            round1(used as f64 * 100.0 / room as f64)
        },
    })
}

/// Mounted filesystems, de-duplicated by mount point.
pub fn filesystems() -> Vec<FsUsage> {
    let Ok(disks) = sysinfo::Disks::new_with_refreshed_list() else {
        return Vec::new();
    };
    let mut out: Vec<FsUsage> = disks
        .iter()
        .filter_map(|d| usage_of(d.mount_point(), &d.file_system().to_string_lossy()))
        .collect();
    // One entry per filesystem: bind mounts (a container's /etc/hosts) repeat their source's
    // device; the shortest mount point stands for it.
    out.sort_by(|a, b| {
        a.mount_point
            .len()
            .cmp(&b.mount_point.len())
            .then(a.mount_point.cmp(&b.mount_point))
    });
    let mut seen = std::collections::HashSet::new();
    out.retain(|f| {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(&f.mount_point) {
            Ok(m) => seen.insert(m.dev()),
            Err(_) => seen.insert(u64::MAX - seen.len() as u64),
        }
    });
    out.sort_by(|a, b| a.mount_point.cmp(&b.mount_point));
    out
}

/// The filesystem holding `path`: the mount point that is its longest prefix.
fn filesystem_of(path: &Path, all: &[FsUsage]) -> Option<FsUsage> {
    all.iter()
        .filter(|f| path.starts_with(&f.mount_point))
        .max_by_key(|f| f.mount_point.len())
        .cloned()
}

fn disk_priority(used_percent: f64) -> Priority {
    if used_percent > 95.0 {
        Priority::Critical
    } else if used_percent > 90.0 {
        Priority::High
    } else if used_percent > 80.0 {
        Priority::Medium
    } else {
        Priority::Low
    }
}

fn scan_params(eff: &Effective, root: &Path, deadline: Instant) -> disk::ScanParams {
    let workers = if eff.cfg.workers > 0 {
        eff.cfg.workers
    } else {
        std::thread::available_parallelism()
            .map(|n| n.get() * 2)
            .unwrap_or(4)
            .clamp(2, 8)
    };
    disk::ScanParams {
        root: root.to_path_buf(),
        threshold_bytes: eff.threshold_mb.saturating_mul(1024 * 1024),
        old_after: Duration::from_secs(eff.old_days.saturating_mul(86_400)),
        top_n: eff.top_n,
        max_depth: eff.cfg.max_depth,
        deadline,
        workers,
    }
}

/// Scans `root` and turns the report into recommendations.
fn disk_recommendations(
    eff: &Effective,
    root: &Path,
    reasons: &[String],
    walks: &mut Walks,
) -> Result<Vec<Recommendation>> {
    let fs = filesystem_of(root, &filesystems());
    let report = walks.scan(eff, root)?;
    Ok(disk_recs_from(eff, &report, fs.as_ref(), reasons))
}

fn disk_recs_from(
    eff: &Effective,
    r: &disk::ScanReport,
    fs: Option<&FsUsage>,
    reasons: &[String],
) -> Vec<Recommendation> {
    let priority = fs
        .map(|f| disk_priority(f.used_percent))
        .unwrap_or(Priority::Low);
    let fs_text = fs
        .map(|f| {
            format!(
                "{} is {:.1}% used ({} free of {})",
                f.mount_point,
                f.used_percent,
                human(f.available_bytes),
                human(f.total_bytes)
            )
        })
        .unwrap_or_else(|| "filesystem use unknown".to_owned());
    let scan = json!({
        "files_scanned": r.files_scanned,
        "dirs_scanned": r.dirs_scanned,
        "total_disk_bytes": r.total_disk_bytes,
        "complete": r.complete,
        "duration_ms": r.duration_ms,
        "unreadable_count": r.unreadable_count,
        "unreadable": r.unreadable,
        "skipped_mounts": r.skipped_mounts,
        "symlinks_skipped": r.symlinks_skipped,
        "threshold_mb": eff.threshold_mb,
        "old_days": eff.old_days,
    });
    let partial = if r.complete {
        String::new()
    } else {
        format!(
            " The scan stopped at its deadline after {} ms; figures are lower bounds.",
            r.duration_ms
        )
    };
    let unread = if r.unreadable_count > 0 {
        format!(
            " {} path(s) could not be read (see details.scan.unreadable).",
            r.unreadable_count
        )
    } else {
        String::new()
    };
    let mut recs = Vec::new();

    let top = r.largest_files.first().or(r.largest_dirs.first());
    let title = match top {
        Some(t) => format!(
            "Disk: {fs_text}; largest under {}: {} ({})",
            r.root,
            t.path,
            human(t.disk_bytes)
        ),
        None => format!(
            "Disk: {fs_text}; nothing of {} MiB or more under {}",
            eff.threshold_mb, r.root
        ),
    };
    let files: Vec<String> = r
        .largest_files
        .iter()
        .take(3)
        .map(|f| format!("{} ({})", f.path, human(f.disk_bytes)))
        .collect();
    let dirs: Vec<String> = r
        .largest_dirs
        .iter()
        .take(3)
        .map(|d| format!("{} ({})", d.path, human(d.disk_bytes)))
        .collect();
    let description = format!(
        "{} holds {} in {} files. Largest directories: {}. Largest files: {}.{partial}{unread}",
        r.root,
        human(r.total_disk_bytes),
        r.files_scanned,
        if dirs.is_empty() {
            "none above the threshold".to_owned()
        } else {
            dirs.join(", ")
        },
        if files.is_empty() {
            "none above the threshold".to_owned()
        } else {
            files.join(", ")
        },
    );
    let mut actions = Vec::new();
    if let Some(f) = r.largest_files.first() {
        actions.push(format!(
            "Decide whether {} ({}, last modified {:.1} days ago) is still needed; delete, compress or move it.",
            f.path,
            human(f.disk_bytes),
            f.age_days.unwrap_or(0.0)
        ));
    }
    if let Some(d) = r.largest_dirs.first() {
        actions.push(format!(
            "Break down {}: `du -xh --max-depth=1 {} | sort -h | tail -15`.",
            d.path, d.path
        ));
    }
    actions.push(format!("Browse interactively: `ncdu -x {}`.", r.root));
    if rank(priority) >= rank(Priority::High) {
        actions.push(
            "Free space soon: a full filesystem stops writes (databases, logs, package managers)."
                .to_owned(),
        );
    }
    recs.push(Recommendation {
        kind: RecommendationType::Disk,
        priority,
        title,
        description,
        details: json!({
            "path": r.root,
            "filesystem": fs,
            "largest_dirs": r.largest_dirs,
            "largest_files": r.largest_files,
            "scan": scan,
            "why": reasons,
        }),
        actions,
        incident_id: None,
    });

    if !r.old_files.is_empty() {
        let total = r.old_logs.disk_bytes + r.old_temp.disk_bytes + r.old_cache.disk_bytes;
        let count = r.old_logs.count + r.old_temp.count + r.old_cache.count;
        let old_priority = if total >= 1024 * 1024 * 1024 || rank(priority) >= rank(Priority::High)
        {
            Priority::Medium
        } else {
            Priority::Low
        };
        let biggest: Vec<String> = r
            .old_files
            .iter()
            .take(3)
            .map(|f| {
                format!(
                    "{} ({}, {:.0} days)",
                    f.path,
                    human(f.disk_bytes),
                    f.age_days
                )
            })
            .collect();
        let days = eff.old_days;
        recs.push(Recommendation {
            kind: RecommendationType::Disk,
            priority: old_priority,
            title: format!("{count} log, temp and cache files older than {days} days hold {} under {}", human(total), r.root),
            description: format!(
                "Logs: {} files, {}; temp: {} files, {}; cache: {} files, {}. Largest: {}.{partial}",
                r.old_logs.count,
                human(r.old_logs.disk_bytes),
                r.old_temp.count,
                human(r.old_temp.disk_bytes),
                r.old_cache.count,
                human(r.old_cache.disk_bytes),
                biggest.join(", ")
            ),
            details: json!({
                "path": r.root,
                "old_days": days,
                "old_files": r.old_files,
                "totals": {"log": r.old_logs, "temp": r.old_temp, "cache": r.old_cache,
                           "count": count, "disk_bytes": total, "size_mb": crate::text::mib(total)},
                "why": reasons,
            }),
            actions: vec![
                format!("List them first: `find {} -xdev -type f -mtime +{days} \\( -name '*.log*' -o -path '*/tmp/*' -o -path '*cache*' \\) -size +1M -ls`.", r.root),
                "Rotated logs: tune logrotate (`rotate`, `maxage`, `compress`); systemd journal: `journalctl --vacuum-time=30d`.".to_owned(),
                "Caches can be rebuilt: clear them with their own tool (`apt-get clean`, `pip cache purge`, `npm cache clean --force`).".to_owned(),
            ],
            incident_id: None,
        });
    }
    recs
}

fn rank(p: Priority) -> u8 {
    priority_rank(p)
}

/// No incident and no explicit analysis: memory if RAM use is high, CPU if the load exceeds the
/// cores, disk for every filesystem over its threshold, else one "healthy" summary.
fn general(
    eff: &Effective,
    plan: &plan::Plan,
    ev: &Evidence,
    walks: &mut Walks,
) -> Result<Vec<Recommendation>> {
    let mut recs = Vec::new();
    let mem = ev.memory_used_percent;
    let mut reasons = plan.reasons.clone();
    if let Some(why) = &ev.memory_why {
        reasons.push(why.clone());
        recs.push(procs::memory(ev.memory()?, eff.top_n, &reasons));
    }
    if let Some(why) = &ev.cpu_why {
        let mut r = reasons.clone();
        r.push(why.clone());
        recs.push(procs::cpu(ev.cpu()?, eff.top_n, &r));
    }
    let all = filesystems();
    let roots: Vec<PathBuf> = eff
        .cfg
        .roots
        .iter()
        .filter_map(|r| r.canonicalize().ok())
        .collect();
    for fs in all.iter().filter(|f| {
        !PSEUDO_FS.contains(&f.file_system.as_str()) && f.used_percent > eff.cfg.disk_percent
    }) {
        let mount = Path::new(&fs.mount_point);
        // Scan the mount if a root allows it, else the part of it a root names.
        let target = if roots.iter().any(|r| mount.starts_with(r)) {
            Some(mount.to_path_buf())
        } else {
            roots
                .iter()
                .find(|r| {
                    r.starts_with(mount)
                        && filesystem_of(r, &all).is_some_and(|f| f.mount_point == fs.mount_point)
                })
                .cloned()
        };
        let why = format!(
            "{} is {:.1}% used (above {:.0}%)",
            fs.mount_point, fs.used_percent, eff.cfg.disk_percent
        );
        let mut r = reasons.clone();
        r.push(why.clone());
        match target {
            Some(t) if !walks.expired() => {
                let report = walks.scan(eff, &t)?;
                recs.extend(disk_recs_from(eff, &report, Some(fs), &r));
            }
            _ => recs.push(usage_only(
                fs,
                "it lies outside the allowed scan roots, or the scan deadline passed",
                &r,
            )),
        }
    }
    if recs.is_empty() {
        let load_avg = sysinfo::System::load_average()
            .ok()
            .map(|l| json!({"one": l.one, "five": l.five, "fifteen": l.fifteen}));
        let fss: Vec<&FsUsage> = all
            .iter()
            .filter(|f| !PSEUDO_FS.contains(&f.file_system.as_str()))
            .collect();
        recs.push(Recommendation {
            kind: RecommendationType::General,
            priority: Priority::Low,
            title: format!("No resource pressure: RAM {mem:.1}% used, no filesystem above {:.0}%", eff.cfg.disk_percent),
            description: format!(
                "RAM use is {mem:.1}% (threshold {:.0}%), the load is within the cores, and {} filesystem(s) are below {:.0}% use.",
                eff.cfg.memory_percent,
                fss.len(),
                eff.cfg.disk_percent
            ),
            details: json!({"memory_used_percent": mem, "load_avg": load_avg, "filesystems": fss, "why": reasons}),
            actions: vec!["No action needed.".to_owned()],
            incident_id: None,
        });
    }
    Ok(recs)
}

fn build(config: &Value, _: &BuildContext) -> Result<Arc<dyn Provider>> {
    Ok(Arc::new(LocalProvider::new(LocalConfig::from_value(
        config,
    )?)))
}

const REGISTRATION: ProviderDescriptor = ProviderDescriptor {
    name: "local",
    description: "Evidence from this machine: top processes by memory and CPU, load, largest and old files.",
    config_example: r#"{"roots": ["/"], "top_n": 10, "threshold_mb": 100, "old_days": 30, "scan_timeout_secs": 30}"#,
    build,
};

/// The registration of the `local` provider (for [`crate::register_all`]).
pub static DESCRIPTOR: ProviderDescriptor = REGISTRATION;

tocsin_core::register_provider!(REGISTRATION);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_walk_gate_lets_two_in_and_the_third_waits_for_a_slot() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static GATE: Gate = Gate::new(2);
        let inside = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..6 {
                s.spawn(|| {
                    let _slot = GATE.acquire();
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    inside.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        assert_eq!(most.load(Ordering::SeqCst), 2);
        assert_eq!(*GATE.free.lock().unwrap(), 2, "every slot was given back");
    }

    #[test]
    fn the_example_config_parses_and_bad_values_are_refused() {
        let c =
            LocalConfig::from_value(&serde_json::from_str(REGISTRATION.config_example).unwrap())
                .unwrap();
        assert_eq!(c.roots, vec![PathBuf::from("/")]);
        assert_eq!(LocalConfig::default().top_n, 10);
        for bad in [
            json!({"top_n": 0}),
            json!({"roots": ["relative"]}),
            json!({"scan_timeout_secs": -1}),
            json!({"rootz": []}),
        ] {
            assert_eq!(
                LocalConfig::from_value(&bad).unwrap_err().kind(),
                tocsin_core::ErrorKind::InvalidConfig,
                "{bad}"
            );
        }
    }

    #[test]
    fn disk_priority_follows_filesystem_use() {
        assert_eq!(disk_priority(97.0), Priority::Critical);
        assert_eq!(disk_priority(92.0), Priority::High);
        assert_eq!(disk_priority(85.0), Priority::Medium);
        assert_eq!(disk_priority(50.0), Priority::Low);
    }
}

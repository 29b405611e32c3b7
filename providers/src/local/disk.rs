//! Disk evidence: a parallel, deadline-bounded walk of one filesystem under an allowed root.
//!
//! Sizes are what `du` counts (allocated blocks, hard links once), with the apparent size
//! (`ls -l`) beside it. The walk never follows a symbolic link, never crosses into another
//! filesystem, and reports what it could not read instead of failing.

use std::collections::{HashSet, VecDeque};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tocsin_core::{Error, Result};

use crate::text::{mib, round1};

/// Live counters of the disk scans running in this process (for a progress indicator).
#[derive(Debug, Default)]
pub struct ScanProgress {
    /// Scans running now.
    pub active: AtomicU64,
    /// Files looked at.
    pub files: AtomicU64,
    /// Directories read.
    pub dirs: AtomicU64,
    /// Bytes counted (allocated).
    pub bytes: AtomicU64,
}

static PROGRESS: ScanProgress = ScanProgress {
    active: AtomicU64::new(0),
    files: AtomicU64::new(0),
    dirs: AtomicU64::new(0),
    bytes: AtomicU64::new(0),
};

/// The process-wide scan counters; they only grow, so read them twice and subtract.
pub fn progress() -> &'static ScanProgress {
    &PROGRESS
}

/// What to scan and how.
#[derive(Debug, Clone)]
pub struct ScanParams {
    /// The folder (already checked against the roots).
    pub root: PathBuf,
    /// Files and directories at least this large (allocated bytes) are reported.
    pub threshold_bytes: u64,
    /// Log, temp and cache files older than this are reported.
    pub old_after: Duration,
    /// How many of each list to keep.
    pub top_n: usize,
    /// Directories deeper than this below the root are summed but not listed.
    pub max_depth: usize,
    /// When to stop.
    pub deadline: Instant,
    /// Walker threads.
    pub workers: usize,
}

/// One large file or directory.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Item {
    /// Path.
    pub path: String,
    /// Allocated bytes (what `du` counts, and what deleting it frees).
    pub disk_bytes: u64,
    /// Apparent bytes (what `ls -l` shows; summed for directories).
    pub size_bytes: u64,
    /// `disk_bytes` in MiB.
    pub size_mb: f64,
    /// Days since the last modification (files only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_days: Option<f64>,
    /// Depth below the scanned folder (directories only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub depth: Option<usize>,
}

/// What kind of leftover an old file is.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum OldKind {
    /// A log or rotated log.
    Log,
    /// A temporary, backup or swap file.
    Temp,
    /// A cache entry.
    Cache,
}

/// One old log, temp or cache file.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OldFile {
    /// Path.
    pub path: String,
    /// Allocated bytes.
    pub disk_bytes: u64,
    /// Apparent bytes.
    pub size_bytes: u64,
    /// `disk_bytes` in MiB.
    pub size_mb: f64,
    /// Days since the last modification.
    pub age_days: f64,
    /// Log, temp or cache.
    pub kind: OldKind,
}

/// A path the walk could not read.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Unreadable {
    /// Path.
    pub path: String,
    /// Why.
    pub error: String,
}

/// Totals of one class of old files.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Totals {
    /// Files.
    pub count: u64,
    /// Allocated bytes.
    pub disk_bytes: u64,
}

/// What a scan found.
#[derive(Debug, Clone, Serialize)]
pub struct ScanReport {
    /// The folder scanned.
    pub root: String,
    /// Allocated bytes under it (on its filesystem).
    pub total_disk_bytes: u64,
    /// Files looked at.
    pub files_scanned: u64,
    /// Directories read.
    pub dirs_scanned: u64,
    /// Largest directories (depth 1 to `max_depth`), largest first.
    pub largest_dirs: Vec<Item>,
    /// Largest files, largest first.
    pub largest_files: Vec<Item>,
    /// Old log, temp and cache files, largest first.
    pub old_files: Vec<OldFile>,
    /// All old log files.
    pub old_logs: Totals,
    /// All old temp files.
    pub old_temp: Totals,
    /// All old cache files.
    pub old_cache: Totals,
    /// Paths that could not be read (at most 50).
    pub unreadable: Vec<Unreadable>,
    /// How many paths could not be read.
    pub unreadable_count: u64,
    /// Mount points of other filesystems met and not entered (at most 50).
    pub skipped_mounts: Vec<String>,
    /// Symbolic links met and not followed.
    pub symlinks_skipped: u64,
    /// False when the deadline cut the walk short (the figures are then lower bounds).
    pub complete: bool,
    /// How long it took.
    pub duration_ms: u64,
}

/// Drops a directory that one listed subdirectory almost entirely explains (`/root/.rustup`
/// when `/root/.rustup/toolchains` holds 95 % of it), then keeps `top_n`.
fn most_specific(dirs: Vec<Item>, top_n: usize) -> Vec<Item> {
    let explained = |d: &Item| {
        let prefix = format!("{}/", d.path.trim_end_matches('/'));
        dirs.iter().any(|c| {
            c.path.starts_with(&prefix) && c.disk_bytes as f64 >= d.disk_bytes as f64 * 0.95
        })
    };
    let keep: Vec<bool> = dirs.iter().map(|d| !explained(d)).collect();
    dirs.iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|(d, _)| d.clone())
        .take(top_n)
        .collect()
}

/// Checks `path` against `roots` after resolving it (so a symbolic link cannot lead outside).
pub fn resolve_under_roots(path: &str, roots: &[PathBuf]) -> Result<PathBuf> {
    if roots.is_empty() {
        return Err(Error::invalid_input(format!(
            "disk scans are not allowed here: no scan roots are configured (set {})",
            crate::analyze::ROOTS_ENV
        )));
    }
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(Error::invalid_input(format!(
            "path {path:?} must be absolute"
        )));
    }
    let canon = p
        .canonicalize()
        .map_err(|e| Error::invalid_input(format!("path {path:?} cannot be scanned: {e}")))?;
    if !canon.is_dir() {
        return Err(Error::invalid_input(format!(
            "path {path:?} is not a directory"
        )));
    }
    let allowed = roots
        .iter()
        .filter_map(|r| r.canonicalize().ok())
        .any(|r| canon.starts_with(&r));
    if !allowed {
        let list: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
        return Err(Error::invalid_input(format!(
            "path {path:?} is outside the allowed scan roots ({})",
            list.join(", ")
        )));
    }
    Ok(canon)
}

/// Classifies a file as a log, temp or cache leftover, or nothing.
pub fn classify(path: &Path) -> Option<OldKind> {
    let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
    let comps: Vec<String> = path
        .parent()
        .map(|p| {
            p.components()
                .map(|c| c.as_os_str().to_string_lossy().to_ascii_lowercase())
                .collect()
        })
        .unwrap_or_default();
    let is_log = name.ends_with(".log")
        || name.contains(".log.")
        || name.ends_with(".journal")
        || name.ends_with(".journal~")
        || ((name.ends_with(".gz")
            || name.ends_with(".xz")
            || name.ends_with(".zst")
            || name.ends_with(".old"))
            && comps.iter().any(|c| c == "log" || c == "logs"))
        || comps
            .iter()
            .any(|c| c == "log" || c == "logs" || c == "journal");
    if is_log {
        return Some(OldKind::Log);
    }
    // Python bytecode sits beside its source and is rebuilt on import: not a leftover.
    if comps
        .iter()
        .any(|c| c.contains("cache") && c != "__pycache__")
    {
        return Some(OldKind::Cache);
    }
    let temp_ext = [".tmp", ".temp", ".swp", ".bak", ".old", "~"];
    if comps
        .iter()
        .any(|c| c == "tmp" || c == "temp" || c == ".tmp")
        || temp_ext.iter().any(|e| name.ends_with(e))
    {
        return Some(OldKind::Temp);
    }
    None
}

struct Node {
    parent: Option<usize>,
    depth: usize,
    path: PathBuf,
    disk: u64,
    size: u64,
}

#[derive(Default)]
struct Found {
    files: u64,
    dirs: u64,
    large: Vec<Item>,
    old: Vec<OldFile>,
    old_logs: Totals,
    old_temp: Totals,
    old_cache: Totals,
    unreadable: Vec<Unreadable>,
    unreadable_count: u64,
    mounts: Vec<String>,
    symlinks: u64,
}

struct Shared {
    queue: Mutex<(VecDeque<usize>, usize)>,
    wake: Condvar,
    nodes: Mutex<Vec<Node>>,
    links: Mutex<HashSet<(u64, u64)>>,
    timed_out: AtomicBool,
    dev: u64,
}

/// Walks `params.root` in parallel until done or the deadline.
pub fn scan(params: &ScanParams) -> Result<ScanReport> {
    let started = Instant::now();
    let meta = std::fs::symlink_metadata(&params.root)
        .map_err(|e| Error::invalid_input(format!("cannot read {}: {e}", params.root.display())))?;
    PROGRESS.active.fetch_add(1, Ordering::Relaxed);
    let shared = Shared {
        queue: Mutex::new((VecDeque::from([0]), 0)),
        wake: Condvar::new(),
        nodes: Mutex::new(vec![Node {
            parent: None,
            depth: 0,
            path: params.root.clone(),
            disk: meta.blocks() * 512,
            size: meta.len(),
        }]),
        links: Mutex::new(HashSet::new()),
        timed_out: AtomicBool::new(false),
        dev: meta.dev(),
    };
    let now = SystemTime::now();
    let workers = params.workers.clamp(1, 16);
    let mut found: Vec<Found> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| s.spawn(|| worker(&shared, params, now)))
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    PROGRESS.active.fetch_sub(1, Ordering::Relaxed);

    let nodes = shared
        .nodes
        .into_inner()
        .map_err(|_| Error::internal("disk scan state poisoned"))?;
    // Children always come after their parent: one backward pass sums every subtree.
    let mut disk: Vec<u64> = nodes.iter().map(|n| n.disk).collect();
    let mut size: Vec<u64> = nodes.iter().map(|n| n.size).collect();
    for i in (1..nodes.len()).rev() {
        if let Some(p) = nodes[i].parent {
            disk[p] += disk[i];
            size[p] += size[i];
        }
    }
    let mut dirs: Vec<Item> = nodes
        .iter()
        .enumerate()
        .filter(|(i, n)| {
            n.depth >= 1 && n.depth <= params.max_depth && disk[*i] >= params.threshold_bytes
        })
        .map(|(i, n)| Item {
            path: n.path.display().to_string(),
            disk_bytes: disk[i],
            size_bytes: size[i],
            size_mb: mib(disk[i]),
            age_days: None,
            depth: Some(n.depth),
        })
        .collect();
    dirs.sort_by(|a, b| {
        b.disk_bytes
            .cmp(&a.disk_bytes)
            .then_with(|| a.path.cmp(&b.path))
    });
    dirs.truncate(params.top_n.saturating_mul(20));
    let dirs = most_specific(dirs, params.top_n);

    let mut all = Found::default();
    for f in &mut found {
        all.files += f.files;
        all.dirs += f.dirs;
        all.large.append(&mut f.large);
        all.old.append(&mut f.old);
        for (t, s) in [
            (&mut all.old_logs, f.old_logs),
            (&mut all.old_temp, f.old_temp),
            (&mut all.old_cache, f.old_cache),
        ] {
            t.count += s.count;
            t.disk_bytes += s.disk_bytes;
        }
        all.unreadable.append(&mut f.unreadable);
        all.unreadable_count += f.unreadable_count;
        all.mounts.append(&mut f.mounts);
        all.symlinks += f.symlinks;
    }
    all.large.sort_by(|a, b| {
        b.disk_bytes
            .cmp(&a.disk_bytes)
            .then_with(|| a.path.cmp(&b.path))
    });
    all.large.truncate(params.top_n);
    all.old.sort_by(|a, b| {
        b.disk_bytes
            .cmp(&a.disk_bytes)
            .then_with(|| a.path.cmp(&b.path))
    });
    all.old.truncate(params.top_n);
    all.unreadable.sort_by(|a, b| a.path.cmp(&b.path));
    all.unreadable.truncate(50);
    all.mounts.sort();
    all.mounts.truncate(50);

    Ok(ScanReport {
        root: params.root.display().to_string(),
        total_disk_bytes: disk.first().copied().unwrap_or(0),
        files_scanned: all.files,
        dirs_scanned: all.dirs,
        largest_dirs: dirs,
        largest_files: all.large,
        old_files: all.old,
        old_logs: all.old_logs,
        old_temp: all.old_temp,
        old_cache: all.old_cache,
        unreadable: all.unreadable,
        unreadable_count: all.unreadable_count,
        skipped_mounts: all.mounts,
        symlinks_skipped: all.symlinks,
        complete: !shared.timed_out.load(Ordering::Relaxed),
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

fn worker(shared: &Shared, params: &ScanParams, now: SystemTime) -> Found {
    let mut found = Found::default();
    loop {
        let next = {
            let Ok(mut q) = shared.queue.lock() else {
                break;
            };
            loop {
                if Instant::now() >= params.deadline {
                    shared.timed_out.store(true, Ordering::Relaxed);
                    q.0.clear();
                    shared.wake.notify_all();
                    break None;
                }
                if let Some(i) = q.0.pop_front() {
                    q.1 += 1;
                    break Some(i);
                }
                if q.1 == 0 {
                    break None;
                }
                match shared.wake.wait_timeout(q, Duration::from_millis(50)) {
                    Ok((guard, _)) => q = guard,
                    Err(_) => return found,
                }
            }
        };
        let Some(index) = next else { break };
        read_dir(shared, params, now, index, &mut found);
        if let Ok(mut q) = shared.queue.lock() {
            q.1 -= 1;
        }
        shared.wake.notify_all();
    }
    found
}

fn note_unreadable(found: &mut Found, path: &Path, err: &std::io::Error) {
    found.unreadable_count += 1;
    if found.unreadable.len() < 50 {
        found.unreadable.push(Unreadable {
            path: path.display().to_string(),
            error: err.to_string(),
        });
    }
}

fn read_dir(
    shared: &Shared,
    params: &ScanParams,
    now: SystemTime,
    index: usize,
    found: &mut Found,
) {
    let (dir, depth) = match shared.nodes.lock() {
        Ok(nodes) => (nodes[index].path.clone(), nodes[index].depth),
        Err(_) => return,
    };
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) => return note_unreadable(found, &dir, &e),
    };
    found.dirs += 1;
    PROGRESS.dirs.fetch_add(1, Ordering::Relaxed);
    let (mut own_disk, mut own_size) = (0u64, 0u64);
    let mut subdirs = Vec::new();
    for entry in entries {
        if Instant::now() >= params.deadline {
            shared.timed_out.store(true, Ordering::Relaxed);
            break;
        }
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                note_unreadable(found, &dir, &e);
                continue;
            }
        };
        let path = entry.path();
        // `symlink_metadata` never follows a link.
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                note_unreadable(found, &path, &e);
                continue;
            }
        };
        let ft = meta.file_type();
        if ft.is_symlink() {
            found.symlinks += 1;
            continue;
        }
        if ft.is_dir() {
            if meta.dev() != shared.dev {
                found.mounts.push(path.display().to_string());
                continue;
            }
            subdirs.push((path, meta.blocks() * 512, meta.len()));
            continue;
        }
        found.files += 1;
        PROGRESS.files.fetch_add(1, Ordering::Relaxed);
        if meta.dev() != shared.dev {
            continue;
        }
        let disk = meta.blocks() * 512;
        if meta.nlink() > 1 && ft.is_file() {
            let first = shared
                .links
                .lock()
                .map(|mut l| l.insert((meta.dev(), meta.ino())))
                .unwrap_or(true);
            if !first {
                continue;
            }
        }
        own_disk += disk;
        own_size += meta.len();
        PROGRESS.bytes.fetch_add(disk, Ordering::Relaxed);
        if !ft.is_file() {
            continue;
        }
        let age = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or_default();
        let age_days = round1(age.as_secs_f64() / 86_400.0);
        if disk >= params.threshold_bytes {
            found.large.push(Item {
                path: path.display().to_string(),
                disk_bytes: disk,
                size_bytes: meta.len(),
                size_mb: mib(disk),
                age_days: Some(age_days),
                depth: None,
            });
        }
        if age >= params.old_after
            && let Some(kind) = classify(&path)
        {
            let t = match kind {
                OldKind::Log => &mut found.old_logs,
                OldKind::Temp => &mut found.old_temp,
                OldKind::Cache => &mut found.old_cache,
            };
            t.count += 1;
            t.disk_bytes += disk;
            found.old.push(OldFile {
                path: path.display().to_string(),
                disk_bytes: disk,
                size_bytes: meta.len(),
                size_mb: mib(disk),
                age_days,
                kind,
            });
            // Bounded per worker: only the largest are reported anyway.
            if found.old.len() > params.top_n * 20 {
                found.old.sort_by_key(|b| std::cmp::Reverse(b.disk_bytes));
                found.old.truncate(params.top_n);
            }
        }
        if found.large.len() > params.top_n * 20 {
            found.large.sort_by_key(|b| std::cmp::Reverse(b.disk_bytes));
            found.large.truncate(params.top_n);
        }
    }
    let mut new_jobs = Vec::with_capacity(subdirs.len());
    if let Ok(mut nodes) = shared.nodes.lock() {
        nodes[index].disk += own_disk;
        nodes[index].size += own_size;
        for (path, disk, size) in subdirs {
            nodes.push(Node {
                parent: Some(index),
                depth: depth + 1,
                path,
                disk,
                size,
            });
            new_jobs.push(nodes.len() - 1);
        }
    }
    if !new_jobs.is_empty()
        && let Ok(mut q) = shared.queue.lock()
    {
        q.0.extend(new_jobs);
        shared.wake.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_are_classified_by_name_and_folder() {
        assert_eq!(
            classify(Path::new("/var/log/syslog.2.gz")),
            Some(OldKind::Log)
        );
        assert_eq!(
            classify(Path::new("/srv/app/app.log.1")),
            Some(OldKind::Log)
        );
        assert_eq!(
            classify(Path::new("/var/log/nginx/access")),
            Some(OldKind::Log)
        );
        assert_eq!(
            classify(Path::new("/home/u/.cache/pip/wheel.whl")),
            Some(OldKind::Cache)
        );
        assert_eq!(
            classify(Path::new("/tmp/build-123/out.o")),
            Some(OldKind::Temp)
        );
        assert_eq!(classify(Path::new("/srv/db/dump.bak")), Some(OldKind::Temp));
        assert_eq!(classify(Path::new("/srv/data/video.mp4")), None);
        assert_eq!(
            classify(Path::new(
                "/usr/lib/python3/dist-packages/x/__pycache__/a.pyc"
            )),
            None
        );
    }

    fn item(path: &str, mib: u64) -> Item {
        Item {
            path: path.into(),
            disk_bytes: mib << 20,
            size_bytes: mib << 20,
            size_mb: mib as f64,
            age_days: None,
            depth: Some(path.matches('/').count()),
        }
    }

    #[test]
    fn a_directory_its_one_big_child_explains_is_not_listed_twice() {
        let dirs = vec![
            item("/a", 100),
            item("/a/b", 97),
            item("/c", 60),
            item("/c/d", 30),
            item("/c/e", 29),
            item("/ab", 10),
        ];
        let kept: Vec<String> = most_specific(dirs, 10)
            .into_iter()
            .map(|d| d.path)
            .collect();
        assert_eq!(kept, vec!["/a/b", "/c", "/c/d", "/c/e", "/ab"]);
    }

    #[test]
    fn roots_confine_paths_even_through_symlinks() {
        let allowed = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let link = allowed.path().join("escape");
        std::os::unix::fs::symlink(outside.path(), &link).unwrap();
        let roots = vec![allowed.path().to_path_buf()];
        assert!(resolve_under_roots(allowed.path().to_str().unwrap(), &roots).is_ok());
        for bad in [
            link.to_str().unwrap(),
            outside.path().to_str().unwrap(),
            "/etc",
            "relative/path",
        ] {
            let err = resolve_under_roots(bad, &roots).unwrap_err();
            assert_eq!(err.kind(), tocsin_core::ErrorKind::InvalidInput, "{bad}");
        }
        let err = resolve_under_roots("/", &[]).unwrap_err();
        assert!(err.message().contains("TOCSIN_ANALYZE_ROOTS"), "{err}");
    }
}

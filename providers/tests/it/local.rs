//! The local provider against real evidence: a process holding memory, a process burning CPU, a
//! tree of large and old files compared with `du`.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use tocsin_core::ErrorKind;
use tocsin_core::domain::{Priority, RecommendationType};
use tocsin_core::plugin::{AnalysisInput, Provider};
use tocsin_providers::local::{LocalConfig, LocalProvider, disk};

use crate::helpers::{Helper, vm_rss};

const MIB: u64 = 1024 * 1024;

fn provider(config: Value) -> LocalProvider {
    LocalProvider::new(LocalConfig::from_value(&config).unwrap())
}

fn input(options: Value) -> AnalysisInput {
    AnalysisInput {
        incident: None,
        alerts: vec![],
        checks: vec![],
        options,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_holding_200_mb_is_named_in_the_memory_recommendation() {
    let hog = Helper::start("hog:200");
    let pid = hog.pid();
    let out = provider(json!({}))
        .analyze(&input(json!({"analyses": ["memory"], "top_n": 100})))
        .await
        .unwrap();
    assert_eq!(out.recommendations.len(), 1);
    let rec = &out.recommendations[0];
    assert_eq!(rec.kind, RecommendationType::Memory);
    let procs = rec.details["top_processes"].as_array().unwrap();
    let entry = procs
        .iter()
        .find(|p| p["pid"] == json!(pid))
        .unwrap_or_else(|| panic!("PID {pid} not among the top processes: {procs:#?}"));

    // The figure is a measurement: it matches what the kernel reports for that PID (`ps -o rss`).
    let measured = entry["memory_bytes"].as_u64().unwrap();
    let kernel = vm_rss(pid);
    assert!(
        measured >= 200 * MIB,
        "the hog holds at least 200 MiB, reported {measured}"
    );
    let diff = measured.abs_diff(kernel);
    assert!(diff < 8 * MIB, "reported {measured} vs VmRSS {kernel}");
    let exe = std::env::current_exe().unwrap();
    let exe_name = exe.file_name().unwrap().to_string_lossy();
    let name = entry["name"].as_str().unwrap();
    assert!(
        !name.is_empty() && exe_name.starts_with(name),
        "name {name:?} vs executable {exe_name:?}"
    );
    assert!(
        entry["cmdline"].as_str().unwrap().contains("helper_main"),
        "{entry}"
    );
    let share = entry["memory_percent"].as_f64().unwrap();
    let total = rec.details["memory"]["total_bytes"].as_u64().unwrap();
    assert!((share - measured as f64 * 100.0 / total as f64).abs() < 0.01);

    // Sorted by resident memory, largest first, and the priority follows system RAM use.
    let sizes: Vec<u64> = procs
        .iter()
        .map(|p| p["memory_bytes"].as_u64().unwrap())
        .collect();
    assert!(sizes.windows(2).all(|w| w[0] >= w[1]));
    let used = rec.details["memory"]["used_percent"].as_f64().unwrap();
    let expected = if used > 90.0 {
        Priority::Critical
    } else if used > 80.0 {
        Priority::High
    } else if used > 70.0 {
        Priority::Medium
    } else {
        Priority::Low
    };
    assert_eq!(rec.priority, expected);
    assert!(!rec.actions.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_process_is_named_in_the_cpu_recommendation() {
    let spinner = Helper::start("spin");
    let pid = spinner.pid();
    // sysinfo skips a process whose CPU time was still zero at the first sample (a process younger
    // than one clock tick): give the spinner a moment to accumulate some.
    std::thread::sleep(Duration::from_millis(300));
    let out = provider(json!({"cpu_window_ms": 1500}))
        .analyze(&input(json!({"analyses": ["cpu"], "top_n": 100})))
        .await
        .unwrap();
    let rec = &out.recommendations[0];
    assert_eq!(rec.kind, RecommendationType::Cpu);
    let procs = rec.details["top_processes"].as_array().unwrap();
    let entry = procs
        .iter()
        .find(|p| p["pid"] == json!(pid))
        .unwrap_or_else(|| panic!("{pid} not in {procs:#?}"));
    // Two cores shared with compilers: the spinner gets a good part of one, not necessarily all.
    assert!(entry["cpu_percent"].as_f64().unwrap() > 20.0, "{entry}");
    assert!(rec.details["window_ms"].as_u64().unwrap() >= 1500);
    assert!(rec.details["load_avg"]["one"].as_f64().is_some());
    assert_eq!(
        rec.details["cpu_count"].as_u64().unwrap() as usize,
        std::thread::available_parallelism().unwrap().get()
    );
}

fn write_file(path: &Path, bytes: u64, age_days: Option<u64>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut f = File::create(path).unwrap();
    let chunk = vec![0xa5u8; MIB as usize];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(MIB);
        f.write_all(&chunk[..n as usize]).unwrap();
        left -= n;
    }
    f.sync_all().unwrap();
    if let Some(days) = age_days {
        f.set_modified(SystemTime::now() - Duration::from_secs(days * 86_400))
            .unwrap();
    }
}

/// `du -sk` of a folder, in bytes: the reference the scan must match.
fn du_bytes(path: &Path) -> u64 {
    let out = std::process::Command::new("du")
        .args(["-skx"])
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.split_whitespace()
        .next()
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_and_old_files_appear_in_the_disk_recommendation_with_their_sizes_and_ages() {
    // Not under /tmp: everything there is a temp file by definition.
    let dir = tempfile::Builder::new()
        .prefix("scan-fixture-")
        .tempdir_in(env!("CARGO_MANIFEST_DIR"))
        .unwrap();
    let root = dir.path();
    write_file(&root.join("big/data.bin"), 12 * MIB, None);
    write_file(&root.join("big/nested/deep.bin"), 6 * MIB, None);
    write_file(&root.join("srv/logs/app.log.1"), 2 * MIB, Some(40));
    write_file(
        &root.join("home/.cache/pip/blob"),
        MIB + 512 * 1024,
        Some(90),
    );
    write_file(&root.join("srv/logs/current.log"), MIB, None);
    write_file(&root.join("srv/report.pdf"), MIB, Some(400));
    std::os::unix::fs::symlink("/usr", root.join("usr-link")).unwrap();

    let provider = provider(json!({"roots": [root]}));
    let out = provider
        .analyze(&input(
            json!({"analyses": ["disk"], "path": root, "threshold_mb": 5, "old_days": 30}),
        ))
        .await
        .unwrap();
    assert_eq!(out.recommendations.len(), 2, "{:#?}", out.recommendations);
    let large = &out.recommendations[0];
    assert_eq!(large.kind, RecommendationType::Disk);
    let canon = root.canonicalize().unwrap();
    let files = large.details["largest_files"].as_array().unwrap();
    let names: Vec<&str> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        vec![
            canon.join("big/data.bin").to_str().unwrap(),
            canon.join("big/nested/deep.bin").to_str().unwrap()
        ]
    );
    assert_eq!(files[0]["size_bytes"], json!(12 * MIB));
    let disk0 = files[0]["disk_bytes"].as_u64().unwrap();
    assert!(
        (12 * MIB..12 * MIB + 256 * 1024).contains(&disk0),
        "{disk0}"
    );
    assert_eq!(files[0]["size_mb"].as_f64().unwrap().round(), 12.0);
    assert!(files[0]["age_days"].as_f64().unwrap() < 0.1);
    let dirs = large.details["largest_dirs"].as_array().unwrap();
    assert_eq!(dirs[0]["path"], json!(canon.join("big").to_str().unwrap()));
    assert_eq!(
        dirs[0]["disk_bytes"].as_u64().unwrap(),
        du_bytes(&root.join("big")),
        "big/ matches du"
    );
    assert!(
        dirs.iter()
            .any(|d| d["path"] == json!(canon.join("big/nested").to_str().unwrap()))
    );
    assert!(large.title.contains("data.bin"), "{}", large.title);

    let scan = &large.details["scan"];
    assert_eq!(scan["complete"], json!(true));
    assert_eq!(
        scan["symlinks_skipped"],
        json!(1),
        "the link to /usr is not followed"
    );
    assert_eq!(
        scan["total_disk_bytes"].as_u64().unwrap(),
        du_bytes(root),
        "the total matches du -skx"
    );
    assert_eq!(scan["files_scanned"], json!(6));

    let old = &out.recommendations[1];
    let olds = old.details["old_files"].as_array().unwrap();
    let by_path = |suffix: &str| {
        olds.iter()
            .find(|f| f["path"].as_str().unwrap().ends_with(suffix))
            .cloned()
    };
    let log = by_path("srv/logs/app.log.1").expect("old log listed");
    assert_eq!(log["kind"], "log");
    assert_eq!(log["size_bytes"], json!(2 * MIB));
    assert!(
        (log["age_days"].as_f64().unwrap() - 40.0).abs() <= 0.1,
        "{log}"
    );
    let cache = by_path("home/.cache/pip/blob").expect("old cache file listed");
    assert_eq!(cache["kind"], "cache");
    assert_eq!(cache["size_bytes"], json!(MIB + 512 * 1024));
    assert!(
        (cache["age_days"].as_f64().unwrap() - 90.0).abs() <= 0.1,
        "{cache}"
    );
    assert!(by_path("current.log").is_none(), "a fresh log is not old");
    // An old document is not a log, temp or cache file (unless the checkout itself lies under a
    // folder such as /tmp, where everything is temporary by definition).
    let leftovers = if disk::classify(&canon.join("srv/report.pdf")).is_none() {
        assert!(by_path("report.pdf").is_none(), "{olds:#?}");
        2
    } else {
        3
    };
    assert_eq!(old.details["totals"]["count"], json!(leftovers));
    assert!(
        old.title.starts_with(&format!(
            "{leftovers} log, temp and cache files older than 30 days"
        )),
        "{}",
        old.title
    );
}

#[tokio::test]
async fn paths_outside_the_roots_are_refused() {
    let allowed = tempfile::tempdir().unwrap();
    let p = provider(json!({"roots": [allowed.path()]}));
    let err = p
        .analyze(&input(json!({"analyses": ["disk"], "path": "/etc"})))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(
        err.message().contains("outside the allowed scan roots"),
        "{err}"
    );
    let err = provider(json!({}))
        .analyze(&input(json!({"analyses": ["disk"]})))
        .await
        .unwrap_err();
    assert!(err.message().contains("TOCSIN_ANALYZE_ROOTS"), "{err}");
}

#[test]
fn a_scan_past_its_deadline_reports_partial_results_and_unreadable_paths_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..20 {
        write_file(&dir.path().join(format!("d{i}/f")), 4096, None);
    }
    let params = |deadline| disk::ScanParams {
        root: dir.path().to_path_buf(),
        threshold_bytes: MIB,
        old_after: Duration::from_secs(86_400),
        top_n: 10,
        max_depth: 3,
        deadline,
        workers: 4,
    };
    let r = disk::scan(&params(std::time::Instant::now())).unwrap();
    assert!(!r.complete, "a deadline in the past stops the walk");
    let r = disk::scan(&params(std::time::Instant::now() + Duration::from_secs(30))).unwrap();
    assert!(r.complete);
    assert_eq!(r.files_scanned, 20);
    assert_eq!(r.dirs_scanned, 21);

    // A folder we may not read is reported, not fatal (root reads everything, so only then).
    let locked = dir.path().join("d3");
    std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    let privileged = std::fs::read_dir(&locked).is_ok();
    let r = disk::scan(&params(std::time::Instant::now() + Duration::from_secs(30))).unwrap();
    std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    if !privileged {
        assert_eq!(r.unreadable_count, 1);
        assert!(r.unreadable[0].path.ends_with("d3"), "{:?}", r.unreadable);
        assert!(r.complete);
    }
}

#[test]
fn filesystem_use_matches_df() {
    let fs = tocsin_providers::local::filesystems();
    let root = fs
        .iter()
        .find(|f| f.mount_point == "/")
        .expect("/ is mounted");
    let out = std::process::Command::new("df")
        .args(["-Pk", "/"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let cols: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
    let (size, used, avail) = (
        cols[1].parse::<u64>().unwrap() * 1024,
        cols[2].parse::<u64>().unwrap() * 1024,
        cols[3].parse::<u64>().unwrap() * 1024,
    );
    let pct: f64 = cols[4].trim_end_matches('%').parse().unwrap();
    assert_eq!(root.total_bytes, size);
    // Other processes write meanwhile: allow 256 MiB of drift.
    assert!(
        root.used_bytes.abs_diff(used) < 256 * MIB,
        "{} vs df {used}",
        root.used_bytes
    );
    assert!(
        root.available_bytes.abs_diff(avail) < 256 * MIB,
        "{} vs df {avail}",
        root.available_bytes
    );
    // df rounds its percentage up.
    assert!(
        (pct - root.used_percent).abs() <= 1.0,
        "{} vs df {pct}%",
        root.used_percent
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mountpoint_this_host_lacks_falls_back_to_the_first_root_or_to_usage_figures() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = crate::openai::incident_input(json!({}));
    input.alerts.truncate(1);
    input.alerts[0].labels = [("checker", "disk"), ("mountpoint", "/no/such/mount")]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();

    let out = provider(json!({"roots": [dir.path()]}))
        .analyze(&input)
        .await
        .unwrap();
    let rec = &out.recommendations[0];
    assert_eq!(rec.kind, RecommendationType::Disk);
    assert_eq!(
        rec.details["path"],
        json!(dir.path().canonicalize().unwrap())
    );
    let why = rec.details["why"].to_string();
    assert!(
        why.contains("/no/such/mount") && why.contains("instead"),
        "{why}"
    );

    // No roots at all: the filesystem's figures, no walk, no error.
    let out = provider(json!({})).analyze(&input).await.unwrap();
    let rec = &out.recommendations[0];
    assert_eq!(rec.details["filesystem"]["mount_point"], "/");
    assert!(rec.details.get("scan").is_none());
    assert!(
        rec.description.contains("not scanned"),
        "{}",
        rec.description
    );
}

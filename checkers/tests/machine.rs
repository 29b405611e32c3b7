//! The checkers against the real machine, and the library API against real databases.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::process::{Child, Command};
use std::time::Duration;

use serde_json::{Value, json};
use tocsin_checkers::{self as checkers, CheckRequest};
use tocsin_core::domain::{CheckResult, CheckStatus};
use tocsin_core::plugin::{Plugins, StageContext};
use tocsin_core::{Config, Tocsin, store};

fn run_one(name: &str, options: Value) -> CheckResult {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let req = CheckRequest::new(&[name.to_owned()], &json!({ name: options }));
        let mut results = checkers::check_only(
            &Plugins::from_inventory(),
            &Config::default(),
            &Default::default(),
            &req,
        )
        .await
        .unwrap();
        assert_eq!(results.len(), 1);
        results.remove(0)
    })
}

fn meminfo() -> BTreeMap<String, u64> {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            let kib: u64 = v.trim().trim_end_matches("kB").trim().parse().ok()?;
            Some((k.to_owned(), kib * 1024))
        })
        .collect()
}

fn within_one_percent(ours: f64, theirs: f64, what: &str) {
    let diff = (ours - theirs).abs();
    assert!(
        diff <= theirs.abs() * 0.01 + f64::EPSILON,
        "{what}: ours {ours}, reference {theirs}"
    );
}

#[test]
fn memory_agrees_with_proc_meminfo() {
    let r = run_one("memory", json!({"include_swap": true}));
    assert_ne!(r.status, CheckStatus::Unknown, "{r:?}");
    let m = meminfo();
    let (total, available) = (m["MemTotal"] as f64, m["MemAvailable"] as f64);
    within_one_percent(r.metrics["total_bytes"].as_f64().unwrap(), total, "total");
    within_one_percent(
        r.metrics["available_bytes"].as_f64().unwrap(),
        available,
        "available",
    );
    within_one_percent(
        r.metrics["used_bytes"].as_f64().unwrap(),
        total - available,
        "used = total - MemAvailable",
    );
    let pct = (total - available) / total * 100.0;
    assert!(
        (r.metrics["percent"].as_f64().unwrap() - pct).abs() <= 1.0,
        "{r:?} vs {pct}"
    );
    within_one_percent(
        r.metrics["swap"]["total_bytes"].as_f64().unwrap(),
        m["SwapTotal"] as f64,
        "swap total",
    );
}

/// statvfs figures as coreutils `stat -f` prints them: blocks, free, available, fragment size,
/// inodes, free inodes.
fn stat_f(path: &str) -> [f64; 6] {
    let out = Command::new("stat")
        .args(["-f", "-c", "%b %f %a %S %c %d", path])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: Vec<f64> = String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    [v[0], v[1], v[2], v[3], v[4], v[5]]
}

#[test]
fn disk_agrees_with_statvfs_and_an_unreadable_path_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    // Both hold for root too: nothing exists at the first, and a file is no directory.
    let missing = "/tocsin-test-no-such-path/at-all".to_owned();
    let under_file = format!("{}/sub", file.display());
    let r = run_one("disk", json!({"paths": ["/", missing, under_file]}));
    let [blocks, bfree, bavail, frsize, files, ffree] = stat_f("/");
    let root = &r.metrics["paths"]["/"];
    within_one_percent(
        root["total_bytes"].as_f64().unwrap(),
        blocks * frsize,
        "total",
    );
    within_one_percent(
        root["free_bytes"].as_f64().unwrap(),
        bavail * frsize,
        "free",
    );
    within_one_percent(
        root["used_bytes"].as_f64().unwrap(),
        (blocks - bfree) * frsize,
        "used",
    );
    let pct = (blocks - bfree) / ((blocks - bfree) + bavail) * 100.0;
    assert!(
        (root["percent"].as_f64().unwrap() - pct).abs() <= 1.0,
        "{root} vs {pct}"
    );
    if files > 0.0 {
        let ipct = (files - ffree) / files * 100.0;
        assert!(
            (root["inodes_percent"].as_f64().unwrap() - ipct).abs() <= 1.0,
            "{root} vs {ipct}"
        );
    }

    // The unreadable paths: unknown (unless / itself is critical), each named.
    if root["status"] != "critical" {
        assert_eq!(r.status, CheckStatus::Unknown, "{r:?}");
    }
    assert!(
        r.message.contains(&missing) && r.message.contains(&under_file),
        "{}",
        r.message
    );
    assert_eq!(r.metrics["paths"][&missing]["status"], "unknown");
    assert!(
        r.metrics["paths"][&under_file]["error"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("not a directory"),
        "{r:?}"
    );
    assert!(r.error.as_deref().unwrap().contains(&missing), "{r:?}");
}

/// A `sleep` under a name of our own, longer than the kernel's 15-byte `comm`.
struct Sleeper {
    child: Child,
    name: String,
    _dir: tempfile::TempDir,
}

impl Sleeper {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let name = format!("tocsin-probe-{}", std::process::id());
        let exe = dir.path().join(&name);
        let sleep = ["/bin/sleep", "/usr/bin/sleep"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap();
        // A symlink (not a copy) so a noexec temporary folder does not matter: the kernel names
        // the process after the link, and argv[0] is the link.
        std::os::unix::fs::symlink(sleep, &exe).unwrap();
        let child = Command::new(&exe).arg("30").spawn().unwrap();
        // Until exec completes, /proc shows the test binary's name: wait for the new one.
        let comm = format!("/proc/{}/comm", child.id());
        for _ in 0..500 {
            if std::fs::read_to_string(&comm).is_ok_and(|c| c.starts_with("tocsin-probe")) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Self {
            child,
            name,
            _dir: dir,
        }
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_process_started_by_the_test_is_found_by_name_and_a_missing_one_is_not() {
    let sleeper = Sleeper::start();
    let prefix = "tocsin-probe"; // a substring of the name: must not match
    let glob = "TOCSIN-PROBE-*".to_owned();
    let r = run_one(
        "process",
        json!({"names": [sleeper.name, "tocsin-no-such-process", prefix, glob]}),
    );
    let procs = &r.metrics["processes"];
    assert_eq!(procs[&sleeper.name]["running"], true, "{r:?}");
    assert_eq!(
        procs[&sleeper.name]["pids"],
        json!([sleeper.child.id()]),
        "{r:?}"
    );
    assert!(
        procs[&sleeper.name]["memory_bytes"].as_u64().unwrap() > 0,
        "{r:?}"
    );
    assert!(procs[&sleeper.name]["cpu_percent"].is_number(), "{r:?}");
    assert_eq!(procs["tocsin-no-such-process"]["running"], false);
    assert_eq!(
        procs[prefix]["running"], false,
        "never a substring match: {r:?}"
    );
    assert_eq!(
        procs[&glob]["pids"],
        json!([sleeper.child.id()]),
        "glob, case-insensitive: {r:?}"
    );
    assert_eq!(r.metrics["running_count"], 2);
    assert_eq!(
        r.status,
        CheckStatus::Warning,
        "2 of 4 is 50 %, not below the critical 50"
    );
    assert!(
        r.message
            .contains("Missing: tocsin-no-such-process, tocsin-probe"),
        "{}",
        r.message
    );
}

#[test]
fn a_listener_on_loopback_is_reachable_and_a_closed_port_is_not() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap().to_string();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let r = run_one("network", json!({"hosts": [open, closed], "timeout": 2}));
    assert_eq!(r.metrics["hosts"][&open]["reachable"], true, "{r:?}");
    assert_eq!(r.metrics["hosts"][&closed]["reachable"], false, "{r:?}");
    assert_eq!(r.metrics["reachable_percent"], 50.0);
    let r = run_one("network", json!({"hosts": [open]}));
    assert_eq!(r.status, CheckStatus::Ok, "{r:?}");
    drop(listener);
}

#[test]
fn every_default_checker_runs_with_default_options() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // The network defaults reach out to public resolvers; keep this test local.
        let options = json!({"network": {"hosts": ["127.0.0.1"]}});
        let results = checkers::check_only(
            &Plugins::from_inventory(),
            &Config::default(),
            &Default::default(),
            &CheckRequest::new(&[], &options),
        )
        .await
        .unwrap();
        let names: Vec<&str> = results.iter().map(|r| r.checker.as_str()).collect();
        assert_eq!(names, ["cpu", "disk", "memory", "network", "process"]);
        for r in &results {
            assert!(!r.skipped);
            assert!(r.duration_ms >= 0.0);
            assert!(!r.message.is_empty(), "{r:?}");
            if r.checker != "network" {
                assert_ne!(r.status, CheckStatus::Unknown, "{r:?}");
            }
        }
    });
}

fn tocsin(db: &store::testing::TestDb, config: Config) -> Tocsin {
    Tocsin::new(db.store.clone(), Plugins::from_inventory(), config)
}

#[tokio::test(flavor = "multi_thread")]
async fn run_checks_records_a_check_run_per_executed_checker_and_honours_skips() {
    for db in store::testing::all().await {
        let config = Config {
            checkers_skip: vec!["cpu".into(), "Process".into()],
            ..Config::default()
        };
        let t = tocsin(&db, config);
        let names: Vec<String> = ["cpu", "memory", "disk", "process"]
            .map(String::from)
            .to_vec();
        let results = checkers::run_checks(
            &t,
            &names,
            &json!({"disk": {"paths": ["/"]}}),
            "trace-1",
            Some("run-1"),
        )
        .await
        .unwrap();
        let by_name: BTreeMap<_, _> = results.iter().map(|r| (r.checker.as_str(), r)).collect();
        assert!(
            by_name["cpu"].skipped && by_name["process"].skipped,
            "{}: {results:?}",
            db.label
        );
        assert_eq!(
            by_name["cpu"].status,
            CheckStatus::Unknown,
            "skipped is not ok"
        );
        assert!(
            by_name["cpu"].message.contains("CHECKERS_SKIP"),
            "{:?}",
            by_name["cpu"]
        );
        assert!(!by_name["memory"].skipped && !by_name["disk"].skipped);
        assert_eq!(checkers::summarize(&results).skipped, 2);

        let runs = db
            .store
            .run(|c| store::list_check_runs(c, None, 50))
            .await
            .unwrap();
        let mut stored: Vec<&str> = runs.iter().map(|r| r.checker_name.as_str()).collect();
        stored.sort_unstable();
        assert_eq!(
            stored,
            ["disk", "memory"],
            "{}: one CheckRun per executed checker, none for skipped",
            db.label
        );
        let mem = runs.iter().find(|r| r.checker_name == "memory").unwrap();
        assert_eq!(mem.trace_id, "trace-1");
        assert_eq!(mem.run_id.as_deref(), Some("run-1"));
        assert_eq!(mem.hostname, t.hostname());
        assert_eq!(mem.warning_threshold, Some(70.0));
        assert_eq!(mem.critical_threshold, Some(90.0));
        assert_eq!(mem.metrics, by_name["memory"].metrics);
        assert_eq!(mem.status, by_name["memory"].status);

        let all = Config {
            checkers_skip_all: true,
            ..Config::default()
        };
        let results = checkers::run_checks(&tocsin(&db, all), &[], &Value::Null, "trace-2", None)
            .await
            .unwrap();
        assert_eq!(results.len(), 5);
        assert!(
            results.iter().all(|r| r.skipped),
            "{}: CHECKERS_SKIP_ALL",
            db.label
        );
        let runs = db
            .store
            .run(|c| store::list_check_runs(c, None, 50))
            .await
            .unwrap();
        assert_eq!(
            runs.len(),
            2,
            "{}: skipped checkers write nothing",
            db.label
        );
    }
}

#[tokio::test]
async fn unknown_checkers_and_bad_options_are_errors_that_say_what_is_wrong() {
    let db = store::testing::sqlite().await;
    let t = tocsin(&db, Config::default());
    let err = checkers::run_checks(&t, &["dsk".into()], &Value::Null, "t", None)
        .await
        .unwrap_err();
    assert!(
        err.message().contains("\"dsk\"")
            && err
                .message()
                .contains("cpu, disk, memory, network, process"),
        "{err}"
    );
    let err = checkers::run_checks(
        &t,
        &["disk".into()],
        &json!({"disk": {"paths": "/"}}),
        "t",
        None,
    )
    .await
    .unwrap_err();
    assert!(err.message().contains("disk options"), "{err}");
    let err = checkers::run_checks(&t, &[], &json!({"dsk": {}}), "t", None)
        .await
        .unwrap_err();
    assert!(err.message().contains("dsk"), "{err}");
    let runs = db
        .store
        .run(|c| store::list_check_runs(c, None, 50))
        .await
        .unwrap();
    assert!(runs.is_empty(), "nothing runs when the request is wrong");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_context_stage_puts_checks_into_the_run_state() {
    for db in store::testing::all().await {
        let t = tocsin(
            &db,
            Config {
                checkers_skip: vec!["disk".into()],
                ..Config::default()
            },
        );
        let descriptor = t.plugins().stages.get("context").unwrap();
        let stage = (descriptor.build)(
            &json!({"include": ["memory", "disk"], "options": {"memory": {"include_swap": true}}}),
            &t.build_context(),
        )
        .unwrap();
        let ctx = StageContext::new(
            t.clone(),
            "run-9".into(),
            "trace-9".into(),
            "checks".into(),
            1,
            json!({}),
            json!({}),
        );
        let out = stage.execute(&ctx).await.unwrap();
        let checks: Vec<CheckResult> = serde_json::from_value(out["checks"].clone()).unwrap();
        assert_eq!(checks.len(), 2);
        assert_eq!(checks[0].checker, "memory");
        assert!(checks[0].metrics.get("swap").is_some());
        assert!(checks[1].skipped);
        assert_eq!(out["summary"]["skipped"], 1);
        let runs = db
            .store
            .run(|c| store::list_check_runs(c, None, 50))
            .await
            .unwrap();
        assert_eq!(runs.len(), 1, "{}", db.label);
        assert_eq!(runs[0].run_id.as_deref(), Some("run-9"));

        let bad = (descriptor.build)(&json!({"include": ["nope"]}), &t.build_context()).unwrap();
        let err = bad.execute(&ctx).await.unwrap_err();
        assert!(
            !err.is_temporary(),
            "an unknown checker will not appear on retry: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cpu_checker_answers_from_a_running_sampler_at_once() {
    let handle = checkers::start_sampler(checkers::SamplerConfig {
        interval: Duration::from_millis(50),
        window: Duration::from_millis(200),
    })
    .unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let window = handle.snapshot().expect("readings after a few intervals");
    assert!(
        !window.readings.is_empty() && window.readings.len() <= 4,
        "{window:?}"
    );
    let req = CheckRequest::new(&["cpu".into()], &Value::Null);
    let started = std::time::Instant::now();
    let r = checkers::check_only(
        &Plugins::from_inventory(),
        &Config::default(),
        &Default::default(),
        &req,
    )
    .await
    .unwrap()
    .remove(0);
    let took = started.elapsed();
    assert_eq!(r.metrics["source"], "sampler", "{r:?}");
    assert!(
        took < Duration::from_millis(50),
        "answered from the window, not by sampling: {took:?}"
    );
    // Asking for explicit sampling measures afresh.
    let req = CheckRequest::new(&["cpu".into()], &json!({"cpu": {"sample_interval": 0.05}}));
    let r = checkers::check_only(
        &Plugins::from_inventory(),
        &Config::default(),
        &Default::default(),
        &req,
    )
    .await
    .unwrap()
    .remove(0);
    assert_eq!(r.metrics["source"], "one_shot");
    handle.stop();
    assert!(
        checkers::sampler::current_window().is_none(),
        "a stopped sampler is not read"
    );
}

#[tokio::test]
async fn discarding_an_incident_detaches_its_alerts_and_drops_its_events() {
    use tocsin_core::domain::{AlertStatus, Labels, Severity};
    for db in store::testing::all().await {
        let (alert_id, incident_id) = db
            .store
            .write(|c| {
                let inc = store::insert_incident(
                    c,
                    store::NewIncident {
                        title: "t".into(),
                        severity: Severity::Warning,
                        description: String::new(),
                        group_key: "k".into(),
                        metadata: json!({}),
                    },
                )?;
                store::add_incident_event(c, inc.id, "opened", "", "open", "system", json!({}))?;
                let a = store::insert_alert(
                    c,
                    store::NewAlert {
                        fingerprint: "fp".into(),
                        source: checkers::ALERT_SOURCE.into(),
                        name: "CPU Check Alert".into(),
                        severity: Severity::Warning,
                        status: AlertStatus::Firing,
                        description: String::new(),
                        labels: Labels::new(),
                        annotations: Labels::new(),
                        raw_payload: json!({}).into(),
                        trace_id: "t".into(),
                        started_at: chrono::Utc::now(),
                        ended_at: None,
                        incident_id: Some(inc.id),
                    },
                )?;
                Ok((a.id, inc.id))
            })
            .await
            .unwrap();
        let detached = db
            .store
            .write(move |c| store::checks::discard_incident(c, incident_id))
            .await
            .unwrap();
        assert_eq!(detached, 1, "{}", db.label);
        let alert = db
            .store
            .run(move |c| store::get_alert(c, alert_id))
            .await
            .unwrap();
        assert_eq!(alert.incident_id, None, "{}", db.label);
        assert!(
            db.store
                .run(move |c| store::get_incident(c, incident_id))
                .await
                .is_err(),
            "{}",
            db.label
        );
        let events = db
            .store
            .run(move |c| store::list_incident_events(c, incident_id))
            .await
            .unwrap();
        assert!(events.is_empty(), "{}", db.label);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduled_checks_run_every_interval_and_hand_alerts_to_the_sink() {
    use tocsin_checkers::{ScheduleConfig, spawn_scheduled_checks};
    for db in store::testing::all().await {
        let t = tocsin(&db, Config::default());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut config = ScheduleConfig::every(Duration::from_millis(100));
        // Thresholds at 0 make disk critical whatever the machine.
        config.request = CheckRequest::new(
            &["disk".into(), "memory".into()],
            &json!({"disk": {"warning_threshold": 0, "critical_threshold": 0}}),
        );
        config.hostname = Some("sched-host".into());
        let scheduled = spawn_scheduled_checks(t.clone(), config, move |_t, alerts, trace| {
            let tx = tx.clone();
            async move {
                tx.send((alerts, trace)).ok();
                Ok(())
            }
        });
        let mut traces = Vec::new();
        for _ in 0..2 {
            let (alerts, trace) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .unwrap()
                .unwrap();
            let disk: Vec<_> = alerts
                .iter()
                .filter(|a| a.labels["checker"] == "disk")
                .collect();
            assert_eq!(disk.len(), 1, "{}: {alerts:?}", db.label);
            assert_eq!(disk[0].labels["hostname"], "sched-host");
            assert_eq!(
                disk[0].fingerprint,
                checkers::alerts::fingerprint("disk", "sched-host")
            );
            traces.push(trace);
        }
        assert_ne!(traces[0], traces[1], "one trace per round");
        scheduled.stop();
        let runs = db
            .store
            .run(|c| store::list_check_runs(c, Some("disk"), 50))
            .await
            .unwrap();
        assert!(
            runs.len() >= 2,
            "{}: each round records its checks",
            db.label
        );
        assert!(runs.iter().any(|r| r.trace_id == traces[0]));
    }
}

//! `check-health`, `run-check` and `check-and-alert` as an operator runs them: exit codes, JSON
//! shapes, skip variables and what lands in the database (SQLite, and PostgreSQL when
//! `TOCSIN_TEST_POSTGRES_URL` is set).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

use serde_json::Value;
use tocsin_core::domain::AlertStatus;
use tocsin_core::store::{self, AlertFilter, IncidentFilter, testing::TestDb};

const ALL: [&str; 5] = ["cpu", "disk", "memory", "network", "process"];

fn tocsin(db_url: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tocsin"));
    for (k, _) in std::env::vars() {
        if k.starts_with("TOCSIN_") || k.starts_with("CHECKERS_") {
            c.env_remove(k);
        }
    }
    c.env("TOCSIN_DATABASE_URL", db_url).env("RUST_LOG", "warn");
    c
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().unwrap();
    let (out, err) = (
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    );
    assert!(!err.contains("panicked"), "{err}");
    if !err.is_empty() {
        // Shown with a failing test's output.
        eprintln!("{:?} stderr: {err}", cmd.get_args().collect::<Vec<_>>());
    }
    (status.code().unwrap(), out, err)
}

fn json_of(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("t.db").display())
}

/// `disk` with thresholds that force a status (usage is above 0 % and below 100 % anywhere).
fn disk(status: &str) -> [&'static str; 5] {
    match status {
        "critical" => [
            "disk",
            "--warning-threshold",
            "0",
            "--critical-threshold",
            "0",
        ],
        "warning" => [
            "disk",
            "--warning-threshold",
            "0",
            "--critical-threshold",
            "100",
        ],
        _ => [
            "disk",
            "--warning-threshold",
            "100",
            "--critical-threshold",
            "100",
        ],
    }
}

#[test]
fn check_health_json_has_the_documented_shape() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(tocsin(&sqlite_url(&dir)).args([
        "check-health",
        "--json",
        "memory",
        "disk",
        "network",
        "process",
        "--ping-hosts",
        "127.0.0.1",
        "--processes",
        "tocsin-no-such-process",
    ]));
    let v = json_of(&out);
    assert!(
        err.contains("Running checkers: memory, disk, network, process"),
        "{err}"
    );
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    for r in results {
        for key in [
            "checker",
            "status",
            "message",
            "metrics",
            "error",
            "duration_ms",
        ] {
            assert!(r.get(key).is_some(), "{key} missing in {r}");
        }
        assert!(
            ["ok", "warning", "critical", "unknown"].contains(&r["status"].as_str().unwrap()),
            "{r}"
        );
        assert!(r["duration_ms"].as_f64().unwrap() >= 0.0);
    }
    assert_eq!(results[0]["checker"], "memory");
    assert!(results[0]["metrics"]["total_bytes"].as_u64().unwrap() > 0);
    assert_eq!(
        results[3]["status"], "critical",
        "the only named process is missing: {}",
        results[3]
    );
    let s = &v["summary"];
    for key in ["total", "ok", "warning", "critical", "unknown", "skipped"] {
        assert!(s[key].is_u64(), "{key} missing in {s}");
    }
    assert_eq!(s["total"], 4);
    assert_eq!(
        s["ok"].as_u64().unwrap()
            + s["warning"].as_u64().unwrap()
            + s["critical"].as_u64().unwrap()
            + s["unknown"].as_u64().unwrap(),
        4
    );
    assert_eq!(code, 2, "a critical check exits 2");
}

#[test]
fn check_health_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    let code = |extra: &[&str], status: &str| {
        run(tocsin(&url)
            .arg("check-health")
            .args(disk(status))
            .args(extra))
        .0
    };
    assert_eq!(code(&[], "ok"), 0);
    assert_eq!(code(&[], "warning"), 0, "a plain warning exits 0");
    assert_eq!(code(&[], "critical"), 2);
    assert_eq!(code(&["--fail-on-warning"], "warning"), 1);
    assert_eq!(code(&["--fail-on-warning"], "critical"), 1);
    assert_eq!(code(&["--fail-on-warning"], "ok"), 0);
    assert_eq!(code(&["--fail-on-critical"], "warning"), 0);
    assert_eq!(code(&["--fail-on-critical"], "critical"), 1);
    // An unreadable path is unknown: exit 1.
    let (c, out, _) = run(tocsin(&url).args([
        "check-health",
        "--json",
        "disk",
        "--disk-paths",
        "/tocsin-no-such-dir",
    ]));
    assert_eq!(json_of(&out)["results"][0]["status"], "unknown");
    assert_eq!(c, 1);
}

#[test]
fn skip_variables_report_skipped_not_ok() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    let (code, out, _) = run(tocsin(&url).env("CHECKERS_SKIP", "memory").args([
        "check-health",
        "--json",
        "memory",
        "disk",
    ]));
    let v = json_of(&out);
    assert_eq!(v["results"][0]["checker"], "memory");
    assert_eq!(v["results"][0]["status"], "skipped");
    assert_eq!(v["results"][0]["skipped"], true);
    assert!(
        v["results"][0]["message"]
            .as_str()
            .unwrap()
            .contains("CHECKERS_SKIP")
    );
    assert_eq!(v["results"][1]["skipped"], false);
    assert_eq!(v["summary"]["skipped"], 1);
    assert_eq!(
        v["summary"]["ok"].as_u64().unwrap()
            + v["summary"]["warning"].as_u64().unwrap()
            + v["summary"]["critical"].as_u64().unwrap(),
        1
    );
    assert!(code <= 2);

    let (code, out, _) = run(tocsin(&url)
        .env("CHECKERS_SKIP_ALL", "1")
        .args(["check-health", "--json"]));
    let v = json_of(&out);
    assert_eq!(v["summary"]["skipped"], 5);
    assert_eq!(v["summary"]["ok"], 0, "skipped is not ok");
    assert!(
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "skipped")
    );
    assert_eq!(code, 0);

    // run-check honours them too.
    let (_, out, _) =
        run(tocsin(&url)
            .env("CHECKERS_SKIP", "cpu")
            .args(["run-check", "cpu", "--json"]));
    assert_eq!(json_of(&out)["status"], "skipped");

    // Text output on a pipe: plain, with the skip shown.
    let (_, out, _) =
        run(tocsin(&url)
            .env("CHECKERS_SKIP", "memory")
            .args(["check-health", "memory", "disk"]));
    assert!(!out.contains('\x1b'), "no colour codes when piped: {out:?}");
    assert!(
        out.contains("SKIPPED") && out.contains("Skipped: 1"),
        "{out}"
    );
    assert!(out.lines().next().unwrap().starts_with("STATUS"), "{out}");
}

#[test]
fn unknown_checkers_are_an_error_listing_the_available_ones() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    for args in [
        vec!["check-health", "dsk"],
        vec!["run-check", "dsk"],
        vec!["check-and-alert", "dsk", "--dry-run"],
    ] {
        let (code, _, err) = run(tocsin(&url).args(&args));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains("\"dsk\"") && err.contains("cpu, disk, memory, network, process"),
            "{args:?}: {err}"
        );
    }
    assert!(
        !dir.path().join("t.db").exists(),
        "a typo opens no database"
    );
}

#[test]
fn list_names_every_checker() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = run(tocsin(&sqlite_url(&dir)).args(["check-health", "--list"]));
    assert_eq!(code, 0);
    for name in ALL {
        assert!(
            out.lines().any(|l| l.starts_with(name)),
            "{name} not listed: {out}"
        );
    }
    let (_, out, _) = run(tocsin(&sqlite_url(&dir)).env("CHECKERS_SKIP", "cpu").args([
        "check-health",
        "--list",
        "--json",
    ]));
    let v = json_of(&out);
    let names: Vec<&str> = v["checkers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ALL);
    assert_eq!(v["checkers"][0]["skipped"], true);
}

#[test]
fn run_check_takes_the_checkers_own_options() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    let (code, out, _) =
        run(tocsin(&url).args(["run-check", "memory", "--include-swap", "--json"]));
    let v = json_of(&out);
    assert_eq!(v["checker"], "memory");
    assert!(v["metrics"]["swap"].is_object(), "{v}");
    assert!(code <= 2);
    let (_, out, _) = run(tocsin(&url).args([
        "run-check",
        "cpu",
        "--samples",
        "2",
        "--sample-interval",
        "0.05",
        "--per-cpu",
        "--json",
    ]));
    let v = json_of(&out);
    assert_eq!(v["metrics"]["samples"], 2);
    assert_eq!(v["metrics"]["per_cpu"], true);
    let (code, out, _) = run(tocsin(&url).args([
        "run-check",
        "disk",
        "--paths",
        "/",
        "/tocsin-no-such-dir",
        "--json",
    ]));
    let v = json_of(&out);
    assert_eq!(v["status"], "unknown");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("/tocsin-no-such-dir")
    );
    assert_eq!(code, 1);
    let (code, out, _) = run(tocsin(&url).args(["run-check", "disk", "--paths", "/"]));
    assert!(
        out.contains("Metrics:") && out.contains("paths./.percent"),
        "{out}"
    );
    assert!(code <= 2);
    let (code, _, err) = run(tocsin(&url).args(["run-check", "cpu", "--paths", "/"]));
    assert_eq!(code, 2);
    assert!(err.contains("--paths applies to the disk checker"), "{err}");
    let (code, _, err) = run(tocsin(&url).args(["run-check", "network", "--hosts", "bad host"]));
    assert_eq!(code, 2);
    assert!(err.contains("bad host"), "{err}");
}

async fn alerts_of(db: &TestDb) -> Vec<tocsin_core::domain::Alert> {
    db.store
        .run(|c| {
            store::list_alerts(
                c,
                &AlertFilter {
                    source: Some("tocsin-checkers".into()),
                    ..Default::default()
                },
            )
        })
        .await
        .unwrap()
}

async fn incident_count(db: &TestDb) -> usize {
    db.store
        .run(|c| store::list_incidents(c, &IncidentFilter::default()))
        .await
        .unwrap()
        .len()
}

async fn check_run_count(db: &TestDb) -> usize {
    db.store
        .run(|c| store::list_check_runs(c, None, 500))
        .await
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread")]
async fn check_health_records_check_runs() {
    for db in store::testing::all().await {
        let (_, out, _) = run(tocsin(&db.url).args(["check-health", "--json", "memory", "disk"]));
        json_of(&out);
        let runs = db
            .store
            .run(|c| store::list_check_runs(c, None, 50))
            .await
            .unwrap();
        let mut names: Vec<&str> = runs.iter().map(|r| r.checker_name.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["disk", "memory"], "{}", db.label);
        assert_eq!(
            runs[0].trace_id, runs[1].trace_id,
            "{}: one trace per command",
            db.label
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn check_and_alert_fires_resolves_and_creates_nothing_for_ok() {
    for db in store::testing::all().await {
        let l = db.label;
        let ca = |status: &str, extra: &[&str]| {
            let mut c = tocsin(&db.url);
            c.args([
                "check-and-alert",
                "--json",
                "--hostname",
                "web-1",
                "--label",
                "env=test",
            ])
            .args(disk(status))
            .args(extra);
            let (code, out, err) = run(&mut c);
            assert_eq!(code, 0, "{l}: {err}");
            json_of(&out)
        };

        // Ok with no alert: nothing is created.
        let v = ca("ok", &[]);
        assert_eq!(v["results"][0]["action"], "nothing", "{l}: {v}");
        assert_eq!(v["alerts"]["created"], 0);
        assert!(alerts_of(&db).await.is_empty(), "{l}");

        // Critical fires one alert (and an incident).
        let v = ca("critical", &[]);
        assert_eq!(v["results"][0]["action"], "create", "{l}: {v}");
        assert_eq!(v["alerts"]["created"], 1);
        assert_eq!(v["incidents"]["created"], 1);
        let alerts = alerts_of(&db).await;
        assert_eq!(alerts.len(), 1, "{l}");
        let a = &alerts[0];
        assert_eq!(
            a.fingerprint,
            tocsin_checkers::alerts::fingerprint("disk", "web-1")
        );
        assert_eq!(a.status, AlertStatus::Firing);
        assert_eq!(a.severity.as_str(), "critical");
        assert_eq!(a.labels["env"], "test");
        assert_eq!(a.labels["hostname"], "web-1");
        assert!(a.incident_id.is_some());
        assert_eq!(v["results"][0]["alert_id"], a.id);

        // Again: the same alert, updated or unchanged, never a second one.
        let v = ca("warning", &[]);
        assert_eq!(v["results"][0]["action"], "update", "{l}: {v}");
        assert_eq!(
            alerts_of(&db).await.len(),
            1,
            "{l}: one alert per checker and host"
        );
        assert_eq!(alerts_of(&db).await[0].severity.as_str(), "warning", "{l}");

        // Ok resolves it.
        let v = ca("ok", &[]);
        assert_eq!(v["results"][0]["action"], "resolve", "{l}: {v}");
        assert_eq!(v["alerts"]["resolved"], 1);
        assert_eq!(alerts_of(&db).await[0].status, AlertStatus::Resolved, "{l}");

        // Ok once more: nothing to do.
        let v = ca("ok", &[]);
        assert_eq!(v["results"][0]["action"], "nothing", "{l}: {v}");
        assert_eq!(v["alerts"]["resolved"], 0);

        // A different host is a different alert.
        let mut c = tocsin(&db.url);
        c.args(["check-and-alert", "--json", "--hostname", "web-2"])
            .args(disk("critical"));
        assert_eq!(run(&mut c).0, 0);
        assert_eq!(alerts_of(&db).await.len(), 2, "{l}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn check_and_alert_dry_run_writes_nothing() {
    for db in store::testing::all().await {
        let l = db.label;
        let runs_before = check_run_count(&db).await;
        let (code, out, err) = run(tocsin(&db.url)
            .args(["check-and-alert", "--dry-run", "--json", "--hostname", "h"])
            .args(disk("critical")));
        assert_eq!(code, 0, "{l}: {err}");
        let v = json_of(&out);
        assert_eq!(v["dry_run"], true);
        assert_eq!(
            v["existing_alerts_checked"], true,
            "{l}: the database exists and is read"
        );
        assert_eq!(v["results"][0]["action"], "create");
        assert_eq!(v["results"][0]["would_create_alert"], true);
        assert!(
            v.get("alerts").is_none(),
            "{l}: no ingest outcome in a dry run"
        );
        assert!(alerts_of(&db).await.is_empty(), "{l}");
        assert_eq!(
            check_run_count(&db).await,
            runs_before,
            "{l}: no CheckRun either"
        );

        let (_, out, _) = run(tocsin(&db.url)
            .args(["check-and-alert", "--dry-run", "--hostname", "h"])
            .args(disk("critical")));
        assert!(
            out.contains("Dry run") && out.contains("would create alert"),
            "{out}"
        );
    }
    // With no database at all: still works, creates no file.
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = run(tocsin(&sqlite_url(&dir))
        .args(["check-and-alert", "--dry-run"])
        .args(disk("ok")));
    assert_eq!(code, 0);
    assert!(
        out.contains("would resolve the alert if one is firing"),
        "{out}"
    );
    assert!(!dir.path().join("t.db").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn check_and_alert_no_incidents_and_skips() {
    for db in store::testing::all().await {
        let l = db.label;
        let (code, out, err) = run(tocsin(&db.url)
            .args([
                "check-and-alert",
                "--json",
                "--no-incidents",
                "--hostname",
                "h",
            ])
            .args(disk("critical")));
        assert_eq!(code, 0, "{l}: {err}");
        let v = json_of(&out);
        assert_eq!(v["alerts"]["created"], 1, "{l}: {v}");
        assert_eq!(v["incidents"]["created"], 0);
        let alerts = alerts_of(&db).await;
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].incident_id, None, "{l}: --no-incidents");
        assert_eq!(incident_count(&db).await, 0, "{l}");

        // Skipped checkers make no alert unless --include-skipped.
        let (_, out, _) = run(tocsin(&db.url)
            .env("CHECKERS_SKIP", "disk")
            .args(["check-and-alert", "--json", "--hostname", "other"])
            .args(disk("critical")));
        let v = json_of(&out);
        assert_eq!(v["results"][0]["status"], "skipped", "{l}: {v}");
        assert_eq!(v["results"][0]["action"], "nothing");
        assert_eq!(alerts_of(&db).await.len(), 1, "{l}");
        let (_, out, _) = run(tocsin(&db.url)
            .env("CHECKERS_SKIP", "disk")
            .args([
                "check-and-alert",
                "--json",
                "--include-skipped",
                "--hostname",
                "other",
            ])
            .args(disk("critical")));
        let v = json_of(&out);
        assert_eq!(v["results"][0]["status"], "critical", "{l}: {v}");
        assert_eq!(v["alerts"]["created"], 1);
        assert_eq!(alerts_of(&db).await.len(), 2, "{l}");

        let (code, _, err) = run(tocsin(&db.url)
            .args(["check-and-alert", "--label", "oops"])
            .args(disk("ok")));
        assert_eq!(code, 2);
        assert!(err.contains("KEY=VALUE"), "{err}");
    }
}

#[test]
fn check_health_still_runs_when_the_database_is_down() {
    // Nothing listens on port 1: the checks run, unrecorded, with a warning.
    let (code, out, err) = run(tocsin("postgres://nobody@127.0.0.1:1/none").args([
        "check-health",
        "--json",
        "disk",
        "--warning-threshold",
        "100",
        "--critical-threshold",
        "100",
    ]));
    assert_eq!(json_of(&out)["results"][0]["status"], "ok");
    assert_eq!(code, 0);
    assert!(err.contains("not recorded"), "{err}");
}

#[test]
fn the_table_is_coloured_on_a_terminal() {
    // util-linux `script` gives the command a pseudo-terminal; without it there is nothing to test.
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("no `script` here: skipping the terminal test");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let line = format!("{} check-health memory", env!("CARGO_BIN_EXE_tocsin"));
    let mut c = Command::new("script");
    c.args(["-qec", &line, "/dev/null"])
        .env("TOCSIN_DATABASE_URL", sqlite_url(&dir))
        .env("RUST_LOG", "warn")
        .env_remove("NO_COLOR");
    let (_, out, _) = run(&mut c);
    assert!(out.contains("\x1b["), "colour codes on a terminal: {out:?}");
    let (_, out, _) = run(c.env("NO_COLOR", "1"));
    assert!(!out.contains("\x1b["), "NO_COLOR turns them off: {out:?}");
}

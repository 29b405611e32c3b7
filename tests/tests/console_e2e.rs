//! The web console end to end in headless Chromium: a real tocsin server (the router, engine,
//! webhook hook and workers `tocsin serve` assembles, over a SQLite file) on loopback, driven
//! through the pages an operator uses: log in, see an ingested incident, acknowledge it, write a
//! definition with a mistake, see the mistake beside its node, fix it, execute it and follow the
//! run. Screenshots of each page land in `target/test-artifacts/console/`.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (`tests/setup-browser.sh`); skipped
//! without them unless `TOCSIN_TEST_REQUIRE_BROWSER=1`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tocsin_core::engine::Engine;
use tocsin_core::plugin::Plugins;
use tocsin_core::store::testing::{self, TestDb};
use tocsin_core::{ApiKey, Config, Tocsin};

use crate::browser::{Browser, BrowserError, ready_or_skip};

const KEY: &str = "console-e2e-key-0123456789";
const FIRING: &str =
    include_str!("../../drivers/ingest/fixtures/alertmanager/firing-two-alerts.json");
/// How long any one page may take to show what we wait for.
const WAIT: Duration = Duration::from_secs(10);

/// A tocsin server as `tocsin serve` builds it, on a free loopback port, over a SQLite file in a
/// temporary folder. Its workers stop when it drops.
struct Server {
    base: String,
    stop: tokio::sync::watch::Sender<bool>,
    _db: TestDb,
}

impl Server {
    async fn start() -> Self {
        let db = testing::sqlite().await;
        // Checks are skipped to keep the incident runs fast; the console shows them as skipped.
        let config = Config {
            api_keys: vec![ApiKey::parse(KEY)],
            checkers_skip_all: true,
            ..Config::default()
        };
        let tocsin = Tocsin::new(db.store.clone(), Plugins::from_inventory(), config);
        let engine = Engine::new(tocsin.clone()).with_poll_interval(Duration::from_millis(50));
        let (stop, rx) = tokio::sync::watch::channel(false);
        let _workers = engine.spawn_workers(2, rx);
        let state = tocsin_http::AppState::new(tocsin.clone())
            .with_extension(engine.clone())
            .with_extension(tocsin_ingest::pipeline::hook_factory(tocsin.clone(), None));
        let app = tocsin_http::router(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            base,
            stop,
            _db: db,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// `target/test-artifacts/console/`, created, its path printed past the harness's capture.
fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("test-artifacts").join("console");
    std::fs::create_dir_all(&dir).unwrap();
    let dir = dir.canonicalize().unwrap_or(dir);
    // What a previous failed run left would read as this run's failure.
    for stale in ["failure.png", "failure.html"] {
        let _ = std::fs::remove_file(dir.join(stale));
    }
    let _ = writeln!(
        std::io::stdout(),
        "[tocsin test] console screenshots in {}",
        dir.display()
    );
    dir
}

async fn shot(b: &Browser, dir: &Path, name: &str) {
    b.save_screenshot(&dir.join(format!("{name}.png")))
        .await
        .unwrap_or_else(|e| panic!("screenshot {name}: {e}"));
}

/// The path of a URL (`http://host:port/a/b?x` -> `/a/b`).
fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.find('/').map_or("/", |i| &rest[i..]);
    path.split(['?', '#']).next().unwrap_or(path)
}

/// Replaces the content of an input or textarea with `text`, as a user typing it.
async fn fill(b: &Browser, css: &str, text: &str) -> Result<(), BrowserError> {
    let el = b.wait_for(css, WAIT).await?;
    el.clear().await?;
    el.send_keys(text).await
}

/// Reloads the run page until its status is final (notified or failed); returns it.
async fn follow_run(b: &Browser, timeout: Duration) -> String {
    let start = Instant::now();
    loop {
        let status = b
            .wait_text("#run-status", WAIT, |_| true)
            .await
            .unwrap()
            .trim()
            .to_owned();
        if status == "notified" || status == "failed" {
            return status;
        }
        assert!(
            start.elapsed() < timeout,
            "the run is still {status:?} after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        b.refresh().await.unwrap();
    }
}

/// The definition the operator writes, with `next_of_shape` as the transform's successor.
fn definition(next_of_shape: &str) -> String {
    json!({
        "version": "1",
        "description": "Written in the console by the browser test",
        "nodes": [
            {"id": "ingest", "type": "ingest", "next": "shape"},
            {"id": "shape", "type": "transform",
             "config": {"mapping": {"alertname": "payload.alerts.0.labels.alertname"}},
             "next": next_of_shape},
            {"id": "notify", "type": "notify", "required": false}
        ]
    })
    .to_string()
}

/// An Alertmanager (version 4) body, as the execute form's payload.
const PAYLOAD: &str = r#"{"version": "4", "groupKey": "{}:{alertname=\"ConsoleE2E\"}", "receiver": "tocsin", "status": "firing", "alerts": [{"status": "firing", "labels": {"alertname": "ConsoleE2E", "severity": "warning", "instance": "e2e"}, "annotations": {"summary": "Sent by the browser test"}, "startsAt": "2026-01-01T00:00:00Z", "fingerprint": "console-e2e-1"}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_end_to_end_in_chromium() {
    if !ready_or_skip("console_end_to_end_in_chromium") {
        return;
    }
    let started = Instant::now();
    let dir = artifacts_dir();
    let server = Server::start().await;
    let b = Arc::new(
        Browser::start(Some(&dir.join("chromedriver.log")))
            .await
            .unwrap_or_else(|e| panic!("cannot start headless Chromium: {e}")),
    );
    // The flow runs as its own task so that, when an assertion fails, the page it failed on is
    // still there to be saved (failure.png, failure.html) before the panic goes on.
    let outcome = tokio::spawn(operator_flow(b.clone(), server.base.clone(), dir.clone())).await;
    if let Err(e) = outcome {
        let url = b.current_url().await.unwrap_or_default();
        let _ = b.save_screenshot(&dir.join("failure.png")).await;
        if let Ok(html) = b.source().await {
            let _ = std::fs::write(dir.join("failure.html"), html);
        }
        let _ = writeln!(
            std::io::stderr(),
            "[tocsin test] console end to end failed on {url}; see failure.png and failure.html in {}",
            dir.display()
        );
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("the browser flow did not finish: {e}"),
        }
    }
    if let Ok(b) = Arc::try_unwrap(b) {
        b.quit().await.unwrap();
    }
    drop(server);
    let _ = writeln!(
        std::io::stdout(),
        "[tocsin test] console end to end in Chromium took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// What an operator does, page by page.
async fn operator_flow(b: Arc<Browser>, base: String, dir: PathBuf) {
    let at = |path: &str| format!("{base}{path}");
    // Log in: the console sends a visitor without a session to the login page; a wrong key is
    // refused on the page, the right one lands on the dashboard with a session cookie.
    b.goto(&at("/admin/")).await.unwrap();
    b.wait_for("#login-form", WAIT).await.unwrap();
    assert_eq!(path_of(&b.current_url().await.unwrap()), "/admin/login");
    shot(&b, &dir, "01-login").await;
    fill(&b, "#api_key", "not-the-key").await.unwrap();
    b.find("#login-submit")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let err = b
        .wait_text("#login-error", WAIT, |t| !t.is_empty())
        .await
        .unwrap();
    assert!(err.contains("not valid"), "{err}");
    assert_eq!(b.cookie("tocsin_session").await.unwrap(), None);
    shot(&b, &dir, "02-login-error").await;
    fill(&b, "#api_key", KEY).await.unwrap();
    b.find("#login-submit")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_text("h1", WAIT, |t| t == "Dashboard").await.unwrap();
    assert_eq!(path_of(&b.current_url().await.unwrap()), "/admin/");
    assert!(
        b.cookie("tocsin_session").await.unwrap().is_some(),
        "no session cookie after login"
    );
    for id in [
        "nav-dashboard",
        "nav-incidents",
        "nav-alerts",
        "nav-runs",
        "nav-definitions",
        "nav-channels",
        "nav-checks",
        "nav-analyses",
    ] {
        b.find(&format!("#{id}"))
            .await
            .unwrap_or_else(|e| panic!("#{id}: {e}"));
    }

    // Alertmanager fires two alerts through the webhook (the API, with the key).
    let res = reqwest::Client::new()
        .post(at("/alerts/webhook/alertmanager/"))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(FIRING)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 202);
    let body: Value = res.json().await.unwrap();
    let ids: Vec<i64> = body["incident_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{body}");
    let id = ids[0];

    // The dashboard counts them; the incidents list shows both.
    b.refresh().await.unwrap();
    // One critical (web-1) and one warning (web-2) incident, both open.
    for sev in ["critical", "warning"] {
        b.wait_text(
            &format!("#open-incidents tr[data-severity=\"{sev}\"] td.count"),
            WAIT,
            |t| t == "1",
        )
        .await
        .unwrap();
    }
    shot(&b, &dir, "03-dashboard").await;
    b.find("#nav-incidents")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let row = format!("tr.incident[data-id=\"{id}\"]");
    b.wait_for(&row, WAIT).await.unwrap();
    let rows = b.find_all("#incidents tr.incident").await.unwrap();
    assert_eq!(rows.len(), 2);
    let text = b.find(&row).await.unwrap().text().await.unwrap();
    assert!(text.contains("open"), "{text}");
    shot(&b, &dir, "04-incidents").await;

    // Open the first incident and acknowledge it, then leave a note.
    b.find(&format!("{row} a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_text("#incident-status", WAIT, |t| t == "open")
        .await
        .unwrap();
    let title = b
        .find("#incident-title")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(title.contains("HighMemory"), "{title}");
    assert_eq!(
        path_of(&b.current_url().await.unwrap()),
        format!("/admin/incidents/{id}")
    );
    b.find("#action-acknowledge")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_text("#incident-status", WAIT, |t| t == "acknowledged")
        .await
        .unwrap();
    let flash = b.wait_text("#flash", WAIT, |_| true).await.unwrap();
    assert_eq!(flash, "Incident acknowledged.");
    assert!(
        b.find("#action-acknowledge")
            .await
            .is_err_and(|e| e.is_no_such_element())
    );
    fill(&b, "#note", "Looking at web-1 now.").await.unwrap();
    b.find("#action-note").await.unwrap().click().await.unwrap();
    b.wait_text("#events", WAIT, |t| t.contains("Looking at web-1 now."))
        .await
        .unwrap();
    shot(&b, &dir, "05-incident").await;

    // A new definition whose transform points at a node that does not exist: refused, with the
    // problem beside that node and the text kept.
    b.find("#nav-definitions")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_for("#new-definition", WAIT)
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_for("#definition-form", WAIT).await.unwrap();
    fill(&b, "#definition-name", "console-e2e").await.unwrap();
    fill(&b, "#definition-json", &definition("notifyy"))
        .await
        .unwrap();
    // The editor's "Format JSON" button (console.js) pretty-prints what was typed.
    b.find("#format-json").await.unwrap().click().await.unwrap();
    b.wait_text("#json-status", WAIT, |t| t == "Valid JSON.")
        .await
        .unwrap();
    let typed = b
        .find("#definition-json")
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert!(
        typed.as_str().is_some_and(|t| t.contains("\n  \"nodes\"")),
        "{typed}"
    );
    b.find("#definition-save")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let problem = b
        .wait_text("li.definition-error[data-node=\"shape\"]", WAIT, |_| true)
        .await
        .unwrap();
    assert!(problem.contains("notifyy"), "{problem}");
    // The problem sits inside its node's item of the outline beside the editor.
    let shape = b
        .find("#definition-nodes li.definition-node[data-node=\"shape\"]")
        .await
        .unwrap();
    assert_eq!(
        shape.attr("data-status").await.unwrap().as_deref(),
        Some("error")
    );
    let beside = shape
        .find_all("li.definition-error[data-node=\"shape\"]")
        .await
        .unwrap();
    assert_eq!(beside.len(), 1);
    assert!(beside[0].text().await.unwrap().contains("notifyy"));
    // Every problem is listed at once: `notify` is now unreachable too.
    let mut nodes = Vec::new();
    for li in b.find_all("li.definition-error").await.unwrap() {
        nodes.push(li.attr("data-node").await.unwrap().unwrap_or_default());
    }
    assert!(nodes.iter().any(|n| n == "notify"), "{nodes:?}");
    let kept = b
        .find("#definition-json")
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert!(
        kept.as_str().is_some_and(|t| t.contains("notifyy")),
        "{kept}"
    );
    shot(&b, &dir, "06-definition-error").await;

    // Fixed: saved, and the definition page offers to execute it.
    fill(&b, "#definition-json", &definition("notify"))
        .await
        .unwrap();
    b.find("#definition-save")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let flash = b.wait_text("#flash", WAIT, |_| true).await.unwrap();
    assert_eq!(flash, "Definition created.");
    assert_eq!(
        path_of(&b.current_url().await.unwrap()),
        "/admin/definitions/console-e2e"
    );
    assert!(b.find_all("#definition-errors").await.unwrap().is_empty());
    shot(&b, &dir, "07-definition").await;

    // Execute it with a payload and follow the run to its end.
    fill(&b, "#execute-payload", PAYLOAD).await.unwrap();
    b.find("#action-execute")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let url = b
        .wait_url(WAIT, |u| path_of(u).starts_with("/admin/runs/"))
        .await
        .unwrap();
    let run_id = path_of(&url).trim_start_matches("/admin/runs/").to_owned();
    assert!(!run_id.is_empty());
    let status = follow_run(&b, Duration::from_secs(15)).await;
    let mut timeline = Vec::new();
    for stage in b.find_all("#timeline li.stage").await.unwrap() {
        timeline.push((
            stage.attr("data-node").await.unwrap().unwrap_or_default(),
            stage.attr("data-status").await.unwrap().unwrap_or_default(),
        ));
    }
    shot(&b, &dir, "08-run").await;
    assert_eq!(status, "notified", "timeline: {timeline:?}");
    let ran: Vec<(&str, &str)> = timeline
        .iter()
        .map(|(n, s)| (n.as_str(), s.as_str()))
        .collect();
    assert_eq!(
        ran,
        [
            ("ingest", "succeeded"),
            ("shape", "succeeded"),
            ("notify", "skipped")
        ]
    );
    // No channel is configured, so the optional notify node is skipped, with the reason shown.
    let notify = b
        .find("#timeline li.stage[data-node=\"notify\"]")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(notify.contains("no notification channel"), "{notify}");
    let shape = b
        .find("#timeline li.stage[data-node=\"shape\"] pre.output")
        .await
        .unwrap()
        .prop("textContent")
        .await
        .unwrap();
    assert!(
        shape.as_str().is_some_and(|t| t.contains("ConsoleE2E")),
        "{shape}"
    );

    // Logging out ends the session: the console sends the visitor back to the login page.
    b.find("#logout").await.unwrap().click().await.unwrap();
    b.wait_for("#login-form", WAIT).await.unwrap();
    b.goto(&at("/admin/incidents")).await.unwrap();
    b.wait_for("#login-form", WAIT).await.unwrap();
    assert_eq!(path_of(&b.current_url().await.unwrap()), "/admin/login");
}

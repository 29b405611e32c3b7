//! Durability is not traded for speed (issue 8): `tocsin serve` is killed with SIGKILL in the
//! middle of a distinct-alert load and restarted on the same database; every alert it answered
//! with a 2xx must be stored, with its incident and the run queued for that incident.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use serde_json::json;
use tocsin_core::store::schema::{alerts, incidents, pipeline_runs};
use tocsin_core::store::testing;

/// Concurrent senders, each posting one new alert per request.
const SENDERS: usize = 8;
/// How long the load runs before the kill.
const LOAD_BEFORE_KILL: Duration = Duration::from_millis(2000);

/// A `tocsin serve` process, killed (SIGKILL) when dropped so a failed assertion leaves none
/// behind.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    async fn start(db_url: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_tocsin"))
            .args(["serve", "--workers", "1"])
            .env("TOCSIN_DATABASE_URL", db_url)
            .env("TOCSIN_BIND", format!("127.0.0.1:{port}"))
            .env_remove("TOCSIN_API_KEYS")
            .env_remove("TOCSIN_BROKER_URL")
            .env_remove("TOCSIN_WEBHOOK_DEFINITION")
            .env("CHECKERS_SKIP_ALL", "1")
            .env("NOTIFY_SKIP_ALL", "1")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Self {
            child,
            addr: format!("127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = request(&server.addr, "GET", "/healthz", b"")
                .await
                .is_some_and(|code| (200..300).contains(&code));
            if ok {
                return server;
            }
            assert!(Instant::now() < deadline, "tocsin serve did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no shutdown hook runs, nothing is flushed by the process.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request on its own connection (the test needs no client library): the status
/// code, or `None` when the server cannot be reached or hangs up before answering.
async fn request(addr: &str, method: &str, path: &str, body: &[u8]) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).await.ok()?;
        s.write_all(body).await.ok()?;
        // An answer cut by the kill still counts if its status line arrived: the server had
        // acknowledged the alert by then.
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer).await;
        // "HTTP/1.1 202 Accepted": the code is the second word of the status line.
        std::str::from_utf8(answer.get(9..12)?).ok()?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}

fn webhook(fingerprint: &str) -> serde_json::Value {
    json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"DurabilityAlert\"}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "tocsin",
        "groupLabels": {"alertname": "DurabilityAlert"},
        "commonLabels": {"alertname": "DurabilityAlert", "job": "durability"},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1",
        "alerts": [{
            "status": "firing",
            // A distinct instance: each alert opens its own incident and queues its own run.
            "labels": {"alertname": "DurabilityAlert", "job": "durability",
                       "severity": "warning", "instance": fingerprint},
            "annotations": {"summary": format!("durability alert {fingerprint}")},
            "startsAt": "2026-11-28T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "",
            "fingerprint": fingerprint,
        }],
    })
}

/// Posts new alerts until `stop`; returns the fingerprints answered with a 2xx.
async fn send_until(addr: String, sender: usize, stop: Arc<AtomicBool>) -> Vec<String> {
    let mut acknowledged = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let fingerprint = format!("{sender:04x}{n:012x}");
        n += 1;
        let body = serde_json::to_vec(&webhook(&fingerprint)).unwrap();
        match request(&addr, "POST", "/alerts/webhook/alertmanager/", &body).await {
            Some(code) if (200..300).contains(&code) => acknowledged.push(fingerprint),
            // Refused (shed under load, say): not acknowledged, so nothing is owed for it.
            Some(_) => {}
            // The server is gone (killed): this sender is done.
            None => break,
        }
    }
    acknowledged
}

async fn acknowledged_alerts_survive_a_sigkill(db: &testing::TestDb) {
    let server = Server::start(&db.url).await;
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..SENDERS)
        .map(|i| tokio::spawn(send_until(server.addr.clone(), i, stop.clone())))
        .collect();
    tokio::time::sleep(LOAD_BEFORE_KILL).await;
    // Killed while the senders still post: some requests are in flight when it dies.
    server.kill();
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = BTreeSet::new();
    for s in senders {
        acknowledged.extend(s.await.unwrap());
    }
    assert!(
        acknowledged.len() >= 50,
        "{}: only {} alerts were acknowledged before the kill: the load did not run",
        db.label,
        acknowledged.len()
    );

    // The restarted server recovers the database (and runs its migrations again) first.
    let restarted = Server::start(&db.url).await;

    let (stored, incident_ids, runs_for): (
        BTreeMap<String, Option<i64>>,
        BTreeSet<i64>,
        BTreeSet<i64>,
    ) = db
        .store
        .run(|c| {
            let stored: Vec<(String, Option<i64>)> = alerts::table
                .filter(alerts::source.eq("alertmanager"))
                .select((alerts::fingerprint, alerts::incident_id))
                .load(c)?;
            let incident_ids: Vec<i64> = incidents::table.select(incidents::id).load(c)?;
            let runs_for: Vec<Option<i64>> = pipeline_runs::table
                .select(pipeline_runs::incident_id)
                .load(c)?;
            Ok((
                stored.into_iter().collect(),
                incident_ids.into_iter().collect(),
                runs_for.into_iter().flatten().collect(),
            ))
        })
        .await
        .unwrap();
    drop(restarted);

    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|f| !stored.contains_key(*f))
        .collect();
    assert!(
        lost.is_empty(),
        "{}: {} of {} acknowledged alerts were lost by the SIGKILL, e.g. {:?}",
        db.label,
        lost.len(),
        acknowledged.len(),
        &lost[..lost.len().min(5)]
    );
    for f in &acknowledged {
        let incident = stored[f].unwrap_or_else(|| {
            panic!("{}: stored alert {f} has no incident", db.label);
        });
        assert!(
            incident_ids.contains(&incident),
            "{}: alert {f} names incident {incident}, which is not stored",
            db.label
        );
        assert!(
            runs_for.contains(&incident),
            "{}: incident {incident} (alert {f}) has no pipeline run queued",
            db.label
        );
    }
    println!(
        "[durability] {}: {} alerts acknowledged before the SIGKILL, all stored ({} stored in all)",
        db.label,
        acknowledged.len(),
        stored.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_alert_survives_a_sigkill_under_load() {
    for db in testing::all().await {
        acknowledged_alerts_survive_a_sigkill(&db).await;
    }
}

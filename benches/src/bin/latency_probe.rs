//! Alert-to-notification latency of a running `tocsin serve`: posts Alertmanager v4 alerts to
//! `POST /alerts/webhook/alertmanager/` and times each until the notification that names it
//! reaches a local HTTP sink (the `webhook` notify driver of an `ingest -> notify` definition
//! pointing at this sink). Used by `benches/load/run.sh`; see `docs/performance.md`.
//!
//! ```text
//! latency_probe --tocsin 127.0.0.1:PORT --sink 127.0.0.1:PORT [--samples N | --duration SECS]
//!               [--interval-ms MS] [--timeout SECS] [--prefix P] [--label L] [--out FILE]
//! ```
//! Every probe alert has its own `instance`, so it opens its own incident and gets its own run.
//! Probes start every `--interval-ms` (default 20) whether or not the previous one finished, so a
//! slow pipeline shows as latency, not as fewer samples. Prints one line and writes JSON to `--out`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<Instant>>>>;

struct Args {
    tocsin: SocketAddr,
    sink: SocketAddr,
    samples: usize,
    duration: Option<Duration>,
    interval: Duration,
    timeout: Duration,
    prefix: String,
    label: String,
    out: Option<PathBuf>,
}

fn parse_args() -> Args {
    let mut a = Args {
        tocsin: "127.0.0.1:8000".parse().unwrap(),
        sink: "127.0.0.1:0".parse().unwrap(),
        samples: 200,
        duration: None,
        interval: Duration::from_millis(20),
        timeout: Duration::from_secs(30),
        prefix: "lp".to_owned(),
        label: "idle".to_owned(),
        out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--tocsin" => a.tocsin = value().parse().expect("--tocsin HOST:PORT"),
            "--sink" => a.sink = value().parse().expect("--sink HOST:PORT"),
            "--samples" => a.samples = value().parse().expect("--samples N"),
            "--duration" => {
                a.duration = Some(Duration::from_secs_f64(
                    value().parse().expect("--duration SECS"),
                ));
            }
            "--interval-ms" => {
                a.interval = Duration::from_millis(value().parse().expect("--interval-ms MS"));
            }
            "--timeout" => {
                a.timeout = Duration::from_secs_f64(value().parse().expect("--timeout SECS"));
            }
            "--prefix" => a.prefix = value(),
            "--label" => a.label = value(),
            "--out" => a.out = Some(PathBuf::from(value())),
            other => panic!("unknown argument {other:?} (see the doc comment of latency_probe.rs)"),
        }
    }
    a
}

/// The probe token is `lpt<prefix>x<n>`: the sink finds it in whatever body the driver sends.
fn token(prefix: &str, n: u64) -> String {
    format!("lpt{prefix}x{n}")
}

fn find_tokens(body: &[u8], needle: &[u8]) -> Vec<u64> {
    let mut found = Vec::new();
    let mut i = 0;
    while i + needle.len() <= body.len() {
        if &body[i..i + needle.len()] == needle {
            let digits: Vec<u8> = body[i + needle.len()..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .copied()
                .collect();
            if let Ok(n) = String::from_utf8_lossy(&digits).parse() {
                found.push(n);
            }
            i += needle.len() + digits.len();
        } else {
            i += 1;
        }
    }
    found.sort_unstable();
    found.dedup();
    found
}

async fn sink(
    State((waiters, needle)): State<(Waiters, Arc<Vec<u8>>)>,
    body: Bytes,
) -> &'static str {
    let at = Instant::now();
    for n in find_tokens(&body, &needle) {
        if let Some(tx) = waiters.lock().unwrap().remove(&n) {
            let _ = tx.send(at);
        }
    }
    "ok"
}

/// A fingerprint of the token, so that probes of another phase (another prefix) are new alerts:
/// with the bare sequence number, the load phase re-sent the idle phase's first alerts as updates,
/// which open no incident and start no run.
fn fingerprint(token: &str) -> String {
    // FNV-1a, 64 bits.
    let h = token.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{h:016x}")
}

fn alert_body(token: &str) -> String {
    let now = chrono_like_now();
    json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"LatencyProbe\"}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "tocsin",
        "groupLabels": {"alertname": "LatencyProbe"},
        "commonLabels": {"alertname": "LatencyProbe"},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "LatencyProbe", "instance": token, "probe": token, "severity": "critical"},
            "annotations": {"summary": format!("latency probe {token}")},
            "startsAt": now,
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "",
            "fingerprint": fingerprint(token),
        }]
    })
    .to_string()
}

/// RFC 3339 UTC of now, without a date library.
fn chrono_like_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // days since 1970-01-01 to a civil date (Howard Hinnant's algorithm)
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// One HTTP/1.1 POST on a fresh connection; returns the status code.
async fn post(addr: SocketAddr, body: &str) -> std::io::Result<u16> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let req = format!(
        "POST /alerts/webhook/alertmanager/ HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await?;
    let status = resp
        .get(9..12)
        .and_then(|c| std::str::from_utf8(c).ok())
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok(status)
}

enum Outcome {
    Delivered { total: Duration, ack: Duration },
    TimedOut,
    Rejected,
}

fn pct(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = parse_args();
    let waiters: Waiters = Arc::default();
    let needle = Arc::new(format!("lpt{}x", args.prefix).into_bytes());
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(sink))
        .with_state((waiters.clone(), needle));
    let listener = tokio::net::TcpListener::bind(args.sink)
        .await
        .unwrap_or_else(|e| panic!("cannot listen on {}: {e}", args.sink));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let start = Instant::now();
    let mut tasks = Vec::new();
    let mut n: u64 = 0;
    loop {
        let more = match args.duration {
            Some(d) => start.elapsed() < d,
            None => (n as usize) < args.samples,
        };
        if !more {
            break;
        }
        let (tx, rx) = oneshot::channel();
        waiters.lock().unwrap().insert(n, tx);
        let body = alert_body(&token(&args.prefix, n));
        let (addr, timeout) = (args.tocsin, args.timeout);
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            match post(addr, &body).await {
                Ok(status) if (200..300).contains(&status) => {}
                _ => return Outcome::Rejected,
            }
            let ack = t0.elapsed();
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(at)) => Outcome::Delivered {
                    total: at.saturating_duration_since(t0),
                    ack,
                },
                _ => Outcome::TimedOut,
            }
        }));
        n += 1;
        tokio::time::sleep(args.interval).await;
    }

    let (mut totals, mut acks, mut timeouts, mut rejected) = (Vec::new(), Vec::new(), 0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Outcome::Delivered { total, ack } => {
                totals.push(ms(total));
                acks.push(ms(ack));
            }
            Outcome::TimedOut => timeouts += 1,
            Outcome::Rejected => rejected += 1,
        }
    }
    totals.sort_by(f64::total_cmp);
    acks.sort_by(f64::total_cmp);
    let mean = if totals.is_empty() {
        None
    } else {
        Some(totals.iter().sum::<f64>() / totals.len() as f64)
    };
    let report = json!({
        "label": args.label,
        "sent": n,
        "delivered": totals.len(),
        "timed_out": timeouts,
        "rejected": rejected,
        "timeout_s": args.timeout.as_secs_f64(),
        "p50_ms": pct(&totals, 50.0),
        "p90_ms": pct(&totals, 90.0),
        "p99_ms": pct(&totals, 99.0),
        "max_ms": totals.last(),
        "mean_ms": mean,
        "ack_p50_ms": pct(&acks, 50.0),
        "ack_p99_ms": pct(&acks, 99.0),
    });
    let f = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
    println!(
        "latency probe ({}): {} sent, {} delivered, {} timed out, {} rejected; \
         alert->notification p50 {} ms, p90 {} ms, p99 {} ms (ack p50 {} ms)",
        args.label,
        n,
        totals.len(),
        timeouts,
        rejected,
        f(pct(&totals, 50.0)),
        f(pct(&totals, 90.0)),
        f(pct(&totals, 99.0)),
        f(pct(&acks, 50.0)),
    );
    if let Some(out) = args.out {
        std::fs::write(&out, format!("{report}\n"))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
    }
}

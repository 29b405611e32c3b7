//! INGEST benchmarks.
//!
//! - `ingest/parse/<driver>`: strict body decoding plus the driver's parse of one fixture, in
//!   alerts per second;
//! - `ingest/store/sqlite/*`: parse-free storage of generic alerts on a SQLite file (WAL,
//!   `synchronous=NORMAL`) through `service::ingest_alerts`: one new alert per transaction,
//!   100 new alerts per transaction, and 100 identical re-sends per transaction (deduplicated);
//! - `ingest/webhook/sqlite/alertmanager`: a whole webhook (decode, detect, parse, store) of the
//!   two-alert Alertmanager fixture, re-sent (the common steady state).
//!
//! Run: `cargo bench -p tocsin-benches --bench ingest` (add `-- --quick` for a fast pass).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use tocsin_core::domain::{AlertStatus, Labels, Severity};
use tocsin_core::plugin::{BuildContext, Headers, NormalizedAlert, Plugins};
use tocsin_core::store::testing;
use tocsin_core::{Config, Tocsin};
use tocsin_ingest::service::{self, IngestBody, IngestRequest, WebhookSecrets};

const FIXTURES: &[(&str, &str)] = &[
    ("alertmanager", "alertmanager/firing-two-alerts.json"),
    ("datadog", "datadog/custom-multi-host-triggered.json"),
    ("generic", "generic/batch-mixed.json"),
    ("grafana", "grafana/unified-resolved-batch.json"),
    ("newrelic", "newrelic/workflow-activated.json"),
    ("opsgenie", "opsgenie/create.json"),
    ("pagerduty", "pagerduty/v3-incident-triggered.json"),
    ("zabbix", "zabbix/problem-macro-names.json"),
];

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../drivers/ingest/fixtures")
            .join(rel),
    )
    .unwrap()
}

fn parse(c: &mut Criterion) {
    let plugins = Plugins::from_inventory();
    let mut group = c.benchmark_group("ingest/parse");
    group.measurement_time(Duration::from_secs(3));
    for (driver, rel) in FIXTURES {
        let raw = fixture(rel);
        let d = plugins.ingestors.get(driver).unwrap();
        let ing = (d.build)(&json!({}), &BuildContext::default()).unwrap();
        let n = ing
            .parse(&tocsin_ingest::body::decode(&raw).unwrap())
            .unwrap()
            .alerts
            .len() as u64;
        group.throughput(Throughput::Elements(n));
        group.bench_function(*driver, |b| {
            b.iter(|| {
                let body = tocsin_ingest::body::decode(black_box(&raw)).unwrap();
                black_box(ing.parse(&body).unwrap())
            })
        });
    }
    group.finish();
}

static SEQ: AtomicU64 = AtomicU64::new(0);

fn alert(fingerprint: String) -> NormalizedAlert {
    let host = format!("host-{}", fingerprint.len() % 7);
    NormalizedAlert {
        name: "BenchAlert".into(),
        status: AlertStatus::Firing,
        severity: Severity::Warning,
        description: "benchmark alert".into(),
        labels: Labels::from([
            ("host".to_owned(), host),
            ("job".to_owned(), "bench".to_owned()),
        ]),
        annotations: Labels::new(),
        started_at: None,
        ended_at: None,
        raw_payload: json!({"fingerprint": fingerprint}).into(),
        acknowledged: false,
        fingerprint,
    }
}

fn fresh(n: usize) -> Vec<NormalizedAlert> {
    (0..n)
        .map(|_| alert(format!("bench-{}", SEQ.fetch_add(1, Ordering::Relaxed))))
        .collect()
}

fn store(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let db = rt.block_on(testing::sqlite());
    let tocsin = Tocsin::new(
        db.store.clone(),
        Plugins::from_inventory(),
        Config::default(),
    );
    let mut group = c.benchmark_group("ingest/store/sqlite");
    group
        .measurement_time(Duration::from_secs(5))
        .sample_size(20);

    group.throughput(Throughput::Elements(1));
    group.bench_function("one_alert_per_transaction", |b| {
        b.iter(|| {
            rt.block_on(service::ingest_alerts(
                &tocsin,
                "generic",
                fresh(1),
                None,
                None,
            ))
            .unwrap()
        })
    });

    group.throughput(Throughput::Elements(100));
    group.bench_function("100_alerts_per_transaction", |b| {
        b.iter(|| {
            rt.block_on(service::ingest_alerts(
                &tocsin,
                "generic",
                fresh(100),
                None,
                None,
            ))
            .unwrap()
        })
    });

    let same = fresh(100);
    rt.block_on(service::ingest_alerts(
        &tocsin,
        "generic",
        same.clone(),
        None,
        None,
    ))
    .unwrap();
    group.bench_function("100_identical_resends_per_transaction", |b| {
        b.iter(|| {
            let out = rt
                .block_on(service::ingest_alerts(
                    &tocsin,
                    "generic",
                    same.clone(),
                    None,
                    None,
                ))
                .unwrap();
            assert_eq!(out.unchanged, 100);
        })
    });
    group.finish();

    let mut group = c.benchmark_group("ingest/webhook/sqlite");
    group
        .measurement_time(Duration::from_secs(5))
        .sample_size(20);
    let raw = fixture("alertmanager/firing-two-alerts.json");
    group.throughput(Throughput::Elements(2));
    group.bench_function("alertmanager_resend", |b| {
        b.iter(|| {
            let req = IngestRequest {
                driver: None,
                body: IngestBody::Raw(raw.clone()),
                headers: Headers::new(),
                trace_id: None,
            };
            rt.block_on(service::ingest_with_secrets(
                &tocsin,
                req,
                None,
                &WebhookSecrets::none(),
            ))
            .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, parse, store);
criterion_main!(benches);

//! How long the health checks take: each default checker one-shot, all five together one-shot
//! (target: under 1.2 x the CPU sample interval), and answered from the rolling CPU sampler
//! (target: under 10 ms; network and process aside, whose cost is their own).
//!
//! `cargo bench -p tocsin-benches --bench checkers`; figures go to `docs/performance.md`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use serde_json::{Value, json};
use tocsin_checkers::{CheckRequest, SamplerConfig, check_only, start_sampler};
use tocsin_core::Config;
use tocsin_core::plugin::{BuildContext, Plugins};

const ALL: [&str; 5] = ["cpu", "disk", "memory", "network", "process"];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn request(names: &[&str], options: &Value) -> CheckRequest {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    CheckRequest::new(&names, options)
}

/// Runs a request once and checks that nothing came back unmeasured where it should not.
async fn run(plugins: &Plugins, config: &Config, req: &CheckRequest) -> usize {
    let results = check_only(plugins, config, &BuildContext::default(), req)
        .await
        .unwrap();
    results.len()
}

fn one_shot(c: &mut Criterion) {
    let rt = runtime();
    let plugins = Plugins::from_inventory();
    let config = Config::default();
    let defaults = Value::Null;
    let mut g = c.benchmark_group("checkers/one_shot");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .measurement_time(Duration::from_secs(4));
    for name in ALL {
        let req = request(&[name], &defaults);
        g.bench_function(name, |b| {
            b.iter(|| rt.block_on(run(&plugins, &config, &req)))
        });
    }
    // The target: every default checker but network (whose cost is the network's) within
    // 1.2 x the CPU sample interval.
    let local = request(&["cpu", "disk", "memory", "process"], &defaults);
    g.bench_function("all_but_network", |b| {
        b.iter(|| rt.block_on(run(&plugins, &config, &local)))
    });
    let all = request(&ALL, &defaults);
    g.bench_function("all_five", |b| {
        b.iter(|| rt.block_on(run(&plugins, &config, &all)))
    });
    g.finish();
}

fn from_sampler(c: &mut Criterion) {
    let rt = runtime();
    let plugins = Plugins::from_inventory();
    let config = Config::default();
    let sampler = start_sampler(SamplerConfig::default()).unwrap();
    // The window fills one interval after start.
    while sampler.snapshot().is_none() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let defaults = Value::Null;
    let mut g = c.benchmark_group("checkers/from_sampler");
    g.sample_size(50).measurement_time(Duration::from_secs(3));
    let cpu = request(&["cpu"], &defaults);
    let probe = rt
        .block_on(check_only(
            &plugins,
            &config,
            &BuildContext::default(),
            &cpu,
        ))
        .unwrap();
    assert_eq!(probe[0].metrics["source"], "sampler");
    g.bench_function("cpu", |b| {
        b.iter(|| rt.block_on(run(&plugins, &config, &cpu)))
    });
    let local = request(&["cpu", "disk", "memory", "process"], &defaults);
    g.bench_function("all_but_network", |b| {
        b.iter(|| rt.block_on(run(&plugins, &config, &local)))
    });
    let all = request(&ALL, &defaults);
    g.bench_function("all_five", |b| {
        b.iter(|| rt.block_on(run(&plugins, &config, &all)))
    });
    // The network checker's own cost on loopback (the defaults reach public resolvers).
    let loopback = request(&["network"], &json!({"network": {"hosts": ["127.0.0.1"]}}));
    g.bench_function("network_loopback_icmp", |b| {
        b.iter(|| rt.block_on(run(&plugins, &config, &loopback)))
    });
    // The process checker's own cost when it has a name to find (a full process listing).
    let named = request(
        &["process"],
        &json!({"process": {"names": ["init", "systemd", "sshd"], "sample_interval": 0}}),
    );
    g.bench_function("process_three_names", |b| {
        b.iter(|| rt.block_on(run(&plugins, &config, &named)))
    });
    g.finish();
    sampler.stop();
}

criterion_group!(benches, one_shot, from_sampler);
criterion_main!(benches);

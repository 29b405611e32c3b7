//! `analyze()`, the fallback path, the `AnalysisRun` records and the `intelligence` stage, on
//! SQLite and PostgreSQL.

use chrono::Utc;
use serde_json::{Value, json};
use tocsin_core::domain::*;
use tocsin_core::plugin::{Plugins, StageContext};
use tocsin_core::store::{self, NewAlert, NewIncident, testing};
use tocsin_core::{Config, ErrorKind, Tocsin};
use tocsin_providers::{AnalyzeRequest, OperatorConfig, analyze_with, get_analysis_run};

use crate::helpers::{FakeOpenAi, Reply};

const KEY: &str = "sk-never-stored-77";

async fn memory_incident(tocsin: &Tocsin) -> i64 {
    tocsin
        .store()
        .write(|c| {
            let i = store::insert_incident(
                c,
                NewIncident {
                    title: "Disk space low on web-1".into(),
                    severity: Severity::Critical,
                    description: "filesystem nearly full".into(),
                    group_key: "x|web-1".into(),
                    metadata: json!({}),
                },
            )?;
            store::insert_alert(
                c,
                NewAlert {
                    fingerprint: "fp-1".into(),
                    source: "alertmanager".into(),
                    name: "HostPressure".into(),
                    severity: Severity::Critical,
                    status: AlertStatus::Firing,
                    description: String::new(),
                    labels: [("checker".to_string(), "memory".to_string())]
                        .into_iter()
                        .collect(),
                    annotations: Labels::new(),
                    raw_payload: json!({}).into(),
                    trace_id: "t".into(),
                    started_at: Utc::now(),
                    ended_at: None,
                    incident_id: Some(i.id),
                },
            )?;
            Ok(i.id)
        })
        .await
        .unwrap()
}

fn operator(server: &FakeOpenAi) -> OperatorConfig {
    OperatorConfig::new().with_provider(
        "openai",
        json!({"base_url": server.base_url, "api_key": KEY, "timeout": 5}),
    )
}

fn tocsin(db: &testing::TestDb) -> Tocsin {
    Tocsin::new(
        db.store.clone(),
        Plugins::from_inventory(),
        Config::default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_ai_analysis_falls_back_to_local_and_both_runs_are_recorded() {
    let server = FakeOpenAi::start(Reply::Raw(500, vec![], "model overloaded".into())).await;
    for db in testing::all().await {
        let t = tocsin(&db);
        let incident_id = memory_incident(&t).await;
        let req = AnalyzeRequest {
            incident_id: Some(incident_id),
            provider: Some("openai".into()),
            config: json!({"max_tokens": 300}),
            trace_id: "trace-fb".into(),
            run_id: Some("run-fb".into()),
            fallback: true,
            ..AnalyzeRequest::default()
        };
        let out = analyze_with(&t, req.clone(), &operator(&server))
            .await
            .unwrap();
        assert!(out.fallback_used, "{}", db.label);
        assert_eq!(
            (out.provider.as_str(), out.requested_provider.as_str()),
            ("local", "openai")
        );
        assert!(out.primary_error.as_deref().unwrap().contains("HTTP 500"));
        // The checker=memory label decides, not the word "disk" in the title.
        assert_eq!(out.recommendations.len(), 1, "{}", db.label);
        assert_eq!(out.recommendations[0].kind, RecommendationType::Memory);
        assert_eq!(out.recommendations[0].incident_id, Some(incident_id));

        let runs = t
            .store()
            .run(move |c| store::list_analysis_runs(c, Some(incident_id), 10))
            .await
            .unwrap();
        assert_eq!(runs.len(), 2, "{}", db.label);
        let failed = runs.iter().find(|r| r.provider == "openai").unwrap();
        assert_eq!(Some(failed.id), out.failed_run_id);
        assert_eq!(failed.status, AnalysisStatus::Failed);
        assert!(!failed.fallback_used);
        assert!(
            failed
                .error_message
                .as_deref()
                .unwrap()
                .contains("model overloaded")
        );
        assert_eq!(failed.recommendations_count, 0);
        assert_eq!(failed.provider_config["api_key"], "**REDACTED**");
        assert_eq!(failed.provider_config["base_url"], json!(server.base_url));
        // The request's tuning is recorded beside the operator's settings. (tocsin-core's redaction
        // treats every key containing "token" as a secret, `max_tokens` included.)
        assert!(
            failed.provider_config["request"]
                .get("max_tokens")
                .is_some(),
            "{}",
            failed.provider_config
        );
        assert_eq!(failed.provider_config["model"], "gpt-4o-mini");
        assert_eq!(
            (failed.trace_id.as_str(), failed.run_id.as_deref()),
            ("trace-fb", Some("run-fb"))
        );
        assert!(
            failed
                .input_summary
                .contains(&format!("incident #{incident_id}")),
            "{}",
            failed.input_summary
        );
        assert!(
            failed.input_summary.contains("HostPressure")
                && failed.input_summary.contains("max_tokens")
        );

        let local = runs.iter().find(|r| r.provider == "local").unwrap();
        assert_eq!(local.id, out.analysis_run_id);
        assert_eq!(local.status, AnalysisStatus::Succeeded);
        assert!(local.fallback_used);
        assert!(
            local
                .error_message
                .as_deref()
                .unwrap()
                .contains("openai failed")
        );
        assert_eq!(local.recommendations_count, 1);
        assert_eq!(local.recommendations[0]["type"], "memory");
        assert!(local.duration_ms.unwrap() >= 0.0 && local.completed_at.is_some());
        let stored = serde_json::to_string(&runs).unwrap();
        assert!(
            !stored.contains(KEY),
            "the key is never stored ({})",
            db.label
        );

        let incident = t
            .store()
            .run(move |c| store::get_incident(c, incident_id))
            .await
            .unwrap();
        assert!(
            incident.summary.starts_with("[") && incident.summary.contains("Memory"),
            "{}",
            incident.summary
        );

        // Without fallback the typed error surfaces, after its failed run is recorded.
        let err = analyze_with(
            &t,
            AnalyzeRequest {
                fallback: false,
                ..req
            },
            &operator(&server),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Upstream);
        assert!(err.is_temporary());
        let runs = t
            .store()
            .run(move |c| store::list_analysis_runs(c, Some(incident_id), 10))
            .await
            .unwrap();
        assert_eq!(runs.len(), 3);
        assert_eq!(runs[0].status, AnalysisStatus::Failed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successful_ai_analysis_records_model_and_token_usage() {
    let content = r#"{"recommendations": [{"type": "memory", "priority": "high", "title": "Restart app", "description": "Leak", "actions": ["restart"]}]}"#;
    let server = FakeOpenAi::start(Reply::completion(content)).await;
    for db in testing::all().await {
        let t = tocsin(&db);
        let incident_id = memory_incident(&t).await;
        let out = analyze_with(
            &t,
            AnalyzeRequest {
                incident_id: Some(incident_id),
                provider: Some("openai".into()),
                fallback: true,
                ..Default::default()
            },
            &operator(&server),
        )
        .await
        .unwrap();
        assert!(!out.fallback_used);
        assert_eq!(out.provider, "openai");
        let run = get_analysis_run(t.store(), out.analysis_run_id)
            .await
            .unwrap();
        assert_eq!(run.status, AnalysisStatus::Succeeded, "{}", db.label);
        assert_eq!(run.model_name.as_deref(), Some("gpt-4o-mini-2024-07-18"));
        assert_eq!(
            (run.prompt_tokens, run.completion_tokens, run.total_tokens),
            (Some(412), Some(96), Some(508))
        );
        assert_eq!(run.recommendations_count, 1);
        assert_eq!(run.recommendations[0]["incident_id"], json!(incident_id));
        assert!(!run.trace_id.is_empty());
        assert_eq!(run.provider_config["api_key"], "**REDACTED**");
        assert_eq!(
            get_analysis_run(t.store(), 999_999)
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::NotFound
        );
    }
}

#[tokio::test]
async fn unknown_incidents_providers_and_operator_keys_are_refused_before_any_analysis() {
    for db in testing::all().await {
        let t = tocsin(&db);
        let op = OperatorConfig::new();
        let err = analyze_with(
            &t,
            AnalyzeRequest {
                incident_id: Some(424_242),
                ..Default::default()
            },
            &op,
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{}", db.label);
        let err = analyze_with(
            &t,
            AnalyzeRequest {
                provider: Some("gemini".into()),
                ..Default::default()
            },
            &op,
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(
            err.message().contains("local") && err.message().contains("openai"),
            "{err}"
        );
        let err = analyze_with(
            &t,
            AnalyzeRequest {
                provider: Some("openai".into()),
                config: json!({"base_url": "http://evil.example"}),
                ..Default::default()
            },
            &op,
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        let runs = t
            .store()
            .run(|c| store::list_analysis_runs(c, None, 10))
            .await
            .unwrap();
        assert!(runs.is_empty(), "nothing ran, nothing recorded");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_intelligence_stage_reads_the_run_state_and_falls_back_by_default() {
    if std::env::var("OPENAI_API_KEY").is_ok() || std::env::var("OPENAI_BASE_URL").is_ok() {
        return; // this test relies on `openai` being unconfigured in the environment
    }
    for db in testing::all().await {
        let t = tocsin(&db);
        let incident_id = memory_incident(&t).await;
        let desc = t.plugins().stages.get("intelligence").unwrap();
        // The node names a provider the environment cannot configure here: OPENAI_BASE_URL is
        // unset in tests, so `openai` points at api.openai.com without a key and fails to build.
        let stage = (desc.build)(
            &json!({"provider": "openai", "config": {"max_tokens": 200}}),
            &t.build_context(),
        )
        .unwrap();
        let checks = json!([{"checker": "memory", "status": "critical", "message": "Memory usage: 95%", "metrics": {},
                              "error": null, "warning_threshold": 70.0, "critical_threshold": 90.0, "duration_ms": 1.0}]);
        let state = json!({"payload": {}, "driver": null, "incident_id": incident_id, "incident_ids": [incident_id],
                           "checks": checks, "recommendations": [], "nodes": {}});
        let ctx = StageContext::new(
            t.clone(),
            "run-stage".into(),
            "trace-stage".into(),
            "analyze".into(),
            1,
            json!({}),
            state,
        );
        let out = stage.execute(&ctx).await.unwrap();
        assert_eq!(out["fallback_used"], true, "{}", db.label);
        assert_eq!(out["provider"], "local");
        assert_eq!(out["requested_provider"], "openai");
        assert_eq!(out["recommendations"][0]["type"], "memory");
        let run = get_analysis_run(t.store(), out["analysis_run_id"].as_i64().unwrap())
            .await
            .unwrap();
        assert_eq!(run.run_id.as_deref(), Some("run-stage"));
        assert!(
            run.input_summary.contains("memory=critical"),
            "{}",
            run.input_summary
        );

        // Fallback off: the node fails with the provider's typed error.
        let stage = (desc.build)(
            &json!({"provider": "openai", "fallback": false}),
            &t.build_context(),
        )
        .unwrap();
        let err = stage.execute(&ctx).await.unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::InvalidConfig | ErrorKind::Upstream),
            "{err}"
        );

        // A malformed state is a typed error, not a panic.
        let bad = StageContext::new(
            t.clone(),
            "r".into(),
            "t".into(),
            "n".into(),
            1,
            json!({}),
            json!({"incident_id": "seven"}),
        );
        assert_eq!(
            stage.execute(&bad).await.unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }
}

#[test]
fn every_provider_and_the_stage_are_registered_once() {
    let plugins = Plugins::from_inventory();
    assert_eq!(plugins.providers.names(), vec!["local", "openai"]);
    assert!(plugins.providers.duplicates().is_empty());
    assert!(plugins.stages.get("intelligence").is_ok());
    let mut by_hand = Plugins::empty();
    tocsin_providers::register_all(&mut by_hand);
    assert_eq!(by_hand.providers.names(), vec!["local", "openai"]);
    let mut both = Plugins::from_inventory();
    tocsin_providers::register_all(&mut both);
    assert!(both.providers.duplicates().is_empty() && both.stages.duplicates().is_empty());
    for d in plugins.providers.list() {
        let example: Value = serde_json::from_str(d.config_example).unwrap();
        assert!(example.is_object(), "{}", d.name);
    }
}

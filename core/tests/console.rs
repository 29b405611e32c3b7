//! The console's queries (`store::console`): every filter and count covers every row, not the
//! newest thousand, on SQLite and, when `TOCSIN_TEST_POSTGRES_URL` is set, on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{Duration, Utc};
use diesel::prelude::*;
use serde_json::json;
use tocsin_core::domain::*;
use tocsin_core::store::console::{
    self, AlertQuery, IncidentQuery, PageRequest, RunQuery, like_pattern,
};
use tocsin_core::store::schema::{deliveries, pipeline_runs};
use tocsin_core::store::{
    self, AnyConnection, NewAlert, NewDelivery, NewIncident, NewPipelineRun, testing,
};

/// More rows than the old in-memory filters looked through.
const FILLER: usize = 1100;

fn new_incident(title: &str, description: &str, severity: Severity) -> NewIncident {
    NewIncident {
        title: title.into(),
        severity,
        description: description.into(),
        group_key: format!("{title}|host"),
        metadata: json!({}),
    }
}

fn new_alert(source: &str, fp: &str, name: &str, incident_id: Option<i64>) -> NewAlert {
    NewAlert {
        fingerprint: fp.into(),
        source: source.into(),
        name: name.into(),
        severity: Severity::Warning,
        status: AlertStatus::Firing,
        description: "cpu flxo busy".into(),
        labels: Labels::new(),
        annotations: Labels::new(),
        raw_payload: json!({}).into(),
        trace_id: "t".into(),
        started_at: Utc::now(),
        ended_at: None,
        incident_id,
    }
}

fn new_run(definition: Option<&str>, incident_id: Option<i64>) -> NewPipelineRun {
    NewPipelineRun {
        run_id: new_id(),
        trace_id: new_id(),
        definition_name: definition.map(str::to_owned),
        incident_id,
        source: "test".into(),
        environment: "test".into(),
        max_retries: 0,
        inbound_payload: json!({}),
    }
}

/// The oldest incident (with a `zabbix` alert) first, then `FILLER` newer ones whose text holds
/// what an unescaped `%` or `_` would wrongly match. Returns the old incident's id.
fn seed_incidents(c: &mut AnyConnection) -> tocsin_core::Result<i64> {
    let old = store::insert_incident(
        c,
        new_incident("Disk 50% FULL_ON web_1", "root volume", Severity::Critical),
    )?;
    store::insert_alert(c, new_alert("zabbix", "old", "DiskFull", Some(old.id)))?;
    for i in 0..FILLER {
        let sev = if i % 2 == 0 {
            Severity::Warning
        } else {
            Severity::Info
        };
        let inc = store::insert_incident(
            c,
            new_incident(&format!("disk 50 fullxon {i}"), "cpu flxo", sev),
        )?;
        store::insert_alert(
            c,
            new_alert("alertmanager", &format!("fp-{i}"), "HighCpu", Some(inc.id)),
        )?;
    }
    Ok(old.id)
}

#[test]
fn like_patterns_escape_wildcards_and_lower_the_needle() {
    assert_eq!(like_pattern("50%"), "%50\\%%");
    assert_eq!(like_pattern("A_b\\C"), "%a\\_b\\\\c%");
}

#[tokio::test]
async fn incident_filters_find_a_row_older_than_the_newest_thousand() {
    for db in testing::all().await {
        let old = db.store.write(seed_incidents).await.unwrap();
        let l = db.label;
        let find = |f: IncidentQuery| {
            let store = db.store.clone();
            async move {
                store
                    .run(move |c| console::incidents(c, &f, PageRequest::default()))
                    .await
                    .unwrap()
            }
        };

        let by_source = find(IncidentQuery {
            source: Some("zabbix".into()),
            ..Default::default()
        })
        .await;
        assert_eq!(by_source.total, 1, "{l}");
        assert_eq!(by_source.rows[0].id, old, "{l}");

        // Case-insensitive, and `%` / `_` match only themselves.
        for text in ["disk 50% full", "full_on", "WEB_1", "Root Volume", "|HOST"] {
            let hit = find(IncidentQuery {
                text: Some(text.into()),
                ..Default::default()
            })
            .await;
            let ids: Vec<i64> = hit.rows.iter().map(|i| i.id).collect();
            if text == "|HOST" {
                // The group key is searched too: every incident has this one.
                assert_eq!(hit.total, FILLER as i64 + 1, "{l}: {text}");
            } else {
                assert_eq!((hit.total, ids), (1, vec![old]), "{l}: {text}");
            }
        }

        let combined = find(IncidentQuery {
            status: Some(IncidentStatus::Open),
            severity: Some(Severity::Critical),
            source: Some("zabbix".into()),
            text: Some("disk".into()),
        })
        .await;
        assert_eq!(combined.total, 1, "{l}");
        let none = find(IncidentQuery {
            severity: Some(Severity::Info),
            source: Some("zabbix".into()),
            ..Default::default()
        })
        .await;
        assert_eq!((none.total, none.rows.len()), (0, 0), "{l}");
        // Blank filters do not filter.
        let blank = find(IncidentQuery {
            source: Some("  ".into()),
            text: Some(String::new()),
            ..Default::default()
        })
        .await;
        assert_eq!(blank.total, FILLER as i64 + 1, "{l}");

        // Paging reaches the last row, and the total is the whole count.
        let store = db.store.clone();
        let last = store
            .run(|c| {
                console::incidents(
                    c,
                    &IncidentQuery::default(),
                    PageRequest::page(23, FILLER as i64 / 22),
                )
            })
            .await
            .unwrap();
        assert_eq!(last.total, FILLER as i64 + 1, "{l}");
        assert_eq!(last.rows.len(), 1, "{l}");
        assert_eq!(last.rows[0].id, old, "{l}: the oldest is on the last page");
        let warnings = find(IncidentQuery {
            severity: Some(Severity::Warning),
            ..Default::default()
        })
        .await;
        assert_eq!(warnings.total, FILLER as i64 / 2, "{l}");
        assert_eq!(warnings.rows.len(), 50, "{l}");
        assert!(
            warnings
                .rows
                .windows(2)
                .all(|w| (w[0].created_at, w[0].id) > (w[1].created_at, w[1].id)),
            "{l}: newest first"
        );
    }
}

#[tokio::test]
async fn alert_filters_search_name_description_and_fingerprint_over_every_row() {
    for db in testing::all().await {
        db.store.write(seed_incidents).await.unwrap();
        let l = db.label;
        let find = |f: AlertQuery| {
            let store = db.store.clone();
            async move {
                store
                    .run(move |c| console::alerts(c, &f, PageRequest::default()))
                    .await
                    .unwrap()
            }
        };
        for (text, expected) in [
            ("diskfull", 1),
            ("OLD", 1),
            ("fp-1", 1 + 10 + 100 + 100),
            ("FLXO", FILLER as i64 + 1),
            ("l_o", 0),
            ("%", 0),
        ] {
            let hit = find(AlertQuery {
                text: Some(text.into()),
                ..Default::default()
            })
            .await;
            assert_eq!(hit.total, expected, "{l}: {text}");
        }
        let old = find(AlertQuery {
            source: Some("zabbix".into()),
            status: Some(AlertStatus::Firing),
            severity: Some(Severity::Warning),
            text: Some("disk".into()),
            incident_id: None,
        })
        .await;
        assert_eq!(old.total, 1, "{l}");
        assert_eq!(old.rows[0].fingerprint, "old", "{l}");
        let resolved = find(AlertQuery {
            status: Some(AlertStatus::Resolved),
            ..Default::default()
        })
        .await;
        assert_eq!(resolved.total, 0, "{l}");
    }
}

#[tokio::test]
async fn alert_filter_by_incident_counts_and_pages_every_alert_of_that_incident() {
    const OF_INCIDENT: usize = 250;
    for db in testing::all().await {
        let l = db.label;
        let (busy, quiet, oldest) = db
            .store
            .write(|c| {
                let busy = store::insert_incident(c, new_incident("Busy", "", Severity::Info))?;
                let quiet = store::insert_incident(c, new_incident("Quiet", "", Severity::Info))?;
                let oldest =
                    store::insert_alert(c, new_alert("zabbix", "busy-old", "Old", Some(busy.id)))?;
                for i in 0..OF_INCIDENT - 1 {
                    store::insert_alert(
                        c,
                        new_alert("alertmanager", &format!("busy-{i}"), "Busy", Some(busy.id)),
                    )?;
                    store::insert_alert(
                        c,
                        new_alert("alertmanager", &format!("other-{i}"), "Other", None),
                    )?;
                }
                store::insert_alert(c, new_alert("zabbix", "quiet", "Quiet", Some(quiet.id)))?;
                Ok((busy.id, quiet.id, oldest.id))
            })
            .await
            .unwrap();
        let find = |f: AlertQuery, page: PageRequest| {
            let store = db.store.clone();
            async move {
                store
                    .run(move |c| console::alerts(c, &f, page))
                    .await
                    .unwrap()
            }
        };
        let of_busy = |page| {
            find(
                AlertQuery {
                    incident_id: Some(busy),
                    ..Default::default()
                },
                page,
            )
        };
        let newest = of_busy(PageRequest {
            limit: 200,
            offset: 0,
        })
        .await;
        assert_eq!(newest.total, OF_INCIDENT as i64, "{l}");
        assert_eq!(newest.rows.len(), 200, "{l}");
        assert!(
            newest.rows.iter().all(|a| a.incident_id == Some(busy)),
            "{l}"
        );
        assert!(
            newest.rows.iter().all(|a| a.id != oldest),
            "{l}: newest first"
        );
        let last = of_busy(PageRequest::page(2, 200)).await;
        assert_eq!(last.rows.len(), OF_INCIDENT - 200, "{l}");
        assert_eq!(last.rows.last().map(|a| a.id), Some(oldest), "{l}");
        // With the other filters.
        let old = find(
            AlertQuery {
                incident_id: Some(busy),
                source: Some("zabbix".into()),
                ..Default::default()
            },
            PageRequest::default(),
        )
        .await;
        assert_eq!(old.total, 1, "{l}");
        assert_eq!(old.rows[0].id, oldest, "{l}");
        let quiet_rows = find(
            AlertQuery {
                incident_id: Some(quiet),
                ..Default::default()
            },
            PageRequest::default(),
        )
        .await;
        assert_eq!(quiet_rows.total, 1, "{l}");
        assert_eq!(quiet_rows.rows[0].fingerprint, "quiet", "{l}");
        let none = find(
            AlertQuery {
                incident_id: Some(quiet + busy + 1000),
                ..Default::default()
            },
            PageRequest::default(),
        )
        .await;
        assert_eq!(none.total, 0, "{l}");
        assert!(none.rows.is_empty(), "{l}");
    }
}

#[tokio::test]
async fn run_filters_cover_definition_incident_and_status_over_every_row() {
    for db in testing::all().await {
        let l = db.label;
        let (incident, named_old) = db
            .store
            .write(|c| {
                let inc = store::insert_incident(c, new_incident("I", "", Severity::Info))?;
                let named = store::insert_pipeline_run(c, &new_run(Some("nightly"), Some(inc.id)))?;
                store::insert_pipeline_run(c, &new_run(Some("default"), None))?;
                for _ in 0..FILLER {
                    store::insert_pipeline_run(c, &new_run(None, None))?;
                }
                Ok((inc.id, named.run_id))
            })
            .await
            .unwrap();
        let find = |f: RunQuery, page: PageRequest| {
            let store = db.store.clone();
            async move {
                store
                    .run(move |c| console::runs(c, &f, page))
                    .await
                    .unwrap()
            }
        };
        let nightly = find(
            RunQuery {
                definition: Some("nightly".into()),
                ..Default::default()
            },
            PageRequest::default(),
        )
        .await;
        assert_eq!(nightly.total, 1, "{l}");
        assert_eq!(nightly.rows[0].run_id, named_old, "{l}");
        let of_incident = find(
            RunQuery {
                incident_id: Some(incident),
                status: Some(PipelineStatus::Pending),
                ..Default::default()
            },
            PageRequest::default(),
        )
        .await;
        assert_eq!(of_incident.total, 1, "{l}");
        assert_eq!(of_incident.rows[0].run_id, named_old, "{l}");
        // `default` is also every run stored without a definition name.
        let default = find(
            RunQuery {
                definition: Some("default".into()),
                ..Default::default()
            },
            PageRequest::page(2, 1000),
        )
        .await;
        assert_eq!(default.total, FILLER as i64 + 1, "{l}");
        assert_eq!(default.rows.len(), FILLER + 1 - 1000, "{l}");
        let failed = find(
            RunQuery {
                status: Some(PipelineStatus::Failed),
                ..Default::default()
            },
            PageRequest::default(),
        )
        .await;
        assert_eq!(failed.total, 0, "{l}");
        let all = find(RunQuery::default(), PageRequest::page(3, 500)).await;
        assert_eq!(all.total, FILLER as i64 + 2, "{l}");
        assert_eq!(all.rows.last().map(|r| r.run_id.clone()), Some(named_old));
    }
}

#[tokio::test]
async fn dashboard_counts_every_row_grouped_in_the_database() {
    for db in testing::all().await {
        let l = db.label;
        db.store
            .write(|c| {
                for i in 0..FILLER {
                    let inc = store::insert_incident(
                        c,
                        new_incident(&format!("I{i}"), "", Severity::Critical),
                    )?;
                    if i % 100 == 0 {
                        store::set_incident_status(
                            c,
                            inc.id,
                            IncidentStatus::Acknowledged,
                            "ops",
                            json!({}),
                        )?;
                    }
                }
                let resolved = store::insert_incident(c, new_incident("R", "", Severity::Info))?;
                store::set_incident_status(
                    c,
                    resolved.id,
                    IncidentStatus::Resolved,
                    "ops",
                    json!({}),
                )?;
                store::insert_incident(c, new_incident("W", "", Severity::Warning))?;
                for i in 0..3 {
                    let run = store::insert_pipeline_run(c, &new_run(None, None))?;
                    if i == 0 {
                        // A run of two days ago is outside the window.
                        diesel::update(pipeline_runs::table.filter(pipeline_runs::id.eq(run.id)))
                            .set((
                                pipeline_runs::created_at
                                    .eq((Utc::now() - Duration::days(2)).naive_utc()),
                                pipeline_runs::status.eq("failed"),
                            ))
                            .execute(c)?;
                    }
                }
                for (i, status) in [
                    DeliveryStatus::Failed,
                    DeliveryStatus::Sent,
                    DeliveryStatus::Failed,
                    DeliveryStatus::Failed,
                ]
                .into_iter()
                .enumerate()
                {
                    let d = store::insert_delivery(
                        c,
                        &NewDelivery {
                            channel_name: Some(format!("ch{i}")),
                            driver: "webhook".into(),
                            status,
                            attempt: 1,
                            idempotency_key: format!("k{i}"),
                            message_id: None,
                            response: None,
                            error: Some("boom".into()),
                            trace_id: "t".into(),
                            run_id: None,
                            incident_id: None,
                            duration_ms: None,
                        },
                    )?;
                    if i == 0 {
                        diesel::update(deliveries::table.filter(deliveries::id.eq(d.id)))
                            .set(
                                deliveries::created_at
                                    .eq((Utc::now() - Duration::days(2)).naive_utc()),
                            )
                            .execute(c)?;
                    }
                }
                Ok(())
            })
            .await
            .unwrap();
        let since = Utc::now() - Duration::hours(24);
        let d = db
            .store
            .run(move |c| console::dashboard(c, since, 1))
            .await
            .unwrap();
        let rows: Vec<(Severity, i64, i64)> = d
            .active_incidents
            .iter()
            .map(|r| (r.severity, r.open, r.acknowledged))
            .collect();
        assert_eq!(
            rows,
            [
                (Severity::Critical, FILLER as i64 - 11, 11),
                (Severity::Warning, 1, 0),
                (Severity::Info, 0, 0),
            ],
            "{l}"
        );
        assert_eq!(d.runs_by_status, [(PipelineStatus::Pending, 2)], "{l}");
        assert_eq!(d.queue_depth, 2, "{l}");
        assert!(d.oldest_waiting_seconds.is_some(), "{l}");
        assert_eq!(d.failed_deliveries.total, 2, "{l}");
        assert_eq!(d.failed_deliveries.recent.len(), 1, "{l}");
        assert_eq!(
            d.failed_deliveries.recent[0].channel_name.as_deref(),
            Some("ch3"),
            "{l}: newest first"
        );
        let all_time = db
            .store
            .run(|c| console::runs_by_status_since(c, Utc::now() - Duration::days(7)))
            .await
            .unwrap();
        assert_eq!(
            all_time,
            [(PipelineStatus::Pending, 2), (PipelineStatus::Failed, 1)],
            "{l}"
        );
    }
}

//! From ingest to the pipeline: the transaction hook that queues one run per incident that
//! materially changed, in the same transaction that stores the alerts, so an acknowledged webhook
//! always has its run and a rolled-back one never does.
//!
//! Created, escalated, re-fired and resolved incidents get a run; an acknowledgement or an
//! unchanged re-send gets none (no notification storms). A resolved incident's run carries
//! `incident_change: "resolved"`, which the notify stage turns into a resolution.

use std::sync::Arc;

use serde_json::{Map, Value};
use tocsin_core::Tocsin;
use tocsin_core::engine::{self, Submit};

use crate::service::{HookFactory, IncidentChange, IncidentChangeKind, TxHook};

/// Which changes start a run.
pub fn starts_run(kind: IncidentChangeKind) -> bool {
    matches!(
        kind,
        IncidentChangeKind::Created
            | IncidentChangeKind::Escalated
            | IncidentChangeKind::Refired
            | IncidentChangeKind::Resolved
    )
}

/// A hook that queues runs of `definition` (`None`: the default pipeline).
pub fn enqueue_hook(tocsin: Tocsin, definition: Option<String>) -> TxHook {
    hook(tocsin, None, definition)
}

/// Like [`enqueue_hook`], and each run starts in this process as soon as the transaction commits
/// when the engine's workers here have room ([`engine::Engine::enqueue_and_start`]); the others
/// wait in the queue as before.
pub fn starting_hook(engine: engine::Engine, definition: Option<String>) -> TxHook {
    hook(engine.tocsin().clone(), Some(engine), definition)
}

fn hook(tocsin: Tocsin, engine: Option<engine::Engine>, definition: Option<String>) -> TxHook {
    Box::new(move |conn, changes: &[IncidentChange]| {
        let mut ids = Vec::new();
        for change in changes.iter().filter(|c| starts_run(c.kind)) {
            let mut extra = Map::new();
            extra.insert(
                "incident_change".to_owned(),
                serde_json::to_value(change.kind).unwrap_or(Value::Null),
            );
            let submit = Submit {
                definition: definition.clone(),
                source: change.source.clone(),
                trace_id: Some(change.trace_id.clone()),
                incident_id: Some(change.incident_id),
                driver: Some(change.source.clone()),
                extra,
                ..Submit::default()
            };
            let run = match &engine {
                Some(e) => e.enqueue_and_start(conn, &submit)?,
                None => engine::enqueue_in(conn, &tocsin, &submit)?,
            };
            ids.push(run.run_id);
        }
        Ok(ids)
    })
}

/// The factory adapters keep in their state: one [`enqueue_hook`] per request.
pub fn hook_factory(tocsin: Tocsin, definition: Option<String>) -> HookFactory {
    HookFactory(Arc::new(move || {
        enqueue_hook(tocsin.clone(), definition.clone())
    }))
}

/// The factory of a process that runs workers: one [`starting_hook`] per request.
pub fn starting_hook_factory(engine: engine::Engine, definition: Option<String>) -> HookFactory {
    HookFactory(Arc::new(move || {
        starting_hook(engine.clone(), definition.clone())
    }))
}

/// After the ingest transaction committed: announces its runs to the workers, or, in eager mode
/// (`TOCSIN_TASKS_EAGER=1`), runs them here before returning.
pub async fn dispatch(engine: &engine::Engine, run_ids: &[String]) -> tocsin_core::Result<()> {
    if run_ids.is_empty() {
        return Ok(());
    }
    if engine.tocsin().config().tasks_eager {
        for id in run_ids {
            // Boxed: a whole run's future is kilobytes, and inline it would make every caller's
            // future as large, copied whole each time a layer boxes it (the webhook handler's
            // grew to 11 KiB for the sake of this branch, which the server's default never takes).
            Box::pin(engine.drive(id)).await?;
        }
        return Ok(());
    }
    engine.announce(run_ids).await;
    Ok(())
}

/// Ingests already-normalised alerts (check-and-alert, scheduled checks) through the same write
/// path as a webhook, queueing their runs in the same transaction, then dispatches the runs.
pub async fn ingest_alerts_and_run(
    engine: &engine::Engine,
    source: &str,
    alerts: Vec<tocsin_core::plugin::NormalizedAlert>,
    trace_id: Option<String>,
) -> tocsin_core::Result<crate::service::IngestOutcome> {
    let tocsin = engine.tocsin().clone();
    let hook = starting_hook(engine.clone(), None);
    let outcome =
        crate::service::ingest_alerts(&tocsin, source, alerts, trace_id, Some(hook)).await?;
    dispatch(engine, &outcome.run_ids).await?;
    Ok(outcome)
}

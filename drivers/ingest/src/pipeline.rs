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
        IncidentChangeKind::Created | IncidentChangeKind::Escalated | IncidentChangeKind::Refired | IncidentChangeKind::Resolved
    )
}

/// A hook that queues runs of `definition` (`None`: the default pipeline).
pub fn enqueue_hook(tocsin: Tocsin, definition: Option<String>) -> TxHook {
    Box::new(move |conn, changes: &[IncidentChange]| {
        let mut ids = Vec::new();
        for change in changes.iter().filter(|c| starts_run(c.kind)) {
            let mut extra = Map::new();
            extra.insert("incident_change".to_owned(), serde_json::to_value(change.kind).unwrap_or(Value::Null));
            let submit = Submit {
                definition: definition.clone(),
                source: change.source.clone(),
                trace_id: Some(change.trace_id.clone()),
                incident_id: Some(change.incident_id),
                driver: Some(change.source.clone()),
                extra,
                ..Submit::default()
            };
            ids.push(engine::enqueue_in(conn, &tocsin, &submit)?.run_id);
        }
        Ok(ids)
    })
}

/// The factory adapters keep in their state: one [`enqueue_hook`] per request.
pub fn hook_factory(tocsin: Tocsin, definition: Option<String>) -> HookFactory {
    HookFactory(Arc::new(move || enqueue_hook(tocsin.clone(), definition.clone())))
}

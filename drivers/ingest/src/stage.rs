//! The `ingest` pipeline stage.
//!
//! Node config: `{"driver": "<name>"}` (optional). It ingests the run state's `payload` with the
//! state's `driver`, else the configured one, else detection; when the state already carries
//! `incident_id` or `incident_ids` (the webhook stored the alerts before the run started) it is
//! a no-op that passes them through. Output:
//! `{"incident_id": <first or null>, "incident_ids": [..], "ingest": <IngestOutcome or null>}`.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use tocsin_core::plugin::{BuildContext, Headers, Stage, StageContext, StageDescriptor};
use tocsin_core::{Error, Result};

use crate::service::{IngestBody, IngestRequest, ingest};

/// The node type name.
pub const STAGE_NAME: &str = "ingest";

/// The node's configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestStageConfig {
    /// The driver to parse with when the run state names none. Default: detect.
    #[serde(default)]
    pub driver: Option<String>,
}

/// The `ingest` stage.
#[derive(Debug, Clone)]
pub struct IngestStage {
    config: IngestStageConfig,
}

fn build(config: &Value, _ctx: &BuildContext) -> Result<Arc<dyn Stage>> {
    let config: IngestStageConfig = if config.is_null() {
        IngestStageConfig::default()
    } else {
        serde_json::from_value(config.clone())
            .map_err(|e| Error::invalid_config(format!("ingest node: {e}")))?
    };
    if config
        .driver
        .as_deref()
        .is_some_and(|d| d.trim().is_empty())
    {
        return Err(Error::invalid_config(
            "ingest node: `driver` must not be empty",
        ));
    }
    Ok(Arc::new(IngestStage { config }))
}

fn existing_ids(state: &Value) -> Vec<i64> {
    let mut ids: Vec<i64> = state
        .get("incident_ids")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    if let Some(id) = state.get("incident_id").and_then(Value::as_i64)
        && !ids.contains(&id)
    {
        ids.insert(0, id);
    }
    ids
}

/// The output of a run whose webhook stored the alerts already: their incidents, passed on.
fn passed_through(state: &Value) -> Option<Value> {
    let ids = existing_ids(state);
    (!ids.is_empty())
        .then(|| json!({"incident_id": ids.first(), "incident_ids": ids, "ingest": null}))
}

#[async_trait]
impl Stage for IngestStage {
    fn execute_inline(&self, ctx: &StageContext) -> Option<Value> {
        passed_through(&ctx.state)
    }

    async fn execute(&self, ctx: &StageContext) -> Result<Value> {
        if let Some(out) = passed_through(&ctx.state) {
            return Ok(out);
        }
        let payload = ctx.state.get("payload").cloned().unwrap_or(Value::Null);
        if !payload.is_object() {
            return Err(Error::invalid_input(
                "ingest node: the run state has no `payload` object to ingest",
            ));
        }
        let driver = ctx
            .state
            .get("driver")
            .and_then(Value::as_str)
            .filter(|d| !d.is_empty())
            .map(str::to_owned)
            .or_else(|| self.config.driver.clone());
        let req = IngestRequest {
            driver,
            body: IngestBody::Json(payload),
            headers: Headers::new(),
            trace_id: Some(ctx.trace_id.clone()),
        };
        let outcome = ingest(&ctx.tocsin, req, None).await?;
        Ok(json!({
            "incident_id": outcome.incident_ids.first(),
            "incident_ids": outcome.incident_ids,
            "ingest": outcome,
        }))
    }
}

/// The descriptor registered for the stage.
pub const DESCRIPTOR: StageDescriptor = StageDescriptor {
    name: STAGE_NAME,
    description: "Parses the run's payload with an ingest driver and stores its alerts and incidents.",
    config_example: r#"{"driver": "alertmanager"}"#,
    build,
};

tocsin_core::register_stage!(DESCRIPTOR);

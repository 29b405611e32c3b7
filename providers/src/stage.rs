//! The `intelligence` pipeline node: runs [`crate::analyze`] on the run's incident and checks.
//!
//! Node config: `{"provider"?: name (default "local"), "config"?: {request options},
//! "fallback"?: bool (default true)}`. Reads `state.incident_id` and `state.checks`; outputs
//! `{"recommendations": [...], "analysis_run_id": id, "fallback_used": bool, "provider": name,
//! "requested_provider": name, "model": name|null}`.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use tocsin_core::domain::CheckResult;
use tocsin_core::plugin::{BuildContext, Stage, StageContext, StageDescriptor};
use tocsin_core::{Error, Result};

use crate::analyze::{AnalyzeRequest, analyze};
use crate::options::RequestOptions;

/// The node's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntelligenceConfig {
    /// The provider. Default `local`.
    #[serde(default)]
    pub provider: Option<String>,
    /// Request options ([`RequestOptions`]); endpoints and keys are not accepted here.
    #[serde(default)]
    pub config: Value,
    /// Fall back to `local` when the provider fails. Default true.
    #[serde(default = "yes")]
    pub fallback: bool,
}

fn yes() -> bool {
    true
}

/// The `intelligence` stage.
#[derive(Debug, Clone)]
pub struct IntelligenceStage {
    config: IntelligenceConfig,
}

impl IntelligenceStage {
    /// Validates the node config, without I/O.
    pub fn new(config: &Value) -> Result<Self> {
        let config: IntelligenceConfig = match config {
            Value::Null => IntelligenceConfig {
                provider: None,
                config: Value::Null,
                fallback: true,
            },
            other => serde_json::from_value(other.clone()).map_err(|e| {
                Error::invalid_config(format!("invalid intelligence node config: {e}"))
            })?,
        };
        RequestOptions::from_value(&config.config)
            .map_err(|e| Error::invalid_config(e.message().to_owned()))?;
        if config
            .provider
            .as_deref()
            .is_some_and(|p| p.trim().is_empty())
        {
            return Err(Error::invalid_config(
                "intelligence node: provider must not be empty",
            ));
        }
        Ok(Self { config })
    }
}

#[async_trait]
impl Stage for IntelligenceStage {
    async fn execute(&self, ctx: &StageContext) -> Result<Value> {
        let incident_id = match ctx.state.get("incident_id") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_i64().ok_or_else(|| {
                Error::invalid_input(format!("state.incident_id must be an integer, got {v}"))
            })?),
        };
        let checks: Vec<CheckResult> = match ctx.state.get("checks") {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
                Error::invalid_input(format!("state.checks is not a list of check results: {e}"))
            })?,
        };
        let outcome = analyze(
            &ctx.tocsin,
            AnalyzeRequest {
                incident_id,
                provider: self.config.provider.clone(),
                config: self.config.config.clone(),
                checks,
                trace_id: ctx.trace_id.clone(),
                run_id: Some(ctx.run_id.clone()),
                fallback: self.config.fallback,
            },
        )
        .await?;
        Ok(json!({
            "recommendations": outcome.recommendations,
            "analysis_run_id": outcome.analysis_run_id,
            "fallback_used": outcome.fallback_used,
            "provider": outcome.provider,
            "requested_provider": outcome.requested_provider,
            "model": outcome.model,
            "primary_error": outcome.primary_error,
        }))
    }
}

fn build(config: &Value, _: &BuildContext) -> Result<Arc<dyn Stage>> {
    Ok(Arc::new(IntelligenceStage::new(config)?))
}

const CONFIG_EXAMPLE: &str =
    r#"{"provider": "openai", "config": {"max_tokens": 800}, "fallback": true}"#;

const REGISTRATION: StageDescriptor = StageDescriptor {
    name: "intelligence",
    description: "Recommendations for the run's incident from a provider (local evidence or an AI endpoint).",
    config_example: CONFIG_EXAMPLE,
    build,
};

/// The registration of the `intelligence` stage (for [`crate::register_all`]).
pub static DESCRIPTOR: StageDescriptor = REGISTRATION;

tocsin_core::register_stage!(REGISTRATION);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_config_is_validated_without_io() {
        assert!(
            IntelligenceStage::new(&Value::Null)
                .unwrap()
                .config
                .fallback
        );
        let s = IntelligenceStage::new(&serde_json::from_str(CONFIG_EXAMPLE).unwrap()).unwrap();
        assert_eq!(s.config.provider.as_deref(), Some("openai"));
        for bad in [
            json!({"provider": "openai", "config": {"base_url": "http://evil"}}),
            json!({"provider": "openai", "config": {"api_key": "sk"}}),
            json!({"providr": "local"}),
            json!({"fallback": "yes"}),
            json!({"provider": ""}),
        ] {
            let err = IntelligenceStage::new(&bad).unwrap_err();
            assert_eq!(err.kind(), tocsin_core::ErrorKind::InvalidConfig, "{bad}");
        }
    }
}

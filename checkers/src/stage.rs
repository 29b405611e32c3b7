//! The `context` pipeline node: runs health checks and adds their results to the run's state.
//!
//! Node config (all optional): `{"include": ["cpu", "memory"], "options": {"disk": {"paths": ["/var"]}}}`;
//! `include` defaults to every registered checker. Output: `{"checks": [CheckResult..], "summary":
//! {"total", "ok", "warning", "critical", "unknown", "skipped"}}`; the engine lifts `checks` into
//! the run state. Each executed checker writes a `CheckRun` tied to the run. An unknown checker
//! name is a permanent error; a storage failure is temporary (the engine retries the node).

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use tocsin_core::plugin::{BuildContext, Stage, StageContext, StageDescriptor};
use tocsin_core::{Error, Result};

use crate::run::{self, CheckRequest};

/// The node type's name.
pub const NAME: &str = "context";

/// The node's configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextConfig {
    /// Checkers to run. Default: every registered checker.
    #[serde(default)]
    pub include: Option<Vec<String>>,
    /// Per-checker options, keyed by checker name. Default none.
    #[serde(default)]
    pub options: Option<Value>,
}

/// The `context` stage.
#[derive(Debug, Clone)]
pub struct ContextStage {
    config: ContextConfig,
}

impl ContextStage {
    /// Validates the node config, without I/O.
    pub fn new(config: ContextConfig) -> Result<Self> {
        if let Some(o) = &config.options
            && !o.is_object()
            && !o.is_null()
        {
            return Err(Error::invalid_config(
                "context: options must be an object keyed by checker name",
            ));
        }
        if let Some(names) = &config.include
            && names.iter().any(|n| n.trim().is_empty())
        {
            return Err(Error::invalid_config(
                "context: include must not hold empty names",
            ));
        }
        Ok(Self { config })
    }
}

#[async_trait]
impl Stage for ContextStage {
    async fn execute(&self, ctx: &StageContext) -> Result<Value> {
        let req = CheckRequest {
            names: self.config.include.clone().unwrap_or_default(),
            overrides: self.config.options.clone().unwrap_or(Value::Null),
            include_skipped: false,
        };
        let results = run::run_request(&ctx.tocsin, &req, &ctx.trace_id, Some(&ctx.run_id))
            .await
            .map_err(|e| match e.kind() {
                // A bad name or option will not get better on retry.
                tocsin_core::ErrorKind::NotFound | tocsin_core::ErrorKind::InvalidInput => {
                    Error::invalid_config(format!(
                        "context node {:?}: {}",
                        ctx.node_id,
                        e.message()
                    ))
                }
                _ => e,
            })?;
        let summary = run::summarize(&results);
        let mut out = json!({ "checks": results, "summary": summary });
        // Every checker skipped by a skip control: the engine records the node as skipped.
        if !results.is_empty() && results.iter().all(|r| r.skipped) {
            let reason = results
                .first()
                .and_then(|r| run::skip_reason(ctx.tocsin.config(), &r.checker))
                .unwrap_or_else(|| "every checker was skipped".to_owned());
            out["skip_reason"] = json!(reason);
        }
        Ok(out)
    }
}

fn build(config: &Value, _: &BuildContext) -> Result<Arc<dyn Stage>> {
    let value = if config.is_null() {
        json!({})
    } else {
        config.clone()
    };
    let cfg: ContextConfig = serde_json::from_value(value)
        .map_err(|e| Error::invalid_config(format!("context node config: {e}")))?;
    Ok(Arc::new(ContextStage::new(cfg)?))
}

const DESCRIPTOR: StageDescriptor = StageDescriptor {
    name: NAME,
    description: "Runs health checks (CHECK) and adds their results to the run state.",
    config_example: r#"{"include": ["cpu", "memory", "disk"], "options": {"disk": {"paths": ["/", "/var"]}}}"#,
    build,
};

tocsin_core::register_stage!(DESCRIPTOR);

/// The registration of the `context` stage, for [`crate::register_all`].
pub static REGISTRATION: StageDescriptor = DESCRIPTOR;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_config_is_validated_without_io() {
        let ctx = BuildContext::default();
        assert!(build(&Value::Null, &ctx).is_ok());
        assert!(
            build(
                &json!({"include": ["cpu"], "options": {"cpu": {"per_cpu": true}}}),
                &ctx
            )
            .is_ok()
        );
        let err = build(&json!({"checker_names": ["cpu"]}), &ctx)
            .err()
            .unwrap();
        assert!(err.message().contains("checker_names"), "{err}");
        assert!(build(&json!({"options": [1]}), &ctx).is_err());
        assert!(build(&json!({"include": [""]}), &ctx).is_err());
    }
}

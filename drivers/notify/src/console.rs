//! Console: prints the rendered notification (the same plain text as the email driver's text
//! part) to standard output or standard error. It is what the sample pipeline uses when no
//! channel is configured, so a first run shows what would be sent.
//!
//! Config: `stream` (`stdout` default, or `stderr`), `templates` (`text`).

use std::io::Write;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;
use tocsin_core::plugin::{
    BuildContext, DeliveryReceipt, Notification, NotifyDriver, NotifyDriverDescriptor,
};
use tocsin_core::{Error, Result};

use crate::template::{TemplateContext, Templates, overrides_from};

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Stream {
    #[default]
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsoleConfig {
    /// Default `stdout`.
    #[serde(default)]
    stream: Stream,
    /// Template overrides (`text`).
    #[serde(default)]
    #[allow(dead_code)]
    templates: Option<Value>,
}

/// Built-in templates.
pub const DEFAULT_TEMPLATES: &[(&str, &str)] = &[("text", include_str!("templates/email.txt"))];

/// Where the console driver writes (a buffer in tests).
#[derive(Clone)]
enum Sink {
    Stream(Stream),
    Buffer(Arc<Mutex<Vec<u8>>>),
}

/// The console driver.
#[derive(Clone)]
pub struct ConsoleDriver {
    sink: Sink,
    templates: Templates,
}

impl std::fmt::Debug for ConsoleDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleDriver").finish_non_exhaustive()
    }
}

impl ConsoleDriver {
    /// Validates the config (no I/O) and builds the driver.
    pub fn from_config(config: &Value, ctx: &BuildContext) -> Result<Self> {
        let config = if config.is_null() {
            &Value::Object(Default::default())
        } else {
            config
        };
        let c: ConsoleConfig = crate::parse_config("console", config)?;
        let templates = Templates::new(
            DEFAULT_TEMPLATES,
            &overrides_from(config)?,
            ctx.templates_dir.as_deref(),
        )?;
        Ok(Self {
            sink: Sink::Stream(c.stream),
            templates,
        })
    }

    /// The same driver writing into `buffer` instead of a stream.
    pub fn with_buffer(mut self, buffer: Arc<Mutex<Vec<u8>>>) -> Self {
        self.sink = Sink::Buffer(buffer);
        self
    }

    /// The text it prints.
    pub fn render(&self, n: &Notification) -> Result<String> {
        self.templates.render("text", &TemplateContext::build(n))
    }
}

#[async_trait]
impl NotifyDriver for ConsoleDriver {
    async fn send(&self, n: &Notification) -> Result<DeliveryReceipt> {
        let text = self.render(n)?;
        let framed = format!(
            "----- tocsin notification -----\n{}\n-------------------------------\n",
            text.trim_end()
        );
        let io = |e: std::io::Error| Error::internal(format!("cannot write the notification: {e}"));
        match &self.sink {
            Sink::Stream(Stream::Stdout) => std::io::stdout()
                .lock()
                .write_all(framed.as_bytes())
                .map_err(io)?,
            Sink::Stream(Stream::Stderr) => std::io::stderr()
                .lock()
                .write_all(framed.as_bytes())
                .map_err(io)?,
            Sink::Buffer(b) => b
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(framed.as_bytes()),
        }
        Ok(DeliveryReceipt {
            message_id: None,
            response: Some(format!("printed {} bytes", framed.len())),
        })
    }
}

fn build(config: &Value, ctx: &BuildContext) -> Result<Arc<dyn NotifyDriver>> {
    Ok(Arc::new(ConsoleDriver::from_config(config, ctx)?))
}

/// The registration of the console driver.
pub const DESCRIPTOR: NotifyDriverDescriptor = NotifyDriverDescriptor {
    name: "console",
    description: "Prints the rendered notification to standard output.",
    required: &[],
    optional: &["stream", "templates"],
    config_example: r#"{"stream": "stdout"}"#,
    build,
};

tocsin_core::register_notify_driver!(DESCRIPTOR);

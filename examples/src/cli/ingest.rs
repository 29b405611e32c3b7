//! `tocsin ingest [--driver NAME] [--dry-run] [--json] FILE|-`: parse one webhook payload and,
//! without `--dry-run`, store it (deduplication, incidents) as the webhook endpoint would.
//!
//! `--json` prints `{"driver", "alerts": [{"fingerprint", "name", "status", "severity",
//! "description", "labels", "annotations", "started_at", "ended_at", "acknowledged"}...],
//! "empty_reason", "stored"}` where `stored` is `null` on a dry run, else the counts, incident ids
//! and trace id. Exit 0 when the payload is accepted, 1 with the error on stderr when it is
//! rejected, 2 when tocsin itself fails (no database...).

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;
use tocsin_core::domain::{AlertStatus, Labels, Severity};
use tocsin_core::plugin::{Headers, NormalizedAlert, ParsedPayload};
use tocsin_ingest::service::{self, IngestBody, IngestOutcome, IngestRequest, WebhookSecrets};

use crate::App;

/// The ingest commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Parse (and, without --dry-run, store) one webhook payload.
    Ingest(IngestArgs),
}

/// Arguments of `tocsin ingest`.
#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// The driver (alertmanager, grafana, pagerduty, datadog, newrelic, opsgenie, zabbix,
    /// generic); detected from the body when omitted.
    #[arg(long, value_name = "NAME")]
    pub driver: Option<String>,
    /// Parse only: write nothing, open no database.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// The payload file, or `-` for standard input.
    #[arg(value_name = "FILE|-")]
    pub file: PathBuf,
}

/// Runs one ingest command.
pub async fn run(cmd: Command, app: &App) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Ingest(args) => ingest(args, app).await,
    }
}

fn read_input(file: &PathBuf) -> anyhow::Result<Vec<u8>> {
    if file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        Ok(buf)
    } else {
        std::fs::read(file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))
    }
}

/// Writes a line to stdout; a closed pipe (`| head`) is not an error.
fn say(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn reject(err: &tocsin_core::Error) -> ExitCode {
    eprintln!(
        "tocsin ingest: rejected ({}): {}",
        err.kind(),
        err.message()
    );
    ExitCode::from(1)
}

fn time(t: Option<chrono::DateTime<chrono::Utc>>) -> Option<String> {
    t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

/// One alert as `--json` prints it (fields in this order).
#[derive(Debug, Serialize)]
struct AlertOut<'a> {
    fingerprint: &'a str,
    name: &'a str,
    status: AlertStatus,
    severity: Severity,
    description: &'a str,
    labels: &'a Labels,
    annotations: &'a Labels,
    started_at: Option<String>,
    ended_at: Option<String>,
    acknowledged: bool,
}

impl<'a> From<&'a NormalizedAlert> for AlertOut<'a> {
    fn from(a: &'a NormalizedAlert) -> Self {
        Self {
            fingerprint: &a.fingerprint,
            name: &a.name,
            status: a.status,
            severity: a.severity,
            description: &a.description,
            labels: &a.labels,
            annotations: &a.annotations,
            started_at: time(a.started_at),
            ended_at: time(a.ended_at),
            acknowledged: a.acknowledged,
        }
    }
}

/// What was stored, when not a dry run.
#[derive(Debug, Serialize)]
struct StoredOut<'a> {
    trace_id: &'a str,
    created: usize,
    updated: usize,
    resolved: usize,
    unchanged: usize,
    incident_ids: &'a [i64],
    alert_ids: Vec<i64>,
    changes: &'a [tocsin_ingest::IncidentChange],
}

/// The whole `--json` document: `driver` first, then `alerts`.
#[derive(Debug, Serialize)]
struct Output<'a> {
    driver: &'a str,
    alerts: Vec<AlertOut<'a>>,
    empty_reason: Option<&'a str>,
    dry_run: bool,
    stored: Option<StoredOut<'a>>,
}

fn render<'a>(
    driver: &'a str,
    parsed: &'a ParsedPayload,
    dry_run: bool,
    stored: Option<&'a IngestOutcome>,
) -> Output<'a> {
    Output {
        driver,
        alerts: parsed.alerts.iter().map(AlertOut::from).collect(),
        empty_reason: parsed.empty_reason.as_deref(),
        dry_run,
        stored: stored.map(|o| StoredOut {
            trace_id: &o.trace_id,
            created: o.created,
            updated: o.updated,
            resolved: o.resolved,
            unchanged: o.unchanged,
            incident_ids: &o.incident_ids,
            alert_ids: o.alerts.iter().map(|a| a.id).collect(),
            changes: &o.changes,
        }),
    }
}

async fn ingest(args: IngestArgs, app: &App) -> anyhow::Result<ExitCode> {
    let raw = read_input(&args.file)?;
    let plugins = app.plugins();
    // Parse first: a rejected payload never opens the database.
    let parsed: tocsin_core::Result<(&'static str, ParsedPayload)> = (|| {
        let body = tocsin_ingest::body::decode(&raw)?;
        let descriptor = match args.driver.as_deref() {
            Some(name) => plugins.ingestors.get(name)?,
            None => tocsin_ingest::detect(&plugins, &body)?,
        };
        Ok((
            descriptor.name,
            tocsin_ingest::parse_with(descriptor, &body)?,
        ))
    })();
    let (driver, parsed) = match parsed {
        Ok(p) => p,
        Err(e) => return Ok(reject(&e)),
    };
    let stored = if args.dry_run {
        None
    } else {
        let tocsin = app.tocsin().await?;
        let req = IngestRequest {
            driver: Some(driver.to_owned()),
            body: IngestBody::Raw(raw),
            headers: Headers::new(),
            trace_id: None,
        };
        match service::ingest_with_secrets(&tocsin, req, None, &WebhookSecrets::none()).await {
            Ok(o) => Some(o),
            Err(e) if e.kind() == tocsin_core::ErrorKind::Storage => {
                anyhow::bail!("{}", e.message())
            }
            Err(e) => return Ok(reject(&e)),
        }
    };
    if args.json {
        let out = render(driver, &parsed, args.dry_run, stored.as_ref());
        say(&serde_json::to_string_pretty(&out)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = match &parsed.empty_reason {
        Some(reason) if parsed.alerts.is_empty() => {
            format!("Accepted by {driver} with no alert: {reason}.\n")
        }
        _ => format!(
            "Parsed {} alert(s) with the {driver} driver:\n",
            parsed.alerts.len()
        ),
    };
    for a in &parsed.alerts {
        text.push_str(&format!(
            "  [{}] {} {} ({})\n",
            a.severity, a.status, a.name, a.fingerprint
        ));
    }
    text.push_str(&match stored {
        None => "Dry run: nothing was stored.".to_owned(),
        Some(o) => format!(
            "Stored (trace {}): {} created, {} updated, {} resolved, {} unchanged; incidents {:?}.",
            o.trace_id, o.created, o.updated, o.resolved, o.unchanged, o.incident_ids
        ),
    });
    say(&text)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use tocsin_core::plugin::Plugins;

    use super::*;

    /// `--dry-run --json` on every fixture prints the driver's values, `driver` first.
    #[test]
    fn dry_run_json_of_every_fixture_shows_the_parsed_values_in_order() {
        let plugins = Plugins::from_inventory();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../drivers/ingest/fixtures");
        let mut seen = 0;
        for d in std::fs::read_dir(dir).unwrap() {
            let d = d.unwrap();
            for f in std::fs::read_dir(d.path()).unwrap() {
                let raw = std::fs::read(f.unwrap().path()).unwrap();
                let body = tocsin_ingest::body::decode(&raw).unwrap();
                let desc = tocsin_ingest::detect(&plugins, &body).unwrap();
                let parsed = tocsin_ingest::parse_with(desc, &body).unwrap();
                let text = serde_json::to_string(&render(desc.name, &parsed, true, None)).unwrap();
                assert!(
                    text.starts_with(&format!("{{\"driver\":\"{}\",\"alerts\":[", desc.name)),
                    "{text}"
                );
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                for (i, a) in parsed.alerts.iter().enumerate() {
                    let o = &v["alerts"][i];
                    assert_eq!(o["fingerprint"], a.fingerprint.as_str());
                    assert_eq!(o["name"], a.name.as_str());
                    assert_eq!(o["status"], a.status.as_str());
                    assert_eq!(o["severity"], a.severity.as_str());
                    assert_eq!(o["description"], a.description.as_str());
                    assert_eq!(o["labels"], serde_json::to_value(&a.labels).unwrap());
                    assert_eq!(
                        o["started_at"]
                            .as_str()
                            .map(|s| chrono::DateTime::parse_from_rfc3339(s).unwrap()),
                        a.started_at.map(Into::into)
                    );
                    assert_eq!(
                        o["ended_at"]
                            .as_str()
                            .map(|s| chrono::DateTime::parse_from_rfc3339(s).unwrap()),
                        a.ended_at.map(Into::into)
                    );
                }
                assert!(v["stored"].is_null());
                seen += 1;
            }
        }
        assert!(seen >= 24);
    }
}

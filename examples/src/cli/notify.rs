//! The notify commands: `tocsin channels add|list|show|enable|disable|remove`,
//! `tocsin list-notify-drivers [--verbose] [--json]` and `tocsin test-notify [DRIVER|CHANNEL]`.
//!
//! `test-notify` sends one test notification and exits 0 only when it was delivered (1 when the
//! delivery failed, was skipped or the config is invalid). Every per-driver flag reaches the
//! driver's config (a flag that does not apply to the chosen driver is an error, never ignored);
//! flags override `--json-config`, which overrides a channel's stored config.
//!
//! A channel's config is given with `--json-config JSON` (or `--config JSON`) (`channels add`, `channels update`): the
//! name `--config` belongs to the global config-file option.

use std::process::ExitCode;

use anyhow::Context;
use serde_json::{Map, Value, json};
use tocsin_core::Tocsin;
use tocsin_core::domain::Severity;
use tocsin_notify::{NotifyOutcome, RetryPolicy, SendOptions};

use crate::App;

/// The notify commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Manage notification channels.
    #[command(subcommand)]
    Channels(ChannelsCommand),
    /// List notify drivers (with --verbose: their required and optional config and an example).
    ListNotifyDrivers {
        /// Show each driver's config keys and an example.
        #[arg(long)]
        verbose: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send a test notification through a driver or a channel; exit 0 only when delivered.
    TestNotify(TestNotifyArgs),
}

/// `tocsin channels ...`
#[derive(Debug, clap::Subcommand)]
pub enum ChannelsCommand {
    /// Add a channel (its config is validated against the driver).
    Add {
        /// Channel name (letters, digits, '-', '_', '.').
        name: String,
        /// Driver (see `tocsin list-notify-drivers`).
        #[arg(long)]
        driver: String,
        /// Driver config as a JSON object (`--config` works too).
        #[arg(
            long = "json-config",
            id = "json_config",
            value_name = "JSON",
            visible_alias = "config"
        )]
        config: String,
        /// Description.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List channels (configs never shown).
    List {
        /// Print JSON (configs redacted).
        #[arg(long)]
        json: bool,
    },
    /// Show one channel, secrets redacted.
    Show {
        /// Channel name.
        name: String,
    },
    /// Replace a channel's config and/or description.
    Update {
        /// Channel name.
        name: String,
        /// New driver config as a JSON object.
        #[arg(
            long = "json-config",
            id = "json_config",
            value_name = "JSON",
            visible_alias = "config"
        )]
        config: Option<String>,
        /// New description.
        #[arg(long)]
        description: Option<String>,
    },
    /// Enable a channel.
    Enable {
        /// Channel name.
        name: String,
    },
    /// Disable a channel: runs stop notifying it.
    Disable {
        /// Channel name.
        name: String,
    },
    /// Remove a channel.
    Remove {
        /// Channel name.
        name: String,
    },
}

/// Arguments of `tocsin test-notify`.
#[derive(Debug, clap::Args)]
pub struct TestNotifyArgs {
    /// A driver (email, slack, pagerduty, webhook, console) or a channel name; without one,
    /// every enabled channel.
    #[arg(value_name = "DRIVER|CHANNEL")]
    pub target: Option<String>,
    /// Title.
    #[arg(long, default_value = "Test Alert")]
    pub title: String,
    /// Message.
    #[arg(long, default_value = "This is a test notification from tocsin.")]
    pub message: String,
    /// Severity: info, warning or critical.
    #[arg(long, default_value = "info")]
    pub severity: String,
    /// A stored channel to send through (same as giving its name as the target).
    #[arg(long)]
    pub channel: Option<String>,
    /// Driver config as a JSON object (flags override its keys).
    #[arg(long, value_name = "JSON")]
    pub json_config: Option<String>,
    /// email: SMTP host.
    #[arg(long)]
    pub smtp_host: Option<String>,
    /// email: SMTP port.
    #[arg(long)]
    pub smtp_port: Option<u16>,
    /// email: sender.
    #[arg(long)]
    pub from: Option<String>,
    /// email: recipient (repeat or comma-separate for several).
    #[arg(long, value_delimiter = ',')]
    pub to: Vec<String>,
    /// email: starttls, implicit or none.
    #[arg(long)]
    pub tls: Option<String>,
    /// email: login.
    #[arg(long)]
    pub username: Option<String>,
    /// email: password (prefer TOCSIN_SMTP_PASSWORD: the command line is visible to others).
    #[arg(long, env = "TOCSIN_SMTP_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// slack: incoming webhook URL.
    #[arg(long)]
    pub webhook_url: Option<String>,
    /// pagerduty: routing (integration) key.
    #[arg(long)]
    pub routing_key: Option<String>,
    /// pagerduty: Events API URL (EU accounts: https://events.eu.pagerduty.com/v2/enqueue).
    #[arg(long)]
    pub events_url: Option<String>,
    /// webhook: destination URL.
    #[arg(long)]
    pub url: Option<String>,
    /// Send once, without retrying temporary failures.
    #[arg(long)]
    pub no_retry: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs one notify command.
pub async fn run(cmd: Command, app: &App) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Channels(c) => channels(c, &app.tocsin().await?).await,
        Command::ListNotifyDrivers { verbose, json } => list_drivers(app, verbose, json),
        Command::TestNotify(args) => test_notify(args, app).await,
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

fn parse_object(flag: &str, text: &str) -> anyhow::Result<Value> {
    let v: Value = serde_json::from_str(text).with_context(|| format!("{flag}: not valid JSON"))?;
    anyhow::ensure!(v.is_object(), "{flag}: expected a JSON object");
    Ok(v)
}

fn lib_err(e: tocsin_core::Error) -> anyhow::Error {
    anyhow::anyhow!("{} ({})", e.message(), e.kind())
}

async fn channels(cmd: ChannelsCommand, t: &Tocsin) -> anyhow::Result<ExitCode> {
    match cmd {
        ChannelsCommand::Add {
            name,
            driver,
            config,
            description,
        } => {
            let config = parse_object("--json-config", &config)?;
            let c = tocsin_notify::create_channel(t, &name, &driver, &config, &description)
                .await
                .map_err(lib_err)?;
            say(&format!(
                "channel {:?} added (driver {}).",
                c.name, c.driver
            ))?;
        }
        ChannelsCommand::List { json } => {
            let list = tocsin_notify::list_channels(t, false)
                .await
                .map_err(lib_err)?;
            if json {
                let list: Vec<_> = list
                    .into_iter()
                    .map(tocsin_notify::redacted_channel)
                    .collect();
                say(&serde_json::to_string_pretty(&list)?)?;
            } else if list.is_empty() {
                say(
                    "No channel configured. Add one with `tocsin channels add NAME --driver DRIVER --json-config JSON`.",
                )?;
            } else {
                say(&format!(
                    "{:<24} {:<10} {:<8} DESCRIPTION",
                    "NAME", "DRIVER", "ENABLED"
                ))?;
                for c in list {
                    say(&format!(
                        "{:<24} {:<10} {:<8} {}",
                        c.name,
                        c.driver,
                        if c.enabled { "yes" } else { "no" },
                        c.description
                    ))?;
                }
            }
        }
        ChannelsCommand::Show { name } => {
            let c = tocsin_notify::redacted_channel(
                tocsin_notify::get_channel(t, &name)
                    .await
                    .map_err(lib_err)?,
            );
            say(&serde_json::to_string_pretty(&c)?)?;
        }
        ChannelsCommand::Update {
            name,
            config,
            description,
        } => {
            anyhow::ensure!(
                config.is_some() || description.is_some(),
                "give --json-config and/or --description"
            );
            let config = config
                .map(|c| parse_object("--json-config", &c))
                .transpose()?;
            tocsin_notify::update_channel(t, &name, config.as_ref(), description.as_deref())
                .await
                .map_err(lib_err)?;
            say(&format!("channel {name:?} updated."))?;
        }
        ChannelsCommand::Enable { name } => {
            tocsin_notify::enable_channel(t, &name)
                .await
                .map_err(lib_err)?;
            say(&format!("channel {name:?} enabled."))?;
        }
        ChannelsCommand::Disable { name } => {
            tocsin_notify::disable_channel(t, &name)
                .await
                .map_err(lib_err)?;
            say(&format!("channel {name:?} disabled."))?;
        }
        ChannelsCommand::Remove { name } => {
            tocsin_notify::remove_channel(t, &name)
                .await
                .map_err(lib_err)?;
            say(&format!("channel {name:?} removed."))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn list_drivers(app: &App, verbose: bool, json: bool) -> anyhow::Result<ExitCode> {
    let plugins = app.plugins();
    let drivers: Vec<tocsin_notify::DriverInfo> = plugins
        .notifiers
        .names()
        .into_iter()
        .filter_map(|n| plugins.notifiers.get(n).ok())
        .map(tocsin_notify::DriverInfo::from)
        .collect();
    if json {
        say(&serde_json::to_string_pretty(&drivers)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    for d in &drivers {
        say(&format!("{:<10} {}", d.name, d.description))?;
        if verbose {
            say(&format!(
                "           required: {}",
                if d.required.is_empty() {
                    "-".to_owned()
                } else {
                    d.required.join(", ")
                }
            ))?;
            say(&format!("           optional: {}", d.optional.join(", ")))?;
            say(&format!("           example:  {}", d.example))?;
        }
    }
    if verbose {
        say("")?;
        say("Examples:")?;
        say("  tocsin test-notify console")?;
        say(
            "  tocsin test-notify slack --webhook-url https://hooks.slack.com/services/T000/B000/XXXX",
        )?;
        say(
            "  tocsin test-notify email --smtp-host smtp.example.com --from tocsin@example.com --to oncall@example.com",
        )?;
        say("  tocsin test-notify pagerduty --routing-key KEY --severity critical")?;
        say(
            "  tocsin test-notify webhook --url https://hooks.example.com/tocsin --json-config '{\"hmac_secret\": \"...\"}'",
        )?;
        say("  tocsin test-notify my-channel")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The per-driver flags given, as (flag, driver, config key, value).
fn flag_values(a: &TestNotifyArgs) -> Vec<(&'static str, &'static str, &'static str, Value)> {
    let mut v = Vec::new();
    let mut push = |flag, driver, key, value: Option<Value>| {
        if let Some(value) = value {
            v.push((flag, driver, key, value));
        }
    };
    push(
        "--smtp-host",
        "email",
        "smtp_host",
        a.smtp_host.clone().map(Value::from),
    );
    push(
        "--smtp-port",
        "email",
        "smtp_port",
        a.smtp_port.map(Value::from),
    );
    push("--from", "email", "from", a.from.clone().map(Value::from));
    push(
        "--to",
        "email",
        "to",
        (!a.to.is_empty()).then(|| json!(a.to)),
    );
    push("--tls", "email", "tls", a.tls.clone().map(Value::from));
    push(
        "--username",
        "email",
        "username",
        a.username.clone().map(Value::from),
    );
    push(
        "--password",
        "email",
        "password",
        a.password.clone().map(Value::from),
    );
    push(
        "--webhook-url",
        "slack",
        "webhook_url",
        a.webhook_url.clone().map(Value::from),
    );
    push(
        "--routing-key",
        "pagerduty",
        "routing_key",
        a.routing_key.clone().map(Value::from),
    );
    push(
        "--events-url",
        "pagerduty",
        "events_url",
        a.events_url.clone().map(Value::from),
    );
    push("--url", "webhook", "url", a.url.clone().map(Value::from));
    v
}

/// The config for `driver`: the base (a channel's), then `--json-config`, then the flags.
fn merged_config(driver: &str, base: Value, a: &TestNotifyArgs) -> anyhow::Result<Value> {
    let mut config: Map<String, Value> = match base {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    if let Some(j) = &a.json_config
        && let Value::Object(m) = parse_object("--json-config", j)?
    {
        config.extend(m);
    }
    for (flag, for_driver, key, value) in flag_values(a) {
        anyhow::ensure!(
            for_driver == driver,
            "{flag} is an option of the {for_driver} driver; it does not apply to the {driver} driver"
        );
        config.insert(key.to_owned(), value);
    }
    Ok(Value::Object(config))
}

fn report(outcome: &NotifyOutcome, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        say(&serde_json::to_string_pretty(&json!({
            "delivered": outcome.notified > 0 && outcome.failed == 0,
            "notified": outcome.notified,
            "failed": outcome.failed,
            "skipped": outcome.skipped,
            "results": outcome.results,
            "deliveries": outcome.deliveries,
        }))?)?;
    } else {
        if outcome.skipped && outcome.results.is_empty() {
            let why = outcome
                .deliveries
                .first()
                .and_then(|d| d.error.clone())
                .unwrap_or_default();
            eprintln!("tocsin test-notify: nothing sent: {why}");
        }
        for r in &outcome.results {
            let who = match &r.channel {
                Some(c) => format!("channel {c:?} ({})", r.driver),
                None => format!("driver {}", r.driver),
            };
            match &r.error {
                None => say(&format!(
                    "{}: {} after {} attempt(s){}{}",
                    who,
                    r.status,
                    r.attempts,
                    r.response
                        .as_deref()
                        .map(|x| format!(" - {x}"))
                        .unwrap_or_default(),
                    r.message_id
                        .as_deref()
                        .map(|m| format!(" (message id {m})"))
                        .unwrap_or_default(),
                ))?,
                Some(e) => eprintln!(
                    "tocsin test-notify: {who}: failed after {} attempt(s): {} ({})",
                    r.attempts, e.message, e.kind
                ),
            }
        }
    }
    let delivered = outcome.notified > 0 && outcome.failed == 0;
    Ok(if delivered {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn test_notify(a: TestNotifyArgs, app: &App) -> anyhow::Result<ExitCode> {
    let severity: Severity = a
        .severity
        .to_ascii_lowercase()
        .parse()
        .map_err(lib_err)
        .context("--severity")?;
    let t = app.tocsin().await?;
    let mut n = tocsin_notify::adhoc_notification(&a.title, &a.message, Some(severity));
    n.context = json!({"test": true});
    let policy = if a.no_retry {
        RetryPolicy::none()
    } else {
        RetryPolicy::interactive()
    };
    let target = match (&a.target, &a.channel) {
        (Some(t), Some(c)) if t != c => {
            anyhow::bail!("give the channel once: {t:?} and --channel {c:?}")
        }
        (Some(t), _) => Some(t.clone()),
        (None, c) => c.clone(),
    };
    let has_overrides = a.json_config.is_some() || !flag_values(&a).is_empty();
    let is_driver = |name: &str| t.plugins().notifiers.get(name).is_ok();

    let outcome: NotifyOutcome = match target {
        Some(name) if a.channel.is_none() && is_driver(&name) => {
            let config = merged_config(&name, Value::Null, &a)?;
            let options = SendOptions {
                retry: policy,
                untrusted_destination: false,
                ..SendOptions::default()
            };
            tocsin_notify::send_with_outcome(&t, &name, &config, &n, &options)
                .await
                .map_err(lib_err)?
        }
        Some(name) => {
            let channel = tocsin_notify::get_channel(&t, &name).await.map_err(|e| {
                let drivers = t.plugins().notifiers.names().join(", ");
                anyhow::anyhow!("{} (drivers: {drivers})", e.message())
            })?;
            if has_overrides {
                // The channel's driver with its stored config, overridden by the flags.
                let config = merged_config(&channel.driver, channel.config.clone(), &a)?;
                let options = SendOptions {
                    retry: policy,
                    untrusted_destination: false,
                    ..SendOptions::default()
                };
                tocsin_notify::send_with_outcome(&t, &channel.driver, &config, &n, &options)
                    .await
                    .map_err(lib_err)?
            } else {
                tocsin_notify::notify_with(&t, &n, Some(&[name]), policy)
                    .await
                    .map_err(lib_err)?
            }
        }
        None => {
            anyhow::ensure!(
                !has_overrides,
                "name a driver (for example `tocsin test-notify slack --webhook-url URL`) to use driver flags"
            );
            tocsin_notify::notify_with(&t, &n, None, policy)
                .await
                .map_err(lib_err)?
        }
    };
    report(&outcome, a.json)
}

//! `network`: whether hosts can be reached from this machine. A `host:port` target is a TCP
//! connect ([connect(2)](https://man7.org/linux/man-pages/man2/connect.2.html)); a bare host is
//! an ICMP echo ([RFC 792](https://www.rfc-editor.org/rfc/rfc792)) through an unprivileged ICMP
//! socket, a raw ICMP socket, or the system [`ping`](https://man7.org/linux/man-pages/man8/ping.8.html),
//! whichever works first; the metrics say which (`method`).
//!
//! The status is the reachable share of the hosts that could be measured: below the warning
//! threshold (70 %) warns, below the critical one (50 %) is critical. A host that cannot be
//! resolved or answers nothing counts as unreachable; a bare host for which no ICMP method exists
//! is not measured (and if no host could be measured at all, the check is `unknown`).
//!
//! Options (all optional): `warning_threshold` (70), `critical_threshold` (50), `hosts`
//! (none by default, which reports `ok` with "no hosts configured"; for example `example.org:443`,
//! `[::1]:22`, `10.0.0.1`), `timeout` (seconds per host, 2).

mod icmp;

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tocsin_core::domain::CheckStatus;
use tocsin_core::plugin::{BuildContext, CheckOutcome, Checker, CheckerDescriptor};
use tocsin_core::{Error, Result};

pub use icmp::Method as IcmpMethod;

use crate::common::{self, Direction, Thresholds};

/// The checker's name.
pub const NAME: &str = "network";

/// Options of the `network` checker.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkOptions {
    /// Reachable percent below which the check warns. Default 70.
    pub warning_threshold: Option<f64>,
    /// Reachable percent below which the check is critical. Default 50.
    pub critical_threshold: Option<f64>,
    /// Targets: `host:port` (TCP connect) or a bare host (ICMP echo). Default none.
    pub hosts: Option<Vec<String>>,
    /// Seconds to wait for each host, 0.05 to 30. Default 2.
    pub timeout: Option<f64>,
}

/// What to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// TCP connect to `host:port`.
    Tcp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
    /// ICMP echo to a host.
    Icmp {
        /// Host name or address.
        host: String,
    },
}

/// Parses a target without I/O: `host:port`, `[v6]:port`, a bare host, a bare IPv6 address.
pub fn parse_target(s: &str) -> Result<Target> {
    let s = s.trim();
    let bad = |why: &str| Error::invalid_config(format!("{NAME}: invalid host {s:?}: {why}"));
    if s.is_empty() {
        return Err(bad("empty"));
    }
    if s.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(bad("expected host, host:port or [ipv6]:port"));
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| bad("missing ']'"))?;
        host.parse::<Ipv6Addr>()
            .map_err(|_| bad("not an IPv6 address inside [ ]"))?;
        return match after {
            "" => Ok(Target::Icmp {
                host: host.to_owned(),
            }),
            p => Ok(Target::Tcp {
                host: host.to_owned(),
                port: parse_port(
                    p.strip_prefix(':')
                        .ok_or_else(|| bad("expected :port after ]"))?,
                )
                .ok_or_else(|| bad("port must be 1 to 65535"))?,
            }),
        };
    }
    if s.parse::<Ipv6Addr>().is_ok() {
        return Ok(Target::Icmp { host: s.to_owned() });
    }
    match s.split_once(':') {
        None => Ok(Target::Icmp { host: s.to_owned() }),
        Some((host, port)) if !host.is_empty() && !port.contains(':') => Ok(Target::Tcp {
            host: host.to_owned(),
            port: parse_port(port).ok_or_else(|| bad("port must be 1 to 65535"))?,
        }),
        Some(_) => Err(bad("write an IPv6 address with a port as [addr]:port")),
    }
}

fn parse_port(p: &str) -> Option<u16> {
    p.parse::<u16>().ok().filter(|p| *p != 0)
}

/// What probing one host found.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// Reachable, unreachable, or `None` when it could not be measured.
    pub reachable: Option<bool>,
    /// Round trip (ICMP) or connect time (TCP).
    pub latency: Option<Duration>,
    /// `tcp`, `icmp_socket`, `icmp_raw_socket` or `ping_command` (`None` when nothing worked).
    pub method: Option<&'static str>,
    /// The address probed.
    pub address: Option<String>,
    /// Why it is unreachable or unmeasured.
    pub error: Option<String>,
}

impl Probe {
    fn down(
        method: Option<&'static str>,
        address: Option<String>,
        error: impl Into<String>,
    ) -> Self {
        Self {
            reachable: Some(false),
            latency: None,
            method,
            address,
            error: Some(error.into()),
        }
    }
}

/// The outcome for probes made elsewhere: the checker's whole rule, without I/O.
pub fn evaluate(probes: &[(String, Probe)], t: Thresholds) -> CheckOutcome {
    if probes.is_empty() {
        return common::outcome(
            CheckStatus::Ok,
            "Network: no hosts configured".to_owned(),
            json!({"hosts": {}, "reachable_count": 0, "total_hosts": 0, "measured_hosts": 0, "reachable_percent": null}),
            None,
            t,
        );
    }
    let mut hosts = Map::new();
    let (mut reachable, mut measured) = (0usize, 0usize);
    let (mut down, mut unmeasured) = (Vec::new(), Vec::new());
    let mut icmp_method = None;
    for (target, p) in probes {
        match p.reachable {
            Some(true) => {
                reachable += 1;
                measured += 1;
            }
            Some(false) => {
                measured += 1;
                down.push(target.as_str());
            }
            None => unmeasured.push(target.as_str()),
        }
        if let Some(m) = p.method.filter(|m| *m != "tcp") {
            icmp_method.get_or_insert(m);
        }
        hosts.insert(
            target.clone(),
            json!({
                "reachable": p.reachable,
                "latency_ms": p.latency.map(|l| common::round(l.as_secs_f64() * 1000.0, 3)),
                "method": p.method,
                "address": p.address,
                "error": p.error,
            }),
        );
    }
    let pct = if measured > 0 {
        reachable as f64 / measured as f64 * 100.0
    } else {
        f64::NAN
    };
    let metrics = json!({
        "hosts": hosts,
        "reachable_count": reachable,
        "total_hosts": probes.len(),
        "measured_hosts": measured,
        "reachable_percent": (measured > 0).then(|| common::round(pct, 1)),
        "icmp_method": icmp_method,
    });
    let errors: Vec<String> = probes
        .iter()
        .filter(|(_, p)| p.reachable.is_none())
        .filter_map(|(h, p)| p.error.as_ref().map(|e| format!("{h}: {e}")))
        .collect();
    if measured == 0 {
        let mut o = common::outcome(
            CheckStatus::Unknown,
            format!(
                "Network: no host could be measured ({})",
                unmeasured.join(", ")
            ),
            metrics,
            Some(errors.join("; ")),
            t,
        );
        o.error
            .get_or_insert_with(|| "no host could be measured".to_owned());
        return o;
    }
    let status = t.status(Direction::LowerIsWorse, pct);
    let mut message = format!("Network: {reachable}/{measured} hosts reachable ({pct:.0}%)");
    if !down.is_empty() {
        message.push_str(&format!(". Unreachable: {}", down.join(", ")));
    }
    if !unmeasured.is_empty() {
        message.push_str(&format!(". Not measured: {}", unmeasured.join(", ")));
    }
    common::outcome(
        status,
        message,
        metrics,
        (!errors.is_empty()).then(|| errors.join("; ")),
        t,
    )
}

/// Probes one target (never panics; every failure is in the [`Probe`]).
pub async fn probe(target: &Target, timeout: Duration) -> Probe {
    match target {
        Target::Tcp { host, port } => probe_tcp(host, *port, timeout).await,
        Target::Icmp { host } => probe_icmp(host, timeout).await,
    }
}

async fn probe_tcp(host: &str, port: u16, timeout: Duration) -> Probe {
    let started = Instant::now();
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port))).await {
        Ok(Ok(stream)) => Probe {
            reachable: Some(true),
            latency: Some(started.elapsed()),
            method: Some("tcp"),
            address: stream.peer_addr().ok().map(|a| a.to_string()),
            error: None,
        },
        Ok(Err(e)) => Probe::down(Some("tcp"), None, format!("connect failed: {e}")),
        Err(_) => Probe::down(
            Some("tcp"),
            None,
            format!("no connection within {:.1} s", timeout.as_secs_f64()),
        ),
    }
}

async fn probe_icmp(host: &str, timeout: Duration) -> Probe {
    let started = Instant::now();
    let addr = match host.parse::<IpAddr>() {
        Ok(a) => a,
        Err(_) => match tokio::time::timeout(timeout, tokio::net::lookup_host((host, 0))).await {
            Ok(Ok(mut addrs)) => match addrs.next() {
                Some(a) => a.ip(),
                None => return Probe::down(None, None, format!("{host} has no address")),
            },
            Ok(Err(e)) => return Probe::down(None, None, format!("cannot resolve {host}: {e}")),
            Err(_) => {
                return Probe::down(
                    None,
                    None,
                    format!(
                        "cannot resolve {host} within {:.1} s",
                        timeout.as_secs_f64()
                    ),
                );
            }
        },
    };
    let remaining = timeout
        .saturating_sub(started.elapsed())
        .max(Duration::from_millis(10));
    let address = Some(addr.to_string());
    let socket_err = match icmp::echo(addr, remaining).await {
        Ok((m, Some(rtt))) => {
            return Probe {
                reachable: Some(true),
                latency: Some(rtt),
                method: Some(m.as_str()),
                address,
                error: None,
            };
        }
        Ok((m, None)) => {
            return Probe::down(
                Some(m.as_str()),
                address,
                format!("no echo reply within {:.1} s", remaining.as_secs_f64()),
            );
        }
        Err(icmp::EchoError::Failed(m, e)) => return Probe::down(Some(m.as_str()), address, e),
        Err(icmp::EchoError::Unavailable(e)) => e,
    };
    match ping_command(addr, remaining).await {
        Ok(Some(rtt)) => Probe {
            reachable: Some(true),
            latency: Some(rtt),
            method: Some(IcmpMethod::Command.as_str()),
            address,
            error: None,
        },
        Ok(None) => Probe::down(
            Some(IcmpMethod::Command.as_str()),
            address,
            "no echo reply (ping)",
        ),
        Err(icmp::EchoError::Failed(m, e)) => Probe::down(Some(m.as_str()), address, e),
        Err(icmp::EchoError::Unavailable(e)) => Probe {
            reachable: None,
            latency: None,
            method: None,
            address,
            error: Some(format!("no way to send ICMP echo here: {socket_err}; {e}")),
        },
    }
}

/// `ping -n -c 1 -W <secs> <addr>` from iputils; `Unavailable` when there is no `ping`.
async fn ping_command(
    addr: IpAddr,
    timeout: Duration,
) -> std::result::Result<Option<Duration>, icmp::EchoError> {
    let secs = timeout.as_secs_f64().ceil().max(1.0) as u64;
    let mut cmd = tokio::process::Command::new("ping");
    cmd.args(["-n", "-c", "1", "-W", &secs.to_string(), &addr.to_string()])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = match tokio::time::timeout(timeout + Duration::from_secs(1), cmd.output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(icmp::EchoError::Unavailable(
                "no `ping` command on PATH".into(),
            ));
        }
        Ok(Err(e)) => {
            return Err(icmp::EchoError::Unavailable(format!(
                "cannot run ping: {e}"
            )));
        }
        Err(_) => return Ok(None),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    match out.status.code() {
        Some(0) => Ok(Some(parse_ping_time(&stdout).unwrap_or_default())),
        Some(1) => Ok(None),
        _ => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let msg = stderr
                .lines()
                .next()
                .unwrap_or("ping failed")
                .trim()
                .to_owned();
            // "Operation not permitted" and friends mean this method is not usable, not that the host is down.
            if msg.contains("permitted") || msg.contains("ermission") {
                Err(icmp::EchoError::Unavailable(format!("ping: {msg}")))
            } else {
                Err(icmp::EchoError::Failed(
                    IcmpMethod::Command,
                    format!("ping: {msg}"),
                ))
            }
        }
    }
}

/// The round trip of `ping`'s output: `time=0.045 ms` of the reply line.
pub fn parse_ping_time(stdout: &str) -> Option<Duration> {
    let at = stdout.find("time=")?;
    let rest = &stdout[at + 5..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let ms: f64 = rest[..end].parse().ok()?;
    Some(Duration::from_secs_f64(ms / 1000.0))
}

/// The `network` checker.
#[derive(Debug, Clone)]
pub struct NetworkChecker {
    thresholds: Thresholds,
    targets: Vec<(String, Target)>,
    timeout: Duration,
}

impl NetworkChecker {
    /// Validates options, without I/O.
    pub fn new(opts: NetworkOptions) -> Result<Self> {
        let thresholds = Thresholds::new(
            NAME,
            opts.warning_threshold.unwrap_or(70.0),
            opts.critical_threshold.unwrap_or(50.0),
            Direction::LowerIsWorse,
        )?;
        // No default targets: probing somebody's public resolvers from every installation (and
        // every test run) is traffic nobody asked for. Operators name their own hosts.
        let hosts = opts.hosts.unwrap_or_default();
        if hosts.len() > 256 {
            return Err(Error::invalid_config(format!(
                "{NAME}: at most 256 hosts, got {}",
                hosts.len()
            )));
        }
        let mut targets = Vec::with_capacity(hosts.len());
        for h in hosts {
            let t = parse_target(&h)?;
            let key = h.trim().to_owned();
            if !targets.iter().any(|(k, _)| *k == key) {
                targets.push((key, t));
            }
        }
        let timeout = common::seconds(NAME, "timeout", opts.timeout.unwrap_or(2.0), 0.05, 30.0)?;
        Ok(Self {
            thresholds,
            targets,
            timeout,
        })
    }
}

#[async_trait]
impl Checker for NetworkChecker {
    async fn check(&self) -> CheckOutcome {
        let mut set = tokio::task::JoinSet::new();
        for (i, (_, target)) in self.targets.iter().enumerate() {
            let (target, timeout) = (target.clone(), self.timeout);
            set.spawn(async move { (i, probe(&target, timeout).await) });
        }
        let mut probes: Vec<Option<Probe>> = vec![None; self.targets.len()];
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((i, p)) => probes[i] = Some(p),
                Err(e) => tracing::warn!(error = %e, "A network probe task failed."),
            }
        }
        let probes: Vec<(String, Probe)> = self
            .targets
            .iter()
            .zip(probes)
            .map(|((key, _), p)| {
                let p = p.unwrap_or(Probe {
                    reachable: None,
                    latency: None,
                    method: None,
                    address: None,
                    error: Some("probe task failed".into()),
                });
                (key.clone(), p)
            })
            .collect();
        evaluate(&probes, self.thresholds)
    }
}

fn build(config: &Value, _: &BuildContext) -> Result<Arc<dyn Checker>> {
    Ok(Arc::new(NetworkChecker::new(common::parse_options(
        NAME, config,
    )?)?))
}

const DESCRIPTOR: CheckerDescriptor = CheckerDescriptor {
    name: NAME,
    description: "Reachable share of hosts: TCP connect for host:port, ICMP echo for a bare host.",
    config_example: r#"{"warning_threshold": 70, "critical_threshold": 50, "hosts": ["gateway.internal", "db.internal:5432"], "timeout": 2}"#,
    build,
};

tocsin_core::register_checker!(DESCRIPTOR);

/// The registration of the `network` checker, for [`crate::register_all`].
pub static REGISTRATION: CheckerDescriptor = DESCRIPTOR;

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        warning: 70.0,
        critical: 50.0,
    };

    fn up() -> Probe {
        Probe {
            reachable: Some(true),
            latency: Some(Duration::from_millis(3)),
            method: Some("tcp"),
            address: None,
            error: None,
        }
    }

    fn down() -> Probe {
        Probe::down(Some("tcp"), None, "connect failed: refused")
    }

    fn share(up_count: usize, total: usize) -> CheckOutcome {
        let probes: Vec<_> = (0..total)
            .map(|i| (format!("h{i}:1"), if i < up_count { up() } else { down() }))
            .collect();
        evaluate(&probes, T)
    }

    #[test]
    fn status_at_and_around_the_thresholds() {
        assert_eq!(share(10, 10).status, CheckStatus::Ok);
        assert_eq!(share(7, 10).status, CheckStatus::Ok, "70 % is not below 70");
        assert_eq!(share(69, 100).status, CheckStatus::Warning);
        assert_eq!(
            share(5, 10).status,
            CheckStatus::Warning,
            "50 % is not below 50"
        );
        assert_eq!(share(49, 100).status, CheckStatus::Critical);
        assert_eq!(share(0, 3).status, CheckStatus::Critical);
    }

    #[test]
    fn message_and_metrics_name_the_unreachable() {
        let o = share(1, 2);
        assert_eq!(
            o.message,
            "Network: 1/2 hosts reachable (50%). Unreachable: h1:1"
        );
        assert_eq!(o.metrics["hosts"]["h0:1"]["reachable"], true);
        assert_eq!(o.metrics["hosts"]["h0:1"]["latency_ms"], 3.0);
        assert_eq!(o.metrics["hosts"]["h1:1"]["reachable"], false);
        assert_eq!(o.metrics["reachable_percent"], 50.0);
    }

    #[test]
    fn unmeasured_hosts_do_not_count_and_none_measured_is_unknown() {
        let none = Probe {
            reachable: None,
            latency: None,
            method: None,
            address: None,
            error: Some("no ICMP".into()),
        };
        let o = evaluate(&[("a".into(), up()), ("b".into(), none.clone())], T);
        assert_eq!(o.status, CheckStatus::Ok);
        assert!(o.message.contains("Not measured: b"), "{}", o.message);
        let o = evaluate(&[("b".into(), none)], T);
        assert_eq!(o.status, CheckStatus::Unknown);
        assert!(o.error.as_deref().unwrap().contains("no ICMP"));
        assert_eq!(evaluate(&[], T).status, CheckStatus::Ok);
    }

    #[test]
    fn targets_parse_without_io() {
        assert_eq!(
            parse_target("8.8.8.8").unwrap(),
            Target::Icmp {
                host: "8.8.8.8".into()
            }
        );
        assert_eq!(
            parse_target("example.org:443").unwrap(),
            Target::Tcp {
                host: "example.org".into(),
                port: 443
            }
        );
        assert_eq!(
            parse_target("[::1]:22").unwrap(),
            Target::Tcp {
                host: "::1".into(),
                port: 22
            }
        );
        assert_eq!(
            parse_target("::1").unwrap(),
            Target::Icmp { host: "::1".into() }
        );
        assert_eq!(
            parse_target("[fe80::1]").unwrap(),
            Target::Icmp {
                host: "fe80::1".into()
            }
        );
        for bad in [
            "",
            "host:0",
            "host:99999",
            "host:",
            ":80",
            "a b",
            "[::1",
            "[nothost]:1",
            "http://x",
        ] {
            assert!(parse_target(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn ping_output_is_parsed() {
        let out = "PING 127.0.0.1 (127.0.0.1) 56(84) bytes of data.\n64 bytes from 127.0.0.1: icmp_seq=1 ttl=64 time=0.045 ms\n";
        assert_eq!(
            parse_ping_time(out),
            Some(Duration::from_secs_f64(0.000045))
        );
        assert_eq!(parse_ping_time("nothing"), None);
    }

    #[tokio::test]
    async fn a_local_listener_is_reachable_and_a_closed_port_is_not() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap();
        // A port that was free a moment ago: bind, read the number, close.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let checker = NetworkChecker::new(NetworkOptions {
            hosts: Some(vec![open.to_string(), closed.to_string()]),
            timeout: Some(2.0),
            ..Default::default()
        })
        .unwrap();
        let o = checker.check().await;
        let hosts = &o.metrics["hosts"];
        assert_eq!(hosts[open.to_string()]["reachable"], true, "{o:?}");
        assert_eq!(hosts[open.to_string()]["method"], "tcp");
        assert!(hosts[open.to_string()]["latency_ms"].as_f64().unwrap() >= 0.0);
        assert_eq!(hosts[closed.to_string()]["reachable"], false, "{o:?}");
        assert!(
            hosts[closed.to_string()]["error"]
                .as_str()
                .unwrap()
                .contains("refused"),
            "{o:?}"
        );
        assert_eq!(o.status, CheckStatus::Warning, "1 of 2 is 50 %: {o:?}");
        drop(listener);
    }

    #[tokio::test]
    async fn loopback_answers_icmp_echo_by_some_method() {
        let checker = NetworkChecker::new(NetworkOptions {
            hosts: Some(vec!["127.0.0.1".into()]),
            ..Default::default()
        })
        .unwrap();
        let o = checker.check().await;
        let h = &o.metrics["hosts"]["127.0.0.1"];
        println!(
            "ICMP echo to 127.0.0.1 here: method {}, error {}",
            h["method"], h["error"]
        );
        if h["reachable"].is_null() {
            // Neither socket kind nor a `ping` binary is available here: that must be unknown, not down.
            assert_eq!(o.status, CheckStatus::Unknown, "{o:?}");
            assert!(o.error.as_deref().unwrap().contains("ICMP"), "{o:?}");
        } else {
            assert_eq!(h["reachable"], true, "{o:?}");
            assert_eq!(o.status, CheckStatus::Ok);
            assert!(
                ["icmp_socket", "icmp_raw_socket", "ping_command"]
                    .contains(&h["method"].as_str().unwrap()),
                "{o:?}"
            );
            assert_eq!(o.metrics["icmp_method"], h["method"]);
        }
    }

    #[tokio::test]
    async fn a_silent_address_is_unreachable_within_the_timeout() {
        // 198.51.100.0/24 is TEST-NET-2 (RFC 5737): nothing there answers.
        let checker = NetworkChecker::new(NetworkOptions {
            hosts: Some(vec!["198.51.100.1".into()]),
            timeout: Some(0.3),
            ..Default::default()
        })
        .unwrap();
        let started = Instant::now();
        let o = checker.check().await;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "bounded by the timeout"
        );
        let h = &o.metrics["hosts"]["198.51.100.1"];
        if !h["reachable"].is_null() {
            assert_eq!(h["reachable"], false, "{o:?}");
            assert!(h["error"].is_string(), "{o:?}");
            assert_eq!(o.status, CheckStatus::Critical, "{o:?}");
        }
    }
}

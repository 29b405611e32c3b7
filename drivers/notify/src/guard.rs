//! The outbound guard: destinations that come from a request body (not from the operator's
//! config) may not point at loopback, private, link-local, shared (CGNAT), unspecified or cloud
//! metadata addresses, unless `TOCSIN_OUTBOUND_ALLOW` allows them.
//!
//! `TOCSIN_OUTBOUND_ALLOW` is a comma-separated list of host names (`hooks.internal`), addresses
//! (`127.0.0.1`), CIDR ranges (`10.0.0.0/8`, `fd00::/8`) or `*` (everything). Host names are
//! resolved and every address must pass. The check happens before the request; a name that
//! resolves differently a moment later (DNS rebinding) is not caught.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::Value;
use tocsin_core::{Error, ErrorKind, Result};

/// The variable read by [`OutboundGuard::from_env`].
pub const ALLOW_ENV: &str = "TOCSIN_OUTBOUND_ALLOW";

/// Config keys of each driver that name a destination: (driver, key, is a URL).
pub const DESTINATION_KEYS: &[(&str, &str, bool)] = &[
    ("email", "smtp_host", false),
    ("slack", "webhook_url", true),
    ("pagerduty", "events_url", true),
    ("webhook", "url", true),
];

/// Host names that are metadata endpoints whatever they resolve to.
const METADATA_NAMES: &[&str] = &[
    "metadata.google.internal",
    "metadata",
    "metadata.azure.internal",
    "instance-data",
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Allow {
    Any,
    Host(String),
    Net(IpAddr, u8),
}

/// Which private destinations are allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundGuard {
    allow: Vec<Allow>,
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let bits = u32::from(bits.min(32));
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let bits = u32::from(bits.min(128));
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Why an address is not public, or `None` when it is.
pub fn non_public_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_reason(v4);
            }
            let ip = IpAddr::V6(v6);
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if in_net(
                ip,
                IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)),
                10,
            ) {
                Some("link-local")
            } else if in_net(
                ip,
                IpAddr::V6(Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0)),
                7,
            ) {
                Some("private (unique local)")
            } else if v6.is_multicast() {
                Some("multicast")
            } else {
                None
            }
        }
    }
}

fn v4_reason(v4: Ipv4Addr) -> Option<&'static str> {
    let ip = IpAddr::V4(v4);
    if v4 == Ipv4Addr::new(169, 254, 169, 254) || v4 == Ipv4Addr::new(100, 100, 100, 200) {
        Some("cloud metadata")
    } else if v4.is_loopback() {
        Some("loopback")
    } else if v4.is_private() {
        Some("private")
    } else if v4.is_link_local() {
        Some("link-local")
    } else if v4.is_unspecified() || in_net(ip, IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8) {
        Some("unspecified")
    } else if in_net(ip, IpAddr::V4(Ipv4Addr::new(100, 64, 0, 0)), 10) {
        Some("shared (CGNAT)")
    } else if v4.is_broadcast()
        || v4.is_multicast()
        || in_net(ip, IpAddr::V4(Ipv4Addr::new(240, 0, 0, 0)), 4)
    {
        Some("broadcast, multicast or reserved")
    } else {
        None
    }
}

impl OutboundGuard {
    /// Parses an allow list (see the module docs); a bad entry is an error naming it.
    pub fn parse(list: &str) -> Result<Self> {
        let mut allow = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if item == "*" {
                allow.push(Allow::Any);
            } else if let Some((net, bits)) = item.split_once('/') {
                let ip: IpAddr = net.parse().map_err(|_| {
                    Error::invalid_config(format!("{ALLOW_ENV}: {item:?} is not a CIDR range"))
                })?;
                let max = if ip.is_ipv4() { 32 } else { 128 };
                let bits: u8 = bits.parse().ok().filter(|b| *b <= max).ok_or_else(|| {
                    Error::invalid_config(format!("{ALLOW_ENV}: {item:?} has a bad prefix length"))
                })?;
                allow.push(Allow::Net(ip, bits));
            } else if let Ok(ip) = item.trim_matches(['[', ']']).parse::<IpAddr>() {
                allow.push(Allow::Net(ip, if ip.is_ipv4() { 32 } else { 128 }));
            } else {
                allow.push(Allow::Host(item.to_ascii_lowercase()));
            }
        }
        Ok(Self { allow })
    }

    /// From `TOCSIN_OUTBOUND_ALLOW` (unset: nothing private allowed).
    pub fn from_env() -> Result<Self> {
        match std::env::var(ALLOW_ENV) {
            Ok(v) => Self::parse(&v),
            Err(_) => Ok(Self::default()),
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.allow
            .iter()
            .any(|a| matches!(a, Allow::Any) || matches!(a, Allow::Host(h) if *h == host))
    }

    fn ip_allowed(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|a| match a {
            Allow::Any => true,
            Allow::Net(net, bits) => in_net(ip, *net, *bits),
            Allow::Host(_) => false,
        })
    }

    /// Checks one host (name or address) and port: resolves it and refuses any non-public address
    /// that is not allowed. The error is [`ErrorKind::InvalidInput`] naming `field`.
    pub async fn check_host(&self, field: &str, host: &str, port: u16) -> Result<()> {
        let bare = host.trim_matches(['[', ']']);
        if self.host_allowed(bare) {
            return Ok(());
        }
        let refuse = |why: &str| {
            Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{field}: destination {bare:?} is a {why} address; outbound requests from a request body may \
                     only reach public addresses (allow it with {ALLOW_ENV})"
                ),
            )
        };
        if METADATA_NAMES.contains(&bare.to_ascii_lowercase().trim_end_matches('.')) {
            return Err(refuse("cloud metadata"));
        }
        let addrs: Vec<IpAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => tokio::net::lookup_host((bare, port))
                .await
                .map_err(|e| {
                    Error::invalid_input(format!("{field}: cannot resolve {bare:?}: {e}"))
                })?
                .map(|a| a.ip())
                .collect(),
        };
        if addrs.is_empty() {
            return Err(Error::invalid_input(format!(
                "{field}: {bare:?} resolves to no address"
            )));
        }
        for ip in addrs {
            if let Some(why) = non_public_reason(ip)
                && !self.ip_allowed(ip)
            {
                return Err(refuse(why));
            }
        }
        Ok(())
    }

    /// Checks a URL.
    pub async fn check_url(&self, field: &str, url: &str) -> Result<()> {
        let u = reqwest_url(url)
            .map_err(|e| Error::invalid_input(format!("{field}: not a valid URL: {e}")))?;
        let host = u.0;
        self.check_host(field, &host, u.1).await
    }

    /// Checks every destination of a driver config given in a request body.
    pub async fn check_config(&self, driver: &str, config: &Value) -> Result<()> {
        for (d, key, is_url) in DESTINATION_KEYS {
            if *d != driver {
                continue;
            }
            let Some(v) = config.get(*key).and_then(Value::as_str) else {
                continue;
            };
            if *is_url {
                self.check_url(key, v).await?;
            } else {
                let port = config
                    .get("smtp_port")
                    .and_then(Value::as_u64)
                    .and_then(|p| u16::try_from(p).ok());
                self.check_host(key, v, port.unwrap_or(587)).await?;
            }
        }
        Ok(())
    }
}

/// Host and port of an http(s) URL, without depending on an HTTP client.
fn reqwest_url(url: &str) -> std::result::Result<(String, u16), String> {
    let (scheme, rest) = url.split_once("://").ok_or("no scheme")?;
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        other => return Err(format!("scheme {other:?} is not http or https")),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = authority
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or(authority);
    let (host, port) = if let Some(stripped) = hostport.strip_prefix('[') {
        let (h, after) = stripped.split_once(']').ok_or("unclosed [")?;
        let port = after
            .strip_prefix(':')
            .map(str::parse::<u16>)
            .transpose()
            .map_err(|_| "bad port")?;
        (h.to_owned(), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h.to_owned(),
                Some(p.parse::<u16>().map_err(|_| "bad port")?),
            ),
            None => (hostport.to_owned(), None),
        }
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    Ok((host, port.unwrap_or(default_port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn private_destinations_are_refused_unless_allowed() {
        let g = OutboundGuard::default();
        for url in [
            "http://127.0.0.1:9/x",
            "http://localhost/x",
            "http://10.1.2.3/",
            "http://192.168.0.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]:80/",
            "http://[::ffff:127.0.0.1]/",
            "http://[fd00::1]/",
            "http://0.0.0.0/",
            "http://user:pw@127.0.0.1/",
            "http://metadata.google.internal/",
        ] {
            let err = g.check_url("url", url).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{url}");
            assert!(err.message().starts_with("url: "), "{err}");
        }
        assert!(g.check_url("url", "http://93.184.215.14/").await.is_ok());
        let g = OutboundGuard::parse("127.0.0.0/8, hooks.internal").unwrap();
        assert!(g.check_url("url", "http://127.0.0.1:8080/x").await.is_ok());
        assert!(g.check_url("url", "http://10.0.0.1/").await.is_err());
        assert!(
            OutboundGuard::parse("*")
                .unwrap()
                .check_url("url", "http://10.0.0.1/")
                .await
                .is_ok()
        );
        assert!(OutboundGuard::parse("10.0.0.0/99").is_err());
    }

    #[tokio::test]
    async fn smtp_hosts_are_checked_too() {
        let g = OutboundGuard::default();
        let err = g
            .check_config("email", &serde_json::json!({"smtp_host": "127.0.0.1"}))
            .await
            .unwrap_err();
        assert!(err.message().starts_with("smtp_host"), "{err}");
    }
}

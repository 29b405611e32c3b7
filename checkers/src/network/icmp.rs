//! ICMP echo ([RFC 792](https://www.rfc-editor.org/rfc/rfc792),
//! [RFC 4443](https://www.rfc-editor.org/rfc/rfc4443) for IPv6) without the `ping` binary.
//!
//! Tried in order: an unprivileged ICMP datagram socket (Linux "ping socket", allowed for the
//! groups in `net.ipv4.ping_group_range`), then a raw ICMP socket (needs `CAP_NET_RAW`). The
//! caller falls back to the system `ping` command when neither can be opened.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketFlags, SocketType, ipproto};

/// How an echo was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Unprivileged ICMP datagram socket.
    Socket,
    /// Raw ICMP socket.
    Raw,
    /// The system `ping` command.
    Command,
}

impl Method {
    /// The name reported in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Socket => "icmp_socket",
            Self::Raw => "icmp_raw_socket",
            Self::Command => "ping_command",
        }
    }
}

/// Why an echo gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EchoError {
    /// This method cannot be used here (no permission, no binary): try another.
    Unavailable(String),
    /// The echo was attempted by `method` and failed (network unreachable...): the host is unreachable.
    Failed(Method, String),
}

static SEQUENCE: AtomicU16 = AtomicU16::new(1);

/// Sends one echo request to `addr` and waits up to `timeout` for the reply.
/// `Ok((method, Some(rtt)))` is a reply, `Ok((method, None))` no reply in time.
///
/// The socket is non-blocking and registered with the runtime: waiting for a reply holds no
/// thread, so echoes of unreachable hosts (each waiting its whole timeout) cannot use up the
/// blocking pool that the store's reads and the other checks need.
pub async fn echo(
    addr: IpAddr,
    timeout: Duration,
) -> Result<(Method, Option<Duration>), EchoError> {
    let (fd, method) = open(addr)?;
    let v6 = addr.is_ipv6();
    let target = SocketAddr::new(addr, 0);
    // Connecting filters what the socket receives down to this peer.
    rustix::net::connect(&fd, &target)
        .map_err(|e| EchoError::Failed(method, format!("cannot reach {addr}: {}", io(e))))?;
    // Tokio's UDP socket is a plain datagram socket to the runtime: `send` and `recv` on it are
    // the same calls on this ICMP socket, with the waiting done by the reactor.
    let socket = std::net::UdpSocket::from(fd);
    let socket = tokio::net::UdpSocket::from_std(socket)
        .map_err(|e| EchoError::Unavailable(format!("cannot register the ICMP socket: {e}")))?;
    let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let id = (std::process::id() as u16) ^ seq.rotate_left(8);
    let token = token();
    let packet = request(v6, id, seq, &token);
    let started = Instant::now();
    let reply = async {
        socket
            .send(&packet)
            .await
            .map_err(|e| EchoError::Failed(method, format!("cannot send to {addr}: {e}")))?;
        let mut buf = [0u8; 1500];
        loop {
            match socket.recv(&mut buf[..]).await {
                Ok(n) => {
                    if is_reply(&buf[..n], method, v6, id, seq, &token) {
                        return Ok(started.elapsed());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // A connected ICMP socket reports a "destination unreachable" answer as an errno.
                Err(e)
                    if [Errno::CONNREFUSED, Errno::HOSTUNREACH, Errno::NETUNREACH]
                        .iter()
                        .any(|x| e.raw_os_error() == Some(x.raw_os_error())) =>
                {
                    return Err(EchoError::Failed(
                        method,
                        format!("destination unreachable reported for {addr} ({e})"),
                    ));
                }
                Err(e) => return Err(EchoError::Failed(method, format!("{addr}: {e}"))),
            }
        }
    };
    match tokio::time::timeout(timeout, reply).await {
        Ok(Ok(rtt)) => Ok((method, Some(rtt))),
        Ok(Err(e)) => Err(e),
        Err(_) => Ok((method, None)),
    }
}

fn io(e: Errno) -> String {
    std::io::Error::from(e).to_string()
}

fn open(addr: IpAddr) -> Result<(OwnedFd, Method), EchoError> {
    let (family, proto) = if addr.is_ipv6() {
        (AddressFamily::INET6, ipproto::ICMPV6)
    } else {
        (AddressFamily::INET, ipproto::ICMP)
    };
    let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
    let dgram = match rustix::net::socket_with(family, SocketType::DGRAM, flags, Some(proto)) {
        Ok(fd) => return Ok((fd, Method::Socket)),
        Err(e) => e,
    };
    match rustix::net::socket_with(family, SocketType::RAW, flags, Some(proto)) {
        Ok(fd) => Ok((fd, Method::Raw)),
        Err(raw) => Err(EchoError::Unavailable(format!(
            "unprivileged ICMP socket: {} (see net.ipv4.ping_group_range); raw ICMP socket: {}",
            io(dgram),
            io(raw)
        ))),
    }
}

fn token() -> [u8; 16] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut t = [0u8; 16];
    t[..6].copy_from_slice(b"tocsin");
    t[6..16].copy_from_slice(&nanos.to_be_bytes()[6..16]);
    t
}

/// An echo request: type 8 (IPv4) or 128 (IPv6), code 0, checksum, identifier, sequence, payload.
pub fn request(v6: bool, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(8 + payload.len());
    p.extend_from_slice(&[if v6 { 128 } else { 8 }, 0, 0, 0]);
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(payload);
    // The kernel fills in the ICMPv6 checksum (it covers a pseudo-header we do not see).
    if !v6 {
        let c = checksum(&p);
        p[2..4].copy_from_slice(&c.to_be_bytes());
    }
    p
}

/// The Internet checksum ([RFC 1071](https://www.rfc-editor.org/rfc/rfc1071)).
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from_be_bytes([chunk[0], 0])
        };
        sum = sum.wrapping_add(u32::from(word));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Whether `data` (as received on a socket of `method`) is the reply to our request.
pub fn is_reply(data: &[u8], method: Method, v6: bool, id: u16, seq: u16, token: &[u8]) -> bool {
    // A raw IPv4 socket delivers the IP header too; IPv6 raw and datagram sockets do not.
    let icmp = if method == Method::Raw && !v6 {
        let Some(first) = data.first() else {
            return false;
        };
        let ihl = usize::from(first & 0x0f) * 4;
        match data.get(ihl..) {
            Some(rest) => rest,
            None => return false,
        }
    } else {
        data
    };
    if icmp.len() < 8 + token.len() {
        return false;
    }
    let reply_type = if v6 { 129 } else { 0 };
    let got_id = u16::from_be_bytes([icmp[4], icmp[5]]);
    let got_seq = u16::from_be_bytes([icmp[6], icmp[7]]);
    // On a datagram socket the kernel rewrites the identifier; the payload identifies us.
    icmp[0] == reply_type
        && icmp[1] == 0
        && got_seq == seq
        && (method == Method::Socket || got_id == id)
        && &icmp[8..8 + token.len()] == token
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_a_request_verifies_to_zero() {
        let p = request(false, 0x1234, 7, b"tocsin-payload");
        assert_eq!(p[0], 8);
        assert_eq!(
            checksum(&p),
            0,
            "a packet with its checksum in place sums to zero"
        );
        // RFC 1071's example words.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
    }

    #[test]
    fn replies_are_matched_by_type_sequence_identifier_and_payload() {
        let token = b"tocsin0123456789";
        let mut reply = request(false, 42, 9, token);
        reply[0] = 0;
        assert!(
            is_reply(&reply, Method::Socket, false, 0, 9, token),
            "datagram sockets ignore the rewritten id"
        );
        assert!(
            !is_reply(&reply, Method::Socket, false, 0, 10, token),
            "other sequence"
        );
        let mut with_ip = vec![0x45; 1];
        with_ip.extend_from_slice(&[0; 19]);
        with_ip.extend_from_slice(&reply);
        assert!(is_reply(&with_ip, Method::Raw, false, 42, 9, token));
        assert!(
            !is_reply(&with_ip, Method::Raw, false, 43, 9, token),
            "raw sockets see everyone's replies"
        );
        let request_seen = request(false, 42, 9, token);
        assert!(
            !is_reply(&request_seen, Method::Socket, false, 42, 9, token),
            "our own request is not a reply"
        );
        assert!(!is_reply(&[], Method::Raw, false, 42, 9, token));
        let mut v6 = request(true, 42, 9, token);
        v6[0] = 129;
        assert!(is_reply(&v6, Method::Raw, true, 42, 9, token));
    }
}

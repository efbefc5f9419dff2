//! A real connection attempt from inside a pod's network namespace: a TCP handshake, or a UDP
//! datagram that the destination's listener echoes back.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::error::{LabError, Result};
use super::plan::Protocol;
use crate::netns::in_netns;

/// What a probe observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeOutcome {
    /// The handshake completed (TCP) or the echo came back (UDP).
    Allowed,
    /// No answer before the timeout: the packet was dropped on the way (a policy drop).
    Denied,
    /// The destination answered with a reset or ICMP unreachable: reachable, but nothing
    /// listens on that port.
    Refused,
}

/// A probe's outcome and how long it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProbeResult {
    /// The outcome.
    pub outcome: ProbeOutcome,
    /// Time from the first packet to the answer or the timeout.
    pub elapsed: Duration,
}

/// Connects from network namespace `src_netns` to `dst:port` over `protocol`.
pub fn probe(
    src_netns: &str,
    dst: IpAddr,
    port: u16,
    protocol: Protocol,
    timeout: Duration,
) -> Result<ProbeResult> {
    let target = SocketAddr::new(dst, port);
    in_netns(src_netns, move || {
        let started = Instant::now();
        let outcome = match protocol {
            Protocol::Tcp => probe_tcp(target, timeout),
            Protocol::Udp => probe_udp(target, timeout),
            Protocol::Sctp => {
                return Err(LabError::invalid(
                    "probe",
                    "--protocol",
                    "SCTP probes are not supported",
                ));
            }
        }
        .map_err(|e| LabError::io(format!("probing {target}/{protocol} from {src_netns}"), e))?;
        Ok(ProbeResult { outcome, elapsed: started.elapsed() })
    })?
}

fn probe_tcp(target: SocketAddr, timeout: Duration) -> std::io::Result<ProbeOutcome> {
    match TcpStream::connect_timeout(&target, timeout) {
        Ok(_) => Ok(ProbeOutcome::Allowed),
        Err(err) => classify(err),
    }
}

fn probe_udp(target: SocketAddr, timeout: Duration) -> std::io::Result<ProbeOutcome> {
    let local: SocketAddr =
        if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("address");
    let socket = UdpSocket::bind(local)?;
    socket.connect(target)?;
    socket.set_read_timeout(Some(timeout))?;
    let payload = b"netpol-trace probe";
    socket.send(payload)?;
    let mut buf = [0u8; 64];
    match socket.recv(&mut buf) {
        Ok(len) if &buf[..len] == payload => Ok(ProbeOutcome::Allowed),
        Ok(_) => Ok(ProbeOutcome::Refused),
        Err(err) => classify(err),
    }
}

fn classify(err: std::io::Error) -> std::io::Result<ProbeOutcome> {
    match err.kind() {
        ErrorKind::TimedOut | ErrorKind::WouldBlock => Ok(ProbeOutcome::Denied),
        ErrorKind::ConnectionRefused => Ok(ProbeOutcome::Refused),
        // No route / unreachable inside the lab: the packet could not be delivered.
        ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => Ok(ProbeOutcome::Denied),
        _ => Err(err),
    }
}

//! Ports of a rule: protocol (default TCP), a number, a range up to `endPort` (inclusive), or a
//! container port name resolved on the destination pod.

use std::fmt;
use std::str::FromStr;

use k8s_openapi::api::networking::v1::NetworkPolicyPort;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::{Deserialize, Serialize};

use super::error::FieldError;

/// A transport protocol NetworkPolicy can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    /// TCP, the default.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// The API spelling: `TCP`, `UDP`, `SCTP`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::Sctp => "SCTP",
        }
    }

    /// Parses the API spelling (case-sensitive, as the API server does); `None` means TCP.
    pub fn from_api(value: Option<&str>) -> Result<Self, String> {
        match value {
            None | Some("TCP") => Ok(Self::Tcp),
            Some("UDP") => Ok(Self::Udp),
            Some("SCTP") => Ok(Self::Sctp),
            Some(other) => Err(format!("unsupported protocol {other:?} (want TCP, UDP or SCTP)")),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = String;

    /// Case-insensitive, for command lines.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_api(Some(&s.to_ascii_uppercase()))
    }
}

/// A port a container declares (`spec.containers[].ports[]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerPort {
    /// `name`, if any.
    pub name: Option<String>,
    /// `protocol`, default TCP.
    pub protocol: Protocol,
    /// `containerPort`.
    pub port: u16,
}

/// Which ports of a protocol an entry of `ports` allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortMatch {
    /// No `port`: every port of the protocol.
    Any,
    /// `port` (and `endPort`), inclusive; `start == end` for a single port.
    Range {
        /// First port.
        start: u16,
        /// Last port, inclusive.
        end: u16,
    },
    /// A named port, resolved on the destination pod by name and protocol.
    Named(String),
}

/// One validated entry of a rule's `ports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRule {
    /// Protocol (default TCP).
    pub protocol: Protocol,
    /// Port, range or name.
    pub port: PortMatch,
}

impl PortRule {
    /// Validates `entry`; `path` is its field path (e.g. `spec.ingress[0].ports[1]`).
    pub fn compile(entry: &NetworkPolicyPort, path: &str) -> Result<Self, FieldError> {
        let protocol = Protocol::from_api(entry.protocol.as_deref())
            .map_err(|m| FieldError::new(format!("{path}.protocol"), m))?;
        let end_field = format!("{path}.endPort");
        let port = match (&entry.port, entry.end_port) {
            (None, None) => PortMatch::Any,
            (None, Some(_)) => {
                return Err(FieldError::new(end_field, "endPort requires port to be set"));
            }
            (Some(IntOrString::Int(number)), end) => {
                let start =
                    port_number(*number).map_err(|m| FieldError::new(format!("{path}.port"), m))?;
                let end = match end {
                    None => start,
                    Some(end) => {
                        let end = port_number(end).map_err(|m| FieldError::new(&end_field, m))?;
                        if end < start {
                            return Err(FieldError::new(
                                end_field,
                                format!("endPort {end} is below port {start}"),
                            ));
                        }
                        end
                    }
                };
                PortMatch::Range { start, end }
            }
            (Some(IntOrString::String(name)), end) => {
                validate_port_name(name).map_err(|m| FieldError::new(format!("{path}.port"), m))?;
                if end.is_some() {
                    return Err(FieldError::new(
                        end_field,
                        format!("endPort cannot be used with the named port {name:?}"),
                    ));
                }
                PortMatch::Named(name.clone())
            }
        };
        Ok(Self { protocol, port })
    }

    /// Whether a flow to `port`/`protocol` matches. Named ports need the destination pod's
    /// container ports (`None` for a destination outside the known pods, which never matches a
    /// name).
    pub fn matches(
        &self,
        protocol: Protocol,
        port: u16,
        destination: Option<&[ContainerPort]>,
    ) -> bool {
        protocol == self.protocol
            && match &self.port {
                PortMatch::Any => true,
                PortMatch::Range { start, end } => (*start..=*end).contains(&port),
                PortMatch::Named(name) => self.resolve_name(name, destination) == Some(port),
            }
    }

    /// The number `name` stands for on a pod with `destination` ports, for this rule's protocol.
    pub fn resolve_name(&self, name: &str, destination: Option<&[ContainerPort]>) -> Option<u16> {
        destination?
            .iter()
            .find(|c| c.name.as_deref() == Some(name) && c.protocol == self.protocol)
            .map(|c| c.port)
    }
}

impl fmt::Display for PortMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::Range { start, end } if start == end => write!(f, "{start}"),
            Self::Range { start, end } => write!(f, "{start}-{end}"),
            Self::Named(name) => f.write_str(name),
        }
    }
}

fn port_number(value: i32) -> Result<u16, String> {
    u16::try_from(value)
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| format!("port {value} is out of range 1-65535"))
}

/// IANA service name rules, as the API server applies to named ports.
fn validate_port_name(name: &str) -> Result<(), String> {
    let bytes = name.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 15
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.iter().any(u8::is_ascii_lowercase)
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid port name {name:?} (1-15 lowercase letters, digits and single hyphens, with at least one letter)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(
        protocol: Option<&str>,
        port: Option<IntOrString>,
        end: Option<i32>,
    ) -> NetworkPolicyPort {
        NetworkPolicyPort { protocol: protocol.map(String::from), port, end_port: end }
    }

    fn rule(protocol: Option<&str>, port: Option<IntOrString>, end: Option<i32>) -> PortRule {
        PortRule::compile(&entry(protocol, port, end), "ports[0]").unwrap()
    }

    fn num(n: i32) -> Option<IntOrString> {
        Some(IntOrString::Int(n))
    }

    fn name(s: &str) -> Option<IntOrString> {
        Some(IntOrString::String(s.into()))
    }

    #[test]
    fn protocol_defaults_to_tcp_and_port_absent_means_any() {
        let r = rule(None, None, None);
        assert!(r.matches(Protocol::Tcp, 1, None));
        assert!(r.matches(Protocol::Tcp, 65535, None));
        assert!(!r.matches(Protocol::Udp, 80, None));
        let udp = rule(Some("UDP"), None, None);
        assert!(udp.matches(Protocol::Udp, 53, None));
        assert!(!udp.matches(Protocol::Tcp, 53, None));
        assert!(!udp.matches(Protocol::Sctp, 53, None));
    }

    #[test]
    fn end_port_is_inclusive() {
        let r = rule(Some("TCP"), num(32000), Some(32768));
        for (port, want) in
            [(31999, false), (32000, true), (32500, true), (32768, true), (32769, false)]
        {
            assert_eq!(r.matches(Protocol::Tcp, port, None), want, "{port}");
        }
        let single = rule(None, num(80), Some(80));
        assert!(single.matches(Protocol::Tcp, 80, None));
        assert!(!single.matches(Protocol::Tcp, 81, None));
    }

    #[test]
    fn named_ports_resolve_on_destination_by_name_and_protocol() {
        let ports = [
            ContainerPort { name: Some("serve-80-tcp".into()), protocol: Protocol::Tcp, port: 80 },
            ContainerPort { name: Some("serve-81-udp".into()), protocol: Protocol::Udp, port: 81 },
        ];
        let tcp80 = rule(None, name("serve-80-tcp"), None);
        assert!(tcp80.matches(Protocol::Tcp, 80, Some(&ports)));
        assert!(!tcp80.matches(Protocol::Tcp, 81, Some(&ports)));
        assert!(!tcp80.matches(Protocol::Tcp, 80, None), "external destinations have no names");
        assert!(!tcp80.matches(Protocol::Tcp, 80, Some(&[])));
        // The name exists, but for UDP: a TCP rule must not resolve it.
        let udp_name_tcp_rule = rule(Some("TCP"), name("serve-81-udp"), None);
        assert!(!udp_name_tcp_rule.matches(Protocol::Tcp, 81, Some(&ports)));
        let udp81 = rule(Some("UDP"), name("serve-81-udp"), None);
        assert!(udp81.matches(Protocol::Udp, 81, Some(&ports)));
        // A UDP rule naming a TCP port does not match UDP traffic to that number.
        let tcp_name_udp_rule = rule(Some("UDP"), name("serve-80-tcp"), None);
        assert!(!tcp_name_udp_rule.matches(Protocol::Udp, 80, Some(&ports)));
    }

    #[test]
    fn invalid_ports_name_the_field() {
        let err =
            |e: NetworkPolicyPort| PortRule::compile(&e, "spec.ingress[0].ports[1]").unwrap_err();
        let cases = [
            (entry(None, num(0), None), "spec.ingress[0].ports[1].port"),
            (entry(None, num(65536), None), "spec.ingress[0].ports[1].port"),
            (entry(None, num(-1), None), "spec.ingress[0].ports[1].port"),
            (entry(None, num(80), Some(79)), "spec.ingress[0].ports[1].endPort"),
            (entry(None, num(80), Some(65536)), "spec.ingress[0].ports[1].endPort"),
            (entry(None, name("http"), Some(90)), "spec.ingress[0].ports[1].endPort"),
            (entry(None, None, Some(90)), "spec.ingress[0].ports[1].endPort"),
            (entry(Some("tcp"), num(80), None), "spec.ingress[0].ports[1].protocol"),
            (entry(Some("ICMP"), None, None), "spec.ingress[0].ports[1].protocol"),
            (entry(None, name("Http"), None), "spec.ingress[0].ports[1].port"),
            (entry(None, name("80"), None), "spec.ingress[0].ports[1].port"),
            (entry(None, name("a--b"), None), "spec.ingress[0].ports[1].port"),
            (entry(None, name("a-very-long-port-name"), None), "spec.ingress[0].ports[1].port"),
        ];
        for (e, field) in cases {
            assert_eq!(err(e.clone()).field, field, "{e:?}");
        }
        assert!(PortRule::compile(&entry(None, num(65535), Some(65535)), "p").is_ok());
        assert!(PortRule::compile(&entry(None, num(1), None), "p").is_ok());
    }
}

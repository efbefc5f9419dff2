//! A validated NetworkPolicy and the matching rules of networking.k8s.io/v1:
//! a rule allows a flow when one of its peers matches (or it has none) and one of its ports
//! matches (or it has none); peers with both selectors AND them; several peers OR.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::Labels;
use super::ip_block::IpBlock;
use super::port::{ContainerPort, PortRule, Protocol};
use super::selector::Selector;

/// Direction of traffic relative to the pods a policy selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Traffic into the selected pods (`spec.ingress`, peers under `from`).
    Ingress,
    /// Traffic out of the selected pods (`spec.egress`, peers under `to`).
    Egress,
}

impl Direction {
    /// `ingress` / `egress`, the spec field name.
    pub fn spec_field(self) -> &'static str {
        match self {
            Self::Ingress => "ingress",
            Self::Egress => "egress",
        }
    }

    /// `from` / `to`, the peer list field name.
    pub fn peers_field(self) -> &'static str {
        match self {
            Self::Ingress => "from",
            Self::Egress => "to",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.spec_field())
    }
}

/// Whether an `ipBlock` peer matches traffic from or to a pod's IP. The API leaves this to the
/// implementation; the Kubernetes e2e suite expects a match.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum IpBlockPodMode {
    /// ipBlock matches pod IPs like any other address (e2e behaviour).
    #[default]
    MatchesPods,
    /// ipBlock matches only addresses that are not pod IPs.
    NeverMatchesPods,
}

/// The other end of a flow, as a peer is matched against it.
#[derive(Debug, Clone, Copy)]
pub enum PeerIdentity<'a> {
    /// A known pod.
    Pod {
        /// Its namespace.
        namespace: &'a str,
        /// Its namespace's labels.
        namespace_labels: &'a Labels,
        /// Its labels.
        labels: &'a Labels,
        /// The address it uses for this flow, if known.
        ip: Option<IpAddr>,
    },
    /// An address that is not a known pod.
    External(IpAddr),
}

/// One entry of `from` / `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// `podSelector` and/or `namespaceSelector` (ANDed when both are set).
    Pods {
        /// `namespaceSelector`; `None` means the policy's own namespace.
        namespace_selector: Option<Selector>,
        /// `podSelector`; `None` means every pod of the selected namespaces.
        pod_selector: Option<Selector>,
    },
    /// `ipBlock`.
    IpBlock(IpBlock),
}

impl Peer {
    /// Whether this peer matches `identity`, for a policy in `policy_namespace`.
    pub fn matches(
        &self,
        policy_namespace: &str,
        identity: PeerIdentity<'_>,
        mode: IpBlockPodMode,
    ) -> bool {
        match (self, identity) {
            (
                Self::Pods { namespace_selector, pod_selector },
                PeerIdentity::Pod { namespace, namespace_labels, labels, .. },
            ) => {
                let namespace_ok = match namespace_selector {
                    Some(selector) => selector.matches(namespace_labels),
                    None => namespace == policy_namespace,
                };
                namespace_ok && pod_selector.as_ref().is_none_or(|s| s.matches(labels))
            }
            (Self::Pods { .. }, PeerIdentity::External(_)) => false,
            (Self::IpBlock(block), PeerIdentity::External(ip)) => block.contains(ip),
            (Self::IpBlock(block), PeerIdentity::Pod { ip, .. }) => {
                mode == IpBlockPodMode::MatchesPods && ip.is_some_and(|ip| block.contains(ip))
            }
        }
    }
}

/// One entry of `spec.ingress` / `spec.egress`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompiledRule {
    /// `from` / `to`; empty means every source / destination.
    pub peers: Vec<Peer>,
    /// `ports`; empty means every port and protocol.
    pub ports: Vec<PortRule>,
}

impl CompiledRule {
    /// Whether the peer side of the rule matches.
    pub fn peers_match(
        &self,
        policy_namespace: &str,
        identity: PeerIdentity<'_>,
        mode: IpBlockPodMode,
    ) -> bool {
        self.peers.is_empty()
            || self.peers.iter().any(|p| p.matches(policy_namespace, identity, mode))
    }

    /// Whether the port side of the rule matches a flow to `port`/`protocol` whose destination
    /// declares `destination_ports` (`None` when it is not a known pod).
    pub fn ports_match(
        &self,
        protocol: Protocol,
        port: u16,
        destination_ports: Option<&[ContainerPort]>,
    ) -> bool {
        self.ports.is_empty()
            || self.ports.iter().any(|p| p.matches(protocol, port, destination_ports))
    }

    /// Whether the rule allows the flow.
    pub fn allows(
        &self,
        policy_namespace: &str,
        peer: PeerIdentity<'_>,
        protocol: Protocol,
        port: u16,
        destination_ports: Option<&[ContainerPort]>,
        mode: IpBlockPodMode,
    ) -> bool {
        self.peers_match(policy_namespace, peer, mode)
            && self.ports_match(protocol, port, destination_ports)
    }
}

/// A validated NetworkPolicy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledPolicy {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `spec.podSelector` (absent = `{}`): the pods of `namespace` the policy applies to.
    pub pod_selector: Selector,
    /// Ingress rules when the policy's effective `policyTypes` include Ingress, else `None`.
    pub ingress: Option<Vec<CompiledRule>>,
    /// Egress rules when the policy's effective `policyTypes` include Egress, else `None`.
    pub egress: Option<Vec<CompiledRule>>,
}

impl CompiledPolicy {
    /// The rules for `direction`, `None` when the policy does not affect that direction.
    pub fn rules(&self, direction: Direction) -> Option<&[CompiledRule]> {
        match direction {
            Direction::Ingress => self.ingress.as_deref(),
            Direction::Egress => self.egress.as_deref(),
        }
    }

    /// Whether the policy isolates its selected pods in `direction`.
    pub fn affects(&self, direction: Direction) -> bool {
        self.rules(direction).is_some()
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

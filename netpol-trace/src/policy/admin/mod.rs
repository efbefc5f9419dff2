//! ClusterNetworkPolicy (`v1alpha2`, `v1beta1`) and AdminNetworkPolicy /
//! BaselineAdminNetworkPolicy (`v1alpha1`): cluster-scoped policies in an Admin tier evaluated
//! before NetworkPolicies and a Baseline tier evaluated after them. Pure: validation into an
//! [`AdminPolicy`] and how its rules match a flow.
//!
//! * [`model`]: the objects as written (serde).
//! * [`compile`]: validation, with errors naming the field.

pub mod compile;
pub mod model;

use std::net::IpAddr;

use ipnet::IpNet;

use super::kind::{PolicyKind, RuleAction};
use super::port::{ContainerPort, Protocol};
use super::selector::Selector;
use super::{Direction, Labels};

pub use compile::compile_admin_policy;

/// The tier a cluster-scoped policy belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AdminTier {
    /// Before every NetworkPolicy.
    Admin,
    /// After NetworkPolicies, before the default allow.
    Baseline,
}

impl AdminTier {
    /// `Admin` / `Baseline`, as ClusterNetworkPolicy spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "Admin",
            Self::Baseline => "Baseline",
        }
    }
}

/// Which pods a policy applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// Every pod of the namespaces the selector picks.
    Namespaces(Selector),
    /// Pods picked by both selectors.
    Pods {
        /// Over namespace labels.
        namespaces: Selector,
        /// Over pod labels.
        pods: Selector,
    },
}

impl Subject {
    /// Whether a pod with `labels` in a namespace with `namespace_labels` is a subject.
    pub fn matches(&self, namespace_labels: &Labels, labels: &Labels) -> bool {
        match self {
            Self::Namespaces(ns) => ns.matches(namespace_labels),
            Self::Pods { namespaces, pods } => {
                namespaces.matches(namespace_labels) && pods.matches(labels)
            }
        }
    }
}

/// One peer of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminPeer {
    /// Pods of the selected namespaces.
    Namespaces(Selector),
    /// Pods matching both selectors.
    Pods {
        /// Over namespace labels.
        namespaces: Selector,
        /// Over pod labels.
        pods: Selector,
    },
    /// Addresses in any of these CIDRs (pods included).
    Networks(Vec<IpNet>),
    /// Nodes or domain names: addresses this engine cannot know, matched by nothing.
    Unresolvable(&'static str),
}

/// The other end of a flow as an admin peer sees it.
#[derive(Debug, Clone, Copy)]
pub struct PeerView<'a> {
    /// For a pod: its namespace's labels and its labels.
    pub pod: Option<(&'a Labels, &'a Labels)>,
    /// Its address, if known.
    pub ip: Option<IpAddr>,
}

impl AdminPeer {
    /// Whether `peer` matches.
    pub fn matches(&self, peer: PeerView<'_>) -> bool {
        match self {
            Self::Namespaces(ns) => peer.pod.is_some_and(|(nsl, _)| ns.matches(nsl)),
            Self::Pods { namespaces, pods } => {
                peer.pod.is_some_and(|(nsl, l)| namespaces.matches(nsl) && pods.matches(l))
            }
            Self::Networks(nets) => peer.ip.is_some_and(|ip| nets.iter().any(|n| n.contains(&ip))),
            Self::Unresolvable(_) => false,
        }
    }
}

/// One entry of `ports` / `protocols`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminPort {
    /// `start..=end` of `protocol` (a single port has `start == end`).
    Range {
        /// Protocol.
        protocol: Protocol,
        /// First port.
        start: u16,
        /// Last port.
        end: u16,
    },
    /// A container port name of the destination pod, with the protocol it is declared with.
    Named(String),
}

impl AdminPort {
    /// Whether a flow to `port`/`protocol` on a destination declaring `ports` matches.
    pub fn matches(&self, protocol: Protocol, port: u16, ports: Option<&[ContainerPort]>) -> bool {
        match self {
            Self::Range { protocol: p, start, end } => {
                *p == protocol && (*start..=*end).contains(&port)
            }
            Self::Named(name) => ports.is_some_and(|ports| {
                ports.iter().any(|c| {
                    c.name.as_deref() == Some(name) && c.protocol == protocol && c.port == port
                })
            }),
        }
    }
}

impl std::fmt::Display for AdminPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Range { protocol, start, end } if start == end => write!(f, "{protocol}/{start}"),
            Self::Range { protocol, start, end } => write!(f, "{protocol}/{start}-{end}"),
            Self::Named(name) => f.write_str(name),
        }
    }
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminRule {
    /// `name`, if given.
    pub name: Option<String>,
    /// What a match does.
    pub action: RuleAction,
    /// Peers (at least one; any may match).
    pub peers: Vec<AdminPeer>,
    /// Ports; `None` matches every port and protocol.
    pub ports: Option<Vec<AdminPort>>,
}

impl AdminRule {
    /// Whether the peer side matches.
    pub fn peers_match(&self, peer: PeerView<'_>) -> bool {
        self.peers.iter().any(|p| p.matches(peer))
    }

    /// Whether the port side matches.
    pub fn ports_match(
        &self,
        protocol: Protocol,
        port: u16,
        dst: Option<&[ContainerPort]>,
    ) -> bool {
        self.ports.as_ref().is_none_or(|ports| ports.iter().any(|p| p.matches(protocol, port, dst)))
    }
}

/// A validated cluster-scoped policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminPolicy {
    /// ClusterNetworkPolicy, AdminNetworkPolicy or BaselineAdminNetworkPolicy.
    pub kind: PolicyKind,
    /// `metadata.name`.
    pub name: String,
    /// Admin or Baseline.
    pub tier: AdminTier,
    /// `priority` (BaselineAdminNetworkPolicy, which has none, sorts after the others).
    pub priority: u32,
    /// `subject`.
    pub subject: Subject,
    /// `ingress` (empty: the policy does not affect ingress).
    pub ingress: Vec<AdminRule>,
    /// `egress` (empty: the policy does not affect egress).
    pub egress: Vec<AdminRule>,
}

impl AdminPolicy {
    /// The rules of `direction`.
    pub fn rules(&self, direction: Direction) -> &[AdminRule] {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }

    /// Whether it applies to a pod for `direction`: it selects the pod and has rules there.
    pub fn selects(
        &self,
        direction: Direction,
        namespace_labels: &Labels,
        labels: &Labels,
    ) -> bool {
        !self.rules(direction).is_empty() && self.subject.matches(namespace_labels, labels)
    }

    /// Sort key within its tier: priority, then kind and name (ties are undefined upstream; this
    /// keeps the order stable).
    pub fn order_key(&self) -> (u32, PolicyKind, &str) {
        (self.priority, self.kind, &self.name)
    }
}

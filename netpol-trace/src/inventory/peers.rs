//! A rule's peers and ports made concrete: which pods a peer matches, which ipBlocks, and which
//! port ranges a rule opens on a given destination pod (named ports resolved there). This is
//! what a datapath renderer needs, per rule.

use std::collections::BTreeSet;

use super::Inventory;
use super::pods::{PodId, PodInfo};
use super::policies::PolicyId;
use crate::policy::{CompiledRule, Direction, IpBlock, Peer, PortMatch, Protocol, Selector};

/// The peers of one rule, resolved against the inventory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedPeers {
    /// The rule has no `from`/`to`: every source (ingress) or destination (egress), pods and
    /// external addresses alike. `pods` and `ip_blocks` are empty then.
    pub any: bool,
    /// Pods matched by the rule's podSelector/namespaceSelector peers, in id order, no duplicates.
    pub pods: Vec<PodId>,
    /// The rule's ipBlock peers (CIDR and except list).
    pub ip_blocks: Vec<IpBlock>,
}

/// An inclusive range of ports of one protocol (`start == end` for a single port); also the
/// lab's enforcement plan's ranges.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct PortRange {
    /// Protocol.
    pub protocol: Protocol,
    /// First port.
    pub start: u16,
    /// Last port, inclusive.
    pub end: u16,
}

impl PortRange {
    /// A single port.
    pub fn single(protocol: Protocol, port: u16) -> Self {
        Self { protocol, start: port, end: port }
    }
}

/// Ports a rule opens on one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolvedPorts {
    /// The rule has no `ports`: every port of every protocol.
    Any,
    /// These ranges only (empty when every entry is a name the destination lacks).
    Ranges(Vec<PortRange>),
}

impl Inventory {
    /// The peers of rule `rule_index` of `direction` of policy `policy`; `None` if the policy
    /// has no such rule or does not affect that direction.
    pub fn rule_peers(
        &self,
        policy: PolicyId,
        direction: Direction,
        rule_index: usize,
    ) -> Option<ResolvedPeers> {
        let entry = self.policy(policy);
        let rule = entry.compiled.rules(direction)?.get(rule_index)?;
        if rule.peers.is_empty() {
            return Some(ResolvedPeers { any: true, ..ResolvedPeers::default() });
        }
        let mut pods = BTreeSet::new();
        let mut ip_blocks = Vec::new();
        for peer in &rule.peers {
            match peer {
                Peer::IpBlock(block) => ip_blocks.push(block.clone()),
                Peer::Pods { .. } => pods.extend(self.peer_pods(&entry.compiled.namespace, peer)),
            }
        }
        Some(ResolvedPeers { any: false, pods: pods.into_iter().collect(), ip_blocks })
    }

    /// The pods one podSelector/namespaceSelector peer of a policy in `policy_namespace`
    /// matches, in id order (empty for an ipBlock peer).
    pub fn peer_pods(&self, policy_namespace: &str, peer: &Peer) -> Vec<PodId> {
        let Peer::Pods { namespace_selector, pod_selector } = peer else { return Vec::new() };
        let catalog = self.catalog();
        let namespaces = match namespace_selector {
            Some(selector) => catalog.select_namespaces(selector),
            None => catalog.namespace_id(policy_namespace).into_iter().collect(),
        };
        let everything = Selector::default();
        let pod_selector = pod_selector.as_ref().unwrap_or(&everything);
        namespaces.into_iter().flat_map(|ns| catalog.select_pods(ns, pod_selector)).collect()
    }
}

/// The ports `rule` opens on `destination` (`None`: an address that is not a known pod, where
/// named ports never resolve). Ranges are sorted and de-duplicated.
pub fn resolved_ports(rule: &CompiledRule, destination: Option<&PodInfo>) -> ResolvedPorts {
    if rule.ports.is_empty() {
        return ResolvedPorts::Any;
    }
    let container_ports = destination.map(|pod| pod.ports.iter().as_slice());
    let ranges: BTreeSet<PortRange> = rule
        .ports
        .iter()
        .filter_map(|entry| {
            let (start, end) = match &entry.port {
                PortMatch::Any => (1, u16::MAX),
                PortMatch::Range { start, end } => (*start, *end),
                PortMatch::Named(name) => {
                    let port = entry.resolve_name(name, container_ports)?;
                    (port, port)
                }
            };
            Some(PortRange { protocol: entry.protocol, start, end })
        })
        .collect();
    ResolvedPorts::Ranges(ranges.into_iter().collect())
}

//! From NetworkPolicies to an [`EnforcementPlan`]: for every pod of the lab and each direction,
//! the union of the rules of the policies that isolate it, with peers resolved to addresses and
//! ports resolved to numbers. Pure: the policy engine's [`Inventory`] answers every question.
//!
//! * A direction no policy isolates is `None` (open); an isolated one lists one
//!   [`AllowRule`] per rule of every isolating policy (`Some(vec![])`: deny all).
//! * Peers: [`PeerSet::Any`] for a rule without `from`/`to`; otherwise the matched pods' IPs
//!   (/32 or /128) and the ipBlocks with their excepts. An ipBlock that covers a pod IP matches
//!   that pod (the engine's default semantics): the rendered rule matches addresses.
//! * Ports are resolved on the destination. For ingress that is the pod itself. For egress it
//!   is the peer: a named port resolves on each destination pod separately (one rule per group
//!   of pods that agree on the numbers), and matches nothing for external addresses, which
//!   declare no port names; ipBlock and open rules keep their numbered ports for everything.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use super::error::{LabError, Result};
use super::plan::{
    AllowRule, EnforcementPlan, PeerNet, PeerSet, PodPlan, PortRange, PortSet, comment_text,
};
use super::topology::Topology;
use crate::inventory::{Inventory, PodId, PolicyId, ResolvedPeers, ResolvedPorts, resolved_ports};
use crate::policy::{CompiledRule, Direction, PortMatch};

/// The plan that enforces `inventory`'s policies on the pods of `topology`. Every pod of
/// the topology must be in the inventory (same namespace and name); peer pods are addressed by
/// their lab IP, or by the inventory's IPs for a pod the lab does not have. With NetworkPolicies
/// only, each direction is a list of allow rules; with other kinds (admin and baseline tiers,
/// Calico tiers) it is a list of tiers in evaluation order ([`tiered`]). Fails on a rule the
/// packet filter cannot express.
pub fn plan_from_inventory(inventory: &Inventory, topology: &Topology) -> Result<EnforcementPlan> {
    let compiler = Compiler::new(inventory, topology);
    let tiers = !inventory.tiered().is_empty();
    let mut pods = Vec::with_capacity(topology.pods.len());
    for pod in &topology.pods {
        let id = inventory.pod_id(&pod.namespace, &pod.name).ok_or_else(|| {
            LabError::invalid(
                format!("Pod {}", pod.key()),
                "metadata.name",
                "is not in the inventory the enforcement plan is computed from",
            )
        })?;
        let mut plan =
            PodPlan::open(Some(comment_text(&pod.key())), pod.ip, pod.host_iface.clone());
        if tiers {
            plan.ingress_tiers = compiler.direction_tiers(id, Direction::Ingress)?;
            plan.egress_tiers = compiler.direction_tiers(id, Direction::Egress)?;
        } else {
            plan.ingress = compiler.direction_rules(id, Direction::Ingress);
            plan.egress = compiler.direction_rules(id, Direction::Egress);
        }
        pods.push(plan);
    }
    Ok(EnforcementPlan { pods })
}

/// The inventory plus the lab's addresses of its pods.
struct Compiler<'a> {
    inventory: &'a Inventory,
    lab_ips: HashMap<(&'a str, &'a str), IpAddr>,
}

impl<'a> Compiler<'a> {
    fn new(inventory: &'a Inventory, topology: &'a Topology) -> Self {
        let lab_ips =
            topology.pods.iter().map(|p| ((p.namespace.as_str(), p.name.as_str()), p.ip)).collect();
        Self { inventory, lab_ips }
    }

    /// The addresses of pod `id`: its lab IP, else what the inventory knows.
    fn pod_ips(&self, id: PodId) -> Vec<IpAddr> {
        let info = self.inventory.pod(id);
        match self.lab_ips.get(&(info.pod.namespace.as_str(), info.pod.name.as_str())) {
            Some(ip) => vec![*ip],
            None => info.ips.clone(),
        }
    }

    /// `None` when no policy isolates pod `id` in `direction`, else the union of the rules.
    fn direction_rules(&self, id: PodId, direction: Direction) -> Option<Vec<AllowRule>> {
        let policies = self.inventory.isolating_policies(id, direction);
        if policies.is_empty() {
            return None;
        }
        Some(policies.iter().flat_map(|&policy| self.policy_rules(id, policy, direction)).collect())
    }

    /// The allow rules of NetworkPolicy `policy` for pod `id` in `direction`.
    fn policy_rules(&self, id: PodId, policy: PolicyId, direction: Direction) -> Vec<AllowRule> {
        let entry = self.inventory.policy(policy);
        let mut rules = Vec::new();
        for (index, rule) in entry.compiled.rules(direction).unwrap_or_default().iter().enumerate()
        {
            let origin = Some(comment_text(&format!(
                "{} {}[{index}]",
                entry.compiled.key(),
                direction.spec_field()
            )));
            let peers = self.inventory.rule_peers(policy, direction, index).unwrap_or_default();
            match direction {
                Direction::Ingress => rules.push(AllowRule {
                    peers: self.peer_set(&peers),
                    ports: port_set(resolved_ports(rule, Some(self.inventory.pod(id)))),
                    origin,
                }),
                Direction::Egress => rules.extend(self.egress_rules(rule, &peers, origin)),
            }
        }
        rules
    }

    /// Every peer of a rule as addresses: pod IPs as host networks, then the ipBlocks.
    fn peer_set(&self, peers: &ResolvedPeers) -> PeerSet {
        if peers.any {
            return PeerSet::Any;
        }
        let mut nets: Vec<PeerNet> =
            peers.pods.iter().flat_map(|&p| self.pod_ips(p)).map(PeerNet::host).collect();
        nets.extend(
            peers
                .ip_blocks
                .iter()
                .map(|block| PeerNet { net: block.cidr, except: block.except.clone() }),
        );
        PeerSet::Nets(nets)
    }

    /// The allow rules of one egress rule, whose ports resolve on each destination.
    fn egress_rules(
        &self,
        rule: &CompiledRule,
        peers: &ResolvedPeers,
        origin: Option<String>,
    ) -> Vec<AllowRule> {
        let numbered = port_set(resolved_ports(rule, None));
        let named = rule.ports.iter().any(|p| matches!(p.port, PortMatch::Named(_)));
        if !named {
            return vec![AllowRule { peers: self.peer_set(peers), ports: numbered, origin }];
        }
        let mut rules = Vec::new();
        // Addresses that need not be pods (everything, or the ipBlocks) get the numbered ports.
        let external = if peers.any {
            Some(PeerSet::Any)
        } else if peers.ip_blocks.is_empty() {
            None
        } else {
            let blocks = ResolvedPeers { ip_blocks: peers.ip_blocks.clone(), ..Default::default() };
            Some(self.peer_set(&blocks))
        };
        if let Some(external) = external {
            rules.push(AllowRule {
                peers: external,
                ports: numbered.clone(),
                origin: origin.clone(),
            });
        }
        // Pods the rule reaches get their own resolution of the names, grouped by result.
        let mut groups: BTreeMap<PortKey, Vec<PeerNet>> = BTreeMap::new();
        for id in self.inventory.pod_ids() {
            let ips = self.pod_ips(id);
            let by_address = peers.any
                || ips.iter().any(|ip| peers.ip_blocks.iter().any(|block| block.contains(*ip)));
            let selected = peers.pods.binary_search(&id).is_ok();
            if !(by_address || selected) {
                continue;
            }
            let ports = port_set(resolved_ports(rule, Some(self.inventory.pod(id))));
            if by_address && ports == numbered {
                continue;
            }
            groups.entry(PortKey(ports)).or_default().extend(ips.into_iter().map(PeerNet::host));
        }
        for (PortKey(ports), nets) in groups {
            rules.push(AllowRule { peers: PeerSet::Nets(nets), ports, origin: origin.clone() });
        }
        rules
    }
}

/// A [`PortSet`] as a map key (`Any` first, then ranges in order).
#[derive(Debug, Clone, PartialEq, Eq)]
struct PortKey(PortSet);

impl PortKey {
    fn sort_key(&self) -> Option<&[PortRange]> {
        match &self.0 {
            PortSet::Any => None,
            PortSet::Ranges(ranges) => Some(ranges),
        }
    }
}

impl Ord for PortKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.sort_key().cmp(&other.sort_key())
    }
}

impl PartialOrd for PortKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

fn port_set(ports: ResolvedPorts) -> PortSet {
    match ports {
        ResolvedPorts::Any => PortSet::Any,
        ResolvedPorts::Ranges(ranges) => PortSet::Ranges(ranges),
    }
}

mod tiered;

#[cfg(test)]
mod tests;

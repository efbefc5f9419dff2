//! The other policy kinds as tiers of a direction, in the engine's evaluation order
//! ([`stages`]): the admin tier, Calico's tiers (the default one holding the Kubernetes
//! NetworkPolicies at order 1000), the baseline tier. Each tier lists the rules of the policies
//! that apply to the pod, in order, as [`TieredRule`]s resolved to addresses and port numbers;
//! Calico's Log rules are left out (they decide nothing).
//!
//! Rules are resolved with the engine's own matching, pod by pod: a rule's peer side is
//! evaluated for every pod of the inventory (the rule without its port and protocol conditions,
//! so selectors, namespaces, service accounts, nets and `ipVersion` are the engine's), and its
//! destination ports are resolved on the destination (the pod itself for ingress, each peer
//! pod for egress; named ports match nothing on addresses that are not pods). Addresses that
//! are not pods match by network only: a rule's nets (or everything) minus its notNets and
//! minus every pod address, which the per-pod resolution covers.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::{Compiler, PortKey};
use crate::explain::{Stage, Step, applicable_steps, endpoint_view, stages};
use crate::inventory::{AdminEntry, PodId, TierEntry};
use crate::lab::error::{LabError, Result};
use crate::lab::plan::{
    PeerNet, PeerSet, PortRange, PortSet, TierEnd, TierPlan, TieredRule, Verdict, comment_text,
};
use crate::policy::admin::{AdminPort, AdminRule, PeerView};
use crate::policy::calico::entity::{RuleFlow, sides};
use crate::policy::calico::{CalicoPolicy, CalicoPort, CalicoRule, Entity, EntityMatch};
use crate::policy::kind::Misses;
use crate::policy::port::ContainerPort;
use crate::policy::{Direction, Protocol, RuleEffect};

/// The destination ports of one resolution: the ports and the excluded ports.
type Ports = (PortSet, Vec<PortRange>);

impl Compiler<'_> {
    /// The tiers of pod `id` in `direction`, `None` when no policy of any kind applies.
    pub(super) fn direction_tiers(
        &self,
        id: PodId,
        direction: Direction,
    ) -> Result<Option<Vec<TierPlan>>> {
        let mut tiers = Vec::new();
        for stage in stages(self.inventory.tiered()) {
            let tier = match stage {
                Stage::Cluster(entries) => self.cluster_tier(id, direction, entries)?,
                Stage::Calico(tier) => self.calico_tier(id, direction, tier)?,
            };
            tiers.extend(tier);
        }
        Ok((!tiers.is_empty()).then_some(tiers))
    }

    /// An admin or baseline tier: the rules of the policies selecting the pod, by priority.
    fn cluster_tier(
        &self,
        id: PodId,
        direction: Direction,
        entries: &[AdminEntry],
    ) -> Result<Option<TierPlan>> {
        let ns_labels = self.inventory.namespace_labels_of(id);
        let labels = &self.inventory.pod(id).labels;
        let mut selecting = entries
            .iter()
            .map(|e| &e.policy)
            .filter(|p| p.selects(direction, ns_labels, labels))
            .peekable();
        let Some(first) = selecting.peek() else { return Ok(None) };
        let tier = first.tier.as_str().to_owned();
        let mut rules = Vec::new();
        for policy in selecting {
            for (index, rule) in policy.rules(direction).iter().enumerate() {
                let origin =
                    format!("{} {} {}[{index}]", policy.kind, policy.name, direction.spec_field());
                rules.extend(self.admin_rule(id, direction, rule, &origin)?);
            }
        }
        Ok(Some(TierPlan { tier, rules, end: TierEnd::Next, end_origin: None }))
    }

    fn admin_rule(
        &self,
        id: PodId,
        direction: Direction,
        rule: &AdminRule,
        origin: &str,
    ) -> Result<Vec<TieredRule>> {
        let action = verdict(rule.action.effect, origin)?;
        let ports_on = |destination: Option<&[ContainerPort]>| -> Ports {
            let ports = match &rule.ports {
                None => PortSet::Any,
                Some(list) => PortSet::Ranges(
                    list.iter().flat_map(|p| admin_port_ranges(p, destination)).collect(),
                ),
            };
            (ports, Vec::new())
        };
        let pod_matches = |peer: PodId, ip: IpAddr| {
            let view = PeerView {
                pod: Some((
                    self.inventory.namespace_labels_of(peer),
                    &self.inventory.pod(peer).labels,
                )),
                ip: Some(ip),
            };
            rule.peers_match(view)
        };
        let networks: Vec<IpNet> = rule
            .peers
            .iter()
            .flat_map(|p| match p {
                crate::policy::admin::AdminPeer::Networks(nets) => nets.clone(),
                _ => Vec::new(),
            })
            .collect();
        let external = (!networks.is_empty()).then(|| self.external_nets(&networks, &[], None));
        Ok(self.resolve(id, direction, pod_matches, external, ports_on, |ports| {
            TieredRule::new(action, PeerSet::Any, ports.0, Some(comment_text(origin)))
        }))
    }

    /// A Calico tier (with the Kubernetes NetworkPolicies in the default one).
    fn calico_tier(
        &self,
        id: PodId,
        direction: Direction,
        tier: &TierEntry,
    ) -> Result<Option<TierPlan>> {
        let steps = applicable_steps(self.inventory, tier, id, direction);
        let Some(&last) = steps.last() else { return Ok(None) };
        let mut rules = Vec::new();
        for &step in &steps {
            match step {
                Step::Kube(policy) => {
                    rules.extend(
                        self.policy_rules(id, policy, direction)
                            .into_iter()
                            .map(|r| TieredRule::new(Verdict::Allow, r.peers, r.ports, r.origin)),
                    );
                }
                Step::Calico(calico) => {
                    let policy = &self.inventory.tiered().calico_policy(calico).policy;
                    for (index, rule) in
                        policy.rules(direction).unwrap_or_default().iter().enumerate()
                    {
                        let origin = format!(
                            "{} {} {}[{index}]",
                            calico_kind(policy),
                            policy.sort_name(),
                            direction.spec_field()
                        );
                        rules.extend(self.calico_rule(id, direction, rule, &origin)?);
                    }
                }
            }
        }
        let end = if tier.tier.pass_at_end { TierEnd::Next } else { TierEnd::Drop };
        let end_origin = Some(comment_text(&self.step_name(last)));
        Ok(Some(TierPlan { tier: comment_text(&tier.tier.name), rules, end, end_origin }))
    }

    fn step_name(&self, step: Step) -> String {
        match step {
            Step::Kube(policy) => {
                format!("NetworkPolicy {}", self.inventory.policy(policy).compiled.key())
            }
            Step::Calico(calico) => {
                let policy = &self.inventory.tiered().calico_policy(calico).policy;
                format!("{} {}", calico_kind(policy), policy.sort_name())
            }
        }
    }

    fn calico_rule(
        &self,
        id: PodId,
        direction: Direction,
        rule: &CalicoRule,
        origin: &str,
    ) -> Result<Vec<TieredRule>> {
        if rule.action.effect == RuleEffect::Log {
            return Ok(Vec::new());
        }
        let action = verdict(rule.action.effect, origin)?;
        // What the engine never matches: an HTTP match, a Service destination, source ports
        // (the source port of a connection is ephemeral).
        if rule.http
            || rule.source.services
            || rule.destination.services
            || !rule.source.ports.is_empty()
        {
            return Ok(Vec::new());
        }
        let protocol = rule.protocol.map(|number| (number, port_protocol(number)));
        if protocol.is_some_and(|(_, p)| p.is_none())
            && !(rule.destination.ports.is_empty() && rule.destination.not_ports.is_empty())
        {
            return Err(LabError::invalid(
                comment_text(origin),
                "protocol",
                format!(
                    "ports of IP protocol {} cannot be rendered (the lab renders ports of TCP, UDP and SCTP)",
                    rule.protocol.unwrap_or_default()
                ),
            ));
        }
        let ports_of = protocol.and_then(|(_, p)| p);
        let ports_on = |destination: Option<&[ContainerPort]>| -> Ports {
            let resolve = |list: &[CalicoPort]| -> Vec<PortRange> {
                let Some(protocol) = ports_of else { return Vec::new() };
                list.iter().flat_map(|p| calico_port_ranges(p, protocol, destination)).collect()
            };
            let ports = if rule.destination.ports.is_empty() {
                PortSet::Any
            } else {
                PortSet::Ranges(resolve(&rule.destination.ports))
            };
            (ports, resolve(&rule.destination.not_ports))
        };
        let stripped = without_ports(rule);
        let local = self.local_entity(id);
        let pod_matches = |peer: PodId, ip: IpAddr| {
            let peer_entity = Entity {
                pod: Some(endpoint_view(self.inventory, peer)),
                ip: Some(ip),
                ports: Some(&self.inventory.pod(peer).ports),
            };
            let (src, dst) = sides(direction, local, peer_entity);
            stripped.check(&RuleFlow { src, dst, port: 1, protocol: Protocol::Tcp }, Misses(None))
        };
        let peer_side = match direction {
            Direction::Ingress => &rule.source,
            Direction::Egress => &rule.destination,
        };
        let external =
            self.calico_external(direction, &stripped, local, peer_side, rule.ip_version);
        let (number, not_protocol) = (protocol.map(|(n, _)| n), rule.not_protocol);
        Ok(self.resolve(id, direction, pod_matches, external, ports_on, |(ports, not_ports)| {
            TieredRule {
                action,
                peers: PeerSet::Any,
                protocol: number,
                not_protocol,
                ports,
                not_ports,
                origin: Some(comment_text(origin)),
            }
        }))
    }

    /// The addresses that are not pods a Calico rule's peer side matches, if the local side
    /// matches the pod itself.
    fn calico_external(
        &self,
        direction: Direction,
        stripped: &CalicoRule,
        local: Entity<'_>,
        peer_side: &EntityMatch,
        ip_version: Option<u8>,
    ) -> Option<Vec<PeerNet>> {
        if requires_pod(peer_side) {
            return None;
        }
        // The local side alone: the peer side emptied, the peer without address.
        let mut local_only = stripped.clone();
        match direction {
            Direction::Ingress => local_only.source = EntityMatch::default(),
            Direction::Egress => local_only.destination = EntityMatch::default(),
        }
        local_only.ip_version = None;
        let nobody = Entity { pod: None, ip: None, ports: None };
        let (src, dst) = sides(direction, local, nobody);
        if !local_only.check(&RuleFlow { src, dst, port: 1, protocol: Protocol::Tcp }, Misses(None))
        {
            return None;
        }
        let family = ip_version.or_else(|| local.ip.map(|ip| if ip.is_ipv4() { 4 } else { 6 }));
        Some(self.external_nets(&peer_side.nets, &peer_side.not_nets, family))
    }

    fn local_entity(&self, id: PodId) -> Entity<'_> {
        Entity {
            pod: Some(endpoint_view(self.inventory, id)),
            ip: self.pod_ips(id).first().copied(),
            ports: Some(&self.inventory.pod(id).ports),
        }
    }

    /// `nets` (every address of `family`, or of both families, when empty) minus `not_nets`
    /// and minus the address of every pod.
    fn external_nets(
        &self,
        nets: &[IpNet],
        not_nets: &[IpNet],
        family: Option<u8>,
    ) -> Vec<PeerNet> {
        let everything: Vec<IpNet> = ["0.0.0.0/0", "::/0"]
            .iter()
            .filter_map(|n| n.parse::<IpNet>().ok())
            .filter(|n| family.is_none_or(|f| (f == 4) == matches!(n, IpNet::V4(_))))
            .collect();
        let nets = if nets.is_empty() { everything } else { nets.to_vec() };
        let pods: Vec<IpNet> =
            self.inventory.pod_ids().flat_map(|p| self.pod_ips(p)).map(IpNet::from).collect();
        nets.into_iter()
            .filter(|net| family.is_none_or(|f| (f == 4) == matches!(net, IpNet::V4(_))))
            .filter(|net| !not_nets.iter().any(|n| n.contains(net)))
            .map(|net| {
                let mut except: Vec<IpNet> = not_nets
                    .iter()
                    .chain(&pods)
                    .filter(|n| net.contains(*n) && **n != net)
                    .copied()
                    .collect();
                except.sort();
                except.dedup();
                PeerNet { net, except }
            })
            .filter(|peer| !pods.contains(&peer.net))
            .collect()
    }

    /// The rules of one source rule: its peer pods grouped by their destination ports, then
    /// the addresses that are not pods.
    fn resolve(
        &self,
        id: PodId,
        direction: Direction,
        pod_matches: impl Fn(PodId, IpAddr) -> bool,
        external: Option<Vec<PeerNet>>,
        ports_on: impl Fn(Option<&[ContainerPort]>) -> Ports,
        make: impl Fn(Ports) -> TieredRule,
    ) -> Vec<TieredRule> {
        let local_ports = match direction {
            Direction::Ingress => Some(&self.inventory.pod(id).ports[..]),
            Direction::Egress => None,
        };
        let mut groups: BTreeMap<(PortKey, Vec<PortRange>), Vec<PeerNet>> = BTreeMap::new();
        for peer in self.inventory.pod_ids() {
            let destination = local_ports.or(Some(&self.inventory.pod(peer).ports[..]));
            for ip in self.pod_ips(peer) {
                if pod_matches(peer, ip) {
                    let (ports, not_ports) = ports_on(destination);
                    groups.entry((PortKey(ports), not_ports)).or_default().push(PeerNet::host(ip));
                }
            }
        }
        let mut rules: Vec<TieredRule> = groups
            .into_iter()
            .map(|((PortKey(ports), not_ports), mut nets)| {
                nets.sort_by_key(|n| n.net);
                TieredRule { peers: PeerSet::Nets(nets), ..make((ports, not_ports)) }
            })
            .collect();
        if let Some(nets) = external.filter(|nets| !nets.is_empty()) {
            rules.push(TieredRule { peers: PeerSet::Nets(nets), ..make(ports_on(local_ports)) });
        }
        rules
    }
}

/// The plan's verdict of a deciding action.
fn verdict(effect: RuleEffect, origin: &str) -> Result<Verdict> {
    match effect {
        RuleEffect::Allow => Ok(Verdict::Allow),
        RuleEffect::Deny => Ok(Verdict::Deny),
        RuleEffect::Pass => Ok(Verdict::Pass),
        RuleEffect::Log => Err(LabError::invalid(
            comment_text(origin),
            "action",
            "Log decides nothing and has no verdict",
        )),
    }
}

/// `NetworkPolicy` of Calico or `GlobalNetworkPolicy`, as comments name them.
fn calico_kind(policy: &CalicoPolicy) -> &'static str {
    if policy.namespace.is_some() { "projectcalico NetworkPolicy" } else { "GlobalNetworkPolicy" }
}

/// The transport protocol whose ports the lab renders, for an IP protocol number.
fn port_protocol(number: u8) -> Option<Protocol> {
    match number {
        6 => Some(Protocol::Tcp),
        17 => Some(Protocol::Udp),
        132 => Some(Protocol::Sctp),
        _ => None,
    }
}

/// The rule without its port and protocol conditions (its peers, namespaces, service
/// accounts, nets and `ipVersion` stay).
fn without_ports(rule: &CalicoRule) -> CalicoRule {
    let mut stripped = rule.clone();
    stripped.protocol = None;
    stripped.not_protocol = None;
    for side in [&mut stripped.source, &mut stripped.destination] {
        side.ports.clear();
        side.not_ports.clear();
    }
    stripped
}

/// Whether a Calico entity only matches pods (the engine's rule: a `selector` or
/// `serviceAccounts`, or any selector with a namespace scope).
fn requires_pod(side: &EntityMatch) -> bool {
    let scoped = side.namespace_selector.is_some() || side.own_namespace.is_some();
    let any_selector = side.selector.is_some()
        || side.service_accounts.is_some()
        || side.not_selector.is_some()
        || side.namespace_selector.is_some();
    (scoped && any_selector) || side.selector.is_some() || side.service_accounts.is_some()
}

fn admin_port_ranges(port: &AdminPort, destination: Option<&[ContainerPort]>) -> Vec<PortRange> {
    match port {
        AdminPort::Range { protocol, start, end } => {
            nonzero(PortRange { protocol: *protocol, start: *start, end: *end })
        }
        AdminPort::Named(name) => named(name, None, destination),
    }
}

fn calico_port_ranges(
    port: &CalicoPort,
    protocol: Protocol,
    destination: Option<&[ContainerPort]>,
) -> Vec<PortRange> {
    match port {
        CalicoPort::Range(start, end) => nonzero(PortRange { protocol, start: *start, end: *end }),
        CalicoPort::Named(name) => named(name, Some(protocol), destination),
    }
}

/// A range without port 0 (no connection uses it; nft ranges start at 1 here).
fn nonzero(range: PortRange) -> Vec<PortRange> {
    if range.end == 0 {
        return Vec::new();
    }
    vec![PortRange { start: range.start.max(1), ..range }]
}

/// The numbers of container port `name` on `destination` (of `protocol`, when given).
fn named(
    name: &str,
    protocol: Option<Protocol>,
    destination: Option<&[ContainerPort]>,
) -> Vec<PortRange> {
    destination
        .unwrap_or_default()
        .iter()
        .filter(|c| c.name.as_deref() == Some(name) && protocol.is_none_or(|p| p == c.protocol))
        .map(|c| PortRange::single(c.protocol, c.port))
        .collect()
}

#[cfg(test)]
mod tests;

//! Near-miss analysis of a rule that does not match: the closest peer's failing conditions and
//! the closest port entry's, each as a field path with what it wants and what the flow has.

use super::{Mismatch, RuleContext};
use crate::flow::FlowEndpoint;
use crate::policy::{
    CompiledRule, IpBlock, IpBlockPodMode, Labels, Operator, Peer, PeerIdentity, PortMatch,
    PortRule, Requirement, RequirementOrigin, Selector,
};

impl RuleContext<'_> {
    /// Mismatches of a rule that does not allow the flow (empty lists on a side that matches).
    pub(super) fn mismatches(&self, policy_namespace: &str, rule: &CompiledRule) -> Vec<Mismatch> {
        let mut out = Vec::new();
        if !rule.peers_match(policy_namespace, self.peer(), self.mode) {
            let closest = rule
                .peers
                .iter()
                .enumerate()
                .map(|(index, peer)| self.peer_mismatches(policy_namespace, index, peer))
                .min_by_key(Vec::len);
            out.extend(closest.unwrap_or_default());
        }
        let ports = self.destination().map(|pod| pod.ports.iter().as_slice());
        if !rule.ports_match(self.flow.protocol, self.flow.port, ports) {
            let closest = rule
                .ports
                .iter()
                .enumerate()
                .map(|(index, entry)| self.port_mismatches(index, entry))
                .min_by_key(Vec::len);
            out.extend(closest.unwrap_or_default());
        }
        out
    }

    fn peer_description(&self) -> String {
        match self.peer_end {
            FlowEndpoint::Pod { id, ip: Some(ip) } => {
                format!("pod {} ({ip})", self.inventory.pod(id).pod)
            }
            FlowEndpoint::Pod { id, ip: None } => format!("pod {}", self.inventory.pod(id).pod),
            FlowEndpoint::External { ip } => format!("{ip} (not a known pod)"),
        }
    }

    fn peer_mismatches(&self, policy_namespace: &str, index: usize, peer: &Peer) -> Vec<Mismatch> {
        let prefix = format!("{}[{index}]", self.direction.peers_field());
        match (peer, self.peer()) {
            (
                Peer::Pods { namespace_selector, pod_selector },
                PeerIdentity::Pod { namespace, namespace_labels, labels, .. },
            ) => {
                let mut out = Vec::new();
                match namespace_selector {
                    None if namespace != policy_namespace => out.push(Mismatch {
                        field: format!("{prefix}.namespaceSelector"),
                        want: format!(
                            "namespace {policy_namespace} (no namespaceSelector: only pods of the policy's namespace match)"
                        ),
                        got: namespace.to_owned(),
                    }),
                    None => {}
                    Some(selector) => out.extend(selector_mismatches(&format!("{prefix}.namespaceSelector"), selector, namespace_labels)),
                }
                if let Some(selector) = pod_selector {
                    out.extend(selector_mismatches(
                        &format!("{prefix}.podSelector"),
                        selector,
                        labels,
                    ));
                }
                out
            }
            (Peer::Pods { namespace_selector, pod_selector }, PeerIdentity::External(_)) => {
                let describe =
                    |s: &Option<Selector>| s.as_ref().map_or("any".to_owned(), ToString::to_string);
                vec![Mismatch {
                    field: prefix,
                    want: format!(
                        "a pod (podSelector {}, namespaceSelector {})",
                        describe(pod_selector),
                        namespace_selector.as_ref().map_or(
                            format!("none: namespace {policy_namespace}"),
                            ToString::to_string
                        )
                    ),
                    got: self.peer_description(),
                }]
            }
            (Peer::IpBlock(block), PeerIdentity::Pod { .. })
                if self.mode == IpBlockPodMode::NeverMatchesPods =>
            {
                vec![Mismatch {
                    field: format!("{prefix}.ipBlock"),
                    want: format!(
                        "an address in {block} that is not a pod's (ipBlock does not match pod IPs in this mode)"
                    ),
                    got: self.peer_description(),
                }]
            }
            (Peer::IpBlock(block), PeerIdentity::Pod { ip: None, .. }) => vec![Mismatch {
                field: format!("{prefix}.ipBlock.cidr"),
                want: block.cidr.to_string(),
                got: format!("{} (no IP)", self.peer_description()),
            }],
            (
                Peer::IpBlock(block),
                PeerIdentity::Pod { ip: Some(ip), .. } | PeerIdentity::External(ip),
            ) => ip_block_mismatches(&prefix, block, ip),
        }
    }

    fn port_mismatches(&self, index: usize, entry: &PortRule) -> Vec<Mismatch> {
        let prefix = format!("ports[{index}]");
        let mut out = Vec::new();
        let (protocol, port) = (self.flow.protocol, self.flow.port);
        if entry.protocol != protocol {
            out.push(Mismatch {
                field: format!("{prefix}.protocol"),
                want: entry.protocol.to_string(),
                got: protocol.to_string(),
            });
        }
        let destination = self.destination();
        match &entry.port {
            PortMatch::Any => {}
            PortMatch::Range { start, end } if (*start..=*end).contains(&port) => {}
            PortMatch::Range { start, end } => out.push(Mismatch {
                field: format!(
                    "{prefix}.{}",
                    if port > *end && start != end { "endPort" } else { "port" }
                ),
                want: entry.port.to_string(),
                got: port.to_string(),
            }),
            PortMatch::Named(name) => {
                let resolved =
                    entry.resolve_name(name, destination.map(|pod| pod.ports.iter().as_slice()));
                let want = match (resolved, destination) {
                    (Some(number), _) if number == port => None,
                    (Some(number), Some(pod)) => {
                        Some(format!("{name} (= {number} on {})", pod.pod))
                    }
                    (_, Some(pod)) => Some(format!(
                        "{name} (no {} container port of that name on {})",
                        entry.protocol, pod.pod
                    )),
                    (_, None) => {
                        Some(format!("{name} (a named port only matches pods that declare it)"))
                    }
                };
                if let Some(want) = want {
                    out.push(Mismatch {
                        field: format!("{prefix}.port"),
                        want,
                        got: port.to_string(),
                    });
                }
            }
        }
        out
    }
}

fn selector_mismatches(prefix: &str, selector: &Selector, labels: &Labels) -> Vec<Mismatch> {
    selector
        .unmet(labels)
        .map(|requirement| Mismatch {
            field: format!("{prefix}.{}", requirement.field()),
            want: requirement.want(),
            got: got_label(requirement, labels),
        })
        .collect()
}

fn got_label(requirement: &Requirement, labels: &Labels) -> String {
    match (labels.get(&requirement.key), requirement.origin) {
        (None, _) => format!("(no label {})", requirement.key),
        (Some(value), RequirementOrigin::MatchLabels) => value.clone(),
        (Some(value), RequirementOrigin::MatchExpression(_)) => match requirement.operator {
            Operator::DoesNotExist => format!("{}={value} (label present)", requirement.key),
            _ => format!("{}={value}", requirement.key),
        },
    }
}

fn ip_block_mismatches(prefix: &str, block: &IpBlock, ip: std::net::IpAddr) -> Vec<Mismatch> {
    if !block.cidr.contains(&ip) {
        return vec![Mismatch {
            field: format!("{prefix}.ipBlock.cidr"),
            want: block.cidr.to_string(),
            got: ip.to_string(),
        }];
    }
    match block.excepted_by(ip) {
        Some((index, except)) => vec![Mismatch {
            field: format!("{prefix}.ipBlock.except[{index}]"),
            want: format!("an address outside {except}"),
            got: ip.to_string(),
        }],
        None => Vec::new(),
    }
}

//! What the denying policies say about the flow beyond "no rule matches": a deliberate `except`
//! (which stops the fix), and likely mistakes worth a look (a port one keystroke away, a named
//! port the destination lacks, a protocol mix-up, a podSelector without namespaceSelector, a
//! policy with no rules). Hints are only pointed out: patches never remove anything.

use serde::{Deserialize, Serialize};

use super::error::FixError;
use crate::explain::ExplainOptions;
use crate::flow::{Flow, FlowEndpoint};
use crate::inventory::{Inventory, PodId, PodInfo};
use crate::policy::{
    CompiledRule, Direction, IpBlockPodMode, Peer, PeerIdentity, PortMatch, PortRule,
};

/// A remark about a policy that denies the flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hint {
    /// `namespace/name` of the policy it is about.
    pub policy: String,
    /// The remark, e.g. `rule 0 allows 3307; the destination declares 3306 (mysql) — a typo?`.
    pub message: String,
}

/// The end that rules of `direction` match against: the source for ingress, the destination
/// for egress.
pub fn peer_end(flow: &Flow, direction: Direction) -> FlowEndpoint {
    match direction {
        Direction::Ingress => flow.src,
        Direction::Egress => flow.dst,
    }
}

/// The end whose policies are evaluated for `direction`.
pub fn subject_end(flow: &Flow, direction: Direction) -> FlowEndpoint {
    match direction {
        Direction::Ingress => flow.dst,
        Direction::Egress => flow.src,
    }
}

fn identity(inventory: &Inventory, end: FlowEndpoint) -> PeerIdentity<'_> {
    match end {
        FlowEndpoint::Pod { id, ip } => {
            let pod = inventory.pod(id);
            PeerIdentity::Pod {
                namespace: &pod.pod.namespace,
                namespace_labels: inventory.namespace_labels_of(id),
                labels: &pod.labels,
                ip,
            }
        }
        FlowEndpoint::External { ip } => PeerIdentity::External(ip),
    }
}

/// An `except` of a rule (of a policy isolating `subject` for `direction`) that would allow the
/// flow but for that except.
pub fn deliberate_except(
    inventory: &Inventory,
    flow: &Flow,
    subject: PodId,
    direction: Direction,
    options: &ExplainOptions,
) -> Option<FixError> {
    let peer = peer_end(flow, direction);
    let ip = match peer {
        FlowEndpoint::External { ip } => ip,
        FlowEndpoint::Pod { ip: Some(ip), .. }
            if options.ip_block_pod_mode == IpBlockPodMode::MatchesPods =>
        {
            ip
        }
        FlowEndpoint::Pod { .. } => return None,
    };
    let destination_ports = flow.dst.pod().map(|id| inventory.pod(id).ports.iter().as_slice());
    for &id in inventory.isolating_policies(subject, direction) {
        let policy = &inventory.policy(id).compiled;
        for (index, rule) in policy.rules(direction).unwrap_or_default().iter().enumerate() {
            if !rule.ports_match(flow.protocol, flow.port, destination_ports) {
                continue;
            }
            for entry in &rule.peers {
                let Peer::IpBlock(block) = entry else { continue };
                if !block.cidr.contains(&ip) {
                    continue;
                }
                if let Some((_, except)) = block.excepted_by(ip) {
                    let endpoint = match peer.pod() {
                        Some(pod) => format!("{} ({ip})", inventory.pod(pod).pod),
                        None => ip.to_string(),
                    };
                    return Some(FixError::DeliberateExcept {
                        endpoint,
                        except: except.to_string(),
                        policy: policy.key(),
                        direction,
                        rule: index,
                    });
                }
            }
        }
    }
    None
}

/// Remarks about the policies isolating `subject` for `direction` that deny the flow.
pub fn hints(
    inventory: &Inventory,
    flow: &Flow,
    subject: PodId,
    direction: Direction,
    options: &ExplainOptions,
) -> Vec<Hint> {
    let peer = identity(inventory, peer_end(flow, direction));
    let destination = flow.dst.pod().map(|id| inventory.pod(id));
    let mut out = Vec::new();
    for &id in inventory.isolating_policies(subject, direction) {
        let policy = &inventory.policy(id).compiled;
        let rules = policy.rules(direction).unwrap_or_default();
        let mut push = |message: String| out.push(Hint { policy: policy.key(), message });
        if rules.is_empty() {
            push(format!(
                "it has no {direction} rules: it denies all {direction} of the pods it selects"
            ));
        }
        for (index, rule) in rules.iter().enumerate() {
            let ports = destination.map(|pod| pod.ports.iter().as_slice());
            let peers_ok = rule.peers_match(&policy.namespace, peer, options.ip_block_pod_mode);
            let ports_ok = rule.ports_match(flow.protocol, flow.port, ports);
            if peers_ok && !ports_ok {
                for entry in &rule.ports {
                    if let Some(message) = port_hint(index, entry, flow, destination) {
                        push(message);
                    }
                }
            }
            if ports_ok
                && !peers_ok
                && let Some(message) = namespace_hint(index, rule, &policy.namespace, peer)
            {
                push(message);
            }
        }
    }
    out
}

fn port_hint(
    index: usize,
    entry: &PortRule,
    flow: &Flow,
    destination: Option<&PodInfo>,
) -> Option<String> {
    let port = flow.port;
    let declared = destination
        .and_then(|pod| pod.ports.iter().find(|p| p.port == port && p.protocol == flow.protocol));
    let declares = match declared {
        Some(p) => match &p.name {
            Some(name) => format!("the destination declares {port} ({name})"),
            None => format!("the destination declares {port}"),
        },
        None => format!("the flow goes to {port}"),
    };
    if entry.protocol != flow.protocol {
        let same_port = match &entry.port {
            PortMatch::Any => true,
            PortMatch::Range { start, end } => (*start..=*end).contains(&port),
            PortMatch::Named(_) => false,
        };
        return same_port.then(|| {
            format!(
                "rule {index} allows {} over {}; the flow is {}",
                entry.port, entry.protocol, flow.protocol
            )
        });
    }
    match &entry.port {
        PortMatch::Range { start, end } if start == end && looks_like_typo(*start, port) => {
            Some(format!("rule {index} allows {start}; {declares} — a typo?"))
        }
        PortMatch::Range { start, end }
            if start != end
                && (port == end.saturating_add(1) || port.saturating_add(1) == *start) =>
        {
            Some(format!("rule {index} allows {start}-{end}; {port} is just outside — off by one?"))
        }
        PortMatch::Named(name) => {
            let pod = destination?;
            if pod
                .ports
                .iter()
                .any(|p| p.name.as_deref() == Some(name) && p.protocol == entry.protocol)
            {
                return None;
            }
            let declared_name = declared.and_then(|p| p.name.as_deref());
            Some(match declared_name {
                Some(actual) => format!(
                    "rule {index} allows port {name}, which {} does not declare; it calls {port} {actual} — a typo?",
                    pod.pod
                ),
                None => format!(
                    "rule {index} allows port {name}, which {} does not declare for {}",
                    pod.pod, entry.protocol
                ),
            })
        }
        _ => None,
    }
}

fn namespace_hint(
    index: usize,
    rule: &CompiledRule,
    policy_namespace: &str,
    peer: PeerIdentity<'_>,
) -> Option<String> {
    let PeerIdentity::Pod { namespace, labels, .. } = peer else { return None };
    if namespace == policy_namespace {
        return None;
    }
    rule.peers.iter().find_map(|entry| match entry {
        Peer::Pods { namespace_selector: None, pod_selector: Some(selector) }
            if selector.matches(labels) =>
        {
            Some(format!(
                "rule {index} selects pods {selector} without a namespaceSelector, so only in \
                 {policy_namespace}; the source is in {namespace}"
            ))
        }
        _ => None,
    })
}

/// Two port numbers one keystroke apart: off by one, one digit different, or two adjacent
/// digits swapped.
pub fn looks_like_typo(a: u16, b: u16) -> bool {
    if a == b {
        return false;
    }
    if a.abs_diff(b) == 1 {
        return true;
    }
    let (x, y) = (a.to_string().into_bytes(), b.to_string().into_bytes());
    if x.len() != y.len() {
        return false;
    }
    let diffs: Vec<usize> = (0..x.len()).filter(|&i| x[i] != y[i]).collect();
    match diffs.as_slice() {
        [_] => true,
        [i, j] => *j == i + 1 && x[*i] == y[*j] && x[*j] == y[*i],
        _ => false,
    }
}

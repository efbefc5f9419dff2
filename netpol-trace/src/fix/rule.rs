//! The pieces of an added rule, as JSON for the object (peer, port, rule), and whether an
//! existing rule already names exactly the peer so that adding a port to it is safe.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Map, Value, json};

use super::plan::{FLOW_ANNOTATION, MANAGED_BY_LABEL};
use super::workload::Workload;
use crate::flow::Flow;
use crate::inventory::{Inventory, NAMESPACE_NAME_LABEL, PodId, PodInfo};
use crate::policy::{CompiledPolicy, CompiledRule, Direction, Peer, PortMatch};

/// Who the added rule lets in (ingress) or out to (egress).
#[derive(Debug, Clone, Copy)]
pub enum RulePeer<'a> {
    /// A workload, and the pod of the flow in it.
    Workload(&'a Workload, PodId),
    /// An address outside the known pods.
    Address(IpAddr),
}

impl RulePeer<'_> {
    /// `app=web in app`, `203.0.113.9/32`.
    pub fn describe(&self) -> String {
        match self {
            Self::Workload(workload, _) => {
                format!("pods {} in {}", workload.describe_selector(), workload.namespace)
            }
            Self::Address(ip) => IpNet::from(*ip).to_string(),
        }
    }
}

/// How the added port is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortForm {
    /// By number.
    Number,
    /// By the destination's container port name.
    Name,
}

/// The peer entry for a rule of a policy in `policy_namespace`: the workload's selector (with a
/// namespaceSelector on `kubernetes.io/metadata.name` when the namespace differs), or an ipBlock
/// of the single address.
pub fn peer_value(peer: RulePeer<'_>, policy_namespace: &str) -> Value {
    match peer {
        RulePeer::Workload(workload, _) => {
            let mut entry = Map::new();
            if workload.namespace != policy_namespace {
                entry.insert(
                    "namespaceSelector".into(),
                    json!({"matchLabels": {NAMESPACE_NAME_LABEL: workload.namespace}}),
                );
            }
            entry.insert("podSelector".into(), json!({"matchLabels": workload.selector}));
            Value::Object(entry)
        }
        RulePeer::Address(ip) => json!({"ipBlock": {"cidr": IpNet::from(ip).to_string()}}),
    }
}

/// The port entry for `flow`: the destination's container port name when `form` asks for it and
/// the destination declares one for this number and protocol, else the number; the protocol is
/// always explicit. Returns the form actually used.
pub fn port_value(flow: &Flow, destination: Option<&PodInfo>, form: PortForm) -> (Value, PortForm) {
    let name = destination.and_then(|pod| declared_name(pod, flow));
    match (form, name) {
        (PortForm::Name, Some(name)) => {
            (json!({"protocol": flow.protocol.as_str(), "port": name}), PortForm::Name)
        }
        _ => (json!({"protocol": flow.protocol.as_str(), "port": flow.port}), PortForm::Number),
    }
}

/// The name `destination` gives the flow's port and protocol, if any.
pub fn declared_name<'a>(destination: &'a PodInfo, flow: &Flow) -> Option<&'a str> {
    destination
        .ports
        .iter()
        .find(|p| p.port == flow.port && p.protocol == flow.protocol)
        .and_then(|p| p.name.as_deref())
}

/// A whole rule: one peer, one port.
pub fn rule_value(direction: Direction, peer: Value, port: Value) -> Value {
    let mut rule = Map::new();
    rule.insert(direction.peers_field().into(), Value::Array(vec![peer]));
    rule.insert("ports".into(), Value::Array(vec![port]));
    Value::Object(rule)
}

/// Whether any rule of the policy (either direction) names a port by name: then an added port
/// follows that habit.
pub fn uses_named_ports(policy: &CompiledPolicy) -> bool {
    [Direction::Ingress, Direction::Egress].into_iter().any(|direction| {
        policy
            .rules(direction)
            .unwrap_or_default()
            .iter()
            .flat_map(|rule| &rule.ports)
            .any(|port| matches!(port.port, PortMatch::Named(_)))
    })
}

/// Whether the peers of `rule` (of `policy`) are exactly `peer`: every peer entry selects pods
/// of the peer's workload only, in its namespace only, and one of them selects the flow's pod;
/// or, for an address, every entry is an ipBlock of that single address. Only then does adding
/// a port to the rule open it to nobody else.
pub fn peers_are_exactly(
    inventory: &Inventory,
    policy: &CompiledPolicy,
    rule: &CompiledRule,
    peer: RulePeer<'_>,
) -> bool {
    if rule.peers.is_empty() {
        return false;
    }
    match peer {
        RulePeer::Address(ip) => {
            let host = IpNet::from(ip);
            rule.peers.iter().all(|entry| {
                matches!(entry, Peer::IpBlock(block) if block.cidr == host && block.except.is_empty())
            })
        }
        RulePeer::Workload(workload, pod) => {
            let namespace = inventory.catalog().namespace_id(&workload.namespace);
            let mut selects_pod = false;
            let all_within = rule.peers.iter().all(|entry| {
                let Peer::Pods { namespace_selector, pod_selector: Some(pod_selector) } = entry
                else {
                    return false;
                };
                if pod_selector.is_empty() {
                    return false;
                }
                let namespace_ok = match namespace_selector {
                    None => policy.namespace == workload.namespace,
                    Some(selector) => {
                        let selected = inventory.catalog().select_namespaces(selector);
                        namespace.is_some_and(|ns| selected == [ns])
                    }
                };
                let pods = inventory.peer_pods(&policy.namespace, entry);
                selects_pod |= pods.contains(&pod);
                namespace_ok && pods.iter().all(|&id| workload.contains(id))
            });
            all_within && selects_pod
        }
    }
}

/// Longest name given to a created policy (a DNS label, so it also fits everywhere a name goes).
const MAX_NAME: usize = 63;

/// A new NetworkPolicy selecting `workload` with one rule for `direction`.
pub(super) fn new_policy(
    namespace: &str,
    name: &str,
    workload: &Workload,
    direction: Direction,
    rule: Value,
    flow: &str,
) -> Value {
    let policy_type = match direction {
        Direction::Ingress => "Ingress",
        Direction::Egress => "Egress",
    };
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {MANAGED_BY_LABEL.0: MANAGED_BY_LABEL.1},
            "annotations": {FLOW_ANNOTATION: flow},
        },
        "spec": {
            "podSelector": {"matchLabels": workload.selector},
            "policyTypes": [policy_type],
            direction.spec_field(): [rule],
        },
    })
}

/// Lowercase letters, digits and single dashes, at most [`MAX_NAME`] characters.
pub(super) fn dns_label(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.truncate(MAX_NAME);
    out.trim_matches('-').to_owned()
}

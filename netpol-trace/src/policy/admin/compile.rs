//! Validation of the `policy.networking.k8s.io` kinds as their CRDs' schemas and CEL rules do,
//! into [`AdminPolicy`]. Errors name the field (`spec.ingress[0].from[1].pods`).

use ipnet::IpNet;

use super::model::{self, ANP_VERSION, AdminPolicyObject, CNP_VERSIONS};
use super::{AdminPeer, AdminPolicy, AdminPort, AdminRule, AdminTier, Subject};
use crate::policy::error::FieldError;
use crate::policy::kind::{PolicyKind, RuleAction, RuleEffect};
use crate::policy::port::Protocol;
use crate::policy::selector::Selector;
use crate::policy::{Direction, PolicyError};

/// The name the single BaselineAdminNetworkPolicy must have.
pub const BANP_NAME: &str = "default";

const CNP_ACTIONS: &[(&str, RuleEffect)] =
    &[("Accept", RuleEffect::Allow), ("Deny", RuleEffect::Deny), ("Pass", RuleEffect::Pass)];
const ANP_ACTIONS: &[(&str, RuleEffect)] =
    &[("Allow", RuleEffect::Allow), ("Deny", RuleEffect::Deny), ("Pass", RuleEffect::Pass)];
const BANP_ACTIONS: &[(&str, RuleEffect)] =
    &[("Allow", RuleEffect::Allow), ("Deny", RuleEffect::Deny)];

/// Validates and compiles `object` (its `kind` picks the rules).
pub fn compile_admin_policy(object: &AdminPolicyObject) -> Result<AdminPolicy, PolicyError> {
    let name = object.metadata.name.clone().unwrap_or_default();
    let label = match object.kind.as_str() {
        "AdminNetworkPolicy" => "adminnetworkpolicy",
        "BaselineAdminNetworkPolicy" => "baselineadminnetworkpolicy",
        _ => "clusternetworkpolicy",
    };
    let fail = |error: FieldError| PolicyError {
        kind: label,
        namespace: String::new(),
        name: name.clone(),
        error,
    };
    if name.is_empty() {
        return Err(fail(FieldError::new("metadata.name", "is required")));
    }
    let kind = match object.kind.as_str() {
        "ClusterNetworkPolicy" => PolicyKind::ClusterNetworkPolicy,
        "AdminNetworkPolicy" => PolicyKind::AdminNetworkPolicy,
        "BaselineAdminNetworkPolicy" => PolicyKind::BaselineAdminNetworkPolicy,
        other => {
            return Err(fail(FieldError::new(
                "kind",
                format!("{other:?} is not a {} kind", model::GROUP),
            )));
        }
    };
    compile_spec(kind, &name, object).map_err(fail)
}

fn compile_spec(
    kind: PolicyKind,
    name: &str,
    object: &AdminPolicyObject,
) -> Result<AdminPolicy, FieldError> {
    let spec = &object.spec;
    let version = object.api_version.as_str();
    let versions: &[&str] =
        if kind == PolicyKind::ClusterNetworkPolicy { &CNP_VERSIONS } else { &[ANP_VERSION] };
    if !versions.contains(&version) {
        return Err(FieldError::new(
            "apiVersion",
            format!("{kind} {version:?} is not supported (want {})", versions.join(" or ")),
        ));
    }
    let (tier, actions, max_rules) = match kind {
        PolicyKind::ClusterNetworkPolicy => {
            let tier = match spec.tier.as_deref() {
                Some("Admin") => AdminTier::Admin,
                Some("Baseline") => AdminTier::Baseline,
                Some(other) => {
                    return Err(FieldError::new(
                        "spec.tier",
                        format!("unsupported value {other:?} (want Admin or Baseline)"),
                    ));
                }
                None => {
                    return Err(FieldError::new("spec.tier", "is required (Admin or Baseline)"));
                }
            };
            (tier, CNP_ACTIONS, 25)
        }
        PolicyKind::AdminNetworkPolicy => (AdminTier::Admin, ANP_ACTIONS, 100),
        _ => {
            if name != BANP_NAME {
                return Err(FieldError::new(
                    "metadata.name",
                    format!(
                        "must be {BANP_NAME:?}: a BaselineAdminNetworkPolicy is a cluster singleton"
                    ),
                ));
            }
            (AdminTier::Baseline, BANP_ACTIONS, 100)
        }
    };
    let priority = if kind == PolicyKind::BaselineAdminNetworkPolicy {
        if spec.priority.is_some() {
            return Err(FieldError::new(
                "spec.priority",
                "BaselineAdminNetworkPolicy has no priority",
            ));
        }
        u32::MAX
    } else {
        match spec.priority {
            Some(p @ 0..=1000) => p as u32,
            Some(p) => {
                return Err(FieldError::new(
                    "spec.priority",
                    format!("{p} is out of range 0-1000"),
                ));
            }
            None => return Err(FieldError::new("spec.priority", "is required (0-1000)")),
        }
    };
    let subject = compile_subject(spec.subject.as_ref())?;
    let rules = |direction: Direction,
                 list: &Option<Vec<model::AdminRule>>|
     -> Result<Vec<AdminRule>, FieldError> {
        let list = list.as_deref().unwrap_or_default();
        let path = format!("spec.{direction}");
        if list.len() > max_rules {
            return Err(FieldError::new(
                &path,
                format!("{} rules, at most {max_rules} allowed", list.len()),
            ));
        }
        list.iter()
            .enumerate()
            .map(|(i, rule)| compile_rule(kind, actions, direction, rule, &format!("{path}[{i}]")))
            .collect()
    };
    let ingress = rules(Direction::Ingress, &spec.ingress)?;
    let egress = rules(Direction::Egress, &spec.egress)?;
    Ok(AdminPolicy { kind, name: name.to_owned(), tier, priority, subject, ingress, egress })
}

fn compile_subject(subject: Option<&model::Subject>) -> Result<Subject, FieldError> {
    let Some(subject) = subject else {
        return Err(FieldError::new("spec.subject", "is required"));
    };
    match (&subject.namespaces, &subject.pods) {
        (Some(ns), None) => {
            Ok(Subject::Namespaces(Selector::compile(ns, "spec.subject.namespaces")?))
        }
        (None, Some(pods)) => {
            let (namespaces, pods) = namespaced_pod(pods, "spec.subject.pods")?;
            Ok(Subject::Pods { namespaces, pods })
        }
        _ => Err(FieldError::new("spec.subject", "exactly one of namespaces and pods must be set")),
    }
}

fn namespaced_pod(
    pods: &model::NamespacedPod,
    path: &str,
) -> Result<(Selector, Selector), FieldError> {
    let namespaces = match &pods.namespaces {
        Some(early) => peer_namespaces(early, &format!("{path}.namespaces"))?,
        None => Selector::compile(&pods.namespace_selector, &format!("{path}.namespaceSelector"))?,
    };
    Ok((namespaces, Selector::compile(&pods.pod_selector, &format!("{path}.podSelector"))?))
}

/// A peer's namespaces in either form. The early form's `sameLabels`/`notSameLabels` compare
/// with the subject's namespace, which this engine does not model: refused, never widened.
/// Upstream never settled their meaning: its Go types say a `notSameLabels` namespace has
/// none of the labels, its published CRD schema says it has all of them with at least one
/// value differing from the subject's; both fields left the API in later v1alpha1 releases.
fn peer_namespaces(namespaces: &model::PeerNamespaces, path: &str) -> Result<Selector, FieldError> {
    match namespaces {
        model::PeerNamespaces::Selector(selector) => Selector::compile(selector, path),
        model::PeerNamespaces::Early(early) => {
            for (field, labels) in
                [("sameLabels", &early.same_labels), ("notSameLabels", &early.not_same_labels)]
            {
                if labels.as_ref().is_some_and(|l| !l.is_empty()) {
                    return Err(FieldError::new(
                        format!("{path}.{field}"),
                        "is not supported (an early v1alpha1 field): select the namespaces by label",
                    ));
                }
            }
            let selector = early.namespace_selector.clone().unwrap_or_default();
            Selector::compile(&selector, &format!("{path}.namespaceSelector"))
        }
    }
}

fn compile_rule(
    kind: PolicyKind,
    actions: &[(&'static str, RuleEffect)],
    direction: Direction,
    rule: &model::AdminRule,
    path: &str,
) -> Result<AdminRule, FieldError> {
    if let Some(name) = &rule.name
        && name.chars().count() > 100
    {
        return Err(FieldError::new(format!("{path}.name"), "must be at most 100 characters"));
    }
    let action = RuleAction::parse(&rule.action, actions)
        .map_err(|m| FieldError::new(format!("{path}.action"), m))?;
    let (peers_field, peers, other) = match direction {
        Direction::Ingress => ("from", &rule.from, &rule.to),
        Direction::Egress => ("to", &rule.to, &rule.from),
    };
    if other.is_some() {
        let other_field = if direction == Direction::Ingress { "to" } else { "from" };
        return Err(FieldError::new(
            format!("{path}.{other_field}"),
            format!("is not a field of {direction} rules"),
        ));
    }
    let peers_path = format!("{path}.{peers_field}");
    let peers = match peers.as_deref() {
        None | Some([]) => return Err(FieldError::new(&peers_path, "must have at least one peer")),
        Some(list) if list.len() > 100 => {
            return Err(FieldError::new(&peers_path, "at most 100 peers allowed"));
        }
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, peer)| {
                compile_peer(kind, direction, action, peer, &format!("{peers_path}[{i}]"))
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let ports = match kind {
        PolicyKind::ClusterNetworkPolicy => {
            if rule.ports.is_some() {
                return Err(FieldError::new(
                    format!("{path}.ports"),
                    "is a v1alpha1 field; ClusterNetworkPolicy uses protocols",
                ));
            }
            rule.protocols
                .as_deref()
                .map(|list| compile_protocols(list, &format!("{path}.protocols")))
                .transpose()?
        }
        _ => {
            if rule.protocols.is_some() {
                return Err(FieldError::new(
                    format!("{path}.protocols"),
                    format!("is not a field of {kind} (use ports)"),
                ));
            }
            rule.ports
                .as_deref()
                .map(|list| compile_ports(list, &format!("{path}.ports")))
                .transpose()?
        }
    };
    let named = ports.iter().flatten().any(|p| matches!(p, AdminPort::Named(_)));
    if named
        && peers.iter().any(|p| matches!(p, AdminPeer::Networks(_) | AdminPeer::Unresolvable(_)))
    {
        return Err(FieldError::new(
            &peers_path,
            "networks/nodes/domainNames peers cannot be used with named ports",
        ));
    }
    Ok(AdminRule { name: rule.name.clone(), action, peers, ports })
}

fn compile_peer(
    kind: PolicyKind,
    direction: Direction,
    action: RuleAction,
    peer: &model::AdminPeer,
    path: &str,
) -> Result<AdminPeer, FieldError> {
    let set = [
        peer.namespaces.is_some(),
        peer.pods.is_some(),
        peer.nodes.is_some(),
        peer.networks.is_some(),
        peer.domain_names.is_some(),
    ];
    if set.iter().filter(|s| **s).count() != 1 {
        return Err(FieldError::new(
            path,
            "exactly one of namespaces, pods, nodes, networks and domainNames must be set",
        ));
    }
    let egress_only = |field: &str| -> Result<(), FieldError> {
        if direction == Direction::Ingress {
            Err(FieldError::new(format!("{path}.{field}"), "is only allowed in egress peers"))
        } else {
            Ok(())
        }
    };
    if let Some(ns) = &peer.namespaces {
        return Ok(AdminPeer::Namespaces(peer_namespaces(ns, &format!("{path}.namespaces"))?));
    }
    if let Some(pods) = &peer.pods {
        let (namespaces, pods) = namespaced_pod(pods, &format!("{path}.pods"))?;
        return Ok(AdminPeer::Pods { namespaces, pods });
    }
    if let Some(nodes) = &peer.nodes {
        egress_only("nodes")?;
        Selector::compile(nodes, &format!("{path}.nodes"))?;
        return Ok(AdminPeer::Unresolvable("nodes"));
    }
    if let Some(domains) = &peer.domain_names {
        egress_only("domainNames")?;
        if kind != PolicyKind::ClusterNetworkPolicy || action.effect != RuleEffect::Allow {
            return Err(FieldError::new(
                format!("{path}.domainNames"),
                "is only allowed in ClusterNetworkPolicy Accept rules",
            ));
        }
        if domains.is_empty() || domains.len() > 25 {
            return Err(FieldError::new(
                format!("{path}.domainNames"),
                "must have 1 to 25 entries",
            ));
        }
        return Ok(AdminPeer::Unresolvable("domainNames"));
    }
    egress_only("networks")?;
    let networks = peer.networks.as_deref().unwrap_or_default();
    if networks.is_empty() || networks.len() > 25 {
        return Err(FieldError::new(format!("{path}.networks"), "must have 1 to 25 CIDRs"));
    }
    let nets = networks
        .iter()
        .enumerate()
        .map(|(i, text)| {
            text.parse::<IpNet>().map(|n| n.trunc()).map_err(|_| {
                FieldError::new(format!("{path}.networks[{i}]"), format!("{text:?} is not a CIDR"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AdminPeer::Networks(nets))
}

fn protocol(value: Option<&str>, path: &str) -> Result<Protocol, FieldError> {
    Protocol::from_api(value).map_err(|m| FieldError::new(format!("{path}.protocol"), m))
}

fn port_number(value: i64, path: &str) -> Result<u16, FieldError> {
    u16::try_from(value)
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| FieldError::new(path, format!("port {value} is out of range 1-65535")))
}

fn port_range(start: i64, end: i64, path: &str) -> Result<(u16, u16), FieldError> {
    let start = port_number(start, &format!("{path}.start"))?;
    let end = port_number(end, &format!("{path}.end"))?;
    if start >= end {
        return Err(FieldError::new(path, format!("start {start} must be less than end {end}")));
    }
    Ok((start, end))
}

fn compile_ports(list: &[model::AdminPort], path: &str) -> Result<Vec<AdminPort>, FieldError> {
    if list.is_empty() || list.len() > 100 {
        return Err(FieldError::new(path, "must have 1 to 100 entries"));
    }
    list.iter()
        .enumerate()
        .map(|(i, port)| {
            let path = format!("{path}[{i}]");
            match (&port.port_number, &port.named_port, &port.port_range) {
                (Some(number), None, None) => {
                    let path = format!("{path}.portNumber");
                    let protocol = protocol(number.protocol.as_deref(), &path)?;
                    let port = port_number(number.port, &format!("{path}.port"))?;
                    Ok(AdminPort::Range { protocol, start: port, end: port })
                }
                (None, Some(name), None) => Ok(AdminPort::Named(name.clone())),
                (None, None, Some(range)) => {
                    let path = format!("{path}.portRange");
                    let protocol = protocol(range.protocol.as_deref(), &path)?;
                    let (start, end) = port_range(range.start, range.end, &path)?;
                    Ok(AdminPort::Range { protocol, start, end })
                }
                _ => Err(FieldError::new(
                    path,
                    "exactly one of portNumber, namedPort and portRange must be set",
                )),
            }
        })
        .collect()
}

fn compile_protocols(
    list: &[model::CnpProtocol],
    path: &str,
) -> Result<Vec<AdminPort>, FieldError> {
    if list.is_empty() || list.len() > 25 {
        return Err(FieldError::new(path, "must have 1 to 25 entries"));
    }
    list.iter()
        .enumerate()
        .map(|(i, entry)| {
            let path = format!("{path}[{i}]");
            let set = [
                entry.tcp.is_some(),
                entry.udp.is_some(),
                entry.sctp.is_some(),
                entry.destination_named_port.is_some(),
            ];
            if set.iter().filter(|s| **s).count() != 1 {
                return Err(FieldError::new(
                    &path,
                    "exactly one of tcp, udp, sctp and destinationNamedPort must be set",
                ));
            }
            if let Some(name) = &entry.destination_named_port {
                if name.is_empty() {
                    return Err(FieldError::new(
                        format!("{path}.destinationNamedPort"),
                        "must not be empty",
                    ));
                }
                return Ok(AdminPort::Named(name.clone()));
            }
            let (protocol, field, ports) = [
                (Protocol::Tcp, "tcp", &entry.tcp),
                (Protocol::Udp, "udp", &entry.udp),
                (Protocol::Sctp, "sctp", &entry.sctp),
            ]
            .into_iter()
            .find_map(|(p, f, ports)| ports.as_ref().map(|ports| (p, f, ports)))
            .expect("one protocol is set");
            let path = format!("{path}.{field}.destinationPort");
            let Some(port) = &ports.destination_port else {
                return Err(FieldError::new(path, "is required"));
            };
            match (port.number, &port.range) {
                (Some(number), None) => {
                    let port = port_number(number, &format!("{path}.number"))?;
                    Ok(AdminPort::Range { protocol, start: port, end: port })
                }
                (None, Some(range)) => {
                    let (start, end) =
                        port_range(range.start, range.end, &format!("{path}.range"))?;
                    Ok(AdminPort::Range { protocol, start, end })
                }
                _ => Err(FieldError::new(path, "exactly one of number and range must be set")),
            }
        })
        .collect()
}

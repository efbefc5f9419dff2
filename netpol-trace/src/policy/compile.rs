//! Validation and compilation of a k8s-openapi `NetworkPolicy`, with the API server's
//! defaulting of `policyTypes`: Ingress always, plus Egress when `spec.egress` has rules.

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};

use super::compiled::{CompiledPolicy, CompiledRule, Direction, Peer};
use super::error::{FieldError, PolicyError};
use super::ip_block::IpBlock;
use super::port::PortRule;
use super::selector::Selector;

/// Validates `policy` and compiles it. A policy without `metadata.namespace` is taken to live in
/// `default_namespace`.
pub fn compile_policy(
    policy: &NetworkPolicy,
    default_namespace: &str,
) -> Result<CompiledPolicy, PolicyError> {
    let namespace =
        policy.metadata.namespace.clone().unwrap_or_else(|| default_namespace.to_owned());
    let name = policy.metadata.name.clone().unwrap_or_default();
    let wrap = |error: FieldError| PolicyError {
        kind: "networkpolicy",
        namespace: namespace.clone(),
        name: name.clone(),
        error,
    };
    if name.is_empty() {
        return Err(wrap(FieldError::new("metadata.name", "is required")));
    }
    let spec = policy.spec.clone().unwrap_or_default();
    let pod_selector = match &spec.pod_selector {
        Some(selector) => Selector::compile(selector, "spec.podSelector").map_err(wrap)?,
        None => Selector::default(),
    };
    let ingress = spec
        .ingress
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, rule)| {
            compile_rule(rule.from.as_deref(), rule.ports.as_deref(), Direction::Ingress, i)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(wrap)?;
    let egress = spec
        .egress
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, rule)| {
            compile_rule(rule.to.as_deref(), rule.ports.as_deref(), Direction::Egress, i)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(wrap)?;
    let (has_ingress, has_egress) = match spec.policy_types.as_deref() {
        None | Some([]) => (true, !egress.is_empty()),
        Some(types) => {
            let mut has = (false, false);
            for (index, value) in types.iter().enumerate() {
                match value.as_str() {
                    "Ingress" => has.0 = true,
                    "Egress" => has.1 = true,
                    other => {
                        return Err(wrap(FieldError::new(
                            format!("spec.policyTypes[{index}]"),
                            format!("unknown policy type {other:?} (want Ingress or Egress)"),
                        )));
                    }
                }
            }
            has
        }
    };
    Ok(CompiledPolicy {
        namespace,
        name,
        pod_selector,
        ingress: has_ingress.then_some(ingress),
        egress: has_egress.then_some(egress),
    })
}

fn compile_rule(
    peers: Option<&[NetworkPolicyPeer]>,
    ports: Option<&[NetworkPolicyPort]>,
    direction: Direction,
    index: usize,
) -> Result<CompiledRule, FieldError> {
    let rule_path = format!("spec.{}[{index}]", direction.spec_field());
    let peers = peers
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, peer)| {
            compile_peer(peer, &format!("{rule_path}.{}[{i}]", direction.peers_field()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let ports = ports
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, port)| PortRule::compile(port, &format!("{rule_path}.ports[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CompiledRule { peers, ports })
}

fn compile_peer(peer: &NetworkPolicyPeer, path: &str) -> Result<Peer, FieldError> {
    match (&peer.ip_block, &peer.namespace_selector, &peer.pod_selector) {
        (None, None, None) => Err(FieldError::new(
            path,
            "must specify a peer: podSelector, namespaceSelector or ipBlock",
        )),
        (Some(block), None, None) => {
            Ok(Peer::IpBlock(IpBlock::compile(block, &format!("{path}.ipBlock"))?))
        }
        (Some(_), _, _) => Err(FieldError::new(
            path,
            "may not specify both ipBlock and another peer (podSelector or namespaceSelector)",
        )),
        (None, namespace_selector, pod_selector) => Ok(Peer::Pods {
            namespace_selector: namespace_selector
                .as_ref()
                .map(|s| Selector::compile(s, &format!("{path}.namespaceSelector")))
                .transpose()?,
            pod_selector: pod_selector
                .as_ref()
                .map(|s| Selector::compile(s, &format!("{path}.podSelector")))
                .transpose()?,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> NetworkPolicy {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn compile(yaml: &str) -> Result<CompiledPolicy, PolicyError> {
        compile_policy(&policy(yaml), "default")
    }

    #[test]
    fn policy_types_defaulting() {
        // (spec, ingress affected, egress affected)
        let cases = [
            ("{podSelector: {}}", true, false),
            ("{podSelector: {}, ingress: [{}]}", true, false),
            ("{podSelector: {}, egress: [{}]}", true, true),
            ("{podSelector: {}, egress: []}", true, false),
            ("{podSelector: {}, policyTypes: [], egress: [{}]}", true, true),
            ("{podSelector: {}, policyTypes: [Egress]}", false, true),
            ("{podSelector: {}, policyTypes: [Egress], ingress: [{}]}", false, true),
            ("{podSelector: {}, policyTypes: [Ingress], egress: [{}]}", true, false),
            ("{podSelector: {}, policyTypes: [Ingress, Egress]}", true, true),
        ];
        for (spec, ingress, egress) in cases {
            let p = compile(&format!("{{metadata: {{name: p}}, spec: {spec}}}")).unwrap();
            assert_eq!(
                (p.affects(Direction::Ingress), p.affects(Direction::Egress)),
                (ingress, egress),
                "{spec}"
            );
        }
        let no_spec = compile("{metadata: {name: p, namespace: x}}").unwrap();
        assert!(no_spec.affects(Direction::Ingress) && !no_spec.affects(Direction::Egress));
        assert!(no_spec.pod_selector.is_empty());
        assert_eq!(no_spec.key(), "x/p");
    }

    #[test]
    fn errors_name_policy_and_field() {
        let cases = [
            (
                "{podSelector: {}, ingress: [{}, {ports: [{port: 80}, {port: 90, endPort: 80}]}]}",
                "spec.ingress[1].ports[1].endPort",
            ),
            ("{podSelector: {}, egress: [{to: [{}]}]}", "spec.egress[0].to[0]"),
            (
                "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]}",
                "spec.ingress[0].from[0]",
            ),
            (
                "{podSelector: {}, ingress: [{from: [{podSelector: {}}, {ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/8]}}]}]}",
                "spec.ingress[0].from[1].ipBlock.except[0]",
            ),
            (
                "{podSelector: {}, egress: [{to: [{namespaceSelector: {matchExpressions: [{key: a, operator: in, values: [b]}]}}]}]}",
                "spec.egress[0].to[0].namespaceSelector.matchExpressions[0].operator",
            ),
            (
                "{podSelector: {matchLabels: {app: 'no spaces'}}}",
                "spec.podSelector.matchLabels.app",
            ),
            ("{podSelector: {}, policyTypes: [ingress]}", "spec.policyTypes[0]"),
            (
                "{podSelector: {}, ingress: [{ports: [{protocol: ICMP}]}]}",
                "spec.ingress[0].ports[0].protocol",
            ),
            (
                "{podSelector: {}, ingress: [{ports: [{port: named, endPort: 90}]}]}",
                "spec.ingress[0].ports[0].endPort",
            ),
        ];
        for (spec, field) in cases {
            let err = compile(&format!("{{metadata: {{name: p, namespace: db}}, spec: {spec}}}"))
                .unwrap_err();
            assert_eq!(err.error.field, field, "{spec}");
            assert!(
                err.to_string().starts_with(&format!("networkpolicy db/p: {field}: ")),
                "{err}"
            );
        }
        let err = compile("{metadata: {namespace: db}}").unwrap_err();
        assert_eq!(err.error.field, "metadata.name");
    }

    #[test]
    fn peers() {
        let p = compile(
            "{metadata: {name: p}, spec: {ingress: [{from: [
                {podSelector: {matchLabels: {a: b}}},
                {namespaceSelector: {}},
                {namespaceSelector: {matchLabels: {n: m}}, podSelector: {}},
                {ipBlock: {cidr: 'fd00::/64'}}]}]}}",
        )
        .unwrap();
        let peers = &p.rules(Direction::Ingress).unwrap()[0].peers;
        assert!(matches!(
            &peers[0],
            Peer::Pods { namespace_selector: None, pod_selector: Some(_) }
        ));
        assert!(
            matches!(&peers[1], Peer::Pods { namespace_selector: Some(s), pod_selector: None } if s.is_empty())
        );
        assert!(
            matches!(&peers[2], Peer::Pods { namespace_selector: Some(_), pod_selector: Some(s) } if s.is_empty())
        );
        assert!(matches!(&peers[3], Peer::IpBlock(_)));
    }
}

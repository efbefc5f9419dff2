//! Names the pods, the Service and the NetworkPolicies behind a traced flow, by evaluating
//! the real policy semantics on an inventory (manifests or the live cluster). CNI-agnostic:
//! no log grepping, only the kernel's addresses and the objects.

use std::net::IpAddr;

use crate::{
    explain::{ExplainOptions, Explanation, explain},
    flow::Flow,
    inventory::Inventory,
    policy::Protocol,
};

use super::model::{DropRecord, Endpoint, PolicyRef, RestoredRecord};

/// Fills namespace/pod (and Service) of an endpoint from the inventory.
pub fn name_endpoint(inventory: &Inventory, endpoint: &mut Endpoint) {
    if let Some(id) = inventory.pod_by_ip(endpoint.ip) {
        let pod = &inventory.pod(id).pod;
        endpoint.namespace = Some(pod.namespace.clone());
        endpoint.pod = Some(pod.name.clone());
    } else if let Some((ns, name)) = inventory.service_by_cluster_ip(endpoint.ip) {
        endpoint.namespace = Some(ns.to_string());
        endpoint.service = Some(name.to_string());
    }
}

/// Explains the flow of a traced connection attempt.
pub fn explain_traced(inventory: &Inventory, src: IpAddr, dst: IpAddr, port: u16) -> Explanation {
    let flow = Flow::from_packet(inventory, src, dst, port, Protocol::Tcp);
    explain(inventory, &flow, &ExplainOptions::default())
}

/// The policies that isolate an end of the flow without allowing it, per direction.
pub fn denying_policies(explanation: &Explanation) -> Vec<PolicyRef> {
    let mut out = Vec::new();
    for (name, dir) in [("egress", &explanation.egress), ("ingress", &explanation.ingress)] {
        if dir.allowed {
            continue;
        }
        out.extend(dir.policies.iter().map(|p| PolicyRef {
            namespace: p.namespace.clone(),
            name: p.name.clone(),
            direction: name.to_string(),
        }));
    }
    out
}

/// One line for a person: the closest rule of a denying direction and what it lacks.
pub fn hint(explanation: &Explanation) -> Option<String> {
    if explanation.allowed() {
        return Some(
            "the policies allow this flow: the drop is not a NetworkPolicy decision".to_string(),
        );
    }
    for (name, dir) in [("ingress", &explanation.ingress), ("egress", &explanation.egress)] {
        if dir.allowed {
            continue;
        }
        return Some(match dir.closest_rule() {
            Some(c) => {
                let what: Vec<String> = c
                    .rule
                    .mismatches
                    .iter()
                    .map(|m| format!("{}: want {}, got {}", m.field, m.want, m.got))
                    .collect();
                format!(
                    "{}/{} {name} rule {}: {}",
                    c.policy.namespace,
                    c.policy.name,
                    c.rule.index,
                    what.join("; ")
                )
            }
            None => {
                let names: Vec<String> =
                    dir.policies.iter().map(|p| format!("{}/{}", p.namespace, p.name)).collect();
                format!("{} has no {name} rule: {name} is denied to all", names.join(", "))
            }
        });
    }
    None
}

/// Attributes a drop: pods, Service, denying policies and a hint.
pub fn attribute_drop(inventory: &Inventory, drop: &mut DropRecord) {
    name_endpoint(inventory, &mut drop.src);
    name_endpoint(inventory, &mut drop.dst);
    let explanation = explain_traced(inventory, drop.src.ip, drop.dst.ip, drop.dst.port);
    drop.policies = denying_policies(&explanation);
    drop.hint = hint(&explanation);
}

/// Names the pods of a restored flow.
pub fn attribute_restored(inventory: &Inventory, restored: &mut RestoredRecord) {
    name_endpoint(inventory, &mut restored.src);
    name_endpoint(inventory, &mut restored.dst);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{MYSQL_MANIFESTS, inventory_of};

    fn inventory() -> Inventory {
        inventory_of(MYSQL_MANIFESTS)
    }

    fn record(src: &str, dst: &str) -> DropRecord {
        let t = chrono::Utc::now();
        DropRecord {
            time: t,
            first_seen: t,
            reason: "NETFILTER_DROP".into(),
            reason_raw: 0,
            ifname: "cali0".into(),
            count: 1,
            protocol: "TCP".into(),
            src: Endpoint::addr(src.parse().unwrap(), 40000),
            dst: Endpoint::addr(dst.parse().unwrap(), 3306),
            policies: vec![],
            hint: None,
            evidence: Default::default(),
        }
    }

    #[test]
    fn a_port_typo_is_named_with_its_rule() {
        let inv = inventory();
        let mut d = record("10.0.1.5", "10.0.2.7");
        attribute_drop(&inv, &mut d);
        assert_eq!(d.src.pod.as_deref(), Some("web-1"));
        assert_eq!(d.dst.namespace.as_deref(), Some("db"));
        assert_eq!(
            d.policies,
            [PolicyRef {
                namespace: "db".into(),
                name: "mysql-ingress".into(),
                direction: "ingress".into()
            }]
        );
        let hint = d.hint.unwrap();
        assert!(
            hint.contains("rule 0") && hint.contains("3307") && hint.contains("3306"),
            "{hint}"
        );
    }

    #[test]
    fn unknown_addresses_stay_addresses_and_allowed_flows_say_so() {
        let inv = inventory();
        let mut d = record("192.0.2.1", "10.0.1.5");
        attribute_drop(&inv, &mut d);
        assert_eq!(d.src.pod, None);
        assert_eq!(d.dst.pod.as_deref(), Some("web-1"));
        assert!(d.policies.is_empty());
        assert!(d.hint.unwrap().contains("not a NetworkPolicy decision"));
    }
}

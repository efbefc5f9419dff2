//! The words of an attribution, written once: the near-miss hint (`trace`, `/drops`, the
//! demo), the one-line denial of Events, and the list of denying policies of the demo's
//! timeline.

use crate::explain::{Explanation, PolicyExplanation};
use crate::policy::PolicyKind;
use crate::trace::PolicyRef;

/// How a policy is named to people: `ns/name` for a Kubernetes NetworkPolicy (as always), the
/// kind and `name` for a cluster-scoped one (`GlobalNetworkPolicy default-deny`), the kind and
/// `ns/name` for Calico's namespaced NetworkPolicy.
pub fn policy_name(kind: PolicyKind, tiered: bool, namespace: &str, name: &str) -> String {
    match (kind, tiered, namespace.is_empty()) {
        (PolicyKind::NetworkPolicy, false, _) => format!("{namespace}/{name}"),
        (_, _, true) => format!("{kind} {name}"),
        (_, _, false) => format!("{kind} {namespace}/{name}"),
    }
}

fn explained_name(p: &PolicyExplanation) -> String {
    policy_name(p.kind, p.tier.is_some(), &p.namespace, &p.name)
}

fn all_kubernetes(policies: &[PolicyExplanation]) -> bool {
    policies.iter().all(|p| p.kind == PolicyKind::NetworkPolicy && p.tier.is_none())
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
            // A rule that matches in a denying direction denies (a Deny rule of a tiered kind).
            Some(c) if c.rule.matched => format!(
                "{} {name} rule {} matches and decides: {}",
                explained_name(c.policy),
                c.rule.index,
                c.rule.action.as_deref().unwrap_or("Deny")
            ),
            Some(c) => {
                let what: Vec<String> = c
                    .rule
                    .mismatches
                    .iter()
                    .map(|m| format!("{}: want {}, got {}", m.field, m.want, m.got))
                    .collect();
                format!(
                    "{} {name} rule {}: {}",
                    explained_name(c.policy),
                    c.rule.index,
                    what.join("; ")
                )
            }
            None => {
                let names: Vec<String> = dir.policies.iter().map(explained_name).collect();
                format!("{} has no {name} rule: {name} is denied to all", names.join(", "))
            }
        });
    }
    None
}

/// One phrase for what denies a flow: the isolating policies of the denying direction and
/// what their closest rule lacks.
pub fn denial(explanation: &Explanation) -> Option<String> {
    if explanation.allowed() {
        return None;
    }
    let (direction, dir) = if explanation.ingress.allowed {
        ("egress ", &explanation.egress)
    } else {
        ("", &explanation.ingress)
    };
    let names: Vec<String> = dir.policies.iter().map(explained_name).collect();
    let plural = if names.len() == 1 { "y" } else { "ies" };
    let mut out = if all_kubernetes(&dir.policies) {
        format!("denied by {direction}NetworkPolic{plural} {}", names.join(", "))
    } else {
        // Tiered kinds: the policy that decided, as explain's decided_by names it.
        let decider = dir.decided_by.as_ref().map_or_else(
            || names.join(", "),
            |by| {
                policy_name(
                    by.kind,
                    by.tier.is_some(),
                    by.namespace.as_deref().unwrap_or(""),
                    &by.name,
                )
            },
        );
        format!("denied by {direction}{decider}")
    };
    match dir.closest_rule() {
        Some(c) if c.rule.matched => {
            out.push_str(&format!(
                ", rule {} {}",
                c.rule.index,
                c.rule.action.as_deref().unwrap_or("Deny")
            ));
        }
        Some(c) => {
            let lacks: Vec<String> = c
                .rule
                .mismatches
                .iter()
                .map(|m| {
                    if m.field.ends_with(".port") {
                        format!("allows port {}", m.want)
                    } else {
                        format!("needs {} {} (got {})", m.field, m.want, m.got)
                    }
                })
                .collect();
            if names.len() > 1 {
                out.push_str(&format!("; closest: {}", explained_name(c.policy)));
            }
            out.push_str(&format!(", rule {} {}", c.rule.index, lacks.join(", ")));
        }
        None => {
            let which = if names.len() == 1 { "which allows" } else { "which allow" };
            let what = if direction.is_empty() { "ingress" } else { "egress" };
            out.push_str(&format!(", {which} no {what}"));
        }
    }
    Some(out)
}

/// Who decided each denied direction, as `explain`'s `decided_by` names it:
/// `ingress decided by ClusterNetworkPolicy isolate-db (tier Admin), rule 0: Deny`, or `..., end
/// of tier: Deny` for an end-of-tier deny (`, isolation: Deny` for a NetworkPolicy).
/// `None` when the flow is allowed or nothing decided.
pub fn decided_by(explanation: &Explanation) -> Option<String> {
    let parts: Vec<String> = [("egress", &explanation.egress), ("ingress", &explanation.ingress)]
        .into_iter()
        .filter(|(_, dir)| !dir.allowed)
        .filter_map(|(name, dir)| {
            let by = dir.decided_by.as_ref()?;
            let who = policy_name(
                by.kind,
                by.tier.is_some(),
                by.namespace.as_deref().unwrap_or(""),
                &by.name,
            );
            let tier = by.tier.as_ref().map(|t| format!(" (tier {t})")).unwrap_or_default();
            let rule = match (by.rule, &by.tier) {
                (Some(index), _) => format!("rule {index}"),
                (None, Some(_)) => "end of tier".to_owned(),
                (None, None) => "isolation".to_owned(),
            };
            Some(format!("{name} decided by {who}{tier}, {rule}: {}", by.action))
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// `ns/name (direction)` of each policy, comma-separated: "denied by " this.
pub fn denied_by(policies: &[PolicyRef]) -> String {
    let names: Vec<String> = policies
        .iter()
        .map(|p| {
            let name = policy_name(p.kind, p.tier.is_some(), &p.namespace, &p.name);
            format!("{name} ({})", p.direction.spec_field())
        })
        .collect();
    format!("denied by {}", names.join(", "))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::explain::{ExplainOptions, explain};
    use crate::flow::{EndpointSpec, Flow};
    use crate::inventory::{ClusterObjects, Inventory, InventoryOptions};
    use crate::policy::{Direction, Protocol};

    fn explained(scenario: &str) -> Explanation {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios").join(scenario);
        let objects: ClusterObjects = crate::manifest::load_paths(&[dir]).unwrap();
        let inventory = Inventory::from_objects(objects, InventoryOptions::default()).unwrap();
        let pod = |ns, name| EndpointSpec::Pod(inventory.pod_id(ns, name).unwrap());
        let flow = Flow::new(
            &inventory,
            pod("app", "web-7d9f8b6c5-x2k4q"),
            pod("db", "mysql-0"),
            3306,
            Protocol::Tcp,
        );
        explain(&inventory, &flow, &ExplainOptions::default())
    }

    #[test]
    fn cluster_scoped_policies_are_named_by_kind_and_name() {
        let explanation = explained("calico-default-deny");
        let denial = denial(&explanation).unwrap();
        assert_eq!(denial, "denied by GlobalNetworkPolicy default-deny, which allows no ingress");
        let hint = hint(&explanation).unwrap();
        assert!(hint.starts_with("GlobalNetworkPolicy default-deny has no ingress rule"), "{hint}");
        let refs = [PolicyRef {
            kind: PolicyKind::ClusterNetworkPolicy,
            tier: Some("Admin".into()),
            namespace: String::new(),
            name: "isolate-db".into(),
            direction: Direction::Ingress,
        }];
        assert_eq!(denied_by(&refs), "denied by ClusterNetworkPolicy isolate-db (ingress)");
    }

    #[test]
    fn admin_tier_denial_names_the_deciding_policy_and_rule() {
        let explanation = explained("admin-tier-deny");
        let denial = denial(&explanation).unwrap();
        assert!(denial.starts_with("denied by ClusterNetworkPolicy isolate-db"), "{denial}");
        assert!(!denial.contains("/isolate-db"), "{denial}");
        assert!(denial.ends_with(", rule 0 Deny"), "{denial}");
        // The Deny rule matches: the hint says so instead of listing no mismatch.
        assert_eq!(
            hint(&explanation).unwrap(),
            "ClusterNetworkPolicy isolate-db ingress rule 0 matches and decides: Deny"
        );
        assert_eq!(
            decided_by(&explanation).unwrap(),
            "ingress decided by ClusterNetworkPolicy isolate-db (tier Admin), rule 0: Deny"
        );
        assert_eq!(
            decided_by(&explained("calico-default-deny")).unwrap(),
            "egress decided by GlobalNetworkPolicy default-deny (tier default), end of tier: Deny; \
             ingress decided by GlobalNetworkPolicy default-deny (tier default), end of tier: Deny"
        );
    }

    #[test]
    fn kubernetes_network_policies_keep_namespace_slash_name() {
        assert_eq!(policy_name(PolicyKind::NetworkPolicy, false, "db", "p"), "db/p");
        assert_eq!(policy_name(PolicyKind::NetworkPolicy, true, "db", "p"), "NetworkPolicy db/p");
    }
}

//! Live attribution of a dropped flow: the pods at both ends, the Service when the client
//! addressed a ClusterIP (evaluated on the Service's backends and target port, as kube-proxy
//! would forward it), the denying policies, the closest rule's near-miss, and a one-line
//! denial for Events.

use std::time::{Duration, Instant};

use crate::{
    explain::{ExplainOptions, Explanation, explain},
    fix::{FixOptions, FixPlan, plan_fix_flows},
    flow::{EndpointSpec, Flow},
    inventory::{Inventory, PodId, PortRef},
    policy::Protocol,
    trace::{
        PolicyRef,
        attribution::{denying_policies, hint, name_endpoint},
    },
};

use super::record::{FlowRecord, SuggestedFix};

/// What attribution found beyond the fields it fills in.
#[derive(Debug, Clone)]
pub struct Attribution {
    /// "denied by NetworkPolicy db/mysql-ingress, rule 0 allows port 3307"; `None` when the
    /// policies allow the flow (the drop is not a NetworkPolicy decision).
    pub denial: Option<String>,
    /// The destination pod the explanation is about (a backend for a Service) and the port
    /// it receives on.
    pub destination: Option<(PodId, u16)>,
    /// How long the evaluation took.
    pub took: Duration,
    /// The plan behind `record.fix`.
    pub plan: Option<FixPlan>,
}

/// Fills the record's pods, Service, denying policies, hint and suggested fix from
/// `inventory`.
pub fn attribute(inventory: &Inventory, record: &mut FlowRecord) -> Attribution {
    let started = Instant::now();
    record.src.namespace = None;
    record.src.pod = None;
    record.dst.namespace = None;
    record.dst.pod = None;
    record.dst.service = None;
    name_endpoint(inventory, &mut record.src);
    name_endpoint(inventory, &mut record.dst);
    let mut explained = explain_flow(inventory, record);
    let denied: Vec<Flow> =
        explained.iter().filter(|(_, _, e)| !e.allowed()).map(|(_, f, _)| *f).collect();
    let plan = plan_for(inventory, &denied);
    record.fix = plan.as_ref().map(|plan| SuggestedFix {
        summary: plan.summary.clone(),
        kubectl: plan.patches.iter().map(|p| p.kubectl.clone()).collect(),
        patches: serde_json::to_value(&plan.patches).unwrap_or_default(),
        applied_at: None,
    });
    // The explanation a person should read: the first that denies, else the first.
    let first = explained.iter().position(|(_, _, e)| !e.allowed()).unwrap_or(0);
    let mut policies: Vec<PolicyRef> = vec![];
    for (_, _, e) in &explained {
        for p in denying_policies(e) {
            if !policies.contains(&p) {
                policies.push(p);
            }
        }
    }
    record.policies = policies;
    let (destination, chosen) = if explained.is_empty() {
        (None, None)
    } else {
        let (dest, _, e) = explained.swap_remove(first);
        (dest, Some(e))
    };
    record.hint = chosen.as_ref().and_then(hint);
    Attribution {
        denial: chosen.as_ref().and_then(denial),
        destination,
        took: started.elapsed(),
        plan,
    }
}

/// The minimal change that allows the denied flows (`None`: nothing denied, or no safe
/// change).
fn plan_for(inventory: &Inventory, denied: &[Flow]) -> Option<FixPlan> {
    if denied.is_empty() {
        return None;
    }
    match plan_fix_flows(inventory, denied, &FixOptions::default()) {
        Ok(plan) if !plan.is_noop() => Some(plan),
        Ok(_) => None,
        Err(e) => {
            tracing::debug!(error = %e, "no safe fix");
            None
        }
    }
}

type Explained = (Option<(PodId, u16)>, Flow, Explanation);

/// The flow explained once, or once per backend when the destination is a ClusterIP.
fn explain_flow(inventory: &Inventory, record: &mut FlowRecord) -> Vec<Explained> {
    let options = ExplainOptions::default();
    let src = EndpointSpec::Ip(record.src.ip);
    if inventory.pod_by_ip(record.dst.ip).is_none()
        && let Some((ns, name)) = inventory.service_by_cluster_ip(record.dst.ip)
    {
        let port = PortRef::Number(record.dst.port);
        if let Ok(backends) = inventory.service_backends(ns, name, Some(&port), Protocol::Tcp) {
            if let [only] = backends.as_slice() {
                record.dst.pod = Some(inventory.pod(only.pod).pod.name.clone());
            }
            return backends
                .iter()
                .map(|b| {
                    let flow =
                        Flow::new(inventory, src, EndpointSpec::Pod(b.pod), b.port, Protocol::Tcp);
                    (Some((b.pod, b.port)), flow, explain(inventory, &flow, &options))
                })
                .collect();
        }
    }
    let flow =
        Flow::from_packet(inventory, record.src.ip, record.dst.ip, record.dst.port, Protocol::Tcp);
    let dest = inventory.pod_by_ip(record.dst.ip).map(|id| (id, record.dst.port));
    vec![(dest, flow, explain(inventory, &flow, &options))]
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
    let names: Vec<String> =
        dir.policies.iter().map(|p| format!("{}/{}", p.namespace, p.name)).collect();
    let plural = if names.len() == 1 { "y" } else { "ies" };
    let mut out = format!("denied by {direction}NetworkPolic{plural} {}", names.join(", "));
    match dir.closest_rule() {
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
                out.push_str(&format!("; closest: {}/{}", c.policy.namespace, c.policy.name));
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::trace::{DropRecord, Endpoint, Evidence};

    pub(crate) use crate::testing::{MYSQL_MANIFESTS as MANIFESTS, inventory_of};

    pub(crate) fn record(src: &str, dst: &str, port: u16) -> FlowRecord {
        let t = chrono::Utc::now();
        FlowRecord::from_drop(
            &DropRecord {
                time: t,
                first_seen: t,
                reason: "NETFILTER_DROP".into(),
                reason_raw: 11,
                ifname: "cali0".into(),
                count: 12,
                protocol: "TCP".into(),
                src: Endpoint::addr(src.parse().unwrap(), 40000),
                dst: Endpoint::addr(dst.parse().unwrap(), port),
                policies: vec![],
                hint: None,
                evidence: Evidence::default(),
            },
            None,
        )
    }

    #[test]
    fn a_pod_to_pod_drop_names_the_policy_and_the_rule() {
        let inv = inventory_of(MANIFESTS);
        let mut r = record("10.0.1.5", "10.0.2.7", 3306);
        let a = attribute(&inv, &mut r);
        assert_eq!(r.src.pod.as_deref(), Some("web-1"));
        assert_eq!(r.dst.pod.as_deref(), Some("mysql-0"));
        assert_eq!(r.policies.len(), 1);
        assert_eq!(r.policies[0].name, "mysql-ingress");
        assert_eq!(
            a.denial.as_deref(),
            Some("denied by NetworkPolicy db/mysql-ingress, rule 0 allows port 3307")
        );
        assert!(a.destination.is_some());
        let fix = r.fix.expect("a fix for a port typo");
        assert_eq!(fix.kubectl.len(), 1);
        assert!(
            fix.kubectl[0]
                .starts_with("kubectl patch networkpolicy -n db mysql-ingress --type=json"),
            "{}",
            fix.kubectl[0]
        );
        assert_eq!(fix.patches[0]["action"], "patch");
    }

    #[test]
    fn a_cluster_ip_is_evaluated_on_its_backends_and_target_port() {
        let inv = inventory_of(MANIFESTS);
        let mut r = record("10.0.1.5", "10.96.0.10", 13306);
        let a = attribute(&inv, &mut r);
        assert_eq!(r.dst.service.as_deref(), Some("mysql"));
        assert_eq!(r.dst.namespace.as_deref(), Some("db"));
        assert_eq!(r.dst.pod.as_deref(), Some("mysql-0"), "the only backend");
        assert_eq!(r.policies[0].name, "mysql-ingress");
        let (_, port) = a.destination.unwrap();
        assert_eq!(port, 3306, "the target port, not the Service port");
        assert!(a.denial.unwrap().contains("allows port 3307"));
    }

    #[test]
    fn re_attribution_follows_a_policy_change() {
        let mut r = record("10.0.1.5", "10.0.2.7", 3306);
        attribute(&inventory_of(MANIFESTS), &mut r);
        assert!(!r.policies.is_empty());
        let fixed = inventory_of(&MANIFESTS.replace("port: 3307", "port: 3306"));
        let a = attribute(&fixed, &mut r);
        assert!(r.policies.is_empty());
        assert!(r.fix.is_none(), "nothing to fix any more");
        assert_eq!(a.denial, None);
        assert!(r.hint.unwrap().contains("not a NetworkPolicy decision"));
    }

    #[test]
    fn a_policy_without_rules_denies_all() {
        let deny_all = format!(
            "{MANIFESTS}---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: deny-all, namespace: app}}\nspec: {{podSelector: {{}}, policyTypes: [Egress]}}\n"
        );
        let mut r = record("10.0.1.5", "10.0.2.7", 3307);
        let a = attribute(&inventory_of(&deny_all), &mut r);
        assert_eq!(
            a.denial.as_deref(),
            Some("denied by egress NetworkPolicy app/deny-all, which allows no egress")
        );
    }
}

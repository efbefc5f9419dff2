//! The tiered evaluator against a brute-force reference: the contract's semantics restated
//! directly over a tiny cluster model (no index, no compiled policies), compared on random small
//! clusters for every flow between their pods: verdict and `decided_by` per direction.
//!
//! The reference, in evaluation order: tiers by order then name — the admin tier at 1000, the
//! default tier (Calico policies without a tier and the Kubernetes NetworkPolicies at order
//! 1000) at 1,000,000, the baseline tier at 10,000,000, Calico Tiers at their own order (none:
//! last). Admin and baseline tiers: policies by priority, the first matching rule of a selecting
//! policy decides, Pass leaves the tier. Calico tiers: only counted when a policy applies to the
//! endpoint for the direction; policies by order then name, Allow/Deny decide, Log goes on, Pass
//! leaves the tier; at its end the tier denies (charged to its last applying policy) unless its
//! default action is Pass. Nothing decided: default allow.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::explain::{ExplainOptions, explain, is_allowed};
use crate::flow::{EndpointSpec, Flow};
use crate::policy::Protocol;
use crate::testing::inventory_of;

type Labels = BTreeMap<&'static str, &'static str>;

const KEYS: [&str; 2] = ["a", "b"];
const VALUES: [&str; 2] = ["1", "2"];
const PORTS: [u16; 2] = [80, 81];
const TIERS: [&str; 2] = ["t1", "t2"];

#[derive(Debug, Clone)]
struct Pod {
    ns: usize,
    labels: Labels,
}

#[derive(Debug, Clone)]
struct Tier {
    order: Option<u32>,
    pass: bool,
}

/// A Calico selector over the tiny alphabet.
#[derive(Debug, Clone)]
enum Sel {
    All,
    Eq(&'static str, &'static str),
    Ne(&'static str, &'static str),
    Has(&'static str),
    NotHas(&'static str),
    In(&'static str, &'static str),
    And(Box<Sel>, Box<Sel>),
}

impl Sel {
    fn matches(&self, labels: &Labels) -> bool {
        match self {
            Sel::All => true,
            Sel::Eq(k, v) => labels.get(k) == Some(v),
            Sel::Ne(k, v) => labels.get(k) != Some(v),
            Sel::Has(k) => labels.contains_key(k),
            Sel::NotHas(k) => !labels.contains_key(k),
            Sel::In(k, v) => labels.get(k).is_some_and(|l| *l == *v || *l == "2"),
            Sel::And(x, y) => x.matches(labels) && y.matches(labels),
        }
    }

    fn render(&self) -> String {
        match self {
            Sel::All => "all()".to_owned(),
            Sel::Eq(k, v) => format!("{k} == '{v}'"),
            Sel::Ne(k, v) => format!("{k} != '{v}'"),
            Sel::Has(k) => format!("has({k})"),
            Sel::NotHas(k) => format!("!has({k})"),
            Sel::In(k, v) => format!("{k} in {{'{v}', '2'}}"),
            Sel::And(x, y) => format!("({}) && ({})", x.render(), y.render()),
        }
    }
}

/// The action of a tiered rule; each kind spells it its own way.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Act {
    Allow,
    Deny,
    Pass,
    Log,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum AdminKind {
    Anp,
    Banp,
    CnpAdmin,
    CnpBaseline,
}

/// A rule of any kind: a peer (namespace selector and pod selector), a port, an action.
#[derive(Debug, Clone)]
struct Rule {
    act: Act,
    /// Kubernetes/admin: namespace labels to match (`None`: Kubernetes' own namespace / admin
    /// `namespaces` peer with pod selector only when `pods` is set).
    ns: Option<Labels>,
    pods: Option<Labels>,
    /// Calico peer selectors.
    csel: Option<Sel>,
    cns: Option<Sel>,
    /// Calico protocol (`UDP` or `TCP`).
    udp: bool,
    port: Option<u16>,
    /// Kubernetes: an empty `from`/`to` (every peer).
    any_peer: bool,
}

#[derive(Debug, Clone)]
enum Policy {
    Kube {
        ns: usize,
        selector: Labels,
        ingress: Option<Vec<Rule>>,
        egress: Option<Vec<Rule>>,
    },
    Admin {
        kind: AdminKind,
        priority: u32,
        ns: Labels,
        pods: Option<Labels>,
        rules: [Vec<Rule>; 2],
    },
    Calico {
        ns: Option<usize>,
        tier: Option<usize>,
        order: Option<u32>,
        selector: Sel,
        types: Option<[bool; 2]>,
        rules: [Vec<Rule>; 2],
    },
}

#[derive(Debug, Clone)]
struct Cluster {
    namespaces: Vec<Labels>,
    pods: Vec<Pod>,
    tiers: Vec<Tier>,
    policies: Vec<Policy>,
}

fn subset(want: &Labels, have: &Labels) -> bool {
    want.iter().all(|(k, v)| have.get(k) == Some(v))
}

fn selector_json(labels: &Labels) -> Value {
    if labels.is_empty() { json!({}) } else { json!({"matchLabels": labels}) }
}

const INGRESS: usize = 0;
const EGRESS: usize = 1;

impl Cluster {
    fn name(&self, index: usize) -> String {
        match &self.policies[index] {
            Policy::Admin { kind: AdminKind::Banp, .. } => "default".to_owned(),
            Policy::Calico { tier: Some(t), .. } => format!("{}.p{index}", TIERS[*t]),
            _ => format!("p{index}"),
        }
    }

    fn manifests(&self) -> String {
        let mut docs = Vec::new();
        for (i, labels) in self.namespaces.iter().enumerate() {
            docs.push(json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": format!("ns{i}"), "labels": labels}}));
        }
        for (i, pod) in self.pods.iter().enumerate() {
            docs.push(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("pod{i}"), "namespace": format!("ns{}", pod.ns), "labels": pod.labels},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
                "status": {"podIP": format!("10.1.0.{}", i + 1)}}));
        }
        for (i, tier) in self.tiers.iter().enumerate() {
            let mut spec = json!({});
            if let Some(order) = tier.order {
                spec["order"] = json!(order);
            }
            if tier.pass {
                spec["defaultAction"] = json!("Pass");
            }
            docs.push(json!({"apiVersion": "projectcalico.org/v3", "kind": "Tier",
                "metadata": {"name": TIERS[i]}, "spec": spec}));
        }
        for (i, policy) in self.policies.iter().enumerate() {
            docs.push(self.policy_json(i, policy));
        }
        docs.iter().map(|d| serde_json::to_string(d).unwrap()).collect::<Vec<_>>().join("\n---\n")
    }

    fn policy_json(&self, index: usize, policy: &Policy) -> Value {
        let name = self.name(index);
        match policy {
            Policy::Kube { ns, selector, ingress, egress } => {
                let kube_rules = |rules: &[Rule], field: &str| -> Value {
                    let rules: Vec<Value> = rules
                        .iter()
                        .map(|r| {
                            let mut rule = json!({});
                            if !r.any_peer {
                                let mut peer =
                                    json!({"podSelector": selector_json(r.pods.as_ref().unwrap())});
                                if let Some(ns) = &r.ns {
                                    peer["namespaceSelector"] = selector_json(ns);
                                }
                                rule[field] = json!([peer]);
                            }
                            if let Some(port) = r.port {
                                rule["ports"] = json!([{"port": port}]);
                            }
                            rule
                        })
                        .collect();
                    json!(rules)
                };
                let mut spec = json!({"podSelector": selector_json(selector), "policyTypes": []});
                if let Some(rules) = ingress {
                    spec["policyTypes"].as_array_mut().unwrap().push(json!("Ingress"));
                    spec["ingress"] = kube_rules(rules, "from");
                }
                if let Some(rules) = egress {
                    spec["policyTypes"].as_array_mut().unwrap().push(json!("Egress"));
                    spec["egress"] = kube_rules(rules, "to");
                }
                json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                    "metadata": {"name": name, "namespace": format!("ns{ns}")}, "spec": spec})
            }
            Policy::Admin { kind, priority, ns, pods, rules } => {
                let v2 = matches!(kind, AdminKind::CnpAdmin | AdminKind::CnpBaseline);
                let subject = match pods {
                    Some(pods) => {
                        json!({"pods": {"namespaceSelector": selector_json(ns), "podSelector": selector_json(pods)}})
                    }
                    None => json!({"namespaces": selector_json(ns)}),
                };
                let mut spec = json!({"subject": subject});
                match kind {
                    AdminKind::Banp => {}
                    AdminKind::Anp => spec["priority"] = json!(priority),
                    AdminKind::CnpAdmin | AdminKind::CnpBaseline => {
                        spec["priority"] = json!(priority);
                        spec["tier"] =
                            json!(if *kind == AdminKind::CnpAdmin { "Admin" } else { "Baseline" });
                    }
                }
                for (d, field, peers) in [(INGRESS, "ingress", "from"), (EGRESS, "egress", "to")] {
                    if rules[d].is_empty() {
                        continue;
                    }
                    let list: Vec<Value> = rules[d]
                        .iter()
                        .enumerate()
                        .map(|(j, r)| {
                            let peer = match &r.pods {
                                Some(pods) => json!({"pods": {"namespaceSelector": selector_json(r.ns.as_ref().unwrap()), "podSelector": selector_json(pods)}}),
                                None => json!({"namespaces": selector_json(r.ns.as_ref().unwrap())}),
                            };
                            let mut rule = json!({"name": format!("r{j}"), "action": admin_action(*kind, r.act), peers: [peer]});
                            if let Some(port) = r.port {
                                if v2 {
                                    rule["protocols"] = json!([{"tcp": {"destinationPort": {"number": port}}}]);
                                } else {
                                    rule["ports"] = json!([{"portNumber": {"protocol": "TCP", "port": port}}]);
                                }
                            }
                            rule
                        })
                        .collect();
                    spec[field] = json!(list);
                }
                let (api, kind) = match kind {
                    AdminKind::Anp => ("v1alpha1", "AdminNetworkPolicy"),
                    AdminKind::Banp => ("v1alpha1", "BaselineAdminNetworkPolicy"),
                    _ => ("v1alpha2", "ClusterNetworkPolicy"),
                };
                json!({"apiVersion": format!("policy.networking.k8s.io/{api}"), "kind": kind,
                    "metadata": {"name": name}, "spec": spec})
            }
            Policy::Calico { ns, tier, order, selector, types, rules } => {
                let mut spec = json!({"selector": selector.render()});
                if let Some(t) = tier {
                    spec["tier"] = json!(TIERS[*t]);
                }
                if let Some(order) = order {
                    spec["order"] = json!(order);
                }
                if types.is_some() {
                    let types = calico_types(rules, *types);
                    let mut list = Vec::new();
                    if types[INGRESS] {
                        list.push("Ingress");
                    }
                    if types[EGRESS] {
                        list.push("Egress");
                    }
                    spec["types"] = json!(list);
                }
                for (d, field) in [(INGRESS, "ingress"), (EGRESS, "egress")] {
                    if rules[d].is_empty() {
                        continue;
                    }
                    let peer_side = if d == INGRESS { "source" } else { "destination" };
                    let list: Vec<Value> = rules[d]
                        .iter()
                        .map(|r| {
                            let mut rule = json!({"action": calico_action(r.act)});
                            let mut peer = json!({});
                            if let Some(sel) = &r.csel {
                                peer["selector"] = json!(sel.render());
                            }
                            if let Some(sel) = &r.cns {
                                peer["namespaceSelector"] = json!(sel.render());
                            }
                            rule[peer_side] = peer;
                            if r.udp {
                                rule["protocol"] = json!("UDP");
                            }
                            if let Some(port) = r.port {
                                rule["protocol"] = json!("TCP");
                                rule["destination"]["ports"] = json!([port]);
                            }
                            rule
                        })
                        .collect();
                    spec[field] = json!(list);
                }
                let mut metadata = json!({"name": name});
                let kind = match ns {
                    Some(ns) => {
                        metadata["namespace"] = json!(format!("ns{ns}"));
                        "NetworkPolicy"
                    }
                    None => "GlobalNetworkPolicy",
                };
                json!({"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": metadata, "spec": spec})
            }
        }
    }
}

fn admin_action(kind: AdminKind, act: Act) -> &'static str {
    match (kind, act) {
        (AdminKind::CnpAdmin | AdminKind::CnpBaseline, Act::Allow) => "Accept",
        (_, Act::Allow) => "Allow",
        (_, Act::Deny) => "Deny",
        _ => "Pass",
    }
}

fn calico_action(act: Act) -> &'static str {
    match act {
        Act::Allow => "Allow",
        Act::Deny => "Deny",
        Act::Pass => "Pass",
        Act::Log => "Log",
    }
}

/// Calico's `types`: as listed (generated to include the directions with rules, never empty),
/// or by default Ingress unless there are only egress rules, Egress when there are egress rules.
fn calico_types(rules: &[Vec<Rule>; 2], listed: Option<[bool; 2]>) -> [bool; 2] {
    let (i, e) = (!rules[INGRESS].is_empty(), !rules[EGRESS].is_empty());
    match listed {
        Some([li, le]) => {
            let (li, le) = (li || i, le || e);
            [li || !le, le]
        }
        None => [!e || i, e],
    }
}

mod check;

//! A synthetic cluster of a given size, shared by the explain benchmark and the memory example:
//! 100 namespaces, pods labelled `app=app-K` (20 apps per namespace) with named container ports,
//! and policies per namespace: one default-deny, the rest selecting one app each with an ingress
//! rule (namespaceSelector AND podSelector, a numeric and a named port) and an egress rule.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Namespace, Pod, PodIP, PodSpec, PodStatus,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use netpol_trace::inventory::{
    ClusterObjects, PodId, PolicySource, Sourced, SourcedPolicy, TieredObjects,
};

/// Namespaces `ns-0` … `ns-99`.
pub const NAMESPACES: usize = 100;
/// Distinct `app` label values per namespace.
pub const APPS_PER_NAMESPACE: usize = 20;

fn labels(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

fn meta(namespace: Option<String>, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta { namespace, name: Some(name), labels: Some(labels), ..ObjectMeta::default() }
}

fn selector(pairs: &[(&str, String)]) -> Option<LabelSelector> {
    Some(LabelSelector { match_labels: Some(labels(pairs)), ..LabelSelector::default() })
}

/// `ns-INDEX`.
pub fn namespace_name(index: usize) -> String {
    format!("ns-{index}")
}

/// Pod `index` lives in namespace `index % NAMESPACES` and is named `pod-INDEX`.
pub fn pod_name(index: usize) -> String {
    format!("pod-{index}")
}

/// The id of pod `index` in an inventory built from [`cluster`] or [`mixed_cluster`].
pub fn pod_id(inventory: &netpol_trace::inventory::Inventory, index: usize) -> PodId {
    let ns = namespace_name(index % NAMESPACES);
    inventory.pod_id(&ns, &pod_name(index)).expect("pod exists")
}

fn pod(index: usize) -> Pod {
    let ns = index % NAMESPACES;
    let app = (index / NAMESPACES) % APPS_PER_NAMESPACE;
    let ip = format!("10.{}.{}.{}", index >> 16 & 0xff, index >> 8 & 0xff, index & 0xff);
    let port = |name: &str, number| ContainerPort {
        name: Some(name.to_owned()),
        container_port: number,
        ..ContainerPort::default()
    };
    Pod {
        metadata: meta(
            Some(namespace_name(ns)),
            pod_name(index),
            labels(&[
                ("app", format!("app-{app}")),
                ("pod-template-hash", format!("{:x}", index * 7919)),
            ]),
        ),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "main".into(),
                ports: Some(vec![port("http", 8080), port("mysql", 3306)]),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            pod_ip: Some(ip.clone()),
            pod_ips: Some(vec![PodIP { ip }]),
            ..PodStatus::default()
        }),
    }
}

fn policy(index: usize) -> NetworkPolicy {
    let ns = index % NAMESPACES;
    let namespace = Some(namespace_name(ns));
    if index < NAMESPACES {
        return NetworkPolicy {
            metadata: meta(namespace, format!("default-deny-{index}"), BTreeMap::new()),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector::default()),
                policy_types: Some(vec!["Ingress".into()]),
                ..NetworkPolicySpec::default()
            }),
        };
    }
    let app = (index / NAMESPACES) % APPS_PER_NAMESPACE;
    let peer_ns = (ns + 1) % NAMESPACES;
    let tcp = |port: IntOrString| NetworkPolicyPort {
        protocol: Some("TCP".into()),
        port: Some(port),
        end_port: None,
    };
    NetworkPolicy {
        metadata: meta(namespace, format!("allow-{index}"), BTreeMap::new()),
        spec: Some(NetworkPolicySpec {
            pod_selector: selector(&[("app", format!("app-{app}"))]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    namespace_selector: selector(&[(
                        "kubernetes.io/metadata.name",
                        namespace_name(peer_ns),
                    )]),
                    pod_selector: selector(&[(
                        "app",
                        format!("app-{}", (app + 1) % APPS_PER_NAMESPACE),
                    )]),
                    ip_block: None,
                }]),
                ports: Some(vec![
                    tcp(IntOrString::Int(3306 + (index % 3) as i32)),
                    tcp(IntOrString::String("http".into())),
                ]),
            }]),
            egress: Some(vec![NetworkPolicyEgressRule {
                to: Some(vec![NetworkPolicyPeer {
                    namespace_selector: Some(LabelSelector::default()),
                    ..NetworkPolicyPeer::default()
                }]),
                ports: Some(vec![tcp(IntOrString::Int(3306))]),
            }]),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
        }),
    }
}

/// `policies` policies (at least one default-deny per namespace first) and `pods` pods.
pub fn cluster(policies: usize, pods: usize) -> ClusterObjects {
    ClusterObjects {
        namespaces: (0..NAMESPACES)
            .map(|i| Namespace {
                metadata: meta(None, namespace_name(i), labels(&[("team", format!("t{}", i % 7))])),
                ..Namespace::default()
            })
            .collect(),
        pods: (0..pods).map(pod).collect(),
        network_policies: (0..policies)
            .map(|i| {
                let policy = policy(i);
                let raw = serde_json::to_value(&policy).expect("serialisable");
                SourcedPolicy { policy, raw, source: PolicySource::InMemory }
            })
            .collect(),
        services: Vec::new(),
        endpoint_slices: Vec::new(),
        tiered: TieredObjects::default(),
    }
}

fn sourced<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Sourced<T> {
    let object = serde_json::from_value(value.clone()).expect("valid object");
    Sourced { object, raw: value, source: PolicySource::InMemory }
}

/// `policies` policies of mixed kinds and `pods` pods: 60% NetworkPolicies (as [`cluster`]),
/// 30% Calico NetworkPolicies (Allow/Deny/Log rules with selectors, namespace selectors and port
/// ranges) in a `security` tier and the default tier, 6% GlobalNetworkPolicies (one of them the
/// usual default deny) and 4% ClusterNetworkPolicies / AdminNetworkPolicies in both tiers.
pub fn mixed_cluster(policies: usize, pods: usize) -> ClusterObjects {
    use serde_json::json;
    let kube = policies * 6 / 10;
    let calico = policies * 3 / 10;
    let global = policies * 6 / 100;
    let admin = policies - kube - calico - global;
    let mut objects = cluster(kube, pods);
    objects.tiered.tiers.push(sourced(json!({
        "apiVersion": "projectcalico.org/v3", "kind": "Tier",
        "metadata": {"name": "security"}, "spec": {"order": 100, "defaultAction": "Pass"}})));
    for i in 0..calico {
        let ns = namespace_name(i % NAMESPACES);
        let app = format!("app-{}", i % APPS_PER_NAMESPACE);
        let tier = if i % 3 == 0 { "security" } else { "default" };
        objects.tiered.calico.push(sourced(json!({
            "apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
            "metadata": {"name": format!("{tier}.cnp-{i}"), "namespace": ns},
            "spec": {"tier": tier, "order": (i % 50) as f64 * 10.0,
                     "selector": format!("app == '{app}' && !has(debug)"),
                     "types": ["Ingress", "Egress"],
                     "ingress": [
                        {"action": "Log"},
                        {"action": "Deny", "protocol": "TCP",
                         "source": {"namespaceSelector": "team in {'t5', 't6'}"}, "destination": {"ports": ["9000:9100"]}},
                        {"action": "Allow", "protocol": "TCP",
                         "source": {"selector": format!("app starts with 'app-{}'", i % 7), "namespaceSelector": "all()"},
                         "destination": {"ports": [3306, "http"]}}],
                     "egress": [{"action": "Allow", "protocol": "TCP", "destination": {"ports": [3306]}}]}})));
    }
    for i in 0..global {
        let spec = if i == 0 {
            json!({"selector": "projectcalico.org/namespace not in {'kube-system'}", "types": ["Ingress", "Egress"]})
        } else {
            json!({"order": 500 + i, "selector": format!("app == 'app-{}'", i % APPS_PER_NAMESPACE),
                   "namespaceSelector": format!("team == 't{}'", i % 7),
                   "ingress": [{"action": "Pass", "source": {"nets": ["192.0.2.0/24"]}}]})
        };
        objects.tiered.calico.push(sourced(json!({
            "apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
            "metadata": {"name": format!("gnp-{i}")}, "spec": spec})));
    }
    for i in 0..admin {
        let tier = if i % 4 == 0 { "Baseline" } else { "Admin" };
        objects.tiered.admin.push(sourced(json!({
            "apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
            "metadata": {"name": format!("cnp-{i}")},
            "spec": {"tier": tier, "priority": i % 1000,
                     "subject": {"namespaces": {"matchLabels": {"team": format!("t{}", i % 7)}}},
                     "ingress": [{"action": "Deny",
                                  "from": [{"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": format!("app-{}", i % APPS_PER_NAMESPACE)}}}}],
                                  "protocols": [{"tcp": {"destinationPort": {"range": {"start": 10000, "end": 20000}}}}]}]}})));
    }
    objects
}

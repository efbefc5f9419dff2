//! The wire form of `policy.networking.k8s.io` objects (kubernetes-sigs/network-policy-api):
//! ClusterNetworkPolicy `v1alpha2`/`v1beta1` and the legacy AdminNetworkPolicy and
//! BaselineAdminNetworkPolicy `v1alpha1`. Not in k8s-openapi, so defined here.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::{Deserialize, Serialize};

/// API group of every kind here.
pub const GROUP: &str = "policy.networking.k8s.io";
/// ClusterNetworkPolicy versions served with the same semantics.
pub const CNP_VERSIONS: [&str; 2] =
    ["policy.networking.k8s.io/v1alpha2", "policy.networking.k8s.io/v1beta1"];
/// AdminNetworkPolicy / BaselineAdminNetworkPolicy version.
pub const ANP_VERSION: &str = "policy.networking.k8s.io/v1alpha1";

/// Any of the three kinds: they share `subject`, rules and peers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminPolicyObject {
    /// `apiVersion`.
    #[serde(default)]
    pub api_version: String,
    /// `kind`.
    #[serde(default)]
    pub kind: String,
    /// `metadata`.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// `spec`.
    #[serde(default)]
    pub spec: AdminPolicySpec,
}

/// `spec`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminPolicySpec {
    /// `tier` (ClusterNetworkPolicy): `Admin` or `Baseline`.
    pub tier: Option<String>,
    /// `priority` (ClusterNetworkPolicy, AdminNetworkPolicy): 0-1000, lower first.
    pub priority: Option<i64>,
    /// `subject`: exactly one of `namespaces` and `pods`.
    pub subject: Option<Subject>,
    /// `ingress` rules, in precedence order.
    pub ingress: Option<Vec<AdminRule>>,
    /// `egress` rules, in precedence order.
    pub egress: Option<Vec<AdminRule>>,
}

/// `subject`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    /// Every pod of the selected namespaces.
    pub namespaces: Option<LabelSelector>,
    /// Pods selected by namespace and pod selectors.
    pub pods: Option<NamespacedPod>,
}

/// `namespaceSelector` AND `podSelector`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespacedPod {
    /// Empty selects every namespace.
    #[serde(default)]
    pub namespace_selector: LabelSelector,
    /// Empty selects every pod.
    #[serde(default)]
    pub pod_selector: LabelSelector,
    /// The early v1alpha1 peer form `pods: {namespaces: {namespaceSelector: ...}, podSelector}`
    /// (in place of `namespaceSelector`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<PeerNamespaces>,
}

/// A peer's `namespaces`: a label selector (the current API), or the early v1alpha1
/// `NamespacedPeer` form `{namespaceSelector | sameLabels | notSameLabels}` that clusters
/// installed from the first releases still hold. Read as a plain selector, the early form
/// would select every namespace (its keys are not selector keys), so it is told apart here.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PeerNamespaces {
    /// The early `NamespacedPeer` form (only its keys are accepted).
    Early(EarlyNamespacedPeer),
    /// A label selector.
    Selector(LabelSelector),
}

/// The early v1alpha1 `NamespacedPeer`: exactly one field set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EarlyNamespacedPeer {
    /// Namespaces by label.
    pub namespace_selector: Option<LabelSelector>,
    /// Namespaces sharing these label values with the subject's namespace.
    pub same_labels: Option<Vec<String>>,
    /// Namespaces differing in these label values from the subject's namespace.
    pub not_same_labels: Option<Vec<String>>,
}

/// One ingress or egress rule (`from` for ingress, `to` for egress).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminRule {
    /// `name`, for observability.
    pub name: Option<String>,
    /// `action`.
    #[serde(default)]
    pub action: String,
    /// Ingress peers.
    pub from: Option<Vec<AdminPeer>>,
    /// Egress peers.
    pub to: Option<Vec<AdminPeer>>,
    /// v1alpha1 `ports`.
    pub ports: Option<Vec<AdminPort>>,
    /// v1alpha2 `protocols`.
    pub protocols: Option<Vec<CnpProtocol>>,
}

/// A peer: exactly one field set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminPeer {
    /// Every pod of the selected namespaces.
    pub namespaces: Option<PeerNamespaces>,
    /// Pods in namespaces.
    pub pods: Option<NamespacedPod>,
    /// Nodes by label (egress only): their addresses are not known here, so never matched.
    pub nodes: Option<LabelSelector>,
    /// CIDRs (egress only).
    pub networks: Option<Vec<String>>,
    /// Domain names (ClusterNetworkPolicy egress Accept only): resolved by DNS, never matched here.
    pub domain_names: Option<Vec<String>>,
}

/// v1alpha1 port: exactly one field set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminPort {
    /// One port.
    pub port_number: Option<PortNumber>,
    /// A container port name on the destination pod.
    pub named_port: Option<String>,
    /// An inclusive range.
    pub port_range: Option<PortRangeV1>,
}

/// v1alpha1 `portNumber`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortNumber {
    /// Default TCP.
    pub protocol: Option<String>,
    /// 1-65535.
    pub port: i64,
}

/// v1alpha1 `portRange`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortRangeV1 {
    /// Default TCP.
    pub protocol: Option<String>,
    /// First port.
    pub start: i64,
    /// Last port (inclusive), above `start`.
    pub end: i64,
}

/// v1alpha2 protocol entry: exactly one field set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CnpProtocol {
    /// TCP.
    pub tcp: Option<CnpProtocolPorts>,
    /// UDP.
    pub udp: Option<CnpProtocolPorts>,
    /// SCTP.
    pub sctp: Option<CnpProtocolPorts>,
    /// A container port name on the destination pod (any protocol it is declared with).
    pub destination_named_port: Option<String>,
}

/// `destinationPort` of a protocol.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CnpProtocolPorts {
    /// Required by the API (the object has at least one property).
    pub destination_port: Option<CnpPort>,
}

/// A number or a range (exactly one).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CnpPort {
    /// One port.
    pub number: Option<i64>,
    /// An inclusive range.
    pub range: Option<CnpRange>,
}

/// v1alpha2 range: `start < end`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CnpRange {
    /// First port.
    pub start: i64,
    /// Last port, inclusive.
    pub end: i64,
}

//! The wire form of Calico's policy objects: `projectcalico.org/v3` (the API server) and
//! `crd.projectcalico.org/v1` (the same objects as stored in CRDs) NetworkPolicy,
//! GlobalNetworkPolicy and Tier.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The versions Calico objects are read in.
pub const VERSIONS: [&str; 2] = ["projectcalico.org/v3", "crd.projectcalico.org/v1"];

/// A NetworkPolicy or GlobalNetworkPolicy.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CalicoPolicyObject {
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
    pub spec: CalicoPolicySpec,
}

/// `spec` of both policy kinds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CalicoPolicySpec {
    /// `tier` (default `default`).
    pub tier: Option<String>,
    /// `order`: lower first; absent sorts last.
    pub order: Option<f64>,
    /// Endpoint selector (empty: `all()`).
    pub selector: Option<String>,
    /// GlobalNetworkPolicy: namespaces whose endpoints it applies to.
    pub namespace_selector: Option<String>,
    /// Service accounts whose endpoints it applies to.
    pub service_account_selector: Option<String>,
    /// `Ingress` and/or `Egress`; defaulted from the rules when absent.
    pub types: Option<Vec<String>>,
    /// Ingress rules.
    pub ingress: Option<Vec<CalicoRuleSpec>>,
    /// Egress rules.
    pub egress: Option<Vec<CalicoRuleSpec>>,
    /// Host-endpoint options, not used for pods.
    pub do_not_track: Option<bool>,
    /// Host-endpoint options, not used for pods.
    pub pre_dnat: Option<bool>,
    /// Host-endpoint options, not used for pods.
    pub apply_on_forward: Option<bool>,
}

/// One rule.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CalicoRuleSpec {
    /// Allow, Deny, Log or Pass.
    #[serde(default)]
    pub action: String,
    /// 4 or 6.
    pub ip_version: Option<i64>,
    /// A name (TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite) or a number 1-255.
    pub protocol: Option<Value>,
    /// Like `protocol`, negated.
    pub not_protocol: Option<Value>,
    /// ICMP type/code (ICMP rules only).
    pub icmp: Option<Value>,
    /// ICMP type/code, negated.
    pub not_icmp: Option<Value>,
    /// Source match.
    #[serde(default)]
    pub source: EntityRuleSpec,
    /// Destination match.
    #[serde(default)]
    pub destination: EntityRuleSpec,
    /// HTTP match (application layer).
    pub http: Option<Value>,
    /// Annotations.
    pub metadata: Option<Value>,
}

/// `source` / `destination`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntityRuleSpec {
    /// CIDRs (or addresses) the entity's address must be in.
    pub nets: Option<Vec<String>>,
    /// CIDRs its address must not be in.
    pub not_nets: Option<Vec<String>>,
    /// Endpoints it must be.
    pub selector: Option<String>,
    /// Endpoints it must not be.
    pub not_selector: Option<String>,
    /// Namespaces it must be in.
    pub namespace_selector: Option<String>,
    /// Ports: numbers, `"a:b"` ranges, or names.
    pub ports: Option<Vec<Value>>,
    /// Ports it must not use.
    pub not_ports: Option<Vec<Value>>,
    /// Service accounts it must run as.
    pub service_accounts: Option<ServiceAccountMatch>,
    /// A Kubernetes Service.
    pub services: Option<Value>,
}

/// `serviceAccounts`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountMatch {
    /// Names, in the policy's namespace (or any, for a global policy).
    pub names: Option<Vec<String>>,
    /// Selector over service account labels.
    pub selector: Option<String>,
}

/// A Tier.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TierObject {
    /// `apiVersion`.
    #[serde(default)]
    pub api_version: String,
    /// `metadata`.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// `spec`.
    #[serde(default)]
    pub spec: TierSpec,
}

/// `spec` of a Tier.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TierSpec {
    /// Lower first; absent sorts last.
    pub order: Option<f64>,
    /// `Deny` (default) or `Pass`: what happens at the end of the tier.
    pub default_action: Option<String>,
}

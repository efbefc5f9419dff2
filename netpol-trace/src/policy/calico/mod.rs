//! Calico NetworkPolicy, GlobalNetworkPolicy and Tier as Felix enforces them on pods. Pure:
//! the selector language, validation into a [`CalicoPolicy`], and how rules match a flow.
//!
//! * [`selector`]: the selector language (parser with located errors, evaluation).
//! * [`model`]: the objects as written (serde), `projectcalico.org/v3` and
//!   `crd.projectcalico.org/v1`.
//! * [`compile`]: validation as Calico's API server does, with errors naming the field.
//! * [`entity`]: how a pod or an address looks to a rule's `source`/`destination` (endpoint
//!   labels as Calico derives them) and how a rule matches.

pub mod compile;
pub mod entity;
pub mod model;
pub mod selector;

use ipnet::IpNet;

pub use compile::{compile_calico_policy, compile_tier};
pub use entity::{EndpointView, Entity};
pub use selector::{CalicoSelector, LabelLookup, SelectorContext, SelectorError};

use super::Direction;
use super::kind::{PolicyKind, RuleAction};

/// The tier every cluster has, holding Kubernetes NetworkPolicies.
pub const DEFAULT_TIER: &str = "default";
/// The order Calico gives Kubernetes NetworkPolicies within the default tier.
pub const KUBERNETES_POLICY_ORDER: f64 = 1000.0;
/// The order of the default tier when no Tier object sets one (Calico's built-in value).
pub const DEFAULT_TIER_ORDER: f64 = 1_000_000.0;
/// The name prefix Calico gives Kubernetes NetworkPolicies it converts.
pub const KUBERNETES_POLICY_PREFIX: &str = "knp.default.";

/// A validated Tier.
#[derive(Debug, Clone, PartialEq)]
pub struct CalicoTier {
    /// `metadata.name`.
    pub name: String,
    /// `spec.order`; `None` sorts last.
    pub order: Option<f64>,
    /// `spec.defaultAction: Pass`: the end of the tier goes on to the next one instead of denying.
    pub pass_at_end: bool,
}

impl CalicoTier {
    /// The built-in default tier.
    pub fn default_tier() -> Self {
        Self { name: DEFAULT_TIER.to_owned(), order: Some(DEFAULT_TIER_ORDER), pass_at_end: false }
    }
}

/// A port of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalicoPort {
    /// `first..=last`; a single number has both equal.
    Range(u16, u16),
    /// A named port of the endpoint (resolved on the destination pod with the rule's protocol).
    Named(String),
}

impl std::fmt::Display for CalicoPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Range(a, b) if a == b => write!(f, "{a}"),
            Self::Range(a, b) => write!(f, "{a}:{b}"),
            Self::Named(name) => f.write_str(name),
        }
    }
}

/// `serviceAccounts` of an entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccounts {
    /// Names (empty: any).
    pub names: Vec<String>,
    /// Selector over the account's labels.
    pub selector: Option<CalicoSelector>,
}

/// A validated `source` / `destination`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EntityMatch {
    /// `nets`.
    pub nets: Vec<IpNet>,
    /// `notNets`.
    pub not_nets: Vec<IpNet>,
    /// `selector`.
    pub selector: Option<CalicoSelector>,
    /// `notSelector`.
    pub not_selector: Option<CalicoSelector>,
    /// `namespaceSelector`.
    pub namespace_selector: Option<CalicoSelector>,
    /// For a namespaced policy without `namespaceSelector`: selectors only see its namespace.
    pub own_namespace: Option<String>,
    /// `serviceAccounts`.
    pub service_accounts: Option<ServiceAccounts>,
    /// `ports`.
    pub ports: Vec<CalicoPort>,
    /// `notPorts`.
    pub not_ports: Vec<CalicoPort>,
    /// `services`: matching a Service's endpoints is not modelled; such a rule never matches.
    pub services: bool,
}

/// A validated rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalicoRule {
    /// Allow, Deny, Log or Pass.
    pub action: RuleAction,
    /// `ipVersion`: 4 or 6.
    pub ip_version: Option<u8>,
    /// `protocol` as an IP protocol number.
    pub protocol: Option<u8>,
    /// `notProtocol` as an IP protocol number.
    pub not_protocol: Option<u8>,
    /// `source`.
    pub source: EntityMatch,
    /// `destination`.
    pub destination: EntityMatch,
    /// `http`: application-layer matches this engine cannot see; such a rule never matches.
    pub http: bool,
}

/// A validated NetworkPolicy or GlobalNetworkPolicy.
#[derive(Debug, Clone, PartialEq)]
pub struct CalicoPolicy {
    /// `NetworkPolicy` (namespaced) or `GlobalNetworkPolicy`.
    pub kind: PolicyKind,
    /// The namespace of a NetworkPolicy.
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
    /// `spec.tier`.
    pub tier: String,
    /// `spec.order`; `None` sorts last.
    pub order: Option<f64>,
    /// `spec.selector`.
    pub selector: CalicoSelector,
    /// `spec.namespaceSelector` (GlobalNetworkPolicy).
    pub namespace_selector: Option<CalicoSelector>,
    /// `spec.serviceAccountSelector`.
    pub service_account_selector: Option<CalicoSelector>,
    /// Ingress rules when `types` includes Ingress.
    pub ingress: Option<Vec<CalicoRule>>,
    /// Egress rules when `types` includes Egress.
    pub egress: Option<Vec<CalicoRule>>,
}

impl CalicoPolicy {
    /// The rules of `direction`, `None` when the policy does not apply to it.
    pub fn rules(&self, direction: Direction) -> Option<&[CalicoRule]> {
        match direction {
            Direction::Ingress => self.ingress.as_deref(),
            Direction::Egress => self.egress.as_deref(),
        }
    }

    /// The name Felix sorts by: `namespace/name` for a namespaced policy.
    pub fn sort_name(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}/{}", self.name),
            None => self.name.clone(),
        }
    }

    /// Whether the policy applies to `endpoint` (before looking at directions).
    pub fn selects(&self, endpoint: &EndpointView<'_>) -> bool {
        self.namespace.as_deref().is_none_or(|ns| ns == endpoint.namespace)
            && self.selector.matches(endpoint, SelectorContext::Endpoint)
            && self
                .namespace_selector
                .as_ref()
                .is_none_or(|s| s.matches(&endpoint.namespace_view(), SelectorContext::Namespace))
            && self.service_account_selector.as_ref().is_none_or(|s| {
                s.matches(&endpoint.service_account_view(), SelectorContext::Endpoint)
            })
    }
}

/// Sort key of an optional order: `None` after every number.
pub fn order_key(order: Option<f64>) -> (bool, f64) {
    (order.is_none(), order.unwrap_or(0.0))
}

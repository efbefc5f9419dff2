//! The policy kinds the engine evaluates and the actions their rules take, named as their APIs
//! name them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The kind of a policy object.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub enum PolicyKind {
    /// `networking.k8s.io/v1` NetworkPolicy (also Calico's `NetworkPolicy` when it has a tier:
    /// both are called `NetworkPolicy` by their APIs). `KubernetesNetworkPolicy` is read as this.
    #[default]
    #[serde(alias = "KubernetesNetworkPolicy")]
    NetworkPolicy,
    /// `policy.networking.k8s.io/v1alpha2` ClusterNetworkPolicy (Admin or Baseline tier).
    ClusterNetworkPolicy,
    /// `policy.networking.k8s.io/v1alpha1` AdminNetworkPolicy.
    AdminNetworkPolicy,
    /// `policy.networking.k8s.io/v1alpha1` BaselineAdminNetworkPolicy.
    BaselineAdminNetworkPolicy,
    /// `projectcalico.org/v3` GlobalNetworkPolicy.
    GlobalNetworkPolicy,
}

impl PolicyKind {
    /// The API's kind name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NetworkPolicy => "NetworkPolicy",
            Self::ClusterNetworkPolicy => "ClusterNetworkPolicy",
            Self::AdminNetworkPolicy => "AdminNetworkPolicy",
            Self::BaselineAdminNetworkPolicy => "BaselineAdminNetworkPolicy",
            Self::GlobalNetworkPolicy => "GlobalNetworkPolicy",
        }
    }

    /// Whether only cluster administrators can write objects of this kind.
    pub fn cluster_scoped(self) -> bool {
        !matches!(self, Self::NetworkPolicy)
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a matching rule does, across kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleEffect {
    /// Allow (NetworkPolicy, Calico, AdminNetworkPolicy) or Accept (ClusterNetworkPolicy).
    Allow,
    /// Deny.
    Deny,
    /// Skip the rest of the tier.
    Pass,
    /// Calico's Log: record and go on with the next rule.
    Log,
}

/// A rule's action with the spelling of its API (`Accept` and `Allow` both allow).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RuleAction {
    /// What it does.
    pub effect: RuleEffect,
    /// How the API spells it.
    pub name: &'static str,
}

impl RuleAction {
    /// NetworkPolicy's implicit action.
    pub const ALLOW: Self = Self { effect: RuleEffect::Allow, name: "Allow" };
    /// A deny.
    pub const DENY: Self = Self { effect: RuleEffect::Deny, name: "Deny" };

    /// Parses one of `names` (the API's spellings), each with its effect.
    pub fn parse(value: &str, names: &[(&'static str, RuleEffect)]) -> Result<Self, String> {
        names
            .iter()
            .find(|(name, _)| *name == value)
            .map(|&(name, effect)| Self { effect, name })
            .ok_or_else(|| {
                let all: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
                format!("unsupported action {value:?} (want {})", all.join(", "))
            })
    }
}

impl fmt::Display for RuleAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// Why a rule did not match: a field path relative to the rule, what it wants, what the flow
/// has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldMiss {
    /// e.g. `destination.ports`.
    pub field: String,
    /// What would have matched.
    pub want: String,
    /// What the flow has.
    pub got: String,
}

/// Collects misses, or stops at the first when nobody asked for them.
pub struct Misses<'a>(pub Option<&'a mut Vec<FieldMiss>>);

impl Misses<'_> {
    /// Records a failed check; returns whether evaluation should go on.
    pub fn miss(
        &mut self,
        field: impl Into<String>,
        want: impl Into<String>,
        got: impl Into<String>,
    ) -> bool {
        match &mut self.0 {
            Some(out) => {
                out.push(FieldMiss { field: field.into(), want: want.into(), got: got.into() });
                true
            }
            None => false,
        }
    }
}

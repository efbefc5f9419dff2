//! The plan: what `fix` answers (the `fix -o json` contract), and applying it in memory.

use std::path::PathBuf;

use json_patch::Patch;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde::Serialize;
use serde_json::Value;

use super::{AllowedPair, FixError, Hint};
use crate::explain::{ExplainOptions, FlowSummary, Verdict};
use crate::inventory::{Inventory, PolicySource, TieredObjects};
use crate::policy::{Direction, PolicyKind};

/// Label put on created policies.
pub const MANAGED_BY_LABEL: (&str, &str) = ("app.kubernetes.io/managed-by", "netpol-trace");

/// Annotation on created policies naming the flow they were made for.
pub const FLOW_ANNOTATION: &str = "netpol-trace.io/flow";

/// Choices for [`plan_fix`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FixOptions {
    /// How flows are evaluated (ipBlock against pod IPs or not).
    pub explain: ExplainOptions,
}

/// What a patch entry does to its policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PatchAction {
    /// Edit an existing policy with `json_patch`.
    Patch,
    /// Create the policy in `object`.
    Create,
    /// Delete the policy (only the `--fallback delete-policy` plan).
    Delete,
}

/// One change to one policy: an entry of `patches` in `fix -o json`.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyPatch {
    /// The policy's kind, as its API names it.
    pub kind: PolicyKind,
    /// Namespace of the policy (empty, and left out of JSON, for cluster-scoped kinds).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Name of the policy.
    pub name: String,
    /// Its tier, for tiered kinds (`Admin`/`Baseline`, or a Calico tier).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Whether only a cluster administrator can make this change (an admin-tier policy):
    /// `--apply` leaves it to them.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub requires_cluster_admin: bool,
    /// The direction the change opens.
    pub direction: Direction,
    /// Patch, create or delete.
    pub action: PatchAction,
    /// RFC 6902 operations against the object as read (or, for a second entry on the same
    /// object, as left by the entries before it); `action: patch` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json_patch: Option<Patch>,
    /// The whole new NetworkPolicy; `action: create` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<Value>,
    /// The same change as a kubectl command.
    pub kubectl: String,
    /// Connections this entry's policy lets through after the plan that it did not before
    /// (its blast radius), over all known pods.
    pub newly_allowed: Vec<AllowedPair>,
    /// What changes, in words (extra field).
    pub change: String,
    /// Remarks about the denying policies, e.g. a likely typo (extra field).
    pub hints: Vec<Hint>,
    /// Where the policy was read from: `FILE, document N`, `cluster`, or `new` (extra field).
    pub source: String,
    /// The policy after this entry (and the ones before it on the same object); `Null` for a
    /// deletion.
    #[serde(skip)]
    pub result: Value,
    /// The policy as read (`None` for a created one).
    #[serde(skip)]
    pub original: Option<Value>,
    /// Where the policy was read from.
    #[serde(skip)]
    pub policy_source: PolicySource,
    /// For a created policy: the manifest file of a policy it complements (one isolating the
    /// same pods), where `--apply -f` appends it.
    #[serde(skip)]
    pub companion_file: Option<PathBuf>,
}

impl PolicyPatch {
    /// `namespace/name`, or `Kind name` for a cluster-scoped policy.
    pub fn key(&self) -> String {
        if self.namespace.is_empty() {
            format!("{} {}", self.kind, self.name)
        } else if self.tier.is_some() {
            format!("{} {}/{}", self.kind, self.namespace, self.name)
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }

    /// Whether this changes a Kubernetes NetworkPolicy (not a tiered kind).
    pub fn is_kubernetes(&self) -> bool {
        self.tier.is_none()
    }
}

/// The answer of `fix`: the `fix -o json` contract.
#[derive(Debug, Clone, Serialize)]
pub struct FixPlan {
    /// The flow (the first one when several were fixed together, e.g. a Service's backends).
    pub flow: FlowSummary,
    /// Every flow of the plan, when there are several (extra field).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flows: Vec<FlowSummary>,
    /// `deny` when any flow is denied today.
    pub verdict_before: Verdict,
    /// `allow` when the plan allows every flow.
    pub verdict_after: Verdict,
    /// The changes, in the order they apply.
    pub patches: Vec<PolicyPatch>,
    /// Every connection the whole plan newly allows (extra field).
    pub newly_allowed: Vec<AllowedPair>,
    /// One line for people, e.g. `nothing to do: the flow is already allowed` (extra field).
    pub summary: String,
}

impl FixPlan {
    /// Whether the flow was allowed already and nothing changes.
    pub fn is_noop(&self) -> bool {
        self.patches.is_empty()
    }

    /// Whether some change needs a cluster administrator.
    pub fn requires_cluster_admin(&self) -> bool {
        self.patches.iter().any(|p| p.requires_cluster_admin)
    }

    /// The Kubernetes NetworkPolicies as the plan leaves them (patched and created ones; each
    /// once, in its final state), typed.
    pub fn policies(&self) -> Result<Vec<NetworkPolicy>, FixError> {
        self.final_entries()
            .into_iter()
            .filter(|entry| entry.action != PatchAction::Delete && entry.is_kubernetes())
            .map(|entry| {
                serde_json::from_value(entry.result.clone()).map_err(|e| FixError::InvalidResult {
                    policy: entry.key(),
                    message: e.to_string(),
                })
            })
            .collect()
    }

    /// The last entry of each policy the plan touches, in first-touched order: its `result` is
    /// the policy's final state.
    pub fn final_entries(&self) -> Vec<&PolicyPatch> {
        let mut seen: Vec<String> = Vec::new();
        let mut out: Vec<&PolicyPatch> = Vec::new();
        for entry in &self.patches {
            let key = entry.key();
            match seen.iter().position(|k| *k == key) {
                Some(index) => out[index] = entry,
                None => {
                    seen.push(key);
                    out.push(entry);
                }
            }
        }
        out
    }

    /// `inventory` with the plan applied: patched policies replaced, created ones added,
    /// deleted ones removed. This is what a caller re-renders its datapath from.
    pub fn apply_to(&self, inventory: &Inventory) -> Result<Inventory, FixError> {
        let removed: Vec<(String, String)> = self
            .patches
            .iter()
            .filter(|p| p.action == PatchAction::Delete)
            .map(|p| (p.namespace.clone(), p.name.clone()))
            .collect();
        let base = inventory.with_policies_removed(&removed);
        let invalid = |e: crate::inventory::InvalidPolicy| FixError::InvalidResult {
            policy: format!("{}/{}", e.error.namespace, e.error.name),
            message: e.to_string(),
        };
        let after = base.with_policies_replaced(self.policies()?).map_err(invalid)?;
        let mut tiered = TieredObjects::default();
        for entry in self.final_entries().into_iter().filter(|e| !e.is_kubernetes()) {
            super::tiered::add_object(&mut tiered, entry.kind, &entry.result, &entry.key())?;
        }
        if tiered.is_empty() {
            Ok(after)
        } else {
            after.with_tiered_replaced(tiered).map_err(invalid)
        }
    }
}

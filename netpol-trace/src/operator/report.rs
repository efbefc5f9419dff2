//! The `DropReport` custom resource (`dropreports.netpol-trace.io/v1alpha1`): one dropped flow
//! identity, what the agents saw of it, who denied it, the fix proposed, and — once a person or
//! the narrow auto-approval decided — what the controller applied and the backup to undo it.
//!
//! Field names are camelCase, as Kubernetes APIs are; the schema generated from these types is
//! the one shipped in `deploy/` (checked by a test).

use chrono::{DateTime, Utc};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// API group of the DropReport.
pub const GROUP: &str = "netpol-trace.io";
/// API version of the DropReport.
pub const VERSION: &str = "v1alpha1";
/// Plural resource name.
pub const PLURAL: &str = "dropreports";

/// What a report is about and what people decided: written once by the agent that creates it,
/// except `decision`, which only people (or the controller's auto-approval) set.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "netpol-trace.io",
    version = "v1alpha1",
    kind = "DropReport",
    plural = "dropreports",
    shortname = "dr",
    namespaced,
    status = "DropReportStatus",
    printcolumn = r#"{"name":"Source","type":"string","jsonPath":".spec.source.workload"}"#,
    printcolumn = r#"{"name":"Destination","type":"string","jsonPath":".spec.destination.workload"}"#,
    printcolumn = r#"{"name":"Port","type":"integer","jsonPath":".spec.port"}"#,
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.state"}"#,
    printcolumn = r#"{"name":"Fix","type":"string","jsonPath":".status.fix.phase"}"#,
    printcolumn = r#"{"name":"Count","type":"integer","jsonPath":".status.count"}"#,
    printcolumn = r#"{"name":"Last Seen","type":"date","jsonPath":".status.lastSeen"}"#,
    printcolumn = r#"{"name":"Decision","type":"string","jsonPath":".spec.decision","priority":1}"#,
    printcolumn = r#"{"name":"Source IP","type":"string","jsonPath":".spec.source.ip","priority":1}"#,
    category = "netpol-trace"
)]
#[serde(rename_all = "camelCase")]
pub struct DropReportSpec {
    /// Who connects: a workload, or an address outside the cluster.
    pub source: FlowEnd,
    /// Who is connected to.
    pub destination: FlowEnd,
    /// Destination port.
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// `TCP`, `UDP` or `SCTP`.
    #[schemars(extend("enum" = ["TCP", "UDP", "SCTP"]))]
    pub protocol: String,
    /// Absent while pending; set by `netpol-trace approve|reject` or the auto-approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
}

/// One end of a flow: `{namespace, workload, kind}` for pods, `{ip}` for an outside address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FlowEnd {
    /// Namespace of the workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Workload name (Deployment, StatefulSet... or the pod itself when it has no owner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// Workload kind: `Deployment`, `StatefulSet`, `DaemonSet`, `Job`, `CronJob`, `ReplicaSet`,
    /// `Pod`...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// An address that belongs to no pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

impl FlowEnd {
    /// A workload end.
    pub fn workload(namespace: &str, workload: &str, kind: &str) -> Self {
        Self {
            namespace: Some(namespace.into()),
            workload: Some(workload.into()),
            kind: Some(kind.into()),
            ip: None,
        }
    }

    /// An outside address.
    pub fn address(ip: std::net::IpAddr) -> Self {
        Self { ip: Some(ip.to_string()), ..Self::default() }
    }

    /// `namespace/workload`, or the address.
    pub fn display(&self) -> String {
        match (&self.namespace, &self.workload, &self.ip) {
            (Some(ns), Some(w), _) => format!("{ns}/{w}"),
            (_, _, Some(ip)) => ip.clone(),
            (None, Some(w), None) => w.clone(),
            _ => "?".into(),
        }
    }
}

/// What people decided about a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Decision {
    /// Apply the fix (again, after a rollback).
    Approved,
    /// Leave the policies as they are.
    Rejected,
}

impl Decision {
    /// The value as written in `spec.decision`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "Approved",
            Self::Rejected => "Rejected",
        }
    }
}

/// Whether the flow is still dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum FlowState {
    /// SYNs are being dropped.
    Dropping,
    /// A SYN-ACK was seen after the drops.
    Restored,
}

/// What agents saw, who denied the flow, and the fix.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DropReportStatus {
    /// `Dropping` or `Restored`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<FlowState>,
    /// First drop over all nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<DateTime<Utc>>,
    /// Latest drop over all nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<DateTime<Utc>>,
    /// Dropped SYNs over all nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// One entry per node that saw drops, each written only by that node's agent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeEntry>,
    /// The policies that deny the flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribution: Option<Attribution>,
    /// The fix: proposed, applied, rolled back...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<FixStatus>,
}

/// What one node's agent saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeEntry {
    /// Node name.
    pub node: String,
    /// Dropped SYNs seen on this node.
    pub count: u64,
    /// Latest drop on this node.
    pub last_seen: DateTime<Utc>,
    /// Interface the dropped SYN entered the node on.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ifname: String,
    /// The kernel's drop reason (`NETFILTER_DROP`...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Whether the SYN was seen leaving the source pod's own veth (its host side is the
    /// interface the pod with the source address is attached to). A SYN whose source address
    /// belongs to a pod on another interface is spoofed and never auto-approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_source_veth: Option<bool>,
}

/// A policy that denies the flow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRef {
    /// `NetworkPolicy`, `AdminNetworkPolicy`...
    pub kind: String,
    /// Namespace (absent for cluster-scoped kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// `ingress` or `egress`.
    pub direction: String,
}

/// Who denies the flow, and the closest rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Attribution {
    /// The denying policies.
    #[serde(default)]
    pub policies: Vec<PolicyRef>,
    /// The closest rule and what it lacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// Where the fix stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum FixPhase {
    /// Found, waiting for a decision.
    Proposed,
    /// Written by the controller.
    Applied,
    /// The live policies allow the flow already.
    NotNeeded,
    /// Writing failed (the message says why); nothing is half-applied.
    Failed,
    /// Undone by `netpol-trace restore dropreport/NAME`.
    RolledBack,
    /// No safe patch exists (the message says why).
    Unfixable,
}

impl FixPhase {
    /// The value as written in `status.fix.phase`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Proposed => "Proposed",
            Self::Applied => "Applied",
            Self::NotNeeded => "NotNeeded",
            Self::Failed => "Failed",
            Self::RolledBack => "RolledBack",
            Self::Unfixable => "Unfixable",
        }
    }
}

/// The fix of a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FixStatus {
    /// Where it stands.
    pub phase: FixPhase,
    /// The changes, as `fix -o json` prints them, with camelCase keys (`jsonPatch`,
    /// `newlyAllowed`).
    #[serde(default)]
    #[schemars(schema_with = "preserved_list")]
    pub patches: Vec<Value>,
    /// Why it failed or is unfixable, or what was done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// What the controller wrote (also while it is writing: the backup comes first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<Applied>,
    /// `metadata.generation` of the report when the controller last decided its phase: a new
    /// decision (spec change) is looked at again, a final answer is not retried in a loop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// What the controller wrote, and how to undo it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Applied {
    /// When the last write succeeded (absent while the writes are under way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    /// The controller instance (its pod name) that wrote.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub by: String,
    /// resourceVersion of each object after the write.
    #[serde(default)]
    pub resource_versions: Vec<ObjectVersion>,
    /// Every object as it was before the fix; `object: null` for one the fix created.
    #[serde(default)]
    pub backup: Vec<BackupObject>,
}

/// An object's resourceVersion after the fix.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectVersion {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// resourceVersion.
    pub resource_version: String,
}

/// An object as it was before the fix.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupObject {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The whole object as read; `null` when the fix creates it.
    #[serde(default)]
    #[schemars(schema_with = "preserved_object")]
    pub object: Option<Value>,
}

/// A list of whole objects: the API server must keep every field.
fn preserved_list(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
    })
}

/// A whole object (or null): the API server must keep every field.
fn preserved_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "nullable": true,
        "x-kubernetes-preserve-unknown-fields": true
    })
}

impl DropReport {
    /// The report's fix phase, if it has a fix.
    pub fn phase(&self) -> Option<FixPhase> {
        self.status.as_ref().and_then(|s| s.fix.as_ref()).map(|f| f.phase)
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!(
            "{}/{}",
            self.metadata.namespace.as_deref().unwrap_or_default(),
            self.metadata.name.as_deref().unwrap_or_default()
        )
    }
}

/// The header of the shipped CRD file.
const CRD_HEADER: &str = "\
# DropReport: one dropped flow identity (source workload or IP, destination workload, port,
# protocol), in the destination's namespace. Node agents create it and fill its status through
# /status; a person (`netpol-trace approve|reject`, or `kubectl patch`) or the controller's narrow
# auto-approval sets spec.decision; the controller applies approved fixes and records the backup
# in the status. Backed-up objects and patches are kept whole (x-kubernetes-preserve-unknown-fields).
#
# Generated from netpol-trace/src/operator/report.rs; do not edit by hand:
#   cargo run -p netpol-trace --example dropreport_crd > deploy/crd-dropreport.yaml
# The Helm chart's crds/dropreports.yaml is the same file; a test checks both.
";

/// The CRD as shipped in `deploy/crd-dropreport.yaml`: a header comment and the YAML that
/// the types generate.
pub fn crd_yaml() -> Result<String, serde_yaml_ng::Error> {
    use kube::CustomResourceExt;
    Ok(format!("{CRD_HEADER}{}", serde_yaml_ng::to_string(&DropReport::crd())?))
}

//! What a report says, independent of where it came from (NDJSON streams or a DropReport)
//! and of how it is rendered (HTML or Markdown). Sections follow the order an incident
//! review reads them.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

/// The runbook's restore-time objective (30 minutes), in milliseconds.
pub const OBJECTIVE_MS: u64 = 30 * 60 * 1000;

/// Everything a report shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    /// The dropped flows, most dropped first.
    pub flows: Vec<FlowReport>,
    /// Detected / attributed / patched / restored, in time order.
    pub markers: Vec<Marker>,
    /// Times to detect, attribute and restore.
    pub timings: Timings,
    /// The denying policies and their closest rules.
    pub causes: Vec<Cause>,
    /// The change that repaired the flow, when the evidence holds one.
    pub change: Option<Change>,
    /// Where the pre-change objects are and how to put them back.
    pub recovery: Recovery,
    /// Per node and interface: what the kernel saw.
    pub kernel: Vec<KernelRow>,
    /// Packet captures named by the evidence.
    pub pcaps: Vec<PcapFile>,
    /// How this was measured.
    pub measured: Measurement,
}

impl Incident {
    /// Whether every dropped flow completed its handshake afterwards.
    pub fn restored(&self) -> bool {
        !self.flows.is_empty() && self.flows.iter().all(|f| f.restored_at.is_some())
    }

    /// The first dropped SYN of the incident.
    pub fn started(&self) -> Option<DateTime<Utc>> {
        self.flows.iter().map(|f| f.first_seen).min()
    }

    /// The last thing the evidence shows (a drop, a restore or a marker).
    pub fn last_evidence(&self) -> Option<DateTime<Utc>> {
        let flows = self.flows.iter().flat_map(|f| [Some(f.last_seen), f.restored_at]).flatten();
        flows.chain(self.markers.iter().map(|m| m.time)).max()
    }
}

/// One dropped flow: source workload → destination workload:port.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowReport {
    /// `namespace/workload`, or the address of an outside client.
    pub source: String,
    /// `namespace/workload`, or an address.
    pub destination: String,
    /// Destination port.
    pub port: u16,
    /// Transport protocol.
    pub protocol: String,
    /// Source pods seen (`namespace/pod`).
    pub source_pods: BTreeSet<String>,
    /// Destination pods seen.
    pub destination_pods: BTreeSet<String>,
    /// First dropped SYN.
    pub first_seen: DateTime<Utc>,
    /// Latest dropped SYN.
    pub last_seen: DateTime<Utc>,
    /// Dropped SYNs, all nodes.
    pub drops: u64,
    /// Nodes that saw drops.
    pub nodes: BTreeSet<String>,
    /// When the handshake completed after the drops (absent: not restored in the evidence).
    pub restored_at: Option<DateTime<Utc>>,
    /// Dropped SYNs at instants, for the chart (`(time, count)`, not necessarily sorted).
    pub samples: Vec<(DateTime<Utc>, u64)>,
    /// Whether `samples` are per-report counts (true) or an average spread over the outage
    /// (a DropReport keeps aggregates only).
    pub exact_samples: bool,
}

impl FlowReport {
    /// `app/web → db/mysql:3306/TCP`.
    pub fn label(&self) -> String {
        format!("{} → {}:{}/{}", self.source, self.destination, self.port, self.protocol)
    }
}

/// Kinds of timeline markers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MarkerKind {
    /// The first drop was reported.
    Detected,
    /// The denying policy and rule were named.
    Attributed,
    /// The fix was approved and applied.
    Patched,
    /// The handshake came back.
    Restored,
}

impl MarkerKind {
    /// Lower-case name, as the demo's steps name it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Detected => "detected",
            Self::Attributed => "attributed",
            Self::Patched => "patched",
            Self::Restored => "restored",
        }
    }
}

/// A point of the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    /// What happened.
    pub kind: MarkerKind,
    /// When.
    pub time: DateTime<Utc>,
    /// One line for people.
    pub detail: String,
}

/// How long each step took, from the first dropped SYN.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    /// First dropped SYN → reported.
    pub detect_ms: Option<u64>,
    /// Reported → policy and rule named.
    pub attribute_ms: Option<u64>,
    /// First dropped SYN → restored.
    pub restore_ms: Option<u64>,
    /// The objective the restore time is held to.
    pub objective_ms: u64,
}

/// A near-miss: what the closest rule wants and what the flow has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The field, relative to the rule (`ports[0].port`).
    pub field: String,
    /// What the rule wants.
    pub want: String,
    /// What the flow has.
    pub got: String,
}

/// A denying policy, its closest rule and the policy text.
#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    /// Kind of policy (`NetworkPolicy`...).
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `ingress` or `egress`.
    pub direction: String,
    /// Index of the closest rule, when known.
    pub rule: Option<usize>,
    /// What the closest rule lacks.
    pub mismatches: Vec<Mismatch>,
    /// The one-line hint as the tool printed it.
    pub hint: Option<String>,
    /// The policy's YAML with the offending lines marked, when the evidence holds it.
    pub yaml: Option<MarkedYaml>,
}

/// YAML text with some lines marked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkedYaml {
    /// The lines.
    pub lines: Vec<String>,
    /// 0-based indexes of the marked lines.
    pub marked: BTreeSet<usize>,
}

/// The change that allowed the flow again.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// One line: what changes.
    pub summary: Option<String>,
    /// Per policy.
    pub patches: Vec<PatchView>,
    /// Every connection the change newly allows (blast radius).
    pub newly_allowed: Vec<String>,
    /// Who approved or applied it, when known.
    pub approved_by: Option<String>,
    /// When it was applied.
    pub applied_at: Option<DateTime<Utc>>,
    /// Where it was applied (`the lab`, `the cluster`), or that it was only proposed.
    pub applied_to: String,
}

/// One policy's change.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchView {
    /// `patch` or `create`.
    pub action: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `ingress` or `egress`.
    pub direction: String,
    /// The RFC 6902 patch, pretty JSON.
    pub json_patch: Option<String>,
    /// The kubectl command.
    pub kubectl: Option<String>,
    /// Unified diff of the policy's YAML, before → after, when the before is known.
    pub diff: Option<String>,
}

/// Where the objects before the change are, and how to put them back.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recovery {
    /// Saved objects: `namespace/name` and where the copy is.
    pub backups: Vec<(String, String)>,
    /// The exact command that restores them.
    pub restore_command: Option<String>,
    /// What to know (e.g. no backup because nothing was applied).
    pub note: String,
}

/// What the kernel saw on one node and interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRow {
    /// Node (or input stream) name.
    pub node: String,
    /// Interface of the dropped packets.
    pub ifname: String,
    /// The kernel's drop reason.
    pub reason: String,
    /// The flow (`FlowReport::label`).
    pub flow: String,
    /// Dropped SYNs.
    pub dropped: u64,
    /// SYNs that left the source pod (absent when unknown).
    pub syn_left_source: Option<u64>,
    /// SYNs that reached the destination pod.
    pub syn_reached_destination: Option<u64>,
    /// SYN-ACKs that came back.
    pub synack_returned: Option<u64>,
}

/// A packet capture of the evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcapFile {
    /// File name as given.
    pub name: String,
    /// Packets in it.
    pub packets: u64,
}

/// How the evidence was measured and the report made.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Measurement {
    /// Version of the tool that made the report.
    pub tool_version: String,
    /// Where the evidence comes from (file names, `dropreport/NAME`).
    pub inputs: Vec<String>,
    /// What recorded it (`lab demo (scenario port-typo)`, `trace or agent`, `DropReport`).
    pub recorder: String,
    /// Nodes (or streams) with evidence.
    pub nodes: Vec<String>,
    /// Tracer counters, when the stream ended with them (matched, lost, map full).
    pub counters: Option<String>,
    /// The host the report was made on, and its kernel.
    pub host: Option<String>,
}

//! A dropped flow as the agent keeps it and serves it on `/drops`: the latest attributed drop
//! of one client → server:port connection, with its lifecycle (`dropping` → `restored`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::trace::{DropRecord, Endpoint, Evidence, PolicyRef, RestoredRecord, flows::ConnKey};

/// Whether a flow is still being dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowState {
    /// SYNs are being dropped (no handshake completed since the last drop).
    Dropping,
    /// A handshake completed after the drops.
    Restored,
}

/// A suggested NetworkPolicy change that would allow the flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuggestedFix {
    /// One line: what changes.
    pub summary: String,
    /// `kubectl` commands that apply it.
    pub kubectl: Vec<String>,
    /// The JSON patches (or whole new policies) per policy, as `netpol-trace fix -o json`
    /// prints them.
    pub patches: serde_json::Value,
    /// Whether the agent applied it (`--enable-fix`), and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<DateTime<Utc>>,
}

/// One dropped flow (client → server:port, any client port), as served on `/drops`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowRecord {
    /// `dropping` or `restored`.
    pub state: FlowState,
    /// First drop of the current (or last) outage.
    pub first_seen: DateTime<Utc>,
    /// Latest drop.
    pub last_seen: DateTime<Utc>,
    /// Dropped SYNs in the current (or last) outage.
    pub count: u64,
    /// When the handshake completed, for a restored flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_at: Option<DateTime<Utc>>,
    /// The node whose agent saw the drops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The kernel's drop reason of the latest drop.
    pub reason: String,
    /// The raw reason value.
    pub reason_raw: u32,
    /// Interface of the latest dropped packet.
    pub ifname: String,
    /// Transport protocol.
    pub protocol: String,
    /// Client (its latest port).
    pub src: Endpoint,
    /// Server.
    pub dst: Endpoint,
    /// Policies that isolate an end of the flow and do not allow it.
    pub policies: Vec<PolicyRef>,
    /// The closest rule and what it lacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// Hop-by-hop counts.
    pub evidence: Evidence,
    /// The minimal change that would allow the flow, when one was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<SuggestedFix>,
    /// The cluster view generation of the latest attribution and its denial phrase (not
    /// served: the loop's cache, so that repeated reports are not re-evaluated).
    #[serde(skip)]
    pub attributed: Option<(u64, Option<String>)>,
}

impl FlowRecord {
    /// A new record from the first drop report of a flow.
    pub fn from_drop(drop: &DropRecord, node: Option<&str>) -> Self {
        Self {
            state: FlowState::Dropping,
            first_seen: drop.first_seen,
            last_seen: drop.time,
            count: drop.count,
            restored_at: None,
            node: node.map(str::to_string),
            reason: drop.reason.clone(),
            reason_raw: drop.reason_raw,
            ifname: drop.ifname.clone(),
            protocol: drop.protocol.clone(),
            src: drop.src.clone(),
            dst: drop.dst.clone(),
            policies: drop.policies.clone(),
            hint: drop.hint.clone(),
            evidence: drop.evidence.clone(),
            fix: None,
            attributed: None,
        }
    }

    /// Takes a later drop report of the same flow: the kernel's fields change, the
    /// attribution stays (it depends on the cluster, not on the packets). A report after a
    /// restore starts a new outage.
    pub fn update_from(&mut self, drop: &DropRecord) {
        if self.state == FlowState::Restored {
            self.state = FlowState::Dropping;
            self.restored_at = None;
        }
        self.first_seen = drop.first_seen;
        self.last_seen = drop.time;
        self.count = drop.count;
        self.reason = drop.reason.clone();
        self.reason_raw = drop.reason_raw;
        self.ifname = drop.ifname.clone();
        self.src.port = drop.src.port;
        self.evidence = drop.evidence.clone();
    }

    /// The connection this record is about.
    pub fn key(&self) -> ConnKey {
        ConnKey { src: self.src.ip, dst: self.dst.ip, dport: self.dst.port }
    }

    /// The record as a `trace -o json` drop line.
    pub fn to_drop(&self) -> DropRecord {
        DropRecord {
            time: self.last_seen,
            first_seen: self.first_seen,
            reason: self.reason.clone(),
            reason_raw: self.reason_raw,
            ifname: self.ifname.clone(),
            count: self.count,
            protocol: self.protocol.clone(),
            src: self.src.clone(),
            dst: self.dst.clone(),
            policies: self.policies.clone(),
            hint: self.hint.clone(),
            evidence: self.evidence.clone(),
        }
    }

    /// Names the ends of a restored line as this record names them.
    pub fn name_restored(&self, restored: &mut RestoredRecord) {
        let port = restored.src.port;
        restored.src = Endpoint { port, ..self.src.clone() };
        restored.dst = self.dst.clone();
    }

    /// Whether `namespace`/`pod` (either optional) names one end of the flow. `pod` may be
    /// `NAME` or `NAMESPACE/NAME`.
    pub fn concerns(&self, namespace: Option<&str>, pod: Option<&str>) -> bool {
        let (namespace, pod) = match pod.and_then(|p| p.split_once('/')) {
            Some((ns, name)) => (Some(ns), Some(name)),
            None => (namespace, pod),
        };
        [&self.src, &self.dst].into_iter().any(|end| {
            namespace.is_none_or(|ns| end.namespace.as_deref() == Some(ns))
                && pod.is_none_or(|p| end.pod.as_deref() == Some(p))
        })
    }
}

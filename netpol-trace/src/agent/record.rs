//! A dropped flow as the agent keeps it and serves it on `/drops`: the latest attributed drop
//! of one client → server:port connection, with its lifecycle (`dropping` → `restored`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::trace::{DropRecord, Endpoint, RestoredRecord, flows::ConnKey};

/// Whether a flow is still being dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowState {
    /// SYNs are being dropped (no handshake completed since the last drop).
    Dropping,
    /// A handshake completed after the drops.
    Restored,
}

/// A suggested NetworkPolicy change that would allow the flow, shared by the flows of one
/// identity (cloning it copies a pointer); it reads and serialises as its [`FixDetails`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(from = "FixDetails")]
pub struct SuggestedFix(std::sync::Arc<FixDetails>);

impl From<FixDetails> for SuggestedFix {
    fn from(details: FixDetails) -> Self {
        Self(std::sync::Arc::new(details))
    }
}

impl std::ops::Deref for SuggestedFix {
    type Target = FixDetails;
    fn deref(&self) -> &FixDetails {
        &self.0
    }
}

impl Serialize for SuggestedFix {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// What a [`SuggestedFix`] says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FixDetails {
    /// One line: what changes.
    pub summary: String,
    /// `kubectl` commands that apply it.
    pub kubectl: Vec<String>,
    /// The JSON patches (or whole new policies) per policy, as `netpol-trace fix -o json`
    /// prints them, except that each `newly_allowed` keeps its first pairs only and
    /// `newly_allowed_count` gives their number.
    pub patches: serde_json::Value,
}

/// One dropped flow (client → server:port, any client port), as served on `/drops`: the
/// latest drop record of the flow (`trace -o json`'s fields, with `last_seen` repeating its
/// `time`) and the agent's lifecycle, node and fix around it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FlowRecord {
    /// `dropping` or `restored`.
    pub state: FlowState,
    /// The latest drop: `time` is the latest drop, `first_seen` the first of the current (or
    /// last) outage, `count` the dropped SYNs in it, `src` carries the client's latest port.
    #[serde(flatten)]
    pub drop: DropRecord,
    /// When the handshake completed, for a restored flow.
    #[serde(default)]
    pub restored_at: Option<DateTime<Utc>>,
    /// The node whose agent saw the drops.
    #[serde(default)]
    pub node: Option<String>,
    /// The minimal change that would allow the flow, when one was found.
    #[serde(default)]
    pub fix: Option<SuggestedFix>,
    /// The cluster view generation of the latest attribution and its denial phrase (not
    /// served: the loop's cache, so that repeated reports are not re-evaluated).
    #[serde(skip)]
    pub attributed: Option<(u64, Option<String>)>,
    /// What the flow's DropReport says besides counters, from the latest attribution (not
    /// served).
    #[serde(skip)]
    pub report: Option<std::sync::Arc<super::feed::ReportBasis>>,
}

impl Serialize for FlowRecord {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        /// The `/drops` shape: the drop's fields plus `last_seen`, kept for readers of the
        /// first version of `/drops`.
        #[derive(Serialize)]
        struct Served<'a> {
            state: FlowState,
            #[serde(flatten)]
            drop: &'a DropRecord,
            last_seen: DateTime<Utc>,
            #[serde(skip_serializing_if = "Option::is_none")]
            restored_at: Option<DateTime<Utc>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            node: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            fix: Option<&'a SuggestedFix>,
        }
        Served {
            state: self.state,
            drop: &self.drop,
            last_seen: self.drop.time,
            restored_at: self.restored_at,
            node: self.node.as_deref(),
            fix: self.fix.as_ref(),
        }
        .serialize(serializer)
    }
}

impl FlowRecord {
    /// A new record from the first drop report of a flow.
    pub fn from_drop(drop: &DropRecord, node: Option<&str>) -> Self {
        Self {
            state: FlowState::Dropping,
            drop: drop.clone(),
            restored_at: None,
            node: node.map(str::to_string),
            fix: None,
            attributed: None,
            report: None,
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
        let d = &mut self.drop;
        d.first_seen = drop.first_seen;
        d.time = drop.time;
        d.count = drop.count;
        d.reason = drop.reason.clone();
        d.reason_raw = drop.reason_raw;
        d.ifname = drop.ifname.clone();
        d.src.port = drop.src.port;
        d.evidence = drop.evidence.clone();
    }

    /// When the latest drop was seen.
    pub fn last_seen(&self) -> DateTime<Utc> {
        self.drop.time
    }

    /// The connection this record is about.
    pub fn key(&self) -> ConnKey {
        ConnKey { src: self.drop.src.ip, dst: self.drop.dst.ip, dport: self.drop.dst.port }
    }

    /// Names the ends of a restored line as this record names them.
    pub fn name_restored(&self, restored: &mut RestoredRecord) {
        let port = restored.src.port;
        restored.src = Endpoint { port, ..self.drop.src.clone() };
        restored.dst = self.drop.dst.clone();
    }

    /// Whether `namespace`/`pod` (either optional) names one end of the flow. `pod` may be
    /// `NAME` or `NAMESPACE/NAME`.
    pub fn concerns(&self, namespace: Option<&str>, pod: Option<&str>) -> bool {
        let (namespace, pod) = match pod.and_then(|p| p.split_once('/')) {
            Some((ns, name)) => (Some(ns), Some(name)),
            None => (namespace, pod),
        };
        [&self.drop.src, &self.drop.dst].into_iter().any(|end| {
            namespace.is_none_or(|ns| end.namespace.as_deref() == Some(ns))
                && pod.is_none_or(|p| end.pod.as_deref() == Some(p))
        })
    }
}

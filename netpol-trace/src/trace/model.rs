//! The trace event model: what `trace` prints (NDJSON, one object a line) and what the
//! agent serves. No BPF dependency: the same types serve live output and replayed JSON.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::policy::{Direction, Protocol};

/// One side of a connection attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Address.
    pub ip: IpAddr,
    /// TCP port (the client's ephemeral port on the source side).
    pub port: u16,
    /// Namespace of the pod owning the address, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The pod owning the address, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The Service the client addressed, when the destination was reached through one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

impl Endpoint {
    /// An endpoint known only by address.
    pub fn addr(ip: IpAddr, port: u16) -> Self {
        Self { ip, port, namespace: None, pod: None, service: None }
    }

    /// `ns/pod` when known, else the address.
    pub fn display_name(&self) -> String {
        match (&self.namespace, &self.pod) {
            (Some(ns), Some(pod)) => format!("{ns}/{pod}"),
            _ => self.ip.to_string(),
        }
    }
}

/// A policy that isolates one end of a dropped flow without allowing it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRef {
    /// Its kind, as its API names it (`NetworkPolicy` when absent).
    #[serde(default)]
    pub kind: crate::policy::PolicyKind,
    /// Its tier, for tiered kinds (`Admin`/`Baseline`, or a Calico tier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Policy namespace (empty, and left out of JSON, for cluster-scoped kinds).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Policy name.
    pub name: String,
    /// `ingress` (isolates the destination) or `egress` (isolates the source).
    pub direction: Direction,
}

/// What the kernel showed for a flow, hop by hop.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// SYNs seen leaving the source pod (its host-side veth, tc ingress).
    pub syn_left_source: u64,
    /// SYNs seen entering the destination pod (its host-side veth, tc egress).
    pub syn_reached_destination: u64,
    /// SYN-ACKs seen coming back to the source pod.
    pub synack_returned: u64,
    /// SYNs the kernel freed with a drop reason.
    pub dropped: u64,
}

/// Dropped SYNs of one flow (client → server:port), aggregated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DropRecord {
    /// Time of the latest drop.
    pub time: DateTime<Utc>,
    /// First drop seen.
    pub first_seen: DateTime<Utc>,
    /// The kernel's drop reason (`enum skb_drop_reason` without its prefix).
    pub reason: String,
    /// The raw reason value.
    pub reason_raw: u32,
    /// Interface of the dropped packet (the source pod's host-side veth for a forward drop).
    pub ifname: String,
    /// Dropped SYNs so far.
    pub count: u64,
    /// Transport protocol.
    pub protocol: Protocol,
    /// Client.
    pub src: Endpoint,
    /// Server.
    pub dst: Endpoint,
    /// Policies that isolate an end of the flow and do not allow it (needs manifests or a
    /// cluster; empty otherwise).
    pub policies: Vec<PolicyRef>,
    /// The closest rule and what it lacks, for a person (needs manifests or a cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// Hop-by-hop counts.
    pub evidence: Evidence,
}

/// A flow that was dropped completed its handshake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoredRecord {
    /// When the SYN-ACK was seen.
    pub time: DateTime<Utc>,
    /// First drop of the outage.
    pub first_drop: DateTime<Utc>,
    /// Drops before the handshake completed.
    pub drops: u64,
    /// Transport protocol.
    pub protocol: Protocol,
    /// Client.
    pub src: Endpoint,
    /// Server.
    pub dst: Endpoint,
    /// Hop-by-hop counts.
    pub evidence: Evidence,
}

/// Kernel-side counters at the end of a trace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryRecord {
    /// Packets the programs matched.
    pub matched: u64,
    /// New-flow notices lost (ring buffer full).
    pub events_lost: u64,
    /// Flows the kernel map could not hold.
    pub flows_full: u64,
    /// Distinct flows with drops.
    pub dropped_flows: u64,
    /// Flows restored.
    pub restored_flows: u64,
    /// Interfaces attached at the end.
    pub interfaces: Vec<String>,
}

/// One NDJSON line of `trace -o json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum TraceEvent {
    /// Dropped SYNs.
    Drop(DropRecord),
    /// A dropped flow completed its handshake.
    Restored(RestoredRecord),
    /// Last line: counters.
    Summary(SummaryRecord),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_lines_carry_the_contract_fields() {
        let t = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&Utc);
        let ev = TraceEvent::Drop(DropRecord {
            time: t,
            first_seen: t,
            reason: "NETFILTER_DROP".into(),
            reason_raw: 11,
            ifname: "cali1234".into(),
            count: 3,
            protocol: crate::policy::Protocol::Tcp,
            src: Endpoint {
                namespace: Some("app".into()),
                pod: Some("web-1".into()),
                ..Endpoint::addr("10.0.1.5".parse().unwrap(), 51514)
            },
            dst: Endpoint::addr("10.0.2.7".parse().unwrap(), 3306),
            policies: vec![PolicyRef {
                kind: crate::policy::PolicyKind::NetworkPolicy,
                tier: None,
                namespace: "db".into(),
                name: "mysql-ingress".into(),
                direction: crate::policy::Direction::Ingress,
            }],
            hint: None,
            evidence: Evidence::default(),
        });
        let v: serde_json::Value = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["type"], "drop");
        assert_eq!(v["time"], "2026-01-01T00:00:00Z");
        assert_eq!(v["reason"], "NETFILTER_DROP");
        assert_eq!(v["ifname"], "cali1234");
        assert_eq!(v["count"], 3);
        assert_eq!(v["protocol"], "TCP");
        assert_eq!(v["src"]["ip"], "10.0.1.5");
        assert_eq!(v["src"]["port"], 51514);
        assert_eq!(v["src"]["namespace"], "app");
        assert_eq!(v["dst"]["port"], 3306);
        assert_eq!(v["policies"][0]["direction"], "ingress");
        let back: TraceEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, ev);
    }
}

//! What a plan lets through, packet by packet, by the same rules the renderer writes into
//! nftables: the source's egress, then the destination's ingress; allow rules or tiers. Used to
//! check plans against the policy engine without a kernel.

use std::net::IpAddr;

use super::{
    AllowRule, EnforcementPlan, PeerSet, PodPlan, PortRange, PortSet, TierEnd, TierPlan,
    TieredRule, Verdict,
};
use crate::policy::calico::entity::protocol_number;

/// A new connection's first packet as the plan sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol number.
    pub protocol: u8,
    /// Destination port (0 for protocols without ports).
    pub port: u16,
}

impl EnforcementPlan {
    /// Whether `packet` passes: the egress of the pod that sends it and the ingress of the pod
    /// that receives it (an address that is no pod of the plan restricts nothing).
    pub fn allows(&self, packet: &Packet) -> bool {
        let by_ip = |ip: IpAddr| self.pods.iter().find(|p| p.ip == ip);
        let egress = by_ip(packet.src).is_none_or(|pod| {
            direction_allows(pod.egress.as_deref(), pod.egress_tiers.as_deref(), packet.dst, packet)
        });
        let ingress = by_ip(packet.dst).is_none_or(|pod| {
            direction_allows(
                pod.ingress.as_deref(),
                pod.ingress_tiers.as_deref(),
                packet.src,
                packet,
            )
        });
        egress && ingress
    }

    /// The plan of the pod with address `ip`.
    pub fn pod_by_ip(&self, ip: IpAddr) -> Option<&PodPlan> {
        self.pods.iter().find(|p| p.ip == ip)
    }
}

fn direction_allows(
    rules: Option<&[AllowRule]>,
    tiers: Option<&[TierPlan]>,
    peer: IpAddr,
    packet: &Packet,
) -> bool {
    if let Some(rules) = rules {
        return rules.iter().any(|r| {
            peers_contain(&r.peers, peer) && ports_contain(&r.ports, packet.protocol, packet.port)
        });
    }
    for tier in tiers.unwrap_or_default() {
        let decided = tier.rules.iter().find(|r| rule_matches(r, peer, packet)).map(|r| r.action);
        match decided {
            Some(Verdict::Allow) => return true,
            Some(Verdict::Deny) => return false,
            Some(Verdict::Pass) => continue,
            None if tier.end == TierEnd::Drop => return false,
            None => continue,
        }
    }
    true
}

fn rule_matches(rule: &TieredRule, peer: IpAddr, packet: &Packet) -> bool {
    peers_contain(&rule.peers, peer)
        && rule.protocol.is_none_or(|p| p == packet.protocol)
        && rule.not_protocol.is_none_or(|p| p != packet.protocol)
        && ports_contain(&rule.ports, packet.protocol, packet.port)
        && (rule.not_ports.is_empty()
            // nft's `tcp dport != X` needs the packet to be TCP.
            || (rule.not_ports.iter().any(|r| protocol_number(r.protocol) == packet.protocol)
                && !in_ranges(&rule.not_ports, packet.protocol, packet.port)))
}

fn peers_contain(peers: &PeerSet, ip: IpAddr) -> bool {
    match peers {
        PeerSet::Any => true,
        PeerSet::Nets(nets) => {
            nets.iter().any(|n| n.net.contains(&ip) && !n.except.iter().any(|e| e.contains(&ip)))
        }
    }
}

fn ports_contain(ports: &PortSet, protocol: u8, port: u16) -> bool {
    match ports {
        PortSet::Any => true,
        PortSet::Ranges(ranges) => in_ranges(ranges, protocol, port),
    }
}

fn in_ranges(ranges: &[PortRange], protocol: u8, port: u16) -> bool {
    ranges
        .iter()
        .any(|r| protocol_number(r.protocol) == protocol && (r.start..=r.end).contains(&port))
}

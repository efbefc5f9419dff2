//! Tiers of a direction as nftables chains. The pod's direction chain (jumped to from
//! `forward`) holds the first tier; every further tier is a chain of its own, reached with
//! `goto`, so that `return` anywhere goes straight back to `forward`:
//!
//! * Allow → `return` (allowed for this direction; the other end's chain still runs);
//! * Deny → `drop`;
//! * Pass → `goto` the next tier (`return` after the last: the default allow);
//! * the end of a tier → `drop` (a Calico tier that selected the pod, NetworkPolicy isolation)
//!   or `goto` the next tier (admin and baseline tiers, `defaultAction: Pass`).

use std::fmt::Write as _;

use super::{Direction, peer_matchers, port_matchers};
use crate::lab::naming::chain_name;
use crate::lab::plan::{PeerSet, PodPlan, PortSet, TierEnd, TierPlan, TieredRule, Verdict};

/// The name of tier `index`'s chain (tier 0 is the direction's chain).
pub(super) fn tier_chain(direction: Direction, iface: &str, index: usize) -> String {
    let base = chain_name(direction.name(), iface);
    if index == 0 { base } else { format!("{base}_t{index}") }
}

/// Writes the chains of `tiers` for `pod` in `direction`.
pub(super) fn render_tier_chains(
    out: &mut String,
    pod: &PodPlan,
    direction: Direction,
    tiers: &[TierPlan],
) {
    let who = pod.pod.as_deref().unwrap_or("pod");
    for (index, tier) in tiers.iter().enumerate() {
        let next = if index + 1 < tiers.len() {
            format!("goto {}", tier_chain(direction, &pod.host_iface, index + 1))
        } else {
            "return".to_owned()
        };
        let _ = writeln!(out, "\tchain {} {{", tier_chain(direction, &pod.host_iface, index));
        let _ = writeln!(
            out,
            "\t\t# {who} {} {}: tier {} ({} of {}), {} rule(s)",
            pod.ip,
            direction.name(),
            tier.tier,
            index + 1,
            tiers.len(),
            tier.rules.len()
        );
        for rule in &tier.rules {
            let verdict = match rule.action {
                Verdict::Allow => "return".to_owned(),
                Verdict::Deny => "counter drop".to_owned(),
                Verdict::Pass => next.clone(),
            };
            let comment =
                rule.origin.as_ref().map(|o| format!(" comment \"{o}\"")).unwrap_or_default();
            let lines = tiered_matchers(rule, direction);
            if lines.is_empty() {
                let _ = writeln!(out, "\t\t# matches nothing:{comment}");
            }
            for matcher in lines {
                let sep = if matcher.is_empty() { "" } else { " " };
                let _ = writeln!(out, "\t\t{matcher}{sep}{verdict}{comment}");
            }
        }
        let charged = tier.end_origin.as_deref().map(|o| format!(": {o}")).unwrap_or_default();
        match tier.end {
            TierEnd::Drop => {
                let _ = writeln!(
                    out,
                    "\t\tcounter drop comment \"end of tier {}{charged}\"",
                    tier.tier
                );
            }
            TierEnd::Next => {
                let _ = writeln!(out, "\t\t{next}");
            }
        }
        out.push_str("\t}\n");
    }
}

/// The match expressions of a tiered rule, one per nft rule.
pub(super) fn tiered_matchers(rule: &TieredRule, direction: Direction) -> Vec<String> {
    let peers = match &rule.peers {
        PeerSet::Any => vec![String::new()],
        PeerSet::Nets(nets) => peer_matchers(nets, direction),
    };
    let ports = match &rule.ports {
        PortSet::Any => vec![String::new()],
        PortSet::Ranges(ranges) => port_matchers(ranges),
    };
    let mut head = Vec::new();
    if let (Some(number), PortSet::Any) = (rule.protocol, &rule.ports) {
        head.push(format!("meta l4proto {}", protocol_keyword(number)));
    }
    if let Some(number) = rule.not_protocol {
        head.push(format!("meta l4proto != {}", protocol_keyword(number)));
    }
    let tail: Vec<String> = port_matchers(&rule.not_ports)
        .into_iter()
        .map(|m| {
            // `tcp dport 1-2` becomes `tcp dport != 1-2`.
            let (keyword, set) = m.split_once(" dport ").unwrap_or((&m, ""));
            format!("{keyword} dport != {set}")
        })
        .collect();
    let mut lines = Vec::new();
    for peer in &peers {
        for port in &ports {
            let parts: Vec<&str> = head
                .iter()
                .map(String::as_str)
                .chain([peer.as_str(), port.as_str()])
                .chain(tail.iter().map(String::as_str))
                .filter(|p| !p.is_empty())
                .collect();
            lines.push(parts.join(" "));
        }
    }
    lines
}

/// nft's name of IP protocol `number` where it has one, else the number.
fn protocol_keyword(number: u8) -> String {
    match number {
        1 => "icmp".to_owned(),
        6 => "tcp".to_owned(),
        17 => "udp".to_owned(),
        58 => "ipv6-icmp".to_owned(),
        132 => "sctp".to_owned(),
        136 => "udplite".to_owned(),
        n => n.to_string(),
    }
}

#[cfg(test)]
mod tests;

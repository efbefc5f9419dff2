//! Renders an [`EnforcementPlan`] into one nftables transaction that replaces the lab's table
//! atomically: create the table if missing, delete it, define it again — `nft -f` applies the
//! whole file or nothing, so packets never see a half-updated ruleset.
//!
//! Shape: a `forward` base chain (policy accept) in the node namespace accepts replies of
//! allowed connections (`ct state established,related`), then jumps, by host-side interface,
//! to the source pod's egress chain (`iifname`) and the destination pod's ingress chain
//! (`oifname`). A per-pod chain `return`s for allowed traffic and ends with `drop`, so a packet
//! must pass both the egress of its source and the ingress of its destination. A direction
//! given as tiers renders as one chain per tier ([`tiered`]).
//! This module is pure: no I/O.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use ipnet::IpNet;

use super::naming::chain_name;
use super::plan::{
    AllowRule, EnforcementPlan, PeerSet, PodPlan, PortRange, PortSet, Protocol, TierPlan,
};

mod tiered;

/// The direction of a per-pod chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    fn name(self) -> &'static str {
        match self {
            Self::Ingress => "ingress",
            Self::Egress => "egress",
        }
    }

    /// The remote end of the packet: the source for ingress, the destination for egress.
    fn peer_field(self) -> &'static str {
        match self {
            Self::Ingress => "saddr",
            Self::Egress => "daddr",
        }
    }

    /// How the forward chain recognises the pod's traffic.
    fn iface_match(self) -> &'static str {
        match self {
            Self::Ingress => "oifname",
            Self::Egress => "iifname",
        }
    }
}

/// The complete `nft -f` input replacing table `inet <table>` with the plan's rules.
pub fn render_ruleset(table: &str, plan: &EnforcementPlan) -> String {
    let mut out = String::new();
    let tiered = plan.pods.iter().any(|p| p.ingress_tiers.is_some() || p.egress_tiers.is_some());
    out.push_str(if tiered {
        "# netpol-trace lab: policy enforcement in tier order, replaced as a whole on every apply.\n"
    } else {
        "# netpol-trace lab: NetworkPolicy enforcement, replaced as a whole on every apply.\n"
    });
    let _ = writeln!(out, "table inet {table}");
    let _ = writeln!(out, "delete table inet {table}");
    let _ = writeln!(out, "table inet {table} {{");
    out.push_str("\tchain forward {\n");
    out.push_str("\t\ttype filter hook forward priority filter; policy accept;\n");
    out.push_str("\t\tct state established,related accept\n");
    for direction in [Direction::Egress, Direction::Ingress] {
        for pod in &plan.pods {
            if rules_of(pod, direction).is_some() || tiers_of(pod, direction).is_some() {
                let _ = writeln!(
                    out,
                    "\t\t{} \"{}\" jump {}",
                    direction.iface_match(),
                    pod.host_iface,
                    chain_name(direction.name(), &pod.host_iface)
                );
            }
        }
    }
    out.push_str("\t}\n");
    for direction in [Direction::Egress, Direction::Ingress] {
        for pod in &plan.pods {
            if let Some(rules) = rules_of(pod, direction) {
                render_pod_chain(&mut out, pod, direction, rules);
            } else if let Some(tiers) = tiers_of(pod, direction) {
                tiered::render_tier_chains(&mut out, pod, direction, tiers);
            }
        }
    }
    out.push_str("}\n");
    out
}

fn rules_of(pod: &PodPlan, direction: Direction) -> Option<&[AllowRule]> {
    match direction {
        Direction::Ingress => pod.ingress.as_deref(),
        Direction::Egress => pod.egress.as_deref(),
    }
}

/// The tiers of a direction, when it has any.
fn tiers_of(pod: &PodPlan, direction: Direction) -> Option<&[TierPlan]> {
    let tiers = match direction {
        Direction::Ingress => pod.ingress_tiers.as_deref(),
        Direction::Egress => pod.egress_tiers.as_deref(),
    };
    tiers.filter(|t| !t.is_empty())
}

fn render_pod_chain(out: &mut String, pod: &PodPlan, direction: Direction, rules: &[AllowRule]) {
    let _ = writeln!(out, "\tchain {} {{", chain_name(direction.name(), &pod.host_iface));
    let who = pod.pod.as_deref().unwrap_or("pod");
    let _ =
        writeln!(out, "\t\t# {who} {} {}: {} allow rule(s)", pod.ip, direction.name(), rules.len());
    for rule in rules {
        let comment = rule.origin.as_ref().map(|o| format!(" comment \"{o}\"")).unwrap_or_default();
        let lines = rule_matchers(rule, direction);
        if lines.is_empty() {
            let _ = writeln!(out, "\t\t# matches nothing:{comment}");
        }
        for matcher in lines {
            let sep = if matcher.is_empty() { "" } else { " " };
            let _ = writeln!(out, "\t\t{matcher}{sep}return{comment}");
        }
    }
    let _ = writeln!(out, "\t\tcounter drop comment \"{who} {} isolated\"", direction.name());
    out.push_str("\t}\n");
}

/// The match expressions of a rule, one per nft rule (peer groups × protocols).
fn rule_matchers(rule: &AllowRule, direction: Direction) -> Vec<String> {
    let peers = match &rule.peers {
        PeerSet::Any => vec![String::new()],
        PeerSet::Nets(nets) => peer_matchers(nets, direction),
    };
    let ports = match &rule.ports {
        PortSet::Any => vec![String::new()],
        PortSet::Ranges(ranges) => port_matchers(ranges),
    };
    let mut lines = Vec::new();
    for peer in &peers {
        for port in &ports {
            let line = match (peer.is_empty(), port.is_empty()) {
                (true, _) => port.clone(),
                (_, true) => peer.clone(),
                _ => format!("{peer} {port}"),
            };
            lines.push(line);
        }
    }
    lines
}

fn peer_matchers(nets: &[super::plan::PeerNet], direction: Direction) -> Vec<String> {
    let field = direction.peer_field();
    let mut plain: BTreeMap<&str, Vec<IpNet>> = BTreeMap::new();
    let mut matchers = Vec::new();
    for peer in nets {
        let family = family_keyword(&peer.net);
        if peer.except.is_empty() {
            plain.entry(family).or_default().push(peer.net.trunc());
        } else {
            let excepts: Vec<IpNet> = peer.except.iter().map(IpNet::trunc).collect();
            matchers.push(format!(
                "{family} {field} {} {family} {field} != {}",
                net_text(&peer.net.trunc()),
                element_set(&IpNet::aggregate(&excepts).iter().map(net_text).collect::<Vec<_>>())
            ));
        }
    }
    let mut grouped: Vec<String> = plain
        .into_iter()
        .map(|(family, list)| {
            let elements: Vec<String> = IpNet::aggregate(&list).iter().map(net_text).collect();
            format!("{family} {field} {}", element_set(&elements))
        })
        .collect();
    grouped.append(&mut matchers);
    grouped
}

fn port_matchers(ranges: &[PortRange]) -> Vec<String> {
    let mut by_protocol: BTreeMap<Protocol, Vec<(u16, u16)>> = BTreeMap::new();
    for range in ranges {
        by_protocol.entry(range.protocol).or_default().push((range.start, range.end));
    }
    by_protocol
        .into_iter()
        .map(|(protocol, list)| {
            let elements: Vec<String> = merge_ranges(list)
                .into_iter()
                .map(|(s, e)| if s == e { s.to_string() } else { format!("{s}-{e}") })
                .collect();
            format!("{} dport {}", nft_keyword(protocol), element_set(&elements))
        })
        .collect()
}

/// Sorts and merges overlapping or adjacent ranges: nft refuses overlapping interval elements.
fn merge_ranges(mut list: Vec<(u16, u16)>) -> Vec<(u16, u16)> {
    list.sort_unstable();
    let mut merged: Vec<(u16, u16)> = Vec::new();
    for (start, end) in list {
        match merged.last_mut() {
            Some(last) if u32::from(start) <= u32::from(last.1) + 1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

fn family_keyword(net: &IpNet) -> &'static str {
    match net {
        IpNet::V4(_) => "ip",
        IpNet::V6(_) => "ip6",
    }
}

/// A host network prints as a bare address, others with their prefix length.
fn net_text(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() { net.addr().to_string() } else { net.to_string() }
}

fn element_set(elements: &[String]) -> String {
    match elements {
        [one] => one.clone(),
        many => format!("{{ {} }}", many.join(", ")),
    }
}

/// The nftables keyword of a protocol (`tcp`, `udp`, `sctp`).
fn nft_keyword(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::plan::PeerNet;

    fn pod(iface: &str, ip: &str) -> PodPlan {
        PodPlan::open(Some(format!("ns/{iface}")), ip.parse().unwrap(), iface.into())
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn open_plan_renders_only_the_forward_chain() {
        let plan = EnforcementPlan { pods: vec![pod("caliaaa", "10.244.0.1")] };
        let expected = "\
# netpol-trace lab: NetworkPolicy enforcement, replaced as a whole on every apply.
table inet npt_t
delete table inet npt_t
table inet npt_t {
\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
\t\tct state established,related accept
\t}
}
";
        assert_eq!(render_ruleset("npt_t", &plan), expected);
    }

    #[test]
    fn isolated_ingress_with_one_peer_and_port() {
        let mut db = pod("calidb", "10.244.0.3");
        db.ingress = Some(vec![AllowRule {
            peers: PeerSet::Nets(vec![PeerNet::host("10.244.0.1".parse().unwrap())]),
            ports: PortSet::Ranges(vec![PortRange::single(Protocol::Tcp, 3306)]),
            origin: Some("db/mysql-ingress ingress[0]".into()),
        }]);
        let mut web = pod("caliweb", "10.244.0.1");
        web.egress = Some(vec![]);
        let plan = EnforcementPlan { pods: vec![web, db] };
        let expected = "\
# netpol-trace lab: NetworkPolicy enforcement, replaced as a whole on every apply.
table inet npt_t
delete table inet npt_t
table inet npt_t {
\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
\t\tct state established,related accept
\t\tiifname \"caliweb\" jump egress_caliweb
\t\toifname \"calidb\" jump ingress_calidb
\t}
\tchain egress_caliweb {
\t\t# ns/caliweb 10.244.0.1 egress: 0 allow rule(s)
\t\tcounter drop comment \"ns/caliweb egress isolated\"
\t}
\tchain ingress_calidb {
\t\t# ns/calidb 10.244.0.3 ingress: 1 allow rule(s)
\t\tip saddr 10.244.0.1 tcp dport 3306 return comment \"db/mysql-ingress ingress[0]\"
\t\tcounter drop comment \"ns/calidb ingress isolated\"
\t}
}
";
        assert_eq!(render_ruleset("npt_t", &plan), expected);
    }

    #[test]
    fn peers_group_by_family_excepts_stay_separate_ports_merge() {
        let rule = AllowRule {
            peers: PeerSet::Nets(vec![
                PeerNet::host("10.244.0.2".parse().unwrap()),
                PeerNet::host("10.244.0.1".parse().unwrap()),
                PeerNet {
                    net: net("10.0.0.0/8"),
                    except: vec![net("10.1.0.0/16"), net("10.2.0.0/16")],
                },
                PeerNet::host("fd00::1".parse().unwrap()),
                PeerNet { net: net("192.168.1.77/24"), except: vec![] },
            ]),
            ports: PortSet::Ranges(vec![
                PortRange { protocol: Protocol::Tcp, start: 8000, end: 8080 },
                PortRange::single(Protocol::Tcp, 8081),
                PortRange::single(Protocol::Tcp, 80),
                PortRange::single(Protocol::Udp, 53),
            ]),
            origin: None,
        };
        let lines = rule_matchers(&rule, Direction::Egress);
        assert_eq!(
            lines,
            vec![
                "ip daddr { 10.244.0.1, 10.244.0.2, 192.168.1.0/24 } tcp dport { 80, 8000-8081 }",
                "ip daddr { 10.244.0.1, 10.244.0.2, 192.168.1.0/24 } udp dport 53",
                "ip6 daddr fd00::1 tcp dport { 80, 8000-8081 }",
                "ip6 daddr fd00::1 udp dport 53",
                "ip daddr 10.0.0.0/8 ip daddr != { 10.1.0.0/16, 10.2.0.0/16 } tcp dport { 80, 8000-8081 }",
                "ip daddr 10.0.0.0/8 ip daddr != { 10.1.0.0/16, 10.2.0.0/16 } udp dport 53",
            ]
        );
    }

    #[test]
    fn any_peer_any_port_returns_unconditionally_and_empty_peers_match_nothing() {
        let any = AllowRule { peers: PeerSet::Any, ports: PortSet::Any, origin: None };
        assert_eq!(rule_matchers(&any, Direction::Ingress), vec![String::new()]);
        let none = AllowRule { peers: PeerSet::Nets(vec![]), ports: PortSet::Any, origin: None };
        assert!(rule_matchers(&none, Direction::Ingress).is_empty());
        let mut p = pod("calix", "10.244.0.9");
        p.ingress = Some(vec![any, none]);
        let text = render_ruleset("t", &EnforcementPlan { pods: vec![p] });
        assert!(text.contains("\t\treturn\n"), "{text}");
        assert!(text.contains("\t\t# matches nothing:\n"), "{text}");
    }

    /// The kernel's own verdict on the rendered syntax, in a throw-away network namespace.
    #[test]
    #[ignore = "needs root"]
    fn rendered_rulesets_load_in_the_kernel() {
        crate::lab::system::require_root();
        let mut web = pod("caliweb", "10.244.0.1");
        web.egress = Some(vec![AllowRule {
            peers: PeerSet::Nets(vec![
                PeerNet::host("10.244.0.3".parse().unwrap()),
                PeerNet { net: net("10.0.0.0/8"), except: vec![net("10.1.0.0/16")] },
                PeerNet::host("fd00::3".parse().unwrap()),
            ]),
            ports: PortSet::Ranges(vec![
                PortRange::single(Protocol::Tcp, 3306),
                PortRange { protocol: Protocol::Udp, start: 5000, end: 6000 },
                PortRange::single(Protocol::Sctp, 9),
            ]),
            origin: Some("app/egress egress[0]".into()),
        }]);
        let mut db = pod("calidb", "10.244.0.3");
        db.ingress = Some(vec![
            AllowRule { peers: PeerSet::Any, ports: PortSet::Any, origin: None },
            AllowRule { peers: PeerSet::Nets(vec![]), ports: PortSet::Any, origin: None },
        ]);
        let mut closed = pod("cali-x.y", "10.244.0.4");
        closed.ingress = Some(vec![]);
        closed.egress = Some(vec![]);
        let plan = EnforcementPlan { pods: vec![web, db, closed] };
        plan.validate().unwrap();
        let ruleset = render_ruleset("npt_unit", &plan);
        crate::lab::enforce::check_ruleset(&ruleset).unwrap_or_else(|e| panic!("{e}\n{ruleset}"));
    }

    #[test]
    fn merge_ranges_handles_adjacency_and_the_top_port() {
        assert_eq!(
            merge_ranges(vec![(5, 9), (1, 4), (65535, 65535), (10, 10)]),
            vec![(1, 10), (65535, 65535)]
        );
    }
}

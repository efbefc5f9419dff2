//! The enforcement plan: what the node's packet filter must allow, per pod and direction,
//! already resolved to addresses and port numbers. The renderer turns it into nftables; the
//! policy engine builds it from NetworkPolicies. It is plain data (JSON via serde) so that a
//! plan can be written by hand, saved, and diffed.
//!
//! Semantics, per pod and direction: `None` — the direction is not isolated (no policy selects
//! the pod for it): everything is allowed; `Some(rules)` — isolated: only what one of the rules
//! allows passes (`Some(vec![])` denies all). Replies of allowed connections always pass.
//!
//! With the other policy kinds (admin and baseline tiers, Calico tiers) a direction is a list
//! of [`TierPlan`]s instead (`ingress_tiers` / `egress_tiers`), evaluated in order: in a tier
//! the first matching rule decides (Allow: allowed for this direction; Deny: dropped; Pass: on
//! to the next tier); when none matches, the tier's [`TierEnd`] applies; after the last tier
//! the flow is allowed. A direction has either allow rules or tiers, never both.

use std::net::IpAddr;

mod eval;
pub use eval::Packet;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// What the node's packet filter enforces for every pod of a lab.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnforcementPlan {
    /// One entry per pod; pods not listed are not isolated in either direction.
    #[serde(default)]
    pub pods: Vec<PodPlan>,
}

/// The isolation of one pod, keyed by its host-side interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodPlan {
    /// `namespace/name`, used in chain comments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The pod's IP.
    pub ip: IpAddr,
    /// Its host-side veth in the node namespace (`cali...`).
    pub host_iface: String,
    /// Traffic to the pod: `None` not isolated, `Some(rules)` only what the rules allow.
    #[serde(default)]
    pub ingress: Option<Vec<AllowRule>>,
    /// Traffic from the pod: `None` not isolated, `Some(rules)` only what the rules allow.
    #[serde(default)]
    pub egress: Option<Vec<AllowRule>>,
    /// Traffic to the pod as tiers in evaluation order (instead of `ingress`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_tiers: Option<Vec<TierPlan>>,
    /// Traffic from the pod as tiers in evaluation order (instead of `egress`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_tiers: Option<Vec<TierPlan>>,
}

impl PodPlan {
    /// A pod with both directions open.
    pub fn open(pod: Option<String>, ip: IpAddr, host_iface: String) -> Self {
        Self {
            pod,
            ip,
            host_iface,
            ingress: None,
            egress: None,
            ingress_tiers: None,
            egress_tiers: None,
        }
    }

    /// Whether some policy restricts a direction of the pod.
    pub fn is_isolated(&self) -> bool {
        self.ingress.is_some()
            || self.egress.is_some()
            || [&self.ingress_tiers, &self.egress_tiers]
                .into_iter()
                .flatten()
                .any(|tiers| !tiers.is_empty())
    }
}

/// One tier of a direction: the rules of the tier's policies that apply to the pod, in
/// evaluation order, and what happens when none of them matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierPlan {
    /// The tier's name (`Admin`, `default`, a Calico tier, `Baseline`), for comments.
    pub tier: String,
    /// Rules in evaluation order; the first that matches decides.
    #[serde(default)]
    pub rules: Vec<TieredRule>,
    /// When no rule matched.
    pub end: TierEnd,
    /// The policy charged with a drop at the end of the tier, for comments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_origin: Option<String>,
}

/// What a tier does with a flow none of its rules matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TierEnd {
    /// Go on with the next tier (admin and baseline tiers, Calico's `defaultAction: Pass`).
    Next,
    /// Drop (a Calico tier with a policy selecting the pod, NetworkPolicy isolation).
    Drop,
}

/// What a matching tiered rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Allowed for this direction (Allow, Accept).
    Allow,
    /// Dropped.
    Deny,
    /// The rest of the tier is skipped.
    Pass,
}

/// A rule of a tier: peers × protocol × destination ports, and its verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TieredRule {
    /// What a match does.
    pub action: Verdict,
    /// Which remote addresses.
    pub peers: PeerSet,
    /// The IP protocol number the packet must have (Calico `protocol` without ports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u8>,
    /// An IP protocol number the packet must not have (Calico `notProtocol`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_protocol: Option<u8>,
    /// Which destination ports.
    pub ports: PortSet,
    /// Destination ports excluded (Calico `notPorts`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<PortRange>,
    /// Where the rule comes from (an nft comment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

impl TieredRule {
    /// A rule with `action` over `peers` × `ports` and no other condition.
    pub fn new(action: Verdict, peers: PeerSet, ports: PortSet, origin: Option<String>) -> Self {
        Self {
            action,
            peers,
            protocol: None,
            not_protocol: None,
            ports,
            not_ports: Vec::new(),
            origin,
        }
    }
}

/// One allowed set of peers × ports (for ingress the peers are sources, for egress
/// destinations; ports are always destination ports).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowRule {
    /// Which remote addresses.
    pub peers: PeerSet,
    /// Which destination ports.
    pub ports: PortSet,
    /// Where the rule comes from, e.g. `db/mysql-ingress ingress[0]` (an nft comment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// Remote addresses of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerSet {
    /// Every address.
    Any,
    /// Only these networks (pod IPs as /32 or /128, ipBlocks with their excepts).
    Nets(Vec<PeerNet>),
}

/// A network and the parts of it that are excluded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerNet {
    /// The network (`10.244.0.7/32`, `10.0.0.0/8`).
    pub net: IpNet,
    /// Sub-networks excluded (an ipBlock's `except`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<IpNet>,
}

impl PeerNet {
    /// A single address (a pod IP).
    pub fn host(ip: IpAddr) -> Self {
        Self { net: IpNet::from(ip), except: Vec::new() }
    }
}

/// Destination ports of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortSet {
    /// Every port and protocol.
    Any,
    /// Only these ranges.
    Ranges(Vec<PortRange>),
}

/// The port ranges of plans are the inventory's.
pub use crate::inventory::PortRange;

/// The transport protocols of plans are those NetworkPolicies name.
pub use crate::policy::Protocol;

impl EnforcementPlan {
    /// Checks what the renderer relies on: interface names fit and are unique, port ranges are
    /// ordered, excepts lie inside their network and share its address family.
    pub fn validate(&self) -> Result<(), super::error::LabError> {
        use super::error::LabError;
        let mut seen = std::collections::HashSet::new();
        for (i, pod) in self.pods.iter().enumerate() {
            let object = "EnforcementPlan";
            let iface_ok = !pod.host_iface.is_empty()
                && pod.host_iface.len() <= 15
                && pod
                    .host_iface
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
            if !iface_ok {
                return Err(LabError::invalid(
                    object,
                    format!("pods[{i}].host_iface"),
                    format!(
                        "{:?} is not an interface name (1-15 of a-z, 0-9, -, _, .)",
                        pod.host_iface
                    ),
                ));
            }
            if let Some(name) = &pod.pod
                && !is_comment_safe(name)
            {
                return Err(LabError::invalid(
                    object,
                    format!("pods[{i}].pod"),
                    "must be at most 120 characters without '\"' or control characters",
                ));
            }
            let chain = super::naming::chain_name("", &pod.host_iface);
            let tier_suffix = chain
                .rsplit_once("_t")
                .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if tier_suffix {
                return Err(LabError::invalid(
                    object,
                    format!("pods[{i}].host_iface"),
                    format!(
                        "{:?} ends like the chains of further tiers (_t<number>); rename it",
                        pod.host_iface
                    ),
                ));
            }
            if !seen.insert(chain) {
                return Err(LabError::invalid(
                    object,
                    format!("pods[{i}].host_iface"),
                    format!("{:?} appears twice", pod.host_iface),
                ));
            }
            for (direction, rules) in [("ingress", &pod.ingress), ("egress", &pod.egress)] {
                for (r, rule) in rules.iter().flatten().enumerate() {
                    let at = format!("pods[{i}].{direction}[{r}]");
                    rule.validate(object, &at)?;
                }
            }
            for (direction, rules, tiers) in [
                ("ingress", &pod.ingress, &pod.ingress_tiers),
                ("egress", &pod.egress, &pod.egress_tiers),
            ] {
                if rules.is_some() && tiers.is_some() {
                    return Err(LabError::invalid(
                        object,
                        format!("pods[{i}].{direction}_tiers"),
                        format!("cannot be given together with {direction}"),
                    ));
                }
                for (t, tier) in tiers.iter().flatten().enumerate() {
                    tier.validate(object, &format!("pods[{i}].{direction}_tiers[{t}]"))?;
                }
            }
        }
        Ok(())
    }
}

impl TierPlan {
    fn validate(&self, object: &str, at: &str) -> Result<(), super::error::LabError> {
        for text in [Some(&self.tier), self.end_origin.as_ref()].into_iter().flatten() {
            check_comment(object, at, text)?;
        }
        for (r, rule) in self.rules.iter().enumerate() {
            let at = format!("{at}.rules[{r}]");
            validate_match(object, &at, &rule.peers, &rule.ports, rule.origin.as_deref())?;
            let not_ports = PortSet::Ranges(rule.not_ports.clone());
            validate_match(object, &format!("{at}.not"), &PeerSet::Any, &not_ports, None)?;
        }
        Ok(())
    }
}

fn check_comment(object: &str, at: &str, text: &str) -> Result<(), super::error::LabError> {
    if is_comment_safe(text) {
        return Ok(());
    }
    Err(super::error::LabError::invalid(
        object,
        at.to_owned(),
        "names must be at most 120 characters without '\"' or control characters",
    ))
}

impl AllowRule {
    fn validate(&self, object: &str, at: &str) -> Result<(), super::error::LabError> {
        validate_match(object, at, &self.peers, &self.ports, self.origin.as_deref())
    }
}

/// Checks peers, ports and origin of an allow or tiered rule.
fn validate_match(
    object: &str,
    at: &str,
    peers: &PeerSet,
    ports: &PortSet,
    origin: Option<&str>,
) -> Result<(), super::error::LabError> {
    use super::error::LabError;
    if let PortSet::Ranges(ranges) = ports {
        for (p, range) in ranges.iter().enumerate() {
            if range.start == 0 || range.start > range.end {
                return Err(LabError::invalid(
                    object,
                    format!("{at}.ports[{p}]"),
                    format!(
                        "{}-{} is not a port range (1 <= start <= end)",
                        range.start, range.end
                    ),
                ));
            }
        }
    }
    if let PeerSet::Nets(nets) = peers {
        for (n, peer) in nets.iter().enumerate() {
            for (e, except) in peer.except.iter().enumerate() {
                if !peer.net.contains(except) {
                    return Err(LabError::invalid(
                        object,
                        format!("{at}.peers[{n}].except[{e}]"),
                        format!("{except} is not inside {}", peer.net),
                    ));
                }
            }
        }
    }
    if let Some(origin) = origin
        && !is_comment_safe(origin)
    {
        return Err(LabError::invalid(
            object,
            format!("{at}.origin"),
            "must be at most 120 characters without '\"' or control characters",
        ));
    }
    Ok(())
}

/// Longest text accepted in [`PodPlan::pod`] and [`AllowRule::origin`] (nft comments hold at
/// most 128 bytes).
pub const MAX_COMMENT_LEN: usize = 120;

/// Whether `text` can go into an nft comment (quoted, at most [`MAX_COMMENT_LEN`] bytes).
fn is_comment_safe(text: &str) -> bool {
    text.len() <= MAX_COMMENT_LEN && !text.chars().any(|c| c == '"' || c.is_control())
}

/// `text` made fit for an nft comment: quotes and control characters become `_`, and it is
/// cut to [`MAX_COMMENT_LEN`] bytes (ending with `~` when cut).
pub fn comment_text(text: &str) -> String {
    let clean: String =
        text.chars().map(|c| if c == '"' || c.is_control() { '_' } else { c }).collect();
    if clean.len() <= MAX_COMMENT_LEN {
        return clean;
    }
    let mut cut = MAX_COMMENT_LEN - 1;
    while !clean.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}~", &clean[..cut])
}

//! The enforcement plan: what the node's packet filter must allow, per pod and direction,
//! already resolved to addresses and port numbers. The renderer turns it into nftables; the
//! policy engine builds it from NetworkPolicies. It is plain data (JSON via serde) so that a
//! plan can be written by hand, saved, and diffed.
//!
//! Semantics, per pod and direction: `None` — the direction is not isolated (no policy selects
//! the pod for it): everything is allowed; `Some(rules)` — isolated: only what one of the rules
//! allows passes (`Some(vec![])` denies all). Replies of allowed connections always pass.

use std::net::IpAddr;

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
            if !seen.insert(super::naming::chain_name("", &pod.host_iface)) {
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
        }
        Ok(())
    }
}

impl AllowRule {
    fn validate(&self, object: &str, at: &str) -> Result<(), super::error::LabError> {
        use super::error::LabError;
        if let PortSet::Ranges(ranges) = &self.ports {
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
        if let PeerSet::Nets(nets) = &self.peers {
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
        if let Some(origin) = &self.origin
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

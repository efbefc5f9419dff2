//! Blast radius: every (source, destination, port, protocol) whose verdict a change flips, over
//! all known pods (plus the flow's outside addresses), computed by re-evaluating with the engine.
//!
//! Only pairs a change can touch are evaluated: a rule added to an ingress policy only changes
//! traffic into the pods that policy selects, an egress rule only traffic out of its pods. Ports
//! evaluated per destination: the flow's, every port the destination declares (named ports
//! resolve to those), and every number a change adds.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::explain::{ExplainOptions, is_allowed};
use crate::flow::{EndpointSpec, Flow};
use crate::inventory::{Inventory, PodId};
use crate::policy::Protocol;

/// One end of a probe: a known pod or an outside address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PairEnd {
    /// A pod.
    Pod(PodId),
    /// An address that belongs to no known pod.
    Address(IpAddr),
}

impl PairEnd {
    fn spec(self) -> EndpointSpec {
        match self {
            Self::Pod(id) => EndpointSpec::Pod(id),
            Self::Address(ip) => EndpointSpec::Ip(ip),
        }
    }

    /// `namespace/pod` or the address.
    pub fn describe(self, inventory: &Inventory) -> String {
        match self {
            Self::Pod(id) => inventory.pod(id).pod.to_string(),
            Self::Address(ip) => ip.to_string(),
        }
    }
}

/// A connection whose verdict is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Probe {
    /// Source.
    pub src: PairEnd,
    /// Destination.
    pub dst: PairEnd,
    /// Protocol.
    pub protocol: Protocol,
    /// Destination port.
    pub port: u16,
}

impl Probe {
    /// The probe as a readable pair.
    pub fn to_pair(self, inventory: &Inventory) -> AllowedPair {
        AllowedPair {
            from: self.src.describe(inventory),
            to: self.dst.describe(inventory),
            port: self.port,
            protocol: self.protocol,
        }
    }
}

/// A connection a change allows (or, in errors, takes away): the `newly_allowed` entries.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AllowedPair {
    /// `namespace/pod`, or an address outside the known pods.
    pub from: String,
    /// `namespace/pod`, or an address outside the known pods.
    pub to: String,
    /// Destination port.
    pub port: u16,
    /// Protocol.
    pub protocol: Protocol,
}

impl fmt::Display for AllowedPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {} {}/{}", self.from, self.to, self.protocol, self.port)
    }
}

/// Which traffic a set of changes can affect.
#[derive(Debug, Clone, Default)]
pub struct ChangeScope {
    /// Pods selected by a changed or created policy that affects ingress.
    pub ingress_subjects: BTreeSet<PodId>,
    /// Pods selected by a changed or created policy that affects egress.
    pub egress_subjects: BTreeSet<PodId>,
    /// Outside addresses to include as sources and destinations (the flows' own).
    pub addresses: BTreeSet<IpAddr>,
    /// Port numbers the changes name, besides the destinations' declared ports.
    pub ports: BTreeSet<(Protocol, u16)>,
}

/// Probes whose verdict differs between two inventories.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerdictChanges {
    /// Denied before, allowed after; sorted.
    pub newly_allowed: Vec<Probe>,
    /// Allowed before, denied after; sorted.
    pub newly_denied: Vec<Probe>,
}

/// Evaluates every probe `scope` can affect in `before` and `after` (which must share pods,
/// as [`Inventory::with_policies_replaced`] guarantees).
pub fn verdict_changes(
    before: &Inventory,
    after: &Inventory,
    scope: &ChangeScope,
    options: &ExplainOptions,
) -> VerdictChanges {
    let ends: Vec<PairEnd> = before
        .pod_ids()
        .map(PairEnd::Pod)
        .chain(scope.addresses.iter().copied().map(PairEnd::Address))
        .collect();
    let mut pairs: BTreeSet<(PairEnd, PairEnd)> = BTreeSet::new();
    for &subject in &scope.ingress_subjects {
        pairs.extend(ends.iter().map(|&src| (src, PairEnd::Pod(subject))));
    }
    for &subject in &scope.egress_subjects {
        pairs.extend(ends.iter().map(|&dst| (PairEnd::Pod(subject), dst)));
    }
    let mut changes = VerdictChanges::default();
    for (src, dst) in pairs {
        let mut ports = scope.ports.clone();
        if let PairEnd::Pod(id) = dst {
            ports.extend(before.pod(id).ports.iter().map(|p| (p.protocol, p.port)));
        }
        for (protocol, port) in ports {
            let flow = Flow::new(before, src.spec(), dst.spec(), port, protocol);
            let was = is_allowed(before, &flow, options);
            let is = is_allowed(after, &flow, options);
            let probe = Probe { src, dst, protocol, port };
            match (was, is) {
                (false, true) => changes.newly_allowed.push(probe),
                (true, false) => changes.newly_denied.push(probe),
                _ => {}
            }
        }
    }
    changes
}

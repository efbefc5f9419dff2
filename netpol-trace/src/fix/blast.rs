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

use super::relevance::{Candidates, Relevance};
use crate::explain::{ExplainOptions, is_allowed};
use crate::flow::{EndpointSpec, Flow};
use crate::inventory::{Inventory, PodId};
use crate::policy::{Direction, Protocol};

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
/// as [`Inventory::with_policies_replaced`] guarantees). Between NetworkPolicy-only
/// inventories only the pairs a changed policy's rules can flip are evaluated (see
/// `fix::relevance`); the result equals [`verdict_changes_exhaustive`]'s.
pub fn verdict_changes(
    before: &Inventory,
    after: &Inventory,
    scope: &ChangeScope,
    options: &ExplainOptions,
) -> VerdictChanges {
    walk(before, after, scope, options, true)
}

/// [`verdict_changes`] evaluating every pair of the scope, pruning nothing: the reference the
/// pruned walk is tested and benchmarked against.
pub fn verdict_changes_exhaustive(
    before: &Inventory,
    after: &Inventory,
    scope: &ChangeScope,
    options: &ExplainOptions,
) -> VerdictChanges {
    walk(before, after, scope, options, false)
}

fn walk(
    before: &Inventory,
    after: &Inventory,
    scope: &ChangeScope,
    options: &ExplainOptions,
    prune: bool,
) -> VerdictChanges {
    let ends: Vec<PairEnd> = before
        .pod_ids()
        .map(PairEnd::Pod)
        .chain(scope.addresses.iter().copied().map(PairEnd::Address))
        .collect();
    let mut relevance =
        prune.then(|| Relevance::new(before, after, &ends, options.ip_block_pod_mode)).flatten();
    // Sources that are egress subjects may flip through their own egress whatever the
    // destination's ingress change: they stay candidates of every ingress subject.
    let egress_ends: Vec<usize> = ends
        .iter()
        .enumerate()
        .filter(|(_, end)| matches!(end, PairEnd::Pod(id) if scope.egress_subjects.contains(id)))
        .map(|(i, _)| i)
        .collect();
    let mut candidates = |subject: PodId, direction: Direction| -> Vec<usize> {
        let Some(relevance) = relevance.as_mut() else { return (0..ends.len()).collect() };
        match relevance.candidates(subject, direction) {
            Candidates::All => (0..ends.len()).collect(),
            Candidates::Only(only) if direction == Direction::Egress => only.to_vec(),
            Candidates::Only(only) => {
                let mut merged: Vec<usize> = only.iter().chain(&egress_ends).copied().collect();
                merged.sort_unstable();
                merged.dedup();
                merged
            }
        }
    };
    // Pairs are walked, not collected: into every ingress subject from every candidate end,
    // then out of every egress subject to every candidate end that is not an ingress subject
    // (those pairs were walked already). Memory stays proportional to the changes found and
    // the candidates of one subject, not to the pairs evaluated.
    let mut changes = VerdictChanges::default();
    let mut ports = BTreeSet::new();
    let mut probe_pair = |src: PairEnd, dst: PairEnd| {
        ports.clone_from(&scope.ports);
        if let PairEnd::Pod(id) = dst {
            ports.extend(before.pod(id).ports.iter().map(|p| (p.protocol, p.port)));
        }
        // Both ends are resolved once per pair; the ports only change the port.
        let pair = Flow::new(before, src.spec(), dst.spec(), 0, Protocol::Tcp);
        for &(protocol, port) in &ports {
            let flow = Flow { port, protocol, ..pair };
            let was = is_allowed(before, &flow, options);
            let is = is_allowed(after, &flow, options);
            let probe = Probe { src, dst, protocol, port };
            match (was, is) {
                (false, true) => changes.newly_allowed.push(probe),
                (true, false) => changes.newly_denied.push(probe),
                _ => {}
            }
        }
    };
    for &subject in &scope.ingress_subjects {
        for i in candidates(subject, Direction::Ingress) {
            probe_pair(ends[i], PairEnd::Pod(subject));
        }
    }
    for &subject in &scope.egress_subjects {
        for i in candidates(subject, Direction::Egress) {
            let dst = ends[i];
            if !matches!(dst, PairEnd::Pod(id) if scope.ingress_subjects.contains(&id)) {
                probe_pair(PairEnd::Pod(subject), dst);
            }
        }
    }
    changes.newly_allowed.sort_unstable();
    changes.newly_denied.sort_unstable();
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{MYSQL_MANIFESTS, inventory_of};

    const DENY_ALL: &str = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-all, namespace: NS}\nspec: {podSelector: {}, policyTypes: [Ingress, Egress]}\n";

    #[test]
    fn pairs_selected_both_ways_are_evaluated_once_and_sorted() {
        let denied = format!(
            "{MYSQL_MANIFESTS}{}{}",
            DENY_ALL.replace("NS", "app"),
            DENY_ALL.replace("NS", "db")
        );
        let before = inventory_of(&denied);
        let after = inventory_of(MYSQL_MANIFESTS);
        let all: BTreeSet<PodId> = before.pod_ids().collect();
        let options = ExplainOptions::default();
        let scope = |ingress: bool, egress: bool| ChangeScope {
            ingress_subjects: if ingress { all.clone() } else { BTreeSet::new() },
            egress_subjects: if egress { all.clone() } else { BTreeSet::new() },
            ports: BTreeSet::from([(Protocol::Tcp, 80)]),
            ..ChangeScope::default()
        };
        let both = verdict_changes(&before, &after, &scope(true, true), &options);
        let mut separately: Vec<Probe> =
            verdict_changes(&before, &after, &scope(true, false), &options)
                .newly_allowed
                .into_iter()
                .chain(
                    verdict_changes(&before, &after, &scope(false, true), &options).newly_allowed,
                )
                .collect();
        separately.sort_unstable();
        separately.dedup();
        assert!(!both.newly_allowed.is_empty());
        assert_eq!(both.newly_allowed, separately, "each pair once, in order");
        assert!(both.newly_denied.is_empty());
    }
}

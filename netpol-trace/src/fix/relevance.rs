//! Which other ends a change of NetworkPolicies can flip, per subject, so that the blast radius
//! evaluates only those pairs instead of every known end.
//!
//! For a pod isolated in a direction both before and after the change, its verdict in that
//! direction is "some rule of an isolating policy matches the other end". Policies, and rules of
//! a changed policy, present unchanged on both sides answer the same way, so the verdict can
//! only flip for other ends that a peer of a rule only one version of a changed policy has
//! matches (all its rules when the policy exists on one side only); ports are ignored, which
//! only adds candidates. Pod peers are resolved through the inventory's indexes
//! (namespaces by selector, then pods by label), so the cost follows the pods they match. A pod whose isolation itself changes is walked against
//! every end. Calico and admin tiers order policies and rules, so inventories that hold tiered
//! policies are not pruned ([`Relevance::new`] returns `None`).

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use super::blast::PairEnd;
use crate::inventory::{Inventory, PodId};
use crate::policy::{CompiledPolicy, CompiledRule, Direction, IpBlockPodMode, Peer, PeerIdentity};

/// The other ends a subject's verdict can change for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Candidates {
    /// Every end.
    All,
    /// These indexes into the ends, ascending.
    Only(Rc<Vec<usize>>),
}

/// A changed policy's old and new version (`None` on the side where it does not exist).
type Versions<'a> = (Option<&'a Arc<CompiledPolicy>>, Option<&'a Arc<CompiledPolicy>>);

/// A direction and the (old, new) addresses of the changed policies' versions, sorted.
type ChangeKey = (Direction, Vec<(usize, usize)>);

/// Candidate ends per subject, computed once per distinct set of changed policies.
pub(super) struct Relevance<'a> {
    before: &'a Inventory,
    after: &'a Inventory,
    ends: &'a [PairEnd],
    mode: IpBlockPodMode,
    /// Candidates per direction and changed (old, new) policy pair; `None`: every end.
    cache: HashMap<ChangeKey, Option<Rc<Vec<usize>>>>,
}

impl<'a> Relevance<'a> {
    /// Pruning for `before` → `after` over `ends`; `None` when either inventory holds tiered
    /// (admin or Calico) policies.
    pub(super) fn new(
        before: &'a Inventory,
        after: &'a Inventory,
        ends: &'a [PairEnd],
        mode: IpBlockPodMode,
    ) -> Option<Self> {
        (before.tiered().is_empty() && after.tiered().is_empty()).then(|| Self {
            before,
            after,
            ends,
            mode,
            cache: HashMap::new(),
        })
    }

    /// The ends whose verdict towards (ingress) or from (egress) `subject` the change can flip
    /// in `direction`.
    pub(super) fn candidates(&mut self, subject: PodId, direction: Direction) -> Candidates {
        let was = isolating(self.before, subject, direction);
        let is = isolating(self.after, subject, direction);
        if was.is_empty() != is.is_empty() {
            return Candidates::All;
        }
        // Each changed policy as (old version, new version), paired by namespace/name.
        let key_of = |p: &CompiledPolicy| (p.namespace.clone(), p.name.clone());
        let mut changed: Vec<Versions<'_>> = Vec::new();
        for &old in &was {
            match is.iter().find(|new| key_of(new) == key_of(old)) {
                Some(new) if same_in(old, new, direction) => {}
                new => changed.push((Some(old), new.copied())),
            }
        }
        for &new in &is {
            if !was.iter().any(|old| key_of(old) == key_of(new)) {
                changed.push((None, Some(new)));
            }
        }
        let ptr = |p: Option<&Arc<CompiledPolicy>>| p.map_or(0, |p| Arc::as_ptr(p) as usize);
        let mut key: Vec<(usize, usize)> = changed.iter().map(|&(o, n)| (ptr(o), ptr(n))).collect();
        key.sort_unstable();
        let key = (direction, key);
        let matched = match self.cache.get(&key) {
            Some(hit) => hit.clone(),
            None => {
                let matched = self.matched(&changed, direction).map(Rc::new);
                self.cache.insert(key, matched.clone());
                matched
            }
        };
        matched.map_or(Candidates::All, Candidates::Only)
    }

    /// The ends a peer of a rule that differs between the old and the new version of a changed
    /// policy matches (rules both versions have answer the same), ascending; `None` when such a
    /// rule has no peers (it matches every end). Pod peers are resolved through the inventory's
    /// namespace and label indexes; ipBlock peers are matched against every end's addresses.
    fn matched<'p>(&self, changed: &[Versions<'p>], direction: Direction) -> Option<Vec<usize>> {
        let rules_of = |p: Option<&'p Arc<CompiledPolicy>>| -> &'p [CompiledRule] {
            p.and_then(|p| p.rules(direction)).unwrap_or_default()
        };
        let mut differing: Vec<(&str, &CompiledRule)> = Vec::new();
        for &(old, new) in changed {
            let (old_rules, new_rules) = (rules_of(old), rules_of(new));
            let namespace = old.or(new).map_or("", |p| p.namespace.as_str());
            differing.extend(
                old_rules.iter().filter(|r| !new_rules.contains(r)).map(|r| (namespace, r)),
            );
            differing.extend(
                new_rules.iter().filter(|r| !old_rules.contains(r)).map(|r| (namespace, r)),
            );
        }
        let mut hit = vec![false; self.ends.len()];
        for (namespace, rule) in differing {
            if rule.peers.is_empty() {
                return None;
            }
            for peer in &rule.peers {
                match peer {
                    Peer::Pods { .. } => {
                        for id in self.before.peer_pods(namespace, peer) {
                            hit[id.index()] = true;
                        }
                    }
                    Peer::IpBlock(_) => {
                        for (i, seen) in hit.iter_mut().enumerate() {
                            if !*seen && self.peer_matches(namespace, peer, i) {
                                *seen = true;
                            }
                        }
                    }
                }
            }
        }
        Some(hit.iter().enumerate().filter(|(_, hit)| **hit).map(|(i, _)| i).collect())
    }

    /// Whether `peer` of a policy in `namespace` matches end `i` with any of its addresses.
    fn peer_matches(&self, namespace: &str, peer: &Peer, i: usize) -> bool {
        match self.ends[i] {
            PairEnd::Address(ip) => peer.matches(namespace, PeerIdentity::External(ip), self.mode),
            PairEnd::Pod(id) => {
                let pod = self.before.pod(id);
                let identity = |ip| PeerIdentity::Pod {
                    namespace: &pod.pod.namespace,
                    namespace_labels: self.before.namespace_labels_of(id),
                    labels: &pod.labels,
                    ip,
                };
                if pod.ips.is_empty() {
                    peer.matches(namespace, identity(None), self.mode)
                } else {
                    pod.ips.iter().any(|&ip| peer.matches(namespace, identity(Some(ip)), self.mode))
                }
            }
        }
    }
}

fn isolating(inventory: &Inventory, id: PodId, direction: Direction) -> Vec<&Arc<CompiledPolicy>> {
    inventory
        .isolating_policies(id, direction)
        .iter()
        .map(|&p| &inventory.policy(p).compiled)
        .collect()
}

/// Whether two policies select the same pods and have the same rules in `direction` (a change
/// of the other direction's rules leaves this one alone).
fn same_in(a: &Arc<CompiledPolicy>, b: &Arc<CompiledPolicy>, direction: Direction) -> bool {
    Arc::ptr_eq(a, b)
        || (a.namespace == b.namespace
            && a.pod_selector == b.pod_selector
            && a.rules(direction) == b.rules(direction))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use k8s_openapi::api::networking::v1::NetworkPolicy;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use crate::explain::ExplainOptions;
    use crate::fix::blast::{ChangeScope, verdict_changes, verdict_changes_exhaustive};
    use crate::inventory::Inventory;
    use crate::policy::{Direction, IpBlockPodMode, Protocol};
    use crate::testing::inventory_of;

    const NAMESPACES: [&str; 3] = ["ns-a", "ns-b", "ns-c"];
    const APPS: [&str; 3] = ["web", "api", "db"];

    /// Two namespaces labelled team=t0, one team=t1; four pods each with an app label, two
    /// declaring named ports; one pod dual-stack; one pod in a namespace never read.
    fn pods() -> String {
        let mut out = String::new();
        for (n, ns) in NAMESPACES.iter().enumerate() {
            let team = if n == 2 { "t1" } else { "t0" };
            out += &format!(
                "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{team: {team}}}}}\n"
            );
            for p in 0..4 {
                let app = APPS[(n + p) % APPS.len()];
                let ports = if p % 2 == 0 {
                    "[{containerPort: 8080, name: http}, {containerPort: 3306, name: mysql}]"
                } else {
                    "[]"
                };
                let ips = if n == 1 && p == 0 {
                    format!("[{{ip: 10.0.{n}.{p}}}, {{ip: 'fd00::{n}{p}'}}]")
                } else {
                    format!("[{{ip: 10.0.{n}.{p}}}]")
                };
                out += &format!(
                    "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: pod-{p}, namespace: {ns}, labels: {{app: {app}, role: r{}}}}}\nspec: {{containers: [{{name: c, image: i, ports: {ports}}}]}}\nstatus: {{podIP: 10.0.{n}.{p}, podIPs: {ips}}}\n",
                    p % 2
                );
            }
        }
        // A pod whose Namespace object was not read.
        out += "---\napiVersion: v1\nkind: Pod\nmetadata: {name: stray, namespace: ns-z, labels: {app: web, role: r0}}\nspec: {containers: [{name: c, image: i}]}\nstatus: {podIP: 10.0.9.9}\n";
        out
    }

    fn selector() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(json!({})),
            (0..APPS.len()).prop_map(|a| json!({"matchLabels": {"app": APPS[a]}})),
            (0..2usize).prop_map(|r| json!({"matchExpressions": [
                {"key": "role", "operator": "NotIn", "values": [format!("r{r}")]}]})),
        ]
    }

    fn peer() -> impl Strategy<Value = Value> {
        prop_oneof![
            selector().prop_map(|s| json!({"podSelector": s})),
            (selector(), 0..2usize).prop_map(|(s, t)| json!({"podSelector": s,
                "namespaceSelector": {"matchLabels": {"team": format!("t{t}")}}})),
            (0..2usize).prop_map(
                |t| json!({"namespaceSelector": {"matchLabels": {"team": format!("t{t}")}}})
            ),
            Just(json!({"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.1.0/24"]}})),
            Just(json!({"ipBlock": {"cidr": "192.0.2.0/24"}})),
        ]
    }

    fn port() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(json!({"port": 3306})),
            Just(json!({"port": "http"})),
            Just(json!({"port": 80, "protocol": "UDP"})),
        ]
    }

    fn rule() -> impl Strategy<Value = Value> {
        (prop::collection::vec(peer(), 0..3), prop::collection::vec(port(), 0..2))
            .prop_map(|(peers, ports)| json!({"peers": peers, "ports": ports}))
    }

    /// A policy as JSON: namespace index, podSelector, policyTypes, ingress and egress rules.
    fn policy(name: String) -> impl Strategy<Value = Value> {
        (
            0..NAMESPACES.len(),
            selector(),
            prop_oneof![
                Just(vec!["Ingress"]),
                Just(vec!["Egress"]),
                Just(vec!["Ingress", "Egress"])
            ],
            prop::collection::vec(rule(), 0..3),
            prop::collection::vec(rule(), 0..3),
        )
            .prop_map(move |(ns, selector, types, ingress, egress)| {
                let rules = |rules: Vec<Value>, field: &str| -> Vec<Value> {
                    rules
                        .into_iter()
                        .map(|r| json!({field: r["peers"], "ports": r["ports"]}))
                        .collect()
                };
                json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                    "metadata": {"name": name, "namespace": NAMESPACES[ns]},
                    "spec": {"podSelector": selector, "policyTypes": types,
                        "ingress": rules(ingress, "from"), "egress": rules(egress, "to")}})
            })
    }

    /// What the change does to policy 0 (or, for `Create`, adds).
    #[derive(Debug, Clone)]
    enum Change {
        AddRule(Direction, Value),
        RemoveRule(Direction),
        AddPeer(Direction, Value),
        Replace(Value),
        Delete,
        Create(Value),
    }

    fn change() -> impl Strategy<Value = Change> {
        let direction = prop_oneof![Just(Direction::Ingress), Just(Direction::Egress)];
        prop_oneof![
            (direction.clone(), rule()).prop_map(|(d, r)| Change::AddRule(d, r)),
            direction.clone().prop_map(Change::RemoveRule),
            (direction, peer()).prop_map(|(d, p)| Change::AddPeer(d, p)),
            policy("p0".into()).prop_map(Change::Replace),
            Just(Change::Delete),
            policy("created".into()).prop_map(Change::Create),
        ]
    }

    fn apply(policy: &Value, change: &Change) -> Option<Value> {
        let field = |d: Direction| match d {
            Direction::Ingress => ("ingress", "from"),
            Direction::Egress => ("egress", "to"),
        };
        let mut changed = policy.clone();
        match change {
            Change::AddRule(d, r) => {
                let (rules, peers) = field(*d);
                changed["spec"][rules]
                    .as_array_mut()?
                    .push(json!({peers: r["peers"], "ports": r["ports"]}));
            }
            Change::RemoveRule(d) => {
                changed["spec"][field(*d).0].as_array_mut()?.pop();
            }
            Change::AddPeer(d, p) => {
                let (rules, peers) = field(*d);
                let rule = changed["spec"][rules].as_array_mut()?.first_mut()?;
                rule[peers].as_array_mut()?.push(p.clone());
            }
            Change::Replace(v) => changed = v.clone(),
            Change::Delete | Change::Create(_) => return None,
        }
        Some(changed)
    }

    /// The scope of a change: the pods either version of each changed policy selects, in the
    /// directions either version affects.
    fn scope_of(before: &Inventory, after: &Inventory, names: &[&str]) -> ChangeScope {
        let mut scope = ChangeScope {
            ports: BTreeSet::from([(Protocol::Tcp, 3306), (Protocol::Udp, 80)]),
            addresses: BTreeSet::from(["192.0.2.9".parse().unwrap()]),
            ..ChangeScope::default()
        };
        for inventory in [before, after] {
            for (_, entry) in inventory.policies() {
                if !names.contains(&entry.compiled.name.as_str()) {
                    continue;
                }
                for direction in [Direction::Ingress, Direction::Egress] {
                    if entry.compiled.affects(direction) {
                        let subjects = match direction {
                            Direction::Ingress => &mut scope.ingress_subjects,
                            Direction::Egress => &mut scope.egress_subjects,
                        };
                        subjects.extend(entry.selected.iter().copied());
                    }
                }
            }
        }
        scope
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn pruned_blast_radius_equals_the_exhaustive_one(
            policies in (0..4usize).prop_flat_map(|n| {
                (0..=n).map(|i| policy(format!("p{i}"))).collect::<Vec<_>>()
            }),
            change in change(),
            matches_pods in any::<bool>(),
        ) {
            let documents: Vec<String> =
                policies.iter().map(|p| format!("---\n{p}\n")).collect();
            let before = inventory_of(&format!("{}{}", pods(), documents.concat()));
            let key = |p: &Value| (p["metadata"]["namespace"].as_str().unwrap().to_string(),
                p["metadata"]["name"].as_str().unwrap().to_string());
            let (after, names) = match (&change, apply(&policies[0], &change)) {
                (Change::Delete, _) => (before.with_policies_removed(&[key(&policies[0])]), ["p0"]),
                (Change::Create(created), _) => {
                    let typed: NetworkPolicy = serde_json::from_value(created.clone()).unwrap();
                    (before.with_policies_replaced(vec![typed]).unwrap(), ["created"])
                }
                (_, Some(changed)) => {
                    let typed: NetworkPolicy = serde_json::from_value(changed).unwrap();
                    match before.with_policies_replaced(vec![typed]) {
                        Ok(after) => (after, ["p0"]),
                        Err(_) => return Ok(()),
                    }
                }
                (_, None) => return Ok(()),
            };
            let scope = scope_of(&before, &after, &names);
            let options = ExplainOptions {
                ip_block_pod_mode: if matches_pods {
                    IpBlockPodMode::MatchesPods
                } else {
                    IpBlockPodMode::NeverMatchesPods
                },
            };
            let exhaustive = verdict_changes_exhaustive(&before, &after, &scope, &options);
            let pruned = verdict_changes(&before, &after, &scope, &options);
            prop_assert_eq!(pruned, exhaustive);
        }
    }
}

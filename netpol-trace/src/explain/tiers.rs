//! The tiered evaluation of one direction, as the APIs define it:
//!
//! 1. the admin tier (ClusterNetworkPolicy `tier: Admin`, AdminNetworkPolicy), by priority; in a
//!    policy the first matching rule decides: Allow/Accept and Deny are final, Pass skips the
//!    rest of the tier;
//! 2. Calico's tiers by order (then name), the default tier holding the Kubernetes
//!    NetworkPolicies at order 1000: a tier counts only when one of its policies applies to the
//!    endpoint for the direction; policies by order then name, rules in order: Allow/Deny
//!    decide, Log goes on, Pass jumps to the next tier; at the end of a tier the flow is denied
//!    (charged to the last applying policy) unless the tier's default action is Pass. Without
//!    Calico objects this is exactly NetworkPolicy isolation;
//! 3. the baseline tier (ClusterNetworkPolicy `tier: Baseline`, BaselineAdminNetworkPolicy);
//! 4. the default allow (Calico: the profiles' allow).
//!
//! Mixed with Calico tiers, the admin and baseline tiers take the places Calico gives them:
//! Calico enforces AdminNetworkPolicy in its own tier `adminnetworkpolicy` at order 1000 and
//! BaselineAdminNetworkPolicy in `baselineadminnetworkpolicy` at order 10,000,000, with the
//! default tier at 1,000,000. So a Calico Tier ordered below 1000 is evaluated before the admin
//! tier, and one between 1,000,000 and 10,000,000 (or without an order: last) after the
//! default tier and before (or after) the baseline tier. Without Calico tiers of their own this
//! is exactly the contract's admin → NetworkPolicy → baseline → default allow.

use order::StepsInOrder;

use super::{DecidedBy, Mismatch, PolicyExplanation, RuleContext, RuleExplanation};
use crate::flow::FlowEndpoint;
use crate::inventory::{AdminEntry, CalicoId, Inventory, PodId, PolicyId, TierEntry, TieredIndex};
use crate::policy::admin::{AdminPolicy, AdminRule, PeerView};
use crate::policy::calico::entity::{RuleFlow, sides};
use crate::policy::calico::{CalicoPolicy, EndpointView, Entity, order_key};
use crate::policy::kind::{FieldMiss, Misses};
use crate::policy::{Direction, PolicyKind, RuleAction, RuleEffect};

/// Calico's tier for AdminNetworkPolicy (and the admin tier of ClusterNetworkPolicy), and its
/// order.
const ADMIN_TIER: &str = "adminnetworkpolicy";
const ADMIN_TIER_ORDER: f64 = 1000.0;
/// Calico's tier for BaselineAdminNetworkPolicy, and its order.
const BASELINE_TIER: &str = "baselineadminnetworkpolicy";
const BASELINE_TIER_ORDER: f64 = 10_000_000.0;

/// The outcome of one direction.
pub(super) struct Evaluated {
    /// Whether some policy applies to the endpoint in this direction.
    pub isolated: bool,
    /// Whether the flow may pass.
    pub allowed: bool,
    /// Who decided (`None`: default allow).
    pub decided_by: Option<DecidedBy>,
    /// Every applying policy in evaluation order (empty unless asked for).
    pub policies: Vec<PolicyExplanation>,
}

/// A policy of a Calico tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A Kubernetes NetworkPolicy (in the default tier at order 1000).
    Kube(PolicyId),
    /// A Calico NetworkPolicy or GlobalNetworkPolicy.
    Calico(CalicoId),
}

/// One tier of the evaluation order.
#[derive(Debug, Clone, Copy)]
pub enum Stage<'a> {
    /// The admin or the baseline tier of cluster-scoped policies, in priority order: the first
    /// matching rule decides, Pass skips the rest of the tier, nothing is denied at its end.
    Cluster(&'a [AdminEntry]),
    /// A Calico tier (the default one holds the Kubernetes NetworkPolicies).
    Calico(&'a TierEntry),
}

/// The tiers of `tiered` in evaluation order: Calico's tiers by order then name, with the admin
/// tier at Calico's order 1000 and the baseline tier at 10,000,000 among them.
pub fn stages(tiered: &TieredIndex) -> Vec<Stage<'_>> {
    let mut out = Vec::with_capacity(tiered.tiers.len() + 2);
    let (mut admin, mut baseline) = (Some(&tiered.admin), Some(&tiered.baseline));
    for tier in &tiered.tiers {
        let key = (order_key(tier.tier.order), tier.tier.name.as_str());
        if let Some(entries) =
            admin.take_if(|_| key > (order_key(Some(ADMIN_TIER_ORDER)), ADMIN_TIER))
        {
            out.push(Stage::Cluster(entries));
        }
        if let Some(entries) =
            baseline.take_if(|_| key > (order_key(Some(BASELINE_TIER_ORDER)), BASELINE_TIER))
        {
            out.push(Stage::Cluster(entries));
        }
        out.push(Stage::Calico(tier));
    }
    out.extend([admin, baseline].into_iter().flatten().map(|e| Stage::Cluster(e)));
    out
}

/// The policies of `tier` that apply to pod `endpoint` in `direction`, in evaluation order
/// (order, then name; Kubernetes NetworkPolicies of the default tier at order 1000).
pub fn applicable_steps(
    inventory: &Inventory,
    tier: &TierEntry,
    endpoint: PodId,
    direction: Direction,
) -> Vec<Step> {
    StepsInOrder::new(inventory, tier, endpoint, direction).collect()
}

/// Pod `id` as Calico selectors see it.
pub fn endpoint_view(inventory: &Inventory, id: PodId) -> EndpointView<'_> {
    let pod = inventory.pod(id);
    EndpointView {
        namespace: &pod.pod.namespace,
        labels: &pod.labels,
        namespace_labels: inventory.namespace_labels_of(id),
        service_account: &pod.service_account,
    }
}

/// How a policy's rules went: the first deciding rule's index and action, if any.
type FirstMatch = Option<(usize, RuleAction)>;

struct Pipeline<'a> {
    inventory: &'a Inventory,
    rules: RuleContext<'a>,
    direction: Direction,
    endpoint: PodId,
    explain: bool,
    isolated: bool,
    decision: Option<(bool, DecidedBy)>,
    policies: Vec<PolicyExplanation>,
}

/// Evaluates `direction` for pod `endpoint`; with `explain`, every applying policy is
/// explained, otherwise evaluation stops at the decision.
pub(super) fn evaluate(rules: RuleContext<'_>, endpoint: PodId, explain: bool) -> Evaluated {
    let inventory = rules.inventory;
    let direction = rules.direction;
    let mut pipeline = Pipeline {
        inventory,
        rules,
        direction,
        endpoint,
        explain,
        isolated: false,
        decision: None,
        policies: Vec::new(),
    };
    for stage in stages(inventory.tiered()) {
        if pipeline.done() {
            break;
        }
        match stage {
            Stage::Cluster(entries) => pipeline.admin_tier(entries),
            Stage::Calico(tier) => pipeline.calico_tier(tier),
        }
    }
    let (allowed, decided_by) = match pipeline.decision {
        Some((allowed, by)) => (allowed, Some(by)),
        None => (true, None),
    };
    Evaluated { isolated: pipeline.isolated, allowed, decided_by, policies: pipeline.policies }
}

impl Pipeline<'_> {
    fn done(&self) -> bool {
        self.decision.is_some() && !self.explain
    }

    fn decide(&mut self, allowed: bool, by: DecidedBy) {
        if self.decision.is_none() {
            self.decision = Some((allowed, by));
        }
    }

    fn endpoint_labels(&self) -> (&crate::policy::Labels, &crate::policy::Labels) {
        let pod = self.inventory.pod(self.endpoint);
        (self.inventory.namespace_labels_of(self.endpoint), &pod.labels)
    }

    fn admin_tier(&mut self, entries: &[AdminEntry]) {
        let mut passed = false;
        for entry in entries {
            if self.done() {
                return;
            }
            let (ns_labels, labels) = self.endpoint_labels();
            let policy = &entry.policy;
            if !policy.selects(self.direction, ns_labels, labels) {
                continue;
            }
            self.isolated = true;
            let (first, rules) = self.admin_rules(policy);
            if self.decision.is_none()
                && !passed
                && let Some((index, action)) = first
            {
                match action.effect {
                    RuleEffect::Pass => passed = true,
                    effect => self.decide(
                        effect == RuleEffect::Allow,
                        admin_decider(policy, Some(index), action),
                    ),
                }
            }
            if self.explain {
                self.policies.push(PolicyExplanation {
                    kind: policy.kind,
                    namespace: String::new(),
                    name: policy.name.clone(),
                    tier: Some(policy.tier.as_str().to_owned()),
                    allowed: first.is_some_and(|(_, a)| a.effect == RuleEffect::Allow),
                    action: first.map(|(_, a)| a.name.to_owned()),
                    rules,
                });
            }
        }
    }

    fn peer_view(&self) -> PeerView<'_> {
        match self.rules.peer_end {
            FlowEndpoint::Pod { id, ip } => PeerView {
                pod: Some((self.inventory.namespace_labels_of(id), &self.inventory.pod(id).labels)),
                ip,
            },
            FlowEndpoint::External { ip } => PeerView { pod: None, ip: Some(ip) },
        }
    }

    fn admin_rules(&self, policy: &AdminPolicy) -> (FirstMatch, Vec<RuleExplanation>) {
        let peer = self.peer_view();
        let flow = self.rules.flow;
        let ports = self.rules.destination().map(|p| p.ports.iter().as_slice());
        let mut first = None;
        let mut explained = Vec::new();
        for (index, rule) in policy.rules(self.direction).iter().enumerate() {
            let peers_ok = rule.peers_match(peer);
            let ports_ok = rule.ports_match(flow.protocol, flow.port, ports);
            let matched = peers_ok && ports_ok;
            if matched && first.is_none() {
                first = Some((index, rule.action));
                if !self.explain {
                    break;
                }
            }
            if self.explain {
                let mismatches =
                    admin_mismatches(rule, self.direction, peers_ok, ports_ok, flow, &peer);
                explained.push(RuleExplanation {
                    index,
                    matched,
                    mismatches,
                    action: Some(rule.action.name.to_owned()),
                });
            }
        }
        (first, explained)
    }

    fn endpoint_view(&self, id: PodId) -> EndpointView<'_> {
        endpoint_view(self.inventory, id)
    }

    fn entity(&self, end: FlowEndpoint) -> Entity<'_> {
        match end {
            FlowEndpoint::Pod { id, ip } => Entity {
                pod: Some(self.endpoint_view(id)),
                ip,
                ports: Some(&self.inventory.pod(id).ports),
            },
            FlowEndpoint::External { ip } => Entity { pod: None, ip: Some(ip), ports: None },
        }
    }

    fn calico_tier(&mut self, tier: &TierEntry) {
        let tier_name = tier.tier.name.as_str();
        let mut settled = self.decision.is_some();
        let mut last = None;
        for step in StepsInOrder::new(self.inventory, tier, self.endpoint, self.direction) {
            self.isolated = true;
            last = Some(step);
            // Without an explanation to write, nothing after a decision (or a Pass) matters.
            if self.done() || (settled && !self.explain) {
                return;
            }
            let (first, explanation) = match step {
                Step::Kube(id) => self.kube_policy(id),
                Step::Calico(id) => self.calico_policy(id),
            };
            if !settled && let Some((index, action)) = first {
                settled = true;
                if action.effect != RuleEffect::Pass {
                    let by = self.step_decider(step, tier_name, Some(index), action);
                    self.decide(action.effect == RuleEffect::Allow, by);
                }
            }
            if let Some(explanation) = explanation {
                self.policies.push(explanation);
            }
        }
        if let Some(last) = last
            && !settled
            && !tier.tier.pass_at_end
        {
            let by = self.step_decider(last, tier_name, None, RuleAction::DENY);
            self.decide(false, by);
        }
    }

    fn step_decider(
        &self,
        step: Step,
        tier: &str,
        rule: Option<usize>,
        action: RuleAction,
    ) -> DecidedBy {
        match step {
            Step::Kube(id) => {
                let compiled = &self.inventory.policy(id).compiled;
                DecidedBy {
                    kind: PolicyKind::NetworkPolicy,
                    namespace: Some(compiled.namespace.clone()),
                    name: compiled.name.clone(),
                    tier: None,
                    rule,
                    action: action.name.to_owned(),
                }
            }
            Step::Calico(id) => {
                let policy = &self.inventory.tiered().calico_policy(id).policy;
                DecidedBy {
                    kind: policy.kind,
                    namespace: policy.namespace.clone(),
                    name: policy.name.clone(),
                    tier: Some(tier.to_owned()),
                    rule,
                    action: action.name.to_owned(),
                }
            }
        }
    }

    fn kube_policy(&self, id: PolicyId) -> (FirstMatch, Option<PolicyExplanation>) {
        if self.explain {
            let explanation = self.rules.explain_policy(id);
            let first =
                explanation.rules.iter().find(|r| r.matched).map(|r| (r.index, RuleAction::ALLOW));
            return (first, Some(explanation));
        }
        let compiled = &self.inventory.policy(id).compiled;
        let first = compiled
            .rules(self.direction)
            .unwrap_or_default()
            .iter()
            .position(|rule| self.rules.rule_allows(&compiled.namespace, rule))
            .map(|index| (index, RuleAction::ALLOW));
        (first, None)
    }

    fn calico_policy(&self, id: CalicoId) -> (FirstMatch, Option<PolicyExplanation>) {
        let policy: &CalicoPolicy = &self.inventory.tiered().calico_policy(id).policy;
        let local = self.entity(FlowEndpoint::Pod { id: self.endpoint, ip: self.local_ip() });
        let peer = self.entity(self.rules.peer_end);
        let (src, dst) = sides(self.direction, local, peer);
        let flow =
            RuleFlow { src, dst, port: self.rules.flow.port, protocol: self.rules.flow.protocol };
        let mut first = None;
        let mut explained = Vec::new();
        for (index, rule) in policy.rules(self.direction).unwrap_or_default().iter().enumerate() {
            let mut misses = Vec::new();
            let matched = rule.check(&flow, Misses(self.explain.then_some(&mut misses)));
            if matched && first.is_none() && rule.action.effect != RuleEffect::Log {
                first = Some((index, rule.action));
                if !self.explain {
                    break;
                }
            }
            if self.explain {
                explained.push(RuleExplanation {
                    index,
                    matched,
                    mismatches: misses.into_iter().map(mismatch).collect(),
                    action: Some(rule.action.name.to_owned()),
                });
            }
        }
        let explanation = self.explain.then(|| PolicyExplanation {
            kind: policy.kind,
            namespace: policy.namespace.clone().unwrap_or_default(),
            name: policy.name.clone(),
            tier: Some(policy.tier.clone()),
            allowed: first.is_some_and(|(_, a): (usize, RuleAction)| a.effect == RuleEffect::Allow),
            action: first.map(|(_, a)| a.name.to_owned()),
            rules: explained,
        });
        (first, explanation)
    }

    fn local_ip(&self) -> Option<std::net::IpAddr> {
        match self.direction {
            Direction::Ingress => self.rules.flow.dst.ip(),
            Direction::Egress => self.rules.flow.src.ip(),
        }
    }
}

fn mismatch(miss: FieldMiss) -> Mismatch {
    Mismatch { field: miss.field, want: miss.want, got: miss.got }
}

fn admin_decider(policy: &AdminPolicy, rule: Option<usize>, action: RuleAction) -> DecidedBy {
    DecidedBy {
        kind: policy.kind,
        namespace: None,
        name: policy.name.clone(),
        tier: Some(policy.tier.as_str().to_owned()),
        rule,
        action: action.name.to_owned(),
    }
}

fn admin_mismatches(
    rule: &AdminRule,
    direction: Direction,
    peers_ok: bool,
    ports_ok: bool,
    flow: &crate::flow::Flow,
    peer: &PeerView<'_>,
) -> Vec<Mismatch> {
    let mut out = Vec::new();
    if !peers_ok {
        let got = match (peer.pod, peer.ip) {
            (Some((_, labels)), _) => {
                let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("pod with labels {{{}}}", labels.join(","))
            }
            (None, Some(ip)) => format!("{ip} (not a pod)"),
            (None, None) => "unknown".to_owned(),
        };
        let want: Vec<String> = rule.peers.iter().map(describe_peer).collect();
        out.push(Mismatch {
            field: direction.peers_field().to_owned(),
            want: want.join(" or "),
            got,
        });
    }
    if !ports_ok {
        let want: Vec<String> = rule.ports.iter().flatten().map(ToString::to_string).collect();
        out.push(Mismatch {
            field: "ports".to_owned(),
            want: want.join(", "),
            got: format!("{}/{}", flow.protocol, flow.port),
        });
    }
    out
}

fn describe_peer(peer: &crate::policy::admin::AdminPeer) -> String {
    use crate::policy::admin::AdminPeer;
    match peer {
        AdminPeer::Namespaces(ns) => format!("namespaces {ns}"),
        AdminPeer::Pods { namespaces, pods } => format!("pods {pods} in namespaces {namespaces}"),
        AdminPeer::Networks(nets) => {
            let nets: Vec<String> = nets.iter().map(ToString::to_string).collect();
            format!("networks {}", nets.join(","))
        }
        AdminPeer::Unresolvable(what) => format!("{what} (not resolvable here)"),
    }
}

mod order;
#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;

//! Attribution: for one [`Flow`], which policies isolate each end, which of their rules match,
//! and for each rule that does not, what failed and what would have matched (near-miss).
//!
//! [`explain`] returns an [`Explanation`] that serialises to the `netpol-trace explain -o json`
//! contract. An end that is not a known pod has `namespace` and `pod` set to `null` (its `ip`
//! is kept) and is never isolated in its direction.

mod near_miss;
pub mod table;
mod tiers;

pub use tiers::{Stage, Step, applicable_steps, endpoint_view, stages};

use serde::{Deserialize, Serialize};

use crate::flow::{Flow, FlowEndpoint};
use crate::inventory::{Inventory, PodId, PolicyId};
use crate::policy::{Direction, IpBlockPodMode, PeerIdentity, PolicyKind, Protocol};

/// Evaluation choices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExplainOptions {
    /// Whether ipBlock peers match pod IPs (default: yes, as the e2e suite expects).
    pub ip_block_pod_mode: IpBlockPodMode,
}

/// The overall answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Both directions allow the flow.
    Allow,
    /// An isolated direction allows it in no policy.
    Deny,
}

/// One end of the flow, for output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSummary {
    /// Pod namespace (`null` outside the known pods).
    pub namespace: Option<String>,
    /// Pod name (`null` outside the known pods).
    pub pod: Option<String>,
    /// Address (`null` for a pod without one).
    pub ip: Option<String>,
}

/// The flow, for output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowSummary {
    /// Source.
    pub src: EndpointSummary,
    /// Destination.
    pub dst: EndpointSummary,
    /// Destination port.
    pub port: u16,
    /// Protocol.
    pub protocol: Protocol,
}

/// A rule that did not match: which field, what it wants, what the flow has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mismatch {
    /// Path relative to the rule, e.g. `ports[0].port` or `from[0].podSelector.matchLabels.app`.
    pub field: String,
    /// What would have matched.
    pub want: String,
    /// What the flow has.
    pub got: String,
}

/// One rule of an isolating policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleExplanation {
    /// Index in `spec.ingress` / `spec.egress`.
    pub index: usize,
    /// Whether the rule matches the flow (for a NetworkPolicy: allows it).
    pub matched: bool,
    /// Empty when matched; otherwise the closest peer's and the closest port's mismatches.
    pub mismatches: Vec<Mismatch>,
    /// The rule's action, for kinds whose rules have one (Allow, Accept, Deny, Pass, Log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

/// One policy that applies to the endpoint in a direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyExplanation {
    /// The kind, as its API names it.
    #[serde(default)]
    pub kind: PolicyKind,
    /// Namespace (empty, and left out of JSON, for cluster-scoped kinds).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The tier, for tiered kinds (`Admin`/`Baseline`, or a Calico tier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Whether its first matching rule allows the flow (NetworkPolicy: one of its rules does).
    pub allowed: bool,
    /// For tiered kinds, the action of the first matching rule (the policy's effect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Every rule of the direction, in order (none for a deny-all policy).
    pub rules: Vec<RuleExplanation>,
}

impl PolicyExplanation {
    /// `namespace/name`, or `name` for a cluster-scoped policy.
    pub fn key(&self) -> String {
        if self.namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }
}

/// The policy that decided a direction's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecidedBy {
    /// Its kind.
    pub kind: PolicyKind,
    /// Its namespace (absent for cluster-scoped kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
    /// Its tier, for tiered kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// The deciding rule's index; `null` for a deny by isolation or at the end of a tier.
    pub rule: Option<usize>,
    /// `Allow`/`Accept` or `Deny`, as the kind spells it.
    pub action: String,
}

/// One direction: the source's egress or the destination's ingress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectionExplanation {
    /// Whether some policy selects the endpoint for this direction.
    pub isolated: bool,
    /// Not isolated, or allowed by at least one isolating policy.
    pub allowed: bool,
    /// Exactly the policies that apply to the endpoint, in evaluation order (NetworkPolicies
    /// alone: sorted by namespace/name).
    pub policies: Vec<PolicyExplanation>,
    /// The policy that decided the verdict; `null` when none did (default allow).
    #[serde(default)]
    pub decided_by: Option<DecidedBy>,
}

/// The rule closest to allowing a flow, and its policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClosestRule<'a> {
    /// The policy.
    pub policy: &'a PolicyExplanation,
    /// The rule (fewest mismatches; the first of equals).
    pub rule: &'a RuleExplanation,
}

impl DirectionExplanation {
    /// The rule with the fewest mismatches over all isolating policies (a matching rule if there
    /// is one); `None` when no isolating policy has a rule for this direction.
    pub fn closest_rule(&self) -> Option<ClosestRule<'_>> {
        self.policies
            .iter()
            .flat_map(|policy| policy.rules.iter().map(move |rule| ClosestRule { policy, rule }))
            .min_by_key(|c| (!c.rule.matched, c.rule.mismatches.len()))
    }

    fn not_isolated() -> Self {
        Self { isolated: false, allowed: true, policies: Vec::new(), decided_by: None }
    }
}

/// The answer for one flow: the `explain -o json` contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    /// The flow.
    pub flow: FlowSummary,
    /// `deny` iff a direction is isolated and not allowed.
    pub verdict: Verdict,
    /// The source's egress.
    pub egress: DirectionExplanation,
    /// The destination's ingress.
    pub ingress: DirectionExplanation,
}

impl Explanation {
    /// The explanation of `direction`.
    pub fn direction(&self, direction: Direction) -> &DirectionExplanation {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }

    /// Whether the flow is allowed.
    pub fn allowed(&self) -> bool {
        self.verdict == Verdict::Allow
    }
}

/// Explains `flow` against the policies of `inventory`.
pub fn explain(inventory: &Inventory, flow: &Flow, options: &ExplainOptions) -> Explanation {
    let egress = match flow.src {
        FlowEndpoint::Pod { id, .. } => {
            explain_direction(inventory, flow, id, Direction::Egress, options)
        }
        FlowEndpoint::External { .. } => DirectionExplanation::not_isolated(),
    };
    let ingress = match flow.dst {
        FlowEndpoint::Pod { id, .. } => {
            explain_direction(inventory, flow, id, Direction::Ingress, options)
        }
        FlowEndpoint::External { .. } => DirectionExplanation::not_isolated(),
    };
    let verdict = if egress.allowed && ingress.allowed { Verdict::Allow } else { Verdict::Deny };
    Explanation { flow: summarize(inventory, flow), verdict, egress, ingress }
}

/// Whether `flow` is allowed, without building the explanation.
pub fn is_allowed(inventory: &Inventory, flow: &Flow, options: &ExplainOptions) -> bool {
    let allowed = |end: FlowEndpoint, direction| match end {
        FlowEndpoint::Pod { id, .. } => {
            let context = RuleContext::new(inventory, flow, direction, options);
            if !inventory.tiered().is_empty() {
                return tiers::evaluate(context, id, false).allowed;
            }
            let policies = inventory.isolating_policies(id, direction);
            policies.is_empty() || policies.iter().any(|&p| context.policy_allows(p))
        }
        FlowEndpoint::External { .. } => true,
    };
    allowed(flow.src, Direction::Egress) && allowed(flow.dst, Direction::Ingress)
}

fn explain_direction(
    inventory: &Inventory,
    flow: &Flow,
    endpoint: PodId,
    direction: Direction,
    options: &ExplainOptions,
) -> DirectionExplanation {
    let context = RuleContext::new(inventory, flow, direction, options);
    let evaluated = tiers::evaluate(context, endpoint, true);
    DirectionExplanation {
        isolated: evaluated.isolated,
        allowed: evaluated.allowed,
        policies: evaluated.policies,
        decided_by: evaluated.decided_by,
    }
}

/// What a rule of one direction is evaluated against: the peer (the other end) and the
/// destination's declared ports.
pub(crate) struct RuleContext<'a> {
    inventory: &'a Inventory,
    flow: &'a Flow,
    direction: Direction,
    peer_end: FlowEndpoint,
    mode: IpBlockPodMode,
}

impl<'a> RuleContext<'a> {
    fn new(
        inventory: &'a Inventory,
        flow: &'a Flow,
        direction: Direction,
        options: &ExplainOptions,
    ) -> Self {
        let peer_end = match direction {
            Direction::Ingress => flow.src,
            Direction::Egress => flow.dst,
        };
        Self { inventory, flow, direction, peer_end, mode: options.ip_block_pod_mode }
    }

    fn peer(&self) -> PeerIdentity<'a> {
        match self.peer_end {
            FlowEndpoint::Pod { id, ip } => {
                let pod = self.inventory.pod(id);
                PeerIdentity::Pod {
                    namespace: &pod.pod.namespace,
                    namespace_labels: self.inventory.namespace_labels_of(id),
                    labels: &pod.labels,
                    ip,
                }
            }
            FlowEndpoint::External { ip } => PeerIdentity::External(ip),
        }
    }

    fn destination(&self) -> Option<&'a crate::inventory::PodInfo> {
        self.flow.dst.pod().map(|id| self.inventory.pod(id))
    }

    fn rule_allows(&self, namespace: &str, rule: &crate::policy::CompiledRule) -> bool {
        let ports = self.destination().map(|pod| pod.ports.iter().as_slice());
        rule.allows(namespace, self.peer(), self.flow.protocol, self.flow.port, ports, self.mode)
    }

    fn policy_allows(&self, id: PolicyId) -> bool {
        let compiled = &self.inventory.policy(id).compiled;
        compiled
            .rules(self.direction)
            .unwrap_or_default()
            .iter()
            .any(|rule| self.rule_allows(&compiled.namespace, rule))
    }

    fn explain_policy(&self, id: PolicyId) -> PolicyExplanation {
        let compiled = &self.inventory.policy(id).compiled;
        let rules: Vec<RuleExplanation> = compiled
            .rules(self.direction)
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(index, rule)| {
                let matched = self.rule_allows(&compiled.namespace, rule);
                let mismatches =
                    if matched { Vec::new() } else { self.mismatches(&compiled.namespace, rule) };
                RuleExplanation { index, matched, mismatches, action: None }
            })
            .collect();
        PolicyExplanation {
            kind: PolicyKind::NetworkPolicy,
            namespace: compiled.namespace.clone(),
            name: compiled.name.clone(),
            tier: None,
            allowed: rules.iter().any(|r| r.matched),
            action: None,
            rules,
        }
    }
}

fn summarize(inventory: &Inventory, flow: &Flow) -> FlowSummary {
    let end = |end: FlowEndpoint| {
        let pod = end.pod().map(|id| &inventory.pod(id).pod);
        EndpointSummary {
            namespace: pod.map(|p| p.namespace.clone()),
            pod: pod.map(|p| p.name.clone()),
            ip: end.ip().map(|ip| ip.to_string()),
        }
    };
    FlowSummary { src: end(flow.src), dst: end(flow.dst), port: flow.port, protocol: flow.protocol }
}

#[cfg(test)]
mod tests;

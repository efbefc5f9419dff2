//! Minimal patch synthesis: for a denied flow, the change to the NetworkPolicies that allows it
//! and nothing more than the source *workload* reaching the destination *workload* on that port
//! and protocol. Synthesis and proof are pure (no I/O).
//!
//! [`plan_fix`] returns a [`FixPlan`] that serialises to the `netpol-trace fix -o json`
//! contract. Per denied direction (egress of the source, ingress of the destination):
//! 1. an `except` that carves the other end out of an otherwise matching rule stops the fix
//!    ([`FixError::DeliberateExcept`]);
//! 2. among the policies isolating the endpoint that select only its workload's pods (exactly
//!    them first), a rule whose peers are exactly the other end gets the port added;
//! 3. else the best such policy gets a new rule (one peer, one port);
//! 4. else (every isolating policy also selects other pods, e.g. a namespace-wide default deny)
//!    a new policy is created for the workload, with that direction only.
//!
//! Proof before output: the patches are applied (RFC 6902) to the objects as read, parsed back
//! and evaluated by the engine; the flow must be allowed, nothing may lose access, and every
//! newly allowed (source, destination, port, protocol) over all known pods must lie within the
//! flow's workloads, port and protocol. A named port that widens is retried as a number.
//!
//! The lab and other callers apply a plan in memory with [`FixPlan::apply_to`].
//!
//! Modules: [`workload`] (stable labels), [`rule`] (peers, ports, rules), [`hints`] (except
//! and likely typos), [`blast`] (verdict changes), `draft` (working copies and operations),
//! [`fallback`] (the delete-policy last resort), [`yaml`], [`kubectl`], [`table`] (output).
//! Everything here is pure; `apply` writes a plan to manifest files or the cluster.

pub mod blast;
mod draft;
pub mod error;
pub mod fallback;
pub mod hints;
pub mod kubectl;
pub mod rule;
pub mod table;
pub mod workload;
pub mod yaml;

use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::path::PathBuf;

use json_patch::Patch;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde::Serialize;
use serde_json::{Value, json};

pub use blast::{AllowedPair, ChangeScope, PairEnd, Probe, VerdictChanges, verdict_changes};
pub use error::FixError;
pub use fallback::plan_delete_fallback;
pub use hints::Hint;
pub use workload::Workload;

use draft::DraftObject;
use hints::{peer_end, subject_end};
use rule::{PortForm, RulePeer};

use crate::explain::{ExplainOptions, FlowSummary, Verdict, explain, is_allowed};
use crate::flow::{Flow, FlowEndpoint};
use crate::inventory::{Inventory, PodId, PolicyId, PolicySource};
use crate::policy::{Direction, Operator, Protocol, Selector};

/// Label put on created policies.
pub const MANAGED_BY_LABEL: (&str, &str) = ("app.kubernetes.io/managed-by", "netpol-trace");

/// Annotation on created policies naming the flow they were made for.
pub const FLOW_ANNOTATION: &str = "netpol-trace.io/flow";

/// Longest name given to a created policy (a DNS label, so it also fits everywhere a name goes).
const MAX_NAME: usize = 63;

/// Choices for [`plan_fix`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FixOptions {
    /// How flows are evaluated (ipBlock against pod IPs or not).
    pub explain: ExplainOptions,
}

/// What a patch entry does to its policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PatchAction {
    /// Edit an existing policy with `json_patch`.
    Patch,
    /// Create the policy in `object`.
    Create,
    /// Delete the policy (only the `--fallback delete-policy` plan).
    Delete,
}

/// One change to one policy: an entry of `patches` in `fix -o json`.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyPatch {
    /// Namespace of the policy.
    pub namespace: String,
    /// Name of the policy.
    pub name: String,
    /// The direction the change opens.
    pub direction: Direction,
    /// Patch, create or delete.
    pub action: PatchAction,
    /// RFC 6902 operations against the object as read (or, for a second entry on the same
    /// object, as left by the entries before it); `action: patch` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json_patch: Option<Patch>,
    /// The whole new NetworkPolicy; `action: create` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<Value>,
    /// The same change as a kubectl command.
    pub kubectl: String,
    /// Connections this entry's policy lets through after the plan that it did not before
    /// (its blast radius), over all known pods.
    pub newly_allowed: Vec<AllowedPair>,
    /// What changes, in words (extra field).
    pub change: String,
    /// Remarks about the denying policies, e.g. a likely typo (extra field).
    pub hints: Vec<Hint>,
    /// Where the policy was read from: `FILE, document N`, `cluster`, or `new` (extra field).
    pub source: String,
    /// The policy after this entry (and the ones before it on the same object); `Null` for a
    /// deletion.
    #[serde(skip)]
    pub result: Value,
    /// The policy as read (`None` for a created one).
    #[serde(skip)]
    pub original: Option<Value>,
    /// Where the policy was read from.
    #[serde(skip)]
    pub policy_source: PolicySource,
    /// For a created policy: the manifest file of a policy it complements (one isolating the
    /// same pods), where `--apply -f` appends it.
    #[serde(skip)]
    pub companion_file: Option<PathBuf>,
}

impl PolicyPatch {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The answer of `fix`: the `fix -o json` contract.
#[derive(Debug, Clone, Serialize)]
pub struct FixPlan {
    /// The flow (the first one when several were fixed together, e.g. a Service's backends).
    pub flow: FlowSummary,
    /// Every flow of the plan, when there are several (extra field).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flows: Vec<FlowSummary>,
    /// `deny` when any flow is denied today.
    pub verdict_before: Verdict,
    /// `allow` when the plan allows every flow.
    pub verdict_after: Verdict,
    /// The changes, in the order they apply.
    pub patches: Vec<PolicyPatch>,
    /// Every connection the whole plan newly allows (extra field).
    pub newly_allowed: Vec<AllowedPair>,
    /// One line for people, e.g. `nothing to do: the flow is already allowed` (extra field).
    pub summary: String,
}

impl FixPlan {
    /// Whether the flow was allowed already and nothing changes.
    pub fn is_noop(&self) -> bool {
        self.patches.is_empty()
    }

    /// The policies as the plan leaves them (patched and created ones; each once, in its final
    /// state), typed.
    pub fn policies(&self) -> Result<Vec<NetworkPolicy>, FixError> {
        self.final_entries()
            .into_iter()
            .filter(|entry| entry.action != PatchAction::Delete)
            .map(|entry| {
                serde_json::from_value(entry.result.clone()).map_err(|e| FixError::InvalidResult {
                    policy: entry.key(),
                    message: e.to_string(),
                })
            })
            .collect()
    }

    /// The last entry of each policy the plan touches, in first-touched order: its `result` is
    /// the policy's final state.
    pub fn final_entries(&self) -> Vec<&PolicyPatch> {
        let mut seen: Vec<String> = Vec::new();
        let mut out: Vec<&PolicyPatch> = Vec::new();
        for entry in &self.patches {
            let key = entry.key();
            match seen.iter().position(|k| *k == key) {
                Some(index) => out[index] = entry,
                None => {
                    seen.push(key);
                    out.push(entry);
                }
            }
        }
        out
    }

    /// `inventory` with the plan applied: patched policies replaced, created ones added,
    /// deleted ones removed. This is what a caller re-renders its datapath from.
    pub fn apply_to(&self, inventory: &Inventory) -> Result<Inventory, FixError> {
        let removed: Vec<(String, String)> = self
            .patches
            .iter()
            .filter(|p| p.action == PatchAction::Delete)
            .map(|p| (p.namespace.clone(), p.name.clone()))
            .collect();
        let base = inventory.with_policies_removed(&removed);
        base.with_policies_replaced(self.policies()?).map_err(|e| FixError::InvalidResult {
            policy: format!("{}/{}", e.error.namespace, e.error.name),
            message: e.to_string(),
        })
    }
}

/// Plans the minimal fix for `flow`; see the module documentation.
pub fn plan_fix(
    inventory: &Inventory,
    flow: &Flow,
    options: &FixOptions,
) -> Result<FixPlan, FixError> {
    plan_fix_flows(inventory, std::slice::from_ref(flow), options)
}

/// Plans one fix for several flows (e.g. a Service's backends), each fixed in turn on top of the
/// changes for the ones before, and proven together.
pub fn plan_fix_flows(
    inventory: &Inventory,
    flows: &[Flow],
    options: &FixOptions,
) -> Result<FixPlan, FixError> {
    match Planner::run(inventory, flows, options, PortForm::Name) {
        Err(FixError::Widens { .. }) => Planner::run(inventory, flows, options, PortForm::Number),
        result => result,
    }
}

/// The most a flow may open: its source workload (or address) to its destination workload
/// (or address), on its port and protocol.
#[derive(Debug, Clone)]
struct FlowScope {
    src: ScopeEnd,
    dst: ScopeEnd,
    port: u16,
    protocol: Protocol,
}

#[derive(Debug, Clone)]
enum ScopeEnd {
    Pods(Vec<PodId>),
    Address(std::net::IpAddr),
}

impl ScopeEnd {
    fn of(inventory: &Inventory, end: FlowEndpoint) -> Self {
        match end {
            FlowEndpoint::Pod { id, .. } => {
                Self::Pods(Workload::of_pod(inventory, id).map_or_else(|_| vec![id], |w| w.pods))
            }
            FlowEndpoint::External { ip } => Self::Address(ip),
        }
    }

    fn covers(&self, end: PairEnd) -> bool {
        match (self, end) {
            (Self::Pods(pods), PairEnd::Pod(id)) => pods.contains(&id),
            (Self::Address(ip), PairEnd::Address(other)) => *ip == other,
            _ => false,
        }
    }
}

impl FlowScope {
    fn covers(&self, probe: &Probe) -> bool {
        self.port == probe.port
            && self.protocol == probe.protocol
            && self.src.covers(probe.src)
            && self.dst.covers(probe.dst)
    }
}

/// One change recorded while planning.
#[derive(Debug, Clone)]
struct DraftEntry {
    object: usize,
    direction: Direction,
    action: PatchAction,
    ops: Option<Patch>,
    change: String,
    hints: Vec<Hint>,
    result: Value,
    companion_file: Option<PathBuf>,
}

struct Planner<'a> {
    base: &'a Inventory,
    options: &'a FixOptions,
    form: PortForm,
    current: Inventory,
    objects: Vec<DraftObject>,
    entries: Vec<DraftEntry>,
}

impl<'a> Planner<'a> {
    fn run(
        base: &'a Inventory,
        flows: &[Flow],
        options: &'a FixOptions,
        form: PortForm,
    ) -> Result<FixPlan, FixError> {
        let mut planner = Self {
            base,
            options,
            form,
            current: base.clone(),
            objects: Vec::new(),
            entries: Vec::new(),
        };
        let denied_before = flows.iter().any(|f| !is_allowed(base, f, &options.explain));
        for flow in flows {
            planner.fix_flow(flow)?;
        }
        let newly_allowed =
            if planner.entries.is_empty() { Vec::new() } else { planner.prove(flows)? };
        Ok(planner.into_plan(flows, denied_before, &newly_allowed))
    }

    fn fix_flow(&mut self, flow: &Flow) -> Result<(), FixError> {
        let explanation = explain(&self.current, flow, &self.options.explain);
        for direction in [Direction::Egress, Direction::Ingress] {
            let Some(subject) = subject_end(flow, direction).pod() else { continue };
            if explanation.direction(direction).allowed {
                continue;
            }
            let options = &self.options.explain;
            if let Some(error) =
                hints::deliberate_except(&self.current, flow, subject, direction, options)
            {
                return Err(error);
            }
            let hints = hints::hints(&self.current, flow, subject, direction, options);
            let workload = Workload::of_pod(&self.current, subject)?;
            let peer_workload;
            let peer = match peer_end(flow, direction) {
                FlowEndpoint::Pod { id, .. } => {
                    peer_workload = Workload::of_pod(&self.current, id)?;
                    RulePeer::Workload(&peer_workload, id)
                }
                FlowEndpoint::External { ip } => RulePeer::Address(ip),
            };
            self.fix_direction(flow, direction, subject, &workload, peer, hints)?;
            self.refresh()?;
        }
        Ok(())
    }

    /// Isolating policies of `subject` that select only `workload`'s pods: exactly them first,
    /// then the ones covering most of it. A podSelector with no positive requirement (`{}`, or
    /// only NotIn/DoesNotExist) is namespace-wide even when the namespace holds nothing else
    /// today: a rule there would open every pod that comes later.
    fn candidates(
        &self,
        subject: PodId,
        direction: Direction,
        workload: &Workload,
    ) -> Vec<PolicyId> {
        let mut candidates: Vec<PolicyId> = self
            .current
            .isolating_policies(subject, direction)
            .iter()
            .copied()
            .filter(|&id| {
                let entry = self.current.policy(id);
                is_workload_scoped(&entry.compiled.pod_selector)
                    && entry.selected.iter().all(|&p| workload.contains(p))
            })
            .collect();
        candidates.sort_by_key(|&id| {
            let selected = &self.current.policy(id).selected;
            (*selected != workload.pods, Reverse(selected.len()), id)
        });
        candidates
    }

    fn fix_direction(
        &mut self,
        flow: &Flow,
        direction: Direction,
        subject: PodId,
        workload: &Workload,
        peer: RulePeer<'_>,
        mut hints: Vec<Hint>,
    ) -> Result<(), FixError> {
        let candidates = self.candidates(subject, direction, workload);
        let destination = flow.dst.pod().map(|id| self.current.pod(id).clone());
        let port_for = |policy: &crate::policy::CompiledPolicy| {
            let form = if rule::uses_named_ports(policy) { self.form } else { PortForm::Number };
            rule::port_value(flow, destination.as_ref(), form).0
        };
        for &id in &candidates {
            let policy = &self.current.policy(id).compiled;
            let rules = policy.rules(direction).unwrap_or_default();
            let exact = rules.iter().position(|rule| {
                !rule.ports.is_empty() && rule::peers_are_exactly(&self.current, policy, rule, peer)
            });
            if let Some(index) = exact {
                let port = port_for(policy);
                let change = format!(
                    "add {} to {direction} rule {index}, whose peers are exactly {}",
                    describe_port(&port),
                    peer.describe()
                );
                let (namespace, name) = (policy.namespace.clone(), policy.name.clone());
                return self.record(&namespace, &name, direction, change, hints, |object| {
                    object.add_port(direction, index, port)
                });
            }
        }
        if let Some(&id) = candidates.first() {
            let policy = &self.current.policy(id).compiled;
            let port = port_for(policy);
            let change = format!(
                "add a {direction} rule {} {} on {}",
                if direction == Direction::Ingress { "from" } else { "to" },
                peer.describe(),
                describe_port(&port)
            );
            let rule = rule::rule_value(direction, rule::peer_value(peer, &policy.namespace), port);
            let (namespace, name) = (policy.namespace.clone(), policy.name.clone());
            return self.record(&namespace, &name, direction, change, hints, |object| {
                object.append_rule(direction, rule)
            });
        }
        let unisolated: Vec<String> = workload
            .pods
            .iter()
            .filter(|&&p| self.current.isolating_policies(p, direction).is_empty())
            .map(|&p| self.current.pod(p).pod.to_string())
            .collect();
        if !unisolated.is_empty() {
            return Err(FixError::WouldIsolate {
                direction,
                namespace: workload.namespace.clone(),
                selector: workload.describe_selector(),
                pods: unisolated.join(", "),
            });
        }
        for &id in self.current.isolating_policies(subject, direction) {
            let entry = self.current.policy(id);
            let others = entry.selected.iter().filter(|&&p| !workload.contains(p)).count();
            let reach = if is_workload_scoped(&entry.compiled.pod_selector) {
                format!(
                    "it also selects {others} pod{} outside {}",
                    if others == 1 { "" } else { "s" },
                    workload.describe_selector()
                )
            } else {
                format!(
                    "its podSelector takes every pod of {} ({others} besides {}, and any created later)",
                    entry.compiled.namespace,
                    workload.describe_selector()
                )
            };
            hints.push(Hint {
                policy: entry.compiled.key(),
                message: format!(
                    "{reach}: a rule there would open them too, so a new policy is created instead"
                ),
            });
        }
        let port = rule::port_value(flow, destination.as_ref(), PortForm::Number).0;
        let name = self.new_name(flow, direction, &workload.namespace);
        let change = format!(
            "create an {direction} policy for pods {} allowing {} {} on {}",
            workload.describe_selector(),
            if direction == Direction::Ingress { "from" } else { "to" },
            peer.describe(),
            describe_port(&port)
        );
        let rule = rule::rule_value(direction, rule::peer_value(peer, &workload.namespace), port);
        let object = new_policy(
            &workload.namespace,
            &name,
            workload,
            direction,
            rule,
            &self.describe_flow(flow),
        );
        let companion_file =
            self.current.isolating_policies(subject, direction).iter().find_map(|&id| match &self
                .current
                .policy(id)
                .sourced
                .source
            {
                PolicySource::File { path, .. } => Some(path.clone()),
                _ => None,
            });
        let draft = DraftObject::created(&workload.namespace, &name, object);
        self.objects.push(draft);
        let result = self.objects[self.objects.len() - 1].current.clone();
        self.entries.push(DraftEntry {
            object: self.objects.len() - 1,
            direction,
            action: PatchAction::Create,
            ops: None,
            change,
            hints,
            result,
            companion_file,
        });
        Ok(())
    }

    /// Applies `edit` to the working copy of `namespace/name` and records the entry. A change to
    /// a policy this plan creates folds into its create entry.
    fn record(
        &mut self,
        namespace: &str,
        name: &str,
        direction: Direction,
        change: String,
        hints: Vec<Hint>,
        edit: impl FnOnce(&mut DraftObject) -> Result<Option<Patch>, FixError>,
    ) -> Result<(), FixError> {
        let index =
            match self.objects.iter().position(|o| o.namespace == namespace && o.name == name) {
                Some(index) => index,
                None => {
                    let id = self.base.policy_id(namespace, name).ok_or_else(|| {
                        FixError::Unpatchable {
                            policy: format!("{namespace}/{name}"),
                            message: "not among the policies read".to_owned(),
                        }
                    })?;
                    let sourced = &self.base.policy(id).sourced;
                    self.objects.push(DraftObject::existing(
                        namespace,
                        name,
                        sourced.raw.clone(),
                        sourced.source.clone(),
                    ));
                    self.objects.len() - 1
                }
            };
        let ops = edit(&mut self.objects[index])?;
        let result = self.objects[index].current.clone();
        if self.objects[index].is_created()
            && let Some(entry) = self.entries.iter_mut().find(|e| e.object == index)
        {
            entry.change = format!("{}; then {change}", entry.change);
            entry.hints.extend(hints);
            entry.result = result;
            return Ok(());
        }
        self.entries.push(DraftEntry {
            object: index,
            direction,
            action: PatchAction::Patch,
            ops,
            change,
            hints,
            result,
            companion_file: None,
        });
        Ok(())
    }

    /// Re-evaluates the working copies into `current`.
    fn refresh(&mut self) -> Result<(), FixError> {
        let policies =
            self.objects.iter().map(DraftObject::typed).collect::<Result<Vec<_>, _>>()?;
        self.current =
            self.base.with_policies_replaced(policies).map_err(|e| FixError::InvalidResult {
                policy: format!("{}/{}", e.error.namespace, e.error.name),
                message: e.to_string(),
            })?;
        Ok(())
    }

    fn describe_flow(&self, flow: &Flow) -> String {
        let end = |end: FlowEndpoint| match end {
            FlowEndpoint::Pod { id, .. } => self.base.pod(id).pod.to_string(),
            FlowEndpoint::External { ip } => ip.to_string(),
        };
        format!("{} -> {} {}/{}", end(flow.src), end(flow.dst), flow.protocol, flow.port)
    }

    /// `allow-<src>-to-<dst>-<port>[-<protocol>]`, made unique in the namespace.
    fn new_name(&self, flow: &Flow, direction: Direction, namespace: &str) -> String {
        let end = |end: FlowEndpoint| match end {
            FlowEndpoint::Pod { id, .. } => Workload::of_pod(self.base, id)
                .map_or_else(|_| self.base.pod(id).pod.name.clone(), |w| w.name),
            FlowEndpoint::External { ip } => ip.to_string(),
        };
        let protocol = match flow.protocol {
            Protocol::Tcp => String::new(),
            other => format!("-{}", other.as_str().to_ascii_lowercase()),
        };
        let base = dns_label(&format!(
            "allow-{}-to-{}-{}{protocol}",
            end(flow.src),
            end(flow.dst),
            flow.port
        ));
        let taken = |name: &str| {
            self.current.policy_id(namespace, name).is_some()
                || self.objects.iter().any(|o| o.namespace == namespace && o.name == name)
        };
        let mut candidates = std::iter::once(base.clone())
            .chain(std::iter::once(format!("{base}-{direction}")))
            .chain((2..).map(|n| format!("{base}-{direction}-{n}")));
        candidates.find(|name| !taken(name)).unwrap_or(base)
    }

    /// Checks the plan with the engine; returns what it newly allows.
    fn prove(&self, flows: &[Flow]) -> Result<Vec<Probe>, FixError> {
        let options = &self.options.explain;
        if let Some(flow) = flows.iter().find(|f| !is_allowed(&self.current, f, options)) {
            return Err(FixError::StillDenied { flow: self.describe_flow(flow) });
        }
        let mut scope = ChangeScope::default();
        for entry in &self.entries {
            let object = &self.objects[entry.object];
            let Some(id) = self.current.policy_id(&object.namespace, &object.name) else {
                continue;
            };
            let selected = self.current.policy(id).selected.iter().copied();
            match entry.direction {
                Direction::Ingress => scope.ingress_subjects.extend(selected),
                Direction::Egress => scope.egress_subjects.extend(selected),
            }
        }
        for flow in flows {
            scope.addresses.extend(
                [flow.src, flow.dst]
                    .into_iter()
                    .filter(|e| e.pod().is_none())
                    .filter_map(|e| e.ip()),
            );
            scope.ports.insert((flow.protocol, flow.port));
        }
        let changes = verdict_changes(self.base, &self.current, &scope, options);
        if !changes.newly_denied.is_empty() {
            let pairs = changes.newly_denied.iter().map(|p| p.to_pair(self.base)).collect();
            return Err(FixError::RemovesAccess { pairs });
        }
        let scopes: Vec<FlowScope> = flows
            .iter()
            .map(|f| FlowScope {
                src: ScopeEnd::of(self.base, f.src),
                dst: ScopeEnd::of(self.base, f.dst),
                port: f.port,
                protocol: f.protocol,
            })
            .collect();
        let beyond: Vec<AllowedPair> = changes
            .newly_allowed
            .iter()
            .filter(|probe| !scopes.iter().any(|s| s.covers(probe)))
            .map(|probe| probe.to_pair(self.base))
            .collect();
        if !beyond.is_empty() {
            return Err(FixError::Widens { pairs: beyond });
        }
        Ok(changes.newly_allowed)
    }

    fn into_plan(self, flows: &[Flow], denied_before: bool, newly_allowed: &[Probe]) -> FixPlan {
        let summaries: Vec<FlowSummary> =
            flows.iter().map(|f| explain(self.base, f, &self.options.explain).flow).collect();
        let allowed_after =
            flows.iter().all(|f| is_allowed(&self.current, f, &self.options.explain));
        let verdict = |allowed: bool| if allowed { Verdict::Allow } else { Verdict::Deny };
        let patches: Vec<PolicyPatch> = self
            .entries
            .iter()
            .map(|entry| {
                let object = &self.objects[entry.object];
                let selected: BTreeSet<PodId> = self
                    .current
                    .policy_id(&object.namespace, &object.name)
                    .map(|id| self.current.policy(id).selected.iter().copied().collect())
                    .unwrap_or_default();
                let touches = |probe: &&Probe| match (entry.direction, probe.src, probe.dst) {
                    (Direction::Ingress, _, PairEnd::Pod(dst)) => selected.contains(&dst),
                    (Direction::Egress, PairEnd::Pod(src), _) => selected.contains(&src),
                    _ => false,
                };
                let pairs =
                    newly_allowed.iter().filter(touches).map(|p| p.to_pair(self.base)).collect();
                let (kubectl, object_field, source) = match entry.action {
                    PatchAction::Create => (
                        kubectl::apply_command(&entry.result),
                        Some(entry.result.clone()),
                        "new".to_owned(),
                    ),
                    _ => {
                        let ops = serde_json::to_value(&entry.ops).unwrap_or(Value::Null);
                        (
                            kubectl::patch_command(&object.namespace, &object.name, &ops),
                            None,
                            object.source.to_string(),
                        )
                    }
                };
                PolicyPatch {
                    namespace: object.namespace.clone(),
                    name: object.name.clone(),
                    direction: entry.direction,
                    action: entry.action,
                    json_patch: entry.ops.clone(),
                    object: object_field,
                    kubectl,
                    newly_allowed: pairs,
                    change: entry.change.clone(),
                    hints: entry.hints.clone(),
                    source,
                    result: entry.result.clone(),
                    original: object.original.clone(),
                    policy_source: object.source.clone(),
                    companion_file: entry.companion_file.clone(),
                }
            })
            .collect();
        let summary = if patches.is_empty() {
            "nothing to do: the flow is already allowed".to_owned()
        } else {
            let pairs = newly_allowed.len();
            format!(
                "{} change{} the flow; {pairs} connection{} newly allowed",
                patches.len(),
                if patches.len() == 1 { " allows" } else { "s allow" },
                if pairs == 1 { "" } else { "s" }
            )
        };
        let mut summaries = summaries.into_iter();
        let flow = summaries.next().unwrap_or_else(empty_flow);
        let rest: Vec<FlowSummary> = summaries.collect();
        let flows_field = if rest.is_empty() {
            Vec::new()
        } else {
            std::iter::once(flow.clone()).chain(rest).collect()
        };
        FixPlan {
            flow,
            flows: flows_field,
            verdict_before: verdict(!denied_before),
            verdict_after: verdict(allowed_after),
            patches,
            newly_allowed: newly_allowed.iter().map(|p| p.to_pair(self.base)).collect(),
            summary,
        }
    }
}

pub(crate) fn empty_flow() -> FlowSummary {
    let end = crate::explain::EndpointSummary { namespace: None, pod: None, ip: None };
    FlowSummary { src: end.clone(), dst: end, port: 0, protocol: Protocol::Tcp }
}

/// Whether a podSelector names pods by a label they have (In or Exists), rather than selecting
/// the whole namespace or everything but some pods.
fn is_workload_scoped(selector: &Selector) -> bool {
    selector.requirements().iter().any(|r| matches!(r.operator, Operator::In(_) | Operator::Exists))
}

/// `TCP 3306` or `TCP mysql`, from a port entry.
fn describe_port(port: &Value) -> String {
    let protocol = port.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
    match port.get("port") {
        Some(Value::String(name)) => format!("{protocol} {name}"),
        Some(number) => format!("{protocol} {number}"),
        None => protocol.to_owned(),
    }
}

/// A new NetworkPolicy selecting `workload` with one rule for `direction`.
fn new_policy(
    namespace: &str,
    name: &str,
    workload: &Workload,
    direction: Direction,
    rule: Value,
    flow: &str,
) -> Value {
    let policy_type = match direction {
        Direction::Ingress => "Ingress",
        Direction::Egress => "Egress",
    };
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {MANAGED_BY_LABEL.0: MANAGED_BY_LABEL.1},
            "annotations": {FLOW_ANNOTATION: flow},
        },
        "spec": {
            "podSelector": {"matchLabels": workload.selector},
            "policyTypes": [policy_type],
            direction.spec_field(): [rule],
        },
    })
}

/// Lowercase letters, digits and single dashes, at most [`MAX_NAME`] characters.
fn dns_label(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.truncate(MAX_NAME);
    out.trim_matches('-').to_owned()
}

#[cfg(test)]
mod tests;

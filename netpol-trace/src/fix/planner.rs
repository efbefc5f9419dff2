//! The planner: per denied direction of each flow, one of three strategies (add a port to an
//! exact rule, add a rule, create a policy), each its own function; then the proof
//! ([`super::proof`]) and the plan ([`super::plan`]).

use std::cmp::Reverse;
use std::path::PathBuf;

use json_patch::Patch;
use serde_json::Value;

use super::blast::{PairEnd, Probe};
use super::draft::DraftObject;
use super::hints::{self, Hint, peer_end, subject_end};
use super::plan::{FixOptions, FixPlan, PatchAction, PolicyPatch};
use super::rule::{self, PortForm, RulePeer, dns_label, new_policy};
use super::workload::Workload;
use super::{FixError, kubectl, tiered};
use crate::explain::{FlowSummary, Verdict, explain, is_allowed};
use crate::flow::{Flow, FlowEndpoint};
use crate::inventory::{Inventory, PodId, PolicyId, PolicySource, TieredObjects};
use crate::policy::{CompiledPolicy, Direction, Operator, Protocol, Selector};

/// One change recorded while planning.
#[derive(Debug, Clone)]
pub(super) struct DraftEntry {
    pub(super) object: usize,
    pub(super) direction: Direction,
    pub(super) action: PatchAction,
    pub(super) ops: Option<Patch>,
    pub(super) change: String,
    pub(super) hints: Vec<Hint>,
    pub(super) result: Value,
    pub(super) companion_file: Option<PathBuf>,
}

pub(super) struct Planner<'a> {
    pub(super) base: &'a Inventory,
    pub(super) options: &'a FixOptions,
    form: PortForm,
    pub(super) current: Inventory,
    pub(super) objects: Vec<DraftObject>,
    pub(super) entries: Vec<DraftEntry>,
    /// Whether the direction being fixed is denied by a baseline-tier policy, which a new
    /// NetworkPolicy overrides (isolating the workload loses nothing the proof does not see).
    baseline_deny: bool,
}

impl<'a> Planner<'a> {
    pub(super) fn run(
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
            baseline_deny: false,
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
            let by = explanation.direction(direction).decided_by.as_ref();
            match by.filter(|by| tiered::needs_tiered_fix(by)) {
                Some(by) => self.fix_tiered(flow, direction, &workload, peer, by, hints)?,
                None => {
                    self.baseline_deny = tiered::is_baseline_deny(by);
                    self.fix_direction(flow, direction, subject, &workload, peer, hints)?;
                }
            }
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

    /// The three strategies, in order: add the port to a rule whose peers are exactly the
    /// other end, else add a rule to the best workload-scoped policy, else create a policy.
    fn fix_direction(
        &mut self,
        flow: &Flow,
        direction: Direction,
        subject: PodId,
        workload: &Workload,
        peer: RulePeer<'_>,
        hints: Vec<Hint>,
    ) -> Result<(), FixError> {
        let candidates = self.candidates(subject, direction, workload);
        if let Some((id, index)) = self.exact_rule(&candidates, direction, peer) {
            return self.add_port(flow, id, direction, index, peer, hints);
        }
        if let Some(&id) = candidates.first() {
            return self.add_rule(flow, id, direction, peer, hints);
        }
        self.create_policy(flow, direction, subject, workload, peer, hints)
    }

    /// The port entry for `flow` in `policy`: by name when the policy already names ports
    /// (and this attempt allows names), else by number.
    fn port_for(&self, flow: &Flow, policy: &CompiledPolicy) -> Value {
        let destination = flow.dst.pod().map(|id| self.current.pod(id).clone());
        let form = if rule::uses_named_ports(policy) { self.form } else { PortForm::Number };
        rule::port_value(flow, destination.as_ref(), form).0
    }

    /// The first candidate rule (with ports) whose peers are exactly `peer`.
    fn exact_rule(
        &self,
        candidates: &[PolicyId],
        direction: Direction,
        peer: RulePeer<'_>,
    ) -> Option<(PolicyId, usize)> {
        candidates.iter().find_map(|&id| {
            let policy = &self.current.policy(id).compiled;
            let rules = policy.rules(direction).unwrap_or_default();
            let index = rules.iter().position(|rule| {
                !rule.ports.is_empty() && rule::peers_are_exactly(&self.current, policy, rule, peer)
            })?;
            Some((id, index))
        })
    }

    /// Strategy 1: the port added to rule `index` of policy `id`.
    fn add_port(
        &mut self,
        flow: &Flow,
        id: PolicyId,
        direction: Direction,
        index: usize,
        peer: RulePeer<'_>,
        hints: Vec<Hint>,
    ) -> Result<(), FixError> {
        let port = self.port_for(flow, &self.current.policy(id).compiled);
        let change = format!(
            "add {} to {direction} rule {index}, whose peers are exactly {}",
            describe_port(&port),
            peer.describe()
        );
        self.record_on(id, direction, change, hints, |object| {
            object.add_port(direction, index, port)
        })
    }

    /// Strategy 2: a new rule (one peer, one port) in policy `id`.
    fn add_rule(
        &mut self,
        flow: &Flow,
        id: PolicyId,
        direction: Direction,
        peer: RulePeer<'_>,
        hints: Vec<Hint>,
    ) -> Result<(), FixError> {
        let policy = &self.current.policy(id).compiled;
        let port = self.port_for(flow, policy);
        let change = format!(
            "add a {direction} rule {} {} on {}",
            if direction == Direction::Ingress { "from" } else { "to" },
            peer.describe(),
            describe_port(&port)
        );
        let rule = rule::rule_value(direction, rule::peer_value(peer, &policy.namespace), port);
        self.record_on(id, direction, change, hints, |object| object.append_rule(direction, rule))
    }

    /// [`Planner::record`] on policy `id` of the current inventory.
    fn record_on(
        &mut self,
        id: PolicyId,
        direction: Direction,
        change: String,
        hints: Vec<Hint>,
        edit: impl FnOnce(&mut DraftObject) -> Result<Option<Patch>, FixError>,
    ) -> Result<(), FixError> {
        let policy = &self.current.policy(id).compiled;
        let (namespace, name) = (policy.namespace.clone(), policy.name.clone());
        self.record(&namespace, &name, direction, change, hints, edit)
    }

    /// Strategy 3: a new policy for the workload, that direction only, because every
    /// isolating policy also selects other pods (the hints say which and why).
    fn create_policy(
        &mut self,
        flow: &Flow,
        direction: Direction,
        subject: PodId,
        workload: &Workload,
        peer: RulePeer<'_>,
        mut hints: Vec<Hint>,
    ) -> Result<(), FixError> {
        let destination = flow.dst.pod().map(|id| self.current.pod(id).clone());
        let unisolated: Vec<String> = workload
            .pods
            .iter()
            .filter(|&&p| self.current.isolating_policies(p, direction).is_empty())
            .map(|&p| self.current.pod(p).pod.to_string())
            .collect();
        if !unisolated.is_empty() && !self.baseline_deny {
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
                        sourced.raw_json().into_owned(),
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
        let (kubernetes, others): (Vec<&DraftObject>, Vec<&DraftObject>) =
            self.objects.iter().partition(|o| o.is_kubernetes());
        let policies = kubernetes.into_iter().map(DraftObject::typed).collect::<Result<_, _>>()?;
        let invalid = |e: crate::inventory::InvalidPolicy| FixError::InvalidResult {
            policy: format!("{}/{}", e.error.namespace, e.error.name),
            message: e.to_string(),
        };
        self.current = self.base.with_policies_replaced(policies).map_err(invalid)?;
        if !others.is_empty() {
            let mut objects = TieredObjects::default();
            for object in others {
                tiered::add_object(&mut objects, object.kind, &object.current, &object.key())?;
            }
            self.current = self.current.with_tiered_replaced(objects).map_err(invalid)?;
        }
        Ok(())
    }

    pub(super) fn describe_flow(&self, flow: &Flow) -> String {
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
                let selected = self.subjects(object, entry.direction);
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
                        let resource = kubectl::resource(object.kind, object.tier.is_some());
                        (
                            kubectl::patch_resource_command(
                                resource,
                                &object.namespace,
                                &object.name,
                                &ops,
                            ),
                            None,
                            object.source.to_string(),
                        )
                    }
                };
                PolicyPatch {
                    kind: object.kind,
                    namespace: object.namespace.clone(),
                    name: object.name.clone(),
                    tier: object.tier.clone(),
                    requires_cluster_admin: tiered::is_admin_kind(object.kind),
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
            let admin = patches.iter().any(|p| p.requires_cluster_admin);
            format!(
                "{} change{} the flow; {pairs} connection{} newly allowed{}",
                patches.len(),
                if patches.len() == 1 { " allows" } else { "s allow" },
                if pairs == 1 { "" } else { "s" },
                if admin {
                    "; only a cluster admin can make it (an admin-tier policy)"
                } else {
                    ""
                }
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

/// A flow summary with nothing known (a plan without flows).
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

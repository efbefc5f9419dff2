//! Fixes in the tiered kinds, for a direction decided by one of them
//! ([`crate::explain::DecidedBy`]):
//! - an **admin-tier** Deny (ClusterNetworkPolicy `tier: Admin`, AdminNetworkPolicy) sits above
//!   every NetworkPolicy, so no NetworkPolicy can help: the change is a new policy of the same
//!   kind one priority higher (lower number), whose subject is the endpoint's workload and whose
//!   one Accept/Allow rule names the other end and the port; at priority 0 there is nothing
//!   higher, so the rule goes into the denying policy just before the Deny rule. Either way the
//!   entry says that only a cluster admin can make it (`requires_cluster_admin`), and `--apply`
//!   leaves it to them;
//! - a **Calico** Deny (a rule, or the end of a tier charged to a policy): in a Calico
//!   NetworkPolicy, an Allow rule scoped to the flow (source and destination selectors, port)
//!   just before the Deny rule, or at the end for an end-of-tier deny; for a GlobalNetworkPolicy
//!   (cluster-wide, e.g. the usual default deny), a new Calico NetworkPolicy in the endpoint's
//!   namespace and the same tier, ordered just before it, selecting the workload.
//!
//! A baseline-tier Deny is fixed in the NetworkPolicy (which takes precedence over it) by the
//! planner's usual strategies.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::FixError;
use super::draft::DraftObject;
use super::hints::Hint;
use super::plan::PatchAction;
use super::planner::{DraftEntry, Planner};
use super::rule::RulePeer;
use super::rule::dns_label;
use super::workload::Workload;
use crate::explain::DecidedBy;
use crate::flow::Flow;
use crate::inventory::{NAMESPACE_NAME_LABEL, PodId, Sourced, TieredObjects};
use crate::policy::calico::{DEFAULT_TIER, EndpointView, entity::NAME_LABEL};
use crate::policy::{Direction, Labels, PolicyKind, Protocol};

/// Whether `kind` is one of the cluster-scoped admin kinds.
pub(super) fn is_admin_kind(kind: PolicyKind) -> bool {
    matches!(
        kind,
        PolicyKind::ClusterNetworkPolicy
            | PolicyKind::AdminNetworkPolicy
            | PolicyKind::BaselineAdminNetworkPolicy
    )
}

/// Whether the deny of `by` needs a change in a tiered kind (an admin-tier or a Calico policy)
/// rather than in a Kubernetes NetworkPolicy.
pub(super) fn needs_tiered_fix(by: &DecidedBy) -> bool {
    match by.tier.as_deref() {
        None => false,
        Some(tier) if is_admin_kind(by.kind) => tier != "Baseline",
        Some(_) => true,
    }
}

/// Whether `by` is a baseline-tier Deny (a NetworkPolicy overrides it).
pub(super) fn is_baseline_deny(by: Option<&DecidedBy>) -> bool {
    by.is_some_and(|by| is_admin_kind(by.kind) && by.tier.as_deref() == Some("Baseline"))
}

/// Adds `value`, an object of `kind` as a plan leaves it, to `objects`.
pub(super) fn add_object(
    objects: &mut TieredObjects,
    kind: PolicyKind,
    value: &Value,
    key: &str,
) -> Result<(), FixError> {
    let invalid = |e: serde_json::Error| FixError::InvalidResult {
        policy: key.to_owned(),
        message: e.to_string(),
    };
    let source = crate::inventory::PolicySource::InMemory;
    if is_admin_kind(kind) {
        let object = serde_json::from_value(value.clone()).map_err(invalid)?;
        objects.admin.push(Sourced { object, raw: value.clone(), source });
    } else {
        let object = serde_json::from_value(value.clone()).map_err(invalid)?;
        objects.calico.push(Sourced { object, raw: value.clone(), source });
    }
    Ok(())
}

/// `kubernetes.io/metadata.name: NS` as a LabelSelector.
fn namespace_selector(namespace: &str) -> Value {
    json!({"matchLabels": {NAMESPACE_NAME_LABEL: namespace}})
}

/// `k == 'v' && ...` in Calico's selector language.
fn calico_selector(labels: &Labels) -> String {
    let terms: Vec<String> = labels.iter().map(|(k, v)| format!("{k} == '{v}'")).collect();
    terms.join(" && ")
}

impl Planner<'_> {
    /// Fixes `direction` of `flow`, denied by the tiered policy `by`.
    pub(super) fn fix_tiered(
        &mut self,
        flow: &Flow,
        direction: Direction,
        workload: &Workload,
        peer: RulePeer<'_>,
        by: &DecidedBy,
        hints: Vec<Hint>,
    ) -> Result<(), FixError> {
        if is_admin_kind(by.kind) {
            self.fix_admin(flow, direction, workload, peer, by, hints)
        } else {
            self.fix_calico(flow, direction, workload, peer, by, hints)
        }
    }

    fn fix_admin(
        &mut self,
        flow: &Flow,
        direction: Direction,
        workload: &Workload,
        peer: RulePeer<'_>,
        by: &DecidedBy,
        mut hints: Vec<Hint>,
    ) -> Result<(), FixError> {
        let tiered = self.current.tiered();
        let entry = tiered
            .admin
            .iter()
            .find(|e| e.policy.kind == by.kind && e.policy.name == by.name)
            .ok_or_else(|| unknown(by))?;
        let (priority, raw) = (entry.policy.priority, entry.raw.clone());
        let cnp = by.kind == PolicyKind::ClusterNetworkPolicy;
        let action = if cnp { "Accept" } else { "Allow" };
        let peer_value = match peer {
            RulePeer::Workload(other, _) => json!({"pods": {
                "namespaceSelector": namespace_selector(&other.namespace),
                "podSelector": {"matchLabels": other.selector},
            }}),
            RulePeer::Address(ip) if direction == Direction::Egress => {
                json!({"networks": [ipnet::IpNet::from(ip).to_string()]})
            }
            RulePeer::Address(ip) => {
                return Err(FixError::Unpatchable {
                    policy: format!("{} {}", by.kind, by.name),
                    message: format!(
                        "an {} ingress rule cannot name {ip}, an address outside the known pods",
                        by.kind
                    ),
                });
            }
        };
        let mut rule = Map::new();
        let rule_name = dns_label(&format!("allow-{}", self.flow_words(flow)));
        rule.insert("name".to_owned(), json!(rule_name));
        rule.insert("action".to_owned(), json!(action));
        rule.insert(direction.peers_field().to_owned(), json!([peer_value]));
        let protocol = flow.protocol.as_str();
        if cnp {
            let key = protocol.to_ascii_lowercase();
            rule.insert(
                "protocols".to_owned(),
                json!([{key: {"destinationPort": {"number": flow.port}}}]),
            );
        } else {
            rule.insert(
                "ports".to_owned(),
                json!([{"portNumber": {"protocol": protocol, "port": flow.port}}]),
            );
        }
        let rule = Value::Object(rule);
        let denier = format!("{} {} (tier Admin, priority {priority})", by.kind, by.name);
        hints.push(Hint {
            policy: format!("{} {}", by.kind, by.name),
            message: format!(
                "tier Admin, priority {priority}: denies this flow above every NetworkPolicy; \
                 only a cluster admin can change it, the change below is for them to review and apply"
            ),
        });
        if priority == 0 {
            let index = by.rule.unwrap_or(0);
            let change = format!(
                "for a cluster admin: in {denier}, an {action} rule for {} before {direction} \
                 rule {index} (nothing can be ordered before priority 0)",
                self.describe_flow(flow)
            );
            let draft = DraftObject::existing("", &by.name, raw, entry.source.clone())
                .of_kind(by.kind, "Admin");
            return self.record_tiered(draft, direction, change, hints, |object| {
                object.insert_rule(direction, index, rule)
            });
        }
        let name = self.new_tiered_name(flow, "", by.kind);
        let api_version = raw.get("apiVersion").cloned().unwrap_or(Value::Null);
        let mut spec = Map::new();
        if cnp {
            spec.insert("tier".to_owned(), json!("Admin"));
        }
        spec.insert("priority".to_owned(), json!(priority - 1));
        spec.insert(
            "subject".to_owned(),
            json!({"pods": {
                "namespaceSelector": namespace_selector(&workload.namespace),
                "podSelector": {"matchLabels": workload.selector},
            }}),
        );
        spec.insert(direction.spec_field().to_owned(), json!([rule]));
        let object = json!({
            "apiVersion": api_version,
            "kind": by.kind.as_str(),
            "metadata": {
                "name": name,
                "labels": {super::MANAGED_BY_LABEL.0: super::MANAGED_BY_LABEL.1},
                "annotations": {super::FLOW_ANNOTATION: self.describe_flow(flow)},
            },
            "spec": spec,
        });
        let change = format!(
            "for a cluster admin: a {} at priority {} (just above {denier}) whose subject is \
             pods {} in {}, with one {action} {direction} rule for {}",
            by.kind,
            priority - 1,
            workload.describe_selector(),
            workload.namespace,
            self.describe_flow(flow)
        );
        let draft = DraftObject::created("", &name, object).of_kind(by.kind, "Admin");
        self.create_tiered(draft, direction, change, hints);
        Ok(())
    }

    fn fix_calico(
        &mut self,
        flow: &Flow,
        direction: Direction,
        workload: &Workload,
        peer: RulePeer<'_>,
        by: &DecidedBy,
        hints: Vec<Hint>,
    ) -> Result<(), FixError> {
        let tiered = self.current.tiered();
        let entry = tiered
            .calico
            .iter()
            .find(|e| {
                e.policy.kind == by.kind
                    && e.policy.name == by.name
                    && e.policy.namespace == by.namespace
            })
            .ok_or_else(|| unknown(by))?;
        let tier = entry.policy.tier.clone();
        let local = json!({
            "selector": calico_selector(&workload.selector),
            "namespaceSelector": format!("{NAME_LABEL} == '{}'", workload.namespace),
        });
        let remote = match peer {
            RulePeer::Workload(other, _) => json!({
                "selector": calico_selector(&other.selector),
                "namespaceSelector": format!("{NAME_LABEL} == '{}'", other.namespace),
            }),
            RulePeer::Address(ip) => json!({"nets": [ipnet::IpNet::from(ip).to_string()]}),
        };
        let (source, mut destination) = match direction {
            Direction::Ingress => (remote, local),
            Direction::Egress => (local, remote),
        };
        destination["ports"] = json!([flow.port]);
        let protocol = match flow.protocol {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        };
        let rule = json!({
            "action": "Allow",
            "protocol": protocol,
            "source": source,
            "destination": destination,
        });
        let what = self.describe_flow(flow);
        if let Some(namespace) = entry.policy.namespace.clone() {
            let draft = DraftObject::existing(
                &namespace,
                &by.name,
                entry.raw.clone(),
                entry.source.clone(),
            )
            .of_kind(by.kind, &tier);
            let (change, index) = match by.rule {
                Some(index) => (
                    format!(
                        "an Allow {direction} rule for {what} before {direction} rule {index} (its Deny)"
                    ),
                    Some(index),
                ),
                None => (
                    format!(
                        "an Allow {direction} rule for {what} (the flow reaches the end of tier {tier} and is denied there)"
                    ),
                    None,
                ),
            };
            return self.record_tiered(draft, direction, change, hints, |object| match index {
                Some(index) => object.insert_rule(direction, index, rule),
                None => object.append_rule(direction, rule),
            });
        }
        let order = self.order_before(&tier, entry.policy.order);
        let base = self.new_tiered_name(flow, &workload.namespace, PolicyKind::NetworkPolicy);
        let name = if tier == DEFAULT_TIER { base } else { format!("{tier}.{base}") };
        let api_version =
            entry.raw.get("apiVersion").cloned().unwrap_or(json!("projectcalico.org/v3"));
        let types = match direction {
            Direction::Ingress => "Ingress",
            Direction::Egress => "Egress",
        };
        let object = json!({
            "apiVersion": api_version,
            "kind": "NetworkPolicy",
            "metadata": {
                "name": name,
                "namespace": workload.namespace,
                "labels": {super::MANAGED_BY_LABEL.0: super::MANAGED_BY_LABEL.1},
                "annotations": {super::FLOW_ANNOTATION: what},
            },
            "spec": {
                "tier": tier,
                "order": order,
                "selector": calico_selector(&workload.selector),
                "types": [types],
                direction.spec_field(): [rule],
            },
        });
        let change = format!(
            "a Calico NetworkPolicy in {} (tier {tier}, order {order}, just before GlobalNetworkPolicy {}) \
             selecting {} with an Allow {direction} rule for {what}",
            workload.namespace,
            by.name,
            workload.describe_selector()
        );
        let draft = DraftObject::created(&workload.namespace, &name, object)
            .of_kind(PolicyKind::NetworkPolicy, &tier);
        self.create_tiered(draft, direction, change, hints);
        Ok(())
    }

    /// An order just before `order` in `tier`: halfway to the closest lower order there, or one
    /// less when there is none (after every numbered policy when `order` is absent).
    fn order_before(&self, tier: &str, order: Option<f64>) -> f64 {
        let orders = self
            .base
            .tiered()
            .calico
            .iter()
            .filter(|e| e.policy.tier == tier)
            .filter_map(|e| e.policy.order)
            .chain(
                (tier == DEFAULT_TIER).then_some(crate::policy::calico::KUBERNETES_POLICY_ORDER),
            );
        match order {
            Some(order) => orders
                .filter(|&o| o < order)
                .max_by(f64::total_cmp)
                .map_or(order - 1.0, |below| (below + order) / 2.0),
            None => orders.max_by(f64::total_cmp).map_or(1000.0, |max| max + 1.0),
        }
    }

    /// `allow-<src>-to-<dst>-<port>`, unique among the objects of `kind` in `namespace`.
    fn new_tiered_name(&self, flow: &Flow, namespace: &str, kind: PolicyKind) -> String {
        let base = dns_label(&format!("allow-{}", self.flow_words(flow)));
        let tiered = self.current.tiered();
        let taken = |name: &str| {
            tiered
                .admin
                .iter()
                .chain(&tiered.baseline)
                .any(|e| e.policy.kind == kind && e.policy.name == name)
                || tiered.calico.iter().any(|e| {
                    e.policy.name == name
                        && e.policy.namespace.as_deref().unwrap_or("") == namespace
                })
                || self.objects.iter().any(|o| o.namespace == namespace && o.name == name)
        };
        std::iter::once(base.clone())
            .chain((2..).map(|n| format!("{base}-{n}")))
            .find(|name| !taken(name))
            .unwrap_or(base)
    }

    /// `web-to-mysql-3306`: the flow's workloads (or addresses) and port.
    fn flow_words(&self, flow: &Flow) -> String {
        let end = |end: crate::flow::FlowEndpoint| match end {
            crate::flow::FlowEndpoint::Pod { id, .. } => Workload::of_pod(self.base, id)
                .map_or_else(|_| self.base.pod(id).pod.name.clone(), |w| w.name),
            crate::flow::FlowEndpoint::External { ip } => ip.to_string(),
        };
        format!("{}-to-{}-{}", end(flow.src), end(flow.dst), flow.port)
    }

    fn create_tiered(
        &mut self,
        draft: DraftObject,
        direction: Direction,
        change: String,
        hints: Vec<Hint>,
    ) {
        let result = draft.current.clone();
        self.objects.push(draft);
        self.entries.push(DraftEntry {
            object: self.objects.len() - 1,
            direction,
            action: PatchAction::Create,
            ops: None,
            change,
            hints,
            result,
            companion_file: None,
        });
    }

    /// Applies `edit` to the working copy of the tiered policy `draft` stands for (reusing the
    /// copy when the plan already changes it) and records the entry.
    fn record_tiered(
        &mut self,
        draft: DraftObject,
        direction: Direction,
        change: String,
        hints: Vec<Hint>,
        edit: impl FnOnce(&mut DraftObject) -> Result<Option<json_patch::Patch>, FixError>,
    ) -> Result<(), FixError> {
        let index = match self.objects.iter().position(|o| {
            o.kind == draft.kind
                && o.tier.is_some()
                && o.namespace == draft.namespace
                && o.name == draft.name
        }) {
            Some(index) => index,
            None => {
                self.objects.push(draft);
                self.objects.len() - 1
            }
        };
        let ops = edit(&mut self.objects[index])?;
        let result = self.objects[index].current.clone();
        self.entries.push(DraftEntry {
            object: index,
            direction,
            action: if self.objects[index].is_created() {
                PatchAction::Create
            } else {
                PatchAction::Patch
            },
            ops,
            change,
            hints,
            result,
            companion_file: None,
        });
        Ok(())
    }

    /// The pods whose `direction` a working copy can change: the ones its policy applies to in
    /// the current inventory.
    pub(super) fn subjects(&self, object: &DraftObject, direction: Direction) -> BTreeSet<PodId> {
        let current = &self.current;
        if object.is_kubernetes() {
            return current
                .policy_id(&object.namespace, &object.name)
                .map(|id| current.policy(id).selected.iter().copied().collect())
                .unwrap_or_default();
        }
        let tiered = current.tiered();
        let view = |id: PodId| {
            let pod = current.pod(id);
            EndpointView {
                namespace: &pod.pod.namespace,
                labels: &pod.labels,
                namespace_labels: current.namespace_labels_of(id),
                service_account: &pod.service_account,
            }
        };
        if is_admin_kind(object.kind) {
            let Some(entry) = tiered
                .admin
                .iter()
                .chain(&tiered.baseline)
                .find(|e| e.policy.kind == object.kind && e.policy.name == object.name)
            else {
                return BTreeSet::new();
            };
            return current
                .pod_ids()
                .filter(|&id| {
                    entry.policy.selects(
                        direction,
                        current.namespace_labels_of(id),
                        &current.pod(id).labels,
                    )
                })
                .collect();
        }
        let namespace = (!object.namespace.is_empty()).then_some(object.namespace.as_str());
        let Some(entry) = tiered
            .calico
            .iter()
            .find(|e| e.policy.name == object.name && e.policy.namespace.as_deref() == namespace)
        else {
            return BTreeSet::new();
        };
        current.pod_ids().filter(|&id| entry.policy.selects(&view(id))).collect()
    }
}

fn unknown(by: &DecidedBy) -> FixError {
    FixError::Unpatchable {
        policy: format!("{} {}", by.kind, by.name),
        message: "not among the policies read".to_owned(),
    }
}

#[cfg(test)]
mod tests;

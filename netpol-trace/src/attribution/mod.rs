//! Attribution, written once for `trace`, the agent and `lab demo`: the pods at both ends of a
//! traced flow, the Service when the client addressed a ClusterIP (evaluated on the Service's
//! backends and target port, as kube-proxy would forward it), the denying NetworkPolicies, the
//! closest rule's near-miss, and optionally the minimal fix. The real policy semantics on an
//! inventory (manifests or the live cluster): CNI-agnostic, no log grepping.
//!
//! [`wording`] holds every sentence an attribution is told in.

pub mod wording;

use std::time::{Duration, Instant};

use crate::{
    explain::{ExplainOptions, Explanation, explain},
    fix::{FixOptions, FixPlan, plan_fix_flows},
    flow::{EndpointSpec, Flow},
    inventory::{Inventory, PodId, PortRef},
    policy::{Direction, Protocol},
    trace::{DropRecord, Endpoint, PolicyRef, RestoredRecord, TraceEvent},
};

/// What the policies say about one traced flow.
#[derive(Debug, Clone)]
pub struct Attribution {
    /// The policies that isolate an end of the flow and do not allow it (each once, egress of
    /// the source first).
    pub policies: Vec<PolicyRef>,
    /// The closest rule and what it lacks ([`wording::hint`]).
    pub hint: Option<String>,
    /// One phrase for Events ([`wording::denial`]); `None` when the policies allow the flow.
    pub denial: Option<String>,
    /// The explanation told: the first denied destination (Service backend), else the first.
    pub explanation: Option<Explanation>,
    /// The destination pod and port the attribution is about, when it is a known pod.
    pub destination: Option<(PodId, u16)>,
    /// The denied flows (one per Service backend, or the flow itself).
    pub denied: Vec<Flow>,
    /// How long the evaluation took.
    pub took: Duration,
}

impl Attribution {
    /// The minimal change that allows every denied flow, when there is a safe one.
    pub fn suggest_fix(&self, inventory: &Inventory) -> Option<FixPlan> {
        if self.denied.is_empty() {
            return None;
        }
        match plan_fix_flows(inventory, &self.denied, &FixOptions::default()) {
            Ok(plan) if !plan.is_noop() => Some(plan),
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(error = %e, "no safe fix");
                None
            }
        }
    }
}

/// Names both ends of a flow (forgetting earlier names, so that a re-attribution follows the
/// cluster) and evaluates it; with a single Service backend the destination pod is named too.
pub fn attribute(
    inventory: &Inventory,
    src: &mut Endpoint,
    dst: &mut Endpoint,
    protocol: Protocol,
) -> Attribution {
    let started = Instant::now();
    name_endpoint(inventory, src);
    name_endpoint(inventory, dst);
    let mut explained = explain_flow(inventory, src, dst, protocol);
    let denied: Vec<Flow> =
        explained.iter().filter(|(_, _, e)| !e.allowed()).map(|(_, f, _)| *f).collect();
    let mut policies: Vec<PolicyRef> = vec![];
    for (_, _, e) in &explained {
        for p in denying_policies(e) {
            if !policies.contains(&p) {
                policies.push(p);
            }
        }
    }
    let first = explained.iter().position(|(_, _, e)| !e.allowed()).unwrap_or(0);
    let (destination, explanation) = if explained.is_empty() {
        (None, None)
    } else {
        let (dest, _, e) = explained.swap_remove(first);
        (dest, Some(e))
    };
    Attribution {
        policies,
        hint: explanation.as_ref().and_then(wording::hint),
        denial: explanation.as_ref().and_then(wording::denial),
        explanation,
        destination,
        denied,
        took: started.elapsed(),
    }
}

/// Attributes a drop in place (names, `policies`, `hint`).
pub fn attribute_drop(inventory: &Inventory, drop: &mut DropRecord) -> Attribution {
    let a = attribute(inventory, &mut drop.src, &mut drop.dst, drop.protocol);
    drop.policies = a.policies.clone();
    drop.hint = a.hint.clone();
    a
}

/// Names the pods (and Service) of a restored handshake.
pub fn attribute_restored(inventory: &Inventory, restored: &mut RestoredRecord) {
    name_endpoint(inventory, &mut restored.src);
    name_endpoint(inventory, &mut restored.dst);
}

/// Attributes whatever a tracer event is about; summaries are left as they are.
pub fn attribute_event(inventory: &Inventory, event: &mut TraceEvent) {
    match event {
        TraceEvent::Drop(d) => {
            attribute_drop(inventory, d);
        }
        TraceEvent::Restored(r) => attribute_restored(inventory, r),
        TraceEvent::Summary(_) => {}
    }
}

/// Fills in the pod (or Service) owning an endpoint's address, forgetting earlier names.
fn name_endpoint(inventory: &Inventory, endpoint: &mut Endpoint) {
    endpoint.namespace = None;
    endpoint.pod = None;
    endpoint.service = None;
    if let Some(id) = inventory.pod_by_ip(endpoint.ip) {
        let pod = &inventory.pod(id).pod;
        endpoint.namespace = Some(pod.namespace.clone());
        endpoint.pod = Some(pod.name.clone());
    } else if let Some((ns, name)) = inventory.service_by_cluster_ip(endpoint.ip) {
        endpoint.namespace = Some(ns.to_string());
        endpoint.service = Some(name.to_string());
    }
}

/// The isolating policies of each denying direction, egress of the source first.
fn denying_policies(explanation: &Explanation) -> Vec<PolicyRef> {
    let mut out = Vec::new();
    for (direction, dir) in
        [(Direction::Egress, &explanation.egress), (Direction::Ingress, &explanation.ingress)]
    {
        if dir.allowed {
            continue;
        }
        out.extend(dir.policies.iter().map(|p| PolicyRef {
            kind: p.kind,
            tier: p.tier.clone(),
            namespace: p.namespace.clone(),
            name: p.name.clone(),
            direction,
        }));
    }
    out
}

type Explained = (Option<(PodId, u16)>, Flow, Explanation);

/// One explanation per destination: each backend of a ClusterIP (on its target port), else
/// the addressed pod or address.
fn explain_flow(
    inventory: &Inventory,
    src: &Endpoint,
    dst: &mut Endpoint,
    protocol: Protocol,
) -> Vec<Explained> {
    let options = ExplainOptions::default();
    if dst.service.is_some()
        && let Some((ns, name)) = inventory.service_by_cluster_ip(dst.ip)
    {
        let port = PortRef::Number(dst.port);
        if let Ok(backends) = inventory.service_backends(ns, name, Some(&port), protocol) {
            if let [only] = backends.as_slice() {
                dst.pod = Some(inventory.pod(only.pod).pod.name.clone());
            }
            let from = EndpointSpec::Ip(src.ip);
            return backends
                .iter()
                .map(|b| {
                    let flow =
                        Flow::new(inventory, from, EndpointSpec::Pod(b.pod), b.port, protocol);
                    (Some((b.pod, b.port)), flow, explain(inventory, &flow, &options))
                })
                .collect();
        }
    }
    let flow = Flow::from_packet(inventory, src.ip, dst.ip, dst.port, protocol);
    let dest = inventory.pod_by_ip(dst.ip).map(|id| (id, dst.port));
    vec![(dest, flow, explain(inventory, &flow, &options))]
}

#[cfg(test)]
mod tests;

//! The proof before output: the flows must be allowed by the changed policies, nothing may
//! lose access, and every newly allowed (source, destination, port, protocol) over all known
//! pods must lie within the flows' workloads, port and protocol.

use super::FixError;
use super::blast::{AllowedPair, ChangeScope, PairEnd, Probe, verdict_changes};
use super::planner::Planner;
use super::workload::Workload;
use crate::explain::is_allowed;
use crate::flow::{Flow, FlowEndpoint};
use crate::inventory::{Inventory, PodId};
use crate::policy::{Direction, Protocol};

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

impl Planner<'_> {
    /// Checks the plan with the engine; returns what it newly allows.
    pub(super) fn prove(&self, flows: &[Flow]) -> Result<Vec<Probe>, FixError> {
        let options = &self.options.explain;
        if let Some(flow) = flows.iter().find(|f| !is_allowed(&self.current, f, options)) {
            return Err(FixError::StillDenied { flow: self.describe_flow(flow) });
        }
        let mut scope = ChangeScope::default();
        for entry in &self.entries {
            let selected = self.subjects(&self.objects[entry.object], entry.direction);
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
}

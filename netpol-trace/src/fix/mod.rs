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
//! Modules: [`plan`] (the contract types), `planner` (one function per strategy), `proof`
//! (the engine's check), [`workload`] (stable labels), [`rule`] (peers, ports, rules), [`hints`] (except
//! and likely typos), [`blast`] (verdict changes), `relevance` (which pairs a change can flip), `draft` (working copies and operations),
//! [`fallback`] (the delete-policy last resort), [`yaml`], [`kubectl`], [`table`] (output).
//! Everything here is pure; `apply` writes a plan to manifest files or the cluster.

pub mod blast;
mod draft;
pub mod error;
pub mod fallback;
pub mod hints;
pub mod kubectl;
pub mod plan;
mod planner;
mod proof;
mod relevance;
pub mod rule;
pub mod table;
mod tiered;
pub mod workload;
pub mod yaml;

pub use blast::{
    AllowedPair, ChangeScope, PairEnd, Probe, VerdictChanges, verdict_changes,
    verdict_changes_exhaustive,
};
pub use error::FixError;
pub use fallback::plan_delete_fallback;
pub use hints::Hint;
pub use plan::{FLOW_ANNOTATION, FixOptions, FixPlan, MANAGED_BY_LABEL, PatchAction, PolicyPatch};
pub(crate) use planner::empty_flow;
pub use workload::Workload;

use crate::flow::Flow;
use crate::inventory::Inventory;
use planner::Planner;
use rule::PortForm;

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

#[cfg(test)]
mod tests;

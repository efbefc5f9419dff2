//! The operator feed: agents publish what they see as DropReports, people (or a narrow
//! auto-approval) decide, and one leader-elected controller applies approved fixes with the
//! backup kept in the report itself. Kubernetes is the engine: reports, decisions and backups
//! live in the API server.
//!
//! * [`report`]: the `DropReport` custom resource (`dropreports.netpol-trace.io/v1alpha1`).
//! * [`identity`]: a pod's workload, and the one report name every node derives for a flow.
//! * [`plan`]: a report's fix planned from the live cluster with the existing planner.
//! * [`fixer`]: applying an approved report: backup in status first, dry run, guarded writes.
//! * [`decide`]: `approve` / `reject` (a merge patch of `spec.decision`).
//! * [`restore`]: undoing an applied fix from the backup in the report.
//! * [`lease`]: leader election on a `coordination.k8s.io/v1` Lease.
//! * [`controller`]: the controller loop (watch, reconcile, auto-approval while leading).
//! * [`auto_approve`]: the narrow `--auto-approve regressions` rules.
//! * [`publish`]: the agents' side: create-or-update a report without losing another node's
//!   entry, rate-limited.
//! * [`garbage`]: deleting reports restored long ago (the controller's leader only).

pub mod auto_approve;
pub mod controller;
pub mod decide;
pub mod error;
pub mod fixer;
pub mod garbage;
pub mod identity;
pub mod lease;
pub mod plan;
pub mod publish;
pub mod report;
pub mod restore;

pub use error::{Error, Result};
pub use report::{DropReport, DropReportSpec, DropReportStatus};

#[cfg(test)]
mod tests;

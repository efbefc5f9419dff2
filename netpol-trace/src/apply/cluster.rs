//! Writing a plan to the cluster through [`crate::k8s::apply`]: a server-side dry run of every
//! change first (so a refusal, e.g. 403, leaves everything untouched), then the real writes,
//! each backed up into one timestamped folder and guarded by the resourceVersion the plan was
//! computed from. If a later write fails, the earlier ones are rolled back from that backup, so
//! nothing stays half-applied.

use std::path::{Path, PathBuf};

use crate::fix::{FixPlan, PatchAction};
use crate::k8s::Error;
use crate::k8s::apply::{
    ApplyOptions, ApplyReport, apply_json_patch, create_policy, delete_policy,
};
use crate::k8s::restore::restore;

/// What was written (or, in a dry run, validated).
#[derive(Debug, Clone)]
pub struct ClusterApply {
    /// One report per policy.
    pub reports: Vec<ApplyReport>,
    /// The backup folder (none in a dry run).
    pub backup: Option<PathBuf>,
}

/// Why the plan was not (fully) applied. In every case the cluster is as it was.
#[derive(Debug, thiserror::Error)]
pub enum ClusterApplyError {
    /// The policy changed since the plan was computed (or during the write): the plan may no
    /// longer be right. Nothing was changed; re-read and plan again.
    #[error("networkpolicy {policy} changed since it was read ({source}); nothing was changed")]
    Conflict {
        /// `namespace/name`.
        policy: String,
        /// What the API layer said.
        source: Error,
    },
    /// The API server refused a change (dry run or write); nothing was changed.
    #[error("networkpolicy {policy}: {source}; nothing was changed")]
    Refused {
        /// `namespace/name`.
        policy: String,
        /// What the API layer said.
        source: Error,
    },
    /// A write failed after others succeeded; those were rolled back from the backup.
    #[error("networkpolicy {policy}: {source}; the changes already made were rolled back from {}", backup.display())]
    RolledBack {
        /// `namespace/name`.
        policy: String,
        /// What the API layer said.
        source: Error,
        /// The backup folder.
        backup: PathBuf,
    },
    /// A write failed after others succeeded and rolling back failed too.
    #[error(
        "networkpolicy {policy}: {source}; rolling back failed ({rollback}): run `netpol-trace restore {}`",
        backup.display()
    )]
    RollbackFailed {
        /// `namespace/name`.
        policy: String,
        /// What the API layer said.
        source: Error,
        /// Why the rollback failed.
        rollback: String,
        /// The backup folder.
        backup: PathBuf,
    },
    /// The plan changes a policy this writer does not write; nothing was changed.
    #[error("{policy}: {reason}; nothing was changed")]
    Unsupported {
        /// The policy, named with its kind.
        policy: String,
        /// Why it is not written.
        reason: &'static str,
    },
}

impl ClusterApplyError {
    /// The refusal of a plan entry this writer must not make: a change to an admin-tier policy
    /// (only a cluster admin may make it) or to another kind than NetworkPolicy.
    fn unsupported(entry: &crate::fix::PolicyPatch) -> Self {
        let reason = if entry.requires_cluster_admin {
            "only a cluster admin can make this change; it is never applied on their behalf"
        } else {
            "only NetworkPolicies are written to the cluster; apply it with the plan's kubectl command"
        };
        Self::Unsupported { policy: entry.key(), reason }
    }

    /// Whether re-reading the cluster and planning again may succeed.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }
}

/// One write: a policy and what to do to it.
struct Write<'a> {
    namespace: &'a str,
    name: &'a str,
    action: PatchAction,
    ops: Vec<json_patch::PatchOperation>,
    object: &'a serde_json::Value,
}

fn writes(plan: &FixPlan) -> Vec<Write<'_>> {
    let mut out: Vec<Write<'_>> = Vec::new();
    for entry in &plan.patches {
        let ops = entry.json_patch.as_ref().map(|p| p.0.clone()).unwrap_or_default();
        match out.iter_mut().find(|w| w.namespace == entry.namespace && w.name == entry.name) {
            // Entries on one object apply in order: one PATCH with all their operations.
            Some(write) => {
                write.ops.extend(ops);
                write.object = &entry.result;
            }
            None => out.push(Write {
                namespace: &entry.namespace,
                name: &entry.name,
                action: entry.action,
                ops,
                object: &entry.result,
            }),
        }
    }
    out
}

async fn write(
    client: &kube::Client,
    write: &Write<'_>,
    options: &ApplyOptions,
) -> Result<ApplyReport, Error> {
    match write.action {
        PatchAction::Patch => {
            apply_json_patch(client, write.namespace, write.name, write.ops.clone(), options).await
        }
        PatchAction::Create => create_policy(client, write.object, options).await,
        PatchAction::Delete => delete_policy(client, write.namespace, write.name, options).await,
    }
}

/// Applies `plan`: a server-side dry run of every change, then (unless `dry_run`) the writes,
/// backed up under `backup_root`.
pub async fn apply_plan(
    client: &kube::Client,
    plan: &FixPlan,
    backup_root: &Path,
    dry_run: bool,
) -> Result<ClusterApply, ClusterApplyError> {
    if let Some(entry) =
        plan.patches.iter().find(|p| !p.is_kubernetes() || p.requires_cluster_admin)
    {
        return Err(ClusterApplyError::unsupported(entry));
    }
    let writes = writes(plan);
    let checked = ApplyOptions::dry_run(backup_root);
    let mut reports = Vec::new();
    for w in &writes {
        let policy = format!("{}/{}", w.namespace, w.name);
        match write(client, w, &checked).await {
            Ok(report) => reports.push(report),
            Err(source) if source.is_conflict() => {
                return Err(ClusterApplyError::Conflict { policy, source });
            }
            Err(source) => return Err(ClusterApplyError::Refused { policy, source }),
        }
    }
    if dry_run {
        return Ok(ClusterApply { reports, backup: None });
    }
    let options = ApplyOptions::new(backup_root);
    let mut reports = Vec::new();
    for w in &writes {
        let policy = format!("{}/{}", w.namespace, w.name);
        match write(client, w, &options).await {
            Ok(report) => reports.push(report),
            Err(source) if reports.is_empty() && source.is_conflict() => {
                return Err(ClusterApplyError::Conflict { policy, source });
            }
            Err(source) if reports.is_empty() => {
                return Err(ClusterApplyError::Refused { policy, source });
            }
            Err(source) => {
                let Some(backup) = options.backup.path() else {
                    return Err(ClusterApplyError::Refused { policy, source });
                };
                return Err(match restore(client, &backup, false).await {
                    Ok(report) if report.restored() => {
                        ClusterApplyError::RolledBack { policy, source, backup }
                    }
                    Ok(report) => ClusterApplyError::RollbackFailed {
                        policy,
                        source,
                        rollback: format!(
                            "not all of {} object(s) came back",
                            report.objects.len()
                        ),
                        backup,
                    },
                    Err(e) => ClusterApplyError::RollbackFailed {
                        policy,
                        source,
                        rollback: e.to_string(),
                        backup,
                    },
                });
            }
        }
    }
    Ok(ClusterApply { backup: options.backup.path(), reports })
}

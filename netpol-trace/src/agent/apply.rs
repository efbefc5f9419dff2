//! `--enable-fix`: the agent applies the minimal patch of a flow the policies deny, through
//! [`crate::apply::cluster::apply_plan`] (server-side dry run of every change first, a backup
//! folder, resourceVersion-guarded writes, rollback of a half-applied plan). Off by default:
//! the agent then only suggests. A plan is applied at most once per cluster generation: the
//! write comes back through the watch, the flow is re-attributed, and an allowed flow has no
//! plan any more.

use std::{path::PathBuf, sync::Arc};

use tokio::{sync::mpsc, task::JoinHandle};

use crate::{apply::cluster::apply_plan, fix::FixPlan, trace::flows::ConnKey};

use super::state::AgentState;

/// Default folder of the backups written before each change.
pub const DEFAULT_BACKUP_DIR: &str = "/var/lib/netpol-trace/backups";

/// A plan to apply for a flow.
#[derive(Debug)]
pub struct FixJob {
    /// The flow.
    pub key: ConnKey,
    /// The plan computed for it.
    pub plan: FixPlan,
}

/// Starts the applying task; it ends when the sender is dropped.
pub fn start(
    client: kube::Client,
    backup_dir: PathBuf,
    state: Arc<AgentState>,
) -> (mpsc::UnboundedSender<FixJob>, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<FixJob>();
    let task = tokio::spawn(async move {
        while let Some(job) = rx.recv().await {
            match apply_plan(&client, &job.plan, &backup_dir, false).await {
                Ok(applied) => {
                    let policies: Vec<String> = job
                        .plan
                        .patches
                        .iter()
                        .map(|p| format!("{}/{}", p.namespace, p.name))
                        .collect();
                    tracing::warn!(
                        ?policies,
                        backup = ?applied.backup,
                        "applied the fix of a dropped flow (undo: netpol-trace restore BACKUP)"
                    );
                    if let Some(fix) = state.store().get_mut(&job.key).and_then(|r| r.fix.as_mut())
                    {
                        fix.applied_at = Some(chrono::Utc::now());
                    }
                }
                Err(e) => tracing::warn!(error = %e, "fix not applied"),
            }
        }
    });
    (tx, task)
}

//! Garbage collection of reports of flows restored long ago. It runs in the controller's
//! leader only: one cluster-wide list per period, not one per node (a DaemonSet on 5,000
//! nodes listing every report hourly would be 5,000 lists). Agents hold no `delete` on
//! DropReports.

use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::Api;
use kube::api::DeleteParams;

use super::report::{DropReport, FixPhase, FlowState};
use super::{Error, Result};

/// When garbage is collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Garbage {
    /// Reports restored (last seen) longer ago than this are deleted.
    pub age: Duration,
    /// How often the leader looks for them.
    pub every: Duration,
}

impl Default for Garbage {
    /// Reports restored a day ago, looked for every hour.
    fn default() -> Self {
        Self { age: Duration::from_secs(24 * 3600), every: Duration::from_secs(3600) }
    }
}

/// Whether a report is garbage: restored, last seen before `cutoff`, and holding no applied
/// fix (whose backup people may still need to undo it).
pub fn is_garbage(report: &DropReport, cutoff: DateTime<Utc>) -> bool {
    let Some(status) = &report.status else { return false };
    status.state == Some(FlowState::Restored)
        && status.last_seen.is_some_and(|t| t < cutoff)
        && report.phase() != Some(FixPhase::Applied)
        && report.spec.decision.is_none()
}

/// Deletes the reports restored more than `age` ago (see [`is_garbage`]), each guarded by its
/// resourceVersion; returns how many went.
pub async fn collect_garbage(client: &kube::Client, age: Duration) -> Result<usize> {
    let cutoff = Utc::now() - chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX);
    let api: Api<DropReport> = Api::all(client.clone());
    let list = api.list(&Default::default()).await.map_err(|source| Error::Kube {
        verb: "list",
        what: "dropreports".into(),
        source,
    })?;
    let mut deleted = 0;
    for report in list.items.iter().filter(|r| is_garbage(r, cutoff)) {
        let namespace = report.metadata.namespace.clone().unwrap_or_default();
        let name = report.metadata.name.clone().unwrap_or_default();
        let params = DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                resource_version: report.metadata.resource_version.clone(),
                uid: report.metadata.uid.clone(),
            }),
            ..DeleteParams::default()
        };
        match Api::<DropReport>::namespaced(client.clone(), &namespace).delete(&name, &params).await
        {
            Ok(_) => deleted += 1,
            // Updated or gone meanwhile: it is looked at again next time.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {}
            Err(e) => return Err(Error::report("delete", &namespace, &name, e)),
        }
    }
    Ok(deleted)
}

//! `state.json`: everything a lab created, written before and after each creation step so
//! that `lab down` can remove it all, even after a crash half-way through `lab up`.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Namespace;
use serde::{Deserialize, Serialize};

use super::error::{LabError, Result};
use super::objects::{LabPolicies, StoredPolicy, lab_inventory};
use super::plan::EnforcementPlan;
use super::process::DaemonRecord;
use super::topology::Topology;
use crate::inventory::{Inventory, SourcedPolicy};

/// The format version of `state.json` (2: Namespaces and NetworkPolicies are kept).
pub const STATE_VERSION: u32 = 2;

/// A lab as recorded in its run directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabState {
    /// [`STATE_VERSION`].
    pub version: u32,
    /// The lab name.
    pub name: String,
    /// Prefix of every network namespace of the lab (`npt_<name>_`).
    pub prefix: String,
    /// When `lab up` started.
    pub created_at: DateTime<Utc>,
    /// The manifests it was built from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<PathBuf>,
    /// The run directory.
    pub run_dir: PathBuf,
    /// Pods, IPs, interfaces, namespaces.
    pub topology: Topology,
    /// Network namespaces created so far, in creation order.
    pub netns: Vec<String>,
    /// Daemons started so far.
    pub daemons: Vec<DaemonRecord>,
    /// The Namespaces of the manifests (their labels matter to namespaceSelectors).
    #[serde(default)]
    pub namespaces: Vec<Namespace>,
    /// The NetworkPolicies the lab enforces, each as read.
    #[serde(default)]
    pub policies: Vec<StoredPolicy>,
    /// The other policy kinds the lab enforces (ClusterNetworkPolicy, AdminNetworkPolicy,
    /// BaselineAdminNetworkPolicy, Calico NetworkPolicy, GlobalNetworkPolicy and Tier), each as
    /// read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tiered: Vec<StoredPolicy>,
    /// The plan the node's ruleset was last rendered from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<EnforcementPlan>,
}

impl LabState {
    /// The NetworkPolicies the lab enforces, typed again.
    pub fn sourced_policies(&self) -> Result<Vec<SourcedPolicy>> {
        self.policies.iter().map(StoredPolicy::to_sourced).collect()
    }

    /// Every policy the lab enforces, typed again.
    pub fn lab_policies(&self) -> Result<LabPolicies> {
        LabPolicies::from_stored(&self.policies, &self.tiered)
    }

    /// The policy engine's view of the lab: its pods as built (lab IPs as `status.podIP`), its
    /// Namespaces and the policies it enforces.
    pub fn inventory(&self) -> Result<Inventory> {
        lab_inventory(&self.topology, &self.namespaces, self.lab_policies()?)
    }

    /// Writes the state to `path` atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| LabError::State { path: path.to_owned(), message: e.to_string() })?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text + "\n")
            .map_err(|e| LabError::io(format!("writing {}", tmp.display()), e))?;
        std::fs::rename(&tmp, path)
            .map_err(|e| LabError::io(format!("renaming {}", tmp.display()), e))
    }

    /// Reads the state from `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| LabError::io(format!("reading {}", path.display()), e))?;
        let state: Self = serde_json::from_str(&text)
            .map_err(|e| LabError::State { path: path.to_owned(), message: e.to_string() })?;
        if state.version != STATE_VERSION {
            return Err(LabError::State {
                path: path.to_owned(),
                message: format!("version {} (this build reads {STATE_VERSION})", state.version),
            });
        }
        Ok(state)
    }
}

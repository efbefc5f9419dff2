//! `controller --auto-approve regressions`: approve, without a person, only a flow that
//! * is in a namespace labelled `netpol-trace.io/auto-approve=regressions`;
//! * comes from a workload (never an outside address: never an ipBlock);
//! * was seen by every reporting node leaving the source pod's own veth (a SYN claiming a pod
//!   address from another interface is spoofed) with a policy drop reason;
//! * was allowed before the most recent change, seen by this controller, of a policy selecting
//!   its destination (a regression);
//! * gets a patch that opens nothing but the source workload to the destination workload, with
//!   no ipBlock;
//! * fits the cluster-wide budget (default 10 an hour).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use super::identity::pod_matches;
use super::plan::{Planned, flow_of, plan_objects};
use super::report::{DropReport, DropReportSpec};
use super::{Error, Result};
use crate::explain::{ExplainOptions, is_allowed};
use crate::inventory::ClusterObjects;
use crate::inventory::{Inventory, InventoryOptions};
use crate::manifest::load_cluster_with;

/// The namespace label that opts in.
pub const NAMESPACE_LABEL: (&str, &str) = ("netpol-trace.io/auto-approve", "regressions");
/// Annotation naming who approved.
pub const APPROVED_BY_ANNOTATION: &str = "netpol-trace.io/approved-by";
/// Drop reasons that mean "a policy dropped it" (netfilter rules, tc programs of a CNI).
pub const POLICY_DROP_REASONS: [&str; 3] = ["NETFILTER_DROP", "TC_INGRESS", "TC_EGRESS"];
/// Default budget: approvals per hour, cluster-wide.
pub const DEFAULT_PER_HOUR: usize = 10;

/// The versions of NetworkPolicies before their latest change, as seen by this controller.
#[derive(Debug, Default)]
pub struct PolicyHistory {
    current: HashMap<(String, String), NetworkPolicy>,
    /// `(namespace, name)` → (the policy before its latest change, `None` if it was created;
    /// when it changed).
    previous: HashMap<(String, String), (Option<NetworkPolicy>, Instant)>,
}

impl PolicyHistory {
    /// Takes one observed version; `initial` for the first list (not a change).
    pub fn observe(&mut self, policy: NetworkPolicy, initial: bool) {
        let key = (
            policy.metadata.namespace.clone().unwrap_or_default(),
            policy.metadata.name.clone().unwrap_or_default(),
        );
        let old = self.current.insert(key.clone(), policy.clone());
        if initial {
            return;
        }
        if old.as_ref().map(|o| &o.spec) != Some(&policy.spec) {
            self.previous.insert(key, (old, Instant::now()));
        }
    }

    /// Keeps the history up to date from a watch, until the stream ends.
    pub async fn follow(history: Arc<Mutex<Self>>, client: kube::Client) {
        let api: Api<NetworkPolicy> = Api::all(client);
        let mut initial = true;
        let stream = watcher(api, watcher::Config::default()).default_backoff();
        let mut stream = std::pin::pin!(stream);
        while let Ok(Some(event)) = stream.try_next().await {
            let mut h = history.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match event {
                watcher::Event::Init => initial = true,
                watcher::Event::InitApply(p) => h.observe(p, initial),
                watcher::Event::InitDone => initial = false,
                watcher::Event::Apply(p) => h.observe(p, false),
                watcher::Event::Delete(_) => {}
            }
        }
    }
}

/// Whether the flow of `spec` was allowed before the most recent change of a policy selecting
/// its destination (pure: `objects` is the live cluster).
pub fn is_regression(
    objects: &ClusterObjects,
    spec: &DropReportSpec,
    history: &PolicyHistory,
) -> std::result::Result<bool, String> {
    let inventory = Inventory::from_objects(objects.clone(), InventoryOptions::default())
        .map_err(|e| e.to_string())?;
    let flow = flow_of(spec, &objects.pods, &inventory)?;
    let dst = flow.dst.pod().ok_or("the destination is not a pod")?;
    let latest = inventory
        .policies()
        .filter(|(_, entry)| entry.selected.contains(&dst))
        .filter_map(|(_, entry)| {
            let key = (entry.compiled.namespace.clone(), entry.compiled.name.clone());
            history.previous.get(&key).map(|(before, at)| (key, before, *at))
        })
        .max_by_key(|(_, _, at)| *at);
    let Some((key, before, _)) = latest else {
        return Err("no change of a policy selecting the destination was seen".into());
    };
    let before_inventory = match before {
        Some(old) => {
            inventory.with_policies_replaced(vec![old.clone()]).map_err(|e| e.to_string())?
        }
        None => inventory.with_policies_removed(&[key]),
    };
    let flow_before = flow_of(spec, &objects.pods, &before_inventory)?;
    Ok(is_allowed(&before_inventory, &flow_before, &ExplainOptions::default()))
}

/// The auto-approval state of a leading controller.
pub struct AutoApprover {
    client: kube::Client,
    history: Arc<Mutex<PolicyHistory>>,
    per_hour: usize,
    approved: VecDeque<Instant>,
}

impl AutoApprover {
    /// A new approver reading `history`, approving at most `per_hour` reports an hour.
    pub fn new(client: kube::Client, history: Arc<Mutex<PolicyHistory>>, per_hour: usize) -> Self {
        Self { client, history, per_hour, approved: VecDeque::new() }
    }

    /// Why `report` is not a candidate, checked without the cluster: `None` when it may be.
    pub fn refusal(report: &DropReport) -> Option<String> {
        if report.spec.source.workload.is_none() || report.spec.source.ip.is_some() {
            return Some("the source is an address, not a workload".into());
        }
        let nodes = report.status.as_ref().map(|s| s.nodes.as_slice()).unwrap_or_default();
        if nodes.is_empty() {
            return Some("no node reported the SYNs".into());
        }
        if let Some(n) = nodes.iter().find(|n| n.from_source_veth != Some(true)) {
            return Some(format!(
                "node {} saw the SYN on {}, not the source pod's own veth",
                n.node, n.ifname
            ));
        }
        if let Some(n) = nodes.iter().find(|n| !POLICY_DROP_REASONS.contains(&n.reason.as_str())) {
            return Some(format!(
                "node {} saw drop reason {}, not a policy drop",
                n.node, n.reason
            ));
        }
        None
    }

    /// Approves `report` if every rule holds; `Ok(true)` when it did.
    pub async fn consider(&mut self, report: &DropReport) -> Result<bool> {
        let namespace = report.metadata.namespace.clone().unwrap_or_default();
        if let Some(reason) = Self::refusal(report) {
            tracing::debug!(report = %report.key(), reason, "not auto-approved");
            return Ok(false);
        }
        let ns = Api::<Namespace>::all(self.client.clone()).get_opt(&namespace).await.map_err(
            |source| Error::Kube { verb: "get", what: format!("namespace {namespace}"), source },
        )?;
        let labelled = ns.and_then(|n| n.metadata.labels).is_some_and(|l| {
            l.get(NAMESPACE_LABEL.0).map(String::as_str) == Some(NAMESPACE_LABEL.1)
        });
        if !labelled {
            return Ok(false);
        }
        let objects = load_cluster_with(self.client.clone()).await?;
        let regression = {
            let history = self.history.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            is_regression(&objects, &report.spec, &history)
        };
        if regression != Ok(true) {
            tracing::debug!(report = %report.key(), ?regression, "not a regression");
            return Ok(false);
        }
        let pods = objects.pods.clone();
        let Planned::Changes(plan) = plan_objects(objects, &report.spec) else { return Ok(false) };
        let text = serde_json::to_string(&plan.plan.patches).unwrap_or_default();
        if text.contains("ipBlock") {
            return Ok(false);
        }
        let in_workload = |pod: &str, end| {
            pods.iter().any(|p| {
                pod_matches(p, end)
                    && format!(
                        "{}/{}",
                        p.metadata.namespace.as_deref().unwrap_or_default(),
                        p.metadata.name.as_deref().unwrap_or_default()
                    ) == pod
            })
        };
        if !plan.plan.newly_allowed.iter().all(|pair| {
            in_workload(&pair.from, &report.spec.source)
                && in_workload(&pair.to, &report.spec.destination)
        }) {
            return Ok(false);
        }
        let hour = Duration::from_secs(3600);
        while self.approved.front().is_some_and(|t| t.elapsed() > hour) {
            self.approved.pop_front();
        }
        if self.approved.len() >= self.per_hour {
            tracing::warn!(report = %report.key(), "auto-approval budget spent for this hour");
            return Ok(false);
        }
        let name = report.metadata.name.clone().unwrap_or_default();
        let patch = json!({
            "metadata": {"annotations": {APPROVED_BY_ANNOTATION: "controller (--auto-approve regressions)"}},
            "spec": {"decision": "Approved"}
        });
        Api::<DropReport>::namespaced(self.client.clone(), &namespace)
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| Error::report("patch", &namespace, &name, e))?;
        self.approved.push_back(Instant::now());
        Ok(true)
    }
}

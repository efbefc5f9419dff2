//! The workload of a pod: the pods that share its stable labels (the ones a controller does not
//! generate per pod or per revision), and the smallest selector that picks exactly them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::error::FixError;
use crate::inventory::{Inventory, PodId};
use crate::policy::{Labels, Peer, Selector};

/// Labels controllers set per pod, per revision or per run: never part of a workload's identity.
pub const UNSTABLE_LABELS: [&str; 12] = [
    "pod-template-hash",
    "controller-revision-hash",
    "pod-template-generation",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
    "batch.kubernetes.io/controller-uid",
    "batch.kubernetes.io/job-name",
    "batch.kubernetes.io/job-completion-index",
    "controller-uid",
    "job-name",
    "job-completion-index",
    "controller.kubernetes.io/hash",
];

/// Label sets tried, in order, before falling back to every stable label: the first one the pod
/// has that selects exactly the workload's pods wins.
const PREFERRED_SELECTORS: [&[&str]; 6] = [
    &["app.kubernetes.io/name"],
    &["app"],
    &["k8s-app"],
    &["app.kubernetes.io/name", "app.kubernetes.io/instance"],
    &["app.kubernetes.io/name", "app.kubernetes.io/component"],
    &["app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component"],
];

/// Label keys whose value names a workload, for naming created policies.
const NAME_LABELS: [&str; 3] = ["app.kubernetes.io/name", "app", "k8s-app"];

/// A pod's workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// Namespace.
    pub namespace: String,
    /// The `matchLabels` that select exactly [`Self::pods`] in the namespace.
    pub selector: Labels,
    /// The pods of the workload, in id order (always including the pod it was built from).
    pub pods: Vec<PodId>,
    /// A short name for generated object names (`web`, `mysql`).
    pub name: String,
}

impl Workload {
    /// The workload of pod `id`.
    pub fn of_pod(inventory: &Inventory, id: PodId) -> Result<Self, FixError> {
        let pod = inventory.pod(id);
        let stable = stable_labels(&pod.labels);
        if stable.is_empty() {
            return Err(FixError::NoStableLabels {
                pod: pod.pod.to_string(),
                labels: describe_labels(&pod.labels),
            });
        }
        let select = |labels: &Labels| select(inventory, id, labels);
        let pods = select(&stable)?;
        let mut selector = stable.clone();
        for keys in PREFERRED_SELECTORS {
            let candidate: Option<Labels> = keys
                .iter()
                .map(|key| stable.get(*key).map(|value| ((*key).to_owned(), value.clone())))
                .collect();
            if let Some(candidate) = candidate
                && select(&candidate)? == pods
            {
                selector = candidate;
                break;
            }
        }
        let name = NAME_LABELS
            .iter()
            .find_map(|key| selector.get(*key))
            .or_else(|| selector.values().next())
            .cloned()
            .unwrap_or_else(|| pod.pod.name.clone());
        Ok(Self { namespace: pod.pod.namespace.clone(), selector, pods, name })
    }

    /// Whether `id` belongs to the workload.
    pub fn contains(&self, id: PodId) -> bool {
        self.pods.binary_search(&id).is_ok()
    }

    /// The selector as `k=v,k=v`.
    pub fn describe_selector(&self) -> String {
        describe_labels(&self.selector)
    }
}

/// `labels` without the controller-generated ones.
pub fn stable_labels(labels: &Labels) -> Labels {
    labels
        .iter()
        .filter(|(key, _)| !UNSTABLE_LABELS.contains(&key.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `k=v,k=v`, or `none`.
pub fn describe_labels(labels: &Labels) -> String {
    if labels.is_empty() {
        return "none".to_owned();
    }
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// The pods of `id`'s namespace that `labels` (as `matchLabels`) select.
fn select(inventory: &Inventory, id: PodId, labels: &Labels) -> Result<Vec<PodId>, FixError> {
    let pod = inventory.pod(id);
    let selector = LabelSelector { match_labels: Some(labels.clone()), match_expressions: None };
    let selector = Selector::compile(&selector, "podSelector").map_err(|e| {
        FixError::InvalidLabels { pod: pod.pod.to_string(), message: e.to_string() }
    })?;
    let peer = Peer::Pods { namespace_selector: None, pod_selector: Some(selector) };
    Ok(inventory.peer_pods(&pod.pod.namespace, &peer))
}

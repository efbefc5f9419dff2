//! The agent's view of the cluster: an [`Inventory`] built from the reduced pod cache and the
//! reflectors' other objects whenever they report a change (off the async loop), plus what
//! Events need about pods (their UID, read from the live pod cache).

use k8s_openapi::api::core::v1::ObjectReference;

use crate::operator::report::FlowEnd;

use crate::{
    inventory::{ClusterObjects, DEFAULT_NAMESPACE, Inventory, InventoryOptions},
    k8s::pods::PodCache,
    policy::compile_policy,
};

/// An inventory of the cluster and the UIDs of its pods.
#[derive(Debug, Clone)]
pub struct ClusterView {
    /// Pods, namespaces, policies and services, indexed.
    pub inventory: Inventory,
    pods: PodCache,
}

impl ClusterView {
    /// Builds the view. A policy the engine cannot compile is left out with a warning (the
    /// API server validated it, so this only happens with fields the engine does not know),
    /// rather than losing attribution for every other policy.
    /// `objects.pods` is ignored: pods come from `pods`.
    pub fn build(mut objects: ClusterObjects, pods: &PodCache) -> Self {
        objects.network_policies.retain(|sourced| {
            let policy = &sourced.policy;
            match compile_policy(policy, DEFAULT_NAMESPACE) {
                Ok(_) => true,
                Err(e) => {
                    tracing::warn!(
                        namespace = policy.metadata.namespace.as_deref().unwrap_or_default(),
                        name = policy.metadata.name.as_deref().unwrap_or_default(),
                        error = %e,
                        "NetworkPolicy left out of attribution"
                    );
                    false
                }
            }
        });
        let infos = pods.pods().iter().map(|p| p.info.clone()).collect();
        let inventory = Inventory::from_pod_infos(objects, infos, InventoryOptions::default())
            .unwrap_or_else(|_| empty_inventory());
        Self { inventory, pods: pods.clone() }
    }

    /// A view of `inventory` (pods have no UID).
    pub fn of(inventory: Inventory) -> Self {
        Self { inventory, pods: PodCache::default() }
    }

    /// A view with no objects (before the caches sync).
    pub fn empty() -> Self {
        Self { inventory: empty_inventory(), pods: PodCache::default() }
    }

    /// The workload of pod `namespace/name`, when the view holds the pod.
    pub fn workload(&self, namespace: &str, name: &str) -> Option<FlowEnd> {
        let pod = self.pods.get(namespace, name)?;
        Some(FlowEnd::workload(namespace, &pod.workload.1, &pod.workload.0))
    }

    /// A reference to pod `namespace/name` for an Event.
    pub fn pod_reference(&self, namespace: &str, name: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some(namespace.into()),
            name: Some(name.into()),
            uid: self.pods.get(namespace, name).and_then(|p| p.uid.clone()),
            ..ObjectReference::default()
        }
    }
}

fn empty_inventory() -> Inventory {
    Inventory::from_objects(ClusterObjects::default(), InventoryOptions::default())
        .expect("an empty inventory has no policy to reject")
}

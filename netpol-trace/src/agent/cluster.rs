//! The agent's view of the cluster: an [`Inventory`] rebuilt from the reflectors' snapshot
//! whenever they report a change, plus what Events need about pods (their UID).

use std::collections::HashMap;

use k8s_openapi::api::core::v1::ObjectReference;

use crate::operator::report::FlowEnd;

use crate::{
    inventory::{ClusterObjects, DEFAULT_NAMESPACE, Inventory, InventoryOptions},
    policy::compile_policy,
};

/// An inventory of the cluster and the UIDs of its pods.
#[derive(Debug, Clone)]
pub struct ClusterView {
    /// Pods, namespaces, policies and services, indexed.
    pub inventory: Inventory,
    uids: HashMap<(String, String), String>,
    /// Each pod's workload, as its DropReports name it.
    workloads: HashMap<(String, String), FlowEnd>,
}

impl ClusterView {
    /// Builds the view. A policy the engine cannot compile is left out with a warning (the
    /// API server validated it, so this only happens with fields the engine does not know),
    /// rather than losing attribution for every other policy.
    pub fn build(mut objects: ClusterObjects) -> Self {
        let uids = objects
            .pods
            .iter()
            .filter_map(|p| {
                Some((
                    (p.metadata.namespace.clone()?, p.metadata.name.clone()?),
                    p.metadata.uid.clone()?,
                ))
            })
            .collect();
        let workloads = objects
            .pods
            .iter()
            .filter_map(|p| {
                Some((
                    (p.metadata.namespace.clone()?, p.metadata.name.clone()?),
                    crate::operator::identity::end_of_pod(p),
                ))
            })
            .collect();
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
        let inventory = Inventory::from_objects(objects, InventoryOptions::default())
            .unwrap_or_else(|_| empty_inventory());
        Self { inventory, uids, workloads }
    }

    /// A view with no objects (before the caches sync).
    pub fn empty() -> Self {
        Self { inventory: empty_inventory(), uids: HashMap::new(), workloads: HashMap::new() }
    }

    /// The workload of pod `namespace/name`, when the view holds the pod.
    pub fn workload(&self, namespace: &str, name: &str) -> Option<&FlowEnd> {
        self.workloads.get(&(namespace.to_string(), name.to_string()))
    }

    /// A reference to pod `namespace/name` for an Event.
    pub fn pod_reference(&self, namespace: &str, name: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some(namespace.into()),
            name: Some(name.into()),
            uid: self.uids.get(&(namespace.to_string(), name.to_string())).cloned(),
            ..ObjectReference::default()
        }
    }
}

fn empty_inventory() -> Inventory {
    Inventory::from_objects(ClusterObjects::default(), InventoryOptions::default())
        .expect("an empty inventory has no policy to reject")
}

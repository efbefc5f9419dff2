//! The agent's view of the cluster: an [`Inventory`] indexed over the caches' reduced objects
//! (shared with them, not copied) whenever they report a change (off the async loop), plus
//! what Events need about pods (their UID, read from the live pod cache).

use k8s_openapi::api::core::v1::ObjectReference;

use crate::operator::report::FlowEnd;

use crate::{
    inventory::{ClusterObjects, Inventory, InventoryOptions},
    k8s::{pods::PodCache, watch::ClusterReader},
};

/// An inventory of the cluster and the UIDs of its pods.
#[derive(Debug, Clone)]
pub struct ClusterView {
    /// Pods, namespaces, policies and services, indexed.
    pub inventory: Inventory,
    pods: PodCache,
}

impl ClusterView {
    /// Builds the view from what the caches hold now. (Policies the engine cannot compile were
    /// left out by the cache, with a warning.)
    pub fn build(reader: &ClusterReader) -> Self {
        let inventory = Inventory::from_shared(reader.snapshot(), InventoryOptions::default())
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cluster view left empty");
                empty_inventory()
            });
        Self { inventory, pods: reader.pods().clone() }
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

/// Caps the allocator's arenas: the agent's threads (watches, view builds, fix planning) would
/// otherwise each keep an arena of freed memory that the resident size never gives back.
pub fn limit_allocator_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes the allocator's tuning; called before the threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Gives the memory freed by a replaced view back to the system (the allocator keeps freed
/// pages otherwise, so the resident size would stay at its highest since start).
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim has no preconditions; it only returns free pages to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn empty_inventory() -> Inventory {
    Inventory::from_objects(ClusterObjects::default(), InventoryOptions::default())
        .expect("an empty inventory has no policy to reject")
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::Duration;

    use fake_apiserver::FakeApiServer;
    use serde_json::json;

    use super::*;
    use crate::attribution::attribute;
    use crate::k8s::watch::ClusterCache;
    use crate::policy::Protocol;
    use crate::trace::Endpoint;

    const WAIT: Duration = Duration::from_secs(10);

    /// What attribution says about one flow: both ends' names, the denying policies, the hint.
    fn outcome(inventory: &Inventory, src: IpAddr, dst: IpAddr, port: u16) -> String {
        let (mut s, mut d) = (Endpoint::addr(src, 40000), Endpoint::addr(dst, port));
        let a = attribute(inventory, &mut s, &mut d, Protocol::Tcp);
        format!("{s:?} -> {d:?}: {:?} {:?} {:?}", a.policies, a.hint, a.denial)
    }

    /// Every flow between the addresses both inventories know of (pods and ClusterIPs, plus
    /// an outside address), on a few ports, must be attributed alike.
    fn assert_same_attribution(view: &Inventory, scratch: &Inventory) {
        let mut ips: Vec<IpAddr> = scratch.pods().iter().flat_map(|p| p.ips.clone()).collect();
        ips.extend(view.pods().iter().flat_map(|p| p.ips.clone()));
        ips.extend(
            ["10.96.0.10", "10.96.0.11", "192.0.2.1"].map(|ip| ip.parse::<IpAddr>().unwrap()),
        );
        ips.sort();
        ips.dedup();
        assert_eq!(view.pods().len(), scratch.pods().len());
        assert_eq!(view.policies().len(), scratch.policies().len());
        for &src in &ips {
            for &dst in &ips {
                for port in [80, 3306, 3307, 8080] {
                    assert_eq!(
                        outcome(view, src, dst, port),
                        outcome(scratch, src, dst, port),
                        "the view built from the caches and a build from scratch disagree"
                    );
                }
            }
        }
    }

    /// Waits until the caches have taken in a change and the view agrees with a build from
    /// scratch of what the API server holds.
    async fn converges(
        fake: &FakeApiServer,
        cache: &ClusterCache,
        expect: impl Fn(&Inventory) -> bool,
    ) {
        let scratch = crate::manifest::load_cluster_with(fake.client()).await.unwrap();
        let scratch = Inventory::from_objects(scratch, InventoryOptions::default()).unwrap();
        assert!(expect(&scratch), "the change is in the API server");
        let mut changes = cache.changes();
        let view = tokio::time::timeout(WAIT, async {
            loop {
                let view = ClusterView::build(&cache.reader());
                if expect(&view.inventory) {
                    return view;
                }
                let _ = changes.changed().await;
            }
        })
        .await
        .expect("the watch brought the change");
        assert_same_attribution(&view.inventory, &scratch);
    }

    #[tokio::test]
    async fn a_view_from_the_caches_attributes_as_a_build_from_scratch_after_each_change() {
        let fake = FakeApiServer::start().await;
        crate::k8s::list::tests::seed(&fake);
        let cache = ClusterCache::start(&fake.client());
        cache.wait_synced(WAIT).await.unwrap();
        converges(&fake, &cache, |inv| inv.pods().len() == 2).await;

        // A pod arrives with the labels the policy selects; another of the same workload
        // shares its label set.
        for (name, ip) in [("mysql-1", "10.0.2.8"), ("mysql-2", "10.0.2.9")] {
            fake.insert(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "db", "labels": {"app": "mysql"}},
                "spec": {"containers": [{"name": "mysql", "ports": [{"name": "mysql", "containerPort": 3306}]}]},
                "status": {"podIP": ip}}));
        }
        converges(&fake, &cache, |inv| inv.pods().len() == 4).await;
        let (a, b) = {
            let pods = cache.pods();
            (pods.get("db", "mysql-1").unwrap(), pods.get("db", "mysql-2").unwrap())
        };
        assert!(std::sync::Arc::ptr_eq(&a.info.labels, &b.info.labels), "one label set");

        // A policy isolating the client's namespace for egress, then a Service without a
        // selector whose slice names a pod.
        fake.insert(json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "web-egress", "namespace": "app"},
            "spec": {"podSelector": {}, "policyTypes": ["Egress"],
                     "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "mysql"}}}], "ports": [{"port": 3307}]}]}}));
        converges(&fake, &cache, |inv| inv.policies().len() == 2).await;
        fake.insert(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "manual", "namespace": "db"},
            "spec": {"clusterIP": "10.96.0.11", "ports": [{"port": 80, "targetPort": 3306}]}}));
        fake.insert(json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "manual-1", "namespace": "db",
                         "labels": {"kubernetes.io/service-name": "manual"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.2.8"],
                           "targetRef": {"kind": "Pod", "namespace": "db", "name": "mysql-1"}}],
            "ports": [{"port": 3306, "protocol": "TCP"}]}));
        converges(&fake, &cache, |inv| {
            inv.service_by_cluster_ip("10.96.0.11".parse().unwrap()).is_some()
                && inv.service_backends("db", "manual", None, Protocol::Tcp).is_ok()
        })
        .await;

        // Removals: a pod, the first policy, the Service.
        fake.remove("pods", "db", "mysql-2");
        converges(&fake, &cache, |inv| inv.pods().len() == 3).await;
        fake.remove("networkpolicies", "db", "mysql-ingress");
        converges(&fake, &cache, |inv| inv.policies().len() == 1).await;
        fake.remove("services", "db", "manual");
        converges(&fake, &cache, |inv| {
            inv.service_by_cluster_ip("10.96.0.11".parse().unwrap()).is_none()
        })
        .await;
        // The pod that shared its label set is gone: one holder is left.
        drop((a, b));
        assert_eq!(cache.pods().shared_values().0, 2, "web's and mysql's label sets");
    }
}

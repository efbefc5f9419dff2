//! Live cluster state: every watched kind reduced on arrival to what attribution reads — pods
//! in the [`PodCache`], namespaces, compiled NetworkPolicies, Services and EndpointSlices in a
//! [`ReducedCache`] each — a change counter, and `synced` once every cache has its first full
//! list. Another watched kind is one more cache, its reduction and its watch.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Resource;
use kube::runtime::watcher;
use tokio::sync::{mpsc, watch as channel};
use tokio::task::JoinHandle;

use super::error::{Error, Result};
use super::pods::PodCache;
use super::reduced::{ReducedCache, run_cache_watch, spawn_cache_watch};
use super::watch_kinds::{PolicyKindWatches, RECHECK_INTERVAL};
use super::watch_slices::{self, Recheck};
use crate::inventory::{
    DEFAULT_NAMESPACE, NamespaceInfo, ServiceInfo, SharedObjects, SharedPolicy, SliceInfo,
    SourcedPolicy, compile_shared, namespace_info,
};

/// Annotations that are kept when objects are trimmed; every other annotation is dropped.
pub const KEPT_ANNOTATIONS: &[&str] = &[];

/// Drops what no analysis reads from an object's metadata: managed fields and annotations.
pub fn trim_object<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.retain(|k, _| KEPT_ANNOTATIONS.contains(&k.as_str()));
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// A NetworkPolicy trimmed and compiled; one the engine cannot compile is left out with a
/// warning (the API server validated it, so this only happens with fields the engine does not
/// know), rather than losing attribution for every other policy.
pub fn reduce_policy(policy: &NetworkPolicy) -> Option<SharedPolicy> {
    let mut policy = policy.clone();
    trim_object(&mut policy);
    let (namespace, name) = (policy.metadata.namespace.clone(), policy.metadata.name.clone());
    match compile_shared(SourcedPolicy::from_cluster(policy), DEFAULT_NAMESPACE) {
        Ok(shared) => Some(shared),
        Err(e) => {
            tracing::warn!(
                namespace = namespace.as_deref().unwrap_or_default(),
                name = name.as_deref().unwrap_or_default(),
                error = %e,
                "NetworkPolicy left out of attribution"
            );
            None
        }
    }
}

fn reduce_namespace(ns: &Namespace) -> Option<NamespaceInfo> {
    namespace_info(ns)
}

fn reduce_service(service: &Service) -> Option<ServiceInfo> {
    ServiceInfo::from_service(service, DEFAULT_NAMESPACE)
}

/// Read access to the caches, cheap to clone and to send to a worker thread.
#[derive(Clone)]
pub struct ClusterReader {
    namespaces: ReducedCache<NamespaceInfo>,
    pods: PodCache,
    network_policies: ReducedCache<SharedPolicy>,
    services: ReducedCache<ServiceInfo>,
    endpoint_slices: ReducedCache<SliceInfo>,
    policy_kinds: PolicyKindWatches,
}

/// The watches of Namespaces, Pods, NetworkPolicies, Services and EndpointSlices.
pub struct ClusterCache {
    reader: ClusterReader,
    changes: channel::Receiver<u64>,
    synced: channel::Receiver<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for ClusterCache {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl ClusterCache {
    /// Starts the five watches on the current tokio runtime; they run until the cache is
    /// dropped.
    pub fn start(client: &kube::Client) -> Self {
        let (changes_tx, changes) = channel::channel(0u64);
        let (policy_kinds, kinds_task) =
            PolicyKindWatches::start(client, changes_tx.clone(), RECHECK_INTERVAL);
        let kinds = policy_kinds.clone();
        let reader = ClusterReader {
            namespaces: ReducedCache::default(),
            pods: PodCache::default(),
            network_policies: ReducedCache::default(),
            services: ReducedCache::default(),
            endpoint_slices: ReducedCache::default(),
            policy_kinds,
        };
        let mut tasks = vec![kinds_task];
        let mut pending = Vec::new();
        let mut synced_channel = || {
            let (tx, rx) = channel::channel(false);
            pending.push(rx.clone());
            (tx, rx)
        };
        let r = &reader;
        tasks.push(r.namespaces.spawn_watch(
            client,
            reduce_namespace,
            changes_tx.clone(),
            synced_channel().0,
        ));
        tasks.push(r.pods.spawn_watch(client, changes_tx.clone(), synced_channel().0));
        tasks.push(r.network_policies.spawn_watch(
            client,
            reduce_policy,
            changes_tx.clone(),
            synced_channel().0,
        ));
        tasks.extend(r.spawn_service_watches(
            client,
            &changes_tx,
            synced_channel(),
            synced_channel().0,
        ));
        let (synced_tx, synced) = channel::channel(false);
        tasks.push(tokio::spawn(async move {
            for mut rx in pending {
                if rx.wait_for(|s| *s).await.is_err() {
                    return;
                }
            }
            kinds.wait_ready().await;
            let _ = synced_tx.send(true);
            changes_tx.send_modify(|n| *n += 1);
        }));
        Self { reader, changes, synced, tasks }
    }

    /// Whether every store has received its first full list.
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Waits until [`Self::is_synced`], at most `timeout`.
    pub async fn wait_synced(&self, timeout: Duration) -> Result<()> {
        let mut synced = self.synced.clone();
        match tokio::time::timeout(timeout, synced.wait_for(|s| *s)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(Error::Unreachable {
                url: "the Kubernetes API".into(),
                reason: format!(
                    "the watches of namespaces, pods, networkpolicies, services and endpointslices did not sync within {}s",
                    timeout.as_secs()
                ),
            }),
        }
    }

    /// A receiver whose value increases on every change seen by any watch (and once when
    /// all are synced): `changed().await` to be woken.
    pub fn changes(&self) -> channel::Receiver<u64> {
        self.changes.clone()
    }

    /// The pods, reduced to what attribution reads.
    pub fn pods(&self) -> &PodCache {
        &self.reader.pods
    }

    /// Read access for another thread.
    pub fn reader(&self) -> ClusterReader {
        self.reader.clone()
    }

    /// See [`ClusterReader::snapshot`].
    pub fn snapshot(&self) -> SharedObjects {
        self.reader.snapshot()
    }
}

impl ClusterReader {
    /// Watches Services, and EndpointSlices once the Services are in (a slice of a Service
    /// with a selector is kept without its endpoints, see [`super::watch_slices`]); a Service
    /// that turns out to have no selector has its slices read again whole.
    fn spawn_service_watches(
        &self,
        client: &kube::Client,
        changes: &channel::Sender<u64>,
        (services_synced, mut services_ready): (channel::Sender<bool>, channel::Receiver<bool>),
        slices_synced: channel::Sender<bool>,
    ) -> [JoinHandle<()>; 3] {
        let (refetch_tx, refetch_rx) = mpsc::unbounded_channel();
        let (services, slices) = (self.services.clone(), self.endpoint_slices.clone());
        let watch_services = spawn_cache_watch(
            client,
            move |event: watcher::Event<Service>| {
                let recheck = Recheck::of(&event);
                let changed = services.apply(event, reduce_service);
                for key in watch_slices::to_refetch(recheck, &services, &slices) {
                    let _ = refetch_tx.send(key);
                }
                changed
            },
            changes.clone(),
            services_synced,
        );
        let (services, slices) = (self.services.clone(), self.endpoint_slices.clone());
        let watch = run_cache_watch::<EndpointSlice>(
            client.clone(),
            move |event| slices.apply(event, |s| watch_slices::reduce_slice(&services, s)),
            changes.clone(),
            slices_synced,
        );
        let watch_slices = tokio::spawn(async move {
            if services_ready.wait_for(|s| *s).await.is_ok() {
                watch.await;
            }
        });
        let refetch = tokio::spawn(watch_slices::refetch(
            client.clone(),
            self.services.clone(),
            self.endpoint_slices.clone(),
            refetch_rx,
            changes.clone(),
        ));
        [watch_services, watch_slices, refetch]
    }

    /// The pods, reduced to what attribution reads.
    pub fn pods(&self) -> &PodCache {
        &self.pods
    }

    /// The current objects, shared with the caches (no deep copy), sorted by namespace and
    /// name.
    pub fn snapshot(&self) -> SharedObjects {
        SharedObjects {
            namespaces: self
                .namespaces
                .values()
                .iter()
                .map(|ns| NamespaceInfo::clone(ns))
                .collect(),
            pods: self.pods.pods().iter().map(|p| std::sync::Arc::clone(&p.info)).collect(),
            policies: self
                .network_policies
                .values()
                .iter()
                .map(|p| (std::sync::Arc::clone(&p.0), std::sync::Arc::clone(&p.1)))
                .collect(),
            services: self.services.values(),
            endpoint_slices: self.endpoint_slices.values(),
            tiered: self.policy_kinds.objects(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fake_apiserver::FakeApiServer;
    use serde_json::json;

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn syncs_trims_and_follows_updates() {
        let fake = FakeApiServer::start().await;
        crate::k8s::list::tests::seed(&fake);
        fake.modify("pods", "app", "web-1", |p| {
            p["metadata"]["managedFields"] = json!([{"manager": "kubectl", "operation": "Update"}]);
            p["metadata"]["annotations"] =
                json!({"kubectl.kubernetes.io/last-applied-configuration": "{...}"});
            p["spec"]["containers"][0]["env"] = json!([{"name": "A", "value": "b"}]);
        });
        let cache = ClusterCache::start(&fake.client());
        let mut changes = cache.changes();
        cache.wait_synced(WAIT).await.unwrap();
        assert!(cache.is_synced());
        let objects = cache.snapshot();
        assert_eq!(
            (objects.namespaces.len(), objects.pods.len(), objects.policies.len()),
            (2, 2, 1)
        );
        assert_eq!((objects.services.len(), objects.endpoint_slices.len()), (1, 1));
        let mysql_info = cache.pods().get("db", "mysql-0").unwrap().info.clone();
        assert!(
            objects.pods.iter().any(|p| std::sync::Arc::ptr_eq(p, &mysql_info)),
            "the snapshot shares the cache's pods"
        );
        let mysql = cache.pods().get("db", "mysql-0").unwrap();
        assert!(!mysql.info.ports.is_empty(), "named ports are kept");

        changes.borrow_and_update();
        fake.modify("networkpolicies", "db", "mysql-ingress", |np| {
            np["spec"]["ingress"][0]["ports"][0]["port"] = json!(3306);
        });
        tokio::time::timeout(WAIT, async {
            loop {
                changes.changed().await.unwrap();
                let raw: Vec<_> = cache
                    .snapshot()
                    .policies
                    .into_iter()
                    .map(|p| p.1.raw_json().into_owned())
                    .collect();
                if raw[0]["spec"]["ingress"][0]["ports"][0]["port"] == 3306 {
                    break;
                }
            }
        })
        .await
        .expect("the update came through the watch");
        fake.remove("pods", "app", "web-1");
        tokio::time::timeout(WAIT, async {
            while cache.pods().len() != 1 {
                changes.changed().await.unwrap();
            }
        })
        .await
        .expect("the deletion came through the watch");
    }

    #[tokio::test]
    async fn relists_after_the_watch_history_expires() {
        let fake = FakeApiServer::start().await;
        crate::k8s::list::tests::seed(&fake);
        let cache = ClusterCache::start(&fake.client());
        cache.wait_synced(WAIT).await.unwrap();
        fake.compact();
        fake.insert(json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "deny-all", "namespace": "app"}, "spec": {"podSelector": {}}}));
        tokio::time::timeout(WAIT, async {
            while cache.snapshot().policies.len() != 2 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the new policy arrived");
    }
}

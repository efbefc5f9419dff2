//! Live cluster state: pods in the reduced [`PodCache`], one reflector per other kind with
//! objects trimmed to what analysis reads, a change counter, and `synced` once every store has
//! its first full list. Another watched kind is one more `spawn_reflector` and its store.

use std::fmt::Debug;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch as channel;
use tokio::task::JoinHandle;

use super::error::{Error, Result};
use super::pods::PodCache;
use super::watch_kinds::{PolicyKindWatches, RECHECK_INTERVAL};
use crate::inventory::{ClusterObjects, PolicySource, SourcedPolicy};

/// Annotations that are kept when objects are trimmed; every other annotation is dropped.
pub const KEPT_ANNOTATIONS: &[&str] = &[];

/// Drops what no analysis reads: managed fields, annotations, and for pods the bulky parts of
/// the spec and status (volumes, env, probes, conditions...). Kept: labels, ownership,
/// container ports (named ports), node, host network, phase and pod IPs.
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

/// [`trim_object`] plus the pod-specific trimming.
pub fn trim_pod(pod: &mut Pod) {
    trim_object(pod);
    if let Some(spec) = pod.spec.as_mut() {
        spec.volumes = None;
        spec.init_containers = None;
        spec.ephemeral_containers = None;
        spec.affinity = None;
        spec.tolerations = None;
        for c in &mut spec.containers {
            c.env = None;
            c.env_from = None;
            c.volume_mounts = None;
            c.resources = None;
            c.liveness_probe = None;
            c.readiness_probe = None;
            c.startup_probe = None;
            c.command = None;
            c.args = None;
            c.security_context = None;
        }
    }
    if let Some(status) = pod.status.as_mut() {
        status.conditions = None;
        status.container_statuses = None;
        status.init_container_statuses = None;
        status.ephemeral_container_statuses = None;
    }
}

/// Read access to the caches, cheap to clone and to send to a worker thread.
#[derive(Clone)]
pub struct ClusterReader {
    namespaces: Store<Namespace>,
    pods: PodCache,
    network_policies: Store<NetworkPolicy>,
    services: Store<Service>,
    endpoint_slices: Store<EndpointSlice>,
    policy_kinds: PolicyKindWatches,
}

/// Reflectors for Namespaces, NetworkPolicies, Services and EndpointSlices, and the pod cache.
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

fn spawn_reflector<K>(
    client: &kube::Client,
    trim: fn(&mut K),
    changes: channel::Sender<u64>,
) -> (Store<K>, JoinHandle<()>)
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let api: Api<K> = Api::all(client.clone());
    let stream =
        watcher(api, watcher::Config::default()).default_backoff().modify(trim).reflect(writer);
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                Ok(_) => changes.send_modify(|n| *n += 1),
                // The watcher retries with backoff; the error is worth a line, not a stop.
                Err(e) => {
                    tracing::warn!(kind = %K::kind(&()), error = %e, "watch failed, retrying")
                }
            }
        }
    });
    (reader, task)
}

impl ClusterCache {
    /// Starts the five reflectors on the current tokio runtime; they run until the cache is
    /// dropped.
    pub fn start(client: &kube::Client) -> Self {
        let (changes_tx, changes) = channel::channel(0u64);
        let (namespaces, t1) = spawn_reflector(client, trim_object, changes_tx.clone());
        let pods = PodCache::default();
        let (pods_synced_tx, mut pods_synced) = channel::channel(false);
        let t2 = pods.spawn_watch(client, changes_tx.clone(), pods_synced_tx);
        let (network_policies, t3) = spawn_reflector(client, trim_object, changes_tx.clone());
        let (services, t4) = spawn_reflector(client, trim_object, changes_tx.clone());
        let (endpoint_slices, t5) = spawn_reflector(client, trim_object, changes_tx.clone());
        let (policy_kinds, t7) =
            PolicyKindWatches::start(client, changes_tx.clone(), RECHECK_INTERVAL);
        let kinds = policy_kinds.clone();
        let (synced_tx, synced) = channel::channel(false);
        let stores = (
            namespaces.clone(),
            network_policies.clone(),
            services.clone(),
            endpoint_slices.clone(),
        );
        let t6 = tokio::spawn(async move {
            let ready = tokio::try_join!(
                async { stores.0.wait_until_ready().await.map_err(|_| ()) },
                async { pods_synced.wait_for(|s| *s).await.map(|_| ()).map_err(|_| ()) },
                async { stores.1.wait_until_ready().await.map_err(|_| ()) },
                async { stores.2.wait_until_ready().await.map_err(|_| ()) },
                async { stores.3.wait_until_ready().await.map_err(|_| ()) },
                async {
                    kinds.wait_ready().await;
                    Ok(())
                },
            );
            if ready.is_ok() {
                let _ = synced_tx.send(true);
                changes_tx.send_modify(|n| *n += 1);
            }
        });
        Self {
            reader: ClusterReader {
                namespaces,
                pods,
                network_policies,
                services,
                endpoint_slices,
                policy_kinds,
            },
            changes,
            synced,
            tasks: vec![t1, t2, t3, t4, t5, t6, t7],
        }
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

    /// A receiver whose value increases on every change seen by any reflector (and once when
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
    pub fn snapshot(&self) -> ClusterObjects {
        self.reader.snapshot()
    }
}

impl ClusterReader {
    /// The pods, reduced to what attribution reads.
    pub fn pods(&self) -> &PodCache {
        &self.pods
    }

    /// The current objects but pods (see [`Self::pods`]), as plain vectors sorted by namespace
    /// and name.
    pub fn snapshot(&self) -> ClusterObjects {
        fn sorted<K: Resource<DynamicType = ()> + Clone>(store: &Store<K>) -> Vec<K> {
            let mut items: Vec<K> = store.state().iter().map(|o| (**o).clone()).collect();
            items.sort_by_key(|o| (o.namespace(), o.name_any()));
            items
        }
        let network_policies = sorted(&self.network_policies)
            .into_iter()
            .filter_map(|policy| {
                let raw = serde_json::to_value(&policy).ok()?;
                Some(SourcedPolicy { policy, raw, source: PolicySource::Cluster })
            })
            .collect();
        ClusterObjects {
            namespaces: sorted(&self.namespaces),
            pods: Vec::new(),
            network_policies,
            services: sorted(&self.services),
            endpoint_slices: sorted(&self.endpoint_slices),
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
            (objects.namespaces.len(), cache.pods().len(), objects.network_policies.len()),
            (2, 2, 1)
        );
        assert!(objects.pods.is_empty(), "pods live in the reduced cache only");
        assert_eq!((objects.services.len(), objects.endpoint_slices.len()), (1, 1));
        let mysql = cache.pods().get("db", "mysql-0").unwrap();
        assert!(!mysql.info.ports.is_empty(), "named ports are kept");

        changes.borrow_and_update();
        fake.modify("networkpolicies", "db", "mysql-ingress", |np| {
            np["spec"]["ingress"][0]["ports"][0]["port"] = json!(3306);
        });
        tokio::time::timeout(WAIT, async {
            loop {
                changes.changed().await.unwrap();
                let raw: Vec<_> =
                    cache.snapshot().network_policies.into_iter().map(|p| p.raw).collect();
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
            while cache.snapshot().network_policies.len() != 2 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the new policy arrived");
    }
}

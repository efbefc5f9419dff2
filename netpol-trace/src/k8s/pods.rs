//! The agent's pod cache: every pod reduced, on arrival, to what attribution reads
//! ([`PodInfo`]: namespace, name, labels, IPs, named ports, service account) plus its UID and
//! owner, kept in a map updated by each watch event. The full objects are never stored, so
//! memory is proportional to what attribution needs, not to the size of the pod specs.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use tokio::sync::watch as channel;
use tokio::task::JoinHandle;

use super::reduced::spawn_cache_watch;
use crate::inventory::{DEFAULT_NAMESPACE, Interner, PodInfo, PodRef};

/// A pod as the agent keeps it.
#[derive(Debug, Clone)]
pub struct CachedPod {
    /// What policies read (shared with the inventories built from the cache).
    pub info: Arc<PodInfo>,
    /// `metadata.uid` (Events name the pod by it; records are keyed on it).
    pub uid: Option<String>,
    /// `kind/name` of the controlling owner (`ReplicaSet/web-7d9f8b6c5`), if any (shared by
    /// the pods of one owner).
    pub owner: Option<Arc<str>>,
    /// The workload the pod belongs to, `(kind, name)` ([`workload_of`]; shared).
    pub workload: (Arc<str>, Arc<str>),
}

/// The workload a pod belongs to: `(kind, name)` from its controller owner reference. A pod
/// of a ReplicaSet whose name is `<deployment>-<pod-template-hash>` belongs to that Deployment;
/// a pod without a controller is its own workload (`Pod`).
pub fn workload_of(pod: &Pod) -> (String, String) {
    let meta = &pod.metadata;
    let name = meta.name.clone().unwrap_or_default();
    let Some(owner) = meta.owner_references.iter().flatten().find(|o| o.controller == Some(true))
    else {
        return ("Pod".into(), name);
    };
    if owner.kind == "ReplicaSet" {
        let hash = meta.labels.as_ref().and_then(|l| l.get("pod-template-hash"));
        if let Some(deployment) = hash
            .and_then(|h| owner.name.strip_suffix(h.as_str()))
            .and_then(|d| d.strip_suffix('-'))
            .filter(|d| !d.is_empty())
        {
            return ("Deployment".into(), deployment.into());
        }
    }
    (owner.kind.clone(), owner.name.clone())
}

impl CachedPod {
    /// Reduces `pod`, its label set and port list shared through `interner`.
    pub fn from_pod(pod: &Pod, interner: &mut Interner) -> Self {
        let owner = pod.metadata.owner_references.as_ref().and_then(|owners| {
            let o = owners.iter().find(|o| o.controller == Some(true))?;
            Some(format!("{}/{}", o.kind, o.name))
        });
        let (kind, name) = workload_of(pod);
        Self {
            info: Arc::new(PodInfo::from_pod_interned(pod, DEFAULT_NAMESPACE, interner)),
            uid: pod.metadata.uid.clone(),
            owner: owner.map(|o| interner.name(&o)),
            workload: (interner.name(&kind), interner.name(&name)),
        }
    }

    /// Heap bytes held by the entry alone (strings and collections, approximately; the shared
    /// label set and port list are counted by the cache, once): what the churn test compares,
    /// independent of the allocator.
    pub fn heap_bytes(&self) -> usize {
        let i = &self.info;
        i.pod.namespace.len()
            + i.pod.name.len()
            + i.service_account.len()
            + i.ips.len() * std::mem::size_of::<std::net::IpAddr>()
            + self.uid.as_ref().map_or(0, String::len)
    }
}

/// A cached pod, hashed and compared by namespace and name: the set is keyed by the pod's
/// own [`PodRef`], not by a copy of it.
#[derive(Debug, Clone)]
struct Entry(Arc<CachedPod>);

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.0.info.pod == other.0.info.pod
    }
}

impl Eq for Entry {}

impl Hash for Entry {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.info.pod.hash(state);
    }
}

impl Borrow<PodRef> for Entry {
    fn borrow(&self) -> &PodRef {
        &self.0.info.pod
    }
}

#[derive(Debug, Default)]
struct Pods {
    live: HashSet<Entry>,
    /// The list being received after a (re)start of the watch; swapped in when complete.
    relist: Option<HashSet<Entry>>,
    /// The label sets and port lists the pods share.
    interner: Interner,
}

impl Pods {
    fn release(&mut self, pod: &CachedPod) {
        self.interner.release(&pod.info.labels, &pod.info.ports);
        if let Some(owner) = &pod.owner {
            self.interner.release_name(owner);
        }
        self.interner.release_name(&pod.workload.0);
        self.interner.release_name(&pod.workload.1);
    }
}

/// Pods by namespace and name, updated in place from watch events.
#[derive(Debug, Clone, Default)]
pub struct PodCache {
    pods: Arc<RwLock<Pods>>,
}

impl PodCache {
    /// Applies one watch event; true when the cache changed (a full list counts once, when it
    /// completes).
    pub fn apply(&self, event: watcher::Event<Pod>) -> bool {
        let mut pods = self.pods.write().unwrap_or_else(|e| e.into_inner());
        match event {
            watcher::Event::Init => {
                pods.relist = Some(HashSet::with_capacity(pods.live.len()));
                false
            }
            watcher::Event::InitApply(pod) => {
                let pod = CachedPod::from_pod(&pod, &mut pods.interner);
                let previous =
                    pods.relist.get_or_insert_with(HashSet::new).replace(Entry(Arc::new(pod)));
                if let Some(previous) = previous {
                    pods.release(&previous.0);
                }
                false
            }
            watcher::Event::InitDone => {
                let mut fresh = pods.relist.take().unwrap_or_default();
                fresh.shrink_to_fit();
                let stale = std::mem::replace(&mut pods.live, fresh);
                for pod in &stale {
                    pods.release(&pod.0);
                }
                true
            }
            watcher::Event::Apply(pod) => {
                let pod = CachedPod::from_pod(&pod, &mut pods.interner);
                let previous = pods.live.replace(Entry(Arc::new(pod)));
                if let Some(previous) = previous {
                    pods.release(&previous.0);
                }
                true
            }
            watcher::Event::Delete(pod) => {
                let meta = &pod.metadata;
                let namespace = meta.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
                let key = PodRef {
                    namespace: namespace.to_owned(),
                    name: meta.name.clone().unwrap_or_default(),
                };
                let removed = pods.live.take(&key);
                if let Some(previous) = &removed {
                    pods.release(&previous.0);
                }
                let removed = removed.is_some();
                // A map that shrank a lot gives its memory back.
                if pods.live.capacity() > 64 && pods.live.len() < pods.live.capacity() / 4 {
                    pods.live.shrink_to_fit();
                }
                removed
            }
        }
    }

    /// Number of pods.
    pub fn len(&self) -> usize {
        self.pods.read().unwrap_or_else(|e| e.into_inner()).live.len()
    }

    /// Whether there is no pod.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate heap bytes of the entries (see [`CachedPod::heap_bytes`]) and of the label
    /// sets and port lists they share.
    pub fn heap_bytes(&self) -> usize {
        let pods = self.pods.read().unwrap_or_else(|e| e.into_inner());
        pods.live.iter().map(|p| p.0.heap_bytes()).sum::<usize>() + pods.interner.heap_bytes()
    }

    /// How many distinct label sets and port lists the pods share.
    pub fn shared_values(&self) -> (usize, usize) {
        self.pods.read().unwrap_or_else(|e| e.into_inner()).interner.counts()
    }

    /// Every pod (shared entries, no deep copy).
    pub fn pods(&self) -> Vec<Arc<CachedPod>> {
        let pods = self.pods.read().unwrap_or_else(|e| e.into_inner());
        pods.live.iter().map(|p| Arc::clone(&p.0)).collect()
    }

    /// Pod `namespace/name`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<CachedPod>> {
        let pods = self.pods.read().unwrap_or_else(|e| e.into_inner());
        let key = PodRef { namespace: namespace.to_owned(), name: name.to_owned() };
        pods.live.get(&key).map(|p| Arc::clone(&p.0))
    }

    /// Watches every pod of the cluster into this cache; `changed` is bumped on each change and
    /// `synced` set once the first full list is in.
    pub fn spawn_watch(
        &self,
        client: &kube::Client,
        changed: channel::Sender<u64>,
        synced: channel::Sender<bool>,
    ) -> JoinHandle<()> {
        let cache = self.clone();
        spawn_cache_watch(
            client,
            move |event: watcher::Event<Pod>| cache.apply(event),
            changed,
            synced,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, app: &str, ip: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "ns", "uid": format!("u-{name}"),
            "labels": {"app": app},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "r", "controller": true}]},
            "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 80}]}]},
            "status": {"podIP": ip}}))
        .unwrap()
    }

    #[test]
    fn events_update_entries_in_place() {
        let cache = PodCache::default();
        cache.apply(watcher::Event::Init);
        cache.apply(watcher::Event::InitApply(pod("a", "web", "10.0.0.1")));
        assert!(cache.is_empty(), "a list in progress is not visible");
        assert!(cache.apply(watcher::Event::InitDone));
        assert_eq!(cache.len(), 1);
        let a = cache.get("ns", "a").unwrap();
        assert_eq!(a.uid.as_deref(), Some("u-a"));
        assert_eq!(a.owner.as_deref(), Some("ReplicaSet/rs"));
        assert_eq!(a.info.ports[0].name.as_deref(), Some("http"));

        assert!(cache.apply(watcher::Event::Apply(pod("a", "db", "10.0.0.1"))));
        assert_eq!(cache.get("ns", "a").unwrap().info.labels["app"], "db", "relabelled");
        assert!(cache.apply(watcher::Event::Delete(pod("a", "db", "10.0.0.1"))));
        assert!(cache.is_empty());
        assert!(!cache.apply(watcher::Event::Delete(pod("a", "db", "10.0.0.1"))), "already gone");
    }

    #[test]
    fn a_relist_replaces_what_disappeared_meanwhile() {
        let cache = PodCache::default();
        cache.apply(watcher::Event::Apply(pod("a", "web", "10.0.0.1")));
        cache.apply(watcher::Event::Apply(pod("b", "web", "10.0.0.2")));
        cache.apply(watcher::Event::Init);
        cache.apply(watcher::Event::InitApply(pod("b", "web", "10.0.0.2")));
        assert_eq!(cache.len(), 2, "the old view serves until the new list is complete");
        cache.apply(watcher::Event::InitDone);
        assert_eq!(cache.len(), 1);
        assert!(cache.get("ns", "a").is_none());
    }

    #[tokio::test]
    async fn churn_returns_the_cache_to_its_baseline_size() {
        let fake = fake_apiserver::FakeApiServer::start().await;
        crate::k8s::list::tests::seed(&fake);
        let cache = PodCache::default();
        let (changed, mut changes) = channel::channel(0u64);
        let (synced, mut synced_rx) = channel::channel(false);
        let task = cache.spawn_watch(&fake.client(), changed, synced);
        let wait = std::time::Duration::from_secs(10);
        tokio::time::timeout(wait, synced_rx.wait_for(|s| *s)).await.unwrap().unwrap();
        let (baseline_len, baseline_bytes) = (cache.len(), cache.heap_bytes());
        for round in 0..20 {
            for i in 0..25 {
                fake.insert(json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("churn-{round}-{i}"), "namespace": "app",
                                 "uid": format!("c-{round}-{i}"), "labels": {"app": "batch", "run": format!("r{round}")}},
                    "spec": {"containers": [{"name": "c"}]},
                    "status": {"podIP": format!("10.9.{round}.{i}")}}));
            }
            for i in 0..25 {
                fake.remove("pods", "app", &format!("churn-{round}-{i}"));
            }
        }
        // The first list counts one change, then 20 rounds of 25 pods created and deleted
        // count 1,000.
        tokio::time::timeout(wait, changes.wait_for(|n| *n >= 1001))
            .await
            .expect("every creation and deletion came through the watch")
            .unwrap();
        assert_eq!(cache.len(), baseline_len);
        assert_eq!(cache.heap_bytes(), baseline_bytes, "no entry or string left behind");
        task.abort();
    }
}

//! A cache of one kind of object, each reduced on arrival to what the agent reads (`T`) and
//! kept by namespace and name, updated in place by each watch event. The full objects are
//! never stored; a relist is collected aside and swapped in when complete.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch as channel;
use tokio::task::JoinHandle;

type Key = (String, String);

#[derive(Debug)]
struct Entries<T> {
    live: HashMap<Key, Arc<T>>,
    relist: Option<HashMap<Key, Arc<T>>>,
}

impl<T> Default for Entries<T> {
    fn default() -> Self {
        Self { live: HashMap::new(), relist: None }
    }
}

/// Reduced objects by namespace and name; cheap to clone (shared).
#[derive(Debug)]
pub struct ReducedCache<T> {
    entries: Arc<RwLock<Entries<T>>>,
}

impl<T> Clone for ReducedCache<T> {
    fn clone(&self) -> Self {
        Self { entries: Arc::clone(&self.entries) }
    }
}

impl<T> Default for ReducedCache<T> {
    fn default() -> Self {
        Self { entries: Arc::default() }
    }
}

fn key_of<K: Resource>(obj: &K) -> Key {
    (obj.namespace().unwrap_or_default(), obj.name_any())
}

impl<T> ReducedCache<T> {
    /// Applies one watch event, reducing objects with `reduce` (an object it turns down is
    /// left out, and removed when it was there); true when the cache changed (a full list
    /// counts once, when it completes).
    pub fn apply<K: Resource>(
        &self,
        event: watcher::Event<K>,
        reduce: impl Fn(&K) -> Option<T>,
    ) -> bool {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        match event {
            watcher::Event::Init => {
                entries.relist = Some(HashMap::with_capacity(entries.live.len()));
                false
            }
            watcher::Event::InitApply(obj) => {
                if let Some(value) = reduce(&obj) {
                    entries
                        .relist
                        .get_or_insert_with(HashMap::new)
                        .insert(key_of(&obj), Arc::new(value));
                }
                false
            }
            watcher::Event::InitDone => {
                let mut fresh = entries.relist.take().unwrap_or_default();
                fresh.shrink_to_fit();
                entries.live = fresh;
                true
            }
            watcher::Event::Apply(obj) => {
                let key = key_of(&obj);
                match reduce(&obj) {
                    Some(value) => {
                        entries.live.insert(key, Arc::new(value));
                        true
                    }
                    None => entries.live.remove(&key).is_some(),
                }
            }
            watcher::Event::Delete(obj) => {
                let removed = entries.live.remove(&key_of(&obj)).is_some();
                if entries.live.capacity() > 64 && entries.live.len() < entries.live.capacity() / 4
                {
                    entries.live.shrink_to_fit();
                }
                removed
            }
        }
    }

    /// Number of objects.
    pub fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).live.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every object (shared, no deep copy), sorted by namespace and name.
    pub fn values(&self) -> Vec<Arc<T>> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<(&Key, &Arc<T>)> = entries.live.iter().collect();
        all.sort_unstable_by(|a, b| a.0.cmp(b.0));
        all.into_iter().map(|(_, v)| Arc::clone(v)).collect()
    }

    /// Object `namespace/name` (`""` for a cluster-scoped object's namespace).
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<T>> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries.live.get(&(namespace.to_owned(), name.to_owned())).cloned()
    }
}

impl<T: Send + Sync + 'static> ReducedCache<T> {
    /// Watches every object of kind `K` into this cache, trimmed by `reduce`; `changed` is
    /// bumped on each change and `synced` set once the first full list is in.
    pub fn spawn_watch<K>(
        &self,
        client: &kube::Client,
        reduce: impl Fn(&K) -> Option<T> + Send + 'static,
        changed: channel::Sender<u64>,
        synced: channel::Sender<bool>,
    ) -> JoinHandle<()>
    where
        K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    {
        let cache = self.clone();
        spawn_cache_watch(
            client,
            move |event: watcher::Event<K>| cache.apply(event, &reduce),
            changed,
            synced,
        )
    }
}

/// Watches every object of kind `K` and hands each event to `apply` (which says whether the
/// cache changed): a change bumps `changed`, the end of each (re)list sends `synced`. The
/// watcher retries with backoff; an error is worth a line, not a stop.
pub(crate) fn spawn_cache_watch<K>(
    client: &kube::Client,
    apply: impl FnMut(watcher::Event<K>) -> bool + Send + 'static,
    changed: channel::Sender<u64>,
    synced: channel::Sender<bool>,
) -> JoinHandle<()>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    tokio::spawn(run_cache_watch(client.clone(), apply, changed, synced))
}

/// The loop of [`spawn_cache_watch`], for a caller that starts it later.
pub(crate) async fn run_cache_watch<K>(
    client: kube::Client,
    mut apply: impl FnMut(watcher::Event<K>) -> bool + Send + 'static,
    changed: channel::Sender<u64>,
    synced: channel::Sender<bool>,
) where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    let api: Api<K> = Api::all(client);
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(event) => {
                let done = matches!(event, watcher::Event::InitDone);
                if apply(event) {
                    changed.send_modify(|n| *n += 1);
                }
                if done {
                    let _ = synced.send(true);
                }
            }
            Err(e) => {
                tracing::warn!(kind = %K::kind(&()), error = %e, "watch failed, retrying")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use serde_json::json;

    fn map(name: &str, value: &str) -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "ns"},
            "data": {"v": value}}))
        .unwrap()
    }

    fn value(cm: &ConfigMap) -> Option<String> {
        cm.data.as_ref()?.get("v").filter(|v| !v.is_empty()).cloned()
    }

    #[test]
    fn events_update_entries_and_a_relist_replaces_them() {
        let cache = ReducedCache::<String>::default();
        cache.apply(watcher::Event::Apply(map("a", "1")), value);
        cache.apply(watcher::Event::Apply(map("b", "2")), value);
        assert_eq!(cache.values().iter().map(|v| v.as_str()).collect::<Vec<_>>(), ["1", "2"]);
        assert!(cache.apply(watcher::Event::Apply(map("a", "")), value), "turned down: removed");
        assert!(cache.get("ns", "a").is_none());
        cache.apply(watcher::Event::Init, value);
        cache.apply(watcher::Event::InitApply(map("c", "3")), value);
        assert_eq!(cache.len(), 1, "the old view serves until the new list is complete");
        assert!(cache.apply(watcher::Event::InitDone, value));
        assert_eq!(cache.get("ns", "c").as_deref().map(String::as_str), Some("3"));
        assert!(cache.get("ns", "b").is_none());
        assert!(cache.apply(watcher::Event::Delete(map("c", "3")), value));
        assert!(cache.is_empty());
    }
}

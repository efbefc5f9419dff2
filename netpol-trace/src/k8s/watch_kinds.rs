//! Live copies of the other policy kinds (ClusterNetworkPolicy, AdminNetworkPolicy,
//! BaselineAdminNetworkPolicy, Calico NetworkPolicy, GlobalNetworkPolicy, Tier) for the
//! agent: one reflector over `DynamicObject` per kind the cluster serves, objects trimmed of
//! managed fields and annotations. Which kinds are served is asked again every
//! [`RECHECK_INTERVAL`], so a CRD installed later is picked up; a cluster without any of them
//! just has none.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use tokio::sync::watch as channel;
use tokio::task::JoinHandle;

use super::policy_kinds::{
    POLICY_KINDS, PolicyKindSpec, Served, add_object, find_served, object_name,
};
use super::watch::trim_object;
use crate::inventory::{PolicySource, TieredObjects};
use crate::policy::admin::compile_admin_policy;
use crate::policy::calico::{DEFAULT_TIER, compile_calico_policy, compile_tier};

/// How often the kinds not (yet) served are asked for again.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(60);

/// How long [`PolicyKindWatches::wait_ready`] waits at most.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// One watched kind.
struct Watched {
    spec: &'static PolicyKindSpec,
    resource: ApiResource,
    store: Store<DynamicObject>,
}

#[derive(Default)]
struct Shared {
    watched: Mutex<Vec<Watched>>,
    /// Objects already warned about (kind, name, resourceVersion), so that a rebuild on
    /// every change does not repeat the warning.
    warned: Mutex<HashSet<String>>,
}

/// Read access to the watched kinds; cheap to clone.
#[derive(Clone, Default)]
pub struct PolicyKindWatches {
    shared: Arc<Shared>,
    first_round: Option<channel::Receiver<bool>>,
}

/// Aborts a task when dropped (the reflectors stop with the task that started them).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl PolicyKindWatches {
    /// Starts asking which kinds are served (now, then every `recheck`) and watching those
    /// that are; every change (and each first full list) bumps `changes`. Aborting the
    /// returned task stops every watch.
    pub fn start(
        client: &kube::Client,
        changes: channel::Sender<u64>,
        recheck: Duration,
    ) -> (Self, JoinHandle<()>) {
        let shared = Arc::new(Shared::default());
        let (first_tx, first_rx) = channel::channel(false);
        let task =
            tokio::spawn(discover(client.clone(), shared.clone(), changes, recheck, first_tx));
        (Self { shared, first_round: Some(first_rx) }, task)
    }

    /// Waits until the first round of discovery is done and every kind found then has its
    /// first full list (returns at once for a value that was never started).
    /// Gives up after [`READY_TIMEOUT`] (a kind that can be listed but not watched must not
    /// hold the agent back: it goes on without it, the watch retrying).
    pub async fn wait_ready(&self) {
        let Some(first) = &self.first_round else { return };
        let ready = async {
            let _ = first.clone().wait_for(|done| *done).await;
            let stores: Vec<Store<DynamicObject>> =
                self.watched().iter().map(|w| w.store.clone()).collect();
            for store in stores {
                let _ = store.wait_until_ready().await;
            }
        };
        if tokio::time::timeout(READY_TIMEOUT, ready).await.is_err() {
            tracing::warn!(
                "the other policy kinds did not sync within {}s; going on without them for now",
                READY_TIMEOUT.as_secs()
            );
        }
    }

    /// The kinds watched now, `plural.group/version`.
    pub fn watched_resources(&self) -> Vec<String> {
        self.watched()
            .iter()
            .map(|w| format!("{}.{}/{}", w.resource.plural, w.resource.group, w.resource.version))
            .collect()
    }

    /// The current objects, ready for [`crate::inventory::TieredIndex::build`]: an object the
    /// engine cannot read or compile (the API server validated it, so only fields the engine
    /// does not know) is left out with a warning, as is a Calico policy in a tier that does
    /// not exist, rather than losing every other policy.
    pub fn objects(&self) -> TieredObjects {
        let mut objects = TieredObjects::default();
        for watched in self.watched().iter() {
            let mut items: Vec<Value> = watched
                .store
                .state()
                .iter()
                .filter_map(|o| serde_json::to_value(&**o).ok())
                .collect();
            items.sort_by_key(object_name);
            for mut raw in items {
                raw["apiVersion"] = json!(watched.resource.api_version);
                raw["kind"] = json!(watched.resource.kind);
                if let Err(e) =
                    add_object(&mut objects, watched.spec, raw.clone(), PolicySource::Cluster)
                {
                    self.warn_once(watched.spec, &raw, &e.to_string());
                }
            }
        }
        self.retain_valid(objects)
    }

    fn watched(&self) -> std::sync::MutexGuard<'_, Vec<Watched>> {
        self.shared.watched.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn warn_once(&self, spec: &PolicyKindSpec, raw: &Value, error: &str) {
        let version =
            raw.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or_default();
        let key = format!("{}/{}@{version}", spec.name(), object_name(raw));
        let mut warned = self.shared.warned.lock().unwrap_or_else(PoisonError::into_inner);
        if warned.insert(key) {
            tracing::warn!(kind = spec.kind, name = %object_name(raw), %error, "policy left out of attribution");
        }
    }

    /// Drops what [`crate::inventory::TieredIndex::build`] would refuse, one object at a time.
    fn retain_valid(&self, mut objects: TieredObjects) -> TieredObjects {
        let spec_of =
            |kind: &str| POLICY_KINDS.iter().find(|s| s.kind == kind).unwrap_or(&POLICY_KINDS[0]);
        objects.tiers.retain(|t| match compile_tier(&t.object) {
            Ok(_) => true,
            Err(e) => {
                self.warn_once(spec_of("Tier"), &t.raw, &e.to_string());
                false
            }
        });
        let mut tiers: HashSet<String> =
            objects.tiers.iter().filter_map(|t| t.object.metadata.name.clone()).collect();
        tiers.insert(DEFAULT_TIER.to_owned());
        objects.admin.retain(|p| match compile_admin_policy(&p.object) {
            Ok(_) => true,
            Err(e) => {
                self.warn_once(spec_of(&p.object.kind), &p.raw, &e.to_string());
                false
            }
        });
        objects.calico.retain(|p| {
            let spec = spec_of(&p.object.kind);
            match compile_calico_policy(&p.object, crate::inventory::DEFAULT_NAMESPACE) {
                Ok(policy) if tiers.contains(&policy.tier) => true,
                Ok(policy) => {
                    let error = format!("tier {:?} does not exist", policy.tier);
                    self.warn_once(spec, &p.raw, &error);
                    false
                }
                Err(e) => {
                    self.warn_once(spec, &p.raw, &e.to_string());
                    false
                }
            }
        });
        objects
    }
}

/// The discovery loop: each round asks for every kind not watched yet and starts a reflector
/// for those served. Owns the reflectors' tasks.
async fn discover(
    client: kube::Client,
    shared: Arc<Shared>,
    changes: channel::Sender<u64>,
    recheck: Duration,
    first_round: channel::Sender<bool>,
) {
    let mut tasks: Vec<AbortOnDrop> = Vec::new();
    let mut warned_forbidden: HashSet<&'static str> = HashSet::new();
    loop {
        for spec in &POLICY_KINDS {
            let watched = shared
                .watched
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .any(|w| w.spec == spec);
            if watched {
                continue;
            }
            match find_served(&client, spec).await {
                Ok(Served::Version(resource)) => {
                    tracing::info!(resource = %spec.name(), version = %resource.api_version, "watching this policy kind");
                    let (store, task) =
                        spawn_reflector(&client, resource.clone(), shared.clone(), changes.clone());
                    tasks.push(AbortOnDrop(task));
                    shared.watched.lock().unwrap_or_else(PoisonError::into_inner).push(Watched {
                        spec,
                        resource,
                        store,
                    });
                }
                Ok(Served::Absent) => {
                    tracing::debug!(resource = %spec.name(), "not served by this cluster; asking again later")
                }
                Ok(Served::Forbidden(e)) => {
                    if warned_forbidden.insert(spec.plural) {
                        tracing::warn!(resource = %spec.name(), error = %e, "cannot list this policy kind; attribution goes on without it");
                    } else {
                        tracing::debug!(resource = %spec.name(), "still forbidden");
                    }
                }
                Err(e) => {
                    tracing::warn!(resource = %spec.name(), error = %e, "cannot tell whether this policy kind is served; asking again later")
                }
            }
        }
        first_round.send_replace(true);
        tokio::time::sleep(recheck).await;
    }
}

/// Whether a watch failed because the resource is no longer served (its CRD was deleted).
fn not_served(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status)) => status.code == 404,
        _ => false,
    }
}

/// A reflector for one kind. When the kind stops being served, it forgets the kind (its
/// objects go with it, and the next discovery round asks for it again) and ends.
fn spawn_reflector(
    client: &kube::Client,
    resource: ApiResource,
    shared: Arc<Shared>,
    changes: channel::Sender<u64>,
) -> (Store<DynamicObject>, JoinHandle<()>) {
    let writer = reflector::store::Writer::new(resource.clone());
    let reader = writer.as_reader();
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(trim_object::<DynamicObject>)
        .reflect(writer);
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                Ok(_) => changes.send_modify(|n| *n += 1),
                Err(e) if not_served(&e) => {
                    tracing::info!(kind = %resource.kind, group = %resource.group, "no longer served; forgetting its objects");
                    shared
                        .watched
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .retain(|w| w.resource != resource);
                    changes.send_modify(|n| *n += 1);
                    return;
                }
                Err(e) => {
                    tracing::warn!(kind = %resource.kind, group = %resource.group, error = %e, "watch failed, retrying")
                }
            }
        }
    });
    (reader, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(kube::core::Status::failure("x", "y").with_code(code).boxed())
    }

    #[test]
    fn only_a_404_on_list_or_watch_start_means_no_longer_served() {
        assert!(not_served(&watcher::Error::InitialListFailed(api_error(404))));
        assert!(not_served(&watcher::Error::WatchStartFailed(api_error(404))));
        assert!(!not_served(&watcher::Error::InitialListFailed(api_error(403))));
        assert!(!not_served(&watcher::Error::WatchStartFailed(api_error(500))));
        assert!(!not_served(&watcher::Error::WatchFailed(api_error(404))));
    }
}

//! EndpointSlices as the agent keeps them. Attribution resolves the backends of a Service that
//! has a selector from the pods the selector picks, never from its slices, so a slice of such a
//! Service is kept without its endpoints (at cluster scale they are most of the slices' size).
//! The slices of a Service without a selector keep theirs. A Service that loses its selector
//! (or is seen without one after its slices were kept bare) has its slices read again; one
//! that gains a selector keeps its slices' endpoints until they next change (memory only:
//! attribution does not read them).

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ListParams;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use tokio::sync::{mpsc, watch as channel};

use super::reduced::ReducedCache;
use crate::inventory::{DEFAULT_NAMESPACE, SERVICE_NAME_LABEL, ServiceInfo, SliceInfo};

/// A Service by namespace and name.
type ServiceKey = (String, String);

/// Reduces `slice`, leaving its endpoints out when `services` holds its Service with a selector.
pub fn reduce_slice(
    services: &ReducedCache<ServiceInfo>,
    slice: &EndpointSlice,
) -> Option<SliceInfo> {
    let info = SliceInfo::from_slice(slice, DEFAULT_NAMESPACE)?;
    let selects = services
        .get(&info.namespace, &info.service)
        .is_some_and(|service| service.selector.is_some());
    Some(if selects { info.without_endpoints() } else { info })
}

/// What a Services watch event asks to check once applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recheck {
    /// Nothing (a deletion, or the start of a list).
    Nothing,
    /// This Service (an addition or a change).
    Service(ServiceKey),
    /// Every Service (a list completed).
    Every,
}

impl Recheck {
    /// What `event` asks to check.
    pub fn of(event: &watcher::Event<Service>) -> Self {
        match event {
            watcher::Event::Apply(service) => {
                let namespace = service.namespace().unwrap_or_else(|| DEFAULT_NAMESPACE.into());
                Self::Service((namespace, service.name_any()))
            }
            watcher::Event::InitDone => Self::Every,
            _ => Self::Nothing,
        }
    }
}

/// The Services whose slices must be read again, `recheck` being what the last event applied
/// to `services` touched: those held without a selector whose slices were kept without
/// endpoints.
pub fn to_refetch(
    recheck: Recheck,
    services: &ReducedCache<ServiceInfo>,
    slices: &ReducedCache<SliceInfo>,
) -> BTreeSet<ServiceKey> {
    let without_selector = |namespace: &str, name: &str| {
        services.get(namespace, name).is_some_and(|s| s.selector.is_none())
    };
    let bare = || slices.values().into_iter().filter(|s| s.endpoints_left_out);
    match recheck {
        Recheck::Service((namespace, name)) if without_selector(&namespace, &name) => bare()
            .filter(|s| s.namespace == namespace && s.service == name)
            .map(|s| (s.namespace.clone(), s.service.clone()))
            .collect(),
        Recheck::Every => bare()
            .filter(|s| without_selector(&s.namespace, &s.service))
            .map(|s| (s.namespace.clone(), s.service.clone()))
            .collect(),
        _ => BTreeSet::new(),
    }
}

/// How many times reading a Service's slices again is tried, the wait doubling from
/// [`REFETCH_BACKOFF`].
const REFETCH_ATTEMPTS: u32 = 5;

/// The first wait before reading a Service's slices again after a failure.
const REFETCH_BACKOFF: Duration = Duration::from_secs(1);

/// Reads again, for each Service received on `requests`, its slices (with their endpoints, as
/// the Service has no selector any more) into `slices`; bumps `changed` after each. A failed
/// read is retried with backoff.
pub async fn refetch(
    client: kube::Client,
    services: ReducedCache<ServiceInfo>,
    slices: ReducedCache<SliceInfo>,
    mut requests: mpsc::UnboundedReceiver<ServiceKey>,
    changed: channel::Sender<u64>,
) {
    while let Some((namespace, name)) = requests.recv().await {
        let api: Api<EndpointSlice> = Api::namespaced(client.clone(), &namespace);
        let params = ListParams::default().labels(&format!("{SERVICE_NAME_LABEL}={name}"));
        let mut wait = REFETCH_BACKOFF;
        for attempt in 1..=REFETCH_ATTEMPTS {
            match api.list(&params).await {
                Ok(list) => {
                    for slice in list.items {
                        slices.apply(watcher::Event::Apply(slice), |s| reduce_slice(&services, s));
                    }
                    changed.send_modify(|n| *n += 1);
                    break;
                }
                Err(e) => {
                    tracing::warn!(
                        namespace, service = name, attempt, error = %e,
                        "reading the EndpointSlices of a Service without a selector failed"
                    );
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use fake_apiserver::FakeApiServer;
    use serde_json::json;

    use crate::inventory::{Inventory, InventoryOptions};
    use crate::k8s::watch::ClusterCache;
    use crate::policy::Protocol;

    const WAIT: Duration = Duration::from_secs(10);

    /// The backends of Service db/mysql, by pod name.
    fn backends(inventory: &Inventory) -> Vec<String> {
        let backends = inventory.service_backends("db", "mysql", None, Protocol::Tcp).unwrap();
        backends.iter().map(|b| inventory.pod(b.pod).pod.to_string()).collect()
    }

    /// The backends as a build from scratch (every slice whole) resolves them.
    async fn from_scratch(fake: &FakeApiServer) -> Vec<String> {
        let objects = crate::manifest::load_cluster_with(fake.client()).await.unwrap();
        backends(&Inventory::from_objects(objects, InventoryOptions::default()).unwrap())
    }

    #[tokio::test]
    async fn slices_of_a_service_with_a_selector_are_kept_bare_until_the_selector_goes() {
        let fake = FakeApiServer::start().await;
        crate::k8s::list::tests::seed(&fake);
        // A stale endpoint: the slice still lists web-1, which the selector does not pick.
        fake.modify("services", "db", "mysql", |s| {
            s["spec"]["ports"][0]["targetPort"] = json!(3306)
        });
        fake.modify("endpointslices", "db", "mysql-abc", |s| {
            s["endpoints"].as_array_mut().unwrap().push(json!({"addresses": ["10.0.1.5"],
                "targetRef": {"kind": "Pod", "namespace": "app", "name": "web-1"}}));
        });
        let cache = ClusterCache::start(&fake.client());
        cache.wait_synced(WAIT).await.unwrap();
        let slice = || cache.snapshot().endpoint_slices[0].clone();
        assert!(slice().endpoints_left_out && slice().endpoints.is_empty(), "kept bare");
        let view = crate::agent::cluster::ClusterView::build(&cache.reader());
        assert_eq!(backends(&view.inventory), ["db/mysql-0"], "from the selector");
        assert_eq!(backends(&view.inventory), from_scratch(&fake).await);

        // Without its selector the Service's backends are its slices' endpoints: the slice is
        // read again whole (the first attempt fails and is retried).
        fake.fail_next("list", "endpointslices", 500);
        fake.modify("services", "db", "mysql", |s| {
            s["spec"].as_object_mut().unwrap().remove("selector");
        });
        let mut changes = cache.changes();
        tokio::time::timeout(WAIT, async {
            while slice().endpoints_left_out {
                let _ = changes.changed().await;
            }
        })
        .await
        .expect("the slice was read again");
        let reads: Vec<u16> = fake
            .requests()
            .iter()
            .filter(|r| r.path == "/apis/discovery.k8s.io/v1/namespaces/db/endpointslices")
            .map(|r| r.status)
            .collect();
        assert_eq!(reads, [500, 200], "read again after a failure");
        assert_eq!(slice().endpoints.len(), 2);
        let view = crate::agent::cluster::ClusterView::build(&cache.reader());
        assert_eq!(backends(&view.inventory), ["app/web-1", "db/mysql-0"], "from the slice");
        assert_eq!(backends(&view.inventory), from_scratch(&fake).await);
    }
}

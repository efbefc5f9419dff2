//! The other policy kinds read from the fake API server: listed in their newest served
//! version, absent when their CRDs are not installed, skipped when forbidden; watched by the
//! agent's cache, also when a CRD arrives later; and named by the agent's attribution.

use std::net::SocketAddr;
use std::time::Duration;

use fake_apiserver::FakeApiServer;
use serde_json::{Value, json};
use tokio::sync::watch as channel;

use super::{WAIT, within};
use crate::agent::{Agent, AgentOptions};
use crate::k8s::watch::ClusterCache;
use crate::k8s::watch_kinds::PolicyKindWatches;
use crate::manifest::load_cluster_with;
use crate::policy::PolicyKind;
use crate::trace::flows::ConnKey;
use crate::trace::{EventSource, TraceEvent, TracerMessage};

/// Installs a CustomResourceDefinition without a schema (nothing pruned) serving `versions`.
pub(crate) fn install_crd(
    fake: &FakeApiServer,
    group: &str,
    plural: &str,
    kind: &str,
    namespaced: bool,
    versions: &[&str],
) {
    let versions: Vec<Value> = versions
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"name": v, "served": true, "storage": i == 0}))
        .collect();
    fake.insert(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {"group": group, "scope": if namespaced { "Namespaced" } else { "Cluster" },
                 "names": {"plural": plural, "kind": kind}, "versions": versions},
    }));
}

/// The network-policy-api CRDs (ClusterNetworkPolicy in v1alpha2 and v1beta1).
pub(crate) fn install_network_policy_api(fake: &FakeApiServer) {
    let group = "policy.networking.k8s.io";
    install_crd(
        fake,
        group,
        "clusternetworkpolicies",
        "ClusterNetworkPolicy",
        false,
        &["v1alpha2", "v1beta1"],
    );
    install_crd(fake, group, "adminnetworkpolicies", "AdminNetworkPolicy", false, &["v1alpha1"]);
    install_crd(
        fake,
        group,
        "baselineadminnetworkpolicies",
        "BaselineAdminNetworkPolicy",
        false,
        &["v1alpha1"],
    );
}

/// Calico's kinds in `projectcalico.org/v3`.
pub(crate) fn install_calico(fake: &FakeApiServer) {
    let group = "projectcalico.org";
    install_crd(fake, group, "networkpolicies", "NetworkPolicy", true, &["v3"]);
    install_crd(fake, group, "globalnetworkpolicies", "GlobalNetworkPolicy", false, &["v3"]);
    install_crd(fake, group, "tiers", "Tier", false, &["v3"]);
}

/// A GlobalNetworkPolicy denying ingress to mysql from web, ordered before every Kubernetes
/// NetworkPolicy of the default tier.
fn deny_web_to_mysql() -> Value {
    json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "deny-web-to-mysql",
                     "managedFields": [{"manager": "calicoctl", "operation": "Update"}],
                     "annotations": {"note": "dropped when trimmed"}},
        "spec": {"order": 10, "selector": "app == 'mysql'", "types": ["Ingress"],
                 "ingress": [{"action": "Deny", "protocol": "TCP",
                              "source": {"selector": "app == 'web'"}}]}})
}

/// A ClusterNetworkPolicy (admin tier) denying ingress to db from app.
fn admin_deny_app_to_db(api_version: &str) -> Value {
    json!({"apiVersion": api_version, "kind": "ClusterNetworkPolicy",
        "metadata": {"name": "db-lockdown"},
        "spec": {"tier": "Admin", "priority": 5,
                 "subject": {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "db"}}},
                 "ingress": [{"name": "no-app", "action": "Deny",
                              "from": [{"namespaces": {"matchLabels":
                                  {"kubernetes.io/metadata.name": "app"}}}]}]}})
}

fn seed_policies(fake: &FakeApiServer) {
    crate::k8s::list::tests::seed(fake);
    install_network_policy_api(fake);
    install_calico(fake);
    fake.insert(deny_web_to_mysql());
    fake.insert(admin_deny_app_to_db("policy.networking.k8s.io/v1beta1"));
    fake.insert(json!({"apiVersion": "policy.networking.k8s.io/v1alpha1",
        "kind": "BaselineAdminNetworkPolicy", "metadata": {"name": "default"},
        "spec": {"subject": {"namespaces": {}},
                 "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}]}}));
    fake.insert(json!({"apiVersion": "projectcalico.org/v3", "kind": "Tier",
        "metadata": {"name": "security"}, "spec": {"order": 100}}));
    fake.insert(json!({"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
        "metadata": {"name": "security.allow-dns", "namespace": "app"},
        "spec": {"tier": "security", "order": 1, "selector": "all()", "types": ["Egress"],
                 "egress": [{"action": "Allow", "protocol": "UDP",
                             "destination": {"ports": [53]}}]}}));
    // Calico's view of a Kubernetes NetworkPolicy: read as the NetworkPolicy itself.
    fake.insert(json!({"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
        "metadata": {"name": "knp.default.mysql-ingress", "namespace": "db"},
        "spec": {"tier": "default", "order": 1000, "selector": "all()"}}));
}

fn list_paths(fake: &FakeApiServer) -> Vec<(String, u16)> {
    fake.requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/apis/") && !r.is_watch())
        .map(|r| (r.path, r.status))
        .collect()
}

#[tokio::test]
async fn live_load_reads_every_served_kind_in_its_newest_version() {
    let fake = FakeApiServer::start().await;
    seed_policies(&fake);
    let objects = within(load_cluster_with(fake.client())).await.unwrap();
    let tiered = &objects.tiered;
    let mut admin: Vec<(&str, &str)> = tiered
        .admin
        .iter()
        .map(|p| (p.object.kind.as_str(), p.object.api_version.as_str()))
        .collect();
    admin.sort();
    assert_eq!(
        admin,
        [
            ("BaselineAdminNetworkPolicy", "policy.networking.k8s.io/v1alpha1"),
            ("ClusterNetworkPolicy", "policy.networking.k8s.io/v1beta1"),
        ]
    );
    let mut calico: Vec<String> = tiered
        .calico
        .iter()
        .map(|p| format!("{} {}", p.object.kind, crate::k8s::policy_kinds::object_name(&p.raw)))
        .collect();
    calico.sort();
    assert_eq!(
        calico,
        ["GlobalNetworkPolicy deny-web-to-mysql", "NetworkPolicy app/security.allow-dns"]
    );
    assert_eq!(tiered.tiers.len(), 1);
    assert_eq!(tiered.calico[0].raw["apiVersion"], "projectcalico.org/v3");
    let paths = list_paths(&fake);
    assert!(
        paths.contains(&(
            "/apis/policy.networking.k8s.io/v1beta1/clusternetworkpolicies".into(),
            200
        )),
        "{paths:?}"
    );
    assert!(
        !paths.iter().any(|(p, _)| p.contains("v1alpha2")),
        "v1beta1 is preferred when both are served: {paths:?}"
    );
    assert!(
        paths.iter().all(|(p, _)| !p.starts_with("/apis/crd.projectcalico.org")),
        "the CRD form is not read when projectcalico.org/v3 is served: {paths:?}"
    );
    // The engine takes them as read.
    let inventory = crate::inventory::Inventory::from_objects(objects, Default::default()).unwrap();
    assert!(!inventory.tiered().is_empty());
}

#[tokio::test]
async fn live_load_without_the_crds_has_none_and_no_error() {
    let fake = FakeApiServer::start().await;
    crate::k8s::list::tests::seed(&fake);
    let objects = within(load_cluster_with(fake.client())).await.unwrap();
    assert!(objects.tiered.is_empty());
    assert_eq!(objects.network_policies.len(), 1);
    let not_found: Vec<String> =
        list_paths(&fake).into_iter().filter(|(_, s)| *s == 404).map(|(p, _)| p).collect();
    // Every version of every kind was asked for: 2 + 1 + 1 + 3 × 2.
    assert_eq!(not_found.len(), 10, "{not_found:?}");
    assert!(not_found.contains(&"/apis/crd.projectcalico.org/v1/globalnetworkpolicies".into()));
}

#[tokio::test]
async fn live_load_skips_a_forbidden_kind_and_reads_the_others() {
    let fake = FakeApiServer::start().await;
    seed_policies(&fake);
    fake.forbid("list", "globalnetworkpolicies");
    let objects = within(load_cluster_with(fake.client())).await.unwrap();
    let kinds: Vec<&str> = objects.tiered.calico.iter().map(|p| p.object.kind.as_str()).collect();
    assert_eq!(kinds, ["NetworkPolicy"], "the GlobalNetworkPolicy is not readable");
    assert_eq!(objects.tiered.admin.len(), 2);
    assert!(
        list_paths(&fake)
            .iter()
            .all(|(p, _)| !p.ends_with("crd.projectcalico.org/v1/globalnetworkpolicies")),
        "a 403 is not a reason to try another version"
    );
}

#[tokio::test]
async fn the_cache_watches_a_kind_whose_crd_arrives_later() {
    let fake = FakeApiServer::start().await;
    crate::k8s::list::tests::seed(&fake);
    let (changes_tx, mut changes) = channel::channel(0u64);
    let (watches, task) =
        PolicyKindWatches::start(&fake.client(), changes_tx, Duration::from_millis(100));
    within(watches.wait_ready()).await;
    assert!(watches.objects().is_empty());
    assert!(watches.watched_resources().is_empty());

    install_calico(&fake);
    fake.insert(deny_web_to_mysql());
    let raw = within(async {
        loop {
            if let Some(p) = watches.objects().calico.first() {
                return p.raw.clone();
            }
            changes.changed().await.unwrap();
        }
    })
    .await;
    assert_eq!(raw["kind"], "GlobalNetworkPolicy");
    assert_eq!(raw["apiVersion"], "projectcalico.org/v3");
    assert!(raw["metadata"].get("managedFields").is_none(), "{raw}");
    assert!(raw["metadata"].get("annotations").is_none(), "{raw}");
    let mut watched = watches.watched_resources();
    watched.sort();
    assert_eq!(
        watched,
        [
            "globalnetworkpolicies.projectcalico.org/v3",
            "networkpolicies.projectcalico.org/v3",
            "tiers.projectcalico.org/v3",
        ]
    );

    fake.modify("globalnetworkpolicies", "", "deny-web-to-mysql", |p| {
        p["spec"]["order"] = json!(20);
    });
    within(async {
        while watches.objects().calico[0].object.spec.order != Some(20.0) {
            changes.changed().await.unwrap();
        }
    })
    .await;
    // A policy the engine refuses (unknown tier) is left out, not the whole set.
    fake.insert(json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "nowhere.x"}, "spec": {"tier": "nowhere", "selector": "all()"}}));
    fake.remove("globalnetworkpolicies", "", "deny-web-to-mysql");
    within(async {
        while !watches.objects().calico.is_empty() {
            changes.changed().await.unwrap();
        }
    })
    .await;

    task.abort();
}

#[tokio::test]
async fn the_cluster_snapshot_carries_the_watched_kinds() {
    let fake = FakeApiServer::start().await;
    seed_policies(&fake);
    let cache = ClusterCache::start(&fake.client());
    cache.wait_synced(WAIT).await.unwrap();
    let tiered = cache.snapshot().tiered;
    assert_eq!((tiered.admin.len(), tiered.calico.len(), tiered.tiers.len()), (2, 2, 1));
}

/// web-1 -> mysql-0:3306 dropped, as the kernel side records it.
const RECORDED_DROP: &str = r#"{"type":"drop","time":"2026-01-01T00:00:02Z","first_seen":"2026-01-01T00:00:00Z","reason":"NETFILTER_DROP","reason_raw":12,"ifname":"cali0","count":3,"protocol":"TCP","src":{"ip":"10.0.1.5","port":51514},"dst":{"ip":"10.0.2.7","port":3306},"policies":[],"evidence":{"syn_left_source":3,"syn_reached_destination":0,"synack_returned":0,"dropped":3}}"#;

/// Replays the drop through an agent on `fake` and returns the denying policies it names.
async fn attribute(fake: &FakeApiServer) -> Vec<crate::trace::model::PolicyRef> {
    let (tx, source) = EventSource::channel(vec!["cali0".into()]);
    let opts = AgentOptions {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        node_name: Some("node-1".into()),
        ..AgentOptions::default()
    };
    let mut agent = Agent::start_with(opts, fake.client(), None, Some(source)).await.unwrap();
    assert!(agent.wait_ready(Duration::from_secs(10)).await.unwrap(), "ready in time");
    let drop: TraceEvent = serde_json::from_str(RECORDED_DROP).unwrap();
    tx.send(TracerMessage::Event(drop)).unwrap();
    let key =
        ConnKey { src: "10.0.1.5".parse().unwrap(), dst: "10.0.2.7".parse().unwrap(), dport: 3306 };
    let record = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(record) = agent.state().store().get(&key).cloned() {
                return record;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the replayed drop reaches the store");
    agent.stop().await.unwrap();
    record.drop.policies
}

#[tokio::test]
async fn agent_attribution_names_a_global_network_policy() {
    let fake = FakeApiServer::start().await;
    crate::k8s::list::tests::seed(&fake);
    install_calico(&fake);
    fake.insert(deny_web_to_mysql());
    let policies = attribute(&fake).await;
    assert!(
        policies.iter().any(|p| p.kind == PolicyKind::GlobalNetworkPolicy
            && p.name == "deny-web-to-mysql"
            && p.tier.as_deref() == Some("default")),
        "{policies:?}"
    );
}

#[tokio::test]
async fn agent_attribution_names_a_cluster_network_policy() {
    let fake = FakeApiServer::start().await;
    crate::k8s::list::tests::seed(&fake);
    install_network_policy_api(&fake);
    fake.insert(admin_deny_app_to_db("policy.networking.k8s.io/v1alpha2"));
    let policies = attribute(&fake).await;
    assert!(
        policies.iter().any(|p| p.kind == PolicyKind::ClusterNetworkPolicy
            && p.name == "db-lockdown"
            && p.tier.as_deref() == Some("Admin")),
        "{policies:?}"
    );
}

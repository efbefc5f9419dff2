//! RBAC loaded from the project's own `deploy/` manifests and enforced per bearer token: each
//! identity can do its job and nothing more.

use std::path::PathBuf;
use std::time::Duration;

use fake_apiserver::{FakeApiServer, Identity};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(5);
const NS: &str = "netpol-trace";

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(WAIT, f).await.expect("the fake did not answer in time")
}

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").join("deploy")
}

/// The status code of a failed call (panics on success or a transport error).
fn code<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> u16 {
    match result {
        Err(kube::Error::Api(s)) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn forbidden_message<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> String {
    match result {
        Err(kube::Error::Api(s)) if s.code == 403 => s.message,
        other => panic!("expected 403, got {other:?}"),
    }
}

fn reports(client: kube::Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("netpol-trace.io", "v1alpha1", "DropReport");
    Api::namespaced_with(client, "db", &ApiResource::from_gvk_with_plural(&gvk, "dropreports"))
}

fn report() -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "netpol-trace.io/v1alpha1", "kind": "DropReport",
        "metadata": {"name": "app-web-to-db-mysql-3306-tcp"},
        "spec": {"source": {"namespace": "app", "workload": "web", "kind": "Deployment"},
                 "destination": {"namespace": "db", "workload": "mysql", "kind": "StatefulSet"},
                 "port": 3306, "protocol": "TCP"}}))
    .unwrap()
}

fn policy() -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": "mysql-ingress", "namespace": "db"},
           "spec": {"podSelector": {"matchLabels": {"app": "mysql"}}, "policyTypes": ["Ingress"]}})
}

async fn cluster() -> FakeApiServer {
    let fake = FakeApiServer::builder()
        .with_manifests(deploy_dir())
        .token("agent", Identity::service_account(NS, "netpol-trace"))
        .token("controller", Identity::service_account(NS, "netpol-trace-controller"))
        .token("db-admin", Identity::user("dana", ["db-admins"]))
        .token("nobody", Identity::user("nobody", Vec::<String>::new()))
        .admin_token("admin")
        .start()
        .await;
    for ns in [NS, "db", "app"] {
        fake.insert(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
    }
    // A namespace admin of db, through the built-in `admin` role the approver role aggregates to.
    fake.insert(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "db-admins", "namespace": "db"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
        "subjects": [{"kind": "Group", "name": "db-admins"}]}));
    fake.insert(policy());
    fake
}

#[tokio::test]
async fn the_crd_from_deploy_is_served() {
    let fake = cluster().await;
    let admin = reports(fake.client_with_token("admin"));
    let created = within(admin.create(&PostParams::default(), &report())).await.unwrap();
    assert_eq!(created.data["spec"]["port"], 3306);
    let wrong = json!({"spec": {"decision": "Sure"}});
    let err = within(admin.patch(
        &created.metadata.name.clone().unwrap(),
        &PatchParams::default(),
        &Patch::Merge(&wrong),
    ))
    .await;
    assert_eq!(code(err), 422);
    // A backup object is kept whole, unknown fields and all.
    let backup = json!({"status": {"fix": {"phase": "Applied", "applied": {"backup": [
        {"namespace": "db", "name": "mysql-ingress", "object": policy()}]}}}});
    let name = "app-web-to-db-mysql-3306-tcp";
    let after = within(admin.patch_status(name, &PatchParams::default(), &Patch::Merge(&backup)))
        .await
        .unwrap();
    assert_eq!(after.data["status"]["fix"]["applied"]["backup"][0]["object"], policy());
}

#[tokio::test]
async fn agent_publishes_reports_and_cannot_touch_policies() {
    let fake = cluster().await;
    let agent = fake.client_with_token("agent");
    let api = reports(agent.clone());
    within(api.create(&PostParams::default(), &report())).await.unwrap();
    within(api.list(&ListParams::default())).await.unwrap();
    let name = "app-web-to-db-mysql-3306-tcp";
    let status = json!({"status": {"state": "Dropping", "count": 3,
        "nodes": [{"node": "node-1", "count": 3, "lastSeen": "2026-01-01T00:00:00Z",
                   "ifname": "cali1", "reason": "NETFILTER_DROP"}]}});
    let after = within(api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)))
        .await
        .unwrap();
    assert_eq!(after.data["status"]["count"], 3);
    // Nor a deletion: garbage collection is the controller leader's.
    assert_eq!(code(within(api.delete(name, &DeleteParams::default())).await), 403);

    // Never an approval.
    let approve = json!({"spec": {"decision": "Approved"}});
    let message = forbidden_message(
        within(api.patch(name, &PatchParams::default(), &Patch::Merge(&approve))).await,
    );
    assert_eq!(
        message,
        "dropreports.netpol-trace.io \"app-web-to-db-mysql-3306-tcp\" is forbidden: User \"system:serviceaccount:netpol-trace:netpol-trace\" cannot patch resource \"dropreports\" in API group \"netpol-trace.io\" in the namespace \"db\""
    );

    let nps: Api<NetworkPolicy> = Api::namespaced(agent, "db");
    within(nps.get("mysql-ingress")).await.unwrap();
    let add = json!({"spec": {"ingress": [{}]}});
    let err =
        within(nps.patch("mysql-ingress", &PatchParams::default(), &Patch::Merge(&add))).await;
    assert_eq!(code(err), 403);
    let mut new: NetworkPolicy = serde_json::from_value(policy()).unwrap();
    new.metadata.name = Some("allow-web".into());
    let err = within(nps.create(&PostParams::default(), &new)).await;
    assert_eq!(code(err), 403);
    let err = within(nps.delete("mysql-ingress", &DeleteParams::default())).await;
    assert_eq!(code(err), 403);
    assert!(
        fake.get("networkpolicies", "db", "mysql-ingress").unwrap()["spec"]
            .get("ingress")
            .is_none()
    );
}

#[tokio::test]
async fn controller_patches_and_creates_policies_but_never_updates_or_deletes() {
    let fake = cluster().await;
    let controller = fake.client_with_token("controller");
    let nps: Api<NetworkPolicy> = Api::namespaced(controller.clone(), "db");
    let add = json!({"spec": {"ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}]}});
    let patched = within(nps.patch("mysql-ingress", &PatchParams::default(), &Patch::Merge(&add)))
        .await
        .unwrap();
    let mut new: NetworkPolicy = serde_json::from_value(policy()).unwrap();
    new.metadata.name = Some("allow-web".into());
    within(nps.create(&PostParams::default(), &new)).await.unwrap();
    let err = within(nps.replace("mysql-ingress", &PostParams::default(), &patched)).await;
    let message = forbidden_message(err);
    assert!(message.contains("cannot update resource \"networkpolicies\""), "{message}");
    let err = within(nps.delete("mysql-ingress", &DeleteParams::default())).await;
    assert_eq!(code(err), 403);

    // Reports: status yes (fix phase, backup), approve only through its auto-approval patch.
    let admin_reports = reports(fake.client_with_token("admin"));
    within(admin_reports.create(&PostParams::default(), &report())).await.unwrap();
    let api = reports(controller.clone());
    let name = "app-web-to-db-mysql-3306-tcp";
    let status = json!({"status": {"fix": {"phase": "Applied"}}});
    within(api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))).await.unwrap();
    // Its leader garbage-collects reports of flows restored long ago.
    within(api.delete(name, &DeleteParams::default())).await.unwrap();
    assert!(fake.get("dropreports", "db", name).is_none());

    // Its Lease, in its own namespace only.
    let leases: Api<Lease> = Api::namespaced(controller.clone(), NS);
    let lease: Lease =
        serde_json::from_value(json!({"metadata": {"name": "netpol-trace-controller"},
        "spec": {"holderIdentity": "netpol-trace-controller-0"}}))
        .unwrap();
    let mut held = within(leases.create(&PostParams::default(), &lease)).await.unwrap();
    held.spec.as_mut().unwrap().lease_transitions = Some(1);
    within(leases.replace("netpol-trace-controller", &PostParams::default(), &held)).await.unwrap();
    let elsewhere: Api<Lease> = Api::namespaced(controller, "db");
    assert_eq!(code(within(elsewhere.create(&PostParams::default(), &lease)).await), 403);
}

#[tokio::test]
async fn approvers_set_decisions_but_not_status() {
    let fake = cluster().await;
    within(reports(fake.client_with_token("admin")).create(&PostParams::default(), &report()))
        .await
        .unwrap();
    let api = reports(fake.client_with_token("db-admin"));
    let name = "app-web-to-db-mysql-3306-tcp";
    let approve = json!({"spec": {"decision": "Approved"}});
    let after =
        within(api.patch(name, &PatchParams::default(), &Patch::Merge(&approve))).await.unwrap();
    assert_eq!(after.data["spec"]["decision"], "Approved");
    let forged = json!({"status": {"fix": {"phase": "Applied"}}});
    let message = forbidden_message(
        within(api.patch_status(name, &PatchParams::default(), &Patch::Merge(&forged))).await,
    );
    assert_eq!(
        message,
        "dropreports.netpol-trace.io \"app-web-to-db-mysql-3306-tcp\" is forbidden: User \"dana\" cannot patch resource \"dropreports/status\" in API group \"netpol-trace.io\" in the namespace \"db\""
    );
    // Aggregated through `admin` in db only.
    let other_ns = Identity::user("dana", ["db-admins"]);
    assert!(fake.can(&other_ns, "patch", "dropreports", Some("db")));
    assert!(!fake.can(&other_ns, "patch", "dropreports", Some("app")));
}

#[tokio::test]
async fn unknown_or_missing_tokens_are_unauthorized() {
    let fake = cluster().await;
    for client in [fake.client(), fake.client_with_token("forged")] {
        let err = within(reports(client).list(&ListParams::default())).await;
        assert_eq!(code(err), 401);
    }
    // Known but bound to nothing.
    let err = within(reports(fake.client_with_token("nobody")).list(&ListParams::default())).await;
    assert_eq!(code(err), 403);
}

#[tokio::test]
async fn scrapers_may_read_metrics_and_drops_only_once_bound() {
    let fake = cluster().await;
    let prometheus = Identity::service_account("monitoring", "prometheus");
    let get = |path: &str| fake_apiserver::Attributes::NonResource {
        verb: "get".into(),
        path: path.into(),
    };
    assert!(!fake.authorize(&prometheus, &get("/metrics")).allowed);
    fake.insert(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "prometheus-netpol-trace"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "netpol-trace-metrics-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "prometheus", "namespace": "monitoring"}]}));
    assert!(fake.authorize(&prometheus, &get("/metrics")).allowed);
    assert!(fake.authorize(&prometheus, &get("/drops")).allowed);
    assert!(!fake.authorize(&prometheus, &get("/debug")).allowed);
    // The agent may check tokens and access for its HTTP endpoints.
    let agent = Identity::service_account(NS, "netpol-trace");
    assert!(fake.can(&agent, "create", "tokenreviews", None));
    assert!(fake.can(&agent, "create", "subjectaccessreviews", None));
    assert!(!fake.can(&agent, "patch", "networkpolicies", Some("db")));
}

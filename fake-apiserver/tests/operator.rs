//! What an operator relies on, through kube's client: a custom resource with the status
//! subresource, pruning and enum validation, Leases with optimistic concurrency, TokenReview
//! and SubjectAccessReview answers, the 422 of a failed JSON patch `test`, and pagination.

use std::collections::BTreeSet;
use std::time::Duration;

use fake_apiserver::{FakeApiServer, Identity, JSON_PATCH_REJECTED};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SelfSubjectAccessReview,
    SelfSubjectAccessReviewSpec, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(5);

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(WAIT, f).await.expect("the fake did not answer in time")
}

fn api_status(err: kube::Error) -> Box<kube::core::Status> {
    match err {
        kube::Error::Api(s) => s,
        other => panic!("expected an API status, got {other:?}"),
    }
}

fn crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.io"},
        "spec": {"group": "example.io", "scope": "Namespaced",
                 "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                   "subresources": {"status": {}},
                   "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                     "spec": {"type": "object", "properties": {
                       "size": {"type": "integer"},
                       "decision": {"type": "string", "enum": ["Approved", "Rejected"]},
                       "blob": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
                     "status": {"type": "object", "properties": {"phase": {"type": "string"}}}}}}}]}
    })
}

fn widgets(client: kube::Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("example.io", "v1", "Widget");
    Api::namespaced_with(client, "db", &ApiResource::from_gvk_with_plural(&gvk, "widgets"))
}

async fn fake_with_crd() -> FakeApiServer {
    let fake = FakeApiServer::start().await;
    fake.insert(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "db"}}));
    fake.insert(crd());
    fake
}

fn widget(spec: Value) -> DynamicObject {
    serde_json::from_value(json!({"apiVersion": "example.io/v1", "kind": "Widget",
        "metadata": {"name": "w"}, "spec": spec, "status": {"phase": "Sneaked"}}))
    .unwrap()
}

#[tokio::test]
async fn custom_resource_status_is_written_only_through_its_subresource() {
    let fake = fake_with_crd().await;
    let api = widgets(fake.client());
    let created =
        within(api.create(&PostParams::default(), &widget(json!({"size": 1})))).await.unwrap();
    assert!(created.data.get("status").is_none(), "create ignores .status");
    assert_eq!(created.metadata.generation, Some(1));

    // A status write changes only the status; the spec it carries is ignored.
    let status = json!({"spec": {"size": 99}, "status": {"phase": "Ready"}});
    let after = within(api.patch_status("w", &PatchParams::default(), &Patch::Merge(&status)))
        .await
        .unwrap();
    assert_eq!(after.data["status"]["phase"], "Ready");
    assert_eq!(after.data["spec"]["size"], 1);
    assert_eq!(after.metadata.generation, Some(1), "a status write does not bump generation");

    // A main-resource write changes the spec and leaves the status alone.
    let main = json!({"spec": {"size": 2}, "status": {"phase": "Forged"}});
    let after =
        within(api.patch("w", &PatchParams::default(), &Patch::Merge(&main))).await.unwrap();
    assert_eq!(after.data["spec"]["size"], 2);
    assert_eq!(after.data["status"]["phase"], "Ready");
    assert_eq!(after.metadata.generation, Some(2));

    // Reached by short name from the test side too.
    assert_eq!(fake.get("wd", "db", "w").unwrap()["status"]["phase"], "Ready");
    // A type without the subresource has no /status.
    let pods: Api<Pod> = Api::namespaced(fake.client(), "db");
    fake.insert(
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "db"}}),
    );
    let err = within(pods.patch_status("p", &PatchParams::default(), &Patch::Merge(json!({}))))
        .await
        .unwrap_err();
    assert_eq!(api_status(err).code, 404);
}

#[tokio::test]
async fn custom_resources_are_pruned_and_validated_by_their_schema() {
    let fake = fake_with_crd().await;
    let api = widgets(fake.client());
    let spec = json!({"size": 1, "typo": true, "blob": {"anything": {"goes": 1}}});
    let mut w = widget(spec);
    w.data["extra"] = json!("dropped");
    let created = within(api.create(&PostParams::default(), &w)).await.unwrap();
    assert!(created.data["spec"].get("typo").is_none(), "unknown field pruned");
    assert!(created.data.get("extra").is_none(), "unknown top-level field pruned");
    assert_eq!(created.data["spec"]["blob"], json!({"anything": {"goes": 1}}), "preserved");

    let bad = json!({"spec": {"decision": "Maybe"}});
    let err =
        within(api.patch("w", &PatchParams::default(), &Patch::Merge(&bad))).await.unwrap_err();
    let status = api_status(err);
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        status.message,
        "Widget.example.io \"w\" is invalid: spec.decision: Unsupported value: \"Maybe\": supported values: \"Approved\", \"Rejected\""
    );
    let details = status.details.expect("details");
    assert_eq!(details.causes[0].field, "spec.decision");

    // dryRun=All validates and answers without storing.
    let ok = json!({"spec": {"decision": "Approved"}});
    let dry = within(api.patch("w", &PatchParams::default().dry_run(), &Patch::Merge(&ok)))
        .await
        .unwrap();
    assert_eq!(dry.data["spec"]["decision"], "Approved");
    assert!(fake.get("widgets", "db", "w").unwrap()["spec"].get("decision").is_none());
}

#[tokio::test]
async fn stale_lease_update_is_refused() {
    let fake = FakeApiServer::start().await;
    fake.insert(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "netpol-trace"}}),
    );
    let leases: Api<Lease> = Api::namespaced(fake.client(), "netpol-trace");
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "netpol-trace-controller"},
        "spec": {"holderIdentity": "pod-a", "leaseDurationSeconds": 15}}))
    .unwrap();
    let mine = within(leases.create(&PostParams::default(), &lease)).await.unwrap();

    // pod-b takes the lease over...
    let mut theirs = mine.clone();
    theirs.spec.as_mut().unwrap().holder_identity = Some("pod-b".into());
    within(leases.replace("netpol-trace-controller", &PostParams::default(), &theirs))
        .await
        .unwrap();
    // ...so pod-a's renewal from its old copy must fail.
    let mut renew = mine;
    renew.spec.as_mut().unwrap().lease_transitions = Some(1);
    let err = within(leases.replace("netpol-trace-controller", &PostParams::default(), &renew))
        .await
        .unwrap_err();
    let status = api_status(err);
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    let stored = fake.get("leases", "netpol-trace", "netpol-trace-controller").unwrap();
    assert_eq!(stored["spec"]["holderIdentity"], "pod-b");
}

#[tokio::test]
async fn failed_json_patch_test_is_422_with_empty_details() {
    let fake = fake_with_crd().await;
    let api = widgets(fake.client());
    within(api.create(&PostParams::default(), &widget(json!({"size": 1})))).await.unwrap();
    let ops = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
        {"op": "replace", "path": "/spec/size", "value": 5},
    ]))
    .unwrap();
    let err =
        within(api.patch("w", &PatchParams::default(), &Patch::<()>::Json(ops))).await.unwrap_err();
    let status = api_status(err);
    assert_eq!(
        (status.code, status.reason.as_str(), status.message.as_str()),
        (422, "Invalid", JSON_PATCH_REJECTED)
    );
    let details = status.details.expect("details");
    assert!(details.name.is_empty() && details.causes.is_empty(), "{details:?}");
}

#[tokio::test]
async fn token_and_access_reviews_answer_from_tokens_and_rbac() {
    let fake = FakeApiServer::builder()
        .token("agent", Identity::service_account("netpol-trace", "netpol-trace"))
        .admin_token("admin")
        .start()
        .await;
    fake.insert(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "metrics"},
        "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]}));
    fake.insert(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "metrics"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "metrics"},
        "subjects": [{"kind": "ServiceAccount", "name": "prometheus", "namespace": "monitoring"}]}));
    let admin = fake.client_with_token("admin");

    let reviews: Api<TokenReview> = Api::all(admin.clone());
    let ask = |token: &str| TokenReview {
        spec: TokenReviewSpec { token: Some(token.into()), ..Default::default() },
        ..Default::default()
    };
    let known = within(reviews.create(&PostParams::default(), &ask("agent"))).await.unwrap();
    let status = known.status.expect("status");
    assert_eq!(status.authenticated, Some(true));
    let user = status.user.expect("user");
    assert_eq!(user.username.as_deref(), Some("system:serviceaccount:netpol-trace:netpol-trace"));
    assert!(user.groups.unwrap().contains(&"system:serviceaccounts:netpol-trace".to_string()));
    let unknown = within(reviews.create(&PostParams::default(), &ask("nope"))).await.unwrap();
    assert_ne!(unknown.status.unwrap().authenticated, Some(true));

    let sars: Api<SubjectAccessReview> = Api::all(admin);
    let sar = |user: &str, path: &str| SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.into()),
            non_resource_attributes: Some(NonResourceAttributes {
                path: Some(path.into()),
                verb: Some("get".into()),
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let allowed = |r: SubjectAccessReview| r.status.expect("status").allowed;
    let prom = "system:serviceaccount:monitoring:prometheus";
    let yes = within(sars.create(&PostParams::default(), &sar(prom, "/metrics"))).await.unwrap();
    assert!(allowed(yes));
    let no = within(sars.create(&PostParams::default(), &sar(prom, "/drops"))).await.unwrap();
    assert!(!allowed(no));
    let other = within(sars.create(&PostParams::default(), &sar("mallory", "/metrics"))).await;
    assert!(!allowed(other.unwrap()));

    // SelfSubjectAccessReview asks about the caller.
    let agent = fake.client_with_token("agent");
    let ssar: Api<SelfSubjectAccessReview> = Api::all(agent);
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some("list".into()),
                resource: Some("pods".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = within(ssar.create(&PostParams::default(), &review)).await.unwrap();
    assert!(!answer.status.unwrap().allowed, "nothing grants the agent pods here");
}

#[tokio::test]
async fn pagination_returns_every_object_exactly_once() {
    let fake = FakeApiServer::start().await;
    let mut want = BTreeSet::new();
    for n in 0..7 {
        let ns = format!("ns-{n}");
        fake.insert(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
        for p in 0..23 {
            let name = format!("pod-{p}");
            fake.insert(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": ns, "labels": {"odd": (p % 2 == 1).to_string()}}}));
            want.insert((ns.clone(), name));
        }
    }
    let pods: Api<Pod> = Api::all(fake.client());
    for (limit, selector) in [(10, None), (1, None), (500, None), (4, Some("odd=true"))] {
        let mut seen = Vec::new();
        let mut params = ListParams::default().limit(limit);
        if let Some(s) = selector {
            params = params.labels(s);
        }
        let mut pages = 0;
        loop {
            let page = within(pods.list(&params)).await.unwrap();
            pages += 1;
            for p in &page.items {
                seen.push((
                    p.metadata.namespace.clone().unwrap(),
                    p.metadata.name.clone().unwrap(),
                ));
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => {
                    assert!(page.items.len() as u32 == limit, "full pages before the last");
                    // Writes between pages neither repeat nor hide what was there.
                    fake.insert(json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": format!("noise-{pages}"), "namespace": "ns-0"}}));
                    params = params.continue_token(&token);
                }
                None => break,
            }
        }
        let unique: BTreeSet<_> = seen.iter().cloned().collect();
        assert_eq!(unique.len(), seen.len(), "no object twice (limit {limit})");
        let expected: BTreeSet<_> = match selector {
            None => want.clone(),
            Some(_) => want
                .iter()
                .filter(|(_, n)| n.trim_start_matches("pod-").parse::<u32>().unwrap() % 2 == 1)
                .cloned()
                .collect(),
        };
        assert_eq!(unique, expected, "every object (limit {limit}, selector {selector:?})");
    }
    // The one-shot list of the kube client asks for everything at once.
    assert_eq!(within(pods.list(&ListParams::default())).await.unwrap().items.len(), 161);
}

//! The fake answered through real kube clients: typed Api calls, raw requests, watcher and
//! reflector.

use std::time::Duration;

use fake_apiserver::{FakeApiServer, JSON_PATCH_REJECTED, ProxyResponse};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(5);

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(WAIT, f).await.expect("the fake did not answer in time")
}

fn ns(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

fn pod(ns: &str, name: &str, app: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]},
           "status": {"podIP": "10.0.1.5"}})
}

fn policy(ns: &str, name: &str, port: u32) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": name, "namespace": ns},
           "spec": {"podSelector": {"matchLabels": {"app": "mysql"}},
                    "ingress": [{"ports": [{"port": port}]}]}})
}

/// Sends a raw request and decodes the JSON answer (errors come back as kube's Api error).
async fn raw(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: Value,
) -> Result<Value, kube::Error> {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("Content-Type", content_type)
        .body(serde_json::to_vec(&body).unwrap())
        .unwrap();
    within(client.request::<Value>(req)).await
}

fn api_status(err: kube::Error) -> Box<kube::core::Status> {
    match err {
        kube::Error::Api(s) => s,
        other => panic!("expected an API status, got {other:?}"),
    }
}

#[tokio::test]
async fn list_get_and_selectors() {
    let fake = FakeApiServer::start().await;
    fake.insert(ns("app"));
    fake.insert(ns("db"));
    fake.insert(pod("app", "web-1", "web"));
    fake.insert(pod("db", "mysql-0", "mysql"));
    let client = fake.client();

    let all: Api<Pod> = Api::all(client.clone());
    let pods = within(all.list(&ListParams::default())).await.unwrap();
    assert_eq!(pods.items.len(), 2);
    let rv: u64 = pods.metadata.resource_version.unwrap().parse().unwrap();
    assert_eq!(rv, fake.resource_version());

    let web = within(all.list(&ListParams::default().labels("app=web"))).await.unwrap();
    assert_eq!(web.items.len(), 1);
    assert_eq!(web.items[0].metadata.name.as_deref(), Some("web-1"));

    let in_db: Api<Pod> = Api::namespaced(client.clone(), "db");
    let mysql = within(in_db.get("mysql-0")).await.unwrap();
    assert!(mysql.metadata.uid.is_some() && mysql.metadata.creation_timestamp.is_some());
    let missing = api_status(within(in_db.get("nope")).await.unwrap_err());
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(missing.message, "pods \"nope\" not found");

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let db = within(namespaces.get("db")).await.unwrap();
    assert_eq!(db.metadata.labels.unwrap()["kubernetes.io/metadata.name"], "db");

    let page = within(all.list(&ListParams::default().limit(1))).await.unwrap();
    assert_eq!(page.items.len(), 1);
    let token = page.metadata.continue_.unwrap();
    assert_eq!(page.items[0].metadata.name.as_deref(), Some("web-1"), "sorted by namespace");
    let rest =
        within(all.list(&ListParams::default().limit(1).continue_token(&token))).await.unwrap();
    assert_eq!(rest.items[0].metadata.name.as_deref(), Some("mysql-0"));
    assert!(rest.metadata.continue_.is_none());
}

#[tokio::test]
async fn create_conflicts_and_defaults() {
    let fake = FakeApiServer::start().await;
    fake.insert(ns("db"));
    let nps: Api<NetworkPolicy> = Api::namespaced(fake.client(), "db");
    let np: NetworkPolicy = serde_json::from_value(policy("db", "mysql-ingress", 3306)).unwrap();
    let created = within(nps.create(&PostParams::default(), &np)).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let spec = created.spec.unwrap();
    assert_eq!(spec.policy_types, Some(vec!["Ingress".to_string()]));
    assert_eq!(
        spec.ingress.unwrap()[0].ports.as_ref().unwrap()[0].protocol.as_deref(),
        Some("TCP")
    );

    let again = api_status(within(nps.create(&PostParams::default(), &np)).await.unwrap_err());
    assert_eq!((again.code, again.reason.as_str()), (409, "AlreadyExists"));

    let elsewhere: Api<NetworkPolicy> = Api::namespaced(fake.client(), "nowhere");
    let err = api_status(within(elsewhere.create(&PostParams::default(), &np)).await.unwrap_err());
    assert_eq!(err.code, 400, "body namespace db does not match the URL: {err:?}");

    let bad: NetworkPolicy = serde_json::from_value(policy("db", "bad", 70000)).unwrap();
    let invalid = api_status(within(nps.create(&PostParams::default(), &bad)).await.unwrap_err());
    assert_eq!((invalid.code, invalid.reason.as_str()), (422, "Invalid"));
    assert!(invalid.message.contains("spec.ingress[0].ports[0].port"), "{}", invalid.message);
}

#[tokio::test]
async fn json_patch_applies_and_failed_test_is_422() {
    let fake = FakeApiServer::start().await;
    fake.insert(ns("db"));
    let stored = fake.insert(policy("db", "mysql-ingress", 3307));
    let rv = stored["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let client = fake.client();
    let path = "/apis/networking.k8s.io/v1/namespaces/db/networkpolicies/mysql-ingress";
    let ops = json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
        {"op": "add", "path": "/spec/ingress/-", "value": {"ports": [{"port": 3306}]}},
    ]);
    let patched =
        raw(&client, "PATCH", path, "application/json-patch+json", ops.clone()).await.unwrap();
    assert_eq!(patched["spec"]["ingress"][1]["ports"][0], json!({"port": 3306, "protocol": "TCP"}));
    assert_eq!(patched["metadata"]["generation"], 2);
    assert_ne!(patched["metadata"]["resourceVersion"], json!(rv));

    // The same patch again: the resourceVersion test no longer holds.
    let err = api_status(
        raw(&client, "PATCH", path, "application/json-patch+json", ops).await.unwrap_err(),
    );
    assert_eq!(
        (err.code, err.reason.as_str(), err.message.as_str()),
        (422, "Invalid", JSON_PATCH_REJECTED)
    );

    let merge = json!({"metadata": {"labels": {"team": "db"}}});
    let merged = raw(&client, "PATCH", path, "application/merge-patch+json", merge).await.unwrap();
    assert_eq!(merged["metadata"]["labels"]["team"], "db");
    assert_eq!(merged["spec"]["ingress"].as_array().unwrap().len(), 2);

    let nps: Api<NetworkPolicy> = Api::namespaced(client, "db");
    let strategic = Patch::Strategic(json!({"metadata": {"annotations": {"a": "b"}}}));
    let out =
        within(nps.patch("mysql-ingress", &PatchParams::default(), &strategic)).await.unwrap();
    assert_eq!(out.metadata.annotations.unwrap()["a"], "b");
}

#[tokio::test]
async fn stale_put_conflicts_and_noop_put_keeps_version() {
    let fake = FakeApiServer::start().await;
    fake.insert(ns("db"));
    let nps: Api<NetworkPolicy> = Api::namespaced(fake.client(), "db");
    let np: NetworkPolicy = serde_json::from_value(policy("db", "p", 3306)).unwrap();
    let read = within(nps.create(&PostParams::default(), &np)).await.unwrap();
    let same = within(nps.replace("p", &PostParams::default(), &read)).await.unwrap();
    assert_eq!(same.metadata.resource_version, read.metadata.resource_version);

    fake.modify("networkpolicies", "db", "p", |o| o["metadata"]["labels"] = json!({"x": "y"}));
    let err =
        api_status(within(nps.replace("p", &PostParams::default(), &read)).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert!(err.message.contains("the object has been modified"), "{}", err.message);
}

#[tokio::test]
async fn dry_run_does_not_store() {
    let fake = FakeApiServer::start().await;
    fake.insert(ns("db"));
    fake.insert(policy("db", "p", 3306));
    let before = fake.resource_version();
    let nps: Api<NetworkPolicy> = Api::namespaced(fake.client(), "db");
    let dry = PatchParams { dry_run: true, ..Default::default() };
    let out =
        within(nps.patch("p", &dry, &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}}))))
            .await
            .unwrap();
    assert_eq!(out.metadata.labels.unwrap()["a"], "b");
    assert!(fake.get("networkpolicies", "db", "p").unwrap()["metadata"].get("labels").is_none());

    let np: NetworkPolicy = serde_json::from_value(policy("db", "new", 80)).unwrap();
    let post = PostParams { dry_run: true, ..Default::default() };
    within(nps.create(&post, &np)).await.unwrap();
    within(nps.delete("p", &DeleteParams { dry_run: true, ..Default::default() })).await.unwrap();
    assert!(fake.get("networkpolicies", "db", "new").is_none());
    assert!(fake.get("networkpolicies", "db", "p").is_some());
    assert_eq!(fake.resource_version(), before);
    let writes: Vec<_> = fake.requests().into_iter().filter(|r| r.method != "GET").collect();
    assert!(writes[..2].iter().all(|r| r.is_dry_run()));
    assert_eq!(writes[2].body.as_ref().unwrap()["dryRun"], json!(["All"]));
}

#[tokio::test]
async fn forbidden_and_injected_failures() {
    let fake = FakeApiServer::start().await;
    fake.insert(ns("db"));
    fake.insert(policy("db", "p", 3306));
    fake.forbid("patch", "networkpolicies");
    let nps: Api<NetworkPolicy> = Api::namespaced(fake.client(), "db");
    let err = api_status(
        within(nps.patch("p", &PatchParams::default(), &Patch::Merge(json!({}))))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (403, "Forbidden"));
    assert!(err.message.contains("cannot patch resource \"networkpolicies\" in API group \"networking.k8s.io\" in the namespace \"db\""), "{}", err.message);
    within(nps.get("p")).await.unwrap();

    fake.allow_all();
    fake.fail_next("get", "networkpolicies", 500);
    let err = api_status(within(nps.get("p")).await.unwrap_err());
    assert_eq!(err.code, 500);
    within(nps.get("p")).await.unwrap();
}

#[tokio::test]
async fn interleaved_write_makes_a_guarded_patch_fail() {
    let fake = FakeApiServer::start().await;
    fake.insert(ns("db"));
    fake.insert(policy("db", "p", 3306));
    let client = fake.client();
    let nps: Api<NetworkPolicy> = Api::namespaced(client.clone(), "db");
    let read = within(nps.get("p")).await.unwrap();
    fake.write_before_next("patch", "networkpolicies", "db", "p", |o| {
        o["metadata"]["labels"] = json!({"touched": "yes"});
    });
    let ops = json!([{"op": "test", "path": "/metadata/resourceVersion", "value": read.metadata.resource_version},
                     {"op": "add", "path": "/metadata/annotations", "value": {"k": "v"}}]);
    let path = "/apis/networking.k8s.io/v1/namespaces/db/networkpolicies/p";
    let err = api_status(
        raw(&client, "PATCH", path, "application/json-patch+json", ops).await.unwrap_err(),
    );
    assert_eq!(err.code, 422);
    let now = fake.get("networkpolicies", "db", "p").unwrap();
    assert_eq!(now["metadata"]["labels"]["touched"], "yes");
    assert!(now["metadata"].get("annotations").is_none());
}

#[tokio::test]
async fn watch_replays_history_and_expires_when_compacted() {
    let fake = FakeApiServer::builder().bookmark_interval(Duration::from_millis(100)).start().await;
    fake.insert(ns("db"));
    let start = fake.resource_version().to_string();
    fake.insert(pod("db", "a", "x"));
    fake.modify("pods", "db", "a", |o| o["metadata"]["labels"]["app"] = json!("y"));
    let pods: Api<Pod> = Api::namespaced(fake.client(), "db");
    let stream = within(pods.watch(&WatchParams::default(), &start)).await.unwrap();
    let mut stream = Box::pin(stream);
    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        match within(stream.next()).await.unwrap().unwrap() {
            WatchEvent::Added(_) => kinds.push("added"),
            WatchEvent::Modified(_) => kinds.push("modified"),
            WatchEvent::Bookmark(b) => {
                assert_eq!(b.metadata.resource_version, fake.resource_version().to_string());
                kinds.push("bookmark");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(kinds, ["added", "modified", "bookmark"]);

    fake.compact();
    let stream = within(pods.watch(&WatchParams::default(), &start)).await.unwrap();
    let mut stream = Box::pin(stream);
    match within(stream.next()).await.unwrap().unwrap() {
        WatchEvent::Error(status) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"))
        }
        other => panic!("expected 410, got {other:?}"),
    }
}

#[tokio::test]
async fn watch_with_label_selector_sees_objects_leave() {
    let fake = FakeApiServer::start().await;
    fake.insert(ns("db"));
    fake.insert(pod("db", "a", "web"));
    let pods: Api<Pod> = Api::namespaced(fake.client(), "db");
    let stream = within(pods.watch(&WatchParams::default().labels("app=web"), "0")).await.unwrap();
    let mut stream = Box::pin(stream);
    assert!(matches!(within(stream.next()).await.unwrap().unwrap(), WatchEvent::Added(_)));
    fake.modify("pods", "db", "a", |o| o["metadata"]["labels"]["app"] = json!("other"));
    assert!(matches!(within(stream.next()).await.unwrap().unwrap(), WatchEvent::Deleted(_)));
}

#[tokio::test]
async fn reflector_syncs_and_follows_updates() {
    let fake = FakeApiServer::start().await;
    fake.insert(ns("db"));
    fake.insert(policy("db", "p", 3306));
    let api: Api<NetworkPolicy> = Api::all(fake.client());
    let (reader, writer) = reflector::store();
    let stream = reflector(writer, watcher(api, watcher::Config::default())).applied_objects();
    let task = tokio::spawn(async move {
        let mut stream = Box::pin(stream);
        while let Ok(Some(_)) = stream.try_next().await {}
    });
    within(reader.wait_until_ready()).await.unwrap();
    assert_eq!(reader.state().len(), 1);

    fake.modify("networkpolicies", "db", "p", |o| {
        o["spec"]["ingress"][0]["ports"][0]["port"] = json!(3307)
    });
    fake.insert(policy("db", "q", 80));
    within(async {
        loop {
            let state = reader.state();
            let p = state.iter().find(|p| p.metadata.name.as_deref() == Some("p"));
            let port = p.and_then(|p| {
                p.spec.as_ref()?.ingress.as_ref()?[0].ports.as_ref()?[0].port.clone()
            });
            if state.len() == 2
                && port
                    == Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(3307))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    fake.remove("networkpolicies", "db", "q");
    within(async {
        while reader.state().len() != 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    task.abort();
    assert!(fake.requests().iter().any(|r| r.is_watch()));
}

#[tokio::test]
async fn pod_proxy_reaches_the_registered_handler() {
    let fake = FakeApiServer::start().await;
    fake.insert(ns("app"));
    fake.insert(pod("app", "agent-x", "agent"));
    fake.set_pod_proxy("app", "agent-x", |req| {
        ProxyResponse::json(&json!({"path": req.path, "port": req.port, "query": req.query}))
    });
    let client = fake.client();
    let req = http::Request::get("/api/v1/namespaces/app/pods/agent-x:9090/proxy/drops?limit=5")
        .body(Vec::new())
        .unwrap();
    let out: Value = within(client.request(req)).await.unwrap();
    assert_eq!(out, json!({"path": "/drops", "port": "9090", "query": "limit=5"}));

    fake.insert(pod("app", "silent", "agent"));
    let req =
        http::Request::get("/api/v1/namespaces/app/pods/silent/proxy/").body(Vec::new()).unwrap();
    // kube retries 503 by default (its server retry policy); this client answers at once.
    let mut config = kube::Config::new(fake.url().parse().unwrap());
    config.default_retry = false;
    let no_retry = kube::Client::try_from(config).unwrap();
    let err = api_status(within(no_retry.request::<Value>(req)).await.unwrap_err());
    assert_eq!(err.code, 503);
    assert!(err.message.contains("connection refused"), "{}", err.message);

    fake.forbid("get", "pods/proxy");
    let req =
        http::Request::get("/api/v1/namespaces/app/pods/agent-x/proxy/").body(Vec::new()).unwrap();
    assert_eq!(api_status(within(client.request::<Value>(req)).await.unwrap_err()).code, 403);
}

#[tokio::test]
async fn delete_honours_preconditions() {
    let fake = FakeApiServer::start().await;
    fake.insert(ns("db"));
    fake.insert(policy("db", "p", 3306));
    let nps: Api<NetworkPolicy> = Api::namespaced(fake.client(), "db");
    let stale = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            resource_version: Some("1".into()),
            uid: None,
        }),
        ..Default::default()
    };
    let err = api_status(within(nps.delete("p", &stale)).await.unwrap_err());
    assert_eq!(err.code, 409);
    within(nps.delete("p", &DeleteParams::default())).await.unwrap();
    assert!(fake.objects("NetworkPolicy").is_empty());
}

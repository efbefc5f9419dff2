//! Prints how the fake serves a cluster of the scale benchmark's size: time to insert 100,000
//! pods, 10,000 NetworkPolicies and 20,000 Services, and to list all pods in pages of 500
//! through kube's client. Numbers only; nothing is asserted.
//!
//! `cargo run --release -p fake-apiserver --example scale`

use std::time::Instant;

use fake_apiserver::FakeApiServer;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), kube::Error> {
    let fake = FakeApiServer::start().await;
    let started = Instant::now();
    for n in 0..1000 {
        let ns = format!("ns-{n}");
        fake.insert(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
        for p in 0..100 {
            fake.insert(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("pod-{p}"), "namespace": ns,
                             "labels": {"app": format!("app-{}", p % 10)}},
                "spec": {"containers": [{"name": "c", "image": "busybox",
                                         "ports": [{"name": "mysql", "containerPort": 3306}]}]},
                "status": {"podIP": format!("10.{}.{}.{}", n / 250, n % 250, p)}}));
        }
        for s in 0..20 {
            fake.insert(json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": format!("svc-{s}"), "namespace": ns},
                "spec": {"clusterIP": format!("10.96.{}.{}", n % 250, s)}}));
        }
        for np in 0..10 {
            fake.insert(json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": format!("np-{np}"), "namespace": ns},
                "spec": {"podSelector": {"matchLabels": {"app": format!("app-{np}")}}}}));
        }
    }
    println!(
        "insert 1000 ns, 100000 pods, 20000 services, 10000 policies: {:?}",
        started.elapsed()
    );

    let pods: Api<Pod> = Api::all(fake.client());
    for round in 0..2 {
        let started = Instant::now();
        let (mut count, mut pages) = (0, 0);
        let mut params = ListParams::default().limit(500);
        loop {
            let page = pods.list(&params).await?;
            count += page.items.len();
            pages += 1;
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
        println!(
            "list {count} pods in {pages} pages of 500 (round {round}): {:?}",
            started.elapsed()
        );
    }
    Ok(())
}

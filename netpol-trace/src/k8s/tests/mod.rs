//! Write paths against the fake API server: apply, create, delete, restore.

mod apply;
mod policy_kinds;
mod restore;

use fake_apiserver::FakeApiServer;
use serde_json::{Value, json};
use std::time::Duration;

pub(super) const WAIT: Duration = Duration::from_secs(5);

pub(super) async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(WAIT, f).await.expect("the fake API server was not called as expected")
}

/// A fake holding namespace `db` and the policy `db/mysql-ingress` that allows only 3307.
pub(super) fn fake_with_policy(fake: &FakeApiServer) -> Value {
    fake.insert(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "db"}}));
    fake.insert(json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "mysql-ingress", "namespace": "db", "labels": {"team": "db"}},
        "spec": {"podSelector": {"matchLabels": {"app": "mysql"}}, "policyTypes": ["Ingress"],
                 "ingress": [{"ports": [{"port": 3307, "protocol": "TCP"}]}]}}))
}

pub(super) fn add_rule_ops(port: u32) -> Vec<json_patch::PatchOperation> {
    serde_json::from_value(json!([{"op": "add", "path": "/spec/ingress/-", "value": {
        "from": [{"podSelector": {"matchLabels": {"app": "web"}}}],
        "ports": [{"port": port, "protocol": "TCP"}]}}]))
    .unwrap()
}

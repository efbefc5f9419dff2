//! `netpol-trace restore` run as a subprocess against the fake API server via KUBECONFIG.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use fake_apiserver::FakeApiServer;
use netpol_trace::k8s::apply::{ApplyOptions, apply_json_patch, create_policy};
use serde_json::{Value, json};

async fn run(kubeconfig: &Path, args: &[&str]) -> Output {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_netpol-trace"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("NETPOL_TRACE_LOG")
        .output();
    tokio::time::timeout(Duration::from_secs(20), child)
        .await
        .expect("netpol-trace finished")
        .unwrap()
}

fn policy() -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "mysql-ingress", "namespace": "db"},
        "spec": {"podSelector": {"matchLabels": {"app": "mysql"}}, "policyTypes": ["Ingress"],
                 "ingress": [{"ports": [{"port": 3307, "protocol": "TCP"}]}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_puts_the_cluster_back() {
    let fake = FakeApiServer::start().await;
    fake.insert(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "db"}}));
    let original = fake.insert(policy());
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig).unwrap();

    let client = fake.client();
    let opts = ApplyOptions::new(dir.path().join("backups"));
    let ops = serde_json::from_value(json!([{"op": "add", "path": "/spec/ingress/-",
        "value": {"ports": [{"port": 3306, "protocol": "TCP"}]}}]))
    .unwrap();
    apply_json_patch(&client, "db", "mysql-ingress", ops, &opts).await.unwrap();
    let extra = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "allow-web", "namespace": "db"}, "spec": {"podSelector": {}}});
    create_policy(&client, &extra, &opts).await.unwrap();
    let folder = opts.backup.path().unwrap();
    let folder_arg = folder.to_str().unwrap();

    let writes_before = fake.requests().iter().filter(|r| r.method != "GET").count();
    let dry = run(&kubeconfig, &["restore", folder_arg, "--dry-run", "-o", "json"]).await;
    assert_eq!(dry.status.code(), Some(0), "{}", String::from_utf8_lossy(&dry.stderr));
    let report: Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(
        (report["dry_run"].as_bool(), report["restored"].as_bool()),
        (Some(true), Some(true))
    );
    assert!(fake.get("networkpolicies", "db", "allow-web").is_some(), "dry run wrote nothing");
    let writes = fake.requests().iter().filter(|r| r.method != "GET").count();
    assert_eq!(writes, writes_before, "--dry-run (client) sends no write");

    // --dry-run=server: the same, validated by the API server (dryRun=All writes).
    let server = run(&kubeconfig, &["restore", folder_arg, "--dry-run=server", "-o", "json"]).await;
    assert_eq!(server.status.code(), Some(0), "{}", String::from_utf8_lossy(&server.stderr));
    let sent: Vec<_> =
        fake.requests().into_iter().filter(|r| r.method != "GET").skip(writes).collect();
    assert!(!sent.is_empty() && sent.iter().all(|r| r.is_dry_run()), "{sent:?}");
    assert!(fake.get("networkpolicies", "db", "allow-web").is_some(), "dry run wrote nothing");

    let out = run(&kubeconfig, &["restore", folder_arg]).await;
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NAMESPACE  NAME"), "{table}");
    assert!(lines[1].starts_with("db         allow-web      create    deleted"), "{table}");
    assert!(lines[2].starts_with("db         mysql-ingress  patch     replaced"), "{table}");
    assert_eq!(
        fake.get("networkpolicies", "db", "mysql-ingress").unwrap()["spec"],
        original["spec"]
    );
    assert!(fake.get("networkpolicies", "db", "allow-web").is_none());

    fake.forbid("update", "networkpolicies");
    fake.modify("networkpolicies", "db", "mysql-ingress", |o| o["spec"]["ingress"] = json!([]));
    let refused = run(&kubeconfig, &["restore", folder_arg, "-o", "json"]).await;
    assert_eq!(refused.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&refused.stdout).unwrap();
    let detail = report["objects"][1]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(
            "forbidden: the service account needs update on networkpolicies in namespace db"
        ),
        "{detail}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_and_file_backups() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let missing = run(&kubeconfig, &["restore", dir.path().join("nope").to_str().unwrap()]).await;
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope (not found)"));
    let empty = run(&kubeconfig, &["restore", dir.path().to_str().unwrap()]).await;
    assert_eq!(empty.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&empty.stderr).contains("has no manifest.json"));

    let file = dir.path().join("db.yaml");
    let before = "# before\napiVersion: v1\nkind: Namespace\nmetadata: {name: db}\n";
    std::fs::write(&file, before).unwrap();
    let change = netpol_trace::apply::files::append_document(&file, &policy(), false).unwrap();
    let backup = change.backup.unwrap();
    let out = run(&kubeconfig, &["restore", backup.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("restored "));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);

    let help = run(&kubeconfig, &["restore", "--help"]).await;
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(help.contains(
        "netpol-trace restore --context prod ./netpol-trace-backups/20260101T120000Z --dry-run=server"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_cluster_exits_3() {
    let fake = FakeApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig).unwrap();
    fake.insert(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "db"}}));
    fake.insert(policy());
    let opts = ApplyOptions::new(dir.path().join("backups"));
    let ops = serde_json::from_value(
        json!([{"op": "add", "path": "/metadata/labels", "value": {"a": "b"}}]),
    )
    .unwrap();
    apply_json_patch(&fake.client(), "db", "mysql-ingress", ops, &opts).await.unwrap();
    let folder = opts.backup.path().unwrap();
    drop(fake);
    let out = run(&kubeconfig, &["restore", folder.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(3), "exit 3: unreachable, retry");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no Kubernetes cluster reachable at http://127.0.0.1:")
    );
}

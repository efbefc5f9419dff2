//! `netpol-trace drops` run as a subprocess against the fake API server via KUBECONFIG: an
//! API server that cannot be reached is exit 3 (retry), like every cluster command.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use fake_apiserver::FakeApiServer;
use serde_json::json;

async fn run(kubeconfig: &Path, args: &[&str]) -> Output {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_netpol-trace"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("NETPOL_TRACE_LOG")
        .output();
    tokio::time::timeout(Duration::from_secs(30), child)
        .await
        .expect("netpol-trace finished")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drops_exits_0_when_listed_and_3_when_the_cluster_is_unreachable() {
    let fake = FakeApiServer::start().await;
    fake.load_manifests(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/crd-dropreport.yaml"),
    );
    fake.insert(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "db"}}));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig).unwrap();

    let up = run(&kubeconfig, &["drops", "-A", "-o", "json"]).await;
    assert_eq!(up.status.code(), Some(0), "{}", String::from_utf8_lossy(&up.stderr));
    let list: serde_json::Value = serde_json::from_slice(&up.stdout).unwrap();
    assert_eq!(list["kind"], "List");

    drop(fake);
    for args in [&["drops", "-A"][..], &["drops", "-n", "db", "-o", "json"][..]] {
        let down = run(&kubeconfig, args).await;
        let stderr = String::from_utf8_lossy(&down.stderr);
        assert_eq!(down.status.code(), Some(3), "{args:?}: exit 3, retry later: {stderr}");
        assert!(stderr.contains("list dropreports"), "{args:?}: {stderr}");
        assert!(down.stdout.is_empty(), "nothing printed: {:?}", down.stdout);
    }
}

//! `netpol-trace fix --apply` against the fake API server (the binary, via KUBECONFIG): the
//! server-side dry run precedes the real PATCH, the backup folder is written and `restore`
//! puts the policy back, a concurrent change is re-read and re-planned once, a 403 names the
//! object and changes nothing, and `--dry-run` writes nothing.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use fake_apiserver::FakeApiServer;
use serde::Deserialize;
use serde_json::{Value, json};

const WEB: &str = "app/web-7d9f8b6c5-x2k4q";

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

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A fake cluster holding the objects of a scenario folder, and a kubeconfig for it.
async fn cluster(scenario: &str) -> (FakeApiServer, tempfile::TempDir, PathBuf) {
    let fake = FakeApiServer::start().await;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios").join(scenario);
    for file in ["namespaces.yaml", "pods.yaml", "policy.yaml"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let mut object = Value::deserialize(document).unwrap();
            if let Some(metadata) = object["metadata"].as_object_mut() {
                metadata.remove("resourceVersion");
            }
            fake.insert(object);
        }
    }
    let temp = tempfile::tempdir().unwrap();
    let kubeconfig = temp.path().join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig).unwrap();
    (fake, temp, kubeconfig)
}

fn fix_args<'a>(backups: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args =
        vec!["fix", "--from", WEB, "--to", "db/mysql-0", "--port", "3306", "--backup-dir", backups];
    args.extend_from_slice(extra);
    args
}

fn policy_patches(fake: &FakeApiServer) -> Vec<fake_apiserver::RecordedRequest> {
    fake.requests()
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.path.contains("/networkpolicies/"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_dry_runs_first_backs_up_and_restore_undoes_it() {
    let (fake, temp, kubeconfig) = cluster("port-typo").await;
    let original = fake.get("networkpolicies", "db", "mysql-ingress").unwrap();
    let backups = temp.path().join("backups");
    let out =
        run(&kubeconfig, &fix_args(backups.to_str().unwrap(), &["--apply", "-o", "json"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // Server-side dry runs (of the whole plan, then of the write itself), then one real PATCH.
    let patches = policy_patches(&fake);
    let (real, checks) = patches.split_last().unwrap();
    assert!(!real.is_dry_run() && !checks.is_empty(), "{patches:?}");
    assert!(checks.iter().all(|p| p.is_dry_run() && p.status == 200), "{patches:?}");
    let body = real.body.as_ref().unwrap();
    let version = original["metadata"]["resourceVersion"].clone();
    assert_eq!(
        body[0],
        json!({"op": "test", "path": "/metadata/resourceVersion", "value": version})
    );
    assert!(body.as_array().unwrap().contains(&json!({"op": "add", "path": "/spec/ingress/0/ports/-", "value": {"port": 3306, "protocol": "TCP"}})));

    let stored = fake.get("networkpolicies", "db", "mysql-ingress").unwrap();
    assert_eq!(stored["spec"]["ingress"][0]["ports"][1], json!({"port": 3306, "protocol": "TCP"}));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["applied"]["target"], "cluster");
    let folder = PathBuf::from(json["applied"]["backup"].as_str().unwrap());
    assert!(folder.starts_with(&backups) && folder.join("manifest.json").is_file());
    assert!(
        stderr(&out).contains("patched: networkpolicy db/mysql-ingress (resourceVersion"),
        "{}",
        stderr(&out)
    );

    // The fix is in: explain agrees, and fix has nothing left to do.
    let explain =
        run(&kubeconfig, &["explain", "--from", WEB, "--to", "db/mysql-0", "--port", "3306"]).await;
    assert_eq!(explain.status.code(), Some(0), "{}", stderr(&explain));

    let restore = run(&kubeconfig, &["restore", folder.to_str().unwrap()]).await;
    assert_eq!(restore.status.code(), Some(0), "{}", stderr(&restore));
    assert_eq!(
        fake.get("networkpolicies", "db", "mysql-ingress").unwrap()["spec"],
        original["spec"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_writes_nothing() {
    let (fake, temp, kubeconfig) = cluster("egress-default-deny").await;
    let backups = temp.path().join("backups");
    let out = run(&kubeconfig, &fix_args(backups.to_str().unwrap(), &["--dry-run=server"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "dry run: the API server accepts create networkpolicy app/allow-web-to-mysql-3306"
        ),
        "{}",
        stderr(&out)
    );
    assert!(fake.get("networkpolicies", "app", "allow-web-to-mysql-3306").is_none());
    assert!(fake.requests().iter().filter(|r| r.method != "GET").all(|r| r.is_dry_run()));
    assert!(!backups.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_dry_run_is_client_side_and_sends_no_write() {
    let (fake, temp, kubeconfig) = cluster("egress-default-deny").await;
    let backups = temp.path().join("backups");
    let args = fix_args(backups.to_str().unwrap(), &["--apply", "--dry-run", "-o", "json"]);
    let out = run(&kubeconfig, &args).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out)
            .contains("dry run (client): would create networkpolicy app/allow-web-to-mysql-3306"),
        "{}",
        stderr(&out)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["applied"]["dry_run_mode"], "client", "{json}");
    assert!(fake.requests().iter().all(|r| r.method == "GET"), "{:?}", fake.requests());
    assert!(!backups.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printed_commands_carry_the_given_kubeconfig_and_context() {
    let (_fake, temp, kubeconfig) = cluster("port-typo").await;
    let backups = temp.path().join("backups");
    let config = kubeconfig.to_str().unwrap();
    let args = fix_args(
        backups.to_str().unwrap(),
        &["--kubeconfig", config, "--context", "fake", "-o", "kubectl"],
    );
    // KUBECONFIG points elsewhere: --kubeconfig must win.
    let out = run(Path::new("/nonexistent/kubeconfig"), &args).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let expected = format!(
        "kubectl --kubeconfig {config} --context fake patch networkpolicy -n db mysql-ingress"
    );
    assert!(stdout.starts_with(&expected), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cluster_exits_3_and_bad_input_2() {
    let (fake, temp, kubeconfig) = cluster("port-typo").await;
    let backups = temp.path().join("backups");
    let unknown =
        run(&kubeconfig, &fix_args(backups.to_str().unwrap(), &["--context", "nope"])).await;
    assert_eq!(unknown.status.code(), Some(2), "{}", stderr(&unknown));
    drop(fake);
    let down = run(&kubeconfig, &fix_args(backups.to_str().unwrap(), &[])).await;
    assert_eq!(down.status.code(), Some(3), "{}", stderr(&down));
    assert!(stderr(&down).contains("no Kubernetes cluster reachable"), "{}", stderr(&down));
    let explain = run(&kubeconfig, &["explain", "--from", WEB, "--to", "db/mysql-0"]).await;
    assert_eq!(explain.status.code(), Some(3), "{}", stderr(&explain));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_change_is_reread_and_planned_again_once() {
    let (fake, temp, kubeconfig) = cluster("cross-namespace").await;
    fake.write_before_next("patch", "networkpolicies", "db", "mysql-ingress", |o| {
        o["metadata"]["labels"] = json!({"team": "db"});
    });
    let backups = temp.path().join("backups");
    let out =
        run(&kubeconfig, &fix_args(backups.to_str().unwrap(), &["--apply", "-o", "json"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("re-reading the cluster and planning again"), "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["applied"]["retried"], true);
    let stored = fake.get("networkpolicies", "db", "mysql-ingress").unwrap();
    assert_eq!(stored["metadata"]["labels"]["team"], "db", "the other writer's change is kept");
    assert_eq!(stored["spec"]["ingress"].as_array().unwrap().len(), 2);
    // The first dry run met the other write and failed; nothing real was sent until the
    // re-plan, and then exactly one write.
    let patches = policy_patches(&fake);
    assert!(patches[0].is_dry_run() && patches[0].status >= 400, "{patches:?}");
    let real: Vec<_> = patches.iter().filter(|p| !p.is_dry_run()).collect();
    assert_eq!(real.len(), 1, "one real write, after the re-plan");
    assert!(!patches.last().unwrap().is_dry_run());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_names_the_object_and_nothing_is_half_applied() {
    // Two changes: create an egress policy in app, patch the ingress policy in db. The patch
    // is forbidden: the dry run catches it before the create is written.
    let (fake, temp, kubeconfig) = cluster("egress-default-deny").await;
    fake.insert(json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "mysql-ingress", "namespace": "db"},
        "spec": {"podSelector": {"matchLabels": {"app": "mysql"}}, "policyTypes": ["Ingress"]}}));
    fake.forbid_in_namespace("patch", "networkpolicies", "db");
    let backups = temp.path().join("backups");
    let out = run(&kubeconfig, &fix_args(backups.to_str().unwrap(), &["--apply"])).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(message.contains("networkpolicy db/mysql-ingress: forbidden"), "{message}");
    assert!(message.contains("nothing was changed"), "{message}");
    assert!(fake.get("networkpolicies", "app", "allow-web-to-mysql-3306").is_none());
    assert!(
        fake.requests()
            .iter()
            .filter(|r| r.method != "GET")
            .all(|r| r.is_dry_run() || r.status >= 400)
    );
    assert!(!backups.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_conflict_stops_with_nothing_changed() {
    let (fake, temp, kubeconfig) = cluster("no-ingress-list").await;
    let original = fake.get("networkpolicies", "db", "mysql-ingress").unwrap();
    fake.fail_next("patch", "networkpolicies", 409);
    fake.fail_next("patch", "networkpolicies", 409);
    let backups = temp.path().join("backups");
    let out = run(&kubeconfig, &fix_args(backups.to_str().unwrap(), &["--apply"])).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(message.contains("re-reading the cluster and planning again"), "{message}");
    assert!(
        message.contains("error: networkpolicy db/mysql-ingress changed since it was read"),
        "{message}"
    );
    assert_eq!(fake.get("networkpolicies", "db", "mysql-ingress").unwrap(), original);
    assert!(!backups.exists());
}

//! `doctor` for real, as root: this kernel's BTF and drop reasons, this process's
//! capabilities, the interfaces of a node network namespace with Calico-style veths, and a
//! fake API server (exit 0), then without it (exit 2). The degraded case (exit 1) and missing
//! BTF are replayed from fake node roots in the library's unit tests.

use std::process::Command;

use fake_apiserver::FakeApiServer;
use netpol_trace_integration::{Topology, in_ns, require_root};
use serde_json::Value;

fn doctor(args: &[&str]) -> (Option<i32>, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_netpol-trace-under-test"))
        .arg("doctor")
        .args(args)
        .args(["-o", "json"])
        .env_remove("KUBECONFIG")
        .output()
        .expect("running doctor");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    (out.status.code(), json, stderr)
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()
}

async fn doctor_async(args: Vec<String>) -> (Option<i32>, Value, String) {
    tokio::task::spawn_blocking(move || {
        doctor(&args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_on_this_node_sees_the_kernel_the_cni_and_the_api() {
    require_root();
    let topo = Topology::new(1).expect("topology");
    // Two Calico-style host interfaces in the node namespace (gone with it).
    for i in 0..2 {
        let (host, peer) = (format!("cali{i}{}", &topo.prefix), format!("p{i}{}", &topo.prefix));
        let (host, peer) = (&host[..host.len().min(15)], &peer[..peer.len().min(15)]);
        in_ns(&topo.node, &["ip", "link", "add", host, "type", "veth", "peer", "name", peer])
            .expect("veth");
    }
    let fake = FakeApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("config");
    fake.write_kubeconfig(&kubeconfig).unwrap();
    let args: Vec<String> = ["--netns", &topo.node, "--kubeconfig", kubeconfig.to_str().unwrap()]
        .map(String::from)
        .into();

    let (code, report, stderr) = doctor_async(args.clone()).await;
    assert_eq!(code, Some(0), "{report:#}\n{stderr}");
    assert_eq!(report["verdict"], "can_run");
    assert_eq!(report["kernel_programs_embedded"], true);
    assert_eq!(check(&report, "btf")["status"], "ok");
    assert_eq!(check(&report, "drop_reasons")["status"], "ok");
    assert_eq!(check(&report, "capabilities")["status"], "ok");
    let cni = check(&report, "cni")["detail"].as_str().unwrap().to_owned();
    assert!(cni.starts_with("Calico (2 interface(s))"), "{cni}");

    // The API server gone: the agent cannot run (exit 2), and says why.
    drop(fake);
    let (code, report, _) = doctor_async(args).await;
    assert_eq!(code, Some(2), "{report:#}");
    assert_eq!(check(&report, "api")["status"], "fail");
    assert!(check(&report, "api")["lost"].as_str().unwrap().contains("needs the API server"));
}

use std::path::Path;

use super::node::{NodeRoot, parse_cap_eff, parse_release};
use super::*;
use crate::datapath::btf::tests::Builder;

/// BTF with the members the drop program reads, and the drop-reason enum when asked.
fn btf(with_reasons: bool) -> Vec<u8> {
    let mut b = Builder::new();
    b.int("int", 4); // 1
    b.ptr(1); // 2
    b.composite(
        false,
        "sk_buff",
        32,
        &[("dev", 2, 128), ("head", 2, 192), ("network_header", 1, 64), ("protocol", 1, 96)],
    ); // 3
    b.composite(false, "possible_net_t", 8, &[("net", 2, 0)]); // 4
    b.composite(false, "net_device", 16, &[("ifindex", 1, 0), ("nd_net", 4, 64)]); // 5
    b.composite(false, "ns_common", 8, &[("inum", 1, 32)]); // 6
    b.composite(false, "net", 8, &[("ns", 6, 0)]); // 7
    if with_reasons {
        b.enumeration(
            "skb_drop_reason",
            &[("SKB_NOT_DROPPED_YET", 0), ("SKB_DROP_REASON_NETFILTER_DROP", 11)],
        );
    }
    b.build()
}

/// A node's files: kernel release, effective capabilities, optionally BTF, nft, bpffs.
fn node(dir: &Path, release: &str, cap_eff: &str, btf: Option<Vec<u8>>) -> NodeRoot {
    let write = |path: &str, data: &[u8]| {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    };
    write("proc/sys/kernel/osrelease", format!("{release}\n").as_bytes());
    write("proc/self/status", format!("Name:\tx\nCapEff:\t{cap_eff}\n").as_bytes());
    write("proc/mounts", b"bpf /sys/fs/bpf bpf rw 0 0\n");
    write("usr/sbin/nft", b"");
    for name in ["cali1234abcd", "cali5678efgh", "lo", "eth0"] {
        std::fs::create_dir_all(dir.join("sys/class/net").join(name)).unwrap();
    }
    if let Some(btf) = btf {
        write("sys/kernel/btf/vmlinux", &btf);
    }
    NodeRoot::new(dir)
}

const ALL_CAPS: &str = "000001ffffffffff";

fn run(root: &NodeRoot, dir: &Path) -> Report {
    Report::new(root.checks(&node::interfaces_under(dir)), true)
}

fn check<'a>(report: &'a Report, name: &str) -> &'a Check {
    report.checks.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no check {name}"))
}

#[test]
fn a_complete_node_can_run_and_its_cni_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let root = node(dir.path(), "6.8.0-41-generic", ALL_CAPS, Some(btf(true)));
    let report = run(&root, dir.path());
    assert_eq!(report.verdict, Verdict::CanRun, "{}", report.table());
    assert_eq!(report.verdict.exit_code(), 0);
    assert!(
        check(&report, "cni").detail.starts_with("Calico (2 interface(s))"),
        "{}",
        report.table()
    );
    assert!(check(&report, "tc").detail.starts_with("tcx"));
    assert!(report.table().ends_with("the agent can run on this node\n"), "{}", report.table());
}

#[test]
fn without_the_drop_reason_enum_the_agent_runs_degraded() {
    let dir = tempfile::tempdir().unwrap();
    let root = node(dir.path(), "5.15.0", ALL_CAPS, Some(btf(false)));
    let report = run(&root, dir.path());
    assert_eq!(report.verdict.exit_code(), 1, "{}", report.table());
    let reasons = check(&report, "drop_reasons");
    assert_eq!(reasons.status, Status::Degraded);
    assert!(reasons.lost.as_deref().unwrap().contains("without the kernel's reason"));
    assert!(check(&report, "tc").detail.starts_with("clsact"), "5.15 has no tcx");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["verdict"], "degraded");
    assert_eq!(json["kernel_programs_embedded"], true);
}

#[test]
fn without_btf_or_capabilities_the_agent_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let root = node(dir.path(), "6.1.0", ALL_CAPS, None);
    let report = run(&root, dir.path());
    assert_eq!(report.verdict.exit_code(), 2, "{}", report.table());
    assert_eq!(check(&report, "btf").status, Status::Fail);
    assert!(
        report.table().contains("FAIL btf: the programs need the kernel's BTF"),
        "{}",
        report.table()
    );

    let dir = tempfile::tempdir().unwrap();
    // NET_ADMIN only: no BPF, PERFMON or SYS_ADMIN.
    let root = node(dir.path(), "6.8.0", "0000000000001000", Some(btf(true)));
    let report = run(&root, dir.path());
    assert_eq!(report.verdict, Verdict::CannotRun);
    let caps = check(&report, "capabilities");
    assert!(caps.detail.starts_with("held: NET_ADMIN;"), "{}", caps.detail);
    assert!(caps.lost.as_deref().unwrap().contains("BPF (load programs and maps)"));

    let report = Report::new(vec![Check::ok("x", "y")], false);
    assert_eq!(report.verdict, Verdict::CannotRun, "a binary without its programs cannot run");
}

#[test]
fn old_kernels_fail_and_releases_parse() {
    assert_eq!(parse_release("5.15.0-91-generic"), Some((5, 15)));
    assert_eq!(parse_release("6.18.1+deb13"), Some((6, 18)));
    assert_eq!(parse_cap_eff("CapInh:\t0\nCapEff:\t000001ffffffffff\n"), Some(0x1ff_ffff_ffff));
    let dir = tempfile::tempdir().unwrap();
    let root = node(dir.path(), "4.19.0", ALL_CAPS, Some(btf(true)));
    assert_eq!(check(&run(&root, dir.path()), "kernel").status, Status::Fail);
}

#[tokio::test]
async fn the_api_and_rbac_are_checked() {
    let fake = fake_apiserver::FakeApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    fake.write_kubeconfig(&path).unwrap();
    let args = crate::k8s::client::ClusterArgs { kubeconfig: Some(path), context: None };
    let checks = cluster::checks(&args).await;
    assert_eq!(checks[0].status, Status::Ok, "{checks:?}");
    assert_eq!(checks[1].name, "rbac");
    assert_eq!(checks[1].status, Status::Ok, "{checks:?}");
    let asked =
        fake.requests().iter().filter(|r| r.path.contains("selfsubjectaccessreviews")).count();
    assert!(asked >= 10, "one SelfSubjectAccessReview per permission, got {asked}");

    drop(fake);
    let checks = cluster::checks(&args).await;
    assert_eq!(Verdict::of(&checks), Verdict::CannotRun, "{checks:?}");
}

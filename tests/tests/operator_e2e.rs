//! The operator feed end to end through the kernel: setup → traffic → expectation.
//!
//! A fake API server enforces the RBAC of `deploy/` per bearer token; node network namespaces
//! hold real pods (veths, routes); a "CNI" re-renders nftables from the fake's current
//! NetworkPolicies with `explain` (it follows the policy, it is never told to open); real eBPF
//! sees the drops. Every actor is the built `netpol-trace` binary run as a user would, with its
//! own kubeconfig: `agent` (the agents' ServiceAccount), `controller` (the controller's), and
//! `approve` / `restore` / `drops` (dana, namespace admin of `db`, or the cluster admin). Only
//! the traffic (connects from inside pod namespaces) and the spoofed SYN are made in-process.
//! Names carry a per-run prefix; namespaces, nftables tables and processes are removed by
//! guards, also on panic.

use std::time::Duration;

use netpol_trace_integration::{
    operator::{
        ADMIN_TOKEN, PERSON_TOKEN, PORT, Scenario, filled, mysql_policy, no_rp_filter, phase,
        spoofed_connect,
    },
    require_root,
};
use serde_json::{Value, json};

/// Long enough for any machine; the latency budgets are measured by
/// `scripts/bench-operator.sh`, not asserted here.
const PATIENCE: Duration = Duration::from_secs(60);

fn bin() -> std::path::PathBuf {
    env!("CARGO_BIN_EXE_netpol-trace-under-test").into()
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Tries a connect a few times (a SYN may race the ruleset's replacement).
fn connects(s: &Scenario, node: usize, from: usize) -> bool {
    (0..5).any(|_| s.connect(node, from, Duration::from_millis(1000)))
}

#[test]
fn a_dropped_syn_is_reported_approved_applied_restored_and_rolled_back() {
    require_root();
    let mut s = Scenario::new(bin(), 1, false, 3307).expect("scenario");
    s.start_agents().expect("agent");
    s.controller = Some(s.cluster.spawn_controller("ctl-0", &[]).expect("controller"));
    let original = s.cluster.policy();
    let web_if = s.nodes[0].topo.pods[0].host_if.clone();

    // A real SYN, dropped by the CNI's rendering of the policy (3307 allowed, not 3306).
    assert!(!s.connect(0, 0, Duration::from_millis(1500)), "the CNI must drop 3306");
    let report = s.report_when("a report with filled status", PATIENCE, filled).unwrap();
    let name = report["metadata"]["name"].as_str().unwrap().to_string();
    assert_eq!(report["metadata"]["namespace"], "db");
    assert_eq!(
        report["spec"]["source"],
        json!({"namespace": "app", "workload": "web", "kind": "Deployment"})
    );
    assert_eq!(
        report["spec"]["destination"],
        json!({"namespace": "db", "workload": "mysql", "kind": "StatefulSet"})
    );
    assert_eq!(report["spec"]["port"], PORT);
    assert!(report["spec"].get("decision").is_none(), "agents never decide: {report}");
    let status = &report["status"];
    assert_eq!(status["state"], "Dropping");
    let node = &status["nodes"][0];
    assert_eq!(node["node"], "node-1");
    assert_eq!(node["ifname"], web_if.as_str(), "{report}");
    assert_eq!(node["reason"], "NETFILTER_DROP");
    assert_eq!(node["fromSourceVeth"], true, "the SYN left web's own veth: {report}");
    assert_eq!(status["attribution"]["policies"][0]["name"], "mysql-ingress");
    assert_eq!(phase(&report), Some("Proposed"));
    eprintln!("report: {}", serde_json::to_string_pretty(&report).unwrap());

    // The platform team lists it; dana approves; the controller applies.
    let out = s.cluster.cli(ADMIN_TOKEN, &["drops", "-A"]).unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains(&name), "{}", text(&out));
    let out = s.cluster.cli(PERSON_TOKEN, &["approve", &name, "-n", "db"]).unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    eprintln!("approve: {}", text(&out));
    let applied = s
        .report_when("Applied", PATIENCE, |r| phase(r) == Some("Applied"))
        .unwrap_or_else(|e| panic!("{e}\n{}", s.controller.as_ref().unwrap().log()));
    assert_eq!(applied["status"]["fix"]["applied"]["by"], "ctl-0");
    assert_eq!(
        applied["status"]["fix"]["applied"]["backup"][0]["object"]["spec"],
        original["spec"]
    );
    let patched = s.cluster.policy();
    assert_ne!(patched["spec"], original["spec"]);
    assert_eq!(
        applied["status"]["fix"]["applied"]["resourceVersions"][0]["resourceVersion"],
        patched["metadata"]["resourceVersion"]
    );

    // The CNI follows the patched policy; the kernel sees the SYN-ACK; the report says so.
    s.wait_blocked(0, false).unwrap();
    assert!(connects(&s, 0, 0), "web must reach mysql once the fix is enforced");
    let restored = s
        .report_when("Restored", PATIENCE, |r| r["status"]["state"] == "Restored")
        .unwrap_or_else(|e| panic!("{e}\n{}", s.agents[0].log()));
    assert_eq!(phase(&restored), Some("Applied"));

    // restore puts the policy back exactly; the CNI closes again and the drop comes back.
    let out = s
        .cluster
        .cli(PERSON_TOKEN, &["restore", &format!("dropreport/{name}"), "-n", "db"])
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(s.cluster.policy()["spec"], original["spec"]);
    let rolled_back = s.cluster.fake.get("dropreports", "db", &name).unwrap();
    assert_eq!(phase(&rolled_back), Some("RolledBack"), "{rolled_back}");
    s.wait_blocked(0, true).unwrap();
    assert!(!s.connect(0, 0, Duration::from_millis(1500)), "dropped again after the rollback");

    // Never did the agent's identity write a NetworkPolicy: the only writes are the
    // controller's guarded patch and the restore.
    let writes: Vec<String> = s
        .cluster
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/networkpolicies") && r.method != "GET" && !r.is_dry_run())
        .map(|r| format!("{} {}", r.method, r.status))
        .collect();
    assert_eq!(writes, ["PATCH 200", "PATCH 200"], "{writes:?}");
    for agent in s.agents.drain(..) {
        assert!(agent.stop(), "the agent stops cleanly on SIGTERM");
    }
}

#[test]
fn two_agents_on_two_nodes_converge_on_one_report() {
    require_root();
    let mut s = Scenario::new(bin(), 2, false, 3307).expect("scenario");
    s.start_agents().expect("agents");
    // web's replica on each node connects to the mysql replica on the same node.
    assert!(!s.connect(0, 0, Duration::from_millis(1500)));
    assert!(!s.connect(1, 0, Duration::from_millis(1500)));
    let report = s
        .report_when("two node entries", PATIENCE, |r| {
            r["status"]["nodes"].as_array().is_some_and(|n| n.len() == 2)
        })
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", s.agents[0].log(), s.agents[1].log()));
    assert_eq!(s.cluster.reports().len(), 1, "one report per flow identity");
    let nodes = report["status"]["nodes"].as_array().unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n["node"].as_str().unwrap()).collect();
    assert_eq!(names, ["node-1", "node-2"]);
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(n["ifname"], s.nodes[i].topo.pods[0].host_if.as_str(), "{report}");
        assert_eq!(n["fromSourceVeth"], true);
    }
    let total: u64 = nodes.iter().map(|n| n["count"].as_u64().unwrap()).sum();
    assert_eq!(report["status"]["count"], total, "{report}");
    assert_eq!(report["spec"]["source"]["workload"], "web");
    assert_eq!(report["spec"]["destination"]["workload"], "mysql");
}

#[test]
fn a_spoofed_syn_is_never_auto_approved_and_a_genuine_one_is() {
    require_root();
    // The policy allows 3306 now; the controller watches it change (the regression history).
    let mut s = Scenario::new(bin(), 1, true, PORT).expect("scenario");
    s.cluster.fake.modify("namespaces", "", "db", |ns| {
        ns["metadata"]["labels"]["netpol-trace.io/auto-approve"] = json!("regressions");
    });
    s.start_agents().expect("agent");
    s.controller = Some(
        s.cluster
            .spawn_controller("ctl-0", &["--auto-approve", "regressions"])
            .expect("controller"),
    );
    assert!(connects(&s, 0, 0), "allowed before the change");
    std::thread::sleep(Duration::from_secs(1));
    s.cluster.fake.modify("networkpolicies", "db", "mysql-ingress", |p| {
        p["spec"] = mysql_policy(3307)["spec"].clone();
    });
    s.wait_blocked(0, true).unwrap();

    // From the tools pod's veth, claiming web's address.
    let topo = &s.nodes[0].topo;
    let (web, mysql, tools) = (&topo.pods[0], &topo.pods[1], &topo.pods[2]);
    no_rp_filter(topo, &tools.host_if).unwrap();
    let spoofed =
        spoofed_connect(&tools.netns, web.ip, mysql.ip, PORT, Duration::from_millis(1500)).unwrap();
    assert!(!spoofed, "the CNI drops it (source web, port 3306)");
    let report = s
        .report_when("the spoofed SYN's report", PATIENCE, |r| {
            r["status"]["nodes"][0]["fromSourceVeth"] == false
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", s.agents[0].log()));
    let name = report["metadata"]["name"].as_str().unwrap().to_string();
    assert_eq!(report["status"]["nodes"][0]["ifname"], tools.host_if.as_str(), "{report}");
    assert_eq!(report["status"]["nodes"][0]["reason"], "NETFILTER_DROP");
    assert_eq!(report["spec"]["source"]["workload"], "web", "it claims to be web");
    // The controller saw the report (watch) and its resync; nothing is decided.
    std::thread::sleep(Duration::from_secs(3));
    let after = s.cluster.fake.get("dropreports", "db", &name).unwrap();
    assert!(after["spec"].get("decision").is_none(), "spoofed: never approved: {after}");
    assert_eq!(s.cluster.policy()["spec"], mysql_policy(3307)["spec"], "nothing written");

    // The same flow from web's own veth: a regression, approved and applied without a person.
    // One SYN only (no retransmission within 500 ms): the approval may land within a second.
    assert!(!s.connect(0, 0, Duration::from_millis(500)));
    let approved = s
        .report_when("the genuine SYN auto-approved", PATIENCE, |r| {
            r["spec"]["decision"] == "Approved"
        })
        .unwrap_or_else(|e| {
            let r = s.cluster.fake.get("dropreports", "db", &name).unwrap_or(Value::Null);
            panic!("{e}\n{r}\n{}", s.controller.as_ref().unwrap().log())
        });
    assert_eq!(approved["status"]["nodes"][0]["fromSourceVeth"], true, "{approved}");
    assert_eq!(approved["status"]["nodes"][0]["ifname"], web.host_if.as_str());
    assert!(
        approved["metadata"]["annotations"]["netpol-trace.io/approved-by"]
            .as_str()
            .is_some_and(|a| a.contains("auto-approve")),
        "{approved}"
    );
    s.report_when("Applied", PATIENCE, |r| phase(r) == Some("Applied")).unwrap();
    s.wait_blocked(0, false).unwrap();
    assert!(connects(&s, 0, 0), "the regression is repaired");
}

//! `lab demo` end to end for every built-in scenario: the real binary, as a user runs it,
//! with `-o json`. Each run must restore the connection (exit 0, last line a `summary` with
//! `restored: true`) and leave no network namespace, process or run directory behind.

use std::process::Command;

use netpol_trace_integration::require_root;

const SCENARIOS: &[&str] = &[
    "port-typo",
    "cross-namespace",
    "no-ingress-list",
    "egress-default-deny",
    "calico-default-deny",
    "admin-tier-deny",
];

/// Network namespaces of demo labs (named `npt_demo-<pid>_...`).
fn demo_namespaces() -> Vec<String> {
    let listed = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("npt_demo-"))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_scenario_is_detected_attributed_patched_and_restored() {
    require_root();
    let bin = env!("CARGO_BIN_EXE_netpol-trace-under-test");
    for scenario in SCENARIOS {
        let labs = tempfile::tempdir().unwrap();
        let report = labs.path().with_extension(format!("{scenario}.html"));
        let out = Command::new(bin)
            .args(["lab", "demo", "--scenario", scenario, "-o", "json", "--report"])
            .arg(&report)
            .env("NETPOL_TRACE_LAB_DIR", labs.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{scenario}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<serde_json::Value> =
            stdout.lines().map(|l| serde_json::from_str(l).expect("NDJSON")).collect();
        let summary = lines.last().unwrap();
        assert_eq!(summary["type"], "summary", "{scenario}");
        assert_eq!(summary["restored"], true, "{scenario}");
        assert!(summary["time_to_restore_ms"].as_u64().unwrap() < 30 * 60 * 1000);
        let steps: Vec<&str> = summary["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["step"].as_str().unwrap())
            .collect();
        for step in
            ["lab-up", "detected", "broken", "attributed", "patched", "restored", "verified"]
        {
            assert!(steps.contains(&step), "{scenario}: no {step} in {steps:?}");
        }
        // The kernel's evidence, attributed to the scenario's policy.
        let drop = lines.iter().find(|l| l["type"] == "drop").expect("a drop line");
        assert_eq!(drop["reason"], "NETFILTER_DROP", "{scenario}");
        assert_eq!(drop["dst"]["pod"], "mysql-0");
        assert!(!drop["policies"].as_array().unwrap().is_empty(), "{scenario}: {drop}");
        let verified =
            summary["steps"].as_array().unwrap().iter().find(|s| s["step"] == "verified").unwrap();
        assert_eq!(verified["data"]["select_1"], "1", "{scenario}");
        assert!(lines.iter().any(|l| l["type"] == "restored"), "{scenario}");
        check_other_kinds(scenario, summary);
        // The run's report: restored, with the scenario's denying policy.
        let html = std::fs::read_to_string(&report).expect("--report writes the report");
        let _ = std::fs::remove_file(&report);
        assert!(html.contains("RESTORED: the kernel saw the handshake"), "{scenario}");
        let policy = drop["policies"][0]["name"].as_str().unwrap();
        assert!(html.contains(policy), "{scenario}: {policy} in the report");
        // Nothing left behind.
        assert_eq!(demo_namespaces(), Vec::<String>::new(), "{scenario}: namespaces left");
        assert_eq!(
            std::fs::read_dir(labs.path()).unwrap().count(),
            0,
            "{scenario}: run directory left"
        );
    }
}

/// The step of `summary` called `name`.
fn step<'a>(summary: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    summary["steps"].as_array().unwrap().iter().find(|s| s["step"] == name).unwrap()
}

/// The scenarios of the other kinds: attributed to the kind, policy and rule that decided, fixed
/// in the right kind, and an admin-tier change said plainly to be a cluster admin's.
fn check_other_kinds(scenario: &str, summary: &serde_json::Value) {
    let attributed = step(summary, "attributed");
    let patched = step(summary, "patched");
    let patches = patched["data"]["patches"].as_array().unwrap();
    let admin_step =
        summary["steps"].as_array().unwrap().iter().find(|s| s["step"] == "cluster-admin");
    match scenario {
        "calico-default-deny" => {
            for direction in ["egress", "ingress"] {
                let by = &attributed["data"][direction]["decided_by"];
                assert_eq!(by["kind"], "GlobalNetworkPolicy", "{direction}: {by}");
                assert_eq!(by["name"], "default-deny", "{direction}: {by}");
                assert_eq!(by["tier"], "default", "{direction}: {by}");
                assert!(by["rule"].is_null(), "end of tier: {by}");
            }
            let detail = attributed["detail"].as_str().unwrap();
            assert!(
                detail.contains(
                    "decided by GlobalNetworkPolicy default-deny (tier default), end of tier: Deny"
                ),
                "{detail}"
            );
            // New Calico NetworkPolicies in the default tier, ordered before default-deny.
            assert_eq!(patches.len(), 2, "{patched}");
            for patch in patches {
                assert_eq!(patch["kind"], "NetworkPolicy", "{patch}");
                assert_eq!(patch["object"]["apiVersion"], "projectcalico.org/v3", "{patch}");
                assert_eq!(patch["object"]["spec"]["tier"], "default", "{patch}");
                assert_ne!(patch["requires_cluster_admin"], true, "{patch}");
            }
            assert!(admin_step.is_none(), "no cluster admin needed");
        }
        "admin-tier-deny" => {
            let by = &attributed["data"]["ingress"]["decided_by"];
            assert_eq!(by["kind"], "ClusterNetworkPolicy", "{by}");
            assert_eq!(by["name"], "isolate-db", "{by}");
            assert_eq!(
                (&by["tier"], &by["rule"], &by["action"]),
                (&"Admin".into(), &0.into(), &"Deny".into()),
                "{by}"
            );
            assert_eq!(patches.len(), 1, "{patched}");
            assert_eq!(patches[0]["kind"], "ClusterNetworkPolicy", "{patched}");
            assert_eq!(patches[0]["requires_cluster_admin"], true, "{patched}");
            let admin = admin_step.expect("a cluster-admin step before the change");
            let text = admin["detail"].as_str().unwrap();
            assert!(
                text.contains("in a real cluster only a cluster admin can make this change"),
                "{text}"
            );
            assert!(text.contains("LAB only"), "{text}");
            assert!(
                patched["detail"].as_str().unwrap().contains("applied to the LAB only"),
                "{patched}"
            );
        }
        _ => assert!(admin_step.is_none(), "{scenario}: no cluster admin needed"),
    }
}

#[test]
fn an_unknown_scenario_is_bad_input() {
    require_root();
    let out = Command::new(env!("CARGO_BIN_EXE_netpol-trace-under-test"))
        .args(["lab", "demo", "--scenario", "no-such-scenario"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-scenario") && err.contains("port-typo"), "{err}");
}

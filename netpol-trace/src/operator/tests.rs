//! Tests of the operator feed that need no API server: the CRD against deploy/, planning a
//! report from cluster objects, merging node observations, and the decision rules.

use chrono::{TimeZone, Utc};
use kube::CustomResourceExt;
use serde_json::json;

use super::auto_approve::AutoApprover;
use super::fixer::needs_work;
use super::garbage::is_garbage;
use super::plan::{Planned, plan_objects};
use super::publish::Observation;
use super::report::*;
use crate::inventory::{ClusterObjects, PolicySource, SourcedPolicy};

/// The CRD shipped in deploy/ and, the same file, in the Helm chart.
const DEPLOYED_CRD: &str =
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/crd-dropreport.yaml"));
const HELM_CRD: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/helm/netpol-trace/crds/dropreports.yaml"
));

#[test]
fn the_shipped_crd_is_the_generated_one() {
    let generated = crd_yaml().unwrap();
    assert!(
        DEPLOYED_CRD == generated,
        "deploy/crd-dropreport.yaml differs from the types: regenerate it with \
         `cargo run -p netpol-trace --example dropreport_crd > deploy/crd-dropreport.yaml`"
    );
    assert!(
        HELM_CRD == DEPLOYED_CRD,
        "the Helm chart's crds/dropreports.yaml differs from deploy/"
    );
    let crd = serde_json::to_value(DropReport::crd()).unwrap();
    assert_eq!(crd["metadata"]["name"], "dropreports.netpol-trace.io");
    assert_eq!(crd["spec"]["names"]["shortNames"], json!(["dr"]));
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], VERSION);
    assert_eq!(version["subresources"], json!({"status": {}}));
    let columns: Vec<(&str, i64)> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["priority"].as_i64().unwrap_or(0)))
        .collect();
    assert_eq!(
        columns,
        [
            ("Source", 0),
            ("Destination", 0),
            ("Port", 0),
            ("State", 0),
            ("Fix", 0),
            ("Count", 0),
            ("Last Seen", 0),
            ("Decision", 1),
            ("Source IP", 1)
        ]
    );
    // People may set spec.decision to Approved or Rejected only.
    let schema = &version["schema"]["openAPIV3Schema"]["properties"];
    assert_eq!(schema["spec"]["properties"]["decision"]["enum"], json!(["Approved", "Rejected"]));
    assert_eq!(schema["spec"]["properties"]["protocol"]["enum"], json!(["TCP", "UDP", "SCTP"]));
    // Backed-up objects are kept whole by an API server that prunes unknown fields.
    let backup = &schema["status"]["properties"]["fix"]["properties"]["applied"]["properties"]["backup"]
        ["items"]["properties"]["object"];
    assert_eq!(backup["x-kubernetes-preserve-unknown-fields"], true, "{backup}");
}

fn spec() -> DropReportSpec {
    DropReportSpec {
        source: FlowEnd::workload("app", "web", "Deployment"),
        destination: FlowEnd::workload("db", "mysql", "StatefulSet"),
        port: 3306,
        protocol: "TCP".into(),
        decision: None,
    }
}

fn objects(ingress_port: u16) -> ClusterObjects {
    let ns = |n: &str| serde_json::from_value(json!({"metadata": {"name": n}})).unwrap();
    let web = json!({"metadata": {"name": "web-7d9f8b6c5-x2k4q", "namespace": "app",
        "labels": {"app": "web", "pod-template-hash": "7d9f8b6c5"},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f8b6c5",
                             "uid": "u1", "controller": true}]},
        "status": {"phase": "Running", "podIP": "10.0.1.5"}});
    let mysql = json!({"metadata": {"name": "mysql-0", "namespace": "db", "labels": {"app": "mysql"},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "mysql",
                             "uid": "u2", "controller": true}]},
        "status": {"phase": "Running", "podIP": "10.0.2.7"}});
    let policy = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "mysql-ingress", "namespace": "db", "resourceVersion": "42"},
        "spec": {"podSelector": {"matchLabels": {"app": "mysql"}},
                 "ingress": [{"ports": [{"port": ingress_port}]}]}});
    ClusterObjects {
        namespaces: vec![ns("app"), ns("db")],
        pods: vec![serde_json::from_value(web).unwrap(), serde_json::from_value(mysql).unwrap()],
        network_policies: vec![SourcedPolicy {
            policy: serde_json::from_value(policy.clone()).unwrap(),
            raw: policy,
            source: PolicySource::Cluster,
        }],
        ..ClusterObjects::default()
    }
}

#[test]
fn a_report_is_planned_from_its_workloads_pods() {
    let Planned::Changes(plan) = plan_objects(objects(3307), &spec()) else { panic!("no plan") };
    assert_eq!(plan.writes.len(), 1);
    let w = &plan.writes[0];
    assert_eq!((w.namespace.as_str(), w.name.as_str()), ("db", "mysql-ingress"));
    assert_eq!(w.before.as_ref().unwrap()["metadata"]["resourceVersion"], "42");
    let patches = super::plan::patches_for_status(&plan.plan);
    assert!(
        patches[0].get("jsonPatch").is_some() && patches[0].get("newlyAllowed").is_some(),
        "{patches:?}"
    );
    assert!(patches[0].get("json_patch").is_none());

    assert!(matches!(plan_objects(objects(3306), &spec()), Planned::AlreadyAllowed));
    let mut gone = spec();
    gone.source = FlowEnd::workload("app", "api", "Deployment");
    let Planned::Unfixable(reason) = plan_objects(objects(3307), &gone) else { panic!() };
    assert_eq!(reason, "no pod of the source workload app/api exists now");
}

fn observation(node: &str, count: u64, minute: u32) -> Observation {
    let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, minute, 0).unwrap();
    Observation {
        spec: spec(),
        node: NodeEntry {
            node: node.into(),
            count,
            last_seen: at,
            ifname: format!("cali-{node}"),
            reason: "NETFILTER_DROP".into(),
            from_source_veth: Some(true),
        },
        first_seen: at,
        state: FlowState::Dropping,
        attribution: None,
        patches: Some(std::sync::Arc::new(vec![json!({"action": "patch"})])),
    }
}

#[test]
fn observations_of_two_nodes_keep_both_entries_and_never_touch_a_decided_fix() {
    let mut status = DropReportStatus::default();
    observation("node-b", 3, 5).merge_into(&mut status);
    observation("node-a", 2, 1).merge_into(&mut status);
    observation("node-b", 7, 9).merge_into(&mut status);
    let nodes: Vec<(&str, u64)> = status.nodes.iter().map(|n| (n.node.as_str(), n.count)).collect();
    assert_eq!(nodes, [("node-a", 2), ("node-b", 7)]);
    assert_eq!(status.count, Some(9));
    assert_eq!(status.first_seen, Some(Utc.with_ymd_and_hms(2026, 1, 1, 0, 1, 0).unwrap()));
    assert_eq!(status.last_seen, Some(Utc.with_ymd_and_hms(2026, 1, 1, 0, 9, 0).unwrap()));
    assert_eq!(status.fix.as_ref().unwrap().phase, FixPhase::Proposed);

    status.fix.as_mut().unwrap().phase = FixPhase::Applied;
    let mut other = observation("node-c", 1, 10);
    other.patches = Some(std::sync::Arc::new(vec![json!({"action": "create"})]));
    other.merge_into(&mut status);
    let fix = status.fix.unwrap();
    assert_eq!((fix.phase, fix.patches), (FixPhase::Applied, vec![json!({"action": "patch"})]));
}

fn report(
    decision: Option<Decision>,
    phase: Option<FixPhase>,
    generation: i64,
    observed: Option<i64>,
) -> DropReport {
    let mut spec = spec();
    spec.decision = decision;
    let mut r = DropReport::new("r", spec);
    r.metadata.namespace = Some("db".into());
    r.metadata.generation = Some(generation);
    r.status = Some(DropReportStatus {
        fix: phase.map(|phase| FixStatus {
            phase,
            patches: vec![],
            message: None,
            applied: None,
            observed_generation: observed,
        }),
        ..DropReportStatus::default()
    });
    r
}

#[test]
fn only_approved_unapplied_reports_need_work() {
    use Decision::*;
    use FixPhase::*;
    assert!(!needs_work(&report(None, Some(Proposed), 1, None)));
    assert!(!needs_work(&report(Some(Rejected), Some(Proposed), 2, None)));
    assert!(needs_work(&report(Some(Approved), Some(Proposed), 2, None)));
    assert!(needs_work(&report(Some(Approved), None, 2, None)));
    assert!(needs_work(&report(Some(Approved), Some(RolledBack), 4, Some(2))));
    assert!(!needs_work(&report(Some(Approved), Some(Applied), 2, Some(2))));
    // A final answer is not retried in a loop, only after a new decision.
    assert!(!needs_work(&report(Some(Approved), Some(Failed), 2, Some(2))));
    assert!(needs_work(&report(Some(Approved), Some(Failed), 4, Some(2))));
    assert!(!needs_work(&report(Some(Approved), Some(NotNeeded), 2, Some(2))));
}

#[test]
fn spoofed_or_outside_sources_are_never_auto_approval_candidates() {
    let mut r = report(None, Some(FixPhase::Proposed), 1, None);
    let mut status = DropReportStatus::default();
    observation("node-a", 2, 1).merge_into(&mut status);
    r.status = Some(status.clone());
    assert_eq!(AutoApprover::refusal(&r), None);

    let mut spoofed = observation("node-b", 1, 2);
    spoofed.node.from_source_veth = Some(false);
    spoofed.node.ifname = "cali-other".into();
    spoofed.merge_into(&mut status);
    r.status = Some(status);
    assert_eq!(
        AutoApprover::refusal(&r).as_deref(),
        Some("node node-b saw the SYN on cali-other, not the source pod's own veth")
    );

    let mut outside = report(None, Some(FixPhase::Proposed), 1, None);
    outside.spec.source = FlowEnd::address("203.0.113.5".parse().unwrap());
    assert_eq!(
        AutoApprover::refusal(&outside).as_deref(),
        Some("the source is an address, not a workload")
    );
}

#[test]
fn only_undecided_reports_restored_long_ago_are_garbage() {
    let cutoff = Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap();
    let mut r = report(None, Some(FixPhase::Proposed), 1, None);
    let mut status = DropReportStatus::default();
    observation("node-a", 2, 1).merge_into(&mut status);
    status.state = Some(FlowState::Restored);
    r.status = Some(status);
    assert!(is_garbage(&r, cutoff));
    assert!(!is_garbage(&r, Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()));
    r.status.as_mut().unwrap().fix.as_mut().unwrap().phase = FixPhase::Applied;
    assert!(!is_garbage(&r, cutoff), "an applied fix keeps its backup");
}

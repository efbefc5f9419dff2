//! `fix` against the conformance corpus: every denied probe of every case is fixed, the patches
//! are applied in memory (each JSON patch replayed on the object as read), and the engine must
//! then allow the probe while every other probe of the case keeps its verdict, except probes
//! from the fixed source's workload to the fixed destination's workload on the same port and
//! protocol. Probes that cannot be fixed under the rules must be exactly the listed ones, each
//! refused with its reason.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use netpol_trace::explain::{ExplainOptions, is_allowed};
use netpol_trace::fix::{FixError, FixOptions, PatchAction, Workload, plan_fix};
use netpol_trace::flow::{EndpointSpec, Flow, FlowEndpoint};
use netpol_trace::inventory::{Inventory, InventoryOptions};
use netpol_trace::manifest::load_paths;
use netpol_trace::policy::Protocol;
use serde_json::Value;

const PROBE_FILES: [&str; 3] = ["probes.jsonl", "probes_ipblock_pod.jsonl", "probes_from_ip.jsonl"];

/// Denied probes no minimal patch may fix, and the start of the reason `fix` gives.
const UNFIXABLE: [(&str, &str, &str); 3] = [
    // The e2e suite's "except clause" test: egress to 0.0.0.0/4 except b's address.
    (
        "043-e2e-35-enforce-except-clause-while-egress-access-server",
        "x/a -> x/b TCP/80",
        "x/b (10.0.1.11) is excluded on purpose by except 10.0.1.11/32 in egress rule 0",
    ),
    // Step 1 of "IP overlapping in both ipBlock.cidr and ipBlock.except": only the except
    // policy exists yet (step 2 adds the policy that allows b, and the probe is allowed).
    (
        "044-e2e-36-ensure-ip-overlapping-both-ipblock-cidr-ipblock-step1",
        "x/a -> x/b TCP/80",
        "x/b (10.0.1.11) is excluded on purpose by except 10.0.1.11/32 in egress rule 0",
    ),
    // The documentation's example: ingress from 172.17.0.0/16 except 172.17.1.0/24.
    (
        "059-docs-test-network-policy",
        "172.17.1.5 -> default/db TCP/6379",
        "172.17.1.5 is excluded on purpose by except 172.17.1.0/24 in ingress rule 0",
    ),
];

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/conformance/cases")
}

fn endpoint(inventory: &Inventory, probe: &Value, pod_key: &str, ip_key: &str) -> EndpointSpec {
    if let Some(ip) = probe.get(ip_key).and_then(Value::as_str) {
        return EndpointSpec::Ip(ip.parse().expect("probe IP"));
    }
    let name = probe[pod_key].as_str().expect("probe endpoint");
    let (ns, pod) = name.split_once('/').expect("NS/POD");
    EndpointSpec::Pod(inventory.pod_id(ns, pod).unwrap_or_else(|| panic!("pod {name}")))
}

fn probe_flow(inventory: &Inventory, probe: &Value) -> Flow {
    let protocol: Protocol = probe["protocol"].as_str().unwrap().parse().unwrap();
    let port = u16::try_from(probe["port"].as_u64().unwrap()).unwrap();
    let src = endpoint(inventory, probe, "from", "from_ip");
    let dst = endpoint(inventory, probe, "to", "to_ip");
    Flow::new(inventory, src, dst, port, protocol)
}

fn describe(inventory: &Inventory, flow: &Flow) -> String {
    let end = |end: FlowEndpoint| match end {
        FlowEndpoint::Pod { id, .. } => inventory.pod(id).pod.to_string(),
        FlowEndpoint::External { ip } => ip.to_string(),
    };
    format!("{} -> {} {}/{}", end(flow.src), end(flow.dst), flow.protocol, flow.port)
}

/// Whether `end` is `fixed` itself or in its workload.
fn same_workload(inventory: &Inventory, fixed: FlowEndpoint, end: FlowEndpoint) -> bool {
    match (fixed, end) {
        (FlowEndpoint::Pod { id: a, .. }, FlowEndpoint::Pod { id: b, .. }) => {
            a == b || Workload::of_pod(inventory, a).is_ok_and(|w| w.contains(b))
        }
        (FlowEndpoint::External { ip: a }, FlowEndpoint::External { ip: b }) => a == b,
        _ => false,
    }
}

#[derive(Default)]
struct Tally {
    denied: usize,
    fixed: usize,
    created: usize,
    patched: usize,
    widened: Vec<String>,
    failures: Vec<String>,
    unfixable: BTreeMap<(String, String), String>,
}

fn load_probes(case: &Path) -> Vec<Value> {
    PROBE_FILES
        .iter()
        .filter_map(|file| fs::read_to_string(case.join(file)).ok())
        .flat_map(|text| {
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn fix_case(tally: &mut Tally, name: &str, inventory: &Inventory, probes: &[Value]) {
    let options = ExplainOptions::default();
    let flows: Vec<Flow> = probes.iter().map(|p| probe_flow(inventory, p)).collect();
    let verdicts: Vec<bool> = flows.iter().map(|f| is_allowed(inventory, f, &options)).collect();
    for (probe, (flow, &allowed)) in probes.iter().zip(flows.iter().zip(&verdicts)) {
        assert_eq!(allowed, probe["expect"] == "allow", "{name}: engine disagrees on {probe}");
        if allowed {
            continue;
        }
        tally.denied += 1;
        let label = describe(inventory, flow);
        let plan = match plan_fix(inventory, flow, &FixOptions::default()) {
            Ok(plan) => plan,
            Err(error) => {
                assert!(
                    !matches!(error, FixError::InvalidResult { .. } | FixError::Unpatchable { .. }),
                    "{name}: {label}: {error}"
                );
                tally.unfixable.insert((name.to_owned(), label), error.to_string());
                continue;
            }
        };
        // Every JSON patch replays on the object as read (then on the previous entry's result).
        let mut objects: BTreeMap<String, Value> = BTreeMap::new();
        for patch in &plan.patches {
            tally.created += usize::from(patch.action == PatchAction::Create);
            tally.patched += usize::from(patch.action == PatchAction::Patch);
            let Some(ops) = &patch.json_patch else { continue };
            let object = objects
                .entry(patch.key())
                .or_insert_with(|| patch.original.clone().expect("patched objects were read"));
            json_patch::patch(object, ops).unwrap_or_else(|e| panic!("{name}: {label}: {e}"));
            assert_eq!(*object, patch.result, "{name}: {label}: {}", patch.key());
        }
        let after = plan.apply_to(inventory).unwrap();
        if !is_allowed(&after, flow, &options) {
            tally.failures.push(format!("{name}: {label}: still denied after the fix"));
            continue;
        }
        tally.fixed += 1;
        for (other, &before) in flows.iter().zip(&verdicts) {
            if is_allowed(&after, other, &options) == before {
                continue;
            }
            let in_scope = other.port == flow.port
                && other.protocol == flow.protocol
                && same_workload(inventory, flow.src, other.src)
                && same_workload(inventory, flow.dst, other.dst)
                && !before;
            if !in_scope {
                tally.widened.push(format!(
                    "{name}: fixing {label} changed {} ({})",
                    describe(inventory, other),
                    if before { "now denied" } else { "now allowed" }
                ));
            }
        }
    }
}

#[test]
fn fix_every_denied_probe_of_the_corpus() {
    let mut cases: Vec<PathBuf> = fs::read_dir(cases_dir())
        .expect("conformance corpus present")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    let mut tally = Tally::default();
    let mut cases_with_denials = 0;
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let objects = load_paths(&[case.join("manifests.yaml")]).unwrap();
        let inventory = Inventory::from_objects(objects, InventoryOptions::default()).unwrap();
        let probes = load_probes(case);
        let before = tally.denied;
        fix_case(&mut tally, &name, &inventory, &probes);
        cases_with_denials += usize::from(tally.denied > before);
    }
    println!(
        "fix conformance: {} cases with denied probes, {} denied probes, {} fixed ({} policies patched, {} created), {} widened, {} unfixable",
        cases_with_denials,
        tally.denied,
        tally.fixed,
        tally.patched,
        tally.created,
        tally.widened.len(),
        tally.unfixable.len()
    );
    for ((case, probe), reason) in &tally.unfixable {
        println!("  unfixable: {case}: {probe}: {reason}");
    }
    assert!(tally.failures.is_empty(), "{}", tally.failures.join("\n"));
    assert!(
        tally.widened.is_empty(),
        "{} widened:\n{}",
        tally.widened.len(),
        tally.widened.join("\n")
    );
    let expected: Vec<(String, String)> =
        UNFIXABLE.iter().map(|(c, p, _)| ((*c).to_owned(), (*p).to_owned())).collect();
    let got: Vec<(String, String)> = tally.unfixable.keys().cloned().collect();
    assert_eq!(got, expected, "unfixable probes differ from the list");
    for (case, probe, reason) in UNFIXABLE {
        let error = &tally.unfixable[&(case.to_owned(), probe.to_owned())];
        assert!(error.starts_with(reason), "{case}: {probe}: {error}");
    }
    assert_eq!(tally.fixed + tally.unfixable.len(), tally.denied);
    assert!(tally.fixed >= 138, "corpus shrank: {} fixed", tally.fixed);
}

//! Runs every probe of the conformance corpus (`tests/conformance/`, verdicts from the Kubernetes
//! e2e NetworkPolicy suite and the NetworkPolicy documentation) through the engine. Every
//! verdict must agree; the isolating policies must agree with the corpus' reference explanation.

use std::fs;
use std::path::{Path, PathBuf};

use netpol_trace::explain::{ExplainOptions, Verdict, explain, is_allowed};
use netpol_trace::flow::{EndpointSpec, Flow};
use netpol_trace::inventory::{Inventory, InventoryOptions};
use netpol_trace::manifest::load_paths;
use netpol_trace::policy::{Direction, IpBlockPodMode, Protocol};
use serde_json::Value;

const PROBE_FILES: [&str; 3] = ["probes.jsonl", "probes_ipblock_pod.jsonl", "probes_from_ip.jsonl"];

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/conformance/cases")
}

fn endpoint(inventory: &Inventory, probe: &Value, pod_key: &str, ip_key: &str) -> EndpointSpec {
    if let Some(ip) = probe.get(ip_key).and_then(Value::as_str) {
        return EndpointSpec::Ip(ip.parse().expect("probe IP"));
    }
    let name = probe[pod_key].as_str().expect("probe endpoint");
    let (ns, pod) = name.split_once('/').expect("NS/POD");
    EndpointSpec::Pod(
        inventory.pod_id(ns, pod).unwrap_or_else(|| panic!("pod {name} not in manifests")),
    )
}

fn verdict(text: &str) -> Verdict {
    match text {
        "allow" => Verdict::Allow,
        "deny" => Verdict::Deny,
        other => panic!("unknown verdict {other}"),
    }
}

#[derive(Default)]
struct Tally {
    probes: usize,
    agree: usize,
    failures: Vec<String>,
    isolation_checked: usize,
    isolation_disagreements: Vec<String>,
}

fn run_probe(tally: &mut Tally, case: &str, inventory: &Inventory, probe: &Value) {
    let protocol: Protocol = probe["protocol"].as_str().unwrap().parse().unwrap();
    let port = u16::try_from(probe["port"].as_u64().unwrap()).unwrap();
    let src = endpoint(inventory, probe, "from", "from_ip");
    let dst = endpoint(inventory, probe, "to", "to_ip");
    let flow = Flow::new(inventory, src, dst, port, protocol);
    let mut expectations = vec![(IpBlockPodMode::MatchesPods, probe["expect"].as_str().unwrap())];
    if let Some(other) = probe.get("expect_if_ipblock_ignores_pods").and_then(Value::as_str) {
        expectations.push((IpBlockPodMode::NeverMatchesPods, other));
    }
    for (mode, expect) in expectations {
        let options = ExplainOptions { ip_block_pod_mode: mode };
        let explanation = explain(inventory, &flow, &options);
        tally.probes += 1;
        let fast = is_allowed(inventory, &flow, &options);
        if explanation.verdict == verdict(expect) && fast == explanation.allowed() {
            tally.agree += 1;
        } else {
            tally.failures.push(format!(
                "{case} ({mode:?}): {probe}\n  got {:?} (fast path allowed={fast})\n  {}",
                explanation.verdict,
                serde_json::to_string(&explanation).unwrap()
            ));
        }
        if mode != IpBlockPodMode::MatchesPods {
            continue;
        }
        for direction in [Direction::Egress, Direction::Ingress] {
            let Some(reference) = probe["ref_explain"].get(direction.spec_field()) else {
                continue;
            };
            let mut want: Vec<&str> = reference["policies"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap())
                .collect();
            want.sort_unstable();
            let got: Vec<String> = explanation
                .direction(direction)
                .policies
                .iter()
                .map(|p| format!("{}/{}", p.namespace, p.name))
                .collect();
            tally.isolation_checked += 1;
            if got != want
                || explanation.direction(direction).isolated
                    != reference["isolated"].as_bool().unwrap()
            {
                tally
                    .isolation_disagreements
                    .push(format!("{case} {direction}: {probe}\n  got {got:?}"));
            }
        }
    }
}

#[test]
fn conformance_corpus() {
    let mut cases: Vec<PathBuf> = fs::read_dir(cases_dir())
        .expect("conformance corpus present")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 68, "corpus incomplete: {} cases", cases.len());
    let mut tally = Tally::default();
    let mut probe_lines = 0;
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let objects =
            load_paths(&[case.join("manifests.yaml")]).unwrap_or_else(|e| panic!("{name}: {e}"));
        let inventory = Inventory::from_objects(objects, InventoryOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for file in PROBE_FILES {
            let Ok(text) = fs::read_to_string(case.join(file)) else { continue };
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                probe_lines += 1;
                let probe: Value = serde_json::from_str(line).unwrap();
                run_probe(&mut tally, &name, &inventory, &probe);
            }
        }
    }
    println!(
        "conformance: {} cases, {probe_lines} probes ({} verdicts incl. the ipBlock-ignores-pods mode), {} agree",
        cases.len(),
        tally.probes,
        tally.agree
    );
    println!(
        "isolating policies vs reference: {} checked, {} disagree",
        tally.isolation_checked,
        tally.isolation_disagreements.len()
    );
    assert!(
        tally.failures.is_empty(),
        "{} disagreements:\n{}",
        tally.failures.len(),
        tally.failures.join("\n")
    );
    assert!(
        tally.isolation_disagreements.is_empty(),
        "isolating policies differ from the reference:\n{}",
        tally.isolation_disagreements.join("\n")
    );
    assert!(probe_lines >= 567);
}

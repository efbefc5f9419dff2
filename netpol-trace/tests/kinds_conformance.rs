//! Runs every probe of the other-kinds corpus (`tests/kinds/`, cases built from
//! kubernetes-sigs/network-policy-api's conformance tests and Calico's documentation; see its
//! README) through `explain`: the verdict must agree, and so must `decided_by` per direction
//! where the probe states it (`null`: nobody decided; otherwise the fields it names).

use std::fs;
use std::path::{Path, PathBuf};

use netpol_trace::explain::{ExplainOptions, Verdict, explain, is_allowed};
use netpol_trace::flow::{EndpointSpec, Flow};
use netpol_trace::inventory::{Inventory, InventoryOptions};
use netpol_trace::manifest::load_paths;
use netpol_trace::policy::Protocol;
use serde_json::Value;

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kinds")
}

fn pod(inventory: &Inventory, name: &str) -> EndpointSpec {
    let (ns, pod) = name.split_once('/').expect("NS/POD");
    EndpointSpec::Pod(
        inventory.pod_id(ns, pod).unwrap_or_else(|| panic!("pod {name} not in manifests")),
    )
}

/// The disagreements of one probe (empty: it agrees).
fn check(inventory: &Inventory, probe: &Value) -> Vec<String> {
    let protocol: Protocol = probe["protocol"].as_str().unwrap().parse().unwrap();
    let port = u16::try_from(probe["port"].as_u64().unwrap()).unwrap();
    let src = pod(inventory, probe["from"].as_str().unwrap());
    let dst = pod(inventory, probe["to"].as_str().unwrap());
    let flow = Flow::new(inventory, src, dst, port, protocol);
    let options = ExplainOptions::default();
    let explanation = explain(inventory, &flow, &options);
    let got = serde_json::to_value(&explanation).unwrap();
    let mut out = Vec::new();
    let want = match probe["expect"].as_str().unwrap() {
        "allow" => Verdict::Allow,
        _ => Verdict::Deny,
    };
    if explanation.verdict != want {
        out.push(format!("verdict {:?}", explanation.verdict));
    }
    if is_allowed(inventory, &flow, &options) != explanation.allowed() {
        out.push("is_allowed disagrees with explain".to_owned());
    }
    for direction in ["egress", "ingress"] {
        let Some(want) = probe.get(format!("{direction}_decided_by")) else { continue };
        let have = &got[direction]["decided_by"];
        let agrees = match want {
            Value::Null => have.is_null(),
            Value::Object(fields) => fields.iter().all(|(k, v)| &have[k] == v),
            other => panic!("bad decided_by {other}"),
        };
        if !agrees {
            out.push(format!("{direction} decided_by {have}, want {want}"));
        }
    }
    out
}

#[test]
fn kinds_corpus() {
    let mut cases: Vec<PathBuf> = fs::read_dir(cases_dir())
        .expect("corpus present")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 41, "corpus incomplete: {} cases", cases.len());
    let (mut probes, mut decided, mut failures) = (0, 0, Vec::new());
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let objects =
            load_paths(&[case.join("manifests.yaml")]).unwrap_or_else(|e| panic!("{name}: {e}"));
        let inventory = Inventory::from_objects(objects, InventoryOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let text = fs::read_to_string(case.join("probes.jsonl")).expect("probes.jsonl");
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let probe: Value = serde_json::from_str(line).unwrap();
            probes += 1;
            decided += ["egress", "ingress"]
                .iter()
                .filter(|d| probe.get(format!("{d}_decided_by")).is_some())
                .count();
            let wrong = check(&inventory, &probe);
            if !wrong.is_empty() {
                failures.push(format!("{name}: {line}\n  {}", wrong.join("\n  ")));
            }
        }
    }
    println!("kinds: {} cases, {probes} probes, {decided} decided_by checks", cases.len());
    assert!(failures.is_empty(), "{} disagreements:\n{}", failures.len(), failures.join("\n"));
    assert!(probes >= 263);
}

//! Independent check of the lab's enforcement against the conformance corpus
//! (`tests/conformance/cases`: verdicts from the Kubernetes e2e NetworkPolicy suite and the
//! NetworkPolicy documentation). For each case a lab is built from its `manifests.yaml` (the
//! policies go through the policy engine, the plan compiler and the nftables renderer), then
//! every pod-to-pod probe of `probes.jsonl` and `probes_ipblock_pod.jsonl` is a real connection
//! from the source pod's network namespace, and the kernel's answer must equal `expect`: a
//! handshake, an echo or a refusal from the destination (the packet got through) is "allow", no
//! answer within the timeout is "deny". SCTP probes and probes from or to outside addresses are
//! skipped (the lab has no SCTP listener and no hosts outside its pods).
//!
//! Cases with the same pods and namespaces share one lab: the next case's policies are swapped
//! in with `apply_policies`, which checks the atomic swap as well.
//!
//! By default a sample of cases chosen for feature coverage runs (CI); with
//! `NETPOL_TRACE_LAB_CONFORMANCE=all` (see `scripts/lab-conformance.sh`) every case runs. Both
//! print `lab conformance: N probes, M agree` and list the disagreements. Needs root; fails
//! without it.
//!
//! The other policy kinds (`netpol-trace/tests/kinds`: AdminNetworkPolicy,
//! BaselineAdminNetworkPolicy and ClusterNetworkPolicy cases from the network-policy-api
//! conformance suite, Calico GlobalNetworkPolicy/NetworkPolicy cases from Calico's
//! documentation) run in full, the same way, with the policies rendered in tier order, and so
//! do the lab's own cases of those kinds (`tests/conformance/kinds-lab`).
//!
//! Every probe's kernel answer is also compared with the policy engine's verdict (`explain`)
//! on the lab's own inventory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use netpol_trace::explain::{ExplainOptions, is_allowed};
use netpol_trace::flow::Flow;
use netpol_trace::inventory::ClusterObjects;
use netpol_trace::lab::probe::probe;
use netpol_trace::lab::{LabContext, LabPolicies, LabState, ProbeOutcome, Protocol, lifecycle};
use netpol_trace::manifest::load_paths;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_netpol-trace-under-test");

/// `all` runs every case of the corpus.
const MODE_ENV: &str = "NETPOL_TRACE_LAB_CONFORMANCE";

/// The sample CI runs, by case number, chosen for feature coverage.
const SAMPLE: &[(&str, &str)] = &[
    ("002", "default deny of ingress and egress"),
    ("011", "namespaceSelector AND podSelector, matchExpressions In/NotIn"),
    ("015", "several overlapping policies (union)"),
    ("019", "named port on ingress, namespaceSelector"),
    ("020", "named port on egress (resolved on each destination)"),
    ("044", "egress ipBlock with except, covering pod IPs"),
    ("054", "UDP ports"),
    ("059", "ingress and egress ipBlocks, OR of peers, both directions"),
    ("060", "endPort range"),
];

/// Probe files, graded by `expect` (the lab matches ipBlocks against pod IPs, the engine's
/// default and the e2e suite's expectation); the probes from outside addresses are all skipped.
const PROBE_FILES: [&str; 3] = ["probes.jsonl", "probes_ipblock_pod.jsonl", "probes_from_ip.jsonl"];

/// How long a probe waits for an answer before calling the flow denied.
const DENY_TIMEOUT: Duration = Duration::from_millis(300);
/// A second, longer look at a flow expected to pass that got no answer (a loaded machine).
const RETRY_TIMEOUT: Duration = Duration::from_secs(2);
/// Probes of one case in flight at once.
const WORKERS: usize = 16;

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/cases")
}

fn kinds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../netpol-trace/tests/kinds")
}

struct ProbeSpec {
    from: String,
    to: String,
    port: u16,
    protocol: Protocol,
    /// The case's verdict; `None` for the extra probes graded by `explain` alone.
    expect_allow: Option<bool>,
    file: &'static str,
}

struct Case {
    name: String,
    objects: ClusterObjects,
    probes: Vec<ProbeSpec>,
    skipped: usize,
}

impl Case {
    fn load(dir: &Path) -> Self {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let objects = load_paths(&[dir.join("manifests.yaml")])
            .unwrap_or_else(|e| panic!("{name}: manifests: {e}"));
        let mut probes = Vec::new();
        let mut skipped = 0;
        for file in PROBE_FILES {
            let Ok(text) = std::fs::read_to_string(dir.join(file)) else { continue };
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let probe: Value = serde_json::from_str(line).expect("probe line");
                let protocol: Protocol = probe["protocol"].as_str().unwrap().parse().unwrap();
                let (Some(from), Some(to)) = (probe["from"].as_str(), probe["to"].as_str()) else {
                    skipped += 1;
                    continue;
                };
                if protocol == Protocol::Sctp {
                    skipped += 1;
                    continue;
                }
                probes.push(ProbeSpec {
                    from: from.to_owned(),
                    to: to.to_owned(),
                    port: u16::try_from(probe["port"].as_u64().unwrap()).unwrap(),
                    protocol,
                    expect_allow: match probe["expect"].as_str().unwrap() {
                        "allow" => Some(true),
                        "deny" => Some(false),
                        other => panic!("{name}: unknown expectation {other}"),
                    },
                    file,
                });
            }
        }
        Self { name, objects, probes, skipped }
    }

    /// Adds a probe for every ordered pair of pods on every port and protocol of the case's
    /// probes that no probe covers yet, graded by `explain` alone.
    fn add_every_pair(&mut self) {
        let pods: Vec<String> = self
            .objects
            .pods
            .iter()
            .map(|p| {
                let meta = &p.metadata;
                format!(
                    "{}/{}",
                    meta.namespace.as_deref().unwrap_or("default"),
                    meta.name.as_deref().unwrap_or("")
                )
            })
            .collect();
        let mut ports: Vec<(u16, Protocol)> =
            self.probes.iter().map(|p| (p.port, p.protocol)).collect();
        ports.sort();
        ports.dedup();
        let mut seen: std::collections::BTreeSet<(String, String, u16, Protocol)> = self
            .probes
            .iter()
            .map(|p| (p.from.clone(), p.to.clone(), p.port, p.protocol))
            .collect();
        for from in &pods {
            for to in pods.iter().filter(|to| *to != from) {
                for &(port, protocol) in &ports {
                    if seen.insert((from.clone(), to.clone(), port, protocol)) {
                        self.probes.push(ProbeSpec {
                            from: from.clone(),
                            to: to.clone(),
                            port,
                            protocol,
                            expect_allow: None,
                            file: "every pod pair",
                        });
                    }
                }
            }
        }
    }

    /// What must be equal for two cases to share a lab: pods and namespaces.
    fn fingerprint(&self) -> String {
        serde_json::to_string(&(&self.objects.pods, &self.objects.namespaces)).unwrap()
    }
}

/// A lab of this test, torn down (processes, namespaces, run directory) when dropped.
struct Lab {
    ctx: LabContext,
    name: String,
    _labs_dir: tempfile::TempDir,
}

impl Lab {
    fn up(case: &Case) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!("lc{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        let labs_dir = tempfile::tempdir().expect("tempdir");
        let ctx = LabContext { labs_dir: labs_dir.path().to_owned(), exe: PathBuf::from(BIN) };
        let lab = Self { ctx, name, _labs_dir: labs_dir };
        lifecycle::up(&lab.ctx, &lab.name, &case.objects, None)
            .unwrap_or_else(|e| panic!("{}: lab up: {e}", case.name));
        lab
    }

    fn state(&self) -> LabState {
        lifecycle::load(&self.ctx, &self.name).expect("lab state")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(err) = lifecycle::down(&self.ctx, &self.name) {
            eprintln!("lab down {} failed: {err}", self.name);
        }
    }
}

#[derive(Default)]
struct Tally {
    probes: usize,
    agree: usize,
    /// Probes with an expected verdict.
    graded: usize,
    /// Probes the kernel let through.
    allowed: usize,
    /// Probes where the kernel's answer equals the engine's verdict.
    engine_agree: usize,
    /// Probes where the kernel, the expected verdict and the engine all agree.
    all_agree: usize,
    skipped: usize,
    retried: usize,
    disagreements: Vec<String>,
}

/// Runs every probe of `case` against the lab's current enforcement, concurrently.
fn run_probes(case: &Case, state: &LabState, tally: &mut Tally) {
    let pod = |key: &str| {
        state
            .topology
            .pods
            .iter()
            .find(|p| p.key() == key)
            .unwrap_or_else(|| panic!("{}: pod {key} not in the lab", case.name))
    };
    let inventory = state.inventory().expect("the lab's inventory");
    let engine: Vec<bool> = case
        .probes
        .iter()
        .map(|spec| {
            let (src, dst) = (pod(&spec.from).ip, pod(&spec.to).ip);
            let flow = Flow::from_packet(&inventory, src, dst, spec.port, spec.protocol);
            is_allowed(&inventory, &flow, &ExplainOptions::default())
        })
        .collect();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, ProbeOutcome, bool)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..WORKERS.min(case.probes.len()) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(spec) = case.probes.get(index) else { break };
                    let (src, dst) = (pod(&spec.from), pod(&spec.to));
                    let attempt = |timeout| {
                        probe(&src.netns, dst.ip, spec.port, spec.protocol, timeout)
                            .unwrap_or_else(|e| panic!("{}: probe: {e}", case.name))
                            .outcome
                    };
                    let mut outcome = attempt(DENY_TIMEOUT);
                    let retried = outcome == ProbeOutcome::Denied
                        && (spec.expect_allow == Some(true) || engine[index]);
                    if retried {
                        outcome = attempt(RETRY_TIMEOUT);
                    }
                    results.lock().unwrap().push((index, outcome, retried));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|r| r.0);
    for (index, outcome, retried) in results {
        let spec = &case.probes[index];
        let allowed = outcome != ProbeOutcome::Denied;
        tally.probes += 1;
        tally.allowed += usize::from(allowed);
        tally.retried += usize::from(retried);
        let dst = pod(&spec.to).ip;
        let engine = engine[index];
        if engine == allowed {
            tally.engine_agree += 1;
        } else {
            tally.disagreements.push(format!(
                "{} ({}): {} -> {} {dst}:{}/{}: explain says {}, the kernel said {outcome:?}",
                case.name,
                spec.file,
                spec.from,
                spec.to,
                spec.port,
                spec.protocol,
                if engine { "allow" } else { "deny" },
            ));
        }
        let Some(expect_allow) = spec.expect_allow else {
            tally.all_agree += usize::from(engine == allowed);
            continue;
        };
        tally.graded += 1;
        tally.all_agree += usize::from(engine == allowed && allowed == expect_allow);
        if allowed == expect_allow {
            tally.agree += 1;
        } else {
            tally.disagreements.push(format!(
                "{} ({}): {} -> {} {dst}:{}/{}: expected {}, the kernel said {outcome:?}",
                case.name,
                spec.file,
                spec.from,
                spec.to,
                spec.port,
                spec.protocol,
                if expect_allow { "allow" } else { "deny" },
            ));
        }
    }
}

fn selected_cases() -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .expect("conformance corpus present")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    all.sort();
    if std::env::var(MODE_ENV).is_ok_and(|v| v == "all") {
        return all;
    }
    SAMPLE
        .iter()
        .map(|(number, _)| {
            all.iter()
                .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(number))
                .unwrap_or_else(|| panic!("sample case {number} missing from the corpus"))
                .clone()
        })
        .collect()
}

/// The cases of `netpol-trace/tests/kinds`, then the lab's own (`conformance/kinds-lab`).
fn kinds_cases() -> Vec<PathBuf> {
    let lab_cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/kinds-lab");
    let mut out = Vec::new();
    for dir in [kinds_dir(), lab_cases] {
        let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .collect();
        cases.sort();
        out.extend(cases);
    }
    out
}

/// Runs `cases` (one lab per distinct set of pods and namespaces, the next case's policies
/// swapped in) and returns the tally, the number of labs and, per policy kind, the probes and
/// their agreement.
fn run_corpus(cases: &[Case]) -> (Tally, usize, BTreeMap<String, (usize, usize)>) {
    // One lab per distinct set of pods and namespaces, in order of first appearance.
    let mut groups: Vec<Vec<&Case>> = Vec::new();
    let mut group_of: BTreeMap<String, usize> = BTreeMap::new();
    for case in cases {
        let index = *group_of.entry(case.fingerprint()).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[index].push(case);
    }
    let mut tally = Tally::default();
    let mut by_kind: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for group in &groups {
        let lab = Lab::up(group[0]);
        for (i, case) in group.iter().enumerate() {
            let case_started = Instant::now();
            let policies = LabPolicies::from_objects(&case.objects);
            if i > 0 {
                lifecycle::apply_policies(&lab.ctx, &lab.name, policies.clone())
                    .unwrap_or_else(|e| panic!("{}: apply_policies: {e}", case.name));
            }
            let state = lab.state();
            assert_eq!(state.policies.len(), case.objects.network_policies.len(), "{}", case.name);
            assert_eq!(state.policies.len() + state.tiered.len(), policies.len(), "{}", case.name);
            tally.skipped += case.skipped;
            let before = (tally.probes, tally.all_agree);
            run_probes(case, &state, &mut tally);
            let entry = by_kind.entry(case_kinds(&case.objects)).or_default();
            entry.0 += tally.probes - before.0;
            entry.1 += tally.all_agree - before.1;
            eprintln!(
                "{}: {} probes in {:?}",
                case.name,
                case.probes.len(),
                case_started.elapsed()
            );
        }
    }
    (tally, groups.len(), by_kind)
}

/// The policy kinds of a case, e.g. `AdminNetworkPolicy+NetworkPolicy`.
fn case_kinds(objects: &ClusterObjects) -> String {
    let mut kinds: Vec<String> = objects
        .tiered
        .admin
        .iter()
        .map(|s| s.raw["kind"].as_str().unwrap_or("?").to_owned())
        .chain(objects.tiered.calico.iter().map(|s| {
            let kind = s.raw["kind"].as_str().unwrap_or("?");
            if kind == "NetworkPolicy" {
                "Calico NetworkPolicy".to_owned()
            } else {
                kind.to_owned()
            }
        }))
        .collect();
    if !objects.network_policies.is_empty() {
        kinds.push("NetworkPolicy".to_owned());
    }
    kinds.sort();
    kinds.dedup();
    kinds.join("+")
}

fn report(label: &str, cases: usize, labs: usize, tally: &Tally, started: Instant) {
    println!(
        "{label}: {cases} cases in {labs} labs, {} probes ({} passed the kernel, the others \
         dropped): {} of {} with a verdict agree with it, \
         {} agree with explain ({} skipped: SCTP or outside addresses; {} expected-allow probes \
         looked at twice) in {:.1?}",
        tally.probes,
        tally.allowed,
        tally.agree,
        tally.graded,
        tally.engine_agree,
        tally.skipped,
        tally.retried,
        started.elapsed()
    );
    for line in &tally.disagreements {
        println!("  disagreement: {line}");
    }
    assert!(
        tally.disagreements.is_empty(),
        "{} disagreements over {} probes:\n{}",
        tally.disagreements.len(),
        tally.probes,
        tally.disagreements.join("\n")
    );
}

#[test]
fn lab_enforcement_agrees_with_the_conformance_corpus() {
    netpol_trace::lab::system::require_root();
    let started = Instant::now();
    let cases: Vec<Case> = selected_cases().iter().map(|dir| Case::load(dir)).collect();
    let (tally, labs, _) = run_corpus(&cases);
    report("lab conformance", cases.len(), labs, &tally, started);
}

#[test]
fn lab_enforcement_of_the_other_kinds_agrees_with_their_cases_and_explain() {
    netpol_trace::lab::system::require_root();
    let started = Instant::now();
    let cases: Vec<Case> = kinds_cases()
        .iter()
        .map(|dir| {
            let mut case = Case::load(dir);
            case.add_every_pair();
            case
        })
        .collect();
    let (tally, labs, by_kind) = run_corpus(&cases);
    for (kinds, (probes, agree)) in &by_kind {
        println!("  {kinds}: {probes} probes, {agree} agree (kernel = expected = explain)");
    }
    report("lab conformance (other kinds)", cases.len(), labs, &tally, started);
}

//! Privileged end-to-end tests of `netpol-trace lab`: real network namespaces, veths, nftables
//! enforcement by the kernel, listeners and MariaDB. Each test builds its own lab with a unique
//! name in its own labs directory, behind a guard that runs `lab down` when it goes out of scope,
//! so tests run in parallel and leave nothing behind even when they fail. Without root they
//! fail loudly (`require_root`).

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use netpol_trace::lab::system::require_root;

use netpol_trace::lab::{
    AllowRule, EnforcementPlan, PeerNet, PeerSet, PodPlan, PortRange, PortSet, Protocol,
};

const BIN: &str = env!("CARGO_BIN_EXE_netpol-trace-under-test");

/// Three pods in two namespaces: web and batch in `app`, MariaDB in `db`.
const MANIFESTS: &str = "\
apiVersion: v1
kind: Namespace
metadata: {name: app}
---
apiVersion: v1
kind: Namespace
metadata: {name: db}
---
apiVersion: v1
kind: Pod
metadata:
  name: web-5c7d8f9b6-abcde
  namespace: app
  labels: {app: web, pod-template-hash: 5c7d8f9b6}
spec:
  containers:
  - name: web
    image: web
    ports:
    - {name: http, containerPort: 8080}
    - {name: dns, containerPort: 5353, protocol: UDP}
---
apiVersion: v1
kind: Pod
metadata: {name: batch-1, namespace: app, labels: {app: batch}}
spec: {containers: [{name: batch, image: batch}]}
---
apiVersion: v1
kind: Pod
metadata:
  name: mysql-0
  namespace: db
  labels: {app: mysql}
  annotations: {netpol-trace.io/lab-workload: mariadb}
spec: {containers: [{name: mysql, image: mariadb, ports: [{name: mysql, containerPort: 3306}]}]}
status: {podIP: 10.244.2.7}
";

/// Listener-only pods, for the tests that do not need MariaDB.
const SMALL_MANIFESTS: &str = "\
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: a}
spec: {containers: [{name: c, image: c}]}
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: b}
spec: {containers: [{name: s, image: s, ports: [{containerPort: 80}]}]}
";

/// A lab of this test run: unique name, private labs directory, torn down on drop.
struct LabGuard {
    name: String,
    labs_dir: tempfile::TempDir,
    manifests: tempfile::TempDir,
}

impl LabGuard {
    fn new(manifests: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!("it{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("objects.yaml"), manifests).expect("write manifests");
        Self { name, labs_dir: tempfile::tempdir().expect("tempdir"), manifests: dir }
    }

    fn prefix(&self) -> String {
        format!("npt_{}_", self.name)
    }

    fn run_dir(&self) -> PathBuf {
        self.labs_dir.path().join(&self.name)
    }

    fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("NETPOL_TRACE_LAB_DIR", self.labs_dir.path())
            .output()
            .expect("run netpol-trace")
    }

    fn lab(&self, verb: &str, rest: &[&str]) -> Output {
        let mut args = vec!["lab", verb, &self.name];
        args.extend_from_slice(rest);
        self.cli(&args)
    }

    fn up(&self) -> serde_json::Value {
        let manifests = self.manifests.path().to_str().unwrap().to_owned();
        let out = self.cli(&["lab", "up", "-f", &manifests, "--name", &self.name, "-o", "json"]);
        assert_success(&out, "lab up");
        serde_json::from_slice(&out.stdout).expect("lab up -o json")
    }

    fn probe(&self, from: &str, to: &str, port: &str, extra: &[&str]) -> (i32, String) {
        let mut args = vec!["--from", from, "--to", to, "--port", port, "--timeout", "500ms"];
        args.extend_from_slice(extra);
        let out = self.lab("probe", &args);
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn select_1(&self, from: &str, db_ip: &str) -> Output {
        self.lab(
            "exec",
            &[
                from,
                "--",
                "mariadb",
                "-h",
                db_ip,
                "-u",
                "lab",
                "-pnetpol-trace-lab",
                "--connect-timeout=2",
                "-N",
                "-e",
                "SELECT 1",
            ],
        )
    }

    fn apply(&self, plan: &EnforcementPlan) {
        let path = self.manifests.path().join("plan.json");
        std::fs::write(&path, serde_json::to_string(plan).unwrap()).unwrap();
        let out = self.lab("apply", &["--plan", path.to_str().unwrap()]);
        assert_success(&out, "lab apply");
    }

    /// Asserts that nothing of the lab is left: namespaces, host links, nft tables, processes,
    /// files.
    fn assert_gone(&self, pids: &[i64]) {
        let netns = run_ok(Command::new("ip").args(["netns", "list"]));
        assert!(!netns.contains(&self.prefix()), "netns left:\n{netns}");
        let links = run_ok(Command::new("ip").args(["-o", "link", "show"]));
        assert!(!links.contains(&self.prefix()), "links left:\n{links}");
        let tables = run_ok(Command::new("nft").args(["list", "tables"]));
        assert!(
            !tables.contains(&format!("npt_{}", self.name.replace('-', "_"))),
            "tables:\n{tables}"
        );
        for pid in pids {
            assert!(!process_alive(*pid), "process {pid} still runs");
        }
        assert!(!self.run_dir().exists(), "run directory left");
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        let out = self.cli(&["lab", "down", &self.name]);
        if !out.status.success() {
            eprintln!("lab down {} failed: {}", self.name, String::from_utf8_lossy(&out.stderr));
        }
    }
}

fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run_ok(command: &mut Command) -> String {
    let out = command.output().expect("run");
    assert_success(&out, "command");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Alive and not a zombie waiting for init to reap it.
fn process_alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

struct PodInfo {
    ip: IpAddr,
    iface: String,
}

fn pod(state: &serde_json::Value, key: &str) -> PodInfo {
    let (namespace, name) = key.split_once('/').unwrap();
    let pod = state["topology"]["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["namespace"] == namespace && p["name"] == name)
        .unwrap_or_else(|| panic!("pod {key} in state"));
    PodInfo {
        ip: pod["ip"].as_str().unwrap().parse().unwrap(),
        iface: pod["host_iface"].as_str().unwrap().into(),
    }
}

fn pids(state: &serde_json::Value) -> Vec<i64> {
    state["daemons"].as_array().unwrap().iter().map(|d| d["pid"].as_i64().unwrap()).collect()
}

/// The db pod isolated for ingress except from `peer` on TCP `port`.
fn db_only_from(db: &PodInfo, peer: IpAddr, port: u16) -> EnforcementPlan {
    EnforcementPlan {
        pods: vec![PodPlan {
            pod: Some("db/mysql-0".into()),
            ip: db.ip,
            host_iface: db.iface.clone(),
            ingress: Some(vec![AllowRule {
                peers: PeerSet::Nets(vec![PeerNet::host(peer)]),
                ports: PortSet::Ranges(vec![PortRange::single(Protocol::Tcp, port)]),
                origin: Some("db/mysql-ingress ingress[0]".into()),
            }]),
            egress: None,
            ingress_tiers: None,
            egress_tiers: None,
        }],
    }
}

#[test]
fn lab_enforces_plans_with_real_kernel_drops_and_leaves_nothing() {
    require_root();
    let started = Instant::now();
    let lab = LabGuard::new(MANIFESTS);
    let state = lab.up();
    eprintln!("lab up: {:?}", started.elapsed());
    let web = pod(&state, "app/web-5c7d8f9b6-abcde");
    let batch = pod(&state, "app/batch-1");
    let db = pod(&state, "db/mysql-0");
    assert_eq!(db.ip.to_string(), "10.244.2.7", "status.podIP is kept");
    assert!(web.iface.starts_with("cali") && web.iface.len() == 15);
    assert!(batch.ip.to_string().starts_with("10.244."), "assigned from the pod CIDR");
    let db_ip = db.ip.to_string();

    // No policy: everything connects, over TCP and UDP, and MariaDB answers.
    let (code, out) = lab.probe("app/web-5c7d8f9b6-abcde", "db/mysql-0", "mysql", &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("allowed:"), "{out}");
    assert_eq!(lab.probe("batch-1", &db_ip, "3306", &[]).0, 0);
    let (code, out) = lab.probe("db/mysql-0", "app/web-5c7d8f9b6-abcde", "dns", &[]);
    assert_eq!(code, 0, "UDP echo: {out}");
    let (code, out) = lab.probe("batch-1", "app/web-5c7d8f9b6-abcde", "9999", &[]);
    assert_eq!((code, out.starts_with("refused:")), (1, true), "{out}");
    let select = lab.select_1("app/web-5c7d8f9b6-abcde", &db_ip);
    assert_success(&select, "SELECT 1 without policy");
    assert_eq!(String::from_utf8_lossy(&select.stdout).trim(), "1");

    // db ingress only from web on 3306: web connects, batch is dropped by the kernel.
    lab.apply(&db_only_from(&db, web.ip, 3306));
    assert_eq!(lab.probe("app/web-5c7d8f9b6-abcde", "db/mysql-0", "3306", &[]).0, 0);
    let (code, out) = lab.probe("app/batch-1", "db/mysql-0", "3306", &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("denied:"), "{out}");
    assert_success(
        &lab.select_1("app/web-5c7d8f9b6-abcde", &db_ip),
        "SELECT 1 from the allowed peer",
    );
    let denied = lab.select_1("app/batch-1", &db_ip);
    assert!(!denied.status.success(), "SELECT 1 from batch must fail");
    let ruleset = std::fs::read_to_string(lab.run_dir().join("ruleset.nft")).unwrap();
    assert!(
        ruleset.contains(&format!("oifname \"{}\" jump ingress_{}", db.iface, db.iface)),
        "{ruleset}"
    );

    // The port typo (3307): the web pod is dropped too.
    lab.apply(&db_only_from(&db, web.ip, 3307));
    let (code, out) = lab.probe("app/web-5c7d8f9b6-abcde", "db/mysql-0", "3306", &[]);
    assert_eq!(code, 1, "{out}");
    assert!(!lab.select_1("app/web-5c7d8f9b6-abcde", &db_ip).status.success());

    // Egress isolation of the source with nothing allowed, the destination open.
    let plan = EnforcementPlan {
        pods: vec![PodPlan {
            pod: None,
            ip: web.ip,
            host_iface: web.iface.clone(),
            ingress: None,
            egress: Some(vec![]),
            ingress_tiers: None,
            egress_tiers: None,
        }],
    };
    lab.apply(&plan);
    assert_eq!(lab.probe("app/web-5c7d8f9b6-abcde", "db/mysql-0", "3306", &[]).0, 1);
    assert_eq!(lab.probe("app/batch-1", "db/mysql-0", "3306", &[]).0, 0);
    // Replies of connections towards the egress-isolated pod still pass (stateful).
    assert_eq!(lab.probe("app/batch-1", "app/web-5c7d8f9b6-abcde", "http", &[]).0, 0);

    // A plan naming an interface that is not in the lab is bad input.
    let mut wrong = db_only_from(&db, web.ip, 3306);
    wrong.pods[0].host_iface = "cali00000000000".into();
    let path = lab.manifests.path().join("wrong.json");
    std::fs::write(&path, serde_json::to_string(&wrong).unwrap()).unwrap();
    let out = lab.lab("apply", &["--plan", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pods[0].host_iface"));

    let pids = pids(&state);
    assert_eq!(pids.len(), 2, "web listener and MariaDB (batch declares no port)");
    let down = lab.lab("down", &[]);
    assert_success(&down, "lab down");
    let report = String::from_utf8_lossy(&down.stdout);
    assert!(report.contains("stopped process mariadb-db.mysql-0"), "{report}");
    lab.assert_gone(&pids);
    eprintln!("whole test: {:?}", started.elapsed());
}

/// `b/server` closed to everything by a default-deny policy.
const DENY_SERVER: &str = "
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: b}
spec: {podSelector: {}}
";

/// Opens `b/server` port `port` to namespace `a`.
fn allow_from_a(port: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: allow-client, namespace: b}}
spec:
  podSelector: {{}}
  ingress:
  - from: [{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: a}}}}}}]
    ports: [{{port: {port}}}]
"
    )
}

#[test]
fn up_enforces_the_manifest_policies_and_apply_replaces_them() {
    require_root();
    let lab = LabGuard::new(&format!("{SMALL_MANIFESTS}{DENY_SERVER}"));
    let state = lab.up();
    assert_eq!(state["policies"].as_array().map(Vec::len), Some(1), "{state}");
    let (code, out) = lab.probe("a/client", "b/server", "80", &[]);
    assert_eq!((code, out.starts_with("denied:")), (1, true), "enforced from the start: {out}");
    let explained = lab.lab("explain", &["--from", "a/client", "--to", "b/server", "--port", "80"]);
    let text = String::from_utf8_lossy(&explained.stdout);
    assert_eq!(explained.status.code(), Some(1), "{text}");
    assert!(text.starts_with("DENY") && text.contains("b/deny-all"), "{text}");

    // `apply -f` replaces the whole set: only the allow policy remains.
    let file = |name: &str, text: &str| {
        let path = lab.manifests.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let allow = file("allow.yaml", &allow_from_a("80"));
    let out = lab.lab("apply", &["-f", &allow]);
    assert_success(&out, "lab apply -f");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("1 NetworkPolicy enforced, ruleset replaced (1 pod(s) isolated)"),
        "{text}"
    );
    assert_eq!(lab.probe("a/client", "b/server", "80", &[]).0, 0);
    let explained = lab.lab(
        "explain",
        &["--from", "client", "-n", "a", "--to", "b/server", "--port", "80", "-o", "json"],
    );
    let verdict: serde_json::Value = serde_json::from_slice(&explained.stdout).unwrap();
    assert_eq!((explained.status.code(), verdict["verdict"].as_str()), (Some(0), Some("allow")));

    // --dry-run prints the ruleset and changes nothing.
    let other_port = file("allow-81.yaml", &allow_from_a("81"));
    let out = lab.lab("apply", &["-f", &other_port, "--dry-run"]);
    assert_success(&out, "lab apply --dry-run");
    let ruleset = String::from_utf8_lossy(&out.stdout);
    assert!(
        ruleset.contains("tcp dport 81 return comment \"b/allow-client ingress[0]\""),
        "{ruleset}"
    );
    assert_eq!(lab.probe("a/client", "b/server", "80", &[]).0, 0, "dry run left the lab alone");

    // An invalid policy is bad input and leaves the lab as it was.
    let bad = file("bad.yaml", &allow_from_a("0"));
    let out = lab.lab("apply", &["-f", &bad]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("spec.ingress[0].ports[0].port"), "{stderr}");
    assert_eq!(lab.probe("a/client", "b/server", "80", &[]).0, 0);

    // The library view: the lab's inventory holds its pods and current policies.
    use netpol_trace::lab::{LabContext, lifecycle};
    let ctx = LabContext { labs_dir: lab.labs_dir.path().to_owned(), exe: BIN.into() };
    let inventory = lifecycle::inventory(&ctx, &lab.name).unwrap();
    let server = pod(&state, "b/server");
    let id = inventory.pod_by_ip(server.ip).expect("server by its lab IP");
    let (_, policy) = inventory.policies().next().unwrap();
    assert_eq!((inventory.policies().len(), policy.compiled.name.as_str()), (1, "allow-client"));
    assert_eq!(policy.selected, vec![id]);

    // No policy at all: everything is open again.
    let change = lifecycle::apply_policies(&ctx, &lab.name, Vec::new()).unwrap();
    assert_eq!((change.policies, change.isolated_pods()), (0, 0));
    assert_eq!(lab.probe("a/client", "b/server", "80", &[]).0, 0);
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lab.run_dir().join("state.json")).unwrap())
            .unwrap();
    assert_eq!(state["policies"].as_array().map(Vec::len), Some(0));
}

#[test]
fn down_after_a_crash_finds_processes_and_namespaces_without_state() {
    require_root();
    let lab = LabGuard::new(SMALL_MANIFESTS);
    let state = lab.up();
    assert_eq!(lab.probe("a/client", "b/server", "80", &[]).0, 0);
    let pids = pids(&state);
    assert_eq!(pids.len(), 1);
    // As if `lab up` had crashed before recording anything.
    std::fs::remove_file(lab.run_dir().join("state.json")).unwrap();
    let out = lab.lab("down", &[]);
    assert_success(&out, "lab down");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("stopped process serve-b.server"), "{report}");
    assert!(
        report.contains(&format!("deleted network namespace {}node", lab.prefix())),
        "{report}"
    );
    lab.assert_gone(&pids);
    let again = lab.lab("down", &[]);
    assert_success(&again, "second lab down");
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to remove"));
}

#[test]
fn bad_input_exits_2_and_creates_nothing() {
    require_root();
    let lab = LabGuard::new(
        "kind: Pod\nmetadata: {name: a}\nstatus: {podIP: 10.244.0.5}\n---\n\
         kind: Pod\nmetadata: {name: b}\nstatus: {podIP: 10.244.0.5}\n",
    );
    let manifests = lab.manifests.path().to_str().unwrap().to_owned();
    let out = lab.cli(&["lab", "up", "-f", &manifests, "--name", &lab.name]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Pod default/b: status.podIP: 10.244.0.5 is also the IP of Pod default/a"),
        "{stderr}"
    );
    lab.assert_gone(&[]);

    let out = lab.cli(&["lab", "up", "-f", &manifests, "--name", "Bad_Name"]);
    assert_eq!(out.status.code(), Some(2));
    let out = lab.lab("exec", &["x", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

#[test]
fn exec_passes_the_exit_code_through_and_up_refuses_an_existing_lab() {
    require_root();
    let lab = LabGuard::new(SMALL_MANIFESTS);
    lab.up();
    let out = lab.lab("exec", &["client", "--", "sh", "-c", "ip -o addr show eth0; exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    assert!(String::from_utf8_lossy(&out.stdout).contains("10.244.0."), "runs in the pod netns");
    let manifests = lab.manifests.path().to_str().unwrap().to_owned();
    let again = lab.cli(&["lab", "up", "-f", &manifests, "--name", &lab.name]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let ls = lab.cli(&["lab", "ls", "-o", "json"]);
    let labs: serde_json::Value = serde_json::from_slice(&ls.stdout).expect("lab ls -o json");
    assert_eq!(labs[0]["name"], lab.name.as_str());
    assert_eq!((labs[0]["pods"].as_u64(), labs[0]["running"].as_bool()), (Some(2), Some(true)));
}

#[test]
fn a_failing_up_removes_what_it_created() {
    require_root();
    use netpol_trace::lab::{LabContext, lifecycle};
    let lab = LabGuard::new(SMALL_MANIFESTS);
    let input = netpol_trace::manifest::load_paths(&[lab.manifests.path().to_owned()]).unwrap();
    // Wiring succeeds, then the listener cannot start: `up` must roll everything back.
    let ctx = LabContext {
        labs_dir: lab.labs_dir.path().to_owned(),
        exe: lab.manifests.path().join("no-such-binary"),
    };
    let err = lifecycle::up(&ctx, &lab.name, &input, None).unwrap_err().to_string();
    assert!(err.contains("no-such-binary"), "{err}");
    lab.assert_gone(&[]);
}

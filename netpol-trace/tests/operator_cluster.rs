//! The operator feed against an API server that enforces the RBAC shipped in `deploy/`: each
//! actor uses its own bearer token (the agent's and the controller's ServiceAccounts, a person
//! in the `db-admins` group who is namespace admin of `db`). Reports are published by the
//! agents' code with the agent's token, decided with the CLI, and applied by the controller.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use chrono::Utc;
use fake_apiserver::{FakeApiServer, Identity};
use kube::Api;
use kube::api::{Patch, PatchParams};
use netpol_trace::operator::controller;
use netpol_trace::operator::fixer::{CrashPoint, Fixer};
use netpol_trace::operator::garbage::Garbage;
use netpol_trace::operator::lease::{Elector, LeaseTimings};
use netpol_trace::operator::publish::{Observation, publish};
use netpol_trace::operator::report::{
    Attribution, DropReport, DropReportSpec, FixPhase, FlowEnd, FlowState, NodeEntry, PolicyRef,
};
use serde_json::{Value, json};

const AGENT: &str = "agent-token";
const CONTROLLER: &str = "controller-token";
const PERSON: &str = "dana-token";
const ADMIN: &str = "admin-token";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("deploy")
}

/// The fake with deploy/'s CRD and RBAC, the app/db fixture, and kubeconfigs per token.
struct Cluster {
    fake: FakeApiServer,
    dir: tempfile::TempDir,
}

impl Cluster {
    async fn start(allowed_port: u16) -> Self {
        let fake = FakeApiServer::builder()
            .with_manifests(deploy_dir())
            .token(AGENT, Identity::service_account("netpol-trace", "netpol-trace"))
            .token(CONTROLLER, Identity::service_account("netpol-trace", "netpol-trace-controller"))
            .token(PERSON, Identity::user("dana", ["db-admins"]))
            .admin_token(ADMIN)
            .start()
            .await;
        for ns in ["app", "db"] {
            fake.insert(json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}}}));
        }
        fake.insert(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-7d9f8b6c5-x2k4q", "namespace": "app",
                "labels": {"app": "web", "pod-template-hash": "7d9f8b6c5"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "web-7d9f8b6c5", "uid": "u1", "controller": true}]},
            "spec": {"containers": [{"name": "web", "image": "web"}]},
            "status": {"phase": "Running", "podIP": "10.0.1.5"}}));
        fake.insert(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "mysql-0", "namespace": "db", "labels": {"app": "mysql"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                    "name": "mysql", "uid": "u2", "controller": true}]},
            "spec": {"containers": [{"name": "mysql", "image": "mysql"}]},
            "status": {"phase": "Running", "podIP": "10.0.2.7"}}));
        fake.insert(policy(allowed_port));
        // dana is namespace admin of db (the approver and restorer roles aggregate into
        // admin); her own NetworkPolicy rights stand for what the built-in admin role has.
        fake.insert(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "db-admins", "namespace": "db"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
            "subjects": [{"kind": "Group", "name": "db-admins"}]}));
        fake.insert(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "policy-editor", "namespace": "db"},
            "rules": [{"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"],
                       "verbs": ["get", "list", "patch", "create", "delete"]}]}));
        fake.insert(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "policy-editor", "namespace": "db"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "policy-editor"},
            "subjects": [{"kind": "Group", "name": "db-admins"}]}));
        // Restoring is granted explicitly (deploy/rbac-users.yaml: netpol-trace-restorer).
        fake.insert(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "restorers", "namespace": "db"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "netpol-trace-restorer"},
            "subjects": [{"kind": "Group", "name": "db-admins"}]}));
        let dir = tempfile::tempdir().unwrap();
        for token in [PERSON, ADMIN, AGENT] {
            fake.write_kubeconfig_with_token(&dir.path().join(token), token).unwrap();
        }
        Self { fake, dir }
    }

    fn client(&self, token: &str) -> kube::Client {
        self.fake.client_with_token(token)
    }

    /// Runs the CLI with `token`'s kubeconfig (blocking, off the runtime serving the fake).
    async fn cli(&self, token: &str, args: &[&str]) -> Output {
        let kubeconfig = self.dir.path().join(token);
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_netpol-trace"))
                .args(&args)
                .arg("--kubeconfig")
                .arg(kubeconfig)
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    }

    fn policy(&self) -> Value {
        self.fake.get("networkpolicies", "db", "mysql-ingress").unwrap()
    }

    fn report(&self, name: &str) -> Value {
        self.fake.get("dropreports", "db", name).unwrap()
    }

    /// Non-dry-run writes of NetworkPolicies seen by the server so far.
    fn policy_writes(&self) -> Vec<String> {
        self.fake
            .requests()
            .into_iter()
            .filter(|r| r.path.contains("/networkpolicies") && r.method != "GET")
            .filter(|r| r.query_param("dryRun").is_none())
            .map(|r| format!("{} {} {}", r.method, r.path, r.status))
            .collect()
    }
}

fn policy(port: u16) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "mysql-ingress", "namespace": "db"},
        "spec": {"podSelector": {"matchLabels": {"app": "mysql"}}, "policyTypes": ["Ingress"],
                 "ingress": [{"from": [{"namespaceSelector": {}}], "ports": [{"port": port, "protocol": "TCP"}]}]}})
}

fn observation(node: &str, count: u64) -> Observation {
    Observation {
        spec: DropReportSpec {
            source: FlowEnd::workload("app", "web", "Deployment"),
            destination: FlowEnd::workload("db", "mysql", "StatefulSet"),
            port: 3306,
            protocol: "TCP".into(),
            decision: None,
        },
        node: NodeEntry {
            node: node.into(),
            count,
            last_seen: Utc::now(),
            ifname: "cali88f8578c6dc".into(),
            reason: "NETFILTER_DROP".into(),
            from_source_veth: Some(true),
        },
        first_seen: Utc::now(),
        state: FlowState::Dropping,
        attribution: Some(Attribution {
            policies: vec![PolicyRef {
                kind: "NetworkPolicy".into(),
                namespace: Some("db".into()),
                name: "mysql-ingress".into(),
                direction: "ingress".into(),
            }],
            hint: None,
        }),
        patches: None,
    }
}

/// Publishes the fixture's report with the agent's token; returns its name.
async fn published(cluster: &Cluster) -> String {
    let report = publish(&cluster.client(AGENT), &observation("node-1", 3)).await.unwrap();
    report.metadata.name.unwrap()
}

fn fixer(cluster: &Cluster, identity: &str) -> Fixer {
    Fixer { client: cluster.client(CONTROLLER), identity: identity.into(), crash_at: None }
}

fn phase(report: &Value) -> Option<&str> {
    report.pointer("/status/fix/phase").and_then(Value::as_str)
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unapproved_or_rejected_report_never_causes_a_policy_write() {
    let cluster = Cluster::start(3307).await;
    let name = published(&cluster).await;
    let fixer = fixer(&cluster, "ctl-0");
    assert_eq!(fixer.reconcile("db", &name).await.unwrap(), None);
    controller::reconcile_all(&fixer, None).await.unwrap();
    let out = cluster.cli(PERSON, &["reject", &name, "-n", "db"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(cluster.report(&name)["spec"]["decision"], "Rejected");
    assert_eq!(fixer.reconcile("db", &name).await.unwrap(), None);
    controller::reconcile_all(&fixer, None).await.unwrap();
    assert!(cluster.policy_writes().is_empty(), "{:?}", cluster.policy_writes());
    assert_eq!(cluster.policy()["spec"], policy(3307)["spec"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_apply_restore_refuse_force_and_reapply() {
    let cluster = Cluster::start(3307).await;
    let name = published(&cluster).await;
    let original = cluster.policy();
    let out = cluster.cli(PERSON, &["approve", &format!("dropreport/{name}"), "-n", "db"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains(&format!("approved dropreport db/{name}")), "{}", text(&out));

    cluster.fake.clear_requests();
    let fixer = fixer(&cluster, "ctl-0");
    assert_eq!(fixer.reconcile("db", &name).await.unwrap(), Some(FixPhase::Applied));
    let report = cluster.report(&name);
    assert_eq!(phase(&report), Some("Applied"));
    let applied = &report["status"]["fix"]["applied"];
    assert_eq!(applied["by"], "ctl-0");
    assert_eq!(applied["backup"][0]["object"]["spec"], original["spec"]);
    let live = cluster.policy();
    assert_eq!(
        applied["resourceVersions"][0]["resourceVersion"],
        live["metadata"]["resourceVersion"]
    );
    assert_ne!(live["spec"], original["spec"]);
    assert_eq!(live["spec"]["ingress"][1]["ports"][0]["port"], 3306, "{live}");
    // The backup reached the report before the first NetworkPolicy write.
    let requests = cluster.fake.requests();
    let backup_at = requests
        .iter()
        .position(|r| r.path.ends_with("/status") && r.method == "PUT" && r.status == 200)
        .expect("a status write");
    let write_at = requests
        .iter()
        .position(|r| {
            r.path.contains("/networkpolicies/")
                && r.method == "PATCH"
                && r.query_param("dryRun").is_none()
        })
        .expect("a policy patch");
    assert!(backup_at < write_at, "backup at request {backup_at}, write at {write_at}");
    let patch = &requests[write_at].body.as_ref().unwrap()[0];
    assert_eq!(patch["op"], "test", "the write is guarded by a resourceVersion test: {patch}");

    // restore puts the policy back exactly.
    let out = cluster.cli(PERSON, &["restore", &format!("dropreport/{name}"), "-n", "db"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(cluster.policy()["spec"], original["spec"]);
    let report = cluster.report(&name);
    assert_eq!(phase(&report), Some("RolledBack"));
    assert!(report["spec"].get("decision").is_none_or(Value::is_null), "{report}");
    assert_eq!(
        fixer.reconcile("db", &name).await.unwrap(),
        None,
        "RolledBack stays until approved"
    );

    // Approving a RolledBack report re-applies.
    let out = cluster.cli(PERSON, &["approve", &name, "-n", "db"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(fixer.reconcile("db", &name).await.unwrap(), Some(FixPhase::Applied));

    // A later edit: restore refuses with exit 1 and leaves the phase; --force restores.
    cluster.fake.modify("networkpolicies", "db", "mysql-ingress", |p| {
        p["metadata"]["labels"] = json!({"edited": "later"});
    });
    let out = cluster.cli(PERSON, &["restore", &format!("dropreport/{name}"), "-n", "db"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("changed since the fix"), "{}", text(&out));
    assert_eq!(phase(&cluster.report(&name)), Some("Applied"));
    let out = cluster
        .cli(PERSON, &["restore", &format!("dropreport/{name}"), "-n", "db", "--force"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(cluster.policy()["spec"], original["spec"]);
    assert_eq!(phase(&cluster.report(&name)), Some("RolledBack"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_flow_is_not_needed_and_unknown_reports_are_exit_2() {
    let cluster = Cluster::start(3306).await;
    let name = published(&cluster).await;
    let out = cluster.cli(PERSON, &["approve", &name, "-n", "db"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let fixer = fixer(&cluster, "ctl-0");
    assert_eq!(fixer.reconcile("db", &name).await.unwrap(), Some(FixPhase::NotNeeded));
    assert!(cluster.policy_writes().is_empty());
    for verb in ["approve", "reject"] {
        let out = cluster.cli(PERSON, &[verb, "no-such-report", "-n", "db"]).await;
        assert_eq!(out.status.code(), Some(2), "{verb}: {}", text(&out));
        assert!(text(&out).contains("dropreport db/no-such-report not found"), "{}", text(&out));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_is_re_planned_once_then_failed() {
    for (conflicts, expected) in [(1, FixPhase::Applied), (2, FixPhase::Failed)] {
        let cluster = Cluster::start(3307).await;
        let name = published(&cluster).await;
        cluster.cli(PERSON, &["approve", &name, "-n", "db"]).await;
        // Someone edits the policy between the controller's read and its guarded write: the
        // `test` of the resourceVersion read fails with the 422 a real API server answers.
        if conflicts == 1 {
            cluster.fake.write_before_next(
                "patch",
                "networkpolicies",
                "db",
                "mysql-ingress",
                |p| {
                    p["metadata"]["annotations"] = json!({"edited": "meanwhile"});
                },
            );
        } else {
            // The first write and, after the re-plan, the second are refused that way.
            cluster.fake.fail_next("patch", "networkpolicies", 422);
            cluster.fake.fail_next("patch", "networkpolicies", 422);
        }
        let got = fixer(&cluster, "ctl-0").reconcile("db", &name).await.unwrap();
        assert_eq!(got, Some(expected), "{conflicts} conflict(s)");
        let edited = cluster.policy();
        if expected == FixPhase::Failed {
            let message = cluster.report(&name)["status"]["fix"]["message"].clone();
            assert!(message.as_str().unwrap().contains("changed twice"), "{message}");
            assert_eq!(edited["spec"], policy(3307)["spec"], "nothing half-applied");
        } else {
            assert_eq!(
                edited["metadata"]["annotations"]["edited"], "meanwhile",
                "the edit is kept"
            );
            assert_ne!(edited["spec"], policy(3307)["spec"], "re-planned on the edited policy");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_killed_between_backup_and_write_is_finished_by_the_next_leader() {
    let cluster = Cluster::start(3307).await;
    let name = published(&cluster).await;
    cluster.cli(PERSON, &["approve", &name, "-n", "db"]).await;
    let dying = Fixer { crash_at: Some(CrashPoint::AfterBackup), ..fixer(&cluster, "ctl-0") };
    assert!(dying.reconcile("db", &name).await.is_err());
    let report = cluster.report(&name);
    assert_eq!(report["status"]["fix"]["applied"]["backup"][0]["name"], "mysql-ingress");
    assert_ne!(phase(&report), Some("Applied"));
    assert!(cluster.policy_writes().is_empty(), "{:?}", cluster.policy_writes());
    let next = fixer(&cluster, "ctl-1");
    assert_eq!(next.reconcile("db", &name).await.unwrap(), Some(FixPhase::Applied));
    assert_eq!(cluster.report(&name)["status"]["fix"]["applied"]["by"], "ctl-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_token_cannot_write_policies_or_decide() {
    let cluster = Cluster::start(3307).await;
    let name = published(&cluster).await;
    let agent = cluster.client(AGENT);
    let policies: Api<k8s_openapi::api::networking::v1::NetworkPolicy> =
        Api::namespaced(agent.clone(), "db");
    let patch = json!({"metadata": {"labels": {"x": "y"}}});
    let err = policies
        .patch("mysql-ingress", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 403), "{err}");
    let reports: Api<DropReport> = Api::namespaced(agent, "db");
    let approve = json!({"spec": {"decision": "Approved"}});
    let err =
        reports.patch(&name, &PatchParams::default(), &Patch::Merge(&approve)).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 403), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_converge_on_one_report_and_drops_lists_it() {
    let cluster = Cluster::start(3307).await;
    let agent = cluster.client(AGENT);
    let (one, two) = (observation("node-1", 3), observation("node-2", 4));
    let (a, b) = tokio::join!(publish(&agent, &one), publish(&agent, &two));
    let name = a.unwrap().metadata.name.unwrap();
    assert_eq!(name, b.unwrap().metadata.name.unwrap());
    let report = cluster.report(&name);
    assert_eq!(report["status"]["count"], 7, "{report}");
    assert_eq!(report["status"]["nodes"].as_array().unwrap().len(), 2);

    for (format, needle) in
        [("json", "\"kind\": \"List\""), ("yaml", "kind: List"), ("table", "NAMESPACE")]
    {
        let out = cluster.cli(ADMIN, &["drops", "-A", "-o", format]).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(needle) && stdout.contains(&name), "-o {format}: {stdout}");
    }
    let out = cluster.cli(PERSON, &["drops", "-n", "db", "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["items"][0]["status"]["count"], 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_writes_and_leadership_hands_over() {
    let cluster = Cluster::start(3307).await;
    let timings = LeaseTimings {
        duration: Duration::from_secs(2),
        renew_deadline: Duration::from_millis(1500),
        retry_period: Duration::from_millis(200),
    };
    let start = |identity: &'static str| {
        let client = cluster.client(CONTROLLER);
        let elector =
            Elector::new(client.clone(), "netpol-trace", controller::LEASE_NAME, identity, timings);
        let fixer = Fixer { client, identity: identity.into(), crash_at: None };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(controller::run(fixer, elector, None, async {
            stopped.await.ok();
        }));
        (stop, task)
    };
    let (stop_a, task_a) = start("ctl-a");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (stop_b, task_b) = start("ctl-b");
    let holder = |c: &Cluster| {
        c.fake
            .get("leases", "netpol-trace", controller::LEASE_NAME)
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
    };
    assert_eq!(holder(&cluster).as_deref(), Some("ctl-a"));

    let name = published(&cluster).await;
    cluster.cli(PERSON, &["approve", &name, "-n", "db"]).await;
    let applied_by = |c: &Cluster, name: &str| {
        let r = c.report(name);
        (phase(&r) == Some("Applied")).then(|| r["status"]["fix"]["applied"]["by"].clone())
    };
    let by = wait(|| applied_by(&cluster, &name)).await;
    assert_eq!(by, "ctl-a", "only the leader writes");

    stop_a.send(()).unwrap();
    task_a.await.unwrap();
    wait(|| (holder(&cluster).as_deref() == Some("ctl-b")).then_some(())).await;
    // The next approval is applied by the new leader.
    let out = cluster.cli(PERSON, &["restore", &format!("dropreport/{name}"), "-n", "db"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    cluster.cli(PERSON, &["approve", &name, "-n", "db"]).await;
    let by = wait(|| applied_by(&cluster, &name)).await;
    assert_eq!(by, "ctl-b");
    stop_b.send(()).unwrap();
    task_b.await.unwrap();
}

/// Polls `check` until it answers (10 s at most, then fails loudly).
async fn wait<T>(mut check: impl FnMut() -> Option<T>) -> T {
    for _ in 0..200 {
        if let Some(v) = check() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not reached within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_reads_a_dropreport_from_the_cluster() {
    let cluster = Cluster::start(3307).await;
    let name = published(&cluster).await;
    let out = cluster
        .cli(PERSON, &["report", &format!("dropreport/{name}"), "-n", "db", "-o", "markdown"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let markdown = String::from_utf8_lossy(&out.stdout);
    assert!(markdown.contains("mysql") && markdown.contains("3306"), "{markdown}");
    let out =
        cluster.cli(PERSON, &["report", "dropreport/nope", "-n", "db", "-o", "markdown"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("dropreport db/nope not found"), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_collects_reports_restored_long_ago() {
    let cluster = Cluster::start(3307).await;
    let agent = cluster.client(AGENT);
    let long_ago = Utc::now() - chrono::Duration::hours(48);
    let seen = |port: u16, state: FlowState, at: chrono::DateTime<Utc>| {
        let mut o = observation("node-1", 3);
        o.spec.port = port;
        o.state = state;
        o.node.last_seen = at;
        o.first_seen = at;
        o
    };
    let mut names = vec![];
    for o in [
        seen(3306, FlowState::Restored, long_ago),
        seen(3308, FlowState::Restored, Utc::now()),
        seen(3309, FlowState::Dropping, long_ago),
    ] {
        names.push(publish(&agent, &o).await.unwrap().metadata.name.unwrap());
    }
    // Agents cannot delete reports any more: garbage is the controller leader's.
    let reports: Api<DropReport> = Api::namespaced(agent, "db");
    let err = reports.delete(&names[0], &Default::default()).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 403), "{err}");
    cluster.fake.clear_requests();

    // Another replica holds the Lease: this one collects nothing.
    cluster.fake.insert(json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": controller::LEASE_NAME, "namespace": "netpol-trace"},
        "spec": {"holderIdentity": "ctl-other", "leaseDurationSeconds": 3600,
                 "renewTime": Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()}}));
    let client = cluster.client(CONTROLLER);
    let timings = LeaseTimings {
        duration: Duration::from_secs(2),
        renew_deadline: Duration::from_millis(1500),
        retry_period: Duration::from_millis(100),
    };
    let elector =
        Elector::new(client.clone(), "netpol-trace", controller::LEASE_NAME, "ctl-gc", timings);
    let fixer = Fixer { client, identity: "ctl-gc".into(), crash_at: None };
    let garbage = Garbage { age: Duration::from_secs(3600), every: Duration::from_millis(100) };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(controller::run_with(fixer, elector, None, garbage, async {
        stopped.await.ok();
    }));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let deletes =
        |c: &Cluster| c.fake.requests().into_iter().filter(|r| r.method == "DELETE").count();
    assert_eq!(deletes(&cluster), 0, "a follower deletes nothing");
    assert_eq!(cluster.fake.objects("dropreports").len(), 3);

    // The holder goes away; the new leader deletes the one report restored long ago.
    cluster.fake.remove("leases", "netpol-trace", controller::LEASE_NAME);
    wait(|| cluster.fake.get("dropreports", "db", &names[0]).is_none().then_some(())).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let left: Vec<String> = cluster
        .fake
        .objects("dropreports")
        .iter()
        .map(|r| r["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&names[1]) && left.contains(&names[2]), "{left:?}");
    stop.send(()).unwrap();
    task.await.unwrap();
}

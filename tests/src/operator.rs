//! The operator feed end to end, for the privileged tests and the benchmark: a fake API server
//! holding deploy/'s CRD and RBAC (each actor with its own bearer token and kubeconfig), one
//! or more node namespaces with their pods, a "CNI" that enforces the fake's current
//! NetworkPolicies with nftables, and the `netpol-trace` binary run as the agent, the
//! controller and the CLI a person types. Every process is stopped by its PID when its handle
//! is dropped, also on panic.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use fake_apiserver::{FakeApiServer, Identity};
use serde_json::{Value, json};

pub use crate::cni::{Cni, Denied};
use crate::{Topology, enter_netns, in_ns};

/// The agents' ServiceAccount token (netpol-trace/netpol-trace).
pub const AGENT_TOKEN: &str = "agent-token";
/// The controller's ServiceAccount token (netpol-trace/netpol-trace-controller).
pub const CONTROLLER_TOKEN: &str = "controller-token";
/// A person, dana, in group `db-admins`: namespace admin of `db` (the approver role aggregates
/// into admin) and bound to the restorer role there.
pub const PERSON_TOKEN: &str = "dana-token";
/// Cluster admin (the platform team listing every report).
pub const ADMIN_TOKEN: &str = "admin-token";
/// The database port of every scenario.
pub const PORT: u16 = 3306;
/// The controller's namespace (its Lease lives there).
pub const CONTROLLER_NAMESPACE: &str = "netpol-trace";

/// The repository's `deploy/` directory.
pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("deploy")
}

/// The fake API server, its runtime, one kubeconfig per token, and the binary to run.
pub struct Cluster {
    /// The fake (served by `rt`).
    pub fake: FakeApiServer,
    /// The runtime serving the fake.
    pub rt: tokio::runtime::Runtime,
    /// Kubeconfigs and process logs.
    pub dir: tempfile::TempDir,
    bin: PathBuf,
}

impl Cluster {
    /// A fake with deploy/'s CRD and RBAC, the namespaces `app`, `db` and the controller's,
    /// and dana's bindings in `db`; `bin` is the `netpol-trace` binary.
    pub fn start(bin: PathBuf) -> anyhow::Result<Self> {
        let rt =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let fake = rt.block_on(
            FakeApiServer::builder()
                .with_manifests(deploy_dir())
                .token(AGENT_TOKEN, Identity::service_account(CONTROLLER_NAMESPACE, "netpol-trace"))
                .token(
                    CONTROLLER_TOKEN,
                    Identity::service_account(CONTROLLER_NAMESPACE, "netpol-trace-controller"),
                )
                .token(PERSON_TOKEN, Identity::user("dana", ["db-admins"]))
                .admin_token(ADMIN_TOKEN)
                .start(),
        );
        for ns in ["app", "db", CONTROLLER_NAMESPACE] {
            fake.insert(json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}}}));
        }
        // dana administers db (approver and restorer rights aggregate into `admin`; restoring
        // is also granted explicitly, as deploy/rbac-users.yaml suggests).
        for (name, role) in [("db-admins", "admin"), ("restorers", "netpol-trace-restorer")] {
            fake.insert(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": name, "namespace": "db"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [{"kind": "Group", "name": "db-admins"}]}));
        }
        // Her NetworkPolicy rights stand for what the built-in `admin` role has in a real
        // cluster (restore puts a policy back with the person's own rights).
        fake.insert(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "policy-editor", "namespace": "db"},
            "rules": [{"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"],
                       "verbs": ["get", "list", "watch", "patch", "create", "delete"]}]}));
        fake.insert(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "policy-editor", "namespace": "db"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "policy-editor"},
            "subjects": [{"kind": "Group", "name": "db-admins"}]}));
        let dir = tempfile::tempdir()?;
        for token in [AGENT_TOKEN, CONTROLLER_TOKEN, PERSON_TOKEN, ADMIN_TOKEN] {
            fake.write_kubeconfig_with_token(&dir.path().join(token), token)?;
        }
        Ok(Self { fake, rt, dir, bin })
    }

    /// The kubeconfig of `token`.
    pub fn kubeconfig(&self, token: &str) -> PathBuf {
        self.dir.path().join(token)
    }

    /// Runs the CLI as the holder of `token` would: `netpol-trace ARGS --kubeconfig K`.
    pub fn cli(&self, token: &str, args: &[&str]) -> anyhow::Result<Output> {
        Command::new(&self.bin)
            .args(args)
            .arg("--kubeconfig")
            .arg(self.kubeconfig(token))
            .output()
            .with_context(|| format!("running netpol-trace {}", args.join(" ")))
    }

    /// Adds a Running pod of a workload: `owner` is `("ReplicaSet", "web-7d9f8b6c5")` (a
    /// Deployment's) or `("StatefulSet", "mysql")`.
    pub fn add_pod(
        &self,
        namespace: &str,
        name: &str,
        app: &str,
        owner: (&str, &str),
        ip: Ipv4Addr,
        node: &str,
    ) {
        let mut labels = json!({"app": app});
        if owner.0 == "ReplicaSet" {
            labels["pod-template-hash"] = json!(owner.1.rsplit('-').next().unwrap_or_default());
        }
        self.fake.insert(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels,
                "uid": format!("uid-{namespace}-{name}"),
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner.0, "name": owner.1,
                    "uid": format!("uid-{}", owner.1), "controller": true}]},
            "spec": {"nodeName": node, "containers": [{"name": app, "image": app}]},
            "status": {"phase": "Running", "podIP": ip.to_string(), "podIPs": [{"ip": ip.to_string()}]}}));
    }

    /// The reports in the API server.
    pub fn reports(&self) -> Vec<Value> {
        self.fake.objects("dropreports")
    }

    /// The live NetworkPolicy `db/mysql-ingress`.
    pub fn policy(&self) -> Value {
        self.fake.get("networkpolicies", "db", "mysql-ingress").unwrap_or(Value::Null)
    }

    /// Starts `netpol-trace agent` on node namespace `netns` as node `node`, with the agent's
    /// token; returns once it is ready (programs attached, caches synced).
    pub fn spawn_agent(&self, node: &str, netns: &str) -> anyhow::Result<Process> {
        let ready = self.dir.path().join(format!("{node}.ready"));
        let mut cmd = Command::new(&self.bin);
        cmd.args(["agent", "--netns", netns, "--listen", "127.0.0.1:0", "--node-name", node])
            .arg("--kubeconfig")
            .arg(self.kubeconfig(AGENT_TOKEN))
            .arg("--ready-file")
            .arg(&ready);
        let process = Process::spawn(cmd, &format!("agent-{node}"), self.dir.path())?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready.exists() {
            if Instant::now() > deadline {
                bail!("agent {node} not ready in 60 s:\n{}", process.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(process)
    }

    /// Starts `netpol-trace controller` as `identity` (POD_NAME) in the controller's namespace
    /// (POD_NAMESPACE) with the controller's token and short Lease timings, plus `extra` flags.
    pub fn spawn_controller(&self, identity: &str, extra: &[&str]) -> anyhow::Result<Process> {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("controller")
            .args(["--lease-duration", "3s", "--renew-deadline", "2s", "--retry-period", "200ms"])
            .args(extra)
            .arg("--kubeconfig")
            .arg(self.kubeconfig(CONTROLLER_TOKEN))
            .env("POD_NAME", identity)
            .env("POD_NAMESPACE", CONTROLLER_NAMESPACE);
        let process = Process::spawn(cmd, identity, self.dir.path())?;
        wait_for(&format!("{identity} leading"), Duration::from_secs(20), || {
            let lease = self.fake.get("leases", CONTROLLER_NAMESPACE, "netpol-trace-controller")?;
            (lease["spec"]["holderIdentity"] == identity).then_some(())
        })
        .with_context(|| process.log())?;
        Ok(process)
    }
}

/// A child process, stopped by its PID (SIGTERM, then SIGKILL) when dropped; its stderr goes
/// to a log file.
pub struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Spawns `cmd` with its stderr (and stdout) in `dir/name.log`.
    pub fn spawn(mut cmd: Command, name: &str, dir: &Path) -> anyhow::Result<Self> {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log)?;
        cmd.stdout(Stdio::null()).stderr(file).env("NETPOL_TRACE_LOG", "info");
        let child = cmd.spawn().context("spawning netpol-trace")?;
        Ok(Self { child, log })
    }

    /// What it wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits (5 s at most, then SIGKILL); returns whether it exited with 0.
    pub fn stop(mut self) -> bool {
        self.terminate()
    }

    fn terminate(&mut self) -> bool {
        if let Ok(Some(status)) = self.child.try_wait() {
            return status.success();
        }
        // SAFETY: signalling a child of this process by its PID (not yet reaped).
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// Polls `check` every 20 ms until it answers, at most `timeout`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a report's status is filled: a node entry, who denies it, and a proposed fix.
pub fn filled(report: &Value) -> bool {
    let s = &report["status"];
    s["nodes"].as_array().is_some_and(|n| !n.is_empty())
        && s["attribution"]["policies"].as_array().is_some_and(|p| !p.is_empty())
        && s["fix"]["phase"].is_string()
}

/// A report's fix phase.
pub fn phase(report: &Value) -> Option<&str> {
    report.pointer("/status/fix/phase").and_then(Value::as_str)
}

/// The NetworkPolicy of every scenario: mysql pods accept `app=web` pods of any namespace on
/// `port` only.
pub fn mysql_policy(port: u16) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "mysql-ingress", "namespace": "db"},
        "spec": {"podSelector": {"matchLabels": {"app": "mysql"}}, "policyTypes": ["Ingress"],
                 "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "web"}}}],
                              "ports": [{"protocol": "TCP", "port": port}]}]}})
}

/// One node of a scenario: its namespace and pods (0: web, 1: mysql listening on [`PORT`],
/// 2: tools, when asked for).
pub struct Node {
    /// The node's name in the API (`node-1`...).
    pub name: String,
    /// Its network namespace and pods.
    pub topo: Topology,
}

/// A scenario: the cluster, its nodes and the CNI; agents and a controller are started by the
/// caller. Fields drop in order: processes first (agents detach), then the CNI, the
/// namespaces, and the API server last.
pub struct Scenario {
    /// Agents, one per node once started.
    pub agents: Vec<Process>,
    /// The controller once started.
    pub controller: Option<Process>,
    /// The CNI.
    pub cni: Cni,
    /// The nodes.
    pub nodes: Vec<Node>,
    /// The API server.
    pub cluster: Cluster,
}

impl Scenario {
    /// `nodes` node namespaces, each with a web pod (Deployment `web`), a mysql pod
    /// (StatefulSet `mysql`, listening on [`PORT`]) and, with `tools`, a third pod
    /// (Deployment `tools`); `policy_port` is the port the policy allows. The CNI enforces.
    pub fn new(bin: PathBuf, nodes: usize, tools: bool, policy_port: u16) -> anyhow::Result<Self> {
        let cluster = Cluster::start(bin)?;
        cluster.fake.insert(mysql_policy(policy_port));
        let mut built = vec![];
        for i in 0..nodes {
            let name = format!("node-{}", i + 1);
            let mut topo = Topology::new(if tools { 3 } else { 2 })?;
            topo.listen(1, PORT)?;
            let (web, mysql) = (topo.pods[0].ip, topo.pods[1].ip);
            let suffix = ["x2k4q", "b7n2m", "q9z8w"][i % 3];
            cluster.add_pod(
                "app",
                &format!("web-7d9f8b6c5-{suffix}"),
                "web",
                ("ReplicaSet", "web-7d9f8b6c5"),
                web,
                &name,
            );
            cluster.add_pod(
                "db",
                &format!("mysql-{i}"),
                "mysql",
                ("StatefulSet", "mysql"),
                mysql,
                &name,
            );
            if tools {
                let ip = topo.pods[2].ip;
                cluster.add_pod(
                    "app",
                    &format!("tools-5c4f9d7b8-{suffix}"),
                    "tools",
                    ("ReplicaSet", "tools-5c4f9d7b8"),
                    ip,
                    &name,
                );
            }
            built.push(Node { name, topo });
        }
        let enforced = built
            .iter()
            .map(|n| (n.topo.node.clone(), n.topo.pods.iter().map(|p| p.ip).collect()))
            .collect();
        let cni = Cni::start(&cluster, enforced, vec![PORT])?;
        Ok(Self { agents: vec![], controller: None, cni, nodes: built, cluster })
    }

    /// Starts an agent on every node.
    pub fn start_agents(&mut self) -> anyhow::Result<()> {
        for node in &self.nodes {
            self.agents.push(self.cluster.spawn_agent(&node.name, &node.topo.node)?);
        }
        Ok(())
    }

    /// A connect from pod `from` of node `node` to its mysql pod; true when it completed.
    pub fn connect(&self, node: usize, from: usize, timeout: Duration) -> bool {
        let topo = &self.nodes[node].topo;
        topo.connect(from, topo.pods[1].ip, PORT, timeout)
    }

    /// Whether the CNI drops pod `from` of node `node` to that node's mysql pod now.
    pub fn blocked(&self, node: usize, from: usize) -> bool {
        let pods = &self.nodes[node].topo.pods;
        self.cni.denied().contains(&(pods[from].ip, pods[1].ip, PORT))
    }

    /// Waits until the CNI drops (`true`) or forwards web -> mysql on `node`.
    pub fn wait_blocked(&self, node: usize, blocked: bool) -> anyhow::Result<()> {
        let what = if blocked {
            "the CNI dropping web -> mysql"
        } else {
            "the CNI forwarding web -> mysql"
        };
        wait_for(what, Duration::from_secs(60), || (self.blocked(node, 0) == blocked).then_some(()))
    }

    /// The one report, once `ready` holds for it.
    pub fn report_when(
        &self,
        what: &str,
        timeout: Duration,
        ready: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        wait_for(what, timeout, || self.cluster.reports().into_iter().find(|r| ready(r)))
    }
}

/// A TCP connect from inside `netns` whose SYN claims source address `src` (an address added
/// to the namespace's eth0 for this: the spoofing trick), to `dst:port`; true when it completed.
pub fn spoofed_connect(
    netns: &str,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    port: u16,
    timeout: Duration,
) -> anyhow::Result<bool> {
    let have = in_ns(netns, &["ip", "-4", "addr", "show", "dev", "eth0"])?;
    if !have.contains(&format!("{src}/32")) {
        in_ns(netns, &["ip", "addr", "add", &format!("{src}/32"), "dev", "eth0"])?;
    }
    let netns = netns.to_string();
    std::thread::spawn(move || -> anyhow::Result<bool> {
        enter_netns(&netns)?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::from((src, 0)))?;
            let connect = socket.connect(SocketAddr::from((dst, port)));
            Ok(matches!(tokio::time::timeout(timeout, connect).await, Ok(Ok(_))))
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the spoofing thread panicked"))?
}

/// Turns reverse-path filtering off in the node namespace (all, default and `iface`), so a
/// SYN with another pod's source address is forwarded (and dropped by the CNI) instead of
/// being discarded by the routing code.
pub fn no_rp_filter(topo: &Topology, iface: &str) -> anyhow::Result<()> {
    for conf in ["all", "default", iface] {
        topo.node_exec(&["sysctl", "-qw", &format!("net.ipv4.conf.{conf}.rp_filter=0")])?;
    }
    Ok(())
}

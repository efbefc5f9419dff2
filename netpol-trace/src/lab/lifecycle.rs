//! Building and tearing down labs: `up` wires the topology, loads the ruleset enforcing the
//! manifests' NetworkPolicies and starts the workloads, recording each step in `state.json`;
//! `apply_policies` replaces the enforced policies (one atomic ruleset swap); `down` stops the
//! lab's processes by PID, deletes its network namespaces (with their veths and nft table) and
//! its run directory.
//!
//! A policy change from code (what `lab apply -f` does):
//! ```no_run
//! # fn main() -> netpol_trace::lab::Result<()> {
//! use netpol_trace::lab::{LabContext, lifecycle};
//! let ctx = LabContext::from_env()?;
//! let inventory = lifecycle::inventory(&ctx, "shop")?; // pods, namespaces, current policies
//! // ... patch policies, e.g. `inventory.with_policies_replaced(patched)` ...
//! let policies: Vec<_> = inventory
//!     .policies()
//!     .filter_map(|(_, entry)| entry.sourced.to_sourced().ok())
//!     .collect();
//! let change = lifecycle::apply_policies(&ctx, "shop", policies)?;
//! println!("{} pod(s) isolated", change.isolated_pods());
//! # Ok(())
//! # }
//! ```

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Serialize;

use super::compile::plan_from_inventory;
use super::enforce::{apply_plan, check_plan_against};
use super::error::{LabError, Result};
use super::mariadb::{self, MARIADB_PORT};
use super::naming::{LabNames, process_name};
use super::objects::{LabPolicies, StoredPolicy, lab_inventory};
use super::paths::{PID_DIR, RunDir, STATE_FILE, labs_dir};
use super::plan::{EnforcementPlan, Protocol};
use super::process::{
    DaemonRecord, is_running, read_pid_file, spawn_daemon, stop_daemon, stop_pid,
};
use super::render::render_ruleset;
use super::state::{LabState, STATE_VERSION};
use super::system::ensure_root;
use super::topology::{LabPod, Workload, build_topology};
use super::wiring;
use crate::inventory::{ClusterObjects, Inventory};
use crate::netns::{command_in_netns, netns_inode, netns_path, netns_with_prefix};

/// Role name of listener processes (see [`process_name`]).
pub const LISTENER_ROLE: &str = "serve";
/// How long a listener gets to bind its ports.
pub const LISTENER_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Where labs live and which binary serves the listeners.
#[derive(Debug, Clone)]
pub struct LabContext {
    /// The directory holding one run directory per lab.
    pub labs_dir: PathBuf,
    /// The `netpol-trace` binary, run as `lab serve` inside pods.
    pub exe: PathBuf,
}

impl LabContext {
    /// The labs directory from the environment, and the running binary as listener.
    pub fn from_env() -> Result<Self> {
        let exe = std::env::current_exe()
            .map_err(|e| LabError::io("locating the netpol-trace binary", e))?;
        Ok(Self { labs_dir: labs_dir(), exe })
    }

    /// The run directory of lab `name`.
    pub fn run_dir(&self, name: &str) -> RunDir {
        RunDir::new(&self.labs_dir, name)
    }
}

/// Builds lab `name` from `objects` (its Pods, Namespaces and policies of every kind the
/// engine evaluates; other objects are ignored) and starts its workloads, with the policies enforced from the start. Pods,
/// addresses and policies are checked before anything is created; on a later failure,
/// whatever was created is removed again before the error is returned.
pub fn up(
    ctx: &LabContext,
    name: &str,
    objects: &ClusterObjects,
    source: Option<&Path>,
) -> Result<LabState> {
    ensure_root()?;
    let names = LabNames::new(name)?;
    let topology = build_topology(&names, &objects.pods)?;
    let policies = LabPolicies::from_objects(objects);
    let inventory = lab_inventory(&topology, &objects.namespaces, policies.clone())?;
    let plan = plan_from_inventory(&inventory, &topology)?;
    let run_dir = ctx.run_dir(name);
    if run_dir.root().exists() || !netns_with_prefix(&names.prefix()).is_empty() {
        return Err(LabError::LabExists(name.to_owned()));
    }
    std::fs::create_dir_all(run_dir.root())
        .map_err(|e| LabError::io(format!("creating {}", run_dir.root().display()), e))?;
    let mut state = LabState {
        version: STATE_VERSION,
        name: name.to_owned(),
        prefix: names.prefix(),
        created_at: Utc::now(),
        source: source.map(Path::to_owned),
        run_dir: run_dir.root().to_owned(),
        topology,
        netns: Vec::new(),
        daemons: Vec::new(),
        namespaces: objects.namespaces.clone(),
        policies: objects.network_policies.iter().map(StoredPolicy::from_sourced).collect(),
        tiered: policies.stored_tiered(),
        plan: None,
    };
    match build(ctx, &names, &run_dir, &mut state, plan) {
        Ok(()) => Ok(state),
        Err(err) => {
            if let Err(cleanup) = down(ctx, name) {
                tracing::error!(%cleanup, lab = name, "clean-up after a failed `lab up` failed");
            }
            Err(err)
        }
    }
}

fn build(
    ctx: &LabContext,
    names: &LabNames,
    run_dir: &RunDir,
    state: &mut LabState,
    plan: EnforcementPlan,
) -> Result<()> {
    let started = Instant::now();
    let state_file = run_dir.state_file();
    state.save(&state_file)?;
    let node = state.topology.node_netns.clone();
    state.netns.push(node.clone());
    state.save(&state_file)?;
    wiring::create_node(&node)?;
    for pod in state.topology.pods.clone() {
        state.netns.push(pod.netns.clone());
        state.save(&state_file)?;
        wiring::create_pod_netns(&pod)?;
        wiring::wire_pod(&node, &pod, &names.host_iface_alias(&pod.namespace, &pod.name))?;
    }
    apply_plan(run_dir, &state.topology, &plan)?;
    state.plan = Some(plan);
    state.save(&state_file)?;
    tracing::info!(lab = %state.name, elapsed = ?started.elapsed(), "namespaces wired, ruleset loaded");
    start_listeners(ctx, run_dir, state)?;
    tracing::info!(lab = %state.name, elapsed = ?started.elapsed(), "listeners ready");
    for pod in state.topology.pods.clone() {
        if pod.workload == Workload::Mariadb {
            mariadb::start(run_dir, &pod, |record| {
                state.daemons.push(record.clone());
                state.save(&state_file)
            })?;
            tracing::info!(pod = %pod.key(), elapsed = ?started.elapsed(), "MariaDB ready");
        }
    }
    Ok(())
}

/// The ports a listener serves in `pod`: every declared TCP/UDP port (once) except the one a
/// real workload already serves.
pub fn listener_ports(pod: &LabPod) -> Vec<(u16, Protocol)> {
    let mut ports: Vec<(u16, Protocol)> = Vec::new();
    for p in &pod.ports {
        let served_by_mariadb = pod.workload == Workload::Mariadb
            && p.protocol == Protocol::Tcp
            && p.port == MARIADB_PORT;
        if p.protocol != Protocol::Sctp
            && !served_by_mariadb
            && !ports.contains(&(p.port, p.protocol))
        {
            ports.push((p.port, p.protocol));
        }
    }
    ports
}

fn start_listeners(ctx: &LabContext, run_dir: &RunDir, state: &mut LabState) -> Result<()> {
    let mut waiting = Vec::new();
    for pod in state.topology.pods.clone() {
        let ports = listener_ports(&pod);
        if ports.is_empty() {
            continue;
        }
        let name = process_name(LISTENER_ROLE, &pod.namespace, &pod.name);
        let ready_file = run_dir.root().join(PID_DIR).join(format!("{name}.ready"));
        let mut args = vec!["lab".to_owned(), "serve".to_owned(), "--ready-file".to_owned()];
        args.push(ready_file.display().to_string());
        for (port, protocol) in ports {
            args.push("--port".to_owned());
            args.push(format!("{port}/{protocol}"));
        }
        let record = spawn_daemon(run_dir, &name, &pod.key(), &pod.netns, &ctx.exe, &args)?;
        state.daemons.push(record.clone());
        state.save(&run_dir.state_file())?;
        waiting.push((record, ready_file));
    }
    for (record, ready_file) in waiting {
        let started = Instant::now();
        while !ready_file.exists() {
            if !is_running(&record) || started.elapsed() > LISTENER_READY_TIMEOUT {
                return Err(LabError::NotReady {
                    what: format!("the listener of pod {}", record.pod),
                    seconds: LISTENER_READY_TIMEOUT.as_secs(),
                    log: record.log_file.clone(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(())
}

/// What `down` removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DownReport {
    /// The lab.
    pub lab: String,
    /// Processes stopped (`name (pid N)`).
    pub processes: Vec<String>,
    /// Network namespaces deleted (with their veths; the node's held the nft table).
    pub netns: Vec<String>,
    /// The run directory, if it existed.
    pub run_dir: Option<PathBuf>,
}

impl DownReport {
    /// Whether anything of the lab was found.
    pub fn removed_anything(&self) -> bool {
        !self.processes.is_empty() || !self.netns.is_empty() || self.run_dir.is_some()
    }
}

/// Removes everything of lab `name`; succeeds (reporting nothing) when nothing is left.
pub fn down(ctx: &LabContext, name: &str) -> Result<DownReport> {
    ensure_root()?;
    let names = LabNames::new(name)?;
    let run_dir = ctx.run_dir(name);
    let mut report = DownReport { lab: name.to_owned(), ..DownReport::default() };
    let state = match LabState::load(&run_dir.state_file()) {
        Ok(state) => Some(state),
        Err(err) => {
            if run_dir.state_file().exists() {
                tracing::warn!(%err, "state unreadable; removing what the lab prefix finds");
            }
            None
        }
    };
    let mut netns: Vec<String> = state.as_ref().map(|s| s.netns.clone()).unwrap_or_default();
    for found in netns_with_prefix(&names.prefix()) {
        if !netns.contains(&found) {
            netns.push(found);
        }
    }
    let lab_inodes: HashSet<u64> =
        netns.iter().filter_map(|n| netns_inode(&netns_path(n))).collect();
    let recorded: Vec<DaemonRecord> = state.as_ref().map(|s| s.daemons.clone()).unwrap_or_default();
    for record in &recorded {
        if stop_daemon(record) {
            report.processes.push(format!("{} (pid {})", record.name, record.pid));
        }
    }
    // PID files not (yet) in the state: a crash between spawn and save. Such a process is
    // ours only if it lives in one of the lab's network namespaces.
    let recorded_pids: HashSet<i32> = recorded.iter().map(|r| r.pid).collect();
    for (process, pid) in pid_files(&run_dir) {
        if recorded_pids.contains(&pid) {
            continue;
        }
        let in_lab = || {
            netns_inode(Path::new(&format!("/proc/{pid}/ns/net")))
                .is_some_and(|i| lab_inodes.contains(&i))
                && super::process::process_start_time(pid).is_some()
        };
        if stop_pid(pid, in_lab) {
            report.processes.push(format!("{process} (pid {pid})"));
        }
    }
    // Pods first, the node last: deleting a pod namespace destroys its veth pair.
    for ns in netns.iter().rev() {
        if wiring::delete_netns(ns)? {
            report.netns.push(ns.clone());
        }
    }
    if run_dir.root().exists() {
        std::fs::remove_dir_all(run_dir.root())
            .map_err(|e| LabError::io(format!("removing {}", run_dir.root().display()), e))?;
        report.run_dir = Some(run_dir.root().to_owned());
    }
    Ok(report)
}

fn pid_files(run_dir: &RunDir) -> Vec<(String, i32)> {
    let Ok(entries) = std::fs::read_dir(run_dir.root().join(PID_DIR)) else { return Vec::new() };
    entries
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            if path.extension()? != "pid" {
                return None;
            }
            let name = path.file_stem()?.to_string_lossy().into_owned();
            Some((name, read_pid_file(&path)?))
        })
        .collect()
}

/// Reads the state of lab `name`.
pub fn load(ctx: &LabContext, name: &str) -> Result<LabState> {
    LabNames::new(name)?;
    let path = ctx.run_dir(name).state_file();
    if !path.exists() {
        return Err(LabError::LabNotFound(name.to_owned()));
    }
    LabState::load(&path)
}

/// A lab found in the labs directory.
#[derive(Debug, Clone, Serialize)]
pub struct LabSummary {
    /// The lab name.
    pub name: String,
    /// Its state, when readable.
    #[serde(skip)]
    pub state: Option<LabState>,
    /// Number of pods.
    pub pods: usize,
    /// Whether its node namespace exists (false after a reboot or a crash during `up`).
    pub running: bool,
    /// When it was created, RFC 3339.
    pub created_at: Option<String>,
}

/// The labs that have a run directory, by name.
pub fn list(ctx: &LabContext) -> Result<Vec<LabSummary>> {
    let Ok(entries) = std::fs::read_dir(&ctx.labs_dir) else { return Ok(Vec::new()) };
    let mut labs: Vec<LabSummary> = entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let name = entry.file_name().into_string().ok()?;
            if !entry.path().join(STATE_FILE).exists() || LabNames::new(&name).is_err() {
                return None;
            }
            let state = LabState::load(&entry.path().join(STATE_FILE)).ok();
            let running =
                state.as_ref().is_some_and(|s| netns_path(&s.topology.node_netns).exists());
            Some(LabSummary {
                pods: state.as_ref().map_or(0, |s| s.topology.pods.len()),
                created_at: state.as_ref().map(|s| s.created_at.to_rfc3339()),
                running,
                state,
                name,
            })
        })
        .collect();
    labs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(labs)
}

/// Renders `plan` and swaps the lab's ruleset; records the plan in the state. The recorded
/// policies stay as they are: a hand-written plan overrides them until the next
/// [`apply_policies`].
pub fn apply(ctx: &LabContext, name: &str, plan: &EnforcementPlan) -> Result<String> {
    ensure_root()?;
    let mut state = load(ctx, name)?;
    let run_dir = ctx.run_dir(name);
    let ruleset = apply_plan(&run_dir, &state.topology, plan)?;
    state.plan = Some(plan.clone());
    state.save(&run_dir.state_file())?;
    Ok(ruleset)
}

/// The result of a policy change: the plan and the ruleset rendered from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyChange {
    /// How many NetworkPolicies the lab now enforces.
    pub policies: usize,
    /// How many objects of the other kinds (ClusterNetworkPolicy, AdminNetworkPolicy,
    /// BaselineAdminNetworkPolicy, Calico policies and Tiers) it now enforces.
    pub other_policies: usize,
    /// The enforcement plan computed from them.
    pub plan: EnforcementPlan,
    /// The nftables ruleset rendered from the plan.
    pub ruleset: String,
}

impl PolicyChange {
    /// Pods isolated in at least one direction.
    pub fn isolated_pods(&self) -> usize {
        self.plan.pods.iter().filter(|p| p.is_isolated()).count()
    }
}

/// The plan and ruleset that would enforce `policies` on the lab of `state`, without touching
/// the lab (`lab apply --dry-run`).
pub fn plan_policies(state: &LabState, policies: impl Into<LabPolicies>) -> Result<PolicyChange> {
    let policies = policies.into();
    let count = policies.network_policies.len();
    let other_policies = policies.len() - count;
    let inventory = lab_inventory(&state.topology, &state.namespaces, policies)?;
    let plan = plan_from_inventory(&inventory, &state.topology)?;
    check_plan_against(&plan, &state.topology)?;
    let ruleset = render_ruleset(&state.topology.nft_table, &plan);
    Ok(PolicyChange { policies: count, other_policies, plan, ruleset })
}

/// Makes lab `name` enforce exactly `policies` (they replace the current set; pods and
/// namespaces stay as built): recomputes the plan, swaps the ruleset in one transaction and
/// records the policies and the plan in the state. Invalid policies change nothing.
pub fn apply_policies(
    ctx: &LabContext,
    name: &str,
    policies: impl Into<LabPolicies>,
) -> Result<PolicyChange> {
    ensure_root()?;
    let mut state = load(ctx, name)?;
    let policies = policies.into();
    let stored: Vec<StoredPolicy> =
        policies.network_policies.iter().map(StoredPolicy::from_sourced).collect();
    let stored_tiered = policies.stored_tiered();
    let change = plan_policies(&state, policies)?;
    let run_dir = ctx.run_dir(name);
    apply_plan(&run_dir, &state.topology, &change.plan)?;
    state.policies = stored;
    state.tiered = stored_tiered;
    state.plan = Some(change.plan.clone());
    state.save(&run_dir.state_file())?;
    Ok(change)
}

/// The policy engine's view of lab `name`: its pods as built (with their lab IPs), its
/// Namespaces and the NetworkPolicies it currently enforces.
pub fn inventory(ctx: &LabContext, name: &str) -> Result<Inventory> {
    load(ctx, name)?.inventory()
}

/// Finds a pod by `NAMESPACE/NAME`, or by `NAME` when exactly one pod has it.
pub fn find_pod<'a>(state: &'a LabState, reference: &str) -> Result<&'a LabPod> {
    let not_found = |message: String| LabError::PodNotFound {
        lab: state.name.clone(),
        pod: reference.to_owned(),
        message,
    };
    let matches: Vec<&LabPod> = match reference.split_once('/') {
        Some((namespace, name)) => state
            .topology
            .pods
            .iter()
            .filter(|p| p.namespace == namespace && p.name == name)
            .collect(),
        None => state.topology.pods.iter().filter(|p| p.name == reference).collect(),
    };
    match matches.as_slice() {
        [one] => Ok(one),
        [] => {
            let known: Vec<String> = state.topology.pods.iter().map(LabPod::key).collect();
            Err(not_found(format!("no such pod (pods: {})", known.join(", "))))
        }
        many => {
            let keys: Vec<String> = many.iter().map(|p| p.key()).collect();
            Err(not_found(format!("ambiguous, use NAMESPACE/NAME ({})", keys.join(", "))))
        }
    }
}

/// Runs `program args` inside `pod`'s network namespace with the caller's stdio and returns
/// its exit code (128 + signal number when killed by a signal).
pub fn exec_in_pod(pod: &LabPod, program: &str, args: &[String]) -> Result<i32> {
    ensure_root()?;
    let mut command = Command::new(program);
    command.args(args);
    let _netns = command_in_netns(&mut command, &pod.netns)?;
    let status = command
        .status()
        .map_err(|e| LabError::io(format!("running {program} in pod {}", pod.key()), e))?;
    use std::os::unix::process::ExitStatusExt as _;
    Ok(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

//! The CNI of the privileged operator tests: nftables in each node namespace rendered from the
//! live NetworkPolicies of the API server, decided by `explain`.

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr},
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use netpol_trace::{
    explain::{ExplainOptions, is_allowed},
    flow::Flow,
    inventory::{Inventory, InventoryOptions},
    manifest::load_cluster_with,
    policy::port::Protocol,
};

use crate::operator::{ADMIN_TOKEN, Cluster, wait_for};

/// A denied connection the CNI drops: source, destination, port.
pub type Denied = (Ipv4Addr, Ipv4Addr, u16);

#[derive(Debug, Default)]
struct CniState {
    denied: Option<BTreeSet<Denied>>,
    changed_at: Option<Instant>,
    error: Option<String>,
}

/// The CNI of the test nodes: every 100 ms it reads the live objects from the API server,
/// decides each pod-to-pod connection on `ports` with `explain` (the engine the whole tool
/// uses) and, when the verdicts changed, replaces its nftables table in every node namespace
/// atomically with one `drop` rule per denied connection. It follows the policies: nothing is
/// hard-coded open or closed.
pub struct Cni {
    stop: Arc<AtomicBool>,
    state: Arc<Mutex<CniState>>,
    handle: Option<JoinHandle<()>>,
}

/// The nftables table the CNI owns in each node namespace.
const CNI_TABLE: &str = "npe2ecni";

impl Cni {
    /// Starts enforcing on `nodes` (node namespace, the pod addresses on it); returns after the
    /// first ruleset is in place.
    pub fn start(
        cluster: &Cluster,
        nodes: Vec<(String, Vec<Ipv4Addr>)>,
        ports: Vec<u16>,
    ) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(CniState::default()));
        let client = {
            let _runtime = cluster.rt.enter();
            cluster.fake.client_with_token(ADMIN_TOKEN)
        };
        let handle = cluster.rt.handle().clone();
        let (stop2, state2) = (stop.clone(), state.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                let result = handle
                    .block_on(load_cluster_with(client.clone()))
                    .map_err(|e| e.to_string())
                    .and_then(|objects| {
                        Inventory::from_objects(objects, InventoryOptions::default())
                            .map_err(|e| e.to_string())
                    })
                    .map(|inventory| verdicts(&inventory, &nodes, &ports));
                let mut s = state2.lock().unwrap();
                match result {
                    Ok(denied) if s.denied.as_ref() != Some(&denied) => {
                        match nodes.iter().try_for_each(|(netns, ips)| apply(netns, ips, &denied)) {
                            Ok(()) => {
                                s.denied = Some(denied);
                                s.changed_at = Some(Instant::now());
                                s.error = None;
                            }
                            Err(e) => s.error = Some(e.to_string()),
                        }
                    }
                    Ok(_) => {}
                    Err(e) => s.error = Some(e),
                }
                drop(s);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let cni = Self { stop, state, handle: Some(thread) };
        wait_for("the CNI's first ruleset", Duration::from_secs(20), || {
            cni.state.lock().unwrap().changed_at.map(|_| ())
        })
        .with_context(|| format!("{:?}", cni.state.lock().unwrap().error))?;
        Ok(cni)
    }

    /// The connections dropped now.
    pub fn denied(&self) -> BTreeSet<Denied> {
        self.state.lock().unwrap().denied.clone().unwrap_or_default()
    }

    /// When the ruleset last changed.
    pub fn changed_at(&self) -> Option<Instant> {
        self.state.lock().unwrap().changed_at
    }
}

impl Drop for Cni {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Which pod-to-pod connections on each node `explain` denies.
fn verdicts(
    inventory: &Inventory,
    nodes: &[(String, Vec<Ipv4Addr>)],
    ports: &[u16],
) -> BTreeSet<Denied> {
    let mut denied = BTreeSet::new();
    for (_, ips) in nodes {
        for &src in ips {
            for &dst in ips.iter().filter(|d| **d != src) {
                for &port in ports {
                    let flow = Flow::from_packet(
                        inventory,
                        IpAddr::V4(src),
                        IpAddr::V4(dst),
                        port,
                        Protocol::Tcp,
                    );
                    if !is_allowed(inventory, &flow, &ExplainOptions::default()) {
                        denied.insert((src, dst, port));
                    }
                }
            }
        }
    }
    denied
}

/// Replaces the CNI's table in `netns` with the rules for the connections among `ips`.
fn apply(netns: &str, ips: &[Ipv4Addr], denied: &BTreeSet<Denied>) -> anyhow::Result<()> {
    let mut script = format!(
        "table inet {CNI_TABLE}\ndelete table inet {CNI_TABLE}\ntable inet {CNI_TABLE} {{\n\
         \tchain forward {{\n\t\ttype filter hook forward priority filter; policy accept;\n\
         \t\tct state established,related accept\n"
    );
    for (src, dst, port) in denied.iter().filter(|(_, d, _)| ips.contains(d)) {
        script.push_str(&format!("\t\tip saddr {src} ip daddr {dst} tcp dport {port} drop\n"));
    }
    script.push_str("\t}\n}\n");
    let mut child = Command::new("ip")
        .args(["netns", "exec", netns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    use std::io::Write as _;
    child.stdin.take().context("nft stdin")?.write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("nft -f in {netns}: {}\n{script}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

//! Helpers for the privileged integration tests: a throwaway node network namespace with no
//! uplink, pod namespaces wired to it Calico-style (veth, /32 routes, proxy ARP behind a
//! link-local gateway), listeners and connection attempts from inside pods. Everything is
//! named with a per-run prefix and removed when the [`Topology`] is dropped, also on panic.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{Context, bail};
use netpol_trace::lab::wiring;

pub mod cni;
pub mod operator;
pub mod tc_drop;

/// The link-local gateway pods route through (as Calico does), the lab's.
pub use netpol_trace::lab::paths::NODE_GATEWAY as GATEWAY;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A unique, short prefix for this process and call (interface names must fit 15 bytes).
pub fn unique_prefix() -> String {
    format!("np{:05}{}", std::process::id() % 100_000, SEQ.fetch_add(1, Ordering::SeqCst))
}

/// Runs a command, failing with its stderr.
pub fn sh(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {}", args.join(" ")))?;
    if !out.status.success() {
        bail!("{} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command inside a network namespace.
pub fn in_ns(ns: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut full = vec!["ip", "netns", "exec", ns];
    full.extend_from_slice(args);
    sh(&full)
}

/// Fails unless running as root: the rule of every privileged test
/// ([`netpol_trace::lab::system::require_root`]).
pub use netpol_trace::lab::system::require_root;

/// A pod: its namespace, address and host-side interface in the node namespace.
#[derive(Debug, Clone)]
pub struct Pod {
    /// Network namespace name.
    pub netns: String,
    /// IPv4 address.
    pub ip: Ipv4Addr,
    /// IPv6 address (dual-stack topologies only).
    pub ip6: Option<Ipv6Addr>,
    /// Host-side veth name (in the node namespace).
    pub host_if: String,
}

/// A node namespace and its pods. Dropping it removes every namespace it created (their
/// links, routes and firewall rules go with them) and stops its listeners.
pub struct Topology {
    /// Prefix of every name.
    pub prefix: String,
    /// The node namespace.
    pub node: String,
    /// Pods, in creation order.
    pub pods: Vec<Pod>,
    listeners: Vec<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl Topology {
    /// A node namespace with `n` pods at 10.(200+k).0.(i+1)/32 (k from the prefix).
    pub fn new(n: usize) -> anyhow::Result<Self> {
        Self::build(n, false)
    }

    /// Like [`Topology::new`], each pod also at fd00:(200+k)::(i+1)/128, routed through the
    /// link-local gateway fe80::1 of its host-side veth (forwarding on in the node namespace,
    /// which is this topology's own).
    pub fn dual_stack(n: usize) -> anyhow::Result<Self> {
        Self::build(n, true)
    }

    fn build(n: usize, v6: bool) -> anyhow::Result<Self> {
        let prefix = unique_prefix();
        let node = format!("{prefix}-node");
        let mut topo =
            Self { prefix: prefix.clone(), node: node.clone(), pods: vec![], listeners: vec![] };
        wiring::create_node(&node)?;
        let subnet = 200 + (SEQ.load(Ordering::SeqCst) % 50) as u8;
        for i in 0..n {
            let netns = format!("{prefix}-p{i}");
            let ip = Ipv4Addr::new(10, subnet, 0, i as u8 + 1);
            let host_if = format!("{prefix}h{i}");
            let ip6 =
                v6.then(|| Ipv6Addr::new(0xfd00, u16::from(subnet), 0, 0, 0, 0, 0, i as u16 + 1));
            sh(&["ip", "netns", "add", &netns])?;
            topo.pods.push(Pod { netns: netns.clone(), ip, ip6, host_if: host_if.clone() });
            // The lab's own Calico-style wiring: what the tests trace is what the lab builds.
            wiring::wire_veth(&node, &netns, &host_if, IpAddr::V4(ip), &netns)?;
            if let Some(ip6) = ip6 {
                wire_v6(&node, &netns, &host_if, ip6, subnet)?;
            }
        }
        Ok(topo)
    }

    /// Path of the node namespace.
    pub fn node_path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.node)
    }

    /// Listens on `port` inside pod `i` (accepting and closing connections) until dropped.
    pub fn listen(&mut self, i: usize, port: u16) -> anyhow::Result<()> {
        let ip = IpAddr::V4(self.pods[i].ip);
        self.listen_on(i, ip, port)
    }

    /// Listens on `ip:port` inside pod `i` until dropped.
    pub fn listen_on(&mut self, i: usize, ip: IpAddr, port: u16) -> anyhow::Result<()> {
        let pod = self.pods[i].clone();
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let stop_thread = stop.clone();
        let handle = std::thread::spawn(move || {
            let bound = enter_netns(&pod.netns).and_then(|()| {
                let l = TcpListener::bind(SocketAddr::from((ip, port)))?;
                l.set_nonblocking(true)?;
                Ok(l)
            });
            let listener = match bound {
                Ok(l) => {
                    let _ = ready_tx.send(Ok(()));
                    l
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            while !stop_thread.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => drop(s),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        ready_rx.recv()?.map_err(anyhow::Error::msg)?;
        self.listeners.push((stop, handle));
        Ok(())
    }

    /// A TCP connect from pod `from` to `ip:port`; true when the handshake completed.
    pub fn connect(
        &self,
        from: usize,
        ip: impl Into<IpAddr>,
        port: u16,
        timeout: Duration,
    ) -> bool {
        let ip: IpAddr = ip.into();
        let netns = self.pods[from].netns.clone();
        std::thread::spawn(move || {
            enter_netns(&netns).is_ok()
                && TcpStream::connect_timeout(&SocketAddr::from((ip, port)), timeout).is_ok()
        })
        .join()
        .unwrap_or(false)
    }

    /// Drops packets matching `matches` (nft expressions, e.g. `["tcp", "dport", "3306"]`) in
    /// the node's forward path, in table `family table`, as a CNI rendering a policy does.
    /// Table and chain are created when missing.
    pub fn nft_forward_drop(
        &self,
        family: &str,
        table: &str,
        matches: &[&str],
    ) -> anyhow::Result<()> {
        const CHAIN: &str = "forward_filter";
        self.node_exec(&["nft", "add", "table", family, table])?;
        let hook = "{ type filter hook forward priority 0; }";
        self.node_exec(&["nft", "add", "chain", family, table, CHAIN, hook])?;
        let mut rule = vec!["nft", "add", "rule", family, table, CHAIN];
        rule.extend_from_slice(matches);
        rule.push("drop");
        self.node_exec(&rule)?;
        Ok(())
    }

    /// Runs a command in the node namespace.
    pub fn node_exec(&self, args: &[&str]) -> anyhow::Result<String> {
        in_ns(&self.node, args)
    }

    /// Namespaces with this topology's prefix that still exist.
    pub fn leftovers(prefix: &str) -> Vec<String> {
        sh(&["ip", "netns", "list"])
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with(prefix))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for (stop, _) in &self.listeners {
            stop.store(true, Ordering::SeqCst);
        }
        for (_, handle) in self.listeners.drain(..) {
            let _ = handle.join();
        }
        for pod in &self.pods {
            let _ = sh(&["ip", "netns", "del", &pod.netns]);
        }
        let _ = sh(&["ip", "netns", "del", &self.node]);
    }
}

/// IPv6 for one pod: no duplicate address detection (addresses are ours), the host side
/// answers as fe80::1, a /128 route per pod in the node namespace.
fn wire_v6(
    node: &str,
    netns: &str,
    host_if: &str,
    ip6: Ipv6Addr,
    subnet: u8,
) -> anyhow::Result<()> {
    in_ns(node, &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])?;
    in_ns(node, &["sysctl", "-qw", &format!("net.ipv6.conf.{host_if}.accept_dad=0")])?;
    in_ns(node, &["ip", "-6", "addr", "add", "fe80::1/64", "dev", host_if, "nodad"])?;
    in_ns(node, &["ip", "-6", "route", "add", &format!("{ip6}/128"), "dev", host_if])?;
    in_ns(netns, &["sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0"])?;
    in_ns(netns, &["ip", "-6", "addr", "add", &format!("{ip6}/128"), "dev", "eth0", "nodad"])?;
    in_ns(
        netns,
        &[
            "ip",
            "-6",
            "route",
            "add",
            &format!("fd00:{subnet:x}::/64"),
            "via",
            "fe80::1",
            "dev",
            "eth0",
        ],
    )?;
    Ok(())
}

/// Moves the calling thread into a named network namespace.
pub fn enter_netns(name: &str) -> std::io::Result<()> {
    netpol_trace::netns::enter(&PathBuf::from("/run/netns").join(name))
        .map_err(std::io::Error::other)
}

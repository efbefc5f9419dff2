//! Benchmark of the agent at steady state (not a test; prints numbers). Needs root; runs
//! only between namespaces it creates and on loopback. Run with `scripts/bench-agent.sh`.
//!
//! A node namespace with 100 pods (veths, /32 routes), a fake API server holding their 10
//! namespaces, the 100 pods, 10 NetworkPolicies and a Service, nftables dropping TCP/3306 to a
//! tenth of the pods (the CNI's enforcement), and a light load: 10 connection attempts per
//! second from random pods to random listeners, a tenth of them dropped. The agent runs as a
//! subprocess (the release binary); its CPU time and memory are sampled from /proc every
//! second over the measurement window, after a warm-up.

use std::{
    net::{Ipv4Addr, SocketAddr},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use fake_apiserver::FakeApiServer;
use netpol_trace_integration::{Topology, require_root};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PODS: usize = 100;
const NAMESPACES: usize = 10;
const PORT: u16 = 3306;
const WARMUP: Duration = Duration::from_secs(5);
const WINDOW: Duration = Duration::from_secs(30);
const ATTEMPTS_PER_SEC: u64 = 10;

fn usage(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())?;
    Some((cpu / ticks, rss_kb * 1024))
}

async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await?;
    Ok(buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

fn seed(fake: &FakeApiServer, topo: &Topology) {
    for n in 0..NAMESPACES {
        fake.insert(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("ns-{n}")}}));
        // Per namespace: the database pods accept 3306 from the app pods of the namespace.
        fake.insert(json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "db-ingress", "namespace": format!("ns-{n}")},
            "spec": {"podSelector": {"matchLabels": {"role": "db"}}, "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "app"}}}],
                                  "ports": [{"port": 3307}]}]}}));
    }
    for (i, pod) in topo.pods.iter().enumerate() {
        let role = if i % 10 == 0 { "db" } else { "app" };
        fake.insert(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("pod-{i}"), "namespace": format!("ns-{}", (i / 10) % NAMESPACES),
                         "labels": {"role": role, "app": format!("w{}", i % 7)}, "uid": format!("uid-{i}")},
            "spec": {"nodeName": "bench", "containers": [{"name": "c", "image": "i",
                     "ports": [{"name": "mysql", "containerPort": PORT}]}]},
            "status": {"phase": "Running", "podIP": pod.ip.to_string()}}));
    }
    fake.insert(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "mysql", "namespace": "ns-0"},
        "spec": {"selector": {"role": "db"}, "clusterIP": "10.96.0.10", "ports": [{"port": PORT}]}}));
}

fn main() -> anyhow::Result<()> {
    require_root();
    let agent_bin =
        std::env::current_exe()?.parent().context("binary folder")?.join("netpol-trace-under-test");
    if !agent_bin.exists() {
        bail!(
            "{} is missing: build with `cargo build --release -p netpol-trace-integration --bins`",
            agent_bin.display()
        );
    }
    let started = Instant::now();
    let mut topo = Topology::new(PODS)?;
    for i in 0..PODS {
        topo.listen(i, PORT)?;
    }
    // The CNI: 3306 to the "db" pods (every tenth) is dropped.
    for i in (0..PODS).step_by(10) {
        let ip = topo.pods[i].ip.to_string();
        topo.nft_forward_drop("inet", "npbench", &["ip", "daddr", &ip, "tcp", "dport", "3306"])?;
    }
    eprintln!("topology of {PODS} pods in {:.1}s", started.elapsed().as_secs_f64());

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let fake = rt.block_on(FakeApiServer::start());
    seed(&fake, &topo);
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    let ready = dir.path().join("ready");
    fake.write_kubeconfig(&kubeconfig)?;

    let mut child = Command::new(&agent_bin)
        .args(["agent", "--netns", &topo.node, "--listen", "127.0.0.1:0", "--node-name", "bench"])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--ready-file")
        .arg(&ready)
        .stdout(Stdio::null())
        .spawn()?;
    let pid = child.id();
    let result = (|| -> anyhow::Result<()> {
        let t0 = Instant::now();
        while !ready.exists() {
            if t0.elapsed() > Duration::from_secs(60) {
                bail!("the agent was not ready within 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let ready_after = t0.elapsed();
        let addr: SocketAddr = std::fs::read_to_string(&ready)?.trim().parse()?;

        let stop = Arc::new(AtomicBool::new(false));
        let attempts = Arc::new(AtomicU64::new(0));
        let load = {
            let stop = stop.clone();
            let attempts = attempts.clone();
            let pods: Vec<(String, Ipv4Addr)> =
                topo.pods.iter().map(|p| (p.netns.clone(), p.ip)).collect();
            std::thread::spawn(move || {
                let mut seq = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    // A small LCG: deterministic spread of sources and destinations.
                    seq = seq.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let from = (seq >> 33) as usize % pods.len();
                    let to = (seq >> 13) as usize % pods.len();
                    let (netns, _) = pods[from].clone();
                    let dst = pods[to].1;
                    std::thread::spawn(move || {
                        if netpol_trace_integration::enter_netns(&netns).is_ok() {
                            let _ = std::net::TcpStream::connect_timeout(
                                &SocketAddr::from((dst, PORT)),
                                Duration::from_millis(300),
                            );
                        }
                    });
                    attempts.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(1000 / ATTEMPTS_PER_SEC));
                }
            })
        };
        std::thread::sleep(WARMUP);
        let (cpu0, _) = usage(pid).context("agent gone")?;
        let a0 = attempts.load(Ordering::Relaxed);
        let t_start = Instant::now();
        let mut rss = vec![];
        while t_start.elapsed() < WINDOW {
            std::thread::sleep(Duration::from_secs(1));
            rss.push(usage(pid).context("agent gone")?.1);
        }
        let (cpu1, _) = usage(pid).context("agent gone")?;
        let secs = t_start.elapsed().as_secs_f64();
        let made = attempts.load(Ordering::Relaxed) - a0;
        stop.store(true, Ordering::SeqCst);
        let _ = load.join();
        let metrics = rt.block_on(get(addr, "/metrics"))?;
        let drops_json = rt.block_on(get(addr, "/drops"))?;
        let flows: Vec<serde_json::Value> = serde_json::from_str(&drops_json)?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let hwm =
            status.lines().find(|l| l.starts_with("VmHWM:")).unwrap_or("VmHWM: ?").to_string();
        let avg_rss = rss.iter().sum::<u64>() as f64 / rss.len() as f64;
        let max_rss = rss.iter().copied().max().unwrap_or(0);
        println!(
            "agent benchmark: {PODS} pods, {NAMESPACES} namespaces, {} policies, 1 Service",
            NAMESPACES
        );
        println!("  ready after start:         {:.2} s", ready_after.as_secs_f64());
        println!(
            "  load:                      {made} connection attempts in {secs:.1} s ({:.1}/s)",
            made as f64 / secs
        );
        println!(
            "  CPU (user+sys):            {:.2}% of one core ({:.2} s over {secs:.1} s)",
            100.0 * (cpu1 - cpu0) / secs,
            cpu1 - cpu0
        );
        println!(
            "  RSS:                       avg {:.1} MiB, max {:.1} MiB ({})",
            avg_rss / 1048576.0,
            max_rss as f64 / 1048576.0,
            hwm.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        println!(
            "  flows in /drops:           {} ({} dropping)",
            flows.len(),
            flows.iter().filter(|f| f["state"] == "dropping").count()
        );
        for line in metrics.lines().filter(|l| {
            !l.starts_with('#')
                && (l.starts_with("netpol_trace_drops_total")
                    || l.starts_with("netpol_trace_attached_interfaces")
                    || l.starts_with("netpol_trace_events_lost_total")
                    || l.starts_with("netpol_trace_policy_evaluation_seconds_sum")
                    || l.starts_with("netpol_trace_policy_evaluation_seconds_count")
                    || l.starts_with("netpol_trace_k8s_events_total"))
        }) {
            println!("  {line}");
        }
        Ok(())
    })();
    // SAFETY: signalling our own child by PID.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let status = child.wait()?;
    if result.is_ok() && !status.success() {
        bail!("the agent exited with {status}");
    }
    drop(fake);
    drop(topo);
    result
}

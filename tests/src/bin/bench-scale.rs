//! Benchmark of the agent at cluster scale (not a test; prints numbers). Needs root; sends
//! packets only between namespaces it creates. Run with `scripts/bench-scale.sh`.
//!
//! A fake API server holds 1,000 namespaces of 100 pods, 10 NetworkPolicies per namespace plus
//! one deny-all, and 20 Services per namespace each with an EndpointSlice. A node namespace has
//! a few pod veths (pods of the fixture) and a dummy route to the fixture's pod range, where
//! nftables drops TCP to ports 3306 and 5432 (the CNI's enforcement). Each agent binary given
//! runs as a subprocess (runs interleaved, A B A B ...): time to ready, RSS after sync, then a
//! storm of SYNs from the node's pods to distinct fixture pods on both ports, CPU during the
//! storm and in the 30 s after it, per-flow attribution latency from the agent's histogram, and
//! the peak RSS. With `--churn N` the cluster churns in the window after the storm: N pods
//! created and N deleted every second.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::Parser;
use fake_apiserver::FakeApiServer;
use netpol_trace_integration::{Topology, require_root};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The ports the storm's SYNs go to, both dropped.
const PORTS: [u16; 2] = [3306, 5432];
/// The token the agent runs with and the benchmark scrapes `/metrics` with (the fake API
/// server's cluster admin, so TokenReview and SubjectAccessReview allow it).
const TOKEN: &str = "bench-scale-admin";
/// Labels of the fixture's workloads (`app-0` .. `app-9`).
const APPS: usize = 10;

#[derive(Parser)]
#[command(about = "netpol-trace agent at cluster scale: memory, readiness, per-flow latency, CPU")]
struct Args {
    /// Agent binaries to compare (runs alternate); default: the build's netpol-trace-under-test.
    #[arg(long = "agent")]
    agents: Vec<PathBuf>,
    /// Runs per agent.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Namespaces in the fixture.
    #[arg(long, default_value_t = 1000)]
    namespaces: usize,
    /// Pods per namespace.
    #[arg(long, default_value_t = 100)]
    pods_per_namespace: usize,
    /// Services (each with an EndpointSlice) per namespace.
    #[arg(long, default_value_t = 20)]
    services_per_namespace: usize,
    /// SYNs of the storm, to distinct destinations (half on each port).
    #[arg(long, default_value_t = 20_000)]
    syns: usize,
    /// Pod veths in the node namespace (sources of the storm).
    #[arg(long, default_value_t = 4)]
    node_pods: usize,
    /// Seconds measured after the storm.
    #[arg(long, default_value_t = 30)]
    after: u64,
    /// Pods created (and as many deleted) per second in the window after the storm, in a
    /// namespace of the fixture whose policies select them: a churning cluster.
    #[arg(long, default_value_t = 0)]
    churn: usize,
}

/// Creates `per_second` pods in `ns-1` every second for `seconds`, deleting the ones of the
/// second before; removes what is left at the end.
fn churn(fake: &FakeApiServer, per_second: usize, seconds: u64) {
    let name = |round: u64, i: usize| format!("churn-{round}-{i}");
    let started = Instant::now();
    for round in 0..seconds {
        for i in 0..per_second {
            let ip = Ipv4Addr::from(0x0a40_0000 | ((round as u32 & 0xff) << 12) | i as u32);
            fake.insert(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name(round, i), "namespace": "ns-1",
                    "uid": format!("churn-{round}-{i}"),
                    "labels": {"app": format!("app-{}", i % APPS), "tier": "backend"}},
                "spec": {"nodeName": "other", "containers": [{"name": "c", "image": "registry.example/app:1.2.3"}]},
                "status": {"phase": "Running", "podIP": ip.to_string(), "podIPs": [{"ip": ip.to_string()}]}}));
            if round > 0 {
                fake.remove("pods", "ns-1", &name(round - 1, i));
            }
        }
        let next = Duration::from_secs(round + 1);
        std::thread::sleep(next.saturating_sub(started.elapsed()));
    }
    if seconds > 0 {
        for i in 0..per_second {
            fake.remove("pods", "ns-1", &name(seconds - 1, i));
        }
    }
}

/// The fixture's address of pod `p` of namespace `n`: 10.0.0.0/14.
fn pod_ip(n: usize, p: usize) -> Ipv4Addr {
    let i = (n * 256 + p) as u32;
    Ipv4Addr::from(0x0a00_0000 | i)
}

fn seed(fake: &FakeApiServer, args: &Args, topo: &Topology) {
    for n in 0..args.namespaces {
        let ns = format!("ns-{n}");
        fake.insert(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns,
            "labels": {"team": format!("t{}", n % 50)}}}));
        for p in 0..args.pods_per_namespace {
            // The node's own pods are the first ones of ns-0, at the topology's addresses.
            let ip = match topo.pods.get(p).filter(|_| n == 0) {
                Some(pod) => pod.ip,
                None => pod_ip(n, p),
            };
            fake.insert(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("pod-{p}"), "namespace": ns,
                    "uid": format!("uid-{n}-{p}"),
                    "labels": {"app": format!("app-{}", p % APPS), "tier": "backend",
                               "pod-template-hash": format!("h{}", p % 3)},
                    "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "x".repeat(400)},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                        "name": format!("app-{}-h{}", p % APPS, p % 3), "uid": format!("rs-{n}-{}", p % APPS),
                        "controller": true}]},
                "spec": {"nodeName": if n == 0 && p < topo.pods.len() { "bench" } else { "other" },
                    "containers": [{"name": "c", "image": "registry.example/app:1.2.3",
                        "env": [{"name": "MODE", "value": "production"}],
                        "ports": [{"name": "http", "containerPort": 8080},
                                  {"name": "mysql", "containerPort": 3306}]}]},
                "status": {"phase": "Running", "podIP": ip.to_string(),
                           "podIPs": [{"ip": ip.to_string()}]}}));
        }
        for np in 0..APPS {
            fake.insert(json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": format!("np-{np}"), "namespace": ns},
                "spec": {"podSelector": {"matchLabels": {"app": format!("app-{np}")}},
                    "policyTypes": ["Ingress"],
                    "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "frontend"}}},
                                          {"namespaceSelector": {"matchLabels": {"team": "t0"}}}],
                                 "ports": [{"port": "http"}, {"port": 9090}]}]}}));
        }
        for s in 0..args.services_per_namespace {
            let app = s % APPS;
            let name = format!("svc-{s}");
            let ip = Ipv4Addr::from(0x0a60_0000 | (n * 64 + s) as u32);
            fake.insert(json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"selector": {"app": format!("app-{app}")}, "clusterIP": ip.to_string(),
                         "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}));
            let endpoints: Vec<_> = (app..args.pods_per_namespace)
                .step_by(APPS)
                .map(|p| {
                    json!({"addresses": [pod_ip(n, p).to_string()],
                    "conditions": {"ready": true},
                    "targetRef": {"kind": "Pod", "namespace": ns, "name": format!("pod-{p}")}})
                })
                .collect();
            fake.insert(json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": format!("{name}-abcde"), "namespace": ns,
                             "labels": {"kubernetes.io/service-name": name}},
                "addressType": "IPv4", "endpoints": endpoints,
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}));
        }
    }
    fake.insert(json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "deny-all", "namespace": format!("ns-{}", args.namespaces - 1)},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}));
}

/// CPU seconds (user + system) and RSS bytes of `pid`.
fn usage(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some((cpu / ticks, status_kb(pid, "VmRSS:")? * 1024))
}

fn status_kb(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await?;
    Ok(buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

/// A histogram of the exposition: (upper bound, cumulative count), and its count.
fn histogram(metrics: &str, name: &str) -> Option<(Vec<(f64, f64)>, f64)> {
    let mut buckets = vec![];
    let mut count = None;
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ')?;
        let value: f64 = value.parse().ok()?;
        if let Some(rest) = series.strip_prefix(&format!("{name}_bucket{{le=\"")) {
            let bound = rest.trim_end_matches("\"}");
            buckets
                .push((if bound == "+Inf" { f64::INFINITY } else { bound.parse().ok()? }, value));
        } else if series == format!("{name}_count") {
            count = Some(value);
        }
    }
    Some((buckets, count?))
}

/// The `q` quantile, interpolated linearly within its bucket (Prometheus' way).
fn quantile(buckets: &[(f64, f64)], count: f64, q: f64) -> f64 {
    let rank = q * count;
    let mut prev = (0.0, 0.0);
    for &(bound, n) in buckets {
        if n >= rank {
            if bound.is_infinite() {
                return prev.0;
            }
            let width = n - prev.1;
            return prev.0
                + (bound - prev.0) * if width > 0.0 { (rank - prev.1) / width } else { 1.0 };
        }
        prev = (bound, n);
    }
    prev.0
}

/// One SYN per destination from pod `netns`: non-blocking connects, closed right away.
fn storm(netns: &str, destinations: &[(Ipv4Addr, u16)]) -> anyhow::Result<usize> {
    netpol_trace_integration::enter_netns(netns)?;
    let mut sent = 0;
    for &(ip, port) in destinations {
        // SAFETY: plain socket calls on a descriptor this function owns and closes.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0);
            if fd < 0 {
                bail!("socket: {}", std::io::Error::last_os_error());
            }
            let addr = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: port.to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from(ip).to_be() },
                sin_zero: [0; 8],
            };
            let rc = libc::connect(
                fd,
                std::ptr::addr_of!(addr).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            );
            if rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EINPROGRESS)
            {
                sent += 1;
            }
            libc::close(fd);
        }
    }
    Ok(sent)
}

/// What one run measured.
#[derive(Debug, Default, Clone)]
struct Run {
    ready_s: f64,
    rss_synced_mib: f64,
    storm_s: f64,
    storm_cpu: f64,
    after_cpu: f64,
    p50_ms: f64,
    p99_ms: f64,
    handled: f64,
    peak_mib: f64,
    rss_end_mib: f64,
    flows: String,
}

fn run_once(
    rt: &tokio::runtime::Runtime,
    fake: &FakeApiServer,
    agent: &PathBuf,
    topo: &Topology,
    kubeconfig: &std::path::Path,
    args: &Args,
) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    let ready = dir.path().join("ready");
    let t0 = Instant::now();
    let mut child = Command::new(agent)
        .args(["agent", "--netns", &topo.node, "--listen", "127.0.0.1:0", "--node-name", "bench"])
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--ready-file")
        .arg(&ready)
        .stdout(Stdio::null())
        .env("RUST_LOG", "warn")
        .spawn()
        .with_context(|| format!("starting {}", agent.display()))?;
    let pid = child.id();
    let result = (|| -> anyhow::Result<Run> {
        let mut run = Run::default();
        while !ready.exists() {
            if t0.elapsed() > Duration::from_secs(600) {
                bail!("the agent was not ready within 600 s");
            }
            if let Ok(Some(status)) = child.try_wait() {
                bail!("the agent exited with {status} before it was ready");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        run.ready_s = t0.elapsed().as_secs_f64();
        let addr: SocketAddr = std::fs::read_to_string(&ready)?.trim().parse()?;
        std::thread::sleep(Duration::from_secs(3));
        run.rss_synced_mib = usage(pid).context("agent gone")?.1 as f64 / 1048576.0;

        // Distinct destinations: fixture pods (not on this node), both ports, spread over
        // the node's pods as sources.
        let per_port = args.syns / PORTS.len();
        let total = args.namespaces * args.pods_per_namespace;
        let destinations: Vec<(Ipv4Addr, u16)> = (0..per_port)
            .flat_map(|i| {
                let k = (i * 7919) % total;
                let (n, p) = (k / args.pods_per_namespace, k % args.pods_per_namespace);
                PORTS.map(|port| (pod_ip(n.max(1), p), port))
            })
            .collect();
        let (cpu0, _) = usage(pid).context("agent gone")?;
        let started = Instant::now();
        let chunk = destinations.len().div_ceil(topo.pods.len());
        let sent: usize = std::thread::scope(|s| {
            let handles: Vec<_> = topo
                .pods
                .iter()
                .zip(destinations.chunks(chunk))
                .map(|(pod, d)| s.spawn(move || storm(&pod.netns, d)))
                .collect();
            handles.into_iter().map(|h| h.join().expect("storm thread").unwrap_or(0)).sum()
        });
        // The storm window: the SYNs plus 5 s for the agent to take them in.
        std::thread::sleep(Duration::from_secs(5));
        run.storm_s = started.elapsed().as_secs_f64();
        let (cpu1, _) = usage(pid).context("agent died during the storm")?;
        run.storm_cpu = 100.0 * (cpu1 - cpu0) / run.storm_s;
        let after = Instant::now();
        if args.churn > 0 {
            churn(fake, args.churn, args.after);
        } else {
            std::thread::sleep(Duration::from_secs(args.after));
        }
        let (cpu2, rss) = usage(pid).context("agent died after the storm")?;
        run.after_cpu = 100.0 * (cpu2 - cpu1) / after.elapsed().as_secs_f64();
        run.rss_end_mib = rss as f64 / 1048576.0;
        run.peak_mib = status_kb(pid, "VmHWM:").unwrap_or(0) as f64 / 1024.0;
        let metrics = rt.block_on(get(addr, "/metrics"))?;
        let hist = histogram(&metrics, "netpol_trace_attribution_seconds")
            .filter(|(_, n)| *n > 0.0)
            .or_else(|| histogram(&metrics, "netpol_trace_policy_evaluation_seconds"));
        if let Some((buckets, count)) = hist {
            run.p50_ms = 1000.0 * quantile(&buckets, count, 0.5);
            run.p99_ms = 1000.0 * quantile(&buckets, count, 0.99);
            run.handled = count;
        }
        run.flows = metrics
            .lines()
            .filter(|l| {
                l.starts_with("netpol_trace_flows_dropping ")
                    || l.starts_with("netpol_trace_flow_map")
            })
            .collect::<Vec<_>>()
            .join("; ");
        eprintln!("  {sent} SYNs sent in {:.2} s", run.storm_s - 5.0);
        Ok(run)
    })();
    // SAFETY: signalling our own child by PID.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let waited = Instant::now();
    while child.try_wait()?.is_none() {
        if waited.elapsed() > Duration::from_secs(20) {
            // SAFETY: our own child, by PID.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    result
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}

fn main() -> anyhow::Result<()> {
    require_root();
    let mut args = Args::parse();
    if args.agents.is_empty() {
        let exe = std::env::current_exe()?;
        args.agents.push(exe.parent().context("binary folder")?.join("netpol-trace-under-test"));
    }
    for a in &args.agents {
        if !a.exists() {
            bail!(
                "{} is missing: build with `cargo build --release -p netpol-trace-integration --bins`",
                a.display()
            );
        }
    }
    let topo = Topology::new(args.node_pods)?;
    // The fixture's pod range is routed to a veth pair inside the node namespace (it goes
    // nowhere else); nftables drops TCP to the two ports before it gets there.
    let (sink, peer) = (format!("{}s", topo.prefix), format!("{}t", topo.prefix));
    topo.node_exec(&["ip", "link", "add", &sink, "type", "veth", "peer", "name", &peer])?;
    topo.node_exec(&["ip", "link", "set", &sink, "up"])?;
    topo.node_exec(&["ip", "link", "set", &peer, "up"])?;
    topo.node_exec(&["ip", "route", "add", "10.0.0.0/14", "dev", &sink])?;
    topo.nft_forward_drop("inet", "npscale", &["tcp", "dport", "{ 3306, 5432 }"])?;

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let fake = rt.block_on(FakeApiServer::builder().admin_token(TOKEN).start());
    let started = Instant::now();
    seed(&fake, &args, &topo);
    let pods = args.namespaces * args.pods_per_namespace;
    eprintln!(
        "fixture: {pods} pods, {} namespaces, {} NetworkPolicies, {} Services with EndpointSlices ({:.1} s)",
        args.namespaces,
        args.namespaces * APPS + 1,
        args.namespaces * args.services_per_namespace,
        started.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    fake.write_kubeconfig_with_token(&kubeconfig, TOKEN)?;

    let mut results: Vec<Vec<Run>> = vec![vec![]; args.agents.len()];
    for r in 0..args.runs {
        for (i, agent) in args.agents.iter().enumerate() {
            eprintln!("run {} of {} ...", r + 1, agent.display());
            let run = run_once(&rt, &fake, agent, &topo, &kubeconfig, &args)?;
            eprintln!("  {run:?}");
            results[i].push(run);
        }
    }
    println!(
        "agent at scale: {pods} pods, {} namespaces, {} policies, {} Services; {} SYNs to distinct dropped destinations; medians of {} run(s)",
        args.namespaces,
        args.namespaces * APPS + 1,
        args.namespaces * args.services_per_namespace,
        args.syns,
        args.runs
    );
    println!(
        "| agent | ready s | RSS synced MiB | peak MiB | RSS end MiB | attribution p50 ms | p99 ms | flows handled | storm CPU % | CPU {}s after %{} |",
        args.after,
        if args.churn > 0 {
            format!(" ({} pods created and deleted per s)", args.churn)
        } else {
            String::new()
        }
    );
    println!("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for (agent, runs) in args.agents.iter().zip(&results) {
        let m = |f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
        println!(
            "| {} | {:.1} | {:.0} | {:.0} | {:.0} | {:.3} | {:.3} | {:.0} | {:.1} | {:.1} |",
            agent.file_name().unwrap_or_default().to_string_lossy(),
            m(|r| r.ready_s),
            m(|r| r.rss_synced_mib),
            m(|r| r.peak_mib),
            m(|r| r.rss_end_mib),
            m(|r| r.p50_ms),
            m(|r| r.p99_ms),
            m(|r| r.handled),
            m(|r| r.storm_cpu),
            m(|r| r.after_cpu),
        );
        if let Some(last) = runs.last() {
            println!("|   | {} |", last.flows);
        }
    }
    drop(fake);
    drop(topo);
    Ok(())
}

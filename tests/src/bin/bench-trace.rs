//! Benchmark of the kernel programs (not a test; prints numbers). Needs root, iperf3 and
//! hping3; runs only between namespaces it creates. Run with `scripts/bench-trace.sh`.
//!
//! 1. Per-packet cost of the tc programs: kernel BPF run-time statistics (run_time_ns /
//!    run_cnt, enabled through a BPF_ENABLE_STATS descriptor for the run only).
//! 2. TCP throughput between two pods with and without `trace` attached, A/B interleaved,
//!    medians and their ratio.
//! 3. A SYN storm to a port dropped by nftables: packets per second, the tracer's CPU and
//!    memory, and drops lost (kernel nft counter vs. the tracer's count).
//! 4. Idle user-space CPU with a full flow map (16k flows): the incremental read (drain the
//!    changed-flows map, every 100 ms) against the full scan of earlier versions (every
//!    entry, two syscalls each, every 100 ms), A/B interleaved on the same map; then the
//!    whole tracer's idle CPU after the same fill (it prunes what it no longer needs).

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use netpol_trace::{
    datapath::{Datapath, DatapathOptions, netns},
    trace::{TraceEvent, Tracer, TracerMessage, TracerOptions, flows::monotonic_ns},
};
use netpol_trace_common::FLOWS_MAX_ENTRIES;
use netpol_trace_integration::{Topology, enter_netns, in_ns, require_root};

const ROUNDS: usize = 6;
const IPERF_SECS: u32 = 3;
const STORM_SECS: u64 = 5;
const IDLE_SLICE: Duration = Duration::from_secs(5);
const IDLE_ROUNDS: usize = 3;
const POLL: Duration = Duration::from_millis(100);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn tracer(topo: &Topology) -> anyhow::Result<Tracer> {
    let opts = TracerOptions { netns: Some(topo.node_path()), ..TracerOptions::default() };
    Ok(Tracer::start(opts)?.0)
}

fn iperf(topo: &Topology) -> anyhow::Result<f64> {
    let out = in_ns(
        &topo.pods[0].netns,
        &["iperf3", "-c", &topo.pods[1].ip.to_string(), "-t", &IPERF_SECS.to_string(), "-J"],
    )?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    v["end"]["sum_received"]["bits_per_second"].as_f64().context("iperf3 JSON")
}

/// (user+system CPU seconds, RSS bytes) of this process.
fn self_usage() -> (f64, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = 100.0;
    let cpu = fields.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    let rss_pages: u64 = fields.get(21).and_then(|r| r.parse().ok()).unwrap_or(0);
    (cpu / ticks, rss_pages * 4096)
}

fn prog_stats() -> Vec<(String, u64, u64)> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter_map(|p| {
            let name = p.name_as_str()?.to_string();
            name.starts_with("tc_").then(|| (name, p.run_time().as_nanos() as u64, p.run_count()))
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    require_root();
    for tool in ["iperf3", "hping3"] {
        if Command::new(tool).arg("--version").output().is_err() {
            bail!("{tool} is not installed (scripts/bench-trace.sh installs it)");
        }
    }
    let topo = Topology::new(2)?;
    let server = Command::new("ip")
        .args([
            "netns",
            "exec",
            &topo.pods[1].netns,
            "iperf3",
            "-s",
            "-B",
            &topo.pods[1].ip.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let _server = KillOnDrop(server);
    std::thread::sleep(Duration::from_millis(300));

    // 2: throughput A/B interleaved (ABBA order, so drifts of a noisy machine cancel out);
    // BPF run-time statistics stay off here, they cost time of their own.
    let (mut base, mut traced) = (vec![], vec![]);
    for round in 0..ROUNDS {
        for with_trace in if round % 2 == 0 { [false, true] } else { [true, false] } {
            if with_trace {
                let t = tracer(&topo)?;
                traced.push(iperf(&topo)?);
                drop(t);
            } else {
                base.push(iperf(&topo)?);
            }
        }
    }
    let (b, t) = (median(base), median(traced));
    println!(
        "throughput without trace: median {:.2} Gbit/s over {ROUNDS} runs of {IPERF_SECS}s",
        b / 1e9
    );
    println!("throughput with trace:    median {:.2} Gbit/s", t / 1e9);
    println!("throughput ratio (with/without): {:.4} ({:+.2}%)", t / b, (t / b - 1.0) * 100.0);

    // 1: per-packet cost while attached, from the kernel's run-time statistics. With
    // BENCH_BEFORE_OBJECT=PATH (an eBPF object built from an earlier version), its tc
    // programs are measured too, interleaved with this build's.
    let before_object = std::env::var_os(BEFORE_OBJECT).map(std::path::PathBuf::from);
    let stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).context("BPF_ENABLE_STATS")?;
    let (mut now_cost, mut before_cost) = (vec![], vec![]);
    for round in 0..if before_object.is_some() { 6 } else { 3 } {
        let old_side = round % 2 == 1 && before_object.is_some();
        let guard: Box<dyn std::any::Any> = match (&before_object, old_side) {
            (Some(path), true) => Box::new(attach_object(&topo, path)?),
            _ => Box::new(tracer(&topo)?),
        };
        let before = prog_stats();
        iperf(&topo)?;
        let after = prog_stats();
        drop(guard);
        let (ns, cnt) = after.iter().fold((0, 0), |(ns, cnt), (name, t1, c1)| {
            let (t0, c0) = before.iter().find(|b| &b.0 == name).map_or((0, 0), |b| (b.1, b.2));
            (ns + t1.saturating_sub(t0), cnt + c1.saturating_sub(c0))
        });
        if cnt > 0 {
            if old_side { &mut before_cost } else { &mut now_cost }.push(ns as f64 / cnt as f64);
        }
    }
    drop(stats);
    println!(
        "tc program cost: median {:.1} ns per packet (run_time_ns / run_cnt, {} runs)",
        median(now_cost.clone()),
        now_cost.len()
    );
    if !before_cost.is_empty() {
        println!(
            "tc program cost of {}: median {:.1} ns per packet ({} runs, interleaved); ratio now/before {:.2}",
            before_object.unwrap_or_default().display(),
            median(before_cost.clone()),
            before_cost.len(),
            median(now_cost) / median(before_cost)
        );
    }

    // 3: SYN storm to a dropped port.
    topo.nft_forward_drop("inet", "npbench", &["tcp", "dport", "3306", "counter"])?;
    let (t, mut rx) =
        Tracer::start(TracerOptions { netns: Some(topo.node_path()), ..TracerOptions::default() })?;
    let (cpu0, _) = self_usage();
    let start = Instant::now();
    let storm = Command::new("ip")
        .args(["netns", "exec", &topo.pods[0].netns, "timeout", &STORM_SECS.to_string()])
        .args(["hping3", "--syn", "--flood", "-q", "-p", "3306", &topo.pods[1].ip.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    let elapsed = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(500));
    let (cpu1, rss) = self_usage();
    let summary = t.stop();
    let mut traced_drops = 0;
    while let Ok(msg) = rx.try_recv() {
        if let TracerMessage::Event(TraceEvent::Drop(d)) = msg {
            traced_drops = traced_drops.max(d.count);
        }
    }
    let counter = topo.node_exec(&["nft", "-j", "list", "table", "inet", "npbench"])?;
    let v: serde_json::Value = serde_json::from_str(&counter)?;
    let nft_drops = v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["rule"]["expr"].as_array())
        .flatten()
        .find_map(|e| e["counter"]["packets"].as_u64())
        .unwrap_or(0);
    println!(
        "SYN storm (hping3 --flood, {STORM_SECS}s, exit {storm}): {nft_drops} SYNs dropped by nftables = {:.0} per second",
        nft_drops as f64 / elapsed
    );
    println!(
        "tracer counted {traced_drops} dropped SYNs (flow-aggregated in the kernel); lost vs nft counter: {}",
        nft_drops.saturating_sub(traced_drops)
    );
    println!(
        "tracer: ring-buffer events lost {}, flows full {}, matched {}",
        summary.events_lost, summary.flows_full, summary.matched
    );
    println!(
        "tracer process CPU during the storm: {:.1}% of one core; RSS {:.1} MiB",
        (cpu1 - cpu0) / elapsed * 100.0,
        rss as f64 / 1048576.0
    );
    drop(_server);
    topo.node_exec(&["nft", "delete", "table", "inet", "npbench"])?;
    idle_full_map(&topo)
}

/// Environment variable naming an earlier version's eBPF object to compare the tc cost with.
const BEFORE_OBJECT: &str = "BENCH_BEFORE_OBJECT";

/// Loads the object at `path` and attaches its two tc programs (tcx) to every pod veth of
/// the node namespace; dropping the result detaches them.
fn attach_object(topo: &Topology, path: &std::path::Path) -> anyhow::Result<aya::Ebpf> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let node = topo.node_path();
    let ifaces: Vec<String> = topo.pods.iter().map(|p| p.host_if.clone()).collect();
    std::thread::spawn(move || -> anyhow::Result<aya::Ebpf> {
        netns::enter(&node)?;
        let mut ebpf = aya::EbpfLoader::new().load(&bytes)?;
        for (name, side) in [
            ("tc_from_pod", aya::programs::TcAttachType::Ingress),
            ("tc_to_pod", aya::programs::TcAttachType::Egress),
        ] {
            let prog: &mut aya::programs::SchedClassifier =
                ebpf.program_mut(name).context("program")?.try_into()?;
            prog.load()?;
            for iface in &ifaces {
                prog.attach(iface, side)?;
            }
        }
        Ok(ebpf)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("attach thread panicked"))?
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid timespec pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// One SYN from pod 0 to each closed port in `ports` of pod 1: one kernel flow each.
fn fill_flows(topo: &Topology, ports: std::ops::Range<u16>) {
    let (netns, dst) = (topo.pods[0].netns.clone(), topo.pods[1].ip);
    std::thread::spawn(move || {
        enter_netns(&netns).unwrap();
        for port in ports {
            let addr = std::net::SocketAddr::from((dst, port));
            let _ = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200));
        }
    })
    .join()
    .unwrap();
}

/// 4: the idle read cost with a full map, new (incremental) vs old (full scan), interleaved.
fn idle_full_map(topo: &Topology) -> anyhow::Result<()> {
    let node = topo.node_path();
    let iface = topo.pods[0].host_if.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let reader = std::thread::spawn(move || -> anyhow::Result<(Vec<f64>, Vec<f64>, u64)> {
        netns::enter(&node)?;
        let opts =
            DatapathOptions { ports: vec![], all_ports: true, netns_inum: netns::current_inode()? };
        let mut dp = Datapath::load(&opts)?;
        dp.attach(&iface)?;
        ready_tx.send(())?;
        go_rx.recv()?;
        let _ = dp.flow_map().poll(monotonic_ns());
        std::thread::sleep(Duration::from_millis(500));
        let _ = dp.flow_map().poll(monotonic_ns());
        let entries = dp.counters().flow_map.entries;
        let (mut new, mut old) = (vec![], vec![]);
        for round in 0..IDLE_ROUNDS * 2 {
            let full_scan = round % 2 == 1;
            let (start, cpu0) = (Instant::now(), thread_cpu());
            while start.elapsed() < IDLE_SLICE {
                std::thread::sleep(POLL);
                let reads = if full_scan {
                    dp.flow_map().rescan(monotonic_ns())
                } else {
                    dp.flow_map().poll(monotonic_ns())
                };
                std::hint::black_box(reads);
            }
            let pct = (thread_cpu() - cpu0).as_secs_f64() / start.elapsed().as_secs_f64() * 100.0;
            if full_scan { old.push(pct) } else { new.push(pct) }
        }
        Ok((new, old, entries))
    });
    ready_rx.recv()?;
    fill_flows(topo, 1..(FLOWS_MAX_ENTRIES as u16 + 100));
    go_tx.send(())?;
    let (new, old, entries) = reader.join().map_err(|_| anyhow::anyhow!("reader panicked"))??;
    let (n, o) = (median(new), median(old));
    println!(
        "idle read cost, {entries} flows in the map ({IDLE_ROUNDS}x{}s each, interleaved): incremental median {n:.3}% of one core; full scan every 100 ms (earlier versions) median {o:.2}%; ratio {:.0}x",
        IDLE_SLICE.as_secs(),
        o / n.max(1e-6)
    );

    // The whole tracer after the same fill: idle CPU over 30 s, and the map it leaves.
    let opts = TracerOptions {
        netns: Some(topo.node_path()),
        all_ports: true,
        capture_packets: false,
        ..TracerOptions::default()
    };
    let (t, mut rx) = Tracer::start(opts)?;
    fill_flows(topo, 1..(FLOWS_MAX_ENTRIES as u16 + 100));
    std::thread::sleep(Duration::from_secs(1));
    let (cpu0, _) = self_usage();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(30));
    let (cpu1, rss) = self_usage();
    let elapsed = start.elapsed().as_secs_f64();
    let mut last = None;
    while let Ok(msg) = rx.try_recv() {
        if let TracerMessage::Counters(c) = msg {
            last = Some(c.flow_map);
        }
    }
    drop(t);
    println!(
        "tracer idle 30 s after filling the map: {:.2}% of one core, RSS {:.1} MiB; flow map then {:?}",
        (cpu1 - cpu0) / elapsed * 100.0,
        rss as f64 / 1048576.0,
        last
    );
    Ok(())
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

//! `trace` against real kernel drops: setup → traffic → expectation, in throwaway network
//! namespaces. Each test builds its own topology, so they may run in parallel; the drop
//! program only counts drops of its own node namespace.

use std::{
    net::Ipv4Addr,
    process::Command,
    time::{Duration, Instant},
};

use netpol_trace::{
    datapath::{Datapath, DatapathOptions, netns, programs::tcx_programs},
    trace::{TraceEvent, Tracer, TracerMessage, TracerOptions},
};
use netpol_trace_integration::{Topology, require_root, tc_drop::TcxDropper};
use tokio::sync::mpsc::UnboundedReceiver;

const PORT: u16 = 3306;
const SHORT: Duration = Duration::from_millis(700);

fn tracer(topo: &Topology) -> (Tracer, UnboundedReceiver<TracerMessage>) {
    let opts = TracerOptions {
        netns: Some(topo.node_path()),
        poll_interval: Duration::from_millis(50),
        ..TracerOptions::default()
    };
    Tracer::start(opts).expect("tracer starts")
}

/// Collects trace events until `done` says so or `timeout` passes.
fn collect(
    rx: &mut UnboundedReceiver<TracerMessage>,
    timeout: Duration,
    done: impl Fn(&[TraceEvent]) -> bool,
) -> Vec<TraceEvent> {
    let deadline = Instant::now() + timeout;
    let mut events = vec![];
    while Instant::now() < deadline && !done(&events) {
        match rx.try_recv() {
            Ok(TracerMessage::Event(ev)) => events.push(ev),
            Ok(_) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    events
}

fn drops(events: &[TraceEvent]) -> Vec<&netpol_trace::trace::DropRecord> {
    events
        .iter()
        .filter_map(|e| match e {
            TraceEvent::Drop(d) => Some(d),
            _ => None,
        })
        .collect()
}

fn has_restored(events: &[TraceEvent]) -> bool {
    events.iter().any(|e| matches!(e, TraceEvent::Restored(_)))
}

/// Drops TCP/3306 in the node's forward path with nftables, as a CNI rendering a policy does.
fn nft_drop_3306(topo: &Topology) {
    topo.nft_forward_drop("inet", "nptest", &["tcp", "dport", "3306"]).unwrap();
}

fn two_pods() -> (Topology, Ipv4Addr) {
    require_root();
    let mut topo = Topology::new(2).expect("topology");
    topo.listen(1, PORT).expect("listener");
    let dst = topo.pods[1].ip;
    assert!(topo.connect(0, dst, PORT, SHORT), "the lab must connect before any rule");
    (topo, dst)
}

/// Drives a blocked connection, checks the drop line, lifts the block, checks `restored`.
fn drop_then_restore(
    topo: &Topology,
    dst: Ipv4Addr,
    expect_reason: impl Fn(&str) -> bool,
    expect_ifname: &str,
    unblock: impl FnOnce(),
) {
    let (tracer, mut rx) = tracer(topo);
    assert!(tracer.interfaces.contains(&topo.pods[0].host_if), "{:?}", tracer.interfaces);
    assert!(!topo.connect(0, dst, PORT, Duration::from_millis(1500)), "the rule must block");
    let events = collect(&mut rx, Duration::from_secs(5), |ev| !drops(ev).is_empty());
    let d = drops(&events);
    assert!(!d.is_empty(), "no drop reported: {events:?}");
    let d = d[0];
    assert!(expect_reason(&d.reason), "reason {}", d.reason);
    assert_eq!(d.ifname, expect_ifname);
    assert_eq!(d.src.ip.to_string(), topo.pods[0].ip.to_string());
    assert_eq!(d.dst.ip.to_string(), dst.to_string());
    assert_eq!(d.dst.port, PORT);
    assert_eq!(d.protocol, netpol_trace::policy::Protocol::Tcp);
    assert!(d.count >= 1 && d.src.port > 1024);
    assert!(d.evidence.syn_left_source >= 1, "{:?}", d.evidence);

    unblock();
    assert!(topo.connect(0, dst, PORT, SHORT), "must connect once unblocked");
    let events = collect(&mut rx, Duration::from_secs(5), has_restored);
    assert!(has_restored(&events), "no restored line: {events:?}");
    let summary = tracer.stop();
    assert_eq!(summary.dropped_flows, 1);
    assert_eq!(summary.restored_flows, 1);
    assert_eq!(summary.events_lost, 0);
}

#[test]
fn smoke_embedded_object_attaches_and_detaches() {
    require_root();
    let topo = Topology::new(1).expect("topology");
    let node = topo.node_path();
    let iface = topo.pods[0].host_if.clone();
    std::thread::spawn(move || {
        netns::enter(&node).unwrap();
        let inum = netns::current_inode().unwrap();
        let mut dp = Datapath::load(&DatapathOptions {
            ports: vec![PORT],
            all_ports: false,
            netns_inum: inum,
        })
        .expect("the embedded object loads on this kernel");
        dp.attach(&iface).expect("attach");
        let shown = tcx_programs(&iface).unwrap();
        assert_eq!(shown, ["tcx/ingress:tc_from_pod", "tcx/egress:tc_to_pod"]);
        dp.detach(&iface);
        assert!(tcx_programs(&iface).unwrap().is_empty(), "still attached");
        dp.attach(&iface).unwrap();
        drop(dp);
        assert!(tcx_programs(&iface).unwrap().is_empty(), "dropping the datapath must detach");
    })
    .join()
    .expect("no panic in the netns thread");
    let prefix = topo.prefix.clone();
    drop(topo);
    assert!(Topology::leftovers(&prefix).is_empty());
}

#[test]
fn nftables_forward_drop_is_reported_then_restored() {
    let (topo, dst) = two_pods();
    nft_drop_3306(&topo);
    let src_if = topo.pods[0].host_if.clone();
    drop_then_restore(
        &topo,
        dst,
        |r| r == "NETFILTER_DROP",
        &src_if,
        || {
            topo.node_exec(&["nft", "delete", "table", "inet", "nptest"]).unwrap();
        },
    );
    let prefix = topo.prefix.clone();
    drop(topo);
    assert!(Topology::leftovers(&prefix).is_empty());
}

#[test]
fn iptables_forward_drop_is_reported_then_restored() {
    let (topo, dst) = two_pods();
    let rule = ["-p", "tcp", "--dport", "3306", "-j", "DROP"];
    let mut add = vec!["iptables", "-A", "FORWARD"];
    add.extend_from_slice(&rule);
    topo.node_exec(&add).unwrap();
    let src_if = topo.pods[0].host_if.clone();
    drop_then_restore(
        &topo,
        dst,
        |r| r == "NETFILTER_DROP",
        &src_if,
        || {
            let mut del = vec!["iptables", "-D", "FORWARD"];
            del.extend_from_slice(&rule);
            topo.node_exec(&del).unwrap();
        },
    );
}

#[test]
fn tc_drop_on_the_destination_veth_is_reported_then_restored() {
    let (topo, dst) = two_pods();
    let dst_if = topo.pods[1].host_if.clone();
    let node = topo.node_path();
    let iface = dst_if.clone();
    // As an eBPF dataplane drops: a tcx program returning TC_ACT_SHOT on the pod's veth.
    let dropper = std::thread::spawn(move || {
        netns::enter(&node).unwrap();
        let ifindex = netpol_trace::datapath::links::list()
            .unwrap()
            .into_iter()
            .find(|l| l.name == iface)
            .unwrap()
            .ifindex;
        TcxDropper::attach_egress(ifindex).expect("tcx dropper")
    })
    .join()
    .unwrap();
    let dropper = std::sync::Mutex::new(Some(dropper));
    drop_then_restore(
        &topo,
        dst,
        |r| r.starts_with("TC_"),
        &dst_if,
        || {
            dropper.lock().unwrap().take();
        },
    );
}

#[test]
fn allowed_traffic_produces_no_drop_lines() {
    let (topo, dst) = two_pods();
    let (tracer, mut rx) = tracer(&topo);
    for _ in 0..5 {
        assert!(topo.connect(0, dst, PORT, SHORT));
    }
    let events = collect(&mut rx, Duration::from_millis(800), |_| false);
    assert!(drops(&events).is_empty(), "{events:?}");
    let summary = tracer.stop();
    // 5 handshakes: SYN out of the client, into the server, SYN-ACK out and back.
    assert!(summary.matched >= 20, "{summary:?}");
    assert_eq!(summary.dropped_flows, 0);
}

#[test]
fn unwatched_ports_are_ignored() {
    require_root();
    let mut topo = Topology::new(2).unwrap();
    topo.listen(1, 8080).unwrap();
    let (tracer, _rx) = tracer(&topo);
    assert!(topo.connect(0, topo.pods[1].ip, 8080, SHORT));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(tracer.stop().matched, 0);
}

#[test]
fn the_cli_writes_ndjson_and_a_pcap_and_detaches_on_exit() {
    let (topo, dst) = two_pods();
    nft_drop_3306(&topo);
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let pcap = dir.path().join("drops.pcap");
    let manifests = dir.path().join("manifests.yaml");
    std::fs::write(
        &manifests,
        format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: web-1, namespace: app, labels: {{app: web}}}}
spec: {{containers: [{{name: web, image: web}}]}}
status: {{podIP: {src}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: mysql-0, namespace: db, labels: {{app: mysql}}}}
spec: {{containers: [{{name: db, image: mariadb, ports: [{{containerPort: 3306, name: mysql}}]}}]}}
status: {{podIP: {dst}}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: mysql-ingress, namespace: db}}
spec:
  podSelector: {{matchLabels: {{app: mysql}}}}
  ingress:
  - from: [{{namespaceSelector: {{}}, podSelector: {{matchLabels: {{app: web}}}}}}]
    ports: [{{port: 3307}}]
"#,
            src = topo.pods[0].ip,
            dst = dst
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_netpol-trace-under-test"))
        .args(["trace", "--netns", &topo.node, "-o", "json", "--duration", "4s", "--ready-file"])
        .arg(&ready)
        .arg("--pcap")
        .arg(&pcap)
        .arg("-f")
        .arg(&manifests)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready.exists() {
        assert!(Instant::now() < deadline, "no ready file");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!topo.connect(0, dst, PORT, Duration::from_millis(1200)));
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect();
    let drop = lines.iter().find(|l| l["type"] == "drop").expect("a drop line");
    assert_eq!(drop["reason"], "NETFILTER_DROP");
    assert_eq!(drop["dst"]["port"], 3306);
    assert_eq!(drop["src"]["ip"], topo.pods[0].ip.to_string());
    assert_eq!(drop["src"]["namespace"], "app");
    assert_eq!(drop["src"]["pod"], "web-1");
    assert_eq!(drop["dst"]["pod"], "mysql-0");
    assert_eq!(drop["policies"][0]["name"], "mysql-ingress");
    assert_eq!(drop["policies"][0]["direction"], "ingress");
    assert!(drop["hint"].as_str().unwrap().contains("3307"), "{drop}");
    assert_eq!(lines.last().unwrap()["type"], "summary");
    let iface = topo.pods[0].host_if.clone();
    let node = topo.node_path();
    let left = std::thread::spawn(move || {
        netns::enter(&node).unwrap();
        tcx_programs(&iface).unwrap()
    });
    assert!(left.join().unwrap().is_empty(), "left attached after exit");
    let tshark = Command::new("tshark").arg("-r").arg(&pcap).output();
    if let Ok(out) = tshark {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("3306") && text.contains("SYN"), "pcap: {text}");
    } else {
        let bytes = std::fs::read(&pcap).unwrap();
        assert!(bytes.len() > 24 + 16 + 40, "pcap has no packet");
    }
}

#[test]
fn a_missing_namespace_is_refused_clearly() {
    let out = Command::new(env!("CARGO_BIN_EXE_netpol-trace-under-test"))
        .args(["trace", "--netns", "np-no-such-netns", "--duration", "1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("np-no-such-netns") && err.contains("not found"), "{err}");
}

#[test]
fn a_missing_interface_and_missing_privileges_are_refused_clearly() {
    require_root();
    let topo = Topology::new(1).unwrap();
    let bin = env!("CARGO_BIN_EXE_netpol-trace-under-test");
    let out = Command::new(bin)
        .args(["trace", "--netns", &topo.node, "--iface", "cali-gone", "--duration", "1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("interface cali-gone not found"), "{err}");

    // An unprivileged user: one line naming the missing capabilities, exit 2.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"])
        .arg(bin)
        .args(["trace", "--duration", "1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CAP_BPF") && err.contains("root"), "{err}");
}

#[test]
fn ipv6_drops_are_reported_then_restored() {
    require_root();
    let mut topo = Topology::dual_stack(2).expect("dual-stack topology");
    let dst6 = topo.pods[1].ip6.unwrap();
    topo.listen_on(1, dst6.into(), PORT).expect("listener");
    assert!(topo.connect(0, dst6, PORT, SHORT), "IPv6 must connect before any rule");
    topo.nft_forward_drop("ip6", "nptest6", &["tcp", "dport", "3306"]).unwrap();
    let (tracer, mut rx) = tracer(&topo);
    assert!(!topo.connect(0, dst6, PORT, Duration::from_millis(1500)));
    let events = collect(&mut rx, Duration::from_secs(5), |ev| !drops(ev).is_empty());
    let d = drops(&events);
    assert!(!d.is_empty(), "no IPv6 drop reported: {events:?}");
    assert_eq!(d[0].reason, "NETFILTER_DROP");
    assert_eq!(d[0].src.ip, std::net::IpAddr::V6(topo.pods[0].ip6.unwrap()));
    assert_eq!(d[0].dst.ip, std::net::IpAddr::V6(dst6));
    assert_eq!(d[0].ifname, topo.pods[0].host_if);
    topo.node_exec(&["nft", "delete", "table", "ip6", "nptest6"]).unwrap();
    assert!(topo.connect(0, dst6, PORT, SHORT));
    let events = collect(&mut rx, Duration::from_secs(5), has_restored);
    assert!(has_restored(&events), "no IPv6 restored line: {events:?}");
    drop(tracer);
}

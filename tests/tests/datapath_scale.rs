//! The datapath at scale and over its lifecycle, on a real kernel in throwaway namespaces:
//! the flow map is read incrementally, pruned, and reports its pressure; stale legacy tc
//! filters of a killed run are swept; a veth recreated under the same name is attached again;
//! without the drop tracepoint the tracer runs tc-only and says so.

use std::{
    net::{Ipv4Addr, SocketAddr, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use netpol_trace::{
    datapath::{
        Datapath, DatapathOptions, ENV_TC_MODE, ENV_TC_ONLY, netns, programs::tcx_programs,
    },
    trace::{Tracer, TracerMessage, TracerOptions, flows::FlowTable},
};
use netpol_trace_common::FLOWS_MAX_ENTRIES;
use netpol_trace_integration::{Topology, enter_netns, require_root};

const BIN: &str = env!("CARGO_BIN_EXE_netpol-trace-under-test");
const FIRST_PORT: u16 = 20_000;

/// One SYN to each of `ports` closed ports of `dst` from pod 0 (each answered by a RST):
/// one new flow per port in the kernel map.
fn syns_to_ports(topo: &Topology, dst: Ipv4Addr, ports: std::ops::Range<u16>) {
    let netns = topo.pods[0].netns.clone();
    std::thread::spawn(move || {
        enter_netns(&netns).unwrap();
        for port in ports {
            let _ = TcpStream::connect_timeout(
                &SocketAddr::from((dst, port)),
                Duration::from_millis(200),
            );
        }
    })
    .join()
    .unwrap();
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn monotonic_ns() -> u64 {
    netpol_trace::trace::flows::monotonic_ns()
}

#[test]
fn the_flow_map_is_read_incrementally_pruned_and_reports_its_pressure() {
    require_root();
    let topo = Topology::new(2).expect("topology");
    let node = topo.node_path();
    let iface = topo.pods[0].host_if.clone();
    let (tx, rx) = std::sync::mpsc::channel::<std::ops::Range<u16>>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    // The datapath lives in a thread of the node namespace; traffic is driven from here.
    let reader = std::thread::spawn(move || {
        netns::enter(&node).unwrap();
        let mut dp = Datapath::load(&DatapathOptions {
            ports: vec![],
            all_ports: true,
            netns_inum: netns::current_inode().unwrap(),
        })
        .expect("load");
        dp.attach(&iface).expect("attach");
        let capacity = u64::from(FLOWS_MAX_ENTRIES);
        done_tx.send(()).unwrap();

        // 1. 300 new flows: all learnt from the changed-flows map, counted as entries.
        rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let reads = dp.flow_map().poll(monotonic_ns());
        let fresh = reads.iter().filter(|(_, s)| s.is_some_and(|s| s.count == 1)).count();
        assert_eq!(fresh, 300, "one read per new flow");
        let c = dp.counters();
        assert_eq!((c.flow_map.entries, c.flow_map.full, c.flow_map.evictions), (300, 0, 0));
        assert_eq!(c.flow_map.capacity, capacity);

        // 2. Idle: once the quiet gap has passed, a poll reads nothing at all.
        std::thread::sleep(Duration::from_millis(300));
        let _ = dp.flow_map().poll(monotonic_ns());
        assert!(dp.flow_map().poll(monotonic_ns()).is_empty(), "an idle map reads nothing");
        assert_eq!(dp.flow_map().hot(), 0);

        // 3. Removal: evicted flows count as evictions, idle ones do not.
        let keys: Vec<_> = reads.iter().map(|(k, _)| *k).collect();
        assert_eq!(dp.flow_map().remove(&keys[..100], true), 100);
        assert_eq!(dp.flow_map().remove(&keys[100..], false), 200);
        let c = dp.counters();
        assert_eq!((c.flow_map.entries, c.flow_map.evictions), (0, 100));
        assert!(dp.flow_map().remove(&keys[..10], false) == 0, "already gone");
        done_tx.send(()).unwrap();

        // 4. Fill past capacity: the kernel counts what did not fit; the table evicts down
        //    to half, after which new flows fit again.
        rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let reads = dp.flow_map().poll(monotonic_ns());
        let c = dp.counters();
        assert_eq!(c.flow_map.entries, capacity, "{c:?}");
        assert!(c.flow_map.full >= 100, "{c:?}");
        assert_eq!(reads.len() as u64, capacity);
        let mut table = FlowTable::new(Duration::from_secs(1));
        let clock = netpol_trace::trace::flows::Clock::now();
        table.update(&reads, monotonic_ns(), &clock, |i| format!("if{i}"));
        let pruned = table.prune(monotonic_ns(), c.flow_map.entries, c.flow_map.capacity);
        assert!(pruned.idle.is_empty());
        let evicted = dp.flow_map().remove(&pruned.evicted, true);
        let c = dp.counters();
        assert_eq!(c.flow_map.entries, capacity / 2, "{c:?}");
        assert_eq!(c.flow_map.evictions, 100 + evicted);
        let full_before = c.flow_map.full;
        done_tx.send(()).unwrap();

        rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let reads = dp.flow_map().poll(monotonic_ns());
        let c = dp.counters();
        assert_eq!(c.flow_map.full, full_before, "new flows fit again");
        assert!(reads.iter().any(|(_, s)| s.is_some()));
        drop(dp);
    });
    let dst = topo.pods[1].ip;
    done_rx.recv().expect("datapath loaded");
    syns_to_ports(&topo, dst, FIRST_PORT..FIRST_PORT + 300);
    tx.send(0..0).unwrap();
    done_rx.recv().expect("step 3 done");
    let over = FLOWS_MAX_ENTRIES as u16 + 200;
    syns_to_ports(&topo, dst, FIRST_PORT..FIRST_PORT + over);
    tx.send(0..0).unwrap();
    done_rx.recv().expect("step 4 done");
    syns_to_ports(&topo, dst, FIRST_PORT + over..FIRST_PORT + over + 50);
    tx.send(0..0).unwrap();
    reader.join().expect("no assertion failed in the datapath thread");
}

/// Names of the cls_bpf filters on `iface`'s clsact `hook` (ingress/egress) in `ns`.
fn legacy_filters(topo: &Topology, iface: &str, hook: &str) -> Vec<String> {
    // One line per filter: "... bpf chain 0 handle 0x1 tc_from_pod:[12] direct-action ...
    // id 12 name tc_from_pod tag ...": the name after the handle is the filter's.
    let out = topo.node_exec(&["tc", "filter", "show", "dev", iface, hook]).unwrap_or_default();
    out.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace().skip_while(|w| *w != "handle").skip(2);
            let name = words.next()?.split(':').next()?;
            ["tc_from_pod", "tc_to_pod"].contains(&name).then(|| name.to_string())
        })
        .collect()
}

fn trace_child(topo: &Topology, ready: &std::path::Path, extra: &[&str]) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.args(["trace", "--netns", &topo.node, "-o", "json", "--ready-file"])
        .arg(ready)
        .args(extra)
        .env(ENV_TC_MODE, "legacy")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = cmd.spawn().unwrap();
    wait_for("the ready file", Duration::from_secs(20), || ready.exists());
    child
}

#[test]
fn stale_legacy_filters_of_a_killed_run_are_swept_and_removed_filters_come_back() {
    require_root();
    let topo = Topology::new(1).expect("topology");
    let iface = topo.pods[0].host_if.clone();
    let dir = tempfile::tempdir().unwrap();

    // A run on the legacy path, SIGKILLed: its filters stay behind.
    let ready = dir.path().join("ready-1");
    let mut killed = trace_child(&topo, &ready, &[]);
    assert_eq!(legacy_filters(&topo, &iface, "ingress"), ["tc_from_pod"]);
    killed.kill().unwrap(); // SIGKILL
    killed.wait().unwrap();
    assert_eq!(legacy_filters(&topo, &iface, "ingress"), ["tc_from_pod"], "left behind");
    assert_eq!(legacy_filters(&topo, &iface, "egress"), ["tc_to_pod"], "left behind");

    // The next run sweeps them: exactly one filter of ours per hook.
    let ready = dir.path().join("ready-2");
    let mut next = trace_child(&topo, &ready, &["--duration", "12s"]);
    assert_eq!(legacy_filters(&topo, &iface, "ingress"), ["tc_from_pod"]);
    assert_eq!(legacy_filters(&topo, &iface, "egress"), ["tc_to_pod"]);

    // Someone deletes our ingress filter: the periodic check puts it back.
    topo.node_exec(&["tc", "filter", "del", "dev", &iface, "ingress"]).unwrap();
    assert!(legacy_filters(&topo, &iface, "ingress").is_empty());
    wait_for("the filter to be re-attached", Duration::from_secs(10), || {
        legacy_filters(&topo, &iface, "ingress") == ["tc_from_pod"]
    });
    assert_eq!(legacy_filters(&topo, &iface, "egress"), ["tc_to_pod"]);

    assert!(next.wait().unwrap().success());
    assert!(legacy_filters(&topo, &iface, "ingress").is_empty(), "detached on exit");
    assert!(legacy_filters(&topo, &iface, "egress").is_empty(), "detached on exit");
}

#[test]
fn a_veth_recreated_under_the_same_name_is_attached_again() {
    require_root();
    let topo = Topology::new(1).expect("topology");
    let iface = topo.pods[0].host_if.clone();
    let opts = TracerOptions { netns: Some(topo.node_path()), ..TracerOptions::default() };
    let (tracer, mut rx) = Tracer::start(opts).expect("tracer");
    assert_eq!(tracer.interfaces, std::slice::from_ref(&iface));
    let node = topo.node_path();
    let query = {
        let iface = iface.clone();
        move || {
            let node = node.clone();
            let iface = iface.clone();
            std::thread::spawn(move || {
                netns::enter(&node).unwrap();
                let index = netpol_trace::datapath::attach::ifindex_of(&iface);
                (index, tcx_programs(&iface).unwrap_or_default())
            })
            .join()
            .unwrap()
        }
    };
    let (old_index, programs) = query();
    assert_eq!(programs, ["tcx/ingress:tc_from_pod", "tcx/egress:tc_to_pod"]);
    while rx.try_recv().is_ok() {} // the attach messages of the start

    topo.node_exec(&["ip", "link", "del", &iface]).unwrap();
    let peer = format!("{}x", &iface[..iface.len().min(14)]);
    topo.node_exec(&["ip", "link", "add", &iface, "type", "veth", "peer", "name", &peer]).unwrap();
    topo.node_exec(&["ip", "link", "set", &iface, "up"]).unwrap();

    let mut seen = vec![];
    wait_for("detach and re-attach messages", Duration::from_secs(10), || {
        while let Ok(msg) = rx.try_recv() {
            match msg {
                TracerMessage::Detached(i) => seen.push(format!("-{i}")),
                TracerMessage::Attached(i) => seen.push(format!("+{i}")),
                _ => {}
            }
        }
        seen.contains(&format!("+{iface}"))
    });
    assert_eq!(seen.first(), Some(&format!("-{iface}")), "detached first: {seen:?}");
    let (new_index, programs) = query();
    assert_ne!(old_index, new_index, "a new interface behind the same name");
    assert_eq!(programs, ["tcx/ingress:tc_from_pod", "tcx/egress:tc_to_pod"]);
    drop(tracer);
    assert!(query().1.is_empty(), "detached on stop");
}

#[test]
fn without_the_drop_tracepoint_the_tracer_runs_tc_only_and_infers_drops() {
    require_root();
    let mut topo = Topology::new(2).expect("topology");
    topo.listen(1, 3306).unwrap();
    let dst = topo.pods[1].ip;
    assert!(topo.connect(0, dst, 3306, Duration::from_millis(700)));
    topo.nft_forward_drop("inet", "nptest", &["tcp", "dport", "3306"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let child = Command::new(BIN)
        .args(["trace", "--netns", &topo.node, "-o", "json", "--duration", "5s", "--ready-file"])
        .arg(&ready)
        .env(ENV_TC_ONLY, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the ready file", Duration::from_secs(20), || ready.exists());
    // Blocked long enough for the client to retransmit its SYN (after 1 s).
    assert!(!topo.connect(0, dst, 3306, Duration::from_millis(2500)));
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tc-only"), "the degraded mode is said: {stderr}");
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let drop = lines.iter().find(|l| l["type"] == "drop").expect("an inferred drop line");
    assert_eq!(drop["reason"], "unknown");
    assert_eq!(drop["src"]["ip"], topo.pods[0].ip.to_string());
    assert_eq!(drop["dst"]["port"], 3306);
    assert_eq!(drop["ifname"], topo.pods[0].host_if);
    assert!(drop["count"].as_u64().unwrap() >= 1);
}

//! The kernel programs' diagnostics reach user space through aya-log, as `tracing` records
//! of target `netpol_trace::ebpf`, only when the log filter asks for them: a malformed IPv4
//! packet (header length 16) sent from a pod is dropped by the node's IP layer, and the drop
//! program says why it skipped it.

use std::{
    net::Ipv4Addr,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use netpol_trace::datapath::{Datapath, DatapathOptions, netns};
use netpol_trace_integration::{Topology, enter_netns, require_root};
use tracing_subscriber::{EnvFilter, layer::SubscriberExt};

/// The diagnostic the drop program logs for an IPv4 header shorter than 20 bytes.
const DIAGNOSTIC: &str = "IPv4 header length 16 below 20";

/// Sends `n` Ethernet frames carrying an IPv4 packet with a 16-byte header (IHL 4),
/// protocol TCP, from pod `from`'s eth0 to its host-side veth (raw sockets refuse such a
/// header, a packet socket does not): the node's IP layer drops them as header errors.
fn send_malformed(topo: &Topology, from: usize, to: Ipv4Addr, n: usize) {
    let pod = topo.pods[from].clone();
    let mac = topo
        .node_exec(&["cat", &format!("/sys/class/net/{}/address", pod.host_if)])
        .expect("the host-side veth's address");
    let mac: Vec<u8> =
        mac.trim().split(':').map(|b| u8::from_str_radix(b, 16).expect("a MAC byte")).collect();
    let mut frame = [0u8; 14 + 40];
    frame[..6].copy_from_slice(&mac);
    frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut frame[14..];
    ip[0] = 0x44; // version 4, IHL 4: shorter than any valid header
    ip[2..4].copy_from_slice(&40u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = libc::IPPROTO_TCP as u8;
    ip[12..16].copy_from_slice(&pod.ip.octets());
    ip[16..20].copy_from_slice(&to.octets());
    std::thread::spawn(move || {
        enter_netns(&pod.netns).expect("entering the pod namespace");
        // SAFETY: plain socket calls on a descriptor this thread owns and closes.
        unsafe {
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
            assert!(fd >= 0, "packet socket: {}", std::io::Error::last_os_error());
            let ifindex = libc::if_nametoindex(c"eth0".as_ptr());
            assert!(ifindex > 0, "no eth0 in the pod");
            let mut addr: libc::sockaddr_ll = std::mem::zeroed();
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_protocol = (libc::ETH_P_IP as u16).to_be();
            addr.sll_ifindex = ifindex as i32;
            addr.sll_halen = 6;
            addr.sll_addr[..6].copy_from_slice(&mac);
            for _ in 0..n {
                let sent = libc::sendto(
                    fd,
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&raw const addr).cast(),
                    size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                );
                assert_eq!(
                    sent,
                    frame.len() as isize,
                    "sendto: {}",
                    std::io::Error::last_os_error()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            libc::close(fd);
        }
    })
    .join()
    .expect("the sender thread");
}

/// Runs `trace` on the topology's node with `log_level`, sends malformed packets from pod 0
/// to pod 1 once it is attached, and returns its stderr.
fn trace_stderr(topo: &Topology, log_level: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let manifests = dir.path().join("ns.yaml");
    std::fs::write(&manifests, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: app\n")
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_netpol-trace-under-test"))
        .args(["trace", "--netns", &topo.node, "--duration", "3s", "--log-level", log_level])
        .arg("--ready-file")
        .arg(&ready)
        .arg("-f")
        .arg(&manifests)
        .env_remove("RUST_LOG")
        .env_remove("NETPOL_TRACE_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready.exists() {
        assert!(Instant::now() < deadline, "no ready file");
        std::thread::sleep(Duration::from_millis(20));
    }
    send_malformed(topo, 0, topo.pods[1].ip, 3);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "trace failed: {stderr}");
    stderr
}

#[test]
fn kernel_diagnostics_reach_tracing_only_when_enabled() {
    require_root();
    let topo = Topology::new(2).unwrap();

    let on = trace_stderr(&topo, "warn,netpol_trace::ebpf=debug");
    let line = on
        .lines()
        .find(|l| l.contains(DIAGNOSTIC))
        .unwrap_or_else(|| panic!("no kernel diagnostic with debug enabled:\n{on}"));
    assert!(line.contains("DEBUG") && line.contains("netpol_trace::ebpf"), "{line}");
    eprintln!("kernel diagnostic: {line}");

    let off = trace_stderr(&topo, "warn");
    assert!(!off.contains("netpol_trace::ebpf"), "kernel diagnostics while not asked for:\n{off}");
    assert!(!off.contains(DIAGNOSTIC), "{off}");
}

/// The records the programs send while malformed packets cross the node, with the programs
/// loaded under the log filter `filter`.
fn kernel_records(topo: &Topology, filter: &'static str) -> u64 {
    let node = topo.node_path();
    let mut dp = std::thread::spawn(move || {
        let subscriber = tracing_subscriber::registry().with(EnvFilter::new(filter));
        tracing::subscriber::with_default(subscriber, || {
            netns::enter(&node).unwrap();
            let inum = netns::current_inode().unwrap();
            Datapath::load(&DatapathOptions {
                ports: vec![3306],
                all_ports: false,
                netns_inum: inum,
            })
            .expect("the embedded object loads")
        })
    })
    .join()
    .unwrap();
    send_malformed(topo, 0, topo.pods[1].ip, 3);
    std::thread::sleep(Duration::from_millis(200));
    dp.flush_logs();
    dp.kernel_log_records()
}

#[test]
fn the_programs_send_nothing_unless_the_filter_asks() {
    require_root();
    let topo = Topology::new(2).unwrap();
    assert_eq!(kernel_records(&topo, "warn"), 0, "AYA_LOG_LEVEL keeps the kernel silent");
    assert!(kernel_records(&topo, "warn,netpol_trace::ebpf=debug") >= 3, "one record a packet");
}

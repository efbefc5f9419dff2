//! `agent` against real kernel drops and a fake API server: setup → traffic → expectation.
//! The fake holds the topology's pods and a NetworkPolicy with a port typo; nftables in the
//! node namespace plays the CNI that enforces it. Each test builds its own topology and its
//! own fake (loopback only), so they may run in parallel.

use std::{
    net::SocketAddr,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use fake_apiserver::FakeApiServer;
use netpol_trace::{
    agent::{Agent, AgentOptions, access::Access},
    datapath::{netns, programs::tcx_programs},
    trace::TracerOptions,
};
use netpol_trace_integration::{Topology, require_root};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PORT: u16 = 3306;
const NFT_TABLE: &str = "npagent";

/// GET over plain HTTP/1.1: status and body.
/// The token the tests' scrapers send: the fake API server's cluster admin in the CLI test
/// (the agent checks it with TokenReview and SubjectAccessReview); the in-process agent is
/// built to allow every request.
const SCRAPER_TOKEN: &str = "scraper-admin";

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("agent HTTP");
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: agent\r\nAuthorization: Bearer {SCRAPER_TOKEN}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut buf))
        .await
        .expect("HTTP answer in time")
        .unwrap();
    let (head, body) = buf.split_once("\r\n\r\n").expect("HTTP head");
    (head.split(' ').nth(1).unwrap().parse().unwrap(), body.to_string())
}

/// Metric families a running agent declares (`# TYPE` name and type).
const SCRAPED_FAMILIES: [(&str, &str); 16] = [
    ("netpol_trace_build", "info"),
    ("netpol_trace_drops", "counter"),
    ("netpol_trace_restored", "counter"),
    ("netpol_trace_events_lost", "counter"),
    ("netpol_trace_attached_interfaces", "gauge"),
    ("netpol_trace_flows_dropping", "gauge"),
    ("netpol_trace_flow_map_entries", "gauge"),
    ("netpol_trace_flow_map_capacity", "gauge"),
    ("netpol_trace_flow_map_evictions", "counter"),
    ("netpol_trace_flow_map_full", "counter"),
    ("netpol_trace_degraded", "gauge"),
    ("netpol_trace_policy_evaluation_seconds", "histogram"),
    ("netpol_trace_attribution_seconds", "histogram"),
    ("netpol_trace_fix_plans_skipped", "counter"),
    ("netpol_trace_k8s_events", "counter"),
    ("netpol_trace_k8s_errors", "counter"),
];

/// A scrape in the OpenMetrics text format: `# EOF` last, every family declared with its
/// type (none other), no label called `namespace` (Prometheus sets its own at scrape time).
fn check_scrape(metrics: &str) {
    assert!(metrics.ends_with("# EOF\n"), "OpenMetrics ends with # EOF:\n{metrics}");
    let declared: std::collections::BTreeSet<(&str, &str)> =
        metrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split_once(' ')).collect();
    let expected: std::collections::BTreeSet<(&str, &str)> = SCRAPED_FAMILIES.into();
    assert!(declared.is_subset(&expected), "unexpected families:\n{metrics}");
    // A labelled family shows up with its first series: Events and API errors may have none.
    for family in expected.iter().filter(|(name, _)| !name.starts_with("netpol_trace_k8s_")) {
        assert!(declared.contains(family), "{family:?} not declared:\n{metrics}");
    }
    assert!(
        !metrics.contains("{namespace=") && !metrics.contains(",namespace="),
        "a bare namespace label:\n{metrics}"
    );
    let capacity = metrics
        .lines()
        .find_map(|l| l.strip_prefix("netpol_trace_flow_map_capacity "))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(capacity.is_some_and(|c| c > 0), "flow map capacity:\n{metrics}");
}

/// Polls `check` every 50 ms until it returns `Some`, at most `timeout`.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn seed(fake: &FakeApiServer, topo: &Topology, allowed_port: u16) {
    for ns in ["app", "db"] {
        fake.insert(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
    }
    fake.insert(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "app", "labels": {"app": "web"}, "uid": "uid-web-1"},
        "spec": {"nodeName": "node-1", "containers": [{"name": "web", "image": "web"}]},
        "status": {"phase": "Running", "podIP": topo.pods[0].ip.to_string()}}));
    fake.insert(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "mysql-0", "namespace": "db", "labels": {"app": "mysql"}, "uid": "uid-mysql-0"},
        "spec": {"nodeName": "node-1", "containers": [{"name": "db", "image": "mariadb",
                 "ports": [{"name": "mysql", "containerPort": PORT}]}]},
        "status": {"phase": "Running", "podIP": topo.pods[1].ip.to_string()}}));
    fake.insert(json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "mysql-ingress", "namespace": "db"},
        "spec": {"podSelector": {"matchLabels": {"app": "mysql"}},
                 "policyTypes": ["Ingress"],
                 "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "web"}}}],
                              "ports": [{"protocol": "TCP", "port": allowed_port}]}]}}));
}

/// The CNI's enforcement of the policy: TCP/3306 forwarded to any pod is dropped.
fn block(topo: &Topology) {
    topo.nft_forward_drop("inet", NFT_TABLE, &["tcp", "dport", "3306"]).unwrap();
}

fn unblock(topo: &Topology) {
    topo.node_exec(&["nft", "delete", "table", "inet", NFT_TABLE]).unwrap();
}

/// Whether no program is attached to the topology's veths any more. A tcx link goes away when
/// its last file descriptor closes; a process that another test forks at that moment holds a
/// copy until it execs, so the check allows a few seconds before it says no.
fn detached(topo: &Topology) -> bool {
    let node = topo.node_path();
    let ifaces: Vec<String> = topo.pods.iter().map(|p| p.host_if.clone()).collect();
    std::thread::spawn(move || {
        netns::enter(&node).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            if ifaces.iter().all(|i| tcx_programs(i).unwrap().is_empty()) {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .join()
    .unwrap()
}

fn topology() -> Topology {
    require_root();
    let mut topo = Topology::new(2).expect("topology");
    topo.listen(1, PORT).expect("listener");
    assert!(
        topo.connect(0, topo.pods[1].ip, PORT, Duration::from_millis(700)),
        "the pods must connect before any rule"
    );
    topo
}

#[test]
fn a_denied_connect_is_served_attributed_counted_evented_then_restored() {
    let topo = topology();
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let fake = FakeApiServer::start().await;
        seed(&fake, &topo, 3307);
        // The pods cannot be listed yet: the caches cannot sync, so the agent is not ready.
        fake.forbid("list", "pods");
        let opts = AgentOptions {
            tracer: TracerOptions {
                netns: Some(topo.node_path()),
                poll_interval: Duration::from_millis(50),
                capture_packets: false,
                ..TracerOptions::default()
            },
            listen: "127.0.0.1:0".parse().unwrap(),
            node_name: Some("node-1".into()),
            event_interval: Duration::from_millis(200),
            // The endpoints' access checks are tested against an RBAC-enforcing API server
            // in the agent's own tests; here they are read without a token.
            access: Access::allow_all_for_tests(),
            ..AgentOptions::default()
        };
        let mut agent = Agent::start(opts, fake.client(), None).await.expect("agent starts");
        let addr = agent.local_addr();
        assert_eq!(get(addr, "/healthz").await.0, 200);
        let body = eventually("the programs attached", Duration::from_secs(20), || async {
            let (status, body) = get(addr, "/readyz").await;
            assert_eq!(status, 503);
            (!body.contains("not attached")).then_some(body)
        })
        .await;
        assert_eq!(body.trim(), "the cluster caches have not synced yet");
        fake.allow_all();
        assert!(agent.wait_ready(Duration::from_secs(30)).await.unwrap(), "ready once synced");
        assert_eq!(get(addr, "/readyz").await, (200, "ready\n".to_string()));

        // A denied connect: the record, attributed to the policy, with its near-miss and fix.
        block(&topo);
        let dst = topo.pods[1].ip;
        assert!(!topo.connect(0, dst, PORT, Duration::from_millis(1500)), "nftables must block");
        let record = eventually("an attributed drop on /drops", Duration::from_secs(10), || async {
            let (_, body) = get(addr, "/drops?namespace=db").await;
            let list: Vec<Value> = serde_json::from_str(&body).unwrap();
            list.into_iter().find(|r| r["policies"].as_array().is_some_and(|p| !p.is_empty()))
        })
        .await;
        assert_eq!(record["state"], "dropping");
        assert_eq!(record["reason"], "NETFILTER_DROP");
        assert_eq!(record["node"], "node-1");
        assert_eq!(record["src"]["pod"], "web-1");
        assert_eq!(record["src"]["namespace"], "app");
        assert_eq!(record["dst"]["pod"], "mysql-0");
        assert_eq!(record["dst"]["port"], PORT);
        assert_eq!(
            record["policies"][0],
            json!({"kind": "NetworkPolicy", "namespace": "db", "name": "mysql-ingress", "direction": "ingress"})
        );
        assert!(record["hint"].as_str().unwrap().contains("3307"), "{record}");
        assert!(record["count"].as_u64().unwrap() >= 1);
        let kubectl = record["fix"]["kubectl"][0].as_str().expect("a suggested patch");
        assert!(kubectl.starts_with("kubectl patch networkpolicy -n db mysql-ingress"), "{kubectl}");
        eprintln!("/drops: {}", serde_json::to_string_pretty(&record).unwrap());

        let (status, metrics) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        check_scrape(&metrics);
        // Labels as Hubble names them: the destination's namespace, protocol, the direction of
        // the denying policy, the kernel's reason.
        let drops_line = metrics
            .lines()
            .find(|l| {
                l.starts_with(
                    "netpol_trace_drops_total{destination_namespace=\"db\",protocol=\"TCP\",\
                     direction=\"ingress\",reason=\"NETFILTER_DROP\"}",
                )
            })
            .unwrap_or_else(|| panic!("no drop counter:\n{metrics}"));
        assert!(drops_line.rsplit(' ').next().unwrap().parse::<u64>().unwrap() >= 1);
        assert!(metrics.contains("\nnetpol_trace_attached_interfaces 2\n"), "{metrics}");
        assert!(metrics.contains("\nnetpol_trace_flows_dropping 1\n"), "{metrics}");
        assert!(metrics.contains("\nnetpol_trace_degraded 0\n"), "{metrics}");
        let build = metrics
            .lines()
            .find(|l| l.starts_with("netpol_trace_build_info{"))
            .unwrap_or_else(|| panic!("no build info:\n{metrics}"));
        assert!(build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))), "{build}");
        assert!(build.contains("ebpf_embedded=\"true\"") && build.ends_with("} 1"), "{build}");
        eprintln!("/metrics:\n{metrics}");

        let event = eventually("an Event on the destination pod", Duration::from_secs(10), || async {
            fake.objects("Event.events.k8s.io").into_iter().find(|e| e["regarding"]["name"] == "mysql-0")
        })
        .await;
        assert_eq!(event["metadata"]["namespace"], "db");
        assert_eq!(event["reason"], "NetworkPolicyDrop");
        assert_eq!(event["regarding"]["uid"], "uid-mysql-0");
        let note = event["note"].as_str().unwrap();
        assert!(
            note.contains("from app/web-1 to db/mysql-0:3306 dropped: denied by NetworkPolicy db/mysql-ingress, rule 0 allows port 3307; suggested: netpol-trace fix --from app/web-1 --to db/mysql-0 --port 3306"),
            "{note}"
        );
        eprintln!("Event note: {note}");

        // The fix lands through the watch and the CNI stops dropping: restored.
        fake.modify("networkpolicies", "db", "mysql-ingress", |np| {
            np["spec"]["ingress"][0]["ports"][0]["port"] = json!(3306);
        });
        eventually("re-attribution after the policy change", Duration::from_secs(10), || async {
            let (_, body) = get(addr, "/drops?namespace=db&pod=mysql-0").await;
            let list: Vec<Value> = serde_json::from_str(&body).unwrap();
            list.first().filter(|r| r["policies"] == json!([])).map(|_| ())
        })
        .await;
        unblock(&topo);
        assert!(topo.connect(0, dst, PORT, Duration::from_millis(1500)), "must connect once fixed");
        let restored = eventually("the record restored", Duration::from_secs(10), || async {
            let (_, body) = get(addr, "/drops?pod=app/web-1").await;
            let list: Vec<Value> = serde_json::from_str(&body).unwrap();
            list.into_iter().find(|r| r["state"] == "restored")
        })
        .await;
        assert!(restored["restored_at"].is_string());
        let (_, metrics) = get(addr, "/metrics").await;
        assert!(metrics.contains("\nnetpol_trace_restored_total 1\n"), "{metrics}");
        assert!(metrics.contains("\nnetpol_trace_flows_dropping 0\n"), "{metrics}");

        let summary = agent.stop().await.expect("a clean stop");
        assert_eq!(summary.dropped_flows, 1);
        assert_eq!(summary.restored_flows, 1);
        assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "HTTP still up");
    });
    assert!(detached(&topo), "programs left attached");
    let prefix = topo.prefix.clone();
    drop(topo);
    assert!(Topology::leftovers(&prefix).is_empty());
}

#[test]
fn the_cli_serves_until_sigterm_prints_ndjson_and_detaches() {
    let topo = topology();
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let ready = dir.path().join("ready");
    let fake = rt.block_on(FakeApiServer::builder().admin_token(SCRAPER_TOKEN).start());
    fake.write_kubeconfig_with_token(&kubeconfig, SCRAPER_TOKEN).unwrap();
    seed(&fake, &topo, 3307);
    block(&topo);
    let child = Command::new(env!("CARGO_BIN_EXE_netpol-trace-under-test"))
        .args(["agent", "--netns", &topo.node, "--listen", "127.0.0.1:0", "-o", "json"])
        .args(["--node-name", "node-1", "--kubeconfig"])
        .arg(&kubeconfig)
        .arg("--ready-file")
        .arg(&ready)
        .env("NETPOL_TRACE_LOG", "info")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Stopped by PID on every path, also when an assertion below fails.
    struct Kill(u32);
    impl Drop for Kill {
        fn drop(&mut self) {
            // SAFETY: signalling a child of this process by its PID.
            unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
        }
    }
    let guard = Kill(child.id());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready.exists() {
        assert!(Instant::now() < deadline, "no ready file");
        std::thread::sleep(Duration::from_millis(20));
    }
    let addr: SocketAddr = std::fs::read_to_string(&ready).unwrap().trim().parse().unwrap();
    rt.block_on(async {
        assert_eq!(get(addr, "/readyz").await.0, 200);
        assert!(!topo.connect(0, topo.pods[1].ip, PORT, Duration::from_millis(1500)));
        eventually("a drop on /drops", Duration::from_secs(10), || async {
            let (_, body) = get(addr, "/drops").await;
            let list: Vec<Value> = serde_json::from_str(&body).unwrap();
            (!list.is_empty()).then_some(())
        })
        .await;
    });
    // SAFETY: signalling our own child by PID.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    std::mem::forget(guard);
    assert!(out.status.success(), "exit {:?}", out.status);
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every stdout line is JSON"))
        .collect();
    let drop_line = lines.iter().find(|l| l["type"] == "drop").expect("a drop line");
    assert_eq!(drop_line["dst"]["pod"], "mysql-0");
    assert_eq!(drop_line["policies"][0]["name"], "mysql-ingress");
    assert_eq!(lines.last().unwrap()["type"], "summary");
    assert!(detached(&topo), "programs left attached after SIGTERM");
    drop(fake);
    drop(rt);
}

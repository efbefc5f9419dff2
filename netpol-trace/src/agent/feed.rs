//! The agent's side of the operator feed: every dropped (and later restored) flow is handed to
//! a background task through a bounded queue, never blocking the loop; the task coalesces
//! updates per report, writes each report at most once per interval (a state change at once)
//! with [`crate::operator::publish`], records whether the SYNs left the source pod's own veth,
//! and retries a failed write with exponential backoff (without waiting for the flow's next
//! drop). Reports restored long ago are garbage-collected by the controller's leader, not by
//! every node. Without the DropReport CRD it says so once, looks again now and then, and the
//! rest of the agent (`/drops`, metrics, Events) carries on.

use std::{
    collections::HashMap,
    net::IpAddr,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::{sync::mpsc, task::JoinHandle};

use crate::{
    attribution,
    fix::FixPlan,
    inventory::Inventory,
    operator,
    operator::publish::{Observation, RateLimiter, publish},
    operator::report::{
        Attribution, DropReport, DropReportSpec, FlowEnd, FlowState, NodeEntry, PolicyRef,
    },
};

use super::{
    cluster::ClusterView,
    record::{self, FlowRecord},
    routes,
};

/// Observations waiting in the queue at most; more are dropped (the next drop of the flow
/// carries the same counters, newer).
pub const QUEUE: usize = 1024;
/// Reports with a pending, not yet written update at most.
const PENDING: usize = 4096;
/// How often pending updates are looked at.
const TICK: Duration = Duration::from_secs(1);
/// How long after a 404 on the DropReport resource it is tried again.
const CRD_RETRY: Duration = Duration::from_secs(60);
/// First wait before a failed write is tried again; doubled after each failure.
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest wait between two attempts at a failed write.
pub const RETRY_MAX: Duration = Duration::from_secs(60);

/// How the feed runs.
#[derive(Debug, Clone)]
pub struct FeedOptions {
    /// This node (`status.nodes[].node`).
    pub node: String,
    /// The node's network namespace (`None`: the agent's), where pod routes are looked up.
    pub netns: Option<PathBuf>,
    /// At most one write per report in this interval (state changes go at once).
    pub interval: Duration,
}

impl FeedOptions {
    /// Defaults for `node`: a write per report every 5 s.
    pub fn new(node: &str) -> Self {
        Self { node: node.into(), netns: None, interval: Duration::from_secs(5) }
    }
}

/// What a flow's report says apart from counters: its identity, who denies it and the proposed
/// fix. Computed when the flow is attributed (once per cluster generation), not per drop.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportBasis {
    spec: DropReportSpec,
    attribution: Option<Attribution>,
    patches: Option<Arc<Vec<Value>>>,
}

impl ReportBasis {
    /// The flow's identity as its report names it (source workload → destination workload,
    /// port, protocol): flows of one identity share one report and one fix.
    pub fn identity(&self) -> String {
        serde_json::to_string(&self.spec).unwrap_or_default()
    }

    /// The proposed fix's patches (report entries, each blast radius bounded).
    pub fn patches(&self) -> Option<&Arc<Vec<Value>>> {
        self.patches.as_ref()
    }

    /// The same basis with `patches` proposed.
    pub fn with_patches(&self, patches: Option<Arc<Vec<Value>>>) -> Self {
        Self { patches, ..self.clone() }
    }
}

/// The report end of a flow end: the pod's workload, else the address.
fn end_of(view: &ClusterView, end: &crate::trace::Endpoint) -> FlowEnd {
    match (&end.namespace, &end.pod) {
        (Some(ns), Some(pod)) => view.workload(ns, pod).unwrap_or_else(|| FlowEnd::address(end.ip)),
        _ => FlowEnd::address(end.ip),
    }
}

/// The basis of `record`'s report from its attribution `a` and fix `plan`.
pub fn basis(
    view: &ClusterView,
    inventory: &Inventory,
    record: &FlowRecord,
    a: &attribution::Attribution,
    plan: Option<&FixPlan>,
) -> ReportBasis {
    let d = &record.drop;
    let (destination, port) = match a.destination {
        Some((id, port)) => {
            let pod = &inventory.pod(id).pod;
            let end = view.workload(&pod.namespace, &pod.name);
            (end.unwrap_or_else(|| FlowEnd::address(d.dst.ip)), port)
        }
        None => (end_of(view, &d.dst), d.dst.port),
    };
    let policies = a
        .policies
        .iter()
        .map(|p| PolicyRef {
            kind: "NetworkPolicy".into(),
            namespace: Some(p.namespace.clone()),
            name: p.name.clone(),
            direction: serde_json::to_value(p.direction)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
        })
        .collect::<Vec<_>>();
    ReportBasis {
        spec: DropReportSpec {
            source: end_of(view, &d.src),
            destination,
            port,
            protocol: "TCP".into(),
            decision: None,
        },
        attribution: (!policies.is_empty() || a.hint.is_some())
            .then(|| Attribution { policies, hint: a.hint.clone() }),
        patches: plan.map(|plan| {
            let mut entries = operator::plan::patches_for_status(plan);
            operator::plan::bound_newly_allowed(
                &mut entries,
                "newlyAllowed",
                operator::plan::NEWLY_ALLOWED_SAMPLE,
            );
            Arc::new(entries)
        }),
    }
}

/// One update for the task: the observation and what decides `fromSourceVeth`.
#[derive(Debug, Clone)]
struct Update {
    observation: Observation,
    source: IpAddr,
    syn_left_source: u64,
}

/// The loop's handle on the feed.
#[derive(Debug, Clone)]
pub struct Feed {
    tx: mpsc::Sender<Update>,
    node: String,
}

impl Feed {
    /// Queues `record`'s current counters for its report (never waits; a full queue drops it).
    pub fn offer(&self, record: &FlowRecord, basis: &ReportBasis) {
        let d = &record.drop;
        let observation = Observation {
            spec: basis.spec.clone(),
            node: NodeEntry {
                node: self.node.clone(),
                count: d.count,
                last_seen: d.time,
                ifname: d.ifname.clone(),
                reason: d.reason.clone(),
                from_source_veth: None,
            },
            first_seen: d.first_seen,
            state: match record.state {
                record::FlowState::Dropping => FlowState::Dropping,
                record::FlowState::Restored => FlowState::Restored,
            },
            attribution: basis.attribution.clone(),
            patches: basis.patches.clone(),
        };
        let update =
            Update { observation, source: d.src.ip, syn_left_source: d.evidence.syn_left_source };
        if self.tx.try_send(update).is_err() {
            tracing::debug!("DropReport queue full, update dropped");
        }
    }
}

/// Starts the task; it ends once every [`Feed`] is dropped.
pub fn start(client: kube::Client, opts: FeedOptions) -> (Feed, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let feed = Feed { tx, node: opts.node.clone() };
    (feed, tokio::spawn(run(client, opts, rx)))
}

/// Whether the API server has no DropReport resource: a report went missing (404) and listing
/// the reports of its namespace is a 404 too (a report deleted meanwhile lists fine).
async fn crd_missing(client: &kube::Client, e: &operator::Error, namespace: &str) -> bool {
    if !matches!(e, operator::Error::NotFound { .. }) {
        return false;
    }
    let api: kube::Api<DropReport> = kube::Api::namespaced(client.clone(), namespace);
    matches!(
        api.list(&kube::api::ListParams::default().limit(1)).await,
        Err(kube::Error::Api(s)) if s.code == 404
    )
}

/// `fromSourceVeth`: the SYNs were seen leaving a host interface, and it is the one the node
/// routes the source address to (the source pod's own veth).
fn from_source_veth(netns: Option<PathBuf>, update: &Update) -> bool {
    if update.syn_left_source == 0 || update.observation.node.ifname.is_empty() {
        return false;
    }
    match routes::interface_of(netns, update.source) {
        Ok(iface) => iface.as_deref() == Some(update.observation.node.ifname.as_str()),
        Err(e) => {
            tracing::debug!(error = %e, "route lookup failed");
            false
        }
    }
}

/// A write that failed: tried again at `at` (with the newest update of its report), the wait
/// doubling after each failure up to [`RETRY_MAX`].
struct Retry {
    update: Update,
    failures: u32,
    at: Instant,
}

/// The wait after the `failures`-th consecutive failure: [`RETRY_FIRST`], doubled each time,
/// at most [`RETRY_MAX`].
pub fn backoff(failures: u32) -> Duration {
    RETRY_FIRST.saturating_mul(1 << failures.saturating_sub(1).min(16)).min(RETRY_MAX)
}

fn key_of(update: &Update) -> String {
    format!("{}/{}", update.observation.namespace(), update.observation.report_name())
}

async fn run(client: kube::Client, opts: FeedOptions, mut rx: mpsc::Receiver<Update>) {
    let mut limiter = RateLimiter::new(opts.interval);
    let mut pending: HashMap<String, Update> = HashMap::new();
    let mut retries: HashMap<String, Retry> = HashMap::new();
    let mut missing_since: Option<Instant> = None;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let due: Vec<(String, Update)> = tokio::select! {
            update = rx.recv() => {
                let Some(update) = update else { break };
                let key = key_of(&update);
                if let Some(retry) = retries.get_mut(&key) {
                    // A write of this report is failing: the newer update goes with its retry.
                    retry.update = update;
                    vec![]
                } else if limiter.admit(&update.observation) {
                    pending.remove(&key);
                    vec![(key, update)]
                } else {
                    if pending.len() < PENDING || pending.contains_key(&key) {
                        pending.insert(key, update);
                    }
                    vec![]
                }
            }
            _ = tick.tick() => {
                let keys: Vec<String> = pending
                    .iter()
                    .filter(|(_, u)| limiter.admit(&u.observation))
                    .map(|(k, _)| k.clone())
                    .collect();
                let mut due: Vec<(String, Update)> =
                    keys.into_iter().filter_map(|k| pending.remove(&k).map(|u| (k, u))).collect();
                let now = Instant::now();
                due.extend(
                    retries
                        .iter()
                        .filter(|(_, r)| r.at <= now)
                        .map(|(k, r)| (k.clone(), r.update.clone())),
                );
                due
            }
        };
        for (key, mut update) in due {
            if missing_since.is_some_and(|t| t.elapsed() < CRD_RETRY) {
                retries.remove(&key);
                continue;
            }
            let netns = opts.netns.clone();
            let probe = update.clone();
            let verdict = tokio::task::spawn_blocking(move || from_source_veth(netns, &probe))
                .await
                .unwrap_or(false);
            update.observation.node.from_source_veth = Some(verdict);
            match publish(&client, &update.observation).await {
                Ok(_) => {
                    if let Some(retry) = retries.remove(&key) {
                        tracing::info!(
                            report = key,
                            failures = retry.failures,
                            "DropReport written after retries"
                        );
                    }
                    if missing_since.take().is_some() {
                        tracing::info!("DropReport resource found: publishing reports");
                    }
                }
                Err(e) if crd_missing(&client, &e, &update.observation.namespace()).await => {
                    retries.remove(&key);
                    if missing_since.is_none() {
                        tracing::warn!(
                            "the DropReport CRD (dropreports.netpol-trace.io) is not installed: \
                             no reports are published; /drops, metrics and Events go on"
                        );
                    }
                    missing_since = Some(Instant::now());
                }
                Err(e) => {
                    let failures = retries.get(&key).map_or(0, |r| r.failures) + 1;
                    if failures == 1 && retries.len() >= PENDING {
                        tracing::warn!(error = %e, "publishing a DropReport (too many retries queued, dropped)");
                        continue;
                    }
                    let wait = backoff(failures);
                    tracing::warn!(error = %e, report = key, failures, retry_in = ?wait, "publishing a DropReport");
                    retries.insert(key, Retry { update, failures, at: Instant::now() + wait });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use fake_apiserver::{FakeApiServer, Identity};
    use serde_json::Value;

    use super::*;
    use crate::{
        agent::{Agent, AgentOptions},
        trace::{EventSource, TraceEvent, TracerMessage},
    };

    const AGENT_TOKEN: &str = "agent-token";

    /// web-1 -> mysql-0:3306 dropped on cali0, as the kernel side reported it.
    const RECORDED_DROP: &str = r#"{"type":"drop","time":"2026-01-01T00:00:02Z","first_seen":"2026-01-01T00:00:00Z","reason":"NETFILTER_DROP","reason_raw":12,"ifname":"cali0","count":3,"protocol":"TCP","src":{"ip":"10.0.1.5","port":51514},"dst":{"ip":"10.0.2.7","port":3306},"policies":[],"evidence":{"syn_left_source":3,"syn_reached_destination":0,"synack_returned":0,"dropped":3}}"#;

    fn deploy_dir() -> PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("deploy")
    }

    async fn agent_with_feed(
        fake: &FakeApiServer,
        client: kube::Client,
    ) -> (Agent, mpsc::UnboundedSender<TracerMessage>) {
        crate::k8s::list::tests::seed(fake);
        let (tx, source) = EventSource::channel(vec!["cali0".into()]);
        let opts = AgentOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            node_name: Some("node-1".into()),
            feed: Some(FeedOptions {
                interval: Duration::from_millis(100),
                ..FeedOptions::new("node-1")
            }),
            ..AgentOptions::default()
        };
        let mut agent = Agent::start_with(opts, client, None, Some(source)).await.unwrap();
        assert!(agent.wait_ready(Duration::from_secs(10)).await.unwrap(), "ready in time");
        (agent, tx)
    }

    fn drop_event() -> TracerMessage {
        TracerMessage::Event(serde_json::from_str::<TraceEvent>(RECORDED_DROP).unwrap())
    }

    #[tokio::test]
    async fn a_drop_becomes_one_report_written_with_the_agents_token() {
        let fake = FakeApiServer::builder()
            .with_manifests(deploy_dir())
            .token(AGENT_TOKEN, Identity::service_account("netpol-trace", "netpol-trace"))
            .start()
            .await;
        let (agent, tx) = agent_with_feed(&fake, fake.client_with_token(AGENT_TOKEN)).await;
        tx.send(drop_event()).unwrap();
        let report = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                // The counts come at once; the proposed fix follows when the planner (off the
                // agent's loop) has planned it.
                let found = fake.objects("dropreports").into_iter().find(|r| {
                    r["status"]["nodes"].as_array().is_some_and(|n| !n.is_empty())
                        && r["status"]["fix"]["phase"] == "Proposed"
                });
                if let Some(r) = found {
                    return r;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the report is written with its status");
        assert_eq!(report["metadata"]["namespace"], "db");
        assert_eq!(report["spec"]["source"]["workload"], "web-1");
        assert_eq!(report["spec"]["destination"]["namespace"], "db");
        assert_eq!(report["spec"]["port"], 3306);
        assert!(report["spec"].get("decision").is_none(), "agents never decide");
        let status = &report["status"];
        assert_eq!(status["state"], "Dropping");
        assert_eq!(status["count"], 3);
        let node = &status["nodes"][0];
        assert_eq!(
            (node["node"].as_str(), node["ifname"].as_str()),
            (Some("node-1"), Some("cali0"))
        );
        assert_eq!(node["reason"], "NETFILTER_DROP");
        assert_eq!(node["fromSourceVeth"], false, "10.0.1.5 is not routed to cali0 here");
        let policy = &status["attribution"]["policies"][0];
        assert_eq!(
            (policy["kind"].as_str(), policy["name"].as_str()),
            (Some("NetworkPolicy"), Some("mysql-ingress"))
        );
        assert_eq!(policy["direction"], "ingress");
        assert!(status["attribution"]["hint"].as_str().is_some_and(|h| h.contains("3307")));
        assert_eq!(status["fix"]["phase"], "Proposed");
        let patch = &status["fix"]["patches"][0];
        assert_eq!(patch["action"], "patch");
        assert!(patch.get("jsonPatch").is_some(), "camelCase keys: {patch}");
        assert_eq!(
            patch["newlyAllowedCount"].as_u64(),
            patch["newlyAllowed"].as_array().map(|pairs| pairs.len() as u64),
            "the blast radius sample says how many pairs there are: {patch}"
        );

        // A second drop of the same flow updates the same report.
        let mut later: Value = serde_json::from_str(RECORDED_DROP).unwrap();
        later["count"] = 7.into();
        later["time"] = "2026-01-01T00:00:05Z".into();
        tokio::time::sleep(Duration::from_millis(150)).await;
        tx.send(TracerMessage::Event(serde_json::from_value(later).unwrap())).unwrap();
        tokio::time::timeout(Duration::from_secs(10), async {
            while fake.objects("dropreports")[0]["status"]["count"] != 7 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the later count is written");
        assert_eq!(fake.objects("dropreports").len(), 1, "one report per flow");
        let writes = fake.requests();
        assert!(
            !writes.iter().any(|r| r.path.contains("networkpolicies") && r.method != "GET"),
            "the agent never writes a NetworkPolicy"
        );
        agent.stop().await.unwrap();
    }

    #[test]
    fn the_wait_doubles_up_to_the_cap() {
        let waits: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(backoff(u32::MAX), RETRY_MAX);
    }

    #[tokio::test]
    async fn a_failed_status_write_is_retried_with_backoff_without_a_new_drop() {
        let fake = FakeApiServer::builder()
            .with_manifests(deploy_dir())
            .token(AGENT_TOKEN, Identity::service_account("netpol-trace", "netpol-trace"))
            .start()
            .await;
        // The first two status writes fail as an overloaded API server answers.
        fake.fail_next("update", "dropreports/status", 503);
        fake.fail_next("update", "dropreports/status", 500);
        let (agent, tx) = agent_with_feed(&fake, fake.client_with_token(AGENT_TOKEN)).await;
        tx.send(drop_event()).unwrap();
        // One drop only: the counts must still arrive, by the feed's own retries.
        let report = tokio::time::timeout(Duration::from_secs(15), async {
            loop {
                let found =
                    fake.objects("dropreports").into_iter().find(|r| r["status"]["count"] == 3);
                if let Some(r) = found {
                    return r;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the status is written after the failures");
        assert_eq!(report["status"]["nodes"][0]["node"], "node-1");
        let codes: Vec<u16> = fake
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/status") && r.method == "PUT")
            .map(|r| r.status)
            .take(3)
            .collect();
        assert_eq!(codes, [503, 500, 200], "two failures, then the retry that succeeds");
        agent.stop().await.unwrap();
    }

    #[tokio::test]
    async fn without_the_crd_the_agent_keeps_serving_and_tries_once() {
        let fake = FakeApiServer::start().await;
        let (agent, tx) = agent_with_feed(&fake, fake.client()).await;
        tx.send(drop_event()).unwrap();
        let mut later: Value = serde_json::from_str(RECORDED_DROP).unwrap();
        later["count"] = 9.into();
        tokio::time::sleep(Duration::from_millis(300)).await;
        tx.send(TracerMessage::Event(serde_json::from_value(later).unwrap())).unwrap();
        let key = crate::trace::flows::ConnKey {
            src: "10.0.1.5".parse().unwrap(),
            dst: "10.0.2.7".parse().unwrap(),
            dport: 3306,
        };
        tokio::time::timeout(Duration::from_secs(10), async {
            while agent.state().store().get(&key).is_none_or(|r| r.drop.count != 9) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("drops still reach the store");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let creates = fake
            .requests()
            .iter()
            .filter(|r| r.path.contains("dropreports") && r.method == "POST")
            .count();
        assert_eq!(creates, 1, "a missing CRD is not hammered");
        agent.stop().await.unwrap();
    }
}

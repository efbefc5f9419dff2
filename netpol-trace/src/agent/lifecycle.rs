//! The agent's lifecycle: HTTP up first (so probes get answers), reflectors started, programs
//! loaded and attached, then one loop that attributes what the kernel reports, keeps the drop
//! store and the metrics, re-attributes open flows when the cluster changes, queues Events and
//! prints NDJSON. Stopping detaches everything and flushes the Events.

use std::{
    collections::BTreeSet,
    io::Write,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::{sync::watch, task::JoinHandle};

use crate::{
    k8s::{events::EventRecorder, watch::ClusterCache},
    trace::{
        EventSource, RestoredRecord, SummaryRecord, TraceEvent, TracerMessage, TracerOptions,
        flows::ConnKey, tracer::TracerError,
    },
};

use super::{
    access::{Access, Authorizer},
    attribute::attribute_drop,
    cluster::ClusterView,
    events::{self, EventQueue, REPORTING_CONTROLLER, drop_event},
    feed::{self, Feed, FeedOptions},
    http,
    metrics::DropKind,
    planner::{self, FixQueue, Offer, SharedView},
    record::{FlowRecord, FlowState},
    state::AgentState,
    store::{DEFAULT_CAPACITY, IDLE_EXPIRY},
};

/// How often a changed cluster is re-read at most.
pub const REBUILD_INTERVAL: Duration = Duration::from_millis(250);
/// A rebuild waits at least this many times the previous one's duration after it, so that
/// rebuilds of a large, churning cluster take a bounded share of a core.
pub const REBUILD_SPACING: u32 = 4;
/// How often idle flows are looked for in the drop store.
pub const EXPIRY_INTERVAL: Duration = Duration::from_secs(30);
/// How long stopping waits for the aggregated Events to be flushed.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// What to trace (namespace, interfaces, ports).
    pub tracer: TracerOptions,
    /// HTTP address.
    pub listen: SocketAddr,
    /// The node it runs on (`spec.nodeName` of its pod), recorded in every flow.
    pub node_name: Option<String>,
    /// Minimum time between two API writes of the Event about one pod.
    pub event_interval: Duration,
    /// Most flows kept in the drop store.
    pub capacity: usize,
    /// Publish DropReports (the operator feed); `None`: do not.
    pub feed: Option<FeedOptions>,
    /// Who may read `/metrics` and `/drops` (the API server decides).
    pub access: Access,
}

impl Default for AgentOptions {
    fn default() -> Self {
        Self {
            tracer: TracerOptions { capture_packets: false, ..TracerOptions::default() },
            listen: SocketAddr::from(([0, 0, 0, 0], 9090)),
            node_name: None,
            event_interval: crate::k8s::events::DEFAULT_MIN_INTERVAL,
            capacity: DEFAULT_CAPACITY,
            feed: None,
            access: Access::api_server(),
        }
    }
}

/// Why the agent could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The HTTP address could not be bound.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The programs could not be loaded or attached.
    #[error(transparent)]
    Tracer(#[from] TracerError),
    /// The tracer failed after start.
    #[error("the tracer failed: {0}")]
    TracerFailed(String),
    /// NDJSON could not be written.
    #[error("writing NDJSON: {0}")]
    Output(#[source] std::io::Error),
}

/// Where NDJSON lines go (stdout in the command).
pub type Output = Box<dyn Write + Send>;

/// A running agent.
pub struct Agent {
    addr: SocketAddr,
    state: Arc<AgentState>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<SummaryRecord, AgentError>>,
    server: JoinHandle<()>,
}

impl Agent {
    /// Binds the HTTP address, then starts the reflectors, the tracer and the loop in the
    /// background; [`Agent::wait_ready`] tells when it is ready.
    pub async fn start(
        opts: AgentOptions,
        client: kube::Client,
        output: Option<Output>,
    ) -> Result<Self, AgentError> {
        Self::start_with(opts, client, output, None).await
    }

    /// Like [`Agent::start`], with the events of `source` instead of the kernel's (`None`:
    /// the kernel, with `opts.tracer`): recorded events replay through the whole agent.
    pub async fn start_with(
        opts: AgentOptions,
        client: kube::Client,
        output: Option<Output>,
        source: Option<EventSource>,
    ) -> Result<Self, AgentError> {
        super::cluster::limit_allocator_arenas();
        let state = Arc::new(AgentState::new(opts.capacity));
        let listener = http::bind(opts.listen)
            .await
            .map_err(|source| AgentError::Listen { addr: opts.listen, source })?;
        let addr = listener.local_addr().unwrap_or(opts.listen);
        let (stop, stop_rx) = watch::channel(false);
        let authorizer = Arc::new(Authorizer::new(&opts.access, client.clone()));
        let limits = http::Limits::default();
        let server = http::serve(listener, state.clone(), authorizer, limits, stop_rx.clone());
        state.set_running(true);
        tracing::info!(%addr, "HTTP endpoints up");
        let task = tokio::spawn(run(opts, client, output, source, state.clone(), stop_rx));
        Ok(Self { addr, state, stop, task, server })
    }

    /// The bound HTTP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared state (store, metrics, readiness).
    pub fn state(&self) -> &Arc<AgentState> {
        &self.state
    }

    /// Waits until ready; `Err` when the loop ended first (with its error, if any), `Ok(false)`
    /// on timeout.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<bool, AgentError> {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.state.ready() {
            if self.task.is_finished() {
                return match (&mut self.task).await {
                    Ok(Err(e)) => Err(e),
                    _ => Err(AgentError::TracerFailed("the agent stopped".into())),
                };
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(true)
    }

    /// Waits for the loop to end by itself (a tracer failure); never returns while healthy.
    pub async fn finished(&mut self) -> Result<SummaryRecord, AgentError> {
        let result =
            (&mut self.task).await.unwrap_or_else(|e| Err(AgentError::TracerFailed(e.to_string())));
        self.state.set_running(false);
        result
    }

    /// Stops: detaches the programs, flushes Events, closes the HTTP server; returns the
    /// kernel counters.
    pub async fn stop(mut self) -> Result<SummaryRecord, AgentError> {
        let _ = self.stop.send(true);
        let result = self.finished().await;
        let _ = (&mut self.server).await;
        result
    }
}

/// The loop's working set.
struct Loop {
    opts: AgentOptions,
    state: Arc<AgentState>,
    view: Arc<ClusterView>,
    /// The view the fix planner reads.
    shared: SharedView,
    /// Flows waiting for a fix plan.
    plans: Arc<FixQueue>,
    /// Whether a rebuild is pending or running: an unknown endpoint may be a pod the caches
    /// have not caught up with yet.
    catching_up: bool,
    events: Option<EventQueue>,
    output: Option<Output>,
    interfaces: BTreeSet<String>,
    /// Bumped on every rebuild of `view`.
    generation: u64,
    /// Where DropReport updates go.
    feed: Option<Feed>,
}

async fn run(
    opts: AgentOptions,
    client: kube::Client,
    output: Option<Output>,
    source: Option<EventSource>,
    state: Arc<AgentState>,
    mut stop: watch::Receiver<bool>,
) -> Result<SummaryRecord, AgentError> {
    let cache = ClusterCache::start(&client);
    let mut changes = cache.changes();
    let instance = opts.node_name.clone().unwrap_or_else(|| "netpol-trace".into());
    let publisher = opts.feed.clone().map(|mut feed_opts| {
        if feed_opts.netns.is_none() {
            feed_opts.netns = opts.tracer.netns.clone();
        }
        feed::start(client.clone(), feed_opts)
    });
    let recorder = EventRecorder::new(client, REPORTING_CONTROLLER, instance)
        .with_min_interval(opts.event_interval);
    let (queue, events_task) = events::start(recorder, state.metrics.clone());

    let mut source = match source {
        Some(source) => source,
        None => {
            let tracer_opts = opts.tracer.clone();
            match tokio::task::spawn_blocking(move || EventSource::kernel(tracer_opts)).await {
                Ok(Ok(source)) => source,
                Ok(Err(e)) => return Err(e.into()),
                Err(e) => return Err(AgentError::TracerFailed(e.to_string())),
            }
        }
    };
    tracing::info!(interfaces = ?source.interfaces, "programs attached");
    state.metrics.set_degraded(source.degraded.clone());
    let view = Arc::new(ClusterView::empty());
    let shared: SharedView = Arc::new(Mutex::new(view.clone()));
    let plans = Arc::new(FixQueue::new(planner::QUEUE_CAPACITY));
    let planner_feed = publisher.as_ref().map(|(feed, _)| feed.clone());
    let worker = planner::spawn(plans.clone(), shared.clone(), state.clone(), planner_feed)
        .map_err(|e| AgentError::TracerFailed(format!("starting the fix planner: {e}")))?;
    let mut lp = Loop {
        interfaces: source.interfaces.iter().cloned().collect(),
        opts,
        state: state.clone(),
        view,
        shared,
        plans,
        catching_up: true,
        events: Some(queue),
        output,
        generation: 0,
        feed: publisher.as_ref().map(|(feed, _)| feed.clone()),
    };
    state.metrics.set_attached(lp.interfaces.len());
    state.set_attached(true);

    let mut rebuild = tokio::time::interval(REBUILD_INTERVAL);
    rebuild.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut expiry = tokio::time::interval(EXPIRY_INTERVAL);
    expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut dirty = true;
    let mut building: Option<JoinHandle<(ClusterView, Duration)>> = None;
    let mut next_build = tokio::time::Instant::now();
    let result = loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break Ok(()),
            changed = changes.changed() => {
                if changed.is_ok() { dirty = true; lp.catching_up = true; }
            }
            _ = rebuild.tick() => {
                if dirty && building.is_none() && cache.is_synced()
                    && tokio::time::Instant::now() >= next_build
                {
                    dirty = false;
                    let reader = cache.reader();
                    building = Some(tokio::task::spawn_blocking(move || {
                        let started = Instant::now();
                        let view = ClusterView::build(&reader);
                        (view, started.elapsed())
                    }));
                }
            }
            _ = expiry.tick() => {
                let mut store = state.store();
                if store.expire_idle(chrono::Utc::now(), IDLE_EXPIRY) > 0 {
                    state.metrics.set_flows_dropping(store.dropping());
                    tokio::task::spawn_blocking(super::cluster::release_free_memory);
                }
            }
            built = async { building.as_mut().expect("guarded").await }, if building.is_some() => {
                building = None;
                match built {
                    Ok((view, took)) => {
                        next_build = tokio::time::Instant::now() + took * REBUILD_SPACING;
                        lp.catching_up = dirty;
                        lp.rebuild(view);
                        state.set_synced(true);
                        tokio::task::spawn_blocking(super::cluster::release_free_memory);
                    }
                    Err(e) => tracing::warn!(error = %e, "rebuilding the cluster view failed"),
                }
            }
            msg = source.events.recv() => match msg {
                Some(TracerMessage::Failed(e)) => break Err(AgentError::TracerFailed(e)),
                Some(msg) => {
                    if let Err(e) = lp.handle(msg) {
                        break Err(e);
                    }
                }
                None => break Err(AgentError::TracerFailed("the tracer thread ended".into())),
            },
        }
    };
    state.set_attached(false);
    let summary = tokio::task::spawn_blocking(move || source.stop()).await.unwrap_or_default();
    tracing::info!(?summary, "programs detached");
    lp.events.take();
    lp.plans.close();
    let _ = tokio::task::spawn_blocking(move || worker.join()).await;
    lp.feed.take();
    if let Some((feed, task)) = publisher {
        drop(feed);
        if tokio::time::timeout(FLUSH_TIMEOUT, task).await.is_err() {
            tracing::warn!("DropReport updates not written in time");
        }
    }
    if tokio::time::timeout(FLUSH_TIMEOUT, events_task).await.is_err() {
        tracing::warn!("aggregated Events not flushed in time");
    }
    if let Some(out) = lp.output.as_mut() {
        print(out, &TraceEvent::Summary(summary.clone()))?;
    }
    result.map(|()| summary)
}

fn print(out: &mut Output, ev: &TraceEvent) -> Result<(), AgentError> {
    let line = serde_json::to_string(ev).map_err(|e| AgentError::Output(e.into()))?;
    writeln!(out, "{line}").and_then(|()| out.flush()).map_err(AgentError::Output)
}

impl Loop {
    /// Takes the rebuilt view and re-attributes every flow still dropping (the engine only;
    /// their fixes are planned again by the worker).
    fn rebuild(&mut self, view: ClusterView) {
        self.view = Arc::new(view);
        *self.shared.lock().unwrap_or_else(|e| e.into_inner()) = self.view.clone();
        self.generation += 1;
        let mut store = self.state.store();
        for key in store.dropping_keys() {
            if let Some(record) = store.get_mut(&key) {
                let a = attribute_drop(&self.view.inventory, record);
                self.state.metrics.observe_evaluation(a.took);
                record.report =
                    Some(Arc::new(feed::basis(&self.view, &self.view.inventory, record, &a, None)));
                record.attributed = Some((self.generation, a.denial));
                self.plan(key, record);
            }
        }
        tracing::debug!(
            pods = self.view.inventory.pods().len(),
            policies = self.view.inventory.policies().len(),
            "cluster view rebuilt"
        );
    }

    fn handle(&mut self, msg: TracerMessage) -> Result<(), AgentError> {
        match msg {
            TracerMessage::Event(TraceEvent::Drop(dropped)) => {
                let started = Instant::now();
                let node = self.opts.node_name.as_deref();
                let mut store = self.state.store();
                let update = store.record_drop(&dropped, node);
                let key =
                    ConnKey { src: dropped.src.ip, dst: dropped.dst.ip, dport: dropped.dst.port };
                let Some(record) = store.get_mut(&key) else { return Ok(()) };
                let metrics = &self.state.metrics;
                let denial = match &record.attributed {
                    Some((generation, denial)) if *generation == self.generation => denial.clone(),
                    _ => {
                        let a = attribute_drop(&self.view.inventory, record);
                        metrics.observe_evaluation(a.took);
                        // An endpoint the caches may not hold yet is not called an outside
                        // address for good: the next rebuild attributes the flow again.
                        let unknown = record.drop.src.namespace.is_none()
                            || record.drop.dst.namespace.is_none();
                        record.attributed = if unknown && self.catching_up {
                            None
                        } else {
                            Some((self.generation, a.denial.clone()))
                        };
                        record.report = Some(Arc::new(feed::basis(
                            &self.view,
                            &self.view.inventory,
                            record,
                            &a,
                            None,
                        )));
                        metrics.observe_attribution(started.elapsed());
                        self.plan(key, record);
                        a.denial
                    }
                };
                metrics.add_drops(
                    DropKind {
                        destination_namespace: record.drop.dst.namespace.as_deref(),
                        protocol: record.drop.protocol.as_str(),
                        direction: record.drop.policies.first().map(|p| p.direction),
                        reason: &record.drop.reason,
                    },
                    update.new_drops,
                );
                let record = record.clone();
                metrics.set_flows_dropping(store.dropping());
                drop(store);
                if let Some(queue) = &self.events
                    && let Some(ev) = drop_event(&record, denial.as_deref(), |ns, pod| {
                        self.view.pod_reference(ns, pod)
                    })
                {
                    queue.offer(ev);
                }
                if let (Some(feed), Some(basis)) = (&self.feed, &record.report) {
                    feed.offer(&record, basis);
                }
                self.emit(&TraceEvent::Drop(record.drop))?;
            }
            TracerMessage::Event(TraceEvent::Restored(mut restored)) => {
                let named = self.restore(&mut restored);
                if named {
                    self.state.metrics.add_restored();
                    self.emit(&TraceEvent::Restored(restored))?;
                }
            }
            TracerMessage::Event(TraceEvent::Summary(_)) | TracerMessage::Packet(_) => {}
            TracerMessage::Attached(i) => {
                tracing::info!(iface = %i, "attached");
                self.interfaces.insert(i);
                self.state.metrics.set_attached(self.interfaces.len());
            }
            TracerMessage::Detached(i) => {
                tracing::info!(iface = %i, "interface gone");
                self.interfaces.remove(&i);
                self.state.metrics.set_attached(self.interfaces.len());
            }
            TracerMessage::Counters(c) => {
                self.state.metrics.set_events_lost(c.events_lost);
                self.state.metrics.set_flow_map(c.flow_map);
            }
            TracerMessage::Failed(_) => {}
        }
        Ok(())
    }

    /// Offers the flow to the fix planner under its report's identity (once per attribution,
    /// that is once per cluster generation); an identity planned already gives its plan at
    /// once; a full queue is counted.
    fn plan(&self, key: ConnKey, record: &mut FlowRecord) {
        let Some(identity) = record.report.as_ref().map(|basis| basis.identity()) else { return };
        match self.plans.offer(identity, key, self.generation) {
            Offer::Planned(plan) => plan.apply(record),
            Offer::Full => self.state.metrics.add_plans_skipped(),
            Offer::Queued | Offer::AlreadyQueued => {}
        }
    }

    /// Marks the flow restored; names the line's ends as the record does.
    fn restore(&mut self, restored: &mut RestoredRecord) -> bool {
        let mut store = self.state.store();
        let named = match store.record_restored(restored) {
            Some(record) => {
                debug_assert_eq!(record.state, FlowState::Restored);
                record.name_restored(restored);
                if let (Some(feed), Some(basis)) = (&self.feed, &record.report) {
                    feed.offer(record, basis);
                }
                true
            }
            None => false,
        };
        self.state.metrics.set_flows_dropping(store.dropping());
        named
    }

    fn emit(&mut self, ev: &TraceEvent) -> Result<(), AgentError> {
        match self.output.as_mut() {
            Some(out) => print(out, ev),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `trace -o json` line as the kernel side produced it: web-1 -> mysql-0:3306 dropped.
    const RECORDED_DROP: &str = r#"{"type":"drop","time":"2026-01-01T00:00:02Z","first_seen":"2026-01-01T00:00:00Z","reason":"NETFILTER_DROP","reason_raw":12,"ifname":"cali0","count":3,"protocol":"TCP","src":{"ip":"10.0.1.5","port":51514},"dst":{"ip":"10.0.2.7","port":3306},"policies":[],"evidence":{"syn_left_source":3,"syn_reached_destination":0,"synack_returned":0,"dropped":3}}"#;

    #[tokio::test]
    async fn recorded_kernel_events_replay_through_the_agent_without_root() {
        let fake = fake_apiserver::FakeApiServer::start().await;
        crate::k8s::list::tests::seed(&fake);
        let (tx, source) = EventSource::channel(vec!["cali0".into()]);
        let opts = AgentOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            node_name: Some("node-1".into()),
            ..AgentOptions::default()
        };
        let mut agent = Agent::start_with(opts, fake.client(), None, Some(source)).await.unwrap();
        assert!(agent.wait_ready(Duration::from_secs(10)).await.unwrap(), "ready in time");

        let drop: TraceEvent = serde_json::from_str(RECORDED_DROP).unwrap();
        tx.send(TracerMessage::Event(drop)).unwrap();
        let key = ConnKey {
            src: "10.0.1.5".parse().unwrap(),
            dst: "10.0.2.7".parse().unwrap(),
            dport: 3306,
        };
        let record = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Some(record) = agent.state().store().get(&key).cloned() {
                    return record;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the replayed drop reaches the store");
        assert_eq!(record.node.as_deref(), Some("node-1"));
        assert_eq!(record.drop.src.pod.as_deref(), Some("web-1"));
        assert_eq!(record.drop.dst.pod.as_deref(), Some("mysql-0"));
        assert_eq!(record.drop.policies.len(), 1);
        assert_eq!(record.drop.policies[0].name, "mysql-ingress");
        assert!(record.drop.hint.as_deref().is_some_and(|h| h.contains("3307")), "{record:?}");
        assert!(record.fix.is_some(), "a port typo has a fix");

        let summary = agent.stop().await.unwrap();
        assert_eq!(summary.interfaces, ["cali0"]);
    }
}

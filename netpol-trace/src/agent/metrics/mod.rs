//! The agent's Prometheus metrics, kept and encoded by `prometheus-client` in the OpenMetrics
//! text format. Labels are named as Hubble names them (`destination_namespace`, never
//! `namespace`, which Prometheus itself sets at scrape time; `protocol`, `direction`,
//! `reason`). Label cardinality is bounded: past [`MAX_DROP_SERIES`] drop series, further
//! namespaces are counted under [`OTHER_NAMESPACE`].

use std::{
    collections::HashSet,
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram, info::Info},
    registry::Registry,
};

use crate::policy::Direction;

#[cfg(test)]
pub(crate) mod parse;

/// Content type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Most `netpol_trace_drops_total` series before namespaces are folded into
/// [`OTHER_NAMESPACE`].
pub const MAX_DROP_SERIES: usize = 500;
/// The `destination_namespace` of drops past [`MAX_DROP_SERIES`].
pub const OTHER_NAMESPACE: &str = "_other";
/// The `destination_namespace` of drops towards an address that is no known pod or Service.
pub const UNKNOWN_NAMESPACE: &str = "_unknown";
/// The `direction` of drops no policy explains (yet).
pub const UNKNOWN_DIRECTION: &str = "unknown";
/// Upper bounds (seconds) of the policy evaluation histogram buckets.
pub const EVALUATION_BUCKETS: [f64; 10] =
    [0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5];
/// Upper bounds (seconds) of the per-flow attribution histogram: finer, since the goal is
/// under a millisecond.
pub const ATTRIBUTION_BUCKETS: [f64; 12] = [
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.005, 0.05, 0.5,
    5.0,
];

/// Every metric family the agent exposes, by its sample name (counters with `_total`, the
/// build info with `_info`; histograms add `_bucket`, `_sum` and `_count`).
pub const FAMILIES: [&str; 16] = [
    "netpol_trace_build_info",
    "netpol_trace_drops_total",
    "netpol_trace_restored_total",
    "netpol_trace_events_lost_total",
    "netpol_trace_attached_interfaces",
    "netpol_trace_flows_dropping",
    "netpol_trace_flow_map_entries",
    "netpol_trace_flow_map_capacity",
    "netpol_trace_flow_map_evictions_total",
    "netpol_trace_flow_map_full_total",
    "netpol_trace_degraded",
    "netpol_trace_policy_evaluation_seconds",
    "netpol_trace_attribution_seconds",
    "netpol_trace_fix_plans_skipped_total",
    "netpol_trace_k8s_events_total",
    "netpol_trace_k8s_errors_total",
];

/// The labels of one drop series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    destination_namespace: String,
    protocol: String,
    direction: String,
    reason: String,
}

/// What a batch of dropped SYNs is counted under.
#[derive(Debug, Clone, Copy)]
pub struct DropKind<'a> {
    /// The destination's namespace (None: not a known pod or Service).
    pub destination_namespace: Option<&'a str>,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: &'a str,
    /// The direction of the policy that denied the flow, when one is known.
    pub direction: Option<Direction>,
    /// The kernel's drop reason, e.g. `NETFILTER_DROP`.
    pub reason: &'a str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    operation: String,
    reason: String,
}

/// Outcome of a Kubernetes Event, for `netpol_trace_k8s_events_total{result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventResult {
    /// Posted to the API server.
    Posted,
    /// The API server refused it or could not be reached.
    Failed,
    /// Held back by the rate limit.
    Suppressed,
}

impl EventResult {
    fn label(self) -> &'static str {
        match self {
            Self::Posted => "posted",
            Self::Failed => "failed",
            Self::Suppressed => "suppressed",
        }
    }
}

/// A counter that mirrors a total kept elsewhere (the kernel's, the flow map's): it follows
/// the total upwards and never goes down.
fn follow(counter: &Counter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

/// The agent's metrics. Cheap to update from any task.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    drops: Family<DropLabels, Counter>,
    drop_series: Mutex<HashSet<DropLabels>>,
    drops_sum: AtomicU64,
    restored: Counter,
    events_lost: Counter,
    attached: Gauge,
    flows_dropping: Gauge,
    flow_map_entries: Gauge,
    flow_map_capacity: Gauge,
    flow_map_evictions: Counter,
    flow_map_full: Counter,
    degraded_gauge: Gauge,
    /// Why the programs run tc-only, if they do.
    degraded: Mutex<Option<String>>,
    evaluation: Histogram,
    attribution: Histogram,
    plans_skipped: Counter,
    k8s_events: Family<ResultLabels, Counter>,
    k8s_errors: Family<ErrorLabels, Counter>,
}

/// The labels of `netpol_trace_build_info`: the version, the commit when the build knew it
/// (`NETPOL_TRACE_COMMIT` at build time), and whether the kernel programs are embedded.
pub fn build_labels() -> Vec<(String, String)> {
    let mut labels = vec![("version".to_string(), env!("CARGO_PKG_VERSION").to_string())];
    if let Some(commit) = option_env!("NETPOL_TRACE_COMMIT").filter(|c| !c.is_empty()) {
        labels.push(("commit".into(), commit.into()));
    }
    labels.push(("ebpf_embedded".into(), crate::datapath::object::is_embedded().to_string()));
    labels
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let m = Self {
            registry: Registry::default(),
            drops: Family::default(),
            drop_series: Mutex::default(),
            drops_sum: AtomicU64::new(0),
            restored: Counter::default(),
            events_lost: Counter::default(),
            attached: Gauge::default(),
            flows_dropping: Gauge::default(),
            flow_map_entries: Gauge::default(),
            flow_map_capacity: Gauge::default(),
            flow_map_evictions: Counter::default(),
            flow_map_full: Counter::default(),
            degraded_gauge: Gauge::default(),
            degraded: Mutex::default(),
            evaluation: Histogram::new(EVALUATION_BUCKETS),
            attribution: Histogram::new(ATTRIBUTION_BUCKETS),
            plans_skipped: Counter::default(),
            k8s_events: Family::default(),
            k8s_errors: Family::default(),
        };
        registry.register(
            "netpol_trace_build",
            "The agent's version, commit and whether its kernel programs are embedded",
            Info::new(build_labels()),
        );
        registry.register(
            "netpol_trace_drops",
            "TCP SYNs dropped on this node, by destination namespace, protocol, direction of \
             the denying policy and kernel drop reason",
            m.drops.clone(),
        );
        let counters = [
            ("netpol_trace_restored", "Dropped flows whose handshake later completed", &m.restored),
            (
                "netpol_trace_events_lost",
                "New-flow notices the kernel could not deliver (ring buffer full)",
                &m.events_lost,
            ),
            (
                "netpol_trace_flow_map_evictions",
                "Flows removed from the kernel flow map early to make room",
                &m.flow_map_evictions,
            ),
            (
                "netpol_trace_flow_map_full",
                "New flows the kernel could not record because the flow map was full",
                &m.flow_map_full,
            ),
            (
                "netpol_trace_fix_plans_skipped",
                "Dropped flows left without a suggested fix because the planning queue was full",
                &m.plans_skipped,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        let gauges = [
            (
                "netpol_trace_attached_interfaces",
                "Pod interfaces the programs are attached to",
                &m.attached,
            ),
            (
                "netpol_trace_flows_dropping",
                "Flows currently dropping (no handshake since their last drop)",
                &m.flows_dropping,
            ),
            (
                "netpol_trace_flow_map_entries",
                "Flows held in the kernel flow map",
                &m.flow_map_entries,
            ),
            (
                "netpol_trace_flow_map_capacity",
                "Capacity of the kernel flow map",
                &m.flow_map_capacity,
            ),
            (
                "netpol_trace_degraded",
                "1 when the programs run tc-only (no drop tracepoint: drops inferred, reason unknown)",
                &m.degraded_gauge,
            ),
        ];
        for (name, help, gauge) in gauges {
            registry.register(name, help, gauge.clone());
        }
        registry.register(
            "netpol_trace_policy_evaluation_seconds",
            "Time to attribute one drop to pods and NetworkPolicies",
            m.evaluation.clone(),
        );
        registry.register(
            "netpol_trace_attribution_seconds",
            "Time the agent took to attribute one new dropped flow (store and engine; the fix \
             is planned later)",
            m.attribution.clone(),
        );
        registry.register(
            "netpol_trace_k8s_events",
            "Kubernetes Events about drops, by result (posted, failed, suppressed)",
            m.k8s_events.clone(),
        );
        registry.register(
            "netpol_trace_k8s_errors",
            "Failed requests to the API server, by operation and error reason",
            m.k8s_errors.clone(),
        );
        Self { registry, ..m }
    }
}

impl Metrics {
    fn degraded_lock(&self) -> MutexGuard<'_, Option<String>> {
        self.degraded.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts `n` dropped SYNs of one kind.
    pub fn add_drops(&self, kind: DropKind<'_>, n: u64) {
        if n == 0 {
            return;
        }
        let mut labels = DropLabels {
            destination_namespace: kind.destination_namespace.unwrap_or(UNKNOWN_NAMESPACE).into(),
            protocol: kind.protocol.into(),
            direction: kind.direction.map_or(UNKNOWN_DIRECTION, Direction::spec_field).into(),
            reason: kind.reason.into(),
        };
        {
            let mut series = self.drop_series.lock().unwrap_or_else(|e| e.into_inner());
            if !series.contains(&labels) {
                if series.len() >= MAX_DROP_SERIES {
                    labels.destination_namespace = OTHER_NAMESPACE.into();
                }
                series.insert(labels.clone());
            }
        }
        self.drops.get_or_create(&labels).inc_by(n);
        self.drops_sum.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a flow restored.
    pub fn add_restored(&self) {
        self.restored.inc();
    }

    /// Sets the kernel's lost-notice counter (it only grows).
    pub fn set_events_lost(&self, total: u64) {
        follow(&self.events_lost, total);
    }

    /// Sets how many interfaces are attached.
    pub fn set_attached(&self, n: usize) {
        self.attached.set(n as i64);
    }

    /// Sets how many flows are dropping.
    pub fn set_flows_dropping(&self, n: usize) {
        self.flows_dropping.set(n as i64);
    }

    /// Sets the kernel flow map's pressure (entries, evictions, full).
    pub fn set_flow_map(&self, pressure: crate::datapath::FlowMapPressure) {
        self.flow_map_entries.set(pressure.entries as i64);
        self.flow_map_capacity.set(pressure.capacity as i64);
        follow(&self.flow_map_evictions, pressure.evictions);
        follow(&self.flow_map_full, pressure.full);
    }

    /// Sets why the programs run tc-only (no drop tracepoint), or `None`.
    pub fn set_degraded(&self, why: Option<String>) {
        self.degraded_gauge.set(i64::from(why.is_some()));
        *self.degraded_lock() = why;
    }

    /// Why the programs run tc-only, if they do (for `/readyz`'s body).
    pub fn degraded(&self) -> Option<String> {
        self.degraded_lock().clone()
    }

    /// Records one policy evaluation.
    pub fn observe_evaluation(&self, took: Duration) {
        self.evaluation.observe(took.as_secs_f64());
    }

    /// Records the agent's time to attribute one new flow (store update and engine).
    pub fn observe_attribution(&self, took: Duration) {
        self.attribution.observe(took.as_secs_f64());
    }

    /// Counts a flow not queued for fix planning because the queue was full.
    pub fn add_plans_skipped(&self) {
        self.plans_skipped.inc();
    }

    /// Counts a Kubernetes Event outcome.
    pub fn add_k8s_event(&self, result: EventResult) {
        self.k8s_events.get_or_create(&ResultLabels { result: result.label().into() }).inc();
    }

    /// Counts a failed API request: `operation` names what was attempted (e.g.
    /// `create_event`), the reason is the error's [`crate::k8s::Error::label`].
    pub fn add_k8s_error(&self, operation: &'static str, error: &crate::k8s::Error) {
        let labels = ErrorLabels { operation: operation.into(), reason: error.label().into() };
        self.k8s_errors.get_or_create(&labels).inc();
    }

    /// Total dropped SYNs counted so far.
    pub fn drops_total(&self) -> u64 {
        self.drops_sum.load(Ordering::Relaxed)
    }

    /// The OpenMetrics text exposition of every metric (ends with `# EOF`).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
pub(crate) mod tests;

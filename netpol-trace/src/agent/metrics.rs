//! The agent's Prometheus metrics, rendered in the text exposition format (version 0.0.4).
//! Label cardinality is bounded: drops are labelled by the destination's namespace and the
//! drop reason only, and past [`MAX_DROP_SERIES`] namespaces/reason pairs further namespaces
//! are counted under [`OTHER_NAMESPACE`].

use std::{
    collections::BTreeMap,
    fmt::Write,
    sync::{Mutex, MutexGuard},
    time::Duration,
};

/// Content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Most `netpol_trace_drops_total` series before namespaces are folded into
/// [`OTHER_NAMESPACE`].
pub const MAX_DROP_SERIES: usize = 500;
/// The `namespace` label of drops past [`MAX_DROP_SERIES`].
pub const OTHER_NAMESPACE: &str = "_other";
/// The `namespace` label of drops towards an address that is no known pod or Service.
pub const UNKNOWN_NAMESPACE: &str = "_unknown";
/// Upper bounds (seconds) of the policy evaluation histogram buckets.
pub const EVALUATION_BUCKETS: [f64; 10] =
    [0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5];

/// Upper bounds (seconds) of the per-flow attribution histogram: finer, since the goal is
/// under a millisecond.
pub const ATTRIBUTION_BUCKETS: [f64; 12] = [
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.005, 0.05, 0.5,
    5.0,
];

#[derive(Debug, Default)]
struct Histogram {
    buckets: [u64; EVALUATION_BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Debug, Default)]
struct Values {
    drops: BTreeMap<(String, String), u64>,
    restored: u64,
    events_lost: u64,
    attached: u64,
    flows_dropping: u64,
    evaluation: Histogram,
    attribution: Histogram,
    attribution_buckets: [u64; ATTRIBUTION_BUCKETS.len()],
    plans_skipped: u64,
    k8s_events: BTreeMap<&'static str, u64>,
    flow_map: crate::datapath::FlowMapPressure,
    /// Why the programs run tc-only, if they do.
    degraded: Option<String>,
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

/// The agent's metrics. Cheap to update from any task.
#[derive(Debug, Default)]
pub struct Metrics {
    values: Mutex<Values>,
}

impl Metrics {
    fn lock(&self) -> MutexGuard<'_, Values> {
        self.values.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts dropped SYNs towards `namespace` (None: not a known pod or Service).
    pub fn add_drops(&self, namespace: Option<&str>, reason: &str, n: u64) {
        if n == 0 {
            return;
        }
        let mut v = self.lock();
        let ns = namespace.unwrap_or(UNKNOWN_NAMESPACE).to_string();
        let mut key = (ns, reason.to_string());
        if !v.drops.contains_key(&key) && v.drops.len() >= MAX_DROP_SERIES {
            key.0 = OTHER_NAMESPACE.to_string();
        }
        *v.drops.entry(key).or_default() += n;
    }

    /// Counts a flow restored.
    pub fn add_restored(&self) {
        self.lock().restored += 1;
    }

    /// Sets the kernel's lost-notice counter (it only grows).
    pub fn set_events_lost(&self, total: u64) {
        let mut v = self.lock();
        v.events_lost = v.events_lost.max(total);
    }

    /// Sets how many interfaces are attached.
    pub fn set_attached(&self, n: usize) {
        self.lock().attached = n as u64;
    }

    /// Sets how many flows are dropping.
    pub fn set_flows_dropping(&self, n: usize) {
        self.lock().flows_dropping = n as u64;
    }

    /// Sets the kernel flow map's pressure (entries, evictions, full).
    pub fn set_flow_map(&self, pressure: crate::datapath::FlowMapPressure) {
        self.lock().flow_map = pressure;
    }

    /// Sets why the programs run tc-only (no drop tracepoint), or `None`.
    pub fn set_degraded(&self, why: Option<String>) {
        self.lock().degraded = why;
    }

    /// Why the programs run tc-only, if they do (for `/readyz`'s body).
    pub fn degraded(&self) -> Option<String> {
        self.lock().degraded.clone()
    }

    /// Records one policy evaluation.
    pub fn observe_evaluation(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let mut v = self.lock();
        for (bucket, bound) in v.evaluation.buckets.iter_mut().zip(EVALUATION_BUCKETS) {
            if secs <= bound {
                *bucket += 1;
            }
        }
        v.evaluation.sum += secs;
        v.evaluation.count += 1;
    }

    /// Records the agent's time to attribute one new flow (store update and engine).
    pub fn observe_attribution(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let mut v = self.lock();
        for (bucket, bound) in v.attribution_buckets.iter_mut().zip(ATTRIBUTION_BUCKETS) {
            if secs <= bound {
                *bucket += 1;
            }
        }
        v.attribution.sum += secs;
        v.attribution.count += 1;
    }

    /// Counts a flow not queued for fix planning because the queue was full.
    pub fn add_plans_skipped(&self) {
        self.lock().plans_skipped += 1;
    }

    /// Counts a Kubernetes Event outcome.
    pub fn add_k8s_event(&self, result: EventResult) {
        *self.lock().k8s_events.entry(result.label()).or_default() += 1;
    }

    /// Total dropped SYNs counted so far.
    pub fn drops_total(&self) -> u64 {
        self.lock().drops.values().sum()
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let v = self.lock();
        let mut out = String::new();
        header(
            &mut out,
            "netpol_trace_drops_total",
            "counter",
            "TCP SYNs dropped on this node, by destination namespace and kernel drop reason.",
        );
        for ((ns, reason), n) in &v.drops {
            let _ = writeln!(
                out,
                "netpol_trace_drops_total{{namespace=\"{}\",reason=\"{}\"}} {n}",
                escape(ns),
                escape(reason)
            );
        }
        let simple: [(&str, &str, &str, u64); 9] = [
            (
                "netpol_trace_restored_total",
                "counter",
                "Dropped flows whose handshake later completed.",
                v.restored,
            ),
            (
                "netpol_trace_events_lost_total",
                "counter",
                "New-flow notices the kernel could not deliver (ring buffer full).",
                v.events_lost,
            ),
            (
                "netpol_trace_attached_interfaces",
                "gauge",
                "Pod interfaces the programs are attached to.",
                v.attached,
            ),
            (
                "netpol_trace_flows_dropping",
                "gauge",
                "Flows currently dropping (no handshake since their last drop).",
                v.flows_dropping,
            ),
            (
                "netpol_trace_flow_map_entries",
                "gauge",
                "Flows held in the kernel flow map.",
                v.flow_map.entries,
            ),
            (
                "netpol_trace_flow_map_capacity",
                "gauge",
                "Capacity of the kernel flow map.",
                v.flow_map.capacity,
            ),
            (
                "netpol_trace_flow_map_evictions_total",
                "counter",
                "Flows removed from the kernel flow map early to make room.",
                v.flow_map.evictions,
            ),
            (
                "netpol_trace_flow_map_full_total",
                "counter",
                "New flows the kernel could not record because the flow map was full.",
                v.flow_map.full,
            ),
            (
                "netpol_trace_degraded",
                "gauge",
                "1 when the programs run tc-only (no drop tracepoint: drops inferred, reason unknown).",
                u64::from(v.degraded.is_some()),
            ),
        ];
        for (name, kind, help, value) in simple {
            header(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
        let name = "netpol_trace_policy_evaluation_seconds";
        header(
            &mut out,
            name,
            "histogram",
            "Time to attribute one drop to pods and NetworkPolicies.",
        );
        for (n, bound) in v.evaluation.buckets.iter().zip(EVALUATION_BUCKETS) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {n}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", v.evaluation.count);
        let _ = writeln!(out, "{name}_sum {}", v.evaluation.sum);
        let _ = writeln!(out, "{name}_count {}", v.evaluation.count);
        let name = "netpol_trace_attribution_seconds";
        header(
            &mut out,
            name,
            "histogram",
            "Time the agent took to attribute one new dropped flow (store and engine; the fix is planned later).",
        );
        for (n, bound) in v.attribution_buckets.iter().zip(ATTRIBUTION_BUCKETS) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {n}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", v.attribution.count);
        let _ = writeln!(out, "{name}_sum {}", v.attribution.sum);
        let _ = writeln!(out, "{name}_count {}", v.attribution.count);
        let name = "netpol_trace_fix_plans_skipped_total";
        header(
            &mut out,
            name,
            "counter",
            "Dropped flows left without a suggested fix because the planning queue was full.",
        );
        let _ = writeln!(out, "{name} {}", v.plans_skipped);
        let name = "netpol_trace_k8s_events_total";
        header(
            &mut out,
            name,
            "counter",
            "Kubernetes Events about drops, by result (posted, failed, suppressed).",
        );
        for (result, n) in &v.k8s_events {
            let _ = writeln!(out, "{name}{{result=\"{result}\"}} {n}");
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value: backslash, double quote and line feed.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    /// One sample of the text format: name, labels, value.
    pub(crate) type Sample = (String, BTreeMap<String, String>, f64);

    /// A strict reader of the text format: every line is a comment (`# HELP`/`# TYPE` of a
    /// declared family) or a sample of a family declared before it.
    pub(crate) fn parse(text: &str) -> Vec<Sample> {
        let mut types: BTreeMap<String, String> = BTreeMap::new();
        let mut samples = vec![];
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                assert!(types.insert(name.into(), kind.into()).is_none(), "TYPE twice: {line}");
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            assert!(!line.starts_with('#') && !line.is_empty(), "unexpected line {line:?}");
            let (series, value) = line.rsplit_once(' ').expect("sample value");
            let value: f64 = value.parse().expect("numeric value");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}').expect("}"))),
                None => (series, BTreeMap::new()),
            };
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s).filter(|f| types.get(*f).is_some_and(|k| k == "histogram"))
                })
                .unwrap_or(name);
            assert!(types.contains_key(family), "sample before its TYPE: {line}");
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{name}");
            samples.push((name.to_string(), labels, value));
        }
        samples
    }

    fn parse_labels(s: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut chars = s.chars().peekable();
        while chars.peek().is_some() {
            let name: String = chars.by_ref().take_while(|&c| c != '=').collect();
            assert_eq!(chars.next(), Some('"'));
            let mut value = String::new();
            loop {
                match chars.next().expect("closing quote") {
                    '\\' => match chars.next().expect("escape") {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    '"' => break,
                    c => value.push(c),
                }
            }
            out.insert(name, value);
            if chars.peek() == Some(&',') {
                chars.next();
            }
        }
        out
    }

    #[test]
    fn the_exposition_parses_back_with_every_family() {
        let m = Metrics::default();
        m.add_drops(Some("db"), "NETFILTER_DROP", 3);
        m.add_drops(Some("db"), "NETFILTER_DROP", 2);
        m.add_drops(None, "TC_INGRESS", 1);
        m.add_drops(Some("we\"ird\\ns\n"), "X", 1);
        m.add_restored();
        m.set_events_lost(4);
        m.set_events_lost(2);
        m.set_attached(7);
        m.set_flows_dropping(1);
        m.observe_evaluation(Duration::from_micros(30));
        m.observe_evaluation(Duration::from_millis(2));
        m.add_k8s_event(EventResult::Posted);
        let samples = parse(&m.render());
        let get = |name: &str, labels: &[(&str, &str)]| -> f64 {
            let want: BTreeMap<String, String> =
                labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            samples
                .iter()
                .find(|(n, l, _)| n == name && *l == want)
                .unwrap_or_else(|| panic!("no {name} {labels:?}"))
                .2
        };
        assert_eq!(
            get("netpol_trace_drops_total", &[("namespace", "db"), ("reason", "NETFILTER_DROP")]),
            5.0
        );
        assert_eq!(
            get("netpol_trace_drops_total", &[("namespace", "_unknown"), ("reason", "TC_INGRESS")]),
            1.0
        );
        assert_eq!(
            get("netpol_trace_drops_total", &[("namespace", "we\"ird\\ns\n"), ("reason", "X")]),
            1.0
        );
        assert_eq!(get("netpol_trace_restored_total", &[]), 1.0);
        assert_eq!(get("netpol_trace_events_lost_total", &[]), 4.0, "counters never go down");
        assert_eq!(get("netpol_trace_attached_interfaces", &[]), 7.0);
        assert_eq!(get("netpol_trace_flows_dropping", &[]), 1.0);
        let h = "netpol_trace_policy_evaluation_seconds";
        assert_eq!(get(&format!("{h}_bucket"), &[("le", "0.00005")]), 1.0);
        assert_eq!(get(&format!("{h}_bucket"), &[("le", "0.005")]), 2.0);
        assert_eq!(get(&format!("{h}_bucket"), &[("le", "+Inf")]), 2.0);
        assert_eq!(get(&format!("{h}_count"), &[]), 2.0);
        assert!((get(&format!("{h}_sum"), &[]) - 0.00203).abs() < 1e-9);
        assert_eq!(get("netpol_trace_k8s_events_total", &[("result", "posted")]), 1.0);
        // Buckets are cumulative.
        let buckets: Vec<f64> =
            samples.iter().filter(|(n, _, _)| n == &format!("{h}_bucket")).map(|s| s.2).collect();
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    }

    #[test]
    fn drop_series_are_bounded() {
        let m = Metrics::default();
        for i in 0..(MAX_DROP_SERIES * 3) {
            m.add_drops(Some(&format!("ns-{i}")), "NETFILTER_DROP", 1);
        }
        m.add_drops(Some("ns-late"), "TC_INGRESS", 1);
        let samples = parse(&m.render());
        let drops: Vec<_> = samples.iter().filter(|s| s.0 == "netpol_trace_drops_total").collect();
        assert!(drops.len() <= MAX_DROP_SERIES + 2, "{} series", drops.len());
        let labels: BTreeSet<&str> =
            drops.iter().flat_map(|s| s.1.keys().map(String::as_str)).collect();
        assert_eq!(labels, BTreeSet::from(["namespace", "reason"]));
        let total: f64 = drops.iter().map(|s| s.2).sum();
        assert_eq!(total, (MAX_DROP_SERIES * 3 + 1) as f64, "nothing is lost, only folded");
        assert_eq!(m.drops_total(), (MAX_DROP_SERIES * 3 + 1) as u64);
        assert!(drops.iter().any(|s| s.1["namespace"] == OTHER_NAMESPACE));
    }
}

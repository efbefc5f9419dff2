use std::collections::{BTreeMap, BTreeSet};

use super::{parse::parse_families, *};
use crate::{datapath::FlowMapPressure, policy::Direction};

pub(crate) use super::parse::parse;

fn drop_kind<'a>(
    ns: Option<&'a str>,
    direction: Option<Direction>,
    reason: &'a str,
) -> DropKind<'a> {
    DropKind { destination_namespace: ns, protocol: "TCP", direction, reason }
}

/// Metrics with at least one sample in every family.
pub(crate) fn every_family() -> Metrics {
    let m = Metrics::default();
    m.add_drops(drop_kind(Some("db"), Some(Direction::Ingress), "NETFILTER_DROP"), 3);
    m.add_drops(drop_kind(Some("db"), Some(Direction::Ingress), "NETFILTER_DROP"), 2);
    m.add_drops(drop_kind(None, None, "TC_INGRESS"), 1);
    m.add_drops(drop_kind(Some("we\"ird\\ns\n"), Some(Direction::Egress), "X"), 1);
    m.add_restored();
    m.set_events_lost(4);
    m.set_events_lost(2);
    m.set_attached(7);
    m.set_flows_dropping(1);
    m.set_flow_map(FlowMapPressure { entries: 10, capacity: 100, evictions: 3, full: 2 });
    m.set_flow_map(FlowMapPressure { entries: 5, capacity: 100, evictions: 1, full: 2 });
    m.set_degraded(Some("no BTF".into()));
    m.observe_evaluation(Duration::from_micros(30));
    m.observe_evaluation(Duration::from_millis(2));
    m.observe_attribution(Duration::from_micros(7));
    m.add_plans_skipped();
    m.add_k8s_event(EventResult::Posted);
    m.add_k8s_error("create_event", &crate::k8s::Error::InvalidObject("x".into()));
    m
}

#[test]
fn the_exposition_parses_back_with_every_family() {
    let m = every_family();
    let text = m.render();
    let (types, samples) = parse_families(&text);
    let get = |name: &str, labels: &[(&str, &str)]| -> f64 {
        let want: BTreeMap<String, String> =
            labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        samples
            .iter()
            .find(|(n, l, _)| n == name && *l == want)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
            .2
    };
    let drops = |ns: &str, direction: &str, reason: &str| {
        get(
            "netpol_trace_drops_total",
            &[
                ("destination_namespace", ns),
                ("protocol", "TCP"),
                ("direction", direction),
                ("reason", reason),
            ],
        )
    };
    assert_eq!(drops("db", "ingress", "NETFILTER_DROP"), 5.0);
    assert_eq!(drops(UNKNOWN_NAMESPACE, UNKNOWN_DIRECTION, "TC_INGRESS"), 1.0);
    assert_eq!(drops("we\"ird\\ns\n", "egress", "X"), 1.0, "label values are escaped");
    assert_eq!(get("netpol_trace_restored_total", &[]), 1.0);
    assert_eq!(get("netpol_trace_events_lost_total", &[]), 4.0, "counters never go down");
    assert_eq!(get("netpol_trace_attached_interfaces", &[]), 7.0);
    assert_eq!(get("netpol_trace_flows_dropping", &[]), 1.0);
    assert_eq!(get("netpol_trace_flow_map_entries", &[]), 5.0, "a gauge follows");
    assert_eq!(get("netpol_trace_flow_map_capacity", &[]), 100.0);
    assert_eq!(get("netpol_trace_flow_map_evictions_total", &[]), 3.0);
    assert_eq!(get("netpol_trace_flow_map_full_total", &[]), 2.0);
    assert_eq!(get("netpol_trace_degraded", &[]), 1.0);
    assert_eq!(get("netpol_trace_fix_plans_skipped_total", &[]), 1.0);
    assert_eq!(get("netpol_trace_k8s_events_total", &[("result", "posted")]), 1.0);
    assert_eq!(
        get(
            "netpol_trace_k8s_errors_total",
            &[("operation", "create_event"), ("reason", "invalid_object")]
        ),
        1.0
    );
    let h = "netpol_trace_policy_evaluation_seconds";
    let bucket = |le: f64| {
        samples
            .iter()
            .find(|(n, l, _)| {
                n == &format!("{h}_bucket") && l["le"].parse::<f64>().is_ok_and(|b| b == le)
            })
            .unwrap_or_else(|| panic!("no bucket {le}"))
            .2
    };
    assert_eq!(bucket(0.000_05), 1.0);
    assert_eq!(bucket(0.005), 2.0);
    assert_eq!(get(&format!("{h}_bucket"), &[("le", "+Inf")]), 2.0);
    assert_eq!(get(&format!("{h}_count"), &[]), 2.0);
    assert!((get(&format!("{h}_sum"), &[]) - 0.00203).abs() < 1e-9);
    assert_eq!(get("netpol_trace_attribution_seconds_count", &[]), 1.0);
    let info = samples.iter().find(|s| s.0 == "netpol_trace_build_info").expect("build info");
    assert_eq!(info.1["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(info.1["ebpf_embedded"], crate::datapath::object::is_embedded().to_string());
    assert_eq!(types["netpol_trace_build"], "info");
    assert_eq!(types["netpol_trace_drops"], "counter");
    assert_eq!(types["netpol_trace_policy_evaluation_seconds"], "histogram");
    let names: BTreeSet<&str> = samples
        .iter()
        .map(|s| {
            let n = s.0.as_str();
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| n.strip_suffix(suffix).filter(|f| f.ends_with("_seconds")))
                .unwrap_or(n)
        })
        .collect();
    assert_eq!(names, FAMILIES.into_iter().collect(), "FAMILIES lists what is exposed");
    assert!(
        samples.iter().all(|s| !s.1.contains_key("namespace")),
        "no `namespace` label: Prometheus sets its own at scrape time"
    );
}

#[test]
fn the_strict_reader_refuses_broken_expositions() {
    let ok = "# TYPE a counter\na_total 1\n# EOF\n";
    parse(ok);
    for broken in [
        "# TYPE a counter\na_total 1\n",                 // no EOF
        "# TYPE a counter\na 1\n# EOF\n",                // counter without _total
        "a_total 1\n# TYPE a counter\n# EOF\n",          // sample before TYPE
        "# TYPE a gauge\na{x=\"1\",x=\"2\"} 1\n# EOF\n", // label twice
        "# TYPE a gauge\na{x=1} 1\n# EOF\n",             // unquoted
        "# TYPE a gauge\na one\n# EOF\n",                // not a number
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n# EOF\n",
        "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\n# TYPE a gauge\n# EOF\n", // split family
    ] {
        let result = std::panic::catch_unwind(|| parse(broken));
        assert!(result.is_err(), "accepted {broken:?}");
    }
}

#[test]
fn drop_series_are_bounded() {
    let m = Metrics::default();
    for i in 0..(MAX_DROP_SERIES * 3) {
        m.add_drops(drop_kind(Some(&format!("ns-{i}")), None, "NETFILTER_DROP"), 1);
    }
    m.add_drops(drop_kind(Some("ns-late"), Some(Direction::Ingress), "TC_INGRESS"), 1);
    let samples = parse(&m.render());
    let drops: Vec<_> = samples.iter().filter(|s| s.0 == "netpol_trace_drops_total").collect();
    assert!(drops.len() <= MAX_DROP_SERIES + 2, "{} series", drops.len());
    let labels: BTreeSet<&str> =
        drops.iter().flat_map(|s| s.1.keys().map(String::as_str)).collect();
    assert_eq!(
        labels,
        BTreeSet::from(["destination_namespace", "protocol", "direction", "reason"])
    );
    let total: f64 = drops.iter().map(|s| s.2).sum();
    assert_eq!(total, (MAX_DROP_SERIES * 3 + 1) as f64, "nothing is lost, only folded");
    assert_eq!(m.drops_total(), (MAX_DROP_SERIES * 3 + 1) as u64);
    assert!(drops.iter().any(|s| s.1["destination_namespace"] == OTHER_NAMESPACE));
}

/// Words of `expr` that start with `prefix`.
fn words_with<'a>(expr: &'a str, prefix: &str) -> Vec<&'a str> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with(prefix))
        .collect()
}

/// The label names of every `by (...)` clause of `expr`.
fn grouping_labels(expr: &str) -> Vec<String> {
    let mut out = vec![];
    let mut rest = expr;
    while let Some(at) = rest.find("by (") {
        rest = &rest[at + 4..];
        let end = rest.find(')').expect("closing parenthesis");
        out.extend(rest[..end].split(',').map(|l| l.trim().to_string()));
        rest = &rest[end..];
    }
    out
}

#[test]
fn the_grafana_dashboard_queries_only_exposed_metrics_and_labels() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/helm/netpol-trace/dashboards/netpol-trace.json"
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("the dashboard")).unwrap();
    let samples = parse(&every_family().render());
    let labels_of = |name: &str| -> BTreeSet<String> {
        samples.iter().filter(|s| s.0 == name).flat_map(|s| s.1.keys().cloned()).collect()
    };
    let mut exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().expect("targets").iter())
        .map(|t| t["expr"].as_str().expect("expr").to_string())
        .collect();
    exprs.extend(
        dashboard["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v["definition"].as_str().map(str::to_string)),
    );
    assert!(exprs.len() >= 10, "{exprs:?}");
    let mut used = BTreeSet::new();
    for expr in &exprs {
        let names = words_with(expr, "netpol_trace_");
        assert!(!names.is_empty(), "a query of no agent metric: {expr}");
        // `node` comes from the monitors' relabeling, `commit` only from builds that know it.
        let mut known_labels =
            BTreeSet::from(["le".to_string(), "node".to_string(), "commit".to_string()]);
        for name in names {
            assert!(
                samples.iter().any(|s| s.0 == name),
                "the dashboard queries {name}, which the agent does not expose: {expr}"
            );
            known_labels.extend(labels_of(name));
            used.insert(name.to_string());
        }
        for label in grouping_labels(expr) {
            assert!(known_labels.contains(&label), "no label {label:?} on the series of {expr}");
        }
    }
    for family in ["netpol_trace_drops_total", "netpol_trace_flow_map_full_total"] {
        assert!(used.contains(family), "the dashboard shows {family}");
    }
}

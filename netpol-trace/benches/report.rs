//! Report generation for a 1-hour, 10,000-event stream: 40 flows over 4 nodes, each
//! reporting its drops about once a second for part of the hour, 20 of them restored, plus
//! the tracer summaries. Prints the report sizes, then criterion's timings (median in the
//! middle of `time: [low median high]`).
//! `cargo bench -p netpol-trace --bench report -- --warm-up-time 1 --measurement-time 5`

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::{hint::black_box, path::Path};

use chrono::{DateTime, Duration, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use netpol_trace::report::{self, Context, Format};

const EVENTS: usize = 10_000;
const FLOWS: usize = 40;
const HOUR_SECS: i64 = 3_600;

/// The stream: `drop` lines (cumulative counts), `restored` lines, one `summary`.
fn stream() -> String {
    let start: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    let mut lines = Vec::with_capacity(EVENTS);
    let per_flow = (EVENTS - FLOWS / 2 - 1) / FLOWS;
    for f in 0..FLOWS {
        let first = start + Duration::seconds((f as i64 * 37) % 600);
        let src = format!("10.244.{}.{}", 1 + f / 200, 2 + f % 200);
        let step = (HOUR_SECS - 600) / per_flow as i64;
        for k in 0..per_flow {
            let time = first + Duration::seconds(step * k as i64);
            let count = (k as u64 + 1) * 3;
            lines.push(serde_json::json!({
                "type": "drop", "time": time, "first_seen": first, "reason": "NETFILTER_DROP",
                "reason_raw": 12, "ifname": format!("cali{f:011x}"), "count": count,
                "protocol": "TCP",
                "src": {"ip": src, "port": 40000 + f, "namespace": format!("team-{}", f % 8),
                        "pod": format!("web{f}-7d9f8b6c5-x2k4q")},
                "dst": {"ip": "10.244.9.7", "port": 3306 + f % 3, "namespace": "db", "pod": "mysql-0"},
                "policies": [{"namespace": "db", "name": "mysql-ingress", "direction": "ingress"}],
                "hint": "db/mysql-ingress ingress rule 0: ports[0].port: want 3307, got 3306",
                "evidence": {"syn_left_source": count, "syn_reached_destination": 0,
                             "synack_returned": 0, "dropped": count}
            }).to_string());
        }
        if f % 2 == 0 {
            let time = first + Duration::seconds(step * per_flow as i64);
            lines.push(serde_json::json!({
                "type": "restored", "time": time, "first_drop": first, "drops": per_flow * 3,
                "protocol": "TCP",
                "src": {"ip": src, "port": 40000 + f, "namespace": format!("team-{}", f % 8),
                        "pod": format!("web{f}-7d9f8b6c5-x2k4q")},
                "dst": {"ip": "10.244.9.7", "port": 3306 + f % 3, "namespace": "db", "pod": "mysql-0"},
                "evidence": {"syn_left_source": 1, "syn_reached_destination": 1, "synack_returned": 1, "dropped": 0}
            }).to_string());
        }
    }
    while lines.len() < EVENTS {
        lines.push(r#"{"type":"summary","matched":100000,"events_lost":0,"flows_full":0,"dropped_flows":40,"restored_flows":20,"interfaces":["cali1"]}"#.into());
    }
    lines.join("\n")
}

fn generate(c: &mut Criterion) {
    let text = stream();
    let ctx = Context { tool_version: env!("CARGO_PKG_VERSION").into(), ..Context::default() };
    let name = Path::new("hour.ndjson");
    let incident = report::from_ndjson_text(name, &text, &ctx).unwrap();
    let first = incident.started().unwrap();
    let last = incident.last_evidence().unwrap();
    println!(
        "stream: {} events, {} bytes, {} flows, {:.1} min of evidence",
        text.lines().count(),
        text.len(),
        incident.flows.len(),
        (last - first).num_seconds() as f64 / 60.0
    );
    for format in [Format::Html, Format::Markdown] {
        println!("report {format:?}: {} bytes", report::render(&incident, format).len());
    }
    let mut group = c.benchmark_group("report-1h-10k-events");
    group.sample_size(20);
    for (label, format) in [("html", Format::Html), ("markdown", Format::Markdown)] {
        group.bench_function(label, |b| {
            b.iter(|| {
                let i = report::from_ndjson_text(name, black_box(&text), &ctx).unwrap();
                black_box(report::render(&i, format))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, generate);
criterion_main!(benches);

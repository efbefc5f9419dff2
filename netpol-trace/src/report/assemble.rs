//! NDJSON streams (one per node, say) → the incident: flows and their drops over time,
//! markers, timings, causes, the change and the kernel's evidence.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{
    Context,
    error::{ReportError, Result},
    findings,
    input::{DemoSummaryLine, Line, Stream},
    model::{
        Cause, FlowReport, Incident, KernelRow, Marker, MarkerKind, Measurement, OBJECTIVE_MS,
        Recovery, Timings,
    },
    policy,
};
use crate::trace::{Endpoint, Evidence};

/// The Deployment or StatefulSet a pod name comes from (`web-7d9f8b6c5-x2k4q` → `web`,
/// `mysql-0` → `mysql`); other names stay as they are. Only names: labels are not in the
/// evidence.
pub fn workload_of(pod: &str) -> &str {
    const HASH: &str = "bcdfghjklmnpqrstvwxz2456789";
    let is_hash = |s: &str, lens: std::ops::RangeInclusive<usize>| {
        lens.contains(&s.len()) && s.chars().all(|c| HASH.contains(c))
    };
    let parts: Vec<&str> = pod.rsplitn(3, '-').collect();
    if let [suffix, template, base] = parts[..]
        && is_hash(suffix, 5..=5)
        && is_hash(template, 6..=10)
        && !base.is_empty()
    {
        return base;
    }
    match pod.rsplit_once('-') {
        Some((base, ordinal))
            if !base.is_empty()
                && !ordinal.is_empty()
                && ordinal.bytes().all(|b| b.is_ascii_digit()) =>
        {
            base
        }
        _ => pod,
    }
}

fn workload(end: &Endpoint) -> String {
    match (&end.namespace, &end.pod) {
        (Some(ns), Some(pod)) => format!("{ns}/{}", workload_of(pod)),
        _ => end.ip.to_string(),
    }
}

type FlowKey = (String, String, u16, String);
type ConnKey = (String, IpAddr, IpAddr, u16);

#[derive(Default)]
struct Builder {
    flows: BTreeMap<FlowKey, FlowReport>,
    /// Per node and connection: the outage's count so far, its flow and kernel row.
    conns: BTreeMap<ConnKey, (u64, FlowKey, (String, String))>,
    /// Per node, connection: the latest hop-by-hop counts.
    evidence: BTreeMap<ConnKey, Evidence>,
    /// Per (node, ifname, reason, flow): dropped SYNs.
    rows: BTreeMap<(String, String, String, String), u64>,
    markers: Vec<Marker>,
    causes: Vec<Cause>,
    hint_causes: Vec<Cause>,
    plan: Option<(Value, DateTime<Utc>)>,
    demo: Option<DemoSummaryLine>,
    counters: Vec<String>,
}

impl Builder {
    fn drop(&mut self, node: &str, d: &crate::trace::DropRecord) {
        let key: FlowKey = (workload(&d.src), workload(&d.dst), d.dst.port, d.protocol.to_string());
        let conn: ConnKey = (node.to_string(), d.src.ip, d.dst.ip, d.dst.port);
        let flow = self.flows.entry(key.clone()).or_insert_with(|| FlowReport {
            source: key.0.clone(),
            destination: key.1.clone(),
            port: key.2,
            protocol: key.3.clone(),
            source_pods: BTreeSet::new(),
            destination_pods: BTreeSet::new(),
            first_seen: d.first_seen,
            last_seen: d.time,
            drops: 0,
            nodes: BTreeSet::new(),
            restored_at: None,
            samples: Vec::new(),
            exact_samples: true,
        });
        if d.src.pod.is_some() {
            flow.source_pods.insert(d.src.display_name());
        }
        if d.dst.pod.is_some() {
            flow.destination_pods.insert(d.dst.display_name());
        }
        flow.first_seen = flow.first_seen.min(d.first_seen);
        flow.last_seen = flow.last_seen.max(d.time);
        flow.nodes.insert(node.to_string());
        if flow.restored_at.is_some_and(|r| d.time > r) {
            flow.restored_at = None;
        }
        let prev = self.conns.get(&conn).map_or(0, |c| c.0);
        // A lower count is a new outage of the same connection (after a restore).
        let new = if d.count >= prev { d.count - prev } else { d.count };
        if prev == 0 && new > 0 {
            flow.samples.push((d.first_seen, 1));
            if new > 1 {
                flow.samples.push((d.time, new - 1));
            }
        } else if new > 0 {
            flow.samples.push((d.time, new));
        }
        flow.drops += new;
        let row = (d.ifname.clone(), d.reason.clone());
        *self.rows.entry((node.into(), row.0.clone(), row.1.clone(), flow.label())).or_default() +=
            new;
        self.conns.insert(conn.clone(), (d.count, key, row));
        self.evidence.insert(conn, d.evidence.clone());
        if !d.policies.is_empty() && !self.markers.iter().any(|m| m.kind == MarkerKind::Attributed)
        {
            let names: Vec<String> = d
                .policies
                .iter()
                .map(|p| format!("{}/{} ({})", p.namespace, p.name, p.direction))
                .collect();
            self.marker(MarkerKind::Attributed, d.time, format!("denied by {}", names.join(", ")));
        }
        for p in &d.policies {
            let parsed = d.hint.as_deref().and_then(findings::parse_hint);
            let (rule, mismatches) = match parsed {
                Some((policy, dir, rule, m))
                    if policy == format!("{}/{}", p.namespace, p.name)
                        && dir == p.direction.to_string() =>
                {
                    (Some(rule), m)
                }
                _ => (None, Vec::new()),
            };
            if !self.hint_causes.iter().any(|c| c.namespace == p.namespace && c.name == p.name) {
                self.hint_causes.push(Cause {
                    kind: "NetworkPolicy".into(),
                    namespace: p.namespace.clone(),
                    name: p.name.clone(),
                    direction: p.direction.to_string(),
                    rule,
                    mismatches,
                    hint: d.hint.clone(),
                    yaml: None,
                });
            }
        }
    }

    fn restored(&mut self, node: &str, r: &crate::trace::RestoredRecord) {
        let conn: ConnKey = (node.to_string(), r.src.ip, r.dst.ip, r.dst.port);
        self.evidence.insert(conn.clone(), r.evidence.clone());
        let Some((count, key, _)) = self.conns.get_mut(&conn) else { return };
        *count = 0;
        if let Some(flow) = self.flows.get_mut(key) {
            flow.restored_at = Some(flow.restored_at.map_or(r.time, |t| t.max(r.time)));
            let label = flow.label();
            self.marker(
                MarkerKind::Restored,
                r.time,
                format!("SYN-ACK seen for {label} after {} dropped SYN(s)", r.drops),
            );
        }
    }

    fn marker(&mut self, kind: MarkerKind, time: DateTime<Utc>, detail: String) {
        self.markers.push(Marker { kind, time, detail });
    }

    fn step(&mut self, step: &super::input::StepLine) {
        match step.step.as_str() {
            "detected" => self.marker(MarkerKind::Detected, step.time, step.detail.clone()),
            "attributed" => {
                self.markers.retain(|m| m.kind != MarkerKind::Attributed);
                self.marker(MarkerKind::Attributed, step.time, step.detail.clone());
                self.causes = findings::causes_from_explanation(&step.data);
            }
            "patched" => {
                self.marker(MarkerKind::Patched, step.time, step.detail.clone());
                self.plan = Some((step.data.clone(), step.time));
            }
            _ => {}
        }
    }
}

/// The node a stream was recorded on: the lab's node namespace for `lab demo` (its
/// `lab-up` step names it), else the stream's name (one file per node).
fn node_name(stream: &Stream) -> String {
    stream
        .lines
        .iter()
        .find_map(|l| match &l.event {
            Line::Step(s) if s.step == "lab-up" => s
                .detail
                .split_once("node namespace ")
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .map(|n| n.trim_end_matches([',', ';']).to_string()),
            _ => None,
        })
        .unwrap_or_else(|| stream.name.clone())
}

/// The scenario's policies, when the stream is a built-in `lab demo` run.
fn scenario_policies(scenario: Option<&str>) -> Vec<Value> {
    let Some(s) = scenario.and_then(crate::lab::scenarios::find) else { return Vec::new() };
    let mut out = Vec::new();
    for (_, text) in s.files {
        for doc in serde_yaml_ng::Deserializer::from_str(text) {
            if let Ok(v) = <Value as serde::Deserialize>::deserialize(doc)
                && v.get("kind").and_then(Value::as_str) == Some("NetworkPolicy")
            {
                out.push(v);
            }
        }
    }
    out
}

fn find_policy(objects: &[Value], namespace: &str, name: &str) -> Option<Value> {
    objects
        .iter()
        .find(|o| {
            let meta = |k: &str| o.pointer(&format!("/metadata/{k}")).and_then(Value::as_str);
            meta("namespace") == Some(namespace) && meta("name") == Some(name)
        })
        .cloned()
}

fn ms_between(a: DateTime<Utc>, b: DateTime<Utc>) -> u64 {
    (b - a).num_milliseconds().max(0) as u64
}

/// Builds the incident from the streams.
pub fn from_streams(streams: &[Stream], ctx: &Context) -> Result<Incident> {
    let mut b = Builder::default();
    let names: Vec<String> = streams.iter().map(node_name).collect();
    for (stream, node) in streams.iter().zip(&names) {
        for located in &stream.lines {
            match &located.event {
                Line::Drop(d) => b.drop(node, d),
                Line::Restored(r) => b.restored(node, r),
                Line::Step(s) => b.step(s),
                Line::DemoSummary(d) => b.demo = Some(d.clone()),
                Line::TraceSummary(s) => b.counters.push(format!(
                    "{}: {} packets matched, {} new-flow notices lost, {} flows the kernel map could not hold, interfaces: {}",
                    stream.name,
                    s.matched,
                    s.events_lost,
                    s.flows_full,
                    if s.interfaces.is_empty() { "none".to_string() } else { s.interfaces.join(" ") }
                )),
            }
        }
    }
    if b.flows.is_empty() {
        let last =
            streams.last().map_or((Default::default(), 0), |s| (s.path.clone(), s.line_count));
        return Err(ReportError::NoDrops { path: last.0, line: last.1 });
    }
    let mut flows: Vec<FlowReport> = b.flows.values().cloned().collect();
    flows.sort_by(|a, b| b.drops.cmp(&a.drops).then_with(|| a.label().cmp(&b.label())));
    let started = flows.iter().map(|f| f.first_seen).min().unwrap_or_default();

    if !b.markers.iter().any(|m| m.kind == MarkerKind::Detected) {
        // `trace` and `agent` report a flow on its first drop: that line is the detection.
        let first = streams
            .iter()
            .flat_map(|s| s.lines.iter())
            .filter_map(|l| match &l.event {
                Line::Drop(d) => Some(d),
                _ => None,
            })
            .min_by_key(|d| d.time);
        if let Some(d) = first {
            b.marker(
                MarkerKind::Detected,
                d.time,
                format!(
                    "{} dropped SYN(s) {} -> {}:{} reason {} on {}",
                    d.count,
                    d.src.display_name(),
                    d.dst.display_name(),
                    d.dst.port,
                    d.reason,
                    d.ifname
                ),
            );
        }
    }
    b.markers.sort_by(|x, y| x.time.cmp(&y.time).then(x.kind.cmp(&y.kind)));
    let first = |kind| b.markers.iter().find(|m| m.kind == kind).map(|m| m.time);
    let restored_all = flows.iter().all(|f| f.restored_at.is_some());
    let restored_at =
        restored_all.then(|| flows.iter().filter_map(|f| f.restored_at).max()).flatten();
    let timings = match &b.demo {
        Some(d) => Timings {
            detect_ms: d.time_to_detect_ms,
            attribute_ms: d.time_to_attribute_ms,
            restore_ms: d.time_to_restore_ms.filter(|_| d.restored),
            objective_ms: d.runbook_rto_ms.unwrap_or(OBJECTIVE_MS),
        },
        None => Timings {
            detect_ms: first(MarkerKind::Detected).map(|t| ms_between(started, t)),
            attribute_ms: first(MarkerKind::Attributed)
                .zip(first(MarkerKind::Detected))
                .map(|(a, d)| ms_between(d, a)),
            restore_ms: restored_at.map(|t| ms_between(started, t)),
            objective_ms: OBJECTIVE_MS,
        },
    };

    let scenario = b.demo.as_ref().and_then(|d| d.scenario.clone());
    let mut objects = ctx.objects.clone();
    objects.extend(scenario_policies(scenario.as_deref()));
    let mut causes = if b.causes.is_empty() { b.hint_causes.clone() } else { b.causes.clone() };
    for c in &mut causes {
        if c.hint.is_none() {
            c.hint = b
                .hint_causes
                .iter()
                .find(|h| h.name == c.name && h.namespace == c.namespace)
                .and_then(|h| h.hint.clone());
        }
        c.yaml = find_policy(&objects, &c.namespace, &c.name)
            .map(|o| policy::mark(&o, &c.direction, c.rule, &c.mismatches));
    }
    let change = b.plan.as_ref().and_then(|(plan, at)| {
        let before = |ns: &str, name: &str| find_policy(&objects, ns, name);
        let mut change = findings::change_from_plan(
            plan,
            &before,
            "the lab's enforcement (nftables in its node namespace)".into(),
        )?;
        change.applied_at = Some(*at);
        change.approved_by = Some("lab demo (applies its own proposal; no person involved)".into());
        Some(change)
    });
    let recovery = Recovery {
        backups: Vec::new(),
        restore_command: None,
        note: match (&change, scenario.is_some()) {
            (Some(_), true) => "The lab applied the change to its own replica node, which was removed after the run: there is nothing to restore. In a cluster, `netpol-trace fix --apply` saves every object it changes before writing, and `netpol-trace restore BACKUP` puts them back.".into(),
            _ => "The evidence records no change: nothing was applied, so there is nothing to restore. `netpol-trace fix --apply` saves a backup before it writes; `netpol-trace restore BACKUP` puts it back.".into(),
        },
    };

    let mut rows: BTreeMap<(String, String, String, String), KernelRow> = BTreeMap::new();
    for ((node, ifname, reason, flow), dropped) in &b.rows {
        rows.insert(
            (node.clone(), ifname.clone(), reason.clone(), flow.clone()),
            KernelRow {
                node: node.clone(),
                ifname: ifname.clone(),
                reason: reason.clone(),
                flow: flow.clone(),
                dropped: *dropped,
                syn_left_source: Some(0),
                syn_reached_destination: Some(0),
                synack_returned: Some(0),
            },
        );
    }
    for (conn, ev) in &b.evidence {
        let Some((_, key, (ifname, reason))) = b.conns.get(conn) else { continue };
        let Some(flow) = b.flows.get(key) else { continue };
        if let Some(row) =
            rows.get_mut(&(conn.0.clone(), ifname.clone(), reason.clone(), flow.label()))
        {
            let add = |slot: &mut Option<u64>, v: u64| *slot = Some(slot.unwrap_or(0) + v);
            add(&mut row.syn_left_source, ev.syn_left_source);
            add(&mut row.syn_reached_destination, ev.syn_reached_destination);
            add(&mut row.synack_returned, ev.synack_returned);
        }
    }

    let recorder = match &scenario {
        Some(s) => format!("`netpol-trace lab demo -o json`, scenario {s}"),
        None if b.demo.is_some() => "`netpol-trace lab demo -o json`".into(),
        None => "`netpol-trace trace -o json` or `netpol-trace agent`".into(),
    };
    Ok(Incident {
        flows,
        markers: b.markers,
        timings,
        causes,
        change,
        recovery,
        kernel: rows.into_values().collect(),
        pcaps: ctx.pcaps.clone(),
        measured: Measurement {
            tool_version: ctx.tool_version.clone(),
            inputs: streams.iter().map(|s| s.path.display().to_string()).collect(),
            recorder,
            nodes: names,
            counters: (!b.counters.is_empty()).then(|| b.counters.join("; ")),
            host: ctx.host.clone(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_names_give_their_workload() {
        assert_eq!(workload_of("web-7d9f8b6c5-x2k4q"), "web");
        assert_eq!(workload_of("my-api-5c6b7d8f9-x2k4q"), "my-api");
        assert_eq!(workload_of("mysql-0"), "mysql");
        assert_eq!(workload_of("standalone"), "standalone");
        assert_eq!(workload_of("web-1a"), "web-1a");
        assert_eq!(workload_of("-0"), "-0");
    }
}

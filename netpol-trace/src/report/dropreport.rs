//! A DropReport (`dropreports.netpol-trace.io/v1alpha1`, read as JSON or YAML) → the
//! incident. The report keeps aggregates only (first/last seen, counts per node), so its
//! chart spreads the count evenly over the outage and says so.

use std::collections::BTreeSet;
use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::{
    Context,
    error::{ReportError, Result},
    findings,
    model::{
        Cause, FlowReport, Incident, KernelRow, Marker, MarkerKind, Measurement, OBJECTIVE_MS,
        Recovery, Timings,
    },
    policy,
};

/// Points the average rate is drawn with.
const SPREAD_POINTS: i64 = 60;

#[derive(Debug, Deserialize)]
struct DropReport {
    kind: Option<String>,
    #[serde(default)]
    metadata: Meta,
    spec: Spec,
    #[serde(default)]
    status: Status,
}

#[derive(Debug, Default, Deserialize)]
struct Meta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
}

#[derive(Debug, Deserialize)]
struct Spec {
    source: Peer,
    destination: Peer,
    port: u16,
    #[serde(default = "tcp")]
    protocol: String,
    #[serde(default)]
    decision: Option<String>,
}

fn tcp() -> String {
    "TCP".into()
}

#[derive(Debug, Default, Deserialize)]
struct Peer {
    namespace: Option<String>,
    workload: Option<String>,
    ip: Option<String>,
}

impl Peer {
    fn name(&self) -> String {
        match (&self.namespace, &self.workload, &self.ip) {
            (Some(ns), Some(w), _) => format!("{ns}/{w}"),
            (_, _, Some(ip)) => ip.clone(),
            (Some(ns), None, None) => ns.clone(),
            _ => "unknown".into(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    state: Option<String>,
    first_seen: Option<DateTime<Utc>>,
    last_seen: Option<DateTime<Utc>>,
    restored_at: Option<DateTime<Utc>>,
    #[serde(default)]
    count: u64,
    #[serde(default)]
    nodes: Vec<NodeEntry>,
    #[serde(default)]
    attribution: Option<Attribution>,
    #[serde(default)]
    fix: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
struct NodeEntry {
    #[serde(default)]
    node: String,
    #[serde(default)]
    count: u64,
    #[serde(default)]
    ifname: String,
    #[serde(default)]
    reason: String,
}

#[derive(Debug, Default, Deserialize)]
struct Attribution {
    #[serde(default)]
    policies: Vec<PolicyEntry>,
    hint: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct PolicyEntry {
    kind: Option<String>,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    direction: String,
}

#[derive(Debug, Default, Deserialize)]
struct Applied {
    at: Option<DateTime<Utc>>,
    by: Option<String>,
    #[serde(default)]
    backup: Vec<Backup>,
}

#[derive(Debug, Default, Deserialize)]
struct Backup {
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    object: Option<Value>,
}

/// Reads a DropReport from a JSON or YAML file.
pub fn read(path: &Path, ctx: &Context) -> Result<Incident> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ReportError::Read { path: path.to_owned(), source })?;
    let invalid = |message: String| ReportError::Invalid { path: path.to_owned(), message };
    if text.trim().is_empty() {
        return Err(invalid("empty file: expected a DropReport (JSON or YAML)".into()));
    }
    // YAML is a superset of JSON: one parser reads both.
    let value: Value =
        serde_yaml_ng::from_str(&text).map_err(|e| invalid(format!("not YAML or JSON: {e}")))?;
    from_value(&value, ctx).map_err(invalid)
}

/// Reads DropReport `namespace/name` from the API server and builds its incident. A missing
/// report is [`crate::operator::Error::NotFound`].
pub async fn fetch(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    ctx: &Context,
) -> std::result::Result<Incident, crate::operator::Error> {
    let report = crate::operator::decide::get_report(client, namespace, name).await?;
    let mut value = serde_json::to_value(&report).map_err(|e| crate::operator::Error::Report {
        report: report.key(),
        reason: e.to_string(),
    })?;
    value["kind"] = Value::String("DropReport".into());
    from_value(&value, ctx)
        .map_err(|reason| crate::operator::Error::Report { report: report.key(), reason })
}

fn find(objects: &[Value], ns: &str, name: &str) -> Option<Value> {
    objects
        .iter()
        .find(|o| {
            o.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns)
                && o.pointer("/metadata/name").and_then(Value::as_str) == Some(name)
        })
        .cloned()
}

/// Dropped SYNs spread evenly over the outage (a DropReport has no finer timeline).
fn spread(first: DateTime<Utc>, last: DateTime<Utc>, count: u64) -> Vec<(DateTime<Utc>, u64)> {
    let span = (last - first).num_milliseconds().max(0);
    let points = if span == 0 { 1 } else { SPREAD_POINTS.min(count as i64).max(1) };
    let steps = (points - 1).max(1);
    (0..points)
        .map(|k| {
            let share = count / points as u64 + u64::from((k as u64) < count % points as u64);
            (first + Duration::milliseconds(span * k / steps), share)
        })
        .collect()
}

/// The incident of a DropReport object.
pub fn from_value(value: &Value, ctx: &Context) -> std::result::Result<Incident, String> {
    let r: DropReport = serde_path_to_error::deserialize(value)
        .map_err(|e| format!("not a DropReport: {}: {}", e.path(), e.inner()))?;
    if let Some(kind) = r.kind.as_deref().filter(|k| *k != "DropReport") {
        return Err(format!("kind: want DropReport, got {kind}"));
    }
    let s = &r.status;
    let first = s.first_seen.ok_or("status.firstSeen: missing: the report has seen no drop")?;
    let last = s.last_seen.unwrap_or(first).max(first);
    if s.count == 0 {
        return Err("status.count: 0: the report has seen no drop".into());
    }
    let id = format!("{}/{}", r.metadata.namespace, r.metadata.name);
    let restored_at =
        (s.state.as_deref() == Some("Restored")).then(|| s.restored_at.unwrap_or(last));
    let flow = FlowReport {
        source: r.spec.source.name(),
        destination: r.spec.destination.name(),
        port: r.spec.port,
        protocol: r.spec.protocol.clone(),
        source_pods: BTreeSet::new(),
        destination_pods: BTreeSet::new(),
        first_seen: first,
        last_seen: last,
        drops: s.count,
        nodes: s.nodes.iter().map(|n| n.node.clone()).collect(),
        restored_at,
        samples: spread(first, last, s.count),
        exact_samples: false,
    };
    let label = flow.label();

    let fix = s.fix.clone().unwrap_or(Value::Null);
    let applied: Applied =
        fix.get("applied").and_then(|a| serde_json::from_value(a.clone()).ok()).unwrap_or_default();
    let mut objects = ctx.objects.clone();
    objects.extend(applied.backup.iter().filter_map(|b| b.object.clone()));

    let mut markers = vec![Marker {
        kind: MarkerKind::Detected,
        time: first,
        detail: format!(
            "first dropped SYN reported by {}",
            s.nodes.first().map_or("an agent", |n| n.node.as_str())
        ),
    }];
    let attribution = s.attribution.as_ref();
    let hint = attribution.and_then(|a| a.hint.clone());
    let parsed_hint = hint.as_deref().and_then(findings::parse_hint);
    let causes: Vec<Cause> = attribution
        .map(|a| a.policies.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|p| {
            let (rule, mismatches) = match &parsed_hint {
                Some((pol, dir, rule, m))
                    if *pol == format!("{}/{}", p.namespace, p.name) && *dir == p.direction =>
                {
                    (Some(*rule), m.clone())
                }
                _ => (None, Vec::new()),
            };
            let yaml = find(&objects, &p.namespace, &p.name)
                .map(|o| policy::mark(&o, &p.direction, rule, &mismatches));
            Cause {
                kind: p.kind.clone().unwrap_or_else(|| "NetworkPolicy".into()),
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                direction: p.direction.clone(),
                rule,
                mismatches,
                hint: hint.clone(),
                yaml,
            }
        })
        .collect();
    let phase = fix.get("phase").and_then(Value::as_str).unwrap_or("none").to_string();
    let applied_to = match phase.as_str() {
        "Applied" | "RolledBack" => format!("the cluster by the controller (fix phase {phase})"),
        _ => format!("nothing yet: proposed only (fix phase {phase})"),
    };
    let before = |ns: &str, name: &str| find(&objects, ns, name);
    let mut change = findings::change_from_plan(&fix, &before, applied_to);
    if let Some(c) = &mut change {
        c.applied_at = applied.at;
        c.approved_by = match (&applied.by, r.spec.decision.as_deref()) {
            (Some(by), _) => Some(by.clone()),
            (None, Some(d)) => Some(format!("spec.decision {d} (approver not recorded)")),
            (None, None) => None,
        };
        if let Some(at) = applied.at {
            markers.push(Marker {
                kind: MarkerKind::Patched,
                time: at,
                detail: format!(
                    "fix applied by {}",
                    applied.by.as_deref().unwrap_or("the controller")
                ),
            });
        }
    }
    if let Some(at) = restored_at {
        markers.push(Marker {
            kind: MarkerKind::Restored,
            time: at,
            detail: format!("SYN-ACK seen for {label}"),
        });
    }
    markers.sort_by(|a, b| a.time.cmp(&b.time).then(a.kind.cmp(&b.kind)));
    let recovery = if applied.backup.is_empty() {
        Recovery {
            note: "The report holds no backup: the controller applied no fix.".into(),
            ..Recovery::default()
        }
    } else {
        Recovery {
            backups: applied
                .backup
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    let at = format!("DropReport {id}, status.fix.applied.backup[{i}]");
                    let at = match b.object {
                        Some(_) => at,
                        None => format!("{at} (created by the fix: restoring deletes it)"),
                    };
                    (format!("{}/{}", b.namespace, b.name), at)
                })
                .collect(),
            restore_command: Some(format!(
                "netpol-trace restore dropreport/{} -n {}",
                r.metadata.name, r.metadata.namespace
            )),
            note: "Restore refuses (exit 1) when an object changed since the fix; `--force` overrides.".into(),
        }
    };
    let kernel = s
        .nodes
        .iter()
        .map(|n| KernelRow {
            node: n.node.clone(),
            ifname: n.ifname.clone(),
            reason: n.reason.clone(),
            flow: label.clone(),
            dropped: n.count,
            syn_left_source: None,
            syn_reached_destination: None,
            synack_returned: None,
        })
        .collect();
    let ms = |t: DateTime<Utc>| (t - first).num_milliseconds().max(0) as u64;
    Ok(Incident {
        flows: vec![flow],
        markers,
        timings: Timings {
            detect_ms: None,
            attribute_ms: None,
            restore_ms: restored_at.map(ms),
            objective_ms: OBJECTIVE_MS,
        },
        causes,
        change,
        recovery,
        kernel,
        pcaps: ctx.pcaps.clone(),
        measured: Measurement {
            tool_version: ctx.tool_version.clone(),
            inputs: vec![format!("dropreport/{}", r.metadata.name)],
            recorder: format!(
                "the agents, aggregated in DropReport {id} (counts only: the chart shows the average rate)"
            ),
            nodes: s.nodes.iter().map(|n| n.node.clone()).collect(),
            counters: None,
            host: ctx.host.clone(),
        },
    })
}

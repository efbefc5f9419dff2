//! `lab demo`: the whole recovery, for real, on a built-in scenario. An app pod cannot reach
//! MariaDB; the tracer catches the dropped SYNs in the kernel; the policy engine names the
//! policy and rule; the fix module computes the minimal patch; the lab enforces it; the
//! kernel sees the handshake come back; `SELECT 1` answers. Every step is timed.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{
    error::{LabError, Result},
    lifecycle::{self, LabContext},
    mariadb::{MARIADB_PASSWORD, MARIADB_USER},
    objects::LabPolicies,
    scenarios::{self, Scenario},
    state::LabState,
    topology::LabPod,
};
use crate::{
    attribution::{self, wording},
    fix::{FixOptions, plan_fix},
    flow::Flow,
    manifest,
    policy::Protocol,
    trace::{EventSource, RestoredRecord, TraceEvent, TracerMessage, TracerOptions},
};

/// The runbook's restore-time objective, for comparison.
pub const RUNBOOK_RTO: Duration = Duration::from_secs(30 * 60);

/// How the demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Scenario name (see [`scenarios::all`]).
    pub scenario: String,
    /// Lab name (unique per run).
    pub lab_name: String,
    /// `--connect-timeout` of each `SELECT 1` attempt.
    pub connect_timeout: Duration,
    /// How long to wait for the first drop, and for the handshake after the patch.
    pub wait: Duration,
}

/// One step of the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Always `step` (NDJSON discriminator).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `lab-up`, `broken`, `detected`, `attributed`, `patched`, `restored`, `verified`.
    pub step: &'static str,
    /// Milliseconds since the demo started.
    pub at_ms: u64,
    /// Wall-clock time.
    pub time: DateTime<Utc>,
    /// One line for people.
    pub detail: String,
    /// Structured details (the drop, the plan, the query output...).
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
}

/// The last line of `lab demo -o json`.
#[derive(Debug, Clone, Serialize)]
pub struct DemoSummary {
    /// Always `summary`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The scenario.
    pub scenario: String,
    /// The app got its `SELECT 1` answer back and the kernel saw the handshake.
    pub restored: bool,
    /// From the first dropped SYN (kernel time) to the tracer's report.
    pub time_to_detect_ms: Option<u64>,
    /// From the report to the policy and rule being named.
    pub time_to_attribute_ms: Option<u64>,
    /// From the first dropped SYN to the answered `SELECT 1`.
    pub time_to_restore_ms: Option<u64>,
    /// The runbook's objective, for comparison.
    pub runbook_rto_ms: u64,
    /// Every step, in order.
    pub steps: Vec<Step>,
}

/// What the demo reports as it goes.
#[derive(Debug, Clone)]
pub enum DemoEvent {
    /// A timeline step.
    Step(Step),
    /// A tracer event (attributed).
    Trace(Box<TraceEvent>),
}

struct Timeline<'a> {
    start: Instant,
    steps: Vec<Step>,
    sink: &'a mut dyn FnMut(&DemoEvent),
}

impl Timeline<'_> {
    fn step(&mut self, step: &'static str, detail: String, data: serde_json::Value) {
        self.step_at(step, Instant::now(), Utc::now(), detail, data);
    }

    fn step_at(
        &mut self,
        step: &'static str,
        at: Instant,
        time: DateTime<Utc>,
        detail: String,
        data: serde_json::Value,
    ) {
        let s = Step {
            kind: "step",
            step,
            at_ms: at.saturating_duration_since(self.start).as_millis() as u64,
            time,
            detail,
            data,
        };
        (self.sink)(&DemoEvent::Step(s.clone()));
        self.steps.push(s);
    }

    fn trace(&mut self, ev: &TraceEvent) {
        (self.sink)(&DemoEvent::Trace(Box::new(ev.clone())));
    }
}

/// Removes the lab when dropped, whatever happened.
struct LabGuard<'a> {
    ctx: &'a LabContext,
    name: String,
}

impl Drop for LabGuard<'_> {
    fn drop(&mut self) {
        if let Err(e) = lifecycle::down(self.ctx, &self.name) {
            tracing::error!(lab = %self.name, error = %e, "removing the demo lab");
        }
    }
}

/// Runs `SELECT 1` from `app` against `db` with the real client; the query output on success.
fn select_one(
    app: &LabPod,
    db: &LabPod,
    connect_timeout: Duration,
) -> std::result::Result<String, String> {
    let out = Command::new(super::paths::tool(super::paths::IP_BIN))
        .args(["netns", "exec", &app.netns, "mariadb", "-h", &db.ip.to_string()])
        .args(["-u", MARIADB_USER, &format!("-p{MARIADB_PASSWORD}")])
        .arg(format!("--connect-timeout={}", connect_timeout.as_secs().max(1)))
        .args(["-N", "-e", "SELECT 1"])
        .output()
        .map_err(|e| format!("running the mariadb client: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn json(value: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// Waits for the first event of `source` accepted by `pick`, attributing and reporting every
/// event.
fn wait_for<T>(
    source: &mut EventSource,
    timeline: &mut Timeline<'_>,
    inventory: &crate::inventory::Inventory,
    wait: Duration,
    mut pick: impl FnMut(&TraceEvent) -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        match source.events.try_recv() {
            Ok(TracerMessage::Event(mut ev)) => {
                attribution::attribute_event(inventory, &mut ev);
                timeline.trace(&ev);
                if let Some(found) = pick(&ev) {
                    return Some(found);
                }
            }
            Ok(_) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    None
}

/// Runs the demo; `sink` sees every step and tracer event as it happens.
pub fn run(
    ctx: &LabContext,
    opts: &DemoOptions,
    sink: &mut dyn FnMut(&DemoEvent),
) -> Result<DemoSummary> {
    let scenario: &Scenario = scenarios::find(&opts.scenario).ok_or_else(|| {
        LabError::invalid(
            format!("scenario {}", opts.scenario),
            "--scenario",
            format!(
                "unknown; built-in scenarios: {}",
                scenarios::all().iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
            ),
        )
    })?;
    let info = scenario.info()?;
    let mut timeline = Timeline { start: Instant::now(), steps: vec![], sink };

    // 1. The lab, with the broken policy enforced by nftables.
    let dir = tempfile::tempdir().map_err(|e| LabError::io("creating a scratch directory", e))?;
    scenario.write_to(dir.path())?;
    let objects = manifest::load_paths(&[dir.path().to_path_buf()]).map_err(|e| {
        LabError::invalid(format!("scenario {}", scenario.name), "manifests", e.to_string())
    })?;
    let state: LabState = lifecycle::up(ctx, &opts.lab_name, &objects, Some(dir.path()))?;
    let _guard = LabGuard { ctx, name: opts.lab_name.clone() };
    let app = lifecycle::find_pod(&state, &info.flow.from)?.clone();
    let db = lifecycle::find_pod(&state, &info.flow.to)?.clone();
    timeline.step(
        "lab-up",
        format!(
            "lab {} up: {} pods, node namespace {} (no uplink); scenario {}: {}",
            opts.lab_name,
            state.topology.pods.len(),
            state.topology.node_netns,
            scenario.name,
            info.description
        ),
        serde_json::json!({"app": app.key(), "app_ip": app.ip, "db": db.key(), "db_ip": db.ip}),
    );
    let inventory = lifecycle::inventory(ctx, &opts.lab_name)?;

    // 2. The tracer in the node's namespace, on every pod veth.
    let mut source = EventSource::kernel(TracerOptions {
        netns: Some(crate::netns::netns_path(&state.topology.node_netns)),
        ports: vec![info.flow.port],
        poll_interval: Duration::from_millis(50),
        ..TracerOptions::default()
    })
    .map_err(|e| LabError::invalid("tracer", "attach", e.to_string()))?;

    // 3. The outage: the app's query times out while the tracer sees its SYNs dropped.
    let timeout = opts.connect_timeout;
    let (app2, db2) = (app.clone(), db.clone());
    let failing = std::thread::spawn(move || select_one(&app2, &db2, timeout));
    let detected = wait_for(&mut source, &mut timeline, &inventory, opts.wait, |ev| match ev {
        TraceEvent::Drop(d) => Some((d.clone(), Instant::now(), Utc::now())),
        _ => None,
    });
    if let Some((drop, at, time)) = &detected {
        timeline.step_at(
            "detected",
            *at,
            *time,
            format!(
                "{} dropped SYN(s) {} -> {}:{} reason {} on {}",
                drop.count,
                drop.src.display_name(),
                drop.dst.display_name(),
                drop.dst.port,
                drop.reason,
                drop.ifname,
            ),
            json(drop),
        );
    }
    let broken = failing.join().unwrap_or_else(|_| Err("client thread panicked".into()));
    timeline.step(
        "broken",
        match &broken {
            Ok(out) => format!("SELECT 1 from {} unexpectedly answered {out}", app.key()),
            Err(e) => format!("SELECT 1 from {} -> {}: {}", app.key(), db.key(), e),
        },
        serde_json::Value::Null,
    );
    let Some((drop, _, detected_time)) = detected else {
        let summary = source.stop();
        timeline.step("failed", "no dropped SYN was seen".into(), json(&summary));
        return Ok(summary_of(scenario.name, false, None, &timeline));
    };
    let detect_ms = (detected_time - drop.first_seen).num_milliseconds().max(0) as u64;

    // 4. Attribution: the policy and rule, from the real semantics.
    let attributed_at = Instant::now();
    let mut attributed = drop.clone();
    let attribution = attribution::attribute_drop(&inventory, &mut attributed);
    // For the tiered kinds, the policy and rule that decided (explain's `decided_by`).
    let decided = attribution
        .explanation
        .as_ref()
        .filter(|e| tiered_decision(e))
        .and_then(wording::decided_by)
        .map(|d| format!("; {d}"))
        .unwrap_or_default();
    // A matching Deny rule is already named by `decided`; other hints say what a rule lacks.
    let hint = attributed
        .hint
        .clone()
        .filter(|h| decided.is_empty() || !h.contains(" matches and decides: "))
        .map(|h| format!("; {h}"))
        .unwrap_or_default();
    timeline.step(
        "attributed",
        format!("{}{decided}{hint}", wording::denied_by(&attributed.policies)),
        json(&attribution.explanation),
    );
    let attribute_ms = attributed_at.elapsed().as_millis() as u64;

    // 5. The minimal patch, applied to the lab's enforcement.
    let flow =
        Flow::from_packet(&inventory, drop.src.ip, drop.dst.ip, drop.dst.port, Protocol::Tcp);
    let plan = plan_fix(&inventory, &flow, &FixOptions::default())
        .map_err(|e| LabError::invalid("fix", "plan", e.to_string()))?;
    let patched =
        plan.apply_to(&inventory).map_err(|e| LabError::invalid("fix", "apply", e.to_string()))?;
    let policies = LabPolicies {
        network_policies: patched
            .policies()
            .map(|(_, entry)| entry.sourced.to_sourced())
            .collect::<Result<_, _>>()
            .map_err(|e| LabError::invalid("fix", "apply", e.to_string()))?,
        tiered: patched.tiered().objects(),
    };
    if plan.requires_cluster_admin() {
        // Said before anything changes, and never as if the cluster had been changed.
        let kinds: Vec<String> = plan
            .patches
            .iter()
            .filter(|p| p.requires_cluster_admin)
            .map(|p| format!("{} {}", p.kind, p.name))
            .collect();
        timeline.step(
            "cluster-admin",
            format!(
                "in a real cluster only a cluster admin can make this change ({}: cluster-scoped, \
                 above every NetworkPolicy); the demo applies it to this LAB only and sends \
                 nothing to any cluster",
                kinds.join(", ")
            ),
            serde_json::json!({"requires_cluster_admin": true, "applied_to": "lab"}),
        );
    }
    lifecycle::apply_policies(ctx, &opts.lab_name, policies)?;
    let commands: Vec<&str> = plan.patches.iter().map(|p| p.kubectl.as_str()).collect();
    let target = if plan.requires_cluster_admin() {
        "applied to the LAB only (a cluster admin's change in a real cluster)"
    } else {
        "applied to the lab"
    };
    timeline.step(
        "patched",
        format!("{}; {target}: {}", plan.summary, commands.join(" && ")),
        json(&plan),
    );

    // 6. Verification from the kernel's view and from the app.
    let mut answer = None;
    let deadline = Instant::now() + opts.wait;
    while Instant::now() < deadline {
        match select_one(&app, &db, timeout) {
            Ok(out) => {
                answer = Some(out);
                break;
            }
            Err(e) => tracing::debug!(error = %e, "SELECT 1 still failing"),
        }
    }
    let restored: Option<RestoredRecord> =
        wait_for(&mut source, &mut timeline, &inventory, Duration::from_secs(3), |ev| match ev {
            TraceEvent::Restored(r) => Some(r.clone()),
            _ => None,
        });
    if let Some(r) = &restored {
        timeline.step(
            "restored",
            format!(
                "kernel saw the SYN-ACK {} -> {} after {} dropped SYN(s)",
                r.dst.display_name(),
                r.src.display_name(),
                r.drops
            ),
            json(r),
        );
    }
    let ok = answer.is_some() && restored.is_some();
    let restore_ms =
        answer.as_ref().map(|_| (Utc::now() - drop.first_seen).num_milliseconds().max(0) as u64);
    timeline.step(
        "verified",
        match &answer {
            Some(out) => format!("SELECT 1 from {} answered {out}", app.key()),
            None => format!("SELECT 1 from {} still fails", app.key()),
        },
        serde_json::json!({"select_1": answer}),
    );
    let _ = source.stop();
    let mut summary = summary_of(scenario.name, ok, restore_ms, &timeline);
    summary.time_to_detect_ms = Some(detect_ms);
    summary.time_to_attribute_ms = Some(attribute_ms);
    Ok(summary)
}

/// Whether a policy of the other kinds decided a denied direction (their timeline names it).
fn tiered_decision(explanation: &crate::explain::Explanation) -> bool {
    [&explanation.egress, &explanation.ingress]
        .into_iter()
        .any(|dir| !dir.allowed && dir.decided_by.as_ref().is_some_and(|by| by.tier.is_some()))
}

fn summary_of(
    scenario: &str,
    restored: bool,
    restore_ms: Option<u64>,
    timeline: &Timeline<'_>,
) -> DemoSummary {
    DemoSummary {
        kind: "summary",
        scenario: scenario.to_string(),
        restored,
        time_to_detect_ms: None,
        time_to_attribute_ms: None,
        time_to_restore_ms: restore_ms,
        runbook_rto_ms: RUNBOOK_RTO.as_millis() as u64,
        steps: timeline.steps.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{MYSQL_MANIFESTS, inventory_of};

    /// A `trace -o json` line as the kernel side produced it: web-1 -> mysql-0:3306 dropped.
    const RECORDED_DROP: &str = r#"{"type":"drop","time":"2026-01-01T00:00:02Z","first_seen":"2026-01-01T00:00:00Z","reason":"NETFILTER_DROP","reason_raw":12,"ifname":"cali0","count":3,"protocol":"TCP","src":{"ip":"10.0.1.5","port":51514},"dst":{"ip":"10.0.2.7","port":3306},"policies":[],"evidence":{"syn_left_source":3,"syn_reached_destination":0,"synack_returned":0,"dropped":3}}"#;

    #[test]
    fn recorded_events_are_attributed_and_detected_without_root() {
        let inventory = inventory_of(MYSQL_MANIFESTS);
        let (tx, mut source) = EventSource::channel(vec!["cali0".into()]);
        tx.send(TracerMessage::Attached("cali0".into())).unwrap();
        tx.send(TracerMessage::Event(serde_json::from_str(RECORDED_DROP).unwrap())).unwrap();
        let mut seen = Vec::new();
        let mut sink = |ev: &DemoEvent| seen.push(ev.clone());
        let mut timeline = Timeline { start: Instant::now(), steps: vec![], sink: &mut sink };
        let found = wait_for(
            &mut source,
            &mut timeline,
            &inventory,
            Duration::from_secs(5),
            |ev| match ev {
                TraceEvent::Drop(d) => Some(d.clone()),
                _ => None,
            },
        );
        let drop = found.expect("the recorded drop is picked");
        assert_eq!(drop.src.pod.as_deref(), Some("web-1"));
        assert_eq!(drop.policies[0].name, "mysql-ingress");
        // Nothing more comes: waiting again ends at its deadline.
        let none =
            wait_for(&mut source, &mut timeline, &inventory, Duration::from_millis(50), |_| {
                Some(())
            });
        assert_eq!(none, None);
        assert_eq!(seen.len(), 1, "the attributed drop went to the sink");
        assert!(matches!(&seen[0], DemoEvent::Trace(t) if matches!(**t, TraceEvent::Drop(_))));
    }
}

//! The agents' side of the feed: publish what one node saw of a flow into the one report every
//! node derives for it. The report is created if missing (a 409 means another node was first);
//! the status is then written with the resourceVersion just read as precondition (PUT /status),
//! changing only this node's `status.nodes` entry, the aggregates recomputed from all entries,
//! and the attribution and proposed fix while no fix was decided. A lost race re-reads and
//! re-applies, so another node's entry is never lost. Agents never set `spec.decision` and
//! never touch a fix the controller owns (nor delete reports: see [`super::garbage`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use serde_json::Value;

use super::identity::report_name;
use super::report::{
    Attribution, DropReport, DropReportSpec, DropReportStatus, FixPhase, FixStatus, FlowState,
    NodeEntry,
};
use super::{Error, Result};

/// Attempts at a status write before giving up (each after a fresh read).
const ATTEMPTS: usize = 8;

/// What one node observed of one flow.
#[derive(Debug, Clone)]
pub struct Observation {
    /// The flow identity (`decision` is ignored).
    pub spec: DropReportSpec,
    /// This node's entry.
    pub node: NodeEntry,
    /// First drop this node saw.
    pub first_seen: DateTime<Utc>,
    /// Dropping, or restored (SYN-ACK after the drops).
    pub state: FlowState,
    /// Who denies the flow.
    pub attribution: Option<Attribution>,
    /// The proposed patches (`fix -o json` entries, camelCase); `None` when no safe patch.
    pub patches: Option<std::sync::Arc<Vec<Value>>>,
}

impl Observation {
    /// The name of the report this observation goes to.
    pub fn report_name(&self) -> String {
        report_name(&self.spec.source, &self.spec.destination, self.spec.port, &self.spec.protocol)
    }

    /// The report's namespace: the destination's (an outside destination: the source's).
    pub fn namespace(&self) -> String {
        self.spec
            .destination
            .namespace
            .clone()
            .or_else(|| self.spec.source.namespace.clone())
            .unwrap_or_else(|| "default".into())
    }

    /// `status` with this observation merged in.
    pub fn merge_into(&self, status: &mut DropReportStatus) {
        match status.nodes.iter_mut().find(|n| n.node == self.node.node) {
            Some(entry) => *entry = self.node.clone(),
            None => status.nodes.push(self.node.clone()),
        }
        status.nodes.sort_by(|a, b| a.node.cmp(&b.node));
        status.count = Some(status.nodes.iter().map(|n| n.count).sum());
        status.last_seen = status.nodes.iter().map(|n| n.last_seen).max();
        status.first_seen =
            Some(status.first_seen.map_or(self.first_seen, |f| f.min(self.first_seen)));
        status.state = Some(self.state);
        if let Some(attribution) = &self.attribution {
            status.attribution = Some(attribution.clone());
        }
        let decided = status.fix.as_ref().is_some_and(|f| f.phase != FixPhase::Proposed);
        if !decided && let Some(patches) = &self.patches {
            status.fix = Some(FixStatus {
                phase: FixPhase::Proposed,
                patches: patches.to_vec(),
                message: None,
                applied: None,
                observed_generation: None,
            });
        }
    }
}

/// Creates the report of `observation` if needed and merges it into the status.
pub async fn publish(client: &kube::Client, observation: &Observation) -> Result<DropReport> {
    let namespace = observation.namespace();
    let name = observation.report_name();
    let api: Api<DropReport> = Api::namespaced(client.clone(), &namespace);
    let mut current = match api.get_opt(&name).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            let mut spec = observation.spec.clone();
            spec.decision = None;
            let report = DropReport {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec,
                status: None,
            };
            match api.create(&PostParams::default(), &report).await {
                Ok(created) => created,
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    api.get(&name).await.map_err(|e| Error::report("get", &namespace, &name, e))?
                }
                Err(e) => return Err(Error::report("create", &namespace, &name, e)),
            }
        }
        Err(e) => return Err(Error::report("get", &namespace, &name, e)),
    };
    for _ in 0..ATTEMPTS {
        let mut status = current.status.clone().unwrap_or_default();
        observation.merge_into(&mut status);
        current.status = Some(status);
        let body = &current;
        match api.replace_status(&name, &PostParams::default(), body).await {
            Ok(written) => return Ok(written),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                current =
                    api.get(&name).await.map_err(|e| Error::report("get", &namespace, &name, e))?;
            }
            Err(e) => return Err(Error::report("replace status of", &namespace, &name, e)),
        }
    }
    Err(Error::Report {
        report: format!("{namespace}/{name}"),
        reason: format!("status changed under {ATTEMPTS} consecutive writes"),
    })
}

/// Publishes a flow at most once per interval, except when its state changes or its first
/// proposed fix arrives (the report is then complete for the people who decide).
#[derive(Debug)]
pub struct RateLimiter {
    every: Duration,
    last: HashMap<String, (Instant, FlowState, bool)>,
}

impl RateLimiter {
    /// At most one write per report every `every`.
    pub fn new(every: Duration) -> Self {
        Self { every, last: HashMap::new() }
    }

    /// Whether `observation` may be written now (and records it when so).
    pub fn admit(&mut self, observation: &Observation) -> bool {
        let key = format!("{}/{}", observation.namespace(), observation.report_name());
        let now = Instant::now();
        let proposed = observation.patches.is_some();
        let due = match self.last.get(&key) {
            Some((at, state, had_fix)) => {
                *state != observation.state
                    || (proposed && !had_fix)
                    || now.duration_since(*at) >= self.every
            }
            None => true,
        };
        if due {
            self.last.insert(key, (now, observation.state, proposed));
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::report::FlowEnd;

    fn observation(state: FlowState, patches: Option<Vec<Value>>) -> Observation {
        Observation {
            spec: DropReportSpec {
                source: FlowEnd::workload("app", "web", "Deployment"),
                destination: FlowEnd::workload("db", "mysql", "StatefulSet"),
                port: 3306,
                protocol: "TCP".into(),
                decision: None,
            },
            node: NodeEntry {
                node: "node-1".into(),
                count: 1,
                last_seen: Utc::now(),
                ifname: "cali0".into(),
                reason: "NETFILTER_DROP".into(),
                from_source_veth: None,
            },
            first_seen: Utc::now(),
            state,
            attribution: None,
            patches: patches.map(std::sync::Arc::new),
        }
    }

    #[test]
    fn counters_wait_for_the_interval_but_a_first_fix_or_a_new_state_goes_at_once() {
        let mut limiter = RateLimiter::new(Duration::from_secs(3600));
        assert!(limiter.admit(&observation(FlowState::Dropping, None)), "a new report");
        assert!(!limiter.admit(&observation(FlowState::Dropping, None)), "new counters wait");
        assert!(limiter.admit(&observation(FlowState::Dropping, Some(vec![]))), "first fix");
        assert!(!limiter.admit(&observation(FlowState::Dropping, Some(vec![]))), "same fix waits");
        assert!(limiter.admit(&observation(FlowState::Restored, Some(vec![]))), "restored");
    }
}

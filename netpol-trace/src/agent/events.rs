//! Kubernetes Events about drops, on the destination pod: reason [`EVENT_REASON`], a note a
//! person can act on, posted by a task of their own (the loop never waits on the API
//! server) through [`EventRecorder`]: kube's event recorder keeps the series per pod, and
//! writes are rate-limited.

use k8s_openapi::api::core::v1::ObjectReference;
use tokio::sync::mpsc;

use std::sync::Arc;

use crate::k8s::events::{EventRecorder, EventSpec, EventType, Recorded};

use super::{
    metrics::{EventResult, Metrics},
    record::FlowRecord,
};

/// Reason of the Events about drops the policies explain.
pub const EVENT_REASON: &str = "NetworkPolicyDrop";
/// Action of those Events.
pub const EVENT_ACTION: &str = "Observed";
/// `reportingController` of the agent's Events.
pub const REPORTING_CONTROLLER: &str = "netpol-trace.io/agent";
/// Events waiting to be posted before new ones are counted as suppressed.
pub const QUEUE: usize = 256;

/// An Event to post.
#[derive(Debug, Clone, PartialEq)]
pub struct DropEvent {
    /// The destination pod.
    pub regarding: ObjectReference,
    /// The note.
    pub note: String,
}

/// The `netpol-trace fix` command for a record's flow (the Service when one was addressed).
pub fn fix_command(record: &FlowRecord) -> String {
    let to = match (&record.drop.dst.namespace, &record.drop.dst.service, &record.drop.dst.pod) {
        (Some(ns), Some(svc), _) => format!("svc/{ns}/{svc}"),
        _ => record.drop.dst.display_name(),
    };
    format!(
        "netpol-trace fix --from {} --to {to} --port {}",
        record.drop.src.display_name(),
        record.drop.dst.port
    )
}

/// "12 SYNs from app/web-1 to db/mysql-0:3306 dropped: denied by NetworkPolicy
/// db/mysql-ingress, rule 0 allows port 3307; suggested: netpol-trace fix ..."
pub fn note(record: &FlowRecord, denial: &str) -> String {
    let syns = if record.drop.count == 1 { "SYN" } else { "SYNs" };
    let via = match (&record.drop.dst.namespace, &record.drop.dst.service) {
        (Some(ns), Some(svc)) => format!(" (Service {ns}/{svc})"),
        _ => String::new(),
    };
    format!(
        "{} {syns} from {} to {}:{}{via} dropped: {denial}; suggested: {}",
        record.drop.count,
        record.drop.src.display_name(),
        record.drop.dst.display_name(),
        record.drop.dst.port,
        fix_command(record)
    )
}

/// The Event for a record, when its drop is a NetworkPolicy decision about a known pod.
pub fn drop_event(
    record: &FlowRecord,
    denial: Option<&str>,
    reference: impl Fn(&str, &str) -> ObjectReference,
) -> Option<DropEvent> {
    let denial = denial?;
    let (ns, pod) = (record.drop.dst.namespace.as_deref()?, record.drop.dst.pod.as_deref()?);
    Some(DropEvent { regarding: reference(ns, pod), note: note(record, denial) })
}

/// The queue in front of the posting task.
#[derive(Debug, Clone)]
pub struct EventQueue {
    tx: mpsc::Sender<DropEvent>,
    metrics: Arc<Metrics>,
}

impl EventQueue {
    /// Queues an Event; a full queue counts it as suppressed.
    pub fn offer(&self, event: DropEvent) {
        if self.tx.try_send(event).is_err() {
            self.metrics.add_k8s_event(EventResult::Suppressed);
        }
    }
}

/// Starts the posting task; it ends (after flushing aggregated counts) when every
/// [`EventQueue`] is dropped.
pub fn start(
    recorder: EventRecorder,
    metrics: Arc<Metrics>,
) -> (EventQueue, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<DropEvent>(QUEUE);
    let task_metrics = metrics.clone();
    let task = tokio::spawn(async move {
        let spec = |note: String| EventSpec {
            event_type: EventType::Warning,
            reason: EVENT_REASON.into(),
            action: EVENT_ACTION.into(),
            note,
        };
        while let Some(event) = rx.recv().await {
            let result = match recorder.record(&event.regarding, &spec(event.note)).await {
                Ok(Recorded::Created | Recorded::Updated { .. }) => EventResult::Posted,
                Ok(Recorded::Suppressed { .. }) => EventResult::Suppressed,
                Err(e) => {
                    tracing::warn!(error = %e, "Event not posted");
                    task_metrics.add_k8s_error("publish_event", &e);
                    EventResult::Failed
                }
            };
            task_metrics.add_k8s_event(result);
        }
        if let Err(e) = recorder.flush().await {
            tracing::warn!(error = %e, "aggregated Events not flushed");
            task_metrics.add_k8s_error("publish_event", &e);
        }
    });
    (EventQueue { tx, metrics }, task)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::agent::attribute::{
        attribute,
        tests::{MANIFESTS, inventory_of, record},
    };

    fn reference(ns: &str, name: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some(ns.into()),
            name: Some(name.into()),
            ..ObjectReference::default()
        }
    }

    #[test]
    fn the_note_says_who_what_why_and_what_to_run() {
        let mut r = record("10.0.1.5", "10.0.2.7", 3306);
        let (a, _) = attribute(&inventory_of(MANIFESTS), &mut r);
        let ev = drop_event(&r, a.denial.as_deref(), reference).unwrap();
        assert_eq!(
            ev.note,
            "12 SYNs from app/web-1 to db/mysql-0:3306 dropped: denied by NetworkPolicy \
             db/mysql-ingress, rule 0 allows port 3307; suggested: netpol-trace fix --from \
             app/web-1 --to db/mysql-0 --port 3306"
        );
        assert_eq!(ev.regarding.name.as_deref(), Some("mysql-0"));
        assert_eq!(ev.regarding.namespace.as_deref(), Some("db"));
    }

    #[test]
    fn a_service_is_named_and_is_the_fix_target() {
        let mut r = record("10.0.1.5", "10.96.0.10", 13306);
        r.drop.count = 1;
        let (a, _) = attribute(&inventory_of(MANIFESTS), &mut r);
        let ev = drop_event(&r, a.denial.as_deref(), reference).unwrap();
        assert!(
            ev.note
                .starts_with("1 SYN from app/web-1 to db/mysql-0:13306 (Service db/mysql) dropped"),
            "{}",
            ev.note
        );
        assert!(ev.note.ends_with("--to svc/db/mysql --port 13306"), "{}", ev.note);
    }

    #[test]
    fn no_event_without_a_policy_decision_or_a_destination_pod() {
        let inv = inventory_of(&MANIFESTS.replace("port: 3307", "port: 3306"));
        let mut allowed = record("10.0.1.5", "10.0.2.7", 3306);
        let (a, _) = attribute(&inv, &mut allowed);
        assert!(drop_event(&allowed, a.denial.as_deref(), reference).is_none());
        let mut outside = record("10.0.1.5", "192.0.2.9", 3306);
        let (a, _) = attribute(&inv, &mut outside);
        assert!(drop_event(&outside, a.denial.as_deref(), reference).is_none());
    }

    #[tokio::test]
    async fn events_are_aggregated_rate_limited_and_flushed() {
        let fake = fake_apiserver::FakeApiServer::start().await;
        fake.insert(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "db"}}));
        let metrics = Arc::new(Metrics::default());
        let recorder = EventRecorder::new(fake.client(), REPORTING_CONTROLLER, "node-1")
            .with_min_interval(Duration::from_secs(60));
        let (queue, task) = start(recorder, metrics.clone());
        let mut r = record("10.0.1.5", "10.0.2.7", 3306);
        let (a, _) = attribute(&inventory_of(MANIFESTS), &mut r);
        for _ in 0..5 {
            queue.offer(drop_event(&r, a.denial.as_deref(), reference).unwrap());
        }
        drop(queue);
        tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
        let events = fake.objects("Event.events.k8s.io");
        assert_eq!(events.len(), 1, "one Event per pod and reason");
        let ev = &events[0];
        assert_eq!(ev["reason"], EVENT_REASON);
        assert_eq!(ev["type"], "Warning");
        assert_eq!(ev["regarding"]["name"], "mysql-0");
        assert_eq!(ev["series"]["count"], 2, "the flush reports the suppressed occurrences");
        assert!(ev["note"].as_str().unwrap().contains("db/mysql-ingress"));
        let writes = fake.requests().iter().filter(|r| r.method != "GET").count();
        assert_eq!(writes, 2, "one create and one flush, whatever the number of drops");
        let samples = crate::agent::metrics::tests::parse(&metrics.render());
        let events = |result: &str| {
            samples
                .iter()
                .find(|s| s.0 == "netpol_trace_k8s_events_total" && s.1["result"] == result)
                .map(|s| s.2)
        };
        assert_eq!(events("posted"), Some(1.0));
        assert_eq!(events("suppressed"), Some(4.0));
    }
}

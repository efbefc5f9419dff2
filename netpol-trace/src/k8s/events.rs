//! Kubernetes Events (events.k8s.io/v1) on the objects we observe, written by kube's
//! [`Recorder`], which keeps the event series: the first occurrence of an (object, reason)
//! creates an Event, the next ones patch its `series` (count and last observed time) until
//! the series has been quiet for six minutes. kube does not rate-limit, so this recorder
//! adds that alone: at most one write per (object, reason) every `min_interval`; the
//! occurrences in between are counted and the next write (or [`EventRecorder::flush`])
//! reports them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType as KubeEventType, Recorder, Reporter};
use tokio::sync::Mutex;

use super::error::{Error, Result};

/// Default minimum time between two API writes for the same (object, reason).
pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(30);
/// After this long without an occurrence, a new Event is started (kube's Recorder and
/// client-go use 6 minutes).
pub const SERIES_TTL: Duration = Duration::from_secs(6 * 60);

/// `Normal` or `Warning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Informational.
    Normal,
    /// Something is wrong.
    Warning,
}

impl From<EventType> for KubeEventType {
    fn from(t: EventType) -> Self {
        match t {
            EventType::Normal => Self::Normal,
            EventType::Warning => Self::Warning,
        }
    }
}

/// What to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSpec {
    /// Normal or Warning.
    pub event_type: EventType,
    /// CamelCase reason, e.g. `NetworkPolicyDrop`; the aggregation key with the object.
    pub reason: String,
    /// What was done or observed, e.g. `Observed`.
    pub action: String,
    /// Human-readable note (at most 1 kB; longer notes are cut). The Event keeps the note of
    /// the occurrence that created it.
    pub note: String,
}

/// What [`EventRecorder::record`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// A new Event was created.
    Created,
    /// The existing Event's series was updated.
    Updated {
        /// Occurrences reported by this write (this one and those held back before it).
        occurrences: u32,
    },
    /// Counted but not written (rate limit); the next write reports it.
    Suppressed {
        /// Occurrences held back so far.
        pending: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SeriesKey {
    namespace: String,
    name: String,
    uid: String,
    reason: String,
}

/// The rate limit's state of one (object, reason).
#[derive(Debug)]
struct Limit {
    last_written: Instant,
    last_seen: Instant,
    /// Occurrences not written yet, with what to write for them.
    pending: u32,
    regarding: ObjectReference,
    spec: EventSpec,
}

/// Posts Events through kube's [`Recorder`], rate-limited per (object, reason).
pub struct EventRecorder {
    client: kube::Client,
    reporter: Reporter,
    /// Replaced by a fresh one when the server has forgotten an Event kube still patches.
    recorder: Mutex<Recorder>,
    min_interval: Duration,
    limits: Mutex<HashMap<SeriesKey, Limit>>,
}

fn truncate_note(note: &str) -> String {
    if note.len() <= 1024 {
        return note.to_string();
    }
    let mut end = 1021;
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &note[..end])
}

impl EventRecorder {
    /// A recorder reporting as `controller` (e.g. `netpol-trace.io/agent`) from `instance`
    /// (e.g. the node name).
    pub fn new(
        client: kube::Client,
        controller: impl Into<String>,
        instance: impl Into<String>,
    ) -> Self {
        let reporter = Reporter { controller: controller.into(), instance: Some(instance.into()) };
        Self {
            recorder: Mutex::new(Recorder::new(client.clone(), reporter.clone())),
            client,
            reporter,
            min_interval: DEFAULT_MIN_INTERVAL,
            limits: Mutex::new(HashMap::new()),
        }
    }

    /// Changes the minimum time between two writes for the same (object, reason).
    pub fn with_min_interval(mut self, every: Duration) -> Self {
        self.min_interval = every;
        self
    }

    /// Records one occurrence about `regarding` (which needs a namespace and name).
    pub async fn record(&self, regarding: &ObjectReference, spec: &EventSpec) -> Result<Recorded> {
        let namespace = regarding
            .namespace
            .clone()
            .ok_or_else(|| Error::InvalidObject("an Event needs a namespaced object".into()))?;
        let name = regarding
            .name
            .clone()
            .ok_or_else(|| Error::InvalidObject("an Event needs the object's name".into()))?;
        let key = SeriesKey {
            namespace,
            name,
            uid: regarding.uid.clone().unwrap_or_default(),
            reason: spec.reason.clone(),
        };
        let now = Instant::now();
        let mut limits = self.limits.lock().await;
        limits.retain(|_, l| now.duration_since(l.last_seen) < SERIES_TTL);
        let (occurrences, created) = match limits.get_mut(&key) {
            Some(limit) => {
                limit.pending += 1;
                limit.last_seen = now;
                limit.regarding = regarding.clone();
                limit.spec = spec.clone();
                if now.duration_since(limit.last_written) < self.min_interval {
                    return Ok(Recorded::Suppressed { pending: limit.pending });
                }
                (limit.pending, false)
            }
            None => (1, true),
        };
        self.publish(regarding, spec).await?;
        limits.insert(
            key,
            Limit {
                last_written: now,
                last_seen: now,
                pending: 0,
                regarding: regarding.clone(),
                spec: spec.clone(),
            },
        );
        Ok(if created { Recorded::Created } else { Recorded::Updated { occurrences } })
    }

    /// One write through kube's Recorder; an Event the server no longer has (expired) is
    /// started anew.
    async fn publish(&self, regarding: &ObjectReference, spec: &EventSpec) -> Result<()> {
        let event = Event {
            type_: spec.event_type.into(),
            reason: spec.reason.clone(),
            note: Some(truncate_note(&spec.note)),
            action: spec.action.clone(),
            secondary: None,
        };
        let namespace = regarding.namespace.as_deref();
        let mut recorder = self.recorder.lock().await;
        match recorder.publish(&event, regarding).await {
            Ok(()) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => {
                // kube's cache still holds the series of an Event the server dropped: a
                // fresh cache starts a new Event (other series start anew too, once).
                *recorder = Recorder::new(self.client.clone(), self.reporter.clone());
                recorder
                    .publish(&event, regarding)
                    .await
                    .map_err(|e| Error::from_kube(e, "create", "events", namespace, None))
            }
            Err(e) => Err(Error::from_kube(e, "publish", "events", namespace, None)),
        }
    }

    /// Writes every series with occurrences not yet written (e.g. on shutdown); returns how
    /// many Events were updated.
    pub async fn flush(&self) -> Result<usize> {
        let mut limits = self.limits.lock().await;
        let mut updated = 0;
        for limit in limits.values_mut().filter(|l| l.pending > 0) {
            self.publish(&limit.regarding, &limit.spec).await?;
            limit.pending = 0;
            limit.last_written = Instant::now();
            updated += 1;
        }
        Ok(updated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fake_apiserver::FakeApiServer;
    use serde_json::json;

    fn spec() -> EventSpec {
        EventSpec {
            event_type: EventType::Warning,
            reason: "NetworkPolicyDrop".into(),
            action: "Observed".into(),
            note: "SYN from app/web-1 to db/mysql-0:3306 dropped by db/mysql-ingress".into(),
        }
    }

    fn pod_ref(name: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some("db".into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        }
    }

    async fn within<F: std::future::Future>(f: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(5), f).await.expect("the fake was not called")
    }

    fn events_of(fake: &FakeApiServer, pod: &str) -> Vec<serde_json::Value> {
        fake.objects("Event.events.k8s.io")
            .into_iter()
            .filter(|e| e["regarding"]["name"] == pod)
            .collect()
    }

    #[tokio::test]
    async fn kube_keeps_the_series_and_we_rate_limit_per_object_and_reason() {
        let fake = FakeApiServer::start().await;
        fake.insert(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "db"}}));
        let recorder = EventRecorder::new(fake.client(), "netpol-trace.io/agent", "node-1")
            .with_min_interval(Duration::from_millis(200));
        let first = within(recorder.record(&pod_ref("mysql-0"), &spec())).await.unwrap();
        assert_eq!(first, Recorded::Created);
        assert_eq!(
            within(recorder.record(&pod_ref("mysql-0"), &spec())).await.unwrap(),
            Recorded::Suppressed { pending: 1 }
        );
        assert_eq!(
            within(recorder.record(&pod_ref("mysql-0"), &spec())).await.unwrap(),
            Recorded::Suppressed { pending: 2 }
        );
        let other = within(recorder.record(&pod_ref("mysql-1"), &spec())).await.unwrap();
        assert_eq!(other, Recorded::Created, "another object has its own series");

        tokio::time::sleep(Duration::from_millis(250)).await;
        let updated = within(recorder.record(&pod_ref("mysql-0"), &spec())).await.unwrap();
        assert_eq!(updated, Recorded::Updated { occurrences: 3 });
        let stored = events_of(&fake, "mysql-0");
        assert_eq!(stored.len(), 1, "the update patches the same Event: {stored:?}");
        assert_eq!(stored[0]["series"]["count"], 2, "kube's series: one count per write");
        assert_eq!(stored[0]["reportingController"], "netpol-trace.io/agent");
        assert_eq!(stored[0]["reportingInstance"], "node-1");
        assert_eq!(stored[0]["type"], "Warning");
        assert_eq!(fake.objects("Event.events.k8s.io").len(), 2);

        within(recorder.record(&pod_ref("mysql-0"), &spec())).await.unwrap();
        assert_eq!(within(recorder.flush()).await.unwrap(), 1);
        assert_eq!(events_of(&fake, "mysql-0")[0]["series"]["count"], 3);
        assert_eq!(within(recorder.flush()).await.unwrap(), 0, "nothing left to write");
        let writes = fake.requests().iter().filter(|r| r.method != "GET").count();
        assert_eq!(writes, 4, "2 creates, 1 rate-limited update, 1 flush");
    }

    #[tokio::test]
    async fn expired_event_starts_a_new_one() {
        let fake = FakeApiServer::start().await;
        fake.insert(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "db"}}));
        let recorder = EventRecorder::new(fake.client(), "netpol-trace.io/agent", "node-1")
            .with_min_interval(Duration::ZERO);
        assert_eq!(
            within(recorder.record(&pod_ref("mysql-0"), &spec())).await.unwrap(),
            Recorded::Created
        );
        let old = events_of(&fake, "mysql-0").remove(0);
        let name = old["metadata"]["name"].as_str().unwrap().to_string();
        fake.remove("Event.events.k8s.io", "db", &name);
        let again = within(recorder.record(&pod_ref("mysql-0"), &spec())).await.unwrap();
        assert_eq!(again, Recorded::Updated { occurrences: 1 }, "{again:?}");
        let now = events_of(&fake, "mysql-0");
        assert_eq!(now.len(), 1, "a new Event: {now:?}");
        assert_ne!(now[0]["metadata"]["name"], name.as_str());
    }

    #[tokio::test]
    async fn an_object_without_a_namespace_is_refused() {
        let fake = FakeApiServer::start().await;
        let recorder = EventRecorder::new(fake.client(), "netpol-trace.io/agent", "node-1");
        let mut node = pod_ref("n1");
        node.namespace = None;
        let err = within(recorder.record(&node, &spec())).await.unwrap_err();
        assert!(matches!(err, Error::InvalidObject(_)), "{err}");
        assert!(fake.requests().is_empty());
    }

    #[tokio::test]
    async fn the_agents_rbac_from_deploy_allows_what_the_recorder_writes() {
        let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
        let fake = FakeApiServer::builder()
            .with_manifests(&deploy)
            .token(
                "agent",
                fake_apiserver::Identity::service_account("netpol-trace", "netpol-trace"),
            )
            .token("nobody", fake_apiserver::Identity::user("eve", ["people"]))
            .admin_token("admin")
            .start()
            .await;
        fake.insert(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "db"}}));
        let recorder =
            EventRecorder::new(fake.client_with_token("agent"), "netpol-trace.io/agent", "node-1")
                .with_min_interval(Duration::ZERO);
        let first = within(recorder.record(&pod_ref("mysql-0"), &spec())).await.unwrap();
        assert_eq!(first, Recorded::Created, "create events.k8s.io/events");
        let second = within(recorder.record(&pod_ref("mysql-0"), &spec())).await.unwrap();
        assert_eq!(second, Recorded::Updated { occurrences: 1 }, "patch events.k8s.io/events");
        assert_eq!(events_of(&fake, "mysql-0")[0]["series"]["count"], 2);

        let stranger =
            EventRecorder::new(fake.client_with_token("nobody"), "netpol-trace.io/agent", "x");
        let err = within(stranger.record(&pod_ref("mysql-1"), &spec())).await.unwrap_err();
        assert_eq!(err.label(), "forbidden", "{err}");
    }
}

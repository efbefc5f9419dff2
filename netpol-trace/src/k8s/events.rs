//! Kubernetes Events (events.k8s.io/v1) on the objects we observe, aggregated per
//! (object, reason): the first occurrence creates an Event, later ones update its `series`
//! count, at most once per `min_interval`; occurrences in between are counted and carried by
//! the next update (or by [`EventRecorder::flush`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::Mutex;

use super::error::{Error, Result};

/// Default minimum time between two API writes for the same (object, reason).
pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(30);
/// After this long without an occurrence, a new Event is started (client-go uses 6 minutes).
pub const SERIES_TTL: Duration = Duration::from_secs(6 * 60);

/// `Normal` or `Warning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Informational.
    Normal,
    /// Something is wrong.
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "Normal",
            Self::Warning => "Warning",
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
    /// Human-readable note (at most 1 kB; longer notes are cut).
    pub note: String,
}

/// What [`EventRecorder::record`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// A new Event was created.
    Created {
        /// Its name.
        name: String,
    },
    /// The existing Event's series was updated.
    Updated {
        /// Its name.
        name: String,
        /// Occurrences so far.
        count: i32,
    },
    /// Counted but not written (rate limit); the next update carries it.
    Suppressed {
        /// Occurrences so far.
        count: i32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SeriesKey {
    namespace: String,
    name: String,
    uid: String,
    reason: String,
}

#[derive(Debug)]
struct Series {
    event_name: String,
    count: i32,
    written_count: i32,
    last_written: Instant,
    last_seen: Instant,
    note: String,
}

/// Posts aggregated, rate-limited Events.
pub struct EventRecorder {
    client: kube::Client,
    controller: String,
    instance: String,
    min_interval: Duration,
    series: Mutex<HashMap<SeriesKey, Series>>,
}

fn micro_time_now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
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
        Self {
            client,
            controller: controller.into(),
            instance: instance.into(),
            min_interval: DEFAULT_MIN_INTERVAL,
            series: Mutex::new(HashMap::new()),
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
            namespace: namespace.clone(),
            name: name.clone(),
            uid: regarding.uid.clone().unwrap_or_default(),
            reason: spec.reason.clone(),
        };
        let now = Instant::now();
        let mut all = self.series.lock().await;
        all.retain(|_, s| now.duration_since(s.last_seen) < SERIES_TTL);
        if let Some(series) = all.get_mut(&key) {
            series.count += 1;
            series.last_seen = now;
            series.note = truncate_note(&spec.note);
            if now.duration_since(series.last_written) < self.min_interval {
                return Ok(Recorded::Suppressed { count: series.count });
            }
            match self.write_series(&namespace, series).await {
                Ok(()) => {
                    return Ok(Recorded::Updated {
                        name: series.event_name.clone(),
                        count: series.count,
                    });
                }
                // The Event expired on the server: start a new one below.
                Err(e) if e.status_code() == Some(404) => {}
                Err(e) => return Err(e),
            }
        }
        let event_name =
            format!("{name}.{:x}", chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default());
        let event: Event = serde_json::from_value(json!({
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": event_name, "namespace": namespace},
            "eventTime": micro_time_now(),
            "reportingController": self.controller,
            "reportingInstance": self.instance,
            "action": spec.action,
            "reason": spec.reason,
            "type": spec.event_type.as_str(),
            "note": truncate_note(&spec.note),
            "regarding": regarding,
        }))
        .map_err(|e| Error::InvalidObject(format!("event: {e}")))?;
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        api.create(&PostParams::default(), &event).await.map_err(|e| {
            Error::from_kube(e, "create", "events", Some(&namespace), Some(&event_name))
        })?;
        all.insert(
            key,
            Series {
                event_name: event_name.clone(),
                count: 1,
                written_count: 1,
                last_written: now,
                last_seen: now,
                note: truncate_note(&spec.note),
            },
        );
        Ok(Recorded::Created { name: event_name })
    }

    async fn write_series(&self, namespace: &str, series: &mut Series) -> Result<()> {
        let patch = json!({
            "series": {"count": series.count, "lastObservedTime": micro_time_now()},
            "note": series.note,
        });
        let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        api.patch(&series.event_name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(|e| {
                Error::from_kube(e, "patch", "events", Some(namespace), Some(&series.event_name))
            })?;
        series.written_count = series.count;
        series.last_written = Instant::now();
        Ok(())
    }

    /// Writes every series with occurrences not yet written (e.g. on shutdown); returns how
    /// many Events were updated.
    pub async fn flush(&self) -> Result<usize> {
        let mut all = self.series.lock().await;
        let mut updated = 0;
        for (key, series) in all.iter_mut() {
            if series.count > series.written_count {
                self.write_series(&key.namespace, series).await?;
                updated += 1;
            }
        }
        Ok(updated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fake_apiserver::FakeApiServer;

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

    #[tokio::test]
    async fn aggregates_and_rate_limits_per_object_and_reason() {
        let fake = FakeApiServer::start().await;
        fake.insert(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "db"}}));
        let recorder = EventRecorder::new(fake.client(), "netpol-trace.io/agent", "node-1")
            .with_min_interval(Duration::from_millis(200));
        let first = within(recorder.record(&pod_ref("mysql-0"), &spec())).await.unwrap();
        let Recorded::Created { name } = first else {
            panic!("expected a new Event, got {first:?}")
        };
        assert_eq!(
            within(recorder.record(&pod_ref("mysql-0"), &spec())).await.unwrap(),
            Recorded::Suppressed { count: 2 }
        );
        assert_eq!(
            within(recorder.record(&pod_ref("mysql-0"), &spec())).await.unwrap(),
            Recorded::Suppressed { count: 3 }
        );
        let other = within(recorder.record(&pod_ref("mysql-1"), &spec())).await.unwrap();
        assert!(matches!(other, Recorded::Created { .. }), "another object has its own series");

        tokio::time::sleep(Duration::from_millis(250)).await;
        let updated = within(recorder.record(&pod_ref("mysql-0"), &spec())).await.unwrap();
        assert_eq!(updated, Recorded::Updated { name: name.clone(), count: 4 });
        let stored = fake.get("Event.events.k8s.io", "db", &name).unwrap();
        assert_eq!(stored["series"]["count"], 4);
        assert_eq!(stored["regarding"]["name"], "mysql-0");
        assert_eq!(stored["reportingController"], "netpol-trace.io/agent");
        assert_eq!(fake.objects("Event.events.k8s.io").len(), 2);

        within(recorder.record(&pod_ref("mysql-0"), &spec())).await.unwrap();
        assert_eq!(within(recorder.flush()).await.unwrap(), 1);
        assert_eq!(fake.get("Event.events.k8s.io", "db", &name).unwrap()["series"]["count"], 5);
        let writes = fake.requests().iter().filter(|r| r.method != "GET").count();
        assert_eq!(writes, 4, "2 creates, 1 rate-limited update, 1 flush");
    }

    #[tokio::test]
    async fn expired_event_starts_a_new_one() {
        let fake = FakeApiServer::start().await;
        fake.insert(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "db"}}));
        let recorder = EventRecorder::new(fake.client(), "netpol-trace.io/agent", "node-1")
            .with_min_interval(Duration::ZERO);
        let Recorded::Created { name } =
            within(recorder.record(&pod_ref("mysql-0"), &spec())).await.unwrap()
        else {
            panic!("expected a new Event")
        };
        fake.remove("Event.events.k8s.io", "db", &name);
        let again = within(recorder.record(&pod_ref("mysql-0"), &spec())).await.unwrap();
        assert!(matches!(again, Recorded::Created { .. }), "{again:?}");
    }
}

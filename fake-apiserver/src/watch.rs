//! WATCH: history replay after a resourceVersion, then live events, bookmarks and timeouts.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::resources::ResourceType;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{EventType, Store, StoredObject, WatchRecord};

/// What a watch request asked for.
pub(crate) struct WatchRequest {
    pub resource: &'static ResourceType,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    /// `resourceVersion` parameter; `None` when absent or "0" (start from the current state).
    pub resource_version: Option<u64>,
    pub send_initial_events: bool,
    pub bookmarks: bool,
    pub timeout: Option<Duration>,
}

impl WatchRequest {
    fn selects(&self, obj: &Value, namespace: &str) -> bool {
        self.namespace.as_deref().is_none_or(|ns| ns == namespace)
            && self.labels.matches(obj)
            && self.fields.matches(obj)
    }

    /// The event a watcher with this filter sees for a write, if any. A modification that
    /// moves an object into or out of the selection reads as ADDED or DELETED.
    fn view(&self, rec: &WatchRecord) -> Option<(EventType, Arc<StoredObject>)> {
        // Every version of a resource sees the writes made through any of them.
        if (rec.resource.group, rec.resource.plural) != (self.resource.group, self.resource.plural)
        {
            return None;
        }
        let now = self.selects(rec.object.value(), &rec.namespace);
        match (rec.event, rec.previous.as_ref()) {
            (EventType::Modified, Some(prev)) => {
                let before = self.selects(prev.value(), &rec.namespace);
                match (before, now) {
                    (true, true) => Some((EventType::Modified, rec.object.clone())),
                    (false, true) => Some((EventType::Added, rec.object.clone())),
                    (true, false) => Some((EventType::Deleted, rec.object.clone())),
                    (false, false) => None,
                }
            }
            (event, _) => now.then(|| (event, rec.object.clone())),
        }
    }

    fn bookmark(&self, rv: u64, initial_events_end: bool) -> Value {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_events_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        json!({"type": "BOOKMARK", "object": {
            "kind": self.resource.kind,
            "apiVersion": self.resource.api_version(),
            "metadata": meta,
        }})
    }
}

fn line(v: &Value) -> Bytes {
    let mut buf = serde_json::to_vec(v).unwrap_or_default();
    buf.push(b'\n');
    Bytes::from(buf)
}

/// One watch event line, the object spliced from its cached encoding.
fn event_line(event: EventType, rt: &ResourceType, obj: &StoredObject) -> Bytes {
    let mut buf = Vec::with_capacity(obj.untyped_json().len() + 96);
    buf.extend_from_slice(b"{\"type\":\"");
    buf.extend_from_slice(event.as_str().as_bytes());
    buf.extend_from_slice(b"\",\"object\":");
    obj.write_typed_json(rt, &mut buf);
    buf.extend_from_slice(b"}\n");
    Bytes::from(buf)
}

/// The ERROR event a watch from a compacted resourceVersion gets (HTTP 200, then this).
fn expired(asked: u64, oldest: u64) -> Value {
    json!({"type": "ERROR", "object": {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("too old resource version: {asked} ({oldest})"),
        "reason": "Expired", "code": 410,
    }})
}

/// Starts a watch: everything before going live is decided under the store lock so no write
/// is missed or seen twice. Returns the channel the response body reads lines from.
pub(crate) fn start(
    store: &Store,
    req: WatchRequest,
    bookmark_interval: Duration,
) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(256);
    let mut first: Vec<Bytes> = Vec::new();
    let current = store.resource_version();
    match req.resource_version {
        Some(rv) if !req.send_initial_events && rv < store.compacted_rv() => {
            let _ = tx.try_send(line(&expired(rv, store.compacted_rv() + 1)));
            return rx;
        }
        Some(rv) if !req.send_initial_events => {
            first.extend(
                store
                    .history_after(rv)
                    .iter()
                    .filter_map(|r| req.view(r))
                    .map(|(e, o)| event_line(e, req.resource, &o)),
            );
        }
        _ => {
            let ns = req.namespace.as_deref();
            let all = store.page(req.resource, ns, &req.labels, &req.fields, None, None);
            for obj in all.items {
                first.push(event_line(EventType::Added, req.resource, &obj));
            }
            if req.send_initial_events {
                first.push(line(&req.bookmark(current, true)));
            }
        }
    }
    let live = store.subscribe();
    tokio::spawn(stream(tx, first, live, req, current, bookmark_interval));
    rx
}

async fn stream(
    tx: mpsc::Sender<Bytes>,
    first: Vec<Bytes>,
    mut live: broadcast::Receiver<WatchRecord>,
    req: WatchRequest,
    mut last_rv: u64,
    bookmark_interval: Duration,
) {
    for l in first {
        if tx.send(l).await.is_err() {
            return;
        }
    }
    let deadline = tokio::time::sleep(req.timeout.unwrap_or(Duration::from_secs(1800)));
    tokio::pin!(deadline);
    let mut ticks = tokio::time::interval(bookmark_interval);
    ticks.tick().await;
    loop {
        let out = tokio::select! {
            rec = live.recv() => match rec {
                Ok(rec) => {
                    last_rv = rec.rv;
                    match req.view(&rec) {
                        Some((e, o)) => event_line(e, req.resource, &o),
                        None => continue,
                    }
                }
                // A watcher that falls behind is closed; the client re-watches from its
                // last resourceVersion, as it does with a real server.
                Err(_) => return,
            },
            _ = ticks.tick(), if req.bookmarks => line(&req.bookmark(last_rv, false)),
            () = &mut deadline => return,
            () = tx.closed() => return,
        };
        if tx.send(out).await.is_err() {
            return;
        }
    }
}

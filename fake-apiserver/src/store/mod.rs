//! Object storage with one global resourceVersion counter and a bounded watch history.
//!
//! Objects are kept in one ordered map keyed by (group, plural, namespace, name), so a list
//! (or one page of it) walks only its own range, and each object is serialized once
//! ([`StoredObject`]) however many pages and watchers send it. The verbs with admission live in
//! [`write`].

mod object;
mod write;

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::crd;
use crate::resources::{Registry, ResourceType};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::validation;

pub(crate) use object::{StoredObject, with_type};

/// Storage key: group, plural, namespace ("" when cluster-scoped), name.
type ObjectKey = (&'static str, &'static str, String, String);

/// A watch event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// The object was created.
    Added,
    /// The object was changed.
    Modified,
    /// The object was deleted.
    Deleted,
}

impl EventType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One committed write, as kept for watches.
#[derive(Debug, Clone)]
pub struct WatchRecord {
    /// The resourceVersion this write produced.
    pub rv: u64,
    /// What happened.
    pub event: EventType,
    /// Which resource type (the version the write came through; watchers of another version
    /// of the same resource see it too).
    pub resource: &'static ResourceType,
    /// The object's namespace ("" when cluster-scoped).
    pub namespace: String,
    /// The object after the write (before it, for deletions).
    pub object: Arc<StoredObject>,
    /// The object before a modification.
    pub previous: Option<Arc<StoredObject>>,
}

/// How a PATCH body is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/strategic-merge-patch+json`, applied as a merge patch: the fake has no
    /// per-field merge keys, so lists are replaced whole.
    StrategicMerge,
}

/// Which part of an object a write addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The object itself (for types with a status subresource, everything but `.status`).
    Main,
    /// The `/status` subresource: only `.status` changes.
    Status,
}

/// One page of a list.
pub(crate) struct Page {
    /// The objects of the page, in (namespace, name) order.
    pub items: Vec<Arc<StoredObject>>,
    /// Where the next page starts (after this namespace and name), when there is one.
    pub next: Option<(String, String)>,
    /// How many objects follow this page (only without selectors, as the real server).
    pub remaining: Option<usize>,
}

/// The fake's data: objects, counter, history, and the types it serves.
pub(crate) struct Store {
    rv: u64,
    uids: u64,
    objects: BTreeMap<ObjectKey, Arc<StoredObject>>,
    history: VecDeque<WatchRecord>,
    /// Writes with a resourceVersion at or below this are no longer in `history`.
    compacted_rv: u64,
    history_limit: usize,
    events: broadcast::Sender<WatchRecord>,
    /// Built-in and custom resource types.
    pub registry: Registry,
}

fn key(rt: &ResourceType, ns: &str, name: &str) -> ObjectKey {
    (rt.group, rt.plural, ns.to_string(), name.to_string())
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata").and_then(|m| m.get(field)).and_then(Value::as_str)
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn is_crd(rt: &ResourceType) -> bool {
    rt.group == "apiextensions.k8s.io" && rt.plural == "customresourcedefinitions"
}

impl Store {
    pub(crate) fn new(history_limit: usize) -> Self {
        let (events, _) = broadcast::channel(4096);
        Self {
            rv: 1,
            uids: 0,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            compacted_rv: 1,
            history_limit,
            events,
            registry: Registry::default(),
        }
    }

    pub(crate) fn resource_version(&self) -> u64 {
        self.rv
    }

    pub(crate) fn compacted_rv(&self) -> u64 {
        self.compacted_rv
    }

    /// Forgets the watch history: watches from an older resourceVersion get 410 Gone.
    pub(crate) fn compact(&mut self) {
        self.history.clear();
        self.compacted_rv = self.rv;
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<WatchRecord> {
        self.events.subscribe()
    }

    pub(crate) fn history_after(&self, rv: u64) -> Vec<WatchRecord> {
        self.history.iter().filter(|r| r.rv > rv).cloned().collect()
    }

    fn next_uid(&mut self) -> String {
        self.uids += 1;
        format!("6f1e2d3c-0000-4000-8000-{:012x}", self.uids)
    }

    /// Stores (or removes) an object under a new resourceVersion and tells the watchers.
    /// Returns the object as answered (with its type fields).
    fn commit(
        &mut self,
        rt: &'static ResourceType,
        ns: &str,
        mut obj: Value,
        event: EventType,
    ) -> Value {
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let name = meta_str(&obj, "name").unwrap_or_default().to_string();
        let k = key(rt, ns, &name);
        let answer = with_type(rt, obj.clone());
        let stored = Arc::new(StoredObject::new(obj));
        let previous = match event {
            EventType::Deleted => self.objects.remove(&k),
            _ => self.objects.insert(k, stored.clone()),
        };
        if is_crd(rt) {
            match event {
                EventType::Deleted => {
                    crd::unregister(&mut self.registry, &answer);
                    self.drop_custom_objects(&answer);
                }
                // Admission checked the definition; a test's insert() is taken as given.
                _ => {
                    let _ = crd::register(&mut self.registry, &answer);
                }
            }
        }
        let record = WatchRecord {
            rv: self.rv,
            event,
            resource: rt,
            namespace: ns.to_string(),
            object: stored,
            previous: previous.filter(|_| event == EventType::Modified),
        };
        self.history.push_back(record.clone());
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.compacted_rv = old.rv;
            }
        }
        // No receiver is not an error: nobody is watching.
        let _ = self.events.send(record);
        answer
    }

    /// Deletes every object of the type a deleted definition defined, as the API server's
    /// finalizer does.
    fn drop_custom_objects(&mut self, crd: &Value) {
        let group = crd.pointer("/spec/group").and_then(Value::as_str).unwrap_or_default();
        let plural = crd.pointer("/spec/names/plural").and_then(Value::as_str).unwrap_or_default();
        let doomed: Vec<ObjectKey> = self
            .objects
            .keys()
            .filter(|(g, p, _, _)| *g == group && *p == plural)
            .cloned()
            .collect();
        for k in doomed {
            self.objects.remove(&k);
        }
    }

    pub(crate) fn get_stored(
        &self,
        rt: &'static ResourceType,
        ns: &str,
        name: &str,
    ) -> Result<&Arc<StoredObject>, ApiError> {
        self.objects.get(&key(rt, ns, name)).ok_or_else(|| ApiError::not_found(rt, name))
    }

    pub(crate) fn get(
        &self,
        rt: &'static ResourceType,
        ns: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        self.get_stored(rt, ns, name).map(|o| o.typed(rt))
    }

    /// The objects of a type (in one namespace or all), in key order, from `after` on.
    fn range<'a>(
        &'a self,
        rt: &'static ResourceType,
        ns: Option<&'a str>,
        after: Option<&(String, String)>,
    ) -> impl Iterator<Item = &'a Arc<StoredObject>> + 'a {
        let start = match after {
            Some((n, name)) => Bound::Excluded(key(rt, n, name)),
            None => Bound::Included(key(rt, ns.unwrap_or_default(), "")),
        };
        self.objects
            .range((start, Bound::Unbounded))
            .take_while(move |((g, p, n, _), _)| {
                *g == rt.group && *p == rt.plural && ns.is_none_or(|ns| ns == n)
            })
            .map(|(_, o)| o)
    }

    /// The stored objects of a type (without type fields), in one namespace or all.
    pub(crate) fn values<'a>(
        &'a self,
        rt: &'static ResourceType,
        ns: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Value> + 'a {
        self.range(rt, ns, None).map(|o| o.value())
    }

    /// Every object matching the selectors, with type fields.
    pub(crate) fn list(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> Vec<Value> {
        self.range(rt, ns, None)
            .filter(|o| labels.matches(o.value()) && fields.matches(o.value()))
            .map(|o| o.typed(rt))
            .collect()
    }

    /// One page of a list: at most `limit` objects after `after`.
    pub(crate) fn page(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
        after: Option<&(String, String)>,
        limit: Option<usize>,
    ) -> Page {
        let selects =
            |o: &&Arc<StoredObject>| labels.matches(o.value()) && fields.matches(o.value());
        let mut matching = self.range(rt, ns, after).filter(selects);
        let items: Vec<_> = match limit {
            Some(l) => matching.by_ref().take(l).cloned().collect(),
            None => matching.by_ref().cloned().collect(),
        };
        if matching.next().is_none() {
            return Page { items, next: None, remaining: None };
        }
        let last = items.last().map(|o| {
            let ns = meta_str(o.value(), "namespace").unwrap_or_default().to_string();
            (ns, meta_str(o.value(), "name").unwrap_or_default().to_string())
        });
        let remaining = (labels.is_empty() && fields.is_empty())
            .then(|| self.range(rt, ns, last.as_ref()).count());
        Page { items, next: last, remaining }
    }

    fn namespace_exists(&self, ns: &str) -> bool {
        self.objects.contains_key(&("", "namespaces", String::new(), ns.to_string()))
    }

    /// Test side: stores an object as given (no admission: no validation, no defaulting),
    /// stamping uid, creationTimestamp and generation when missing.
    pub(crate) fn insert(&mut self, mut obj: Value) -> Result<Value, String> {
        let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
        let rt = self
            .registry
            .by_api_version_kind(api_version, kind)
            .ok_or_else(|| format!("fake-apiserver does not serve {api_version} {kind}"))?;
        let name = meta_str(&obj, "name")
            .filter(|n| !n.is_empty())
            .ok_or("object has no metadata.name")?
            .to_string();
        let ns = if rt.namespaced {
            let ns = meta_str(&obj, "namespace").unwrap_or("default").to_string();
            obj["metadata"]["namespace"] = json!(ns);
            ns
        } else {
            String::new()
        };
        let existing = self.objects.get(&key(rt, &ns, &name)).cloned();
        if rt.plural == "namespaces" {
            validation::apply_defaults(rt, &mut obj);
        }
        if is_crd(rt) {
            crd::register(&mut self.registry, &obj)
                .map_err(|e| format!("CustomResourceDefinition {name}: {e}"))?;
            obj["status"] = crd::established_status(&obj);
        }
        let meta = &mut obj["metadata"];
        if meta.get("uid").is_none() {
            meta["uid"] = match existing.as_ref().and_then(|e| e.value().pointer("/metadata/uid")) {
                Some(uid) => uid.clone(),
                None => json!(self.next_uid()),
            };
        }
        if meta.get("creationTimestamp").is_none() {
            meta["creationTimestamp"] = json!(now());
        }
        if rt.has_generation() && meta.get("generation").is_none() {
            meta["generation"] = json!(1);
        }
        let event = if existing.is_some() { EventType::Modified } else { EventType::Added };
        Ok(self.commit(rt, &ns, obj, event))
    }

    /// Test side: changes a stored object as another writer would (new resourceVersion,
    /// MODIFIED event). `None` when the object does not exist.
    pub(crate) fn modify(
        &mut self,
        rt: &'static ResourceType,
        ns: &str,
        name: &str,
        change: impl FnOnce(&mut Value),
    ) -> Option<Value> {
        let current = self.objects.get(&key(rt, ns, name))?.clone();
        let mut obj = current.typed(rt);
        change(&mut obj);
        if rt.has_generation() && write::spec_changed(rt, current.value(), &obj) {
            let g = obj.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
            obj["metadata"]["generation"] = json!(g + 1);
        }
        Some(self.commit(rt, ns, obj, EventType::Modified))
    }

    /// Test side: deletes a stored object (DELETED event).
    pub(crate) fn remove(
        &mut self,
        rt: &'static ResourceType,
        ns: &str,
        name: &str,
    ) -> Option<Value> {
        let obj = self.objects.get(&key(rt, ns, name))?.typed(rt);
        Some(self.commit(rt, ns, obj, EventType::Deleted))
    }
}

//! Object storage with one global resourceVersion counter and a bounded watch history.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::resources::{self, ResourceType};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::validation;

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
    /// Which resource type.
    pub resource: &'static ResourceType,
    /// The object's namespace ("" when cluster-scoped).
    pub namespace: String,
    /// The object after the write (before it, for deletions).
    pub object: Arc<Value>,
    /// The object before a modification.
    pub previous: Option<Arc<Value>>,
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

/// The fake's data: objects, counter, history.
pub(crate) struct Store {
    rv: u64,
    uids: u64,
    objects: BTreeMap<ObjectKey, Value>,
    history: VecDeque<WatchRecord>,
    /// Writes with a resourceVersion at or below this are no longer in `history`.
    compacted_rv: u64,
    history_limit: usize,
    events: broadcast::Sender<WatchRecord>,
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
        let previous = match event {
            EventType::Deleted => self.objects.remove(&k),
            _ => self.objects.insert(k, obj.clone()),
        };
        let record = WatchRecord {
            rv: self.rv,
            event,
            resource: rt,
            namespace: ns.to_string(),
            object: Arc::new(with_type(rt, obj.clone())),
            previous: previous
                .filter(|_| event == EventType::Modified)
                .map(|p| Arc::new(with_type(rt, p))),
        };
        self.history.push_back(record.clone());
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.compacted_rv = old.rv;
            }
        }
        // No receiver is not an error: nobody is watching.
        let _ = self.events.send(record);
        with_type(rt, obj)
    }

    pub(crate) fn get(
        &self,
        rt: &'static ResourceType,
        ns: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        self.objects
            .get(&key(rt, ns, name))
            .map(|o| with_type(rt, o.clone()))
            .ok_or_else(|| ApiError::not_found(rt, name))
    }

    pub(crate) fn list(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((g, p, n, _), _)| {
                *g == rt.group && *p == rt.plural && ns.is_none_or(|ns| ns == n)
            })
            .map(|(_, o)| with_type(rt, o.clone()))
            .filter(|o| labels.matches(o) && fields.matches(o))
            .collect()
    }

    fn namespace_exists(&self, ns: &str) -> bool {
        self.objects.contains_key(&("", "namespaces", String::new(), ns.to_string()))
    }

    /// POST: create.
    pub(crate) fn create(
        &mut self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        mut obj: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        check_type(rt, &mut obj)?;
        let ns = ns.unwrap_or_default();
        if rt.namespaced {
            match meta_str(&obj, "namespace") {
                Some(body_ns) if !body_ns.is_empty() && body_ns != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => obj["metadata"]["namespace"] = json!(ns),
            }
        }
        if meta_str(&obj, "resourceVersion").is_some_and(|rv| !rv.is_empty()) {
            // The storage layer refuses this with an internal error, as the real server does.
            return Err(ApiError::new(
                500,
                "InternalError",
                "Internal error occurred: resourceVersion should not be set on objects to be created",
            ));
        }
        let name = match (meta_str(&obj, "name"), meta_str(&obj, "generateName")) {
            (Some(n), _) if !n.is_empty() => n.to_string(),
            (_, Some(prefix)) if !prefix.is_empty() => {
                let name = format!("{prefix}{}", generated_suffix(self.rv + self.uids));
                obj["metadata"]["name"] = json!(name);
                name
            }
            _ => {
                return Err(ApiError::invalid(
                    rt,
                    "",
                    &[crate::status::FieldError::required(
                        "metadata.name",
                        "name or generateName is required",
                    )],
                ));
            }
        };
        if rt.namespaced && !self.namespace_exists(ns) {
            return Err(ApiError::namespace_not_found(ns));
        }
        if self.objects.contains_key(&key(rt, ns, &name)) {
            return Err(ApiError::already_exists(rt, &name));
        }
        validation::apply_defaults(rt, &mut obj);
        let errs = validation::validate(rt, &obj);
        if !errs.is_empty() {
            return Err(ApiError::invalid(rt, &name, &errs));
        }
        obj["metadata"]["uid"] = json!(self.next_uid());
        obj["metadata"]["creationTimestamp"] = json!(now());
        if rt.has_generation() {
            obj["metadata"]["generation"] = json!(1);
        }
        if dry_run {
            if let Some(m) = obj["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
            return Ok(obj);
        }
        Ok(self.commit(rt, ns, obj, EventType::Added))
    }

    /// Stores a new version of an existing object: immutable metadata kept, defaults,
    /// validation, generation, no-op detection.
    fn store_update(
        &mut self,
        rt: &'static ResourceType,
        ns: &str,
        name: &str,
        current: Value,
        mut obj: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        for field in ["uid", "creationTimestamp", "generation", "name"] {
            match current["metadata"].get(field) {
                Some(v) => obj["metadata"][field] = v.clone(),
                None => {
                    if let Some(m) = obj["metadata"].as_object_mut() {
                        m.remove(field);
                    }
                }
            }
        }
        if rt.namespaced {
            obj["metadata"]["namespace"] = json!(ns);
        }
        obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
        validation::apply_defaults(rt, &mut obj);
        let errs = validation::validate(rt, &obj);
        if !errs.is_empty() {
            return Err(ApiError::invalid(rt, name, &errs));
        }
        if rt.has_generation() && obj.get("spec") != current.get("spec") {
            let gen_now =
                current.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
            obj["metadata"]["generation"] = json!(gen_now + 1);
        }
        if obj == current || dry_run {
            // An update that changes nothing is not written and bumps nothing.
            return Ok(obj);
        }
        Ok(self.commit(rt, ns, obj, EventType::Modified))
    }

    /// PUT: replace.
    pub(crate) fn replace(
        &mut self,
        rt: &'static ResourceType,
        ns: &str,
        name: &str,
        mut obj: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        check_type(rt, &mut obj)?;
        let body_name = meta_str(&obj, "name").unwrap_or_default();
        if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        if rt.namespaced && meta_str(&obj, "namespace").is_some_and(|n| !n.is_empty() && n != ns) {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let current = self.get(rt, ns, name)?;
        if let Some(rv) = meta_str(&obj, "resourceVersion").filter(|rv| !rv.is_empty())
            && Some(rv) != meta_str(&current, "resourceVersion")
        {
            return Err(ApiError::stale(rt, name));
        }
        if let Some(uid) = meta_str(&obj, "uid").filter(|u| !u.is_empty())
            && Some(uid) != meta_str(&current, "uid")
        {
            return Err(ApiError::conflict(
                rt,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(&current, "uid").unwrap_or_default()
                ),
            ));
        }
        self.store_update(rt, ns, name, current, obj, dry_run)
    }

    /// PATCH.
    pub(crate) fn patch(
        &mut self,
        rt: &'static ResourceType,
        ns: &str,
        name: &str,
        kind: PatchKind,
        body: &[u8],
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let current = self.get(rt, ns, name)?;
        let mut patched = current.clone();
        match kind {
            PatchKind::Json => {
                let ops: json_patch::Patch = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
                json_patch::patch(&mut patched, &ops)
                    .map_err(|_| ApiError::json_patch_rejected())?;
            }
            PatchKind::Merge | PatchKind::StrategicMerge => {
                let doc: Value = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
                if !doc.is_object() {
                    return Err(ApiError::bad_request("error decoding patch: not a JSON object"));
                }
                json_patch::merge(&mut patched, &doc);
            }
        }
        if !patched.is_object() || !patched["metadata"].is_object() {
            return Err(ApiError::json_patch_rejected());
        }
        // A patch that sets metadata.resourceVersion is a precondition, as in the real server.
        if meta_str(&patched, "resourceVersion") != meta_str(&current, "resourceVersion") {
            return Err(ApiError::stale(rt, name));
        }
        check_type(rt, &mut patched)?;
        self.store_update(rt, ns, name, current, patched, dry_run)
    }

    /// DELETE, with the optional preconditions of a DeleteOptions body.
    pub(crate) fn delete(
        &mut self,
        rt: &'static ResourceType,
        ns: &str,
        name: &str,
        options: Option<&Value>,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let current = self.get(rt, ns, name)?;
        let pre = options.and_then(|o| o.get("preconditions"));
        if let Some(rv) = pre.and_then(|p| p.get("resourceVersion")).and_then(Value::as_str) {
            let have = meta_str(&current, "resourceVersion").unwrap_or_default();
            if rv != have {
                return Err(ApiError::conflict(
                    rt,
                    name,
                    &format!(
                        "the ResourceVersion in the precondition ({rv}) does not match the ResourceVersion in record ({have}). The object might have been modified"
                    ),
                ));
            }
        }
        if let Some(uid) = pre.and_then(|p| p.get("uid")).and_then(Value::as_str) {
            let have = meta_str(&current, "uid").unwrap_or_default();
            if uid != have {
                return Err(ApiError::conflict(
                    rt,
                    name,
                    &format!(
                        "the UID in the precondition ({uid}) does not match the UID in record ({have}). The object might have been deleted and then recreated"
                    ),
                ));
            }
        }
        if dry_run {
            return Ok(current);
        }
        Ok(self.commit(rt, ns, current, EventType::Deleted))
    }

    /// Test side: stores an object as given (no admission: no validation, no defaulting),
    /// stamping uid, creationTimestamp and generation when missing.
    pub(crate) fn insert(&mut self, mut obj: Value) -> Result<Value, String> {
        let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
        let rt = resources::by_api_version_kind(api_version, kind)
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
        let meta = &mut obj["metadata"];
        if meta.get("uid").is_none() {
            meta["uid"] = match existing.as_ref().and_then(|e| e.pointer("/metadata/uid")) {
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
        let mut obj = self.objects.get(&key(rt, ns, name))?.clone();
        change(&mut obj);
        if rt.has_generation() && obj.get("spec") != self.objects[&key(rt, ns, name)].get("spec") {
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
        let obj = self.objects.get(&key(rt, ns, name))?.clone();
        Some(self.commit(rt, ns, obj, EventType::Deleted))
    }
}

/// Sets `apiVersion`/`kind` on a stored object for answers (list items drop them again).
pub(crate) fn with_type(rt: &ResourceType, mut obj: Value) -> Value {
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), json!(rt.api_version()));
        m.insert("kind".into(), json!(rt.kind));
    }
    obj
}

/// Checks the body's apiVersion/kind against the URL (filling them when absent).
fn check_type(rt: &ResourceType, obj: &mut Value) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request("the body of the request was not a JSON object"));
    }
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or(rt.kind);
    let api_version = obj.get("apiVersion").and_then(Value::as_str).map(str::to_string);
    let api_version = api_version.unwrap_or_else(|| rt.api_version());
    if kind != rt.kind || api_version != rt.api_version() {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            rt.api_version()
        )));
    }
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    *obj = with_type(rt, obj.take());
    Ok(())
}

/// Five lowercase alphanumerics derived from a counter, like generateName's random suffix.
fn generated_suffix(seed: u64) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..5)
        .map(|_| {
            x = x.rotate_left(13).wrapping_mul(0x9E3779B97F4A7C15);
            ALPHABET[(x % ALPHABET.len() as u64) as usize] as char
        })
        .collect()
}

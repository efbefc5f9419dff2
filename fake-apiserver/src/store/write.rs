//! The writing verbs with what the API server does around them: preconditions, admission
//! (defaults, pruning, validation), the status subresource, generation and no-op detection.

use serde_json::{Value, json};

use super::{EventType, Part, PatchKind, Store, is_crd, key, meta_str, now, with_type};
use crate::crd;
use crate::resources::ResourceType;
use crate::status::{ApiError, FieldError};
use crate::validation;

/// Metadata a client cannot change through an update or patch.
const IMMUTABLE_METADATA: [&str; 4] = ["uid", "creationTimestamp", "generation", "name"];

/// Whether a write changed what `metadata.generation` counts: the spec of a NetworkPolicy,
/// anything but metadata and status of a custom resource.
pub(super) fn spec_changed(rt: &ResourceType, before: &Value, after: &Value) -> bool {
    if !rt.custom {
        return before.get("spec") != after.get("spec");
    }
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            for field in ["metadata", "status", "apiVersion", "kind"] {
                m.remove(field);
            }
        }
        v
    };
    strip(before) != strip(after)
}

fn set_status(obj: &mut Value, status: Option<Value>) {
    if let Some(m) = obj.as_object_mut() {
        match status {
            Some(s) => {
                m.insert("status".into(), s);
            }
            None => {
                m.remove("status");
            }
        }
    }
}

impl Store {
    /// Admission shared by create and update: the type's defaults, pruning by the custom
    /// type's schema, validation.
    fn admit(
        &self,
        rt: &'static ResourceType,
        name: &str,
        obj: &mut Value,
    ) -> Result<(), ApiError> {
        let schema = rt.custom.then(|| self.registry.schema(rt)).flatten();
        if let Some(schema) = schema {
            crd::prune_object(schema, obj);
        }
        validation::apply_defaults(rt, obj);
        let mut errs = validation::validate(rt, obj);
        if let Some(schema) = schema {
            errs.extend(crd::validate_object(schema, obj));
        }
        if is_crd(rt)
            && let Err(why) = crd::Definition::parse(obj)
        {
            errs.push(FieldError::invalid("spec", "\"object\"", why));
        }
        if errs.is_empty() { Ok(()) } else { Err(ApiError::invalid(rt, name, &errs)) }
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
                    &[FieldError::required("metadata.name", "name or generateName is required")],
                ));
            }
        };
        if rt.namespaced && !self.namespace_exists(ns) {
            return Err(ApiError::namespace_not_found(ns));
        }
        if self.objects.contains_key(&key(rt, ns, &name)) {
            return Err(ApiError::already_exists(rt, &name));
        }
        if rt.status_subresource {
            // The status is the controllers' to write, through /status.
            set_status(&mut obj, None);
        }
        self.admit(rt, &name, &mut obj)?;
        if is_crd(rt) {
            obj["status"] = crd::established_status(&obj);
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

    /// Stores a new version of an existing object: immutable metadata kept, the part the
    /// write may not change taken from the stored object, admission, generation, no-op
    /// detection.
    #[allow(clippy::too_many_arguments)]
    fn store_update(
        &mut self,
        rt: &'static ResourceType,
        ns: &str,
        name: &str,
        current: Value,
        mut obj: Value,
        part: Part,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        match part {
            Part::Status => {
                // Only the status moves; everything else stays as stored.
                let status = obj.get("status").cloned();
                obj = current.clone();
                set_status(&mut obj, status);
            }
            Part::Main if rt.status_subresource => {
                set_status(&mut obj, current.get("status").cloned());
            }
            Part::Main => {}
        }
        for field in IMMUTABLE_METADATA {
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
        self.admit(rt, name, &mut obj)?;
        if is_crd(rt) {
            obj["status"] = crd::established_status(&obj);
        }
        if rt.has_generation() && spec_changed(rt, &current, &obj) {
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

    /// PUT: replace (the object, or its status).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn replace(
        &mut self,
        rt: &'static ResourceType,
        ns: &str,
        name: &str,
        mut obj: Value,
        part: Part,
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
        self.store_update(rt, ns, name, current, obj, part, dry_run)
    }

    /// PATCH (the object, or its status).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn patch(
        &mut self,
        rt: &'static ResourceType,
        ns: &str,
        name: &str,
        kind: PatchKind,
        body: &[u8],
        part: Part,
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
        self.store_update(rt, ns, name, current, patched, part, dry_run)
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
}

/// Checks the body's apiVersion/kind against the URL (filling them when absent).
pub(super) fn check_type(rt: &ResourceType, obj: &mut Value) -> Result<(), ApiError> {
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

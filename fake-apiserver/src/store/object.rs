//! A stored object and its wire form, serialized once and shared by every list page, watch
//! event and watcher that sends it.

use std::sync::OnceLock;

use bytes::Bytes;
use serde_json::{Value, json};

use crate::resources::ResourceType;

/// An object as stored: without `apiVersion`/`kind` (the type says them), with its JSON
/// encoding made on first use. Never changed once stored; a write stores a new one.
#[derive(Debug)]
pub(crate) struct StoredObject {
    value: Value,
    json: OnceLock<Bytes>,
}

impl StoredObject {
    /// Wraps an object, dropping its type fields.
    pub(crate) fn new(mut value: Value) -> Self {
        if let Some(m) = value.as_object_mut() {
            m.remove("apiVersion");
            m.remove("kind");
        }
        Self { value, json: OnceLock::new() }
    }

    /// The object without type fields.
    pub(crate) fn value(&self) -> &Value {
        &self.value
    }

    /// A copy with `apiVersion` and `kind` set, for answers.
    pub(crate) fn typed(&self, rt: &ResourceType) -> Value {
        with_type(rt, self.value.clone())
    }

    /// The JSON encoding without type fields (what the API server puts in a list of a
    /// built-in type), cached.
    pub(crate) fn untyped_json(&self) -> &Bytes {
        self.json.get_or_init(|| Bytes::from(serde_json::to_vec(&self.value).unwrap_or_default()))
    }

    /// Appends the JSON encoding with `apiVersion` and `kind` first (watch events, custom
    /// resource lists), spliced into the cached encoding instead of serializing again.
    pub(crate) fn write_typed_json(&self, rt: &ResourceType, out: &mut Vec<u8>) {
        let body = self.untyped_json();
        let head = json!({"apiVersion": rt.api_version(), "kind": rt.kind}).to_string();
        out.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
        if body.len() > 2 {
            out.push(b',');
            out.extend_from_slice(&body[1..]);
        } else {
            out.push(b'}');
        }
    }

    /// Appends the JSON a list of this type carries for the object: without type fields for
    /// built-in types, with them for custom resources (as the real server's lists do).
    pub(crate) fn write_list_item(&self, rt: &ResourceType, out: &mut Vec<u8>) {
        if rt.custom {
            self.write_typed_json(rt, out);
        } else {
            out.extend_from_slice(self.untyped_json());
        }
    }
}

/// Sets `apiVersion`/`kind` on an object.
pub(crate) fn with_type(rt: &ResourceType, mut obj: Value) -> Value {
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), json!(rt.api_version()));
        m.insert("kind".into(), json!(rt.kind));
    }
    obj
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::RESOURCES;

    #[test]
    fn typed_json_splices_the_type_fields() {
        let pods = RESOURCES.iter().find(|r| r.plural == "pods").unwrap();
        let stored = StoredObject::new(json!({"kind": "Pod", "metadata": {"name": "a"}}));
        let mut out = Vec::new();
        stored.write_typed_json(pods, &mut out);
        let back: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}}));
        let empty = StoredObject::new(json!({}));
        let mut out = Vec::new();
        empty.write_typed_json(pods, &mut out);
        let back: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, json!({"apiVersion": "v1", "kind": "Pod"}));
        assert_eq!(stored.untyped_json().as_ref(), br#"{"metadata":{"name":"a"}}"#);
    }
}

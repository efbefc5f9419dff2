//! CustomResourceDefinitions: registering the types they define, and what the API server does
//! with a custom object's structural schema — pruning unknown fields and validating types,
//! enums and required fields.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::resources::{CustomType, CustomTypeNames, Registry};
use crate::status::FieldError;

/// Fields every object keeps whatever the schema says (the API server handles `metadata`
/// itself and never prunes the type fields).
const ROOT_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];
/// The schema extension that keeps unknown fields of an object.
const PRESERVE: &str = "x-kubernetes-preserve-unknown-fields";
/// The schema extension for a value that may be an integer or a string.
const INT_OR_STRING: &str = "x-kubernetes-int-or-string";
/// The schema extension for an embedded object with apiVersion, kind and metadata.
const EMBEDDED: &str = "x-kubernetes-embedded-resource";

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// What the fake needs of a CustomResourceDefinition.
#[derive(Debug, Clone)]
pub(crate) struct Definition<'a> {
    group: &'a str,
    plural: &'a str,
    kind: &'a str,
    namespaced: bool,
    short_names: Vec<String>,
    /// Served versions: name, status subresource, schema.
    versions: Vec<(&'a str, bool, Option<&'a Value>)>,
}

impl<'a> Definition<'a> {
    /// Reads a definition; an error names the field that is missing or wrong.
    pub(crate) fn parse(crd: &'a Value) -> Result<Self, String> {
        let group = str_at(crd, "/spec/group");
        let plural = str_at(crd, "/spec/names/plural");
        let kind = str_at(crd, "/spec/names/kind");
        for (field, value) in
            [("spec.group", group), ("spec.names.plural", plural), ("spec.names.kind", kind)]
        {
            if value.is_empty() {
                return Err(format!("{field} is required"));
            }
        }
        let name = str_at(crd, "/metadata/name");
        if name != format!("{plural}.{group}") {
            return Err(format!(
                "metadata.name {name:?} must be spec.names.plural+\".\"+spec.group"
            ));
        }
        let namespaced = match str_at(crd, "/spec/scope") {
            "Namespaced" => true,
            "Cluster" => false,
            other => return Err(format!("spec.scope {other:?} must be Namespaced or Cluster")),
        };
        let short_names = crd
            .pointer("/spec/names/shortNames")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default();
        let mut versions = Vec::new();
        for v in crd.pointer("/spec/versions").and_then(Value::as_array).into_iter().flatten() {
            if v.get("served").and_then(Value::as_bool) != Some(true) {
                continue;
            }
            let version = str_at(v, "/name");
            if version.is_empty() {
                return Err("spec.versions[].name is required".into());
            }
            let status = v.pointer("/subresources/status").is_some_and(Value::is_object);
            versions.push((version, status, v.pointer("/schema/openAPIV3Schema")));
        }
        if versions.is_empty() {
            return Err("spec.versions has no served version".into());
        }
        Ok(Self { group, plural, kind, namespaced, short_names, versions })
    }
}

/// Registers the types a CustomResourceDefinition defines (its served versions).
pub(crate) fn register(registry: &mut Registry, crd: &Value) -> Result<(), String> {
    let def = Definition::parse(crd)?;
    let mut versions = Vec::new();
    let mut schemas = HashMap::new();
    for (version, status_subresource, schema) in &def.versions {
        versions.push(registry.intern(&CustomTypeNames {
            group: def.group,
            version,
            plural: def.plural,
            kind: def.kind,
            namespaced: def.namespaced,
            status_subresource: *status_subresource,
        }));
        if let Some(schema) = schema {
            schemas.insert((*version).to_string(), (*schema).clone());
        }
    }
    registry.register(
        def.group,
        def.plural,
        CustomType { versions, short_names: def.short_names, schemas },
    );
    Ok(())
}

/// Forgets the types of a deleted definition.
pub(crate) fn unregister(registry: &mut Registry, crd: &Value) {
    registry.unregister(str_at(crd, "/spec/group"), str_at(crd, "/spec/names/plural"));
}

/// The status the API server gives an accepted definition.
pub(crate) fn established_status(crd: &Value) -> Value {
    let names = crd.pointer("/spec/names").cloned().unwrap_or(Value::Null);
    serde_json::json!({
        "acceptedNames": names,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found"},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted"},
        ],
        "storedVersions": crd.pointer("/spec/versions").and_then(Value::as_array)
            .map(|vs| vs.iter().filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .filter_map(|v| v.get("name").cloned()).collect::<Vec<_>>())
            .unwrap_or_default(),
    })
}

fn preserves(schema: &Value) -> bool {
    schema.get(PRESERVE).and_then(Value::as_bool) == Some(true)
}

/// Removes the fields the schema does not know, as the API server does before storing: at every
/// level of objects with `properties`, unless `x-kubernetes-preserve-unknown-fields` is set
/// there. The root keeps apiVersion, kind and metadata.
pub(crate) fn prune_object(schema: &Value, obj: &mut Value) {
    let Some(map) = obj.as_object_mut() else { return };
    prune_map(schema, map, true);
}

fn prune_map(schema: &Value, map: &mut Map<String, Value>, root: bool) {
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    let keep_unknown = preserves(schema)
        || schema.get("additionalProperties").and_then(Value::as_bool) == Some(true);
    let embedded = schema.get(EMBEDDED).and_then(Value::as_bool) == Some(true);
    map.retain(|key, _| {
        keep_unknown
            || additional.is_some()
            || properties.is_some_and(|p| p.contains_key(key))
            || ((root || embedded) && ROOT_FIELDS.contains(&key.as_str()))
    });
    for (key, value) in map.iter_mut() {
        if (root || embedded) && key == "metadata" {
            continue;
        }
        let sub = properties.and_then(|p| p.get(key)).or(additional);
        if let Some(sub) = sub {
            prune_value(sub, value);
        }
    }
}

fn prune_value(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => prune_map(schema, map, false),
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    prune_value(item_schema, item);
                }
            }
        }
        _ => {}
    }
}

/// Checks an object against its schema: types, enums, required fields, numeric bounds.
/// Errors name the field as the API server does (`spec.decision`).
pub(crate) fn validate_object(schema: &Value, obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let (Some(properties), Some(map)) =
        (schema.get("properties").and_then(Value::as_object), obj.as_object())
    {
        for (key, sub) in properties {
            if ROOT_FIELDS.contains(&key.as_str()) {
                continue;
            }
            if let Some(value) = map.get(key) {
                validate(sub, value, key, &mut errs);
            }
        }
        required(schema, map, "", &mut errs);
    }
    errs
}

fn required(schema: &Value, map: &Map<String, Value>, path: &str, errs: &mut Vec<FieldError>) {
    for field in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
        let Some(field) = field.as_str() else { continue };
        if !map.contains_key(field) {
            let at = if path.is_empty() { field.to_string() } else { format!("{path}.{field}") };
            errs.push(FieldError::required(at, ""));
        }
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_ok(schema: &Value, value: &Value) -> bool {
    let got = type_name(value);
    if schema.get(INT_OR_STRING).and_then(Value::as_bool) == Some(true) {
        return matches!(got, "integer" | "string");
    }
    if value.is_null() && schema.get("nullable").and_then(Value::as_bool) == Some(true) {
        return true;
    }
    match schema.get("type").and_then(Value::as_str) {
        None => true,
        Some("number") => matches!(got, "integer" | "number"),
        Some(want) => want == got,
    }
}

/// How the API server prints a value in a validation message.
fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => format!("\"{s}\""),
        Value::Object(_) => "\"object\"".into(),
        Value::Array(_) => "\"array\"".into(),
        other => other.to_string(),
    }
}

fn validate(schema: &Value, value: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if !type_ok(schema, value) {
        let want = schema.get("type").and_then(Value::as_str).unwrap_or("integer or string");
        errs.push(FieldError::invalid(
            path,
            format!("\"{}\"", type_name(value)),
            format!("{path} in body must be of type {want}: \"{}\"", type_name(value)),
        ));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let supported: Vec<String> = allowed
            .iter()
            .map(|a| a.as_str().map_or_else(|| a.to_string(), str::to_string))
            .collect();
        let supported: Vec<&str> = supported.iter().map(String::as_str).collect();
        let got = value.as_str().map_or_else(|| value.to_string(), str::to_string);
        errs.push(FieldError::not_supported(path, &got, &supported));
    }
    if let Some(n) = value.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
            && n < min
        {
            errs.push(FieldError::invalid(
                path,
                shown(value),
                format!("{path} in body should be greater than or equal to {min}"),
            ));
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
            && n > max
        {
            errs.push(FieldError::invalid(
                path,
                shown(value),
                format!("{path} in body should be less than or equal to {max}"),
            ));
        }
    }
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (key, sub_value) in map {
                if let Some(sub) = properties.and_then(|p| p.get(key)).or(additional) {
                    validate(sub, sub_value, &format!("{path}.{key}"), errs);
                }
            }
            required(schema, map, path, errs);
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate(item_schema, item, &format!("{path}[{i}]"), errs);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["port"], "properties": {
                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                "decision": {"type": "string", "enum": ["Approved", "Rejected"]},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            }},
            "status": {"type": "object", "properties": {
                "backup": {"type": "array", "items": {"type": "object", "properties": {
                    "object": {"type": "object", "nullable": true,
                               "x-kubernetes-preserve-unknown-fields": true},
                }}},
            }},
        }})
    }

    #[test]
    fn prunes_unknown_fields_but_keeps_preserved_ones() {
        let mut obj = json!({
            "apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a", "anything": 1},
            "bogus": 1,
            "spec": {"port": 1, "typo": 2, "extra": {"free": {"form": true}}},
            "status": {"backup": [{"object": {"spec": {"a": 1}}, "junk": 3}]},
        });
        prune_object(&schema(), &mut obj);
        assert_eq!(
            obj,
            json!({
                "apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a", "anything": 1},
                "spec": {"port": 1, "extra": {"free": {"form": true}}},
                "status": {"backup": [{"object": {"spec": {"a": 1}}}]},
            })
        );
    }

    #[test]
    fn validates_enum_type_bounds_and_required() {
        let errs = validate_object(&schema(), &json!({"spec": {"port": 1, "decision": "Maybe"}}));
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].to_string(),
            "spec.decision: Unsupported value: \"Maybe\": supported values: \"Approved\", \"Rejected\""
        );
        let errs = validate_object(&schema(), &json!({"spec": {"port": "x"}}));
        assert_eq!(errs[0].field, "spec.port");
        let errs = validate_object(&schema(), &json!({"spec": {"port": 70000}}));
        assert_eq!(errs[0].field, "spec.port");
        let errs = validate_object(&schema(), &json!({"spec": {}}));
        assert_eq!(errs[0].to_string(), "spec.port: Required value");
        let ok = json!({"spec": {"port": 3306, "decision": "Approved"},
                        "status": {"backup": [{"object": null}]}});
        assert!(validate_object(&schema(), &ok).is_empty());
    }
}

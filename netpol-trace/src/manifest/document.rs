//! One manifest file's text → the Kubernetes objects in it: multi-document YAML, JSON (one or
//! several concatenated values), and `kind: List` wrappers.

use std::path::Path;

use k8s_openapi::Resource;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::ManifestError;
use crate::inventory::{ClusterObjects, PolicySource, Sourced, SourcedPolicy};
use crate::policy::calico::model::VERSIONS as CALICO_VERSIONS;

/// The syntax a manifest is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// YAML, possibly several `---`-separated documents (JSON is accepted too).
    Yaml,
    /// JSON, one or several concatenated values.
    Json,
}

impl Syntax {
    /// JSON for `*.json`, YAML otherwise.
    pub fn of_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => Self::Json,
            _ => Self::Yaml,
        }
    }
}

/// Parses `text` (read from `path`) and appends its objects to `objects`.
pub fn parse_manifest(
    text: &str,
    path: &Path,
    syntax: Syntax,
    objects: &mut ClusterObjects,
) -> Result<(), ManifestError> {
    let syntax_error = |document: usize, message: String| ManifestError::Syntax {
        path: path.to_owned(),
        document,
        message,
    };
    match syntax {
        Syntax::Yaml => {
            for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
                let value = Value::deserialize(document)
                    .map_err(|e| syntax_error(index + 1, e.to_string()))?;
                add_document(value, path, index + 1, objects)?;
            }
        }
        Syntax::Json => {
            for (index, value) in
                serde_json::Deserializer::from_str(text).into_iter::<Value>().enumerate()
            {
                let value = value.map_err(|e| syntax_error(index + 1, e.to_string()))?;
                add_document(value, path, index + 1, objects)?;
            }
        }
    }
    Ok(())
}

fn add_document(
    value: Value,
    path: &Path,
    document: usize,
    objects: &mut ClusterObjects,
) -> Result<(), ManifestError> {
    let ctx = Context { path, document };
    match value {
        Value::Null => Ok(()),
        Value::Object(_) if value.get("kind").and_then(Value::as_str) == Some("List") => {
            let items = match value.get("items") {
                None | Some(Value::Null) => return Ok(()),
                Some(Value::Array(items)) => items,
                Some(_) => {
                    return Err(ctx.object_error(
                        &value,
                        "items",
                        "",
                        "a List's items must be an array",
                    ));
                }
            };
            for (index, item) in items.iter().enumerate() {
                ctx.add_object(item.clone(), &format!("items[{index}]."), objects)?;
            }
            Ok(())
        }
        value => ctx.add_object(value, "", objects),
    }
}

/// Where a document is, for errors and policy sources.
struct Context<'a> {
    path: &'a Path,
    document: usize,
}

impl Context<'_> {
    fn add_object(
        &self,
        value: Value,
        prefix: &str,
        objects: &mut ClusterObjects,
    ) -> Result<(), ManifestError> {
        let Value::Object(map) = &value else {
            return Err(self.object_error(
                &value,
                prefix.trim_end_matches('.'),
                "",
                "expected a Kubernetes object (a mapping)",
            ));
        };
        let kind = match map.get("kind") {
            Some(Value::String(kind)) => kind.as_str(),
            _ => {
                return Err(self.object_error(
                    &value,
                    prefix,
                    "kind",
                    "must be a string naming the object's kind",
                ));
            }
        };
        let api_version = map.get("apiVersion").and_then(Value::as_str);
        match kind {
            "Namespace" => {
                objects.namespaces.push(self.typed::<Namespace>(&value, prefix, api_version)?)
            }
            "Pod" => objects.pods.push(self.typed::<Pod>(&value, prefix, api_version)?),
            "Service" => {
                objects.services.push(self.typed::<Service>(&value, prefix, api_version)?)
            }
            "EndpointSlice" => objects.endpoint_slices.push(self.typed::<EndpointSlice>(
                &value,
                prefix,
                api_version,
            )?),
            "NetworkPolicy" | "GlobalNetworkPolicy"
                if api_version.is_some_and(|v| CALICO_VERSIONS.contains(&v)) =>
            {
                let object = self.untyped(&value, prefix)?;
                objects.tiered.calico.push(self.sourced(object, value));
            }
            "Tier" if api_version.is_some_and(|v| CALICO_VERSIONS.contains(&v)) => {
                let object = self.untyped(&value, prefix)?;
                objects.tiered.tiers.push(self.sourced(object, value));
            }
            "GlobalNetworkPolicy" | "Tier" => {
                return Err(self.object_error(
                    &value,
                    prefix,
                    "apiVersion",
                    &format!("want one of {CALICO_VERSIONS:?} for Calico's {kind}"),
                ));
            }
            "ClusterNetworkPolicy" | "AdminNetworkPolicy" | "BaselineAdminNetworkPolicy" => {
                let object = self.untyped(&value, prefix)?;
                objects.tiered.admin.push(self.sourced(object, value));
            }
            "NetworkPolicy" => {
                let policy = self.typed::<NetworkPolicy>(&value, prefix, api_version)?;
                let source =
                    PolicySource::File { path: self.path.to_owned(), document: self.document };
                objects.network_policies.push(SourcedPolicy { policy, raw: value, source });
            }
            other => {
                tracing::debug!(path = %self.path.display(), document = self.document, kind = other, "ignoring object of unused kind")
            }
        }
        Ok(())
    }

    /// Deserialises `value` as `T` (a kind k8s-openapi does not know), with the failing
    /// field's path in the error.
    fn untyped<T: DeserializeOwned>(
        &self,
        value: &Value,
        prefix: &str,
    ) -> Result<T, ManifestError> {
        serde_path_to_error::deserialize::<_, T>(value.clone()).map_err(|error| {
            let field = error.path().to_string();
            let field = if field == "." { String::new() } else { field };
            self.object_error(value, prefix, &field, &error.into_inner().to_string())
        })
    }

    fn sourced<T>(&self, object: T, raw: Value) -> Sourced<T> {
        let source = PolicySource::File { path: self.path.to_owned(), document: self.document };
        Sourced { object, raw, source }
    }

    /// Deserialises `value` as `T`, with the failing field's path in the error.
    fn typed<T: DeserializeOwned + Resource>(
        &self,
        value: &Value,
        prefix: &str,
        api_version: Option<&str>,
    ) -> Result<T, ManifestError> {
        if let Some(version) = api_version.filter(|v| *v != T::API_VERSION) {
            return Err(self.object_error(
                value,
                prefix,
                "apiVersion",
                &format!("{} {version:?} is not supported (want {:?})", T::KIND, T::API_VERSION),
            ));
        }
        serde_path_to_error::deserialize::<_, T>(value.clone()).map_err(|error| {
            let field = error.path().to_string();
            let field = if field == "." { String::new() } else { field };
            self.object_error(value, prefix, &field, &error.into_inner().to_string())
        })
    }

    fn object_error(
        &self,
        value: &Value,
        prefix: &str,
        field: &str,
        message: &str,
    ) -> ManifestError {
        ManifestError::Object {
            path: self.path.to_owned(),
            document: self.document,
            object: describe(value),
            field: format!("{prefix}{field}").trim_end_matches('.').to_owned(),
            message: message.to_owned(),
        }
    }
}

/// `Kind namespace/name`, from whatever the value has.
fn describe(value: &Value) -> String {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let kind = text(value.get("kind")).unwrap_or_else(|| "object".to_owned());
    let metadata = value.get("metadata");
    let name = text(metadata.and_then(|m| m.get("name")));
    let namespace = text(metadata.and_then(|m| m.get("namespace")));
    match (namespace, name) {
        (Some(ns), Some(name)) => format!("{kind} {ns}/{name}"),
        (None, Some(name)) => format!("{kind} {name}"),
        _ => kind,
    }
}

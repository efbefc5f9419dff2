//! Reads the manifests a lab is built from: Namespaces, Pods and NetworkPolicies from a file or
//! a directory (recursive, `*.yaml|*.yml|*.json`, multi-document, `kind: List`). Other kinds are
//! skipped.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde::Deserialize;

use super::error::{LabError, Result};

/// The objects of a manifest set the lab uses.
#[derive(Debug, Clone, Default)]
pub struct LabInput {
    /// Namespaces.
    pub namespaces: Vec<Namespace>,
    /// Pods.
    pub pods: Vec<Pod>,
    /// NetworkPolicies.
    pub network_policies: Vec<NetworkPolicy>,
}

/// Loads every manifest under `path` (a file or a directory), in file-name order.
pub fn load_dir(path: &Path) -> Result<LabInput> {
    let mut files = Vec::new();
    collect_files(path, &mut files)?;
    let mut input = LabInput::default();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| LabError::io(format!("reading {}", file.display()), e))?;
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(document).map_err(|e| bad(&file, e))?;
            add_object(&file, value, &mut input)?;
        }
    }
    Ok(input)
}

fn collect_files(path: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let meta = std::fs::metadata(path)
        .map_err(|e| LabError::io(format!("reading {}", path.display()), e))?;
    if !meta.is_dir() {
        files.push(path.to_owned());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| LabError::io(format!("listing {}", path.display()), e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for entry in entries {
        let is_manifest = entry
            .extension()
            .and_then(|ext| ext.to_str())
            .is_some_and(|ext| matches!(ext, "yaml" | "yml" | "json"));
        if entry.is_dir() {
            collect_files(&entry, files)?;
        } else if is_manifest {
            files.push(entry);
        }
    }
    Ok(())
}

fn add_object(file: &Path, value: serde_yaml::Value, input: &mut LabInput) -> Result<()> {
    let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or_default().to_owned();
    match kind.as_str() {
        "List" => {
            let items = value.get("items").and_then(|i| i.as_sequence()).cloned();
            for item in items.unwrap_or_default() {
                add_object(file, item, input)?;
            }
        }
        "Namespace" => {
            input.namespaces.push(serde_yaml::from_value(value).map_err(|e| bad(file, e))?)
        }
        "Pod" => input.pods.push(serde_yaml::from_value(value).map_err(|e| bad(file, e))?),
        "NetworkPolicy" => {
            input.network_policies.push(serde_yaml::from_value(value).map_err(|e| bad(file, e))?)
        }
        _ => tracing::debug!(file = %file.display(), kind, "skipping object the lab does not use"),
    }
    Ok(())
}

fn bad(file: &Path, err: serde_yaml::Error) -> LabError {
    LabError::Manifest { path: file.to_owned(), message: err.to_string() }
}

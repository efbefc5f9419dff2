//! Loading objects: manifest files (`-f PATH`, repeatable: YAML/JSON files, multi-document YAML,
//! `kind: List`, directories searched recursively for `*.yaml`, `*.yml`, `*.json`; `-` is
//! standard input) or the live cluster. Kinds used: Namespace, Pod, NetworkPolicy, Service,
//! EndpointSlice, ClusterNetworkPolicy, AdminNetworkPolicy, BaselineAdminNetworkPolicy, and
//! Calico's NetworkPolicy (by its apiVersion), GlobalNetworkPolicy and Tier; other kinds are
//! skipped with a debug log. NetworkPolicies keep their raw JSON
//! exactly as read, with file path and 1-based document number.

mod cluster;
mod document;
mod error;

use std::path::{Path, PathBuf};

pub use cluster::{ClusterError, load_cluster, load_cluster_with};
pub use document::{Syntax, parse_manifest};
pub use error::ManifestError;

use crate::inventory::ClusterObjects;

/// Extensions of manifest files searched for in directories.
pub const MANIFEST_EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// The path that means standard input.
pub const STDIN_PATH: &str = "-";

/// Loads every path in order into one set of objects.
pub fn load_paths(paths: &[PathBuf]) -> Result<ClusterObjects, ManifestError> {
    let mut objects = ClusterObjects::default();
    for path in paths {
        load_path(path, &mut objects)?;
    }
    Ok(objects)
}

/// Loads one file, directory or `-` (standard input, YAML) into `objects`.
pub fn load_path(path: &Path, objects: &mut ClusterObjects) -> Result<(), ManifestError> {
    let io = |source| ManifestError::Io { path: path.to_owned(), source };
    if path.as_os_str() == STDIN_PATH {
        let text = std::io::read_to_string(std::io::stdin()).map_err(io)?;
        return parse_manifest(&text, path, Syntax::Yaml, objects);
    }
    let metadata = std::fs::metadata(path).map_err(io)?;
    if !metadata.is_dir() {
        let text = std::fs::read_to_string(path).map_err(io)?;
        return parse_manifest(&text, path, Syntax::of_path(path), objects);
    }
    let mut files = Vec::new();
    collect_manifest_files(path, &mut files)?;
    if files.is_empty() {
        return Err(ManifestError::Empty { path: path.to_owned() });
    }
    for file in files {
        let text = std::fs::read_to_string(&file)
            .map_err(|source| ManifestError::Io { path: file.clone(), source })?;
        parse_manifest(&text, &file, Syntax::of_path(&file), objects)?;
    }
    Ok(())
}

/// Manifest files under `dir`, recursively, sorted by path. Symbolic links to directories are
/// not followed (no cycles).
fn collect_manifest_files(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), ManifestError> {
    let io = |source| ManifestError::Io { path: dir.to_owned(), source };
    let mut entries: Vec<_> =
        std::fs::read_dir(dir).map_err(io)?.collect::<Result<_, _>>().map_err(io)?;
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        let file_type =
            entry.file_type().map_err(|source| ManifestError::Io { path: path.clone(), source })?;
        if file_type.is_dir() {
            collect_manifest_files(&path, files)?;
        } else if path.is_file()
            && path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| MANIFEST_EXTENSIONS.contains(&e))
        {
            files.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

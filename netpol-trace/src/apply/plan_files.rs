//! Writing a fix plan into the manifest files it was read from, through [`super::files`]:
//! a patched policy's document is rewritten in place (other documents keep their bytes), a
//! created policy is appended to the file of a policy it complements (else the first manifest
//! file; a JSON file that cannot take a second document gets a new YAML file beside it), and a
//! deleted one (`--fallback delete-policy`) is removed. Every changed file is first saved beside
//! itself as `<file>.netpol-trace-<UTC time>.bak`, which `netpol-trace restore` puts back.
//!
//! A policy's document is checked by content before it is rewritten: a file changed since it
//! was read is refused, never half-edited.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::files::{
    DocumentLocation, FileChange, append_document, remove_document, replace_document,
    write_new_file,
};
use crate::fix::{FixPlan, PatchAction, PolicyPatch};
use crate::inventory::PolicySource;
use crate::manifest::{MANIFEST_EXTENSIONS, STDIN_PATH, Syntax};

/// Why the plan cannot be written to the files.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// Reading or writing failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The policy was not read from a manifest file (cluster, standard input, memory).
    #[error("networkpolicy {policy} was not read from a manifest file ({source_location})")]
    NotFromFile {
        /// `namespace/name`.
        policy: String,
        /// Where it was read from.
        source_location: String,
    },
    /// The file no longer holds the policy as read.
    #[error(
        "{}: networkpolicy {policy} is no longer there as it was read; nothing was written for it, re-run fix",
        path.display()
    )]
    Changed {
        /// The file.
        path: PathBuf,
        /// `namespace/name`.
        policy: String,
    },
    /// No manifest file to add a created policy to.
    #[error("no manifest file to add networkpolicy {policy} to")]
    NoTarget {
        /// `namespace/name`.
        policy: String,
    },
    /// The file layer refused or failed.
    #[error(transparent)]
    Write(#[from] crate::k8s::Error),
}

/// One policy written (or, in a dry run, to be written).
#[derive(Debug, Clone)]
pub struct PolicyWrite {
    /// `namespace/name` of the policy.
    pub policy: String,
    /// What happened to the policy.
    pub action: PatchAction,
    /// What happened to the file (its new content, its backup).
    pub file: FileChange,
}

/// Writes `plan` into the manifest files (`inputs`: the `-f` paths, for a created policy that
/// complements no policy read from a file). With `dry_run`, computes the new contents and
/// writes nothing.
pub fn write_plan(
    plan: &FixPlan,
    inputs: &[PathBuf],
    dry_run: bool,
) -> Result<Vec<PolicyWrite>, FilesError> {
    let mut written = Vec::new();
    for entry in plan.final_entries() {
        let file = match entry.action {
            PatchAction::Patch => {
                let (path, location) = locate(entry)?;
                replace_document(&path, location, &entry.result, dry_run)?
            }
            PatchAction::Create => create(entry, inputs, dry_run)?,
            PatchAction::Delete => remove(entry, dry_run)?,
        };
        written.push(PolicyWrite { policy: entry.key(), action: entry.action, file });
    }
    Ok(written)
}

fn source_file(entry: &PolicyPatch) -> Result<(PathBuf, usize), FilesError> {
    match &entry.policy_source {
        PolicySource::File { path, document } if path.as_os_str() != STDIN_PATH => {
            Ok((path.clone(), *document))
        }
        source => Err(FilesError::NotFromFile {
            policy: entry.key(),
            source_location: source.to_string(),
        }),
    }
}

fn read(path: &Path) -> Result<String, FilesError> {
    std::fs::read_to_string(path).map_err(|source| FilesError::Io { path: path.to_owned(), source })
}

/// The document (or List item) of the file holding the policy exactly as read.
fn locate(entry: &PolicyPatch) -> Result<(PathBuf, DocumentLocation), FilesError> {
    let (path, document) = source_file(entry)?;
    let changed = || FilesError::Changed { path: path.clone(), policy: entry.key() };
    let original = entry.original.as_ref().ok_or_else(changed)?;
    let text = read(&path)?;
    let index = document.checked_sub(1).ok_or_else(changed)?;
    let value = match Syntax::of_path(&path) {
        Syntax::Yaml => serde_yaml_ng::Deserializer::from_str(&text)
            .nth(index)
            .and_then(|d| Value::deserialize(d).ok()),
        Syntax::Json => serde_json::Deserializer::from_str(&text)
            .into_iter::<Value>()
            .nth(index)
            .and_then(Result::ok),
    }
    .ok_or_else(changed)?;
    if value == *original {
        return Ok((path, DocumentLocation::Document(index)));
    }
    let item = value
        .get("items")
        .and_then(Value::as_array)
        .and_then(|items| items.iter().position(|item| item == original))
        .ok_or_else(changed)?;
    Ok((path, DocumentLocation::ListItem { document: index, item }))
}

fn create(
    entry: &PolicyPatch,
    inputs: &[PathBuf],
    dry_run: bool,
) -> Result<FileChange, FilesError> {
    let target = entry
        .companion_file
        .clone()
        .or_else(|| first_manifest_file(inputs))
        .ok_or_else(|| FilesError::NoTarget { policy: entry.key() })?;
    if Syntax::of_path(&target) == Syntax::Yaml {
        return Ok(append_document(&target, &entry.result, dry_run)?);
    }
    // A JSON manifest holds one object: the new policy gets its own file beside it.
    let dir = target.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    Ok(write_new_file(dir, &entry.result, dry_run)?)
}

/// The first manifest file among `inputs` (directories searched in name order).
fn first_manifest_file(inputs: &[PathBuf]) -> Option<PathBuf> {
    inputs.iter().filter(|p| p.as_os_str() != STDIN_PATH).find_map(|path| {
        if path.is_file() {
            return Some(path.clone());
        }
        let mut entries: Vec<PathBuf> =
            std::fs::read_dir(path).ok()?.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        let is_manifest = |p: &Path| {
            p.extension().and_then(|e| e.to_str()).is_some_and(|e| MANIFEST_EXTENSIONS.contains(&e))
        };
        entries.iter().find(|p| p.is_file() && is_manifest(p)).cloned().or_else(|| {
            let dirs: Vec<PathBuf> = entries.into_iter().filter(|p| p.is_dir()).collect();
            first_manifest_file(&dirs)
        })
    })
}

/// Removes the policy's document (or List item), backed up like every other change so that
/// `restore` puts it back.
fn remove(entry: &PolicyPatch, dry_run: bool) -> Result<FileChange, FilesError> {
    let (path, _) = source_file(entry)?;
    let original = entry
        .original
        .as_ref()
        .ok_or_else(|| FilesError::Changed { path: path.clone(), policy: entry.key() })?;
    match remove_document(&path, original, dry_run) {
        Err(crate::k8s::Error::Manifest { .. }) => {
            Err(FilesError::Changed { path, policy: entry.key() })
        }
        other => Ok(other?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_manifest_file_searches_folders_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a/z.yaml"), "").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "").unwrap();
        assert_eq!(
            first_manifest_file(&[dir.path().to_owned()]),
            Some(dir.path().join("a/z.yaml"))
        );
        std::fs::write(dir.path().join("b.json"), "{}").unwrap();
        assert_eq!(first_manifest_file(&[dir.path().to_owned()]), Some(dir.path().join("b.json")));
    }
}

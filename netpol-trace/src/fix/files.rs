//! Writing a plan into the manifest files it was read from, through [`crate::k8s::files`]:
//! a patched policy's document is rewritten in place (other documents keep their bytes), a
//! created policy is appended to the file of a policy it complements (else the first manifest
//! file; a JSON file that cannot take a second document gets a new YAML file beside it), and a
//! deleted one (`--fallback delete-policy`) is removed. Every changed file is first saved beside
//! itself as `<file>.netpol-trace-<UTC time>.bak`, which `netpol-trace restore` puts back.
//!
//! A policy's document is checked by content before it is rewritten: a file changed since it
//! was read is refused, never half-edited.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::{FixPlan, PatchAction, PolicyPatch};
use crate::inventory::PolicySource;
use crate::k8s::backup::TIMESTAMP_FORMAT;
use crate::k8s::files::{
    DocumentLocation, FILE_BACKUP_INFIX, FILE_BACKUP_SUFFIX, FileAction, FileChange,
    append_document, replace_document, write_new_file,
};
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
        Syntax::Yaml => serde_yaml::Deserializer::from_str(&text)
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

/// Removes the policy's document (or List item), backing the file up the way
/// [`crate::k8s::files`] does so that `restore` puts it back.
fn remove(entry: &PolicyPatch, dry_run: bool) -> Result<FileChange, FilesError> {
    let (path, _) = source_file(entry)?;
    let changed = || FilesError::Changed { path: path.clone(), policy: entry.key() };
    let original = entry.original.as_ref().ok_or_else(changed)?;
    let text = read(&path)?;
    let content = without(&text, original, Syntax::of_path(&path)).ok_or_else(changed)?;
    let backup = if dry_run {
        None
    } else {
        let stamp = chrono::Utc::now().format(TIMESTAMP_FORMAT);
        let backup = PathBuf::from(format!(
            "{}{FILE_BACKUP_INFIX}{stamp}{FILE_BACKUP_SUFFIX}",
            path.display()
        ));
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| FilesError::Io { path, source }
        };
        std::fs::copy(&path, &backup).map_err(io(&backup))?;
        let temp = path.with_extension("tmp-netpol-trace");
        std::fs::write(&temp, &content).map_err(io(&temp))?;
        std::fs::rename(&temp, &path).map_err(io(&path))?;
        Some(backup)
    };
    Ok(FileChange { path, backup, action: FileAction::Replaced, dry_run, content })
}

/// `text` without the document (or List item) equal to `original`; `None` when no document
/// holds it. Leading comments of a removed YAML document stay.
fn without(text: &str, original: &Value, syntax: Syntax) -> Option<String> {
    let documents = match syntax {
        Syntax::Yaml => yaml_documents(text),
        Syntax::Json => json_documents(text),
    };
    for range in documents {
        let segment = &text[range.clone()];
        let value = match syntax {
            Syntax::Yaml => serde_yaml::from_str::<Value>(segment).ok(),
            Syntax::Json => serde_json::from_str::<Value>(segment).ok(),
        };
        let Some(value) = value else { continue };
        let replacement = if value == *original {
            match syntax {
                Syntax::Yaml => leading_comments(segment).to_owned(),
                Syntax::Json => String::new(),
            }
        } else if let Some(list) = list_without(&value, original) {
            match syntax {
                Syntax::Yaml => {
                    format!("{}{}", leading_comments(segment), super::yaml::to_yaml(&list))
                }
                Syntax::Json => serde_json::to_string_pretty(&list).ok()? + "\n",
            }
        } else {
            continue;
        };
        return Some(format!("{}{replacement}{}", &text[..range.start], &text[range.end..]));
    }
    None
}

fn list_without(value: &Value, original: &Value) -> Option<Value> {
    if !value.get("kind").and_then(Value::as_str).is_some_and(|k| k.ends_with("List")) {
        return None;
    }
    let index = value.get("items")?.as_array()?.iter().position(|item| item == original)?;
    let mut list = value.clone();
    list.get_mut("items")?.as_array_mut()?.remove(index);
    Some(list)
}

/// The comment and blank lines a document starts with.
fn leading_comments(segment: &str) -> &str {
    let mut end = 0;
    for line in segment.split_inclusive('\n') {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            end += line.len();
        } else {
            break;
        }
    }
    &segment[..end]
}

/// Byte ranges of the texts between `---` lines.
fn yaml_documents(text: &str) -> Vec<Range<usize>> {
    let mut documents = Vec::new();
    let (mut start, mut offset) = (0, 0);
    for line in text.split_inclusive('\n') {
        if line.trim_end() == "---" {
            documents.push(start..offset);
            start = offset + line.len();
        }
        offset += line.len();
    }
    documents.push(start..text.len());
    documents
}

/// Byte ranges of the JSON values of `text` (one or several concatenated).
fn json_documents(text: &str) -> Vec<Range<usize>> {
    let mut documents = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<serde::de::IgnoredAny>();
    let mut start = 0;
    while let Some(Ok(_)) = stream.next() {
        let end = stream.byte_offset();
        let leading = text[start..end].len() - text[start..end].trim_start().len();
        documents.push(start + leading..end);
        start = end;
    }
    documents
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FILE: &str = "\
# namespaces
apiVersion: v1
kind: Namespace
metadata: {name: db}
---
# the database's policy
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: db}
---
apiVersion: v1
kind: List
items:
- {apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: q, namespace: db}}
";

    fn policy(name: &str) -> Value {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": name, "namespace": "db"}})
    }

    #[test]
    fn removes_a_document_or_a_list_item_and_nothing_else() {
        let out = without(FILE, &policy("p"), Syntax::Yaml).unwrap();
        assert_eq!(
            out,
            FILE.replace("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: db}\n", "")
        );
        let out = without(FILE, &policy("q"), Syntax::Yaml).unwrap();
        assert!(out.ends_with("---\napiVersion: v1\nkind: List\nitems: []\n"), "{out}");
        assert_eq!(without(FILE, &policy("nope"), Syntax::Yaml), None);
        let json_text = format!("{}\n{}\n", policy("a"), policy("b"));
        let out = without(&json_text, &policy("a"), Syntax::Json).unwrap();
        let values: Vec<Value> =
            serde_json::Deserializer::from_str(&out).into_iter().collect::<Result<_, _>>().unwrap();
        assert_eq!(values, [policy("b")]);
    }

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

//! Writing a plan back into the manifest files it was read from: the patched policy's document
//! is replaced in place (leading comments kept, other documents untouched byte for byte), a
//! created policy is appended as a new document to the file of a policy it complements (else to
//! the first manifest file), a deleted one is removed. Each changed file is backed up beside
//! itself first (`FILE.<stamp>.bak`, an extension manifest loading skips) and replaced
//! atomically (written to a temporary file in the same folder, then renamed).
//!
//! Documents are found by content (the object as read), not by position, so a file changed
//! since it was read is refused rather than corrupted.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::yaml::to_yaml;
use super::{FixPlan, PatchAction, PolicyPatch};
use crate::inventory::PolicySource;
use crate::manifest::{MANIFEST_EXTENSIONS, STDIN_PATH, Syntax};

/// Suffix of backup files (after the stamp).
pub const BACKUP_SUFFIX: &str = "bak";

/// Suffix of the temporary file a write goes through.
const TEMP_SUFFIX: &str = "netpol-trace-tmp";

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
    #[error("{}: networkpolicy {policy} is no longer there as it was read; re-run fix", path.display())]
    Changed {
        /// The file.
        path: PathBuf,
        /// `namespace/name`.
        policy: String,
    },
    /// No manifest file to append a created policy to.
    #[error("no manifest file to add networkpolicy {policy} to")]
    NoTarget {
        /// `namespace/name`.
        policy: String,
    },
}

/// A file's new content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEdit {
    /// The file.
    pub path: PathBuf,
    /// Its content as read now.
    pub before: String,
    /// Its content with the plan applied.
    pub after: String,
    /// What changes in it, e.g. `patch db/mysql-ingress`.
    pub changes: Vec<String>,
}

/// A file written by [`write_edits`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    /// The file.
    pub path: PathBuf,
    /// Its original content, saved before writing.
    pub backup: PathBuf,
}

/// The edits that put `plan` into the manifest files; `inputs` are the `-f` paths (for a
/// created policy that complements no policy read from a file). Reads files, writes nothing.
pub fn plan_edits(plan: &FixPlan, inputs: &[PathBuf]) -> Result<Vec<FileEdit>, FilesError> {
    let mut edits: BTreeMap<PathBuf, FileEdit> = BTreeMap::new();
    for entry in plan.final_entries() {
        let path = target_file(entry, inputs)?;
        if !edits.contains_key(&path) {
            let text = std::fs::read_to_string(&path)
                .map_err(|source| FilesError::Io { path: path.clone(), source })?;
            edits.insert(
                path.clone(),
                FileEdit {
                    path: path.clone(),
                    before: text.clone(),
                    after: text,
                    changes: Vec::new(),
                },
            );
        }
        let edit = edits.get_mut(&path).expect("inserted above");
        let syntax = Syntax::of_path(&path);
        let changed = || FilesError::Changed { path: path.clone(), policy: entry.key() };
        edit.after = match (entry.action, &entry.original) {
            (PatchAction::Create, _) => append(&edit.after, &entry.result, syntax),
            (PatchAction::Patch, Some(original)) => {
                replace(&edit.after, original, Some(&entry.result), syntax).ok_or_else(changed)?
            }
            (PatchAction::Delete, Some(original)) => {
                replace(&edit.after, original, None, syntax).ok_or_else(changed)?
            }
            (_, None) => return Err(changed()),
        };
        let verb = match entry.action {
            PatchAction::Patch => "patch",
            PatchAction::Create => "add",
            PatchAction::Delete => "delete",
        };
        edit.changes.push(format!("{verb} networkpolicy {}", entry.key()));
    }
    Ok(edits.into_values().collect())
}

/// Backs up and rewrites each file; `stamp` (e.g. `20260101T120000Z`) names the backups.
pub fn write_edits(edits: &[FileEdit], stamp: &str) -> Result<Vec<WrittenFile>, FilesError> {
    let mut written = Vec::new();
    for edit in edits {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| FilesError::Io { path, source }
        };
        let backup = sibling(&edit.path, &format!("{stamp}.{BACKUP_SUFFIX}"));
        std::fs::write(&backup, &edit.before).map_err(io(&backup))?;
        let temp = sibling(&edit.path, TEMP_SUFFIX);
        std::fs::write(&temp, &edit.after).map_err(io(&temp))?;
        std::fs::rename(&temp, &edit.path).map_err(io(&edit.path))?;
        written.push(WrittenFile { path: edit.path.clone(), backup });
    }
    Ok(written)
}

/// `FILE.suffix` beside `path`.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".");
    name.push(suffix);
    path.with_file_name(name)
}

fn target_file(entry: &PolicyPatch, inputs: &[PathBuf]) -> Result<PathBuf, FilesError> {
    match (&entry.action, &entry.policy_source) {
        (PatchAction::Create, _) => entry
            .companion_file
            .clone()
            .or_else(|| first_manifest_file(inputs))
            .ok_or_else(|| FilesError::NoTarget { policy: entry.key() }),
        (_, PolicySource::File { path, .. }) if path.as_os_str() != STDIN_PATH => Ok(path.clone()),
        (_, source) => Err(FilesError::NotFromFile {
            policy: entry.key(),
            source_location: source.to_string(),
        }),
    }
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
        entries.iter().find(|p| p.is_file() && is_manifest(p)).cloned().or_else(|| {
            let dirs: Vec<PathBuf> = entries.into_iter().filter(|p| p.is_dir()).collect();
            first_manifest_file(&dirs)
        })
    })
}

fn is_manifest(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| MANIFEST_EXTENSIONS.contains(&e))
}

/// `text` with `object` added as a new document.
fn append(text: &str, object: &Value, syntax: Syntax) -> String {
    let mut out = text.to_owned();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    match syntax {
        Syntax::Yaml => {
            if !out.trim().is_empty() {
                out.push_str("---\n");
            }
            out.push_str(&to_yaml(object));
        }
        Syntax::Json => {
            out.push_str(&serde_json::to_string_pretty(object).unwrap_or_default());
            out.push('\n');
        }
    }
    out
}

/// `text` with the document holding `original` (itself, or an item of a `kind: List`) replaced
/// by `replacement` or removed; `None` when no document holds it.
fn replace(
    text: &str,
    original: &Value,
    replacement: Option<&Value>,
    syntax: Syntax,
) -> Option<String> {
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
        let new_segment = if value == *original {
            match (replacement, syntax) {
                (Some(object), Syntax::Yaml) => {
                    format!("{}{}", leading_comments(segment), to_yaml(object))
                }
                (Some(object), Syntax::Json) => {
                    format!("{}\n", serde_json::to_string_pretty(object).unwrap_or_default())
                }
                (None, Syntax::Yaml) => leading_comments(segment).to_owned(),
                (None, Syntax::Json) => String::new(),
            }
        } else if let Some(list) = list_with_item(&value, original, replacement) {
            match syntax {
                Syntax::Yaml => format!("{}{}", leading_comments(segment), to_yaml(&list)),
                Syntax::Json => {
                    format!("{}\n", serde_json::to_string_pretty(&list).unwrap_or_default())
                }
            }
        } else {
            continue;
        };
        let (start, end) = (range.start, range.end);
        let separator = match syntax {
            Syntax::Json if !new_segment.is_empty() && start > 0 => "\n",
            _ => "",
        };
        return Some(format!("{}{separator}{new_segment}{}", &text[..start], &text[end..]));
    }
    None
}

/// A `kind: List` document with the item equal to `original` replaced (or removed).
fn list_with_item(value: &Value, original: &Value, replacement: Option<&Value>) -> Option<Value> {
    if value.get("kind").and_then(Value::as_str) != Some("List") {
        return None;
    }
    let items = value.get("items")?.as_array()?;
    let index = items.iter().position(|item| item == original)?;
    let mut list = value.clone();
    let items = list.get_mut("items")?.as_array_mut()?;
    match replacement {
        Some(object) => items[index] = object.clone(),
        None => {
            items.remove(index);
        }
    }
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

/// Byte ranges of the YAML documents of `text` (between `---` lines, separators excluded).
fn yaml_documents(text: &str) -> Vec<Range<usize>> {
    let mut documents = Vec::new();
    let mut start = 0;
    let mut offset = 0;
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
spec: {podSelector: {}}
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
    fn replaces_only_the_policy_document_keeping_its_comments() {
        let mut original = policy("p");
        original["spec"] = json!({"podSelector": {}});
        let mut patched = original.clone();
        patched["spec"]["ingress"] = json!([{"ports": [{"port": 80}]}]);
        let out = replace(FILE, &original, Some(&patched), Syntax::Yaml).unwrap();
        assert!(out.starts_with("# namespaces\napiVersion: v1\nkind: Namespace\nmetadata: {name: db}\n---\n# the database's policy\napiVersion: networking.k8s.io/v1\n"), "{out}");
        assert!(
            out.contains(
                "  ingress:\n  - ports:\n    - port: 80\n---\napiVersion: v1\nkind: List\n"
            ),
            "{out}"
        );
        // Documents: the same count, the patched one parses to the patched object.
        let docs: Vec<Value> = yaml_documents(&out)
            .into_iter()
            .map(|r| serde_yaml::from_str(&out[r]).unwrap())
            .collect();
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[1], patched);
    }

    #[test]
    fn list_items_are_found_and_removed() {
        let out = replace(FILE, &policy("q"), None, Syntax::Yaml).unwrap();
        assert!(out.ends_with("kind: List\nitems: []\n"), "{out}");
        assert_eq!(replace(FILE, &policy("nope"), None, Syntax::Yaml), None);
    }

    #[test]
    fn json_files_concatenated_values() {
        let text = "{\"kind\": \"Namespace\", \"metadata\": {\"name\": \"db\"}}\n{\"apiVersion\": \"networking.k8s.io/v1\", \"kind\": \"NetworkPolicy\", \"metadata\": {\"name\": \"p\", \"namespace\": \"db\"}}\n";
        let mut patched = policy("p");
        patched["spec"] = json!({"podSelector": {}});
        let out = replace(text, &policy("p"), Some(&patched), Syntax::Json).unwrap();
        let values: Vec<Value> =
            serde_json::Deserializer::from_str(&out).into_iter().collect::<Result<_, _>>().unwrap();
        assert_eq!(values.len(), 2);
        assert_eq!(values[1], patched);
        let appended = append(&out, &policy("new"), Syntax::Json);
        let values: Vec<Value> = serde_json::Deserializer::from_str(&appended)
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(values[2], policy("new"));
    }

    #[test]
    fn appended_yaml_is_a_new_document() {
        let out = append("a: 1", &policy("new"), Syntax::Yaml);
        assert!(
            out.starts_with("a: 1\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n")
        );
        assert_eq!(append("", &policy("new"), Syntax::Yaml), to_yaml(&policy("new")));
    }

    #[test]
    fn backups_do_not_look_like_manifests() {
        let backup = sibling(Path::new("/m/policy.yaml"), "20260101T000000Z.bak");
        assert_eq!(backup, Path::new("/m/policy.yaml.20260101T000000Z.bak"));
        assert!(!is_manifest(&backup));
        assert!(!is_manifest(&sibling(Path::new("/m/p.yaml"), TEMP_SUFFIX)));
    }
}

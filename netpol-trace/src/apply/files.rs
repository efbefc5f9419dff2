//! Changing manifest files: rewrite one document (or one item of a `kind: List`) in place,
//! append a new document, remove one, or write a new file, each after
//! saving a backup beside the file (`<file>.netpol-trace-<UTC timestamp>.bak`) that
//! [`restore_file`] puts back. Documents other than the rewritten one keep their bytes.
//!
//! Document indexes count documents the way `serde_yaml_ng::Deserializer` yields them: an
//! explicit `---` starts a document; text before the first `---` is a document only if it
//! holds more than blank lines and comments. A JSON file is one document.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::k8s::backup::{TIMESTAMP_FORMAT, write_atomically};
use crate::k8s::error::{Error, Result};
use crate::k8s::rest::meta_str;

/// Infix of file backups: `<file>.netpol-trace-<timestamp>.bak`.
pub const FILE_BACKUP_INFIX: &str = ".netpol-trace-";
/// Suffix of file backups.
pub const FILE_BACKUP_SUFFIX: &str = ".bak";
/// First line of the backup of a file that did not exist: restoring it removes the file.
pub const CREATED_FILE_MARKER: &str =
    "# netpol-trace: this file did not exist before; restoring removes it";

/// Which document of a file to rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum DocumentLocation {
    /// The n-th document (0-based).
    Document(usize),
    /// Item `item` of the `kind: List` that is document `document`.
    ListItem {
        /// Document index.
        document: usize,
        /// Index in `items`.
        item: usize,
    },
}

/// What was done to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileAction {
    /// A document was rewritten in place.
    Replaced,
    /// A document was added at the end.
    Appended,
    /// A new file was written.
    Created,
}

/// The result of a file change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileChange {
    /// The manifest file.
    pub path: PathBuf,
    /// Its backup (none in a dry run).
    pub backup: Option<PathBuf>,
    /// What was done.
    pub action: FileAction,
    /// Nothing was written.
    pub dry_run: bool,
    /// The file's new content.
    pub content: String,
}

/// What [`restore_file`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileRestore {
    /// The manifest file.
    pub path: PathBuf,
    /// The backup it came from.
    pub backup: PathBuf,
    /// `restored` (content put back) or `removed` (the file had not existed).
    pub outcome: &'static str,
    /// Nothing was written.
    pub dry_run: bool,
}

/// A piece of a YAML stream: a `---` line or document text, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Separator(String),
    Text(String),
}

fn is_separator(line: &str) -> bool {
    // `---` alone, or followed by blanks and an optional comment.
    let body = line.trim_end_matches(['\n', '\r']);
    body.strip_prefix("---").is_some_and(|rest| {
        rest.is_empty()
            || (rest.starts_with([' ', '\t']) && {
                let rest = rest.trim();
                rest.is_empty() || rest.starts_with('#')
            })
    })
}

fn has_content(text: &str) -> bool {
    text.lines().any(|l| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with('#')
    })
}

fn pieces(text: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.split_inclusive('\n') {
        if is_separator(line) {
            out.push(Piece::Text(std::mem::take(&mut current)));
            out.push(Piece::Separator(line.to_string()));
        } else {
            current.push_str(line);
        }
    }
    out.push(Piece::Text(current));
    out
}

/// Indexes into `pieces` of each document's text, numbered like serde_yaml_ng numbers them.
fn document_pieces(pieces: &[Piece]) -> Vec<usize> {
    let mut docs = Vec::new();
    for (i, p) in pieces.iter().enumerate() {
        let Piece::Text(text) = p else { continue };
        let after_separator = i > 0;
        let last = i == pieces.len() - 1;
        if has_content(text) || (after_separator && !last) {
            docs.push(i);
        }
    }
    docs
}

/// The number of documents in a YAML stream, counted as in the module docs.
pub fn document_count(text: &str) -> usize {
    document_pieces(&pieces(text)).len()
}

fn manifest_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Manifest { path: path.to_path_buf(), reason: reason.into() }
}

fn is_json(path: &Path, text: &str) -> bool {
    path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with(['{', '['])
}

/// YAML with Kubernetes' key order (`apiVersion`, `kind`, `metadata`, `spec`, ...), the way
/// `fix -o yaml` prints objects.
fn to_yaml(obj: &Value) -> Result<String> {
    Ok(crate::fix::yaml::to_yaml(obj))
}

fn to_json(obj: &Value) -> Result<String> {
    serde_json::to_string_pretty(obj)
        .map(|s| s + "\n")
        .map_err(|e| Error::InvalidObject(e.to_string()))
}

fn replace_list_item(path: &Path, list: &mut Value, item: usize, object: &Value) -> Result<()> {
    let kind = list.get("kind").and_then(Value::as_str).unwrap_or_default();
    if !kind.ends_with("List") {
        return Err(manifest_err(path, format!("the document is a {kind:?}, not a List")));
    }
    let items = list
        .get_mut("items")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| manifest_err(path, "the List has no items"))?;
    let n = items.len();
    let slot = items.get_mut(item).ok_or_else(|| {
        manifest_err(path, format!("item {item} does not exist (the List has {n})"))
    })?;
    *slot = object.clone();
    Ok(())
}

/// The new content of a file with one document (or List item) replaced.
fn rewritten(
    path: &Path,
    text: &str,
    location: DocumentLocation,
    object: &Value,
) -> Result<String> {
    let (doc, item) = match location {
        DocumentLocation::Document(d) => (d, None),
        DocumentLocation::ListItem { document, item } => (document, Some(item)),
    };
    if is_json(path, text) {
        if doc != 0 {
            return Err(manifest_err(
                path,
                format!("a JSON file has one document, not {}", doc + 1),
            ));
        }
        let mut value: Value = serde_json::from_str(text)
            .map_err(|e| manifest_err(path, format!("not valid JSON: {e}")))?;
        match item {
            None => value = object.clone(),
            Some(i) => replace_list_item(path, &mut value, i, object)?,
        }
        return to_json(&value);
    }
    let mut parts = pieces(text);
    let docs = document_pieces(&parts);
    let &at = docs.get(doc).ok_or_else(|| {
        manifest_err(path, format!("document {doc} does not exist (the file has {})", docs.len()))
    })?;
    let new_text = match item {
        None => to_yaml(object)?,
        Some(i) => {
            let old = match &parts[at] {
                Piece::Text(t) | Piece::Separator(t) => t,
            };
            let mut list: Value = serde_yaml_ng::from_str(old).map_err(|e| {
                manifest_err(path, format!("document {doc} is not valid YAML: {e}"))
            })?;
            replace_list_item(path, &mut list, i, object)?;
            to_yaml(&list)?
        }
    };
    parts[at] = Piece::Text(new_text);
    Ok(join(parts))
}

/// The text of a YAML stream again.
fn join(parts: Vec<Piece>) -> String {
    parts
        .into_iter()
        .map(|p| match p {
            Piece::Separator(s) | Piece::Text(s) => s,
        })
        .collect()
}

/// `<file>.netpol-trace-<timestamp>.bak`, not yet taken.
fn backup_path(path: &Path) -> PathBuf {
    let stamp = chrono::Utc::now().format(TIMESTAMP_FORMAT).to_string();
    let base = path.as_os_str().to_string_lossy().to_string();
    let mut candidate =
        PathBuf::from(format!("{base}{FILE_BACKUP_INFIX}{stamp}{FILE_BACKUP_SUFFIX}"));
    let mut n = 2;
    while candidate.exists() {
        candidate =
            PathBuf::from(format!("{base}{FILE_BACKUP_INFIX}{stamp}-{n}{FILE_BACKUP_SUFFIX}"));
        n += 1;
    }
    candidate
}

fn write_with_backup(path: &Path, original: Option<&str>, content: &str) -> Result<PathBuf> {
    let backup = backup_path(path);
    match original {
        Some(_) => {
            std::fs::copy(path, &backup).map_err(|e| Error::io(&backup, e))?;
        }
        None => write_atomically(&backup, format!("{CREATED_FILE_MARKER}\n").as_bytes())?,
    }
    write_atomically(path, content.as_bytes())?;
    Ok(backup)
}

/// Writes `content` to `path` after its backup (unless `dry_run`) and reports the change;
/// `original` is the file's text, `None` for a new file.
fn changed(
    path: &Path,
    original: Option<&str>,
    content: String,
    action: FileAction,
    dry_run: bool,
) -> Result<FileChange> {
    let backup = if dry_run { None } else { Some(write_with_backup(path, original, &content)?) };
    Ok(FileChange { path: path.to_path_buf(), backup, action, dry_run, content })
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

/// Rewrites one document (or List item) of a manifest file with `object`.
pub fn replace_document(
    path: &Path,
    location: DocumentLocation,
    object: &Value,
    dry_run: bool,
) -> Result<FileChange> {
    let text = read(path)?;
    let content = rewritten(path, &text, location, object)?;
    changed(path, Some(&text), content, FileAction::Replaced, dry_run)
}

/// Adds `object` as a new document at the end of a YAML file (or as a new item of a JSON
/// `kind: List`).
pub fn append_document(path: &Path, object: &Value, dry_run: bool) -> Result<FileChange> {
    let text = read(path)?;
    let content = if is_json(path, &text) {
        let mut value: Value = serde_json::from_str(&text)
            .map_err(|e| manifest_err(path, format!("not valid JSON: {e}")))?;
        let is_list =
            value.get("kind").and_then(Value::as_str).is_some_and(|k| k.ends_with("List"));
        match value.get_mut("items").and_then(Value::as_array_mut) {
            Some(items) if is_list => items.push(object.clone()),
            _ => {
                return Err(manifest_err(
                    path,
                    "a JSON file holds one object; write the new NetworkPolicy to its own file instead",
                ));
            }
        }
        to_json(&value)?
    } else if has_content(&text) {
        let sep = if text.ends_with('\n') { "" } else { "\n" };
        format!("{text}{sep}---\n{}", to_yaml(object)?)
    } else {
        format!("{text}{}", to_yaml(object)?)
    };
    changed(path, Some(&text), content, FileAction::Appended, dry_run)
}

/// Writes `object` to a new file `<dir>/<namespace>-<name>.yaml` (never over an existing
/// file). Its backup is a marker, so restoring removes the file.
pub fn write_new_file(dir: &Path, object: &Value, dry_run: bool) -> Result<FileChange> {
    let name = meta_str(object, "name")
        .ok_or_else(|| Error::InvalidObject("object without metadata.name".into()))?;
    let file = match meta_str(object, "namespace") {
        Some(ns) if !ns.is_empty() => format!("{ns}-{name}.yaml"),
        _ => format!("{name}.yaml"),
    };
    let path = dir.join(file);
    if path.exists() {
        return Err(manifest_err(&path, "already exists; not overwriting it"));
    }
    if !dir.is_dir() {
        return Err(manifest_err(dir, "is not a directory"));
    }
    let content = to_yaml(object)?;
    changed(&path, None, content, FileAction::Created, dry_run)
}

/// Removes the document (or List item) equal to `original` from a manifest file; the leading
/// comments of a removed YAML document stay. Refused when no document holds `original` (the
/// file changed since it was read).
pub fn remove_document(path: &Path, original: &Value, dry_run: bool) -> Result<FileChange> {
    let text = read(path)?;
    let content = without(path, &text, original)?
        .ok_or_else(|| manifest_err(path, "no document holds the object as it was read"))?;
    changed(path, Some(&text), content, FileAction::Replaced, dry_run)
}

/// `text` without the document (or List item) equal to `original`; `None` when no document
/// holds it.
fn without(path: &Path, text: &str, original: &Value) -> Result<Option<String>> {
    if is_json(path, text) {
        return without_json(text, original);
    }
    let mut parts = pieces(text);
    for at in document_pieces(&parts) {
        let Piece::Text(segment) = &parts[at] else { continue };
        let Ok(value) = serde_yaml_ng::from_str::<Value>(segment) else { continue };
        let replacement = if value == *original {
            leading_comments(segment).to_owned()
        } else if let Some(list) = list_without(&value, original) {
            format!("{}{}", leading_comments(segment), to_yaml(&list)?)
        } else {
            continue;
        };
        parts[at] = Piece::Text(replacement);
        return Ok(Some(join(parts)));
    }
    Ok(None)
}

/// Like [`without`] for a JSON file (one value, or several concatenated).
fn without_json(text: &str, original: &Value) -> Result<Option<String>> {
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    let mut start = 0;
    while let Some(Ok(value)) = stream.next() {
        let end = stream.byte_offset();
        let replacement = if value == *original {
            String::new()
        } else if let Some(list) = list_without(&value, original) {
            to_json(&list)?
        } else {
            start = end;
            continue;
        };
        let leading = text[start..end].len() - text[start..end].trim_start().len();
        return Ok(Some(format!("{}{replacement}{}", &text[..start + leading], &text[end..])));
    }
    Ok(None)
}

/// `value`, a `kind: List` holding `original`, without it.
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

/// The manifest file a backup belongs to, if `backup` is named like one.
pub fn original_of_backup(backup: &Path) -> Option<PathBuf> {
    let s = backup.as_os_str().to_str()?;
    let stem = s.strip_suffix(FILE_BACKUP_SUFFIX)?;
    let at = stem.rfind(FILE_BACKUP_INFIX)?;
    let file_name_start = s.rfind('/').map_or(0, |i| i + 1);
    (at > file_name_start).then(|| PathBuf::from(&stem[..at]))
}

/// Puts a manifest file back from its backup (or removes it, if the backup says it did not
/// exist). The backup is kept.
pub fn restore_file(backup: &Path, dry_run: bool) -> Result<FileRestore> {
    let path = original_of_backup(backup).ok_or_else(|| Error::InvalidBackup {
        path: backup.to_path_buf(),
        reason: format!("not named like a file backup (<file>{FILE_BACKUP_INFIX}<timestamp>{FILE_BACKUP_SUFFIX})"),
    })?;
    let saved = std::fs::read(backup).map_err(|e| Error::io(backup, e))?;
    let created = saved.starts_with(CREATED_FILE_MARKER.as_bytes());
    if !dry_run {
        if created {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&path, e)),
            }
        } else {
            write_atomically(&path, &saved)?;
        }
    }
    Ok(FileRestore {
        path,
        backup: backup.to_path_buf(),
        outcome: if created { "removed" } else { "restored" },
        dry_run,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    const MULTI: &str = "# policies for db\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: a   # keep this comment\n  namespace: db\nspec:\n  podSelector: {}\n---\n# the one to change\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: b\n  namespace: db\nspec:\n  podSelector: {}\n---   # trailing\napiVersion: v1\nkind: Namespace\nmetadata: {name: db}\n";

    fn policy(name: &str, port: u32) -> Value {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": name, "namespace": "db"},
               "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": port}]}]}})
    }

    fn serde_yaml_count(text: &str) -> usize {
        serde_yaml_ng::Deserializer::from_str(text)
            .filter_map(|d| Value::deserialize(d).ok())
            .count()
    }

    #[test]
    fn counts_documents_like_serde_yaml_ng() {
        for text in [
            MULTI,
            "a: 1\n",
            "a: 1\n---\nb: 2\n",
            "---\na: 1\n",
            "# only a comment\n---\na: 1\n---\nb: 2\n",
            "a: 1\n---\n---\nb: 2\n",
        ] {
            assert_eq!(document_count(text), serde_yaml_count(text), "{text:?}");
        }
    }

    #[test]
    fn replaces_one_document_and_keeps_the_others_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policies.yaml");
        std::fs::write(&path, MULTI).unwrap();
        let change =
            replace_document(&path, DocumentLocation::Document(1), &policy("b", 3306), false)
                .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let (head, rest) = MULTI.split_at(MULTI.find("# the one to change").unwrap());
        assert!(text.starts_with(head), "documents before are untouched");
        assert!(text.ends_with(
            "---   # trailing\napiVersion: v1\nkind: Namespace\nmetadata: {name: db}\n"
        ));
        assert!(!text.contains("# the one to change") && rest.contains("# the one to change"));
        let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
            .map(|d| Value::deserialize(d).unwrap())
            .collect();
        assert_eq!(docs[1], policy("b", 3306));
        assert_eq!(std::fs::read_to_string(change.backup.as_ref().unwrap()).unwrap(), MULTI);

        let restored = restore_file(change.backup.as_ref().unwrap(), false).unwrap();
        assert_eq!((restored.path.as_path(), restored.outcome), (path.as_path(), "restored"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), MULTI);
    }

    #[test]
    fn replaces_a_list_item_in_yaml_and_json() {
        let dir = tempfile::tempdir().unwrap();
        let list =
            json!({"apiVersion": "v1", "kind": "List", "items": [policy("a", 1), policy("b", 2)]});
        let yaml = dir.path().join("list.yaml");
        std::fs::write(&yaml, serde_yaml_ng::to_string(&list).unwrap()).unwrap();
        replace_document(
            &yaml,
            DocumentLocation::ListItem { document: 0, item: 1 },
            &policy("b", 3306),
            false,
        )
        .unwrap();
        let back: Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&yaml).unwrap()).unwrap();
        assert_eq!(back["items"][1], policy("b", 3306));
        assert_eq!(back["items"][0], policy("a", 1));

        let json_path = dir.path().join("list.json");
        std::fs::write(&json_path, serde_json::to_string(&list).unwrap()).unwrap();
        let dry = replace_document(
            &json_path,
            DocumentLocation::ListItem { document: 0, item: 0 },
            &policy("a", 9),
            true,
        )
        .unwrap();
        assert!(dry.backup.is_none());
        assert_eq!(
            std::fs::read_to_string(&json_path).unwrap(),
            serde_json::to_string(&list).unwrap()
        );
        let err = replace_document(
            &json_path,
            DocumentLocation::ListItem { document: 0, item: 5 },
            &policy("a", 9),
            false,
        )
        .unwrap_err();
        assert!(err.to_string().ends_with("item 5 does not exist (the List has 2)"), "{err}");
        let err = replace_document(&yaml, DocumentLocation::Document(3), &policy("a", 9), false)
            .unwrap_err();
        assert!(err.to_string().contains("document 3 does not exist (the file has 1)"), "{err}");
    }

    #[test]
    fn appends_and_creates_and_restore_undoes_both() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policies.yaml");
        std::fs::write(&path, MULTI).unwrap();
        let appended = append_document(&path, &policy("c", 3306), false).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(MULTI));
        assert_eq!(document_count(&text), 4);

        let created = write_new_file(dir.path(), &policy("d", 80), false).unwrap();
        assert_eq!(created.path, dir.path().join("db-d.yaml"));
        assert!(write_new_file(dir.path(), &policy("d", 80), false).is_err(), "never overwrites");

        assert_eq!(
            restore_file(created.backup.as_ref().unwrap(), false).unwrap().outcome,
            "removed"
        );
        assert!(!created.path.exists());
        restore_file(appended.backup.as_ref().unwrap(), false).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), MULTI);

        let json_path = dir.path().join("one.json");
        std::fs::write(&json_path, serde_json::to_string(&policy("e", 1)).unwrap()).unwrap();
        assert!(append_document(&json_path, &policy("f", 1), false).is_err());
        assert!(restore_file(&json_path, false).is_err(), "not a backup name");
    }

    const REMOVAL: &str = "\
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

    fn bare_policy(name: &str) -> Value {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": name, "namespace": "db"}})
    }

    #[test]
    fn removes_a_document_or_a_list_item_and_nothing_else() {
        let out = without(Path::new("m.yaml"), REMOVAL, &bare_policy("p")).unwrap().unwrap();
        assert_eq!(
            out,
            REMOVAL.replace("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: db}\n", "")
        );
        let out = without(Path::new("m.yaml"), REMOVAL, &bare_policy("q")).unwrap().unwrap();
        assert!(out.ends_with("---\napiVersion: v1\nkind: List\nitems: []\n"), "{out}");
        assert_eq!(without(Path::new("m.yaml"), REMOVAL, &bare_policy("nope")).unwrap(), None);
        let json_text = format!("{}\n{}\n", bare_policy("a"), bare_policy("b"));
        let out = without(Path::new("m.json"), &json_text, &bare_policy("a")).unwrap().unwrap();
        let values: Vec<Value> =
            serde_json::Deserializer::from_str(&out).into_iter().collect::<Result<_, _>>().unwrap();
        assert_eq!(values, [bare_policy("b")]);
    }

    #[test]
    fn removal_splits_documents_like_every_other_change() {
        // `--- # comment` separates documents here exactly as in a rewrite.
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: db}\n--- # the policy\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: db}\n";
        let out = without(Path::new("m.yaml"), text, &bare_policy("p")).unwrap().unwrap();
        assert_eq!(
            out,
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: db}\n--- # the policy\n"
        );
    }

    #[test]
    fn removing_twice_in_one_second_keeps_both_backups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.yaml");
        std::fs::write(&path, REMOVAL).unwrap();
        let first = remove_document(&path, &bare_policy("p"), false).unwrap();
        let second = remove_document(&path, &bare_policy("q"), false).unwrap();
        let (first, second) = (first.backup.unwrap(), second.backup.unwrap());
        assert_ne!(first, second);
        assert_eq!(std::fs::read_to_string(first).unwrap(), REMOVAL);
        assert!(remove_document(&path, &bare_policy("p"), false).is_err());
    }
}

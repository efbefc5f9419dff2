//! Backup folders: every object a write will touch, saved as YAML before the write, with a
//! `manifest.json` index that `restore` reads.
//!
//! Layout (default root `./netpol-trace-backups`):
//! ```text
//! netpol-trace-backups/20260101T120000Z/
//!   manifest.json           {"formatVersion":1,"created":"...","toolVersion":"...","objects":[...]}
//!   db__mysql-ingress.yaml  the object exactly as read before the change
//! ```
//! Each manifest entry names the object (apiVersion, kind, namespace, name), its
//! resourceVersion and uid when saved, the action (`patch`, `create` or `delete`), the YAML
//! file, and whether the write was carried out (`applied`, with the resulting
//! resourceVersion/uid).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{Error, Result};
use super::rest::meta_str;

/// Default folder under which timestamped backup folders are created.
pub const DEFAULT_BACKUP_ROOT: &str = "netpol-trace-backups";
/// Name of the index file inside a backup folder.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Version of the manifest format.
pub const BACKUP_FORMAT_VERSION: u32 = 1;
/// strftime format of backup folder names (UTC).
pub const TIMESTAMP_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// What was (to be) done to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupAction {
    /// An existing object was patched; restore puts the saved version back.
    Patch,
    /// A new object was created; restore deletes it.
    Create,
    /// An object was deleted; restore re-creates it.
    Delete,
}

impl std::fmt::Display for BackupAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Patch => "patch",
            Self::Create => "create",
            Self::Delete => "delete",
        })
    }
}

/// One object in a backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupEntry {
    /// apiVersion of the object.
    pub api_version: String,
    /// kind of the object.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// resourceVersion of the saved object (none for `create`).
    pub resource_version: Option<String>,
    /// uid of the saved object, or of the created one once created.
    pub uid: Option<String>,
    /// The action.
    pub action: BackupAction,
    /// YAML file inside the backup folder.
    pub file: String,
    /// Whether the write was carried out.
    #[serde(default)]
    pub applied: bool,
    /// resourceVersion right after the write.
    #[serde(default)]
    pub resource_version_after: Option<String>,
}

/// The `manifest.json` index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupManifest {
    /// [`BACKUP_FORMAT_VERSION`].
    pub format_version: u32,
    /// When the folder was created (RFC 3339, UTC).
    pub created: String,
    /// netpol-trace version that wrote it.
    pub tool_version: String,
    /// The objects, in the order they were recorded.
    pub objects: Vec<BackupEntry>,
}

/// A backup folder, created on first use so that dry runs leave nothing behind.
#[derive(Debug)]
pub struct BackupDir {
    root: PathBuf,
    stamp: String,
    path: Mutex<Option<PathBuf>>,
}

/// File name of an object's YAML: `<namespace>__<name>.yaml`.
pub fn object_file_name(namespace: &str, name: &str) -> String {
    format!("{namespace}__{name}.yaml")
}

impl BackupDir {
    /// A new folder `<root>/<UTC timestamp>` (with `-2`, `-3`... if taken).
    pub fn timestamped(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            stamp: chrono::Utc::now().format(TIMESTAMP_FORMAT).to_string(),
            path: Mutex::new(None),
        }
    }

    /// An existing backup folder.
    pub fn existing(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        Self { root: path.clone(), stamp: String::new(), path: Mutex::new(Some(path)) }
    }

    /// The folder, if it has been created (or was given).
    pub fn path(&self) -> Option<PathBuf> {
        self.path.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Where the folder will be: its path once created, otherwise `<root>/<timestamp>`.
    pub fn planned_path(&self) -> PathBuf {
        self.path().unwrap_or_else(|| self.root.join(&self.stamp))
    }

    fn ensure(&self) -> Result<PathBuf> {
        let mut guard = self.path.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(p) = guard.as_ref() {
            return Ok(p.clone());
        }
        std::fs::create_dir_all(&self.root).map_err(|e| Error::io(&self.root, e))?;
        for n in 1..1000 {
            let name = if n == 1 { self.stamp.clone() } else { format!("{}-{n}", self.stamp) };
            let candidate = self.root.join(name);
            match std::fs::create_dir(&candidate) {
                Ok(()) => {
                    let manifest = BackupManifest {
                        format_version: BACKUP_FORMAT_VERSION,
                        created: chrono::Utc::now()
                            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        tool_version: env!("CARGO_PKG_VERSION").to_string(),
                        objects: Vec::new(),
                    };
                    write_manifest(&candidate, &manifest)?;
                    *guard = Some(candidate.clone());
                    return Ok(candidate);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io(candidate, e)),
            }
        }
        Err(Error::io(&self.root, std::io::Error::other("no free backup folder name")))
    }

    /// Saves `object` (as it is before the change) and its manifest entry. An entry already
    /// applied for the same object is kept: the backup holds the state before the first change.
    pub fn record(&self, object: &Value, action: BackupAction) -> Result<BackupEntry> {
        let dir = self.ensure()?;
        let namespace = meta_str(object, "namespace").unwrap_or_default().to_string();
        let name = meta_str(object, "name")
            .ok_or_else(|| Error::InvalidObject("object without metadata.name".into()))?
            .to_string();
        let mut manifest = read_manifest(&dir)?;
        if let Some(done) = manifest
            .objects
            .iter()
            .find(|e| e.namespace == namespace && e.name == name && e.applied)
        {
            return Ok(done.clone());
        }
        let file = object_file_name(&namespace, &name);
        let yaml =
            serde_yaml_ng::to_string(object).map_err(|e| Error::InvalidObject(e.to_string()))?;
        write_atomically(&dir.join(&file), yaml.as_bytes())?;
        let entry = BackupEntry {
            api_version: object
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .into(),
            kind: object.get("kind").and_then(Value::as_str).unwrap_or_default().into(),
            namespace: namespace.clone(),
            name: name.clone(),
            resource_version: meta_str(object, "resourceVersion").map(Into::into),
            uid: meta_str(object, "uid").map(Into::into),
            action,
            file,
            applied: false,
            resource_version_after: None,
        };
        manifest.objects.retain(|e| !(e.namespace == namespace && e.name == name));
        manifest.objects.push(entry.clone());
        write_manifest(&dir, &manifest)?;
        Ok(entry)
    }

    /// Marks an object's write as carried out, with the object the server returned.
    pub fn mark_applied(&self, namespace: &str, name: &str, result: &Value) -> Result<()> {
        let dir = self.ensure()?;
        let mut manifest = read_manifest(&dir)?;
        for e in manifest.objects.iter_mut().filter(|e| e.namespace == namespace && e.name == name)
        {
            e.applied = true;
            e.resource_version_after = meta_str(result, "resourceVersion").map(Into::into);
            if e.action == BackupAction::Create {
                e.uid = meta_str(result, "uid").map(Into::into);
            }
        }
        write_manifest(&dir, &manifest)
    }
}

/// Reads `manifest.json` of a backup folder.
pub fn read_manifest(dir: &Path) -> Result<BackupManifest> {
    let path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::InvalidBackup {
        path: dir.to_path_buf(),
        reason: format!("cannot read {MANIFEST_FILE}: {e}"),
    })?;
    let manifest: BackupManifest = serde_json::from_str(&text)
        .map_err(|e| Error::InvalidBackup { path: path.clone(), reason: e.to_string() })?;
    if manifest.format_version != BACKUP_FORMAT_VERSION {
        return Err(Error::InvalidBackup {
            path,
            reason: format!(
                "format version {} is not {BACKUP_FORMAT_VERSION}",
                manifest.format_version
            ),
        });
    }
    Ok(manifest)
}

/// Reads the saved object of a manifest entry.
pub fn read_object(dir: &Path, entry: &BackupEntry) -> Result<Value> {
    if entry.file.contains('/') || entry.file.contains("..") {
        return Err(Error::InvalidBackup {
            path: dir.to_path_buf(),
            reason: format!("entry file {:?} is not a plain file name", entry.file),
        });
    }
    let path = dir.join(&entry.file);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_yaml_ng::from_str(&text).map_err(|e| Error::InvalidBackup { path, reason: e.to_string() })
}

fn write_manifest(dir: &Path, manifest: &BackupManifest) -> Result<()> {
    let mut text =
        serde_json::to_string_pretty(manifest).map_err(|e| Error::InvalidObject(e.to_string()))?;
    text.push('\n');
    write_atomically(&dir.join(MANIFEST_FILE), text.as_bytes())
}

/// Writes through a temporary file and a rename, so a crash never leaves half a file.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp-netpol-trace");
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

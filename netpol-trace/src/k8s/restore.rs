//! Putting a backup folder back: saved objects replace the current ones (spec, labels,
//! annotations), deleted ones are re-created, created ones are deleted.

use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::backup::{self, BackupAction, BackupEntry};
use super::client::DryRun;
use super::error::{Error, Result};
use super::rest::{self, meta_str};

/// What restore did to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestoreOutcome {
    /// The saved spec, labels and annotations replaced the current ones.
    Replaced,
    /// The object was missing and was created again from the backup.
    Recreated,
    /// The object the backup says was created was deleted.
    Deleted,
    /// The object already matched the backup.
    Unchanged,
    /// The object the backup says was created is already gone.
    AlreadyAbsent,
    /// Left alone on purpose (see the detail).
    Skipped,
    /// The API server refused (see the detail).
    Failed,
}

impl RestoreOutcome {
    /// The word printed in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Replaced => "replaced",
            Self::Recreated => "recreated",
            Self::Deleted => "deleted",
            Self::Unchanged => "unchanged",
            Self::AlreadyAbsent => "already-absent",
            Self::Skipped => "skipped",
            Self::Failed => "failed",
        }
    }
}

/// One object's line in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RestoreItem {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// What the backup recorded.
    pub recorded_action: BackupAction,
    /// What restore did (or would do in a dry run).
    pub outcome: RestoreOutcome,
    /// Details: resourceVersions, reasons.
    pub detail: String,
}

/// The whole restore.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RestoreReport {
    /// The backup folder.
    pub backup: String,
    /// Nothing was written (server-side dry run).
    pub dry_run: bool,
    /// Every object in the backup.
    pub objects: Vec<RestoreItem>,
}

impl RestoreReport {
    /// Whether every object is back (nothing failed or was skipped).
    pub fn restored(&self) -> bool {
        self.objects
            .iter()
            .all(|i| !matches!(i.outcome, RestoreOutcome::Failed | RestoreOutcome::Skipped))
    }
}

/// Restores every object of a backup folder, most recent first. Failures of single objects
/// are reported in their line; an unreadable backup is an error. `dry_run`: a server-side dry
/// run.
pub async fn restore(
    client: &kube::Client,
    backup_dir: &Path,
    dry_run: bool,
) -> Result<RestoreReport> {
    let mode = if dry_run { DryRun::Server } else { DryRun::None };
    restore_with(client, backup_dir, mode).await
}

/// [`restore`] with kubectl's dry-run modes: `Client` reads the cluster and says what it would
/// write, sending no write.
pub async fn restore_with(
    client: &kube::Client,
    backup_dir: &Path,
    mode: DryRun,
) -> Result<RestoreReport> {
    let manifest = backup::read_manifest(backup_dir)?;
    for entry in &manifest.objects {
        if entry.kind != rest::NETWORK_POLICY_KIND {
            return Err(Error::InvalidBackup {
                path: backup_dir.to_path_buf(),
                reason: format!(
                    "entry {}/{} is a {}, not a NetworkPolicy",
                    entry.namespace, entry.name, entry.kind
                ),
            });
        }
    }
    let mut objects = Vec::new();
    for entry in manifest.objects.iter().rev() {
        let (outcome, detail) = match restore_one(client, backup_dir, entry, mode).await {
            Ok(done) => done,
            Err(e @ (Error::InvalidBackup { .. } | Error::Io { .. })) => return Err(e),
            Err(e) => (RestoreOutcome::Failed, e.to_string()),
        };
        objects.push(RestoreItem {
            namespace: entry.namespace.clone(),
            name: entry.name.clone(),
            recorded_action: entry.action,
            outcome,
            detail,
        });
    }
    Ok(RestoreReport { backup: backup_dir.display().to_string(), dry_run: mode.is_dry(), objects })
}

fn same_content(a: &Value, b: &Value) -> bool {
    a.get("spec") == b.get("spec")
        && a.pointer("/metadata/labels") == b.pointer("/metadata/labels")
        && a.pointer("/metadata/annotations") == b.pointer("/metadata/annotations")
}

/// `current` with the saved spec, labels and annotations.
fn with_saved_content(current: &Value, saved: &Value) -> Value {
    let mut out = current.clone();
    match saved.get("spec") {
        Some(spec) => out["spec"] = spec.clone(),
        None => {
            if let Some(o) = out.as_object_mut() {
                o.remove("spec");
            }
        }
    }
    for field in ["labels", "annotations"] {
        match saved.pointer(&format!("/metadata/{field}")) {
            Some(v) => out["metadata"][field] = v.clone(),
            None => {
                if let Some(m) = out["metadata"].as_object_mut() {
                    m.remove(field);
                }
            }
        }
    }
    out
}

async fn restore_one(
    client: &kube::Client,
    dir: &Path,
    entry: &BackupEntry,
    mode: DryRun,
) -> Result<(RestoreOutcome, String)> {
    let dry_run = mode.is_dry();
    let send = mode != DryRun::Client;
    let (ns, name) = (entry.namespace.as_str(), entry.name.as_str());
    let current = rest::get_policy(client, ns, name).await?;
    match entry.action {
        BackupAction::Create => {
            let Some(current) = current else {
                return Ok((RestoreOutcome::AlreadyAbsent, "not present".into()));
            };
            let uid = meta_str(&current, "uid");
            if !entry.applied || entry.uid.as_deref() != uid {
                return Ok((
                    RestoreOutcome::Skipped,
                    "an object of this name exists that netpol-trace did not create; left alone"
                        .into(),
                ));
            }
            if !send {
                return Ok((RestoreOutcome::Deleted, "would delete (nothing sent)".into()));
            }
            rest::delete_policy_object(client, ns, name, uid, None, dry_run).await?;
            Ok((RestoreOutcome::Deleted, format!("deleted (uid {})", uid.unwrap_or_default())))
        }
        BackupAction::Patch | BackupAction::Delete if !entry.applied => Ok((
            RestoreOutcome::Unchanged,
            format!("the recorded {} was never carried out; left as is", entry.action),
        )),
        BackupAction::Patch | BackupAction::Delete => {
            let saved = backup::read_object(dir, entry)?;
            match current {
                None => {
                    if !send {
                        return Ok((
                            RestoreOutcome::Recreated,
                            "would create again from the backup (nothing sent)".into(),
                        ));
                    }
                    let obj = rest::for_create(&saved);
                    let created = rest::create_policy_object(client, ns, &obj, dry_run).await?;
                    let rv = meta_str(&created, "resourceVersion").unwrap_or("-");
                    Ok((
                        RestoreOutcome::Recreated,
                        format!("created again from the backup (resourceVersion {rv})"),
                    ))
                }
                Some(current) if same_content(&current, &saved) => {
                    Ok((RestoreOutcome::Unchanged, "already matches the backup".into()))
                }
                Some(current) => {
                    let before = meta_str(&current, "resourceVersion").unwrap_or("-").to_string();
                    let replacement = with_saved_content(&current, &saved);
                    if !send {
                        return Ok((
                            RestoreOutcome::Replaced,
                            format!(
                                "would replace spec, labels and annotations (resourceVersion {before}; nothing sent)"
                            ),
                        ));
                    }
                    let put = rest::replace_policy(client, ns, name, &replacement, dry_run).await?;
                    let after = meta_str(&put, "resourceVersion").unwrap_or("-");
                    let detail = if dry_run {
                        format!(
                            "would replace spec, labels and annotations (resourceVersion {before})"
                        )
                    } else {
                        format!(
                            "spec, labels and annotations replaced (resourceVersion {before} -> {after})"
                        )
                    };
                    Ok((RestoreOutcome::Replaced, detail))
                }
            }
        }
    }
}

//! Safe writes of NetworkPolicies: backup first, server-side dry run, then the real write
//! guarded by the resourceVersion that was read, with one re-read and retry on a lost race.

use std::path::PathBuf;

use serde::Serialize;
use serde_json::{Value, json};

use super::backup::{BackupAction, BackupDir};
use super::error::{Error, Result};
use super::rest::{self, meta_str};

/// How writes are carried out.
#[derive(Debug)]
pub struct ApplyOptions {
    /// Validate against the server (`dryRun=All`) and report, but write nothing, not even a
    /// backup.
    pub dry_run: bool,
    /// Where the objects are saved before they change.
    pub backup: BackupDir,
}

impl ApplyOptions {
    /// Real writes, backed up into a new timestamped folder under `backup_root`.
    pub fn new(backup_root: impl Into<PathBuf>) -> Self {
        Self { dry_run: false, backup: BackupDir::timestamped(backup_root) }
    }

    /// Server-side dry run only.
    pub fn dry_run(backup_root: impl Into<PathBuf>) -> Self {
        Self { dry_run: true, ..Self::new(backup_root) }
    }
}

/// What a write did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApplyReport {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `patch`, `create` or `delete`.
    pub action: BackupAction,
    /// Nothing was written.
    pub dry_run: bool,
    /// resourceVersion before the write (none for a create).
    pub resource_version_before: Option<String>,
    /// resourceVersion after the write (none for a dry run or a delete).
    pub resource_version_after: Option<String>,
    /// The first attempt lost a race with another writer and was redone once.
    pub retried: bool,
    /// The backup folder (none for a dry run).
    pub backup: Option<PathBuf>,
    /// The object as the server returned it (the dry-run result in a dry run).
    pub object: Value,
}

/// The concurrency guard: the write applies only to the resourceVersion that was read.
fn guarded(
    resource_version: &str,
    ops: &[json_patch::PatchOperation],
) -> Result<Vec<json_patch::PatchOperation>> {
    let test =
        json!({"op": "test", "path": "/metadata/resourceVersion", "value": resource_version});
    let test = serde_json::from_value(test).map_err(|e| Error::InvalidObject(e.to_string()))?;
    Ok(std::iter::once(test).chain(ops.iter().cloned()).collect())
}

fn check_applies(
    object: &Value,
    ops: &[json_patch::PatchOperation],
    namespace: &str,
    name: &str,
) -> Result<Value> {
    let mut patched = object.clone();
    json_patch::patch(&mut patched, ops).map_err(|e| Error::PatchDoesNotApply {
        namespace: namespace.into(),
        name: name.into(),
        detail: e.to_string(),
    })?;
    Ok(patched)
}

/// The 404 of a policy that was not there to be read.
fn not_found(namespace: &str, name: &str) -> Error {
    Error::Api(Box::new(super::error::ApiFailure {
        verb: "get".into(),
        resource: rest::NETWORK_POLICIES.into(),
        namespace: Some(namespace.into()),
        name: Some(name.into()),
        code: 404,
        reason: "NotFound".into(),
        message: format!("networkpolicies.networking.k8s.io \"{name}\" not found"),
    }))
}

fn rv(object: &Value) -> Result<String> {
    meta_str(object, "resourceVersion")
        .map(str::to_string)
        .ok_or_else(|| Error::InvalidObject("object without metadata.resourceVersion".into()))
}

/// Applies an RFC 6902 patch to a NetworkPolicy: GET; backup; server-side dry run; PATCH
/// guarded by a `test` of the resourceVersion read. If another writer got there first, re-read
/// once and retry only if the patch still applies cleanly; otherwise stop with nothing changed.
pub async fn apply_json_patch(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    ops: Vec<json_patch::PatchOperation>,
    opts: &ApplyOptions,
) -> Result<ApplyReport> {
    let current = rest::get_policy(client, namespace, name)
        .await?
        .ok_or_else(|| not_found(namespace, name))?;
    check_applies(&current, &ops, namespace, name)?;
    let before = rv(&current)?;
    if !opts.dry_run {
        opts.backup.record(&current, BackupAction::Patch)?;
    }
    let dry = rest::patch_policy(client, namespace, name, &guarded(&before, &ops)?, true).await;
    let mut report = ApplyReport {
        namespace: namespace.into(),
        name: name.into(),
        action: BackupAction::Patch,
        dry_run: opts.dry_run,
        resource_version_before: Some(before.clone()),
        resource_version_after: None,
        retried: false,
        backup: None,
        object: Value::Null,
    };
    match dry {
        Ok(result) if opts.dry_run => {
            report.object = result;
            return Ok(report);
        }
        Ok(_) => {}
        // A race during the dry run of a real apply is handled like one during the write,
        // below; a dry-run-only call reports it.
        Err(e) if e.is_conflict() && !opts.dry_run => {}
        Err(e) => return Err(e),
    }
    let written = match rest::patch_policy(client, namespace, name, &guarded(&before, &ops)?, false)
        .await
    {
        Ok(obj) => obj,
        Err(e) if e.is_conflict() => {
            tracing::info!(namespace, name, "networkpolicy changed concurrently; re-reading once");
            let fresh = rest::get_policy(client, namespace, name).await?.ok_or_else(|| {
                Error::ConcurrentChange {
                    namespace: namespace.into(),
                    name: name.into(),
                    detail: "was deleted".into(),
                }
            })?;
            check_applies(&fresh, &ops, namespace, name).map_err(|e| Error::ConcurrentChange {
                namespace: namespace.into(),
                name: name.into(),
                detail: format!("the patch no longer applies ({e})"),
            })?;
            let fresh_rv = rv(&fresh)?;
            opts.backup.record(&fresh, BackupAction::Patch)?;
            report.retried = true;
            report.resource_version_before = Some(fresh_rv.clone());
            rest::patch_policy(client, namespace, name, &guarded(&fresh_rv, &ops)?, false)
                .await
                .map_err(|e| {
                    if e.is_conflict() {
                        Error::ConcurrentChange {
                            namespace: namespace.into(),
                            name: name.into(),
                            detail: "was changed again during the retry".into(),
                        }
                    } else {
                        e
                    }
                })?
        }
        Err(e) => return Err(e),
    };
    opts.backup.mark_applied(namespace, name, &written)?;
    report.resource_version_after = meta_str(&written, "resourceVersion").map(Into::into);
    report.backup = opts.backup.path();
    report.object = written;
    Ok(report)
}

/// Creates a new NetworkPolicy (its namespace comes from `object.metadata.namespace`). The
/// backup records it as created, so that restore deletes it.
pub async fn create_policy(
    client: &kube::Client,
    object: &Value,
    opts: &ApplyOptions,
) -> Result<ApplyReport> {
    let object = rest::for_create(object);
    let namespace = meta_str(&object, "namespace")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            Error::InvalidObject("the new NetworkPolicy has no metadata.namespace".into())
        })?
        .to_string();
    let name = meta_str(&object, "name")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| Error::InvalidObject("the new NetworkPolicy has no metadata.name".into()))?
        .to_string();
    let checked = rest::create_policy_object(client, &namespace, &object, true).await?;
    let mut report = ApplyReport {
        namespace: namespace.clone(),
        name: name.clone(),
        action: BackupAction::Create,
        dry_run: opts.dry_run,
        resource_version_before: None,
        resource_version_after: None,
        retried: false,
        backup: None,
        object: checked,
    };
    if opts.dry_run {
        return Ok(report);
    }
    opts.backup.record(&object, BackupAction::Create)?;
    let created = rest::create_policy_object(client, &namespace, &object, false).await?;
    opts.backup.mark_applied(&namespace, &name, &created)?;
    report.resource_version_after = meta_str(&created, "resourceVersion").map(Into::into);
    report.backup = opts.backup.path();
    report.object = created;
    Ok(report)
}

/// Deletes a NetworkPolicy: the runbook's last resort, only for an explicit user request.
/// The object is backed up first and deleted only if unchanged since it was read.
pub async fn delete_policy(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    opts: &ApplyOptions,
) -> Result<ApplyReport> {
    let current = rest::get_policy(client, namespace, name)
        .await?
        .ok_or_else(|| not_found(namespace, name))?;
    let before = rv(&current)?;
    let uid = meta_str(&current, "uid").map(str::to_string);
    let mut report = ApplyReport {
        namespace: namespace.into(),
        name: name.into(),
        action: BackupAction::Delete,
        dry_run: opts.dry_run,
        resource_version_before: Some(before.clone()),
        resource_version_after: None,
        retried: false,
        backup: None,
        object: current.clone(),
    };
    rest::delete_policy_object(client, namespace, name, uid.as_deref(), Some(&before), true)
        .await?;
    if opts.dry_run {
        return Ok(report);
    }
    opts.backup.record(&current, BackupAction::Delete)?;
    let deleted =
        rest::delete_policy_object(client, namespace, name, uid.as_deref(), Some(&before), false)
            .await
            .map_err(|e| {
                if e.status_code() == Some(409) {
                    Error::ConcurrentChange {
                        namespace: namespace.into(),
                        name: name.into(),
                        detail: "was not deleted".into(),
                    }
                } else {
                    e
                }
            })?;
    opts.backup.mark_applied(namespace, name, &deleted)?;
    report.backup = opts.backup.path();
    Ok(report)
}

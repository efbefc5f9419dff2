//! `restore dropreport/NAME`: undo an applied fix from the backup kept in the report, with the
//! credentials of the person running it. An object changed since the fix stops the restore
//! (nothing is written, the phase stays) unless forced. Patched policies get their spec, labels
//! and annotations back (a JSON patch guarded by the live resourceVersion); policies the fix
//! created are deleted. The decision is cleared first, so the controller does not re-apply, and
//! the phase becomes `RolledBack`.

use kube::Api;
use kube::api::{Patch, PatchParams};
use serde::Serialize;
use serde_json::{Value, json};

use super::decide::{get_report, set_decision};
use super::report::{Applied, DropReport, FixPhase};
use super::{Error, Result};
use crate::k8s::rest::{self, meta_str};

/// What restore did to one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestoredObject {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `replaced`, `deleted`, `recreated` or `unchanged`.
    pub action: &'static str,
    /// resourceVersion after the restore (none for a deletion).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
}

fn applied_of(report: &DropReport) -> Result<Applied> {
    let fix = report.status.as_ref().and_then(|s| s.fix.as_ref());
    match fix.and_then(|f| f.applied.clone()) {
        Some(applied) if !applied.resource_versions.is_empty() => Ok(applied),
        _ => Err(Error::Report {
            report: report.key(),
            reason: format!(
                "no applied fix to undo (fix phase {})",
                fix.map_or("none", |f| f.phase.as_str())
            ),
        }),
    }
}

/// The objects changed since the fix: `networkpolicy NS/NAME (...)` for each.
async fn changed_since_fix(
    client: &kube::Client,
    applied: &Applied,
) -> Result<(Vec<String>, Vec<Option<Value>>)> {
    let mut changed = Vec::new();
    let mut live = Vec::new();
    for b in &applied.backup {
        let object = rest::get_policy(client, &b.namespace, &b.name).await?;
        let recorded = applied
            .resource_versions
            .iter()
            .find(|v| v.namespace == b.namespace && v.name == b.name)
            .map(|v| v.resource_version.as_str());
        let now = object.as_ref().and_then(|o| meta_str(o, "resourceVersion"));
        match (recorded, now) {
            (Some(r), Some(n)) if r == n => {}
            // Not written by the fix (a partial write): it must still be as backed up.
            (None, n) if n == b.object.as_ref().and_then(|o| meta_str(o, "resourceVersion")) => {}
            (r, n) => changed.push(format!(
                "networkpolicy {}/{} (resourceVersion {} after the fix, {} now)",
                b.namespace,
                b.name,
                r.unwrap_or("unwritten"),
                n.unwrap_or("deleted")
            )),
        }
        live.push(object);
    }
    Ok((changed, live))
}

/// Undoes the applied fix of report `namespace/name`; see the module documentation.
pub async fn restore_report(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    force: bool,
) -> Result<Vec<RestoredObject>> {
    let report = get_report(client, namespace, name).await?;
    let applied = applied_of(&report)?;
    let (changed, live) = changed_since_fix(client, &applied).await?;
    if !changed.is_empty() && !force {
        return Err(Error::ChangedSinceFix { report: report.key(), changed });
    }
    set_decision(client, namespace, name, None).await?;
    let mut done = Vec::new();
    for (b, live) in applied.backup.iter().zip(live) {
        let written = applied
            .resource_versions
            .iter()
            .any(|v| v.namespace == b.namespace && v.name == b.name);
        let outcome = match (&b.object, live) {
            (None, None) => RestoredObject::new(b, "unchanged", None),
            (None, Some(now)) => {
                let rv = if force { None } else { meta_str(&now, "resourceVersion") };
                let uid = meta_str(&now, "uid");
                rest::delete_policy_object(client, &b.namespace, &b.name, uid, rv, false).await?;
                RestoredObject::new(b, "deleted", None)
            }
            (Some(_), Some(_)) if !written => RestoredObject::new(b, "unchanged", None),
            (Some(before), Some(now)) => {
                let rv = meta_str(&now, "resourceVersion").unwrap_or_default();
                let ops = put_back(before, &now, rv)?;
                let after = rest::patch_policy(client, &b.namespace, &b.name, &ops, false).await?;
                RestoredObject::new(b, "replaced", meta_str(&after, "resourceVersion"))
            }
            (Some(before), None) => {
                let object = rest::for_create(before);
                let after =
                    rest::create_policy_object(client, &b.namespace, &object, false).await?;
                RestoredObject::new(b, "recreated", meta_str(&after, "resourceVersion"))
            }
        };
        done.push(outcome);
    }
    let status = json!({"status": {"fix": {"phase": FixPhase::RolledBack.as_str(),
        "message": format!("restored from the backup in the report ({} object(s))", done.len())}}});
    Api::<DropReport>::namespaced(client.clone(), namespace)
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .map_err(|e| Error::report("patch status of", namespace, name, e))?;
    Ok(done)
}

impl RestoredObject {
    fn new(b: &super::report::BackupObject, action: &'static str, rv: Option<&str>) -> Self {
        Self {
            namespace: b.namespace.clone(),
            name: b.name.clone(),
            action,
            resource_version: rv.map(str::to_string),
        }
    }
}

/// The JSON patch that gives `now` the spec, labels and annotations of `before`, guarded by
/// `now`'s resourceVersion.
fn put_back(before: &Value, now: &Value, rv: &str) -> Result<Vec<json_patch::PatchOperation>> {
    let mut ops = vec![json!({"op": "test", "path": "/metadata/resourceVersion", "value": rv})];
    for (path, field) in [
        ("/spec", before.get("spec")),
        ("/metadata/labels", before.pointer("/metadata/labels")),
        ("/metadata/annotations", before.pointer("/metadata/annotations")),
    ] {
        let exists = now.pointer(path).is_some();
        match (field, exists) {
            (Some(value), true) => ops.push(json!({"op": "replace", "path": path, "value": value})),
            (Some(value), false) => ops.push(json!({"op": "add", "path": path, "value": value})),
            (None, true) => ops.push(json!({"op": "remove", "path": path})),
            (None, false) => {}
        }
    }
    serde_json::from_value(Value::Array(ops))
        .map_err(|e| Error::Report { report: "restore".into(), reason: e.to_string() })
}

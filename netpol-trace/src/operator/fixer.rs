//! Applying the fix of one approved report: re-plan from the live cluster, back up every object
//! into the report's status before the first write, dry-run every change, write each guarded by
//! a resourceVersion `test`, record the resulting resourceVersions. On a lost race: re-read and
//! re-plan once, then `Failed`. Nothing is ever written for a report that is not approved.

use chrono::Utc;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};

use super::plan::{Change, LivePlan, ObjectWrite, Planned, patches_for_status, plan_live};
use super::report::{
    Applied, BackupObject, Decision, DropReport, DropReportStatus, FixPhase, FixStatus,
    ObjectVersion,
};
use super::{Error, Result};
use crate::k8s::rest::{self, meta_str};

/// Where a test stops the controller as if the process died there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// After the backup is in the report's status, before any NetworkPolicy write.
    AfterBackup,
    /// After the NetworkPolicy writes, before the report says `Applied`.
    AfterWrite,
}

impl CrashPoint {
    fn name(self) -> &'static str {
        match self {
            Self::AfterBackup => "after-backup",
            Self::AfterWrite => "after-write",
        }
    }
}

/// What the fixer needs.
#[derive(Clone)]
pub struct Fixer {
    /// The client (the controller's identity).
    pub client: kube::Client,
    /// Recorded in `status.fix.applied.by`: the controller's pod name.
    pub identity: String,
    /// Tests only: stop there, as a killed process would.
    pub crash_at: Option<CrashPoint>,
}

/// Whether the controller has work on `report`: approved, and its fix not applied (a
/// `RolledBack` report approved again is re-applied; a write interrupted between backup and
/// `Applied` is finished). Final answers (`NotNeeded`, `Unfixable`, `Failed`) are revisited
/// only after the spec changed again (a new decision), so a failure does not loop.
pub fn needs_work(report: &DropReport) -> bool {
    if report.spec.decision != Some(Decision::Approved) {
        return false;
    }
    let fix = report.status.as_ref().and_then(|s| s.fix.as_ref());
    match fix.map(|f| f.phase) {
        None | Some(FixPhase::Proposed | FixPhase::RolledBack) => true,
        Some(FixPhase::Applied) => false,
        Some(FixPhase::NotNeeded | FixPhase::Unfixable | FixPhase::Failed) => {
            let observed = fix.and_then(|f| f.observed_generation);
            observed.is_none() || observed < report.metadata.generation
        }
    }
}

/// Whether a previous run wrote the backup but did not finish.
fn interrupted(report: &DropReport) -> Option<&Applied> {
    let fix = report.status.as_ref()?.fix.as_ref()?;
    let applied = fix.applied.as_ref()?;
    (fix.phase != FixPhase::Applied && applied.at.is_none() && !applied.backup.is_empty())
        .then_some(applied)
}

impl Fixer {
    fn api(&self, namespace: &str) -> Api<DropReport> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Works on one report (read fresh); returns the phase it ended in, `None` when there was
    /// nothing to do.
    pub async fn reconcile(&self, namespace: &str, name: &str) -> Result<Option<FixPhase>> {
        let report = self.get(namespace, name).await?;
        if !needs_work(&report) {
            return Ok(None);
        }
        if let Some(applied) = interrupted(&report).cloned()
            && let Some(phase) = self.finish_interrupted(&report, &applied).await?
        {
            return Ok(Some(phase));
        }
        let mut report = report;
        for attempt in 0..2 {
            let planned = plan_live(&self.client, &report.spec).await?;
            let outcome = match planned {
                Planned::AlreadyAllowed => {
                    let msg = "the live policies allow the flow already".to_string();
                    self.finish(&report, FixPhase::NotNeeded, msg, None, vec![]).await?;
                    return Ok(Some(FixPhase::NotNeeded));
                }
                Planned::Unfixable(reason) => {
                    self.finish(&report, FixPhase::Unfixable, reason, None, vec![]).await?;
                    return Ok(Some(FixPhase::Unfixable));
                }
                Planned::Changes(plan) => self.apply(&mut report, &plan).await,
            };
            match outcome {
                Ok(()) => return Ok(Some(FixPhase::Applied)),
                Err(e) if e.is_conflict() && attempt == 0 => {
                    tracing::info!(report = %report.key(), error = %e, "lost a race; re-reading and planning again");
                    report = self.get(namespace, name).await?;
                    if !needs_work(&report) {
                        return Ok(None);
                    }
                }
                Err(e @ Error::CrashPoint(_)) => return Err(e),
                Err(e) => {
                    let message = if e.is_conflict() {
                        format!("the policies changed twice while the fix was written: {e}")
                    } else {
                        e.to_string()
                    };
                    let report = self.get(namespace, name).await?;
                    let applied = report
                        .status
                        .as_ref()
                        .and_then(|s| s.fix.as_ref())
                        .and_then(|f| f.applied.clone());
                    self.finish(&report, FixPhase::Failed, message, applied, vec![]).await?;
                    return Ok(Some(FixPhase::Failed));
                }
            }
        }
        Ok(None)
    }

    async fn get(&self, namespace: &str, name: &str) -> Result<DropReport> {
        self.api(namespace).get(name).await.map_err(|e| Error::report("get", namespace, name, e))
    }

    /// Writes `status` with the report's resourceVersion as precondition (PUT /status), so a
    /// concurrent agent update is never lost: a 409 re-reads and re-applies `change`.
    async fn write_status(
        &self,
        report: &DropReport,
        change: impl Fn(&mut DropReportStatus),
    ) -> Result<DropReport> {
        let namespace = report.metadata.namespace.clone().unwrap_or_default();
        let name = report.metadata.name.clone().unwrap_or_default();
        let api = self.api(&namespace);
        let mut current = report.clone();
        for _ in 0..5 {
            let mut status = current.status.clone().unwrap_or_default();
            change(&mut status);
            current.status = Some(status);
            let body = &current;
            match api.replace_status(&name, &PostParams::default(), body).await {
                Ok(written) => return Ok(written),
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    current = self.get(&namespace, &name).await?;
                }
                Err(e) => return Err(Error::report("replace status of", &namespace, &name, e)),
            }
        }
        Err(Error::Report {
            report: report.key(),
            reason: "status kept changing under five consecutive writes".into(),
        })
    }

    async fn finish(
        &self,
        report: &DropReport,
        phase: FixPhase,
        message: String,
        applied: Option<Applied>,
        patches: Vec<Value>,
    ) -> Result<DropReport> {
        let generation = report.metadata.generation;
        self.write_status(report, |status| {
            let previous = status.fix.take();
            let patches = if patches.is_empty() {
                previous.as_ref().map(|f| f.patches.clone()).unwrap_or_default()
            } else {
                patches.clone()
            };
            status.fix = Some(FixStatus {
                phase,
                patches,
                message: Some(message.clone()),
                applied: applied.clone(),
                observed_generation: generation,
            });
        })
        .await
    }

    /// Backup, dry run, guarded writes, `Applied`.
    async fn apply(&self, report: &mut DropReport, plan: &LivePlan) -> Result<()> {
        let backup: Vec<BackupObject> = plan
            .writes
            .iter()
            .map(|w| BackupObject {
                namespace: w.namespace.clone(),
                name: w.name.clone(),
                object: w.before.clone(),
            })
            .collect();
        let mut applied =
            Applied { at: None, by: self.identity.clone(), resource_versions: vec![], backup };
        let patches = patches_for_status(&plan.plan);
        let phase = report.phase().unwrap_or(FixPhase::Proposed);
        let generation = report.metadata.generation;
        // The backup goes into the report before anything changes.
        *report = self
            .write_status(report, |status| {
                let message = status.fix.as_ref().and_then(|f| f.message.clone());
                status.fix = Some(FixStatus {
                    phase,
                    patches: patches.clone(),
                    message,
                    applied: Some(applied.clone()),
                    observed_generation: generation,
                });
            })
            .await?;
        for w in &plan.writes {
            self.send(w, true).await?;
        }
        if self.crash_at == Some(CrashPoint::AfterBackup) {
            return Err(Error::CrashPoint(CrashPoint::AfterBackup.name()));
        }
        for w in &plan.writes {
            match self.send(w, false).await {
                Ok(version) => applied.resource_versions.push(version),
                Err(e) if applied.resource_versions.is_empty() => return Err(e),
                Err(e) => {
                    // Part of the plan is written: record it so `restore` can undo it.
                    let message = format!(
                        "{e}; {} of {} object(s) were changed: undo with `netpol-trace restore dropreport/{} -n {}`",
                        applied.resource_versions.len(),
                        plan.writes.len(),
                        report.metadata.name.as_deref().unwrap_or_default(),
                        report.metadata.namespace.as_deref().unwrap_or_default(),
                    );
                    applied.at = Some(Utc::now());
                    self.finish(report, FixPhase::Failed, message, Some(applied), vec![]).await?;
                    return Ok(());
                }
            }
        }
        if self.crash_at == Some(CrashPoint::AfterWrite) {
            return Err(Error::CrashPoint(CrashPoint::AfterWrite.name()));
        }
        applied.at = Some(Utc::now());
        let message = plan.plan.summary.clone();
        self.finish(report, FixPhase::Applied, message, Some(applied), vec![]).await?;
        Ok(())
    }

    /// One change, as a server-side dry run or for real; returns the new resourceVersion.
    async fn send(&self, w: &ObjectWrite, dry_run: bool) -> Result<ObjectVersion> {
        let written = match &w.change {
            Change::Patch(ops) => {
                let before = w.before.as_ref().and_then(|b| meta_str(b, "resourceVersion"));
                let before = before.ok_or_else(|| Error::Report {
                    report: format!("{}/{}", w.namespace, w.name),
                    reason: "the policy as read has no resourceVersion".into(),
                })?;
                let test =
                    json!({"op": "test", "path": "/metadata/resourceVersion", "value": before});
                let test: json_patch::PatchOperation = serde_json::from_value(test)
                    .map_err(|e| Error::Report { report: w.name.clone(), reason: e.to_string() })?;
                let guarded: Vec<_> = std::iter::once(test).chain(ops.iter().cloned()).collect();
                rest::patch_policy(&self.client, &w.namespace, &w.name, &guarded, dry_run).await?
            }
            Change::Create(object) => {
                let object = rest::for_create(object);
                rest::create_policy_object(&self.client, &w.namespace, &object, dry_run).await?
            }
        };
        Ok(ObjectVersion {
            namespace: w.namespace.clone(),
            name: w.name.clone(),
            resource_version: meta_str(&written, "resourceVersion").unwrap_or_default().into(),
        })
    }

    /// A previous leader stopped between backup and `Applied`. If nothing was written, return
    /// `None` (plan again); if the writes landed, record them and finish; else `Failed`.
    async fn finish_interrupted(
        &self,
        report: &DropReport,
        applied: &Applied,
    ) -> Result<Option<FixPhase>> {
        let mut changed = Vec::new();
        let mut versions = Vec::new();
        for b in &applied.backup {
            let live = rest::get_policy(&self.client, &b.namespace, &b.name).await?;
            let was = b.object.as_ref().and_then(|o| meta_str(o, "resourceVersion"));
            let now = live.as_ref().and_then(|o| meta_str(o, "resourceVersion"));
            if was != now {
                changed.push(format!("{}/{}", b.namespace, b.name));
                versions.push(ObjectVersion {
                    namespace: b.namespace.clone(),
                    name: b.name.clone(),
                    resource_version: now.unwrap_or_default().into(),
                });
            }
        }
        if changed.is_empty() {
            tracing::info!(report = %report.key(), "previous attempt wrote nothing; planning again");
            return Ok(None);
        }
        let planned = plan_live(&self.client, &report.spec).await?;
        let mut applied = applied.clone();
        applied.at = Some(Utc::now());
        applied.resource_versions = versions;
        let (phase, message) = match planned {
            Planned::AlreadyAllowed if changed.len() == applied.backup.len() => (
                FixPhase::Applied,
                "the previous controller wrote the fix before it stopped; recorded now".to_string(),
            ),
            _ => (
                FixPhase::Failed,
                format!(
                    "the previous controller stopped while writing; changed since its backup: {}; check them, then `netpol-trace restore dropreport/{} -n {}` or approve again",
                    changed.join(", "),
                    report.metadata.name.as_deref().unwrap_or_default(),
                    report.metadata.namespace.as_deref().unwrap_or_default()
                ),
            ),
        };
        self.finish(report, phase, message, Some(applied), vec![]).await?;
        Ok(Some(phase))
    }
}

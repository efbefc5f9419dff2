//! `approve` and `reject`: a merge patch of `spec.decision` — the one field people set.

use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::report::{Decision, DropReport};
use super::{Error, Result};

/// Reads a report; [`Error::NotFound`] when it does not exist.
pub async fn get_report(client: &kube::Client, namespace: &str, name: &str) -> Result<DropReport> {
    Api::<DropReport>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .map_err(|e| Error::report("get", namespace, name, e))
}

/// Sets `spec.decision` (`None` clears it: the report is pending again) and returns the
/// report as written.
pub async fn set_decision(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    decision: Option<Decision>,
) -> Result<DropReport> {
    let patch = json!({"spec": {"decision": decision.map(Decision::as_str)}});
    Api::<DropReport>::namespaced(client.clone(), namespace)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| Error::report("patch", namespace, name, e))
}

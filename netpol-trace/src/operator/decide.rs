//! `approve` and `reject`: a merge patch of `spec.decision` — the one field people set.

use std::fmt::Write as _;

use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::report::{Decision, DropReport};
use super::{Error, Result};

/// Strips an optional `dropreport/` (or `dr/`, `dropreports/`) prefix from a report argument.
pub fn name_of_argument(arg: &str) -> &str {
    for prefix in ["dropreports.netpol-trace.io/", "dropreports/", "dropreport/", "dr/"] {
        if let Some(rest) = arg.strip_prefix(prefix) {
            return rest;
        }
    }
    arg
}

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

/// Decides report `namespace/name` (read first, so that a missing report is
/// [`Error::NotFound`] and nothing is written) and returns what to tell the person: the
/// decision and, for an approval, the patches the controller will re-check and apply.
pub async fn decide(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    decision: Decision,
) -> Result<String> {
    let report = get_report(client, namespace, name).await?;
    set_decision(client, namespace, name, Some(decision)).await?;
    let verb = match decision {
        Decision::Approved => "approved",
        Decision::Rejected => "rejected",
    };
    let mut text = format!("{verb} dropreport {namespace}/{name}\n");
    if decision == Decision::Approved {
        let fix = report.status.as_ref().and_then(|s| s.fix.as_ref());
        let patches = fix.map(|f| f.patches.as_slice()).unwrap_or_default();
        text.push_str(if patches.is_empty() {
            "no fix proposed yet: the controller plans one from the live cluster\n"
        } else {
            "the controller will re-check against the live cluster and apply:\n"
        });
        for p in patches {
            match p.get("kubectl").and_then(serde_json::Value::as_str) {
                Some(k) => writeln!(text, "{k}"),
                None => writeln!(text, "{p}"),
            }
            .ok();
        }
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_prefixes_are_stripped() {
        assert_eq!(name_of_argument("dropreport/a-b"), "a-b");
        assert_eq!(name_of_argument("dr/a-b"), "a-b");
        assert_eq!(name_of_argument("dropreports.netpol-trace.io/a"), "a");
        assert_eq!(name_of_argument("a-b"), "a-b");
    }
}

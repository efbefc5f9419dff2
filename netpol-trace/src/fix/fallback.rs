//! The runbook's last resort, `--fallback delete-policy`: delete every policy that isolates a
//! denied direction of the flow. Never chosen on its own: the command line asks for it
//! explicitly (and for `--yes`), and the plan shows its whole blast radius.

use serde_json::Value;

use super::blast::{ChangeScope, PairEnd, verdict_changes};
use super::hints::subject_end;
use super::kubectl::delete_command;
use super::{FixOptions, FixPlan, PatchAction, PolicyPatch};
use crate::explain::{Verdict, explain, is_allowed};
use crate::flow::Flow;
use crate::inventory::{Inventory, PolicyId};
use crate::policy::Direction;

/// The plan that deletes the policies denying `flows`.
pub fn plan_delete_fallback(
    inventory: &Inventory,
    flows: &[Flow],
    options: &FixOptions,
) -> FixPlan {
    let explain_options = &options.explain;
    let mut targets: Vec<(PolicyId, Direction)> = Vec::new();
    for flow in flows {
        let explanation = explain(inventory, flow, explain_options);
        for direction in [Direction::Egress, Direction::Ingress] {
            let Some(subject) = subject_end(flow, direction).pod() else { continue };
            if explanation.direction(direction).allowed {
                continue;
            }
            for &id in inventory.isolating_policies(subject, direction) {
                if !targets.iter().any(|(t, _)| *t == id) {
                    targets.push((id, direction));
                }
            }
        }
    }
    let removed: Vec<(String, String)> = targets
        .iter()
        .map(|&(id, _)| {
            let compiled = &inventory.policy(id).compiled;
            (compiled.namespace.clone(), compiled.name.clone())
        })
        .collect();
    let after = inventory.with_policies_removed(&removed);
    let mut scope = ChangeScope::default();
    for &(id, _) in &targets {
        let entry = inventory.policy(id);
        if entry.compiled.affects(Direction::Ingress) {
            scope.ingress_subjects.extend(entry.selected.iter().copied());
        }
        if entry.compiled.affects(Direction::Egress) {
            scope.egress_subjects.extend(entry.selected.iter().copied());
        }
    }
    for flow in flows {
        let outside = [flow.src, flow.dst].into_iter().filter(|e| e.pod().is_none());
        scope.addresses.extend(outside.filter_map(|e| e.ip()));
        scope.ports.insert((flow.protocol, flow.port));
    }
    let changes = verdict_changes(inventory, &after, &scope, explain_options);
    let patches: Vec<PolicyPatch> = targets
        .iter()
        .map(|&(id, direction)| {
            let entry = inventory.policy(id);
            let compiled = &entry.compiled;
            let newly_allowed = changes
                .newly_allowed
                .iter()
                .filter(|probe| {
                    let selects = |end: PairEnd| matches!(end, PairEnd::Pod(p) if entry.selected.contains(&p));
                    (compiled.affects(Direction::Ingress) && selects(probe.dst))
                        || (compiled.affects(Direction::Egress) && selects(probe.src))
                })
                .map(|probe| probe.to_pair(inventory))
                .collect();
            PolicyPatch {
                kind: crate::policy::PolicyKind::NetworkPolicy,
                namespace: compiled.namespace.clone(),
                name: compiled.name.clone(),
                tier: None,
                requires_cluster_admin: false,
                direction,
                action: PatchAction::Delete,
                json_patch: None,
                object: None,
                kubectl: delete_command(&compiled.namespace, &compiled.name),
                newly_allowed,
                change: format!(
                    "LAST RESORT: delete the policy; the {} pod{} it selects lose all of its isolation",
                    entry.selected.len(),
                    if entry.selected.len() == 1 { "" } else { "s" }
                ),
                hints: Vec::new(),
                source: entry.sourced.source.to_string(),
                result: Value::Null,
                original: Some(entry.sourced.raw_json().into_owned()),
                policy_source: entry.sourced.source.clone(),
                companion_file: None,
            }
        })
        .collect();
    let summaries: Vec<_> =
        flows.iter().map(|f| explain(inventory, f, explain_options).flow).collect();
    let verdict = |allowed: bool| if allowed { Verdict::Allow } else { Verdict::Deny };
    let before = flows.iter().all(|f| is_allowed(inventory, f, explain_options));
    let allowed_after = flows.iter().all(|f| is_allowed(&after, f, explain_options));
    let newly_allowed: Vec<_> =
        changes.newly_allowed.iter().map(|p| p.to_pair(inventory)).collect();
    let summary = format!(
        "LAST RESORT: delete {} polic{}; {} connection{} newly allowed",
        patches.len(),
        if patches.len() == 1 { "y" } else { "ies" },
        newly_allowed.len(),
        if newly_allowed.len() == 1 { "" } else { "s" }
    );
    let flows_field = if summaries.len() > 1 { summaries.clone() } else { Vec::new() };
    FixPlan {
        flow: summaries.into_iter().next().unwrap_or_else(super::empty_flow),
        flows: flows_field,
        verdict_before: verdict(before),
        verdict_after: verdict(allowed_after),
        patches,
        newly_allowed,
        summary,
    }
}

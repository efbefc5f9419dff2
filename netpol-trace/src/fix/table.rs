//! The human rendering of a [`FixPlan`]: verdict before and after, then per change the policy,
//! what changes in words, the added YAML lines marked `+`, its blast radius, and hints.

use std::fmt::Write;

use serde_json::Value;

use super::yaml::{clean_for_apply, to_yaml};
use super::{FixPlan, PatchAction, PolicyPatch};
use crate::explain::{EndpointSummary, Verdict};

/// Renders `plan` as text (ends with a newline).
pub fn render(plan: &FixPlan) -> String {
    let mut out = String::new();
    let flow = &plan.flow;
    let _ = writeln!(
        out,
        "{} -> {}  {} -> {}  {}/{}",
        verdict(plan.verdict_before),
        verdict(plan.verdict_after),
        endpoint(&flow.src),
        endpoint(&flow.dst),
        flow.protocol,
        flow.port
    );
    let _ = writeln!(out, "{}", plan.summary);
    for patch in &plan.patches {
        out.push('\n');
        render_patch(&mut out, patch);
    }
    out
}

fn verdict(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Allow => "ALLOW",
        Verdict::Deny => "DENY",
    }
}

fn endpoint(end: &EndpointSummary) -> String {
    let ip = end.ip.as_deref().unwrap_or("no IP");
    match (&end.namespace, &end.pod) {
        (Some(ns), Some(pod)) => format!("{ns}/{pod} ({ip})"),
        _ => format!("{ip} (external)"),
    }
}

fn render_patch(out: &mut String, patch: &PolicyPatch) {
    let action = match patch.action {
        PatchAction::Patch => "patch",
        PatchAction::Create => "create",
        PatchAction::Delete => "DELETE",
    };
    let _ = writeln!(out, "{action} {} ({})  {}", patch.key(), patch.direction, patch.source);
    let _ = writeln!(out, "  {}", patch.change);
    match patch.action {
        PatchAction::Patch => {
            let ops = patch.json_patch.as_ref().and_then(|p| serde_json::to_value(p).ok());
            for op in ops.as_ref().and_then(Value::as_array).into_iter().flatten() {
                render_op(out, op);
            }
        }
        PatchAction::Create => {
            let object = patch.object.as_ref().unwrap_or(&patch.result);
            plus_lines(out, &to_yaml(&clean_for_apply(object)), "  ");
        }
        PatchAction::Delete => {
            let object = patch.original.as_ref().map(clean_for_apply).unwrap_or(Value::Null);
            for line in to_yaml(&object).lines() {
                let _ = writeln!(out, "  -   {line}");
            }
        }
    }
    if patch.newly_allowed.is_empty() {
        let _ = writeln!(out, "  newly allowed: none by itself");
    } else {
        let _ = writeln!(out, "  newly allowed ({}):", patch.newly_allowed.len());
        for pair in &patch.newly_allowed {
            let _ = writeln!(out, "    {pair}");
        }
    }
    for hint in &patch.hints {
        if hint.policy == patch.key() {
            let _ = writeln!(out, "  hint: {}", hint.message);
        } else {
            let _ = writeln!(out, "  hint: {}: {}", hint.policy, hint.message);
        }
    }
}

/// An `add` operation as its location and the added YAML lines.
fn render_op(out: &mut String, op: &Value) {
    let (Some("add"), Some(path), Some(value)) =
        (op["op"].as_str(), op["path"].as_str(), op.get("value"))
    else {
        return;
    };
    let appends = path.ends_with("/-");
    let location = readable_path(path.trim_end_matches("/-"));
    let _ = writeln!(out, "    {location}:");
    let shown = if appends { Value::Array(vec![value.clone()]) } else { value.clone() };
    plus_lines(out, &to_yaml(&shown), "  ");
}

fn plus_lines(out: &mut String, yaml: &str, indent: &str) {
    for line in yaml.lines() {
        let _ = writeln!(out, "  + {indent}{line}");
    }
}

/// `/spec/ingress/0/ports` → `spec.ingress[0].ports`.
fn readable_path(pointer: &str) -> String {
    let mut out = String::new();
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        if token.bytes().all(|b| b.is_ascii_digit()) && !token.is_empty() {
            let _ = write!(out, "[{token}]");
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&token);
        }
    }
    out
}

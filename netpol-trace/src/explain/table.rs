//! The human rendering of an [`Explanation`]: a verdict line, then per direction whether it is
//! isolated, by which policies (in evaluation order, with their tier and kind when they have
//! one), each rule with ✓/✗ and its mismatches, and which policy and rule decided.

use std::fmt::Write;

use super::{DirectionExplanation, EndpointSummary, Explanation, Verdict};
use crate::policy::PolicyKind;

/// Renders `explanation` as a short text table (ends with a newline).
pub fn render(explanation: &Explanation) -> String {
    let mut out = String::new();
    let flow = &explanation.flow;
    let verdict = match explanation.verdict {
        Verdict::Allow => "ALLOW",
        Verdict::Deny => "DENY",
    };
    let _ = writeln!(
        out,
        "{verdict}  {} -> {}  {}/{}",
        endpoint(&flow.src),
        endpoint(&flow.dst),
        flow.protocol,
        flow.port
    );
    direction(&mut out, "egress ", &flow.src, &explanation.egress);
    direction(&mut out, "ingress", &flow.dst, &explanation.ingress);
    out
}

fn endpoint(end: &EndpointSummary) -> String {
    let ip = end.ip.as_deref().unwrap_or("no IP");
    match (&end.namespace, &end.pod) {
        (Some(ns), Some(pod)) => format!("{ns}/{pod} ({ip})"),
        _ => format!("{ip} (external)"),
    }
}

fn direction(
    out: &mut String,
    label: &str,
    end: &EndpointSummary,
    direction: &DirectionExplanation,
) {
    let whose = match &end.pod {
        Some(pod) => pod.as_str(),
        None => "external endpoint",
    };
    if !direction.isolated {
        let _ = writeln!(out, "{label}  allowed: no policy isolates {whose}");
        return;
    }
    let count = direction.policies.len();
    let plural = if count == 1 { "policy" } else { "policies" };
    let state = if direction.allowed { "allowed" } else { "DENIED" };
    let _ = writeln!(out, "{label}  {state}: {whose} isolated by {count} {plural}");
    for policy in &direction.policies {
        let mark = if policy.allowed { '✓' } else { '✗' };
        let decided = direction.decided_by.as_ref().filter(|d| {
            d.kind == policy.kind
                && d.name == policy.name
                && d.namespace.as_deref().unwrap_or("") == policy.namespace
        });
        let heading = match &policy.tier {
            // NetworkPolicies alone keep the original one-line form.
            None if policy.kind == PolicyKind::NetworkPolicy => policy.key(),
            None => format!("{} {}", policy.kind, policy.key()),
            Some(tier) => format!("[tier {tier}] {} {}", policy.kind, policy.key()),
        };
        let suffix = match decided {
            Some(d) if d.rule.is_none() => format!("  ← decides: {} (no rule matched)", d.action),
            Some(d) => format!("  ← decides: {}", d.action),
            None => String::new(),
        };
        let _ = writeln!(out, "  {mark} {heading}{suffix}");
        if policy.rules.is_empty() {
            let _ = writeln!(out, "      no rules: denies all {}", label.trim());
        }
        for rule in &policy.rules {
            let mark = if rule.matched { '✓' } else { '✗' };
            let action = rule.action.as_deref().map(|a| format!(" ({a})")).unwrap_or_default();
            let detail = if rule.matched {
                "matches".to_owned()
            } else {
                rule.mismatches
                    .iter()
                    .map(|m| format!("{}: want {}, got {}", m.field, m.want, m.got))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            let decides = decided.is_some_and(|d| d.rule == Some(rule.index));
            let arrow = if decides { "  ← decides" } else { "" };
            let _ = writeln!(out, "      {mark} rule {}{action}: {detail}{arrow}", rule.index);
        }
    }
}

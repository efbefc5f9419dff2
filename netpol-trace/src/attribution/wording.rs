//! The words of an attribution, written once: the near-miss hint (`trace`, `/drops`, the
//! demo), the one-line denial of Events, and the list of denying policies of the demo's
//! timeline.

use crate::explain::Explanation;
use crate::trace::PolicyRef;

/// One line for a person: the closest rule of a denying direction and what it lacks.
pub fn hint(explanation: &Explanation) -> Option<String> {
    if explanation.allowed() {
        return Some(
            "the policies allow this flow: the drop is not a NetworkPolicy decision".to_string(),
        );
    }
    for (name, dir) in [("ingress", &explanation.ingress), ("egress", &explanation.egress)] {
        if dir.allowed {
            continue;
        }
        return Some(match dir.closest_rule() {
            Some(c) => {
                let what: Vec<String> = c
                    .rule
                    .mismatches
                    .iter()
                    .map(|m| format!("{}: want {}, got {}", m.field, m.want, m.got))
                    .collect();
                format!(
                    "{}/{} {name} rule {}: {}",
                    c.policy.namespace,
                    c.policy.name,
                    c.rule.index,
                    what.join("; ")
                )
            }
            None => {
                let names: Vec<String> =
                    dir.policies.iter().map(|p| format!("{}/{}", p.namespace, p.name)).collect();
                format!("{} has no {name} rule: {name} is denied to all", names.join(", "))
            }
        });
    }
    None
}

/// One phrase for what denies a flow: the isolating policies of the denying direction and
/// what their closest rule lacks.
pub fn denial(explanation: &Explanation) -> Option<String> {
    if explanation.allowed() {
        return None;
    }
    let (direction, dir) = if explanation.ingress.allowed {
        ("egress ", &explanation.egress)
    } else {
        ("", &explanation.ingress)
    };
    let names: Vec<String> =
        dir.policies.iter().map(|p| format!("{}/{}", p.namespace, p.name)).collect();
    let plural = if names.len() == 1 { "y" } else { "ies" };
    let mut out = format!("denied by {direction}NetworkPolic{plural} {}", names.join(", "));
    match dir.closest_rule() {
        Some(c) => {
            let lacks: Vec<String> = c
                .rule
                .mismatches
                .iter()
                .map(|m| {
                    if m.field.ends_with(".port") {
                        format!("allows port {}", m.want)
                    } else {
                        format!("needs {} {} (got {})", m.field, m.want, m.got)
                    }
                })
                .collect();
            if names.len() > 1 {
                out.push_str(&format!("; closest: {}/{}", c.policy.namespace, c.policy.name));
            }
            out.push_str(&format!(", rule {} {}", c.rule.index, lacks.join(", ")));
        }
        None => {
            let which = if names.len() == 1 { "which allows" } else { "which allow" };
            let what = if direction.is_empty() { "ingress" } else { "egress" };
            out.push_str(&format!(", {which} no {what}"));
        }
    }
    Some(out)
}

/// `ns/name (direction)` of each policy, comma-separated: "denied by " this.
pub fn denied_by(policies: &[PolicyRef]) -> String {
    let names: Vec<String> = policies
        .iter()
        .map(|p| format!("{}/{} ({})", p.namespace, p.name, p.direction.spec_field()))
        .collect();
    format!("denied by {}", names.join(", "))
}

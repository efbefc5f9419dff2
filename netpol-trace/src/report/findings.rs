//! The structured parts a report reads out of the evidence: the explanation (`explain -o
//! json`), the fix plan (`fix -o json`) and the one-line hint. Parsed leniently (every field
//! optional) so that a report still reads streams of older or newer versions.

use serde::Deserialize;
use serde_json::Value;

use super::{
    model::{Cause, Change, Mismatch, PatchView},
    policy,
};

#[derive(Debug, Default, Deserialize)]
struct ExplanationDoc {
    #[serde(default)]
    ingress: DirectionDoc,
    #[serde(default)]
    egress: DirectionDoc,
}

#[derive(Debug, Default, Deserialize)]
struct DirectionDoc {
    #[serde(default)]
    isolated: bool,
    #[serde(default = "yes")]
    allowed: bool,
    #[serde(default)]
    policies: Vec<PolicyDoc>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Default, Deserialize)]
struct PolicyDoc {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    rules: Vec<RuleDoc>,
}

#[derive(Debug, Default, Deserialize)]
struct RuleDoc {
    #[serde(default)]
    index: usize,
    #[serde(default)]
    matched: bool,
    #[serde(default)]
    mismatches: Vec<MismatchDoc>,
}

#[derive(Debug, Default, Deserialize)]
struct MismatchDoc {
    #[serde(default)]
    field: String,
    #[serde(default)]
    want: String,
    #[serde(default)]
    got: String,
}

/// The denying policies of an explanation (`explain -o json`), each with its closest rule.
pub fn causes_from_explanation(explanation: &Value) -> Vec<Cause> {
    let Ok(doc) = serde_json::from_value::<ExplanationDoc>(explanation.clone()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (direction, dir) in [("ingress", doc.ingress), ("egress", doc.egress)] {
        if !dir.isolated || dir.allowed {
            continue;
        }
        for p in dir.policies {
            let closest = p.rules.iter().min_by_key(|r| (r.matched, r.mismatches.len()));
            out.push(Cause {
                kind: p.kind.unwrap_or_else(|| "NetworkPolicy".into()),
                namespace: p.namespace,
                name: p.name,
                direction: direction.into(),
                rule: closest.map(|r| r.index),
                mismatches: closest
                    .map(|r| {
                        r.mismatches
                            .iter()
                            .map(|m| Mismatch {
                                field: m.field.clone(),
                                want: m.want.clone(),
                                got: m.got.clone(),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                hint: None,
                yaml: None,
            });
        }
    }
    out
}

/// What a hint says: `db/mysql-ingress ingress rule 0: ports[0].port: want 3307, got 3306`
/// → (`db/mysql-ingress`, `ingress`, rule 0, the mismatches).
pub fn parse_hint(hint: &str) -> Option<(String, String, usize, Vec<Mismatch>)> {
    let (head, rest) = hint.split_once(" rule ")?;
    let (policy, direction) = head.rsplit_once(' ')?;
    let (index, what) = rest.split_once(": ")?;
    let index = index.trim().parse().ok()?;
    let mismatches = what
        .split("; ")
        .filter_map(|m| {
            let (field, wg) = m.split_once(": want ")?;
            let (want, got) = wg.rsplit_once(", got ")?;
            Some(Mismatch { field: field.into(), want: want.into(), got: got.into() })
        })
        .collect();
    Some((policy.to_string(), direction.to_string(), index, mismatches))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PlanDoc {
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    patches: Vec<PatchDoc>,
    #[serde(default, alias = "newly_allowed")]
    newly_allowed: Vec<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PatchDoc {
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    direction: String,
    #[serde(default, alias = "json_patch")]
    json_patch: Option<Value>,
    #[serde(default)]
    object: Option<Value>,
    #[serde(default)]
    kubectl: Option<String>,
    #[serde(default, alias = "newly_allowed")]
    newly_allowed: Vec<Value>,
}

/// A connection of a blast radius as one line: `app/web-1 -> db/mysql-0 TCP/3306`.
fn allowed_pair(v: &Value) -> String {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("?").to_string();
    let port = v.get("port").map_or("?".to_string(), |p| p.to_string());
    format!("{} -> {} {}/{}", s("from"), s("to"), s("protocol"), port)
}

/// The change of a fix plan (`fix -o json`, or a DropReport's `status.fix`), with each
/// policy's before → after diff when `before` knows the policy (`namespace`, `name`).
pub fn change_from_plan(
    plan: &Value,
    before: &dyn Fn(&str, &str) -> Option<Value>,
    applied_to: String,
) -> Option<Change> {
    let doc: PlanDoc = serde_json::from_value(plan.clone()).ok()?;
    if doc.patches.is_empty() {
        return None;
    }
    let mut newly: Vec<String> = doc.newly_allowed.iter().map(allowed_pair).collect();
    let mut patches = Vec::new();
    for p in doc.patches {
        newly.extend(p.newly_allowed.iter().map(allowed_pair));
        let key = format!("{}/{}", p.namespace, p.name);
        let prior = before(&p.namespace, &p.name);
        let after = match (&p.json_patch, &p.object, &prior) {
            (Some(patch), _, Some(b)) => policy::apply_patch(b, patch).ok(),
            (_, Some(object), _) => Some(object.clone()),
            _ => None,
        };
        let is_create = p.action.as_deref() == Some("create");
        let diff =
            after.map(|a| policy::diff(&key, if is_create { None } else { prior.as_ref() }, &a));
        patches.push(PatchView {
            action: p.action.unwrap_or_else(|| "patch".into()),
            namespace: p.namespace,
            name: p.name,
            direction: p.direction,
            json_patch: p.json_patch.as_ref().and_then(|j| serde_json::to_string_pretty(j).ok()),
            kubectl: p.kubectl,
            diff,
        });
    }
    newly.sort();
    newly.dedup();
    Some(Change {
        summary: doc.summary,
        patches,
        newly_allowed: newly,
        approved_by: None,
        applied_at: None,
        applied_to,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_split_into_policy_rule_and_near_misses() {
        let (policy, dir, rule, m) =
            parse_hint("db/mysql-ingress ingress rule 0: ports[0].port: want 3307, got 3306; from[0].podSelector.matchLabels.app: want web, got api").unwrap();
        assert_eq!((policy.as_str(), dir.as_str(), rule), ("db/mysql-ingress", "ingress", 0));
        assert_eq!(m.len(), 2);
        assert_eq!(
            (m[0].field.as_str(), m[0].want.as_str(), m[0].got.as_str()),
            ("ports[0].port", "3307", "3306")
        );
        assert_eq!(m[1].got, "api");
        assert!(parse_hint("the policies allow this flow").is_none());
    }

    #[test]
    fn the_closest_rule_of_each_denying_policy_is_the_cause() {
        let e = serde_json::json!({
            "verdict": "deny",
            "egress": {"isolated": false, "allowed": true, "policies": []},
            "ingress": {"isolated": true, "allowed": false, "policies": [
                {"namespace": "db", "name": "mysql-ingress", "allowed": false, "rules": [
                    {"index": 0, "matched": false, "mismatches": [
                        {"field": "ports[0].port", "want": "3307", "got": "3306"},
                        {"field": "from[0]", "want": "x", "got": "y"}]},
                    {"index": 1, "matched": false, "mismatches": [
                        {"field": "ports[0].port", "want": "5432", "got": "3306"}]}]}]}});
        let c = causes_from_explanation(&e);
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].rule, c[0].mismatches[0].want.as_str()), (Some(1), "5432"));
        assert_eq!(c[0].kind, "NetworkPolicy");
    }
}

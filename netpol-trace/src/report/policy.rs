//! A policy's text for people: its YAML with the offending field marked, and the before →
//! after diff of a change.

use std::collections::BTreeSet;

use serde_json::Value;
use similar::TextDiff;

use super::model::{MarkedYaml, Mismatch};

/// Stands in for the marked value while locating its line.
const SENTINEL: &str = "__netpol_trace_marked_field__";

/// Annotations that repeat the object and only add noise to a report.
const NOISY_ANNOTATIONS: [&str; 1] = ["kubectl.kubernetes.io/last-applied-configuration"];

/// The object as a person wants to read it: without server-side bookkeeping.
pub fn readable(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            for key in ["managedFields", "uid", "generation", "creationTimestamp", "selfLink"] {
                meta.remove(key);
            }
            if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
                for key in NOISY_ANNOTATIONS {
                    annotations.remove(key);
                }
                if annotations.is_empty() {
                    meta.remove("annotations");
                }
            }
        }
    }
    object
}

/// YAML of a JSON value (empty on the impossible serialization error of a JSON value).
pub fn to_yaml(object: &Value) -> String {
    serde_yaml_ng::to_string(object).unwrap_or_default()
}

/// One step of a path into a JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// `ports[0].port` → `ports`, 0, `port`. Keys may contain dots (label keys such as
/// `kubernetes.io/metadata.name`): those are joined back while walking the object.
fn parse_field(field: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in field.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            out.push(Seg::Key(name.to_string()));
        }
        while let Some(end) = rest.find(']') {
            if let Ok(index) = rest[1..end].parse() {
                out.push(Seg::Index(index));
            }
            rest = &rest[end + 1..];
        }
    }
    out
}

/// The longest prefix of `path` that exists in `object`, as concrete steps.
fn existing_prefix(object: &Value, path: &[Seg]) -> Vec<Seg> {
    let mut node = object;
    let mut found = Vec::new();
    let mut i = 0;
    while i < path.len() {
        match (&path[i], node) {
            (Seg::Index(n), Value::Array(items)) if *n < items.len() => {
                node = &items[*n];
                found.push(Seg::Index(*n));
                i += 1;
            }
            (Seg::Key(_), Value::Object(map)) => {
                // Join dotted key parts until a key of the map matches.
                let mut key = String::new();
                let mut hit = None;
                for (j, seg) in path[i..].iter().enumerate() {
                    let Seg::Key(part) = seg else { break };
                    if !key.is_empty() {
                        key.push('.');
                    }
                    key.push_str(part);
                    if map.contains_key(&key) {
                        hit = Some((key.clone(), j + 1));
                        break;
                    }
                }
                let Some((key, used)) = hit else { break };
                node = &map[&key];
                found.push(Seg::Key(key));
                i += used;
            }
            _ => break,
        }
    }
    found
}

fn node_mut<'a>(object: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    path.iter().try_fold(object, |node, seg| match seg {
        Seg::Key(k) => node.get_mut(k.as_str()),
        Seg::Index(i) => node.get_mut(*i),
    })
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches([' ', '-']).len()
}

/// The policy's YAML with the fields of `mismatches` (relative to rule `rule` of
/// `direction`) marked. A field the object does not have marks its closest existing parent.
pub fn mark(
    object: &Value,
    direction: &str,
    rule: Option<usize>,
    mismatches: &[Mismatch],
) -> MarkedYaml {
    let object = readable(object);
    let text = to_yaml(&object);
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut marked = BTreeSet::new();
    for m in mismatches {
        let mut path = vec![Seg::Key("spec".into()), Seg::Key(direction.to_string())];
        path.extend(rule.map(Seg::Index));
        path.extend(parse_field(&m.field));
        let found = existing_prefix(&object, &path);
        if found.len() < 2 {
            continue;
        }
        let mut probe = object.clone();
        let Some(node) = node_mut(&mut probe, &found) else { continue };
        let compound = matches!(node, Value::Object(o) if !o.is_empty())
            || matches!(node, Value::Array(a) if !a.is_empty());
        *node = Value::String(SENTINEL.into());
        let Some(at) = to_yaml(&probe).lines().position(|l| l.contains(SENTINEL)) else { continue };
        marked.insert(at);
        if compound {
            let depth = indent(&lines[at]);
            let nested = lines[at + 1..].iter().take_while(|l| indent(l) > depth).count();
            marked.extend(at + 1..=at + nested);
        }
    }
    MarkedYaml { lines, marked }
}

/// Applies an RFC 6902 patch to a copy of `before`.
pub fn apply_patch(before: &Value, patch: &Value) -> Result<Value, String> {
    let ops: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| format!("not a JSON patch: {e}"))?;
    let mut after = before.clone();
    json_patch::patch(&mut after, &ops).map_err(|e| e.to_string())?;
    Ok(after)
}

/// Unified diff of the readable YAML of `before` (absent: a created object) and `after`.
pub fn diff(name: &str, before: Option<&Value>, after: &Value) -> String {
    let old = before.map(|b| to_yaml(&readable(b))).unwrap_or_default();
    let new = to_yaml(&readable(after));
    let diff = TextDiff::from_lines(&old, &new);
    let mut unified = diff.unified_diff();
    let (a, b) = match before {
        Some(_) => (format!("a/{name}"), format!("b/{name}")),
        None => ("/dev/null".to_string(), format!("b/{name}")),
    };
    unified.context_radius(3).header(&a, &b).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Value {
        serde_json::json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "mysql-ingress", "namespace": "db", "uid": "x",
                         "managedFields": [{"manager": "kubectl"}]},
            "spec": {"podSelector": {"matchLabels": {"app": "mysql"}},
                     "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "app"}},
                                            "podSelector": {"matchLabels": {"app": "web"}}}],
                                  "ports": [{"protocol": "TCP", "port": 3307}]}]}
        })
    }

    fn mismatch(field: &str) -> Mismatch {
        Mismatch { field: field.into(), want: "w".into(), got: "g".into() }
    }

    fn marked_text(y: &MarkedYaml) -> Vec<&str> {
        y.marked.iter().map(|i| y.lines[*i].trim()).collect()
    }

    #[test]
    fn the_port_typo_marks_the_port_line_only() {
        let y = mark(&policy(), "ingress", Some(0), &[mismatch("ports[0].port")]);
        // JSON objects keep their keys sorted: `port` opens the list item.
        assert_eq!(marked_text(&y), ["- port: 3307"]);
        assert!(!y.lines.iter().any(|l| l.contains("managedFields") || l.contains("uid")));
    }

    #[test]
    fn dotted_label_keys_and_missing_fields_mark_the_closest_parent() {
        let field = "from[0].namespaceSelector.matchLabels.kubernetes.io/metadata.name";
        let y = mark(&policy(), "ingress", Some(0), &[mismatch(field)]);
        assert_eq!(marked_text(&y), ["kubernetes.io/metadata.name: app"]);
        // A field the rule lacks: its parent selector, with everything nested in it.
        let y = mark(
            &policy(),
            "ingress",
            Some(0),
            &[mismatch("from[0].podSelector.matchLabels.tier")],
        );
        assert_eq!(marked_text(&y), ["matchLabels:", "app: web"]);
    }

    #[test]
    fn a_direction_the_policy_lacks_marks_nothing() {
        let y = mark(&policy(), "egress", Some(0), &[mismatch("to[0].ipBlock")]);
        assert!(y.marked.is_empty());
    }

    #[test]
    fn the_diff_shows_the_added_port() {
        let before = policy();
        let patch = serde_json::json!([{"op": "add", "path": "/spec/ingress/0/ports/-",
                                         "value": {"port": 3306, "protocol": "TCP"}}]);
        let after = apply_patch(&before, &patch).unwrap();
        let d = diff("db/mysql-ingress", Some(&before), &after);
        assert!(d.starts_with("--- a/db/mysql-ingress\n+++ b/db/mysql-ingress\n"), "{d}");
        assert!(d.contains("+  - port: 3306\n") || d.contains("+    - port: 3306\n"), "{d}");
        assert!(
            apply_patch(&before, &serde_json::json!([{"op": "remove", "path": "/nope"}])).is_err()
        );
    }
}

//! `labelSelector` and `fieldSelector` query parameters, parsed and matched like the API server.

use serde_json::Value;

use crate::status::ApiError;

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed label selector (`app=web,tier!=db,env in (a,b),!legacy`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(Vec<Requirement>);

/// A parsed field selector (`metadata.name=x,spec.nodeName!=y`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector(Vec<Requirement>);

/// Splits on commas that are not inside parentheses.
fn split_terms(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter().map(str::trim).filter(|t| !t.is_empty()).collect()
}

fn parse_set(key: &str, rest: &str, raw: &str) -> Result<Vec<String>, ApiError> {
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| ApiError::bad_request(format!("unable to parse requirement: {raw}")))?;
    let values: Vec<String> =
        inner.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect();
    if values.is_empty() {
        return Err(ApiError::bad_request(format!(
            "unable to parse requirement: for 'in', 'notin' operators, values set can't be empty (key {key})"
        )));
    }
    Ok(values)
}

fn parse_term(term: &str, set_based: bool) -> Result<Requirement, ApiError> {
    if let Some((k, v)) = term.split_once("!=") {
        return Ok(Requirement::NotEquals(k.trim().into(), v.trim().into()));
    }
    if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(Requirement::Equals(k.trim().into(), v.trim().into()));
    }
    if set_based {
        if let Some(key) = term.strip_prefix('!') {
            return Ok(Requirement::DoesNotExist(key.trim().into()));
        }
        let mut parts = term.splitn(2, char::is_whitespace);
        let key = parts.next().unwrap_or_default().trim();
        let rest = parts.next().unwrap_or_default().trim();
        if rest.is_empty() {
            return Ok(Requirement::Exists(key.into()));
        }
        if let Some(set) = rest.strip_prefix("notin") {
            return Ok(Requirement::NotIn(key.into(), parse_set(key, set, term)?));
        }
        if let Some(set) = rest.strip_prefix("in") {
            return Ok(Requirement::In(key.into(), parse_set(key, set, term)?));
        }
    }
    Err(ApiError::bad_request(format!("unable to parse requirement: {term}")))
}

impl LabelSelector {
    /// Whether the selector selects everything.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses a `labelSelector` query value.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        split_terms(s).into_iter().map(|t| parse_term(t, true)).collect::<Result<_, _>>().map(Self)
    }

    /// Whether an object's `metadata.labels` satisfy every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => !get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::DoesNotExist(k) => get(k).is_none(),
        })
    }
}

impl FieldSelector {
    /// Whether the selector selects everything.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses a `fieldSelector` query value (equality-based only, like the API server).
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        split_terms(s).into_iter().map(|t| parse_term(t, false)).collect::<Result<_, _>>().map(Self)
    }

    /// Whether an object's fields (dotted paths such as `spec.nodeName`) satisfy every
    /// requirement; a missing field reads as the empty string.
    pub fn matches(&self, obj: &Value) -> bool {
        let get = |path: &str| {
            let pointer = format!("/{}", path.replace('.', "/"));
            match obj.pointer(&pointer) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            }
        };
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => get(k) == *v,
            Requirement::NotEquals(k, v) => get(k) != *v,
            _ => true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selector_forms() {
        let obj = json!({"metadata": {"labels": {"app": "web", "tier": "front"}}});
        for (sel, want) in [
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app=web,tier=front", true),
            ("tier in (front, back)", true),
            ("tier notin (front)", false),
            ("app", true),
            ("!app", false),
            ("!legacy", true),
            ("", true),
        ] {
            assert_eq!(LabelSelector::parse(sel).unwrap().matches(&obj), want, "{sel}");
        }
        assert!(LabelSelector::parse("tier in ()").is_err());
    }

    #[test]
    fn field_selector_paths() {
        let obj = json!({"metadata": {"name": "a"}, "spec": {"nodeName": "n1"}});
        assert!(FieldSelector::parse("metadata.name=a,spec.nodeName=n1").unwrap().matches(&obj));
        assert!(!FieldSelector::parse("spec.nodeName!=n1").unwrap().matches(&obj));
        assert!(FieldSelector::parse("app").is_err());
    }
}

//! `LabelSelector`: `matchLabels` and `matchExpressions`, ANDed. An empty selector matches
//! everything; `NotIn` matches objects that lack the key (as in Kubernetes).

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::Labels;
use super::error::FieldError;
use super::labels::{validate_key, validate_value};

/// The values of an `In` or `NotIn` requirement: sorted, without duplicates, in one slice (a
/// set of one value, what every `matchLabels` entry is, costs one short allocation rather than
/// a tree node; compiled policies hold many).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValueSet(Box<[String]>);

impl ValueSet {
    /// Whether `value` is one of the values.
    pub fn contains(&self, value: &str) -> bool {
        self.0.binary_search_by(|v| v.as_str().cmp(value)).is_ok()
    }

    /// The values, sorted.
    pub fn iter(&self) -> std::slice::Iter<'_, String> {
        self.0.iter()
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<String> for ValueSet {
    fn from_iter<I: IntoIterator<Item = String>>(values: I) -> Self {
        let mut values: Vec<String> = values.into_iter().collect();
        values.sort_unstable();
        values.dedup();
        Self(values.into_boxed_slice())
    }
}

impl<'a> IntoIterator for &'a ValueSet {
    type Item = &'a String;
    type IntoIter = std::slice::Iter<'a, String>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// A set-based operator of a requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operator {
    /// The label is present with one of these values (`matchLabels` entries are `In` one value).
    In(ValueSet),
    /// The label is absent or has none of these values.
    NotIn(ValueSet),
    /// The label is present, any value.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

/// Where a requirement was written, so mismatches can name the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequirementOrigin {
    /// An entry of `matchLabels`.
    MatchLabels,
    /// `matchExpressions[index]`.
    MatchExpression(usize),
}

/// One condition on one label key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The label key.
    pub key: String,
    /// The condition on its value.
    pub operator: Operator,
    /// Where it was written.
    pub origin: RequirementOrigin,
}

impl Requirement {
    /// Whether `labels` satisfy this requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.key);
        match &self.operator {
            Operator::In(values) => value.is_some_and(|v| values.contains(v)),
            Operator::NotIn(values) => value.is_none_or(|v| !values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }

    /// Field path of this requirement relative to its selector, e.g. `matchLabels.app` or
    /// `matchExpressions[1]`.
    pub fn field(&self) -> String {
        match self.origin {
            RequirementOrigin::MatchLabels => format!("matchLabels{}", key_path(&self.key)),
            RequirementOrigin::MatchExpression(index) => format!("matchExpressions[{index}]"),
        }
    }

    /// What the requirement wants, readable: `web` for a `matchLabels` entry, else
    /// `app In (a, b)`, `app NotIn (a)`, `app Exists`, `app DoesNotExist`.
    pub fn want(&self) -> String {
        match (&self.operator, self.origin) {
            (Operator::In(values), RequirementOrigin::MatchLabels) => {
                values.iter().next().cloned().unwrap_or_default()
            }
            _ => self.to_string(),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |values: &ValueSet| values.iter().cloned().collect::<Vec<_>>().join(", ");
        match &self.operator {
            Operator::In(values) if self.origin == RequirementOrigin::MatchLabels => {
                write!(f, "{}={}", self.key, list(values))
            }
            Operator::In(values) => write!(f, "{} In ({})", self.key, list(values)),
            Operator::NotIn(values) => write!(f, "{} NotIn ({})", self.key, list(values)),
            Operator::Exists => write!(f, "{} Exists", self.key),
            Operator::DoesNotExist => write!(f, "{} DoesNotExist", self.key),
        }
    }
}

/// `.key` for plain keys, `["app.kubernetes.io/name"]` for keys with dots or slashes.
fn key_path(key: &str) -> String {
    if key.contains(['.', '/']) { format!("[{key:?}]") } else { format!(".{key}") }
}

/// A validated label selector: all requirements must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    /// Validates and compiles `selector`; `path` prefixes field paths in errors.
    pub fn compile(selector: &LabelSelector, path: &str) -> Result<Self, FieldError> {
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            let field = format!("{path}.matchLabels{}", key_path(key));
            validate_key(key).map_err(|m| FieldError::new(&field, m))?;
            validate_value(value).map_err(|m| FieldError::new(&field, m))?;
            requirements.push(Requirement {
                key: key.clone(),
                operator: Operator::In(ValueSet::from_iter([value.clone()])),
                origin: RequirementOrigin::MatchLabels,
            });
        }
        for (index, expression) in selector.match_expressions.iter().flatten().enumerate() {
            let field = format!("{path}.matchExpressions[{index}]");
            validate_key(&expression.key)
                .map_err(|m| FieldError::new(format!("{field}.key"), m))?;
            let values = expression.values.as_deref().unwrap_or_default();
            for (value_index, value) in values.iter().enumerate() {
                validate_value(value)
                    .map_err(|m| FieldError::new(format!("{field}.values[{value_index}]"), m))?;
            }
            let set: ValueSet = values.iter().cloned().collect();
            let operator = match expression.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(FieldError::new(
                        format!("{field}.values"),
                        format!("must be non-empty for operator {}", expression.operator),
                    ));
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(FieldError::new(
                        format!("{field}.values"),
                        format!("must be empty for operator {}", expression.operator),
                    ));
                }
                "In" => Operator::In(set),
                "NotIn" => Operator::NotIn(set),
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(FieldError::new(
                        format!("{field}.operator"),
                        format!(
                            "unknown operator {other:?} (want In, NotIn, Exists or DoesNotExist)"
                        ),
                    ));
                }
            };
            requirements.push(Requirement {
                key: expression.key.clone(),
                operator,
                origin: RequirementOrigin::MatchExpression(index),
            });
        }
        Ok(Self { requirements })
    }

    /// A selector from requirements already validated (used by tests and synthetic data).
    pub fn from_requirements(requirements: Vec<Requirement>) -> Self {
        Self { requirements }
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// True for `{}`: selects everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, in `matchLabels` then `matchExpressions` order.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// The requirements `labels` fail.
    pub fn unmet<'a>(&'a self, labels: &'a Labels) -> impl Iterator<Item = &'a Requirement> + 'a {
        self.requirements.iter().filter(move |r| !r.matches(labels))
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.requirements.is_empty() {
            return f.write_str("{}");
        }
        let parts: Vec<String> = self.requirements.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use proptest::prelude::*;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_value_set_is_sorted_and_without_duplicates() {
        let set: ValueSet = ["b", "a", "c", "a"].map(String::from).into_iter().collect();
        assert_eq!(set.iter().map(String::as_str).collect::<Vec<_>>(), ["a", "b", "c"]);
        assert!(set.contains("a") && set.contains("c") && !set.contains("d"));
        assert!(!ValueSet::default().contains(""));
        let r = Requirement {
            key: "k".into(),
            operator: Operator::NotIn(set),
            origin: RequirementOrigin::MatchExpression(0),
        };
        assert_eq!(r.to_string(), "k NotIn (a, b, c)");
    }

    fn expression(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn selector(
        match_labels: &[(&str, &str)],
        expressions: Vec<LabelSelectorRequirement>,
    ) -> Selector {
        let selector = LabelSelector {
            match_labels: (!match_labels.is_empty()).then(|| labels(match_labels)),
            match_expressions: (!expressions.is_empty()).then_some(expressions),
        };
        Selector::compile(&selector, "podSelector").unwrap()
    }

    #[test]
    fn table() {
        let web = labels(&[("app", "web"), ("tier", "front")]);
        let bare = labels(&[]);
        let cases: Vec<(Selector, &Labels, bool)> = vec![
            (selector(&[], vec![]), &web, true),
            (selector(&[], vec![]), &bare, true),
            (selector(&[("app", "web")], vec![]), &web, true),
            (selector(&[("app", "api")], vec![]), &web, false),
            (selector(&[("app", "web"), ("tier", "back")], vec![]), &web, false),
            (selector(&[], vec![expression("app", "In", &["api", "web"])]), &web, true),
            (selector(&[], vec![expression("app", "In", &["api"])]), &web, false),
            (selector(&[], vec![expression("app", "In", &["api"])]), &bare, false),
            (selector(&[], vec![expression("app", "NotIn", &["api"])]), &web, true),
            (selector(&[], vec![expression("app", "NotIn", &["web"])]), &web, false),
            (selector(&[], vec![expression("app", "NotIn", &["web"])]), &bare, true),
            (selector(&[], vec![expression("app", "Exists", &[])]), &web, true),
            (selector(&[], vec![expression("app", "Exists", &[])]), &bare, false),
            (selector(&[], vec![expression("app", "DoesNotExist", &[])]), &web, false),
            (selector(&[], vec![expression("app", "DoesNotExist", &[])]), &bare, true),
            (
                selector(&[("app", "web")], vec![expression("tier", "NotIn", &["front"])]),
                &web,
                false,
            ),
        ];
        for (index, (selector, labels, want)) in cases.iter().enumerate() {
            assert_eq!(selector.matches(labels), *want, "case {index}: {selector} on {labels:?}");
        }
    }

    #[test]
    fn invalid_selectors_name_the_field() {
        let bad = |s: LabelSelector| Selector::compile(&s, "spec.podSelector").unwrap_err();
        let e = bad(LabelSelector {
            match_expressions: Some(vec![expression("app", "Equals", &["x"])]),
            ..Default::default()
        });
        assert_eq!(e.field, "spec.podSelector.matchExpressions[0].operator");
        let e = bad(LabelSelector {
            match_expressions: Some(vec![expression("app", "In", &[])]),
            ..Default::default()
        });
        assert_eq!(e.field, "spec.podSelector.matchExpressions[0].values");
        let e = bad(LabelSelector {
            match_expressions: Some(vec![expression("app", "Exists", &["x"])]),
            ..Default::default()
        });
        assert_eq!(e.field, "spec.podSelector.matchExpressions[0].values");
        let e = bad(LabelSelector {
            match_labels: Some(labels(&[("app", "bad value")])),
            ..Default::default()
        });
        assert_eq!(e.field, "spec.podSelector.matchLabels.app");
        let e = bad(LabelSelector {
            match_expressions: Some(vec![expression("app", "In", &["ok", "-bad"])]),
            ..Default::default()
        });
        assert_eq!(e.field, "spec.podSelector.matchExpressions[0].values[1]");
        let e = bad(LabelSelector {
            match_labels: Some(labels(&[("app.kubernetes.io/Name!", "x")])),
            ..Default::default()
        });
        assert_eq!(e.field, "spec.podSelector.matchLabels[\"app.kubernetes.io/Name!\"]");
    }

    fn small_labels() -> impl Strategy<Value = Labels> {
        proptest::collection::btree_map("[abc]", "[xyz]", 0..3)
    }

    fn values() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec("[xyz]", 1..3)
    }

    proptest! {
        #[test]
        fn empty_selector_matches_everything(l in small_labels()) {
            prop_assert!(selector(&[], vec![]).matches(&l));
        }

        #[test]
        fn not_in_is_the_complement_of_in_when_the_key_is_present(
            l in small_labels(), key in "[abc]", vs in values()
        ) {
            let vs: Vec<&str> = vs.iter().map(String::as_str).collect();
            let is_in = selector(&[], vec![expression(&key, "In", &vs)]).matches(&l);
            let not_in = selector(&[], vec![expression(&key, "NotIn", &vs)]).matches(&l);
            if l.contains_key(&key) {
                prop_assert_ne!(is_in, not_in);
            } else {
                prop_assert!(!is_in && not_in);
            }
        }

        #[test]
        fn exists_and_does_not_exist_partition(l in small_labels(), key in "[abc]") {
            let exists = selector(&[], vec![expression(&key, "Exists", &[])]).matches(&l);
            let absent = selector(&[], vec![expression(&key, "DoesNotExist", &[])]).matches(&l);
            prop_assert_ne!(exists, absent);
        }

        #[test]
        fn match_labels_is_in_of_one_value(l in small_labels(), key in "[abc]", v in "[xyz]") {
            let by_labels = selector(&[(&key, &v)], vec![]).matches(&l);
            let by_expression = selector(&[], vec![expression(&key, "In", &[&v])]).matches(&l);
            prop_assert_eq!(by_labels, by_expression);
        }

        #[test]
        fn requirements_are_anded(l in small_labels(), k1 in "[abc]", v1 in "[xyz]", k2 in "[abc]") {
            let both = selector(&[(&k1, &v1)], vec![expression(&k2, "Exists", &[])]).matches(&l);
            let first = selector(&[(&k1, &v1)], vec![]).matches(&l);
            let second = selector(&[], vec![expression(&k2, "Exists", &[])]).matches(&l);
            prop_assert_eq!(both, first && second);
        }
    }
}

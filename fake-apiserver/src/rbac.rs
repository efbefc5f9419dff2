//! The RBAC authorizer: Roles, ClusterRoles (aggregated ones included), RoleBindings and
//! ClusterRoleBindings as stored, evaluated for every request when enforcement is on and for
//! SubjectAccessReviews.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::auth::Identity;
use crate::resources::{RESOURCES, ResourceType};
use crate::store::Store;

/// What is asked: the attributes of a request, as the API server's authorizer sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attributes {
    /// A request for an API resource.
    Resource {
        /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`...
        verb: String,
        /// API group, empty for core.
        group: String,
        /// Plural resource name.
        resource: String,
        /// Subresource (`status`), empty for none.
        subresource: String,
        /// Namespace, empty for cluster scope.
        namespace: String,
        /// Object name, empty for collections and creates.
        name: String,
    },
    /// A request for a path that is not an API resource (`/metrics`).
    NonResource {
        /// Lowercase HTTP verb: `get`, `post`...
        verb: String,
        /// URL path.
        path: String,
    },
}

/// The answer to an authorization question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request is allowed.
    pub allowed: bool,
    /// Which binding allowed it (empty when denied or for `system:masters`).
    pub reason: String,
}

fn builtin(plural: &str) -> &'static ResourceType {
    RESOURCES
        .iter()
        .find(|r| r.group == "rbac.authorization.k8s.io" && r.plural == plural)
        .unwrap_or_else(|| unreachable!("RBAC type {plural} is built in"))
}

fn strs(v: &Value, field: &str) -> Vec<String> {
    v.get(field)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// Whether a Kubernetes LabelSelector (matchLabels/matchExpressions) selects `labels`.
pub(crate) fn selector_matches(selector: &Value, labels: Option<&Value>) -> bool {
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    let match_labels = selector.get("matchLabels").and_then(Value::as_object);
    let labels_ok = match_labels.into_iter().flatten().all(|(k, v)| get(k) == v.as_str());
    let exprs = selector.get("matchExpressions").and_then(Value::as_array);
    let exprs_ok = exprs.into_iter().flatten().all(|e| {
        let key = str_at(e, "/key");
        let values = strs(e, "values");
        let has = get(key);
        match str_at(e, "/operator") {
            "In" => has.is_some_and(|h| values.iter().any(|v| v == h)),
            "NotIn" => !has.is_some_and(|h| values.iter().any(|v| v == h)),
            "Exists" => has.is_some(),
            "DoesNotExist" => has.is_none(),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

/// The rules of a ClusterRole, with those of the ClusterRoles its aggregationRule selects
/// (what the API server's aggregation controller writes into it).
fn cluster_role_rules(store: &Store, name: &str, seen: &mut BTreeSet<String>) -> Vec<Value> {
    if !seen.insert(name.to_string()) {
        return Vec::new();
    }
    let roles = builtin("clusterroles");
    let Some(role) = store.values(roles, None).find(|r| str_at(r, "/metadata/name") == name) else {
        return Vec::new();
    };
    let mut rules: Vec<Value> =
        role.get("rules").and_then(Value::as_array).cloned().unwrap_or_default();
    let selectors = role.pointer("/aggregationRule/clusterRoleSelectors").and_then(Value::as_array);
    if let Some(selectors) = selectors {
        let matched: Vec<String> = store
            .values(roles, None)
            .filter(|r| {
                let labels = r.pointer("/metadata/labels");
                selectors.iter().any(|s| selector_matches(s, labels))
            })
            .map(|r| str_at(r, "/metadata/name").to_string())
            .collect();
        for other in matched {
            rules.extend(cluster_role_rules(store, &other, seen));
        }
    }
    rules
}

fn rules_of(store: &Store, binding: &Value, binding_ns: &str) -> Vec<Value> {
    let name = str_at(binding, "/roleRef/name");
    match str_at(binding, "/roleRef/kind") {
        "ClusterRole" => cluster_role_rules(store, name, &mut BTreeSet::new()),
        "Role" => store
            .values(builtin("roles"), Some(binding_ns))
            .find(|r| str_at(r, "/metadata/name") == name)
            .and_then(|r| r.get("rules").and_then(Value::as_array).cloned())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// The subject of a binding that names `who`, as the reason message prints it.
fn subject_for(binding: &Value, binding_ns: &str, who: &Identity) -> Option<String> {
    binding.get("subjects").and_then(Value::as_array)?.iter().find_map(|s| {
        let name = str_at(s, "/name");
        match str_at(s, "/kind") {
            "User" if who.username == name => Some(format!("User \"{name}\"")),
            "Group" if who.groups.iter().any(|g| g == name) => Some(format!("Group \"{name}\"")),
            "ServiceAccount" => {
                let ns =
                    Some(str_at(s, "/namespace")).filter(|n| !n.is_empty()).unwrap_or(binding_ns);
                (who.username == format!("system:serviceaccount:{ns}:{name}"))
                    .then(|| format!("ServiceAccount \"{ns}/{name}\""))
            }
            _ => None,
        }
    })
}

fn has(list: &[String], want: &str) -> bool {
    list.iter().any(|x| x == "*" || x == want)
}

/// `RuleAllows` of the RBAC authorizer.
fn rule_allows(rule: &Value, attrs: &Attributes) -> bool {
    let verbs = strs(rule, "verbs");
    match attrs {
        Attributes::Resource { verb, group, resource, subresource, name, .. } => {
            let resources = strs(rule, "resources");
            let combined = if subresource.is_empty() {
                resource.clone()
            } else {
                format!("{resource}/{subresource}")
            };
            let resource_ok = resources.iter().any(|r| {
                r == "*"
                    || *r == combined
                    || (!subresource.is_empty() && r.strip_prefix("*/") == Some(subresource))
            });
            let names = strs(rule, "resourceNames");
            has(&verbs, verb)
                && has(&strs(rule, "apiGroups"), group)
                && resource_ok
                && (names.is_empty() || names.iter().any(|n| n == name))
        }
        Attributes::NonResource { verb, path } => {
            has(&verbs, verb)
                && strs(rule, "nonResourceURLs").iter().any(|u| {
                    u == "*"
                        || u == path
                        || u.strip_suffix('*').is_some_and(|prefix| path.starts_with(prefix))
                })
        }
    }
}

/// Asks RBAC whether `who` may do `attrs`: ClusterRoleBindings everywhere, RoleBindings of the
/// request's namespace. `system:masters` may do anything.
pub fn authorize(store: &Store, who: &Identity, attrs: &Attributes) -> Decision {
    if who.is_master() {
        return Decision { allowed: true, reason: String::new() };
    }
    let mut bindings: Vec<(&Value, &str, &str)> = store
        .values(builtin("clusterrolebindings"), None)
        .map(|b| (b, "", "ClusterRoleBinding"))
        .collect();
    if let Attributes::Resource { namespace, .. } = attrs
        && !namespace.is_empty()
    {
        bindings.extend(
            store
                .values(builtin("rolebindings"), Some(namespace))
                .map(|b| (b, namespace.as_str(), "RoleBinding")),
        );
    }
    for (binding, ns, kind) in bindings {
        let Some(subject) = subject_for(binding, ns, who) else { continue };
        if rules_of(store, binding, ns).iter().any(|r| rule_allows(r, attrs)) {
            let name = str_at(binding, "/metadata/name");
            let role = format!(
                "{} \"{}\"",
                str_at(binding, "/roleRef/kind"),
                str_at(binding, "/roleRef/name")
            );
            let reason = if ns.is_empty() {
                format!("RBAC: allowed by {kind} \"{name}\" of {role} to {subject}")
            } else {
                format!("RBAC: allowed by {kind} \"{name}/{ns}\" of {role} to {subject}")
            };
            return Decision { allowed: true, reason };
        }
    }
    Decision { allowed: false, reason: String::new() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resource(verb: &str, resource: &str, sub: &str, name: &str) -> Attributes {
        Attributes::Resource {
            verb: verb.into(),
            group: "netpol-trace.io".into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: "db".into(),
            name: name.into(),
        }
    }

    #[test]
    fn rules_match_subresources_names_and_urls() {
        let rule = json!({"apiGroups": ["netpol-trace.io"], "resources": ["dropreports/status"],
                          "verbs": ["patch"]});
        assert!(rule_allows(&rule, &resource("patch", "dropreports", "status", "x")));
        assert!(!rule_allows(&rule, &resource("patch", "dropreports", "", "x")));
        let any_status = json!({"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["*"]});
        assert!(rule_allows(&any_status, &resource("update", "dropreports", "status", "x")));
        let named = json!({"apiGroups": ["netpol-trace.io"], "resources": ["dropreports"],
                           "resourceNames": ["a"], "verbs": ["get", "create"]});
        assert!(rule_allows(&named, &resource("get", "dropreports", "", "a")));
        assert!(!rule_allows(&named, &resource("get", "dropreports", "", "b")));
        // A create has no name yet: resourceNames never allow it.
        assert!(!rule_allows(&named, &resource("create", "dropreports", "", "")));
        let urls = json!({"nonResourceURLs": ["/metrics", "/debug/*"], "verbs": ["get"]});
        let get = |p: &str| Attributes::NonResource { verb: "get".into(), path: p.into() };
        assert!(rule_allows(&urls, &get("/metrics")));
        assert!(rule_allows(&urls, &get("/debug/pprof")));
        assert!(!rule_allows(&urls, &get("/drops")));
    }

    #[test]
    fn label_selectors_of_aggregation_rules() {
        let labels = json!({"rbac.authorization.k8s.io/aggregate-to-admin": "true"});
        let sel = json!({"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-admin": "true"}});
        assert!(selector_matches(&sel, Some(&labels)));
        assert!(!selector_matches(&sel, None));
        let expr = json!({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]});
        assert!(selector_matches(&expr, Some(&labels)));
    }
}

//! `kubectl` commands that survive copy-paste into a POSIX shell.

use serde_json::Value;

use super::yaml::{clean_for_apply, to_yaml};
use crate::policy::PolicyKind;

/// `s` in single quotes, each `'` written as `'\''`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `s` as is when it only has characters a shell leaves alone (Kubernetes names always do),
/// else quoted.
pub fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'/'));
    if plain { s.to_owned() } else { shell_quote(s) }
}

/// `kubectl patch networkpolicy -n NS NAME --type=json -p '<ops>'`.
pub fn patch_command(namespace: &str, name: &str, ops: &Value) -> String {
    format!(
        "kubectl patch networkpolicy -n {} {} --type=json -p {}",
        shell_word(namespace),
        shell_word(name),
        shell_quote(&ops.to_string())
    )
}

/// The kubectl resource name of a policy kind (`tiered`: Calico's NetworkPolicy rather than
/// Kubernetes').
pub fn resource(kind: PolicyKind, tiered: bool) -> &'static str {
    match kind {
        PolicyKind::NetworkPolicy if tiered => "networkpolicies.projectcalico.org",
        PolicyKind::NetworkPolicy => "networkpolicy",
        PolicyKind::GlobalNetworkPolicy => "globalnetworkpolicies.projectcalico.org",
        PolicyKind::ClusterNetworkPolicy => "clusternetworkpolicies.policy.networking.k8s.io",
        PolicyKind::AdminNetworkPolicy => "adminnetworkpolicies.policy.networking.k8s.io",
        PolicyKind::BaselineAdminNetworkPolicy => {
            "baselineadminnetworkpolicies.policy.networking.k8s.io"
        }
    }
}

/// `kubectl patch RESOURCE [-n NS] NAME --type=json -p '<ops>'` (no `-n` when `namespace` is
/// empty: a cluster-scoped object).
pub fn patch_resource_command(resource: &str, namespace: &str, name: &str, ops: &Value) -> String {
    if resource == "networkpolicy" {
        return patch_command(namespace, name, ops);
    }
    let namespace =
        if namespace.is_empty() { String::new() } else { format!("-n {} ", shell_word(namespace)) };
    format!(
        "kubectl patch {resource} {namespace}{} --type=json -p {}",
        shell_word(name),
        shell_quote(&ops.to_string())
    )
}

/// `kubectl apply -f - <<'EOF' ... EOF` with the object as YAML (a delimiter the text does not
/// contain; quoted, so the shell expands nothing inside).
pub fn apply_command(object: &Value) -> String {
    let text = to_yaml(&clean_for_apply(object));
    let mut delimiter = "EOF".to_owned();
    while text.lines().any(|line| line == delimiter) {
        delimiter.push('_');
    }
    format!("kubectl apply -f - <<'{delimiter}'\n{text}{delimiter}")
}

/// `kubectl delete networkpolicy -n NS NAME`.
pub fn delete_command(namespace: &str, name: &str) -> String {
    format!("kubectl delete networkpolicy -n {} {}", shell_word(namespace), shell_word(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn single_quotes_are_escaped_for_the_shell() {
        let ops = json!([{"op": "add", "path": "/metadata/annotations/note", "value": "it's"}]);
        let command = patch_command("db", "mysql-ingress", &ops);
        assert_eq!(
            command,
            r#"kubectl patch networkpolicy -n db mysql-ingress --type=json -p '[{"op":"add","path":"/metadata/annotations/note","value":"it'\''s"}]'"#
        );
        // What a shell would pass as the -p argument.
        let quoted = command.rsplit_once(" -p ").unwrap().1;
        let unquoted = quoted.trim_matches('\'').replace(r"'\''", "'");
        assert_eq!(serde_json::from_str::<Value>(&unquoted).unwrap(), ops);
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }

    #[test]
    fn heredoc_delimiter_never_appears_in_the_text() {
        let object = json!({"kind": "NetworkPolicy", "metadata": {"name": "EOF"}, "x": "EOF"});
        let command = apply_command(&object);
        assert!(command.starts_with("kubectl apply -f - <<'EOF'\n"), "{command}");
        assert!(command.ends_with("\nEOF"));
    }
}

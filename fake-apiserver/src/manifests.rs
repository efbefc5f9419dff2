//! Loading manifests (YAML or JSON files, as `kubectl apply -f` reads them) into the store.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::auth::AUTHENTICATED;
use crate::store::Store;

/// Label that aggregates a ClusterRole into the `admin` role.
const AGGREGATE_TO_ADMIN: &str = "rbac.authorization.k8s.io/aggregate-to-admin";
/// Label that aggregates a ClusterRole into the `edit` role.
const AGGREGATE_TO_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
/// Label that aggregates a ClusterRole into the `view` role.
const AGGREGATE_TO_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";

/// The files a path names: itself, or the `*.yaml|*.yml|*.json` files directly in a directory
/// (not its subdirectories: `deploy/` keeps its Helm chart and overlays there), sorted.
fn files(path: &Path) -> Result<Vec<PathBuf>, String> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries =
        std::fs::read_dir(path).map_err(|e| format!("listing {}: {e}", path.display()))?;
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json"))
        .collect();
    out.sort();
    Ok(out)
}

/// The documents of a file as JSON (multi-document YAML, `kind: List` expanded).
fn documents(path: &Path) -> Result<Vec<Value>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
        let value: Value = serde::Deserialize::deserialize(doc)
            .map_err(|e| format!("{} document {i}: {e}", path.display()))?;
        match value {
            Value::Null => {}
            Value::Object(ref m) if m.get("kind").and_then(Value::as_str) == Some("List") => {
                out.extend(m.get("items").and_then(Value::as_array).cloned().unwrap_or_default());
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

fn kind(doc: &Value) -> (&str, &str) {
    (
        doc.get("apiVersion").and_then(Value::as_str).unwrap_or_default(),
        doc.get("kind").and_then(Value::as_str).unwrap_or_default(),
    )
}

/// Stores every document of the files under `path` whose type the fake serves (definitions
/// first, so custom objects of the same files are served), skipping the others (Deployments,
/// DaemonSets, kustomizations). Returns the stored objects.
pub(crate) fn load(store: &mut Store, path: &Path) -> Result<Vec<Value>, String> {
    let mut docs = Vec::new();
    for file in files(path)? {
        docs.extend(documents(&file)?);
    }
    docs.sort_by_key(|d| kind(d).1 != "CustomResourceDefinition");
    let mut stored = Vec::new();
    for doc in docs {
        let (api_version, k) = kind(&doc);
        if store.registry.by_api_version_kind(api_version, k).is_none() {
            continue;
        }
        stored.push(store.insert(doc)?);
    }
    Ok(stored)
}

/// The ClusterRoles every cluster has that RBAC manifests build on: `cluster-admin`, the
/// user-facing `admin`, `edit` and `view` (here holding only what is aggregated into them,
/// with the real labels: `edit` aggregates into `admin`, `view` into `edit`), and
/// `system:basic-user`'s self-review rights bound to every authenticated identity.
pub(crate) fn default_cluster_roles() -> Vec<Value> {
    let aggregated = |name: &str, selects: &str, labels: Value| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": name, "labels": labels},
               "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {selects: "true"}}]},
               "rules": []})
    };
    vec![
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": "cluster-admin"},
               "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                         {"nonResourceURLs": ["*"], "verbs": ["*"]}]}),
        aggregated("admin", AGGREGATE_TO_ADMIN, json!({})),
        aggregated("edit", AGGREGATE_TO_EDIT, json!({AGGREGATE_TO_ADMIN: "true"})),
        aggregated("view", AGGREGATE_TO_VIEW, json!({AGGREGATE_TO_EDIT: "true"})),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": "system:basic-user"},
               "rules": [{"apiGroups": ["authorization.k8s.io"],
                          "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                          "verbs": ["create"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "system:basic-user"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                           "name": "system:basic-user"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                             "name": AUTHENTICATED}]}),
    ]
}

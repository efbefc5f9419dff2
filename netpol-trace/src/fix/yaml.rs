//! Policy objects as people write them: YAML with Kubernetes' usual key order (apiVersion, kind,
//! metadata, spec; podSelector before rules; peers before ports), and without the fields the API
//! server fills in, so the output feeds `kubectl apply -f -` as is.

use serde_json::Value;

/// Keys placed first, in this order; others follow alphabetically. Label and annotation maps
/// keep plain alphabetical order.
const KEY_ORDER: [&str; 26] = [
    "apiVersion",
    "kind",
    "metadata",
    "name",
    "namespace",
    "labels",
    "annotations",
    "spec",
    "namespaceSelector",
    "podSelector",
    "policyTypes",
    "ingress",
    "egress",
    "from",
    "to",
    "ports",
    "ipBlock",
    "cidr",
    "except",
    "protocol",
    "port",
    "endPort",
    "matchLabels",
    "matchExpressions",
    "key",
    "operator",
];

/// Maps whose keys are data (label keys), not schema.
const DATA_MAPS: [&str; 3] = ["labels", "annotations", "matchLabels"];

/// Metadata fields the API server owns.
const SERVER_METADATA: [&str; 7] = [
    "managedFields",
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "selfLink",
    "deletionGracePeriodSeconds",
];

/// The annotation `kubectl apply` keeps its last input in.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// `object` without `status` and server-owned metadata (managedFields, uid, resourceVersion,
/// timestamps, the last-applied annotation).
pub fn clean_for_apply(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for key in SERVER_METADATA {
            metadata.remove(key);
        }
        let annotations = metadata.get_mut("annotations").and_then(Value::as_object_mut);
        if let Some(annotations) = annotations {
            annotations.remove(LAST_APPLIED_ANNOTATION);
            if annotations.is_empty() {
                metadata.remove("annotations");
            }
        }
    }
    object
}

/// `object` as one YAML document (no leading `---`), keys in the usual order.
pub fn to_yaml(object: &Value) -> String {
    serde_yaml_ng::to_string(&ordered(object, false)).unwrap_or_default()
}

fn rank(key: &str) -> usize {
    KEY_ORDER.iter().position(|k| *k == key).unwrap_or(KEY_ORDER.len())
}

fn ordered(value: &Value, data_map: bool) -> serde_yaml_ng::Value {
    match value {
        Value::Null => serde_yaml_ng::Value::Null,
        Value::Bool(b) => serde_yaml_ng::Value::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                serde_yaml_ng::Value::Number(i.into())
            } else if let Some(u) = n.as_u64() {
                serde_yaml_ng::Value::Number(u.into())
            } else {
                serde_yaml_ng::Value::Number(n.as_f64().unwrap_or_default().into())
            }
        }
        Value::String(s) => serde_yaml_ng::Value::String(s.clone()),
        Value::Array(items) => {
            serde_yaml_ng::Value::Sequence(items.iter().map(|v| ordered(v, false)).collect())
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            if !data_map {
                keys.sort_by_key(|k| (rank(k), k.as_str()));
            }
            let mut out = serde_yaml_ng::Mapping::new();
            for key in keys {
                let child = ordered(&map[key], DATA_MAPS.contains(&key.as_str()));
                out.insert(serde_yaml_ng::Value::String(key.clone()), child);
            }
            serde_yaml_ng::Value::Mapping(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn orders_keys_like_kubectl_and_strips_server_fields() {
        let object = json!({
            "spec": {"ingress": [{"ports": [{"port": 3306, "protocol": "TCP"}],
                                  "from": [{"podSelector": {"matchLabels": {"name": "x", "app": "web"}}}]}],
                     "podSelector": {}},
            "metadata": {"namespace": "db", "name": "p", "resourceVersion": "7", "uid": "u",
                         "managedFields": [], "annotations": {(LAST_APPLIED_ANNOTATION): "{}"}},
            "kind": "NetworkPolicy", "apiVersion": "networking.k8s.io/v1", "status": {}
        });
        let text = to_yaml(&clean_for_apply(&object));
        assert_eq!(
            text,
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: p\n  namespace: db\n\
             spec:\n  podSelector: {}\n  ingress:\n  - from:\n    - podSelector:\n        matchLabels:\n          \
             app: web\n          name: x\n    ports:\n    - protocol: TCP\n      port: 3306\n"
        );
    }
}

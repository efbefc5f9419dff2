//! NetworkPolicy requests as raw JSON, so objects are read and written exactly as the server
//! holds them, and JSON patches go out as `application/json-patch+json` bodies.

use serde_json::{Value, json};

use super::error::{Error, Result};

/// Plural resource name of NetworkPolicies.
pub const NETWORK_POLICIES: &str = "networkpolicies";
/// `apiVersion` of NetworkPolicies.
pub const NETWORK_POLICY_API_VERSION: &str = "networking.k8s.io/v1";
/// `kind` of NetworkPolicies.
pub const NETWORK_POLICY_KIND: &str = "NetworkPolicy";
/// Field manager recorded by the API server for our writes.
pub const FIELD_MANAGER: &str = "netpol-trace";

const JSON: &str = "application/json";
const JSON_PATCH: &str = "application/json-patch+json";

/// URL path of a NetworkPolicy, or of the namespace's collection when `name` is `None`.
pub fn policy_path(namespace: &str, name: Option<&str>) -> String {
    let base = format!("/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies");
    match name {
        Some(n) => format!("{base}/{n}"),
        None => base,
    }
}

fn with_query(path: String, dry_run: bool) -> String {
    let mut q = format!("fieldManager={FIELD_MANAGER}");
    if dry_run {
        q.push_str("&dryRun=All");
    }
    format!("{path}?{q}")
}

/// What a request is, for error messages.
struct Target<'a> {
    verb: &'a str,
    namespace: &'a str,
    name: Option<&'a str>,
}

async fn send(
    client: &kube::Client,
    method: http::Method,
    uri: String,
    content_type: &str,
    body: Option<&Value>,
    target: Target<'_>,
) -> Result<Value> {
    let bytes = body.map(|b| serde_json::to_vec(b).unwrap_or_default()).unwrap_or_default();
    let request = http::Request::builder()
        .method(method)
        .uri(uri)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::ACCEPT, JSON)
        .body(bytes)
        .map_err(|e| Error::InvalidObject(format!("cannot build the request: {e}")))?;
    client.request::<Value>(request).await.map_err(|e| {
        Error::from_kube(e, target.verb, NETWORK_POLICIES, Some(target.namespace), target.name)
    })
}

/// GET one NetworkPolicy; `None` when it does not exist.
pub async fn get_policy(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Option<Value>> {
    let target = Target { verb: "get", namespace, name: Some(name) };
    match send(client, http::Method::GET, policy_path(namespace, Some(name)), JSON, None, target)
        .await
    {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.status_code() == Some(404) => Ok(None),
        Err(e) => Err(e),
    }
}

/// PATCH with an RFC 6902 JSON patch.
pub async fn patch_policy(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    ops: &[json_patch::PatchOperation],
    dry_run: bool,
) -> Result<Value> {
    let body = serde_json::to_value(ops).map_err(|e| Error::InvalidObject(e.to_string()))?;
    let uri = with_query(policy_path(namespace, Some(name)), dry_run);
    let target = Target { verb: "patch", namespace, name: Some(name) };
    send(client, http::Method::PATCH, uri, JSON_PATCH, Some(&body), target).await
}

/// POST a new NetworkPolicy.
pub async fn create_policy_object(
    client: &kube::Client,
    namespace: &str,
    object: &Value,
    dry_run: bool,
) -> Result<Value> {
    let name = object.pointer("/metadata/name").and_then(Value::as_str);
    let uri = with_query(policy_path(namespace, None), dry_run);
    let target = Target { verb: "create", namespace, name };
    send(client, http::Method::POST, uri, JSON, Some(object), target).await
}

/// PUT (replace) a NetworkPolicy; the object's `metadata.resourceVersion` guards it.
pub async fn replace_policy(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    object: &Value,
    dry_run: bool,
) -> Result<Value> {
    let uri = with_query(policy_path(namespace, Some(name)), dry_run);
    let target = Target { verb: "update", namespace, name: Some(name) };
    send(client, http::Method::PUT, uri, JSON, Some(object), target).await
}

/// DELETE a NetworkPolicy, only if it still has this uid and resourceVersion (when given).
pub async fn delete_policy_object(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    uid: Option<&str>,
    resource_version: Option<&str>,
    dry_run: bool,
) -> Result<Value> {
    let mut preconditions = serde_json::Map::new();
    if let Some(uid) = uid {
        preconditions.insert("uid".into(), json!(uid));
    }
    if let Some(rv) = resource_version {
        preconditions.insert("resourceVersion".into(), json!(rv));
    }
    let mut body = json!({"kind": "DeleteOptions", "apiVersion": "v1"});
    if !preconditions.is_empty() {
        body["preconditions"] = Value::Object(preconditions);
    }
    let uri = with_query(policy_path(namespace, Some(name)), dry_run);
    let target = Target { verb: "delete", namespace, name: Some(name) };
    send(client, http::Method::DELETE, uri, JSON, Some(&body), target).await
}

/// `metadata.<field>` as a string.
pub fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object.get("metadata").and_then(|m| m.get(field)).and_then(Value::as_str)
}

/// A copy fit for POST: no resourceVersion, uid, creationTimestamp, generation,
/// managedFields, deletion fields or status.
pub fn for_create(object: &Value) -> Value {
    let mut obj = object.clone();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "generation",
            "managedFields",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            meta.remove(field);
        }
    }
    if let Some(o) = obj.as_object_mut() {
        o.remove("status");
        o.insert("apiVersion".into(), json!(NETWORK_POLICY_API_VERSION));
        o.insert("kind".into(), json!(NETWORK_POLICY_KIND));
    }
    obj
}

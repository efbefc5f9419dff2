//! NetworkPolicy requests through kube's `Api`. The objects stay untyped
//! (`DynamicObject` of the NetworkPolicy resource): a `k8s_openapi` struct would drop a field
//! it does not know, and a backup or a restore must keep the object exactly as the server
//! holds it.

use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, Preconditions,
};
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

/// The namespace's NetworkPolicies, untyped.
fn policies(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    let resource = ApiResource::erase::<NetworkPolicy>(&());
    Api::namespaced_with(client.clone(), namespace, &resource)
}

fn post_params(dry_run: bool) -> PostParams {
    PostParams { dry_run, field_manager: Some(FIELD_MANAGER.into()) }
}

/// The object as JSON, or the request's error named by verb and object.
fn answer(
    result: std::result::Result<DynamicObject, kube::Error>,
    verb: &str,
    namespace: &str,
    name: Option<&str>,
) -> Result<Value> {
    let object =
        result.map_err(|e| Error::from_kube(e, verb, NETWORK_POLICIES, Some(namespace), name))?;
    serde_json::to_value(object).map_err(|e| Error::InvalidObject(e.to_string()))
}

fn object_of(value: &Value) -> Result<DynamicObject> {
    serde_json::from_value(value.clone()).map_err(|e| Error::InvalidObject(e.to_string()))
}

/// GET one NetworkPolicy; `None` when it does not exist.
pub async fn get_policy(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Option<Value>> {
    match policies(client, namespace).get_opt(name).await {
        Ok(None) => Ok(None),
        Ok(Some(object)) => answer(Ok(object), "get", namespace, Some(name)).map(Some),
        Err(e) => answer(Err(e), "get", namespace, Some(name)).map(Some),
    }
}

/// PATCH with an RFC 6902 JSON patch (`application/json-patch+json`).
pub async fn patch_policy(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    ops: &[json_patch::PatchOperation],
    dry_run: bool,
) -> Result<Value> {
    let params = PatchParams {
        dry_run,
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    let patch: Patch<()> = Patch::Json(json_patch::Patch(ops.to_vec()));
    let result = policies(client, namespace).patch(name, &params, &patch).await;
    answer(result, "patch", namespace, Some(name))
}

/// POST a new NetworkPolicy.
pub async fn create_policy_object(
    client: &kube::Client,
    namespace: &str,
    object: &Value,
    dry_run: bool,
) -> Result<Value> {
    let name = object.pointer("/metadata/name").and_then(Value::as_str);
    let result =
        policies(client, namespace).create(&post_params(dry_run), &object_of(object)?).await;
    answer(result, "create", namespace, name)
}

/// PUT (replace) a NetworkPolicy; the object's `metadata.resourceVersion` guards it.
pub async fn replace_policy(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    object: &Value,
    dry_run: bool,
) -> Result<Value> {
    let result =
        policies(client, namespace).replace(name, &post_params(dry_run), &object_of(object)?).await;
    answer(result, "update", namespace, Some(name))
}

/// DELETE a NetworkPolicy, only if it still has this uid and resourceVersion (when given).
/// Returns the object as deleted, or the server's Status when it answers with one.
pub async fn delete_policy_object(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    uid: Option<&str>,
    resource_version: Option<&str>,
    dry_run: bool,
) -> Result<Value> {
    let preconditions = (uid.is_some() || resource_version.is_some()).then(|| Preconditions {
        uid: uid.map(str::to_string),
        resource_version: resource_version.map(str::to_string),
    });
    let params = DeleteParams { dry_run, preconditions, ..DeleteParams::default() };
    let deleted = policies(client, namespace).delete(name, &params).await.map_err(|e| {
        Error::from_kube(e, "delete", NETWORK_POLICIES, Some(namespace), Some(name))
    })?;
    let value = deleted.either(serde_json::to_value, serde_json::to_value);
    value.map_err(|e| Error::InvalidObject(e.to_string()))
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

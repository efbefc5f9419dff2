//! Listing every object of a kind in all namespaces, raw (as the API server returned it) or
//! typed, following `continue` pages. Reading the objects analysis needs is
//! `manifest::load_cluster`.

use kube::Resource;
use kube::api::DynamicObject;
use kube::discovery::ApiResource;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::error::{Error, Result};

/// Page size of list requests.
const PAGE_SIZE: usize = 500;

/// Lists every object of a kind in all namespaces as raw JSON (items get their apiVersion and
/// kind back, which list answers leave out), following `continue` pages.
pub async fn list_raw<K>(client: &kube::Client) -> Result<Vec<Value>>
where
    K: Resource<DynamicType = ()>,
{
    list_resource(client, &ApiResource::erase::<K>(&())).await
}

/// Like [`list_raw`], for a kind known at run time (a custom resource such as Calico's
/// GlobalNetworkPolicy). A group or version the server does not serve is a 404 error.
pub async fn list_resource(client: &kube::Client, resource: &ApiResource) -> Result<Vec<Value>> {
    let path = DynamicObject::url_path(resource, None);
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = list_page(client, resource, &path, PAGE_SIZE, token.as_deref()).await?;
        for mut item in page.get("items").and_then(Value::as_array).cloned().unwrap_or_default() {
            item["apiVersion"] = json!(resource.api_version);
            item["kind"] = json!(resource.kind);
            items.push(item);
        }
        token = page
            .pointer("/metadata/continue")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if token.is_none() {
            return Ok(items);
        }
    }
}

/// Whether the server serves `resource` to this client: a list of at most one object.
/// `Ok(true)`: served; `Ok(false)`: 404, not installed (or not this version); errors (403
/// among them) as the server answered.
pub async fn is_served(client: &kube::Client, resource: &ApiResource) -> Result<bool> {
    let path = DynamicObject::url_path(resource, None);
    match list_page(client, resource, &path, 1, None).await {
        Ok(_) => Ok(true),
        Err(e) if e.status_code() == Some(404) => Ok(false),
        Err(e) => Err(e),
    }
}

async fn list_page(
    client: &kube::Client,
    resource: &ApiResource,
    path: &str,
    limit: usize,
    token: Option<&str>,
) -> Result<Value> {
    let mut uri = format!("{path}?limit={limit}");
    if let Some(t) = token {
        uri.push_str("&continue=");
        uri.push_str(&form_encode(t));
    }
    let request = http::Request::get(uri)
        .body(Vec::new())
        .map_err(|e| Error::InvalidObject(format!("cannot build the request: {e}")))?;
    client
        .request(request)
        .await
        .map_err(|e| Error::from_kube(e, "list", &resource.plural, None, None))
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Lists every object of a kind in all namespaces, typed.
pub async fn list_typed<K>(client: &kube::Client) -> Result<Vec<K>>
where
    K: Resource<DynamicType = ()> + DeserializeOwned,
{
    let raw = list_raw::<K>(client).await?;
    typed(raw)
}

/// Turns raw objects into typed ones; the error names the kind and the object.
pub fn typed<K>(raw: Vec<Value>) -> Result<Vec<K>>
where
    K: Resource<DynamicType = ()> + DeserializeOwned,
{
    raw.into_iter()
        .map(|v| {
            let name =
                v.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("?").to_string();
            serde_json::from_value(v).map_err(|e| {
                Error::InvalidObject(format!("{} {name} from the API server: {e}", K::kind(&())))
            })
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use fake_apiserver::FakeApiServer;
    use serde_json::json;

    pub(crate) fn seed(fake: &FakeApiServer) {
        for ns in ["app", "db"] {
            fake.insert(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
        }
        fake.insert(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "app", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx"}]},
            "status": {"podIP": "10.0.1.5"}}));
        fake.insert(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "mysql-0", "namespace": "db", "labels": {"app": "mysql"}},
            "spec": {"containers": [{"name": "mysql", "image": "mariadb",
                                      "ports": [{"name": "mysql", "containerPort": 3306}]}]},
            "status": {"podIP": "10.0.2.7"}}));
        fake.insert(json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "mysql-ingress", "namespace": "db"},
            "spec": {"podSelector": {"matchLabels": {"app": "mysql"}},
                     "ingress": [{"ports": [{"port": 3307}]}]}}));
        fake.insert(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "mysql", "namespace": "db"},
            "spec": {"selector": {"app": "mysql"}, "clusterIP": "10.96.0.10",
                     "ports": [{"port": 3306, "targetPort": "mysql"}]}}));
        fake.insert(json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "mysql-abc", "namespace": "db",
                         "labels": {"kubernetes.io/service-name": "mysql"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.2.7"],
                           "targetRef": {"kind": "Pod", "namespace": "db", "name": "mysql-0"}}],
            "ports": [{"name": "", "port": 3306, "protocol": "TCP"}]}));
    }
}

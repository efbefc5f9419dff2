//! One consistent-enough read of everything policy analysis needs, across all namespaces.

use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Resource;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::error::{Error, Result};

/// The cluster objects policy analysis works on.
#[derive(Debug, Clone, Default)]
pub struct ClusterObjects {
    /// All namespaces.
    pub namespaces: Vec<Namespace>,
    /// All pods.
    pub pods: Vec<Pod>,
    /// All NetworkPolicies, typed.
    pub network_policies: Vec<NetworkPolicy>,
    /// The same NetworkPolicies exactly as the server returned them (JSON patches are
    /// computed against these), in the same order as `network_policies`.
    pub network_policies_raw: Vec<serde_json::Value>,
    /// All Services.
    pub services: Vec<Service>,
    /// All EndpointSlices.
    pub endpoint_slices: Vec<EndpointSlice>,
}

/// Page size of list requests.
impl ClusterObjects {
    /// The objects as the policy engine takes them: each NetworkPolicy with its JSON as the
    /// API server returned it, sourced from the cluster.
    pub fn into_inventory_objects(self) -> crate::inventory::ClusterObjects {
        use crate::inventory::{PolicySource, SourcedPolicy};
        let network_policies = self
            .network_policies
            .into_iter()
            .zip(self.network_policies_raw)
            .map(|(policy, raw)| SourcedPolicy { policy, raw, source: PolicySource::Cluster })
            .collect();
        crate::inventory::ClusterObjects {
            namespaces: self.namespaces,
            pods: self.pods,
            network_policies,
            services: self.services,
            endpoint_slices: self.endpoint_slices,
            ..Default::default()
        }
    }
}

const PAGE_SIZE: usize = 500;

/// Lists every object of a kind in all namespaces as raw JSON (items get their apiVersion and
/// kind back, which list answers leave out), following `continue` pages.
pub async fn list_raw<K>(client: &kube::Client) -> Result<Vec<Value>>
where
    K: Resource<DynamicType = ()>,
{
    let plural = K::plural(&()).to_string();
    let path = K::url_path(&(), None);
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut uri = format!("{path}?limit={PAGE_SIZE}");
        if let Some(t) = &token {
            uri.push_str("&continue=");
            uri.push_str(&form_encode(t));
        }
        let request = http::Request::get(uri)
            .body(Vec::new())
            .map_err(|e| Error::InvalidObject(format!("cannot build the request: {e}")))?;
        let page: Value = client
            .request(request)
            .await
            .map_err(|e| Error::from_kube(e, "list", &plural, None, None))?;
        for mut item in page.get("items").and_then(Value::as_array).cloned().unwrap_or_default() {
            item["apiVersion"] = json!(K::api_version(&()));
            item["kind"] = json!(K::kind(&()));
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

fn typed<K>(raw: Vec<Value>) -> Result<Vec<K>>
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

/// Reads Namespaces, Pods, NetworkPolicies, Services and EndpointSlices in all namespaces.
pub async fn snapshot(client: &kube::Client) -> Result<ClusterObjects> {
    let (namespaces, pods, policies_raw, services, endpoint_slices) = tokio::try_join!(
        list_typed::<Namespace>(client),
        list_typed::<Pod>(client),
        list_raw::<NetworkPolicy>(client),
        list_typed::<Service>(client),
        list_typed::<EndpointSlice>(client),
    )?;
    Ok(ClusterObjects {
        namespaces,
        pods,
        network_policies: typed(policies_raw.clone())?,
        network_policies_raw: policies_raw,
        services,
        endpoint_slices,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use fake_apiserver::FakeApiServer;
    use std::time::Duration;

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

    #[tokio::test]
    async fn snapshot_reads_all_five_kinds() {
        let fake = FakeApiServer::start().await;
        seed(&fake);
        let objects = tokio::time::timeout(Duration::from_secs(5), snapshot(&fake.client()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(objects.namespaces.len(), 2);
        assert_eq!(objects.pods.len(), 2);
        assert_eq!(objects.services.len(), 1);
        assert_eq!(objects.endpoint_slices.len(), 1);
        assert_eq!(objects.network_policies.len(), 1);
        let raw = &objects.network_policies_raw[0];
        assert_eq!(raw["kind"], "NetworkPolicy");
        assert_eq!(raw["spec"]["ingress"][0]["ports"][0], json!({"port": 3307}));
        assert_eq!(objects.network_policies[0].metadata.name.as_deref(), Some("mysql-ingress"));
        assert!(fake.requests().iter().all(|r| r.path.starts_with("/api") && !r.is_watch()));
    }

    #[tokio::test]
    async fn forbidden_list_is_reported_with_the_missing_permission() {
        let fake = FakeApiServer::start().await;
        seed(&fake);
        fake.forbid("list", "pods");
        let err = snapshot(&fake.client()).await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with("forbidden: the service account needs list on pods at cluster scope"),
            "{err}"
        );
    }
}

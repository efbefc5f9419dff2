//! Reading the five kinds from the live cluster (kubeconfig or in-cluster config): list calls
//! only, no watches, no writes.

use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;
use kube::api::ListParams;

use crate::inventory::{ClusterObjects, PolicySource, SourcedPolicy};

/// Why the cluster could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No kubeconfig or in-cluster configuration, or the client could not be built.
    #[error("no cluster configuration: {0}")]
    Config(#[source] kube::Error),
    /// A list call failed.
    #[error("listing {kind}: {source}")]
    List {
        /// The kind being listed.
        kind: &'static str,
        /// The client error.
        source: kube::Error,
    },
}

/// Lists Namespaces, Pods, NetworkPolicies, Services and EndpointSlices in all namespaces,
/// using the default client configuration.
pub async fn load_cluster() -> Result<ClusterObjects, ClusterError> {
    let client = kube::Client::try_default().await.map_err(ClusterError::Config)?;
    load_cluster_with(client).await
}

/// Like [`load_cluster`] with a given client.
pub async fn load_cluster_with(client: kube::Client) -> Result<ClusterObjects, ClusterError> {
    let params = ListParams::default();
    let list = |kind: &'static str| move |source| ClusterError::List { kind, source };
    let namespaces =
        Api::<Namespace>::all(client.clone()).list(&params).await.map_err(list("namespaces"))?;
    let pods = Api::<Pod>::all(client.clone()).list(&params).await.map_err(list("pods"))?;
    let policies = Api::<NetworkPolicy>::all(client.clone())
        .list(&params)
        .await
        .map_err(list("networkpolicies"))?;
    let services =
        Api::<Service>::all(client.clone()).list(&params).await.map_err(list("services"))?;
    let slices =
        Api::<EndpointSlice>::all(client).list(&params).await.map_err(list("endpointslices"))?;
    let network_policies = policies
        .items
        .into_iter()
        .map(|policy| {
            let raw = serde_json::to_value(&policy).unwrap_or(serde_json::Value::Null);
            SourcedPolicy { policy, raw, source: PolicySource::Cluster }
        })
        .collect();
    Ok(ClusterObjects {
        namespaces: namespaces.items,
        pods: pods.items,
        network_policies,
        services: services.items,
        endpoint_slices: slices.items,
    })
}

//! Reading the five kinds from the live cluster (kubeconfig or in-cluster config): list calls
//! only, no watches, no writes. The listing itself is [`crate::k8s::snapshot`]; this turns it
//! into the objects the inventory is built from.

use crate::inventory::ClusterObjects;

/// Why the cluster could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No kubeconfig or in-cluster configuration, or the client could not be built.
    #[error("no cluster configuration: {0}")]
    Config(#[source] kube::Error),
    /// A list call failed (the message names the kind and the server's answer).
    #[error(transparent)]
    List(#[from] crate::k8s::Error),
}

/// Lists Namespaces, Pods, NetworkPolicies, Services and EndpointSlices in all namespaces,
/// using the default client configuration.
pub async fn load_cluster() -> Result<ClusterObjects, ClusterError> {
    let client = kube::Client::try_default().await.map_err(ClusterError::Config)?;
    load_cluster_with(client).await
}

/// Like [`load_cluster`] with a given client. NetworkPolicies keep the JSON the API server
/// returned, so patches apply to the objects exactly as read.
pub async fn load_cluster_with(client: kube::Client) -> Result<ClusterObjects, ClusterError> {
    Ok(crate::k8s::snapshot::snapshot(&client).await?.into_inventory_objects())
}

//! Reading the live cluster (kubeconfig or in-cluster config): the five core kinds, and the
//! other policy kinds (ClusterNetworkPolicy, AdminNetworkPolicy, BaselineAdminNetworkPolicy,
//! Calico's NetworkPolicy, GlobalNetworkPolicy and Tier) where the cluster serves them. List
//! calls only, no watches, no writes. Policies keep the JSON the API server returned, so
//! patches apply to the objects exactly as read.

use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;

use crate::inventory::{ClusterObjects, PolicySource, SourcedPolicy};
use crate::k8s::list::{list_raw, list_typed, typed};
use crate::k8s::policy_kinds::list_policy_kinds;

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
/// and the other policy kinds the cluster serves (one it does not serve is absent; one the
/// client may not list is skipped with a warning), using the default client configuration.
pub async fn load_cluster() -> Result<ClusterObjects, ClusterError> {
    let client = kube::Client::try_default().await.map_err(ClusterError::Config)?;
    load_cluster_with(client).await
}

/// Like [`load_cluster`] with a given client.
pub async fn load_cluster_with(client: kube::Client) -> Result<ClusterObjects, ClusterError> {
    let client = &client;
    let (namespaces, pods, policies_raw, services, endpoint_slices, tiered) = tokio::try_join!(
        list_typed::<Namespace>(client),
        list_typed::<Pod>(client),
        list_raw::<NetworkPolicy>(client),
        list_typed::<Service>(client),
        list_typed::<EndpointSlice>(client),
        list_policy_kinds(client),
    )?;
    let network_policies = typed::<NetworkPolicy>(policies_raw.clone())?
        .into_iter()
        .zip(policies_raw)
        .map(|(policy, raw)| SourcedPolicy { policy, raw, source: PolicySource::Cluster })
        .collect();
    Ok(ClusterObjects { namespaces, pods, network_policies, services, endpoint_slices, tiered })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    #[tokio::test]
    async fn snapshot_reads_all_five_kinds() {
        let fake = fake_apiserver::FakeApiServer::start().await;
        crate::k8s::list::tests::seed(&fake);
        let objects =
            tokio::time::timeout(Duration::from_secs(5), load_cluster_with(fake.client()))
                .await
                .unwrap()
                .unwrap();
        assert_eq!(objects.namespaces.len(), 2);
        assert_eq!(objects.pods.len(), 2);
        assert_eq!(objects.services.len(), 1);
        assert_eq!(objects.endpoint_slices.len(), 1);
        assert_eq!(objects.network_policies.len(), 1);
        let raw = &objects.network_policies[0].raw;
        assert_eq!(raw["kind"], "NetworkPolicy");
        assert_eq!(raw["spec"]["ingress"][0]["ports"][0], json!({"port": 3307}));
        assert_eq!(
            objects.network_policies[0].policy.metadata.name.as_deref(),
            Some("mysql-ingress")
        );
        assert!(fake.requests().iter().all(|r| r.path.starts_with("/api") && !r.is_watch()));
    }

    #[tokio::test]
    async fn forbidden_list_is_reported_with_the_missing_permission() {
        let fake = fake_apiserver::FakeApiServer::start().await;
        crate::k8s::list::tests::seed(&fake);
        fake.forbid("list", "pods");
        let err = load_cluster_with(fake.client()).await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with("forbidden: the service account needs list on pods at cluster scope"),
            "{err}"
        );
    }
}

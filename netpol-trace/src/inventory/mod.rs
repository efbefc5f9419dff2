//! `Inventory`: an immutable, indexed snapshot of namespaces, pods, NetworkPolicies, Services
//! and EndpointSlices, built once (from manifests or the live cluster) and queried many times.
//!
//! Build with [`Inventory::from_objects`] from a [`ClusterObjects`]. Queries:
//! * pods: [`Inventory::pod_id`] (`ns/name`), [`Inventory::pod_by_ip`], [`Inventory::pods`],
//!   [`Inventory::pod`];
//! * namespaces: [`Inventory::namespaces`], [`Inventory::namespace_labels`];
//! * policies: [`Inventory::policies`], [`Inventory::policy`], [`Inventory::policy_id`],
//!   [`Inventory::isolating_policies`] (pod → policies per direction),
//!   [`PolicyEntry::selected`] (policy → pods);
//! * rule peers and ports for rendering: [`Inventory::rule_peers`], [`resolved_ports`];
//! * services: [`Inventory::service`], [`Inventory::service_backends`],
//!   [`Inventory::service_by_cluster_ip`];
//! * re-evaluation after a patch: [`Inventory::with_policies_replaced`].

mod catalog;
mod error;
mod intern;
mod peers;
mod pods;
mod policies;
mod services;
mod tiered;

use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;

pub use catalog::{NAMESPACE_NAME_LABEL, namespace_info};
pub use error::{InvalidPolicy, LookupError};
pub use intern::Interner;
pub use peers::{PortRange, ResolvedPeers, ResolvedPorts, resolved_ports};
pub use pods::{NamespaceId, NamespaceInfo, PodId, PodInfo, PodRef};
pub use policies::{PolicyEntry, PolicyId, PolicyObject, PolicySource, SourcedPolicy};
pub use services::{
    EndpointInfo, PortRef, SERVICE_NAME_LABEL, ServiceBackend, ServiceInfo, ServicePortInfo,
    SliceInfo,
};
pub use tiered::{
    AdminEntry, CalicoEntry, CalicoId, Sourced, TierEntry, TieredIndex, TieredObjects,
};

use crate::policy::{CompiledPolicy, Direction, Labels, compile_policy};
use catalog::Catalog;
use policies::PolicySet;
use services::ServiceIndex;

/// The namespace of objects that do not name one, as `kubectl apply -f` does.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Plain lists of the objects an inventory is built from, as list calls or manifest files
/// return them.
#[derive(Debug, Clone, Default)]
pub struct ClusterObjects {
    /// Namespaces.
    pub namespaces: Vec<Namespace>,
    /// Pods.
    pub pods: Vec<Pod>,
    /// NetworkPolicies with their raw JSON and source.
    pub network_policies: Vec<SourcedPolicy>,
    /// Services.
    pub services: Vec<Service>,
    /// EndpointSlices.
    pub endpoint_slices: Vec<EndpointSlice>,
    /// ClusterNetworkPolicies, AdminNetworkPolicies and Calico policies and tiers.
    pub tiered: TieredObjects,
}

impl ClusterObjects {
    /// Appends every object of `other`.
    pub fn extend(&mut self, other: ClusterObjects) {
        self.namespaces.extend(other.namespaces);
        self.pods.extend(other.pods);
        self.network_policies.extend(other.network_policies);
        self.services.extend(other.services);
        self.endpoint_slices.extend(other.endpoint_slices);
        self.tiered.extend(other.tiered);
    }
}

/// A compiled policy and the object it was compiled from, shared between a cache and the
/// inventories built from it.
pub type SharedPolicy = (Arc<CompiledPolicy>, Arc<PolicyObject>);

/// The objects an inventory is built from, already reduced to what attribution reads and
/// shared (not copied) with whoever keeps them, as the agent's caches do.
#[derive(Debug, Clone, Default)]
pub struct SharedObjects {
    /// Declared namespaces.
    pub namespaces: Vec<NamespaceInfo>,
    /// Pods.
    pub pods: Vec<Arc<PodInfo>>,
    /// Compiled NetworkPolicies.
    pub policies: Vec<SharedPolicy>,
    /// Services.
    pub services: Vec<Arc<ServiceInfo>>,
    /// EndpointSlices.
    pub endpoint_slices: Vec<Arc<SliceInfo>>,
    /// ClusterNetworkPolicies, AdminNetworkPolicies and Calico policies and tiers.
    pub tiered: TieredObjects,
}

/// Compiles a NetworkPolicy for an inventory.
pub fn compile_shared(
    sourced: SourcedPolicy,
    default_namespace: &str,
) -> Result<SharedPolicy, InvalidPolicy> {
    match compile_policy(&sourced.policy, default_namespace) {
        Ok(compiled) => Ok((Arc::new(compiled), Arc::new(PolicyObject::new(&sourced)))),
        Err(error) => {
            Err(InvalidPolicy { source_location: sourced.source, error: Box::new(error) })
        }
    }
}

/// How to build an inventory.
#[derive(Debug, Clone)]
pub struct InventoryOptions {
    /// Namespace for objects that do not name one.
    pub default_namespace: String,
}

impl Default for InventoryOptions {
    fn default() -> Self {
        Self { default_namespace: DEFAULT_NAMESPACE.to_owned() }
    }
}

/// An immutable, indexed snapshot. Cheap to clone (shared data).
#[derive(Debug, Clone)]
pub struct Inventory {
    catalog: Arc<Catalog>,
    services: Arc<ServiceIndex>,
    policies: PolicySet,
    tiered: Arc<TieredIndex>,
    options: InventoryOptions,
}

impl Inventory {
    /// Validates every policy and builds the indexes. Namespaces get the
    /// `kubernetes.io/metadata.name` label; namespaces that objects live in but that are not
    /// declared are synthesised with just that label. Later duplicates replace earlier ones.
    pub fn from_objects(
        objects: ClusterObjects,
        options: InventoryOptions,
    ) -> Result<Self, InvalidPolicy> {
        let default_namespace = options.default_namespace.as_str();
        let shared = SharedObjects {
            namespaces: objects.namespaces.iter().filter_map(namespace_info).collect(),
            pods: objects
                .pods
                .iter()
                .map(|p| Arc::new(PodInfo::from_pod(p, default_namespace)))
                .collect(),
            policies: objects
                .network_policies
                .into_iter()
                .map(|sourced| compile_shared(sourced, default_namespace))
                .collect::<Result<_, _>>()?,
            services: objects
                .services
                .iter()
                .filter_map(|s| ServiceInfo::from_service(s, default_namespace))
                .map(Arc::new)
                .collect(),
            endpoint_slices: objects
                .endpoint_slices
                .iter()
                .filter_map(|s| SliceInfo::from_slice(s, default_namespace))
                .map(Arc::new)
                .collect(),
            tiered: objects.tiered,
        };
        Self::from_shared(shared, options)
    }

    /// Like [`Inventory::from_objects`] from objects already reduced and compiled (as the
    /// agent's caches keep them): the pods, policies and services are shared, not copied;
    /// only the indexes are built.
    pub fn from_shared(
        objects: SharedObjects,
        options: InventoryOptions,
    ) -> Result<Self, InvalidPolicy> {
        let tiered = Arc::new(TieredIndex::build(objects.tiered, &options.default_namespace)?);
        let referenced: Vec<&str> = objects
            .policies
            .iter()
            .map(|(c, _)| c.namespace.as_str())
            .chain(objects.services.iter().map(|s| s.namespace.as_str()))
            .chain(objects.endpoint_slices.iter().map(|s| s.namespace.as_str()))
            .collect();
        let catalog = Catalog::from_shared(objects.namespaces, objects.pods, referenced);
        let services = ServiceIndex::from_shared(objects.services, objects.endpoint_slices);
        let entries =
            objects.policies.into_iter().map(|(c, s)| Arc::new(PolicyEntry::new(c, s, &catalog)));
        let policies = PolicySet::index(entries, catalog.pods().len());
        Ok(Self {
            catalog: Arc::new(catalog),
            services: Arc::new(services),
            policies,
            tiered,
            options,
        })
    }

    /// A new inventory with `replacements` replacing the policies of the same namespace/name, or
    /// added when new. Pods, namespaces and services are shared; only the replaced policies are
    /// re-selected. Replaced policies keep their source; new ones are [`PolicySource::InMemory`].
    pub fn with_policies_replaced(
        &self,
        replacements: Vec<NetworkPolicy>,
    ) -> Result<Self, InvalidPolicy> {
        let mut entries = Vec::with_capacity(replacements.len());
        for policy in replacements {
            let previous = policy
                .metadata
                .name
                .as_deref()
                .and_then(|name| {
                    let ns = policy
                        .metadata
                        .namespace
                        .as_deref()
                        .unwrap_or(&self.options.default_namespace);
                    self.policy_id(ns, name)
                })
                .map(|id| self.policy(id));
            let source = previous.map_or(PolicySource::InMemory, |p| p.sourced.source.clone());
            let compiled =
                compile_policy(&policy, &self.options.default_namespace).map_err(|error| {
                    InvalidPolicy { source_location: source.clone(), error: Box::new(error) }
                })?;
            let sourced = Arc::new(PolicyObject::new(&SourcedPolicy {
                policy,
                raw: serde_json::Value::Null,
                source,
            }));
            entries.push(Arc::new(PolicyEntry::new(Arc::new(compiled), sourced, &self.catalog)));
        }
        Ok(Self {
            catalog: Arc::clone(&self.catalog),
            services: Arc::clone(&self.services),
            tiered: Arc::clone(&self.tiered),
            policies: self.policies.with_replaced(entries, self.catalog.pods().len()),
            options: self.options.clone(),
        })
    }

    /// A new inventory without the policies named by `(namespace, name)` (unknown names are
    /// ignored), as after deleting them. Pods, namespaces and services are shared.
    pub fn with_policies_removed(&self, removed: &[(String, String)]) -> Self {
        let entries = self.policies.entries.iter().filter(|entry| {
            !removed
                .iter()
                .any(|(ns, name)| entry.compiled.namespace == *ns && entry.compiled.name == *name)
        });
        Self {
            catalog: Arc::clone(&self.catalog),
            services: Arc::clone(&self.services),
            tiered: Arc::clone(&self.tiered),
            policies: PolicySet::index(entries.cloned(), self.catalog.pods().len()),
            options: self.options.clone(),
        }
    }

    /// A new inventory whose cluster-scoped and Calico policies are `replacements` added to the
    /// ones known (an object of the same kind, namespace and name replaces the known one).
    /// Pods, namespaces, services and NetworkPolicies are shared.
    pub fn with_tiered_replaced(&self, replacements: TieredObjects) -> Result<Self, InvalidPolicy> {
        let mut objects = self.tiered.objects();
        objects.extend(replacements);
        let tiered = TieredIndex::build(objects, &self.options.default_namespace)?;
        Ok(Self { tiered: Arc::new(tiered), ..self.clone() })
    }

    /// The policy kinds beyond NetworkPolicy: admin and baseline tiers, Calico tiers.
    pub fn tiered(&self) -> &TieredIndex {
        &self.tiered
    }

    /// The options it was built with.
    pub fn options(&self) -> &InventoryOptions {
        &self.options
    }

    /// All pods, sorted by namespace then name (`PodId(i)` is the i-th).
    pub fn pods(&self) -> &[Arc<PodInfo>] {
        self.catalog.pods()
    }

    /// All pod ids.
    pub fn pod_ids(&self) -> impl Iterator<Item = PodId> + '_ {
        (0..self.catalog.pods().len() as u32).map(PodId)
    }

    /// A pod by id.
    pub fn pod(&self, id: PodId) -> &PodInfo {
        self.catalog.pod(id)
    }

    /// A pod by namespace and name.
    pub fn pod_id(&self, namespace: &str, name: &str) -> Option<PodId> {
        self.catalog.pod_id(namespace, name)
    }

    /// The pod that owns `ip` (IPv4 or IPv6, from `status.podIP`/`podIPs`; host-network and
    /// finished pods excluded).
    pub fn pod_by_ip(&self, ip: IpAddr) -> Option<PodId> {
        self.catalog.pod_by_ip(ip)
    }

    /// All namespaces (declared and synthesised), sorted by name.
    pub fn namespaces(&self) -> &[NamespaceInfo] {
        self.catalog.namespaces()
    }

    /// Labels of namespace `name`, if known.
    pub fn namespace_labels(&self, name: &str) -> Option<&Labels> {
        self.catalog.namespace_id(name).map(|id| &self.catalog.namespace(id).labels)
    }

    /// Labels of the namespace pod `id` lives in.
    pub fn namespace_labels_of(&self, id: PodId) -> &Labels {
        self.catalog.namespace_labels_of(id)
    }

    /// All policies, sorted by namespace then name (`PolicyId(i)` is the i-th).
    pub fn policies(&self) -> impl ExactSizeIterator<Item = (PolicyId, &PolicyEntry)> + '_ {
        self.policies.entries.iter().enumerate().map(|(i, e)| (PolicyId(i as u32), e.as_ref()))
    }

    /// A policy by id.
    pub fn policy(&self, id: PolicyId) -> &PolicyEntry {
        &self.policies.entries[id.0 as usize]
    }

    /// A policy id by namespace and name.
    pub fn policy_id(&self, namespace: &str, name: &str) -> Option<PolicyId> {
        self.policies.by_key.get(&(namespace.to_owned(), name.to_owned())).copied()
    }

    /// The policies that select pod `id` and affect `direction` (they isolate it), sorted by
    /// namespace/name. Empty means the pod is not isolated in that direction.
    pub fn isolating_policies(&self, id: PodId, direction: Direction) -> &[PolicyId] {
        self.policies.isolating(id, direction)
    }

    /// A Service by namespace and name.
    pub fn service(&self, namespace: &str, name: &str) -> Option<&ServiceInfo> {
        self.services.service(namespace, name)
    }

    /// All Services, sorted by namespace/name.
    pub fn services(&self) -> impl Iterator<Item = &ServiceInfo> {
        self.services.services()
    }

    /// The Service (namespace, name) whose ClusterIP is `ip`.
    pub fn service_by_cluster_ip(&self, ip: IpAddr) -> Option<(&str, &str)> {
        self.services.by_cluster_ip(ip)
    }

    /// Backing pods of Service `namespace/name` for its port `port` (number or name; optional
    /// when it has one port of `protocol`), each with the target port it receives on.
    pub fn service_backends(
        &self,
        namespace: &str,
        name: &str,
        port: Option<&PortRef>,
        protocol: crate::policy::Protocol,
    ) -> Result<Vec<ServiceBackend>, LookupError> {
        self.services.backends(&self.catalog, namespace, name, port, protocol)
    }

    pub(crate) fn catalog(&self) -> &Catalog {
        &self.catalog
    }
}

#[cfg(test)]
mod tests;

//! The Kubernetes objects of a lab and the [`Inventory`] they form: the pods as built (each
//! with its lab IP as `status.podIP`, its labels and declared ports), the Namespaces of the
//! manifests, and the NetworkPolicies currently enforced. The policy engine queries this
//! inventory exactly as it queries a cluster's, so the enforcement plan, `explain` and `fix`
//! all see the lab as the kernel enforces it.
//!
//! `state.json` keeps the Namespaces and the policies (each exactly as read, with its file and
//! document), so that any later command can rebuild the inventory with
//! [`LabState::inventory`](super::state::LabState::inventory).

use std::path::PathBuf;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Namespace, Pod, PodIP, PodSpec, PodStatus,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use super::error::{LabError, Result};
use super::topology::{LabPod, Topology};
use crate::inventory::{
    ClusterObjects, Inventory, InventoryOptions, PolicySource, Sourced, SourcedPolicy,
    TieredObjects,
};

/// The name of the single container of a pod object rebuilt from a [`LabPod`].
pub const LAB_CONTAINER: &str = "lab";

/// A NetworkPolicy as a lab's state keeps it: the object exactly as read, and where it came
/// from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredPolicy {
    /// The manifest file it was read from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Its 1-based document number in that file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<usize>,
    /// The object as read (raw JSON).
    pub object: serde_json::Value,
}

impl StoredPolicy {
    /// Keeps `policy`'s raw object and, for a manifest file, its location.
    pub fn from_sourced(policy: &SourcedPolicy) -> Self {
        Self::from_parts(&policy.raw, &policy.source)
    }

    /// Keeps the raw object `raw` read from `source`.
    pub fn from_parts(raw: &serde_json::Value, source: &PolicySource) -> Self {
        let (file, document) = match source {
            PolicySource::File { path, document } => (Some(path.clone()), Some(*document)),
            PolicySource::Cluster | PolicySource::InMemory => (None, None),
        };
        Self { file, document, object: raw.clone() }
    }

    fn source(&self) -> PolicySource {
        match (&self.file, self.document) {
            (Some(path), Some(document)) => PolicySource::File { path: path.clone(), document },
            _ => PolicySource::InMemory,
        }
    }

    /// The policy again, typed; its source is the file and document when known, else
    /// [`PolicySource::InMemory`].
    pub fn to_sourced(&self) -> Result<SourcedPolicy> {
        let policy: NetworkPolicy = serde_json::from_value(self.object.clone()).map_err(|e| {
            LabError::invalid("stored NetworkPolicy", "object", format!("not a NetworkPolicy: {e}"))
        })?;
        Ok(SourcedPolicy { policy, raw: self.object.clone(), source: self.source() })
    }
}

/// The policies a lab enforces: NetworkPolicies and the other kinds (ClusterNetworkPolicy,
/// AdminNetworkPolicy, BaselineAdminNetworkPolicy, Calico policies and Tiers).
#[derive(Debug, Clone, Default)]
pub struct LabPolicies {
    /// NetworkPolicies.
    pub network_policies: Vec<SourcedPolicy>,
    /// The other kinds.
    pub tiered: TieredObjects,
}

impl From<Vec<SourcedPolicy>> for LabPolicies {
    fn from(network_policies: Vec<SourcedPolicy>) -> Self {
        Self { network_policies, tiered: TieredObjects::default() }
    }
}

impl LabPolicies {
    /// Every policy kind of `objects`.
    pub fn from_objects(objects: &ClusterObjects) -> Self {
        Self { network_policies: objects.network_policies.clone(), tiered: objects.tiered.clone() }
    }

    /// How many policy objects (Tiers included).
    pub fn len(&self) -> usize {
        self.network_policies.len()
            + self.tiered.admin.len()
            + self.tiered.calico.len()
            + self.tiered.tiers.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The other kinds as a lab's state keeps them.
    pub fn stored_tiered(&self) -> Vec<StoredPolicy> {
        let admin = self.tiered.admin.iter().map(|s| StoredPolicy::from_parts(&s.raw, &s.source));
        let calico = self.tiered.calico.iter().map(|s| StoredPolicy::from_parts(&s.raw, &s.source));
        let tiers = self.tiered.tiers.iter().map(|s| StoredPolicy::from_parts(&s.raw, &s.source));
        admin.chain(calico).chain(tiers).collect()
    }

    /// The NetworkPolicies and other kinds a lab's state keeps, typed again.
    pub fn from_stored(policies: &[StoredPolicy], tiered: &[StoredPolicy]) -> Result<Self> {
        let network_policies =
            policies.iter().map(StoredPolicy::to_sourced).collect::<Result<_>>()?;
        let mut objects = TieredObjects::default();
        for stored in tiered {
            let kind = stored.object.get("kind").and_then(serde_json::Value::as_str).unwrap_or("");
            let invalid = |e: serde_json::Error| {
                LabError::invalid(format!("stored {kind}"), "object", e.to_string())
            };
            let source = stored.source();
            let raw = stored.object.clone();
            match kind {
                "ClusterNetworkPolicy" | "AdminNetworkPolicy" | "BaselineAdminNetworkPolicy" => {
                    let object = serde_json::from_value(raw.clone()).map_err(invalid)?;
                    objects.admin.push(Sourced { object, raw, source });
                }
                "NetworkPolicy" | "GlobalNetworkPolicy" => {
                    let object = serde_json::from_value(raw.clone()).map_err(invalid)?;
                    objects.calico.push(Sourced { object, raw, source });
                }
                "Tier" => {
                    let object = serde_json::from_value(raw.clone()).map_err(invalid)?;
                    objects.tiers.push(Sourced { object, raw, source });
                }
                other => {
                    return Err(LabError::invalid(
                        "stored policy",
                        "kind",
                        format!("{other:?} is not a policy kind the lab enforces"),
                    ));
                }
            }
        }
        Ok(Self { network_policies, tiered: objects })
    }
}

/// A policy built in memory (e.g. a patched one), with its raw JSON serialised from it.
pub fn in_memory_policy(policy: NetworkPolicy) -> SourcedPolicy {
    let raw = serde_json::to_value(&policy).unwrap_or(serde_json::Value::Null);
    SourcedPolicy { policy, raw, source: PolicySource::InMemory }
}

/// The Pod object the policy engine sees for a lab pod: name, namespace, labels, one container
/// with the declared ports, and the lab IP as `status.podIP`.
pub fn pod_object(pod: &LabPod) -> Pod {
    let ports = pod
        .ports
        .iter()
        .map(|p| ContainerPort {
            container_port: i32::from(p.port),
            name: p.name.clone(),
            protocol: Some(p.protocol.to_string()),
            ..ContainerPort::default()
        })
        .collect::<Vec<_>>();
    Pod {
        metadata: ObjectMeta {
            name: Some(pod.name.clone()),
            namespace: Some(pod.namespace.clone()),
            labels: Some(pod.labels.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: LAB_CONTAINER.to_owned(),
                ports: (!ports.is_empty()).then_some(ports),
                ..Container::default()
            }],
            service_account_name: pod.service_account.clone(),
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            pod_ip: Some(pod.ip.to_string()),
            pod_ips: Some(vec![PodIP { ip: pod.ip.to_string() }]),
            phase: Some("Running".to_owned()),
            ..PodStatus::default()
        }),
    }
}

/// The inventory of a lab: its pods as built, `namespaces`, and `policies` (NetworkPolicies
/// alone, or [`LabPolicies`] with the other kinds). Fails on the first invalid policy (the
/// error names its file, document and field).
pub fn lab_inventory(
    topology: &Topology,
    namespaces: &[Namespace],
    policies: impl Into<LabPolicies>,
) -> Result<Inventory> {
    let policies = policies.into();
    let objects = ClusterObjects {
        namespaces: namespaces.to_vec(),
        pods: topology.pods.iter().map(pod_object).collect(),
        network_policies: policies.network_policies,
        tiered: policies.tiered,
        ..ClusterObjects::default()
    };
    Ok(Inventory::from_objects(objects, InventoryOptions::default())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::naming::LabNames;
    use crate::lab::topology::build_topology;
    use crate::manifest::{Syntax, parse_manifest};

    const MANIFESTS: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: db, labels: {team: data}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: app, labels: {app: web}}
spec: {containers: [{name: c, ports: [{containerPort: 8080, name: http}, {containerPort: 53, protocol: UDP}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: mysql-0, namespace: db, labels: {app: mysql}}
spec: {containers: [{name: c, ports: [{containerPort: 3306, name: mysql}]}]}
status: {podIP: 10.244.2.7}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: mysql-ingress, namespace: db}
spec:
  podSelector: {matchLabels: {app: mysql}}
  ingress: [{ports: [{port: mysql}]}]
";

    #[test]
    fn the_inventory_sees_lab_ips_ports_labels_and_namespaces() {
        let mut objects = ClusterObjects::default();
        parse_manifest(MANIFESTS, std::path::Path::new("m.yaml"), Syntax::Yaml, &mut objects)
            .unwrap();
        let topology = build_topology(&LabNames::new("t").unwrap(), &objects.pods).unwrap();
        let stored: Vec<StoredPolicy> =
            objects.network_policies.iter().map(StoredPolicy::from_sourced).collect();
        assert_eq!(stored[0].file.as_deref(), Some(std::path::Path::new("m.yaml")));
        assert_eq!(stored[0].document, Some(4));
        let policies: Vec<_> = stored.iter().map(|s| s.to_sourced().unwrap()).collect();
        let inventory = lab_inventory(&topology, &objects.namespaces, policies).unwrap();
        let web = inventory.pod(inventory.pod_id("app", "web").unwrap());
        assert_eq!(web.ips, vec!["10.244.0.1".parse::<std::net::IpAddr>().unwrap()]);
        assert_eq!(web.ports.len(), 2);
        assert_eq!(web.labels.get("app").map(String::as_str), Some("web"));
        let db = inventory.pod_id("db", "mysql-0").unwrap();
        assert_eq!(inventory.pod_by_ip("10.244.2.7".parse().unwrap()), Some(db));
        assert_eq!(inventory.namespace_labels("db").unwrap().get("team").unwrap(), "data");
        let (_, policy) = inventory.policies().next().unwrap();
        assert_eq!(policy.selected, vec![db]);
        assert!(
            matches!(&policy.sourced.source, PolicySource::File { document: 4, .. }),
            "{:?}",
            policy.sourced.source
        );
    }

    #[test]
    fn an_invalid_policy_is_reported_with_its_field() {
        let topology = build_topology(&LabNames::new("t").unwrap(), &[]).unwrap();
        let policy: NetworkPolicy = serde_yaml_ng::from_str(
            "{metadata: {name: p, namespace: x}, spec: {ingress: [{ports: [{port: 0}]}]}}",
        )
        .unwrap();
        let err = lab_inventory(&topology, &[], vec![in_memory_policy(policy)]).unwrap_err();
        assert!(err.to_string().contains("spec.ingress[0].ports[0].port"), "{err}");
    }
}

//! What the inventory keeps of a pod and a namespace: what policies need, nothing more.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};

use super::intern::Interner;
use crate::policy::{ContainerPort, Labels, Protocol};

/// The service account admission gives a pod that names none.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// Index of a pod in an [`super::Inventory`]; stable across
/// [`super::Inventory::with_policies_replaced`], which shares the pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodId(pub(crate) u32);

impl PodId {
    pub(crate) fn index(self) -> usize {
        self.0 as usize
    }
}

/// Index of a namespace in an [`super::Inventory`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamespaceId(pub(crate) u32);

impl NamespaceId {
    pub(crate) fn index(self) -> usize {
        self.0 as usize
    }
}

/// `namespace/name` of a pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PodRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl fmt::Display for PodRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A pod as policies see it. Label sets and port lists are shared between the pods that carry
/// equal ones (see [`Interner`]).
#[derive(Debug, Clone)]
pub struct PodInfo {
    /// Namespace and name.
    pub pod: PodRef,
    /// `metadata.labels`.
    pub labels: Arc<Labels>,
    /// `status.podIPs` (or `status.podIP`), primary first.
    pub ips: Vec<IpAddr>,
    /// Ports its containers declare, for named-port resolution.
    pub ports: Arc<[ContainerPort]>,
    /// `spec.serviceAccountName` (`default`, as admission sets it, when absent).
    pub service_account: String,
    /// `spec.hostNetwork`: such pods share the node's address and are left out of the IP index.
    pub host_network: bool,
    /// `status.phase` is Succeeded or Failed: its address may already belong to a new pod, so it
    /// is left out of the IP index.
    pub finished: bool,
}

impl PodInfo {
    /// Reads the fields policies need; `default_namespace` stands in for a missing namespace.
    /// Unparseable IPs and out-of-range container ports are skipped with a debug log.
    pub(crate) fn from_pod(pod: &Pod, default_namespace: &str) -> Self {
        Self::from_pod_interned(pod, default_namespace, &mut Interner::default())
    }

    /// [`Self::from_pod`] with the label set and the port list taken from `interner`.
    pub fn from_pod_interned(pod: &Pod, default_namespace: &str, interner: &mut Interner) -> Self {
        let namespace =
            pod.metadata.namespace.clone().unwrap_or_else(|| default_namespace.to_owned());
        let name = pod.metadata.name.clone().unwrap_or_default();
        let status = pod.status.as_ref();
        let mut ips: Vec<IpAddr> = Vec::new();
        let texts = status.and_then(|s| s.pod_ip.as_deref()).into_iter().chain(
            status
                .and_then(|s| s.pod_ips.as_deref())
                .unwrap_or_default()
                .iter()
                .map(|p| p.ip.as_str()),
        );
        for text in texts {
            match text.parse::<IpAddr>() {
                Ok(ip) if !ips.contains(&ip) => ips.push(ip),
                Ok(_) => {}
                Err(_) => {
                    tracing::debug!(pod = %format!("{namespace}/{name}"), ip = text, "ignoring unparseable pod IP")
                }
            }
        }
        let spec = pod.spec.as_ref();
        let ports = spec
            .map(|s| s.containers.as_slice())
            .unwrap_or_default()
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                let protocol = Protocol::from_api(p.protocol.as_deref()).ok()?;
                let port = u16::try_from(p.container_port).ok().filter(|&p| p != 0)?;
                Some(ContainerPort { name: p.name.clone(), protocol, port })
            })
            .collect();
        ips.shrink_to_fit();
        Self {
            pod: PodRef { namespace, name },
            labels: interner.labels(pod.metadata.labels.clone().unwrap_or_default()),
            ips,
            ports: interner.ports(ports),
            service_account: spec
                .and_then(|s| s.service_account_name.clone().or_else(|| s.service_account.clone()))
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| DEFAULT_SERVICE_ACCOUNT.to_owned()),
            host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
            finished: matches!(
                status.and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            ),
        }
    }

    /// The pod's address in the family of `peer` if it has one, else its primary address.
    pub fn ip_for_peer(&self, peer: Option<IpAddr>) -> Option<IpAddr> {
        peer.and_then(|peer| self.ips.iter().copied().find(|ip| ip.is_ipv4() == peer.is_ipv4()))
            .or_else(|| self.ips.first().copied())
    }
}

/// A namespace as selectors see it.
#[derive(Debug, Clone)]
pub struct NamespaceInfo {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`, always including `kubernetes.io/metadata.name`.
    pub labels: Labels,
    /// Whether the namespace was declared, rather than inferred from objects in it.
    pub declared: bool,
}

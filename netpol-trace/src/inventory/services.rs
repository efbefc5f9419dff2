//! Services and EndpointSlices: a Service name and port to the backing pods and the port each
//! pod actually receives on (a named `targetPort` resolves per pod).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::catalog::Catalog;
use super::error::LookupError;
use super::pods::PodId;
use crate::policy::Protocol;

/// The label tying an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A port given by number or by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PortRef {
    /// A port number.
    Number(u16),
    /// A port name (container port name, or Service port name for a Service).
    Name(String),
}

impl fmt::Display for PortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::Name(name) => f.write_str(name),
        }
    }
}

impl std::str::FromStr for PortRef {
    type Err = String;

    /// A number 1-65535 or a name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err("empty port".into());
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return s
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .map(Self::Number)
                .ok_or_else(|| format!("port {s} is out of range 1-65535"));
        }
        Ok(Self::Name(s.to_owned()))
    }
}

/// A pod behind a Service and the port it receives the Service's traffic on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceBackend {
    /// The pod.
    pub pod: PodId,
    /// Its target port for the chosen Service port.
    pub port: u16,
}

/// A Service port as the index keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePortInfo {
    /// `name`, if any.
    pub name: Option<String>,
    /// `protocol` (TCP when absent); `None` for a protocol policies cannot name.
    pub protocol: Option<Protocol>,
    /// `port`.
    pub port: i32,
    /// `targetPort`, if given.
    pub target_port: Option<IntOrString>,
}

/// A Service reduced to what attribution reads: its ClusterIPs, selector and ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `spec.clusterIP` and `spec.clusterIPs`, parsed.
    pub cluster_ips: Vec<IpAddr>,
    /// `spec.selector`, when not empty, as sorted pairs (a map costs a tree node per Service).
    pub selector: Option<Vec<(String, String)>>,
    /// `spec.ports`.
    pub ports: Vec<ServicePortInfo>,
}

impl ServiceInfo {
    /// Reduces `service`; `None` without a name.
    pub fn from_service(service: &Service, default_namespace: &str) -> Option<Self> {
        let name = service.metadata.name.clone()?;
        let namespace =
            service.metadata.namespace.clone().unwrap_or_else(|| default_namespace.to_owned());
        let spec = service.spec.as_ref();
        let mut cluster_ips: Vec<IpAddr> = Vec::new();
        let texts = spec.and_then(|s| s.cluster_ip.as_deref()).into_iter().chain(
            spec.and_then(|s| s.cluster_ips.as_deref())
                .unwrap_or_default()
                .iter()
                .map(String::as_str),
        );
        for ip in texts.filter_map(|ip| ip.parse::<IpAddr>().ok()) {
            if !cluster_ips.contains(&ip) {
                cluster_ips.push(ip);
            }
        }
        let ports = spec
            .and_then(|s| s.ports.as_deref())
            .unwrap_or_default()
            .iter()
            .map(|p| ServicePortInfo {
                name: p.name.clone(),
                protocol: Protocol::from_api(p.protocol.as_deref()).ok(),
                port: p.port,
                target_port: p.target_port.clone(),
            })
            .collect();
        let selector = spec
            .and_then(|s| s.selector.as_ref())
            .filter(|s| !s.is_empty())
            .map(|s| s.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
        Some(Self { namespace, name, cluster_ips, selector, ports })
    }
}

/// One endpoint of an EndpointSlice: the pod it names and its addresses (boxed slices and
/// strings: a slice holds many endpoints and never grows them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointInfo {
    /// `targetRef.name` when it names a Pod.
    pub pod: Option<Box<str>>,
    /// `targetRef.namespace` when it names another namespace than the slice's.
    pub pod_namespace: Option<Box<str>>,
    /// `addresses`, parsed.
    pub addresses: Box<[IpAddr]>,
}

/// An EndpointSlice reduced to the Service it belongs to and its endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceInfo {
    /// Namespace (the Service's).
    pub namespace: String,
    /// Name of the slice.
    pub name: String,
    /// The `kubernetes.io/service-name` label.
    pub service: String,
    /// The endpoints.
    pub endpoints: Box<[EndpointInfo]>,
    /// Whether the endpoints were left out ([`Self::without_endpoints`]).
    pub endpoints_left_out: bool,
}

impl SliceInfo {
    /// Reduces `slice`; `None` without a name or a Service label.
    pub fn from_slice(slice: &EndpointSlice, default_namespace: &str) -> Option<Self> {
        let service = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?.clone();
        let name = slice.metadata.name.clone().unwrap_or_default();
        let namespace =
            slice.metadata.namespace.clone().unwrap_or_else(|| default_namespace.to_owned());
        let endpoints = slice
            .endpoints
            .iter()
            .map(|endpoint| {
                let target =
                    endpoint.target_ref.as_ref().filter(|r| r.kind.as_deref() == Some("Pod"));
                let pod = target.and_then(|r| r.name.as_deref()).map(Box::from);
                let pod_namespace = target
                    .and_then(|r| r.namespace.as_deref())
                    .filter(|ns| pod.is_some() && *ns != namespace)
                    .map(Box::from);
                EndpointInfo {
                    pod,
                    pod_namespace,
                    addresses: endpoint.addresses.iter().filter_map(|a| a.parse().ok()).collect(),
                }
            })
            .collect();
        Some(Self { namespace, name, service, endpoints, endpoints_left_out: false })
    }

    /// The slice without its endpoints: what is kept of a slice of a Service that has a
    /// selector, whose backends resolve from the pods it selects, never from its slices.
    pub fn without_endpoints(self) -> Self {
        Self { endpoints: Box::default(), endpoints_left_out: true, ..self }
    }
}

/// Services and EndpointSlices by namespace/name, reduced ([`ServiceInfo`], [`SliceInfo`])
/// and shared with the cache they come from.
#[derive(Debug, Default)]
pub struct ServiceIndex {
    services: BTreeMap<(String, String), Arc<ServiceInfo>>,
    slices: HashMap<(String, String), Vec<Arc<SliceInfo>>>,
    by_cluster_ip: HashMap<IpAddr, Arc<ServiceInfo>>,
}

impl ServiceIndex {
    /// Indexes reduced services and slices (later duplicates of a Service replace earlier ones).
    pub fn from_shared(
        services: impl IntoIterator<Item = Arc<ServiceInfo>>,
        slices: impl IntoIterator<Item = Arc<SliceInfo>>,
    ) -> Self {
        let mut index = Self::default();
        for service in services {
            for ip in &service.cluster_ips {
                index.by_cluster_ip.insert(*ip, Arc::clone(&service));
            }
            index.services.insert((service.namespace.clone(), service.name.clone()), service);
        }
        for slice in slices {
            let key = (slice.namespace.clone(), slice.service.clone());
            index.slices.entry(key).or_default().push(slice);
        }
        index
    }

    /// A Service by namespace and name.
    pub fn service(&self, namespace: &str, name: &str) -> Option<&ServiceInfo> {
        self.services.get(&(namespace.to_owned(), name.to_owned())).map(|s| &**s)
    }

    /// All Services, sorted by namespace/name.
    pub fn services(&self) -> impl Iterator<Item = &ServiceInfo> {
        self.services.values().map(|s| &**s)
    }

    /// The Service (namespace, name) whose ClusterIP is `ip`.
    pub fn by_cluster_ip(&self, ip: IpAddr) -> Option<(&str, &str)> {
        self.by_cluster_ip.get(&ip).map(|s| (s.namespace.as_str(), s.name.as_str()))
    }

    /// Resolves Service `namespace/name` and its port `port` (number or name; optional when the
    /// Service has exactly one port of `protocol`) to backing pods and their target ports.
    pub fn backends(
        &self,
        catalog: &Catalog,
        namespace: &str,
        name: &str,
        port: Option<&PortRef>,
        protocol: Protocol,
    ) -> Result<Vec<ServiceBackend>, LookupError> {
        let key = format!("{namespace}/{name}");
        let service = self.service(namespace, name).ok_or_else(|| LookupError::UnknownService {
            namespace: namespace.into(),
            name: name.into(),
        })?;
        let ports = &service.ports;
        let service_port = choose_service_port(ports, port, protocol).ok_or_else(|| {
            LookupError::UnknownServicePort {
                service: key.clone(),
                port: port.map(ToString::to_string).unwrap_or_default(),
                protocol,
                available: describe_ports(ports),
            }
        })?;
        let pods = self.backing_pods(catalog, namespace, name, service);
        if pods.is_empty() {
            return Err(LookupError::NoBackends { service: key, detail: String::new() });
        }
        let backends: Vec<ServiceBackend> = pods
            .into_iter()
            .filter_map(|pod| {
                target_port(catalog, pod, service_port, protocol)
                    .map(|port| ServiceBackend { pod, port })
            })
            .collect();
        if backends.is_empty() {
            let target = service_port.target_port.as_ref().map(describe_target).unwrap_or_default();
            return Err(LookupError::NoBackends {
                service: key,
                detail: format!(": no backing pod declares the {protocol} target port {target:?}"),
            });
        }
        Ok(backends)
    }

    fn backing_pods(
        &self,
        catalog: &Catalog,
        namespace: &str,
        name: &str,
        service: &ServiceInfo,
    ) -> Vec<PodId> {
        if let Some(selector) = &service.selector {
            let Some(ns) = catalog.namespace_id(namespace) else { return Vec::new() };
            return catalog
                .pods_in(ns)
                .iter()
                .copied()
                .filter(|&id| {
                    let labels = &catalog.pod(id).labels;
                    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
                })
                .collect();
        }
        let mut pods: Vec<PodId> = self
            .slices
            .get(&(namespace.to_owned(), name.to_owned()))
            .into_iter()
            .flatten()
            .flat_map(|slice| slice.endpoints.iter())
            .filter_map(|endpoint| {
                let by_ref = endpoint.pod.as_deref().and_then(|pod| {
                    catalog.pod_id(endpoint.pod_namespace.as_deref().unwrap_or(namespace), pod)
                });
                by_ref.or_else(|| endpoint.addresses.iter().find_map(|a| catalog.pod_by_ip(*a)))
            })
            .collect();
        pods.sort_unstable();
        pods.dedup();
        pods
    }
}

fn choose_service_port<'a>(
    ports: &'a [ServicePortInfo],
    wanted: Option<&PortRef>,
    protocol: Protocol,
) -> Option<&'a ServicePortInfo> {
    let mut candidates = ports.iter().filter(|p| p.protocol == Some(protocol));
    match wanted {
        Some(PortRef::Number(n)) => candidates.find(|p| p.port == i32::from(*n)),
        Some(PortRef::Name(name)) => candidates.find(|p| p.name.as_deref() == Some(name)),
        None => {
            let first = candidates.next()?;
            candidates.next().is_none().then_some(first)
        }
    }
}

fn target_port(
    catalog: &Catalog,
    pod: PodId,
    service_port: &ServicePortInfo,
    protocol: Protocol,
) -> Option<u16> {
    match &service_port.target_port {
        None => u16::try_from(service_port.port).ok(),
        Some(IntOrString::Int(n)) => u16::try_from(*n).ok().filter(|&p| p != 0),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<u16>() {
                return Some(n);
            }
            catalog
                .pod(pod)
                .ports
                .iter()
                .find(|c| c.name.as_deref() == Some(name) && c.protocol == protocol)
                .map(|c| c.port)
        }
    }
}

fn describe_target(target: &IntOrString) -> String {
    match target {
        IntOrString::Int(n) => n.to_string(),
        IntOrString::String(s) => s.clone(),
    }
}

fn describe_ports(ports: &[ServicePortInfo]) -> String {
    if ports.is_empty() {
        return "none".into();
    }
    ports
        .iter()
        .map(|p| {
            let protocol = p.protocol.map_or_else(|| "?".to_owned(), |p| p.to_string());
            match &p.name {
                Some(name) => format!("{name} {}/{protocol}", p.port),
                None => format!("{}/{protocol}", p.port),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

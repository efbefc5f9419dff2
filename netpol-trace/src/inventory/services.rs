//! Services and EndpointSlices: a Service name and port to the backing pods and the port each
//! pod actually receives on (a named `targetPort` resolves per pod).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Service, ServicePort};
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

/// Services and EndpointSlices by namespace/name.
#[derive(Debug, Default)]
pub struct ServiceIndex {
    services: BTreeMap<(String, String), Service>,
    slices: BTreeMap<(String, String), Vec<EndpointSlice>>,
    by_cluster_ip: BTreeMap<IpAddr, (String, String)>,
}

impl ServiceIndex {
    /// Indexes services and slices; objects without a namespace go to `default_namespace`.
    pub fn build(services: &[Service], slices: &[EndpointSlice], default_namespace: &str) -> Self {
        let namespace_of =
            |ns: &Option<String>| ns.clone().unwrap_or_else(|| default_namespace.to_owned());
        let mut index = Self::default();
        for service in services {
            let Some(name) = service.metadata.name.clone() else { continue };
            let key = (namespace_of(&service.metadata.namespace), name);
            let spec = service.spec.as_ref();
            let cluster_ips = spec.and_then(|s| s.cluster_ip.as_deref()).into_iter().chain(
                spec.and_then(|s| s.cluster_ips.as_deref())
                    .unwrap_or_default()
                    .iter()
                    .map(String::as_str),
            );
            for ip in cluster_ips.filter_map(|ip| ip.parse::<IpAddr>().ok()) {
                index.by_cluster_ip.insert(ip, key.clone());
            }
            index.services.insert(key, service.clone());
        }
        for slice in slices {
            let service_name =
                slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL));
            let Some(service_name) = service_name else { continue };
            let key = (namespace_of(&slice.metadata.namespace), service_name.clone());
            index.slices.entry(key).or_default().push(slice.clone());
        }
        index
    }

    /// A Service by namespace and name.
    pub fn service(&self, namespace: &str, name: &str) -> Option<&Service> {
        self.services.get(&(namespace.to_owned(), name.to_owned()))
    }

    /// All Services, sorted by namespace/name.
    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.services.values()
    }

    /// The Service (namespace, name) whose ClusterIP is `ip`.
    pub fn by_cluster_ip(&self, ip: IpAddr) -> Option<(&str, &str)> {
        self.by_cluster_ip.get(&ip).map(|(ns, name)| (ns.as_str(), name.as_str()))
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
        let ports = service.spec.as_ref().and_then(|s| s.ports.as_deref()).unwrap_or_default();
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
        service: &Service,
    ) -> Vec<PodId> {
        let selector =
            service.spec.as_ref().and_then(|s| s.selector.as_ref()).filter(|s| !s.is_empty());
        if let Some(selector) = selector {
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
            .flat_map(|slice| &slice.endpoints)
            .filter_map(|endpoint| {
                let by_ref = endpoint
                    .target_ref
                    .as_ref()
                    .filter(|r| r.kind.as_deref() == Some("Pod"))
                    .and_then(|r| {
                        catalog
                            .pod_id(r.namespace.as_deref().unwrap_or(namespace), r.name.as_deref()?)
                    });
                by_ref.or_else(|| {
                    endpoint.addresses.iter().find_map(|a| catalog.pod_by_ip(a.parse().ok()?))
                })
            })
            .collect();
        pods.sort_unstable();
        pods.dedup();
        pods
    }
}

fn service_port_protocol(port: &ServicePort) -> Option<Protocol> {
    Protocol::from_api(port.protocol.as_deref()).ok()
}

fn choose_service_port<'a>(
    ports: &'a [ServicePort],
    wanted: Option<&PortRef>,
    protocol: Protocol,
) -> Option<&'a ServicePort> {
    let mut candidates = ports.iter().filter(|p| service_port_protocol(p) == Some(protocol));
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
    service_port: &ServicePort,
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

fn describe_ports(ports: &[ServicePort]) -> String {
    if ports.is_empty() {
        return "none".into();
    }
    ports
        .iter()
        .map(|p| {
            let protocol = p.protocol.as_deref().unwrap_or("TCP");
            match &p.name {
                Some(name) => format!("{name} {}/{protocol}", p.port),
                None => format!("{}/{protocol}", p.port),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

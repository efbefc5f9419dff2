//! Command-line endpoints to flows: `--from`/`--to` as `NAMESPACE/POD`, `POD` (in the default
//! namespace, `-n`), an IP address, or for `--to` a Service `svc/NAMESPACE/NAME` (also reached by
//! its ClusterIP), which resolves to one flow per backing pod on that pod's target port.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use super::{EndpointSpec, Flow, FlowEndpoint};
use crate::inventory::{Inventory, LookupError, PodId, PortRef};
use crate::policy::Protocol;

/// An endpoint as typed on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointArg {
    /// `NAMESPACE/POD` or `POD` (namespace `None`: the default one).
    Pod {
        /// Namespace, when given.
        namespace: Option<String>,
        /// Pod name.
        name: String,
    },
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
    /// `svc/NAMESPACE/NAME` (or `service/NAMESPACE/NAME`).
    Service {
        /// Namespace.
        namespace: String,
        /// Service name.
        name: String,
    },
}

impl FromStr for EndpointArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Self::Ip(ip));
        }
        let parts: Vec<&str> = s.split('/').collect();
        let valid = |part: &&str| !part.is_empty();
        match parts.as_slice() {
            [name] if valid(name) => Ok(Self::Pod { namespace: None, name: (*name).to_owned() }),
            [namespace, name] if valid(namespace) && valid(name) => {
                Ok(Self::Pod { namespace: Some((*namespace).to_owned()), name: (*name).to_owned() })
            }
            ["svc" | "service", namespace, name] if valid(namespace) && valid(name) => {
                Ok(Self::Service { namespace: (*namespace).to_owned(), name: (*name).to_owned() })
            }
            _ => Err(format!(
                "invalid endpoint {s:?}: want NAMESPACE/POD, POD, an IP address, or svc/NAMESPACE/NAME"
            )),
        }
    }
}

impl fmt::Display for EndpointArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pod { namespace: Some(ns), name } => write!(f, "{ns}/{name}"),
            Self::Pod { namespace: None, name } => f.write_str(name),
            Self::Ip(ip) => write!(f, "{ip}"),
            Self::Service { namespace, name } => write!(f, "svc/{namespace}/{name}"),
        }
    }
}

/// What the user asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRequest {
    /// `--from`.
    pub from: EndpointArg,
    /// `--to`.
    pub to: EndpointArg,
    /// `--port`: destination port (number or container port name), or the Service port (number
    /// or name) when `to` is a Service. Optional only for a Service with a single port.
    pub port: Option<PortRef>,
    /// `--protocol`.
    pub protocol: Protocol,
    /// Namespace for bare pod names (`-n`).
    pub namespace: String,
}

/// The Service a flow was reached through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceTarget {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// A flow resolved from a request, with the Service it went through, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedFlow {
    /// The flow.
    pub flow: Flow,
    /// The Service `--to` named (or whose ClusterIP it gave).
    pub service: Option<ServiceTarget>,
}

/// Why a request does not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// A pod, service or port name that the inventory lacks.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// No `--port` for a destination that needs one.
    #[error("--port is required when --to is {0}")]
    MissingPort(String),
    /// `--from` named a Service.
    #[error("--from cannot be a service ({0}); name a pod or an IP address")]
    ServiceAsSource(String),
}

/// Resolves `request` to flows: one for a pod or address destination, one per backing pod for a
/// Service.
pub fn resolve_flows(
    inventory: &Inventory,
    request: &FlowRequest,
) -> Result<Vec<ResolvedFlow>, ResolveError> {
    let src = endpoint_spec(inventory, &request.from, &request.namespace)?;
    let service = match &request.to {
        EndpointArg::Service { namespace, name } => {
            Some(ServiceTarget { namespace: namespace.clone(), name: name.clone() })
        }
        EndpointArg::Ip(ip) if inventory.pod_by_ip(*ip).is_none() => {
            inventory.service_by_cluster_ip(*ip).map(|(namespace, name)| ServiceTarget {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })
        }
        _ => None,
    };
    if let Some(service) = service {
        let backends = inventory.service_backends(
            &service.namespace,
            &service.name,
            request.port.as_ref(),
            request.protocol,
        )?;
        return Ok(backends
            .into_iter()
            .map(|backend| ResolvedFlow {
                flow: Flow::new(
                    inventory,
                    src,
                    EndpointSpec::Pod(backend.pod),
                    backend.port,
                    request.protocol,
                ),
                service: Some(service.clone()),
            })
            .collect());
    }
    let dst = endpoint_spec(inventory, &request.to, &request.namespace)?;
    let port =
        request.port.as_ref().ok_or_else(|| ResolveError::MissingPort(request.to.to_string()))?;
    let unresolved = Flow::new(inventory, src, dst, 0, request.protocol);
    let port = match (port, unresolved.dst) {
        (PortRef::Number(n), _) => *n,
        (PortRef::Name(name), FlowEndpoint::Pod { id, .. }) => {
            named_port(inventory, id, name, request.protocol)?
        }
        (PortRef::Name(name), FlowEndpoint::External { ip }) => {
            return Err(LookupError::PortNameForAddress { port: name.clone(), ip }.into());
        }
    };
    Ok(vec![ResolvedFlow { flow: Flow { port, ..unresolved }, service: None }])
}

fn endpoint_spec(
    inventory: &Inventory,
    arg: &EndpointArg,
    default_namespace: &str,
) -> Result<EndpointSpec, ResolveError> {
    match arg {
        EndpointArg::Ip(ip) => Ok(EndpointSpec::Ip(*ip)),
        EndpointArg::Pod { namespace, name } => {
            let namespace = namespace.as_deref().unwrap_or(default_namespace);
            inventory.pod_id(namespace, name).map(EndpointSpec::Pod).ok_or_else(|| {
                LookupError::UnknownPod { namespace: namespace.to_owned(), name: name.clone() }
                    .into()
            })
        }
        // `--to` Services are resolved before this; only `--from` gets here with one.
        EndpointArg::Service { .. } => Err(ResolveError::ServiceAsSource(arg.to_string())),
    }
}

fn named_port(
    inventory: &Inventory,
    pod: PodId,
    name: &str,
    protocol: Protocol,
) -> Result<u16, LookupError> {
    let info = inventory.pod(pod);
    info.ports
        .iter()
        .find(|c| c.name.as_deref() == Some(name) && c.protocol == protocol)
        .map(|c| c.port)
        .ok_or_else(|| LookupError::UnknownPortName {
            pod: info.pod.to_string(),
            port: name.to_owned(),
            protocol,
        })
}

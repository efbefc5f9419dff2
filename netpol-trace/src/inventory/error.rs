//! Errors building an inventory or looking things up in it.

use crate::policy::{PolicyError, Protocol};

use super::policies::PolicySource;

/// A policy that failed validation while building an inventory.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{source_location}: {error}")]
pub struct InvalidPolicy {
    /// Where it came from (file and document, or cluster).
    pub source_location: PolicySource,
    /// What is wrong, naming the policy and field (boxed: errors stay small on the happy path).
    pub error: Box<PolicyError>,
}

/// Something named on a command line or in a packet that the inventory does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// No such pod.
    #[error("pod {namespace}/{name} not found")]
    UnknownPod {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// No such service.
    #[error("service {namespace}/{name} not found")]
    UnknownService {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The service has no port matching the request.
    #[error("service {service} has no {protocol} port {port} (ports: {available})")]
    UnknownServicePort {
        /// `namespace/name`.
        service: String,
        /// The port asked for (number or name; empty when none was given).
        port: String,
        /// Protocol asked for.
        protocol: Protocol,
        /// The ports it has, e.g. `mysql 3306/TCP, 9104/TCP`.
        available: String,
    },
    /// The service selects no pods (or its named target port exists on none of them).
    #[error("service {service} has no backing pods{detail}")]
    NoBackends {
        /// `namespace/name`.
        service: String,
        /// Extra detail, starting with a separator, or empty.
        detail: String,
    },
    /// A named port that the destination pod does not declare for the protocol.
    #[error("port name {port:?} not found on pod {pod} for {protocol}")]
    UnknownPortName {
        /// `namespace/name` of the destination pod.
        pod: String,
        /// The name.
        port: String,
        /// Protocol.
        protocol: Protocol,
    },
    /// A port given by name for a destination that is not a pod.
    #[error("port name {port:?} needs a pod or service destination, not the address {ip}")]
    PortNameForAddress {
        /// The name.
        port: String,
        /// The destination address.
        ip: std::net::IpAddr,
    },
}

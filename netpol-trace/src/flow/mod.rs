//! A connection attempt as the policy engine sees it: source, destination, port, protocol, with
//! each end resolved through an [`Inventory`] to a known pod or an outside address.
//!
//! * [`Flow::from_packet`]: from an observed packet (addresses, destination port, protocol).
//! * [`resolve`]: from command-line endpoints (`NS/POD`, `POD`, an IP, `svc/NS/NAME`).

pub mod resolve;

use std::net::IpAddr;

use crate::inventory::{Inventory, PodId};
use crate::policy::Protocol;

pub use resolve::{
    EndpointArg, FlowRequest, ResolveError, ResolvedFlow, ServiceTarget, resolve_flows,
};

/// One end of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowEndpoint {
    /// A known pod, and the address it uses for this flow (if it has one).
    Pod {
        /// The pod.
        id: PodId,
        /// Its address for this flow.
        ip: Option<IpAddr>,
    },
    /// An address that belongs to no known pod.
    External {
        /// The address.
        ip: IpAddr,
    },
}

impl FlowEndpoint {
    /// The endpoint's address, if known.
    pub fn ip(&self) -> Option<IpAddr> {
        match *self {
            Self::Pod { ip, .. } => ip,
            Self::External { ip } => Some(ip),
        }
    }

    /// The pod, if the endpoint is one.
    pub fn pod(&self) -> Option<PodId> {
        match *self {
            Self::Pod { id, .. } => Some(id),
            Self::External { .. } => None,
        }
    }
}

/// How a caller names an end before resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointSpec {
    /// A pod of the inventory.
    Pod(PodId),
    /// An address: the pod that owns it, if any, else an outside endpoint.
    Ip(IpAddr),
}

/// A connection attempt: `src` → `dst` on `port`/`protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    /// Who connects.
    pub src: FlowEndpoint,
    /// Who is connected to.
    pub dst: FlowEndpoint,
    /// Destination port.
    pub port: u16,
    /// Protocol.
    pub protocol: Protocol,
}

impl Flow {
    /// Resolves both ends through `inventory`. An address owned by a pod becomes that pod. A pod
    /// given without an address uses its address in the family of the other end (or its first).
    pub fn new(
        inventory: &Inventory,
        src: EndpointSpec,
        dst: EndpointSpec,
        port: u16,
        protocol: Protocol,
    ) -> Self {
        let src = resolve_end(inventory, src);
        let dst = resolve_end(inventory, dst);
        let fill = |end: FlowEndpoint, other: FlowEndpoint| match end {
            FlowEndpoint::Pod { id, ip: None } => {
                FlowEndpoint::Pod { id, ip: inventory.pod(id).ip_for_peer(other.ip()) }
            }
            end => end,
        };
        Self { src: fill(src, dst), dst: fill(dst, src), port, protocol }
    }

    /// A flow from an observed packet: source and destination addresses, destination port,
    /// protocol. Addresses owned by pods resolve to those pods.
    pub fn from_packet(
        inventory: &Inventory,
        src: IpAddr,
        dst: IpAddr,
        port: u16,
        protocol: Protocol,
    ) -> Self {
        Self::new(inventory, EndpointSpec::Ip(src), EndpointSpec::Ip(dst), port, protocol)
    }
}

fn resolve_end(inventory: &Inventory, spec: EndpointSpec) -> FlowEndpoint {
    match spec {
        EndpointSpec::Pod(id) => FlowEndpoint::Pod { id, ip: None },
        EndpointSpec::Ip(ip) => match inventory.pod_by_ip(ip) {
            Some(id) => FlowEndpoint::Pod { id, ip: Some(ip) },
            None => FlowEndpoint::External { ip },
        },
    }
}

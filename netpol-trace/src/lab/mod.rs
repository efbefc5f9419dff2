//! The lab: a local replica of a Kubernetes node built from manifests, where NetworkPolicies are
//! enforced by the kernel. A node network namespace without uplink, one network namespace per
//! Pod joined by Calico-style veth pairs, policies rendered into an nftables table in the node
//! namespace, a listener on every declared port and a real MariaDB where a Pod asks for it.
//!
//! Modules, one idea each:
//! * [`paths`], [`naming`]: every path, prefix and derived name;
//! * [`input`]: reading manifests; [`topology`]: pods, IPs, interfaces (pure);
//! * [`plan`]: the enforcement IR; [`render`]: IR to nftables (pure); [`enforce`]: loading it;
//! * [`wiring`], [`netns`], [`system`]: namespaces, veths, routes, tools;
//! * [`process`], [`listener`], [`mariadb`]: workloads; [`probe`]: real connection attempts;
//! * [`state`], [`lifecycle`]: `state.json`, up/down/ls/apply/exec; [`scenarios`]: built-ins.

pub mod enforce;
pub mod error;
pub mod input;
pub mod lifecycle;
pub mod listener;
pub mod mariadb;
pub mod naming;
pub mod netns;
pub mod paths;
pub mod plan;
pub mod probe;
pub mod process;
pub mod render;
pub mod scenarios;
pub mod state;
pub mod system;
pub mod topology;
pub mod wiring;

pub use error::{LabError, Result};
pub use lifecycle::{DownReport, LabContext, LabSummary};
pub use plan::{
    AllowRule, EnforcementPlan, PeerNet, PeerSet, PodPlan, PortRange, PortSet, Protocol,
};
pub use probe::{ProbeOutcome, ProbeResult};
pub use state::LabState;
pub use topology::{LabPod, Topology, Workload};

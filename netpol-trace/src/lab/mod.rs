//! The lab: a local replica of a Kubernetes node built from manifests, where network policies are
//! enforced by the kernel. A node network namespace without uplink, one network namespace per
//! Pod joined by Calico-style veth pairs, policies of every kind the engine evaluates
//! (NetworkPolicy, ClusterNetworkPolicy, AdminNetworkPolicy, BaselineAdminNetworkPolicy, Calico
//! policies in their tiers) rendered into an nftables table in the node namespace in evaluation
//! order, a listener on every declared port and a real MariaDB where a Pod asks for it.
//!
//! Modules, one idea each:
//! * [`paths`], [`naming`]: every path, prefix and derived name;
//! * [`topology`]: pods, IPs, interfaces (pure); [`objects`]: the lab's pods, namespaces and
//!   policies as an [`Inventory`](crate::inventory::Inventory) for the policy engine;
//! * [`plan`]: the enforcement IR; [`compile`]: policies to IR (pure); [`render`]: IR to
//!   nftables (pure); [`enforce`]: loading it;
//! * [`wiring`], [`system`]: namespaces, veths, routes, tools (entering namespaces is
//!   [`crate::netns`]);
//! * [`process`], [`listener`], [`mariadb`]: workloads; [`probe`]: real connection attempts;
//! * [`state`], [`lifecycle`]: `state.json`, up/down/ls/apply/exec; [`scenarios`]: built-ins.
//!
//! Manifests are read with [`manifest::load_paths`](crate::manifest::load_paths). The
//! NetworkPolicies a lab enforces can be replaced at any time with
//! [`lifecycle::apply_policies`]; [`lifecycle::inventory`] gives the policy engine's view of
//! the lab (pods as built, namespaces, current policies).

pub mod compile;
pub mod demo;
pub mod enforce;
pub mod error;
pub mod lifecycle;
pub mod listener;
pub mod mariadb;
pub mod naming;
pub mod objects;
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

pub use compile::plan_from_inventory;
pub use error::{LabError, Result};
pub use lifecycle::{DownReport, LabContext, LabSummary, PolicyChange};
pub use objects::{LabPolicies, StoredPolicy};
pub use plan::{
    AllowRule, EnforcementPlan, PeerNet, PeerSet, PodPlan, PortRange, PortSet, Protocol,
};
pub use probe::{ProbeOutcome, ProbeResult};
pub use state::LabState;
pub use topology::{LabPod, Topology, Workload};

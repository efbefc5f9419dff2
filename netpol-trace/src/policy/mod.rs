//! Pure semantics of `networking.k8s.io/v1` NetworkPolicy: validation, compilation into a
//! form that is cheap to evaluate, and the matching rules themselves. No I/O.
//!
//! * [`labels`]: label key and value syntax.
//! * [`selector`]: `LabelSelector` (matchLabels + matchExpressions).
//! * [`ip_block`]: `ipBlock` with `except`, IPv4 and IPv6.
//! * [`port`]: protocols, port numbers, ranges (`endPort`) and named ports.
//! * [`compiled`]: a validated policy, its rules and peers, and how a rule matches a flow.
//! * [`kind`]: the policy kinds and rule actions across APIs.
//! * [`admin`]: ClusterNetworkPolicy, AdminNetworkPolicy, BaselineAdminNetworkPolicy.
//! * [`calico`]: Calico NetworkPolicy, GlobalNetworkPolicy, Tier and the selector language.
//! * [`compile`]: turning a k8s-openapi `NetworkPolicy` into a [`CompiledPolicy`].

pub mod admin;
pub mod calico;
pub mod compile;
pub mod compiled;
pub mod error;
pub mod ip_block;
pub mod kind;
pub mod labels;
pub mod port;
pub mod selector;

pub use compile::compile_policy;
pub use compiled::{CompiledPolicy, CompiledRule, Direction, IpBlockPodMode, Peer, PeerIdentity};
pub use error::{FieldError, PolicyError};
pub use ip_block::IpBlock;
pub use kind::{PolicyKind, RuleAction, RuleEffect};
pub use port::{ContainerPort, PortMatch, PortRule, Protocol};
pub use selector::{Operator, Requirement, RequirementOrigin, Selector, ValueSet};

/// Labels of a pod or namespace, as in `metadata.labels`.
pub type Labels = std::collections::BTreeMap<String, String>;

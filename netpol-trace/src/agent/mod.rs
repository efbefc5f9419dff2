//! `agent`: the DaemonSet form of netpol-trace. On each node it watches the cluster
//! (reflectors), attaches the observe-only programs to every pod veth of the node (following
//! pods as they come and go), attributes each dropped SYN to its pods, Service and denying
//! NetworkPolicies, keeps the current dropped flows, and serves them over HTTP with health,
//! readiness and Prometheus metrics; it posts rate-limited Kubernetes Events on the
//! destination pod and prints the same NDJSON as `trace -o json`.
//!
//! * [`lifecycle`]: [`Agent`] — start, readiness, stop (everything detached).
//! * [`store`]: the bounded drop store and each flow's `dropping` → `restored` lifecycle.
//! * [`record`]: the `/drops` record model.
//! * [`attribute`]: live attribution, ClusterIPs through their backends.
//! * [`cluster`]: the inventory rebuilt from the watch caches.
//! * [`planner`]: fix planning off the loop, from a bounded de-duplicating queue.
//! * [`events`]: Kubernetes Events about drops.
//! * [`metrics`]: Prometheus metrics (prometheus-client, OpenMetrics), bounded labels.
//! * [`feed`]: publishing DropReports from a background task (the operator feed).
//! * [`routes`]: which host interface a pod address is routed to (its own veth).
//! * [`access`]: who may read `/metrics` and `/drops` (TokenReview, SubjectAccessReview).
//! * [`http`]: `/healthz`, `/readyz`, `/metrics`, `/drops`.
//! * [`state`]: what the loop and the HTTP server share.

pub mod access;
pub mod attribute;
pub mod cluster;
pub mod events;
pub mod feed;
pub mod http;
pub mod lifecycle;
pub mod metrics;
pub mod planner;
pub mod record;
pub mod routes;
pub mod state;
pub mod store;

pub use lifecycle::{Agent, AgentError, AgentOptions};
pub use record::{FlowRecord, FlowState, SuggestedFix};
pub use store::DropStore;

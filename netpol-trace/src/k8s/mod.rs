//! The Kubernetes API layer: connecting, reading the objects policy analysis needs (one-shot
//! snapshots or live reflectors), writing NetworkPolicies safely (backup, server-side dry run,
//! resourceVersion guard, restore), posting Events, and applying the same changes to manifest
//! files instead of a cluster.

pub mod apply;
pub mod backup;
pub mod client;
pub mod error;
pub mod events;
pub mod files;
pub mod rest;
pub mod restore;
pub mod snapshot;
pub mod watch;

pub use error::{Error, Result};
pub use snapshot::ClusterObjects;

#[cfg(test)]
mod tests;

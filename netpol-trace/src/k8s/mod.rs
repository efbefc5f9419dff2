//! The Kubernetes API layer: connecting, list calls and live reflectors, writing
//! NetworkPolicies safely (backup, server-side dry run, resourceVersion guard, restore) and
//! posting Events. Reading the objects analysis needs is `manifest`; applying a fix
//! plan is `apply`.

pub mod apply;
pub mod backup;
pub mod client;
pub mod error;
pub mod events;
pub mod list;
pub mod pods;
pub mod policy_kinds;
pub mod reduced;
pub mod rest;
pub mod restore;
pub mod watch;
pub mod watch_kinds;
pub mod watch_slices;

pub use error::{Error, Result};

#[cfg(test)]
mod tests;

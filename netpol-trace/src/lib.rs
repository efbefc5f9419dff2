//! netpol-trace: find the NetworkPolicy that drops a connection, from the kernel's own
//! evidence, and produce the minimal patch that allows exactly that flow.
//!
//! Modules, one concern each:
//! * [`datapath`]: the eBPF object, loading, attaching to veths, reading maps and events.
//! * [`k8s`]: the Kubernetes API: client, snapshots, reflectors, safe writes with backups,
//!   restore, Events, and the same changes applied to manifest files.
//! * [`cli`]: the `netpol-trace` command line.

pub mod cli;
pub mod datapath;
pub mod exit;
pub mod k8s;

//! netpol-trace: find the NetworkPolicy that drops a connection, from the kernel's own
//! evidence, and produce the minimal patch that allows exactly that flow.
//!
//! Modules, one concern each:
//! * [`datapath`]: the eBPF object, loading, attaching to veths, reading maps and events.
//! * [`lab`]: a local node replica from manifests, with policies enforced by nftables.
//! * [`cli`]: the `netpol-trace` command line.

pub mod cli;
pub mod datapath;
pub mod exit;
pub mod lab;
pub mod trace;

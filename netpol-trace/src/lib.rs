//! netpol-trace: find the NetworkPolicy that drops a connection, from the kernel's own
//! evidence, and produce the minimal patch that allows exactly that flow.
//!
//! Modules, one concern each:
//! * [`agent`]: the DaemonSet form: live attribution, drop store, HTTP, metrics, Events.
//! * [`datapath`]: the eBPF object, loading, attaching to veths, reading maps and events.
//! * [`lab`]: a local node replica from manifests, with policies enforced by nftables.
//! * [`trace`]: dropped SYNs and restored handshakes as events, NDJSON and pcap.
//! * [`k8s`]: the Kubernetes API: client, list calls, reflectors, guarded writes with backups,
//!   restore, Events.
//! * [`cli`]: the `netpol-trace` command line.
//! * [`policy`]: pure NetworkPolicy semantics (validation, compilation, matching).
//! * [`manifest`]: reading objects, from manifest files or the live cluster.
//! * [`apply`]: writing: manifest files changed with backups, fix plans written to files or
//!   to the cluster.
//! * [`inventory`]: the indexed snapshot of pods, namespaces, policies and services.
//! * [`flow`]: a connection attempt resolved to pods or outside addresses.
//! * [`explain`]: which policies and rules allow or deny a flow, with near-misses.
//! * [`fix`]: the minimal patch that allows a denied flow, proven with the engine (pure).
//! * [`output`]: table/JSON/YAML output helpers.
//! * [`report`]: the postmortem report (HTML, Markdown) from NDJSON streams or a DropReport.
//! * [`operator`]: DropReports, approval, the leader-elected controller that applies fixes.

pub mod agent;
pub mod apply;
pub mod args;
pub mod attribution;
pub mod cli;
pub mod datapath;
pub mod doctor;
pub mod exit;
pub mod explain;
pub mod fix;
pub mod flow;
pub mod inventory;
pub mod k8s;
pub mod lab;
pub mod manifest;
pub mod netns;
pub mod operator;
pub mod output;
pub mod policy;
pub mod report;
pub mod trace;

#[cfg(test)]
mod testing;

//! The kernel side as seen from user space: the embedded eBPF object, loading it with the
//! running kernel's offsets, attaching to veths, and reading what the programs observed.

pub mod attach;
pub mod btf;
pub mod ebpf_log;
pub mod flowmap;
pub mod kernel;
pub mod links;
pub mod object;
pub mod preflight;
pub mod programs;
pub mod tcfilter;

pub use crate::netns;
pub use flowmap::FlowMapPressure;
pub use programs::{Counters, Datapath, DatapathError, DatapathOptions};

/// Environment variable: `legacy` attaches with clsact + cls_bpf even where tcx exists
/// (older kernels' path, also for testing the stale-filter sweep).
pub const ENV_TC_MODE: &str = "NETPOL_TRACE_TC_MODE";
/// Environment variable: non-empty and not `0` runs tc-only, without the drop tracepoint
/// (the degraded mode of kernels without the drop-reason enum), for testing it.
pub const ENV_TC_ONLY: &str = "NETPOL_TRACE_TC_ONLY";
